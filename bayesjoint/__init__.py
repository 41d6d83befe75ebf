"""bayesjoint: Bayesian multi-modal joint inversion.

One shared latent model (fields on grids, scalar parameters), one likelihood block per instrument
(physics ``F_k`` then observation ``H_k``), couplings as soft priors, sampled with NUTS, with the
exact linear-Gaussian posterior and a per-modality information budget where it applies.
"""

import importlib as _importlib
import logging as _logging
import warnings as _warnings

from bayesjoint import (
    coupling,
    diagnostics,
    discrepancy,
    inference,
    io,
    noise,
    observe,
    physics,
    priors,
    validate,
)
from bayesjoint._version import __version__
from bayesjoint.batch import sample_many
from bayesjoint.coupling import CrossGradient, Petrophysical
from bayesjoint.diagnostics import diagnose
from bayesjoint.grid import Grid
from bayesjoint.inference.interrupt import SamplingInterrupted
from bayesjoint.io import load, save
from bayesjoint.joint import JointInversion
from bayesjoint.latent import Field, Parameter
from bayesjoint.linear import expected_information_gain, linearized_budget
from bayesjoint.modality import Modality

# bj.report is the HTML report function; the module of the same name is bayesjoint.report.
from bayesjoint.report import report

__all__ = [
    "CrossGradient",
    "Field",
    "Grid",
    "JointInversion",
    "Modality",
    "Parameter",
    "Petrophysical",
    "SamplingInterrupted",
    "__version__",
    "coupling",
    "diagnose",
    "diagnostics",
    "discrepancy",
    "expected_information_gain",
    "inference",
    "io",
    "linearized_budget",
    "load",
    "noise",
    "observe",
    "physics",
    "priors",
    "report",
    "sample_many",
    "save",
    "validate",
]

# The one-line notes of the package (e.g. which sampling route sample() took) are shown, as
# PyMC shows its own, unless the application has configured logging itself.
_log = _logging.getLogger("bayesjoint")
if not _logging.root.handlers and not _log.handlers:
    _log.setLevel(_logging.INFO)
    _log.addHandler(_logging.StreamHandler())

# Old module paths, kept for one release: bj.search, bj.multimodal, bj.preconditioning,
# bj.testing and bj.linearize import their deprecated alias modules (which warn) on first access.
_MOVED = {
    "search": "bayesjoint.inference.search",
    "multimodal": "bayesjoint.inference and bayesjoint.diagnostics.modes",
    "preconditioning": "bayesjoint.inference.preconditioning",
    "testing": "bayesjoint.validate",
    "linearize": "bayesjoint.linear",
}


def __getattr__(name: str):
    if name in _MOVED:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore", DeprecationWarning)
            module = _importlib.import_module(f"bayesjoint.{name}")
        _warnings.warn(
            f"bj.{name} moved to {_MOVED[name]}; this alias is removed in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return module
    raise AttributeError(f"module 'bayesjoint' has no attribute {name!r}")
