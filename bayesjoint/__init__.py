"""bayesjoint: Bayesian multi-modal joint inversion.

One shared latent model (fields on grids, scalar parameters), one likelihood block per instrument
(physics ``F_k`` then observation ``H_k``), couplings as soft priors, sampled with NUTS, with the
exact linear-Gaussian posterior and a per-modality information budget where it applies.
"""

__version__ = "0.1.0"

from bayesjoint import coupling, discrepancy, noise, observe, physics, priors
from bayesjoint.grid import Grid
from bayesjoint.joint import JointInversion
from bayesjoint.latent import Field, Parameter
from bayesjoint.modality import Modality
from bayesjoint.report import load, save

__all__ = [
    "Field",
    "Grid",
    "JointInversion",
    "Modality",
    "Parameter",
    "__version__",
    "coupling",
    "discrepancy",
    "load",
    "noise",
    "observe",
    "physics",
    "priors",
    "save",
]
