"""Inference: sampling routes, preconditioning, global search, multi-start NUTS, SMC, continuation.

The modules here take a built problem (:class:`bayesjoint.JointInversion`) and return draws or
optima; none of them is imported by :mod:`bayesjoint.joint` at import time, and none imports it.

- :mod:`~bayesjoint.inference.search`: global search for the modes of a posterior and their
  Laplace masses (:func:`find_modes`);
- :mod:`~bayesjoint.inference.multistart`: NUTS from every mode, weighted by bridge sampling
  (:func:`sample_from_modes`, :func:`weighted_mean`, :func:`weighted_draws`);
- :mod:`~bayesjoint.inference.smc`: tempered sequential Monte Carlo (:func:`sample_smc`);
- :mod:`~bayesjoint.inference.continuation`: frequency continuation for cycle skipping;
- :mod:`~bayesjoint.inference.preconditioning`: NUTS with a low-rank mass matrix from a
  linear-Gaussian approximation (:func:`preconditioned_sample`).
"""

from bayesjoint.inference.continuation import (
    ContinuationResult,
    ContinuationStage,
    frequency_continuation,
)
from bayesjoint.inference.multistart import (
    bridge_log_evidence,
    mode_weights,
    sample_from_modes,
    weighted_draws,
    weighted_mean,
)
from bayesjoint.inference.preconditioning import LowRankMass, preconditioned_sample
from bayesjoint.inference.search import (
    LogPosterior,
    Mode,
    SearchResult,
    SwarmResult,
    find_modes,
    finite_difference_hessian,
    laplace_log_mass,
    local_descent,
    log_posterior,
    particle_swarm,
)
from bayesjoint.inference.smc import sample_smc

__all__ = [
    "ContinuationResult",
    "ContinuationStage",
    "LogPosterior",
    "LowRankMass",
    "Mode",
    "SearchResult",
    "SwarmResult",
    "bridge_log_evidence",
    "find_modes",
    "finite_difference_hessian",
    "frequency_continuation",
    "laplace_log_mass",
    "local_descent",
    "log_posterior",
    "mode_weights",
    "particle_swarm",
    "preconditioned_sample",
    "sample_from_modes",
    "sample_smc",
    "weighted_draws",
    "weighted_mean",
]
