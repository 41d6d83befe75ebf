"""Deprecated module path ``bayesjoint.testing``, kept for one release.

The names moved to :mod:`bayesjoint.validate`; this module re-exports them and warns on import.
"""

import warnings

from bayesjoint.validate import *  # noqa: F403

warnings.warn(
    "bayesjoint.testing moved to bayesjoint.validate; this alias is removed in the next release",
    DeprecationWarning,
    stacklevel=2,
)
