"""Forward physics ``F_k(m)``: from the shared latent model to a physical state.

Every operator works inside a model (pytensor tensors, differentiable for NUTS) and as a plain
numpy function. Conventions: SI units, metres, ``z`` positive up (stations at ``z = 0``, bodies at
negative ``z``).
"""

from bayesjoint.physics.base import Function, Physics, as_physics
from bayesjoint.physics.blackbox import BlackBox, finite_difference_vjp
from bayesjoint.physics.gravity import Gravity, gravity_sensitivity, prism_gz, sphere_gz
from bayesjoint.physics.linear import Linear
from bayesjoint.physics.magnetics import (
    Magnetics,
    dipole_field,
    field_direction,
    magnetic_sensitivity,
    prism_field,
    prism_total_field,
)
from bayesjoint.physics.ode import ODE, GeneExpression, rk4, solve_ode
from bayesjoint.physics.resistivity import (
    Schlumberger,
    Wenner,
    resistivity_transform,
    schlumberger,
    wenner,
)
from bayesjoint.physics.traveltime import TravelTime, ray_lengths
from bayesjoint.physics.waveform import (
    ConvolutionalSeismogram,
    ShiftedWavelet,
    convolutional_seismogram,
    reflectivity_from_impedance,
    ricker,
)

__all__ = [
    "ODE",
    "BlackBox",
    "ConvolutionalSeismogram",
    "Function",
    "GeneExpression",
    "Gravity",
    "Linear",
    "Magnetics",
    "Physics",
    "Schlumberger",
    "ShiftedWavelet",
    "TravelTime",
    "Wenner",
    "as_physics",
    "convolutional_seismogram",
    "dipole_field",
    "field_direction",
    "finite_difference_vjp",
    "gravity_sensitivity",
    "magnetic_sensitivity",
    "prism_field",
    "prism_gz",
    "prism_total_field",
    "ray_lengths",
    "reflectivity_from_impedance",
    "resistivity_transform",
    "ricker",
    "rk4",
    "schlumberger",
    "solve_ode",
    "sphere_gz",
    "wenner",
]
