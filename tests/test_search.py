"""Global search: every mode of a known multimodal posterior, Laplace weights vs quadrature."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, optimize, stats

import bayesjoint as bj
from bayesjoint.inference.search import (
    LogPosterior,
    find_modes,
    finite_difference_hessian,
    laplace_log_mass,
    log_posterior,
    particle_swarm,
)
from bayesjoint.validate import CUBIC_BASINS, cubic_log_density, cubic_problem

# The posterior of bayesjoint.validate.cubic_problem: x ~ N(0.4, 1), x^3 - 3x observed as 0 with
# sd 0.3; three peaks near 0 and ±sqrt(3), separated by barriers of > 20 nats at x = ±1.
BASINS = CUBIC_BASINS
exact_log_density = cubic_log_density  # closed form (scipy), independent of PyMC


def exact_density(x):
    return np.exp(exact_log_density(x))


@pytest.fixture(scope="module")
def exact():
    """Modes (maximizers of the closed form) and masses per basin (adaptive quadrature)."""
    modes, masses = [], []
    for lo, hi in BASINS:
        res = optimize.minimize_scalar(
            lambda v: -exact_log_density(v),
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-10},
        )
        modes.append(res.x)
        masses.append(integrate.quad(exact_density, lo, hi, epsabs=0, epsrel=1e-11, limit=200)[0])
    masses = np.array(masses)
    return np.array(modes), masses / masses.sum()


@pytest.fixture(scope="module")
def problem():
    return cubic_problem()


@pytest.fixture(scope="module")
def result(problem):
    return find_modes(problem, {"x": (-4.0, 4.0)}, n_starts=10, maxiter=40, random_seed=3)


def matched(result, exact_modes, tol):
    """For every exact mode, the found mode nearest to it lies within tol."""
    found = np.array([float(m.location["x"]) for m in result.modes])
    return [bool(np.min(np.abs(found - m)) < tol) for m in exact_modes]


def test_global_search_finds_every_mode(result, exact):
    modes, _ = exact
    assert len(result.modes) == 3
    # 1e-4 is 0.1 % of the narrowest peak's sd (0.05): L-BFGS-B converges far below that.
    assert all(matched(result, modes, 1e-4))
    assert result.modes[0].hits >= 1 and set(result.methods) == {
        "differential_evolution",
        "particle_swarm",
    }
    assert not any(m.at_bound for m in result.modes)


def test_laplace_weights_match_quadrature(result, exact):
    modes, weights = exact
    order = [int(np.argmin([abs(float(m.location["x"]) - e) for m in result.modes])) for e in modes]
    laplace = result.weights[order]
    # Laplace is exact for Gaussian peaks; these peaks are Gaussian to within the third-derivative
    # correction O(sigma / g'^2), under 1 % of each weight here, so 0.01 absolute is a safe bound.
    assert np.max(np.abs(laplace - weights)) < 0.01
    assert np.isclose(result.weights.sum(), 1.0)
    # The log posterior density at each mode is the closed form (up to the evidence): compare
    # differences between modes, which do not depend on the normalizing constant.
    log_p = np.array([result.modes[k].log_posterior for k in order])
    assert np.allclose(np.diff(log_p), np.diff(exact_log_density(modes)), atol=1e-8)


def test_each_global_searcher_finds_the_global_mode(problem, exact):
    modes, weights = exact
    best = modes[np.argmax(weights)]
    for method in ("differential_evolution", "particle_swarm"):
        res = find_modes(
            problem, {"x": (-4.0, 4.0)}, methods=[method], n_starts=0, maxiter=40, random_seed=5
        )
        # the heaviest peak is also the highest here (all three have similar widths)
        assert abs(float(res.best.location["x"]) - best) < 1e-4, method
    # The Latin-hypercube multi-start alone (10 local descents that stay in their valleys) finds
    # all three modes: every basin covers at least a quarter of the box.
    design = find_modes(problem, {"x": (-4.0, 4.0)}, methods=[], n_starts=10, random_seed=5)
    assert all(matched(design, modes, 1e-4))


def test_negative_control_single_local_start_misses_modes(problem, exact):
    modes, _ = exact
    single = find_modes(problem, {"x": (-4.0, 4.0)}, methods=[], n_starts=0, random_seed=1)
    assert len(single.modes) == 1
    assert not all(matched(single, modes, 1e-4))  # the check above does detect missing modes
    assert single.weights.tolist() == [1.0]  # and one mode alone gets all the weight


def test_result_reports_in_plain_words_and_as_dataset(result):
    text = result.message
    assert text.startswith("Found 3 distinct modes") and "x = " in text and "weight" in text
    ds = result.to_dataset()
    assert ds.sizes["mode"] == 3 and np.isclose(float(ds["weight"].sum()), 1.0)
    assert set(ds.data_vars) >= {"x", "log_posterior", "log_mass", "weight", "hits", "at_bound"}
    # initvals are ready for pymc.sample
    assert set(result.modes[0].initvals) == {"x"}


def test_log_posterior_is_cached_per_model(problem, result):
    assert log_posterior(problem) is result.target
    assert find_modes(
        result.target, {"x": (-4, 4)}, n_starts=2, maxiter=5, random_seed=0
    ).target is (result.target)


def test_log_posterior_cache_lets_an_unreferenced_problem_be_freed():
    import gc
    import weakref

    def build():
        x = bj.Parameter("x", prior=bj.priors.Normal(0.0, 1.0))
        obs = bj.Modality("a", bj.physics.Linear([[1.0]], input="x"), [0.5], bj.noise.Gaussian(1.0))
        return bj.JointInversion(latent=[x], modalities=[obs])

    problem = build()
    target = log_posterior(problem)
    value = target.logp(target.x0)
    # N(0.5 - 0; 0, 1) + N(0; 0, 1) log densities at x = 0
    assert value == pytest.approx(stats.norm.logpdf(0.5) + stats.norm.logpdf(0.0), rel=1e-12)
    assert log_posterior(problem) is target  # cached while referenced
    freed, model_freed = weakref.ref(problem), weakref.ref(problem.model)
    del problem
    gc.collect()
    assert freed() is not None  # negative control: the target still holds its problem
    del target
    gc.collect()
    assert freed() is None and model_freed() is None


def test_laplace_masses_are_coordinate_free_for_a_positive_variable():
    # s ~ LogNormal(0, 1) is searched in u = log s; (s - 2)^2 observed as 0.25 (sd 0.05) gives
    # peaks at s = 1.5 and 2.5. The Laplace masses in u include the Jacobian, so they estimate
    # the masses of the posterior of s itself, which quadrature gives in s.
    s = bj.Parameter("s", prior=bj.priors.LogNormal(0.0, 1.0))
    obs = bj.Modality(
        "obs",
        physics=lambda m: ((m["s"] - 2.0) ** 2)[None],
        data=[0.25],
        noise=bj.noise.Gaussian(0.05),
    )
    res = find_modes(
        bj.JointInversion(latent=[s], modalities=[obs]),
        {"s": (0.1, 5.0)},
        n_starts=8,
        maxiter=20,
        random_seed=0,
    )
    density = lambda v: stats.lognorm.pdf(v, 1.0) * stats.norm.pdf(0.25, (v - 2.0) ** 2, 0.05)  # noqa: E731
    mass = [integrate.quad(density, a, b, epsabs=0, epsrel=1e-10)[0] for a, b in ((0, 2), (2, 9))]
    located = sorted(float(m.location["s"]) for m in res.modes)
    assert len(res.modes) == 2 and np.allclose(located, [1.5, 2.5], atol=0.01)
    weights = [m.weight for m in sorted(res.modes, key=lambda m: float(m.location["s"]))]
    # the peaks are near-Gaussian in log s (sd ~0.017): Laplace error well under 0.01
    assert np.allclose(weights, np.array(mass) / sum(mass), atol=0.01)


def test_bounds_map_through_transforms_and_default_to_prior():
    t = bj.Parameter("t", prior=bj.priors.Uniform(0.2, 0.8))
    s = bj.Parameter("s", shape=2, prior=bj.priors.HalfNormal(1.0))
    z = bj.Parameter("z", prior=bj.priors.Normal(1.0, 2.0))
    mod = bj.Modality(
        "d",
        physics=lambda m: (m["t"] + m["s"].sum() + m["z"])[None],
        data=[1.0],
        noise=bj.noise.Gaussian(1.0),
    )
    target = LogPosterior(bj.JointInversion(latent=[t, s, z], modalities=[mod]))
    box = target.bounds({"t": (0.3, 0.6), "s": (0.5, [1.0, 2.0])}, random_seed=0)
    logit = lambda v: np.log((v - 0.2) / (0.8 - v))  # noqa: E731 - PyMC's interval transform
    assert np.allclose(box[target.slices["t"]], [[logit(0.3), logit(0.6)]])
    assert np.allclose(box[target.slices["s"]], np.log([[0.5, 1.0], [0.5, 2.0]]))
    # z has no bounds: central 99.9 % of 2000 prior draws, i.e. 1 ± 3.29 * 2 up to the Monte
    # Carlo error of an extreme quantile (~0.3 sd with 2000 draws; 0.5 allows for it).
    assert np.allclose(box[target.slices["z"]].ravel(), [1 - 3.29 * 2, 1 + 3.29 * 2], atol=1.0)
    # support edges are nudged inside, never infinite
    edge = target.bounds({"t": (0.2, 0.8)}, random_seed=0)[target.slices["t"]]
    assert np.all(np.isfinite(edge)) and edge[0, 0] < logit(0.201)
    # to_flat and latent are inverse maps
    u = target.to_flat({"t": 0.5, "s": [0.3, 2.0], "z": -1.0})
    back = target.latent(u)
    assert np.isclose(back["t"], 0.5) and np.allclose(back["s"], [0.3, 2.0]) and back["z"] == -1.0


def test_bounds_errors_name_the_variable_and_the_fix():
    field = bj.Field(
        "rho",
        bj.Grid(x=np.arange(4.0)),
        prior=bj.priors.GaussianField(sigma=1.0, correlation_length=2.0),
    )
    mod = bj.Modality(
        "d",
        physics=bj.physics.Linear(np.eye(4), input="rho"),
        data=np.zeros(4),
        noise=bj.noise.Gaussian(1.0),
    )
    target = LogPosterior(bj.JointInversion(latent=[field], modalities=[mod]))
    with pytest.raises(ValueError, match="rho_white"):
        target.bounds({"rho": (-1.0, 1.0)})
    with pytest.raises(ValueError, match="not a free variable"):
        target.bounds({"density": (-1.0, 1.0)})
    with pytest.raises(ValueError, match="lower < upper"):
        target.bounds({"rho_white": (1.0, -1.0)})
    box = target.bounds({"rho_white": (-4.0, 4.0)})
    assert box.shape == (4, 2) and np.all(box == [-4.0, 4.0])
    with pytest.raises(ValueError, match="unknown method"):
        find_modes(target, methods=["simulated_annealing"])
    with pytest.raises(TypeError, match="JointInversion"):
        find_modes(object())


def rastrigin(x):
    return 10.0 * x.size + float(np.sum(x**2 - 10.0 * np.cos(2.0 * np.pi * x)))


@pytest.mark.parametrize("topology", ["ring", "global"])
def test_particle_swarm_on_rastrigin_stays_in_bounds(topology):
    seen = []

    def recorded(x):
        seen.append(x.copy())
        return rastrigin(x)

    box = [(-5.12, 5.12), (-5.12, 5.12)]
    res = particle_swarm(
        recorded, box, n_particles=40, iterations=300, topology=topology, random_seed=2
    )
    # The global minimum is 0 at the origin; the nearest local minima (|x| ≈ 1) have value ≈ 1,
    # so 1e-3 in position and 1e-3 in value mean the global basin was found and resolved.
    assert np.all(np.abs(res.x) < 1e-3) and res.fun < 1e-3
    pts = np.array(seen)
    assert np.all(pts >= -5.12) and np.all(pts <= 5.12)
    assert res.n_evaluations == len(seen)


def test_particle_swarm_validates_input():
    with pytest.raises(ValueError, match="bounds"):
        particle_swarm(rastrigin, [(1.0, -1.0)])
    with pytest.raises(ValueError, match="topology"):
        particle_swarm(rastrigin, [(-1.0, 1.0)], topology="star")


def test_finite_difference_hessian_and_laplace_against_closed_forms():
    # f(x) = x0^2 x1 + sin(x1) has Hessian [[2 x1, 2 x0], [2 x0, -sin(x1)]]
    grad = lambda x: np.array([2 * x[0] * x[1], x[0] ** 2 + np.cos(x[1])])  # noqa: E731
    x = np.array([0.7, 1.3])
    exact = np.array([[2 * 1.3, 2 * 0.7], [2 * 0.7, -np.sin(1.3)]])
    # central differences with h = 1e-4: truncation O(h^2) ~ 1e-8 relative
    assert np.allclose(finite_difference_hessian(grad, x), exact, rtol=1e-7, atol=1e-8)
    # Laplace of an exact 2-D Gaussian exp(-x'Ax/2) is (2 pi) / sqrt(det A)
    a = np.array([[2.0, 0.3], [0.3, 0.5]])
    assert np.isclose(laplace_log_mass(0.0, a), np.log(2 * np.pi / np.sqrt(np.linalg.det(a))))
    assert np.isnan(laplace_log_mass(0.0, [[1.0, 0.0], [0.0, -1.0]]))  # saddle: no mass
