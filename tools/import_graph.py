#!/usr/bin/env python3
"""Print the import graph of the ``bayesjoint`` package and exit 1 if it has a cycle.

Usage (from the repository root; standard library only, nothing is imported from the package)::

    python tools/import_graph.py                  # the graph, then the cycles (if any)
    python tools/import_graph.py --cycles-only    # only the verdict and the cycles

What counts as an edge ``A -> B`` (``A`` and ``B`` are modules of the package; a package is its
``__init__.py``):

- every ``import`` statement in ``A``, at module level **and** inside functions and classes; an
  edge found only inside functions is marked ``(lazy)``: it does not run when ``A`` is imported,
  but it is still a dependency, so it still counts for cycles;
- ``import bayesjoint.x.y`` and ``from bayesjoint.x.y import name`` give ``A -> bayesjoint.x.y``;
  ``from bayesjoint.x import y`` gives ``A -> bayesjoint.x.y`` when ``y`` is a submodule, and
  ``A -> bayesjoint.x`` (the package ``__init__``) otherwise;
- importing ``bayesjoint.x.y`` also runs the ``__init__`` of every package on the way
  (``bayesjoint.x``) that does not already contain ``A``, so those packages are targets too;
  the packages that contain ``A`` are being imported already and give no edge;
- an edge to a package ``__init__`` stands for everything that ``__init__`` imports, because the
  graph is followed transitively: ``bayesjoint.validate -> bayesjoint`` (``import bayesjoint``)
  closes a cycle with ``bayesjoint -> bayesjoint.validate``;
- ``importlib.import_module("literal")`` counts (lazy); a name built at run time (an f-string)
  cannot be resolved and is left out, as are imports under ``if TYPE_CHECKING:``, which never
  run.

A cycle is a strongly connected component with more than one module (or a module importing
itself); each is printed with the import statements (file:line) that form it.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "bayesjoint"


class Edge(NamedTuple):
    """One import of module ``target`` by module ``source`` (``line`` of ``path``)."""

    source: str
    target: str
    path: str
    line: int
    lazy: bool


def module_names(package_dir: Path) -> dict[str, Path]:
    """Map every dotted module name under ``package_dir`` to its file."""
    base = package_dir.parent
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module):
    """Yield ``(node, lazy)`` for every import statement and literal ``import_module`` call."""

    def visit(node: ast.AST, lazy: bool):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:  # the TYPE_CHECKING body never runs
                yield from visit(child, lazy)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, lazy
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id == "import_module")
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node, True  # a call runs when its code runs: counted as lazy
        inner = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            yield from visit(child, inner)

    yield from visit(tree, False)


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _targets(name: str, dotted: str, modules: dict[str, Path]) -> list[str]:
    """Return the package modules that importing ``dotted`` from module ``name`` runs."""
    out = []
    parts = dotted.split(".")
    for i in range(1, len(parts) + 1):
        prefix = ".".join(parts[:i])
        if prefix not in modules:
            break
        is_container = name == prefix or name.startswith(prefix + ".")
        if i == len(parts) or not is_container:
            out.append(prefix)
    return out


def edges_of(name: str, path: Path, modules: dict[str, Path], root: Path = ROOT) -> list[Edge]:
    """Every edge from module ``name`` (file ``path``) to a module in ``modules``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    try:
        shown = str(path.relative_to(root))
    except ValueError:
        shown = str(path)
    found: dict[Edge, None] = {}  # ordered and without repeats (one per statement)
    for node, lazy in _imports(tree):
        dotted: list[str] = []
        if isinstance(node, ast.Import):
            dotted = [alias.name for alias in node.names]
        elif isinstance(node, ast.Call):
            dotted = [node.args[0].value]
        else:  # ImportFrom
            if node.level:
                base = _package_of(name, path).split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                dotted.append(sub if sub in modules else module)
        for target_name in dotted:
            for target in _targets(name, target_name, modules):
                found[Edge(name, target, shown, node.lineno, lazy)] = None
    return list(found)


def build_graph(package_dir: Path, root: Path = ROOT) -> list[Edge]:
    """All edges between the modules of the package in ``package_dir``."""
    modules = module_names(package_dir)
    return [e for n, p in modules.items() for e in edges_of(n, p, modules, root)]


def adjacency(edges: list[Edge], nodes=()) -> dict[str, set[str]]:
    """Return ``{module: {imported modules}}`` for ``edges`` (plus isolated ``nodes``)."""
    graph: dict[str, set[str]] = {n: set() for n in nodes}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of ``graph`` that contain a cycle (Tarjan, iterative).

    Parameters
    ----------
    graph : dict of str to set of str
        ``{node: {successors}}``; successors missing as keys are treated as sinks.

    Returns
    -------
    list of list of str
        Each component with more than one node, or one node with an edge to itself; nodes
        sorted within a component, components sorted by their first node.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    components.append(sorted(component))
    return sorted(components)


def report(edges: list[Edge], nodes, cycles_only: bool = False) -> tuple[str, list[list[str]]]:
    """Return the text that the command prints, and the cycles."""
    graph = adjacency(edges, nodes)
    cycles = find_cycles(graph)
    lines = []
    if not cycles_only:
        lazy = {(e.source, e.target) for e in edges if e.lazy}
        eager = {(e.source, e.target) for e in edges if not e.lazy}
        for source in sorted(graph):
            shown = [
                t + (" (lazy)" if (source, t) in lazy and (source, t) not in eager else "")
                for t in sorted(graph[source])
            ]
            lines.append(f"{source} -> {', '.join(shown) if shown else '(nothing)'}")
        lines.append("")
    n_edges = sum(len(v) for v in graph.values())
    if not cycles:
        lines.append(f"no import cycle ({len(graph)} modules, {n_edges} edges)")
    for k, component in enumerate(cycles, 1):
        members = set(component)
        lines.append(f"cycle {k}: {' <-> '.join(component)}")
        for e in sorted(edges, key=lambda e: (e.source, e.target, e.line)):
            if e.source in members and e.target in members:
                kind = "lazy" if e.lazy else "module level"
                lines.append(f"    {e.source} -> {e.target}  ({e.path}:{e.line}, {kind})")
    return "\n".join(lines), cycles


def main(argv: list[str] | None = None) -> int:
    """Print the graph and the cycles; return 1 if there is a cycle, else 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--package-dir",
        type=Path,
        default=ROOT / PACKAGE,
        help="the package folder to scan (default: bayesjoint/ next to tools/)",
    )
    parser.add_argument(
        "--cycles-only", action="store_true", help="print only the verdict and the cycles"
    )
    args = parser.parse_args(argv)
    package_dir = args.package_dir.resolve()
    if not (package_dir / "__init__.py").is_file():
        parser.error(f"{package_dir} is not a package folder (no __init__.py)")
    edges = build_graph(package_dir, root=package_dir.parent)
    text, cycles = report(edges, module_names(package_dir), cycles_only=args.cycles_only)
    print(text)
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
