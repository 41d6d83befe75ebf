"""Diagnostics: a convergence gate, per-modality model checks and a modality-conflict check.

:func:`diagnose` turns an :class:`arviz.InferenceData` (or a saved report) into a table grouped
by latent variable and a verdict with its reasons:

- **convergence** (Vehtari et al. 2021): rank-normalized split R-hat, bulk and tail effective
  sample sizes and Monte Carlo standard errors of every posterior variable;
- **the sampler**: divergent transitions, E-BFMI per chain, tree-depth saturation, and (when
  :mod:`bayesjoint.multimodal` is available) chains stuck in different modes;
- **each modality**: PSIS-LOO from its own ``log_likelihood`` with Pareto-k warnings, and
  posterior-predictive standardized residuals and 90 % interval coverage;
- **conflict between modalities**: the posterior without each modality (exact, importance
  reweighting where Pareto-k allows, or a refit), its shift in posterior-sd units, and a
  predictive test of the left-out data that names a modality disagreeing with the others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import scipy.linalg as sla
import xarray as xr
from scipy import stats

__all__ = [
    "ConflictResult",
    "Diagnosis",
    "Thresholds",
    "convergence_table",
    "diagnose",
    "loo_per_modality",
    "modality_conflict",
    "posterior_predictive_checks",
]

_SAMPLE_DIMS = ("chain", "draw")


@dataclass(frozen=True)
class Thresholds:
    """Limits used by :func:`diagnose`; every one can be changed.

    Parameters
    ----------
    rhat : float, default 1.01
        Largest acceptable rank-normalized split R-hat (Vehtari et al. 2021, §4).
    ess_bulk, ess_tail : float, default 400
        Smallest acceptable bulk and tail effective sample size, summed over chains (Vehtari et
        al. 2021 recommend ≥ 100 per chain with 4 chains).
    divergences : int, default 0
        Largest acceptable number of divergent transitions after tuning (Betancourt 2017).
    ebfmi : float, default 0.3
        Smallest acceptable energy Bayesian fraction of missing information per chain
        (Betancourt 2016).
    treedepth_fraction : float, default 0.0
        Largest fraction of draws that may hit the maximum tree depth before a warning (an
        efficiency, not a validity, concern, as in Stan).
    mcse_over_sd : float or None, default None
        Largest acceptable Monte Carlo standard error of the mean relative to the posterior sd;
        None only reports it (ESS ≥ 400 already bounds it by 0.05).
    pareto_k : float or None, default None
        Pareto-k limit for PSIS; None uses ``min(1 − 1/log10(S), 0.7)`` for ``S`` draws (Vehtari
        et al. 2024, JMLR 25(72)).
    coverage_sigmas : float, default 3.0
        A modality warns when its 90 % posterior-predictive coverage is below ``0.9`` by more than
        this many binomial standard deviations ``√(0.09/n)``.
    conflict_alpha : float, default 0.01
        Family-wise level of the conflict test (Bonferroni over modalities).

    Examples
    --------
    >>> Thresholds(rhat=1.05).rhat
    1.05
    """

    rhat: float = 1.01
    ess_bulk: float = 400.0
    ess_tail: float = 400.0
    divergences: int = 0
    ebfmi: float = 0.3
    treedepth_fraction: float = 0.0
    mcse_over_sd: float | None = None
    pareto_k: float | None = None
    coverage_sigmas: float = 3.0
    conflict_alpha: float = 0.01

    def good_k(self, n_draws: int) -> float:
        """Return the Pareto-k limit for ``n_draws`` posterior draws.

        Examples
        --------
        >>> round(Thresholds().good_k(100), 3)
        0.5
        """
        if self.pareto_k is not None:
            return float(self.pareto_k)
        return float(min(1.0 - 1.0 / np.log10(max(n_draws, 11)), 0.7))


# -- helpers ---------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence numerical warnings of ArviZ/numpy; their content is reported as checks instead."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def _attrs_json(idata: Any, key: str) -> list[dict]:
    for group in ("posterior", "log_likelihood", "observed_data"):
        if group in idata.groups():
            raw = idata[group].attrs.get(key)
            if raw is None:
                continue
            try:
                value = json.loads(raw) if isinstance(raw, str) else raw
            except ValueError:
                return []
            return value if isinstance(value, list) else []
    return []


def latent_info(idata: Any) -> dict[str, dict]:
    """Return the latent variables recorded in the provenance (name → kind, shape, units, prior).

    Examples
    --------
    >>> import arviz as az, numpy as np
    >>> idata = az.from_dict(posterior={"x": np.zeros((1, 5))})
    >>> latent_info(idata)
    {}
    """
    return {d["name"]: d for d in _attrs_json(idata, "latent") if "name" in d}


def modality_info(idata: Any) -> dict[str, dict]:
    """Return the modalities recorded in the provenance (name → noise, units, n_data)."""
    return {d["name"]: d for d in _attrs_json(idata, "modalities") if "name" in d}


def modality_names(idata: Any, problem: Any = None) -> list[str]:
    """Return the modality names: from the problem, the provenance, or the log-likelihood."""
    if problem is not None:
        return list(problem.modalities)
    names = list(modality_info(idata))
    if names:
        return names
    for group in ("log_likelihood", "observed_data"):
        if group in idata.groups():
            return list(idata[group].data_vars)
    return []


def _role(name: str, latent: Mapping[str, dict], modalities: Sequence[str]) -> tuple[str, str]:
    """Return ``(group, role)`` of a posterior variable."""
    if name in latent:
        return name, str(latent[name].get("kind", "latent"))
    for suffix, role in (("_white", "whitened field"), ("_sigma", "prior sd")):
        stem = name[: -len(suffix)] if name.endswith(suffix) else None
        if stem and stem in latent:
            return stem, role
    for suffix, role in (
        ("_sigma", "noise sd"),
        ("_noise_scale", "noise scale"),
        ("_discrepancy_scale", "discrepancy scale"),
    ):
        stem = name[: -len(suffix)] if name.endswith(suffix) else None
        if stem and stem in modalities:
            return stem, role
    for suffix in ("_lengthscale", "_amplitude", "_basis"):  # a discrepancy process's variables
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], f"discrepancy {suffix[1:]}"
    return name, "latent" if not latent else "other"


def _element_labels(da: xr.DataArray) -> list[str]:
    dims = [d for d in da.dims if d not in _SAMPLE_DIMS]
    if not dims:
        return [str(da.name)]
    shape = [da.sizes[d] for d in dims]
    return [f"{da.name}[{', '.join(str(i) for i in idx)}]" for idx in np.ndindex(*shape)]


def _flat(da: xr.DataArray) -> np.ndarray:
    """Return ``(chain, draw, k)`` values of a variable, C-order over its other dims."""
    other = [d for d in da.dims if d not in _SAMPLE_DIMS]
    arr = da.transpose("chain", "draw", *other).values
    return arr.reshape(arr.shape[0], arr.shape[1], -1).astype(float)


def _numeric_vars(post: xr.Dataset, var_names: Sequence[str] | None) -> list[str]:
    names = list(post.data_vars) if var_names is None else list(var_names)
    missing = [n for n in names if n not in post]
    if missing:
        raise ValueError(
            f"var_names: {missing} not in the posterior; it has {list(post.data_vars)}"
        )
    return [n for n in names if np.issubdtype(post[n].dtype, np.number)]


class _Progress:
    """A progress bar on stderr (rich), or nothing."""

    def __init__(self, enabled: bool, total: int, label: str):
        self._bar = None
        if enabled:
            try:
                from rich.console import Console
                from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
            except ImportError:  # pragma: no cover - rich comes with PyMC
                return
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._bar.add_task(label, total=total)
            self._bar.start()

    def step(self, description: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=description)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# -- convergence -----------------------------------------------------------------------------
def convergence_table(
    idata: Any, var_names: Sequence[str] | None = None, thresholds: Thresholds | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return convergence diagnostics per variable and per element.

    Parameters
    ----------
    idata : arviz.InferenceData
        Needs a ``posterior`` group.
    var_names : sequence of str, optional
        Posterior variables to check (default: all numeric ones).
    thresholds : Thresholds, optional

    Returns
    -------
    table : pandas.DataFrame
        One row per variable (index ``variable``): ``group`` (the latent variable or modality it
        belongs to), ``role``, ``size``, ``rhat_max``, ``ess_bulk_min``, ``ess_tail_min``,
        ``mcse_mean_max``, ``mcse_sd_max``, ``mcse_over_sd_max``, ``status``; sorted by group.
    elements : pandas.DataFrame
        One row per element (index ``label``, e.g. ``'density[3]'``): ``variable``, ``mean``,
        ``sd``, ``rhat``, ``ess_bulk``, ``ess_tail``, ``mcse_mean``, ``mcse_sd``.

    Notes
    -----
    R-hat is the rank-normalized, folded, split R-hat and ESS the bulk and tail effective sample
    sizes of Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), *Rank-normalization, folding,
    and localization: an improved R-hat for assessing convergence of MCMC*, Bayesian Analysis
    16(2), 667–718, as computed by ArviZ. Elements that are constant across draws (R-hat NaN)
    are not held against the run.

    Examples
    --------
    >>> import arviz as az, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> idata = az.from_dict(posterior={"x": rng.normal(size=(4, 500, 3))})
    >>> table, elements = convergence_table(idata)
    >>> table.loc["x", "status"], len(elements)
    ('ok', 3)
    """
    thr = thresholds or Thresholds()
    if "posterior" not in idata.groups():
        raise ValueError("the InferenceData has no posterior group; nothing to diagnose")
    post = idata.posterior
    names = _numeric_vars(post, var_names)
    latent = latent_info(idata)
    mods = modality_names(idata)
    with _quiet():
        subset = post[names]
        rhat = az.rhat(subset)
        ess_bulk = az.ess(subset, method="bulk")
        ess_tail = az.ess(subset, method="tail")
        mcse_mean = az.mcse(subset, method="mean")
        mcse_sd = _mcse_sd(subset)
    rows, elements = [], []
    for name in names:
        da = post[name]
        values = _flat(da)
        mean = values.mean(axis=(0, 1))
        sd = values.std(axis=(0, 1), ddof=1) if values.shape[0] * values.shape[1] > 1 else mean * 0
        per = {
            "rhat": np.asarray(rhat[name].values, float).ravel(),
            "ess_bulk": np.asarray(ess_bulk[name].values, float).ravel(),
            "ess_tail": np.asarray(ess_tail[name].values, float).ravel(),
            "mcse_mean": np.asarray(mcse_mean[name].values, float).ravel(),
            "mcse_sd": np.asarray(mcse_sd[name].values, float).ravel(),
        }
        constant = ~(sd > 0)
        for key in per:
            per[key] = np.where(constant, np.nan, per[key])
        labels = _element_labels(da)
        for i, label in enumerate(labels):
            elements.append(
                {"label": label, "variable": name, "mean": mean[i], "sd": sd[i]}
                | {k: v[i] for k, v in per.items()}
            )
        with _quiet():
            ratio = np.where(constant, np.nan, per["mcse_mean"] / np.where(constant, 1.0, sd))
            row = {
                "variable": name,
                "size": len(labels),
                "rhat_max": np.nanmax(per["rhat"]) if not constant.all() else np.nan,
                "ess_bulk_min": np.nanmin(per["ess_bulk"]) if not constant.all() else np.nan,
                "ess_tail_min": np.nanmin(per["ess_tail"]) if not constant.all() else np.nan,
                "mcse_mean_max": np.nanmax(per["mcse_mean"]) if not constant.all() else np.nan,
                "mcse_sd_max": np.nanmax(per["mcse_sd"]) if not constant.all() else np.nan,
                "mcse_over_sd_max": np.nanmax(ratio) if not constant.all() else np.nan,
            }
        row["group"], row["role"] = _role(name, latent, mods)
        bad = []
        if row["rhat_max"] > thr.rhat:
            bad.append("R-hat")
        if row["ess_bulk_min"] < thr.ess_bulk or row["ess_tail_min"] < thr.ess_tail:
            bad.append("ESS")
        if thr.mcse_over_sd is not None and row["mcse_over_sd_max"] > thr.mcse_over_sd:
            bad.append("MCSE")
        row["status"] = "ok" if not bad else "fail: " + ", ".join(bad)
        rows.append(row)
    columns = [
        "group",
        "role",
        "size",
        "rhat_max",
        "ess_bulk_min",
        "ess_tail_min",
        "mcse_mean_max",
        "mcse_sd_max",
        "mcse_over_sd_max",
        "status",
    ]
    table = pd.DataFrame(rows).set_index("variable")[columns]
    order = {g: i for i, g in enumerate(dict.fromkeys([*latent, *table["group"]]))}
    table = table.iloc[sorted(range(len(table)), key=lambda i: (order[table["group"].iloc[i]], i))]
    element_table = pd.DataFrame(elements).set_index("label")
    return table, element_table


def _mcse_sd(post: xr.Dataset) -> xr.Dataset:
    """Return the Monte Carlo standard error of the posterior sd of every element.

    The delta-method estimate of Vehtari et al. (2021, §A), as in ArviZ:
    ``√(Var[c²] / ESS(c²) / (4 E[c²]))`` with ``c`` the centred draws (computed here because
    ArviZ 0.23's own version fails under numba with numpy 2).
    """
    centred = (post - post.mean(_SAMPLE_DIMS)) ** 2
    ess = az.ess(centred, method="mean")
    evar = centred.mean(_SAMPLE_DIMS)
    varvar = ((centred**2).mean(_SAMPLE_DIMS) - evar**2) / ess
    return np.sqrt(varvar / evar / 4.0)


def _sampler_stats(idata: Any, thr: Thresholds) -> tuple[dict[str, Any], list[dict]]:
    """Return sampler facts and checks (divergences, E-BFMI, tree depth)."""
    facts: dict[str, Any] = {}
    checks: list[dict] = []
    post = idata.posterior
    facts["chains"] = int(post.sizes.get("chain", 1))
    facts["draws"] = int(post.sizes.get("draw", 0))
    if "sample_stats" not in idata.groups():
        checks.append(
            _check(
                "sampler",
                "run",
                "n/a",
                None,
                None,
                "no sample_stats group: divergences, E-BFMI and tree depth not checked",
            )
        )
        return facts, checks
    ss = idata.sample_stats
    if "diverging" in ss:
        n_div = int(np.asarray(ss["diverging"].values).sum())
        facts["divergences"] = n_div
        status = "fail" if n_div > thr.divergences else "ok"
        total = facts["chains"] * facts["draws"]
        checks.append(
            _check(
                "divergences",
                "run",
                status,
                n_div,
                f"<= {thr.divergences}",
                f"{n_div} divergent transition(s) in {total} draws"
                + (
                    ": the sampler missed part of the posterior; raise target_accept or "
                    "reparameterize"
                    if status == "fail"
                    else ""
                ),
            )
        )
    if "energy" in ss:
        with _quiet():
            bfmi = np.atleast_1d(np.asarray(az.bfmi(idata), float))
        facts["ebfmi"] = bfmi.tolist()
        low = np.flatnonzero(bfmi < thr.ebfmi)
        checks.append(
            _check(
                "E-BFMI",
                "run",
                "fail" if low.size else "ok",
                float(np.min(bfmi)),
                f">= {thr.ebfmi}",
                f"E-BFMI min {np.min(bfmi):.2f}"
                + (
                    f" (chains {low.tolist()} below {thr.ebfmi}: heavy-tailed energy, poor "
                    "exploration)"
                    if low.size
                    else ""
                ),
            )
        )
    hit = None
    if "reached_max_treedepth" in ss:
        hit = np.asarray(ss["reached_max_treedepth"].values, bool)
    elif "tree_depth" in ss and "max_treedepth" in ss.attrs:
        hit = np.asarray(ss["tree_depth"].values) >= int(ss.attrs["max_treedepth"])
    if hit is not None:
        frac = float(hit.mean()) if hit.size else 0.0
        facts["treedepth_fraction"] = frac
        checks.append(
            _check(
                "tree depth",
                "run",
                "warn" if frac > thr.treedepth_fraction else "ok",
                frac,
                f"<= {thr.treedepth_fraction:g}",
                f"{int(hit.sum())} of {hit.size} draws hit the maximum tree depth"
                + (" (inefficient: raise max_treedepth or reparameterize)" if hit.any() else ""),
            )
        )
    return facts, checks


def _check(
    name: str, scope: str, status: str, value: Any, threshold: Any, message: str
) -> dict[str, Any]:
    return {
        "check": name,
        "scope": scope,
        "status": status,
        "value": value,
        "threshold": threshold,
        "message": message,
    }


# -- per-modality checks ---------------------------------------------------------------------
def loo_per_modality(idata: Any, modalities: Sequence[str] | None = None) -> dict[str, Any]:
    """Return PSIS-LOO (:func:`arviz.loo`) of each modality from its own log-likelihood.

    Parameters
    ----------
    idata : arviz.InferenceData
        Needs a ``log_likelihood`` group with one variable per modality.
    modalities : sequence of str, optional
        Default: every variable of ``log_likelihood``.

    Returns
    -------
    dict of str to arviz.ELPDData
        With ``elpd_loo``, ``se``, ``p_loo``, pointwise ``loo_i`` and ``pareto_k``.

    Notes
    -----
    Each modality's ``elpd_loo = Σ_i log p(d_i | d_{−i})`` leaves out one datum at a time from
    the *joint* posterior (all modalities), estimated by Pareto-smoothed importance sampling
    (Vehtari, Gelman & Gabry 2017, Stat. Comput. 27, 1413). ArviZ's warnings about large
    Pareto k are silenced here: :func:`diagnose` reports them per modality. A modality with a
    full noise covariance has one log-likelihood value per draw, so its LOO leaves out the whole
    block.

    Examples
    --------
    >>> import arviz as az, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> idata = az.from_dict(posterior={"x": rng.normal(size=(2, 200))},
    ...                      log_likelihood={"a": rng.normal(size=(2, 200, 3)) - 1.0})
    >>> sorted(loo_per_modality(idata))
    ['a']
    """
    if "log_likelihood" not in idata.groups():
        raise ValueError(
            "the InferenceData has no log_likelihood group; sample with "
            "idata_kwargs={'log_likelihood': True} (JointInversion.sample does by default)"
        )
    ll = idata.log_likelihood
    names = list(ll.data_vars) if modalities is None else list(modalities)
    out = {}
    for name in names:
        if name not in ll:
            raise ValueError(f"no log-likelihood for modality {name!r}; have {list(ll.data_vars)}")
        data = idata
        if all(d in _SAMPLE_DIMS for d in ll[name].dims):  # one value per draw: a single block
            data = az.InferenceData(
                posterior=idata.posterior,
                log_likelihood=xr.Dataset({name: ll[name].expand_dims(f"{name}_block", -1)}),
            )
        with _quiet():
            out[name] = az.loo(data, var_name=name, pointwise=True)
    return out


def posterior_predictive_checks(
    idata: Any, modalities: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Return standardized residuals and 90 % interval coverage of each modality's data.

    Parameters
    ----------
    idata : arviz.InferenceData
        Needs ``observed_data`` and ``posterior_predictive`` with one variable per modality
        (:meth:`bayesjoint.JointInversion.sample_posterior_predictive`).
    modalities : sequence of str, optional

    Returns
    -------
    dict of str to dict
        Per modality: ``residual`` (standardized residuals ``(d − E[y_rep]) / sd[y_rep]``, on the
        data's dims), ``mean``, ``lower``, ``upper`` (5 % and 95 % quantiles of ``y_rep``),
        ``coverage90``, ``rms_residual``, ``max_abs_residual``, ``n_data``.

    Notes
    -----
    ``y_rep`` includes the posterior uncertainty and the noise, so under a well-specified model
    the standardized residuals have mean square at most 1 and at least about 90 % of data lie in
    their central 90 % posterior-predictive interval (more, because the data were used to fit:
    Gelman et al. 2013, *Bayesian Data Analysis*, 3rd ed., §6.3).

    Examples
    --------
    >>> import arviz as az, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> idata = az.from_dict(posterior_predictive={"a": rng.normal(size=(2, 500, 50))},
    ...                      observed_data={"a": rng.normal(size=50)})
    >>> bool(posterior_predictive_checks(idata)["a"]["coverage90"] > 0.75)
    True
    """
    for group in ("posterior_predictive", "observed_data"):
        if group not in idata.groups():
            raise ValueError(
                f"the InferenceData has no {group} group; run "
                "problem.sample_posterior_predictive(idata) first"
            )
    pp, obs = idata.posterior_predictive, idata.observed_data
    names = [n for n in (modalities or list(pp.data_vars)) if n in pp and n in obs]
    out = {}
    for name in names:
        rep = pp[name]
        d = obs[name]
        with _quiet():
            mean = rep.mean(_SAMPLE_DIMS)
            sd = rep.std(_SAMPLE_DIMS, ddof=1)
            lower = rep.quantile(0.05, dim=_SAMPLE_DIMS).drop_vars("quantile")
            upper = rep.quantile(0.95, dim=_SAMPLE_DIMS).drop_vars("quantile")
            resid = (d - mean) / sd
        inside = ((d >= lower) & (d <= upper)).values
        r = np.asarray(resid.values, float)
        out[name] = {
            "residual": resid,
            "mean": mean,
            "lower": lower,
            "upper": upper,
            "coverage90": float(np.mean(inside)),
            "rms_residual": float(np.sqrt(np.nanmean(r**2))),
            "max_abs_residual": float(np.nanmax(np.abs(r))),
            "n_data": int(d.size),
        }
    return out


# -- conflict --------------------------------------------------------------------------------
@dataclass
class ConflictResult:
    """Outcome of :func:`modality_conflict`.

    Attributes
    ----------
    table : pandas.DataFrame
        Per modality (index): ``method`` (``exact``, ``importance``, ``refit`` or
        ``unavailable``), ``pareto_k`` (of the leave-modality-out weights), ``statistic``,
        ``dof``, ``p_value`` (predictive test of the modality's data against the posterior of the
        others), ``max_abs_shift_sd`` (largest shift of a latent posterior mean when the modality
        is left out, in sds of the posterior without it), ``max_abs_shift_z`` (the same shift over
        its expected sd under agreement, ``√(var₋ₖ − var)``), ``status``.
    shifts : xarray.DataArray or None
        ``(mean_all − mean_without_k) / sd_without_k`` on dims ``(modality, parameter)``.
    conflicting : str or None
        The modality whose data disagree most with the others (when the test rejects).
    message : str
        One line for humans.
    alpha : float
        Family-wise level used.
    named : list of str
        Every modality named in turn (exact path: the most surprising one is left out and the
        rest tested again while three or more remain).
    tension : list of str
        Modalities that disagree with the rest but cannot be singled out (e.g. the last two).
    """

    table: pd.DataFrame
    shifts: xr.DataArray | None
    conflicting: str | None
    message: str
    alpha: float
    named: list[str] = field(default_factory=list)
    tension: list[str] = field(default_factory=list)


def _stacked_latent(idata: Any, problem: Any) -> tuple[np.ndarray, list[str]]:
    """Return ``(S, n)`` draws of the latent model and labels (problem order, or provenance)."""
    post = idata.posterior
    if problem is not None:
        stacked = problem.stack_latent(post[list(problem.latent)])
        values = stacked.values.reshape(-1, stacked.sizes["parameter"])
        return values, list(stacked["parameter"].values)
    names = [n for n in latent_info(idata) if n in post] or [
        n for n in post.data_vars if np.issubdtype(post[n].dtype, np.number)
    ]
    pieces, labels = [], []
    for n in names:
        flat = _flat(post[n])
        pieces.append(flat.reshape(-1, flat.shape[-1]))
        labels.extend(_element_labels(post[n]))
    return np.concatenate(pieces, axis=1), labels


def _block_loglik(idata: Any, name: str) -> np.ndarray:
    da = idata.log_likelihood[name]
    other = [d for d in da.dims if d not in _SAMPLE_DIMS]
    return da.sum(other).transpose("chain", "draw").values.ravel().astype(float)


def _psis_weights(log_ratio: np.ndarray, chains: int) -> tuple[np.ndarray, float]:
    """Return normalized PSIS weights for ``exp(log_ratio)`` and the Pareto k."""
    with _quiet():
        shifted = np.exp(log_ratio - np.max(log_ratio))
        per_chain = shifted.reshape(chains, -1)
        ess = float(az.ess(per_chain, method="mean"))
        reff = float(np.clip(ess / log_ratio.size, 0.05, 1.0)) if np.isfinite(ess) else 1.0
        lw, k = az.psislw(log_ratio.copy(), reff=reff)
    w = np.exp(np.asarray(lw, float) - np.max(lw))
    return w / w.sum(), float(np.asarray(k))


def _weighted_moments(values: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = w @ values
    var = w @ (values - mean) ** 2
    return mean, var


def _satterthwaite(e: np.ndarray, cov: np.ndarray) -> tuple[float, float, float]:
    """Diagonal predictive statistic with a scaled-χ² reference (Box 1954).

    ``T = Σ e_i² / S_ii``; with ``R`` the correlation matrix of ``S``, ``T ≈ c χ²_ν`` with
    ``c = ‖R‖²_F / m`` and ``ν = m² / ‖R‖²_F``. Robust when ``S`` is estimated from draws.
    """
    diag = np.diag(cov)
    t = float(np.sum(e**2 / diag))
    corr = cov / np.sqrt(np.outer(diag, diag))
    fro2 = float(np.sum(corr**2))
    m = e.size
    c, nu = fro2 / m, m**2 / fro2
    return t, nu, float(stats.chi2.sf(t / c, nu))


def _noise_cov(mod: Any, idata: Any) -> np.ndarray:
    from bayesjoint.linearize import noise_factor

    factor = noise_factor(mod, idata)
    return np.diag(factor**2) if factor.ndim == 1 else factor @ factor.T


def _predictions(problem: Any, name: str, draws: np.ndarray) -> np.ndarray:
    from bayesjoint.linearize import prediction_function

    f = prediction_function(problem, name)
    return np.stack([f(m) for m in draws])


def _exact_conflict(
    problem: Any, exclude: Sequence[str] = ()
) -> tuple[list[dict], np.ndarray, np.ndarray]:
    from bayesjoint.linear import LinearGaussianSystem

    system = problem.linear_gaussian_system()
    if exclude:
        keep = [j for j, n in enumerate(system.modalities) if n not in exclude]
        system = LinearGaussianSystem(
            labels=system.labels,
            latent_of=system.latent_of,
            prior_mean=system.prior_mean,
            prior_factor=system.prior_factor,
            modalities=[system.modalities[j] for j in keep],
            operators=[system.operators[j] for j in keep],
            residuals=[system.residuals[j] for j in keep],
        )
    full = system.posterior()
    mean_all, sd_all = full["mean"].values, full["sd"].values
    rows, shifts = [], []
    for k, name in enumerate(system.modalities):
        if name not in problem.modalities:
            continue  # a coupling's Gaussian factor, not a modality
        keep = [j for j in range(len(system.modalities)) if j != k]
        sub = LinearGaussianSystem(
            labels=system.labels,
            latent_of=system.latent_of,
            prior_mean=system.prior_mean,
            prior_factor=system.prior_factor,
            modalities=[system.modalities[j] for j in keep],
            operators=[system.operators[j] for j in keep],
            residuals=[system.residuals[j] for j in keep],
        )
        post = sub.posterior()
        mean_k, cov_k, sd_k = post["mean"].values, post["cov"].values, post["sd"].values
        g, r = system.operators[k], system.residuals[k]
        e = r - g @ mean_k
        s = g @ cov_k @ g.T + np.eye(e.size)
        chol = sla.cholesky(0.5 * (s + s.T), lower=True)
        u = sla.solve_triangular(chol, e, lower=True)
        chi2 = float(u @ u)
        shift = (mean_all - mean_k) / sd_k
        z = (mean_all - mean_k) / np.sqrt(np.clip(sd_k**2 - sd_all**2, 1e-300, None))
        rows.append(
            {
                "modality": name,
                "method": "exact",
                "pareto_k": np.nan,
                "statistic": chi2,
                "dof": float(e.size),
                "p_value": float(stats.chi2.sf(chi2, e.size)),
                "max_abs_shift_sd": float(np.max(np.abs(shift))),
                "max_abs_shift_z": float(np.max(np.abs(z))),
            }
        )
        shifts.append(shift)
    return rows, np.asarray(shifts), np.asarray(list(full["parameter"].values))


def modality_conflict(
    idata: Any = None,
    problem: Any = None,
    *,
    method: str = "auto",
    alpha: float = 0.01,
    pareto_k: float | None = None,
    max_draws: int = 1000,
    refit_kwargs: Mapping[str, Any] | None = None,
    progressbar: bool = False,
    random_seed: int | None = None,
) -> ConflictResult:
    """Check whether each modality's data agree with the posterior from the other modalities.

    Parameters
    ----------
    idata : arviz.InferenceData, optional
        Posterior draws with ``log_likelihood`` (not needed for ``method="exact"``).
    problem : JointInversion, optional
        Enables the exact path (linear-Gaussian problems), predictions of the left-out data and
        refits.
    method : {"auto", "exact", "importance", "refit"}
        ``auto``: exact when the problem is linear-Gaussian, else importance reweighting where
        Pareto k allows and a refit (given ``problem``) where it does not.
    alpha : float, default 0.01
        Family-wise level; each modality is tested at ``alpha / K``.
    pareto_k : float, optional
        Largest acceptable Pareto k of the leave-modality-out weights (default
        ``min(1 − 1/log10 S, 0.7)``).
    max_draws : int, default 1000
        Draws (evenly thinned) used to predict the left-out data.
    refit_kwargs : mapping, optional
        Passed to :meth:`JointInversion.sample` for refits (default: the run's draws, tune and
        chains from the provenance, ``random_seed``).
    progressbar : bool, default False
        Show progress of the refits.
    random_seed : int, optional
        Seed of the refits.

    Returns
    -------
    ConflictResult

    Notes
    -----
    Leaving modality ``k`` out gives the posterior ``p(m | d_{−k})``. Its **predictive check** of
    the left-out data (a cross-validatory conflict diagnostic: Marshall & Spiegelhalter 2007,
    Bayesian Analysis 2, 409; Presanis et al. 2013, Stat. Sci. 28, 376) uses the innovation
    ``e = d_k − E[f_k(m) | d_{−k}]`` with covariance ``S = Cov[f_k(m) | d_{−k}] + Σ_k``:

    - exact (linear-Gaussian): ``χ² = eᵀ S⁻¹ e`` is χ² with ``m_k`` degrees of freedom when all
      data share one truth;
    - from draws (importance or refit): ``T = Σ_i e_i² / S_ii`` against a scaled χ² with
      matched first two moments (Box 1954, Ann. Math. Stat. 25, 290), robust to the noise of a
      covariance estimated from draws. Without the problem, ``S`` comes from the
      ``posterior_predictive`` group; without either, only the shifts are reported.

    The posterior without ``k`` is obtained by Pareto-smoothed importance sampling of the joint
    draws with weights ``1 / p(d_k | m)`` (Vehtari et al. 2024, JMLR 25(72)), trusted when its
    Pareto k is below the limit, or by sampling the problem without ``k``. The **shifts** are
    ``(mean − mean₋ₖ) / sd₋ₖ`` per latent element; under agreement (linear-Gaussian) the shift
    ``mean − mean₋ₖ`` has sd ``√(sd₋ₖ² − sd²)``, which ``max_abs_shift_z`` uses.

    A modality is in conflict when its p-value is below ``alpha / K``; the one named is the most
    surprising of those. With two modalities a conflict cannot be pinned on either, and the
    message says so.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> x = bj.Parameter("x", prior=bj.priors.Normal(0.0, 10.0))
    >>> mods = [bj.Modality(n, physics=bj.physics.Linear([[1.0]], input="x"), data=[v],
    ...                     noise=bj.noise.Gaussian(0.1)) for n, v in [("a", 1.0), ("b", 1.05),
    ...                                                            ("c", 3.0)]]
    >>> result = modality_conflict(problem=bj.JointInversion(latent=[x], modalities=mods))
    >>> result.conflicting
    'c'
    """
    if method not in ("auto", "exact", "importance", "refit"):
        raise ValueError(f"method={method!r}; choose 'auto', 'exact', 'importance' or 'refit'")
    if idata is None and problem is None:
        raise ValueError("give idata (posterior draws) and/or problem")
    exact_ok = False
    if problem is not None and method in ("auto", "exact"):
        try:
            problem.linear_gaussian_system()
            exact_ok = True
        except ValueError as err:
            if method == "exact":
                raise ValueError(f"method='exact' needs a linear-Gaussian problem: {err}") from None
    if exact_ok:
        rows, shift_arr, labels = _exact_conflict(problem)
        names = [r["modality"] for r in rows]
    else:
        if idata is None or "log_likelihood" not in idata.groups():
            raise ValueError(
                "the conflict check from draws needs an InferenceData with a log_likelihood "
                "group (or a linear-Gaussian problem for the exact check)"
            )
        rows, shift_arr, labels, names = _sampled_conflict(
            idata,
            problem,
            method=method,
            pareto_k=pareto_k,
            max_draws=max_draws,
            refit_kwargs=refit_kwargs,
            progressbar=progressbar,
            random_seed=random_seed,
        )
    table = pd.DataFrame(rows).set_index("modality") if rows else pd.DataFrame()
    named: list[str] = []
    tension: list[str] = []
    if len(table):
        k_tested = int(table["p_value"].notna().sum())
        level = alpha / max(k_tested, 1)
        flagged = _flagged(table, level)
        if exact_ok:
            # Name the most surprising modality, leave it out, test the rest again; repeat while
            # three or more remain (with two, a disagreement cannot be pinned on either).
            current, remaining = table, list(table.index)
            while flagged and len(remaining) >= 3:
                worst = _most_surprising(current, flagged)
                named.append(worst)
                remaining.remove(worst)
                current = pd.DataFrame(_exact_conflict(problem, exclude=named)[0]).set_index(
                    "modality"
                )
                flagged = _flagged(current, level)
            tension = list(flagged)
        elif flagged:
            if len(flagged) == 1 or len(names) >= 3:
                named = [_most_surprising(table, flagged)]
            tension = [n for n in flagged if n not in named]
            if len(names) == 2:
                named, tension = [], list(flagged)
        statuses = []
        for name in table.index:
            row = table.loc[name]
            if row["method"] == "unavailable":
                statuses.append("unreliable")
            elif not np.isfinite(row["p_value"]):
                statuses.append("n/a")
            elif name in named:
                statuses.append("conflict")
            elif name in tension:
                statuses.append("tension")
            else:
                statuses.append("ok")
        table["status"] = statuses
    conflicting = named[0] if named else None
    message = _conflict_message(table, named, tension, alpha, len(names), retested=exact_ok)
    shifts = None
    if shift_arr is not None and len(shift_arr):
        shifts = xr.DataArray(
            np.asarray(shift_arr, float),
            dims=("modality", "parameter"),
            coords={"modality": names, "parameter": list(labels)},
            name="shift",
            attrs={"units": "posterior sd (without the modality)"},
        )
    return ConflictResult(
        table=table,
        shifts=shifts,
        conflicting=conflicting,
        message=message,
        alpha=alpha,
        named=named,
        tension=tension,
    )


def _flagged(table: pd.DataFrame, level: float) -> list[str]:
    p = table["p_value"].to_numpy(dtype=float)
    return [n for n, v in zip(table.index, p, strict=True) if np.isfinite(v) and v < level]


def _most_surprising(table: pd.DataFrame, flagged: Sequence[str]) -> str:
    return min(flagged, key=lambda n: (table.loc[n, "p_value"], -_excess(table, n)))


def _excess(table: pd.DataFrame, name: str) -> float:
    row = table.loc[name]
    return float((row["statistic"] - row["dof"]) / math.sqrt(2 * max(row["dof"], 1)))


def _conflict_message(
    table: pd.DataFrame,
    named: list[str],
    tension: list[str],
    alpha: float,
    k: int,
    retested: bool = True,
) -> str:
    if k < 2:
        return "one modality only: nothing to compare"
    if not len(table):
        return "conflict check not possible"
    unreliable = [n for n in table.index if table.loc[n, "status"] == "unreliable"]
    tail = (
        f"; not checked (Pareto k too large, pass problem= to refit): {', '.join(unreliable)}"
        if unreliable
        else ""
    )
    tested = [n for n in table.index if table.loc[n, "status"] in ("ok", "conflict", "tension")]
    if not tested:
        return (
            "conflict not checked: the leave-one-modality-out importance weights are unreliable "
            "(Pareto k too large); run bj.diagnose(idata, problem=problem) to refit"
        )
    if not named and not tension:
        return f"no conflict between modalities at family-wise level {alpha:g}" + tail
    parts = []
    for name in named:
        row = table.loc[name]
        parts.append(
            f"modality {name!r} disagrees with the others: its data are improbable under the "
            f"posterior from the other modalities (p = {row['p_value']:.2g} < {alpha:g}/{k}; "
            f"leaving it out shifts a latent mean by up to {row['max_abs_shift_sd']:.1f} "
            "posterior sd)"
        )
    if tension:
        who = " and ".join(repr(n) for n in tension)
        parts.append(
            f"{who} {'also ' if named else ''}disagree{'s' if len(tension) == 1 else ''} "
            "with the rest"
            + (
                f" (perhaps only through {named[0]!r}; not re-tested without it)"
                if named and not retested
                else " (with two modalities left the culprit cannot be told apart)"
                if len(tension) == 2
                else ""
            )
        )
    return "; ".join(parts) + tail


def _sampled_conflict(
    idata: Any,
    problem: Any,
    *,
    method: str,
    pareto_k: float | None,
    max_draws: int,
    refit_kwargs: Mapping[str, Any] | None,
    progressbar: bool,
    random_seed: int | None,
) -> tuple[list[dict], np.ndarray | None, list[str], list[str]]:
    post = idata.posterior
    chains = int(post.sizes["chain"])
    values, labels = _stacked_latent(idata, problem)
    s_total = values.shape[0]
    limit = Thresholds(pareto_k=pareto_k).good_k(s_total)
    mean_all = values.mean(axis=0)
    var_all = values.var(axis=0, ddof=1)
    names = [n for n in modality_names(idata, problem) if n in idata.log_likelihood]
    thin = np.unique(np.linspace(0, s_total - 1, min(max_draws, s_total)).round().astype(int))
    pp = idata.posterior_predictive if "posterior_predictive" in idata.groups() else None
    obs = idata.observed_data if "observed_data" in idata.groups() else None
    rows, shifts = [], []
    bar = _Progress(progressbar and problem is not None, len(names), "conflict check")
    try:
        for name in names:
            bar.step(f"conflict: leaving out {name}")
            if len(names) < 2:
                break
            w, k_hat = _psis_weights(-_block_loglik(idata, name), chains)
            use = "importance"
            if method == "refit" or (method == "auto" and not k_hat <= limit):
                use = "refit" if problem is not None else "unavailable"
            row = {"modality": name, "method": use, "pareto_k": k_hat}
            if use == "unavailable":
                rows.append(row | _nan_stats())
                shifts.append(np.full(values.shape[1], np.nan))
                continue
            if use == "refit":
                draws_k, w_k = _refit_without(
                    problem, idata, name, refit_kwargs, progressbar, random_seed
                )
            else:
                draws_k, w_k = values, w
            mean_k, var_k = _weighted_moments(draws_k, w_k)
            sd_k = np.sqrt(var_k)
            with _quiet():
                shift = (mean_all - mean_k) / sd_k
                z = (mean_all - mean_k) / np.sqrt(np.clip(var_k - var_all, 1e-300, None))
            informed = var_k > 1.1 * var_all  # the modality removes >= 10 % of the variance
            row["max_abs_shift_sd"] = float(np.nanmax(np.abs(shift)))
            row["max_abs_shift_z"] = (
                float(np.nanmax(np.abs(z[informed]))) if informed.any() else np.nan
            )
            stat = _predictive_stat(
                problem, idata, name, draws_k, w_k, thin if use == "importance" else None, pp, obs
            )
            row.update(stat)
            rows.append(row)
            shifts.append(shift)
    finally:
        bar.close()
    return rows, (np.asarray(shifts) if shifts else None), labels, names


def _nan_stats() -> dict[str, float]:
    return {
        "statistic": np.nan,
        "dof": np.nan,
        "p_value": np.nan,
        "max_abs_shift_sd": np.nan,
        "max_abs_shift_z": np.nan,
    }


def _predictive_stat(
    problem: Any,
    idata: Any,
    name: str,
    draws: np.ndarray,
    w: np.ndarray,
    thin: np.ndarray | None,
    pp: Any,
    obs: Any,
) -> dict[str, float]:
    """Return the predictive test of modality ``name``'s data under weighted draws."""
    if thin is not None:
        draws, w = draws[thin], w[thin] / w[thin].sum()
    if problem is not None:
        mod = problem.modalities[name]
        pred = _predictions(problem, name, draws)
        mean = w @ pred
        centred = pred - mean
        cov = (centred * w[:, None]).T @ centred + _noise_cov(mod, idata)
        data = mod.data.ravel()
    elif pp is not None and obs is not None and name in pp and name in obs:
        rep = _flat(pp[name]).reshape(-1, int(np.prod(pp[name].shape[2:], dtype=int)))
        if thin is not None:
            rep = rep[thin]
        mean = w @ rep
        centred = rep - mean
        cov = (centred * w[:, None]).T @ centred
        data = np.asarray(obs[name].values, float).ravel()
    else:
        return {"statistic": np.nan, "dof": np.nan, "p_value": np.nan}
    t, nu, p = _satterthwaite(data - mean, cov)
    return {"statistic": t, "dof": nu, "p_value": p}


def _refit_without(
    problem: Any,
    idata: Any,
    name: str,
    refit_kwargs: Mapping[str, Any] | None,
    progressbar: bool,
    random_seed: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    from bayesjoint.joint import JointInversion

    others = [m for n, m in problem.modalities.items() if n != name]
    sub = JointInversion(
        latent=list(problem.latent.values()), modalities=others, couplings=problem.couplings
    )
    attrs = idata.posterior.attrs
    kwargs: dict[str, Any] = {
        "draws": int(attrs.get("draws", idata.posterior.sizes["draw"])),
        "tune": int(attrs.get("tune", 1000)),
        "chains": int(attrs.get("chains", idata.posterior.sizes["chain"])),
        "random_seed": random_seed if random_seed is not None else 0,
        "progressbar": progressbar,
    }
    kwargs.update(refit_kwargs or {})
    refit = sub.sample(**kwargs)
    draws = problem.stack_latent(refit.posterior[list(problem.latent)])
    values = draws.values.reshape(-1, draws.sizes["parameter"])
    return values, np.full(values.shape[0], 1.0 / values.shape[0])


# -- the verdict -----------------------------------------------------------------------------
@dataclass
class Diagnosis:
    """Outcome of :func:`diagnose`.

    Attributes
    ----------
    verdict : str
        ``"pass"``, ``"warn"`` (usable, with caveats) or ``"fail"``.
    reasons : list of str
        Why, failures first.
    checks : pandas.DataFrame
        Every check: ``check``, ``scope``, ``status`` (ok/warn/fail/n/a), ``value``,
        ``threshold``, ``message``.
    table : pandas.DataFrame
        Convergence per posterior variable, grouped by latent variable
        (:func:`convergence_table`).
    elements : pandas.DataFrame
        Convergence per element.
    modalities : pandas.DataFrame
        Per modality: ``n_data``, ``elpd_loo``, ``elpd_loo_se``, ``p_loo``, ``pareto_k_max``,
        ``n_pareto_k_bad``, ``coverage90``, ``rms_residual``, ``max_abs_residual``, ``status``.
    loo : dict of str to arviz.ELPDData
    predictive : dict of str to dict
        :func:`posterior_predictive_checks` output (empty when no posterior predictive).
    conflict : ConflictResult or None
    sampler : dict
        Chains, draws, divergences, E-BFMI per chain, tree-depth fraction.
    thresholds : Thresholds
    notes : list of str
        What could not be checked, and why.
    """

    verdict: str
    reasons: list[str]
    checks: pd.DataFrame
    table: pd.DataFrame
    elements: pd.DataFrame
    modalities: pd.DataFrame
    loo: dict[str, Any] = field(default_factory=dict)
    predictive: dict[str, dict] = field(default_factory=dict)
    conflict: ConflictResult | None = None
    sampler: dict[str, Any] = field(default_factory=dict)
    thresholds: Thresholds = field(default_factory=Thresholds)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True unless the verdict is ``"fail"``."""
        return self.verdict != "fail"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serializable summary (verdict, reasons, tables as records)."""

        def records(df: pd.DataFrame) -> list[dict]:
            if df is None or not len(df):
                return []
            out = df.reset_index().to_dict(orient="records")
            return [{k: _jsonable(v) for k, v in r.items()} for r in out]

        return {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "sampler": {k: _jsonable(v) for k, v in self.sampler.items()},
            "thresholds": dataclasses.asdict(self.thresholds),
            "checks": records(self.checks),
            "variables": records(self.table),
            "modalities": records(self.modalities),
            "conflict": None
            if self.conflict is None
            else {
                "conflicting": self.conflict.conflicting,
                "message": self.conflict.message,
                "table": records(self.conflict.table),
            },
        }

    def __str__(self) -> str:
        return self.to_text()

    def to_text(self) -> str:
        """Return the human-readable report printed by ``bayesjoint diagnose``."""
        thr = self.thresholds
        lines = [f"verdict: {self.verdict.upper()}"]
        lines += [f"  - {r}" for r in self.reasons] or ["  - every check passed"]
        s = self.sampler
        lines.append("")
        lines.append(
            f"convergence (Vehtari et al. 2021: split R-hat <= {thr.rhat:g}, bulk and tail ESS "
            f">= {thr.ess_bulk:g}/{thr.ess_tail:g}); {s.get('chains', '?')} chains x "
            f"{s.get('draws', '?')} draws"
        )
        lines.append(_format_table(self.table, _VAR_COLUMNS))
        sampler_bits = []
        if "divergences" in s:
            sampler_bits.append(f"divergences {s['divergences']}")
        if "ebfmi" in s:
            sampler_bits.append(f"E-BFMI min {min(s['ebfmi']):.2f} (>= {thr.ebfmi:g})")
        if "treedepth_fraction" in s:
            sampler_bits.append(f"max tree depth reached in {s['treedepth_fraction']:.1%} of draws")
        if sampler_bits:
            lines.append("sampler: " + " | ".join(sampler_bits))
        if len(self.modalities):
            lines.append("")
            lines.append(
                "modalities (PSIS-LOO per modality; 90 % posterior-predictive coverage; "
                "standardized residuals)"
            )
            lines.append(_format_table(self.modalities, _MOD_COLUMNS))
        if self.conflict is not None:
            lines.append("")
            lines.append("conflict between modalities (each left out in turn)")
            if len(self.conflict.table):
                lines.append(_format_table(self.conflict.table, _CONFLICT_COLUMNS))
            lines.append(f"  {self.conflict.message}")
        if self.notes:
            lines.append("")
            lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_html(self) -> str:
        """Return an HTML fragment with the verdict and the tables (used by the HTML report)."""
        from html import escape

        cls = {"pass": "ok", "warn": "warn", "fail": "fail"}[self.verdict]
        parts = [f'<p class="verdict {cls}">verdict: {self.verdict.upper()}</p>', "<ul>"]
        parts += [f"<li>{escape(r)}</li>" for r in self.reasons] or ["<li>every check passed</li>"]
        parts.append("</ul>")
        parts.append("<h3>Convergence by variable</h3>")
        parts.append(_html_table(self.table, _VAR_COLUMNS))
        parts.append("<h3>Checks</h3>")
        parts.append(_html_table(self.checks.set_index("check"), _CHECK_COLUMNS))
        if len(self.modalities):
            parts.append("<h3>Modalities</h3>")
            parts.append(_html_table(self.modalities, _MOD_COLUMNS))
        if self.conflict is not None:
            parts.append("<h3>Conflict between modalities</h3>")
            if len(self.conflict.table):
                parts.append(_html_table(self.conflict.table, _CONFLICT_COLUMNS))
            parts.append(f"<p>{escape(self.conflict.message)}</p>")
        if self.notes:
            parts.append("<ul class='notes'>")
            parts += [f"<li>note: {escape(n)}</li>" for n in self.notes]
            parts.append("</ul>")
        return "\n".join(parts)

    def _repr_html_(self) -> str:  # pragma: no cover - notebooks
        return self.to_html()


_VAR_COLUMNS = {
    "group": ("group", "{}"),
    "role": ("role", "{}"),
    "size": ("size", "{:d}"),
    "rhat_max": ("max R-hat", "{:.3f}"),
    "ess_bulk_min": ("min ESS bulk", "{:.0f}"),
    "ess_tail_min": ("min ESS tail", "{:.0f}"),
    "mcse_over_sd_max": ("max MCSE/sd", "{:.3f}"),
    "status": ("status", "{}"),
}
_MOD_COLUMNS = {
    "n_data": ("n_data", "{:d}"),
    "elpd_loo": ("elpd_loo", "{:.1f}"),
    "elpd_loo_se": ("se", "{:.1f}"),
    "p_loo": ("p_loo", "{:.1f}"),
    "pareto_k_max": ("max k", "{:.2f}"),
    "n_pareto_k_bad": ("k>limit", "{:d}"),
    "coverage90": ("cover90", "{:.0%}"),
    "rms_residual": ("rms z", "{:.2f}"),
    "status": ("status", "{}"),
}
_CONFLICT_COLUMNS = {
    "method": ("method", "{}"),
    "pareto_k": ("k", "{:.2f}"),
    "statistic": ("statistic", "{:.1f}"),
    "dof": ("dof", "{:.1f}"),
    "p_value": ("p", "{:.2g}"),
    "max_abs_shift_sd": ("max shift/sd", "{:.2f}"),
    "status": ("status", "{}"),
}
_CHECK_COLUMNS = {
    "scope": ("scope", "{}"),
    "status": ("status", "{}"),
    "message": ("message", "{}"),
}


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    try:
        if spec == "{:d}":
            return f"{int(value):d}"
        return spec.format(value)
    except (ValueError, TypeError):
        return str(value)


def _format_table(df: pd.DataFrame, columns: Mapping[str, tuple[str, str]]) -> str:
    cols = [c for c in columns if c in df.columns]
    header = [df.index.name or ""] + [columns[c][0] for c in cols]
    body = [
        [str(df.index[pos])] + [_fmt(df.iloc[pos][c], columns[c][1]) for c in cols]
        for pos in range(len(df))
    ]
    widths = [max(len(r[j]) for r in [header, *body]) for j in range(len(header))]
    out = []
    for r in [header, *body]:
        cells = [r[0].ljust(widths[0])] + [
            r[j].rjust(widths[j])
            if j < len(r) - 1 or not cols or cols[-1] != "status"
            else r[j].ljust(widths[j])
            for j in range(1, len(r))
        ]
        out.append("  " + "  ".join(cells).rstrip())
    return "\n".join(out)


def _html_table(df: pd.DataFrame, columns: Mapping[str, tuple[str, str]]) -> str:
    from html import escape

    cols = [c for c in columns if c in df.columns]
    head = "".join(f"<th>{escape(columns[c][0])}</th>" for c in cols)
    rows = []
    for pos in range(len(df)):
        row = df.iloc[pos]
        cells = []
        for c in cols:
            text = _fmt(row[c], columns[c][1])
            cls = "text" if columns[c][1] == "{}" else "num"
            if c == "status" and text.startswith(("fail", "conflict")):
                cls = "fail"
            elif c == "status" and text.startswith(("warn", "unreliable", "tension")):
                cls = "warn"
            cells.append(f"<td class='{cls}'>{escape(text)}</td>")
        rows.append(f"<tr><th>{escape(str(df.index[pos]))}</th>{''.join(cells)}</tr>")
    name = escape(df.index.name or "")
    return (
        f"<table><thead><tr><th>{name}</th>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _load_if_path(idata: Any) -> Any:
    if isinstance(idata, (str, os.PathLike)):
        from bayesjoint.report import load

        return load(idata)
    if not isinstance(idata, az.InferenceData):
        raise TypeError(
            f"diagnose needs an arviz.InferenceData or a path to a saved report, got "
            f"{type(idata).__name__}"
        )
    return idata


def _multimodality(idata: Any, var_names: Sequence[str] | None) -> dict | None:
    try:
        from bayesjoint.multimodal import detect_modes
    except ImportError:
        return None
    try:
        result = detect_modes(idata, var_names=var_names)
    except Exception as err:  # a failing detector must not hide the other checks
        return _check("modes", "run", "warn", None, None, f"mode detection failed: {err}")
    multimodal = bool(getattr(result, "multimodal", False))
    message = str(getattr(result, "message", "")) or (
        "chains are in different modes" if multimodal else "chains agree on one mode"
    )
    return _check(
        "modes",
        "run",
        "fail" if multimodal else "ok",
        len(getattr(result, "modes", []) or []),
        None,
        message,
    )


def diagnose(
    idata: Any,
    problem: Any = None,
    *,
    thresholds: Thresholds | None = None,
    var_names: Sequence[str] | None = None,
    modality_checks: bool = True,
    conflict: str | None = "auto",
    progressbar: bool = False,
    random_seed: int | None = None,
    **overrides: Any,
) -> Diagnosis:
    """Diagnose a run: convergence, sampler health, each modality's fit, conflicts.

    Parameters
    ----------
    idata : arviz.InferenceData or path
        Results of :meth:`JointInversion.sample`, or a report saved by :func:`bayesjoint.save`.
    problem : JointInversion, optional
        The problem that produced ``idata``. With it, missing posterior-predictive draws are
        simulated, the conflict check is exact for linear-Gaussian problems, and modalities whose
        leave-out weights are unreliable are refitted.
    thresholds : Thresholds, optional
        Limits (see :class:`Thresholds`); keyword ``overrides`` such as ``rhat=1.05`` or
        ``ess_bulk=100`` replace single fields.
    var_names : sequence of str, optional
        Posterior variables for the convergence table (default all).
    modality_checks : bool, default True
        Run PSIS-LOO and posterior-predictive checks per modality.
    conflict : {"auto", "exact", "importance", "refit"} or None
        Conflict-check method (see :func:`modality_conflict`); None skips it.
    progressbar : bool, default False
        Show a progress bar (stderr) over the checks and refits.
    random_seed : int, optional
        Seeds posterior-predictive simulation and refits (default: the run's own seed).
    **overrides
        Fields of :class:`Thresholds`.

    Returns
    -------
    Diagnosis
        ``verdict`` is ``"fail"`` when any R-hat, ESS, divergence, E-BFMI, mode or conflict check
        fails; ``"warn"`` for tree-depth saturation, large Pareto k, low predictive coverage or
        large residuals; ``"pass"`` otherwise. ``str(diagnosis)`` is a readable report.

    Notes
    -----
    The convergence limits follow Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021),
    *Rank-normalization, folding, and localization: an improved R-hat for assessing convergence
    of MCMC*, Bayesian Analysis 16(2), 667–718: split R-hat ≤ 1.01 and bulk and tail ESS ≥ 400
    (100 per chain for 4 chains); E-BFMI ≥ 0.3 and no divergences follow Betancourt (2016, 2017).
    Per-modality checks: see :func:`loo_per_modality`, :func:`posterior_predictive_checks`;
    conflicts: :func:`modality_conflict`.

    Examples
    --------
    >>> import arviz as az, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> good = az.from_dict(posterior={"x": rng.normal(size=(4, 500))})
    >>> diagnose(good).verdict
    'pass'
    >>> stuck = az.from_dict(posterior={"x": rng.normal(size=(4, 500)) + np.arange(4)[:, None]})
    >>> result = diagnose(stuck)
    >>> result.verdict, result.reasons[0].split(":")[0]
    ('fail', 'x')
    """
    thr = thresholds or Thresholds()
    if overrides:
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(Thresholds)})
        if unknown:
            raise TypeError(
                f"diagnose got unknown keyword(s) {unknown}; thresholds are "
                f"{[f.name for f in dataclasses.fields(Thresholds)]}"
            )
        thr = dataclasses.replace(thr, **overrides)
    idata = _load_if_path(idata)
    if "posterior" not in idata.groups():
        raise ValueError("the InferenceData has no posterior group; nothing to diagnose")
    names = modality_names(idata, problem)
    has_ll = "log_likelihood" in idata.groups()
    steps = 2 + (len(names) + 1 if modality_checks and has_ll else 0) + (1 if conflict else 0)
    bar = _Progress(progressbar, steps, "diagnose")
    notes: list[str] = []
    checks: list[dict] = []
    try:
        bar.step("convergence")
        table, elements = convergence_table(idata, var_names, thr)
        for var, row in table.iterrows():
            if row["status"] != "ok":
                checks.append(
                    _check(
                        "convergence",
                        str(var),
                        "fail",
                        row["rhat_max"],
                        f"R-hat <= {thr.rhat:g}, ESS >= {thr.ess_bulk:g}",
                        _convergence_message(str(var), row, thr),
                    )
                )
        if not any(c["check"] == "convergence" for c in checks):
            checks.append(
                _check(
                    "convergence",
                    "all variables",
                    "ok",
                    float(table["rhat_max"].max()),
                    f"R-hat <= {thr.rhat:g}, ESS >= {thr.ess_bulk:g}",
                    f"max R-hat {table['rhat_max'].max():.3f}, min ESS bulk "
                    f"{table['ess_bulk_min'].min():.0f}, tail {table['ess_tail_min'].min():.0f}",
                )
            )
        bar.step("sampler")
        sampler, sampler_checks = _sampler_stats(idata, thr)
        checks += sampler_checks
        modes = _multimodality(
            idata, [n for n in latent_info(idata) if n in idata.posterior] or None
        )
        if modes is not None:
            checks.append(modes)
        else:
            notes.append("multimodality not checked (bayesjoint.multimodal not available)")
        modalities = pd.DataFrame()
        loo: dict[str, Any] = {}
        predictive: dict[str, dict] = {}
        if modality_checks and names:
            modalities, loo, predictive = _modality_section(
                idata, problem, names, thr, checks, notes, bar, random_seed
            )
        elif modality_checks:
            notes.append("no modalities found (no log_likelihood or provenance)")
        conflict_result = None
        if conflict and len(names) >= 2:
            bar.step("conflict between modalities")
            try:
                conflict_result = modality_conflict(
                    idata,
                    problem,
                    method=conflict,
                    alpha=thr.conflict_alpha,
                    pareto_k=thr.pareto_k,
                    progressbar=progressbar,
                    random_seed=random_seed if random_seed is not None else _run_seed(idata),
                )
            except ValueError as err:
                notes.append(f"conflict check not run: {err}")
            if conflict_result is not None:
                flagged = conflict_result.conflicting or (
                    ", ".join(conflict_result.tension) if conflict_result.tension else None
                )
                tested = (
                    len(conflict_result.table)
                    and conflict_result.table["status"].isin(["ok", "conflict"]).any()
                )
                checks.append(
                    _check(
                        "conflict",
                        flagged or "modalities",
                        "fail" if flagged else "ok" if tested else "n/a",
                        None if flagged is None else float(conflict_result.table["p_value"].min()),
                        f"p >= {thr.conflict_alpha:g}/K",
                        conflict_result.message,
                    )
                )
    finally:
        bar.close()
    check_df = pd.DataFrame(
        checks, columns=["check", "scope", "status", "value", "threshold", "message"]
    )
    fails = [c["message"] for c in checks if c["status"] == "fail"]
    warns = [c["message"] for c in checks if c["status"] == "warn"]
    verdict = "fail" if fails else "warn" if warns else "pass"
    return Diagnosis(
        verdict=verdict,
        reasons=fails + warns,
        checks=check_df,
        table=table,
        elements=elements,
        modalities=modalities,
        loo=loo,
        predictive=predictive,
        conflict=conflict_result,
        sampler=sampler,
        thresholds=thr,
        notes=notes,
    )


def _convergence_message(var: str, row: Any, thr: Thresholds) -> str:
    bits = []
    if row["rhat_max"] > thr.rhat:
        bits.append(f"max R-hat {row['rhat_max']:.3f} > {thr.rhat:g}")
    if row["ess_bulk_min"] < thr.ess_bulk:
        bits.append(f"min bulk ESS {row['ess_bulk_min']:.0f} < {thr.ess_bulk:g}")
    if row["ess_tail_min"] < thr.ess_tail:
        bits.append(f"min tail ESS {row['ess_tail_min']:.0f} < {thr.ess_tail:g}")
    if thr.mcse_over_sd is not None and row["mcse_over_sd_max"] > thr.mcse_over_sd:
        bits.append(f"MCSE/sd {row['mcse_over_sd_max']:.3f} > {thr.mcse_over_sd:g}")
    return f"{var}: " + ", ".join(bits) + " (run longer chains, or reparameterize)"


def _run_seed(idata: Any) -> int | None:
    raw = idata.posterior.attrs.get("random_seed")
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def _modality_section(
    idata: Any,
    problem: Any,
    names: list[str],
    thr: Thresholds,
    checks: list[dict],
    notes: list[str],
    bar: _Progress,
    random_seed: int | None,
) -> tuple[pd.DataFrame, dict, dict]:
    rows = {n: {"modality": n} for n in names}
    loo: dict[str, Any] = {}
    n_draws = int(idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"])
    limit = thr.good_k(n_draws)
    if "log_likelihood" in idata.groups():
        for name in names:
            bar.step(f"PSIS-LOO {name}")
            if name not in idata.log_likelihood:
                notes.append(f"no log-likelihood for modality {name!r}")
                continue
            res = loo_per_modality(idata, [name])[name]
            loo[name] = res
            k = np.asarray(res.pareto_k.values, float)
            n_bad = int(np.sum(k > limit))
            rows[name].update(
                {
                    "elpd_loo": float(res.elpd_loo),
                    "elpd_loo_se": float(res.se),
                    "p_loo": float(res.p_loo),
                    "pareto_k_max": float(np.max(k)),
                    "n_pareto_k_bad": n_bad,
                    "n_data": int(k.size),
                }
            )
            checks.append(
                _check(
                    "Pareto k",
                    name,
                    "warn" if n_bad else "ok",
                    float(np.max(k)),
                    f"<= {limit:.2f}",
                    f"{name}: {n_bad} of {k.size} data have Pareto k > {limit:.2f} (max "
                    f"{np.max(k):.2f}); their PSIS-LOO terms are unreliable (influential data, "
                    "or a misfit)"
                    if n_bad
                    else f"{name}: all Pareto k <= {limit:.2f}",
                )
            )
    else:
        notes.append("no log_likelihood group: PSIS-LOO per modality not computed")
    bar.step("posterior predictive")
    pp_source = idata
    have_pp = "posterior_predictive" in idata.groups() and all(
        n in idata.posterior_predictive for n in names
    )
    if not have_pp and problem is not None:
        seed = random_seed if random_seed is not None else _run_seed(idata)
        pp_source = problem.sample_posterior_predictive(
            idata, extend_inferencedata=False, random_seed=seed
        )
        if "observed_data" not in pp_source.groups():
            pp_source.add_groups({"observed_data": idata.observed_data})
        have_pp = True
    predictive: dict[str, dict] = {}
    if have_pp and "observed_data" in pp_source.groups():
        predictive = posterior_predictive_checks(pp_source, names)
        for name, res in predictive.items():
            n = res["n_data"]
            low = 0.9 - thr.coverage_sigmas * math.sqrt(0.09 / n)
            rms_limit = 1.0 + thr.coverage_sigmas * math.sqrt(2.0 / n)
            rows[name].update(
                {
                    "coverage90": res["coverage90"],
                    "rms_residual": res["rms_residual"],
                    "max_abs_residual": res["max_abs_residual"],
                }
            )
            rows[name].setdefault("n_data", n)
            bad = res["coverage90"] < low or res["rms_residual"] > rms_limit
            checks.append(
                _check(
                    "data fit",
                    name,
                    "warn" if bad else "ok",
                    res["coverage90"],
                    f"coverage >= {low:.2f}, rms z <= {rms_limit:.2f}",
                    f"{name}: {res['coverage90']:.0%} of {n} data inside their 90 % predictive "
                    f"intervals, rms standardized residual {res['rms_residual']:.2f}"
                    + (" — the modality is not fitted" if bad else ""),
                )
            )
    else:
        notes.append(
            "no posterior_predictive group: coverage and standardized residuals not computed "
            "(run problem.sample_posterior_predictive(idata) before saving, or pass problem=)"
        )
    df = pd.DataFrame(list(rows.values())).set_index("modality")
    statuses = []
    for name in df.index:
        mine = [c for c in checks if c["scope"] == name and c["check"] in ("Pareto k", "data fit")]
        statuses.append(
            "warn: " + ", ".join(c["check"] for c in mine if c["status"] == "warn")
            if any(c["status"] == "warn" for c in mine)
            else "ok"
        )
    df["status"] = statuses
    return df, loo, predictive
