"""Deprecated module path ``bayesjoint.multimodal``, kept for one release.

The names moved to :mod:`bayesjoint.inference` (sampling) and :mod:`bayesjoint.diagnostics.modes`;
this module re-exports them and warns on import.
"""

import warnings

from bayesjoint.diagnostics.modes import *  # noqa: F403
from bayesjoint.inference.continuation import *  # noqa: F403
from bayesjoint.inference.multistart import *  # noqa: F403
from bayesjoint.inference.smc import *  # noqa: F403
from bayesjoint.observe import LowPass, lowpass_matrix  # noqa: F401

warnings.warn(
    "bayesjoint.multimodal moved to bayesjoint.inference and bayesjoint.diagnostics.modes; "
    "this alias is removed in the next release",
    DeprecationWarning,
    stacklevel=2,
)
