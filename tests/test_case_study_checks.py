"""The case studies' self-checks: the convergence check, the verdict and the exit statuses."""

from __future__ import annotations

import json
import time
import types

import arviz as az
import numpy as np
from bayesjoint_case_studies import _plotting
from bayesjoint_case_studies import _verdict as _checks

import bayesjoint as bj
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
    assert failed["passed"] is False and _checks.exit_status(failed) == 3


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


def test_publish_times_saves_and_prints_the_figures(tmp_path, capsys):
    # The shared tail of the case studies: seconds, checks, "passed", the report written with
    # the figures and the study's name in its attributes, and the figures as the last line.
    idata = _draws(0.0)
    start = time.perf_counter() - 2.0
    figures = _checks.publish(
        {"rmse": 0.5}, {"ok": True, "bad": False}, idata, "fake", str(tmp_path / "r.nc"), start
    )
    assert list(figures) == ["rmse", "seconds", "checks", "passed", "report"]
    assert figures["seconds"] >= 2.0 and figures["passed"] is False
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == figures
    report = bj.load(figures["report"])
    assert report.posterior.attrs["case_study"] == "fake"
    stored = json.loads(report.posterior.attrs["figures"])
    assert stored == {k: v for k, v in figures.items() if k != "report"}


def test_plotting_save_writes_a_png_and_closes_the_figure(tmp_path):
    plt = _plotting.pyplot()
    if plt is None:  # matplotlib is optional: the helpers then draw nothing
        assert _plotting.plot_sections(str(tmp_path / "x.png"), None, {}) is None
        return
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    path = _plotting.save(fig, str(tmp_path / "line.png"))
    assert (tmp_path / "line.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.endswith("line.png") and not plt.fignum_exists(fig.number)
