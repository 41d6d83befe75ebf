"""bayesjoint: Bayesian multi-modal joint inversion.

One shared latent model (fields on grids, scalar parameters), one likelihood block per instrument
(physics ``F_k`` then observation ``H_k``), couplings as soft priors, sampled with NUTS, with the
exact linear-Gaussian posterior and a per-modality information budget where it applies.
"""

__version__ = "0.1.0"

from bayesjoint import (
    coupling,
    diagnostics,
    discrepancy,
    linearize,
    multimodal,
    noise,
    observe,
    physics,
    priors,
    search,
)
from bayesjoint.coupling import CrossGradient, Petrophysical
from bayesjoint.diagnostics import diagnose
from bayesjoint.grid import Grid
from bayesjoint.joint import JointInversion
from bayesjoint.latent import Field, Parameter
from bayesjoint.linearize import expected_information_gain, linearized_budget
from bayesjoint.modality import Modality
from bayesjoint.report import load, save

__all__ = [
    "CrossGradient",
    "Field",
    "Grid",
    "JointInversion",
    "Modality",
    "Parameter",
    "Petrophysical",
    "__version__",
    "coupling",
    "diagnose",
    "diagnostics",
    "discrepancy",
    "expected_information_gain",
    "linearize",
    "linearized_budget",
    "load",
    "multimodal",
    "noise",
    "observe",
    "physics",
    "priors",
    "report",
    "save",
    "search",
]

# bj.report (the HTML report function) deliberately takes the attribute name of the submodule
# bayesjoint.report (netCDF save/load); it must be bound after that submodule is imported.
# ``from bayesjoint.report import save`` keeps working.
from bayesjoint.html_report import report
