"""Deprecated module path ``bayesjoint.linearize``, kept for one release.

The names moved to :mod:`bayesjoint.linear`, the one module that assembles the linear-Gaussian
system (exact and linearized); this module re-exports them and warns on import.
"""

import warnings

from bayesjoint.linear import *  # noqa: F403

warnings.warn(
    "bayesjoint.linearize moved to bayesjoint.linear; this alias is removed in the next release",
    DeprecationWarning,
    stacklevel=2,
)
