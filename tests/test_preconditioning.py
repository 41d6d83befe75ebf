"""The low-rank NUTS mass matrix and the exact-path-preconditioned sampler."""

from __future__ import annotations

import json

import numpy as np
import pytest

import bayesjoint as bj
from bayesjoint.inference.preconditioning import LowRankMass, preconditioned_sample
from bayesjoint.validate import compare_with_exact

SEED = 20261129


def _w(m=4, n=7, seed=SEED):
    return np.random.default_rng(seed).standard_normal((m, n)) * 3.0


def _dense_mass(w):
    return np.eye(w.shape[1]) + w.T @ w


def test_velocity_equals_dense_inverse_mass_product():
    w = _w()
    mass = LowRankMass(w, rng=np.random.default_rng(SEED))
    p = np.random.default_rng(SEED + 1).standard_normal(w.shape[1])
    dense = np.linalg.solve(_dense_mass(w), p)  # independent: dense n × n solve
    # rtol 1e-10: both sides are O(n³) float64 solves of a matrix with condition ~1e2.
    np.testing.assert_allclose(mass.velocity(p), dense, rtol=1e-10, atol=1e-12)
    out = np.empty_like(p)
    assert mass.velocity(p, out=out) is None
    np.testing.assert_allclose(out, dense, rtol=1e-10, atol=1e-12)
    energy = 0.5 * p @ dense
    assert mass.energy(p) == pytest.approx(energy, rel=1e-10)
    v = np.empty_like(p)
    assert mass.velocity_energy(p, v) == pytest.approx(energy, rel=1e-10)
    np.testing.assert_allclose(v, dense, rtol=1e-10, atol=1e-12)
    # Negative control: the velocity of a different W is detected by the same check.
    wrong = LowRankMass(w * 1.1)
    assert not np.allclose(wrong.velocity(p), dense, rtol=1e-10, atol=1e-12)


def test_random_momentum_has_mass_matrix_covariance():
    w = _w(m=3, n=5)
    mass = LowRankMass(w, rng=np.random.default_rng(SEED))
    n_draws = 200_000
    draws = np.array([mass.random() for _ in range(n_draws)])
    cov = np.cov(draws, rowvar=False)
    target = _dense_mass(w)
    # Monte-Carlo tolerance: the sample covariance entry (i, j) has sd
    # sqrt((M_ij² + M_ii M_jj) / N); 5 of those sds bounds all 15 entries with a false-alarm
    # rate below 1e-5.
    se = np.sqrt((target**2 + np.outer(np.diag(target), np.diag(target))) / n_draws)
    assert np.all(np.abs(cov - target) <= 5 * se)
    assert np.all(np.abs(draws.mean(0)) <= 5 * np.sqrt(np.diag(target) / n_draws))
    # Negative control: the covariance of a wrong mass matrix (I + 1.1² WᵀW) is rejected.
    wrong = np.eye(5) + 1.21 * w.T @ w
    assert not np.all(np.abs(cov - wrong) <= 5 * se)


def test_bad_w_is_rejected():
    with pytest.raises(ValueError, match="LowRankMass w"):
        LowRankMass(np.ones(3))
    with pytest.raises(ValueError, match="LowRankMass w"):
        LowRankMass(np.array([[1.0, np.nan]]))


def _tiny_problem():
    """One 3 × 2 Gaussian field seen by a 4-datum linear survey: linear-Gaussian, exact path."""
    rng = np.random.default_rng(SEED)
    grid = bj.Grid(x=np.arange(3.0) * 10.0, z=np.array([-20.0, -10.0]))
    field = bj.Field("f", grid, bj.priors.GaussianField(1.0, 15.0, mean=0.3))
    g = rng.standard_normal((4, grid.size))
    data = g @ rng.standard_normal(grid.size) + 0.2 * rng.standard_normal(4)
    survey = bj.Modality("s", bj.physics.Linear(g, "f"), data, bj.noise.Gaussian(0.2))
    return bj.JointInversion([field], [survey])


def test_preconditioned_sample_matches_exact_posterior():
    problem = _tiny_problem()
    idata = preconditioned_sample(problem, problem, draws=1000, tune=300, chains=2, seed=SEED)
    exact = problem.exact_posterior()
    # compare_with_exact's defaults: |mean − exact| ≤ 4 MCSE, sd within 10 %, R-hat ≤ 1.01.
    result = compare_with_exact(problem, idata, exact)
    assert result.passed, result
    assert int(idata.sample_stats["diverging"].sum()) == 0
    assert idata.posterior.attrs["sampler"].startswith("NUTS, mass matrix")
    assert idata.posterior.attrs["draws"] == 1000
    assert "log_likelihood" in idata.groups()
    # Negative control: an exact posterior with the mean shifted by one posterior sd is rejected.
    shifted = exact.copy()
    shifted["mean"] = exact["mean"] + exact["sd"]
    assert not compare_with_exact(problem, idata, shifted).passed
    json.dumps(dict(idata.posterior.attrs))  # provenance stays JSON-serializable


def test_preconditioned_sample_rejects_mismatched_latents_and_bad_counts():
    problem = _tiny_problem()
    grid = bj.Grid(x=np.arange(2.0) * 10.0, z=np.array([-20.0, -10.0]))
    other = bj.JointInversion(
        [bj.Field("g", grid, bj.priors.GaussianField(1.0, 15.0))],
        [bj.Modality("t", bj.physics.Linear(np.ones((1, 4)), "g"), [1.0], bj.noise.Gaussian(1.0))],
    )
    with pytest.raises(ValueError, match="approx must declare the same latents"):
        preconditioned_sample(problem, other, draws=10, tune=10, chains=2, seed=0)
    with pytest.raises(ValueError, match="draws must be a positive integer"):
        preconditioned_sample(problem, problem, draws=0, tune=10, chains=2, seed=0)
