"""The collapsed route: the log marginal likelihood, its gradient, the draws, the route choice.

Tolerances: the log marginal likelihood is compared with a dense multivariate normal density
(``scipy.stats``) of the same data at ``rtol=1e-10``: both are exact up to rounding, and the
matrices here have condition numbers below ~10⁴, so agreement to ~1e-13 is expected. Gradients
are compared with five-point central differences of step ``3e-3 θ`` (truncation error of order
step⁴, rounding error ~1e-12 / step: both below 1e-7 relative here) at ``rtol=1e-6``, and the
analytic gradients of the two forms with each other at ``rtol=1e-8``. Posterior means are
compared with a quadrature reference within 4 Monte Carlo standard errors (ArviZ's MCSE of the
mean, which accounts for autocorrelation); over the 10 quantities checked a false alarm has
probability ≈ 10 · 6e-5 < 0.1 %.
"""

from __future__ import annotations

import logging

import arviz as az
import numpy as np
import pytest
import scipy.linalg as sla
import scipy.stats

import bayesjoint as bj
from bayesjoint.coupling import Petrophysical
from bayesjoint.discrepancy.kernels import kernel_matrix
from bayesjoint.inference.collapsed import CollapsedProblem
from bayesjoint.inference.routes import choose_route
from bayesjoint.priors import correlation_1d
from bayesjoint.validate import blur_matrix, gp_discrepancy_problem

SEED = 20261205


def _dense_logpdf(a: np.ndarray, mean: np.ndarray, prior_cov: np.ndarray, noise_cov, data):
    """log N(d; A μ, Σ + A C₀ Aᵀ), written out densely."""
    cov = noise_cov + a @ prior_cov @ a.T
    return float(scipy.stats.multivariate_normal.logpdf(data, a @ mean, cov))


# -- (a) + (b): learned noise sd, learned noise scale, learned Gaussian-field sd ----------------
GRID = bj.Grid(x=np.linspace(0.0, 80.0, 5), z=np.array([-30.0, -10.0]))
GAUGE_COV = np.array(
    [[0.5, 0.1, 0.0, 0.0], [0.1, 0.4, 0.1, 0.0], [0.0, 0.1, 0.3, 0.05], [0.0, 0.0, 0.05, 0.2]]
)


@pytest.fixture(scope="module")
def mixed():
    """A field with a learned sd, a vector with a fixed prior; learned sd, learned scale, fixed."""
    rng = np.random.default_rng(7)
    rho = bj.Field(
        "rho", GRID, prior=bj.priors.GaussianField(bj.priors.HalfNormal(1.0), 30.0, mean=2.0)
    )
    c = bj.Parameter("c", shape=2, prior=bj.priors.Normal(0.0, [1.0, 2.0]))
    g = rng.standard_normal((6, GRID.size))
    h = rng.standard_normal((4, 2))
    k = rng.standard_normal((3, 2))
    survey = bj.Modality(
        "survey",
        bj.physics.Linear(g, input="rho"),
        g @ np.full(GRID.size, 2.3) + 0.2 * rng.standard_normal(6),
        bj.noise.Gaussian(bj.priors.HalfNormal(0.5)),
    )
    gauge = bj.Modality(
        "gauge",
        bj.physics.Linear(h, input="c"),
        h @ [0.5, -1.0] + rng.multivariate_normal(np.zeros(4), GAUGE_COV),
        bj.noise.Gaussian(cov=GAUGE_COV, scale=bj.priors.LogNormal(0.0, 0.5)),
    )
    fixed = bj.Modality(
        "fixed",
        bj.physics.Linear(k, input="c"),
        k @ [0.5, -1.0] + 0.3 * rng.standard_normal(3),
        bj.noise.Gaussian(0.3),
    )
    problem = bj.JointInversion([rho, c], [survey, gauge, fixed])
    return problem, g, h, k


def _mixed_reference(mixed, theta) -> float:
    problem, g, h, k = mixed
    n_rho = GRID.size
    a = np.zeros((13, n_rho + 2))
    a[:6, :n_rho] = g
    a[6:10, n_rho:] = h
    a[10:, n_rho:] = k
    corr = [
        correlation_1d(GRID.centers[dim], 30.0, "matern52") + 1e-6 * np.eye(GRID.shape[i])
        for i, dim in enumerate(GRID.dims)
    ]
    prior_cov = sla.block_diag(theta["rho_sigma"] ** 2 * np.kron(*corr), np.diag([1.0, 4.0]))
    mean = np.r_[np.full(n_rho, 2.0), 0.0, 0.0]
    noise = sla.block_diag(
        theta["survey_sigma"] ** 2 * np.eye(6),
        theta["gauge_noise_scale"] ** 2 * GAUGE_COV,
        0.09 * np.eye(3),
    )
    data = np.concatenate([m.data for m in problem.modalities.values()])
    return _dense_logpdf(a, mean, prior_cov, noise, data)


THETAS = [
    {"rho_sigma": 0.7, "survey_sigma": 0.2, "gauge_noise_scale": 1.3},
    {"rho_sigma": 2.5, "survey_sigma": 0.05, "gauge_noise_scale": 0.6},
    {"rho_sigma": 0.1, "survey_sigma": 1.5, "gauge_noise_scale": 2.0},
]


@pytest.mark.parametrize("form", ["parameter", "data"])
def test_log_marginal_likelihood_is_the_dense_gaussian_density_of_the_data(mixed, form):
    collapsed = CollapsedProblem(mixed[0], form=form)
    assert set(collapsed.theta) == {"rho_sigma", "survey_sigma", "gauge_noise_scale"}
    assert collapsed.form == form
    for theta in THETAS:
        expected = _mixed_reference(mixed, theta)
        np.testing.assert_allclose(collapsed.log_marginal_likelihood(theta), expected, rtol=1e-10)


@pytest.mark.parametrize("form", ["parameter", "data"])
def test_gradient_of_the_log_marginal_likelihood_matches_finite_differences(mixed, form):
    collapsed = CollapsedProblem(mixed[0], form=form)
    for theta in THETAS[:2]:
        _, grad = collapsed.log_marginal_likelihood(theta, gradient=True)
        for name, value in theta.items():
            h = 3e-3 * value

            def at(k, theta=theta, name=name, value=value, h=h):
                return collapsed.log_marginal_likelihood({**theta, name: value + k * h})

            fd = (-at(2) + 8 * at(1) - 8 * at(-1) + at(-2)) / (12 * h)
            np.testing.assert_allclose(grad[name], fd, rtol=1e-6)


def test_both_forms_give_the_same_gradient(mixed):
    parameter = CollapsedProblem(mixed[0], form="parameter")
    data = CollapsedProblem(mixed[0], form="data")
    for theta in THETAS:
        _, grad_p = parameter.log_marginal_likelihood(theta, gradient=True)
        _, grad_d = data.log_marginal_likelihood(theta, gradient=True)
        for name in theta:
            np.testing.assert_allclose(grad_p[name], grad_d[name], rtol=1e-8)


def test_the_collapsed_model_has_the_full_models_hyperparameters_and_priors(mixed):
    problem = mixed[0]
    collapsed = CollapsedProblem(problem)
    names = {rv.name for rv in collapsed.model.free_RVs}
    assert names == set(collapsed.theta)
    full = {rv.name: rv for rv in problem.model.free_RVs}
    for rv in collapsed.model.free_RVs:  # same family and parameters: same prior
        assert type(rv.owner.op) is type(full[rv.name].owner.op)
    # its log density is the prior of θ plus the log marginal likelihood
    theta = THETAS[0]
    point = {}
    for rv in collapsed.model.free_RVs:
        value_var = collapsed.model.rvs_to_values[rv]
        transform = collapsed.model.rvs_to_transforms[rv]
        point[value_var.name] = transform.forward(theta[rv.name], *rv.owner.inputs).eval()
    log_prior = (
        scipy.stats.halfnorm.logpdf(theta["rho_sigma"], scale=1.0)
        + scipy.stats.halfnorm.logpdf(theta["survey_sigma"], scale=0.5)
        + scipy.stats.lognorm.logpdf(theta["gauge_noise_scale"], 0.5)
    )
    expected = log_prior + _mixed_reference(mixed, theta)
    logp = collapsed.model.compile_logp(jacobian=False)(point)
    np.testing.assert_allclose(logp, expected, rtol=1e-10)


@pytest.mark.parametrize("form", ["parameter", "data"])
def test_conditional_draws_have_the_exact_conditional_posterior(mixed, form):
    # θ fixed: the draws of m must be N(mean, cov) of the linear-Gaussian problem given θ. Means
    # within 4 standard errors (sd / √N) and sds within 4 relative standard errors
    # (1 / √(2(N − 1))) for each of the 12 values: a false alarm has probability < 0.2 %.
    problem, g, h, k = mixed
    collapsed = CollapsedProblem(problem, form=form)
    theta = THETAS[0]
    n_draws = 4000
    _, m = collapsed.conditional_draws(
        {name: np.full(n_draws, value) for name, value in theta.items()},
        np.random.default_rng(SEED),
    )
    n_rho = GRID.size
    a = np.zeros((13, n_rho + 2))
    a[:6, :n_rho], a[6:10, n_rho:], a[10:, n_rho:] = g, h, k
    corr = [
        correlation_1d(GRID.centers[dim], 30.0, "matern52") + 1e-6 * np.eye(GRID.shape[i])
        for i, dim in enumerate(GRID.dims)
    ]
    prior_cov = sla.block_diag(theta["rho_sigma"] ** 2 * np.kron(*corr), np.diag([1.0, 4.0]))
    mean = np.r_[np.full(n_rho, 2.0), 0.0, 0.0]
    noise = sla.block_diag(
        theta["survey_sigma"] ** 2 * np.eye(6),
        theta["gauge_noise_scale"] ** 2 * GAUGE_COV,
        0.09 * np.eye(3),
    )
    data = np.concatenate([mod.data for mod in problem.modalities.values()])
    gain = prior_cov @ a.T @ np.linalg.inv(noise + a @ prior_cov @ a.T)
    post_mean = mean + gain @ (data - a @ mean)
    post_sd = np.sqrt(np.diag(prior_cov - gain @ a @ prior_cov))
    assert np.max(np.abs(m.mean(0) - post_mean) / (post_sd / np.sqrt(n_draws))) < 4.0
    assert np.max(np.abs(m.std(0, ddof=1) / post_sd - 1) * np.sqrt(2 * (n_draws - 1))) < 4.0


def test_parameter_space_form_stays_exact_for_a_vanishing_noise_sd(mixed):
    # A learned sd on fewer data than unknowns can approach zero with the data still fitted; in
    # the n x n precision its 1/sd² would swamp the prior's identity (digits lost, then a failed
    # factorization), so such blocks enter in data space. The data form is the reference.
    parameter = CollapsedProblem(mixed[0], form="parameter")
    data = CollapsedProblem(mixed[0], form="data")
    for sd in (1e-4, 1e-8, 1e-12):
        theta = {**THETAS[0], "survey_sigma": sd}
        np.testing.assert_allclose(
            parameter.log_marginal_likelihood(theta),
            data.log_marginal_likelihood(theta),
            rtol=1e-10,
        )


def _one_scale_problem(case: str):
    """Problems whose parameter-space precision moves with one scalar (the closed-form path)."""
    rng = np.random.default_rng(21)
    grid = bj.Grid(x=np.linspace(0.0, 60.0, 7))
    learned_sd = bj.priors.GaussianField(bj.priors.HalfNormal(1.0), 20.0, mean=0.5)
    prior = learned_sd if case == "field" else bj.priors.GaussianField(1.0, 20.0, mean=0.5)
    rho = bj.Field("rho", grid, prior=prior)
    learned = bj.noise.Gaussian(bj.priors.HalfNormal(0.5))
    big = bj.Modality(  # 9 rows >= 7 unknowns: in parameter space
        "big",
        bj.physics.Linear(rng.standard_normal((9, 7)), input="rho"),
        rng.standard_normal(9),
        bj.noise.Gaussian(0.3) if case == "field" else learned,
    )
    small = bj.Modality(  # 3 rows with a learned sd: in data space
        "small",
        bj.physics.Linear(rng.standard_normal((3, 7)), input="rho"),
        rng.standard_normal(3),
        bj.noise.Gaussian(bj.priors.HalfNormal(0.5)),
    )
    known = bj.Modality(
        "known",
        bj.physics.Linear(rng.standard_normal((8, 7)), input="rho"),
        rng.standard_normal(8),
        bj.noise.Gaussian(0.2),
    )
    # field: P = I + σ² Q_known (σ learned, known noises); noise: P = I + Q_big / f² (one learned
    # noise, nothing known); mixed: P = (I + Q_known) + Q_big / f²
    modalities = {"field": [big, small], "noise": [big, small], "mixed": [big, small, known]}
    return bj.JointInversion([rho], modalities[case])


@pytest.mark.parametrize("case", ["field", "noise", "mixed"])
def test_closed_form_precision_with_one_moving_scale_agrees_with_the_data_form(case):
    problem = _one_scale_problem(case)
    parameter = CollapsedProblem(problem, form="parameter")
    data = CollapsedProblem(problem, form="data")
    assert parameter._form_constants("parameter")["single"] is not None  # the closed form
    rng = np.random.default_rng(5)
    for _ in range(3):
        theta = {name: float(np.exp(rng.uniform(-3.0, 1.0))) for name in parameter.theta}
        value_p, grad_p = parameter.log_marginal_likelihood(theta, gradient=True)
        value_d, grad_d = data.log_marginal_likelihood(theta, gradient=True)
        np.testing.assert_allclose(value_p, value_d, rtol=1e-10)
        for name in theta:
            np.testing.assert_allclose(grad_p[name], grad_d[name], rtol=1e-8)


@pytest.mark.parametrize("case", ["field", "mixed"])
def test_closed_form_conditional_draws_have_the_exact_conditional_posterior(case):
    # the same check as for the general path, on the closed-form path (both with data-space
    # rows); tolerances as there
    problem = _one_scale_problem(case)
    collapsed = CollapsedProblem(problem, form="parameter")
    assert collapsed._form_constants("parameter")["single"] is not None
    theta = {name: 0.4 for name in collapsed.theta}
    n_draws = 4000
    _, m = collapsed.conditional_draws(
        {name: np.full(n_draws, value) for name, value in theta.items()},
        np.random.default_rng(SEED),
    )
    grid = problem.latent["rho"].grid
    sigma = theta.get("rho_sigma", 1.0)
    prior_cov = sigma**2 * (correlation_1d(grid.centers["x"], 20.0, "matern52") + 1e-6 * np.eye(7))
    mods = list(problem.modalities.values())
    a = np.vstack([mod.physics.matrix for mod in mods])
    known = {"big": 0.3, "known": 0.2}  # the fixed sds of _one_scale_problem
    sds = [theta.get(f"{mod.name}_sigma", known.get(mod.name)) for mod in mods]
    noise = np.diag(
        np.concatenate([np.full(mod.n_data, sd**2) for mod, sd in zip(mods, sds, strict=True)])
    )
    data = np.concatenate([mod.data for mod in mods])
    gain = prior_cov @ a.T @ np.linalg.inv(noise + a @ prior_cov @ a.T)
    post_mean = 0.5 + gain @ (data - a @ np.full(7, 0.5))
    post_sd = np.sqrt(np.diag(prior_cov - gain @ a @ prior_cov))
    assert np.max(np.abs(m.mean(0) - post_mean) / (post_sd / np.sqrt(n_draws))) < 4.0
    assert np.max(np.abs(m.std(0, ddof=1) / post_sd - 1) * np.sqrt(2 * (n_draws - 1))) < 4.0


# -- (c) learned GP-discrepancy hyperparameters, (d) learned scatter of a linear link -----------
def test_learned_discrepancy_hyperparameters_are_integrated_exactly():
    # a line x_0 + x_1 t at 10 points t in [-1, 1], a Matérn-5/2 GP on the index 0..9
    rng = np.random.default_rng(11)
    design = np.c_[np.ones(10), np.linspace(-1.0, 1.0, 10)]
    problem = gp_discrepancy_problem(design @ [0.3, 0.8] + 0.1 * rng.standard_normal(10))
    profile = problem.modalities["profile"]
    np.testing.assert_array_equal(profile.physics.matrix, design)
    assert choose_route(problem, "auto", {})[0] == "collapsed"
    for form in ("parameter", "data"):
        collapsed = CollapsedProblem(problem, form=form)
        for ls, amp, sd in [(2.0, 0.3, 0.1), (5.0, 0.05, 0.4)]:
            theta = {
                "profile_discrepancy_lengthscale": ls,
                "profile_discrepancy_amplitude": amp,
                "profile_sigma": sd,
            }
            noise = sd**2 * np.eye(10) + kernel_matrix(
                np.arange(10.0)[:, None], np.arange(10.0)[:, None], "matern52", ls, amp
            )
            expected = _dense_logpdf(design, np.zeros(2), np.eye(2), noise, profile.data)
            np.testing.assert_allclose(
                collapsed.log_marginal_likelihood(theta), expected, rtol=1e-10
            )


def test_a_shared_discrepancy_with_a_learned_scale_and_noise_is_integrated_exactly():
    # two modalities share one GP (fixed lengthscale, learned amplitude); the second sees it
    # through a learned scale and has a known sd, the first a learned sd
    rng = np.random.default_rng(13)
    x = bj.Parameter("x", shape=2, prior=bj.priors.Normal(0.0, 1.0))
    gp = bj.discrepancy.GP(
        "squared_exponential",
        lengthscale=2.0,
        amplitude=bj.priors.HalfNormal(0.5),
        method="exact",
        name="shared",
    )
    where_a, where_b = np.arange(6.0), np.arange(0.5, 5.0, 1.0)
    ga, gb = rng.standard_normal((6, 2)), rng.standard_normal((5, 2))
    first = bj.Modality(
        "first",
        bj.physics.Linear(ga, input="x"),
        rng.standard_normal(6),
        bj.noise.Gaussian(bj.priors.HalfNormal(0.3)),
        discrepancy=gp.term(coords=where_a),
    )
    second = bj.Modality(
        "second",
        bj.physics.Linear(gb, input="x"),
        rng.standard_normal(5),
        bj.noise.Gaussian(0.2),
        discrepancy=gp.term(coords=where_b, scale=bj.priors.LogNormal(0.0, 0.3)),
    )
    problem = bj.JointInversion([x], [first, second])
    where = np.r_[where_a, where_b][:, None]
    data = np.r_[first.data, second.data]
    for form in ("parameter", "data"):
        collapsed = CollapsedProblem(problem, form=form)
        assert set(collapsed.theta) == {
            "shared_amplitude",
            "first_sigma",
            "second_discrepancy_scale",
        }
        for amp, sd, scale in [(0.3, 0.1, 1.2), (0.05, 0.6, 0.4)]:
            s = np.r_[np.ones(6), np.full(5, scale)]
            kernel = kernel_matrix(where, where, "squared_exponential", 2.0, amp)
            noise = np.diag(np.r_[np.full(6, sd**2), np.full(5, 0.04)]) + kernel * np.outer(s, s)
            expected = _dense_logpdf(np.vstack([ga, gb]), np.zeros(2), np.eye(2), noise, data)
            theta = {"shared_amplitude": amp, "first_sigma": sd, "second_discrepancy_scale": scale}
            np.testing.assert_allclose(
                collapsed.log_marginal_likelihood(theta), expected, rtol=1e-10
            )


def test_learned_scatter_of_a_linear_petrophysical_link_is_integrated_exactly():
    rng = np.random.default_rng(12)
    a = bj.Parameter("a", shape=4, prior=bj.priors.Normal(0.0, 1.0))
    b = bj.Parameter("b", shape=4, prior=bj.priors.Normal(1.0, 2.0))
    ma = bj.Modality(
        "ma",
        bj.physics.Linear(np.eye(4), input="a"),
        rng.standard_normal(4),
        bj.noise.Gaussian(0.1),
    )
    mb = bj.Modality(
        "mb",
        bj.physics.Linear(np.eye(4), input="b"),
        rng.standard_normal(4),
        bj.noise.Gaussian(bj.priors.HalfNormal(1.0)),
    )
    link = Petrophysical(
        "a",
        "b",
        "linear",
        scatter=bj.priors.HalfNormal(0.5),
        parameters={"slope": 1.5, "intercept": 0.2},
    )
    problem = bj.JointInversion([a, b], [ma, mb], couplings=[link])
    collapsed = CollapsedProblem(problem)
    assert set(collapsed.theta) == {"mb_sigma", f"{link.name}_scatter"}
    # the link is a Gaussian pseudo-observation 0.2 = b − 1.5 a + N(0, s²)
    eye, zero = np.eye(4), np.zeros((4, 4))
    stacked = np.block([[eye, zero], [zero, eye], [-1.5 * eye, eye]])
    data = np.r_[ma.data, mb.data, np.full(4, 0.2)]
    prior_cov = sla.block_diag(eye, 4.0 * eye)
    for sd, scatter in [(0.3, 0.2), (1.2, 0.05)]:
        noise = sla.block_diag(0.01 * eye, sd**2 * eye, scatter**2 * eye)
        expected = _dense_logpdf(stacked, np.r_[np.zeros(4), np.ones(4)], prior_cov, noise, data)
        theta = {"mb_sigma": sd, f"{link.name}_scatter": scatter}
        for form in ("parameter", "data"):
            got = CollapsedProblem(problem, form=form).log_marginal_likelihood(theta)
            np.testing.assert_allclose(got, expected, rtol=1e-10)


# -- the route: choice, refusals -----------------------------------------------------------------
def test_explicit_collapsed_route_is_refused_with_the_part_that_prevents_it():
    x = bj.Parameter("x", shape=3, prior=bj.priors.Normal(0.0, 1.0))
    heavy = bj.Modality(
        "heavy",
        bj.physics.Linear(np.eye(3), input="x"),
        [0.1, 0.2, 0.3],
        bj.noise.StudentT(bj.priors.HalfNormal(1.0)),
    )
    with pytest.raises(ValueError, match=r"method=.collapsed. does not apply.*'heavy'.*Gaussian"):
        bj.JointInversion([x], [heavy]).sample(method="collapsed", draws=10, chains=1)
    known = bj.Modality(
        "known", bj.physics.Linear(np.eye(3), input="x"), [0.1, 0.2, 0.3], bj.noise.Gaussian(0.1)
    )
    with pytest.raises(ValueError, match=r"learns no hyperparameters.*'exact'"):
        choose_route(bj.JointInversion([x], [known]), "collapsed", {})
    curved = bj.Modality(
        "curved",
        lambda m: m["x"] ** 2,
        [0.1, 0.2, 0.3],
        bj.noise.Gaussian(bj.priors.HalfNormal(1.0)),
    )
    problem = bj.JointInversion([x], [curved])
    with pytest.raises(ValueError, match=r"'curved'.*not linear"):
        choose_route(problem, "collapsed", {})
    assert choose_route(problem, "auto", {})[0] == "nuts"


# -- (a) end to end: two learned noise sds against quadrature ----------------------------------
N_X = 8
POINTS = np.array([1, 4, 6])
PRIOR_SD = 0.5
SD_PRIOR = 0.2  # HalfNormal scale of both noise sds


@pytest.fixture(scope="module")
def two_sds():
    """``x ~ N(0, 0.5²)`` (8 values), a blur (8 data) and 3 points, both noise sds learned."""
    rng = np.random.default_rng(1)
    blur = blur_matrix(N_X, 1.5)
    pick = np.zeros((POINTS.size, N_X))
    pick[np.arange(POINTS.size), POINTS] = 1.0
    truth = PRIOR_SD * rng.standard_normal(N_X)
    x = bj.Parameter("x", shape=N_X, prior=bj.priors.Normal(0.0, PRIOR_SD))
    blurred = bj.Modality(
        "blurred",
        bj.physics.Linear(blur, input="x"),
        blur @ truth + 0.1 * rng.standard_normal(N_X),
        bj.noise.Gaussian(bj.priors.HalfNormal(SD_PRIOR)),
    )
    points = bj.Modality(
        "points",
        bj.physics.Linear(pick, input="x"),
        pick @ truth + 0.05 * rng.standard_normal(POINTS.size),
        bj.noise.Gaussian(bj.priors.HalfNormal(SD_PRIOR)),
    )
    return bj.JointInversion([x], [blurred, points]), (blur, pick)


def quadrature_reference(problem, operators, prior_sd: float, step: float) -> dict[str, np.ndarray]:
    """Posterior means of the two noise sds and of x by quadrature over the sds.

    The grid is uniform in ``u = log s`` with step ``step``, ``u₁ ∈ [−8, 1]`` (blurred) and
    ``u₂ ∈ [−20, 1]`` (points), with the Jacobian ``s`` in the weights. Given the sds the
    problem is linear-Gaussian: the density of the data and the mean of x are closed-form. The
    posterior density in ``u`` is smooth on the scale of its sd (≥ 0.2 here), so the trapezoid
    rule with a step of 0.025 is exact far below the Monte Carlo error (checked by doubling the
    step); the window holds all but a negligible tail (checked on its edges: the points' sd,
    which 3 data fit exactly as it goes to 0, has density ∝ s, i.e. ``e^u``, below its mode, so
    beyond ``u₂ = −20`` lies about e⁻¹⁷ of the mass).

    Returns the means and ``edge``: the largest weight on the window's edges, relative to the
    largest weight, per axis end.
    """
    blur, pick = operators
    a = np.vstack([blur, pick])
    data = np.concatenate([m.data for m in problem.modalities.values()])
    grid1 = np.arange(-8.0, 1.0 + step / 2, step)
    grid2 = np.arange(-20.0, 1.0 + step / 2, step)
    u1, u2 = (g.ravel() for g in np.meshgrid(grid1, grid2, indexing="ij"))
    prior_cov = prior_sd**2 * np.eye(N_X)
    base = a @ prior_cov @ a.T
    n_blur = blur.shape[0]
    log_post, sol = [], []
    for chunk in np.array_split(np.arange(u1.size), max(1, u1.size // 20000)):
        s1, s2 = np.exp(u1[chunk]), np.exp(u2[chunk])
        noise = np.concatenate(
            [np.repeat(s1[:, None] ** 2, n_blur, 1), np.repeat(s2[:, None] ** 2, pick.shape[0], 1)],
            axis=1,
        )
        cov = base[None] + noise[:, :, None] * np.eye(data.size)[None]
        chol = np.linalg.cholesky(cov)
        alpha = np.linalg.solve(cov, np.broadcast_to(data, (chunk.size, data.size))[..., None])
        alpha = alpha[..., 0]
        logdet = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
        loglik = -0.5 * (logdet + alpha @ data + data.size * np.log(2 * np.pi))
        log_prior = scipy.stats.halfnorm.logpdf(s1, scale=SD_PRIOR) + scipy.stats.halfnorm.logpdf(
            s2, scale=SD_PRIOR
        )
        log_post.append(loglik + log_prior + u1[chunk] + u2[chunk])
        sol.append(alpha @ (a @ prior_cov))  # E[x | d, s] = C₀ Aᵀ K⁻¹ d
    log_post = np.concatenate(log_post)
    weights = np.exp(log_post - log_post.max())
    table = weights.reshape(grid1.size, grid2.size)
    edge = {
        "u1_low": table[0].max(),
        "u1_high": table[-1].max(),
        "u2_low": table[:, 0].max(),
        "u2_high": table[:, -1].max(),
    }
    weights /= weights.sum()
    return {
        "blurred_sigma": np.array(weights @ np.exp(u1)),
        "points_sigma": np.array(weights @ np.exp(u2)),
        "x": weights @ np.concatenate(sol),
        "edge": edge,
    }


@pytest.fixture(scope="module")
def two_sds_run(two_sds):
    problem, _ = two_sds
    logging.getLogger("pymc").setLevel(logging.ERROR)
    return problem.sample(
        draws=1000, tune=1000, chains=2, cores=1, random_seed=SEED, progressbar=False
    )


def _z_scores(idata, reference) -> dict[str, np.ndarray]:
    mcse = az.mcse(idata.posterior, method="mean")
    return {
        name: np.abs(idata.posterior[name].mean(("chain", "draw")).values - value)
        / mcse[name].values
        for name, value in reference.items()
    }


def _assert_matches_quadrature(idata, problem, operators) -> None:
    """Posterior means within 4 MCSE of the quadrature reference (a normal z at 4 is a
    false alarm with probability ~6e-5 per quantity); negative control: the reference with a
    wrong prior sd (0.25) is more than 4 MCSE away."""
    reference = quadrature_reference(problem, operators, PRIOR_SD, 0.05)
    reference.pop("edge")
    z = _z_scores(idata, reference)
    assert max(float(v.max()) for v in z.values()) < 4.0, z
    other = quadrature_reference(problem, operators, 0.25, 0.05)
    other.pop("edge")
    assert max(float(v.max()) for v in _z_scores(idata, other).values()) > 4.0


def test_auto_takes_the_collapsed_route_for_learned_noise_sds_and_records_it(two_sds_run):
    attrs = two_sds_run.posterior.attrs
    assert attrs["route"] == "collapsed"
    assert "given its learned hyperparameters" in attrs["route_reason"]
    assert attrs["collapsed_hyperparameters"] == '["blurred_sigma", "points_sigma"]'
    assert int(two_sds_run.sample_stats["diverging"].sum()) == 0


def test_collapsed_draws_match_quadrature_over_the_two_noise_sds(two_sds, two_sds_run):
    problem, operators = two_sds
    reference = quadrature_reference(problem, operators, PRIOR_SD, 0.025)
    edge = reference.pop("edge")
    assert edge["u2_low"] < 1e-7 and max(edge.values()) < 1e-7, edge  # the window is wide enough
    coarse = quadrature_reference(problem, operators, PRIOR_SD, 0.05)
    coarse.pop("edge")
    for name, value in reference.items():  # the grid is fine enough: doubling the step agrees
        np.testing.assert_allclose(coarse[name], value, rtol=1e-8)
    z = _z_scores(two_sds_run, reference)
    assert max(float(v.max()) for v in z.values()) < 4.0, z
    # negative control: the reference for a prior sd of 0.25 instead of 0.5 is rejected
    other = quadrature_reference(problem, operators, 0.25, 0.05)
    other.pop("edge")
    z_other = _z_scores(two_sds_run, other)
    assert max(float(v.max()) for v in z_other.values()) > 4.0, z_other


def test_collapsed_route_returns_the_layout_of_nuts_on_the_full_model(two_sds, two_sds_run):
    problem, _ = two_sds
    nuts = problem.sample(
        draws=5,
        tune=5,
        chains=1,
        cores=1,
        random_seed=SEED,
        progressbar=False,
        method="nuts-plain",
    )
    for group in ("posterior", "log_likelihood", "observed_data"):
        ours, theirs = two_sds_run[group], nuts[group]
        assert set(ours.data_vars) == set(theirs.data_vars), group
        for name in ours.data_vars:
            assert ours[name].dims == theirs[name].dims, (group, name)
    assert set(nuts.sample_stats.data_vars) <= set(two_sds_run.sample_stats.data_vars)
    # lp and the pointwise log-likelihoods are the full model's densities of each draw
    draw = two_sds_run.posterior.isel(chain=1, draw=7)
    point = {
        "x": draw["x"].values,
        "blurred_sigma_log__": np.log(float(draw["blurred_sigma"])),
        "points_sigma_log__": np.log(float(draw["points_sigma"])),
    }
    np.testing.assert_allclose(
        two_sds_run.sample_stats["lp"].isel(chain=1, draw=7),
        problem.model.compile_logp()(point),
        rtol=1e-10,
    )
    blur = problem.modalities["blurred"]
    expected = scipy.stats.norm.logpdf(
        blur.data, blur.physics.matrix @ draw["x"].values, float(draw["blurred_sigma"])
    )
    got = two_sds_run.log_likelihood["blurred"].isel(chain=1, draw=7).values
    np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.parametrize("case", ["field", "noise", "mixed"])
def test_closed_form_conditional_pieces_in_numpy_equal_the_compiled_graph(case):
    # the numpy path of the conditional draws against the compiled pytensor graph, at 6 θ draws
    collapsed = CollapsedProblem(_one_scale_problem(case), form="parameter")
    rng = np.random.default_rng(4)
    values = [np.exp(rng.normal(-1.0, 0.7, 6)) for _ in collapsed.theta]
    fast = collapsed._closed_form_outputs(values, 6)
    assert fast is not None
    compiled = [
        collapsed._conditional_function(*[v[i] for v in values]) for i in range(6)
    ]  # per draw, no vectorization
    for k, got in enumerate(fast):
        want = np.stack([np.asarray(c[k]) for c in compiled])
        if k == 4:  # the noise: numpy gives its variances, the graph the diagonal matrix
            off = want - np.stack([np.diag(np.diagonal(w)) for w in want])
            assert np.all(off == 0.0)
            want = np.diagonal(want, axis1=1, axis2=2)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)


@pytest.mark.slow
def test_collapsed_route_through_nutpie_matches_quadrature(two_sds):
    # nuts_sampler="nutpie" on the collapsed route (numba compiles the θ model: tens of seconds)
    problem, operators = two_sds
    idata = problem.sample(
        draws=1000, tune=1000, chains=2, random_seed=SEED, progressbar=False,
        nuts_sampler="nutpie",
    )  # fmt: skip
    assert idata.posterior.attrs["route"] == "collapsed"
    assert idata.posterior.attrs["nuts_sampler"] == "nutpie"
    _assert_matches_quadrature(idata, problem, operators)


def test_auto_form_counts_the_closed_form_cost_and_agrees_with_the_data_form():
    # 30 unknowns, 20 known-noise rows and 4 rows with a learned sd: the data form factorizes
    # 24 × 24 per evaluation, the parameter form's closed form (one moving scale) costs
    # O(n · N_S²); auto must take the latter, and both give the same log marginal likelihood.
    rng = np.random.default_rng(5)
    x = bj.Parameter("x", shape=30, prior=bj.priors.Normal(0.0, 1.0))
    known = bj.Modality(
        "known",
        bj.physics.Linear(rng.standard_normal((20, 30)), input="x"),
        rng.standard_normal(20),
        bj.noise.Gaussian(0.5),
    )
    learned = bj.Modality(
        "learned",
        bj.physics.Linear(rng.standard_normal((4, 30)), input="x"),
        rng.standard_normal(4),
        bj.noise.Gaussian(bj.priors.HalfNormal(1.0)),
    )
    collapsed = CollapsedProblem(bj.JointInversion([x], [known, learned]))
    assert collapsed.form == "parameter"
    assert collapsed._one_scale()
    assert collapsed._cost("parameter") < collapsed._cost("data")
    for sd in (0.05, 0.7):
        np.testing.assert_allclose(
            collapsed.log_marginal_likelihood({"learned_sigma": sd}),
            collapsed.log_marginal_likelihood({"learned_sigma": sd}, form="data"),
            rtol=1e-10,
        )


# -- chunked conditional draws, checkpoints and resumes of the collapsed route -------------------
@pytest.mark.parametrize("case", ["mixed-form", "closed-form"])
def test_chunked_conditional_draws_equal_the_unchunked_ones_for_a_fixed_seed(
    case, mixed, monkeypatch
):
    # One random stream per draw: cutting 9 draws into chunks of 1 (a tiny memory bound)
    # changes no random number, so the draws agree up to the rounding of batched linear
    # algebra (rtol 1e-12; the matrices here have condition numbers below ~1e4).
    import bayesjoint.inference.collapsed as module

    problem = mixed[0] if case == "mixed-form" else _one_scale_problem("mixed")
    collapsed = CollapsedProblem(problem, form="data" if case == "mixed-form" else "parameter")
    rng = np.random.default_rng(5)
    theta = {name: np.exp(rng.normal(-1.0, 0.3, 9)) for name in collapsed.theta}
    chains, indices = np.repeat([0, 1, 2], 3), np.tile([0, 1, 2], 3)
    streams = module.draw_streams(SEED, chains, indices)
    z_whole, m_whole = collapsed.conditional_draws(theta, streams)
    assert collapsed.chunk_draws() >= 9
    monkeypatch.setattr(module, "CONDITIONAL_CHUNK_BYTES", 1)
    assert collapsed.chunk_draws() == 1
    z_chunk, m_chunk = collapsed.conditional_draws(
        theta, module.draw_streams(SEED, chains, indices)
    )
    np.testing.assert_allclose(z_chunk, z_whole, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m_chunk, m_whole, rtol=1e-12, atol=1e-14)
    # negative control: other seeds give other draws
    z_other, _ = collapsed.conditional_draws(theta, module.draw_streams(SEED + 1, chains, indices))
    assert np.max(np.abs(z_other - z_whole)) > 0.1


def test_collapsed_interrupt_keeps_draws_and_resume_matches_quadrature(two_sds, tmp_path):
    # SIGINT after 300 kept draws of chain 0 (cores=1): the file holds them in the final
    # layout (θ and fields), marked interrupted; resume continues chain 0 from its last draw
    # with the stored step size and a mass matrix from the kept draws (50 tuning draws instead
    # of 200), starts chain 1 afresh, keeps the 300 draws bit for bit, and the result matches
    # the quadrature reference within 4 MCSE (tolerance as test_collapsed_draws_match_...).
    import json
    import os
    import signal

    from bayesjoint.inference.checkpoint import RESUME_STEP_TUNE, kept_draws

    problem, operators = two_sds
    path = tmp_path / "collapsed.nc"

    def stop_after(trace, draw):
        stop_after.kept += not draw.tuning
        if stop_after.kept == 300:
            os.kill(os.getpid(), signal.SIGINT)

    stop_after.kept = 0
    settings = dict(draws=1000, tune=1000, chains=2, cores=1, random_seed=SEED, progressbar=False)
    with pytest.raises(bj.SamplingInterrupted) as stop:
        problem.sample(method="collapsed", checkpoint=path, callback=stop_after, **settings)
    assert stop.value.draws_per_chain == [300, 0]
    stored = bj.load(path)
    assert kept_draws(stored)["interrupted"] == "SIGINT"
    assert set(stored.groups()) >= {"posterior", "sample_stats", "log_likelihood", "observed_data"}
    assert np.all(np.isfinite(stored.posterior["x"].values[0, :300]))
    assert np.all(np.isnan(stored.posterior["x"].values[1]))
    idata = problem.sample(checkpoint=path, resume=True, **settings)
    assert kept_draws(idata)["draws_per_chain"] == [1000, 1000]
    for name in ("x", "blurred_sigma", "points_sigma"):
        np.testing.assert_array_equal(
            idata.posterior[name].values[0, :300], stored.posterior[name].values[0, :300]
        )
    resumed = json.loads(idata.posterior.attrs["resumed_from"])
    assert resumed["tuning_draws_discarded"] == RESUME_STEP_TUNE + 1000, resumed
    assert "stored" in resumed["method"]
    _assert_matches_quadrature(idata, problem, operators)
