"""The case studies' self-checks: the convergence check, the verdict and the exit statuses."""

from __future__ import annotations

import types

import arviz as az
import numpy as np
from bayesjoint_case_studies import _verdict as _checks

from bayesjoint import cli


def _draws(shift_per_chain: float, seed: int = 0) -> az.InferenceData:
    # 4 chains x 1000 independent N(0, 1) draws of 20 variables, chain c shifted by c * shift
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 1000, 20)) + shift_per_chain * np.arange(4)[:, None, None]
    return az.from_dict(posterior={"x": x})


def test_convergence_passes_independent_draws_and_reads_no_divergences():
    # 4000 independent draws: the largest split R-hat over 20 variables is ~1.002 (<= 1.01)
    # and every ESS is ~4000 (>= 400); there is no sample_stats, so divergences are None.
    result = _checks.convergence(_draws(0.0))
    assert result["passed"] and result["failed"] == []
    assert result["max_rhat"] <= 1.01 and result["min_ess_tail"] >= 400
    assert result["divergences"] is None


def test_convergence_fails_chains_in_different_places():
    # Negative control: chains shifted by 0.5 sd apart give an R-hat far above 1.01.
    result = _checks.convergence(_draws(0.5))
    assert not result["passed"] and result["max_rhat"] > 1.05
    assert any("R-hat" in message for message in result["failed"])


def test_convergence_counts_divergences():
    idata = _draws(0.0)
    diverging = np.zeros((4, 1000), dtype=bool)
    diverging[1, 10] = True
    idata.add_groups({"sample_stats": {"diverging": diverging}})
    result = _checks.convergence(idata)
    assert result["divergences"] == 1 and not result["passed"]
    assert _checks.divergences(idata) == 1 and _checks.divergences(_draws(0.0)) is None


def test_finish_and_exit_status():
    figures = _checks.finish({}, {"a": True, "b": np.bool_(True)})
    assert figures == {"checks": {"a": True, "b": True}, "passed": True}
    assert _checks.exit_status(figures) == 0
    failed = _checks.finish({}, {"a": True, "b": False})
    assert failed["passed"] is False and _checks.exit_status(failed) == 1


def _fake_case_study(monkeypatch, passed: bool) -> None:
    fake = types.ModuleType("bayesjoint_case_studies.fake")
    fake.main = lambda argv: _checks.finish({"argv": argv}, {"draws_match_exact": passed})
    monkeypatch.setattr(cli, "load_case_study", lambda name: fake)


def test_run_exits_non_zero_and_names_the_check_when_a_case_study_fails(monkeypatch, capsys):
    _fake_case_study(monkeypatch, passed=False)
    status = cli.main(["run", "fake", "--quick", "--no-progress"])
    assert status == cli.EXIT_CHECK
    assert "fake: self-checks failed: draws_match_exact" in capsys.readouterr().err


def test_run_exits_zero_when_a_case_study_passes_its_checks(monkeypatch, capsys):
    _fake_case_study(monkeypatch, passed=True)
    assert cli.main(["run", "fake", "--quick", "--no-progress"]) == cli.EXIT_OK
    assert capsys.readouterr().err == ""
