"""The model-discrepancy case study (coverage with and without a GP term) and its benchmark."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bayesjoint as bj

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "discrepancy.py"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "case_studies" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def case():
    return _load("model_discrepancy")


def test_sphere_sensitivity_matches_closed_form(case):
    # closed_form.md: sphere R = 50 m, centre 100 m deep, Δρ = 500 kg/m³ gives 0.174733 mGal at
    # x = 0 and 0.061777 mGal at x = 100 m (rtol 1e-5 as stated there). Stations at 0 and 100 m.
    g = case.sensitivity()
    at = {float(x): i for i, x in enumerate(case.STATIONS)}
    assert 500.0 * g[at[0.0]] == pytest.approx(0.174733, rel=1e-5)
    assert 500.0 * g[at[100.0]] == pytest.approx(0.061777, rel=1e-5)
    # Negative control: the reference value detects a sphere 10 m too deep.
    from bayesjoint.physics import sphere_gz

    wrong = sphere_gz([0.0, 0.0, -110.0], 50.0, 500.0, [[0.0, 0.0, 0.0]])[0]
    assert wrong != pytest.approx(0.174733, rel=1e-5)


def test_exact_posterior_matches_dense_algebra(case):
    # bayesjoint's exact path (δ integrated out, Cholesky of Σ_noise + K) against the case
    # study's independent dense algebra on (Δρ, δ) kept as unknowns: the same Gaussian, so the
    # posterior sd agrees to round-off (measured ~1e-12; 1e-8 leaves room for BLAS differences
    # in the 61 x 61 solves).
    data = case.replicate(np.random.SeedSequence(3))
    for name in ("a_no_discrepancy", "b_discrepancy", "d_discrepancy_plus_cores"):
        cfg = case.configurations()[name]
        post = case.build_problem(data, cfg["gp"], cfg["cores"]).exact_posterior()
        dense = case.joint_with_discrepancy(cfg["gp"], cfg["cores"])
        assert float(post["sd"][0]) == pytest.approx(dense["sd"], rel=1e-8), name
    # Negative control: ignoring the discrepancy in the dense algebra is detected (sd 6x off).
    cfg = case.configurations()["b_discrepancy"]
    post = case.build_problem(data, cfg["gp"], False).exact_posterior()
    assert float(post["sd"][0]) != pytest.approx(case.joint_with_discrepancy(None, False)["sd"])


def test_identifiability_caveat_and_remedies(case):
    # Data-independent (linear-Gaussian): the discrepancy trades off with Δρ (correlation near
    # -1, intervals several times wider); a long lengthscale or a second modality that does not
    # share the discrepancy narrows the interval again.
    cfgs = case.configurations()
    fig = {k: case.joint_with_discrepancy(c["gp"], c["cores"]) for k, c in cfgs.items()}
    base = fig["a_no_discrepancy"]["sd"]
    assert fig["b_discrepancy"]["corr_with_discrepancy_at_peak"] < -0.9
    assert fig["b_discrepancy"]["sd"] > 3 * base
    assert fig["b_anomaly_scale_lengthscale"]["sd"] > fig["b_discrepancy"]["sd"]
    assert fig["c_informative_discrepancy"]["sd"] < 0.5 * fig["b_discrepancy"]["sd"]
    assert fig["d_discrepancy_plus_cores"]["sd"] < fig["b_discrepancy"]["sd"]
    assert abs(fig["c_informative_discrepancy"]["corr_with_discrepancy_at_peak"]) < abs(
        fig["b_discrepancy"]["corr_with_discrepancy_at_peak"]
    )


@pytest.mark.slow
def test_case_study_quick(case, tmp_path, capsys):
    figures = case.main(["--quick", "--out", str(tmp_path / "md.nc"), "--seed", "7"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == json.loads(json.dumps(figures))
    n = figures["n_replicates"]
    assert n >= 50
    # Monte-Carlo tolerance: a coverage estimate from n replicates has binomial sd
    # sqrt(0.9 * 0.1 / n) = 0.042 at n = 50 (figures["coverage_mc_sd_at_0.9"]).
    mc_sd = figures["coverage_mc_sd_at_0.9"]
    assert mc_sd == pytest.approx(np.sqrt(0.09 / n))
    cov_a = figures["coverage90_a_without_discrepancy"]
    cov_b = figures["coverage90_b_with_discrepancy"]
    # The claim: with the discrepancy the coverage is closer to the nominal 0.9 ...
    assert abs(cov_b - 0.9) < abs(cov_a - 0.9), (cov_a, cov_b)
    # ... and the gap is not Monte-Carlo noise: without it coverage is more than 5 binomial sd
    # below 0.9, with it within 3 sd of 0.9 or above (a GP wider than the regional over-covers).
    assert cov_a < 0.9 - 5 * mc_sd
    assert cov_b > 0.9 - 3 * mc_sd
    # The informative discrepancy (remedy) is calibrated within 3 binomial sd.
    cov_c = figures["exact"]["c_informative_discrepancy"]["coverage90"]
    assert abs(cov_c - 0.9) <= 3 * mc_sd
    # NUTS with learned hyperparameters: converged, no divergences, exact route, and its
    # interval overlaps the exact fixed-hyperparameter interval of the same replicate.
    (run,) = figures["nuts"]
    assert run["route"] == "exact" and run["sampling_route"] == "collapsed"
    assert run["r_hat"] <= 1.01 and run["divergences"] == 0
    lo, hi = run["interval90"]
    elo, ehi = run["exact_fixed_interval90"]
    assert lo < ehi and elo < hi
    report = bj.load(figures["report"])
    # the saved run (default route) passes bj.diagnose on convergence at the --quick settings
    diagnosis = bj.diagnose(report, modality_checks=False, conflict=None)
    checks = diagnosis.checks[diagnosis.checks["check"].isin(["convergence", "divergences"])]
    assert (checks["status"] != "fail").all(), diagnosis.reasons
    assert figures["passed"] and all(figures["checks"].values()), figures["checks"]
    assert json.loads(report.posterior.attrs["figures"])["n_replicates"] == n
    assert report.posterior.attrs["case_study"] == "model_discrepancy"


def test_case_study_negative_control(case):
    # The coverage check detects an overconfident analysis: with the informative discrepancy's
    # means but intervals 5x too narrow, coverage over 50 replicates falls far below 0.9.
    cfg = case.configurations()["c_informative_discrepancy"]
    hits = []
    for seq in np.random.SeedSequence(11).spawn(50):
        post = case.build_problem(case.replicate(seq), cfg["gp"], False).exact_posterior()
        err = abs(float(post["mean"][0]) - case.TRUE_CONTRAST)
        hits.append(err <= case.Z90 * float(post["sd"][0]) / 5)
    assert np.mean(hits) < 0.9 - 5 * np.sqrt(0.09 / 50)


def test_benchmark_quick_smoke():
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)  # fails on anything besides one JSON document
    assert data["mode"] == "quick" and data["load_average_start"] is not None
    cases = {(c["route"], c["n"]): c for c in data["cases"]}
    assert set(cases) == {("exact", 50), ("hsgp", 50), ("hsgp_sampled", 50)}
    for c in cases.values():
        assert c["grad_ms_median"] > 0 and c["rss_peak_mib"] > 0
        assert c["nuts"]["min_ess_bulk"] > 0
    assert cases[("hsgp", 50)]["hsgp_coefficients"] == "marginalized"
    assert cases[("hsgp_sampled", 50)]["hsgp_coefficients"] == "sampled"
    assert cases[("hsgp", 50)]["hsgp_basis"][0] >= 1
    assert cases[("exact", 50)]["hsgp_basis"] is None
    # Integrating out the coefficients leaves four free parameters: θ (2), ℓ and amplitude.
    assert cases[("hsgp", 50)]["n_free_parameters"] == 4
    assert cases[("hsgp_sampled", 50)]["n_free_parameters"] > 4


def test_benchmark_rejects_bad_option():
    # Negative control: a bad option fails loudly, with nothing on stdout.
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--max-repeat", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0 and proc.stdout == ""
