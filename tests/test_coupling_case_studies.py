"""The coupling case studies run end to end with --quick and show what their coupling is for."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import bayesjoint as bj

pytestmark = pytest.mark.slow
CASES = Path(__file__).resolve().parent.parent / "case_studies"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_case_{name}", CASES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def diagnose_failures(idata) -> list[str]:
    """The failed convergence checks of ``bj.diagnose`` (R-hat, bulk/tail ESS, divergences)."""
    result = bj.diagnose(idata, modality_checks=False, conflict=None)
    checks = result.checks
    failed = checks[checks["check"].isin(["convergence", "divergences"])]
    return failed.loc[failed["status"] == "fail", "message"].tolist()


def _run(name, tmp_path, capsys, seed):
    figures = _load(name).main(["--quick", "--out", str(tmp_path / f"{name}.nc"), "--seed", seed])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == json.loads(json.dumps(figures))  # one final JSON line
    report = bj.load(figures["report"])
    stored = json.loads(report.posterior.attrs["figures"])
    assert stored == {k: v for k, v in figures.items() if k != "report"}
    assert report.posterior.attrs["case_study"] == name
    if figures["figure"] is not None:
        assert Path(figures["figure"]).stat().st_size > 0
    # the saved run passes bj.diagnose on convergence at the --quick settings, by the default
    # route, and every self-check of the script holds
    assert diagnose_failures(report) == []
    assert report.posterior.attrs["route"] == "nuts"
    assert figures["passed"] and all(figures["checks"].values()), figures["checks"]
    return figures, report


def test_seismic_resistivity_link_shrinks_sd_and_error(tmp_path, capsys):
    figures, report = _run("seismic_resistivity", tmp_path, capsys, "3")
    sep, joint = figures["separate"]["log_resistivity"], figures["joint"]["log_resistivity"]
    # The seed's claim, both factors: the Archie link (good seismic porosity) shrinks the
    # resistivity posterior sd and cuts its error. The link carries ~(0.1/0.2)⁻² = 4× the
    # prior-plus-ERT precision per cell here, so a factor of 1.3 is a modest bar.
    assert figures["resistivity_sd_shrink_factor"] > 1.3
    assert figures["resistivity_error_fall_factor"] > 1.3
    assert joint["rmse"] < sep["rmse"] and joint["mean_sd"] < sep["mean_sd"]
    # Honest intervals: 90 % coverage of the true model stays high.
    assert joint["coverage90"] >= 0.8
    # The sampler against the linearized link's exact posterior: the Archie link is nearly
    # linear at the seismic porosity, so the means agree to a fraction of the posterior sd.
    lin = figures["linearized_joint_exact"]["log_resistivity"]
    assert abs(lin["rmse"] - joint["rmse"]) < 0.25 * joint["mean_sd"]
    sampler = figures["joint"]["sampler"]
    assert sampler["passed"] and sampler["divergences"] == 0 and sampler["max_rhat"] <= 1.01
    # The ERT linearization error is well below the 10 % noise.
    assert figures["ert_linearization_error"] < 0.05
    assert report.posterior["log_resistivity"].dims[-2:] == ("x", "z")


def test_gravity_magnetics_cross_gradient_aligns_structure(tmp_path, capsys):
    figures, _ = _run("gravity_magnetics", tmp_path, capsys, "1")
    sep, joint = figures["separate"], figures["joint"]
    # The cross-gradient is a structural prior: the structural disagreement of the sampled
    # models (rms normalized cross-gradient, unit-free) is what it is meant to improve. The
    # Monte-Carlo error of each figure (mean over ~200 draws of a quantity with sd ~0.05) is
    # ~0.004, so a required drop of 0.03 is several of them.
    assert (
        joint["normalized_cross_gradient_rms_draws"]
        < sep["normalized_cross_gradient_rms_draws"] - 0.03
    )
    # ...without degrading the recovery: RMSEs within 5 % (the Monte-Carlo error of a posterior
    # mean from ~500 draws adds well under 1 % to these RMSEs).
    for prop in ("density", "susceptibility"):
        assert joint[prop]["rmse"] < 1.05 * sep[prop]["rmse"]
    # The sampled separate run agrees with its exact posterior (same sampler as the joint run).
    exact = figures["separate_exact"]["density"]
    assert abs(sep["density"]["mean_sd"] / exact["mean_sd"] - 1.0) < 0.1
    # both runs pass bj.diagnose on convergence: the separate one by the exact route (no
    # divergences recorded), the joint one by NUTS preconditioned at the MAP
    assert sep["sampler"]["route"] == "exact" and sep["sampler"]["divergences"] is None
    assert joint["sampler"]["route"] == "nuts" and joint["sampler"]["divergences"] == 0
    for run in (sep, joint):
        assert run["sampler"]["passed"] and run["sampler"]["max_rhat"] <= 1.01
