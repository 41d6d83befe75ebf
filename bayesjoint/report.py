"""A self-contained HTML report of a run, with PNG figures (matplotlib, no pyplot state).

:func:`report` writes ``index.html`` (every figure embedded, so the page works on its own),
the figures as PNG files under ``figures/`` and the diagnosis as ``diagnostics.json``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import xarray as xr

__all__ = ["Figure", "report"]

# ``from bayesjoint.report import save, load`` was the netCDF I/O path before that moved to
# bayesjoint.io; the names stay importable from here for one release.
_MOVED_TO_IO = ("attach_provenance", "load", "provenance", "save")


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_IO:
        import warnings

        from bayesjoint import io

        warnings.warn(
            f"bayesjoint.report.{name} moved to bayesjoint.io.{name} (bj.{name} for save and "
            "load); this alias is removed in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(io, name)
    raise AttributeError(f"module 'bayesjoint.report' has no attribute {name!r}")


_log = logging.getLogger(__name__)
_SAMPLE_DIMS = ("chain", "draw")
_VERTICAL = ("z", "depth", "elevation")


@dataclass
class Figure:
    """One figure of the report.

    Attributes
    ----------
    key : str
        File stem (``figures/<key>.png``) and HTML id.
    title : str
    caption : str
    png : bytes
    labels : tuple of str
        Axis, colour-bar and panel labels (also the image's alt text).
    """

    key: str
    title: str
    caption: str
    png: bytes
    labels: tuple[str, ...] = ()


# -- small helpers ---------------------------------------------------------------------------
def _new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure as MplFigure

    return MplFigure(figsize=(width, height), dpi=100, layout="constrained")


def _render(fig: Any, dpi: int) -> tuple[bytes, tuple[str, ...]]:
    """Return the PNG bytes and every axis, colour-bar and panel label of ``fig``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    labels = []
    for ax in fig.axes:
        if ax.get_visible():
            labels += [ax.get_xlabel(), ax.get_ylabel(), ax.get_title()]
    return buf.getvalue(), tuple(lab for lab in labels if lab)


def _edges(centres: np.ndarray) -> np.ndarray:
    c = np.asarray(centres, dtype=float)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = 0.5 * (c[1:] + c[:-1])
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def _coord(ds: xr.Dataset | xr.DataArray, dim: str) -> np.ndarray:
    if dim in ds.coords and np.issubdtype(ds.coords[dim].dtype, np.number):
        return np.asarray(ds.coords[dim].values, dtype=float)
    return np.arange(ds.sizes[dim], dtype=float)


def _label(name: str, units: str | None) -> str:
    return f"{name} ({units})" if units else name


def _axis_label(dim: str, coord_is_index: bool, units: str | None = "m") -> str:
    """Label a grid axis (metres by the package convention) or a data axis (its own units)."""
    if coord_is_index:
        return f"{dim} (index)"
    return f"{dim} ({units})" if units else dim


def _is_index(ds: Any, dim: str) -> bool:
    return not (dim in ds.coords and np.issubdtype(ds.coords[dim].dtype, np.number)) or (
        dim.endswith(("_index", "_obs")) or "_index_" in dim or "_obs_" in dim
    )


def _q(da: xr.DataArray, q: float) -> xr.DataArray:
    return da.quantile(q, dim=_SAMPLE_DIMS).drop_vars("quantile")


def _exact_for(idata: Any, name: str, dims: tuple[str, ...], shape: tuple[int, ...]):
    """Return (mean, sd, prior_sd) arrays of ``name`` from an ``exact_posterior`` group."""
    if "exact_posterior" not in idata.groups():
        return None
    ex = idata.exact_posterior
    if "latent" not in ex.coords or "mean" not in ex:
        return None
    sel = np.asarray(ex["latent"].values) == name
    if sel.sum() != int(np.prod(shape, dtype=int)):
        return None
    out = []
    for key in ("mean", "sd", "prior_sd"):
        out.append(np.asarray(ex[key].values)[sel].reshape(shape) if key in ex else None)
    return out


def _truth_for(idata: Any, name: str) -> np.ndarray | None:
    if "true_model" in idata.groups() and name in idata.true_model:
        return np.asarray(idata.true_model[name].values, dtype=float)
    return None


# -- figures ---------------------------------------------------------------------------------
def _field_1d(idata, name, da, units, dpi) -> Figure:
    dim = da.dims[-1]
    x = _coord(da, dim)
    index = _is_index(da, dim)
    mean, sd = da.mean(_SAMPLE_DIMS).values, da.std(_SAMPLE_DIMS, ddof=1).values
    lo, hi = _q(da, 0.05).values, _q(da, 0.95).values
    exact = _exact_for(idata, name, (dim,), mean.shape)
    truth = _truth_for(idata, name)
    vertical = dim in _VERTICAL
    fig = _new_figure(9.0, 6.0) if not vertical else _new_figure(8.0, 7.0)
    axes = fig.subplots(2, 1, sharex=True) if not vertical else fig.subplots(1, 2, sharey=True)

    def plot(ax, values, *args, **kw):
        return ax.plot(values, x, *args, **kw) if vertical else ax.plot(x, values, *args, **kw)

    ax = axes[0]
    if vertical:
        ax.fill_betweenx(x, lo, hi, alpha=0.3, color="C0", label="90 % credible interval")
    else:
        ax.fill_between(x, lo, hi, alpha=0.3, color="C0", label="90 % credible interval")
    plot(ax, mean, color="C0", lw=2, label="posterior mean")
    if exact is not None:
        plot(ax, exact[0], "k:", lw=1.5, label="exact posterior mean")
    if truth is not None:
        plot(ax, truth, color="C3", ls="--", lw=1.5, label="true model")
    ax.legend(fontsize=8, loc="best")
    ax2 = axes[1]
    plot(ax2, sd, color="C1", lw=2, label="posterior sd")
    if exact is not None and exact[1] is not None:
        plot(ax2, exact[1], "k:", lw=1.5, label="exact posterior sd")
    if exact is not None and exact[2] is not None:
        plot(ax2, exact[2], color="0.5", ls="-.", lw=1, label="prior sd")
    ax2.legend(fontsize=8, loc="best")
    if vertical:
        ax.set_xlabel(_label(f"{name} mean", units))
        ax2.set_xlabel(_label(f"{name} sd", units))
        ax.set_ylabel(_axis_label(dim, index))
    else:
        ax.set_ylabel(_label(f"{name} mean", units))
        ax2.set_ylabel(_label(f"{name} sd", units))
        ax2.set_xlabel(_axis_label(dim, index))
    for a in axes:
        a.grid(alpha=0.3)
    fig.suptitle(f"{name}: posterior mean and sd")
    return Figure(
        f"field_{name}",
        f"Field {name}: posterior mean and sd",
        f"Posterior mean with its 90 % credible band and posterior sd of {name} along {dim}"
        + (" (exact linear-Gaussian posterior dotted)" if exact is not None else "")
        + ("; dashed: the true model" if truth is not None else "")
        + ".",
        *_render(fig, dpi),
    )


def _map_axes(dims: tuple[str, ...]) -> tuple[str, str]:
    """Return (horizontal, vertical) dims of a 2-D section; z (up) is vertical."""
    a, b = dims
    if a in _VERTICAL and b not in _VERTICAL:
        return b, a
    return a, b


def _field_2d(idata, name, da, units, dpi, section: str = "") -> Figure:
    h, v = _map_axes(tuple(d for d in da.dims if d not in _SAMPLE_DIMS))
    mean = da.mean(_SAMPLE_DIMS).transpose(v, h)
    sd = da.std(_SAMPLE_DIMS, ddof=1).transpose(v, h)
    xh, xv = _coord(mean, h), _coord(mean, v)
    eh, ev = _edges(xh), _edges(xv)
    truth = _truth_for(idata, name)
    n_panels = 3 if truth is not None and truth.ndim == 2 and not section else 2
    ratio = (ev[-1] - ev[0]) / max(eh[-1] - eh[0], 1e-300)
    equal = 0.2 <= ratio <= 5 and not (_is_index(mean, h) or _is_index(mean, v))
    panel = 4.6
    height = float(np.clip(panel * ratio, 1.6, 6.0)) if equal else 3.4
    fig = _new_figure(panel * n_panels + 0.6, height + 1.2)
    axes = fig.subplots(1, n_panels, sharey=True)
    panels = [(mean.values, "mean", "viridis"), (sd.values, "sd", "magma")]
    if n_panels == 3:
        t = xr.DataArray(truth, dims=[d for d in da.dims if d not in _SAMPLE_DIMS])
        panels.insert(0, (t.transpose(v, h).values, "true model", "viridis"))
    vmin = min(np.nanmin(mean.values), np.nanmin(panels[0][0]))
    vmax = max(np.nanmax(mean.values), np.nanmax(panels[0][0]))
    for ax, (values, what, cmap) in zip(axes, panels, strict=True):
        same = what in ("mean", "true model")
        mesh = ax.pcolormesh(
            eh, ev, values, cmap=cmap, shading="flat",
            vmin=vmin if same else None, vmax=vmax if same else None,
        )  # fmt: skip
        fig.colorbar(mesh, ax=ax, label=_label(f"{name} {what}", units), shrink=0.8, aspect=15)
        ax.set_xlabel(_axis_label(h, _is_index(mean, h)))
        ax.set_title(f"posterior {what}" if what != "true model" else what)
        if equal:
            ax.set_aspect("equal")
    axes[0].set_ylabel(_axis_label(v, _is_index(mean, v)))
    fig.suptitle(f"{name}: posterior mean and sd{section}")
    key = f"field_{name}" + ("_" + section.strip(" ()").replace(" ", "_").replace("=", "")
                              if section else "")  # fmt: skip
    return Figure(
        key,
        f"Field {name}: posterior mean and sd{section}",
        f"Maps of the posterior mean and sd of {name} on its grid ({h} across, {v} up"
        + ("; z positive up" if v in _VERTICAL else "")
        + ")"
        + (", next to the true model" if n_panels == 3 else "")
        + ".",
        *_render(fig, dpi),
    )


def _field_figures(idata, name, da, units, dpi) -> list[Figure]:
    dims = [d for d in da.dims if d not in _SAMPLE_DIMS]
    if len(dims) == 1:
        return [_field_1d(idata, name, da, units, dpi)]
    if len(dims) == 2:
        return [_field_2d(idata, name, da, units, dpi)]
    # 3-D and more: sections through the middle of the grid.
    vertical = next((d for d in dims if d in _VERTICAL), dims[-1])
    others = [d for d in dims if d != vertical]
    figs = []
    mid_v = da.sizes[vertical] // 2
    plan = da.isel({vertical: mid_v, **{d: da.sizes[d] // 2 for d in others[2:]}})
    zval = _coord(da, vertical)[mid_v]
    figs.append(_field_2d(idata, name, plan, units, dpi, section=f" ({vertical}={zval:g})"))
    mid = da.sizes[others[-1]] // 2
    sec = da.isel({others[-1]: mid, **{d: da.sizes[d] // 2 for d in others[:-2]}})
    val = _coord(da, others[-1])[mid]
    figs.append(_field_2d(idata, name, sec, units, dpi, section=f" ({others[-1]}={val:g})"))
    return figs


def _vector_figure(idata, name, da, units, dpi) -> Figure:
    dims = [d for d in da.dims if d not in _SAMPLE_DIMS]
    flat = da.stack(element=dims) if len(dims) > 1 else da.rename({dims[0]: "element"})
    x = np.arange(flat.sizes["element"])
    mean, sd = flat.mean(_SAMPLE_DIMS).values, flat.std(_SAMPLE_DIMS, ddof=1).values
    lo, hi = _q(flat, 0.05).values, _q(flat, 0.95).values
    exact = _exact_for(idata, name, tuple(dims), mean.shape)
    truth = _truth_for(idata, name)
    fig = _new_figure(9.0, 5.5)
    ax, ax2 = fig.subplots(2, 1, sharex=True)
    ax.fill_between(x, lo, hi, alpha=0.3, color="C0", step="mid", label="90 % credible interval")
    ax.plot(x, mean, color="C0", drawstyle="steps-mid", label="posterior mean")
    if exact is not None:
        ax.plot(x, exact[0], "k:", label="exact posterior mean")
    if truth is not None:
        ax.plot(x, truth.ravel(), color="C3", ls="--", label="true model")
    ax.set_ylabel(_label(f"{name}", units))
    ax.legend(fontsize=8)
    ax2.plot(x, sd, color="C1", drawstyle="steps-mid", label="posterior sd")
    if exact is not None and exact[1] is not None:
        ax2.plot(x, exact[1], "k:", label="exact posterior sd")
    ax2.set_ylabel(_label(f"{name} sd", units))
    ax2.set_xlabel(f"{name} element (C order)")
    ax2.legend(fontsize=8)
    for a in (ax, ax2):
        a.grid(alpha=0.3)
    fig.suptitle(f"{name}: marginal posteriors by element")
    return Figure(
        f"parameter_{name}",
        f"Parameter {name}: marginal posteriors by element",
        f"Posterior mean, 90 % credible interval and sd of each element of {name}.",
        *_render(fig, dpi),
    )


def _scalar_figure(idata, names, units, dpi) -> Figure:
    n = len(names)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig = _new_figure(max(3.6 * cols, 6.0), 2.8 * rows + 0.4)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    post = idata.posterior
    for ax, name in zip(axes, names, strict=False):
        da = post[name]
        values = da.transpose("chain", "draw").values
        bins = np.histogram_bin_edges(values.ravel(), bins=30)
        for c in range(values.shape[0]):
            ax.hist(values[c], bins=bins, histtype="step", density=True, label=f"chain {c}")
        mean, sd = float(values.mean()), float(values.std(ddof=1))
        ax.axvline(mean, color="k", lw=1)
        ax.set_title(f"{name}: {mean:.4g} ± {sd:.2g}", fontsize=9)
        ax.set_xlabel(_label(name, units.get(name)))
        ax.set_yticks([])
        truth = _truth_for(idata, name)
        if truth is not None and truth.size == 1:
            ax.axvline(float(truth), color="C3", ls="--", lw=1.5)
    for ax in axes[n:]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    fig.suptitle("Marginal posteriors (one histogram per chain)")
    return Figure(
        "scalars",
        "Marginal posteriors of scalars",
        "Posterior density of each scalar variable, one histogram per chain (they should "
        "overlap); title: posterior mean ± sd; dashed: the true value where known.",
        *_render(fig, dpi),
    )


def _data_fit_figure(idata, name, diagnosis, units, dpi) -> Figure:
    obs = idata.observed_data[name]
    dims = list(obs.dims)
    pred = diagnosis.predictive.get(name)
    if len(dims) == 1 and not _is_index(obs, dims[0]):
        x = _coord(obs, dims[0])
        xlabel = _axis_label(dims[0], False, obs.coords[dims[0]].attrs.get("units"))
    else:
        x = np.arange(obs.size, dtype=float)
        xlabel = f"{name} datum (C order)"
    d = np.asarray(obs.values, float).ravel()
    order = np.argsort(x, kind="stable")
    fig = _new_figure(9.0, 5.5)
    ax, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    if pred is not None:
        mean = np.asarray(pred["mean"].values, float).ravel()
        lo = np.asarray(pred["lower"].values, float).ravel()
        hi = np.asarray(pred["upper"].values, float).ravel()
        ax.fill_between(
            x[order], lo[order], hi[order], color="C0", alpha=0.25,
            label="90 % posterior-predictive interval",
        )  # fmt: skip
        ax.plot(x[order], mean[order], color="C0", label="posterior-predictive mean")
    ax.plot(x, d, "o", ms=4, color="k", label="observed")
    ax.set_ylabel(_label(name, units))
    ax.legend(fontsize=8)
    if pred is not None:
        r = np.asarray(pred["residual"].values, float).ravel()
        ax2.axhspan(-2, 2, color="0.9")
        ax2.axhline(0, color="0.5", lw=1)
        ax2.plot(x, r, "o", ms=4, color="C3")
        ax2.set_ylabel("standardized\nresidual")
        caption = (
            f"Observed {name} data with the posterior-predictive mean and 90 % interval "
            f"({pred['coverage90']:.0%} of data inside); below, standardized residuals "
            "(d − E[y_rep]) / sd[y_rep], shaded ±2."
        )
    elif name in diagnosis.loo:
        k = np.asarray(diagnosis.loo[name].pareto_k.values, float).ravel()
        limit = diagnosis.thresholds.good_k(
            int(idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"])
        )
        if k.size == d.size:
            ax2.plot(x, k, "o", ms=4, color="C2")
        ax2.axhline(limit, color="C3", ls="--", lw=1)
        ax2.set_ylabel("Pareto k")
        caption = (
            f"Observed {name} data; the file holds no posterior-predictive draws, so below is "
            f"each datum's PSIS-LOO Pareto k (dashed: the {limit:.2f} reliability limit)."
        )
    else:
        ax2.set_visible(False)
        caption = f"Observed {name} data (no posterior-predictive draws or log-likelihood)."
    ax2.set_xlabel(xlabel)
    for a in (ax, ax2):
        a.grid(alpha=0.3)
    fig.suptitle(f"Data fit: {name}")
    return Figure(f"datafit_{name}", f"Data fit: {name}", caption, *_render(fig, dpi))


def _rank_figure(idata, diagnosis, dpi, max_panels: int = 6) -> Figure:
    post = idata.posterior
    el = diagnosis.elements
    el = el[np.isfinite(el["rhat"].values)]
    scalars = [lab for lab in el.index if lab in post and post[lab].ndim == 2]
    rest = el.drop(index=scalars).sort_values("rhat", ascending=False)
    chosen = (scalars + list(rest.index))[:max_panels]
    cols = min(len(chosen), 3)
    rows = int(np.ceil(len(chosen) / cols))
    fig = _new_figure(3.6 * cols, 2.6 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    from scipy.stats import rankdata

    from bayesjoint.diagnostics.labels import _element_labels

    for ax, label in zip(axes, chosen, strict=False):
        var = el.loc[label, "variable"]
        da = post[var]
        flat = da.stack(__e=[d for d in da.dims if d not in _SAMPLE_DIMS]) if da.ndim > 2 else da
        if da.ndim > 2:
            idx = next(i for i, lab in enumerate(_element_labels(da)) if lab == label)
            values = flat.isel(__e=idx).transpose("chain", "draw").values
        else:
            values = flat.transpose("chain", "draw").values
        ranks = rankdata(values.ravel()).reshape(values.shape)
        n_chain, n_draw = values.shape
        bins = np.linspace(0, ranks.size, 21)
        for c in range(n_chain):
            counts, _ = np.histogram(ranks[c], bins=bins)
            ax.stairs(counts, bins, baseline=None, lw=1.5, label=f"chain {c}")
        ax.axhline(n_draw / 20, color="k", ls="--", lw=1)
        ax.set_ylim(0, None)
        ax.set_title(f"{label}  (R-hat {el.loc[label, 'rhat']:.3f})", fontsize=9)
        ax.set_yticks([])
        ax.set_xlabel("rank of draw (all chains pooled)")
    for ax in axes[len(chosen) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    fig.suptitle("Rank plots (uniform histograms mean well-mixed chains)")
    return Figure(
        "rank",
        "Rank plots",
        "Rank histograms per chain (Vehtari et al. 2021) for the scalar variables and the "
        "elements with the largest R-hat; each chain should be flat around the dashed line.",
        *_render(fig, dpi),
    )


def _budget_figure(budget: xr.Dataset, source: str, idata: Any, dpi: int) -> Figure:
    mods = [str(m) for m in budget["modality"].values]
    fig = _new_figure(11.0, 4.2)
    ax, ax2 = fig.subplots(1, 2, width_ratios=[1, 1.4])
    xpos = np.arange(len(mods))
    alone = budget["information_gain_alone"].values
    added = budget["information_gain_added"].values
    ax.bar(xpos - 0.2, alone, 0.4, label="alone (with the prior)")
    ax.bar(xpos + 0.2, added, 0.4, label="added to all others")
    total = float(budget["information_gain_total"])
    ax.axhline(total, color="k", ls="--", lw=1, label=f"all together: {total:.1f}")
    ax.set_ylim(0, 1.25 * max(total, float(np.max(alone)), 1e-12))
    ax.set_xticks(xpos, mods)
    ax.set_ylabel("information gain (nats)")
    ax.legend(fontsize=8)
    ax.set_title("Information gain by modality")
    prior_var = budget["prior_sd"].values ** 2
    alone_red = 1.0 - budget["posterior_sd_alone"].values ** 2 / prior_var
    joint_red = 1.0 - budget["posterior_sd"].values ** 2 / prior_var
    latent = np.asarray(budget["latent"].values) if "latent" in budget.coords else None
    names = list(dict.fromkeys(latent)) if latent is not None else ["all"]
    if len(names) == 1 and budget.sizes["parameter"] > 1:
        # one latent variable: variance reduction along it (its coordinate if 1-D)
        x = np.arange(budget.sizes["parameter"], dtype=float)
        xlabel = "parameter (C order)"
        post = idata.posterior if idata is not None and "posterior" in idata.groups() else None
        if post is not None and names[0] in post:
            dims = [d for d in post[names[0]].dims if d not in _SAMPLE_DIMS]
            if len(dims) == 1 and not _is_index(post[names[0]], dims[0]):
                x = _coord(post[names[0]], dims[0])
                xlabel = _axis_label(dims[0], False)
        for i, m in enumerate(mods):
            ax2.plot(x, alone_red[i], drawstyle="steps-mid", lw=1.5, label=f"{m} alone")
        ax2.plot(x, joint_red, color="k", drawstyle="steps-mid", lw=2, label="all together")
        ax2.set_xlabel(xlabel)
    else:
        group = latent if latent is not None else np.array(["all"] * budget.sizes["parameter"])
        width = 0.8 / (len(mods) + 1)
        pos = np.arange(len(names))
        for i, m in enumerate(mods):
            vals = [alone_red[i][group == n].mean() for n in names]
            ax2.bar(pos + i * width, vals, width, label=f"{m} alone")
        ax2.bar(pos + len(mods) * width, [joint_red[group == n].mean() for n in names], width,
                color="k", label="all together")  # fmt: skip
        ax2.set_xticks(pos + 0.4 - width / 2, names)
    ax2.set_ylim(0, 1.02)
    ax2.set_ylabel("variance reduction 1 − sd²/prior sd²")
    ax2.legend(fontsize=8, loc="lower right")
    ax2.set_title("Who constrains what")
    fig.suptitle(f"Information budget ({source})")
    return Figure(
        "information_budget",
        "Information budget",
        "Left: information gain (nats) of each modality alone and added to all the others, and "
        "of all data together. Right: the reduction of the prior variance of each parameter by "
        f"each modality alone and by all together. Source: {source}.",
        *_render(fig, dpi),
    )


def _budget(idata: Any, problem: Any, notes: list[str]) -> tuple[xr.Dataset | None, str]:
    if "information_budget" in idata.groups():
        return idata.information_budget, "exact linear-Gaussian budget stored in the file"
    if problem is None:
        notes.append(
            "no information budget: the file has no information_budget group; pass problem= "
            "to compute it (exact or linearized)"
        )
        return None, ""
    try:
        return problem.information_budget(), "exact linear-Gaussian budget"
    except ValueError:
        from bayesjoint.linear import linearized_budget

        return linearized_budget(problem, idata), "Gauss-Newton/Laplace linearization at the mean"


# -- page ------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;
background:#fafafa}
header{background:#1f3a5f;color:#fff;padding:1.2em 2em}
header h1{margin:0 0 .3em 0;font-size:1.6em}
header p{margin:0;opacity:.85}
main{max-width:1200px;margin:0 auto;padding:1em 2em 3em 2em}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:1em 1.5em;margin:1.2em 0}
h2{font-size:1.25em;margin-top:.2em;border-bottom:1px solid #eee;padding-bottom:.3em}
h3{font-size:1.05em}
figure{margin:1em 0}
figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#444;margin-top:.3em}
table{border-collapse:collapse;font-size:.88em;margin:.5em 0 1em 0}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f2f4f7}
tbody th{text-align:left}
td.text{text-align:left}
td.fail{background:#fde2e1;color:#8a1c13;text-align:left}
td.warn{background:#fff4d6;color:#7a5600;text-align:left}
.verdict{font-size:1.3em;font-weight:bold;padding:.4em .8em;display:inline-block;border-radius:4px}
.verdict.ok{background:#dff3e4;color:#1c6b32}
.verdict.warn{background:#fff4d6;color:#7a5600}
.verdict.fail{background:#fde2e1;color:#8a1c13}
nav a{margin-right:1em}
.notes{color:#555;font-size:.9em}
code{background:#f2f4f7;padding:0 .2em}
"""


def _page(title: str, source: str, diagnosis: Any, figures: list[Figure], prov: dict,
          notes: list[str]) -> str:  # fmt: skip
    e = html.escape
    nav = " ".join(
        f'<a href="#{e(f.key)}">{e(f.title)}</a>' for f in figures
    )  # fmt: skip
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{e(title)}</h1><p>{e(source)} · report written "
        f"{e(_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'))}</p></header>",
        "<main>",
        f'<section id="diagnostics"><h2>Diagnostics</h2>{diagnosis.to_html()}</section>',
        f'<nav aria-label="figures">{nav}</nav>',
    ]
    for f in figures:
        data = base64.b64encode(f.png).decode("ascii")
        parts.append(
            f'<section id="{e(f.key)}"><h2>{e(f.title)}</h2><figure>'
            f'<img src="data:image/png;base64,{data}" '
            f'alt="{e(f.title)}: {e("; ".join(f.labels))}" '
            f'data-figure="{e(f.key)}">'
            f'<figcaption>{e(f.caption)} <a href="figures/{e(f.key)}.png">PNG</a>'
            "</figcaption></figure></section>"
        )
    if notes:
        parts.append('<section id="notes"><h2>Notes</h2><ul class="notes">')
        parts += [f"<li>{e(n)}</li>" for n in notes]
        parts.append("</ul></section>")
    rows = "".join(
        f"<tr><th>{e(str(k))}</th><td class='text'>{e(str(v))}</td></tr>" for k, v in prov.items()
    )
    parts.append(
        '<section id="provenance"><h2>Provenance</h2>'
        f'<table class="provenance"><tbody>{rows}</tbody></table></section>'
    )
    parts.append("</main></body></html>")
    return "\n".join(parts)


def _provenance(idata: Any) -> dict[str, Any]:
    attrs = dict(idata.posterior.attrs)
    keys = [k for k in attrs if k.endswith("_version")] + [
        k
        for k in (
            "random_seed",
            "bayesjoint_created_at",
            "sampler",
            "draws",
            "tune",
            "chains",
            "sampling_time",
        )
        if k in attrs
    ]
    out = {k: attrs[k] for k in keys}
    for key in ("modalities", "latent", "discrepancies"):
        if key in attrs:
            try:
                items = json.loads(attrs[key])
                out[key] = "; ".join(
                    ", ".join(
                        f"{k}={v}" for k, v in item.items() if k not in ("physics", "observe")
                    )
                    for item in items
                )
            except (ValueError, TypeError, AttributeError):
                out[key] = attrs[key]
    return out


def report(
    idata_or_path: Any,
    out_dir: str | os.PathLike,
    *,
    problem: Any = None,
    diagnosis: Any = None,
    title: str | None = None,
    dpi: int = 110,
    progressbar: bool = False,
) -> str:
    """Write a self-contained HTML report of a run, with PNG figures.

    Parameters
    ----------
    idata_or_path : arviz.InferenceData or path
        Results, or a netCDF report saved by :func:`bayesjoint.save`.
    out_dir : str or path-like
        Output folder (created): ``index.html``, ``figures/*.png``, ``diagnostics.json``.
    problem : JointInversion, optional
        Lets the report simulate posterior-predictive data and compute the information budget
        (exact or linearized) when the file holds neither.
    diagnosis : Diagnosis, optional
        A ready :func:`bayesjoint.diagnostics.diagnose` result (computed when omitted).
    title : str, optional
    dpi : int, default 110
        Resolution of the PNG figures.
    progressbar : bool, default False
        Show progress on stderr.

    Returns
    -------
    str
        Path of ``index.html``.

    Notes
    -----
    Figures: posterior mean and sd of every field on its grid (1-D profiles with 90 % bands; 2-D
    maps with colour bars, axes in grid coordinates, z up; 3-D as central sections), marginal
    posteriors of vector and scalar parameters, each modality's data fit with standardized
    residuals, rank plots, the information budget as bar charts, and the diagnostics tables.
    Every figure is embedded in the page as a PNG data URI (the page works on its own, e.g. as
    an e-mail attachment) and also written to ``figures/``. No JavaScript is used.
    Figures are drawn with matplotlib's object-oriented API on the Agg canvas, so the caller's
    pyplot state and backend are untouched.

    Examples
    --------
    >>> import tempfile, arviz as az, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> idata = az.from_dict(posterior={"x": rng.normal(size=(2, 100))})
    >>> path = report(idata, tempfile.mkdtemp())
    >>> path.endswith("index.html")
    True
    """
    from bayesjoint.diagnostics.diagnosis import diagnose

    idata, source = _load_run(idata_or_path)
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    if diagnosis is None:
        diagnosis = diagnose(idata, problem, progressbar=progressbar)
    notes = list(diagnosis.notes)
    jobs = _figure_jobs(idata, diagnosis, problem, notes, dpi)
    figures = _draw_figures(jobs, notes, progressbar)
    for fig in figures:
        (out / "figures" / f"{fig.key}.png").write_bytes(fig.png)
    page = _page(
        title or f"bayesjoint report: {Path(source).name if source != 'InferenceData' else 'run'}",
        source,
        diagnosis,
        figures,
        _provenance(idata),
        notes,
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    (out / "diagnostics.json").write_text(
        json.dumps(diagnosis.to_dict(), indent=2, default=str), encoding="utf-8"
    )
    return str(index)


def _load_run(idata_or_path: Any) -> tuple[az.InferenceData, str]:
    """Return the run (loaded when a path) and its source for the page header."""
    from bayesjoint.io import load

    source = "InferenceData"
    if isinstance(idata_or_path, (str, os.PathLike)):
        source = os.fspath(idata_or_path)
        idata = load(idata_or_path)
    elif isinstance(idata_or_path, az.InferenceData):
        idata = idata_or_path
    else:
        raise TypeError(
            "report needs an arviz.InferenceData or a path to a saved report, got "
            f"{type(idata_or_path).__name__}"
        )
    if "posterior" not in idata.groups():
        raise ValueError("the InferenceData has no posterior group; nothing to report")
    return idata, source


_Job = tuple[str, Callable[[], list[Figure]]]


def _figure_jobs(
    idata: Any, diagnosis: Any, problem: Any, notes: list[str], dpi: int
) -> list[_Job]:
    """Return the figures to draw, in page order, as ``(label, draw)`` pairs."""
    from bayesjoint.diagnostics.labels import latent_info, modality_info

    latent = latent_info(idata)
    mods = modality_info(idata)
    post = idata.posterior
    jobs = _latent_jobs(idata, latent, dpi)
    scalars = [n for n in post.data_vars if post[n].ndim == 2]
    if scalars:
        units = _scalar_units(scalars, latent, mods)
        jobs.append(("scalars", lambda: [_scalar_figure(idata, scalars, units, dpi)]))
    if "observed_data" in idata.groups():
        for name in idata.observed_data.data_vars:
            u = mods.get(name, {}).get("units") or idata.observed_data[name].attrs.get("units")
            jobs.append(
                (
                    f"data fit {name}",
                    lambda n=name, u=u: [_data_fit_figure(idata, n, diagnosis, u, dpi)],
                )
            )
    jobs.append(("rank plots", lambda: [_rank_figure(idata, diagnosis, dpi)]))
    budget, budget_source = _budget(idata, problem, notes)
    if budget is not None:
        jobs.append(
            ("information budget", lambda: [_budget_figure(budget, budget_source, idata, dpi)])
        )
    return jobs


def _latent_jobs(idata: Any, latent: dict[str, dict], dpi: int) -> list[_Job]:
    """Return the figures of the array-valued latent variables: fields on grids, else vectors.

    Without recorded latent variables, every non-whitened array variable is drawn.
    """
    post = idata.posterior
    names = [n for n in latent if n in post] or [
        n for n in post.data_vars if not n.endswith("_white") and post[n].ndim > 2
    ]
    jobs: list[_Job] = []
    for name in names:
        da = post[name]
        units = latent.get(name, {}).get("units")
        kind = latent.get(name, {}).get("kind")
        if da.ndim == 2:
            continue
        if kind == "field" or (kind is None and not any(_is_index(da, d) for d in da.dims[2:])):
            jobs.append(
                (
                    f"field {name}",
                    lambda n=name, d=da, u=units: _field_figures(idata, n, d, u, dpi),
                )
            )
        else:
            jobs.append(
                (
                    f"parameter {name}",
                    lambda n=name, d=da, u=units: [_vector_figure(idata, n, d, u, dpi)],
                )
            )
    return jobs


def _scalar_units(
    scalars: list[str], latent: dict[str, dict], mods: dict[str, dict]
) -> dict[str, str | None]:
    """Return the units of scalar variables: a latent's own, or its modality's for a noise sd."""
    units = {n: latent.get(n, {}).get("units") for n in scalars}
    for n in scalars:
        for suffix in ("_sigma", "_noise_scale"):
            stem = n[: -len(suffix)] if n.endswith(suffix) else None
            if stem in mods and suffix == "_sigma":
                units[n] = mods[stem].get("units")
    return units


def _draw_figures(jobs: list[_Job], notes: list[str], progressbar: bool) -> list[Figure]:
    """Draw every figure; one that fails becomes a note instead of losing the whole report."""
    from bayesjoint.diagnostics.progress import _Progress

    figures: list[Figure] = []
    bar = _Progress(progressbar, len(jobs), "report")
    try:
        for label, job in jobs:
            bar.step(f"figure: {label}")
            try:
                figures.extend(job())
            except Exception as err:  # one broken figure must not lose the whole report
                _log.warning("report: figure %s failed: %s", label, err)
                notes.append(f"figure '{label}' could not be drawn: {type(err).__name__}: {err}")
    finally:
        bar.close()
    return figures
