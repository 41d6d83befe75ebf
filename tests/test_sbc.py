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
from bayesjoint.coupling import Coupling
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


# -- prior draws of models with coupling potentials -------------------------------------------
def _linked(scatter, *, intercept: float = 3.0, log_latent: tuple = ()) -> bj.JointInversion:
    """a (4) ~ N(0, 1), b (4) ~ N(0, 1), tied by b ≈ 1.5 a + intercept; both seen directly."""
    a = bj.Parameter("a", shape=4, prior=bj.priors.Normal(0.0, 1.0))
    b = bj.Parameter("b", shape=4, prior=bj.priors.Normal(0.0, 1.0))
    mods = [
        bj.Modality(
            f"see_{n}", bj.physics.Linear(np.eye(4), input=n), np.zeros(4), bj.noise.Gaussian(0.3)
        )
        for n in ("a", "b")
    ]
    link = bj.Petrophysical(
        "a",
        "b",
        "linear",
        scatter=scatter,
        parameters={"slope": 1.5, "intercept": intercept},
        log_latent=log_latent,
    )
    return bj.JointInversion([a, b], mods, couplings=[link])


def test_exact_prior_draws_of_a_learned_scatter_follow_its_prior():
    """A learned link scatter's prior marginal is its own prior, HalfNormal(0.5).

    The model divides the link factor by its normalizer Z(s) = Π_i N(3; 0, 1 + 1.5² + s²)
    (∫∫ N(a)N(b)N(b − 1.5a − 3; 0, s²) da db per element; see
    ``bj.Petrophysical.log_normalizer``), so the scatter's marginal is HalfNormal(0.5) itself.
    KS test of 1,500 exact draws against it at p > 0.001 (fails a correct sampler once in
    1,000), and, as the negative control, the same draws against the marginal of the
    unnormalized link, HalfNormal(0.5)(s) · Z(s): p < 1e-6.
    """
    from scipy import integrate, stats

    from bayesjoint.calibration import _exact_prior_sampler

    sampler, reason = _exact_prior_sampler(_linked(bj.priors.HalfNormal(0.5)))
    assert sampler is not None and reason is None
    draws = [sampler.draw([5, i]) for i in range(1500)]
    s = np.array([d["petrophysics_b_scatter"] for d in draws])

    def unnormalized(v):
        return (
            stats.halfnorm.pdf(v, scale=0.5) * stats.norm.pdf(3.0, 0.0, np.sqrt(3.25 + v**2)) ** 4
        )

    grid = np.linspace(0.0, 4.0, 40_001)  # HalfNormal(0.5) mass beyond 4: 1e-15
    cdf_grid = integrate.cumulative_trapezoid(unnormalized(grid), grid, initial=0.0)
    cdf = lambda v: np.interp(v, grid, cdf_grid / cdf_grid[-1])  # noqa: E731
    assert stats.kstest(s, stats.halfnorm(scale=0.5).cdf).pvalue > 1e-3
    assert stats.kstest(s, cdf).pvalue < 1e-6
    # given s, the link's residual r = b − 1.5a − 3 is the product of N(r; −3, 3.25) (the
    # independent priors) and N(r; 0, s²): mean −3s²/(3.25 + s²), variance 3.25s²/(3.25 + s²)
    a, b = np.array([d["a"] for d in draws]), np.array([d["b"] for d in draws])
    mean, var = -3.0 * s**2 / (3.25 + s**2), 3.25 * s**2 / (3.25 + s**2)
    z = ((b - 1.5 * a - 3.0 - mean[:, None]) / np.sqrt(var)[:, None]).ravel()
    assert abs(z.mean()) < 4.0 / np.sqrt(z.size)  # 4 se
    assert abs(z.std() - 1.0) < 4.0 / np.sqrt(2 * z.size)


def test_exact_prior_draws_with_a_fixed_scatter_have_the_closed_form_mean_and_covariance():
    """Per element the prior precision of (a, b) is [[1 + 1.5²/s², −1.5/s²], [−1.5/s², 1 + 1/s²]].

    The link N(b − 1.5a − 3; 0, s²) adds the linear term (−4.5/s², 3/s²) (brute-force algebra);
    4,000 draws, each mean and covariance within 4 standard errors.
    """
    from bayesjoint.calibration import _exact_prior_sampler

    s = 0.5
    sampler, _ = _exact_prior_sampler(_linked(s))
    draws = [sampler.draw([6, i]) for i in range(4000)]
    ab = np.stack([[d["a"][0], d["b"][0]] for d in draws])
    precision = np.array([[1 + 2.25 / s**2, -1.5 / s**2], [-1.5 / s**2, 1 + 1 / s**2]])
    cov = np.linalg.inv(precision)
    mean = cov @ np.array([-1.5 * 3.0 / s**2, 3.0 / s**2])
    se = np.sqrt(np.diag(cov) / len(ab))
    np.testing.assert_array_less(np.abs(ab.mean(axis=0) - mean), 4 * se)
    sample_cov = np.cov(ab.T)
    se_cov = np.sqrt((cov**2 + np.outer(np.diag(cov), np.diag(cov))) / len(ab))
    np.testing.assert_array_less(np.abs(sample_cov - cov), 4 * se_cov)


def test_a_non_gaussian_coupled_prior_has_no_exact_sampler():
    from bayesjoint.calibration import _exact_prior_sampler

    # a stores ln a: b ≈ 1.5 exp(a) + 3 is not Gaussian in a
    sampler, reason = _exact_prior_sampler(_linked(0.5, log_latent=("a",)))
    assert sampler is None
    assert "not quadratic in the latent variables" in reason


def test_sbc_simulation_i_depends_only_on_seed_and_i_with_coupled_priors():
    """Sims 0..49 of a 100-simulation run equal a 50-simulation run (exact prior draws)."""
    problem = _linked(0.5)  # exact route; the potential needs the prior sampler
    kw = dict(client="serial", draws=10, chains=1, n_ranks=10, random_seed=3)
    long = sbc(problem, 100, **kw)
    short = sbc(problem, 50, **kw)
    assert long.dataset.attrs["prior_sampler"].startswith("exact")
    assert "prior_sampler_fallback" not in long.dataset.attrs  # nothing to explain
    np.testing.assert_array_equal(long.dataset["rank"].values[:50], short.dataset["rank"].values)
    # negative control: another seed gives other ranks
    other = sbc(problem, 50, **{**kw, "random_seed": 4})
    assert not np.array_equal(other.dataset["rank"].values, short.dataset["rank"].values)


class _ScaledTie(Coupling):
    """``a ≈ b`` with a learned scale ``s ~ HalfNormal(0.5)``: the potential
    ``−Σ (a − b)² / 2 − power · log s``.

    Given ``s`` the prior of ``(a, b)`` stays Gaussian (the tie does not involve ``s``), so
    ``Z(s) = c · s^(−power)``: bounded for ``power = 0``, growing without bound as ``s → 0``
    for ``power > 0`` (while the marginal ``p(s) Z(s)`` stays proper for ``power < 1``).
    """

    name = "tie"
    inputs = ("a", "b")

    def __init__(self, power):
        self.power = power

    def build(self, latent, variables):
        import pymc as pm
        import pytensor.tensor as pt

        scale = pm.HalfNormal("tie_scale", 0.5)
        tie = -0.5 * pt.sum((latent["a"] - latent["b"]) ** 2)
        pm.Potential("tie", tie - self.power * pt.log(scale))


def _tied(power) -> bj.JointInversion:
    a = bj.Parameter("a", shape=2, prior=bj.priors.Normal(0.0, 1.0))
    b = bj.Parameter("b", shape=2, prior=bj.priors.Normal(0.0, 1.0))
    see = bj.Modality(
        "see", bj.physics.Linear(np.eye(2), input="a"), np.zeros(2), bj.noise.Gaussian(0.3)
    )
    return bj.JointInversion([a, b], [see], couplings=[_ScaledTie(power)])


def test_exact_prior_sampler_refuses_a_rejection_bound_that_cannot_hold_before_any_draw(
    monkeypatch,
):
    """``Z(s) ∝ s^(−1/2)`` has no finite bound ``M``: refused when the sampler is built.

    The bound is sought in ``log s`` (the value coordinate), where ``Z`` grows without limit as
    ``log s → −∞``, so ``M`` lands far above the proposals' ``Z`` and the mean acceptance
    under 1e-3. No draw is made: ``draw`` is replaced by a function that fails the test.
    Negative control: the same tie with a bounded ``Z`` (power 0) is accepted, with
    acceptance ``e^-0.1`` (``Z`` constant in ``s``: every proposal is at the bound).
    """
    from bayesjoint.calibration import _exact_prior_sampler, _ExactPrior

    def no_draw(*args, **kwargs):
        raise AssertionError("a draw was made before the bound was checked")

    monkeypatch.setattr(_ExactPrior, "draw", no_draw)
    sampler, reason = _exact_prior_sampler(_tied(0.5))
    assert sampler is None
    assert "rejection bound" in reason and "mean acceptance" in reason
    bounded, reason = _exact_prior_sampler(_tied(0.0))
    assert reason is None
    assert bounded.acceptance == pytest.approx(np.exp(-0.1), rel=1e-6)


def test_exact_prior_sampler_refuses_a_bound_exceeded_by_independent_proposals(monkeypatch):
    """A bound ``M`` one nat below the true ``sup Z`` fails the check on independent proposals.

    With ``Z`` constant in ``s`` (power 0) every proposal has ``log Z = log M − 0.1`` under the
    package's own bound; lowering that bound by 1 nat puts every check proposal above it.
    """
    from bayesjoint.calibration import _exact_prior_sampler, _ExactPrior

    honest = _ExactPrior._bound
    monkeypatch.setattr(_ExactPrior, "_bound", lambda self, rng: honest(self, rng) - 1.0)
    sampler, reason = _exact_prior_sampler(_tied(0.0))
    assert sampler is None
    assert "does not hold" in reason


def test_sbc_records_and_logs_once_why_the_prior_is_not_drawn_exactly(monkeypatch, caplog):
    """A ValueError while building the exact sampler: NUTS prior draws, the reason recorded.

    The reason (the error's type and message) is the result's ``prior_sampler_fallback``
    attribute and one WARNING record; the Gaussian prior of ``_linked(0.5)`` is then drawn by
    NUTS. The counter-case (exact sampler built, no fallback attribute) is checked in
    ``test_sbc_simulation_i_depends_only_on_seed_and_i_with_coupled_priors``.
    """
    import logging

    from bayesjoint.calibration import _ExactPrior

    def broken(self, rng):
        raise ValueError("no Hessian for this graph")

    monkeypatch.setattr(_ExactPrior, "_check_quadratic", broken)
    problem = _linked(0.5)
    with caplog.at_level(logging.WARNING, logger="bayesjoint"):
        result = sbc(problem, 2, client="serial", draws=10, chains=1, n_ranks=10, random_seed=3)
    attrs = result.dataset.attrs
    assert attrs["prior_sampler"].startswith("NUTS")
    assert attrs["prior_sampler_fallback"] == (
        "building the exact prior sampler failed: ValueError: no Hessian for this graph"
    )
    records = [r for r in caplog.records if "draws the prior by NUTS" in r.getMessage()]
    assert len(records) == 1
    assert "ValueError: no Hessian for this graph" in records[0].getMessage()


@pytest.mark.slow
def test_prior_draws_by_nuts_come_in_blocks_that_do_not_depend_on_the_count():
    from bayesjoint.calibration import PRIOR_BLOCK, _prior_draws

    simulator = _linked(0.5, log_latent=("a",))
    short, info = _prior_draws(simulator, range(PRIOR_BLOCK), 3, None)
    long, _ = _prior_draws(simulator, range(2 * PRIOR_BLOCK), 3, None)
    assert info["prior_sampler"].startswith("NUTS")
    for i in range(PRIOR_BLOCK):
        np.testing.assert_array_equal(short[i]["b"], long[i]["b"])
    # negative control: the second block is another run
    assert not np.array_equal(long[PRIOR_BLOCK]["b"], long[0]["b"])


def test_sbc_refuses_before_fitting_when_prior_draws_by_nuts_are_too_correlated(
    tmp_path, monkeypatch
):
    import arviz as az

    def tiny_ess(data, *args, **kwargs):  # as if the prior run had a bulk ESS of 3
        return data.map(lambda v: xr.full_like(v.isel(chain=0, draw=0), 3.0))

    monkeypatch.setattr(az, "ess", tiny_ess)
    simulator = _linked(0.5, log_latent=("a",))
    with pytest.raises(ValueError, match="bulk ESS of only 3"):
        sbc(simulator, 5, store=tmp_path, client="serial", draws=10, chains=1, n_ranks=10)
    assert not [n for n in os.listdir(tmp_path) if n.startswith("sim_")]  # nothing was fitted


def test_quiet_fits_silence_only_their_own_thread_and_leave_the_loggers_alone():
    import logging
    import threading

    from bayesjoint.calibration import _quiet

    logger = logging.getLogger("bayesjoint.inference.routes")
    package = logging.getLogger("bayesjoint")
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append((threading.current_thread().name, record.getMessage()))

    handler = Keep(level=logging.INFO)
    package.addHandler(handler)
    old_level = package.level
    package.setLevel(logging.INFO)
    state = (package.level, list(package.filters), logger.level, list(logger.filters))
    inside, go = threading.Event(), threading.Event()

    def quiet_worker():
        with _quiet():
            inside.set()
            go.wait(5)
            logger.info("quiet info")
            logger.warning("quiet warning")

    try:
        worker = threading.Thread(target=quiet_worker, name="quiet")
        worker.start()
        inside.wait(5)
        logger.info("loud info")  # while the other thread is inside _quiet
        go.set()
        worker.join(5)
        assert (package.level, package.filters, logger.level, logger.filters) == state
    finally:
        package.removeHandler(handler)
        package.setLevel(old_level)
    assert ("MainThread", "loud info") in seen
    assert ("quiet", "quiet warning") in seen
    assert ("quiet", "quiet info") not in seen  # negative control: the filter does act
