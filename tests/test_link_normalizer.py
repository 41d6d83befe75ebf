"""The normalizer of a petrophysical link with a learned scatter.

A linear link ``r = b − slope·a − intercept`` with a learned scatter σ enters the model as the
factor ``Π N(r_i; 0, σ²)`` on top of the fields' priors; its integral over them,
``Z(σ) = N(0; m_r, C_r + σ² I)``, is divided out (the potential ``<name>_normalizer``) so that
σ's prior is the one given. Checked against dense Gaussian algebra (scipy), the no-data implied
prior of σ (with a negative control without the normalizer), and a brute-force quadrature of
σ's posterior in the normalized model, which both the collapsed route and NUTS must match.
Links that share a field are normalized jointly: the sum of their normalizer terms is checked
against the dense joint ``N(0; m, C + diag(σ_j² I))`` (scipy), with the per-link normalizers as
the negative control, on the full model and the collapsed route's θ model alike.
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


def linked_problem():
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


@pytest.fixture(scope="module")
def linked():
    return linked_problem()


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


# -- links that share a field: one joint normalizer --------------------------------------------
# b ≈ 1.5 a + 0.2 and c ≈ −a + 0.1 on the same a: smooth priors with a much wider a than b, c,
# so the two residuals are strongly correlated through a and the per-link normalizers over the
# fields' own priors miss the joint one by 6.5 nats (peak to peak) over the σ grid below.
SHARED = {"b": (1.5, 0.2), "c": (-1.0, 0.1)}  # target: (slope, intercept)
SIGMAS = [0.01, 0.1, 0.5]


def _shared_fields():
    return [
        bj.Field("a", GRID, prior=bj.priors.GaussianField(1.0, 30.0, mean=1.0)),
        bj.Field("b", GRID, prior=bj.priors.GaussianField(0.1, 20.0, mean=0.5)),
        bj.Field("c", GRID, prior=bj.priors.GaussianField(0.1, 25.0, mean=-0.3)),
    ]


def _shared_link(target: str, scatter=None) -> Petrophysical:
    slope, intercept = SHARED[target]
    return Petrophysical(
        "a",
        target,
        "linear",
        scatter=bj.priors.HalfNormal(SCALE) if scatter is None else scatter,
        parameters={"slope": slope, "intercept": intercept},
    )


def _shared_problem(links) -> bj.JointInversion:
    survey = bj.Modality(
        "survey",
        bj.physics.Linear(np.eye(GRID.size), input="b"),
        np.ones(GRID.size),
        bj.noise.Gaussian(0.1),
    )
    return bj.JointInversion(_shared_fields(), [survey], couplings=links)


def _dense_joint_log_z(problem, scatters: dict[str, float]) -> float:
    """``log N(0; H μ − c, H C Hᵀ + diag(σ²))`` of the links to ``scatters``' keys (scipy)."""
    means, covs = [], []
    for name in ("a", "b", "c"):
        var = problem.latent[name]
        mean, factor = var.prior.gaussian(var.shape, var.grid)
        means.append(mean)
        covs.append(factor @ factor.T)
    mean, cov = np.concatenate(means), sla.block_diag(*covs)
    n = GRID.size
    rows, offsets, variances = [], [], []
    for target, sigma in scatters.items():
        slope, intercept = SHARED[target]
        h = np.zeros((n, 3 * n))
        h[:, :n] = -slope * np.eye(n)
        h[:, n * (1 + "bc".index(target)) : n * (2 + "bc".index(target))] = np.eye(n)
        rows.append(h)
        offsets.append(np.full(n, intercept))
        variances.append(np.full(n, sigma**2))
    h = np.vstack(rows)
    dist = scipy.stats.multivariate_normal(
        h @ mean - np.concatenate(offsets), h @ cov @ h.T + np.diag(np.concatenate(variances))
    )
    return float(dist.logpdf(np.zeros(h.shape[0])))


def _model_log_z(model):
    """``Σ log Z`` terms of ``model``: minus the sum of its ``*_normalizer`` potentials."""
    import pytensor.tensor as pt

    terms = [p for p in model.potentials if p.name.endswith("_normalizer")]
    total = model.replace_rvs_by_values([-pt.sum(pt.stack(terms))])[0]
    fn = model.compile_fn(total, inputs=model.value_vars, on_unused_input="ignore")
    start = model.initial_point()

    def log_z(scatters: dict[str, float]) -> float:
        point = dict(start)
        for target, sigma in scatters.items():
            point[f"petrophysics_{target}_scatter_log__"] = np.log(sigma)
        return float(fn(point))

    return log_z


def _separate_log_z(problem, scatters: dict[str, float]) -> float:
    """Each link's own normalizer over the fields' own priors, summed (the former behaviour)."""
    total = 0.0
    for link in problem.couplings:
        if link.b in scatters:
            spectrum = link.normalizer_spectrum(problem.latent)
            total += float(link.log_normalizer(scatters[link.b], spectrum).eval())
    return total


@pytest.fixture(scope="module")
def shared():
    problem = _shared_problem([_shared_link("b"), _shared_link("c")])
    return problem, _model_log_z(problem.model)


def test_two_learned_links_sharing_a_field_sum_to_the_dense_joint_normalizer(shared):
    problem, log_z = shared
    grid = [{"b": s1, "c": s2} for s1 in SIGMAS for s2 in SIGMAS]
    got = np.array([log_z(s) for s in grid])
    dense = np.array([_dense_joint_log_z(problem, s) for s in grid])
    # same function of (σ_b, σ_c), constant included: round-off only (1e-14 nats measured)
    np.testing.assert_allclose(got, dense, rtol=0, atol=1e-9)
    # negative control: the per-link normalizers miss the joint one (6.5 nats peak to peak)
    separate = np.array([_separate_log_z(problem, s) for s in grid])
    assert np.ptp(separate - dense) > 5.0


@pytest.mark.parametrize("fixed_first", [True, False])
def test_a_fixed_link_on_a_shared_field_conditions_the_learned_normalizer(fixed_first):
    # a fixed c-link (scatter 0.05) and a learned b-link on the same a, in either build order:
    # as a function of σ_b the normalizer terms must be log Z(σ_b, 0.05) (up to a constant)
    links = [_shared_link("c", 0.05), _shared_link("b")]
    problem = _shared_problem(links if fixed_first else links[::-1])
    log_z = _model_log_z(problem.model)
    got = np.array([log_z({"b": s}) for s in SIGMAS])
    dense = np.array([_dense_joint_log_z(problem, {"b": s, "c": 0.05}) for s in SIGMAS])
    assert np.ptp(got - dense) < 1e-9
    # negative control: the b-link's own normalizer, ignoring the fixed link, is off (3.1 nats)
    own = np.array([_separate_log_z(problem, {"b": s}) for s in SIGMAS])
    assert np.ptp(own - dense) > 2.0


@pytest.mark.parametrize("fixed", [False, True])
def test_collapsed_theta_model_has_the_full_models_normalizer_terms(fixed):
    links = [_shared_link("c", 0.05) if fixed else _shared_link("c"), _shared_link("b")]
    problem = _shared_problem(links)
    full = _model_log_z(problem.model)
    collapsed = _model_log_z(CollapsedProblem(problem).model)
    names = ("b",) if fixed else ("b", "c")
    for s in SIGMAS:
        scatters = dict.fromkeys(names, s) | ({} if fixed else {"c": 0.3})
        assert abs(collapsed(scatters) - full(scatters)) < 1e-10


def test_links_beyond_the_joint_limit_are_normalized_separately_with_a_warning(monkeypatch):
    from bayesjoint.coupling import petrophysics

    monkeypatch.setattr(petrophysics, "JOINT_NORMALIZER_LIMIT", GRID.size)  # 12 > 6
    problem = _shared_problem([_shared_link("b"), _shared_link("c")])
    with pytest.warns(UserWarning, match="not jointly.*JOINT_NORMALIZER_LIMIT=6"):
        log_z = _model_log_z(problem.model)
    for s in SIGMAS:
        scatters = {"b": s, "c": 2 * s}
        assert abs(log_z(scatters) - _separate_log_z(problem, scatters)) < 1e-9


def test_joint_normalizer_moments_equal_dense_residual_moments(shared):
    from bayesjoint.coupling.petrophysics import joint_normalizer_moments

    problem, _ = shared
    mean, cov, sizes = joint_normalizer_moments(problem.couplings, problem.latent)
    assert sizes == (GRID.size, GRID.size)
    for s in (0.02, 0.7):
        dist = scipy.stats.multivariate_normal(mean, cov + s**2 * np.eye(2 * GRID.size))
        got = dist.logpdf(np.zeros(2 * GRID.size))
        assert abs(got - _dense_joint_log_z(problem, {"b": s, "c": s})) < 1e-10


def test_joint_log_normalizer_gradient_matches_finite_differences():
    # the Op's gradient ½(α² − diag S⁻¹) (minus the conditioned block's) against pytensor's
    # finite differences (verify_grad, relative tolerance ~1e-4 in float64), joint and
    # conditional; negative control: the gradient with the wrong sign fails the same check
    import pytensor
    import pytensor.tensor as pt

    from bayesjoint.coupling.petrophysics import _JointLogNormalizer

    rng = np.random.default_rng(5)
    a = rng.standard_normal((8, 5))
    cov, mean = a @ a.T, rng.standard_normal(8)
    variances = rng.uniform(0.05, 1.0, 8)
    for given in (0, 3):
        op = _JointLogNormalizer(given)
        pytensor.gradient.verify_grad(lambda v, op=op: op(v, mean, cov)[0], [variances], rng=rng)
    v = pt.dvector("v")
    value = _JointLogNormalizer(3)(v, mean, cov)[0]
    wrong = pytensor.function([v], -pytensor.grad(value, v))(variances)
    f = pytensor.function([v], value)
    step = np.zeros(8)
    step[5] = 1e-6
    numeric = (f(variances + step) - f(variances - step)) / 2e-6
    assert abs(wrong[5] - numeric) > 1e-3 * abs(numeric)
