"""Couplings between latent variables, entering the model as soft priors.

Structural: :class:`CrossGradient` (on :func:`cross_gradient`). Petrophysical:
:class:`Petrophysical` (on the relations :func:`archie`, :func:`gardner`, :func:`wyllie`,
:func:`gassmann`, :func:`faust`, :func:`linear`).
"""

from bayesjoint.coupling.base import Coupling
from bayesjoint.coupling.cross_gradient import (
    CrossGradient,
    cross_gradient,
    normalized_cross_gradient,
)
from bayesjoint.coupling.petrophysics import (
    RELATIONS,
    Petrophysical,
    archie,
    faust,
    gardner,
    gassmann,
    linear,
    wyllie,
)

__all__ = [
    "RELATIONS",
    "Coupling",
    "CrossGradient",
    "Petrophysical",
    "archie",
    "cross_gradient",
    "faust",
    "gardner",
    "gassmann",
    "linear",
    "normalized_cross_gradient",
    "wyllie",
]
