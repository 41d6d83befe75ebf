"""Multimodal sampling: mode weights of weighted multi-start NUTS and SMC against quadrature."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import xarray as xr
from scipy import integrate, optimize, signal, stats

import bayesjoint as bj
from bayesjoint.diagnostics.modes import detect_modes
from bayesjoint.inference.continuation import frequency_continuation
from bayesjoint.inference.multistart import (
    bridge_log_evidence,
    mode_weights,
    sample_from_modes,
    weighted_draws,
    weighted_mean,
)
from bayesjoint.inference.search import find_modes
from bayesjoint.inference.smc import sample_smc
from bayesjoint.observe import LowPass, lowpass_matrix
from bayesjoint.physics.waveform import ShiftedWavelet, ricker
from bayesjoint.validate import CUBIC_BASINS, cubic_log_density, cubic_problem, taylor_test

# The posterior of bayesjoint.validate.cubic_problem: x ~ N(0.4, 1), x^3 - 3x observed as 0
# (sd 0.3). Three well-separated peaks near -sqrt(3), 0 and sqrt(3) (barriers > 20 nats at x = ±1).
BASINS = CUBIC_BASINS
SEED = 20261129


def exact_density(x):
    return np.exp(cubic_log_density(x))


@pytest.fixture(scope="module", autouse=True)
def quiet_pymc():
    logger = logging.getLogger("pymc")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


@pytest.fixture(scope="module")
def exact():
    """Mass and mean of each basin and the overall mean, by adaptive quadrature."""
    kw = {"epsabs": 0, "epsrel": 1e-11, "limit": 200}
    mass = np.array([integrate.quad(exact_density, lo, hi, **kw)[0] for lo, hi in BASINS])
    first = np.array([integrate.quad(lambda v: v * exact_density(v), *b, **kw)[0] for b in BASINS])
    return {"weights": mass / mass.sum(), "mean": first.sum() / mass.sum()}


@pytest.fixture(scope="module")
def problem():
    return cubic_problem()


@pytest.fixture(scope="module")
def modes(problem):
    return find_modes(problem, {"x": (-4.0, 4.0)}, n_starts=10, maxiter=40, random_seed=SEED)


@pytest.fixture(scope="module")
def multi(problem, modes):
    return sample_from_modes(
        problem, modes, chains_per_mode=2, draws=500, tune=500, random_seed=SEED
    )


@pytest.fixture(scope="module")
def smc(problem):
    return sample_smc(problem, draws=1000, chains=2, random_seed=SEED)


def basin_order(modes):
    """Index of the found mode in each basin, basins left to right."""
    xs = [float(m.location["x"]) for m in modes.modes]
    return [int(np.argmin([abs(x - c) for x in xs])) for c in (-np.sqrt(3), 0.0, np.sqrt(3))]


# Tolerances on the mode weights (absolute):
# * weighted multi-start: bridge sampling with 2 x 250 draws per mode reports standard errors of
#   about 0.002 on these weights; 0.02 is ten of them, leaving room for the error approximation.
# * SMC: 2 x 1000 particles. Across 8 seeds the largest weight had sd 0.015 (resampling makes the
#   particles correlated: the binomial sd would be 0.009), so 0.06 is four sds.
MULTI_TOL, SMC_TOL = 0.02, 0.06


def test_weighted_multistart_reproduces_mode_weights(multi, modes, exact):
    order = basin_order(modes)
    weights = mode_weights(multi, modes)[order]
    assert np.max(np.abs(weights - exact["weights"])) < MULTI_TOL
    # the stated standard errors are honest: each weight within 5 of them (plus round-off)
    attrs = multi.posterior.attrs
    se = np.array([json.loads(attrs["mode_weight_se"])[str(k)] for k in order])
    assert np.all(np.abs(weights - exact["weights"]) < 5 * se + 0.005)
    # the chains stay in their modes and the weights sum to one
    assert attrs["chains_moved"] == "[]"
    assert multi.posterior["mode"].values.tolist() == [0, 0, 1, 1, 2, 2]
    assert np.isclose(float(multi.posterior["chain_weight"].sum()), 1.0)
    assert "log_likelihood" in multi.groups() and "cubic" in multi.log_likelihood


def test_weighted_mean_and_draws_match_quadrature(multi, exact):
    # E[x] = sum_k w_k mu_k: weight errors of ~0.005 times mode spacing ~1.7 plus MC error
    assert abs(float(weighted_mean(multi, "x")) - exact["mean"]) < 0.03
    draws = weighted_draws(multi, 6000, random_seed=1)
    assert draws.sizes == {"chain": 1, "draw": 6000}
    shares = [float((draws["x"] < -1).mean()), float((draws["x"] > 1).mean())]
    # multinomial resampling of 6000 draws: sd <= 0.0065; 0.03 covers that plus weight error
    assert np.allclose(shares, exact["weights"][[0, 2]], atol=0.03)


def test_smc_reproduces_mode_weights(smc, modes, exact):
    weights = mode_weights(smc, modes)[basin_order(modes)]
    assert np.max(np.abs(weights - exact["weights"])) < SMC_TOL
    assert "log_marginal_likelihood" in smc.sample_stats
    assert "cubic" in smc.log_likelihood and "bayesjoint_version" in smc.posterior.attrs


def test_negative_control_nuts_from_wrong_start_fails_weight_check(problem, modes, multi, exact):
    # one NUTS chain started in the lightest mode stays there: all its draws land in one mode
    wrong = problem.sample(
        draws=300,
        tune=300,
        chains=1,
        cores=1,
        random_seed=SEED,
        progressbar=False,
        init="adapt_diag",
        initvals={"x": -1.73},
        compute_convergence_checks=False,
    )
    weights = mode_weights(wrong, modes)[basin_order(modes)]
    assert np.max(np.abs(weights - exact["weights"])) > 0.5  # far outside both tolerances
    # pooling the multi-start chains without their weights fails the check too
    unweighted = multi.posterior.drop_vars(["mode", "mode_weight", "chain_weight"])
    pooled = mode_weights(unweighted, modes)[basin_order(modes)]
    assert np.max(np.abs(pooled - exact["weights"])) > MULTI_TOL * 10


def test_laplace_weighting_option(problem, modes, exact):
    idata = sample_from_modes(
        problem, modes, chains_per_mode=1, draws=50, tune=50, weighting="laplace", random_seed=1
    )
    assert idata.posterior.attrs["weighting"] == "laplace"
    weights = mode_weights(idata, modes)[basin_order(modes)]
    # Laplace weights of these near-Gaussian peaks are within 0.01 (see tests/test_search.py)
    assert np.max(np.abs(weights - exact["weights"])) < 0.01
    with pytest.raises(ValueError, match="weighting"):
        sample_from_modes(problem, modes, weighting="harmonic")


def test_detect_modes_flags_stuck_chains_in_plain_words(multi, smc):
    # the weighted multi-start chains sit in three modes on purpose
    found = detect_modes(multi)
    assert found.multimodal and found.weighted and bool(found)
    assert [g.chains for g in found.modes] == [(0, 1), (2, 3), (4, 5)]
    means = sorted(float(g.means["x"]) for g in found.modes)
    assert np.allclose(means, [-np.sqrt(3), 0.0, np.sqrt(3)], atol=0.1)
    assert "3 separate modes" in found.message and "chain_weight" in found.message
    # the same chains without weights: the verdict warns against pooling
    bare = detect_modes(multi.posterior.drop_vars(["mode", "mode_weight", "chain_weight"]))
    assert bare.multimodal and not bare.weighted
    assert "would be wrong" in bare.message and "mode 1 (chains 0, 1)" in bare.message
    # negative control: SMC chains each cover every mode, so they agree
    assert not detect_modes(smc).multimodal
    assert detect_modes(smc).message.startswith("All 2 chains sit in one mode")


def test_detect_modes_edge_cases():
    rng = np.random.default_rng(0)
    base = rng.normal(0.0, 1.0, (3, 100))
    same = xr.Dataset({"a": (("chain", "draw"), base)})
    assert not detect_modes(same).multimodal
    # a stuck chain (no spread) at another place is its own mode
    stuck = base.copy()
    stuck[2] = 7.0
    result = detect_modes(xr.Dataset({"a": (("chain", "draw"), stuck)}))
    assert result.multimodal and [g.chains for g in result.modes] == [(0, 1), (2,)]
    # a vector variable: the most discriminating element is named
    vec = np.stack([base, base + np.array([[0.0], [0.0], [9.0]])], axis=-1)
    ds = xr.Dataset({"v": (("chain", "draw", "v_dim"), vec), "b": (("chain", "draw"), base)})
    result = detect_modes(ds, var_names=["v"])
    assert result.multimodal and "v[1]" in result.message
    assert not detect_modes(ds, var_names=["b"]).multimodal
    single = detect_modes(xr.Dataset({"a": (("chain", "draw"), base[:1])}))
    assert not single.multimodal and "one chain" in single.message.lower()
    with pytest.raises(ValueError, match="not in the posterior"):
        detect_modes(ds, var_names=["nope"])
    with pytest.raises(ValueError, match="threshold"):
        detect_modes(ds, threshold=0.0)
    with pytest.raises(TypeError, match="chain and draw"):
        detect_modes(xr.Dataset({"a": ("x", [1.0])}))


def test_bridge_sampling_against_known_normalizing_constants():
    rng = np.random.default_rng(3)
    # unnormalized N(1, 0.5^2) scaled by 3: Z = 3 sqrt(2 pi) 0.5
    log_pt = lambda x: np.log(3.0) - 0.5 * ((x - 1.0) / 0.5) ** 2  # noqa: E731
    true = np.log(3.0 * np.sqrt(2 * np.pi) * 0.5)
    post = rng.normal(1.0, 0.5, 3000)
    q = stats.t(df=5, loc=1.1, scale=0.6)  # a deliberately imperfect proposal
    prop = q.rvs(3000, random_state=rng)
    log_z, err = bridge_log_evidence(log_pt(post), q.logpdf(post), log_pt(prop), q.logpdf(prop))
    assert abs(log_z - true) < 4 * err and err < 0.05
    # a target truncated to x > 1 (half the mass), with proposal draws outside set to -inf
    half = post[post > 1.0]
    lt = np.where(prop > 1.0, log_pt(prop), -np.inf)
    log_half, err_half = bridge_log_evidence(log_pt(half), q.logpdf(half), lt, q.logpdf(prop))
    assert abs(log_half - (true - np.log(2.0))) < 4 * err_half
    # negative control: draws from the wrong target give a wrong constant, well outside 4 errors
    shifted = rng.normal(2.0, 0.5, 3000)
    log_bad, err_bad = bridge_log_evidence(
        log_pt(shifted), q.logpdf(shifted), log_pt(prop), q.logpdf(prop)
    )
    assert abs(log_bad - true) > 4 * err_bad
    with pytest.raises(ValueError, match="finite"):
        bridge_log_evidence([0.0, np.inf], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0])


def test_lowpass_is_the_zero_phase_butterworth_and_linear():
    dt, n = 0.002, 120
    mat = lowpass_matrix(n, dt, 15.0)
    x = np.random.default_rng(1).standard_normal(n)
    sos = signal.butter(4, 15.0 / (0.5 / dt), output="sos")
    assert np.allclose(mat @ x, signal.sosfiltfilt(sos, x), atol=1e-12)
    op = LowPass(15.0, dt)
    traces = np.random.default_rng(2).standard_normal((2, n))
    assert np.allclose(op(traces), traces @ mat.T)
    assert np.allclose(op.linear_operator((2, n)) @ traces.ravel(), op(traces).ravel())
    # linear operator: the first-order Taylor remainder is round-off
    res = taylor_test(lambda v: op.apply(v), traces, random_seed=4)
    assert np.max(res.first) < 1e-9 * max(1.0, np.max(res.zeroth))
    with pytest.raises(ValueError, match="Nyquist"):
        lowpass_matrix(n, dt, 300.0)
    with pytest.raises(ValueError, match="too short"):
        lowpass_matrix(10, dt, 15.0)


def test_frequency_continuation_leaves_the_wrong_cycle():
    f, t0, dt = 25.0, 0.412, 0.002
    times = np.arange(0.0, 1.0, dt)
    data = ricker(times, f, t0) + 0.1 * np.random.default_rng(5).standard_normal(times.size)
    arrival = bj.Parameter("arrival_time", prior=bj.priors.Uniform(0.2, 0.8))
    wave = bj.Modality(
        "wave", physics=ShiftedWavelet(times, f), data=data, noise=bj.noise.Gaussian(0.1)
    )
    problem = bj.JointInversion(latent=[arrival], modalities=[wave])
    # independent check of the trap: the noiseless misfit has a local minimum at the side lobe
    # of the Ricker autocorrelation, lag sqrt(5 + sqrt(10)) / (pi f) = 0.909 periods
    lag = np.sqrt(5.0 + np.sqrt(10.0)) / (np.pi * f)
    side = optimize.minimize_scalar(
        lambda a: np.sum((ricker(times, f, t0) - ricker(times, f, a)) ** 2),
        bounds=(t0 + 0.8 / f, t0 + 1.0 / f),
        method="bounded",
    ).x
    assert abs(side - (t0 + lag)) < 1e-5
    start = {"arrival_time": t0 + lag}
    local = frequency_continuation(
        problem, [], modalities=["wave"], sample_interval=dt, start=start
    )
    cont = frequency_continuation(
        problem, [15.0, 8.0], modalities="wave", sample_interval=dt, start=start
    )
    # the posterior sd of the arrival is ~0.1 ms here; a quarter period (10 ms) decides the cycle
    assert abs(float(local.location["arrival_time"]) - t0) > 0.5 / f  # stuck one cycle late
    assert abs(float(cont.location["arrival_time"]) - t0) < 0.25 / f
    assert [s.cutoff for s in cont.stages] == [8.0, 15.0, None]  # lowest band first
    assert set(cont.initvals) == {"arrival_time"}
    with pytest.raises(ValueError, match="name the waveform modalities"):
        frequency_continuation(problem, [8.0], modalities=["seismic"], sample_interval=dt)
