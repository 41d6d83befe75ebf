"""Tensor-product grids of cells on which property fields live."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bayesjoint._checks import as_real_array, check_dim_names, checked_init

__all__ = ["Grid"]


def _check_axis(name: str, values: Any, what: str) -> np.ndarray:
    arr = as_real_array(values, f"Grid axis {name!r}: {what}")
    if arr.ndim != 1 or arr.size < 1:
        raise ValueError(
            f"Grid axis {name!r}: {what} must be a non-empty 1-D array, got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"Grid axis {name!r}: {what} contain NaN or inf")
    if arr.size > 1 and not np.all(np.diff(arr) > 0):
        raise ValueError(f"Grid axis {name!r}: {what} must be strictly increasing")
    return arr


def as_points(
    points: Any,
    name: str,
    ncols: tuple[int, ...],
    layout: str,
    *,
    rows: str = "n",
    allow_empty: bool = True,
) -> np.ndarray:
    """Return point coordinates as a finite float array of shape (n, k), k in ``ncols``.

    The one check of point coordinates (stations, ray ends, sample positions) in the package.

    Parameters
    ----------
    points : array_like, shape (n, k) or (k,)
        Coordinates in metres, one row per point; a single point may be given as a 1-D array.
    name : str
        What the points are, as the error messages call them (e.g. ``"stations"``).
    ncols : tuple of int
        Accepted numbers of coordinates per point.
    layout : str
        How the coordinates are laid out, for the error message (e.g. ``"(x, y, z), z up"``).
    rows : str, default "n"
        Name of the row count in the error message.
    allow_empty : bool, default True
        Whether zero points are accepted.

    Raises
    ------
    ValueError
        For another shape, or NaN or inf coordinates.

    Examples
    --------
    >>> as_points([1.0, 2.0], "receivers", (2,), "as (x, z)").shape
    (1, 2)
    """
    arr = np.asarray(points, dtype=float)
    if arr.ndim == 1 and arr.size in ncols:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] not in ncols or (not allow_empty and arr.shape[0] == 0):
        cols = " or ".join(str(c) for c in ncols)
        raise ValueError(
            f"{name} must have shape ({rows}, {cols}) {layout}, got shape {np.shape(points)}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; give finite coordinates in metres")
    return arr


class Grid:
    """A rectilinear tensor grid of cells, described by the cell centres along each named axis.

    Parameters
    ----------
    edges : mapping of str to array_like, optional
        Cell edges per axis (length = cells + 1). Use :meth:`from_edges` to build from edges alone.
    **centers : array_like
        Cell centres per axis, in metres (or the problem's length unit), strictly increasing. The
        keyword order is the axis order, e.g. ``Grid(x=..., z=...)`` has shape ``(nx, nz)``.

    Notes
    -----
    When edges are not given they are placed midway between neighbouring centres, and the outer
    edges half a spacing beyond the first and last centres (a one-cell axis needs explicit edges).
    Fields on the grid are flattened in C order (last axis fastest); every linear operator that
    acts on a field uses that order. Coordinates follow the package convention: metres, with ``z``
    positive up.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> grid = bj.Grid(x=np.arange(4) * 10.0 + 5.0, z=-np.arange(2)[::-1] * 10.0 - 5.0)
    >>> grid.shape, grid.dims
    ((4, 2), ('x', 'z'))
    >>> grid.edges["x"]
    array([ 0., 10., 20., 30., 40.])
    """

    @checked_init("bj.Grid")
    def __init__(self, edges: Mapping[str, Any] | None = None, **centers: Any):
        if not centers:
            raise ValueError("Grid needs at least one axis, e.g. bj.Grid(x=centres)")
        check_dim_names(tuple(centers), "Grid axis names")
        if edges is not None and not isinstance(edges, Mapping):
            raise TypeError(
                f"Grid edges must be a mapping of axis name to edges, got {type(edges).__name__}"
            )
        self.centers: dict[str, np.ndarray] = {
            name: _check_axis(name, c, "centres") for name, c in centers.items()
        }
        self.edges: dict[str, np.ndarray] = {}
        given = dict(edges or {})
        unknown = set(given) - set(self.centers)
        if unknown:
            raise ValueError(f"Grid edges given for unknown axes {sorted(unknown)}")
        for name, c in self.centers.items():
            if name in given:
                e = _check_axis(name, given[name], "edges")
                if e.size != c.size + 1:
                    raise ValueError(
                        f"Grid axis {name!r}: {c.size} centres need {c.size + 1} edges, "
                        f"got {e.size}"
                    )
                if not np.all((e[:-1] < c) & (c < e[1:])):
                    raise ValueError(f"Grid axis {name!r}: each centre must lie inside its edges")
            else:
                if c.size < 2:
                    raise ValueError(
                        f"Grid axis {name!r} has one cell; give its edges, "
                        f"e.g. Grid(edges={{{name!r}: [lo, hi]}}, ...)"
                    )
                mid = 0.5 * (c[1:] + c[:-1])
                e = np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])
            self.edges[name] = e

    @classmethod
    def from_edges(cls, **edges: Any) -> Grid:
        """Build a grid from cell edges per axis; centres are the midpoints.

        Examples
        --------
        >>> import bayesjoint as bj
        >>> bj.Grid.from_edges(x=[0.0, 1.0, 3.0]).centers["x"]
        array([0.5, 2. ])
        """
        checked = {n: _check_axis(n, e, "edges") for n, e in edges.items()}
        for n, e in checked.items():
            if e.size < 2:
                raise ValueError(f"Grid axis {n!r}: need at least two edges")
        centers = {n: 0.5 * (e[1:] + e[:-1]) for n, e in checked.items()}
        return cls(edges=checked, **centers)

    @property
    def dims(self) -> tuple[str, ...]:
        """Axis names, in order."""
        return tuple(self.centers)

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of cells along each axis."""
        return tuple(c.size for c in self.centers.values())

    @property
    def size(self) -> int:
        """Total number of cells."""
        return int(np.prod(self.shape, dtype=int))

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.centers)

    @property
    def widths(self) -> dict[str, np.ndarray]:
        """Cell widths per axis."""
        return {n: np.diff(e) for n, e in self.edges.items()}

    def cell_centers(self) -> np.ndarray:
        """Return the centres of all cells, shape ``(size, ndim)``, in C (flattening) order."""
        mesh = np.meshgrid(*self.centers.values(), indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=-1)

    def cell_bounds(self) -> np.ndarray:
        """Return ``(lo_0, hi_0, lo_1, hi_1, ...)`` per cell, shape ``(size, 2 ndim)``."""
        lo = np.meshgrid(*[e[:-1] for e in self.edges.values()], indexing="ij")
        hi = np.meshgrid(*[e[1:] for e in self.edges.values()], indexing="ij")
        cols = []
        for a, b in zip(lo, hi, strict=True):
            cols.extend([a.ravel(), b.ravel()])
        return np.stack(cols, axis=-1)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Grid) or self.dims != other.dims:
            return False
        return all(np.array_equal(self.edges[n], other.edges[n]) for n in self.dims) and all(
            np.array_equal(self.centers[n], other.centers[n]) for n in self.dims
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        axes = ", ".join(f"{n}={c.size}" for n, c in self.centers.items())
        return f"Grid({axes})"
