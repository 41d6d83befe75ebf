"""Forward physics ``F_k(m)``: from the shared latent model to a physical state.

Every operator works inside a model (pytensor tensors, differentiable for NUTS) and as a plain
numpy function. Conventions: SI units, metres, ``z`` positive up (stations at ``z = 0``, bodies at
negative ``z``).
"""

from bayesjoint.physics.base import Function, Physics, as_physics
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
from bayesjoint.physics.traveltime import TravelTime, ray_lengths

__all__ = [
    "Function",
    "Gravity",
    "Linear",
    "Magnetics",
    "Physics",
    "TravelTime",
    "as_physics",
    "dipole_field",
    "field_direction",
    "gravity_sensitivity",
    "magnetic_sensitivity",
    "prism_field",
    "prism_gz",
    "prism_total_field",
    "ray_lengths",
    "sphere_gz",
]
