"""Figures shared by the case studies (matplotlib optional)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import bayesjoint as bj


def pyplot() -> Any:
    """Return ``matplotlib.pyplot`` on the Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save(fig: Any, path: str) -> str:
    """Write ``fig`` to the PNG ``path`` (110 dpi), close it and return ``path``."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sections(
    path: str,
    grid: bj.Grid,
    panels: dict[str, tuple[np.ndarray, str]],
    outlines: Sequence[tuple[float, float, float, float]] = (),
    length_unit: str = "m",
) -> str | None:
    """Write a PNG of 2-D (x, z) fields; panels sharing a key share colour limits.

    ``outlines`` are boxes ``(x0, x1, z0, z1)`` drawn on every panel; ``length_unit`` labels the
    axes. Returns the path, or None when matplotlib is not installed.
    """
    plt = pyplot()
    if plt is None:
        return None
    limits: dict[str, tuple[float, float]] = {}
    for values, key in panels.values():
        lo, hi = float(np.min(values)), float(np.max(values))
        old = limits.get(key, (lo, hi))
        limits[key] = (min(lo, old[0]), max(hi, old[1]))
    ex, ez = grid.edges["x"], grid.edges["z"]
    rows = (len(panels) + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(10, 2.7 * rows), constrained_layout=True)
    for ax, (title, (values, key)) in zip(axes.ravel(), panels.items(), strict=False):
        vmin, vmax = limits[key]
        im = ax.pcolormesh(
            ex, ez, np.asarray(values).reshape(grid.shape).T, cmap="viridis", vmin=vmin, vmax=vmax
        )
        for x0, x1, z0, z1 in outlines:
            ax.plot([x0, x1, x1, x0, x0], [z0, z0, z1, z1, z0], color="w", lw=0.8)
        ax.set_title(title, fontsize=9)
        ax.set_aspect("equal")
        fig.colorbar(im, ax=ax, shrink=0.8)
    for ax in axes[-1]:
        ax.set_xlabel(f"x ({length_unit})")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"z ({length_unit})")
    return save(fig, path)
