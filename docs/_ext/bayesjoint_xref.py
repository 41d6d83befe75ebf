"""Resolve a Python cross-reference by the object it names, not by the dotted path written.

A docstring or an annotation names an object the way its own module sees it:
``modality_conflict`` inside ``bayesjoint.diagnostics``, ``np.ndarray`` where ``numpy`` is
imported as ``np``, ``LatentVariable`` imported for type checking only, or a path through the
module that defines it (``bayesjoint.inference.search.find_modes``,
``xarray.core.dataset.Dataset``). The documentation, ours and the other projects', describes
each object under its public name (``bayesjoint.inference.find_modes``, ``xarray.Dataset``).

When Sphinx and intersphinx find no target for a ``py`` reference, this extension imports what
the reference names, relative to the module it was written in, and links to the page that
documents that same Python object:

- a bayesjoint object: the page of its documented name (a subpackage's page wins over a
  top-level re-export, since it holds the full description); a submodule: the page of its
  closest documented package; an attribute listed in a class's docstring: the class's page;
- another project's object: its public name (the shortest non-private module path that
  exports it), looked up in the intersphinx inventories.

A name that matches nothing, or (written unqualified and not visible from its module) matches
several documented objects, stays unresolved, and the ``-W`` build fails as before.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from docutils import nodes
from sphinx.addnodes import desc_signature, pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.ext.intersphinx import missing_reference as intersphinx_reference
from sphinx.util.nodes import make_refnode

PACKAGE = "bayesjoint"
_MISSING = object()
# Object types each reference role may point at (for names written unqualified).
_ROLE_TYPES = {
    "func": {"function"},
    "meth": {"method", "classmethod", "staticmethod"},
    "class": {"class", "exception"},
    "exc": {"exception", "class"},
    "attr": {"attribute", "property"},
    "data": {"data"},
    "mod": {"module"},
}
# (documented name, object type, docname, anchor) by id() of the object; built once per build,
# after every page is read (references are resolved only then).
_Entry = tuple[str, str, str, str]
_TABLE: dict[str, dict[int, _Entry] | None] = {}


def _import(path: str) -> Any:
    """Return the object at a dotted path (the longest importable module, then attributes)."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        except Exception:  # a module that fails to import is not a target
            return _MISSING
        for attr in parts[cut:]:
            obj = getattr(obj, attr, _MISSING)
            if obj is _MISSING:
                return _MISSING
        return obj
    return _MISSING


def _identifiable(obj: Any) -> bool:
    """Objects whose identity names them (not ints or strings that are equal by chance)."""
    return inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isroutine(obj)


def _documented(env: BuildEnvironment) -> dict[int, _Entry]:
    domain = env.domains["py"]
    entries = [
        (name, entry.objtype, entry.docname, entry.node_id)
        for name, entry in domain.objects.items()
        if not entry.aliased and name.startswith(PACKAGE)
    ]
    table: dict[int, _Entry] = {}
    for entry in sorted(entries, key=lambda e: len(e[0])):  # longest name wins
        obj = _import(entry[0])
        if obj is not _MISSING and _identifiable(obj):
            table[id(obj)] = entry
    return table


def _owner(obj: Any, table: dict[int, _Entry]) -> _Entry | None:
    """Where ``obj`` is documented; a submodule goes to its closest documented package."""
    hit = table.get(id(obj))
    if hit is None and inspect.ismodule(obj):
        parts = obj.__name__.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            parent = _import(".".join(parts[:cut]))
            if parent is not _MISSING and id(parent) in table:
                return table[id(parent)]
    return hit


def _paths(node: nodes.Element, target: str) -> list[str]:
    """Dotted paths the reference may mean, most specific first.

    Relative to the class and module it was written in, and with a leading name that the
    module binds to another module (``np`` for ``numpy``) replaced by that module's name.
    """
    module, cls = node.get("py:module") or "", node.get("py:class") or ""
    paths = []
    if module and cls:
        paths.append(f"{module}.{cls}.{target}")
    modules = [module] if module else []
    defining = _defining_module(node)
    if defining and defining != module:
        modules.append(defining)  # an annotation is written where the object is defined
    for name in modules:
        parts = name.split(".")
        paths += [".".join([*parts[:cut], target]) for cut in range(len(parts), 0, -1)]
        head, _, rest = target.partition(".")
        bound = getattr(_import(name), head, None)
        if rest and inspect.ismodule(bound):
            paths.append(f"{bound.__name__}.{rest}")
    paths.append(target)
    return paths


def _defining_module(node: nodes.Element) -> str | None:
    """Return the module that defines the object whose signature holds ``node``, if any."""
    parent = node.parent
    while parent is not None and not isinstance(parent, desc_signature):
        parent = parent.parent
    if parent is None or not parent.get("module") or not parent.get("fullname"):
        return None
    obj = _import(f"{parent['module']}.{parent['fullname']}")
    return getattr(obj, "__module__", None) if obj is not _MISSING else None


def _public_names(obj: Any) -> list[str]:
    """Another project's names for ``obj``: each non-private module on its path that exports it."""
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__name__", None)
    if inspect.ismodule(obj) or not module or not name:
        return []
    names = []
    parts = module.split(".")
    for cut in range(1, len(parts) + 1):
        if parts[cut - 1].startswith("_"):
            break
        prefix = ".".join(parts[:cut])
        if getattr(_import(prefix), name, None) is obj:
            names.append(f"{prefix}.{name}")
    return names


def _link(app: Sphinx, node: pending_xref, entry: _Entry, contnode: nodes.Element) -> nodes.Element:
    name, _objtype, docname, anchor = entry
    return make_refnode(app.builder, node["refdoc"], docname, anchor, contnode, name)


def resolve(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.Element
) -> nodes.Element | None:
    """``missing-reference`` handler (runs after intersphinx's)."""
    if node.get("refdomain") != "py":
        return None
    if _TABLE.get("documented") is None:
        _TABLE["documented"] = _documented(env)
    table = _TABLE["documented"]
    target = node["reftarget"].lstrip(".~")
    for path in _paths(node, target):
        obj = _import(path)
        if path.startswith(PACKAGE):
            owner = _owner(obj, table) if _identifiable(obj) else None
            if owner is None and (obj is not _MISSING or node.get("reftype") == "attr"):
                # An attribute (of the class or set on instances) that the documented class's
                # docstring lists under Attributes or Parameters: link to the class.
                parent = _import(path.rsplit(".", 1)[0])
                if inspect.isclass(parent):
                    owner = table.get(id(parent))
            if owner is not None:
                return _link(app, node, owner, contnode)
            continue
        if obj is _MISSING:
            continue
        for public in [path, *_public_names(obj)]:
            if public == node["reftarget"]:
                continue  # intersphinx has already tried it
            retry = node.deepcopy()
            retry["reftarget"] = public
            found = intersphinx_reference(app, env, retry, contnode)
            if found is not None:
                return found
    # Unqualified and not visible from its module (imported for type checking only): a unique
    # documented object of the role's type with that name.
    if "." not in target:
        types = _ROLE_TYPES.get(node.get("reftype", ""), None)
        matches = {
            entry
            for entry in table.values()
            if entry[0].rsplit(".", 1)[-1] == target and (types is None or entry[1] in types)
        }
        if len(matches) == 1:
            return _link(app, node, matches.pop(), contnode)
    return None


def _reset(app: Sphinx) -> None:
    _TABLE["documented"] = None


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the handler after intersphinx's (which sees the names as written)."""
    app.connect("builder-inited", _reset)
    app.connect("missing-reference", resolve, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
