"""Exact linear-Gaussian path against dense brute-force algebra and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import bayesjoint as bj
from bayesjoint.priors import correlation_1d

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
