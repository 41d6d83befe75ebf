"""The exact route's numpy paths: draws, ``lp`` and pointwise log-likelihoods, by brute force.

``sample(method="exact")`` draws with the kept inverse factor (a diagonal prior scales it, so a
draw is one triangular product) and computes ``lp`` from ``‖ε‖²`` and the log-likelihoods from
one product with the stacked operators (sparse point samples by gathering columns). Every array
is compared with an independent computation:

- the draws with :meth:`LinearGaussianSystem.draws` on the same seed (the same standard normal
  numbers; rounding only, tolerance 1e-12 relative to the posterior scale);
- each pointwise log-likelihood with ``scipy.stats.norm.logpdf`` of the datum given the forward
  model of the draw (dense products in numpy; rounding only: atol 1e-9 nats);
- ``lp`` with the compiled PyMC model evaluated at every draw (rtol 1e-10).

Negative controls: a wrong noise sd in the brute force is detected; a corrupted kept constant is
caught by the check against the compiled model, which then answers for every draw.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.stats

import bayesjoint as bj
from bayesjoint.inference import exact
from bayesjoint.validate import blur_and_points_problem

SEED = 20261202
DRAWS, CHAINS = 60, 2


def _dense(matrix):
    return matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix, dtype=float)


def _brute_force_log_likelihood(problem, x: np.ndarray, sds: dict[str, float]):
    """``norm.logpdf(d, A x, sd)`` per datum for draws ``x`` (shape (n_draws, n))."""
    out = {}
    for name, mod in problem.modalities.items():
        predicted = x @ _dense(mod.physics.matrix).T
        out[name] = scipy.stats.norm.logpdf(np.asarray(mod.data), predicted, sds[name])
    return out


@pytest.fixture(scope="module")
def blur():
    return blur_and_points_problem(40, n_points=8, random_seed=3)


@pytest.fixture(scope="module")
def blur_run(blur):
    return blur.sample(draws=DRAWS, chains=CHAINS, random_seed=SEED, progressbar=False)


def _interpolated_problem() -> bj.JointInversion:
    """A diagonal prior seen densely and through a sparse two-point interpolation per datum."""
    rng = np.random.default_rng(7)
    n, rows = 30, 6
    x = bj.Parameter("x", shape=n, prior=bj.priors.Normal(0.5, 0.3))
    dense = rng.normal(size=(12, n)) / np.sqrt(n)
    left = np.sort(rng.choice(n - 1, size=rows, replace=False))
    weight = rng.uniform(0.2, 0.8, rows)
    interp = sp.csr_array(
        (
            np.concatenate([weight, 1.0 - weight]),
            (np.tile(np.arange(rows), 2), np.concatenate([left, left + 1])),
        ),
        shape=(rows, n),
    )
    truth = 0.5 + 0.3 * rng.standard_normal(n)
    mods = [
        bj.Modality(
            "dense",
            bj.physics.Linear(dense, input="x"),
            dense @ truth + 0.1 * rng.standard_normal(12),
            bj.noise.Gaussian(0.1),
        ),
        bj.Modality(
            "interpolated",
            bj.physics.Linear(interp, input="x"),
            interp @ truth + 0.05 * rng.standard_normal(rows),
            bj.noise.Gaussian(0.05),
        ),
    ]
    return bj.JointInversion([x], mods)


def test_exact_route_draws_equal_the_systems_draws_on_the_same_seed(blur, blur_run):
    assert blur_run.posterior.attrs["route"] == "exact"
    system = blur.linear_gaussian_system()
    _, m = system.draws(DRAWS * CHAINS, np.random.default_rng(SEED))
    x = blur_run.posterior["x"].values.reshape(DRAWS * CHAINS, -1)
    # one triangular product with C⁻¹ D against z̄ + C⁻ᵀ ε then μ + D z: rounding only
    np.testing.assert_allclose(x, m, rtol=0.0, atol=1e-12)


def test_exact_route_log_likelihood_equals_scipy_norm_logpdf_of_every_draw(blur, blur_run):
    x = blur_run.posterior["x"].values.reshape(DRAWS * CHAINS, -1)
    expected = _brute_force_log_likelihood(blur, x, {"blurred": 0.05, "points": 0.02})
    for name, value in expected.items():
        got = blur_run.log_likelihood[name].values.reshape(DRAWS * CHAINS, -1)
        np.testing.assert_allclose(got, value, rtol=0.0, atol=1e-9)


def test_brute_force_log_likelihood_check_fails_with_a_wrong_noise_sd(blur, blur_run):
    # negative control: the same comparison with the points' sd off by 10 % must fail
    x = blur_run.posterior["x"].values.reshape(DRAWS * CHAINS, -1)
    wrong = _brute_force_log_likelihood(blur, x, {"blurred": 0.05, "points": 0.022})
    got = blur_run.log_likelihood["points"].values.reshape(DRAWS * CHAINS, -1)
    assert not np.allclose(got, wrong["points"], rtol=0.0, atol=1e-9)


def test_exact_route_lp_equals_the_compiled_model_at_every_draw(blur, blur_run):
    free = {"x": blur_run.posterior["x"].values.reshape(DRAWS * CHAINS, -1)}
    _, lp, loglik = exact._derived_quantities(blur.model, free, True)
    np.testing.assert_allclose(blur_run.sample_stats["lp"].values.ravel(), lp, rtol=1e-10)
    for name, value in loglik.items():
        got = blur_run.log_likelihood[name].values.reshape(value.shape)
        np.testing.assert_allclose(got, value, rtol=1e-10, atol=1e-12)


def test_a_corrupted_kept_constant_is_caught_and_the_compiled_model_answers(blur, monkeypatch):
    # negative control of the check: the kept lp constant off by one nat must be detected
    blur.sample(draws=5, chains=2, random_seed=1, progressbar=False)  # constants kept
    plan = exact._plan(blur, blur.linear_gaussian_system())
    key = ("eps", True)
    lp_constant, offsets = plan.constants[key]
    monkeypatch.setitem(plan.constants, key, (lp_constant + 1.0, offsets))
    calls = []
    original = exact._derived_quantities
    monkeypatch.setattr(exact, "_derived_quantities", lambda *a: calls.append(1) or original(*a))
    idata = blur.sample(draws=5, chains=2, random_seed=2, progressbar=False)
    assert calls == [1]  # the numpy path declined; the compiled model gave every array
    assert key not in plan.constants  # the bad constant was dropped
    free = {"x": idata.posterior["x"].values.reshape(10, -1)}
    _, lp, _ = original(blur.model, free, True)
    np.testing.assert_allclose(idata.sample_stats["lp"].values.ravel(), lp, rtol=1e-12)


@pytest.mark.parametrize("path", ["gather", "sparse", "dense", "unstacked"])
def test_operators_by_each_product_give_scipy_norm_logpdf(path, monkeypatch):
    # the interpolation has two entries per row: gathered and summed (np.add.reduceat), left
    # sparse (scipy's product, as for large operators) or densified and stacked with the dense
    # operator; "unstacked": both as they are, one product each (as for large operators)
    if path in ("sparse", "unstacked"):
        monkeypatch.setattr(exact, "_DENSIFY_LIMIT", 0)
    if path != "gather":
        monkeypatch.setattr(exact, "_GATHER_PER_ROW", 0)
    if path == "unstacked":
        monkeypatch.setattr(exact, "_STACK_LIMIT", 0)
    problem = _interpolated_problem()
    idata = problem.sample(draws=30, chains=2, random_seed=SEED, progressbar=False)
    plan = exact._plan(problem, problem.linear_gaussian_system())
    stacked, gathers, singles = plan._stacked[("dense", "interpolated")]
    expected_parts = {
        "gather": (1, 1, 0),
        "sparse": (1, 0, 1),
        "dense": (2, 0, 0),
        "unstacked": (0, 0, 2),
    }
    stacked_blocks = 0 if stacked is None else len(stacked[2])
    assert (stacked_blocks, len(gathers), len(singles)) == expected_parts[path]
    x = idata.posterior["x"].values.reshape(60, -1)
    expected = _brute_force_log_likelihood(problem, x, {"dense": 0.1, "interpolated": 0.05})
    for name, value in expected.items():
        got = idata.log_likelihood[name].values.reshape(60, -1)
        np.testing.assert_allclose(got, value, rtol=0.0, atol=1e-9)
    _, lp, _ = exact._derived_quantities(problem.model, {"x": x}, True)
    np.testing.assert_allclose(idata.sample_stats["lp"].values.ravel(), lp, rtol=1e-10)


def test_a_whitened_free_variable_of_a_diagonal_prior_gets_the_whitened_draws(blur):
    # the plan probes which free variables read the whitened draws; with a diagonal prior the
    # draws skip z, so such a variable gets z = (m − μ) / d, equal to the system's z
    class WhiteNormal(bj.priors.Normal):
        def free_values(self, name, white, value):
            return {name: white + 0.0}

    latent = {"x": types.SimpleNamespace(size=40, shape=(40,), prior=WhiteNormal(0.0, 0.1))}
    stub = types.SimpleNamespace(latent=latent, model=blur.model)
    system = blur.linear_gaussian_system()
    plan = exact._Plan(stub, system)
    assert plan.value_only == {"x": False} and plan.diagonal is not None
    drawn = exact._dense_draws(plan, system, 20, np.random.default_rng(4))
    z_ref, m_ref = system.draws(20, np.random.default_rng(4))
    assert drawn[0] is None  # z not formed for a diagonal prior
    np.testing.assert_allclose(drawn[1], m_ref, rtol=0.0, atol=1e-12)
    values = exact._plan_free_values(plan, latent, None, drawn[1])
    np.testing.assert_allclose(values["x"], z_ref, rtol=1e-9, atol=1e-12)


def test_lp_from_the_standard_normals_equals_the_quadratic_form_of_the_draws(blur):
    # ½‖ε‖² and ½(‖z‖² + Σ‖e_k‖²) differ by a constant over draws (the Gaussian's quadratic
    # form); both paths of _quadratic_derived must give the same lp
    system = blur.linear_gaussian_system()
    plan = exact._plan(blur, system)
    _, m, eps_sq = exact._dense_draws(plan, system, 25, np.random.default_rng(5))
    z = (m - system.prior_mean) / plan.diagonal
    free = {"x": m}
    from_eps = exact._quadratic_derived(blur, system, None, m, free, False, eps_sq)
    from_z = exact._quadratic_derived(blur, system, z, m, free, False)
    assert from_eps is not None and from_z is not None
    np.testing.assert_allclose(from_eps[1], from_z[1], rtol=1e-11)


def test_groups_share_read_only_coordinates_but_not_data(blur, blur_run):
    other = blur.sample(draws=DRAWS, chains=CHAINS, random_seed=SEED + 1, progressbar=False)
    assert not np.shares_memory(other.posterior["x"].values, blur_run.posterior["x"].values)
    np.testing.assert_array_equal(blur_run.posterior["draw"].values, np.arange(DRAWS))
    with pytest.raises(ValueError, match="read-only"):
        blur_run.posterior["draw"].values[0] = 5
    # a coordinate's attrs belong to its result: editing them leaves every other result alone
    other.posterior["draw"].attrs["note"] = "edited"
    later = blur.sample(draws=DRAWS, chains=CHAINS, random_seed=SEED + 2, progressbar=False)
    assert "note" not in blur_run.posterior["draw"].attrs
    assert "note" not in later.posterior["draw"].attrs
    assert other.posterior["draw"].attrs["note"] == "edited"  # the edit itself took
    # the observed data are the modalities' data
    for name, mod in blur.modalities.items():
        np.testing.assert_array_equal(blur_run.observed_data[name].values, mod.data)


def test_groups_built_directly_equal_those_of_xarrays_public_constructor(blur, monkeypatch):
    fast = blur.sample(draws=10, chains=2, random_seed=SEED, progressbar=False)
    monkeypatch.setattr(exact, "_DIRECT", False)
    public = blur.sample(draws=10, chains=2, random_seed=SEED, progressbar=False)
    assert fast.groups() == public.groups()
    for group in public.groups():
        a, b = fast[group], public[group]
        assert a.equals(b), group  # values, dims and coordinates
        assert list(a.xindexes) == list(b.xindexes) and dict(a.sizes) == dict(b.sizes)
        assert set(a.coords) == set(b.coords) and set(a.data_vars) == set(b.data_vars)
    other = blur.sample(draws=10, chains=2, random_seed=1, progressbar=False)
    assert not fast.posterior.equals(other.posterior)  # negative control: other draws differ


def test_without_log_likelihood_lp_is_checked_by_the_compiled_model_already_built(blur, blur_run):
    idata = blur.sample(
        draws=20,
        chains=2,
        random_seed=5,
        progressbar=False,
        idata_kwargs={"log_likelihood": False},
    )
    assert "log_likelihood" not in idata.groups()
    assert (False,) not in exact._COMPILED[blur.model]  # no second compilation
    free = {"x": idata.posterior["x"].values.reshape(40, -1)}
    _, lp, _ = exact._derived_quantities(blur.model, free, True)
    np.testing.assert_allclose(idata.sample_stats["lp"].values.ravel(), lp, rtol=1e-10)
