"""The cycle-skipping case study runs end to end with --quick (as in CI) and reports its figures."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
from pathlib import Path

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
    assert nuts["chains_in_wrong_valley"] >= 1
    if len(set(nuts["chain_valleys"])) > 1:  # chains in different valleys must be flagged
        assert nuts["flagged_multimodal"] and nuts["modes_detected"] > 1
        assert "would be wrong" in nuts["message"]


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
