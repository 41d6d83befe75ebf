"""Sampling routes: the choice, the exact route against the closed form, the preconditioned NUTS.

Tolerances: exact draws are independent, so a posterior mean's Monte Carlo standard error is
``sd / √N`` and a sample sd's relative standard error is ``1 / √(2(N − 1))``; the checks allow 4
of them (per parameter, 120 parameters: a false alarm has probability ≈ 120 · 6e-5 < 1 %). A
sample correlation's standard error is ``(1 − ρ²) / √N``; 5 of them over the 7,140 pairs.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
import scipy.integrate
import scipy.stats

import bayesjoint as bj
from bayesjoint.inference.nuts import laplace_approximation
from bayesjoint.inference.routes import ROUTES, choose_route
from bayesjoint.validate import blur_and_points_problem

SEED = 20261201
DRAWS, CHAINS = 1000, 2


@pytest.fixture(scope="module")
def exact_run(problem):
    return problem.sample(draws=DRAWS, chains=CHAINS, random_seed=SEED, progressbar=False)


def _stacked(problem, idata) -> np.ndarray:
    stacked = problem.stack_latent(idata.posterior).stack(sample=("chain", "draw"))
    return stacked.transpose("sample", "parameter").values


def _moment_misfit(draws: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> dict[str, float]:
    """Largest standardized errors of the draws' means, sds and correlations."""
    n = draws.shape[0]
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    sample_corr = np.corrcoef(draws, rowvar=False)
    upper = np.triu_indices_from(corr, k=1)
    return {
        "mean": float(np.max(np.abs(draws.mean(0) - mean) / (sd / np.sqrt(n)))),
        "sd": float(np.max(np.abs(draws.std(0, ddof=1) / sd - 1) * np.sqrt(2 * (n - 1)))),
        "corr": float(
            np.max(np.abs(sample_corr[upper] - corr[upper]) / ((1 - corr[upper] ** 2) / np.sqrt(n)))
        ),
    }


def test_auto_takes_the_exact_route_for_a_linear_gaussian_problem_and_records_it(exact_run):
    attrs = exact_run.posterior.attrs
    assert attrs["route"] == "exact"
    assert "linear-Gaussian" in attrs["route_reason"]
    assert exact_run.posterior.sizes["chain"] == CHAINS
    assert exact_run.posterior.sizes["draw"] == DRAWS


def test_exact_draws_match_the_closed_form_posterior_within_monte_carlo_error(problem, exact_run):
    exact = problem.exact_posterior()
    misfit = _moment_misfit(_stacked(problem, exact_run), exact["mean"].values, exact["cov"].values)
    assert misfit["mean"] < 4.0, misfit
    assert misfit["sd"] < 4.0, misfit
    assert misfit["corr"] < 5.0, misfit


def test_exact_draws_check_fails_against_a_different_posterior(problem, exact_run):
    # negative control: the posterior without the point data differs, and the check says so
    other = blur_and_points_problem(
        120, include_points=False, random_seed=20261129
    ).exact_posterior()
    misfit = _moment_misfit(_stacked(problem, exact_run), other["mean"].values, other["cov"].values)
    assert misfit["mean"] > 4.0 or misfit["sd"] > 4.0


def test_exact_route_returns_the_layout_of_a_nuts_run(problem, exact_run):
    nuts = problem.sample(
        draws=5, tune=5, chains=1, random_seed=SEED, progressbar=False, method="nuts-plain"
    )
    for group in ("posterior", "log_likelihood", "observed_data"):
        ours, theirs = exact_run[group], nuts[group]
        assert set(ours.data_vars) == set(theirs.data_vars), group
        for name in ours.data_vars:
            assert ours[name].dims == theirs[name].dims, (group, name)
    for name in nuts.observed_data.data_vars:
        np.testing.assert_array_equal(exact_run.observed_data[name], nuts.observed_data[name])
    assert "lp" in exact_run.sample_stats


def test_exact_log_likelihood_and_lp_are_the_model_densities_of_each_draw(problem, exact_run):
    draw = exact_run.posterior.isel(chain=1, draw=7)
    x = draw["x"].values
    noise_sd = {"blurred": 0.05, "points": 0.02}  # as documented by blur_and_points_problem
    for name, mod in problem.modalities.items():
        matrix = mod.physics.matrix
        matrix = matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)
        expected = scipy.stats.norm.logpdf(mod.data, matrix @ x, noise_sd[name])
        got = exact_run.log_likelihood[name].isel(chain=1, draw=7).values
        np.testing.assert_allclose(got, expected, rtol=1e-10)
    logp = problem.model.compile_logp()({"x": x})
    np.testing.assert_allclose(exact_run.sample_stats["lp"].isel(chain=1, draw=7), logp, rtol=1e-10)


@pytest.fixture(scope="module")
def field_problem():
    grid = bj.Grid(x=np.linspace(0.0, 90.0, 10), z=np.array([-30.0, -10.0]))
    field = bj.Field("rho", grid, prior=bj.priors.GaussianField(1.0, 30.0, mean=2.0))
    rng = np.random.default_rng(3)
    g = rng.standard_normal((6, grid.size))
    survey = bj.Modality(
        "survey",
        bj.physics.Linear(g, input="rho"),
        g @ np.full(grid.size, 2.5),
        bj.noise.Gaussian(0.3),
    )
    return bj.JointInversion([field], [survey])


def test_exact_route_fills_deterministic_fields_of_whitened_priors(field_problem):
    idata = field_problem.sample(draws=2000, chains=2, random_seed=SEED, progressbar=False)
    assert idata.posterior.attrs["route"] == "exact"
    assert {"rho", "rho_white"} <= set(idata.posterior.data_vars)
    assert idata.posterior["rho"].dims[2:] == ("x", "z")
    exact = field_problem.exact_posterior()
    misfit = _moment_misfit(
        _stacked(field_problem, idata), exact["mean"].values, exact["cov"].values
    )
    assert misfit["mean"] < 4.0 and misfit["sd"] < 4.0, misfit


def _learned_noise_problem():
    x = bj.Parameter("x", shape=3, prior=bj.priors.Normal(0.0, 1.0))
    mod = bj.Modality(
        "gauge",
        bj.physics.Linear(np.eye(3), input="x"),
        [0.1, 0.2, 0.3],
        bj.noise.Gaussian(bj.priors.HalfNormal(1.0)),
    )
    return bj.JointInversion([x], [mod])


def test_explicit_exact_route_is_refused_with_the_part_that_prevents_it():
    with pytest.raises(ValueError, match=r"method=.exact. does not apply.*.gauge."):
        _learned_noise_problem().sample(method="exact", draws=10, chains=1)


def test_unknown_route_and_nuts_options_on_the_exact_route_are_refused(problem):
    with pytest.raises(ValueError, match="not a route; choose one of"):
        problem.sample(method="hmc", draws=10, chains=1)
    with pytest.raises(ValueError, match=r"takes no pymc.sample options.*init"):
        problem.sample(method="exact", draws=10, chains=1, init="adapt_diag")
    assert set(ROUTES) == {"auto", "exact", "collapsed", "nuts", "nuts-plain", "smc"}


def _growth_problem():
    # x ~ N(0, 1), one datum 1.5 = exp(x) + N(0, 0.3²): nonlinear, no learned hyperparameter
    x = bj.Parameter("x", prior=bj.priors.Normal(0.0, 1.0))
    mod = bj.Modality(
        "growth", lambda m: np.exp(1.0) ** m["x"][None], [1.5], bj.noise.Gaussian(0.3)
    )
    return bj.JointInversion([x], [mod])


def test_auto_takes_preconditioned_nuts_when_no_faster_route_applies():
    route, reason = choose_route(_growth_problem(), "auto", {})
    assert route == "nuts"
    assert "'growth'" in reason  # the part that rules out the exact route
    assert choose_route(_growth_problem(), "auto", {"step": object()})[0] == "nuts-plain"
    # learned noise sd: linear-Gaussian given the sd, so the collapsed route comes first
    assert choose_route(_learned_noise_problem(), "auto", {})[0] == "collapsed"


def test_auto_keeps_preconditioned_nuts_beyond_the_dense_limit_with_a_low_rank_mass(monkeypatch):
    from bayesjoint.inference import routes

    assert "dense Laplace mass" in choose_route(_growth_problem(), "auto", {})[1]
    monkeypatch.setattr(routes, "DENSE_LIMIT", 0)  # one coordinate is now beyond the limit
    route, reason = choose_route(_growth_problem(), "auto", {})
    assert route == "nuts" and "low-rank + diagonal Laplace mass" in reason


def test_laplace_approximation_of_a_linear_gaussian_problem_is_its_exact_posterior(problem):
    # the log posterior is quadratic: the MAP is the mean and central differences of the exact
    # gradient give the Hessian up to rounding
    laplace = laplace_approximation(problem)
    exact = problem.exact_posterior()
    scale = float(np.abs(exact["cov"].values).max())
    np.testing.assert_allclose(
        laplace.mode, exact["mean"].values, atol=1e-6 * float(exact["sd"].min())
    )
    np.testing.assert_allclose(laplace.covariance, exact["cov"].values, atol=1e-6 * scale)
    # its square root (draws x̂ + F ε) factors the exact covariance too
    factor = laplace.factor
    np.testing.assert_allclose(factor @ factor.T, exact["cov"].values, atol=1e-6 * scale)


def test_preconditioned_nuts_matches_quadrature_on_a_nonlinear_problem():
    problem = _growth_problem()
    # the reference posterior by the trapezoid rule on 20,001 points over ±6 prior sd (the
    # density is smooth and negligible beyond: the quadrature error is far below the MCSE)
    grid = np.linspace(-6.0, 6.0, 20001)
    density = scipy.stats.norm.pdf(grid) * scipy.stats.norm.pdf(1.5, np.exp(grid), 0.3)
    mass = scipy.integrate.trapezoid(density, grid)
    mean = scipy.integrate.trapezoid(grid * density, grid) / mass
    sd = np.sqrt(scipy.integrate.trapezoid((grid - mean) ** 2 * density, grid) / mass)
    idata = problem.sample(draws=1000, tune=500, chains=2, random_seed=SEED, progressbar=False)
    assert idata.posterior.attrs["route"] == "nuts"
    assert "Laplace" in idata.posterior.attrs["mass_matrix"]
    draws = idata.posterior["x"].values.ravel()
    mcse = float(az.mcse(idata.posterior)["x"])
    ess = float(az.ess(idata.posterior)["x"])
    assert abs(draws.mean() - mean) < 4 * mcse
    # a sample sd's relative standard error is about 1 / √(2 ESS)
    assert abs(draws.std() / sd - 1) < 4 / np.sqrt(2 * ess)


def test_a_refit_for_the_conflict_check_uses_the_recorded_route(problem, exact_run):
    from bayesjoint.diagnostics.conflict import _recorded_route

    points_only = bj.JointInversion(list(problem.latent.values()), [problem.modalities["points"]])
    assert _recorded_route(points_only, exact_run.posterior.attrs) == {"method": "exact"}
    # the recorded route does not apply once the modality with the learned sd is left out:
    # leaving "gauge" out of a collapsed run leaves a linear-Gaussian problem, auto decides
    learned = _learned_noise_problem()
    fixed = bj.Modality(
        "fixed", bj.physics.Linear(np.eye(3), input="x"), [0.0] * 3, bj.noise.Gaussian(0.5)
    )
    without_gauge = bj.JointInversion(list(learned.latent.values()), [fixed])
    attrs = {"route": "collapsed", "target_accept": 0.9}
    assert _recorded_route(without_gauge, attrs) == {"method": "auto"}
    with_gauge = bj.JointInversion(list(learned.latent.values()), [*learned.modalities.values()])
    assert _recorded_route(with_gauge, attrs) == {"method": "collapsed", "target_accept": 0.9}
    assert _recorded_route(with_gauge, {}) == {}  # nothing recorded: sample()'s own default


def test_nuts_step_options_reach_the_preconditioned_step_and_init_means_plain_nuts():
    problem = _growth_problem()
    idata = problem.sample(
        draws=20, tune=20, chains=1, random_seed=SEED, progressbar=False, max_treedepth=3
    )
    assert idata.posterior.attrs["route"] == "nuts"
    assert int(idata.sample_stats["tree_depth"].max()) <= 3
    route, reason = choose_route(problem, "auto", {"init": "adapt_diag"})
    assert route == "nuts-plain" and "init" in reason
    with pytest.raises(ValueError, match=r"method='nuts' sets its own initialization.*init"):
        problem.sample(method="nuts", draws=10, chains=1, init="adapt_diag")


def test_a_saddle_point_falls_back_to_plain_nuts_and_says_so():
    # x ~ N(0, 1) seen as x² = 4: the optimizer started at 0 stops on the saddle between the two
    # modes, where the Hessian is negative: no Laplace mass matrix there
    x = bj.Parameter("x", prior=bj.priors.Normal(0.0, 1.0))
    mod = bj.Modality("square", lambda m: (m["x"] ** 2)[None], [4.0], bj.noise.Gaussian(0.5))
    problem = bj.JointInversion([x], [mod])
    assert laplace_approximation(problem).floored == 1
    idata = problem.sample(draws=20, tune=20, chains=1, random_seed=SEED, progressbar=False)
    assert idata.posterior.attrs["route"] == "nuts-plain"
    assert "not positive definite" in idata.posterior.attrs["route_reason"]


def test_exact_route_refuses_bad_counts_and_idata_options_by_name(problem):
    # sample() checks the counts before any route (bayesjoint._checks); sample_exact itself too
    with pytest.raises(ValueError, match=r"draws=\.\.\.\) must be at least 1, got 0"):
        problem.sample(method="exact", draws=0, chains=1)
    with pytest.raises((TypeError, ValueError), match=r"chains"):
        problem.sample(method="exact", draws=10, chains=2.0)
    from bayesjoint.inference.exact import sample_exact

    with pytest.raises(ValueError, match="draws must be a positive int"):
        sample_exact(problem, 0, 1)
    with pytest.raises(ValueError, match="chains must be a positive int"):
        sample_exact(problem, 10, 2.0)
    with pytest.raises(ValueError, match=r"idata_kwargs\['coords'\]"):
        problem.sample(method="exact", draws=10, chains=1, idata_kwargs={"coords": {}})


# -- the exact route's speed-ups keep it exact --------------------------------------------------
def test_exact_route_keeps_the_factorization_and_draws_the_same_posterior(problem, monkeypatch):
    import dataclasses

    from bayesjoint import linear

    system = dataclasses.replace(problem.linear_gaussian_system())  # a copy: nothing kept yet
    with monkeypatch.context() as patch:  # the reference: a triangular solve, nothing kept
        patch.setattr(linear, "FACTOR_CACHE_LIMIT", 0)
        solved = system.draws(10, np.random.default_rng(1))
    assert "_kept_factorization" not in system.__dict__
    system.draws(10, np.random.default_rng(1))
    assert "_kept_factorization" in system.__dict__  # kept after the first use

    def refuse():
        raise AssertionError("the kept factorization should be reused")

    monkeypatch.setattr(type(system), "_cholesky", lambda self: refuse())
    kept = system.draws(10, np.random.default_rng(1))
    # the kept inverse factor's draws z = z̄ + C⁻ᵀ ε equal the triangular solve's to rounding
    np.testing.assert_allclose(kept[0], solved[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(kept[1], solved[1], rtol=1e-9, atol=1e-12)


def test_exact_log_likelihood_and_lp_in_numpy_equal_the_compiled_model(problem):
    from bayesjoint.inference.exact import (
        _derived_quantities,
        _quadratic_derived,
        free_variable_values,
    )

    system = problem.linear_gaussian_system()
    z, m = system.draws(50, np.random.default_rng(2))
    free = free_variable_values(problem, z, m)
    fast = _quadratic_derived(problem, system, z, m, free, True)
    assert fast is not None  # independent Gaussian noise: the numpy path applies
    _, lp, loglik = _derived_quantities(problem.model, free, True)
    np.testing.assert_allclose(fast[1], lp, rtol=1e-10)
    for name in loglik:
        np.testing.assert_allclose(fast[2][name], loglik[name], rtol=1e-10, atol=1e-12)


def test_exact_numpy_path_declines_correlated_noise_and_the_compiled_model_answers():
    # negative control: MvNormal noise gives one log-likelihood per block, not a quadratic per
    # datum, so the numpy path must decline (and the route still returns the model's values)
    x = bj.Parameter("x", shape=3, prior=bj.priors.Normal(0.0, 1.0))
    cov = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 1.0]]) * 0.01
    mod = bj.Modality(
        "gauge",
        bj.physics.Linear(np.eye(3), input="x"),
        [0.1, 0.2, 0.3],
        bj.noise.Gaussian(cov=cov),
    )
    problem = bj.JointInversion([x], [mod])
    from bayesjoint.inference.exact import _quadratic_derived, free_variable_values

    system = problem.linear_gaussian_system()
    z, m = system.draws(20, np.random.default_rng(3))
    assert (
        _quadratic_derived(problem, system, z, m, free_variable_values(problem, z, m), True) is None
    )
    idata = problem.sample(draws=20, chains=1, random_seed=SEED, progressbar=False)
    x0 = idata.posterior["x"].isel(chain=0, draw=0).values
    expected = scipy.stats.multivariate_normal(x0, cov).logpdf([0.1, 0.2, 0.3])
    np.testing.assert_allclose(idata.log_likelihood["gauge"].isel(chain=0, draw=0), expected)


# -- nuts_sampler: other NUTS implementations, or a clear refusal -------------------------------
def test_nuts_sampler_is_refused_where_it_cannot_run_naming_why(problem, monkeypatch):
    with pytest.raises(ValueError, match=r"nuts_sampler='stan' is unknown"):
        problem.sample(method="nuts-plain", nuts_sampler="stan", draws=5, chains=1)
    with pytest.raises(ValueError, match=r"does not apply to method='exact'.*no NUTS"):
        problem.sample(method="exact", nuts_sampler="nutpie", draws=5, chains=1)
    with pytest.raises(ValueError, match=r"method='nuts'.*PyMC's own NUTS step"):
        problem.sample(method="nuts", nuts_sampler="nutpie", draws=5, chains=1)
    # auto leaves out the routes another sampler cannot run
    route, reason = choose_route(problem, "auto", {"nuts_sampler": "nutpie"})
    assert route == "nuts-plain" and "nuts_sampler='nutpie'" in reason
    # a package that is not installed is named with its install command (find_spec: as in CI,
    # where jax is absent)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("jax", "numpyro", "nutpie") else real(name, *a),
    )
    with pytest.raises(ValueError, match=r"needs \['numpyro', 'jax'\].*pip install numpyro"):
        problem.sample(method="nuts-plain", nuts_sampler="numpyro", draws=5, chains=1)
    with pytest.raises(ValueError, match=r"needs \['nutpie'\].*pip install nutpie"):
        problem.sample(method="nuts-plain", nuts_sampler="nutpie", draws=5, chains=1)


@pytest.mark.slow
def test_nutpie_draws_match_the_exact_posterior_within_monte_carlo_error():
    # nutpie compiles the model with numba (tens of seconds the first time); a small problem.
    # Tolerance: 4 MCSE of each posterior mean (ArviZ's MCSE of the nutpie draws), 8 values.
    problem = blur_and_points_problem(8, n_points=3, random_seed=SEED)
    idata = problem.sample(
        method="nuts-plain", nuts_sampler="nutpie", draws=500, tune=500, chains=2,
        random_seed=SEED, progressbar=False,
    )  # fmt: skip
    assert idata.posterior.attrs["nuts_sampler"] == "nutpie"
    assert set(idata.log_likelihood.data_vars) == {"blurred", "points"}
    exact = problem.exact_posterior()
    mean = idata.posterior["x"].mean(("chain", "draw")).values
    mcse = az.mcse(idata.posterior[["x"]], method="mean")["x"].values
    z = np.abs(mean - exact["mean"].values) / mcse
    assert z.max() < 4.0, z
    # negative control: the prior mean (0) is many MCSE away from the posterior's
    assert (np.abs(mean) / mcse).max() > 4.0


def test_jax_check_names_missing_rules_and_surfaces_other_errors_before_compiling(
    problem, monkeypatch
):
    # pytensor's JAX dispatch stands in for jax (not installed in CI): a NotImplementedError
    # marks a blocker; any other error is raised, naming the operation, instead of hiding it
    # until numpyro compiles the model.
    import sys
    import types

    from bayesjoint.inference.routes import _jax_blockers

    model = problem.model
    fake = types.ModuleType("pytensor.link.jax.dispatch")
    monkeypatch.setitem(sys.modules, "pytensor.link.jax.dispatch", fake)
    fake.jax_funcify = lambda op, node=None: None  # every operation translates
    assert _jax_blockers(model) == []  # the negative control: nothing is blamed

    def missing_dot(op, node=None):
        if type(op).__name__ == "Dot":
            raise NotImplementedError("no JAX rule")

    fake.jax_funcify = missing_dot
    assert _jax_blockers(model) == ["Dot"]

    def broken(op, node=None):
        raise ZeroDivisionError("a bug in a rule")

    fake.jax_funcify = broken
    with pytest.raises(RuntimeError, match=r"translating the operation .* ZeroDivisionError"):
        _jax_blockers(model)


@pytest.mark.parametrize(
    ("function", "kwargs", "error", "match"),
    [
        ("sample_smc", {"draw": 100}, TypeError, "did you mean 'draws'"),
        ("sample_smc", {"kernal": "MH"}, TypeError, "did you mean 'kernel'"),
        ("sample_smc", {"threshold": 1.5}, ValueError, r"threshold=1.5.*\(0, 1\]"),
        ("sample_smc", {"correlation_threshold": 0}, ValueError, "correlation_threshold"),
        ("sample_smc", {"chains": 0}, ValueError, "chains"),
        ("sample_smc", {"random_seed": 1.7}, TypeError, "random_seed"),
        ("find_modes", {"n_start": 3}, TypeError, "did you mean 'n_starts'"),
        ("find_modes", {"popsize": 0}, ValueError, "popsize"),
        ("find_modes", {"min_barrier": -1.0}, ValueError, "min_barrier"),
        ("find_modes", {"methods": "particle_swarm"}, TypeError, "sequence of names"),
        ("sample_from_modes", {"chains_per_mod": 2}, TypeError, "'chains_per_mode'"),
        ("sample_from_modes", {"weighting": "brige"}, ValueError, "did you mean 'bridge'"),
        ("sample_from_modes", {"min_weight": 1.0}, ValueError, r"\[0, 1\)"),
        ("sample_from_modes", {"target_accept": 1.5}, ValueError, "target_accept"),
        ("sample_from_modes", {"search_kwargs": {"n_start": 3}}, TypeError, "'n_starts'"),
        ("sample_from_modes", {"tune_draws": 3}, TypeError, "unexpected keyword"),
    ],
)
def test_search_and_smc_refuse_unknown_keywords_and_bad_settings_before_compiling(
    problem, monkeypatch, function, kwargs, error, match
):
    import pymc as pm

    import bayesjoint.inference as inference

    def no_compiling(*args, **kw):  # the refusal must come before any model is compiled
        raise AssertionError("compiled before the arguments were checked")

    monkeypatch.setattr(pm.Model, "compile_fn", no_compiling)
    monkeypatch.setattr(pm.Model, "logp_dlogp_function", no_compiling)
    with pytest.raises(error, match=match):
        getattr(inference, function)(problem, **kwargs)


def test_find_map_keywords_and_valid_settings_pass_the_checks():
    # negative control of the refusals above: valid names and settings are let through
    from bayesjoint.inference import arguments

    arguments.check_smc_arguments(
        dict(draws=10, chains=1, cores=None, kernel="MH", threshold=1.0,
             correlation_threshold=0.01, random_seed=np.random.default_rng(1))
    )  # fmt: skip
    arguments.check_find_modes_arguments(
        dict(methods=(), n_starts=0, maxiter=1, popsize=1, n_particles=1, local_maxiter=1,
             min_barrier=0.5, random_seed=None)
    )  # fmt: skip
    arguments.check_sample_from_modes_arguments(
        dict(chains_per_mode=1, draws=1, tune=0, cores=None, weighting="laplace",
             min_weight=0.0, target_accept=0.9, random_seed=3, search_kwargs={"n_starts": 2})
    )  # fmt: skip
    assert {"method", "maxeval", "tol", "options"} <= arguments.find_map_keywords()
    assert {"correlation_threshold", "idata_kwargs", "compute_convergence_checks"} <= (
        arguments.smc_keywords()
    )


def test_find_map_refuses_an_unknown_keyword_with_the_closest_name_before_compiling(
    problem, monkeypatch
):
    import pymc as pm

    def no_compiling(*args, **kw):
        raise AssertionError("compiled before the arguments were checked")

    monkeypatch.setattr(pm.Model, "compile_fn", no_compiling)
    monkeypatch.setattr(pm.Model, "logp_dlogp_function", no_compiling)
    with pytest.raises(TypeError, match=r"find_map\(\) .*'methd'; did you mean 'method'"):
        problem.find_map(methd="L-BFGS-B")
    with pytest.raises(TypeError, match="find_map"):
        problem.find_map(random_seed=1.5)


def test_adapt_mass_is_refused_on_a_route_without_a_laplace_mass_matrix(problem):
    # adapt_mass only means something on the nuts route: elsewhere it would be ignored or fail
    # inside PyMC after the model is built
    with pytest.raises(ValueError, match=r"adapt_mass.*'exact' route.*method='nuts'"):
        choose_route(problem, "auto", {"adapt_mass": True})  # linear-Gaussian: exact
    with pytest.raises(ValueError, match=r"adapt_mass.*'nuts-plain' route"):
        choose_route(_growth_problem(), "nuts-plain", {"adapt_mass": True})
    # negative control: the nuts route takes it
    assert choose_route(_growth_problem(), "auto", {"adapt_mass": True})[0] == "nuts"
