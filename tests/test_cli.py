"""The command line: `bayesjoint demo` end to end (quick settings)."""

from __future__ import annotations

import subprocess
import sys

import arviz as az
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
    # the verdict includes the comparison with the exact posterior (exit 0 only when it passes)
    assert "verdict: PASS" in text and "(<= 4: OK)" in text and "(within 10%: OK)" in text
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


@pytest.fixture(scope="module")
def exact_draws():
    # 4 x 1000 independent draws from the exact marginals: what a correct sampler gives.
    problem, _ = demo.build_problem(n_cells=40)
    exact = problem.exact_posterior()
    rng = np.random.default_rng(1)
    draws = exact["mean"].values + exact["sd"].values * rng.standard_normal((4, 1000, 40))
    idata = az.from_dict(posterior={"density": draws}, dims={"density": ["x"]})
    return problem, idata, exact


def test_demo_verdict_passes_draws_from_the_exact_posterior(exact_draws):
    problem, idata, exact = exact_draws
    result = demo.verdict(idata, problem, exact)
    assert result["passed"] and all(result["checks"].values())
    assert result["max_abs_z_mean"] <= demo.Z_TOL


def test_demo_verdict_fails_a_wrong_exact_mean_or_sd(exact_draws):
    # Negative controls: an exact mean shifted by half a posterior sd is ~0.5 sqrt(4000) = 32
    # MCSE away from the draws (limit 4); an exact sd 25 % too large puts every sd ratio at 0.8
    # (limit 10 %). Each fails its own check and the verdict.
    problem, idata, exact = exact_draws
    shifted = exact.copy(deep=True)
    shifted["mean"] = shifted["mean"] + 0.5 * shifted["sd"]
    result = demo.verdict(idata, problem, shifted)
    assert not result["passed"] and not result["checks"]["means_within_z_tol_mcse"]
    assert result["checks"]["sds_within_sd_rtol"]
    widened = exact.copy(deep=True)
    widened["sd"] = 1.25 * widened["sd"]
    result = demo.verdict(idata, problem, widened)
    assert not result["passed"] and not result["checks"]["sds_within_sd_rtol"]
    assert result["checks"]["means_within_z_tol_mcse"]


def test_demo_gravity_kernel_reproduces_the_bouguer_slab():
    # Reference: Bouguer slab 2πGΔρh = 1.17567 mGal for Δρ = 2670 kg/m³, h = 10.5 m (rtol 1e-5).
    g = demo.sheet_gravity_matrix(np.array([-1e12, 1e12]), np.array([0.0]), 100.0, 10.5)
    assert float(g[0, 0] * 2670.0) == pytest.approx(1.17567, rel=1e-5)


def test_help_lists_demo():
    result = subprocess.run(
        [sys.executable, "-m", "bayesjoint", "--help"], capture_output=True, text=True, check=True
    )
    assert "demo" in result.stdout
