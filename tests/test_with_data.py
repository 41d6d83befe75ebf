"""problem.with_data: new data in the model that was built once, on every sampling route.

Each route's results on ``problem.with_data(d)`` are compared with those of a problem built
afresh on the same data ``d``, with the same seed. The exact route draws ``m = μ + L z`` from
the same system, so the draws agree to rounding (``atol=1e-12``); the NUTS routes run the same
graphs with the same seeds, so their draws agree to rounding too (``atol=1e-9``: the compiled
functions may differ in the order of floating-point sums). Negative controls: the draws on the
new data differ from those on the old data by many posterior sds, and the original problem still
gives its own results after a copy has sampled the shared model.

Compilation is observed through pytensor's C module cache: every compiled graph asks it for a
module by key (the graph's structure and constants), and a key it has not seen is compiled. A
refit that asks only for keys that the first fit asked for compiles nothing; a problem whose
operator differs (other constants) asks for new keys, which the same check flags (negative
control). The collapsed refit's log marginal likelihood is compared with the dense Gaussian
density of the new data, ``N(d; 0, A Aᵀ + σ² I)`` (``scipy.stats``, ``rtol=1e-10``: both exact up
to rounding), and its conditional draws at a fixed ``σ`` with the closed-form posterior mean
within 5 Monte Carlo standard errors (independent draws: ``sd / √S``).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
import scipy.stats

import bayesjoint as bj
from bayesjoint.inference.collapsed import CollapsedProblem, collapsed_problem
from bayesjoint.inference.search import LogPosterior
from bayesjoint.validate import CModuleWatch, blur_and_points_problem, blur_matrix

SEED = 20261207


def _rebuilt(problem, data):
    """The same problem built from scratch, with ``data`` replacing the modalities' data."""
    mods = [
        bj.Modality(
            m.name,
            physics=m.physics,
            data=data.get(m.name, m.data),
            noise=m.noise,
            observe=m.observe,
            dims=m.dims,
            coords=m.coords,
            discrepancy=m.discrepancy,
        )
        for m in problem.modalities.values()
    ]
    return bj.JointInversion(
        latent=list(problem.latent.values()), modalities=mods, couplings=problem.couplings
    )


def _new_data(problem, shift, seed=1):
    rng = np.random.default_rng(seed)
    return {
        name: m.data + shift + 0.05 * rng.standard_normal(m.data.shape)
        for name, m in problem.modalities.items()
    }


@pytest.fixture(scope="module")
def linear():
    return blur_and_points_problem(12, n_points=4)


def test_with_data_exact_route_equals_a_freshly_built_problem(linear):
    data = _new_data(linear, 0.3)
    before = linear.sample(method="exact", draws=100, chains=2, random_seed=SEED)
    copy = linear.with_data(data)
    assert copy.model is linear.model  # one model, built once
    got = copy.sample(method="exact", draws=100, chains=2, random_seed=SEED)
    ref = _rebuilt(linear, data).sample(method="exact", draws=100, chains=2, random_seed=SEED)
    np.testing.assert_allclose(got.posterior["x"].values, ref.posterior["x"].values, atol=1e-12)
    for name in linear.modalities:
        np.testing.assert_array_equal(got.observed_data[name].values, data[name])
        np.testing.assert_allclose(
            got.log_likelihood[name].values, ref.log_likelihood[name].values, atol=1e-10
        )
    np.testing.assert_allclose(
        copy.exact_posterior()["mean"].values, _rebuilt(linear, data).exact_posterior()["mean"]
    )
    # negative control: the new data moved the posterior by many posterior sds
    sd = linear.exact_posterior()["sd"].values
    shift = np.abs(
        got.posterior["x"].mean(("chain", "draw")) - before.posterior["x"].mean(("chain", "draw"))
    )
    assert float(np.max(shift.values / sd)) > 3.0
    # the original problem still samples its own data from the shared model
    again = linear.sample(method="exact", draws=100, chains=2, random_seed=SEED)
    np.testing.assert_array_equal(again.posterior["x"].values, before.posterior["x"].values)
    np.testing.assert_array_equal(
        again.observed_data["blurred"].values, linear.modalities["blurred"].data
    )


def _learned_sd_problem(n: int = 8, width: float = 1.5, seed: int = 3) -> bj.JointInversion:
    rng = np.random.default_rng(seed)
    x = bj.Parameter("x", shape=n, prior=bj.priors.Normal(0.0, 1.0))
    a = bj.Modality(
        "a",
        physics=bj.physics.Linear(blur_matrix(n, width), input="x"),
        data=rng.standard_normal(n),
        noise=bj.noise.Gaussian(bj.priors.HalfNormal(0.5)),
    )
    return bj.JointInversion(latent=[x], modalities=[a])


COLLAPSED_KW = dict(
    method="collapsed", draws=60, tune=60, chains=1, cores=1, random_seed=SEED, progressbar=False
)


@pytest.fixture(scope="module")
def collapsed_refit():
    """A collapsed fit, a refit of new data on it, a fresh build on those data (C keys watched)."""
    problem = _learned_sd_problem()
    data = {"a": np.random.default_rng(4).standard_normal(8) * 2.0}
    with CModuleWatch() as watch:
        first = problem.sample(**COLLAPSED_KW)
        first_keys = list(watch.keys)
        copy = problem.with_data(data)
        mark, compiled = len(watch.keys), watch.compiled
        got = copy.sample(**COLLAPSED_KW)
        refit = {"new": watch.new_since(mark, first_keys), "compiled": watch.compiled - compiled}
        mark = len(watch.keys)
        other = _learned_sd_problem(width=1.7)  # negative control: another operator
        other.sample(**COLLAPSED_KW)
        control = watch.new_since(mark, watch.keys[:mark])
    ref = _rebuilt(problem, data).sample(**COLLAPSED_KW)
    return {
        "problem": problem,
        "copy": copy,
        "data": data,
        "first": first,
        "got": got,
        "ref": ref,
        "first_keys": first_keys,
        "refit": refit,
        "control": control,
    }


def test_with_data_collapsed_route_equals_a_freshly_built_problem(collapsed_refit):
    got, ref = collapsed_refit["got"], collapsed_refit["ref"]
    for name in ("x", "a_sigma"):
        np.testing.assert_allclose(
            got.posterior[name].values, ref.posterior[name].values, rtol=1e-10, atol=1e-12
        )
    np.testing.assert_allclose(
        got.log_likelihood["a"].values, ref.log_likelihood["a"].values, rtol=1e-10
    )
    np.testing.assert_array_equal(got.observed_data["a"].values, collapsed_refit["data"]["a"])
    # negative control: the first fit (old data) gave other draws
    first = collapsed_refit["first"]
    assert not np.allclose(first.posterior["a_sigma"].values, got.posterior["a_sigma"].values)


def test_with_data_collapsed_refit_compiles_no_c_module_and_shares_the_compiled_model(
    collapsed_refit,
):
    problem, copy = collapsed_refit["problem"], collapsed_refit["copy"]
    assert collapsed_refit["first_keys"]  # the watch sees the first fit's modules
    assert collapsed_refit["refit"] == {"new": [], "compiled": 0}
    # negative control: another operator's constants make new modules, and the watch sees them
    assert collapsed_refit["control"]
    template, refitted = collapsed_problem(problem), collapsed_problem(copy)
    assert refitted is not template
    assert refitted.model is template.model
    assert refitted._conditional_function is template._conditional_function
    # the original problem still samples its own data from the shared compiled model
    again = problem.sample(**COLLAPSED_KW)
    np.testing.assert_array_equal(
        again.posterior["a_sigma"].values, collapsed_refit["first"].posterior["a_sigma"].values
    )


def test_with_data_collapsed_refit_has_the_marginal_likelihood_and_conditional_of_the_new_data(
    collapsed_refit,
):
    copy, data = collapsed_refit["copy"], collapsed_refit["data"]["a"]
    collapsed = collapsed_problem(copy)
    a = blur_matrix(8, 1.5)
    for sd in (0.1, 0.5, 2.0):  # d ~ N(0, A Aᵀ + σ² I): the prior N(0, I) integrated out
        ref = scipy.stats.multivariate_normal.logpdf(data, np.zeros(8), a @ a.T + sd**2 * np.eye(8))
        got = collapsed.log_marginal_likelihood({"a_sigma": sd})
        assert got == pytest.approx(ref, rel=1e-10)
    # at a fixed σ the conditional draws have the exact posterior N(P⁻¹ Aᵀd/σ², P⁻¹)
    sd, n_draws = 0.4, 4000
    _, m = collapsed.conditional_draws(
        {"a_sigma": np.full(n_draws, sd)}, np.random.default_rng(SEED)
    )
    precision = np.eye(8) + a.T @ a / sd**2
    mean = np.linalg.solve(precision, a.T @ data / sd**2)
    post_sd = np.sqrt(np.diag(np.linalg.inv(precision)))
    z = (m.mean(axis=0) - mean) / (post_sd / np.sqrt(n_draws))
    assert np.max(np.abs(z)) < 5.0
    # negative control: the old data's posterior mean is many standard errors away
    old = np.linalg.solve(precision, a.T @ collapsed_refit["problem"].modalities["a"].data / sd**2)
    assert np.max(np.abs((m.mean(axis=0) - old) / (post_sd / np.sqrt(n_draws)))) > 5.0


def _three_noise_problem(seed: int = 11) -> bj.JointInversion:
    """Two learned noise sds on full blocks, one on 3 rows (data space): the general form."""
    rng = np.random.default_rng(seed)
    n = 6
    x = bj.Parameter("x", shape=n, prior=bj.priors.Normal(0.0, 1.0))
    mods = [
        bj.Modality(
            name,
            physics=bj.physics.Linear(rng.standard_normal((rows, n)), input="x"),
            data=rng.standard_normal(rows),
            noise=bj.noise.Gaussian(bj.priors.HalfNormal(0.5)),
        )
        for name, rows in (("a", 8), ("b", 3), ("c", 9))
    ]
    return bj.JointInversion(latent=[x], modalities=mods)


@pytest.mark.parametrize("form", ["parameter", "data"])
def test_collapsed_for_problem_equals_a_fresh_collapsed_problem_in_both_forms(form):
    problem = _three_noise_problem()
    rng = np.random.default_rng(12)
    data = {name: rng.standard_normal(m.data.shape) for name, m in problem.modalities.items()}
    template = CollapsedProblem(problem, form=form)
    theta = {"a_sigma": 0.3, "b_sigma": 0.2, "c_sigma": 0.7}
    before = template.log_marginal_likelihood(theta, gradient=True)
    copy = template.for_problem(problem.with_data(data))
    fresh = CollapsedProblem(_rebuilt(problem, data), form=form)
    got = copy.log_marginal_likelihood(theta, gradient=True)
    ref = fresh.log_marginal_likelihood(theta, gradient=True)
    assert copy._functions is template._functions  # compiled once, for both
    assert got[0] == pytest.approx(ref[0], rel=1e-10)
    for name in theta:
        assert got[1][name] == pytest.approx(ref[1][name], rel=1e-9)
    draws = {k: np.full(5, v) for k, v in theta.items()}
    z_got, _ = copy.conditional_draws(draws, np.random.default_rng(1))
    z_ref, _ = fresh.conditional_draws(draws, np.random.default_rng(1))
    np.testing.assert_allclose(z_got, z_ref, rtol=1e-9, atol=1e-12)
    # the template still gives its own data's value after the copy has used the shared graphs
    assert template.log_marginal_likelihood(theta, gradient=True)[0] == before[0]
    assert abs(got[0] - before[0]) > 1.0  # negative control: the data changed the value


def test_collapsed_for_problem_refuses_other_data_shapes_and_changed_discrepancy_data():
    template = CollapsedProblem(_learned_sd_problem(n=8))
    with pytest.raises(ValueError, match=r"data of shapes \{'a': \(9,\)\}"):
        template.for_problem(_learned_sd_problem(n=9))
    n = 5
    xs = np.linspace(0.0, 100.0, n)
    x = bj.Parameter("x", shape=n, prior=bj.priors.Normal(0.0, 1.0))
    a = bj.Modality(
        "a",
        physics=bj.physics.Linear(np.eye(n), input="x"),
        data=np.zeros(n),
        noise=bj.noise.Gaussian(bj.priors.HalfNormal(0.5)),
        coords={"a_obs": xs},
        discrepancy=bj.discrepancy.GP(lengthscale=30.0, amplitude=0.2, method="exact"),
    )
    problem = bj.JointInversion(latent=[x], modalities=[a])
    with pytest.raises(ValueError, match="discrepancy block 'a' has new data"):
        CollapsedProblem(problem).for_problem(problem.with_data({"a": np.ones(n)}))


def _cubic_problem() -> bj.JointInversion:
    x = bj.Parameter("x", shape=2, prior=bj.priors.Normal(0.0, 1.0))
    cubic = bj.Modality(
        "cubic",
        physics=lambda m: m["x"] ** 3 + m["x"],
        data=[0.5, -0.2],
        noise=bj.noise.Gaussian(0.3),
    )
    return bj.JointInversion(latent=[x], modalities=[cubic])


@pytest.mark.parametrize("method", ["nuts", "nuts-plain"])
def test_with_data_nuts_routes_equal_a_freshly_built_problem(method):
    problem = _cubic_problem()
    data = {"cubic": np.array([1.5, 0.8])}
    kw = dict(method=method, draws=50, tune=50, chains=1, random_seed=SEED, progressbar=False)
    # the original samples first: what it compiles and keeps per model (the nuts route's
    # density-and-gradient function) then serves the copy
    before = problem.sample(**kw)
    copy = problem.with_data(data)
    assert copy.model is problem.model
    got = copy.sample(**kw)
    ref = _rebuilt(problem, data).sample(**kw)
    np.testing.assert_allclose(got.posterior["x"].values, ref.posterior["x"].values, atol=1e-9)
    np.testing.assert_array_equal(got.observed_data["cubic"].values, data["cubic"])
    # ... and the original, sampled again after its copy, reads its own data again
    again = problem.sample(**kw)
    np.testing.assert_allclose(again.posterior["x"].values, before.posterior["x"].values, atol=1e-9)
    assert not np.allclose(got.posterior["x"].values, before.posterior["x"].values)


def test_with_data_nuts_refit_compiles_no_c_module_and_reuses_the_log_posterior():
    problem = _cubic_problem()
    kw = dict(method="nuts", draws=30, tune=30, chains=1, cores=1, random_seed=SEED)
    with CModuleWatch() as watch:
        problem.sample(progressbar=False, **kw)
        first, compiled = list(watch.keys), watch.compiled
        copy = problem.with_data({"cubic": np.array([1.5, 0.8])})
        copy.sample(progressbar=False, **kw)
        new = watch.new_since(len(first), first)
    assert first
    assert new == [] and watch.compiled == compiled
    # the MAP search's compiled density and gradient are the model's, shared by the copy
    target = LogPosterior(copy)
    assert target._logp is LogPosterior(problem)._logp
    assert target._dlogp is LogPosterior(problem)._dlogp
    # ... and each reads its own problem's data: at x = 0 the density is that of the data
    # under N(0, 0.3²) times the prior N(0, 1) at 0 (x is unbounded: no Jacobian)
    prior = scipy.stats.norm.logpdf([0.0, 0.0], 0.0, 1.0).sum()
    for owner, data in ((copy, [1.5, 0.8]), (problem, [0.5, -0.2]), (copy, [1.5, 0.8])):
        expected = scipy.stats.norm.logpdf(data, 0.0, 0.3).sum() + prior
        assert LogPosterior(owner).logp(np.zeros(2)) == pytest.approx(expected, rel=1e-12)
    # negative control: a variable added to the model empties its cache
    other = _cubic_problem()
    old = LogPosterior(other)._logp
    with other.model:
        pm.Normal("extra", 0.0, 1.0)
    assert LogPosterior(other)._logp is not old
    assert LogPosterior(other).size == 3


def test_with_data_nuts_refit_builds_no_new_nuts_gradient_function(monkeypatch):
    built = []
    original = pm.Model.logp_dlogp_function

    def spy(self, *args, **kwargs):
        built.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pm.Model, "logp_dlogp_function", spy)
    problem = _cubic_problem()
    kw = dict(method="nuts", draws=20, tune=20, chains=1, cores=1, random_seed=SEED)
    problem.sample(progressbar=False, **kw)
    assert len(built) == 1  # the spy sees NUTS's density-and-gradient function being built
    problem.with_data({"cubic": np.array([1.5, 0.8])}).sample(progressbar=False, **kw)
    assert len(built) == 1
    # negative control: an option that changes how it is compiled leaves it to PyMC, anew
    problem.sample(progressbar=False, nuts={"compile_kwargs": {}}, **kw)
    assert len(built) == 2


def test_with_data_rebuilds_a_discrepancy_block_and_matches_a_fresh_problem():
    rng = np.random.default_rng(5)
    n = 6
    xs = np.linspace(0.0, 100.0, n)
    x = bj.Parameter("x", shape=n, prior=bj.priors.Normal(0.0, 1.0))
    gp = bj.discrepancy.GP(lengthscale=30.0, amplitude=0.2)
    a = bj.Modality(
        "a",
        physics=bj.physics.Linear(np.eye(n), input="x"),
        data=rng.standard_normal(n),
        noise=bj.noise.Gaussian(0.1),
        coords={"a_obs": xs},
        discrepancy=gp,
    )
    problem = bj.JointInversion(latent=[x], modalities=[a])
    data = {"a": rng.standard_normal(n) + 1.0}
    copy = problem.with_data(data)
    fresh = _rebuilt(problem, data)
    np.testing.assert_allclose(
        copy.exact_posterior()["mean"].values, fresh.exact_posterior()["mean"].values, atol=1e-12
    )
    assert not np.allclose(
        copy.exact_posterior()["mean"].values, problem.exact_posterior()["mean"].values
    )


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"nope": [1.0]}, "not modalities of this problem"),
        ({"points": np.zeros(3)}, r"shape \(4,\)"),
        ({"points": [np.nan, 0.0, 0.0, 0.0]}, "NaN or inf"),
    ],
)
def test_with_data_refuses_unknown_names_wrong_shapes_and_nan(linear, data, match):
    with pytest.raises(ValueError, match=match):
        linear.with_data(data)


def test_with_data_refuses_a_non_mapping(linear):
    with pytest.raises(TypeError, match="mapping of modality name"):
        linear.with_data([1.0, 2.0])


@pytest.mark.parametrize(
    ("values", "what"),
    [
        (np.ma.masked_array(np.zeros(4), mask=[1, 0, 0, 0]), "masked"),
        (np.zeros(4) + 1j, "complex"),
    ],
)
def test_with_data_refuses_masked_and_complex_data_naming_the_modality(linear, values, what):
    # the constructor refuses these; new data must not slip past the same checks
    with pytest.raises((TypeError, ValueError), match="points") as err:
        linear.with_data({"points": values})
    assert what in str(err.value).lower()


def test_log_posterior_gives_each_with_data_copy_its_own_target_reading_its_own_data():
    from bayesjoint.inference import log_posterior

    problem = _cubic_problem()
    copy = problem.with_data({"cubic": np.array([1.5, 0.8])})
    target, other = log_posterior(problem), log_posterior(copy)
    assert target is log_posterior(problem) and other is not target
    prior = scipy.stats.norm.logpdf([0.0, 0.0], 0.0, 1.0).sum()
    own = scipy.stats.norm.logpdf([0.5, -0.2], 0.0, 0.3).sum() + prior
    theirs = scipy.stats.norm.logpdf([1.5, 0.8], 0.0, 0.3).sum() + prior
    assert own != pytest.approx(theirs)  # negative control: the two data sets tell apart
    # read the copy last, then ask the original's target: it must still see its own data
    assert other.logp(np.zeros(2)) == pytest.approx(theirs, rel=1e-12)
    _ = copy.model
    assert target.logp(np.zeros(2)) == pytest.approx(own, rel=1e-12)
    assert other.logp(np.zeros(2)) == pytest.approx(theirs, rel=1e-12)
