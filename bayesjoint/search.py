"""Deprecated module path ``bayesjoint.search``, kept for one release.

The names moved to :mod:`bayesjoint.inference.search`;
this module re-exports them and warns on import.
"""

import warnings

from bayesjoint.inference.search import *  # noqa: F403

warnings.warn(
    "bayesjoint.search moved to bayesjoint.inference.search; "
    "this alias is removed in the next release",
    DeprecationWarning,
    stacklevel=2,
)
