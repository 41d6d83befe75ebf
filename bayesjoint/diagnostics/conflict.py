"""Conflict between modalities: does one instrument disagree with the rest.

The posterior without each modality (exact on linear-Gaussian problems, importance reweighting
where Pareto-k allows, or a refit), its shift in posterior-sd units, and a predictive test of
the left-out data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import scipy.linalg as sla
import xarray as xr
from scipy import stats

from bayesjoint.diagnostics.convergence import Thresholds
from bayesjoint.diagnostics.labels import (
    _SAMPLE_DIMS,
    _element_labels,
    _flat,
    _quiet,
    latent_info,
    modality_names,
)
from bayesjoint.diagnostics.progress import _Progress
from bayesjoint.linear import (
    LinearGaussianSystem,
    linear_gaussian_system,
    noise_covariance,
    prediction_function,
)

__all__ = [
    "ConflictResult",
    "modality_conflict",
]


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
    """Return the modality's noise covariance (learned parts at their posterior means)."""
    return noise_covariance(mod, idata)


def _predictions(problem: Any, name: str, draws: np.ndarray) -> np.ndarray:
    f = prediction_function(problem, name)
    return np.stack([f(m) for m in draws])


def _exact_system(problem: Any, method: str) -> LinearGaussianSystem | None:
    """Return the problem's exact linear-Gaussian system, or None where it has none."""
    if problem is None or method not in ("auto", "exact"):
        return None
    try:
        return linear_gaussian_system(problem)
    except ValueError as err:
        if method == "exact":
            raise ValueError(f"method='exact' needs a linear-Gaussian problem: {err}") from None
        return None


def _exact_conflict(
    problem: Any, system: LinearGaussianSystem, exclude: Sequence[str] = ()
) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """Return the exact rows and shifts of every modality left out of ``system`` in turn."""
    system = system.without(exclude)
    full = system.posterior()
    mean_all, sd_all = full["mean"].values, full["sd"].values
    rows, shifts = [], []
    for k, name in enumerate(system.modalities):
        if name not in problem.modalities:
            continue  # a coupling's Gaussian factor or a shared discrepancy block
        post = system.without([name]).posterior(cov=True)
        mean_k, cov_k, sd_k = post["mean"].values, post["cov"].values, post["sd"].values
        # Predictive test of the whitened data: innovation e, covariance G C₋ₖ Gᵀ + I.
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
      data share one truth; the posterior without ``k`` is that of the problem's
      :class:`~bayesjoint.linear.LinearGaussianSystem` without the block;
    - from draws (importance or refit): ``T = Σ_i e_i² / S_ii`` against a scaled χ² with
      matched first two moments (Box 1954, Ann. Math. Stat. 25, 290), robust to the noise of a
      covariance estimated from draws. ``Σ_k`` is the noise covariance the noise model gives
      (:func:`bayesjoint.linear.noise_covariance`). Without the problem, ``S`` comes from the
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
    system = _exact_system(problem, method)
    if system is not None:
        rows, shift_arr, labels = _exact_conflict(problem, system)
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
    named, tension = _verdicts(table, alpha, names, problem, system)
    if len(table):
        table["status"] = _statuses(table, named, tension)
    return ConflictResult(
        table=table,
        shifts=_shift_array(shift_arr, names, labels),
        conflicting=named[0] if named else None,
        message=_conflict_message(
            table, named, tension, alpha, len(names), retested=system is not None
        ),
        alpha=alpha,
        named=named,
        tension=tension,
    )


def _verdicts(
    table: pd.DataFrame,
    alpha: float,
    names: Sequence[str],
    problem: Any,
    system: LinearGaussianSystem | None,
) -> tuple[list[str], list[str]]:
    """Return ``(named, tension)``: modalities in conflict, and those that cannot be told apart.

    Exact path: name the most surprising modality, leave it out, test the rest again; repeat
    while three or more remain (with two, a disagreement cannot be pinned on either). From
    draws: name the most surprising one once (no refit without it).
    """
    if not len(table):
        return [], []
    level = alpha / max(int(table["p_value"].notna().sum()), 1)
    flagged = _flagged(table, level)
    named: list[str] = []
    if system is not None:
        current, remaining = table, list(table.index)
        while flagged and len(remaining) >= 3:
            worst = _most_surprising(current, flagged)
            named.append(worst)
            remaining.remove(worst)
            rows = _exact_conflict(problem, system, exclude=named)[0]
            current = pd.DataFrame(rows).set_index("modality")
            flagged = _flagged(current, level)
        return named, list(flagged)
    if not flagged:
        return [], []
    if len(names) == 2:
        return [], list(flagged)
    if len(flagged) == 1 or len(names) >= 3:
        named = [_most_surprising(table, flagged)]
    return named, [n for n in flagged if n not in named]


def _statuses(table: pd.DataFrame, named: Sequence[str], tension: Sequence[str]) -> list[str]:
    """Return the status of each modality of ``table`` (in its order)."""
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
    return statuses


def _shift_array(shifts: Any, names: Sequence[str], labels: Sequence[str]) -> xr.DataArray | None:
    """Return the shifts as a DataArray on ``(modality, parameter)``, or None without any."""
    if shifts is None or not len(shifts):
        return None
    return xr.DataArray(
        np.asarray(shifts, float),
        dims=("modality", "parameter"),
        coords={"modality": list(names), "parameter": list(labels)},
        name="shift",
        attrs={"units": "posterior sd (without the modality)"},
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


def _recorded_route(sub: Any, attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Return the sampler settings of the original run for a refit of ``sub``.

    The route recorded in the provenance (and its target acceptance rate) when it applies to
    ``sub``; the automatic choice otherwise (leaving a modality out can make, say, the collapsed
    route inapplicable) or when nothing was recorded.
    """
    from bayesjoint.inference.routes import choose_route

    settings: dict[str, Any] = {}
    route = attrs.get("route")
    if route is not None:
        try:
            choose_route(sub, str(route), {})
            settings["method"] = str(route)
        except ValueError:
            settings["method"] = "auto"
    if "target_accept" in attrs and settings.get("method") in ("nuts", "nuts-plain", "collapsed"):
        settings["target_accept"] = float(attrs["target_accept"])
    return settings


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
    kwargs.update(_recorded_route(sub, attrs))
    kwargs.update(refit_kwargs or {})
    refit = sub.sample(**kwargs)
    draws = problem.stack_latent(refit.posterior[list(problem.latent)])
    values = draws.values.reshape(-1, draws.sizes["parameter"])
    return values, np.full(values.shape[0], 1.0 / values.shape[0])
