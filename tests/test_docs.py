"""The docs site has what its build cannot check by itself (the build runs in .ci/run).

``sphinx-build -W`` fails on a broken reference or a page missing from the table of contents,
but not on a case study without a page, a page without its script's figure, a public name left
out of the API reference, an inventory file that no longer matches its generator, or a notebook
committed with stale outputs. These checks read files only: cheap, and nothing is written.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path

import pytest

import bayesjoint

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SCRIPTS = sorted(
    p for p in (ROOT / "case_studies").glob("*.py") if not p.name.startswith(("_", "."))
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _writes_png(script: Path) -> bool:
    """Whether a case study draws a figure file (the shared helper writes ``<out>.png``)."""
    source = script.read_text(encoding="utf-8")
    return "plot_sections(" in source or '".png"' in source


def _toctree_entries() -> set[str]:
    text = (DOCS / "index.md").read_text(encoding="utf-8")
    entries = set()
    for block in re.findall(r"```\{toctree\}(.*?)```", text, flags=re.S):
        entries |= {line.strip() for line in block.splitlines() if line.strip() and ":" not in line}
    return entries


def test_there_are_case_studies():
    # Negative control for the parametrized tests below: an empty glob would pass them all.
    assert len(SCRIPTS) >= 5
    assert any(_writes_png(s) for s in SCRIPTS) and not all(_writes_png(s) for s in SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_every_case_study_has_a_page_with_its_figures(script):
    page = DOCS / "case_studies" / f"{script.stem}.md"
    assert page.exists(), f"case_studies/{script.name} has no page: write {page.relative_to(ROOT)}"
    text = page.read_text(encoding="utf-8")
    assert f"case_studies/{script.name}" in text, f"{page.name} must name its script"
    assert f"case_studies/{script.stem}" in _toctree_entries(), f"{page.name} is not in index.md"
    # Every script prints its figures (numbers, also stored in the netCDF report); the page
    # shows them in a "Figures" section.
    assert re.search(r"^#+ Figures", text, flags=re.M), f"{page.name} has no Figures section"
    if _writes_png(script):
        # The PNG the script draws is committed next to the page and shown on it.
        image = f"figures/{script.stem}.png"
        assert image in text, f"{page.name} must show {image}, the figure its script draws"
        png = page.parent / image
        assert png.exists(), f"{png.relative_to(ROOT)} is missing"
        assert png.read_bytes()[:8] == PNG_MAGIC, f"{png.relative_to(ROOT)} is not a PNG"


def test_api_reference_lists_every_public_name():
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    missing = [n for n in bayesjoint.__all__ if not re.search(rf"\bbayesjoint\.{n}\b", text)]
    assert not missing, f"docs/api.md does not list: {missing}"


def test_api_reference_has_every_subpackage():
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    packages = sorted(
        p.parent.name
        for p in (ROOT / "bayesjoint").glob("*/__init__.py")
        if not p.parent.name.startswith("_")
    )
    assert packages, "no subpackages found"
    missing = [p for p in packages if f"   bayesjoint.{p}\n" not in text]
    assert not missing, f"docs/api.md has no page for the subpackages {missing}"
    # conf.py's list (used to point top-level re-exports at their pages) agrees with api.md.
    tree = ast.parse((DOCS / "conf.py").read_text(encoding="utf-8"))
    listed = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", None) == "DOCUMENTED_PACKAGES" for t in node.targets)
    )
    in_api = re.findall(r"^   (bayesjoint\.[a-z_]+)$", text, flags=re.M)
    assert [p for p in in_api if p in listed] == listed
    assert all(f"bayesjoint.{p}" in listed for p in packages)


def test_intersphinx_inventories_are_local_and_current():
    tree = ast.parse((DOCS / "conf.py").read_text(encoding="utf-8"))
    urls = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", None) == "_INVENTORIES" for t in node.targets)
    )
    assert {"numpy", "scipy", "xarray", "pymc", "arviz"} <= set(urls)
    for name, url in urls.items():
        assert url.startswith("https://") and url.endswith("/"), url
        assert (DOCS / "_intersphinx" / f"{name}.inv").is_file(), f"no inventory for {name}"
    make = _load("make_inventories", DOCS / "make_inventories.py")
    assert set(make.INVENTORIES) == set(urls), "conf.py and make_inventories.py list other projects"
    assert make.main(["--check"]) == 0, "run python docs/make_inventories.py and commit the files"


def test_inventory_check_detects_a_stale_file(tmp_path, monkeypatch):
    # Negative control for the --check above: a file that differs from the script is reported.
    make = _load("make_inventories", DOCS / "make_inventories.py")
    monkeypatch.setattr(make, "OUT", tmp_path)
    assert make.main([]) == 0 and make.main(["--check"]) == 0
    project, version, entries = make.INVENTORIES["numpy"]
    (tmp_path / "numpy.inv").write_bytes(make.inventory_bytes(project, version, entries[:-1]))
    assert make.main(["--check"]) == 1


def test_getting_started_notebook_is_committed_clean():
    path = DOCS / "getting_started.ipynb"
    notebook = json.loads(path.read_text(encoding="utf-8"))
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    # The build executes it (nb_execution_mode = "force"); stored outputs would go stale.
    assert code and all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    source = "\n".join("".join(c["source"]) for c in code)
    for step in ("bj.Modality", ".sample(", "bj.diagnose", "information_budget", "bj.report"):
        assert step in source, f"the getting-started notebook lost its {step} step"
    assert "getting_started" in _toctree_entries()


def test_every_docs_image_is_listed_with_the_command_that_draws_it():
    figures = _load("docs_figures", DOCS / "figures.py")
    assert figures.main(["--check"]) == 0, "run python docs/figures.py --check"
    assert len(figures.images()) == len(figures.FIGURES) >= 13


def test_figures_check_flags_an_unlisted_image_and_a_missing_script(tmp_path):
    # Negative control for the check above, on a copy of docs/ with one image added.
    import shutil

    figures = _load("docs_figures", DOCS / "figures.py")
    shutil.copytree(DOCS, tmp_path / "docs", ignore=shutil.ignore_patterns("_build*"))
    for script in {spec["command"][0] for spec in figures.FIGURES.values()}:
        (tmp_path / script).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / script).write_text("", encoding="utf-8")
    assert figures.check(tmp_path) == []
    (tmp_path / "docs" / "figures" / "stray.png").write_bytes(PNG_MAGIC)
    assert figures.check(tmp_path) == [
        "docs/figures/stray.png: not listed in docs/figures.py (which command draws it?)"
    ]
    (tmp_path / "benchmarks" / "sbc.py").unlink()
    assert sum("benchmarks/sbc.py does not exist" in p for p in figures.check(tmp_path)) == 6
