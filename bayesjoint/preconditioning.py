"""Deprecated module path ``bayesjoint.preconditioning``, kept for one release.

The names moved to :mod:`bayesjoint.inference.preconditioning`;
this module re-exports them and warns on import.
"""

import warnings

from bayesjoint.inference.preconditioning import *  # noqa: F403

warnings.warn(
    "bayesjoint.preconditioning moved to bayesjoint.inference.preconditioning; "
    "this alias is removed in the next release",
    DeprecationWarning,
    stacklevel=2,
)
