"""Every case study runs end to end with --quick (as in CI) and reports its figures."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import bayesjoint as bj

pytestmark = pytest.mark.slow
CASES = Path(__file__).resolve().parent.parent / "case_studies"


def diagnose_failures(idata) -> list[str]:
    """The failed convergence checks of ``bj.diagnose`` (R-hat, bulk/tail ESS, divergences)."""
    result = bj.diagnose(idata, modality_checks=False, conflict=None)
    checks = result.checks
    failed = checks[checks["check"].isin(["convergence", "divergences"])]
    return failed.loc[failed["status"] == "fail", "message"].tolist()


def _load(name):
    spec = importlib.util.spec_from_file_location(name, CASES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_profile_gravity_borehole_quick(tmp_path, capsys):
    module = _load("profile_gravity_borehole")
    figures = module.main(["--quick", "--out", str(tmp_path / "p.nc"), "--seed", "5"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == json.loads(json.dumps(figures))
    # Joint inversion is at least as good as either instrument alone: the exact posterior sd
    # can only shrink when a modality is added (precisions add up).
    assert figures["joint"]["mean_sd"] < figures["gravity_only"]["mean_sd"]
    assert figures["joint"]["mean_sd"] < figures["borehole_only"]["mean_sd"]
    assert figures["joint"]["rmse"] < figures["gravity_only"]["rmse"]
    report = bj.load(figures["report"])
    assert report.posterior["density"].sizes["x"] == 40
    # the run passes bj.diagnose on convergence at the --quick settings, and the script's own
    # verdict (convergence, means within 4 MCSE and sds within 10 % of the exact posterior) holds
    assert diagnose_failures(report) == []
    assert figures["passed"] and all(figures["checks"].values()), figures["checks"]
