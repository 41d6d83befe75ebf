"""The normalizer of a petrophysical link with a learned scatter.

A linear link ``r = b − slope·a − intercept`` with a learned scatter σ enters the model as the
factor ``Π N(r_i; 0, σ²)`` on top of the fields' priors; its integral over them,
``Z(σ) = N(0; m_r, C_r + σ² I)``, is divided out (the potential ``<name>_normalizer``) so that
σ's prior is the one given. Checked against dense Gaussian algebra (scipy), the no-data implied
prior of σ (with a negative control without the normalizer), and a brute-force quadrature of
σ's posterior in the normalized model, which both the collapsed route and NUTS must match.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest
import scipy.linalg as sla
import scipy.stats

import bayesjoint as bj
from bayesjoint.coupling import Petrophysical
from bayesjoint.inference.collapsed import CollapsedProblem

SLOPE, INTERCEPT, SCALE = 1.5, 0.2, 0.3
GRID = bj.Grid(x=np.linspace(0.0, 50.0, 3), z=np.array([-10.0, -5.0]))  # 6 cells


def _link(scatter=None) -> Petrophysical:
    return Petrophysical(
        "a",
        "b",
        "linear",
        scatter=bj.priors.HalfNormal(SCALE) if scatter is None else scatter,
        parameters={"slope": SLOPE, "intercept": INTERCEPT},
    )


def _fields():
    fa = bj.Field("a", GRID, prior=bj.priors.GaussianField(0.5, 30.0, mean=1.0))
    fb = bj.Field("b", GRID, prior=bj.priors.GaussianField(1.0, 20.0, mean=0.5))
    return fa, fb


def _prior_moments(problem) -> tuple[np.ndarray, np.ndarray]:
    """Dense mean and covariance of (a, b) under their own priors."""
    means, covs = [], []
    for name in ("a", "b"):
        var = problem.latent[name]
        mean, factor = var.prior.gaussian(var.shape, var.grid)
        means.append(mean)
        covs.append(factor @ factor.T)
    return np.concatenate(means), sla.block_diag(*covs)


def _residual_operator(n: int) -> np.ndarray:
    """``H`` with ``r = H (a, b) − intercept``."""
    return np.hstack([-SLOPE * np.eye(n), np.eye(n)])


@pytest.fixture(scope="module")
def linked():
    """Two 6-cell Gaussian fields, one linear survey of b, a linear link with learned σ."""
    rng = np.random.default_rng(3)
    fa, fb = _fields()
    g = rng.standard_normal((4, GRID.size))
    truth_a = 1.0 + 0.5 * rng.standard_normal(GRID.size)
    truth_b = SLOPE * truth_a + INTERCEPT + 0.2 * rng.standard_normal(GRID.size)
    survey = bj.Modality(
        "survey",
        bj.physics.Linear(g, input="b"),
        g @ truth_b + 0.1 * rng.standard_normal(4),
        bj.noise.Gaussian(0.1),
    )
    problem = bj.JointInversion([fa, fb], [survey], couplings=[_link()])
    return problem, g


def _dense_log_z(problem, sigma: float) -> float:
    mean, cov = _prior_moments(problem)
    h = _residual_operator(GRID.size)
    return scipy.stats.multivariate_normal(
        mean=h @ mean - INTERCEPT, cov=h @ cov @ h.T + sigma**2 * np.eye(GRID.size)
    ).logpdf(np.zeros(GRID.size))


def test_log_normalizer_equals_dense_gaussian_density_of_the_residual_at_zero(linked):
    problem, _ = linked
    link = problem.couplings[0]
    spectrum = link.normalizer_spectrum(problem.latent)
    for sigma in (1e-3, 0.02, 0.3, 2.0):
        got = float(link.log_normalizer(sigma, spectrum).eval())
        np.testing.assert_allclose(got, _dense_log_z(problem, sigma), rtol=1e-10)


def test_model_has_normalizer_potential_only_for_a_learned_scatter(linked):
    problem, _ = linked
    names = {v.name for v in problem.model.potentials}
    assert names == {"petrophysics_b", "petrophysics_b_normalizer"}
    fixed = bj.JointInversion(list(_fields()), list(problem.modalities.values()), [_link(0.2)])
    assert {v.name for v in fixed.model.potentials} == {"petrophysics_b"}


def test_nonlinear_link_with_learned_scatter_warns_of_the_small_scatter_bias():
    fa = bj.Field("a", GRID, prior=bj.priors.LogNormal(np.log(0.2), 0.1))
    fb = bj.Field("b", GRID, prior=bj.priors.LogNormal(0.0, 1.0))
    survey = bj.Modality(
        "survey",
        bj.physics.Linear(np.eye(GRID.size), input="b"),
        np.ones(GRID.size),
        bj.noise.Gaussian(0.1),
    )
    link = Petrophysical(
        "a", "b", "archie", scatter=bj.priors.HalfNormal(0.2), parameters={"rw": 0.05}
    )
    problem = bj.JointInversion([fa, fb], [survey], couplings=[link])
    with pytest.warns(UserWarning, match="biased toward small values"):
        potentials = {v.name for v in problem.model.potentials}
    assert potentials == {"petrophysics_b"}


# -- the prior of σ implied by the model with no data on the linked fields ---------------------
@pytest.fixture(scope="module")
def no_data():
    """Normal priors on a, b; the only data are on an unlinked c (constant in a, b, σ).

    Prior sds from 0.01 to 1 leave the residual little variance in some elements, so the
    unnormalized factor favours small σ (by 4.3 nats over the σ values tried).
    """
    a = bj.Parameter("a", shape=6, prior=bj.priors.Normal(1.0, np.geomspace(0.01, 1.0, 6)))
    b = bj.Parameter("b", shape=6, prior=bj.priors.Normal(1.7, np.geomspace(0.01, 1.0, 6)))
    c = bj.Parameter("c", shape=1, prior=bj.priors.Normal(0.0, 1.0))
    gauge = bj.Modality(
        "gauge", bj.physics.Linear(np.eye(1), input="c"), [0.3], bj.noise.Gaussian(0.5)
    )
    problem = bj.JointInversion([a, b, c], [gauge], couplings=[_link()])
    model = problem.model
    assert {v.name for v in model.value_vars} == {"a", "b", "c", "petrophysics_b_scatter_log__"}
    logp = model.compile_logp(jacobian=False)
    normalizer = model.compile_fn(
        model["petrophysics_b_normalizer"], inputs=model.value_vars, on_unused_input="ignore"
    )
    return problem, logp, normalizer


def _implied_log_prior(problem, logp, normalizer, sigma: float, with_normalizer: bool) -> float:
    """``log ∫ p_model(a, b, σ) da db`` (up to a constant), exact for a quadratic in (a, b).

    The model's log density is quadratic in (a, b) with Hessian ``−(C⁻¹ + HᵀH/σ²)`` (dense
    numpy), so the integral is the value at the maximizer plus ``½ log det(2π Hess⁻¹)``.
    """
    mean, cov = _prior_moments(problem)
    h = _residual_operator(6)
    precision = np.linalg.inv(cov) + h.T @ h / sigma**2
    mode = np.linalg.solve(
        precision, np.linalg.solve(cov, mean) + h.T @ np.full(6, INTERCEPT) / sigma**2
    )
    point = {
        "a": mode[:6],
        "b": mode[6:],
        "c": np.array([0.0]),
        "petrophysics_b_scatter_log__": np.log(sigma),
    }
    value = float(logp(point))
    if not with_normalizer:
        value -= float(normalizer(point))
    return value + 0.5 * (12 * np.log(2 * np.pi) - np.linalg.slogdet(precision)[1])


def test_without_data_the_model_implies_the_given_prior_of_the_scatter(no_data):
    problem, logp, normalizer = no_data
    sigmas = np.array([0.005, 0.05, 0.3, 1.0])
    given = scipy.stats.halfnorm(scale=SCALE).logpdf(sigmas)
    implied = np.array([_implied_log_prior(problem, logp, normalizer, s, True) for s in sigmas])
    # equal up to one constant: the spread of the difference is round-off (1e-8 nats)
    assert np.ptp(implied - given) < 1e-8
    # negative control: without the normalizer the implied prior of σ is not p(σ)
    raw = np.array([_implied_log_prior(problem, logp, normalizer, s, False) for s in sigmas])
    assert np.ptp(raw - given) > 1.0  # 4.3 nats here


def test_collapsed_theta_density_without_data_on_the_link_implies_the_given_prior(no_data):
    problem, _, _ = no_data
    collapsed = CollapsedProblem(problem)
    logp = collapsed.model.compile_logp(jacobian=False)
    sigmas = np.array([0.005, 0.05, 0.3, 1.0])
    got = np.array([float(logp({"petrophysics_b_scatter_log__": np.log(s)})) for s in sigmas])
    given = scipy.stats.halfnorm(scale=SCALE).logpdf(sigmas)
    assert np.ptp(got - given) < 1e-8
    raw = np.array(
        [collapsed.log_marginal_likelihood({"petrophysics_b_scatter": s}) for s in sigmas]
    )
    assert np.ptp(raw) > 1.0  # negative control: the unnormalized evidence drags σ


# -- σ's posterior: collapsed route, NUTS and brute-force quadrature ---------------------------
def _quadrature(problem, g) -> tuple[float, float]:
    """Posterior mean of σ, normalized and unnormalized model, on a fine σ grid.

    Normalized: ``p(σ) N(d; G b̄(σ), G C_b(σ) Gᵀ + R)``.

    ``(b̄, C)(σ)`` are the moments of the NORMALIZED conditional prior of (a, b) given σ (the
    product of the priors and the link factor, renormalized): dense numpy algebra.
    """
    mean, cov = _prior_moments(problem)
    h = _residual_operator(GRID.size)
    data = problem.modalities["survey"].data
    sigmas = np.linspace(1e-4, 6 * SCALE, 6000)
    log_post = np.empty_like(sigmas)
    for i, s in enumerate(sigmas):
        gain = cov @ h.T @ np.linalg.inv(h @ cov @ h.T + s**2 * np.eye(GRID.size))
        m = mean + gain @ (INTERCEPT - h @ mean)
        c = cov - gain @ h @ cov
        gb, cb = g @ m[GRID.size :], g @ c[GRID.size :, GRID.size :] @ g.T
        log_post[i] = scipy.stats.multivariate_normal(gb, cb + 0.01 * np.eye(4)).logpdf(data)
    log_post += scipy.stats.halfnorm(scale=SCALE).logpdf(sigmas)
    # the unnormalized model (negative control) weighs each σ by Z(σ) = N(0; m_r, C_r + σ² I)
    m_r, c_r = h @ mean - INTERCEPT, h @ cov @ h.T
    log_z = np.array(
        [
            scipy.stats.multivariate_normal(m_r, c_r + s**2 * np.eye(GRID.size)).logpdf(0.0 * m_r)
            for s in sigmas
        ]
    )
    means = []
    for lp in (log_post, log_post + log_z):
        w = np.exp(lp - lp.max())
        means.append(float(np.sum(w * sigmas) / w.sum()))
    return means[0], means[1]


@pytest.mark.parametrize("method", ["collapsed", "nuts-plain"])
def test_scatter_posterior_of_each_route_matches_the_normalized_quadrature(linked, method):
    problem, g = linked
    mean, unnormalized = _quadrature(problem, g)  # 0.723 and 0.596
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = problem.sample(
            method=method, draws=500, tune=500, chains=2, random_seed=11, progressbar=False
        )
    draws = idata.posterior["petrophysics_b_scatter"]
    mcse = float(az.mcse(draws).to_array().item())
    # 4 MCSE of the posterior mean: a false alarm has probability ~6e-5 for a sound sampler
    assert abs(float(draws.mean()) - mean) < 4 * mcse, (float(draws.mean()), mean, mcse)
    # negative control: the same draws are far (11-18 MCSE) from the unnormalized model's mean
    assert abs(float(draws.mean()) - unnormalized) > 4 * mcse


def test_log_normalizer_gradient_matches_finite_differences():
    # the Op's analytic gradient −σ Σ [1/v − μ²/v²] against pytensor's finite differences
    # (verify_grad: relative tolerance ~1e-4 for float64); negative control: a gradient with the
    # wrong sign fails the same check
    import pytensor
    import pytensor.tensor as pt

    from bayesjoint.coupling.petrophysics import _LOG_NORMALIZER

    rng = np.random.default_rng(4)
    eigenvalues = rng.uniform(0.01, 3.0, 12)
    squares = rng.uniform(0.0, 2.0, 12) ** 2
    for sigma in (0.05, 0.4, 2.0):
        pytensor.gradient.verify_grad(
            lambda s: _LOG_NORMALIZER(s, eigenvalues, squares), [np.asarray(sigma)], rng=rng
        )
    s = pt.dscalar("s")
    wrong = -pytensor.grad(_LOG_NORMALIZER(s, eigenvalues, squares), s)
    value = pytensor.function([s], _LOG_NORMALIZER(s, eigenvalues, squares))
    h = 1e-6
    numeric = (value(0.4 + h) - value(0.4 - h)) / (2 * h)
    assert abs(pytensor.function([s], wrong)(0.4) - numeric) > 1e-3 * abs(numeric)
