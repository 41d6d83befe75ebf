"""The command line: `bayesjoint demo` end to end (quick settings)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import bayesjoint as bj
from bayesjoint import cli, demo

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _in_a_temporary_folder(tmp_path, monkeypatch):
    # The command writes into the current folder by default: here that is the test's own.
    monkeypatch.chdir(tmp_path)


def test_demo_quick_writes_a_loadable_report(tmp_path, capsys):
    # No --out: the report goes where the README says, bayesjoint-demo.nc in the current folder.
    status = cli.main(["demo", "--quick", "--seed", "3", "--no-progress"])
    text = capsys.readouterr().out
    assert status == 0
    out = tmp_path / "bayesjoint-demo.nc"
    assert out.is_file() and sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    assert "diagnostics: max R-hat" in text
    assert "information budget" in text and "gravity" in text and "borehole" in text
    report = bj.load(out)
    for group in (
        "posterior",
        "sample_stats",
        "log_likelihood",
        "observed_data",
        "exact_posterior",
        "information_budget",
        "true_model",
    ):
        assert group in report.groups()
    assert report.posterior.attrs["random_seed"] == "3"
    assert sorted(report.log_likelihood.data_vars) == ["borehole", "gravity"]
    assert report.posterior["density"].dims == ("chain", "draw", "x")
    np.testing.assert_allclose(report.posterior["x"].values[:2], [12.5, 37.5])  # 40 cells of 25 m


def test_demo_gravity_kernel_reproduces_the_bouguer_slab():
    # Reference: Bouguer slab 2πGΔρh = 1.17567 mGal for Δρ = 2670 kg/m³, h = 10.5 m (rtol 1e-5).
    g = demo.sheet_gravity_matrix(np.array([-1e12, 1e12]), np.array([0.0]), 100.0, 10.5)
    assert float(g[0, 0] * 2670.0) == pytest.approx(1.17567, rel=1e-5)


def test_help_lists_demo():
    result = subprocess.run(
        [sys.executable, "-m", "bayesjoint", "--help"], capture_output=True, text=True, check=True
    )
    assert "demo" in result.stdout
