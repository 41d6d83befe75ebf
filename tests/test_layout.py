"""The package layout: no import cycle, joint.py free of inference, old module paths still work.

The import graph comes from ``tools/import_graph.py`` (run by anyone as
``python tools/import_graph.py``); its cycle finder is checked on small graphs with a known
answer, and on small synthetic packages, so that "no cycle" is a result and not a blind spot.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "import_graph.py"


@pytest.fixture(scope="module")
def graph_tool():
    spec = importlib.util.spec_from_file_location("bayesjoint_import_graph", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_import_graph_has_no_cycle():
    result = _run()
    assert result.stderr == ""
    # the printed graph covers the package: the model-building and the inference halves
    assert "bayesjoint.joint -> " in result.stdout
    assert "bayesjoint.inference -> " in result.stdout
    assert result.returncode == 0, result.stdout[result.stdout.find("cycle 1:") :]
    assert "no import cycle" in result.stdout


def test_cycle_finder_on_known_graphs(graph_tool):
    # Negative control for the test above: the same finder on graphs whose cycles are known.
    find = graph_tool.find_cycles
    assert find({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find({"x": {"x"}, "y": set()}) == [["x"]]  # a module importing itself
    assert find({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []  # a diamond is no cycle
    two = find({"a": {"b"}, "b": {"a", "c"}, "c": {"d"}, "d": {"c"}, "e": {"a"}})
    assert two == [["a", "b"], ["c", "d"]]
    # a long chain closed at its end (iterative search: no recursion limit)
    chain = {f"m{i:04d}": {f"m{i + 1:04d}"} for i in range(5000)}
    chain["m5000"] = {"m0000"}
    (component,) = find(chain)
    assert len(component) == 5001


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return tmp_path / "pkg"


def test_script_finds_a_cycle_through_the_package_init(tmp_path):
    # `import pkg` inside a function of pkg.a is an edge to pkg/__init__.py, which imports pkg.a:
    # a cycle, although it is lazy; the script names both import statements and exits 1.
    pkg = _package(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg import a\n",
            "pkg/a.py": "def f():\n    import pkg\n\n    return pkg\n",
            "pkg/b.py": "from pkg.a import f\n",
        },
    )
    result = _run("--package-dir", str(pkg))
    assert result.returncode == 1
    assert "pkg -> pkg.a" in result.stdout and "pkg.a -> pkg (lazy)" in result.stdout
    assert "cycle 1: pkg <-> pkg.a" in result.stdout
    assert "pkg/a.py:2, lazy" in result.stdout
    assert "pkg/__init__.py:1, module level" in result.stdout
    assert "pkg.b" not in result.stdout.split("cycle 1:")[1]  # b only imports: not in the cycle


def test_script_counts_the_init_of_a_package_on_the_way(tmp_path):
    # `from pkg.sub.z import g` runs pkg/sub/__init__.py first, which imports pkg.sub.x, which
    # imports pkg.y: pkg.y -> pkg.sub -> pkg.sub.x -> pkg.y is a cycle although pkg.y never
    # names pkg.sub.x. Without that import in pkg/sub/__init__.py there is none.
    files = {
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "from pkg.sub.x import h\n",
        "pkg/sub/x.py": "from pkg.y import k\n\n\ndef h():\n    return k\n",
        "pkg/sub/z.py": "def g():\n    return 1\n",
        "pkg/y.py": "def k():\n    from pkg.sub.z import g\n\n    return g()\n",
    }
    result = _run("--cycles-only", "--package-dir", str(_package(tmp_path / "one", files)))
    assert result.returncode == 1
    assert "cycle 1: pkg.sub <-> pkg.sub.x <-> pkg.y" in result.stdout
    files["pkg/sub/__init__.py"] = ""
    result = _run("--cycles-only", "--package-dir", str(_package(tmp_path / "two", files)))
    assert result.returncode == 0 and "no import cycle" in result.stdout


def test_joint_imports_no_inference_module_at_module_level(graph_tool):
    # joint.py declares the model; the samplers (bayesjoint.inference) build on it. Importing
    # bayesjoint.joint must not run any inference module, directly or through what it imports.
    edges = graph_tool.build_graph(ROOT / "bayesjoint")
    eager = graph_tool.adjacency([e for e in edges if not e.lazy])
    reached, todo = set(), ["bayesjoint.joint"]
    while todo:
        for target in eager.get(todo.pop(), ()):
            if target not in reached:
                reached.add(target)
                todo.append(target)
    assert "bayesjoint.linear" in reached and "bayesjoint.modality" in reached  # the scan works
    inference = sorted(m for m in reached if m.split(".")[:2] == ["bayesjoint", "inference"])
    assert inference == [], f"bayesjoint.joint imports {inference} at module level"


# Old module path -> its public names before the move (their __all__ then), kept for one release.
ALIASES = {
    "bayesjoint.multimodal": [
        "ChainGroup",
        "ContinuationResult",
        "ContinuationStage",
        "LowPass",
        "ModeDetection",
        "bridge_log_evidence",
        "detect_modes",
        "frequency_continuation",
        "lowpass_matrix",
        "mode_weights",
        "sample_from_modes",
        "sample_smc",
        "weighted_draws",
        "weighted_mean",
    ],
    "bayesjoint.search": [
        "LogPosterior",
        "Mode",
        "SearchResult",
        "SwarmResult",
        "find_modes",
        "finite_difference_hessian",
        "laplace_log_mass",
        "local_descent",
        "log_posterior",
        "particle_swarm",
    ],
    "bayesjoint.preconditioning": ["LowRankMass", "preconditioned_sample"],
    "bayesjoint.testing": [
        "CUBIC_BASINS",
        "ExactComparison",
        "TaylorResult",
        "blur_and_points_problem",
        "blur_matrix",
        "compare_with_exact",
        "cubic_log_density",
        "cubic_problem",
        "taylor_test",
    ],
    "bayesjoint.html_report": ["Figure", "report"],
}


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_deprecated_alias_module_warns_and_keeps_its_names(name, monkeypatch):
    import bayesjoint

    # A fresh import, whatever ran before: drop the cached module and the package attribute
    # (monkeypatch puts both back afterwards, so other tests see the state they expect).
    monkeypatch.delitem(sys.modules, name, raising=False)
    attribute = name.rpartition(".")[2]
    if attribute in vars(bayesjoint):  # not getattr: the package's __getattr__ would import it
        monkeypatch.delattr(bayesjoint, attribute)
    with pytest.warns(DeprecationWarning, match=rf"{name} moved to .*removed in the next release"):
        module = importlib.import_module(name)
    missing = [n for n in ALIASES[name] if not hasattr(module, n)]
    assert missing == []
    for n in ALIASES[name]:  # the very objects of the new home, not copies
        obj = getattr(module, n)
        home = sys.modules[getattr(obj, "__module__", None) or name]
        if home is not module and hasattr(home, n):
            assert getattr(home, n) is obj
    # a second import is served from sys.modules and does not warn again
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert importlib.import_module(name) is module


@pytest.mark.parametrize("name", ["save", "load", "provenance", "attach_provenance"])
def test_netcdf_names_moved_from_report_to_io_warn(name):
    # bayesjoint.report was the netCDF module before it became the HTML report (bj.report is
    # the function, so the module is taken from importlib).
    io = importlib.import_module("bayesjoint.io")
    report = importlib.import_module("bayesjoint.report")
    with pytest.warns(DeprecationWarning, match=rf"bayesjoint.report.{name} moved to "):
        obj = getattr(report, name)
    assert obj is getattr(io, name)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        report.not_a_name  # noqa: B018
