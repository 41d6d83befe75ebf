"""Convergence: rank-normalized split R-hat, bulk and tail ESS, MCSE and sampler statistics.

The thresholds follow Vehtari et al. (2021): R-hat below 1.01, bulk and tail ESS above 100 per
chain, no divergent transitions, E-BFMI above 0.3 and no saturated tree depth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bayesjoint.diagnostics.labels import (
    _SAMPLE_DIMS,
    _element_labels,
    _flat,
    _numeric_vars,
    _quiet,
    _role,
    latent_info,
    modality_names,
)

__all__ = [
    "Thresholds",
    "convergence_table",
]


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
        stats = {
            "rhat": az.rhat(subset),
            "ess_bulk": az.ess(subset, method="bulk"),
            "ess_tail": az.ess(subset, method="tail"),
            "mcse_mean": az.mcse(subset, method="mean"),
            "mcse_sd": _mcse_sd(subset),
        }
    rows, elements = [], []
    for name in names:
        per, mean, sd, constant = _element_stats(post[name], {k: v[name] for k, v in stats.items()})
        labels = _element_labels(post[name])
        for i, label in enumerate(labels):
            elements.append(
                {"label": label, "variable": name, "mean": mean[i], "sd": sd[i]}
                | {k: v[i] for k, v in per.items()}
            )
        row = {"variable": name, "size": len(labels)} | _worst(per, sd, constant)
        row["group"], row["role"] = _role(name, latent, mods)
        row["status"] = _status(row, thr)
        rows.append(row)
    table = pd.DataFrame(rows).set_index("variable")[_TABLE_COLUMNS]
    order = {g: i for i, g in enumerate(dict.fromkeys([*latent, *table["group"]]))}
    table = table.iloc[sorted(range(len(table)), key=lambda i: (order[table["group"].iloc[i]], i))]
    element_table = pd.DataFrame(elements).set_index("label")
    return table, element_table


_TABLE_COLUMNS = [
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


def _element_stats(
    da: xr.DataArray, stats: dict[str, xr.DataArray]
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Return per element of one variable its statistics, mean, sd and constancy (C order).

    ``stats`` maps ``rhat``, ``ess_bulk``, ``ess_tail``, ``mcse_mean``, ``mcse_sd`` to the
    variable's ArviZ results; elements constant across draws get NaN statistics.
    """
    values = _flat(da)
    mean = values.mean(axis=(0, 1))
    sd = values.std(axis=(0, 1), ddof=1) if values.shape[0] * values.shape[1] > 1 else mean * 0
    constant = ~(sd > 0)
    per = {
        key: np.where(constant, np.nan, np.asarray(value.values, float).ravel())
        for key, value in stats.items()
    }
    return per, mean, sd, constant


def _worst(per: dict[str, np.ndarray], sd: np.ndarray, constant: np.ndarray) -> dict[str, float]:
    """Return the worst R-hat, ESS and MCSE over a variable's elements (NaN if all constant)."""
    everywhere = constant.all()
    with _quiet():
        ratio = np.where(constant, np.nan, per["mcse_mean"] / np.where(constant, 1.0, sd))
        worst = {
            "rhat_max": (np.nanmax, per["rhat"]),
            "ess_bulk_min": (np.nanmin, per["ess_bulk"]),
            "ess_tail_min": (np.nanmin, per["ess_tail"]),
            "mcse_mean_max": (np.nanmax, per["mcse_mean"]),
            "mcse_sd_max": (np.nanmax, per["mcse_sd"]),
            "mcse_over_sd_max": (np.nanmax, ratio),
        }
        return {k: fn(v) if not everywhere else np.nan for k, (fn, v) in worst.items()}


def _status(row: dict[str, Any], thr: Thresholds) -> str:
    """Return ``'ok'`` or ``'fail: R-hat, ESS, MCSE'`` (the failed limits) for a variable."""
    bad = []
    if row["rhat_max"] > thr.rhat:
        bad.append("R-hat")
    if row["ess_bulk_min"] < thr.ess_bulk or row["ess_tail_min"] < thr.ess_tail:
        bad.append("ESS")
    if thr.mcse_over_sd is not None and row["mcse_over_sd_max"] > thr.mcse_over_sd:
        bad.append("MCSE")
    return "ok" if not bad else "fail: " + ", ".join(bad)


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
        checks.append(_divergence_check(ss, facts, thr))
    if "energy" in ss:
        checks.append(_ebfmi_check(idata, facts, thr))
    hit = None
    if "reached_max_treedepth" in ss:
        hit = np.asarray(ss["reached_max_treedepth"].values, bool)
    elif "tree_depth" in ss and "max_treedepth" in ss.attrs:
        hit = np.asarray(ss["tree_depth"].values) >= int(ss.attrs["max_treedepth"])
    if hit is not None:
        checks.append(_treedepth_check(hit, facts, thr))
    return facts, checks


def _divergence_check(ss: xr.Dataset, facts: dict[str, Any], thr: Thresholds) -> dict[str, Any]:
    """Count the divergent transitions into ``facts``; return their check."""
    n_div = int(np.asarray(ss["diverging"].values).sum())
    facts["divergences"] = n_div
    status = "fail" if n_div > thr.divergences else "ok"
    total = facts["chains"] * facts["draws"]
    return _check(
        "divergences",
        "run",
        status,
        n_div,
        f"<= {thr.divergences}",
        f"{n_div} divergent transition(s) in {total} draws"
        + (
            ": the sampler missed part of the posterior; raise target_accept or reparameterize"
            if status == "fail"
            else ""
        ),
    )


def _ebfmi_check(idata: Any, facts: dict[str, Any], thr: Thresholds) -> dict[str, Any]:
    """Put the E-BFMI per chain into ``facts``; return its check (the lowest chain)."""
    with _quiet():
        bfmi = np.atleast_1d(np.asarray(az.bfmi(idata), float))
    facts["ebfmi"] = bfmi.tolist()
    low = np.flatnonzero(bfmi < thr.ebfmi)
    return _check(
        "E-BFMI",
        "run",
        "fail" if low.size else "ok",
        float(np.min(bfmi)),
        f">= {thr.ebfmi}",
        f"E-BFMI min {np.min(bfmi):.2f}"
        + (
            f" (chains {low.tolist()} below {thr.ebfmi}: heavy-tailed energy, poor exploration)"
            if low.size
            else ""
        ),
    )


def _treedepth_check(hit: np.ndarray, facts: dict[str, Any], thr: Thresholds) -> dict[str, Any]:
    """Put the fraction of draws at the maximum tree depth into ``facts``; return its check."""
    frac = float(hit.mean()) if hit.size else 0.0
    facts["treedepth_fraction"] = frac
    return _check(
        "tree depth",
        "run",
        "warn" if frac > thr.treedepth_fraction else "ok",
        frac,
        f"<= {thr.treedepth_fraction:g}",
        f"{int(hit.sum())} of {hit.size} draws hit the maximum tree depth"
        + (" (inefficient: raise max_treedepth or reparameterize)" if hit.any() else ""),
    )


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
