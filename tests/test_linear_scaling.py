"""The exact path at scale: sparse operators and structured prior factors end to end, the dense
Cholesky and the matrix-free (perturbation-optimization, conjugate-gradient) routes, memory checks.

Tolerances:

- structured vs dense assembly: the same whitened algebra on differently stored matrices, so the
  mean and sd agree to round-off (rtol 1e-10); against the covariance (Kalman) form, a different
  formula whose subtraction ``C₀ − C₀Aᵀ S⁻¹ A C₀`` loses digits, rtol 1e-8 (mean) and 1e-6 (sd);
- matrix-free mean: since the whitened precision ``P ⪰ I``, a residual ``r`` leaves an error
  ``‖Δz‖₂ ≤ ‖r‖₂ ≤ rtol ‖b‖₂`` in the whitened coordinates; that bound is asserted as it is;
- draws are independent, so a mean's Monte Carlo standard error is ``sd / √N`` and a sample sd's
  relative one ``1 / √(2(N − 1))``; the checks allow 4 of them for each of the 51 parameters
  (a false alarm has probability ≈ 51 · 6e-5 < 0.4 %; the seeds are fixed).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp

import bayesjoint as bj
import bayesjoint.linear as lin
from bayesjoint.inference.exact import exact_draws
from bayesjoint.linear import LinearGaussianSystem, PriorFactor, linear_gaussian_system
from bayesjoint.priors import KroneckerFactor

SEED = 20261203
N_DRAWS = 4000
BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "exact_path.py"


def _problem(seed: int = 0) -> bj.JointInversion:
    """A 8 × 6 Gaussian field and three normal parameters; one sparse and one dense modality."""
    rng = np.random.default_rng(seed)
    grid = bj.Grid(x=np.linspace(0.0, 70.0, 8), z=np.linspace(-50.0, 0.0, 6))
    field = bj.Field(
        "rho", grid, prior=bj.priors.GaussianField(2.0, {"x": 30.0, "z": 20.0}, mean=1.0)
    )
    theta = bj.Parameter(
        "theta", shape=3, prior=bj.priors.Normal([0.0, 1.0, -1.0], [1.0, 2.0, 0.5])
    )
    rays = sp.random(40, 51, density=0.1, random_state=seed, format="csr")
    blur = rng.standard_normal((12, 48)) / 5.0
    m1 = bj.Modality(
        "rays",
        bj.physics.Linear(rays, input=["rho", "theta"], offset=rng.standard_normal(40)),
        rng.standard_normal(40),
        bj.noise.Gaussian(rng.uniform(0.1, 0.3, 40)),
    )
    m2 = bj.Modality(
        "blur",
        bj.physics.Linear(blur, input="rho"),
        rng.standard_normal(12),
        bj.noise.Gaussian(0.2),
    )
    return bj.JointInversion([field, theta], [m1, m2])


def _dense_copy(system: LinearGaussianSystem) -> LinearGaussianSystem:
    """The same system with every matrix stored densely (the path before structure)."""
    return LinearGaussianSystem(
        system.labels,
        system.latent_of,
        system.prior_mean,
        np.asarray(system.prior_factor),
        system.modalities,
        [g.toarray() if sp.issparse(g) else np.asarray(g) for g in system.operators],
        system.residuals,
    )


def _kalman(problem: bj.JointInversion) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and covariance in covariance form, from the priors' dense ``gaussian()``."""
    means, factors = [], []
    for var in problem.latent.values():
        mean, factor = var.prior.gaussian(var.shape, var.grid)
        means.append(mean)
        factors.append(factor)
    mu, l0 = np.concatenate(means), sla.block_diag(*factors)
    c0 = l0 @ l0.T
    rows, resid, noise = [], [], []
    for mod in problem.modalities.values():
        a, b = mod.physics.linear_operator()
        a = a.toarray() if sp.issparse(a) else np.asarray(a)
        full = np.zeros((mod.n_data, mu.size))
        full[:, : a.shape[1]] = a  # inputs start at column 0 ("rho", then "theta")
        rows.append(full)
        resid.append(mod.data - b)
        noise.append(np.broadcast_to(mod.noise.sd, mod.data.shape) ** 2)
    a, d, sigma = np.vstack(rows), np.concatenate(resid), np.diag(np.concatenate(noise))
    s = a @ c0 @ a.T + sigma
    gain = np.linalg.solve(s, a @ c0).T
    return mu + gain @ (d - a @ mu), c0 - gain @ a @ c0


def _misfit(draws: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> dict[str, float]:
    """Largest standardized errors of the draws' means and sds (in Monte Carlo standard errors)."""
    n = draws.shape[0]
    return {
        "mean": float(np.max(np.abs(draws.mean(0) - mean) / (sd / np.sqrt(n)))),
        "sd": float(np.max(np.abs(draws.std(0, ddof=1) / sd - 1.0) * np.sqrt(2 * (n - 1)))),
    }


@pytest.fixture(scope="module")
def problem() -> bj.JointInversion:
    return _problem()


@pytest.fixture(scope="module")
def system(problem) -> LinearGaussianSystem:
    return linear_gaussian_system(problem)


@pytest.fixture(scope="module")
def dense_posterior(system):
    return _dense_copy(system).posterior()


def test_assembly_keeps_sparse_operators_sparse_and_the_prior_factor_structured(system):
    kinds = [kind for _, kind, _ in system.prior_factor.blocks]
    assert kinds == ["kronecker", "diagonal"]
    assert sp.issparse(system.operators[0])  # sparse physics, diagonal noise: stays sparse
    assert isinstance(system.operators[1], np.ndarray)  # dense physics stays dense
    field = system.prior_factor.blocks[0][2]
    assert isinstance(field, KroneckerFactor) and field.axis_shape == (8, 6)


def test_prior_factor_products_match_the_dense_factor():
    rng = np.random.default_rng(SEED)
    kron = KroneckerFactor(
        1.5, [np.tril(rng.random((3, 3))) + np.eye(3), np.tril(rng.random((4, 4)))]
    )
    dense_block = np.tril(rng.random((2, 2))) + np.eye(2)
    factor = PriorFactor.of(kron, sp.diags([2.0, 3.0]), dense_block)
    assert [kind for _, kind, _ in factor.blocks] == ["kronecker", "diagonal", "dense"]
    full = sla.block_diag(kron.toarray(), np.diag([2.0, 3.0]), dense_block)
    np.testing.assert_array_equal(np.asarray(factor), full)
    x = rng.standard_normal((16, 5))
    np.testing.assert_allclose(factor @ x, full @ x, rtol=1e-13)
    np.testing.assert_allclose(x.T @ factor, x.T @ full, rtol=1e-13)
    np.testing.assert_allclose(factor.left(x.copy(), transpose=True), full.T @ x, rtol=1e-13)
    np.testing.assert_allclose(factor.right(x.T.copy(), transpose=True), x.T @ full.T, rtol=1e-13)
    np.testing.assert_allclose(factor.variances(), np.sum(full**2, axis=1), rtol=1e-13)
    np.testing.assert_allclose(factor.squared(x[:, 0], transpose=True), (full**2).T @ x[:, 0])
    np.testing.assert_allclose(factor.aslinearoperator().rmatvec(x[:, 1]), full.T @ x[:, 1])


def test_gaussian_operator_is_the_dense_gaussian_prior():
    grid = bj.Grid(x=np.linspace(0.0, 90.0, 10), z=np.linspace(-20.0, 0.0, 5))
    field = bj.priors.GaussianField(2.0, 30.0, mean=1.0)
    mean, factor = field.gaussian_operator(grid.shape, grid)
    np.testing.assert_allclose(factor.toarray(), field.gaussian(grid.shape, grid)[1], rtol=1e-14)
    np.testing.assert_array_equal(mean, field.gaussian(grid.shape, grid)[0])
    normal = bj.priors.Normal(0.0, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(normal.gaussian_operator((3,))[1].toarray(), np.diag([1, 2, 3]))
    assert (
        bj.priors.GaussianField(bj.priors.HalfNormal(1.0), 30.0).gaussian_operator(grid.shape, grid)
        is None
    )


def test_structured_assembly_gives_the_dense_paths_mean_and_sd(problem, system, dense_posterior):
    post = system.posterior()
    np.testing.assert_allclose(post["mean"], dense_posterior["mean"], rtol=1e-10)
    np.testing.assert_allclose(post["sd"], dense_posterior["sd"], rtol=1e-10)
    np.testing.assert_allclose(post["cov"], dense_posterior["cov"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(post["prior_sd"], dense_posterior["prior_sd"], rtol=1e-12)
    mean, cov = _kalman(problem)
    np.testing.assert_allclose(post["mean"], mean, rtol=1e-8)
    np.testing.assert_allclose(post["sd"], np.sqrt(np.diag(cov)), rtol=1e-6)


def test_dense_draws_match_the_posterior_within_monte_carlo_error(system, dense_posterior):
    z, m = system.draws(N_DRAWS, np.random.default_rng(SEED))
    assert z.shape == m.shape == (N_DRAWS, system.n)
    # the same seed through the densely stored system gives the same draws (round-off)
    z_d, m_d = _dense_copy(system).draws(N_DRAWS, np.random.default_rng(SEED))
    np.testing.assert_allclose(m, m_d, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(z, z_d, rtol=1e-9, atol=1e-12)
    # z and m are the same draws: m = μ + L z
    np.testing.assert_allclose(m, system.prior_mean + z @ np.asarray(system.prior_factor).T)
    misfit = _misfit(m, dense_posterior["mean"].values, dense_posterior["sd"].values)
    assert misfit["mean"] < 4.0 and misfit["sd"] < 4.0, misfit


def test_exact_draws_is_the_systems_draws(system):
    z1, m1 = exact_draws(system, 50, np.random.default_rng(SEED))
    z2, m2 = system.draws(50, np.random.default_rng(SEED))
    np.testing.assert_array_equal(z1, z2)
    np.testing.assert_array_equal(m1, m2)


def test_matrix_free_mean_is_within_the_conjugate_gradient_bound(system, dense_posterior):
    rtol = 1e-10
    post = system.posterior(method="matrix-free", rtol=rtol, sd_draws=N_DRAWS)
    assert "matrix-free" in post.attrs["method"] and "cov" not in post
    # ‖Δz‖₂ ≤ rtol ‖b‖₂ with b = Σ W_kᵀ (r̃_k − G_k μ), Δz = L⁻¹ Δm
    b = sum(
        w.T @ (r - g @ system.prior_mean)
        for w, g, r in zip(system.whitened(), system.operators, system.residuals, strict=True)
    )
    delta_m = post["mean"].values - dense_posterior["mean"].values
    delta_z = sla.solve_triangular(np.asarray(system.prior_factor), delta_m, lower=True)
    assert np.linalg.norm(delta_z) <= rtol * np.linalg.norm(b)
    # the sd is a Monte Carlo estimate about the exact mean: relative error 1/√(2N) each
    rel = np.abs(post["sd"].values / dense_posterior["sd"].values - 1.0)
    assert np.max(rel) < 4.0 / np.sqrt(2 * N_DRAWS), np.max(rel)


@pytest.mark.parametrize(("latent", "preconditioner"), [("both", "Nystrom"), ("theta", "Jacobi")])
def test_matrix_free_draws_match_the_dense_posterior(problem, latent, preconditioner):
    system = linear_gaussian_system(problem)
    if latent == "theta":  # independent normal priors only: the diagonal preconditioner
        system = LinearGaussianSystem(
            system.labels[48:],
            system.latent_of[48:],
            system.prior_mean[48:],
            PriorFactor([system.prior_factor.blocks[1][1:]]),
            ["rays"],
            [sp.csr_array(system.operators[0])[:, 48:]],
            [system.residuals[0]],
        )
    exact = _dense_copy(system).posterior()
    z, m, info = system.draws(
        N_DRAWS, np.random.default_rng(SEED), method="matrix-free", return_info=True
    )
    assert info["method"] == "matrix-free"
    assert info["preconditioner"].startswith(preconditioner)
    assert max(info["iterations"]) <= system.n  # CG's n-step bound in exact arithmetic
    np.testing.assert_allclose(m, system.prior_mean + z @ np.asarray(system.prior_factor).T)
    misfit = _misfit(m, exact["mean"].values, exact["sd"].values)
    assert misfit["mean"] < 4.0 and misfit["sd"] < 4.0, misfit
    first, again = (
        system.draws(10, np.random.default_rng(SEED), method="matrix-free")[1] for _ in range(2)
    )
    np.testing.assert_array_equal(first, again)  # seeded: the same draws


def test_moment_check_detects_a_wrong_posterior(system, dense_posterior):
    # negative control: matrix-free draws without the sparse modality are not the posterior
    _, m = system.without(["rays"]).draws(
        N_DRAWS, np.random.default_rng(SEED), method="matrix-free"
    )
    misfit = _misfit(m, dense_posterior["mean"].values, dense_posterior["sd"].values)
    assert misfit["mean"] > 4.0 or misfit["sd"] > 4.0, misfit


def test_auto_goes_matrix_free_beyond_the_dense_limit(system, monkeypatch):
    assert system.draws(5, np.random.default_rng(0), return_info=True)[2]["method"] == "dense"
    monkeypatch.setattr(lin, "DENSE_LIMIT", 10)
    assert system.draws(5, np.random.default_rng(0), return_info=True)[2]["method"] == (
        "matrix-free"
    )


def test_covariance_is_left_out_beyond_the_limit_unless_asked(system, monkeypatch):
    monkeypatch.setattr(lin, "COV_LIMIT", 10)
    post = system.posterior()
    assert "cov" not in post and "posterior(cov=True)" in post.attrs["cov"]
    assert system.posterior(cov=True)["cov"].shape == (system.n, system.n)


def test_a_problem_that_will_not_fit_is_refused_before_allocating(system, monkeypatch):
    def no_allocation(self):
        raise AssertionError("the dense precision was allocated")

    monkeypatch.setattr(lin, "_available_memory", lambda: 10_000)  # 10 kB
    monkeypatch.setattr(LinearGaussianSystem, "_precision", no_allocation)
    n = system.n
    with pytest.raises(
        ValueError, match=rf"{n} parameters \({n} × {n}\) needs about [\d.]+ [kM]B.* 10.0 kB is"
    ):
        system.draws(10, np.random.default_rng(0), method="dense")
    with pytest.raises(ValueError, match=r"with its covariance needs about .*\(cov=False\)"):
        system.posterior(cov=True)
    with pytest.raises(ValueError, match=rf"10 matrix-free draws of {n} parameters"):
        system.draws(10, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"dense whitened operators \(52 × 51\) needs about"):
        system.whitened()
    with pytest.raises(ValueError, match="covariance needs the dense route"):
        system.posterior(cov=True, method="matrix-free")
    with pytest.raises(ValueError, match="method='gpu' unknown"):
        system.draws(10, np.random.default_rng(0), method="gpu")


def test_unconverged_conjugate_gradients_warn(system):
    with pytest.warns(RuntimeWarning, match="stopped after maxiter=2 iterations"):
        system.draws(3, np.random.default_rng(0), method="matrix-free", maxiter=2)


def _benchmark(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCHMARK), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_benchmark_quick_run_prints_one_json_object_with_both_routes():
    proc = _benchmark("--repeat", "1")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # fails on anything besides one JSON document
    assert data["mode"] == "quick" and data["assemble"]["n"] == 200
    for route in ("dense", "matrix-free"):
        for case in ("mean", "mean_sd", "draws"):
            assert data["routes"][route][case]["time_s"] > 0.0
            assert data["routes"][route][case]["peak_rss_mib"] > 0.0
        assert data["routes"][route]["draws"]["info"]["method"] == route
    assert data["agreement"]["max_abs_mean_difference_in_sd"] < 1e-6  # CG to rtol 1e-10


def test_benchmark_bad_option_fails_without_json():
    proc = _benchmark("--repeat", "0")
    assert proc.returncode != 0 and proc.stdout == ""
