"""Packaging tells the truth, and the README's commands work on a machine with Python and pip only.

- Every third-party module imported by the shipped code (``bayesjoint/`` and the case studies,
  which ship as ``bayesjoint_case_studies``) is a declared dependency, and every declared runtime
  dependency is used.
- ``environment.yml`` (conda) lists the same packages with the same version bounds as
  ``pyproject.toml``: runtime dependencies and every extra.
- The version has one source; ``.ci/run`` runs the README's test command with
  ``BAYESJOINT_REQUIRE_ALL=1``; the helpers of ``tests/conftest.py`` that keep the suite runnable
  on a bare machine (skip for a missing system program) and the working tree clean do their job.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (the test extra installs tomli there)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# The code that a wheel ships: the package, and the case studies (bayesjoint_case_studies).
SHIPPED = [ROOT / "bayesjoint", ROOT / "case_studies"]
OWN = {"bayesjoint", "bayesjoint_case_studies"}

# Import name -> distribution name, where they differ and the distribution may not be installed
# (installed ones are found through importlib.metadata.packages_distributions()).
IMPORT_TO_DISTRIBUTION = {
    "yaml": "pyyaml",
    "PIL": "pillow",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "mpl_toolkits": "matplotlib",
}
# Imported only inside ``try: ... except ImportError`` (the code works without them), and not
# declared: each with the reason.
OPTIONAL_IMPORTS = {
    # the JAX implementations of the link normalizers, registered only where JAX is installed
    # (it comes with numpyro; the test extra installs it)
    "jax",
}
# Declared but never imported by name: each with the reason.
DECLARED_NOT_IMPORTED = {
    "h5netcdf",  # the netCDF engine of bj.save / bj.load, which xarray loads by its name
}
# PyPI name -> conda-forge name, where they differ.
CONDA_NAMES = {
    # pip's matplotlib has no GUI toolkit dependency; on conda-forge that is matplotlib-base
    # ("matplotlib" there also pulls in Qt).
    "matplotlib": "matplotlib-base",
}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement(text: str) -> tuple[str, str]:
    """``(normalized name, specifier)`` of a PEP 508 requirement; markers and extras dropped."""
    match = re.fullmatch(
        r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?", text
    )
    assert match, f"cannot read the requirement {text!r}"
    spec = ",".join(sorted(part.strip() for part in match.group(3).split(",") if part.strip()))
    return _normalize(match.group(1)), spec


def _declared(*groups: str) -> dict[str, str]:
    """``{name: specifier}`` of the runtime dependencies (``"runtime"``) and of the extras."""
    out = {}
    for group in groups:
        if group == "runtime":
            entries = PYPROJECT["project"]["dependencies"]
        else:
            entries = PYPROJECT["project"]["optional-dependencies"][group]
        out.update(_requirement(entry) for entry in entries)
    return out


def _guarded(tree: ast.Module) -> set[int]:
    """Line numbers of imports inside ``try`` blocks that catch ImportError."""
    lines = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        caught = set()
        for handler in node.handlers:
            kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            caught |= {k.id for k in kinds if isinstance(k, ast.Name)}
        if caught & {"ImportError", "ModuleNotFoundError"}:
            for stmt in node.body:
                for inner in ast.walk(stmt):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        lines.add(inner.lineno)
    return lines


def _third_party_imports() -> dict[str, list[tuple[str, bool]]]:
    """``{top-level module: [(file:line, guarded)]}`` for every import in the shipped code."""
    found: dict[str, list[tuple[str, bool]]] = {}
    for folder in SHIPPED:
        for path in sorted(folder.rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            guarded = _guarded(tree)
            for node in ast.walk(tree):  # module level and inside functions alike
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top in OWN or top == "__future__":
                        continue
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    found.setdefault(top, []).append((where, node.lineno in guarded))
    return found


def _distribution(module: str) -> str:
    installed = metadata.packages_distributions().get(module)
    if installed:
        return _normalize(installed[0])
    return _normalize(IMPORT_TO_DISTRIBUTION.get(module, module))


def test_every_imported_module_is_declared():
    imports = _third_party_imports()
    assert {"numpy", "pymc", "pytensor", "scipy", "rich"} <= set(imports)  # the scan works
    runtime = _declared("runtime")
    undeclared = {
        module: places
        for module, places in imports.items()
        if _distribution(module) not in runtime and module not in OPTIONAL_IMPORTS
    }
    assert undeclared == {}, "add these to [project] dependencies in pyproject.toml"
    # an optional import is optional everywhere: always inside try/except ImportError
    for module in OPTIONAL_IMPORTS & set(imports):
        assert all(guarded for _, guarded in imports[module]), imports[module]


def test_every_declared_dependency_is_used():
    used = {_distribution(m) for m in _third_party_imports()}
    unused = set(_declared("runtime")) - used - DECLARED_NOT_IMPORTED
    assert unused == set(), "drop these from [project] dependencies or say why they stay"
    assert "h5netcdf" in (ROOT / "bayesjoint" / "io.py").read_text()  # the engine, by name


def test_the_import_scan_sees_lazy_and_guarded_imports(tmp_path, monkeypatch):
    # Negative control: an import inside a function is found, and one under try/except
    # ImportError is marked as guarded; stdlib and the package itself are left out.
    pkg = tmp_path / "bayesjoint"
    pkg.mkdir()
    (pkg / "m.py").write_text(
        "import os\nimport bayesjoint.grid\n\n\ndef f():\n    import yaml\n\n"
        "    try:\n        from sklearn import svm\n    except ImportError:\n        svm = None\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(sys.modules[__name__], "SHIPPED", [pkg])
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    found = _third_party_imports()
    assert found == {
        "yaml": [("bayesjoint/m.py:6", False)],
        "sklearn": [("bayesjoint/m.py:9", True)],
    }
    assert _distribution("yaml") == "pyyaml" and _distribution("sklearn") == "scikit-learn"


def _conda_environment() -> tuple[dict[str, str], list[str]]:
    """``({conda name: specifier}, pip entries)`` of environment.yml (a plain YAML list)."""
    conda, pip, section = {}, [], None
    for line in (ROOT / "environment.yml").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            section = line.split(":")[0]
            continue
        item = re.fullmatch(r"(\s*)- (.+?)\s*(#.*)?", line)
        if section != "dependencies" or item is None:
            continue
        indent, text = len(item.group(1)), item.group(2)
        if indent > 2:
            pip.append(text)
        elif text not in ("pip", "pip:"):
            name, spec = _requirement(text)
            conda[name] = spec
    return conda, pip


def test_environment_yml_matches_pyproject():
    conda, pip = _conda_environment()
    groups = ["runtime", *PYPROJECT["project"]["optional-dependencies"]]
    expected = {CONDA_NAMES.get(n, n): s for n, s in _declared(*groups).items()}
    expected["python"] = _requirement("python" + PYPROJECT["project"]["requires-python"])[1]
    raw = [*PYPROJECT["project"]["dependencies"]]
    raw += [r for extra in PYPROJECT["project"]["optional-dependencies"].values() for r in extra]
    shown = [r.split(";")[0].replace(" ", "") for r in raw]
    lines = "\n".join(f"  - {r}" for r in shown)
    message = (
        f"environment.yml must list, under dependencies (conda names: {CONDA_NAMES}):\n{lines}"
    )
    assert conda == expected, message
    assert pip == ["-e ."], "the pip section installs the package itself, nothing else"
    # the extras are all there: test and docs at least
    assert {"test", "docs"} <= set(PYPROJECT["project"]["optional-dependencies"])


def test_environment_check_detects_a_changed_floor(monkeypatch):
    # Negative control: a floor that differs between the two files is caught.
    conda, _ = _conda_environment()
    assert conda["scipy"] == _declared("runtime")["scipy"]
    changed = dict(PYPROJECT, project=dict(PYPROJECT["project"]))
    changed["project"]["dependencies"] = [
        "scipy>=0.1" if d.startswith("scipy") else d for d in PYPROJECT["project"]["dependencies"]
    ]
    monkeypatch.setattr(sys.modules[__name__], "PYPROJECT", changed)
    with pytest.raises(AssertionError, match=r"environment\.yml must list"):
        test_environment_yml_matches_pyproject()


def test_version_has_one_source():
    import bayesjoint
    from bayesjoint import _version, io

    assert PYPROJECT["project"]["version"] == _version.__version__ == bayesjoint.__version__
    assert io.provenance()["bayesjoint_version"] in (
        _version.__version__,
        metadata.version("bayesjoint"),
    )


def test_ci_runs_the_readme_commands_with_every_test_required():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1).splitlines()
    assert block == [
        "pip install . && bayesjoint demo",
        'pip install ".[test]" && python -m pytest',
    ]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    install = ci.index("apt-get install")
    require = ci.index("export BAYESJOINT_REQUIRE_ALL=1")
    assert install < require < ci.index(block[1])  # after the programs exist, before the tests
    assert "chromium" in ci[install:require] and "chromium-driver" in ci[install:require]


# -- the helpers of tests/conftest.py ----------------------------------------------------------
def _fake_program(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def test_missing_program_skips_unless_every_test_is_required(
    require_program, tmp_path, monkeypatch
):
    monkeypatch.setenv("PATH", str(tmp_path))
    where = dict(purpose="a check", install="apt-get install nothing")
    monkeypatch.delenv("BAYESJOINT_REQUIRE_ALL", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"bj-no-such-tool not found on PATH .*nothing"):
        require_program("bj-no-such-tool", **where)
    monkeypatch.setenv("BAYESJOINT_REQUIRE_ALL", "1")
    with pytest.raises(pytest.fail.Exception, match="BAYESJOINT_REQUIRE_ALL=1"):
        require_program("bj-no-such-tool", **where)
    # a program that is there is found, in the order asked, in both modes
    tool = _fake_program(tmp_path, "bj-tool-b")
    assert require_program("bj-no-such-tool", "bj-tool-b", **where) == str(tool)
    monkeypatch.setenv("BAYESJOINT_REQUIRE_ALL", "0")
    assert require_program("bj-tool-b", **where) == str(tool)


def test_tree_check_lists_new_files_but_not_tool_caches(require_program, untracked_files, tmp_path):
    git = require_program("git", purpose="the working-tree check", install="apt-get install git")
    subprocess.run([git, "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("*.nc\n__pycache__/\nbuild/\n", encoding="utf-8")
    (tmp_path / "kept.py").write_text("x = 1\n", encoding="utf-8")
    subprocess.run([git, "add", "kept.py", ".gitignore"], cwd=tmp_path, check=True)
    assert untracked_files(tmp_path) == set()
    for name in ("out.nc", "report/index.html", "__pycache__/m.pyc", "build/lib/m.py", "new.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("", encoding="utf-8")
    # an ignored *.nc is still a file written into the tree; caches and build output are not
    assert untracked_files(tmp_path) == {"out.nc", "report/index.html", "new.py"}
    assert untracked_files(tmp_path / "report") is None  # not the top of a checkout: no check
