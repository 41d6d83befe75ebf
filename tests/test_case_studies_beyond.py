"""The case studies beyond geophysics run end to end with --quick (as in CI) and pass their checks.

Each study validates itself against something independent (closed forms, the exact posterior,
the synthetic truth) and reports named checks; these tests run it, require every check, and
assert the figures the checks rest on, including each study's negative control (the model
without its bias or drift term fails where the full model passes).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import bayesjoint as bj

pytestmark = pytest.mark.slow
CASES = Path(__file__).resolve().parent.parent / "case_studies"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, CASES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(name, tmp_path, capsys, seed):
    figures = _load(name).main(
        ["--quick", "--out", str(tmp_path / f"{name}.nc"), "--seed", str(seed)]
    )
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == json.loads(json.dumps(figures))
    assert figures["passed"] is True, {k: v for k, v in figures["checks"].items() if not v}
    assert figures["checks"] and all(figures["checks"].values())
    assert Path(figures["figure"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert bj.load(figures["report"]).posterior.attrs["case_study"] == name
    return figures


def test_sensor_fusion_quick_checks_pass_and_the_drift_term_restores_coverage(tmp_path, capsys):
    figures = _run("sensor_fusion", tmp_path, capsys, seed=3)
    post = figures["posterior"]
    # Exact path against 1/σ² = 1/σ0² + Σ n_k/σ_k² (and GLS with the drift), to round-off.
    assert post["without_drift"]["sd_rel_error"] <= 1e-10
    assert post["with_drift"]["sd_rel_error"] <= 1e-10
    # Draws of the default sample() (exact route) within 4 Monte-Carlo standard errors.
    assert figures["sd_no_drift_sampled_gap_in_mcse"] <= 4.0
    assert post["without_drift"]["sampled"]["route"] == "exact"
    # The budget ranks the drifting thermistor first without its drift term, last with it.
    assert figures["budget"]["without_drift"]["ranking"][0] == "thermistor"
    assert figures["budget"]["with_drift"]["ranking"] == ["prt", "thermocouple", "thermistor"]
    # Coverage over >= 200 sessions: nominal with the drift term; the negative control fails.
    cov = figures["coverage"]
    lo, hi = cov["binomial_band99"]
    assert cov["n_replicates"] >= 200
    assert lo <= cov["with_drift"]["coverage90"] <= hi
    assert cov["without_drift"]["coverage90"] < lo
    assert figures["convergence"]["passed"]


def test_materials_porosity_quick_recovers_porosity_and_fluid_resistivity(tmp_path, capsys):
    figures = _run("materials_porosity", tmp_path, capsys, seed=4)
    assert figures["route"] == "collapsed"
    joint = figures["inversions"]["joint"]
    lo, hi = joint["rw_interval90"]
    assert lo <= figures["true"]["rw"] <= hi
    assert joint["porosity"]["coverage90"] >= 0.8
    # The joint porosity map beats the ultrasonic scan alone; resistivity alone leaves R_w wide.
    assert joint["porosity"]["rmse"] < figures["inversions"]["ultrasonic_only"]["porosity"]["rmse"]
    sd = figures["budget"]["log_rw_sd"]
    assert sd["without_resistivity"] > 0.9 * sd["prior"]
    assert sd["without_ultrasonic"] >= 2.0 * sd["joint"]
    assert all(v > 0 for v in figures["budget"]["information_gain_added"].values())
    assert figures["archie_linearization_error"] < 0.5 * figures["true"]["archie_scatter"]


def test_ocean_temperature_quick_absorbs_the_skin_effect(tmp_path, capsys):
    figures = _run("ocean_temperature", tmp_path, capsys, seed=5)
    cov = figures["coverage"]
    assert abs(cov["with_skin"]["surface_coverage90"] - 0.9) <= 0.05
    # Negative control: without the skin term the surface intervals miss the truth.
    assert cov["without_skin"]["surface_coverage90"] < 0.8
    budget = figures["budget"]
    assert budget["satellite_share_deep_max"] == 0.0
    assert budget["deep_sd_ratio_joint_over_casts_alone_min"] >= 0.98
    assert budget["surface_sd_ratio_joint_over_casts_alone_mean"] <= 0.8
    assert figures["route"] == "exact"
    assert figures["sampled_vs_exact_max_gap_in_mcse"] <= 4.0
