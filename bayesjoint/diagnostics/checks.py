"""Per-modality model checks: PSIS-LOO and posterior-predictive residuals and coverage.

Each modality is checked from its own ``log_likelihood`` (PSIS-LOO with Pareto-k warnings) and
its posterior-predictive standardized residuals and 90 % interval coverage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bayesjoint._random import run_seed
from bayesjoint.diagnostics.convergence import Thresholds, _check
from bayesjoint.diagnostics.labels import _SAMPLE_DIMS, _quiet
from bayesjoint.diagnostics.progress import _Progress

__all__ = [
    "loo_per_modality",
    "posterior_predictive_checks",
]


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
    """Run the per-modality checks of :func:`diagnose`: PSIS-LOO, then the data fit.

    Appends to ``checks`` and ``notes``; returns the modality table, the LOO results and the
    posterior-predictive checks.
    """
    rows = {n: {"modality": n} for n in names}
    loo: dict[str, Any] = {}
    if "log_likelihood" in idata.groups():
        loo = _loo_section(idata, names, thr, rows, checks, notes, bar)
    else:
        notes.append("no log_likelihood group: PSIS-LOO per modality not computed")
    bar.step("posterior predictive")
    pp_source = _predictive_source(idata, problem, names, random_seed)
    predictive: dict[str, dict] = {}
    if pp_source is not None and "observed_data" in pp_source.groups():
        predictive = posterior_predictive_checks(pp_source, names)
        for name, res in predictive.items():
            checks.append(_data_fit_check(name, res, thr, rows[name]))
    else:
        notes.append(
            "no posterior_predictive group: coverage and standardized residuals not computed "
            "(run problem.sample_posterior_predictive(idata) before saving, or pass problem=)"
        )
    df = pd.DataFrame(list(rows.values())).set_index("modality")
    df["status"] = [_modality_status(name, checks) for name in df.index]
    return df, loo, predictive


def _loo_section(
    idata: Any,
    names: list[str],
    thr: Thresholds,
    rows: dict[str, dict],
    checks: list[dict],
    notes: list[str],
    bar: _Progress,
) -> dict[str, Any]:
    """PSIS-LOO of each modality with its Pareto-k check; fills ``rows``, returns the LOO."""
    loo: dict[str, Any] = {}
    n_draws = int(idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"])
    limit = thr.good_k(n_draws)
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
    return loo


def _predictive_source(
    idata: Any, problem: Any, names: list[str], random_seed: int | None
) -> Any | None:
    """Return the InferenceData holding posterior-predictive draws of every modality, or None.

    ``idata`` itself when it has them; otherwise draws simulated from ``problem`` (seeded by
    ``random_seed`` or the run's own seed); None without a problem.
    """
    have_pp = "posterior_predictive" in idata.groups() and all(
        n in idata.posterior_predictive for n in names
    )
    if have_pp:
        return idata
    if problem is None:
        return None
    pp_source = problem.sample_posterior_predictive(
        idata, extend_inferencedata=False, random_seed=run_seed(idata, random_seed)
    )
    if "observed_data" not in pp_source.groups():
        pp_source.add_groups({"observed_data": idata.observed_data})
    return pp_source


def _data_fit_check(name: str, res: dict[str, Any], thr: Thresholds, row: dict) -> dict:
    """Return the data-fit check of one modality (coverage and rms residual); fills ``row``.

    The modality warns when its 90 % coverage falls below ``0.9 − c √(0.09/n)`` or its rms
    standardized residual exceeds ``1 + c √(2/n)``, ``c = thr.coverage_sigmas``.
    """
    n = res["n_data"]
    low = 0.9 - thr.coverage_sigmas * math.sqrt(0.09 / n)
    rms_limit = 1.0 + thr.coverage_sigmas * math.sqrt(2.0 / n)
    row.update(
        {
            "coverage90": res["coverage90"],
            "rms_residual": res["rms_residual"],
            "max_abs_residual": res["max_abs_residual"],
        }
    )
    row.setdefault("n_data", n)
    bad = res["coverage90"] < low or res["rms_residual"] > rms_limit
    return _check(
        "data fit",
        name,
        "warn" if bad else "ok",
        res["coverage90"],
        f"coverage >= {low:.2f}, rms z <= {rms_limit:.2f}",
        f"{name}: {res['coverage90']:.0%} of {n} data inside their 90 % predictive "
        f"intervals, rms standardized residual {res['rms_residual']:.2f}"
        + (" — the modality is not fitted" if bad else ""),
    )


def _modality_status(name: str, checks: list[dict]) -> str:
    """Return ``'ok'`` or ``'warn: <checks>'`` from the modality's Pareto-k and data-fit checks."""
    mine = [c for c in checks if c["scope"] == name and c["check"] in ("Pareto k", "data fit")]
    warned = [c["check"] for c in mine if c["status"] == "warn"]
    return "warn: " + ", ".join(warned) if warned else "ok"
