"""The package version, in one place: ``bayesjoint/__init__.py`` and ``bayesjoint.io`` read it.

Kept in a module of its own, free of imports, so that any module can read the version without
importing the package ``__init__`` (which imports every submodule).
"""

__version__ = "0.1.0"
