"""Deprecated module path ``bayesjoint.html_report``, kept for one release.

The names moved to :mod:`bayesjoint.report`; this module re-exports them and warns on import.
"""

import warnings

from bayesjoint.report import *  # noqa: F403

warnings.warn(
    "bayesjoint.html_report moved to bayesjoint.report; this alias is removed in the next release",
    DeprecationWarning,
    stacklevel=2,
)
