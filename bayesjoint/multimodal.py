"""Sampling multimodal posteriors: weighted multi-start NUTS, tempered SMC, continuation, detection.

Gradient-based samplers explore one valley of a rugged posterior; chains started in different
valleys stay there. This module offers four tools:

* :func:`sample_from_modes` — NUTS chains started from the distinct modes found by
  :func:`bayesjoint.search.find_modes`, with each mode's posterior mass estimated by bridge
  sampling (or Laplace) and carried per chain in the InferenceData;
* :func:`sample_smc` — sequential Monte Carlo with likelihood tempering (PyMC's SMC), which
  explores all valleys at once and weighs them by construction;
* :func:`frequency_continuation` — fit low-passed waveform data first, then the full band, to
  walk a local optimizer into the right valley;
* :func:`detect_modes` — tell whether the chains of an InferenceData sit in different modes,
  in plain words.

**Using the weights of** :func:`sample_from_modes`. Every chain of that InferenceData explores
one mode only. Its posterior carries, per chain, the coordinates ``mode`` (which mode),
``mode_weight`` (that mode's posterior mass) and ``chain_weight`` (``mode_weight`` shared among
the chains in that mode; they sum to one). A posterior expectation is the chain-weighted average
of per-chain averages — :func:`weighted_mean` — and equally weighted draws come from
:func:`weighted_draws`. Pooling the chains without weights (e.g. a plain ``az.summary``) averages
the modes in the proportion of chains started in each, not in the proportion of posterior mass,
and is wrong.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import scipy.optimize
import scipy.signal
import scipy.sparse as sp
import xarray as xr
from pymc.step_methods.hmc.quadpotential import QuadPotentialDiagAdapt

from bayesjoint.observe import Observation
from bayesjoint.report import attach_provenance, provenance
from bayesjoint.search import (
    LogPosterior,
    SearchResult,
    _model_of,
    _rng_and_seed,
    find_modes,
    local_descent,
    log_posterior,
)

__all__ = [
    "ChainGroup",
    "ContinuationResult",
    "ContinuationStage",
    "LowPass",
    "ModeDetection",
    "bridge_log_evidence",
    "detect_modes",
    "frequency_continuation",
    "lowpass_matrix",
    "mode_weights",
    "sample_from_modes",
    "sample_smc",
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
    >>> from bayesjoint.multimodal import bridge_log_evidence
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
    r = 1.0
    for _ in range(maxiter):
        numerator = np.mean(e2 / (s1 * e2 + s2 * r))
        denominator = np.mean(1.0 / (s1 * e1 + s2 * r))
        r_new = numerator / denominator
        if not math.isfinite(r_new) or r_new <= 0:
            return float("-inf"), float("nan")
        converged = abs(math.log(r_new) - math.log(r)) < tol
        r = r_new
        if converged:
            break
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
        From :func:`bayesjoint.search.find_modes` on the same problem; searched here (with
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
        Passed to :func:`~bayesjoint.search.find_modes`.
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
    >>> from bayesjoint.multimodal import sample_from_modes, weighted_mean
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
    rng, seed = _rng_and_seed(random_seed)
    if modes is None:
        modes = find_modes(problem, bounds, random_seed=rng, **dict(search_kwargs or {}))
    if not isinstance(modes, SearchResult):
        raise TypeError("modes must be the SearchResult of bayesjoint.search.find_modes")
    target = modes.target
    if target.model is not _model_of(problem):
        raise ValueError(
            "modes were found on a different model; call find_modes on this problem first"
        )
    selected = [
        k for k, m in enumerate(modes.modes) if not np.isfinite(m.weight) or m.weight >= min_weight
    ]
    selected = [k for k in selected if np.isfinite(modes.modes[k].weight)] or [0]
    unsampled = float(np.nansum([m.weight for k, m in enumerate(modes.modes) if k not in selected]))
    idata_kwargs = dict(sample_kwargs.pop("idata_kwargs", None) or {})
    idata_kwargs.setdefault("log_likelihood", True)
    variances = []
    for k in selected:
        var = np.diag(modes.modes[k].covariance)
        if np.all(np.isfinite(var)) and np.all(var > 0):
            variances.append(var)
    # One step for all chains (compiled once); every chain adapts its own mass matrix, starting
    # from the narrowest mode's Laplace variances so that no first step leaves a narrow valley.
    start_var = np.min(variances, axis=0) if variances else np.ones(target.size)
    started = np.repeat(selected, chains_per_mode)
    with target.model:
        potential = QuadPotentialDiagAdapt(
            target.size, modes.modes[selected[0]].value, start_var, 0
        )
        step = pm.NUTS(potential=potential, target_accept=target_accept)
        idata = pm.sample(
            draws=draws,
            tune=tune,
            chains=len(started),
            cores=cores,
            step=step,
            initvals=[dict(modes.modes[k].initvals) for k in started],
            random_seed=int(rng.integers(2**31 - 1)),
            progressbar=progressbar,
            compute_convergence_checks=False,
            idata_kwargs=idata_kwargs,
            **sample_kwargs,
        )
    flat = target.draws_to_flat(idata.posterior)
    sampled_modes = [modes.modes[k] for k in selected]
    chain_means = flat.mean(axis=1)
    assigned = np.array([selected[i] for i in _assign(chain_means, sampled_modes)])
    moved = [int(c) for c in np.nonzero(assigned != started)[0]]
    if moved:
        _log.warning("chains %s left the mode they started in and were reassigned", moved)
    present = sorted(set(assigned.tolist()))
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
    values = np.array([log_mass[k] for k in present])
    w = np.exp(values - values.max())
    w /= w.sum()
    weight_of = dict(zip(present, w, strict=True))
    re = np.array([rel_err[k] for k in present])
    se = {
        k: float(w[i] * math.sqrt(re[i] ** 2 * (1 - w[i]) ** 2 + np.sum(np.delete(w * re, i) ** 2)))
        for i, k in enumerate(present)
    }
    counts = {k: int(np.sum(assigned == k)) for k in present}
    mode_weight = np.array([weight_of[k] for k in assigned])
    chain_weight = mode_weight / np.array([counts[k] for k in assigned])
    for group in ("posterior", "sample_stats"):
        if group in idata.groups():
            idata[group] = idata[group].assign_coords(
                mode=("chain", assigned.astype(int)),
                mode_weight=("chain", mode_weight),
                chain_weight=("chain", chain_weight),
            )
    attrs = {
        "weighting": weighting,
        "mode_weights": json.dumps({str(k): float(weight_of[k]) for k in present}),
        "mode_weight_se": json.dumps({str(k): se[k] for k in present}),
        "mode_log_mass": json.dumps({str(k): float(log_mass[k]) for k in present}),
        "mode_laplace_weight": json.dumps({str(k): modes.modes[k].weight for k in present}),
        "mode_locations": json.dumps(
            {str(k): target.describe_point(modes.modes[k].value) for k in present}
        ),
        "mode_rhat": json.dumps({str(k): rhat[k] for k in present}),
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
    >>> from bayesjoint.multimodal import weighted_mean
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
    >>> from bayesjoint.multimodal import weighted_draws
    >>> post = xr.Dataset({"x": (("chain", "draw"), [[0.0] * 50, [1.0] * 50])},
    ...                   coords={"chain_weight": ("chain", [0.9, 0.1])})
    >>> out = weighted_draws(post, 4000, random_seed=0)
    >>> round(float(out["x"].mean()), 1)
    0.1
    """
    post = idata.posterior if isinstance(idata, az.InferenceData) else idata
    rng, _ = _rng_and_seed(random_seed)
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


# ---------------------------------------------------------------------------------------------
# SMC
# ---------------------------------------------------------------------------------------------
def sample_smc(
    problem: Any,
    draws: int = 2000,
    chains: int = 2,
    *,
    kernel: str = "IMH",
    threshold: float = 0.5,
    correlation_threshold: float = 0.01,
    cores: int | None = 1,
    random_seed: int | None = None,
    progressbar: bool = False,
    **kwargs: Any,
) -> az.InferenceData:
    """Sample the posterior with sequential Monte Carlo and likelihood tempering.

    Parameters
    ----------
    problem : JointInversion or pymc.Model
    draws : int, default 2000
        Particles per chain (each chain is an independent SMC run).
    chains : int, default 2
    kernel : {"IMH", "MH"}, default "IMH"
        Mutation kernel: independent Metropolis-Hastings with a Gaussian proposal fitted to the
        particles (PyMC's default), or random-walk Metropolis-Hastings.
    threshold : float, default 0.5
        Target ratio of effective to total sample size that sets each tempering step.
    correlation_threshold : float, default 0.01
        Mutation steps continue until the particles' autocorrelation falls below this.
    cores : int, default 1
    random_seed : int, optional
        Drawn from OS entropy and recorded when omitted.
    progressbar : bool, default False
    **kwargs
        Passed to :func:`pymc.sample_smc`.

    Returns
    -------
    arviz.InferenceData
        ``posterior``, ``sample_stats`` (with ``log_marginal_likelihood`` and the tempering
        ``beta`` schedule per chain), ``log_likelihood`` (one variable per modality),
        ``observed_data``; provenance in every group's attributes.

    Notes
    -----
    SMC moves particles from the prior ``p(m)`` to the posterior through the tempered densities
    ``p(m) p(d | m)^β``, ``0 = β₀ < … < β_T = 1``, reweighting, resampling and mutating at each
    step (Del Moral, Doucet & Jasra 2006, JRSS-B 68, 411–436; Ching & Chen 2007, J. Eng. Mech.
    133, 816–832, the scheme PyMC implements). At small ``β`` every valley is reachable, so the
    particles settle into the valleys in proportion to their posterior mass: no search and no
    weights are needed. It needs a proper prior and many more log-density evaluations than NUTS;
    with many well-separated, narrow valleys, raise ``draws`` so that each valley keeps
    particles through the tempering.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> from bayesjoint.multimodal import sample_smc
    >>> x = bj.Parameter("x", prior=bj.priors.Normal(0.0, 3.0))
    >>> sq = bj.Modality("sq", physics=lambda m: (m["x"] ** 2)[None], data=[4.0],
    ...                  noise=bj.noise.Gaussian(0.2))
    >>> idata = sample_smc(bj.JointInversion(latent=[x], modalities=[sq]), draws=500,
    ...                    chains=1, random_seed=2)
    >>> share_positive = float((idata.posterior["x"] > 0).mean())
    >>> bool(0.35 < share_positive < 0.65)  # two mirror-image modes of equal mass
    True
    """
    kernels = {"IMH": pm.smc.kernels.IMH, "MH": pm.smc.kernels.MH}
    if kernel not in kernels:
        raise ValueError(f"kernel must be 'IMH' or 'MH', got {kernel!r}")
    if draws < 10 or chains < 1:
        raise ValueError("sample_smc needs draws >= 10 and chains >= 1")
    _, seed = _rng_and_seed(random_seed)
    model = _model_of(problem)
    idata_kwargs = dict(kwargs.pop("idata_kwargs", None) or {})
    idata_kwargs.setdefault("log_likelihood", True)
    kwargs.setdefault("compute_convergence_checks", False)
    with model:
        idata = pm.sample_smc(
            draws=draws,
            kernel=kernels[kernel],
            chains=chains,
            cores=cores,
            random_seed=seed,
            progressbar=progressbar,
            threshold=threshold,
            correlation_threshold=correlation_threshold,
            idata_kwargs=idata_kwargs,
            **kwargs,
        )
    extra = {"sampler": f"SMC ({kernel})", "draws": draws, "chains": chains}
    return attach_provenance(idata, _provenance_for(problem, seed, extra))


# ---------------------------------------------------------------------------------------------
# frequency continuation
# ---------------------------------------------------------------------------------------------
def lowpass_matrix(n: int, sample_interval: float, cutoff: float, order: int = 4) -> np.ndarray:
    """Return the matrix of a zero-phase Butterworth low-pass filter on ``n`` samples.

    Parameters
    ----------
    n : int
        Trace length (samples).
    sample_interval : float
        Sampling interval in seconds.
    cutoff : float
        Corner frequency in Hz, below the Nyquist frequency ``1 / (2 sample_interval)``.
    order : int, default 4
        Butterworth order of one pass (the forward-backward filter has twice the roll-off).

    Returns
    -------
    numpy.ndarray, shape (n, n)
        ``F`` with ``F @ x == scipy.signal.sosfiltfilt(sos, x)``.

    Notes
    -----
    Forward-backward filtering (Gustafsson 1996, IEEE Trans. Signal Process. 44, 988–992) has
    zero phase, so it moves no arrival in time; its amplitude response is ``|B(ν)|²`` with
    ``|B(ν)|² = 1 / (1 + (ν/ν_c)^{2·order})`` of the Butterworth filter (−6 dB at the corner).
    The filter is linear, so filtering the data and the predictions with the same ``F`` keeps
    the misfit consistent.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.multimodal import lowpass_matrix
    >>> f = lowpass_matrix(1000, 0.001, 20.0)
    >>> t = np.arange(1000) * 0.001
    >>> slow, fast = np.sin(2 * np.pi * 5 * t), np.sin(2 * np.pi * 200 * t)
    >>> mid = slice(300, 700)  # away from the edge transients
    >>> bool(np.abs(f @ slow - slow)[mid].max() < 1e-4), bool(np.abs(f @ fast)[mid].max() < 1e-6)
    (True, True)
    """
    n = int(n)
    dt = float(sample_interval)
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError("sample_interval must be a positive number of seconds")
    nyquist = 0.5 / dt
    if not (0 < cutoff < nyquist):
        raise ValueError(
            f"cutoff={cutoff} Hz must lie between 0 and the Nyquist frequency {nyquist:g} Hz"
        )
    if not isinstance(order, int | np.integer) or order < 1:
        raise ValueError("order must be a positive integer")
    sos = scipy.signal.butter(int(order), cutoff / nyquist, output="sos")
    padlen = 3 * (2 * len(sos) + 1)
    if n <= padlen:
        raise ValueError(f"a trace of {n} samples is too short for this filter; need > {padlen}")
    return scipy.signal.sosfiltfilt(sos, np.eye(n), axis=0)


class LowPass(Observation):
    """Zero-phase low-pass filter along the last (time) axis, as an observation operator.

    Parameters
    ----------
    cutoff : float
        Corner frequency in Hz.
    sample_interval : float
        Sampling interval of the traces in seconds.
    order : int, default 4

    Notes
    -----
    See :func:`lowpass_matrix`. Chain it after a modality's own observation operator
    (``observe >> LowPass(...)``) and filter the data with :meth:`filter_data`.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.multimodal import LowPass
    >>> op = LowPass(cutoff=20.0, sample_interval=0.001)
    >>> op(np.ones((2, 100))).shape
    (2, 100)
    """

    def __init__(self, cutoff: float, sample_interval: float, order: int = 4):
        self.cutoff = float(cutoff)
        self.sample_interval = float(sample_interval)
        self.order = order
        lowpass_matrix(64, self.sample_interval, self.cutoff, order)  # validate early
        self._cache: dict[int, np.ndarray] = {}

    def matrix(self, n: int) -> np.ndarray:
        """Return the ``(n, n)`` filter matrix (cached)."""
        if n not in self._cache:
            self._cache[n] = lowpass_matrix(n, self.sample_interval, self.cutoff, self.order)
        return self._cache[n]

    def apply(self, state: Any) -> Any:
        """Return the symbolic filtered state."""
        state = pt.as_tensor_variable(state)
        n = state.type.shape[-1] if state.ndim else None
        if n is None:
            raise ValueError("LowPass needs traces with a known length along the last axis")
        return pt.tensordot(state, pt.constant(self.matrix(int(n)).T), axes=[[state.ndim - 1], [0]])

    def filter_data(self, data: Any) -> np.ndarray:
        """Filter numpy data along the last axis (the same linear map as :meth:`apply`)."""
        arr = np.asarray(data, dtype=float)
        return arr @ self.matrix(arr.shape[-1]).T

    def __call__(self, state: Any) -> Any:
        """Filter a tensor (symbolic result) or an array (numpy result)."""
        if isinstance(state, np.ndarray | list | tuple | float | int):
            return self.filter_data(state)
        return self.apply(state)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Return ``input_shape`` (filtering keeps the shape)."""
        return tuple(input_shape)

    def linear_operator(self, input_shape: tuple[int, ...]) -> sp.csr_matrix:
        """Return ``I ⊗ F`` acting on the C-order flattened state."""
        lead = int(np.prod(input_shape[:-1], dtype=int))
        return sp.kron(sp.identity(lead), sp.csr_matrix(self.matrix(int(input_shape[-1]))), "csr")

    def __repr__(self) -> str:
        return f"LowPass({self.cutoff:g} Hz)"


@dataclass(frozen=True)
class ContinuationStage:
    """One stage of :func:`frequency_continuation`.

    Attributes
    ----------
    cutoff : float or None
        Corner frequency in Hz (None: full band).
    location : dict of str to numpy.ndarray
        Latent values at the stage's optimum, in their own units.
    value : numpy.ndarray
        The optimum in the sampler's flat coordinates.
    log_posterior : float
        The stage's log posterior density at its optimum.
    """

    cutoff: float | None
    location: dict[str, np.ndarray]
    value: np.ndarray
    log_posterior: float


@dataclass(frozen=True)
class ContinuationResult:
    """Outcome of :func:`frequency_continuation`.

    Attributes
    ----------
    stages : list of ContinuationStage
        Lowest band first, the full band last.
    initvals : dict of str to numpy.ndarray
        Free-variable values at the final optimum, for
        ``problem.sample(initvals=..., init="adapt_diag")``.
    """

    stages: list[ContinuationStage]
    initvals: dict[str, np.ndarray]

    @property
    def location(self) -> dict[str, np.ndarray]:
        """Latent values at the full-band optimum."""
        return self.stages[-1].location


def _lowpassed_problem(problem: Any, names: Sequence[str], cutoff: float, dt: float, order: int):
    from bayesjoint.joint import JointInversion
    from bayesjoint.modality import Modality

    mods = []
    for mod in problem.modalities.values():
        if mod.name not in names:
            mods.append(mod)
            continue
        if getattr(mod, "discrepancy", None) is not None:
            raise ValueError(
                f"modality {mod.name!r}: frequency continuation does not handle a discrepancy "
                "term; drop it for the continuation stages"
            )
        lowpass = LowPass(cutoff, dt, order)
        mods.append(
            Modality(
                mod.name,
                physics=mod.physics,
                data=lowpass.filter_data(mod.data),
                noise=mod.noise,
                observe=mod.observe >> lowpass,
                units=mod.units,
                dims=mod.dims,
                coords=mod.coords,
            )
        )
    return JointInversion(
        latent=list(problem.latent.values()), modalities=mods, couplings=problem.couplings
    )


def frequency_continuation(
    problem: Any,
    cutoffs: Sequence[float],
    *,
    modalities: Sequence[str],
    sample_interval: float,
    start: Mapping[str, Any] | None = None,
    bounds: Mapping[str, Any] | None = None,
    order: int = 4,
    maxiter: int = 1000,
) -> ContinuationResult:
    """Fit low-passed waveform data first, then the full band (multiscale continuation).

    Parameters
    ----------
    problem : JointInversion
    cutoffs : sequence of float
        Corner frequencies in Hz, visited from the lowest up; the full band comes last.
    modalities : sequence of str
        The waveform modalities to low-pass (time along the data's last axis). Other modalities
        (e.g. travel-time picks) enter every stage unchanged.
    sample_interval : float
        Sampling interval of those traces in seconds.
    start : mapping, optional
        Free-variable values (own units) to start from; the model's initial point otherwise.
    bounds : mapping, optional
        Box per free variable in its own units (see :meth:`bayesjoint.search.LogPosterior.bounds`);
        unbounded when omitted.
    order : int, default 4
        Butterworth order (see :func:`lowpass_matrix`).
    maxiter : int, default 1000
        L-BFGS-B iterations per stage.

    Returns
    -------
    ContinuationResult
        The optimum of each stage and ``initvals`` for sampling the full problem.

    Raises
    ------
    ValueError
        For an unknown modality name, a cutoff at or above Nyquist, or a trace too short.

    Notes
    -----
    Low-passing data and predictions with the same zero-phase filter (:class:`LowPass`)
    lengthens the dominant period, so the valleys of the misfit widen and a local optimizer
    started up to half a *low-band* period from the truth reaches the right valley; each higher
    band then refines within a valley that already contains the answer. Use a ladder of bands
    (e.g. a third and a half of the dominant frequency): the lowest band is the noisiest, and
    each stage must end within half a period of the next band (Bunks et al. 1995,
    Geophysics 60, 1457–1473; Virieux & Operto 2009, Geophysics 74, WCC1–WCC26). It needs
    signal at the low frequencies: a narrow-band or ringing wavelet whose low band is below the
    noise gives the low stages nothing to fit. The low-band stages keep each modality's noise
    model, so they locate the valley but are not calibrated posteriors; sample the full problem
    from ``initvals`` with ``init="adapt_diag"`` (no jitter, which could push the chains into
    another valley).

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> from bayesjoint.multimodal import frequency_continuation
    >>> from bayesjoint.physics.waveform import ShiftedWavelet, ricker
    >>> t = np.arange(400) * 0.002
    >>> data = ricker(t, 20.0, 0.40)
    >>> arrival = bj.Parameter("arrival_time", prior=bj.priors.Normal(0.4, 0.2))
    >>> wave = bj.Modality("wave", physics=ShiftedWavelet(t, 20.0), data=data,
    ...                    noise=bj.noise.Gaussian(0.1))
    >>> problem = bj.JointInversion(latent=[arrival], modalities=[wave])
    >>> result = frequency_continuation(problem, [6.0], modalities=["wave"],
    ...                                 sample_interval=0.002, start={"arrival_time": 0.45})
    >>> [round(float(s.location["arrival_time"]), 3) for s in result.stages]
    [0.4, 0.4]
    """
    names = [modalities] if isinstance(modalities, str) else list(modalities)
    known = getattr(problem, "modalities", None)
    if not isinstance(known, Mapping):
        raise TypeError("frequency_continuation needs a bj.JointInversion")
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(
            f"modalities={names!r}: name the waveform modalities to low-pass among {list(known)}"
        )
    bands = sorted(float(c) for c in cutoffs)
    full = log_posterior(problem)
    x = full.x0 if start is None else full.to_flat(start)
    box = None if bounds is None else full.bounds(bounds)
    stages = []
    for cutoff in [*bands, None]:
        if cutoff is None:
            target = full
        else:
            target = LogPosterior(
                _lowpassed_problem(problem, names, cutoff, sample_interval, order)
            )
            if target.value_names != full.value_names:  # pragma: no cover - same latent model
                raise ValueError("the low-passed problem has different free variables")
        x, value = local_descent(target, x, box, maxiter)
        stages.append(
            ContinuationStage(cutoff=cutoff, location=full.latent(x), value=x, log_posterior=-value)
        )
    return ContinuationResult(stages=stages, initvals=full.initvals(x))


# ---------------------------------------------------------------------------------------------
# detection
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChainGroup:
    """Chains that sit in the same mode.

    Attributes
    ----------
    chains : tuple of int
        Chain indices (positions along the ``chain`` dimension).
    means : dict of str to numpy.ndarray
        Mean of each variable over the group's draws.
    n_draws : int
    """

    chains: tuple[int, ...]
    means: dict[str, np.ndarray]
    n_draws: int


@dataclass(frozen=True)
class ModeDetection:
    """Outcome of :func:`detect_modes`.

    Attributes
    ----------
    multimodal : bool
        True when the chains sit in two or more separate modes.
    modes : list of ChainGroup
        Groups of chains, most chains first.
    message : str
        Plain-words verdict, listing the modes.
    separation : numpy.ndarray, shape (chains, chains)
        Largest standardized distance between the per-chain means (in pooled within-chain sds).
    threshold : float
    weighted : bool
        True when the chains carry ``chain_weight`` (from :func:`sample_from_modes`): separate
        modes are then expected, and the weights say how to combine them.
    """

    multimodal: bool
    modes: list[ChainGroup]
    message: str
    separation: np.ndarray
    threshold: float
    weighted: bool = False

    def __bool__(self) -> bool:
        return self.multimodal


def _labels(name: str, shape: tuple[int, ...]) -> list[str]:
    if not shape:
        return [name]
    return [f"{name}[{', '.join(str(i) for i in idx)}]" for idx in np.ndindex(*shape)]


def detect_modes(
    idata: az.InferenceData | xr.Dataset,
    var_names: Sequence[str] | None = None,
    threshold: float = 4.0,
) -> ModeDetection:
    """Tell whether the chains sit in different modes of the posterior.

    Parameters
    ----------
    idata : InferenceData or Dataset
        Its posterior (dims ``chain``, ``draw``, then the variables' own).
    var_names : sequence of str, optional
        Variables to compare; default every posterior variable.
    threshold : float, default 4.0
        Two chains are in different modes when, for some scalar element ``i``,
        ``|m_a,i − m_b,i| > threshold · √((s²_a,i + s²_b,i)/2)`` (per-chain means ``m``,
        within-chain sds ``s``). Chains sampling one mode have means within a few Monte-Carlo
        errors of each other — a small fraction of ``s`` — so 4 leaves a wide margin, while
        chains in valleys that do not overlap are many ``s`` apart.

    Returns
    -------
    ModeDetection
        ``multimodal``, ``modes`` (groups of chains and their means), ``message``.

    Notes
    -----
    Chains are grouped by single linkage: chains closer than ``threshold`` (in the metric above)
    are joined, and the connected groups are the modes. R-hat (Vehtari et al. 2021, Bayesian
    Analysis 16, 667–718) flags such chains too, but only says that they disagree; this check
    says that they sit in separate modes and lists them, so that they are not averaged into one
    summary. A chain that never moves has zero spread; it forms its own group unless another
    chain sits at exactly the same place.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from bayesjoint.multimodal import detect_modes
    >>> rng = np.random.default_rng(0)
    >>> draws = rng.normal(0.0, 0.01, (4, 200)) + np.array([[0.40], [0.45], [0.40], [0.40]])
    >>> result = detect_modes(xr.Dataset({"t": (("chain", "draw"), draws)}))
    >>> result.multimodal, [g.chains for g in result.modes]
    (True, [(0, 2, 3), (1,)])
    """
    post = idata.posterior if isinstance(idata, az.InferenceData) else idata
    if not isinstance(post, xr.Dataset) or "chain" not in post.dims or "draw" not in post.dims:
        raise TypeError("detect_modes needs an InferenceData or a Dataset with chain and draw dims")
    if not (threshold > 0):
        raise ValueError("threshold must be positive (in within-chain standard deviations)")
    names = list(post.data_vars) if var_names is None else list(var_names)
    missing = [n for n in names if n not in post]
    if missing:
        raise ValueError(
            f"var_names {missing} are not in the posterior; have {list(post.data_vars)}"
        )
    names = [n for n in names if {"chain", "draw"} <= set(post[n].dims)]
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    blocks, labels, shapes = [], [], {}
    for name in names:
        arr = post[name].transpose("chain", "draw", ...)
        shapes[name] = tuple(arr.shape[2:])
        blocks.append(np.asarray(arr.values, dtype=float).reshape(n_chain, n_draw, -1))
        labels.extend(_labels(name, shapes[name]))
    weighted = "chain_weight" in post.coords
    if not blocks or n_chain < 2:
        message = (
            "Only one chain: cannot tell whether chains sit in different modes; run at least two "
            "chains from different starting points."
            if n_chain < 2
            else "No variables to compare."
        )
        group = ChainGroup(tuple(range(n_chain)), {}, n_chain * n_draw)
        return ModeDetection(False, [group], message, np.zeros((n_chain, n_chain)), threshold)
    values = np.concatenate(blocks, axis=2)
    means = values.mean(axis=1)
    var = values.var(axis=1, ddof=1) if n_draw > 1 else np.zeros_like(means)
    diff = np.abs(means[:, None, :] - means[None, :, :])
    pooled = np.sqrt(0.5 * (var[:, None, :] + var[None, :, :]))
    scale = np.maximum(np.abs(means).max(axis=0), 1.0)  # relative round-off floor
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(diff <= 1e-12 * scale, 0.0, diff / pooled)
    separation = np.nan_to_num(z.max(axis=2), nan=0.0, posinf=np.inf)
    parent = list(range(n_chain))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a in range(n_chain):
        for b in range(a + 1, n_chain):
            if separation[a, b] <= threshold:
                parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for c in range(n_chain):
        groups.setdefault(root(c), []).append(c)
    ordered = sorted(groups.values(), key=lambda g: (-len(g), g[0]))
    modes = []
    for chains in ordered:
        gmeans = {}
        for name, block in zip(names, blocks, strict=True):
            gmeans[name] = block[chains].mean(axis=(0, 1)).reshape(shapes[name])
        modes.append(ChainGroup(tuple(chains), gmeans, len(chains) * n_draw))
    multimodal = len(modes) > 1
    message = _detection_message(
        modes, ordered, means, var, labels, separation, threshold, n_chain, weighted
    )
    return ModeDetection(multimodal, modes, message, separation, float(threshold), weighted)


def _detection_message(
    modes, ordered, means, var, labels, separation, threshold, n_chain, weighted
):
    if len(modes) == 1:
        worst = float(np.max(separation)) if separation.size else 0.0
        return (
            f"All {n_chain} chains sit in one mode (per-chain means at most {worst:.2g} "
            f"within-chain standard deviations apart; threshold {threshold:g})."
        )
    group_means = np.array([means[g].mean(axis=0) for g in ordered])
    spread = np.sqrt(var.mean(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        contrast = np.nan_to_num(
            (group_means.max(axis=0) - group_means.min(axis=0)) / spread, nan=0.0, posinf=1e300
        )
    show = np.argsort(-contrast)[: min(3, len(labels))]
    between = [separation[a][:, b].min() for i, a in enumerate(ordered) for b in ordered[i + 1 :]]
    gap = float(np.min(between))
    parts = []
    for k, chains in enumerate(ordered, start=1):
        vals = ", ".join(f"{labels[i]} = {group_means[k - 1][i]:.4g}" for i in show)
        which = "chain" if len(chains) == 1 else "chains"
        parts.append(f"mode {k} ({which} {', '.join(map(str, chains))}): {vals}")
    head = (
        f"The {n_chain} chains sit in {len(modes)} separate modes of the posterior (per-chain "
        f"means at least {gap:.3g} within-chain standard deviations apart; threshold "
        f"{threshold:g}): " + "; ".join(parts) + "."
    )
    if weighted:
        return (
            head + " The chains were started in different modes on purpose and carry the modes' "
            "weights (coordinate 'chain_weight'); combine them with "
            "bj.multimodal.weighted_mean or weighted_draws, never by plain averaging."
        )
    return (
        head + " Each chain describes only the mode it sits in, so pooling them into one summary "
        "(mean, sd, intervals) would be wrong: the share of chains per mode reflects where they "
        "started, not the posterior mass. Locate and weigh the modes with "
        "bj.search.find_modes and bj.multimodal.sample_from_modes, or sample with "
        "bj.multimodal.sample_smc."
    )
