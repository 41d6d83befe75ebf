"""The Laplace mass matrices of the ``"nuts"`` route: dense and low-rank + diagonal."""

from __future__ import annotations

import numpy as np
import pytest
from pymc.step_methods.hmc.quadpotential import QuadPotentialFull

import bayesjoint as bj
import bayesjoint.inference.nuts as nuts
from bayesjoint.inference.mass_matrix import (
    DenseCovariance,
    LaplaceMass,
    LowRankCovariance,
    low_rank_laplace,
    prior_variance,
)
from bayesjoint.inference.search import LogPosterior
from bayesjoint.validate import compare_with_exact

SEED = 20261201


def _factors(n=7, k=3, seed=SEED):
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.5, 2.0, n)
    vectors, _ = np.linalg.qr(rng.standard_normal((n, k)))
    eigenvalues = np.array([40.0, 3.0, -0.6])[:k]  # data narrow two directions, one widens
    return scale, vectors, eigenvalues


def _brute_force_covariance(scale, vectors, eigenvalues):
    """``S (I + V Λ Vᵀ)⁻¹ S`` by a dense inverse (independent of the O(nk) formulas)."""
    a = np.eye(scale.size) + vectors @ np.diag(eigenvalues) @ vectors.T
    return np.diag(scale) @ np.linalg.inv(a) @ np.diag(scale)


def test_low_rank_potential_velocity_and_energy_equal_dense_full_potential():
    factors = _factors()
    cov = _brute_force_covariance(*factors)
    low = LaplaceMass(LowRankCovariance(*factors))
    full = QuadPotentialFull(cov)
    p = np.random.default_rng(SEED + 1).standard_normal(cov.shape[0])
    # rtol 1e-10: both sides are float64 products with a matrix of condition ~1e2
    np.testing.assert_allclose(low.velocity(p), full.velocity(p), rtol=1e-10)
    assert low.energy(p) == pytest.approx(full.energy(p), rel=1e-10)
    v_low, v_full = np.empty_like(p), np.empty_like(p)
    assert low.velocity_energy(p, v_low) == pytest.approx(
        full.velocity_energy(p, v_full), rel=1e-10
    )
    np.testing.assert_allclose(v_low, v_full, rtol=1e-10)
    out = np.empty_like(p)
    assert low.velocity(p, out=out) is None
    np.testing.assert_allclose(out, v_full, rtol=1e-10)
    # the dense form of the same potential agrees as well
    dense = LaplaceMass(DenseCovariance(cov))
    np.testing.assert_allclose(dense.velocity(p), full.velocity(p), rtol=1e-10)
    # Negative control: dropping the low-rank part (C = S²) is detected by the same check.
    diagonal_only = LaplaceMass(LowRankCovariance(factors[0], np.zeros((7, 0)), np.zeros(0)))
    assert not np.allclose(diagonal_only.velocity(p), full.velocity(p), rtol=1e-10)


def test_low_rank_square_roots_and_diagonal_equal_brute_force_algebra():
    factors = _factors()
    cov = _brute_force_covariance(*factors)
    low = LowRankCovariance(*factors)
    eye = np.eye(cov.shape[0])
    root = low.sqrt(eye)  # F with F Fᵀ = C: Laplace draws x̂ + F ε
    prec_root = low.precision_sqrt(eye)  # R with R Rᵀ = C⁻¹: momenta R ξ
    np.testing.assert_allclose(root @ root.T, cov, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(prec_root @ prec_root.T, np.linalg.inv(cov), rtol=1e-10)
    np.testing.assert_allclose(low.diagonal(), np.diag(cov), rtol=1e-10)
    np.testing.assert_allclose(low.dense(), cov, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="eigenvalues must exceed -1"):
        LowRankCovariance(factors[0], factors[1], np.array([1.0, -1.0, 0.0]))


def test_random_momenta_and_laplace_draws_have_the_right_covariances():
    factors = _factors(n=5, k=2)
    cov = _brute_force_covariance(*factors)
    mass = LaplaceMass(LowRankCovariance(*factors), rng=np.random.default_rng(SEED))
    n_draws = 100_000
    momenta = np.array([mass.random() for _ in range(n_draws)])
    draws = (
        LowRankCovariance(*factors)
        .sqrt(np.random.default_rng(SEED + 2).standard_normal((5, n_draws)))
        .T
    )

    def within(sample, target):
        # the sample covariance entry (i, j) has sd sqrt((T_ij² + T_ii T_jj) / N); 5 sds bound
        # all 15 entries with a false-alarm rate below 1e-5
        se = np.sqrt((target**2 + np.outer(np.diag(target), np.diag(target))) / n_draws)
        return bool(np.all(np.abs(np.cov(sample, rowvar=False) - target) <= 5 * se))

    assert within(momenta, np.linalg.inv(cov))  # p ~ N(0, M), M = C⁻¹
    assert within(draws, cov)
    # Negative control: without the low-rank part the momenta would have covariance S⁻²,
    # which the same test rejects.
    assert not within(momenta, np.diag(factors[0] ** -2.0))


def _linear_problem(n_data=6, seed=SEED):
    """A 8 × 3 Gaussian field (24 whitened coordinates) seen by ``n_data`` linear data."""
    rng = np.random.default_rng(seed)
    grid = bj.Grid(x=np.arange(8.0) * 10.0, z=np.array([-30.0, -20.0, -10.0]))
    field = bj.Field("f", grid, bj.priors.GaussianField(1.0, 15.0, mean=0.3))
    g = rng.standard_normal((n_data, grid.size))
    data = g @ rng.standard_normal(grid.size) + 0.2 * rng.standard_normal(n_data)
    survey = bj.Modality("s", bj.physics.Linear(g, "f"), data, bj.noise.Gaussian(0.2))
    return bj.JointInversion([field], [survey])


@pytest.fixture(scope="module")
def problem():
    return _linear_problem()


def _exact_whitened(problem):
    """Exact posterior mean and precision ``I + WᵀW`` in the whitened coordinates."""
    system = problem.linear_gaussian_system()
    whitened = system.whitened()
    precision = np.eye(system.n) + sum(w.T @ w for w in whitened)
    rhs = sum(
        w.T @ (r - g @ system.prior_mean)
        for w, g, r in zip(whitened, system.operators, system.residuals, strict=True)
    )
    return np.linalg.solve(precision, rhs), precision


def test_low_rank_laplace_of_a_linear_gaussian_problem_beyond_the_limit_is_exact(
    problem, monkeypatch
):
    monkeypatch.setattr(nuts, "DENSE_LIMIT", 10)  # 24 coordinates: the low-rank form
    laplace = nuts.laplace_approximation(problem)
    assert laplace.log_posterior.value_names == ["f_white"]
    assert laplace.low_rank["rank"] == 6  # 6 data: the data part of H has rank 6
    assert laplace.low_rank["diagonal"] == "prior variance"
    assert "low-rank (k=6) + diagonal" in laplace.description
    mean, precision = _exact_whitened(problem)
    exact_cov = np.linalg.inv(precision)
    # quadratic log density: the Newton step lands on the mean and central differences of the
    # exact gradient are exact up to rounding (relative 1e-7 leaves room for it)
    np.testing.assert_allclose(laplace.mode, mean, atol=1e-7)
    np.testing.assert_allclose(laplace.covariance, exact_cov, atol=1e-7 * exact_cov.max())
    # with fewer eigenpairs than data the leading directions still carry the exact curvature
    cov, info = low_rank_laplace(laplace.log_posterior, laplace.mode, max_rank=3)
    assert info["rank"] == 3
    curvature, directions = np.linalg.eigh(precision)
    lead = directions[:, -3:]
    restricted = lead.T @ np.linalg.inv(cov.dense()) @ lead
    np.testing.assert_allclose(restricted, np.diag(curvature[-3:]), rtol=1e-6, atol=1e-6)
    # Negative control: the next direction is not captured (its curvature is the prior's 1).
    fourth = directions[:, -4]
    assert fourth @ np.linalg.inv(cov.dense()) @ fourth == pytest.approx(1.0, rel=1e-6)
    assert curvature[-4] > 2.0


def test_prior_variance_of_a_scalar_is_its_prior_variance():
    x = bj.Parameter("x", prior=bj.priors.Normal(0.0, 3.0))
    a = bj.Modality("a", bj.physics.Linear(np.ones((1, 1)), "x"), [1.0], bj.noise.Gaussian(1.0))
    log_posterior = LogPosterior(bj.JointInversion([x], [a]))
    variance, how = prior_variance(log_posterior, np.array([0.7]))
    assert how == "prior variance"
    assert variance == pytest.approx([9.0], rel=1e-6)  # Normal(0, 3): curvature 1/9


def test_prior_variance_compiles_its_gradient_once_per_model(monkeypatch):
    """A second call on the same model (another run, a resumed run) compiles nothing.

    Every ``pytensor.function`` call is counted by a spy: the first call compiles (at least one
    call: the spy sees compilations, so zero on the second call is a result), the second none,
    and both return the same variances. A new model of the same problem compiles afresh.
    """
    import pytensor

    compiled = []
    original = pytensor.function

    def spy(*args, **kwargs):
        compiled.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(pytensor, "function", spy)
    x = bj.Parameter("x", shape=3, prior=bj.priors.Normal(0.0, 2.0))
    s = bj.Parameter("s", prior=bj.priors.HalfNormal(1.0))
    a = bj.Modality("a", bj.physics.Linear(np.eye(3), "x"), np.zeros(3), bj.noise.Gaussian(1.0))
    problem = bj.JointInversion([x, s], [a])
    log_posterior = LogPosterior(problem)
    point = np.array([0.3, -0.2, 0.1, 0.4])
    first, how = prior_variance(log_posterior, point)
    assert how == "prior variance" and len(compiled) >= 1
    other = LogPosterior(problem)  # same model, another LogPosterior object
    compiled.clear()
    second, _ = prior_variance(other, point)
    assert compiled == []
    np.testing.assert_array_equal(second, first)
    # closed form: Normal(0, 2) has curvature 1/4; a HalfNormal(1) scalar stored as u = log s
    # has −log p(u) = e^{2u}/2 − u + const, curvature 2 e^{2u}
    np.testing.assert_allclose(first, [4.0, 4.0, 4.0, 1.0 / (2.0 * np.exp(0.8))], rtol=1e-6)
    # negative control: another model (a rebuilt problem) is compiled afresh
    rebuilt = LogPosterior(bj.JointInversion([x, s], [a]))
    compiled.clear()
    prior_variance(rebuilt, point)
    assert len(compiled) >= 1


@pytest.mark.parametrize("adapt", [False, True])
def test_nuts_with_the_low_rank_mass_matrix_matches_the_exact_posterior(
    problem, monkeypatch, adapt
):
    monkeypatch.setattr(nuts, "DENSE_LIMIT", 10)
    idata = problem.sample(
        method="nuts",
        draws=500,
        tune=300,
        chains=4,
        cores=1,
        random_seed=SEED,
        progressbar=False,
        adapt_mass=adapt,
    )
    attrs = idata.posterior.attrs
    assert attrs["mass_matrix"].startswith("low-rank (k=6) + diagonal")
    assert attrs["mass_matrix"].endswith("(diagonal adapted during tune)" if adapt else "(fixed)")
    assert attrs["laplace_rank"] == 6
    exact = problem.exact_posterior()
    # compare_with_exact's defaults: |mean − exact| ≤ 4 MCSE, sd within 10 %, R-hat ≤ 1.01
    result = compare_with_exact(problem, idata, exact)
    assert result.passed, result
    assert int(idata.sample_stats["diverging"].sum()) == 0
    # Negative control: an exact posterior with the mean shifted by one sd is rejected.
    shifted = exact.copy()
    shifted["mean"] = exact["mean"] + exact["sd"]
    assert not compare_with_exact(problem, idata, shifted).passed


def test_adapt_mass_must_be_a_bool(problem):
    with pytest.raises(TypeError, match=r"adapt_mass='yes'.*True or False"):
        problem.sample(method="nuts", draws=10, tune=10, chains=1, adapt_mass="yes")
