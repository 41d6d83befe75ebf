"""Every case study runs end to end with --quick (as in CI) and reports its figures."""

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
    assert bj.load(figures["report"]).posterior["density"].sizes["x"] == 40
