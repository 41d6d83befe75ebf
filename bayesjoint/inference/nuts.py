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
from typing import Any

import arviz as az
import numpy as np
import pymc as pm
import scipy.linalg as sla
import scipy.optimize
from pymc.step_methods.hmc.quadpotential import QuadPotentialFull

from bayesjoint.inference.search import LogPosterior, finite_difference_hessian

__all__ = ["LaplaceApproximation", "laplace_approximation", "sample_nuts"]

_log = logging.getLogger(__name__)

#: Largest number of sampled coordinates for which the dense Laplace mass matrix is built
#: (the Hessian costs 2 n gradient evaluations and the mass matrix n² memory).
DENSE_LIMIT = 3000

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
    """A Gaussian approximation ``N(x̂, H⁻¹)`` of the posterior in the sampler's coordinates.

    Attributes
    ----------
    log_posterior : LogPosterior
        The posterior in the flat, unconstrained coordinates NUTS samples in.
    mode : numpy.ndarray, shape (n,)
        The maximum a posteriori point ``x̂``.
    covariance : numpy.ndarray, shape (n, n)
        ``H⁻¹``, with ``H`` the Hessian of ``−log p`` at ``x̂`` (eigenvalues floored, see Notes).
    factor : numpy.ndarray, shape (n, n)
        ``F`` with ``F Fᵀ = H⁻¹`` (draws are ``x̂ + F ε``).
    floored : int
        Number of Hessian eigenvalues raised to the floor.
    optimizer_message : str

    Notes
    -----
    The optimizer's answer is polished by one Newton step with that Hessian (kept when it raises
    the log density). The Hessian comes from central differences of the exact (pytensor)
    gradient. Eigenvalues
    below ``1e-8 · max(λ, 1)`` (flat or non-convex directions: the MAP is a saddle there, or
    the data do not inform them) are raised to that floor, so the approximation is broad where
    the Hessian says nothing.
    """

    def __init__(self, log_posterior: LogPosterior, mode: np.ndarray, message: str):
        self.log_posterior = log_posterior
        self.optimizer_message = message
        hessian = finite_difference_hessian(lambda x: -log_posterior.dlogp(x), mode)
        # One Newton step polishes the optimizer's answer (exact for a Gaussian posterior); it
        # is kept only when it raises the log density.
        try:
            newton = mode + sla.solve(hessian, log_posterior.dlogp(mode), assume_a="sym")
        except (sla.LinAlgError, ValueError):
            newton = mode
        if np.all(np.isfinite(newton)) and log_posterior.logp(newton) > log_posterior.logp(mode):
            mode = newton
            self.optimizer_message += "; polished by one Newton step"
        self.mode = mode
        eigenvalues, vectors = sla.eigh(hessian)
        floor = 1e-8 * max(float(eigenvalues.max(initial=1.0)), 1.0)
        self.floored = int(np.sum(eigenvalues < floor))
        eigenvalues = np.maximum(eigenvalues, floor)
        self.factor = vectors / np.sqrt(eigenvalues)
        self.covariance = self.factor @ self.factor.T

    def draws(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Return ``n`` draws ``x̂ + F ε`` (shape (n, size))."""
        return self.mode + rng.standard_normal((n, self.mode.size)) @ self.factor.T


def laplace_approximation(problem: Any, *, maxiter: int = 2000) -> LaplaceApproximation:
    """Find the MAP of ``problem`` and the Laplace approximation around it.

    Parameters
    ----------
    problem : JointInversion
    maxiter : int, default 2000
        Iterations of L-BFGS-B (with the model's pytensor gradient).

    Returns
    -------
    LaplaceApproximation

    Raises
    ------
    ValueError
        When the problem has more than ``DENSE_LIMIT`` sampled coordinates.
    """
    log_posterior = LogPosterior(problem)
    if log_posterior.size > DENSE_LIMIT:
        raise ValueError(
            f"the model samples {log_posterior.size} coordinates; the dense Laplace mass matrix "
            f"is built up to {DENSE_LIMIT}. Use method='nuts-plain', or the exact or collapsed "
            "route where the problem allows"
        )
    result = scipy.optimize.minimize(
        log_posterior.objective_and_gradient,
        log_posterior.x0,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": int(maxiter)},
    )
    return LaplaceApproximation(log_posterior, np.asarray(result.x), str(result.message))


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
    Preconditioned: the mass matrix is fixed to the Laplace covariance ``H⁻¹`` (a dense
    :class:`pymc.step_methods.hmc.quadpotential.QuadPotentialFull`), NUTS adapts its step size
    during ``tune``, and chain ``c`` starts from the Laplace draw ``x̂ + F ε_c`` (unless
    ``initvals`` are given). NUTS options (``max_treedepth``, ``nuts={...}``, …; see
    :data:`NUTS_OPTIONS`) go to that step. When the Hessian at the optimum found is not positive
    definite (a saddle point, or a flat direction), PyMC's NUTS runs unchanged instead, and the
    provenance says so (``route``, ``route_reason``).
    """
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
        kwargs["step"] = pm.NUTS(
            vars=model.value_vars,
            potential=QuadPotentialFull(laplace.covariance),
            target_accept=step_options.pop("target_accept", target_accept),
            model=model,
            **step_options,
        )
        info["mass_matrix"] = "dense Laplace covariance at the MAP (fixed)"
        info["map_optimizer"] = laplace.optimizer_message
    elif "step" not in kwargs:
        kwargs["target_accept"] = target_accept
        info["mass_matrix"] = "diagonal, adapted (PyMC default)"
    with model:
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
