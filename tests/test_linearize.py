"""Gauss–Newton / Laplace information budget and the expected information gain of a candidate."""

from __future__ import annotations

import arviz as az
import numpy as np
import pymc as pm
import pytest
from scipy import integrate, stats

import bayesjoint as bj
from bayesjoint.coupling.base import Coupling
from bayesjoint.linearize import (
    expected_information_gain,
    jacobians,
    linearization_point,
    linearized_budget,
    linearized_system,
    noise_factor,
)
from bayesjoint.validate import blur_and_points_problem

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
    # A field seen only on its left half: a survey of the right half must rank first.
    problem = blur_and_points_problem(20, n_points=4)
    left = np.zeros((5, 20))
    left[np.arange(5), np.arange(5)] = 1.0
    right = np.zeros((5, 20))
    right[np.arange(5), 15 + np.arange(5)] = 1.0
    known = set(
        np.flatnonzero(
            problem.modalities["points"].linear_operator({"x": (20,)})[0].toarray().sum(axis=0)
        )
    )
    assert known  # the sparse points exist
    cands = [
        bj.Modality(
            name,
            physics=bj.physics.Linear(m, input="x"),
            data=np.zeros(5),
            noise=bj.noise.Gaussian(0.02),
        )
        for name, m in [("left", left), ("right", right)]
    ]
    both = np.vstack([left, right])
    cands.append(
        bj.Modality(
            "both",
            physics=bj.physics.Linear(both, input="x"),
            data=np.zeros(10),
            noise=bj.noise.Gaussian(0.02),
        )
    )
    eig = expected_information_gain(problem, cands, point=np.zeros(20))
    assert int(eig["rank"].sel(candidate="both")) == 1  # more data never hurts
    gains = eig["expected_information_gain"]
    # each single survey is bounded by the combined one, and the combined by their sum
    assert (
        float(gains.sel(candidate="both"))
        <= float(gains.sel(candidate="left")) + float(gains.sel(candidate="right")) + 1e-9
    )
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
