"""problem.with_data: new data in the model that was built once, on every sampling route.

Each route's results on ``problem.with_data(d)`` are compared with those of a problem built
afresh on the same data ``d``, with the same seed. The exact route draws ``m = μ + L z`` from
the same system, so the draws agree to rounding (``atol=1e-12``); the NUTS routes run the same
graphs with the same seeds, so their draws agree to rounding too (``atol=1e-9``: the compiled
functions may differ in the order of floating-point sums). Negative controls: the draws on the
new data differ from those on the old data by many posterior sds, and the original problem still
gives its own results after a copy has sampled the shared model.
"""

from __future__ import annotations

import numpy as np
import pytest

import bayesjoint as bj
from bayesjoint.validate import blur_and_points_problem, blur_matrix

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


def test_with_data_collapsed_route_equals_a_freshly_built_problem():
    rng = np.random.default_rng(3)
    n = 8
    x = bj.Parameter("x", shape=n, prior=bj.priors.Normal(0.0, 1.0))
    a = bj.Modality(
        "a",
        physics=bj.physics.Linear(blur_matrix(n, 1.5), input="x"),
        data=rng.standard_normal(n),
        noise=bj.noise.Gaussian(bj.priors.HalfNormal(0.5)),
    )
    problem = bj.JointInversion(latent=[x], modalities=[a])
    data = {"a": rng.standard_normal(n) * 2.0}
    kw = dict(method="collapsed", draws=60, tune=60, chains=1, random_seed=SEED, progressbar=False)
    got = problem.with_data(data).sample(**kw)
    ref = _rebuilt(problem, data).sample(**kw)
    for name in ("x", "a_sigma"):
        np.testing.assert_allclose(
            got.posterior[name].values, ref.posterior[name].values, atol=1e-9
        )
    old = problem.sample(**kw)
    assert not np.allclose(old.posterior["a_sigma"].values, got.posterior["a_sigma"].values)


@pytest.mark.parametrize("method", ["nuts", "nuts-plain"])
def test_with_data_nuts_routes_equal_a_freshly_built_problem(method):
    x = bj.Parameter("x", shape=2, prior=bj.priors.Normal(0.0, 1.0))
    cubic = bj.Modality(
        "cubic",
        physics=lambda m: m["x"] ** 3 + m["x"],
        data=[0.5, -0.2],
        noise=bj.noise.Gaussian(0.3),
    )
    problem = bj.JointInversion(latent=[x], modalities=[cubic])
    data = {"cubic": np.array([1.5, 0.8])}
    kw = dict(method=method, draws=50, tune=50, chains=1, random_seed=SEED, progressbar=False)
    copy = problem.with_data(data)
    assert copy.model is problem.model
    got = copy.sample(**kw)
    ref = _rebuilt(problem, data).sample(**kw)
    np.testing.assert_allclose(got.posterior["x"].values, ref.posterior["x"].values, atol=1e-9)
    np.testing.assert_array_equal(got.observed_data["cubic"].values, data["cubic"])


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
