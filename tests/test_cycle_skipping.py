"""The cycle-skipping case study runs end to end with --quick (as in CI) and reports its figures."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest

import bayesjoint as bj

pytestmark = pytest.mark.slow
CASE = Path(__file__).resolve().parent.parent / "case_studies" / "cycle_skipping.py"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("cycle_skipping", CASE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("cycle") / "cycle.nc"
    level = logging.getLogger("pymc").level
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            figures = module.main(["--quick", "--out", str(out), "--seed", "1"])
    finally:
        logging.getLogger("pymc").setLevel(level)
    return figures, out, printed.getvalue()


def test_quick_run_reports_one_json_line_and_the_same_figures_in_the_file(run):
    figures, out, printed = run
    assert json.loads(printed.strip().splitlines()[-1]) == json.loads(json.dumps(figures))
    report = bj.load(out)
    assert json.loads(report.posterior.attrs["figures"]) == json.loads(json.dumps(figures))
    assert figures["report"] == str(out)
    assert "chain_weight" in report.posterior.coords


def test_default_nuts_is_caught_in_wrong_valleys_and_flagged(run):
    nuts = run[0]["nuts_default_init"]
    exact = run[0]["exact"]["waveform_only"]
    # the waveform-only posterior really is multimodal (quadrature): several valleys hold mass
    assert exact["valleys_above_1pct"] >= 3 and exact["mass_near_truth"] < 0.9
    # PyMC's default initialization (seed 1): the chains split over wrong valleys, and are flagged
    assert nuts["route"] == "nuts-plain" and nuts["chains_in_wrong_valley"] >= 1
    assert len(set(nuts["chain_valleys"])) > 1
    assert nuts["flagged_multimodal"] and nuts["modes_detected"] > 1
    assert "would be wrong" in nuts["message"]


def test_default_route_agrees_on_one_valley_so_only_the_remedies_see_the_others(run):
    # sample()'s default route starts every chain from the Laplace approximation of the one
    # valley its optimizer found: the chains agree (nothing to flag) and hold less mass near the
    # truth than the exact 0.57, which is why the study uses find_modes / sample_from_modes.
    default = run[0]["default_route"]
    assert default["route"] == "nuts" and len(set(default["chain_valleys"])) == 1
    assert not default["flagged_multimodal"]
    assert default["pooled_mass_near_truth"] < run[0]["exact"]["waveform_only"]["mass_near_truth"]


def test_convergence_checks_pass_where_the_runs_are_mcmc_answers(run):
    figures, out, _ = run
    # each mode of the weighted multi-start run passes bj.diagnose on convergence (R-hat, bulk
    # and tail ESS, divergences) on its own chains; so does the joint run started at the picks
    per_mode = figures["multi_start"]["diagnose_per_mode"]
    assert per_mode["passed"] and per_mode["max_rhat"] <= 1.01 and per_mode["divergences"] == 0
    assert per_mode["min_ess_bulk"] >= 400 and per_mode["min_ess_tail"] >= 400
    assert figures["joint"]["nuts_from_pick_mean"]["diagnose"]["passed"]
    report = bj.load(out)
    modes = report.posterior["mode"].values
    for mode in set(modes.tolist()):
        one = report.isel(chain=np.flatnonzero(modes == mode))
        result = bj.diagnose(one, var_names=["arrival_time"], modality_checks=False, conflict=None)
        failed = result.checks[result.checks["check"].isin(["convergence", "divergences"])]
        assert (failed["status"] != "fail").all(), (mode, result.reasons)
    # negative control: pooled across modes (what a plain diagnosis of the file sees), the
    # chains disagree, and bj.diagnose fails on R-hat
    pooled = bj.diagnose(report, var_names=["arrival_time"], modality_checks=False, conflict=None)
    assert pooled.verdict == "fail" and any("R-hat" in r for r in pooled.reasons)
    assert figures["passed"] and all(figures["checks"].values()), figures["checks"]


def test_remedies_recover_the_valley_masses(run):
    fig = run[0]
    exact = fig["exact"]["waveform_only"]["mass_near_truth"]
    assert fig["search"]["true_valley_found"]
    # Laplace masses of these narrow, near-Gaussian peaks are accurate to ~1e-3 (quadrature)
    assert abs(fig["search"]["laplace"]["mass_near_truth"] - exact) < 0.02
    # bridge weights from 200 draws per mode: a few 1e-3 of standard error; 0.03 is generous
    assert abs(fig["multi_start"]["mass_near_truth"] - exact) < 0.03
    assert fig["multi_start"]["max_valley_mass_error"] < 0.03
    # SMC with a single chain of 1000 particles over ~15 narrow valleys: sd of a valley's share
    # ~0.03 (binomial 0.016 inflated by resampling); 0.12 is four of them
    assert abs(fig["smc"]["mass_near_truth"] - exact) < 0.12


def test_second_modality_makes_the_posterior_unimodal(run):
    fig = run[0]
    wave, joint = fig["exact"]["waveform_only"], fig["exact"]["joint"]
    assert joint["mass_near_truth"] > 0.99 > wave["mass_near_truth"]
    assert joint["valleys_above_1pct"] == 1
    assert fig["joint"]["smc"]["mass_near_truth"] > 0.98
    assert fig["joint"]["nuts_from_pick_mean"]["mass_near_truth"] > 0.98


def test_continuation_needs_low_frequencies(run):
    cont = run[0]["continuation"]
    broadband = cont["broadband_single_ricker"]
    assert broadband["local_only_valley"] != 0 and broadband["continuation_valley"] == 0
    # the ringing arrival has almost no signal below 12 Hz, which is why continuation fails there
    assert cont["reverberating"]["signal_energy_below_12Hz_over_noise"] < 0.1
