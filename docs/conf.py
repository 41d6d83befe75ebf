"""Sphinx configuration of the bayesjoint documentation.

Build (what ``.ci/run`` does; warnings are errors)::

    pip install ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The build needs no network: the intersphinx inventories of Python, numpy, scipy, xarray,
pandas, pymc, arviz and pytensor are files in ``docs/_intersphinx/`` (written by
``docs/make_inventories.py``), and ``getting_started.ipynb`` runs on the local Jupyter kernel.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

project = "bayesjoint"
author = "the bayesjoint developers"
copyright = "the bayesjoint developers, BSD-3-Clause"


def _version() -> str:
    import bayesjoint

    return bayesjoint.__version__


release = version = _version()

sys.path.insert(0, str(HERE / "_ext"))
extensions = [
    "bayesjoint_xref",  # docs/_ext: references resolve to the object's documented page
    "myst_nb",  # Markdown pages (MyST) and the executed notebook
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
]

exclude_patterns = ["_build", "_intersphinx", "jupyter_execute", "**.ipynb_checkpoints"]
templates_path = ["_templates"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# Every cross-reference must resolve: a broken link to an API object fails the build (-W).
nitpicky = True
nitpick_ignore = [
    # A type alias (``tuple[Mapping, ndarray, ndarray]``) in signatures of bayesjoint.coupling;
    # its meaning is given where it is returned (``Coupling.gaussian_factor``).
    ("py:class", "GaussianFactor"),
    # PyMC's mass-matrix base class of bayesjoint.inference.LowRankMass: PyMC has no page for it.
    ("py:class", "pymc.step_methods.hmc.quadpotential.QuadPotential"),
    # PyMC internals named in bayesjoint.inference (search) and bayesjoint.discrepancy (the HSGP
    # settings); PyMC's documentation has no page for either.
    ("py:class", "pymc.blocking.DictToArrayBijection"),
    ("py:func", "pymc.gp.hsgp_approx.approx_hsgp_hyperparams"),
]
nitpick_ignore_regex = [
    # Private base classes (``_MatrixObservation``...) that ``:show-inheritance:`` names: they
    # are implementation details and deliberately have no page.
    ("py:class", r"bayesjoint\.(\w+\.)*_\w+"),
]

# -- MyST and the notebook ---------------------------------------------------------------------

myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3
# Executed on every build: a notebook that no longer runs fails the docs.
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_timeout = 600
nb_execution_show_tb = True
nb_merge_streams = True

# -- API reference -----------------------------------------------------------------------------

# The subpackages with a page of their own in api.md (each lists the names in its ``__all__``).
DOCUMENTED_PACKAGES = [
    "bayesjoint.priors",
    "bayesjoint.physics",
    "bayesjoint.observe",
    "bayesjoint.noise",
    "bayesjoint.coupling",
    "bayesjoint.discrepancy",
    "bayesjoint.linear",
    "bayesjoint.inference",
    "bayesjoint.diagnostics",
    "bayesjoint.io",
    "bayesjoint.validate",
]


def _plain_signature(obj: object) -> str:
    """Return the call signature without annotations (the full one is on the documented object)."""
    sig = inspect.signature(obj)
    params = [p.replace(annotation=p.empty) for p in sig.parameters.values()]
    return str(sig.replace(parameters=params, return_annotation=sig.empty))


def _top_level_aliases() -> tuple[dict[str, str], dict[str, str]]:
    """Top-level names that re-export an object documented on a subpackage's page.

    Their pages in api.md point to that page instead of documenting the object twice (two
    descriptions of one class would be duplicate targets).
    """
    import bayesjoint

    aliases, signatures = {}, {}
    for name in bayesjoint.__all__:
        obj = getattr(bayesjoint, name)
        if inspect.ismodule(obj) or not callable(obj):
            continue
        for package in DOCUMENTED_PACKAGES:
            module = importlib.import_module(package)
            if name in getattr(module, "__all__", ()) and getattr(module, name) is obj:
                aliases[f"bayesjoint.{name}"] = f"{package}.{name}"
                signatures[f"bayesjoint.{name}"] = (
                    "" if inspect.isclass(obj) else (_plain_signature(obj))
                )
                break
    return aliases, signatures


_aliases, _alias_signatures = _top_level_aliases()
autosummary_context = {
    "aliases": _aliases,
    "aliases_signature": _alias_signatures,
}

autosummary_generate = True
# A module's page lists exactly the names in its ``__all__`` (re-exported ones included).
autosummary_ignore_module_all = False
# Names that differ only in case (``Wenner`` and ``wenner``) get distinct files.
autosummary_filename_map = {
    "bayesjoint.physics.schlumberger": "bayesjoint.physics.schlumberger-function",
    "bayesjoint.physics.wenner": "bayesjoint.physics.wenner-function",
}
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# -- Links to the libraries bayesjoint builds on ------------------------------------------------

# Each inventory is a file shipped with the docs, so the build never reaches the network. The
# URLs are the projects' public documentation, which the links in the pages point to. ArviZ is
# pinned to its 0.x documentation because the package requires arviz<1.
_INVENTORIES = {
    "python": "https://docs.python.org/3/",
    "numpy": "https://numpy.org/doc/stable/",
    "scipy": "https://docs.scipy.org/doc/scipy/",
    "xarray": "https://docs.xarray.dev/en/stable/",
    "pandas": "https://pandas.pydata.org/docs/",
    "pymc": "https://www.pymc.io/projects/docs/en/stable/",
    "arviz": "https://python.arviz.org/en/v0.23.0/",
    "pytensor": "https://pytensor.readthedocs.io/en/latest/",
}
intersphinx_mapping = {
    name: (url, str(HERE / "_intersphinx" / f"{name}.inv")) for name, url in _INVENTORIES.items()
}
intersphinx_timeout = 1

# -- HTML --------------------------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"bayesjoint {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 3,
}
