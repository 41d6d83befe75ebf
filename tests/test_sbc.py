"""Simulation-based calibration: the ECDF band, the verdict, the store, the Dask runner.

The band's false-alarm rate is measured on uniform ranks drawn independently of the band's own
simulation (another seed): with R replicate rank sets the measured rate has standard error
``sqrt(α(1 − α)/R)``, and the checks allow 3 of them. Its power is measured on skewed ranks
(``⌊(L + 1) U^1.5⌋``). The SBC verdicts run on a small linear-Gaussian problem (exact route, fixed
seeds, so each verdict is reproducible): a correct model passes (a pass is itself the outcome of
a test with family-wise false-alarm rate ≤ 5 %; the seed is fixed, not chosen), and the negative
control — data simulated with twice the noise sd the fit assumes — fails.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import xarray as xr

import bayesjoint as bj
from bayesjoint.calibration import _counts, ecdf_band, ecdf_verdict, plot_sbc, sbc
from bayesjoint.validate import blur_matrix

ALPHA = 0.05


def _rate_tolerance(replicates: int) -> float:
    return 3.0 * np.sqrt(ALPHA * (1 - ALPHA) / replicates)


def test_ecdf_counts_against_brute_force():
    rng = np.random.default_rng(1)
    ranks = rng.integers(0, 7, size=(3, 25))
    expected = np.array([[np.sum(row < i) for i in range(1, 7)] for row in ranks])
    np.testing.assert_array_equal(_counts(ranks, 7), expected)


@pytest.mark.parametrize(("n", "n_ranks"), [(100, 20), (50, 100)])
def test_band_false_alarm_rate_on_uniform_ranks_is_alpha(n, n_ranks):
    replicates = 3000
    rng = np.random.default_rng(99)  # not the band's seed
    ranks = rng.integers(0, n_ranks, size=(n, replicates))
    outside, band = ecdf_verdict(ranks, n_ranks, band=ecdf_band(n, n_ranks, alpha=ALPHA))
    rate = float(outside.mean())
    assert abs(rate - ALPHA) <= _rate_tolerance(replicates), rate
    assert band.attrs["level"] == ALPHA


def test_bonferroni_band_keeps_the_familywise_rate_over_five_quantities():
    families, q, n, n_ranks = 1000, 5, 100, 20
    band = ecdf_band(n, n_ranks, alpha=ALPHA, quantities=q)
    rng = np.random.default_rng(7)
    flagged = [
        ecdf_verdict(rng.integers(0, n_ranks, size=(n, q)), n_ranks, band=band)[0].any()
        for _ in range(families)
    ]
    rate = float(np.mean(flagged))
    # independent quantities: 1 − (1 − α/5)^5 = 0.049, at most α
    assert rate <= ALPHA + _rate_tolerance(families), rate
    assert rate >= 0.02, rate  # not vacuous: the band is not so wide that nothing leaves it


def test_band_has_power_against_skewed_ranks():
    n, n_ranks, replicates = 100, 20, 400
    rng = np.random.default_rng(3)
    skewed = np.floor(n_ranks * rng.random((n, replicates)) ** 1.5).astype(int)
    outside, _ = ecdf_verdict(skewed, n_ranks, band=ecdf_band(n, n_ranks))
    assert outside.mean() >= 0.9, outside.mean()


def test_band_refuses_bad_sizes():
    with pytest.raises(ValueError, match="two possible ranks"):
        ecdf_band(10, 1)
    with pytest.raises(ValueError, match="alpha must be in"):
        ecdf_band(10, 5, alpha=1.5)


# -- SBC on a small linear-Gaussian problem (exact route) -----------------------------------
def _problem(noise_factor: float = 1.0) -> bj.JointInversion:
    n = 5
    x = bj.Parameter("x", shape=n, prior=bj.priors.Normal(0.0, 1.0))
    blurred = bj.Modality(
        "blurred",
        physics=bj.physics.Linear(blur_matrix(n, 1.0), input="x"),
        data=np.zeros(n),
        noise=bj.noise.Gaussian(0.3 * noise_factor),
    )
    points = bj.Modality(
        "points",
        physics=bj.physics.Linear(np.eye(n)[[0, 3]], input="x"),
        data=np.zeros(2),
        noise=bj.noise.Gaussian(0.2 * noise_factor),
    )
    return bj.JointInversion(latent=[x], modalities=[blurred, points])


KW = dict(client="serial", draws=50, chains=2, n_ranks=20, random_seed=11)


@pytest.fixture(scope="module")
def calibrated():
    return _problem(), sbc(_problem(), 60, **KW)


def test_sbc_of_a_correct_linear_gaussian_model_passes(calibrated):
    _, result = calibrated
    ds = result.dataset
    assert result.verdict == "pass"
    assert result.flagged == []
    assert ds["rank"].shape == (60, 7)  # 5 latent scalars + 2 log-likelihoods
    assert list(ds["quantity"].values[-2:]) == ["loglik[blurred]", "loglik[points]"]
    assert set(ds["route"].values) == {"exact"}
    assert ds["rank"].values.min() >= 0 and ds["rank"].values.max() <= 19
    assert not ds["ess_short"].values.any()


def test_sbc_negative_control_with_twice_the_noise_fails():
    problem, simulator = _problem(), _problem(noise_factor=2.0)
    result = sbc(problem, 60, simulator=simulator, **KW)
    assert result.verdict == "fail"
    assert "loglik[blurred]" in result.flagged  # the test quantity that sees the noise level


def test_sbc_is_reproducible_and_resumes_only_the_missing_simulations(calibrated, tmp_path):
    problem, full = calibrated
    store = tmp_path / "store"
    first = sbc(problem, 10, store=store, **KW)
    assert first.ran == list(range(10))
    for index in (2, 5, 9):  # as if the run had stopped before writing these
        os.remove(store / f"sim_{index:06d}.nc")
    resumed = sbc(problem, 10, store=store, **KW)
    assert resumed.ran == [2, 5, 9]
    np.testing.assert_array_equal(resumed.dataset["rank"].values, first.dataset["rank"].values)
    # simulation i depends on (seed, i) only: the first 10 of the 60-simulation run agree
    np.testing.assert_array_equal(first.dataset["rank"].values, full.dataset["rank"].values[:10])
    more = sbc(problem, 12, store=store, **KW)
    assert more.ran == [10, 11]
    with xr.open_dataset(store / "sbc.nc", engine="h5netcdf") as saved:
        saved = saved.load()
    np.testing.assert_array_equal(saved["rank"].values, more.dataset["rank"].values)
    with pytest.raises(ValueError, match="other settings"):
        sbc(problem, 12, store=store, **{**KW, "draws": 40})


def test_sbc_refuses_bad_settings_before_fitting():
    problem = _problem()
    with pytest.raises(ValueError, match="draws \\* chains"):
        sbc(problem, 5, client="serial", draws=5, chains=2, n_ranks=20)
    with pytest.raises(ValueError, match="positive int"):
        sbc(problem, 0, client="serial")
    other = bj.JointInversion(
        latent=[bj.Parameter("y", shape=5, prior=bj.priors.Normal(0.0, 1.0))],
        modalities=[
            bj.Modality(
                "blurred",
                physics=bj.physics.Linear(np.eye(5), input="y"),
                data=np.zeros(5),
                noise=bj.noise.Gaussian(0.3),
            )
        ],
    )
    with pytest.raises(ValueError, match="the simulator has no"):
        sbc(problem, 5, simulator=other, **KW)


def test_sbc_figure_has_one_panel_per_quantity_and_is_written(calibrated, tmp_path):
    _, result = calibrated
    path = tmp_path / "sbc.png"
    fig = plot_sbc(result.dataset, path, max_panels=4)
    assert sum(ax.axison for ax in fig.axes) == 4
    assert path.stat().st_size > 10_000


@pytest.mark.slow
def test_sbc_on_a_local_dask_cluster_equals_the_serial_run(calibrated):
    problem, full = calibrated
    result = sbc(problem, 6, n_workers=1, **{**KW, "client": None})
    np.testing.assert_array_equal(result.dataset["rank"].values, full.dataset["rank"].values[:6])
