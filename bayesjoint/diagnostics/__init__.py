"""Diagnostics: a convergence gate, per-modality model checks, modality conflict and modes.

:func:`diagnose` turns an :class:`arviz.InferenceData` (or a saved report) into a table grouped
by latent variable and a verdict with its reasons:

- **convergence** (:mod:`~bayesjoint.diagnostics.convergence`, Vehtari et al. 2021):
  rank-normalized split R-hat, bulk and tail effective sample sizes and Monte Carlo standard
  errors of every posterior variable; divergent transitions, E-BFMI per chain, tree-depth
  saturation;
- **modes** (:mod:`~bayesjoint.diagnostics.modes`): chains stuck in different modes;
- **each modality** (:mod:`~bayesjoint.diagnostics.checks`): PSIS-LOO from its own
  ``log_likelihood`` with Pareto-k warnings, and posterior-predictive standardized residuals and
  90 % interval coverage;
- **conflict between modalities** (:mod:`~bayesjoint.diagnostics.conflict`): the posterior
  without each modality (exact, importance reweighting where Pareto-k allows, or a refit), its
  shift in posterior-sd units, and a predictive test of the left-out data that names a modality
  disagreeing with the others.
"""

from bayesjoint.diagnostics.checks import loo_per_modality, posterior_predictive_checks
from bayesjoint.diagnostics.conflict import ConflictResult, modality_conflict
from bayesjoint.diagnostics.convergence import Thresholds, convergence_table
from bayesjoint.diagnostics.diagnosis import Diagnosis, diagnose
from bayesjoint.diagnostics.modes import ChainGroup, ModeDetection, detect_modes

__all__ = [
    "ChainGroup",
    "ConflictResult",
    "Diagnosis",
    "ModeDetection",
    "Thresholds",
    "convergence_table",
    "detect_modes",
    "diagnose",
    "loo_per_modality",
    "modality_conflict",
    "posterior_predictive_checks",
]
