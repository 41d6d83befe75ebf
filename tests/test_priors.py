"""Priors: the whitened Gaussian field reproduces the covariance it claims."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest

import bayesjoint as bj
from bayesjoint.priors import correlation_1d


def test_matern_closed_forms():
    # Values of the correlation functions at r = 1 (x = [0, ℓ]), from their closed forms.
    x = np.array([0.0, 2.0])
    expected = {
        "squared_exponential": np.exp(-0.5),
        "exponential": np.exp(-1.0),
        "matern32": (1 + np.sqrt(3)) * np.exp(-np.sqrt(3)),
        "matern52": (1 + np.sqrt(5) + 5 / 3) * np.exp(-np.sqrt(5)),
    }
    for kernel, value in expected.items():
        assert correlation_1d(x, 2.0, kernel)[0, 1] == pytest.approx(value, rel=1e-14)


def test_separable_squared_exponential_is_isotropic():
    # exp(-dx²/2ℓ²) exp(-dz²/2ℓ²) = exp(-r²/2ℓ²): the Kronecker factor reproduces the 2-D kernel.
    grid = bj.Grid(x=np.linspace(0, 40, 5), z=np.linspace(-20, 0, 4))
    prior = bj.priors.GaussianField(1.5, 12.0, kernel="squared_exponential", nugget=1e-9)
    _, factor = prior.gaussian(grid.shape, grid)
    pts = grid.cell_centers()
    r2 = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
    brute = 1.5**2 * np.exp(-0.5 * r2 / 12.0**2)
    np.testing.assert_allclose(factor @ factor.T, brute, atol=1e-8)  # nugget 1e-9 per factor


def test_whitened_field_in_model_applies_the_kronecker_factor():
    # The model's deterministic field is mean + L z: evaluate it at unit white vectors and compare
    # with the dense Kronecker factor (exact up to round-off).
    grid = bj.Grid(x=np.linspace(0, 30, 4), z=np.linspace(-10, 0, 3))
    prior = bj.priors.GaussianField(2.0, {"x": 15.0, "z": 5.0}, mean=3.0, kernel="matern32")
    _, factor = prior.gaussian(grid.shape, grid)
    with pm.Model(coords={"x": grid.centers["x"], "z": grid.centers["z"]}) as model:
        prior.build("rho", grid.shape, grid.dims, grid)
    fn = model.compile_fn(model["rho"], inputs=[model["rho_white"]], on_unused_input="ignore")
    for j in (0, 5, 11):
        e = np.zeros(grid.size)
        e[j] = 1.0
        got = fn({"rho_white": e.reshape(grid.shape)}).ravel()
        np.testing.assert_allclose(got, 3.0 + factor[:, j], rtol=1e-12, atol=1e-12)


def test_wrong_factor_order_is_detected():
    # Negative control: swapping the axis order of the Kronecker product gives a different matrix.
    grid = bj.Grid(x=np.linspace(0, 30, 4), z=np.linspace(-10, 0, 3))
    prior = bj.priors.GaussianField(1.0, {"x": 15.0, "z": 5.0})
    lx, lz = prior.axis_factors(grid)
    assert not np.allclose(np.kron(lz, lx), np.kron(lx, lz))


def test_prior_validation_messages():
    with pytest.raises(ValueError, match="Normal sigma must be positive"):
        bj.priors.Normal(0.0, -1.0)
    with pytest.raises(ValueError, match="correlation_length has no value for grid axes \\['z'\\]"):
        bj.Field(
            "f", bj.Grid(x=[0.0, 1.0], z=[0.0, 1.0]), prior=bj.priors.GaussianField(1.0, {"x": 1.0})
        )
    with pytest.raises(ValueError, match="Parameter 'x': Normal mu of shape \\(2,\\)"):
        bj.Parameter("x", shape=3, prior=bj.priors.Normal([0.0, 1.0], 1.0))
