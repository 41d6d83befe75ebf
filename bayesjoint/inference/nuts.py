"""NUTS routes: plain PyMC NUTS, and NUTS preconditioned by the Laplace approximation at the MAP.

A joint posterior whose modalities constrain different combinations of the latent fields (a
gravity survey sees vertical averages, travel times see ray sums, a cross-gradient ties the two)
is a narrow, tilted valley. NUTS with PyMC's default diagonal mass matrix then needs tiny steps
and maximal trees. The Laplace approximation at the maximum a posteriori point gives the valley's
shape before sampling starts; used as the mass matrix it makes the dynamics nearly isotropic
(Neal 2011, "MCMC using Hamiltonian dynamics", §4.1), and its draws are good starting points.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import arviz as az
import numpy as np
import pymc as pm
import scipy.linalg as sla
import scipy.optimize

from bayesjoint.inference.mass_matrix import DenseCovariance, LaplaceMass, low_rank_laplace
from bayesjoint.inference.search import (
    LogPosterior,
    _compiled_functions,
    finite_difference_hessian,
)
from bayesjoint.inference.threads import chains_running, safe_start_method

__all__ = ["LaplaceApproximation", "laplace_approximation", "sample_nuts"]

_log = logging.getLogger(__name__)

#: Largest number of sampled coordinates for which the dense Laplace mass matrix is built
#: (the Hessian costs 2 n gradient evaluations and the mass matrix n² memory); beyond, the
#: low-rank + diagonal form (:func:`~bayesjoint.inference.mass_matrix.low_rank_laplace`).
DENSE_LIMIT = 3000

#: Largest rank of the low-rank + diagonal Laplace covariance.
MAX_RANK = 200

#: Options of :class:`pymc.NUTS` that ``sample(..., max_treedepth=12)`` and the like pass on to the
#: preconditioned step (PyMC routes them to its own step otherwise).
NUTS_OPTIONS = (
    "max_treedepth",
    "early_max_treedepth",
    "step_scale",
    "adapt_step_size",
    "gamma",
    "k",
    "t0",
)

#: Options of :func:`pymc.sample` that choose PyMC's own initialization and mass-matrix adaptation;
#: they contradict the Laplace preconditioning (``method="auto"`` then takes ``"nuts-plain"``).
PLAIN_NUTS_OPTIONS = ("init", "n_init")


class LaplaceApproximation:
    """A Gaussian approximation ``N(x̂, C ≈ H⁻¹)`` of the posterior in the sampler's coordinates.

    Parameters
    ----------
    log_posterior : LogPosterior
    mode : numpy.ndarray, shape (n,)
        The optimizer's answer.
    message : str
        The optimizer's message.
    dense : bool, default True
        True: the dense Hessian (``2n`` gradients); False: the low-rank + diagonal form
        (:func:`~bayesjoint.inference.mass_matrix.low_rank_laplace`, matrix-free).
    max_rank : int, default :data:`MAX_RANK`
        Largest rank of the low-rank form.

    Attributes
    ----------
    log_posterior : LogPosterior
        The posterior in the flat, unconstrained coordinates NUTS samples in.
    mode : numpy.ndarray, shape (n,)
        The maximum a posteriori point ``x̂``.
    cov : DenseCovariance or LowRankCovariance
        ``C``, with its square roots (see :mod:`bayesjoint.inference.mass_matrix`).
    floored : int
        Number of curvature eigenvalues raised to the floor.
    optimizer_message : str
    description : str
        What the mass matrix is, for the provenance.
    low_rank : dict
        The low-rank form's figures (rank, Hessian-vector products, seconds); empty when dense.
    seconds : float
        Time spent building ``C`` (Hessian or eigenpairs, factorization), in seconds.

    Notes
    -----
    The optimizer's answer is polished by one Newton step ``x̂ + C ∇log p(x̂)`` (kept when it
    raises the log density; exact for a Gaussian posterior when ``C = H⁻¹``). Dense: the Hessian
    comes from central differences of the exact (pytensor) gradient; eigenvalues below
    ``1e-8 · max(λ, 1)`` (flat or non-convex directions: the MAP is a saddle there, or the data
    do not inform them) are raised to that floor. Low-rank: the same floor applies to the
    curvatures ``1 + λ`` of the prior-preconditioned Hessian.
    """

    def __init__(
        self,
        log_posterior: LogPosterior,
        mode: np.ndarray,
        message: str,
        *,
        dense: bool = True,
        max_rank: int = MAX_RANK,
    ):
        start = time.perf_counter()
        self.log_posterior = log_posterior
        self.optimizer_message = message
        self.low_rank: dict[str, Any] = {}
        if dense:
            self.cov = self._dense(log_posterior, mode)
        else:
            self.cov, self.low_rank = low_rank_laplace(log_posterior, mode, max_rank=max_rank)
            self.floored = self.low_rank["floored"]
            self.description = (
                f"low-rank (k={self.low_rank['rank']}) + diagonal ({self.low_rank['diagonal']}) "
                "Laplace covariance at the MAP"
            )
        # One Newton step polishes the optimizer's answer; kept only when it raises log p.
        newton = mode + self.cov.apply(log_posterior.dlogp(mode))
        if np.all(np.isfinite(newton)) and log_posterior.logp(newton) > log_posterior.logp(mode):
            mode = newton
            self.optimizer_message += "; polished by one Newton step"
        self.mode = mode
        self.seconds = time.perf_counter() - start

    def _dense(self, log_posterior: LogPosterior, mode: np.ndarray) -> DenseCovariance:
        hessian = finite_difference_hessian(lambda x: -log_posterior.dlogp(x), mode)
        eigenvalues, vectors = sla.eigh(hessian)
        floor = 1e-8 * max(float(eigenvalues.max(initial=1.0)), 1.0)
        self.floored = int(np.sum(eigenvalues < floor))
        eigenvalues = np.maximum(eigenvalues, floor)
        factor = vectors / np.sqrt(eigenvalues)
        self.description = "dense Laplace covariance at the MAP"
        return DenseCovariance(factor @ factor.T)

    @property
    def covariance(self) -> np.ndarray:
        """``C`` as a dense ``n × n`` array (formed on demand for the low-rank form)."""
        return self.cov.dense()

    @property
    def factor(self) -> np.ndarray:
        """``F`` with ``F Fᵀ = C`` as a dense ``n × n`` array (draws are ``x̂ + F ε``)."""
        return self.cov.sqrt(np.eye(self.mode.size))

    def draws(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Return ``n`` draws ``x̂ + C^{1/2} ε`` (shape (n, size))."""
        return self.mode + self.cov.sqrt(rng.standard_normal((self.mode.size, n))).T


def laplace_approximation(
    problem: Any, *, maxiter: int = 2000, max_rank: int = MAX_RANK
) -> LaplaceApproximation:
    """Find the MAP of ``problem`` and the Laplace approximation around it.

    Parameters
    ----------
    problem : JointInversion
    maxiter : int, default 2000
        Iterations of L-BFGS-B (with the model's pytensor gradient).
    max_rank : int, default :data:`MAX_RANK`
        Largest rank of the low-rank form (used beyond :data:`DENSE_LIMIT` coordinates).

    Returns
    -------
    LaplaceApproximation
        Dense up to :data:`DENSE_LIMIT` sampled coordinates, low-rank + diagonal beyond.
    """
    log_posterior = LogPosterior(problem)
    result = scipy.optimize.minimize(
        log_posterior.objective_and_gradient,
        log_posterior.x0,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": int(maxiter)},
    )
    return LaplaceApproximation(
        log_posterior,
        np.asarray(result.x),
        str(result.message),
        dense=log_posterior.size <= DENSE_LIMIT,
        max_rank=max_rank,
    )


def _nuts_logp_dlogp(model: pm.Model, step_options: dict[str, Any]) -> dict[str, Any]:
    """Return ``{"logp_dlogp_func": f}``: the model's log density and gradient for NUTS, kept.

    ``f`` is what :class:`pymc.NUTS` compiles for every value variable by default (pytensor's
    graph rewrites take most of a refit's set-up); it is kept with the model's other compiled
    functions, so a ``problem.with_data`` copy (the same model, other values of its shared
    data) samples without building it again. Options that change the compilation (anything
    but NUTS's tuning options) leave it to PyMC: ``{}``.
    """
    if set(step_options) - {*NUTS_OPTIONS, "target_accept"}:
        return {}
    functions = _compiled_functions(model)
    if "nuts_logp_dlogp" not in functions:
        functions["nuts_logp_dlogp"] = model.logp_dlogp_function(
            model.value_vars, ravel_inputs=True
        )
    return {"logp_dlogp_func": functions["nuts_logp_dlogp"]}


def sample_nuts(
    problem: Any,
    draws: int,
    tune: int,
    chains: int,
    *,
    cores: int | None,
    random_seed: int,
    target_accept: float,
    progressbar: bool,
    precondition: bool = True,
    adapt_mass: bool = False,
    **kwargs: Any,
) -> tuple[az.InferenceData, dict[str, Any]]:
    """Run NUTS on ``problem``'s model, preconditioned by the Laplace approximation by default.

    Parameters
    ----------
    problem : JointInversion
    draws, tune, chains : int
    cores : int or None
    random_seed : int
        Seeds PyMC's sampler; ``random_seed + 1`` the starting points.
    target_accept : float
    progressbar : bool
    precondition : bool, default True
        False runs PyMC's NUTS unchanged (diagonal mass matrix adapted from the jittered
        initial point).
    adapt_mass : bool, default False
        Preconditioned route only: let the mass matrix's diagonal scales keep adapting during
        ``tune``, starting from the Laplace covariance (:class:`~bayesjoint.inference.mass_matrix.
        LaplaceMass` with ``adapt=True``); False keeps the Laplace covariance fixed.
    **kwargs
        Passed to :func:`pymc.sample`.

    Returns
    -------
    idata : arviz.InferenceData
        With ``log_likelihood`` unless ``idata_kwargs`` says otherwise.
    info : dict
        What was done, for the provenance (mass matrix, MAP optimizer message, …).

    Notes
    -----
    Preconditioned: the inverse mass matrix is the Laplace covariance ``C ≈ H⁻¹``
    (:class:`~bayesjoint.inference.mass_matrix.LaplaceMass`): dense up to :data:`DENSE_LIMIT`
    sampled coordinates, low-rank + diagonal beyond (``O(n k)`` per leapfrog step). It stays
    fixed unless ``adapt_mass=True``; NUTS adapts its step size during ``tune``, and chain
    ``c`` starts from the Laplace draw ``x̂ + C^{1/2} ε_c`` (unless ``initvals`` are given;
    ``C^{1/2}`` is the dense Cholesky factor or the low-rank square root). NUTS options
    (``max_treedepth``, ``nuts={...}``, …; see :data:`NUTS_OPTIONS`) go to that step.
    When the Hessian at the optimum found is not positive
    definite (a saddle point, or a flat direction), PyMC's NUTS runs unchanged instead, and the
    provenance says so (``route``, ``route_reason``).
    """
    if not isinstance(adapt_mass, bool | np.bool_):
        raise TypeError(
            f"sample(adapt_mass={adapt_mass!r}) must be True or False (True lets the Laplace "
            "mass matrix's diagonal adapt during tune)"
        )
    idata_kwargs = dict(kwargs.pop("idata_kwargs", None) or {})
    idata_kwargs.setdefault("log_likelihood", True)
    model = problem.model
    info: dict[str, Any] = {"sampler": "NUTS", "draws": draws, "tune": tune, "chains": chains}
    if precondition and "step" not in kwargs:
        laplace = laplace_approximation(problem)
        if laplace.floored:
            # not a strict maximum (a saddle, or directions the log density does not curve in):
            # the Laplace covariance would be unbounded there, so PyMC's adaptation is safer
            reason = (
                f"the Hessian at the optimum found ({laplace.optimizer_message}) is not positive "
                f"definite in {laplace.floored} direction(s), so the Laplace mass matrix does "
                "not apply"
            )
            _log.warning("bayesjoint: sampling route 'nuts-plain' instead of 'nuts': %s", reason)
            info.update({"route": "nuts-plain", "route_reason": reason})
            precondition = False
    if precondition and "step" not in kwargs:
        starts = laplace.draws(chains, np.random.default_rng(random_seed + 1))
        kwargs.setdefault("initvals", [laplace.log_posterior.initvals(x) for x in starts])
        step_options = {k: kwargs.pop(k) for k in NUTS_OPTIONS if k in kwargs}
        step_options.update(kwargs.pop("nuts", None) or {})
        potential = LaplaceMass(
            laplace.cov,
            adapt=bool(adapt_mass),
            initial_mean=laplace.mode,
            rng=np.random.default_rng(random_seed + 2),
        )
        compiled = _nuts_logp_dlogp(model, step_options)
        kwargs["step"] = pm.NUTS(
            vars=model.value_vars,
            potential=potential,
            target_accept=step_options.pop("target_accept", target_accept),
            model=model,
            **compiled,
            **step_options,
        )
        info["mass_matrix"] = laplace.description + (
            " (diagonal adapted during tune)" if adapt_mass else " (fixed)"
        )
        info["map_optimizer"] = laplace.optimizer_message
        info["laplace_seconds"] = round(laplace.seconds, 3)
        if laplace.low_rank:
            info["laplace_rank"] = laplace.low_rank["rank"]
            info["laplace_hessian_vector_products"] = laplace.low_rank["hessian_vector_products"]
            info["laplace_smallest_abs_eigenvalue"] = laplace.low_rank["smallest_abs_eigenvalue"]
    elif "step" not in kwargs:
        kwargs["target_accept"] = target_accept
        info["mass_matrix"] = "diagonal, adapted (PyMC default)"
    kwargs.update(safe_start_method(cores, kwargs, chains))
    with model, chains_running():
        idata = pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            random_seed=random_seed,
            progressbar=progressbar,
            idata_kwargs=idata_kwargs,
            **kwargs,
        )
    return idata, info
