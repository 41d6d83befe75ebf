"""The `bayesjoint` command: run → diagnose → report round trip, help, and one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bayesjoint as bj
from bayesjoint import cli

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _in_a_temporary_folder(tmp_path, monkeypatch):
    # Whatever a command writes by default into the current folder lands in the test's own.
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """`bayesjoint run profile_gravity_borehole --quick` once for the module."""
    out = tmp_path_factory.mktemp("run") / "p.nc"
    status = cli.main(
        ["run", "profile_gravity_borehole", "--quick", "--out", str(out), "--seed", "5"]
    )
    assert status == 0
    return out


def test_run_diagnose_report_round_trip(quick_run, capsys, tmp_path):
    capsys.readouterr()
    report = bj.load(quick_run)
    assert report.posterior.attrs["random_seed"] == "5"
    status = cli.main(["diagnose", str(quick_run), "--no-progress", "--ess", "100000"])
    text = capsys.readouterr().out
    # 4 chains x 1500 draws cannot reach an ESS of 100000: the verdict says FAIL (exit 3)
    assert status == cli.EXIT_CHECK
    assert "verdict: FAIL" in text and "ESS" in text
    for word in ("density", "gravity", "borehole", "Pareto k", "conflict"):
        assert word in text
    # at the default limits the --quick run converges, so the same file is usable (exit 0)
    assert cli.main(["diagnose", str(quick_run)]) == 0
    capsys.readouterr()
    assert cli.main(["diagnose", str(quick_run), "--json", "--ess", "100000"]) == cli.EXIT_CHECK
    parsed = json.loads(capsys.readouterr().out)
    assert parsed["verdict"] == "fail" and parsed["variables"]
    out_dir = tmp_path / "rep"
    assert cli.main(["report", str(quick_run), "--out", str(out_dir), "--title", "quick"]) == 0
    assert f"report written: {out_dir / 'index.html'}" in capsys.readouterr().out
    html = (out_dir / "index.html").read_text(encoding="utf-8")
    for key in ("field_density", "datafit_gravity", "datafit_borehole", "rank"):
        assert f'data-figure="{key}"' in html
        assert (out_dir / "figures" / f"{key}.png").stat().st_size > 10_000
    # the case study stores the exact budget, so the report draws it
    assert 'data-figure="information_budget"' in html
    assert "<title>quick</title>" in html


@pytest.mark.parametrize("command", ["diagnose", "report"])
def test_unreadable_files_give_one_line_and_a_nonzero_exit(command, tmp_path, capsys, quick_run):
    bad = tmp_path / "bad.nc"
    bad.write_text("not a netCDF file")
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(quick_run.read_bytes()[:20_000])
    for path, why in [
        (tmp_path / "missing.nc", "no such file"),
        (bad, "cannot read"),
        (truncated, "cannot read"),
        (tmp_path, "is a folder"),
    ]:
        status = cli.main([command, str(path)])
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert status == cli.EXIT_ERROR
        assert len(lines) == 1 and why in lines[0], captured.err
        assert lines[0].startswith(f"bayesjoint {command}: ")
        assert "Traceback" not in captured.err + captured.out


def test_corrupt_file_in_a_real_process_has_no_traceback(tmp_path):
    # Negative control for the in-process checks above: the real command, real stderr.
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    result = subprocess.run(
        [sys.executable, "-m", "bayesjoint", "diagnose", str(bad)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == cli.EXIT_ERROR
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("bayesjoint diagnose: cannot read")


def test_help_lists_every_command(capsys):
    # (`python -m bayesjoint --help` as a process is covered by tests/test_cli.py)
    assert cli.main(["--help"]) == 0
    listed = re.findall(r"^\s{4}(\w+)\s", capsys.readouterr().out, re.MULTILINE)
    assert listed == ["demo", "run", "diagnose", "report"]
    for command in ("run", "diagnose", "report"):
        assert cli.main([command, "--help"]) == 0
        assert "usage: bayesjoint " + command in capsys.readouterr().out


def test_run_lists_and_rejects_case_studies(capsys):
    assert cli.main(["run", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "profile_gravity_borehole" in listing
    assert cli.main(["run", "no_such_study"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no case study 'no_such_study'" in err[0]
    assert "profile_gravity_borehole" in err[0]
    assert cli.main(["run"]) == cli.EXIT_USAGE
    # a path or file name selects the same study as its module name
    assert cli.load_case_study("case_studies/profile_gravity_borehole.py").__name__.endswith(
        "profile_gravity_borehole"
    )


def test_case_studies_ship_as_a_package():
    # The case studies are installed as bayesjoint_case_studies (pyproject maps case_studies/).
    import bayesjoint_case_studies

    assert Path(bayesjoint_case_studies.__file__).parent.name in (
        "case_studies",
        "bayesjoint_case_studies",
    )
    assert "profile_gravity_borehole" in cli.case_studies()
    # Every package directory of bayesjoint is listed in pyproject's explicit package list, so a
    # new subpackage cannot be left out of the wheel by accident.
    text = (ROOT / "pyproject.toml").read_text()
    listed = set(re.findall(r'"([\w.]+)"', re.search(r"packages = \[(.*?)\]", text, re.S).group(1)))
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "bayesjoint").rglob("__init__.py")
    }
    missing = found - listed
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"
    assert "bayesjoint_case_studies" in listed
    assert re.search(r'bayesjoint_case_studies = "case_studies"', text)


def test_checkpoint_is_a_file_for_demo_and_a_folder_for_run_and_the_help_says_why(tmp_path, capsys):
    # demo samples once: --checkpoint FILE; a case study samples several times: FOLDER
    # (its k-th run writes run-<k>.nc). Both help texts say so, and each refuses the other kind.
    parser = cli._parser()
    sub = next(a for a in parser._actions if a.choices and "demo" in a.choices).choices
    demo_help = next(a for a in sub["demo"]._actions if "--checkpoint" in a.option_strings)
    run_help = next(a for a in sub["run"]._actions if "--checkpoint" in a.option_strings)
    assert demo_help.metavar == "FILE" and "samples once" in demo_help.help
    assert "'bayesjoint run' takes a FOLDER" in demo_help.help
    assert run_help.metavar == "FOLDER" and "samples several times" in run_help.help
    assert "'bayesjoint demo' takes a FILE" in run_help.help
    # run: a file (existing, or a missing name ending in .nc) is refused before anything runs
    existing = tmp_path / "old.nc"
    existing.write_text("x")
    for given in (existing, tmp_path / "new.nc"):
        status = cli.main(
            ["run", "profile_gravity_borehole", "--quick", "--checkpoint", str(given)]
        )
        assert status == cli.EXIT_USAGE
        assert "takes a FOLDER" in capsys.readouterr().err
    assert not (tmp_path / "new.nc").exists()
    # demo: a folder is refused (the sample() check names the fix)
    status = cli.main(["demo", "--quick", "--no-progress", "--checkpoint", str(tmp_path)])
    assert status != 0
    assert "is a folder; give a file name" in capsys.readouterr().err
    # negative control: a folder for run passes the check
    from bayesjoint.inference.checkpoint import _check_folder

    _check_folder(tmp_path / "checkpoints")
