"""bayesjoint.linear: the exact linear-Gaussian path against dense brute-force algebra and
closed forms; the Gauss–Newton / Laplace linearization (budget, expected information gain)."""

from __future__ import annotations

import importlib
import sys

import arviz as az
import numpy as np
import pymc as pm
import pytest
import scipy.sparse as sp
from scipy import integrate, stats

import bayesjoint as bj
from bayesjoint.coupling.base import Coupling
from bayesjoint.linear import (
    expected_information_gain,
    jacobians,
    linear_gaussian_system,
    linearization_point,
    linearized_budget,
    linearized_system,
    noise_factor,
)
from bayesjoint.priors import correlation_1d
from bayesjoint.validate import blur_and_points_problem

RNG_SEED = 7


def _scalar_problem(h, sd, sigma0, data):
    x = bj.Parameter("theta", prior=bj.priors.Normal(0.5, sigma0))
    mods = [
        bj.Modality(
            f"m{k}",
            physics=bj.physics.Linear([[hk]], input="theta"),
            data=[dk],
            noise=bj.noise.Gaussian(sk),
        )
        for k, (hk, sk, dk) in enumerate(zip(h, sd, data, strict=True))
    ]
    return bj.JointInversion([x], mods)


def test_scalar_precision_addition_formula():
    # 1/σ_post² = 1/σ0² + Σ h_k²/σ_k² and mean = σ_post² (μ0/σ0² + Σ h_k d_k/σ_k²), closed form.
    h, sd, d, sigma0 = [2.0, -0.5, 1.5], [0.3, 0.1, 1.2], [1.1, -0.2, 0.7], 0.8
    post = _scalar_problem(h, sd, sigma0, d).exact_posterior()
    precision = 1 / sigma0**2 + sum(hk**2 / sk**2 for hk, sk in zip(h, sd, strict=True))
    mean = 0.5 / sigma0**2 + sum(hk * dk / sk**2 for hk, dk, sk in zip(h, d, sd, strict=True))
    np.testing.assert_allclose(float(post["sd"][0]) ** -2, precision, rtol=1e-12)
    np.testing.assert_allclose(float(post["mean"][0]), mean / precision, rtol=1e-12)


def test_scalar_information_budget():
    h, sd, d, sigma0 = [2.0, -0.5], [0.3, 0.1], [1.1, -0.2], 0.8
    budget = _scalar_problem(h, sd, sigma0, d).information_budget()
    terms = np.array([hk**2 / sk**2 for hk, sk in zip(h, sd, strict=True)])
    prior_p = 1 / sigma0**2
    post_p = prior_p + terms.sum()
    np.testing.assert_allclose(budget["precision"].values.ravel(), terms, rtol=1e-12)
    np.testing.assert_allclose(budget["precision_share"].values.ravel(), terms / post_p, rtol=1e-12)
    np.testing.assert_allclose(float(budget["prior_precision_share"][0]), prior_p / post_p)
    np.testing.assert_allclose(
        budget["information_gain_alone"].values, 0.5 * np.log((prior_p + terms) / prior_p)
    )
    np.testing.assert_allclose(
        budget["information_gain_added"].values, 0.5 * np.log(post_p / (post_p - terms))
    )
    np.testing.assert_allclose(
        float(budget["information_gain_total"]), 0.5 * np.log(post_p / prior_p)
    )


def _random_problem(rng, noise_kind="diag"):
    grid = bj.Grid(x=np.linspace(0.0, 90.0, 10), z=np.linspace(-40.0, 0.0, 5))
    field = bj.Field(
        "rho", grid, prior=bj.priors.GaussianField(2.0, {"x": 30.0, "z": 15.0}, mean=1.0)
    )
    theta = bj.Parameter(
        "theta", shape=3, prior=bj.priors.Normal([0.0, 1.0, -1.0], [1.0, 2.0, 0.5])
    )
    a = rng.standard_normal((25, 50)) / 10
    b = sp.random(15, 53, density=0.2, random_state=3, format="csr")
    offset = rng.standard_normal(15)
    if noise_kind == "diag":
        noise_b = bj.noise.Gaussian(rng.uniform(0.1, 0.3, 15))
    else:
        q = rng.standard_normal((15, 15))
        noise_b = bj.noise.Gaussian(cov=q @ q.T / 15 + 0.05 * np.eye(15))
    m1 = bj.Modality(
        "a", bj.physics.Linear(a, input="rho"), rng.standard_normal(25), bj.noise.Gaussian(0.2)
    )
    m2 = bj.Modality(
        "b",
        bj.physics.Linear(b, input=["rho", "theta"], offset=offset),
        rng.standard_normal(15),
        noise_b,
    )
    return bj.JointInversion([field, theta], [m1, m2])


def _brute_force(problem):
    """Dense covariance-form algebra, independent of the whitened Cholesky route."""
    prior_cov, prior_mean = [], []
    for var in problem.latent.values():
        if isinstance(var.prior, bj.priors.GaussianField):
            p = var.prior
            cx = correlation_1d(var.grid.centers["x"], p.correlation_length["x"], p.kernel)
            cz = correlation_1d(var.grid.centers["z"], p.correlation_length["z"], p.kernel)
            cx += p.nugget * np.eye(cx.shape[0])
            cz += p.nugget * np.eye(cz.shape[0])
            prior_cov.append(p.sigma**2 * np.kron(cx, cz))
            prior_mean.append(np.full(var.size, float(p.mean)))
        else:
            prior_cov.append(np.diag(np.broadcast_to(var.prior.sigma, var.shape) ** 2))
            prior_mean.append(np.broadcast_to(var.prior.mu, var.shape).astype(float))
    n = sum(v.size for v in problem.latent.values())
    c0 = np.zeros((n, n))
    start = 0
    for c in prior_cov:
        c0[start : start + c.shape[0], start : start + c.shape[0]] = c
        start += c.shape[0]
    mu0 = np.concatenate(prior_mean)
    # Stack all modalities into one linear system with a block-diagonal noise covariance.
    rows, data, offsets, noise = [], [], [], []
    for mod in problem.modalities.values():
        a, b = mod.physics.linear_operator()
        a = a.toarray() if sp.issparse(a) else a
        full = np.zeros((mod.n_data, n))
        full[:, : a.shape[1]] = a  # inputs start at column 0 ("rho", then "theta")
        rows.append(full)
        data.append(mod.data)
        offsets.append(b)
        noise.append(
            mod.noise.cov
            if mod.noise.cov is not None
            else np.diag(np.broadcast_to(mod.noise.sd, mod.data.shape) ** 2)
        )
    a_all = np.vstack(rows)
    s_all = np.zeros((a_all.shape[0],) * 2)
    start = 0
    for s in noise:
        s_all[start : start + s.shape[0], start : start + s.shape[0]] = s
        start += s.shape[0]
    d_all = np.concatenate(data) - np.concatenate(offsets)
    # Kalman (covariance) form: gain K = C0 Aᵀ (A C0 Aᵀ + S)⁻¹.
    gain = c0 @ a_all.T @ np.linalg.inv(a_all @ c0 @ a_all.T + s_all)
    mean = mu0 + gain @ (d_all - a_all @ mu0)
    cov = c0 - gain @ a_all @ c0
    return mean, cov, c0, rows, noise


@pytest.mark.parametrize("noise_kind", ["diag", "full"])
def test_exact_posterior_against_kalman_form(noise_kind):
    problem = _random_problem(np.random.default_rng(RNG_SEED), noise_kind)
    post = problem.exact_posterior()
    mean, cov, *_ = _brute_force(problem)
    # Two algebraically equal routes (whitened Cholesky vs Kalman gain with a dense inverse);
    # the prior's condition number (~1e6 with the nugget) bounds the agreement to ~1e-8.
    np.testing.assert_allclose(post["mean"].values, mean, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(post["cov"].values, cov, rtol=1e-6, atol=1e-8)
    assert list(post["parameter"].values[:2]) == ["rho[0, 0]", "rho[0, 1]"]
    assert list(post["latent"].values[-3:]) == ["theta"] * 3


def test_information_budget_against_dense_logdets():
    problem = _random_problem(np.random.default_rng(RNG_SEED), "full")
    budget = problem.information_budget()
    _, cov, c0, rows, noise = _brute_force(problem)
    lam0 = np.linalg.inv(c0)
    lams = [r.T @ np.linalg.solve(s, r) for r, s in zip(rows, noise, strict=True)]
    lam_post = lam0 + sum(lams)
    np.testing.assert_allclose(np.linalg.inv(lam_post), cov, rtol=1e-6, atol=1e-8)
    for k, lam in enumerate(lams):
        np.testing.assert_allclose(budget["precision"].values[k], lam, rtol=1e-9, atol=1e-9)
    logdet = lambda m: np.linalg.slogdet(m)[1]  # noqa: E731
    total = 0.5 * (logdet(lam_post) - logdet(lam0))
    # slogdet of the ill-conditioned prior precision is accurate to ~1e-6 relative.
    np.testing.assert_allclose(float(budget["information_gain_total"]), total, rtol=1e-6)
    for k, lam in enumerate(lams):
        alone = 0.5 * (logdet(lam0 + lam) - logdet(lam0))
        added = 0.5 * (logdet(lam_post) - logdet(lam_post - lam))
        np.testing.assert_allclose(budget["information_gain_alone"].values[k], alone, rtol=1e-6)
        np.testing.assert_allclose(budget["information_gain_added"].values[k], added, rtol=1e-6)
    shares = budget["precision_share"].sum("modality") + budget["prior_precision_share"]
    np.testing.assert_allclose(shares.values, 1.0, rtol=1e-9)


def test_brute_force_detects_a_wrong_posterior():
    # Negative control: perturbing one datum moves the exact mean away from the brute-force mean
    # computed on the original data by far more than the tolerance used above.
    problem = _random_problem(np.random.default_rng(RNG_SEED), "diag")
    mean, *_ = _brute_force(problem)
    problem.modalities["a"].data[0] += 1.0
    moved = problem.exact_posterior()["mean"].values
    assert np.max(np.abs(moved - mean)) > 1e-3


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: bj.priors.HalfNormal(1.0), "latent 'x': prior HalfNormal"),
        (lambda: "physics", "modality 'm': its physics"),
        (lambda: "noise", "modality 'm': noise Gaussian\\(sd=HalfNormal"),
        (lambda: "observe", "modality 'm': its observation operator"),
        (lambda: "student", "modality 'm': noise StudentT"),
    ],
)
def test_exact_path_names_the_non_gaussian_part(make, match):
    what = make()
    prior = what if isinstance(what, bj.priors.Prior) else bj.priors.Normal(0.0, 1.0)
    x = bj.Parameter("x", shape=2, prior=prior)
    physics = (lambda m: m["x"] ** 2) if what == "physics" else bj.physics.Linear(np.eye(2), "x")
    noise = {
        "noise": bj.noise.Gaussian(bj.priors.HalfNormal(1.0)),
        "student": bj.noise.StudentT(1.0),
    }.get(what, bj.noise.Gaussian(1.0))
    observe = (lambda s: s * 2.0) if what == "observe" else None
    mod = bj.Modality("m", physics=physics, data=np.ones(2), noise=noise, observe=observe)
    problem = bj.JointInversion([x], [mod])
    with pytest.raises(ValueError, match=match):
        problem.exact_posterior()


def test_sparse_and_dense_operators_agree():
    rng = np.random.default_rng(3)
    a = sp.random(12, 8, density=0.4, random_state=4, format="csr")
    d = rng.standard_normal(12)
    posts = []
    for mat in (a, a.toarray()):
        x = bj.Parameter("x", shape=8, prior=bj.priors.Normal(0.0, 1.0))
        mod = bj.Modality("m", bj.physics.Linear(mat, input="x"), d, bj.noise.Gaussian(0.3))
        posts.append(bj.JointInversion([x], [mod]).exact_posterior())
    np.testing.assert_allclose(posts[0]["mean"], posts[1]["mean"], rtol=1e-12)


def test_linear_observation_composes_with_physics():
    # H(F(m)) with linear F and H is linear; the exact path uses the product H A.
    rng = np.random.default_rng(5)
    a, h = rng.standard_normal((6, 4)), rng.standard_normal((3, 6))
    d = rng.standard_normal(3)
    x = bj.Parameter("x", shape=4, prior=bj.priors.Normal(0.0, 1.0))
    chained = bj.Modality(
        "m", bj.physics.Linear(a, "x"), d, bj.noise.Gaussian(0.5), observe=bj.observe.Linear(h)
    )
    direct = bj.Modality("m", bj.physics.Linear(h @ a, "x"), d, bj.noise.Gaussian(0.5))
    p1 = bj.JointInversion([x], [chained]).exact_posterior()
    p2 = bj.JointInversion([x], [direct]).exact_posterior()
    np.testing.assert_allclose(p1["cov"], p2["cov"], rtol=1e-12)


class _Tie(bj.coupling.Coupling):
    """x[0] - x[1] ~ N(0, s²): the simplest linear-Gaussian coupling."""

    name = "tie"
    inputs = ("x",)

    def __init__(self, s):
        self.s = s

    def build(self, latent, variables):
        import pymc as pm

        pm.Potential(self.name, -0.5 * ((latent["x"][0] - latent["x"][1]) / self.s) ** 2)

    def gaussian_factor(self, variables):
        return {"x": np.array([[1.0, -1.0]])}, np.zeros(1), np.array([self.s])


def test_gaussian_coupling_is_one_more_factor():
    # Prior N(0, I₂), one datum x0 = d (sd σ), tie x0 − x1 ~ N(0, s²): posterior precision
    # [[1 + 1/σ² + 1/s², −1/s²], [−1/s², 1 + 1/s²]] by hand.
    sigma, s, d = 0.5, 0.3, 1.2
    x = bj.Parameter("x", shape=2, prior=bj.priors.Normal(0.0, 1.0))
    mod = bj.Modality("m", bj.physics.Linear([[1.0, 0.0]], "x"), [d], bj.noise.Gaussian(sigma))
    problem = bj.JointInversion([x], [mod], couplings=[_Tie(s)])
    lam = np.array([[1 + 1 / sigma**2 + 1 / s**2, -1 / s**2], [-1 / s**2, 1 + 1 / s**2]])
    cov = np.linalg.inv(lam)
    post = problem.exact_posterior()
    np.testing.assert_allclose(post["cov"].values, cov, rtol=1e-12)
    np.testing.assert_allclose(post["mean"].values, cov @ np.array([d / sigma**2, 0.0]), rtol=1e-12)
    budget = problem.information_budget()
    assert budget["modality"].values.tolist() == ["m", "tie"]
    # The model's log density agrees with the exact Gaussian up to a constant: compare differences.
    logp = problem.model.compile_logp()
    pts = [np.array([0.3, -0.2]), np.array([1.0, 0.5])]
    quad = [-0.5 * (p - post["mean"].values) @ lam @ (p - post["mean"].values) for p in pts]
    got = [logp({"x": p}) for p in pts]
    np.testing.assert_allclose(got[0] - got[1], quad[0] - quad[1], rtol=1e-10)


def test_non_gaussian_coupling_blocks_the_exact_path():
    class Wiggle(_Tie):
        name = "wiggle"

        def gaussian_factor(self, variables):
            return None

    x = bj.Parameter("x", shape=2, prior=bj.priors.Normal(0.0, 1.0))
    mod = bj.Modality("m", bj.physics.Linear([[1.0, 0.0]], "x"), [1.0], bj.noise.Gaussian(1.0))
    with pytest.raises(ValueError, match="coupling 'wiggle'"):
        bj.JointInversion([x], [mod], couplings=[Wiggle(1.0)]).exact_posterior()
    with pytest.raises(ValueError, match="coupling 'tie' reads unknown latent variable"):
        tie = _Tie(1.0)
        tie.inputs = ("y",)
        bj.JointInversion([x], [mod], couplings=[tie])


# -- linearization: Gauss–Newton / Laplace budget and expected information gain ---------------
BUDGET_VARS = [
    "precision",
    "prior_precision",
    "posterior_precision",
    "precision_share",
    "information_gain_alone",
    "information_gain_added",
    "information_gain_total",
    "posterior_sd_alone",
    "posterior_sd",
    "prior_sd",
]


def _exp_problem(mu0=0.2, s0=0.5, sigma=0.3, n=3):
    """x ~ N(mu0, s0²); n repeated data d = exp(x) + ε, ε ~ N(0, sigma²)."""
    x = bj.Parameter("x", prior=bj.priors.Normal(mu0, s0))
    mod = bj.Modality(
        "expo",
        physics=lambda m: pm.math.exp(m["x"]) * np.ones(n),
        data=np.full(n, 1.3),
        noise=bj.noise.Gaussian(sigma),
    )
    return bj.JointInversion(latent=[x], modalities=[mod])


def test_linear_problem_budget_equals_the_exact_budget():
    # The Jacobians come from pytensor autodiff of the symbolic prediction, the exact budget from
    # the operators' explicit matrices: two independent routes to A_k. Round-off tolerance.
    problem = blur_and_points_problem(30, n_points=8)
    lin = linearized_budget(problem, point=np.linspace(-1.0, 1.0, 30))
    exact = problem.information_budget()
    for name in BUDGET_VARS:
        np.testing.assert_allclose(lin[name].values, exact[name].values, rtol=1e-9, atol=1e-9)
    # the linearized posterior of a linear problem is the exact one, from any point
    post = linearized_system(problem, point=np.zeros(30)).posterior()
    np.testing.assert_allclose(post["mean"], problem.exact_posterior()["mean"], atol=1e-10)


def test_nonlinear_budget_matches_the_closed_form_at_the_point():
    # d = exp(x): J = exp(x0) for each of 3 data, so the data precision is 3 e^{2 x0} / σ² and
    # the gain with the prior is ½ log(1 + s0² · 3 e^{2 x0} / σ²) (closed form, round-off).
    mu0, s0, sigma, x0 = 0.2, 0.5, 0.3, 0.35
    problem = _exp_problem(mu0, s0, sigma)
    budget = linearized_budget(problem, point={"x": x0})
    precision = 3 * np.exp(2 * x0) / sigma**2
    assert float(budget["precision"].values.squeeze()) == pytest.approx(precision, rel=1e-12)
    gain = 0.5 * np.log1p(s0**2 * precision)
    assert float(budget["information_gain_total"]) == pytest.approx(gain, rel=1e-12)
    sd = 1.0 / np.sqrt(1 / s0**2 + precision)
    assert float(budget["posterior_sd"].values.squeeze()) == pytest.approx(sd, rel=1e-12)
    assert float(budget["linearization_point"].values.squeeze()) == x0
    # Jacobian against a central finite difference of numpy's exp (truncation error ~h² = 1e-12)
    pred, jac = jacobians(problem, [x0])["expo"]
    h = 1e-6
    fd = (np.exp(x0 + h) - np.exp(x0 - h)) / (2 * h)
    np.testing.assert_allclose(jac[:, 0], fd, rtol=1e-8)
    np.testing.assert_allclose(pred, np.exp(x0), rtol=1e-14)


def test_closed_form_check_detects_a_jacobian_at_the_wrong_point():
    # Negative control: the budget linearized elsewhere differs from the closed form at x0.
    problem = _exp_problem()
    budget = linearized_budget(problem, point={"x": 0.0})
    precision_at_x0 = 3 * np.exp(2 * 0.35) / 0.3**2
    assert float(budget["precision"].values.squeeze()) != pytest.approx(precision_at_x0, rel=0.1)


def test_posterior_mean_is_the_default_point_and_learned_noise_enters_at_its_mean():
    problem = bj.JointInversion(
        latent=[bj.Parameter("x", prior=bj.priors.Normal(0.0, 1.0))],
        modalities=[
            bj.Modality(
                "a",
                physics=lambda m: pm.math.exp(m["x"]) * np.ones(2),
                data=[1.0, 1.1],
                noise=bj.noise.Gaussian(bj.priors.HalfNormal(1.0)),
            )
        ],
    )
    rng = np.random.default_rng(0)
    x_draws = 0.4 + 0.01 * rng.standard_normal((2, 50))
    sigma_draws = 0.25 + 0.01 * rng.standard_normal((2, 50))
    idata = az.from_dict(posterior={"x": x_draws, "a_sigma": sigma_draws})
    system = linearized_system(problem, idata)
    m0 = float(x_draws.mean())
    assert linearization_point(problem, idata)[0] == pytest.approx(m0, rel=1e-14)
    # whitened operator = J / E[sigma] = exp(m0) / mean(sigma)   (closed form, round-off)
    np.testing.assert_allclose(
        system.operators[0][:, 0], np.exp(m0) / sigma_draws.mean(), rtol=1e-12
    )
    with pytest.raises(ValueError, match=r"modality 'a'.*noise sd.*idata"):
        linearized_system(problem, point=[0.4])


def test_student_t_noise_uses_the_gaussian_of_equal_fisher_information():
    # Fisher information of a Student-t location (scale s, ν dof) by numerical integration of
    # the squared score: an independent route to (ν+1)/((ν+3) s²). quad's tolerance ~1e-10.
    s, nu = 0.7, 3.0
    mod = bj.Modality(
        "t",
        physics=bj.physics.Linear([[1.0]], input="x"),
        data=[0.0],
        noise=bj.noise.StudentT(s, nu),
    )

    def integrand(y):
        score = stats.t.logpdf(y + 1e-6, nu, scale=s) - stats.t.logpdf(y - 1e-6, nu, scale=s)
        return (score / 2e-6) ** 2 * stats.t.pdf(y, nu, scale=s)

    info = integrate.quad(integrand, -np.inf, np.inf)[0]
    assert float(noise_factor(mod)[0]) == pytest.approx(1 / np.sqrt(info), rel=1e-6)


def test_laplace_prior_matches_a_numerical_hessian_of_the_lognormal_density():
    # -d²/dx² log p(x) of LogNormal(μ, s) at x0 by scipy finite differences (independent of
    # pytensor); central-difference error with h = 1e-4 is ~1e-7 relative.
    mu, s, x0 = 0.1, 0.4, 1.3
    problem = bj.JointInversion(
        latent=[bj.Parameter("k", prior=bj.priors.LogNormal(mu, s))],
        modalities=[
            bj.Modality(
                "m",
                physics=bj.physics.Linear([[2.0]], input="k"),
                data=[2.5],
                noise=bj.noise.Gaussian(0.2),
            )
        ],
    )
    budget = linearized_budget(problem, point={"k": x0})
    h = 1e-4

    def logp(v):
        return stats.lognorm.logpdf(v, s, scale=np.exp(mu))

    hess = (logp(x0 + h) - 2 * logp(x0) + logp(x0 - h)) / h**2
    prec = float(budget["prior_precision"].values.squeeze())
    assert prec == pytest.approx(-hess, rel=1e-5)
    assert "Laplace" in budget.attrs["prior_approximation"]


def test_flat_prior_is_moment_matched():
    # Uniform(0, 2): the Hessian is zero, so the prior's sd (b - a)/√12 is matched from 4000
    # seeded draws; the sd estimate's relative error is ~1/√(2·4000) ≈ 1.1 %, tolerance 5 %.
    problem = bj.JointInversion(
        latent=[bj.Parameter("u", prior=bj.priors.Uniform(0.0, 2.0))],
        modalities=[
            bj.Modality(
                "m",
                physics=bj.physics.Linear([[1.0]], input="u"),
                data=[1.0],
                noise=bj.noise.Gaussian(0.5),
            )
        ],
    )
    budget = linearized_budget(problem, point={"u": 1.0})
    assert float(budget["prior_sd"].values.squeeze()) == pytest.approx(2 / np.sqrt(12), rel=0.05)
    assert "moment-matched" in budget.attrs["prior_approximation"]


class _TiePotential(Coupling):
    """Soft equality a ≈ b through a plain Potential (no gaussian_factor)."""

    name = "tie"
    inputs = ("a", "b")

    def __init__(self, sd):
        self.sd = sd

    def build(self, latent, variables):
        pm.Potential("tie", -0.5 * ((latent["a"] - latent["b"]) / self.sd) ** 2)


def test_coupling_potential_enters_through_its_hessian():
    # The potential −½((a−b)/s)² has precision (1/s²)[[1, −1], [−1, 1]] (closed form, round-off).
    a = bj.Parameter("a", prior=bj.priors.Normal(0.0, 1.0))
    b = bj.Parameter("b", prior=bj.priors.Normal(0.0, 1.0))
    mod = bj.Modality(
        "obs",
        physics=bj.physics.Linear([[1.0]], input="a"),
        data=[0.5],
        noise=bj.noise.Gaussian(0.1),
    )
    problem = bj.JointInversion(latent=[a, b], modalities=[mod], couplings=[_TiePotential(0.5)])
    budget = linearized_budget(problem, point={"a": 0.3, "b": -0.2})
    tie = budget["precision"].sel(modality="tie").values
    np.testing.assert_allclose(tie, np.array([[1, -1], [-1, 1]]) / 0.25, atol=1e-10)
    assert list(budget["modality"].values) == ["obs", "tie"]


def test_expected_information_gain_closed_form_and_agreement_with_the_exact_budget():
    # Scalar x ~ N(0, 1) seen once with sd 0.5 (precision 4); a candidate 2x with sd 1 adds
    # precision 4: EIG = ½ log((1 + 4 + 4)/(1 + 4)) (closed form, round-off).
    x = bj.Parameter("x", prior=bj.priors.Normal(0.0, 1.0))
    first = bj.Modality(
        "first",
        physics=bj.physics.Linear([[1.0]], input="x"),
        data=[0.2],
        noise=bj.noise.Gaussian(0.5),
    )
    cand = bj.Modality(
        "cand",
        physics=bj.physics.Linear([[2.0]], input="x"),
        data=[0.0],
        noise=bj.noise.Gaussian(1.0),
    )
    problem = bj.JointInversion(latent=[x], modalities=[first])
    eig = expected_information_gain(problem, cand, point=[0.0])
    assert float(eig["expected_information_gain"][0]) == pytest.approx(0.5 * np.log(9 / 5))
    assert float(eig["information_gain_alone"][0]) == pytest.approx(0.5 * np.log(5))
    # ... and equals the exact budget's gain of adding the candidate to the problem
    both = bj.JointInversion(latent=[x], modalities=[first, cand]).information_budget()
    added = float(both["information_gain_added"].sel(modality="cand"))
    assert float(eig["expected_information_gain"][0]) == pytest.approx(added, rel=1e-12)
    sd_with = float(eig["posterior_sd_with"].values.squeeze())
    assert sd_with == pytest.approx(1 / 3.0, rel=1e-12)  # 1/√(1 + 4 + 4)


def test_which_modality_next_prefers_the_unseen_region():
    # 20 independent values (prior sd 0.1) seen only on their left half (noise sd 0.05): a
    # survey of the right half (never seen) must rank above the same survey of the left half.
    # Each gain is the closed form ½ Σ_i log(1 + v_i / σ²) over the surveyed values, with v_i
    # their current posterior variance (1/(1/0.1² + 1/0.05²) seen, 0.1² unseen) and σ = 0.02
    # the new survey's noise sd; the values are independent, so "both" gains the sum.
    n, prior_sd, seen_sd, new_sd = 20, 0.1, 0.05, 0.02
    x = bj.Parameter("x", shape=n, prior=bj.priors.Normal(0.0, prior_sd))
    seen = bj.Modality(
        "seen",
        physics=bj.physics.Linear(np.eye(n)[:10], input="x"),
        data=np.zeros(10),
        noise=bj.noise.Gaussian(seen_sd),
    )
    problem = bj.JointInversion(latent=[x], modalities=[seen])
    rows = {"left": np.eye(n)[:5], "right": np.eye(n)[15:]}
    rows["both"] = np.vstack([rows["left"], rows["right"]])
    cands = [
        bj.Modality(
            name,
            physics=bj.physics.Linear(m, input="x"),
            data=np.zeros(m.shape[0]),
            noise=bj.noise.Gaussian(new_sd),
        )
        for name, m in rows.items()
    ]
    eig = expected_information_gain(problem, cands, point=np.zeros(n))
    gains = eig["expected_information_gain"]
    v_seen = 1.0 / (1.0 / prior_sd**2 + 1.0 / seen_sd**2)
    closed = {
        "left": 2.5 * np.log1p(v_seen / new_sd**2),
        "right": 2.5 * np.log1p(prior_sd**2 / new_sd**2),
    }
    closed["both"] = closed["left"] + closed["right"]
    for name, value in closed.items():
        np.testing.assert_allclose(float(gains.sel(candidate=name)), value, rtol=1e-10)
    assert float(gains.sel(candidate="right")) > float(gains.sel(candidate="left")) + 1.0
    ranks = {name: int(eig["rank"].sel(candidate=name)) for name in rows}
    assert ranks == {"both": 1, "right": 2, "left": 3}
    assert np.all(eig["posterior_sd_with"].values <= eig["posterior_sd"].values + 1e-12)


def test_candidate_errors_name_the_problem():
    problem = blur_and_points_problem(6, n_points=2)
    wrong = bj.Modality(
        "w",
        physics=bj.physics.Linear(np.eye(6), input="y"),
        data=np.zeros(6),
        noise=bj.noise.Gaussian(0.1),
    )
    with pytest.raises(ValueError, match=r"candidate 'w' reads latent variable\(s\) \['y'\]"):
        expected_information_gain(problem, wrong, point=np.zeros(6))
    learned = bj.Modality(
        "l",
        physics=bj.physics.Linear(np.eye(6), input="x"),
        data=np.zeros(6),
        noise=bj.noise.Gaussian(bj.priors.HalfNormal(1.0)),
    )
    with pytest.raises(ValueError, match="candidate 'l': give the planned measurement noise"):
        expected_information_gain(problem, learned, point=np.zeros(6))
    with pytest.raises(ValueError, match="stacked latent vector has 6"):
        linearized_budget(problem, point=np.zeros(5))
    with pytest.raises(TypeError, match=r"bj\.JointInversion"):
        linearized_budget("not a problem", point=np.zeros(6))


def test_exact_system_is_the_linearized_system_of_a_linear_problem():
    # One assembly: for a linear-Gaussian problem the linearization at any point gives the very
    # operators and whitened data of the exact system (round-off).
    problem = blur_and_points_problem(12, n_points=4)
    exact = linear_gaussian_system(problem)
    lin = linearized_system(problem, point=np.linspace(-2.0, 2.0, 12))
    assert list(exact.modalities) == list(lin.modalities) == ["blurred", "points"]
    for g_e, g_l, r_e, r_l in zip(
        exact.operators, lin.operators, exact.residuals, lin.residuals, strict=True
    ):
        g_e = g_e.toarray() if sp.issparse(g_e) else g_e  # a sparse operator stays sparse
        np.testing.assert_allclose(g_l, g_e, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(r_l, r_e, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(lin.prior_factor, exact.prior_factor)


def test_linearized_budget_of_three_sensors_with_a_shared_discrepancy_is_the_closed_form():
    # One temperature t ~ N(0, 1) read by three sensors (noise sd 0.05) whose errors share a GP
    # discrepancy (amplitude 0.15, lengthscale 50 over sensors 10 apart: nearly one common
    # offset). Closed form, by plain numpy: posterior precision 1 + 1ᵀ (σ²I + K)⁻¹ 1, gain
    # ½ log of it. Both the linearized and the exact budget must give it (round-off, 1e-10);
    # ignoring the discrepancy (negative control) would claim ~3x the precision.
    coords = np.array([0.0, 10.0, 20.0])
    gp = bj.discrepancy.GP(lengthscale=50.0, amplitude=0.15)
    t = bj.Parameter("t", prior=bj.priors.Normal(0.0, 1.0))
    sensors = bj.Modality(
        "sensors",
        physics=bj.physics.Linear(np.ones((3, 1)), input="t"),
        data=[0.1, 0.2, 0.15],
        noise=bj.noise.Gaussian(0.05),
        discrepancy=gp.term(coords=coords),
    )
    problem = bj.JointInversion([t], [sensors])
    d = coords[:, None] - coords[None, :]
    kernel = 0.15**2 * np.exp(-0.5 * (d / 50.0) ** 2)  # squared exponential, the default
    precision = 1.0 + np.ones(3) @ np.linalg.solve(0.05**2 * np.eye(3) + kernel, np.ones(3))
    for budget in (linearized_budget(problem, point={"t": 0.0}), problem.information_budget()):
        np.testing.assert_allclose(
            float(budget["information_gain_total"]), 0.5 * np.log(precision), rtol=1e-10
        )
        np.testing.assert_allclose(float(budget["posterior_sd"][0]), precision**-0.5, rtol=1e-10)
    naive = 1.0 + 3.0 / 0.05**2
    assert naive > 3.0 * precision


def test_linearized_system_includes_a_fixed_discrepancy_like_the_exact_one():
    # A discrepancy with fixed hyperparameters adds s² K to the block's noise in both systems,
    # so their budgets agree (round-off); without it the linearized gain would be larger.
    x = bj.Parameter("x", shape=3, prior=bj.priors.Normal(0.0, 1.0))
    coords = np.linspace(0.0, 1.0, 6)
    gp = bj.discrepancy.GP(lengthscale=0.3, amplitude=0.5)
    op = np.repeat(np.eye(3), 2, axis=0)
    mod = bj.Modality(
        "m",
        physics=bj.physics.Linear(op, input="x"),
        data=np.linspace(-0.5, 0.5, 6),
        noise=bj.noise.Gaussian(0.2),
        discrepancy=gp.term(coords=coords),
    )
    problem = bj.JointInversion([x], [mod])
    exact = problem.information_budget()
    lin = linearized_budget(problem, point=np.zeros(3))
    np.testing.assert_allclose(
        float(lin["information_gain_total"]), float(exact["information_gain_total"]), rtol=1e-10
    )
    assert "fixed hyperparameters" in lin.attrs["discrepancy"]
    bare = bj.JointInversion(
        [x], [bj.Modality("m", bj.physics.Linear(op, "x"), mod.data, bj.noise.Gaussian(0.2))]
    )
    assert float(bare.information_budget()["information_gain_total"]) > float(
        exact["information_gain_total"]
    )


def test_old_module_path_warns_and_reexports():
    sys.modules.pop("bayesjoint.linearize", None)
    with pytest.warns(DeprecationWarning, match="moved to bayesjoint.linear"):
        old = importlib.import_module("bayesjoint.linearize")
    assert old.linearized_budget is linearized_budget
    assert old.expected_information_gain is bj.expected_information_gain
