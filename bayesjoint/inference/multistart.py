"""Weighted multi-start NUTS: chains started from the distinct modes of a rugged posterior.

NUTS chains start from the distinct modes found by :func:`bayesjoint.inference.search.find_modes`;
each mode's posterior mass is estimated by bridge sampling (or Laplace) and carried per chain in
the InferenceData.

**Using the weights.** Every chain explores one mode only. Its posterior carries, per chain, the
coordinates ``mode`` (which mode), ``mode_weight`` (that mode's posterior mass) and
``chain_weight`` (``mode_weight`` shared among the chains in that mode; they sum to one). A
posterior expectation is the chain-weighted average of per-chain averages
(:func:`weighted_mean`), and equally weighted draws come from :func:`weighted_draws`. Pooling the
chains without weights (e.g. a plain ``az.summary``) averages the modes in the proportion of chains
started in each, not in the proportion of posterior mass, and is wrong.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr
from pymc.step_methods.hmc.quadpotential import QuadPotentialDiagAdapt

from bayesjoint._random import child_seed, rng_and_seed
from bayesjoint.inference.keywords import (
    check_sample_from_modes_arguments,
    checked_keywords,
    pymc_sample_keywords,
)
from bayesjoint.inference.search import (
    LogPosterior,
    SearchResult,
    _model_of,
    find_modes,
)
from bayesjoint.inference.threads import safe_start_method
from bayesjoint.io import attach_provenance, provenance

__all__ = [
    "bridge_log_evidence",
    "mode_weights",
    "sample_from_modes",
    "weighted_draws",
    "weighted_mean",
]


_log = logging.getLogger(__name__)


def _provenance_for(problem: Any, seed: Any, extra: Mapping[str, Any]) -> dict:
    if hasattr(problem, "_provenance"):  # a JointInversion: also records the latent priors
        return problem._provenance(seed, dict(extra))
    modalities = getattr(problem, "modalities", None)
    mods = modalities.values() if isinstance(modalities, Mapping) else ()
    return provenance(seed, mods, dict(extra))


# ---------------------------------------------------------------------------------------------
# bridge sampling (pure numpy)
# ---------------------------------------------------------------------------------------------
def _bridge_fixed_point(
    e1: np.ndarray, e2: np.ndarray, s1: float, s2: float, tol: float, maxiter: int
) -> float | None:
    """Iterate the optimal bridge estimate of ``Z`` (see bridge_log_evidence); None if it fails.

    ``e1`` and ``e2`` are the ratios ``p̃/q`` at the target and at the proposal draws.
    """
    r = 1.0
    for _ in range(maxiter):
        numerator = np.mean(e2 / (s1 * e2 + s2 * r))
        denominator = np.mean(1.0 / (s1 * e1 + s2 * r))
        r_new = numerator / denominator
        if not math.isfinite(r_new) or r_new <= 0:
            return None
        converged = abs(math.log(r_new) - math.log(r)) < tol
        r = r_new
        if converged:
            break
    return r


def bridge_log_evidence(
    log_target_at_posterior: Any,
    log_proposal_at_posterior: Any,
    log_target_at_proposal: Any,
    log_proposal_at_proposal: Any,
    *,
    n_effective: float | None = None,
    tol: float = 1e-10,
    maxiter: int = 1000,
) -> tuple[float, float]:
    """Return the log normalizing constant of an unnormalized density by bridge sampling.

    Parameters
    ----------
    log_target_at_posterior : array_like, shape (n1,)
        ``log p̃`` at draws from the normalized target ``p = p̃ / Z``.
    log_proposal_at_posterior : array_like, shape (n1,)
        ``log q`` (a normalized density) at the same draws.
    log_target_at_proposal : array_like, shape (n2,)
        ``log p̃`` at draws from ``q`` (``-inf`` where ``p̃`` is zero, e.g. outside a basin).
    log_proposal_at_proposal : array_like, shape (n2,)
        ``log q`` at the draws from ``q``.
    n_effective : float, optional
        Effective size of the target draws (autocorrelated MCMC draws); default ``n1``.
    tol : float, default 1e-10
        Convergence tolerance on ``log Z``.
    maxiter : int, default 1000

    Returns
    -------
    log_z : float
        ``log Z``.
    relative_error : float
        Approximate relative standard error of ``Z``.

    Notes
    -----
    The optimal bridge function's fixed-point iteration (Meng & Wong 1996, Statistica Sinica 6,
    831–860, eq. 4.1; Gronau et al. 2017, J. Math. Psychol. 81, 80–97, eq. 5) with
    ``l = log p̃ − log q``, ``s₁ = n₁/(n₁+n₂)``, ``s₂ = n₂/(n₁+n₂)``::

        Z ← [ (1/n₂) Σ_i e^{l₂ᵢ} / (s₁ e^{l₂ᵢ} + s₂ Z) ] / [ (1/n₁) Σ_j 1 / (s₁ e^{l₁ⱼ} + s₂ Z) ],

    and the relative-error approximation of Frühwirth-Schnatter (2004, Econometrics J. 7,
    143–167) as given by Gronau et al. (2017, eq. 17), with ``n₁`` replaced by ``n_effective``.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import stats
    >>> from bayesjoint.inference import bridge_log_evidence
    >>> rng = np.random.default_rng(0)
    >>> x1, x2 = rng.normal(1.0, 2.0, 4000), rng.normal(1.2, 2.5, 4000)
    >>> log_pt = lambda x: -0.5 * ((x - 1.0) / 2.0) ** 2 + np.log(7.0)  # Z = 7 sqrt(2 pi) 2
    >>> log_q = stats.norm(1.2, 2.5).logpdf
    >>> log_z, err = bridge_log_evidence(log_pt(x1), log_q(x1), log_pt(x2), log_q(x2))
    >>> bool(abs(log_z - np.log(7.0 * np.sqrt(2 * np.pi) * 2.0)) < 3 * err + 1e-3)
    True
    """
    l1 = np.asarray(log_target_at_posterior, float) - np.asarray(log_proposal_at_posterior, float)
    l2 = np.asarray(log_target_at_proposal, float) - np.asarray(log_proposal_at_proposal, float)
    if l1.ndim != 1 or l2.ndim != 1 or l1.size < 2 or l2.size < 2:
        raise ValueError("bridge_log_evidence needs 1-D arrays with at least two draws each")
    if not np.all(np.isfinite(l1)):
        raise ValueError("log densities at the posterior draws must be finite")
    n1 = float(l1.size if n_effective is None else max(2.0, min(n_effective, l1.size)))
    n2 = float(l2.size)
    s1, s2 = n1 / (n1 + n2), n2 / (n1 + n2)
    shift = float(np.median(l1))
    e1 = np.exp(l1 - shift)
    e2 = np.exp(np.where(np.isfinite(l2), l2 - shift, -np.inf))
    r = _bridge_fixed_point(e1, e2, s1, s2, tol, maxiter)
    if r is None:
        return float("-inf"), float("nan")
    f1 = e2 / (s1 * e2 + s2 * r)  # at proposal draws
    f2 = 1.0 / (s1 * e1 + s2 * r)  # at posterior draws (g/(s1 p + s2 r g), divided by g)
    re2 = np.var(f1) / (n2 * np.mean(f1) ** 2) + np.var(f2) / (n1 * np.mean(f2) ** 2)
    return math.log(r) + shift, float(math.sqrt(re2))


# ---------------------------------------------------------------------------------------------
# weighted multi-start NUTS
# ---------------------------------------------------------------------------------------------
def _assign(values: np.ndarray, modes: Sequence[Any]) -> np.ndarray:
    """Index of the nearest mode (Mahalanobis, each mode's own Laplace metric) per row."""
    dist = np.empty((values.shape[0], len(modes)))
    for k, mode in enumerate(modes):
        diff = values - mode.value
        dist[:, k] = np.einsum("ni,ij,nj->n", diff, mode.hessian, diff)
    return np.argmin(dist, axis=1)


def _mode_bridge(
    target: LogPosterior,
    draws: np.ndarray,
    k: int,
    modes: Sequence[Any],
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Bridge estimate of ``log ∫_{basin k} p`` from draws (chains, n, d) sitting in mode k."""
    half = draws.shape[1] // 2
    fit = draws[:, :half].reshape(-1, draws.shape[2])
    use = draws[:, half:].reshape(-1, draws.shape[2])
    mean = fit.mean(axis=0)
    d = fit.shape[1]
    cov = np.atleast_2d(np.cov(fit, rowvar=False)) if fit.shape[0] > d + 1 else modes[k].covariance
    cov = cov + 1e-12 * np.trace(cov) / d * np.eye(d)
    proposal = rng.multivariate_normal(mean, cov, size=use.shape[0])
    chol = np.linalg.cholesky(cov)
    logdet = 2.0 * float(np.sum(np.log(np.diag(chol))))

    def log_q(x: np.ndarray) -> np.ndarray:
        z = np.linalg.solve(chol, (x - mean).T)
        return -0.5 * np.sum(z * z, axis=0) - 0.5 * d * math.log(2 * math.pi) - 0.5 * logdet

    lp_use = np.array([target.logp(x) for x in use])
    inside = _assign(proposal, modes) == k
    lp_prop = np.array(
        [target.logp(x) if ok else -np.inf for x, ok in zip(proposal, inside, strict=True)]
    )
    ess = float(az.ess(lp_use.reshape(draws.shape[0], -1)))
    return bridge_log_evidence(lp_use, log_q(use), lp_prop, log_q(proposal), n_effective=ess)


def _with_log_likelihood(sample_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop ``idata_kwargs`` from a sampler's keywords, asking for the log-likelihood by default."""
    idata_kwargs = dict(sample_kwargs.pop("idata_kwargs", None) or {})
    idata_kwargs.setdefault("log_likelihood", True)
    return idata_kwargs


def _modes_of(
    problem: Any,
    modes: SearchResult | None,
    bounds: Mapping[str, Any] | None,
    search_kwargs: Mapping[str, Any] | None,
    rng: np.random.Generator,
) -> SearchResult:
    """Return ``modes``, searched on ``problem`` when None, checked to belong to its model."""
    if modes is None:
        modes = find_modes(problem, bounds, random_seed=rng, **dict(search_kwargs or {}))
    if not isinstance(modes, SearchResult):
        raise TypeError("modes must be the SearchResult of bayesjoint.inference.find_modes")
    if modes.target.model is not _model_of(problem):
        raise ValueError(
            "modes were found on a different model; call find_modes on this problem first"
        )
    return modes


def _modes_to_sample(modes: SearchResult, min_weight: float) -> tuple[list[int], float]:
    """Return the indices of the modes to sample and the Laplace weight of the others.

    Modes with a finite Laplace weight of at least ``min_weight`` are sampled (the first mode
    when none qualifies).
    """
    selected = [
        k for k, m in enumerate(modes.modes) if not np.isfinite(m.weight) or m.weight >= min_weight
    ]
    selected = [k for k in selected if np.isfinite(modes.modes[k].weight)] or [0]
    unsampled = float(np.nansum([m.weight for k, m in enumerate(modes.modes) if k not in selected]))
    return selected, unsampled


def _nuts_from_modes(
    modes: SearchResult,
    selected: Sequence[int],
    started: np.ndarray,
    *,
    draws: int,
    tune: int,
    target_accept: float,
    cores: int | None,
    random_seed: int,
    progressbar: bool,
    sample_kwargs: dict[str, Any],
) -> az.InferenceData:
    """Run NUTS with one chain started at each mode in ``started`` (see sample_from_modes)."""
    target = modes.target
    idata_kwargs = _with_log_likelihood(sample_kwargs)
    variances = []
    for k in selected:
        var = np.diag(modes.modes[k].covariance)
        if np.all(np.isfinite(var)) and np.all(var > 0):
            variances.append(var)
    # One step for all chains (compiled once); every chain adapts its own mass matrix, starting
    # from the narrowest mode's Laplace variances so that no first step leaves a narrow valley.
    start_var = np.min(variances, axis=0) if variances else np.ones(target.size)
    with target.model:
        potential = QuadPotentialDiagAdapt(
            target.size, modes.modes[selected[0]].value, start_var, 0
        )
        step = pm.NUTS(potential=potential, target_accept=target_accept)
        return pm.sample(
            draws=draws,
            tune=tune,
            chains=len(started),
            cores=cores,
            step=step,
            initvals=[dict(modes.modes[k].initvals) for k in started],
            random_seed=random_seed,
            progressbar=progressbar,
            compute_convergence_checks=False,
            idata_kwargs=idata_kwargs,
            **{**sample_kwargs, **safe_start_method(cores, sample_kwargs, len(started))},
        )


def _reassign_chains(
    flat: np.ndarray, modes: SearchResult, selected: Sequence[int], started: np.ndarray
) -> np.ndarray:
    """Return, per chain, the sampled mode nearest to the chain's mean (draws ``flat`` in u)."""
    sampled_modes = [modes.modes[k] for k in selected]
    chain_means = flat.mean(axis=1)
    return np.array([selected[i] for i in _assign(chain_means, sampled_modes)])


def _mode_masses(
    target: LogPosterior,
    flat: np.ndarray,
    assigned: np.ndarray,
    present: list[int],
    modes: SearchResult,
    weighting: str,
    rng: np.random.Generator,
) -> tuple[dict[int, float], dict[int, float], dict[int, float]]:
    """Return per mode with chains its log mass, the mass's relative error and the worst R-hat."""
    log_mass, rel_err, rhat = {}, {}, {}
    for k in present:
        chains = np.nonzero(assigned == k)[0]
        if weighting == "bridge":
            log_mass[k], rel_err[k] = _mode_bridge(
                target, flat[chains], present.index(k), [modes.modes[j] for j in present], rng
            )
        else:
            log_mass[k], rel_err[k] = modes.modes[k].log_mass, float("nan")
        rhat[k] = (
            max(float(az.rhat(flat[chains][..., j])) for j in range(target.size))
            if len(chains) >= 2
            else float("nan")
        )
    return log_mass, rel_err, rhat


def _normalized_weights(
    present: list[int], log_mass: Mapping[int, float], rel_err: Mapping[int, float]
) -> tuple[dict[int, float], dict[int, float]]:
    """Return the modes' weights ``w_k = Z_k / Σ_j Z_j`` and their standard errors.

    The standard error propagates each mass's relative error ``r_k`` through the normalization:
    ``se_k = w_k √(r_k² (1 − w_k)² + Σ_{j≠k} (w_j r_j)²)``.
    """
    values = np.array([log_mass[k] for k in present])
    w = np.exp(values - values.max())
    w /= w.sum()
    weight_of = dict(zip(present, w, strict=True))
    re = np.array([rel_err[k] for k in present])
    se = {
        k: float(w[i] * math.sqrt(re[i] ** 2 * (1 - w[i]) ** 2 + np.sum(np.delete(w * re, i) ** 2)))
        for i, k in enumerate(present)
    }
    return weight_of, se


def _attach_chain_weights(
    idata: az.InferenceData, assigned: np.ndarray, weight_of: Mapping[int, float]
) -> None:
    """Add the per-chain coordinates ``mode``, ``mode_weight`` and ``chain_weight`` (in place)."""
    counts = {k: int(np.sum(assigned == k)) for k in weight_of}
    mode_weight = np.array([weight_of[k] for k in assigned])
    chain_weight = mode_weight / np.array([counts[k] for k in assigned])
    for group in ("posterior", "sample_stats"):
        if group in idata.groups():
            idata[group] = idata[group].assign_coords(
                mode=("chain", assigned.astype(int)),
                mode_weight=("chain", mode_weight),
                chain_weight=("chain", chain_weight),
            )


def _mode_tables(
    modes: SearchResult,
    present: list[int],
    weight_of: Mapping[int, float],
    se: Mapping[int, float],
    log_mass: Mapping[int, float],
    rhat: Mapping[int, float],
) -> dict[str, str]:
    """Return the per-mode JSON tables of the posterior attributes (keys: mode indices)."""

    def table(value: Callable[[int], Any]) -> str:
        return json.dumps({str(k): value(k) for k in present})

    return {
        "mode_weights": table(lambda k: float(weight_of[k])),
        "mode_weight_se": table(lambda k: se[k]),
        "mode_log_mass": table(lambda k: float(log_mass[k])),
        "mode_laplace_weight": table(lambda k: modes.modes[k].weight),
        "mode_locations": table(lambda k: modes.target.describe_point(modes.modes[k].value)),
        "mode_rhat": table(lambda k: rhat[k]),
    }


@checked_keywords(check_sample_from_modes_arguments, pymc_sample_keywords)
def sample_from_modes(
    problem: Any,
    modes: SearchResult | None = None,
    *,
    bounds: Mapping[str, Any] | None = None,
    chains_per_mode: int = 2,
    draws: int = 1000,
    tune: int = 1000,
    weighting: str = "bridge",
    min_weight: float = 1e-3,
    target_accept: float = 0.9,
    cores: int | None = 1,
    random_seed: int | None = None,
    progressbar: bool = False,
    search_kwargs: Mapping[str, Any] | None = None,
    **sample_kwargs: Any,
) -> az.InferenceData:
    """Sample each distinct mode with NUTS and weigh the modes by their posterior mass.

    Parameters
    ----------
    problem : JointInversion or pymc.Model
    modes : SearchResult, optional
        From :func:`bayesjoint.inference.find_modes` on the same problem; searched here (with
        ``bounds`` and ``search_kwargs``) when omitted.
    bounds : mapping, optional
        Search bounds in the latent units, used only when ``modes`` is omitted.
    chains_per_mode : int, default 2
        NUTS chains per mode (two or more give a within-mode R-hat).
    draws, tune : int, default 1000
        Kept and tuning draws per chain.
    weighting : {"bridge", "laplace"}, default "bridge"
        How each mode's mass is estimated: bridge sampling from the mode's own draws with a
        Gaussian proposal (Meng & Wong 1996; exact in the limit of many draws), or the Laplace
        masses of the search (exact for Gaussian peaks only).
    min_weight : float, default 1e-3
        Modes whose Laplace weight is below this are not sampled; their mass is reported in the
        posterior attribute ``unsampled_laplace_weight``.
    target_accept : float, default 0.9
    cores : int, default 1
    random_seed : int, optional
        Seeds the search (when run here), every chain and the bridge proposals; drawn from OS
        entropy and recorded when omitted.
    progressbar : bool, default False
    search_kwargs : mapping, optional
        Passed to :func:`~bayesjoint.inference.find_modes`.
    **sample_kwargs
        Passed to :func:`pymc.sample`.

    Returns
    -------
    arviz.InferenceData
        Chains of every sampled mode concatenated along ``chain`` (``posterior``,
        ``sample_stats``, ``log_likelihood``, ``observed_data``). The posterior and sample stats
        carry, per chain, the coordinates ``mode`` (index into ``modes.modes``), ``mode_weight``
        and ``chain_weight`` (see the module docstring for how to use them); the posterior
        attributes hold the JSON tables ``mode_weights``, ``mode_weight_se``,
        ``mode_log_mass``, ``mode_laplace_weight``, ``mode_locations``, ``mode_rhat`` and
        ``chains_moved`` and the strings ``weighting`` and ``unsampled_laplace_weight``.

    Notes
    -----
    All chains share one NUTS step (compiled once). Each starts at its mode without jitter, with
    the initial inverse mass matrix set to the smallest Laplace variances among the modes (so no
    first step leaves a narrow valley), and adapts its own mass matrix while tuning. After
    sampling, every chain is reassigned to the mode nearest to its mean (Mahalanobis distance
    in each mode's Laplace metric); a chain that left its starting valley is listed in
    ``chains_moved``.
    The bridge estimate of mode ``k``'s mass is ``Z_k = ∫_{B_k} p(u | d) du`` over its basin
    ``B_k`` (the points nearer to ``u_k`` than to any other mode), from the second half of the
    mode's draws and as many draws of a Gaussian fitted to the first half
    (:func:`bridge_log_evidence`). The weights are ``w_k = Z_k / Σ_j Z_j`` over the sampled
    modes and ``chain_weight = w_k / (chains in mode k)``.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> from bayesjoint.inference import sample_from_modes, weighted_mean
    >>> x = bj.Parameter("x", prior=bj.priors.Normal(1.0, 3.0))
    >>> sq = bj.Modality("sq", physics=lambda m: (m["x"] ** 2)[None], data=[4.0],
    ...                  noise=bj.noise.Gaussian(0.2))
    >>> problem = bj.JointInversion(latent=[x], modalities=[sq])
    >>> idata = sample_from_modes(problem, bounds={"x": (-5.0, 5.0)}, chains_per_mode=1,
    ...                           draws=200, tune=200, random_seed=1,
    ...                           search_kwargs={"n_starts": 6, "maxiter": 20})
    >>> idata.posterior["mode"].values.tolist()
    [0, 1]
    >>> bool(idata.posterior["chain_weight"].sum() == 1.0)
    True
    """
    if chains_per_mode < 1 or draws < 4 or tune < 0:
        raise ValueError("sample_from_modes needs chains_per_mode >= 1, draws >= 4, tune >= 0")
    if weighting not in ("bridge", "laplace"):
        raise ValueError(f"weighting must be 'bridge' or 'laplace', got {weighting!r}")
    rng, seed = rng_and_seed(random_seed)
    modes = _modes_of(problem, modes, bounds, search_kwargs, rng)
    target = modes.target
    selected, unsampled = _modes_to_sample(modes, min_weight)
    started = np.repeat(selected, chains_per_mode)
    idata = _nuts_from_modes(
        modes,
        selected,
        started,
        draws=draws,
        tune=tune,
        target_accept=target_accept,
        cores=cores,
        random_seed=child_seed(rng),
        progressbar=progressbar,
        sample_kwargs=sample_kwargs,
    )
    flat = target.draws_to_flat(idata.posterior)
    assigned = _reassign_chains(flat, modes, selected, started)
    moved = [int(c) for c in np.nonzero(assigned != started)[0]]
    if moved:
        _log.warning("chains %s left the mode they started in and were reassigned", moved)
    present = sorted(set(assigned.tolist()))
    log_mass, rel_err, rhat = _mode_masses(target, flat, assigned, present, modes, weighting, rng)
    weight_of, se = _normalized_weights(present, log_mass, rel_err)
    _attach_chain_weights(idata, assigned, weight_of)
    attrs = {
        "weighting": weighting,
        **_mode_tables(modes, present, weight_of, se, log_mass, rhat),
        "chains_moved": json.dumps(moved),
        "unsampled_laplace_weight": str(unsampled),
        "sampler": "NUTS from modes",
        "draws": draws,
        "tune": tune,
        "chains_per_mode": chains_per_mode,
    }
    attach_provenance(idata, _provenance_for(problem, seed, {"search_seed": modes.random_seed}))
    idata.posterior.attrs.update(attrs)
    return idata


def _weights_of(posterior: xr.Dataset) -> np.ndarray:
    """Per-draw weights (chain, draw) summing to one: chain_weight if present, else uniform."""
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    if "chain_weight" in posterior.coords:
        w = np.asarray(posterior["chain_weight"].values, dtype=float)
        return np.repeat(w[:, None] / n_draw, n_draw, axis=1)
    return np.full((n_chain, n_draw), 1.0 / (n_chain * n_draw))


def weighted_mean(idata: az.InferenceData | xr.Dataset, var_name: str) -> xr.DataArray:
    """Return the posterior mean of ``var_name`` with the chains weighted by ``chain_weight``.

    Parameters
    ----------
    idata : InferenceData or Dataset
        From :func:`sample_from_modes` (or any posterior: then all draws weigh the same).
    var_name : str

    Returns
    -------
    xarray.DataArray
        ``Σ_c chain_weight_c · mean_draws(x_c)`` on the variable's own dims.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from bayesjoint.inference import weighted_mean
    >>> post = xr.Dataset({"x": (("chain", "draw"), [[0.0, 0.0], [1.0, 1.0]])},
    ...                   coords={"chain_weight": ("chain", [0.75, 0.25])})
    >>> float(weighted_mean(post, "x"))
    0.25
    """
    post = idata.posterior if isinstance(idata, az.InferenceData) else idata
    if var_name not in post:
        raise ValueError(f"no variable {var_name!r} in the posterior; have {list(post.data_vars)}")
    w = xr.DataArray(_weights_of(post), dims=("chain", "draw"))
    return (
        (post[var_name] * w)
        .sum(("chain", "draw"))
        .drop_vars(
            [c for c in ("mode", "mode_weight", "chain_weight") if c in post.coords],
            errors="ignore",
        )
    )


def weighted_draws(
    idata: az.InferenceData | xr.Dataset,
    n_draws: int | None = None,
    *,
    random_seed: int | np.random.Generator | None = None,
) -> xr.Dataset:
    """Resample the draws by their weights into one equally weighted chain.

    Parameters
    ----------
    idata : InferenceData or Dataset
        From :func:`sample_from_modes`.
    n_draws : int, optional
        Number of draws; default the total number of draws.
    random_seed : int or numpy.random.Generator, optional

    Returns
    -------
    xarray.Dataset
        The posterior variables on ``(chain=1, draw=n_draws)``, usable with ``az.summary``.

    Notes
    -----
    Multinomial resampling with probabilities ``chain_weight_c / n_draw`` per draw, so the
    expected share of mode ``k`` is its weight ``w_k``.

    Examples
    --------
    >>> import xarray as xr
    >>> from bayesjoint.inference import weighted_draws
    >>> post = xr.Dataset({"x": (("chain", "draw"), [[0.0] * 50, [1.0] * 50])},
    ...                   coords={"chain_weight": ("chain", [0.9, 0.1])})
    >>> out = weighted_draws(post, 4000, random_seed=0)
    >>> round(float(out["x"].mean()), 1)
    0.1
    """
    post = idata.posterior if isinstance(idata, az.InferenceData) else idata
    rng, _ = rng_and_seed(random_seed)
    w = _weights_of(post).ravel()
    n = int(w.size if n_draws is None else n_draws)
    pick = rng.choice(w.size, size=n, p=w / w.sum())
    n_draw = post.sizes["draw"]
    chain_idx, draw_idx = pick // n_draw, pick % n_draw
    stacked = post.drop_vars(
        [c for c in ("mode", "mode_weight", "chain_weight") if c in post.coords]
    )
    sel = stacked.isel(
        chain=xr.DataArray(chain_idx, dims="draw"), draw=xr.DataArray(draw_idx, dims="draw")
    )
    sel = sel.drop_vars(["chain", "draw"], errors="ignore")
    return sel.expand_dims(chain=[0]).assign_coords(draw=np.arange(n))


def mode_weights(idata: az.InferenceData | xr.Dataset, modes: SearchResult) -> np.ndarray:
    """Return the share of posterior mass in each mode of a search, from posterior draws.

    Parameters
    ----------
    idata : InferenceData or Dataset
        Draws of the same problem (NUTS, SMC or :func:`sample_from_modes`; ``chain_weight`` is
        honoured when present).
    modes : SearchResult

    Returns
    -------
    numpy.ndarray, shape (n_modes,)
        In the order of ``modes.modes``; each draw counts for the mode nearest to it
        (Mahalanobis distance in each mode's Laplace metric).

    Examples
    --------
    See :func:`sample_smc`.
    """
    post = idata.posterior if isinstance(idata, az.InferenceData) else idata
    flat = modes.target.draws_to_flat(post)
    which = _assign(flat.reshape(-1, flat.shape[-1]), modes.modes)
    w = _weights_of(post).ravel()
    return np.bincount(which, weights=w, minlength=len(modes.modes)) / w.sum()
