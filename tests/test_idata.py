"""The InferenceData the package returns: groups, names, dims, posterior predictive."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_groups_and_per_modality_log_likelihood(idata):
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data"):
        assert group in idata.groups()
    assert sorted(idata.log_likelihood.data_vars) == ["blurred", "points"]
    assert idata.log_likelihood["blurred"].dims == ("chain", "draw", "blurred_obs")
    assert idata.log_likelihood["points"].sizes["points_obs"] == 30


def test_no_default_dim_names(idata):
    for group in idata.groups():
        for dim in idata[group].dims:
            assert "_dim_" not in str(dim), (group, dim)
    assert idata.posterior["x"].dims == ("chain", "draw", "x_index")


def test_log_likelihood_matches_gaussian_density(problem, idata):
    # Independent check: the stored pointwise log-likelihood equals the normal log density
    # computed by hand from a posterior draw (exact up to float round-off).
    draw = idata.posterior["x"].isel(chain=0, draw=5).values
    mod = problem.modalities["points"]
    mu = mod.physics(x=draw)
    expected = -0.5 * ((mod.data - mu) / 0.02) ** 2 - np.log(0.02 * np.sqrt(2 * np.pi))
    got = idata.log_likelihood["points"].isel(chain=0, draw=5).values
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_posterior_predictive_per_modality(problem, idata):
    pp = problem.sample_posterior_predictive(idata, random_seed=3, extend_inferencedata=False)
    assert sorted(pp.posterior_predictive.data_vars) == ["blurred", "points"]
    # The predictive spread of a datum exceeds its noise sd (noise plus posterior uncertainty)
    # and the mean predictive tracks the data within a few noise sd.
    pts = pp.posterior_predictive["points"]
    assert float(pts.std(("chain", "draw")).min()) > 0.02
    resid = (pts.mean(("chain", "draw")).values - problem.modalities["points"].data) / 0.02
    assert np.max(np.abs(resid)) < 4.0
    assert "posterior_predictive" not in idata.groups()


def test_find_map_equals_exact_mean(problem):
    # For a Gaussian posterior the MAP is the posterior mean; L-BFGS converges to ~1e-6 here.
    point = problem.find_map(random_seed=1)
    exact = problem.exact_posterior()
    np.testing.assert_allclose(point["x"].values, exact["mean"].values, atol=1e-4)
    assert point["x"].dims == ("x_index",)
