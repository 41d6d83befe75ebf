"""Checkpointed sampling: the file grows while sampling, is read at any moment, and resumes.

The resumed run is checked against the exact linear-Gaussian posterior (closed form), with a
negative control proving the check fails on a wrong answer.
"""

from __future__ import annotations

import json
import os
import signal
import time

import arviz as az
import numpy as np
import pytest

import bayesjoint as bj
from bayesjoint.inference.checkpoint import RESUME_STEP_TUNE, complete_part, kept_draws
from bayesjoint.validate import blur_and_points_problem, compare_with_exact


@pytest.fixture(scope="module")
def problem():
    return blur_and_points_problem(8, n_points=3)


def _signal_after(n_kept: int, signum: int = signal.SIGINT):
    """A pymc callback sending ``signum`` to this process once a chain has ``n_kept`` draws."""

    def callback(trace, draw):
        callback.kept += not draw.tuning
        if callback.kept >= n_kept and not callback.sent:
            callback.sent = True
            os.kill(os.getpid(), signum)

    callback.sent, callback.kept = False, 0
    return callback


def _sample_reading_the_checkpoint(problem, path, method, *, draws, tune):
    """Sample 2 chains on one core with a checkpoint; read the file once, while chain 0 runs.

    At chain 0's 50th kept draw the callback pauses past ``checkpoint_every`` (0.2 s), so the
    next draw writes; from 5 draws later it reads the file as a user would (``bj.load``), once.
    Returns the result and the list of files read (empty when no write came in time).
    """
    seen = []
    pause = tune + 50  # draw_idx counts the tuning draws

    def peek(trace, draw):
        if draw.tuning or seen:
            return
        if draw.draw_idx == pause:
            time.sleep(0.3)
        elif draw.draw_idx > pause + 5 and path.exists():
            seen.append(bj.load(path))

    idata = problem.sample(
        draws=draws,
        tune=tune,
        chains=2,
        cores=1,
        method=method,
        random_seed=3,
        progressbar=False,
        checkpoint=path,
        checkpoint_every=0.2,
        callback=peek,
    )
    return idata, seen


def test_checkpoint_is_readable_while_sampling_and_marked_incomplete(problem, tmp_path):
    path = tmp_path / "run.nc"
    idata, seen = _sample_reading_the_checkpoint(problem, path, "nuts", draws=300, tune=100)
    assert seen, "the checkpoint was not written while sampling"
    partial = kept_draws(seen[0])
    assert not partial["complete"] and partial["draws"] == 300
    assert 0 < partial["draws_per_chain"][0] <= 300 and partial["draws_per_chain"][1] == 0
    # the flushed draws are the run's own first draws, bit for bit
    n = partial["draws_per_chain"][0]
    np.testing.assert_array_equal(
        seen[0].posterior["x"].values[0, :n], idata.posterior["x"].values[0, :n]
    )
    assert np.all(np.isnan(seen[0].posterior["x"].values[1]))  # chain 1 not started: padding
    final = bj.load(path)
    assert kept_draws(final) == {
        "complete": True,
        "draws": 300,
        "draws_per_chain": [300, 300],
        "interrupted": None,
    }
    np.testing.assert_array_equal(final.posterior["x"].values, idata.posterior["x"].values)
    assert {"log_likelihood", "observed_data"} <= set(final.groups())


@pytest.mark.parametrize("method", ["nuts", "nuts-plain"])
def test_one_sigint_stops_every_chain_and_resume_matches_exact_posterior(problem, tmp_path, method):
    # One SIGINT with cores=1 stops the run (not only the current chain); the kept draws are
    # returned in the exception and written to the checkpoint; resume completes all 4 chains.
    path = tmp_path / "run.nc"
    settings = dict(draws=1000, tune=300, chains=4, cores=1, random_seed=5, progressbar=False)
    with pytest.raises(bj.SamplingInterrupted) as stop:
        problem.sample(method=method, checkpoint=path, callback=_signal_after(400), **settings)
    kept = stop.value.draws_per_chain
    assert stop.value.signal_name == "SIGINT" and stop.value.exit_status == 130
    assert kept[0] >= 400 and kept[1:] == [0, 0, 0], kept
    stored = bj.load(path)
    info = kept_draws(stored)
    assert info["interrupted"] == "SIGINT" and not info["complete"]
    assert info["draws_per_chain"] == kept
    assert int(np.isfinite(stored.posterior["x"].values[..., 0]).sum()) == sum(kept)
    np.testing.assert_array_equal(
        stored.posterior["x"].values[0, : kept[0]],
        stop.value.idata.posterior["x"].values[0, : kept[0]],
    )
    idata = problem.sample(checkpoint=path, resume=True, **settings)
    assert kept_draws(idata)["draws_per_chain"] == [1000] * 4
    # the kept draws are the first draws of the resumed chain, unchanged
    np.testing.assert_array_equal(
        idata.posterior["x"].values[0, : kept[0]], stored.posterior["x"].values[0, : kept[0]]
    )
    resumed = json.loads(idata.posterior.attrs["resumed_from"])
    assert resumed["draws_per_chain"] == kept
    if method == "nuts":
        # chain 0 restarts with its stored step size (the Laplace mass matrix is recomputed as
        # in the first run): no tuning draw is discarded for it, only the fresh chains' 3 x 300
        assert resumed["tuning_draws_discarded"] == 3 * 300, resumed
        step = stored.sample_stats["step_size"].values[0, kept[0] - 1]
        new_steps = idata.sample_stats["step_size"].values[0, kept[0] :]
        np.testing.assert_allclose(new_steps, step, rtol=1e-12)
    else:  # step size re-tuned from the stored one, mass matrix from the kept draws
        assert resumed["tuning_draws_discarded"] == RESUME_STEP_TUNE + 3 * 300, resumed
    # Tolerances as tests/test_sampling.py: every mean within 4 MCSE of the exact mean (z ~ N(0,1)
    # each), sd within 10 % (its own error ~ 1/sqrt(2 ESS) ~ 2 %), R-hat <= 1.01.
    check = compare_with_exact(problem, idata)
    assert check.passed, check
    assert check.max_abs_z <= 4.0 and check.max_rhat <= 1.01
    # negative control: the same draws against the posterior without the 'points' modality fail
    wrong = blur_and_points_problem(8, n_points=3, include_points=False).exact_posterior()
    assert not compare_with_exact(problem, idata, wrong).passed
    assert bj.load(path).posterior.attrs["complete"] == 1


@pytest.fixture(scope="module")
def collapsed_problem():
    """A blur of 8 values whose noise sd is learned: the collapsed route applies."""
    from bayesjoint.validate import blur_matrix

    rng = np.random.default_rng(2)
    blur = blur_matrix(8, 1.5)
    x = bj.Parameter("x", shape=8, prior=bj.priors.Normal(0.0, 0.5))
    data = blur @ rng.normal(0.0, 0.5, 8) + 0.1 * rng.standard_normal(8)
    noise = bj.noise.Gaussian(bj.priors.HalfNormal(0.2))
    return bj.JointInversion(
        [x], [bj.Modality("blurred", bj.physics.Linear(blur, input="x"), data, noise)]
    )


def test_collapsed_checkpoint_is_written_while_sampling_in_the_final_layout(
    collapsed_problem, tmp_path
):
    # The hyperparameter chain is recorded as it comes; each write draws the fields of the new
    # draws (one random stream per draw), so the file read mid-run has the final result's
    # groups and variables; its θ draws are the final ones bit for bit and its fields (drawn in
    # another batch: the same random numbers, other rounding of the batched algebra) agree to
    # rtol 1e-12.
    path = tmp_path / "collapsed.nc"
    idata, seen = _sample_reading_the_checkpoint(
        collapsed_problem, path, "collapsed", draws=200, tune=200
    )
    assert seen, "the checkpoint was not written while sampling"
    partial = kept_draws(seen[0])
    n = partial["draws_per_chain"][0]
    assert not partial["complete"] and 0 < n < 200 and partial["draws_per_chain"][1] == 0
    for group in ("posterior", "log_likelihood", "sample_stats", "observed_data"):
        assert set(seen[0][group].data_vars) == set(idata[group].data_vars), group
    np.testing.assert_array_equal(
        seen[0].posterior["blurred_sigma"].values[0, :n],
        idata.posterior["blurred_sigma"].values[0, :n],
    )
    for group, name in [("posterior", "x"), ("log_likelihood", "blurred"),
                        ("sample_stats", "lp")]:  # fmt: skip
        np.testing.assert_allclose(
            seen[0][group][name].values[0, :n], idata[group][name].values[0, :n], rtol=1e-12
        )
    assert np.all(np.isnan(seen[0].posterior["x"].values[1]))
    assert kept_draws(bj.load(path))["draws_per_chain"] == [200, 200]
    # negative control of the comparison: the second chain's draws differ from the first's
    assert not np.array_equal(
        idata.posterior["x"].values[1, :n], idata.posterior["x"].values[0, :n]
    )


def test_resume_of_a_complete_checkpoint_returns_it_without_sampling(problem, tmp_path):
    path = tmp_path / "exact.nc"
    first = problem.sample(draws=50, chains=2, random_seed=1, progressbar=False, checkpoint=path)
    assert first.posterior.attrs["route"] == "exact"
    again = problem.sample(
        draws=50, chains=2, random_seed=99, progressbar=False, checkpoint=path, resume=True
    )
    np.testing.assert_array_equal(again.posterior["x"].values, first.posterior["x"].values)
    assert json.loads(again.posterior.attrs["resumed_from"])["new_draws"] == 0


def test_resume_without_a_file_starts_afresh(problem, tmp_path):
    path = tmp_path / "new.nc"
    idata = problem.sample(
        draws=20, chains=2, random_seed=1, progressbar=False, checkpoint=path, resume=True
    )
    assert kept_draws(bj.load(path))["draws_per_chain"] == [20, 20]
    assert "resumed_from" not in idata.posterior.attrs


def test_exact_route_checkpoint_incomplete_is_drawn_again(problem, tmp_path):
    path = tmp_path / "exact.nc"
    problem.sample(draws=30, chains=2, random_seed=1, progressbar=False, checkpoint=path)
    # an incomplete file of the exact route (as a kill would leave it): resume draws it again
    stored = bj.load(path)
    for group in stored.groups():
        stored[group].attrs.update({"complete": 0, "draws_per_chain": json.dumps([10, 0])})
    os.remove(path)
    bj.save(stored, path)
    idata = problem.sample(
        draws=30, chains=2, random_seed=1, progressbar=False, checkpoint=path, resume=True
    )
    assert kept_draws(idata)["draws_per_chain"] == [30, 30]
    assert "repeated" in json.loads(idata.posterior.attrs["resumed_from"])["method"]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"checkpoint_every": 0}, "positive number of seconds"),
        ({"checkpoint_every": "30"}, "seconds as a number"),
        ({"resume": "yes"}, "True or False"),
        ({"checkpoint": 5}, "file path"),
        ({"method": "smc"}, "takes no checkpoint"),
    ],
)
def test_bad_checkpoint_options_are_refused_before_sampling(problem, tmp_path, options, match):
    kwargs = {"checkpoint": tmp_path / "a.nc", **options}
    with pytest.raises((TypeError, ValueError), match=match):
        problem.sample(draws=10, chains=1, progressbar=False, **kwargs)


def test_existing_checkpoint_is_not_overwritten_without_resume(problem, tmp_path):
    path = tmp_path / "run.nc"
    problem.sample(draws=10, chains=1, random_seed=1, progressbar=False, checkpoint=path)
    with pytest.raises(ValueError, match="resume=True"):
        problem.sample(draws=10, chains=1, progressbar=False, checkpoint=path)
    with pytest.raises(ValueError, match="is a folder"):
        problem.sample(draws=10, chains=1, progressbar=False, checkpoint=tmp_path)
    with pytest.raises(ValueError, match="needs checkpoint"):
        problem.sample(draws=10, chains=1, progressbar=False, resume=True)


def test_resume_refuses_other_chains_and_other_problem(problem, tmp_path):
    path = tmp_path / "run.nc"
    problem.sample(draws=10, chains=2, random_seed=1, progressbar=False, checkpoint=path)
    with pytest.raises(ValueError, match="resume with chains=2"):
        problem.sample(draws=10, chains=3, progressbar=False, checkpoint=path, resume=True)
    other = blur_and_points_problem(5, n_points=2)
    with pytest.raises(ValueError, match="not written by this problem"):
        other.sample(draws=10, chains=2, progressbar=False, checkpoint=path, resume=True)


def test_complete_part_keeps_the_chains_and_length_with_most_draws():
    # 4 chains with 100, 90, 10, 0 kept: 2 chains x 90 (180 draws) beats 3 x 10 and 1 x 100.
    values = np.full((4, 100), np.nan)
    counts = [100, 90, 10, 0]
    for c, n in enumerate(counts):
        values[c, :n] = c
    idata = az.from_dict(posterior={"x": values})
    idata.posterior.attrs.update(
        {"complete": 0, "draws_per_chain": json.dumps(counts), "draws": 100}
    )
    part, note = complete_part(idata)
    assert part.posterior.sizes == {"chain": 2, "draw": 90}
    assert np.all(np.isfinite(part.posterior["x"].values))
    assert "[2, 3]" in note
    # a complete run is returned as it is (the negative control of the selection)
    whole = az.from_dict(posterior={"x": np.zeros((2, 5))})
    assert complete_part(whole) == (whole, None)


def test_diagnose_reports_a_cut_short_run(problem, tmp_path):
    path = tmp_path / "run.nc"
    settings = dict(draws=400, tune=100, chains=2, cores=1, random_seed=2, progressbar=False)
    with pytest.raises(bj.SamplingInterrupted):
        problem.sample(method="nuts", checkpoint=path, callback=_signal_after(150), **settings)
    result = bj.diagnose(bj.load(path), conflict=None)
    row = result.checks[result.checks["check"] == "run complete"].iloc[0]
    assert row["status"] == "warn" and "interrupted by SIGINT" in row["message"]
    assert result.sampler["chains"] == 1  # chain 1 never started: left out of the checks
    finished = bj.diagnose(problem.sample(**settings, method="nuts"), conflict=None)
    assert "run complete" not in set(finished.checks["check"])


def test_checkpoint_with_an_external_nuts_sampler_is_refused_before_sampling(problem, tmp_path):
    # nutpie hands no draws over while it runs: the file would stay empty and an interrupt
    # would keep nothing, so the combination is refused
    with pytest.raises(ValueError, match="nuts_sampler='nutpie'"):
        problem.sample(
            method="nuts-plain",
            nuts_sampler="nutpie",
            checkpoint=tmp_path / "run.nc",
            progressbar=False,
            random_seed=1,
        )
    assert not (tmp_path / "run.nc").exists()
