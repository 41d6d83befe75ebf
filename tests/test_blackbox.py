"""Tests of the black-box Op: gradients, Taylor test, and NUTS through the Op vs plain pytensor."""

from __future__ import annotations

import arviz as az
import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest

from bayesjoint.physics.blackbox import BlackBox, finite_difference_vjp
from bayesjoint.validate import taylor_test


# The same simulator three ways: numpy, its hand-written VJP, and pytensor (for reference).
def simulator(x):
    return np.array([np.sin(x[0]) * x[1], x[0] ** 2 + np.exp(x[1]), x[0] * x[1] ** 3])


def simulator_vjp(x, c):
    return np.array(
        [
            c[0] * np.cos(x[0]) * x[1] + c[1] * 2 * x[0] + c[2] * x[1] ** 3,
            c[0] * np.sin(x[0]) + c[1] * np.exp(x[1]) + c[2] * 3 * x[0] * x[1] ** 2,
        ]
    )


def simulator_pt(x):
    return pt.stack([pt.sin(x[0]) * x[1], x[0] ** 2 + pt.exp(x[1]), x[0] * x[1] ** 3])


X0 = np.array([0.7, -0.4])
WEIGHTS = np.array([0.3, -1.2, 2.0])


def _gradient(fn):
    x = pt.dvector("x")
    phi = pt.sum(pt.constant(WEIGHTS) * fn(x))
    return pytensor.function([x], pytensor.grad(phi, x))(X0)


def test_gradient_through_op_equals_pytensor_gradient():
    box = BlackBox(simulator, vjp=simulator_vjp, input="x", output_shape=3)
    expected = _gradient(simulator_pt)
    # Same derivative, different code path: round-off only.
    np.testing.assert_allclose(_gradient(box.op), expected, rtol=1e-12)
    np.testing.assert_allclose(box(x=X0), simulator(X0), rtol=0, atol=0)
    assert box.output_shape({"x": (2,)}) == (3,)


def test_finite_difference_fallback_warns_once_and_is_accurate():
    with pytest.warns(UserWarning, match="finite differences") as record:
        box = BlackBox(simulator, input="x", output_shape=(3,))
    assert len(record) == 1
    # Outside pytest.warns any further warning would fail the test (filterwarnings = error).
    got = _gradient(box.op)
    # Central differences with h = eps^(1/3): error ~ eps^(2/3) ≈ 4e-11 relative; 1e-8 margin.
    np.testing.assert_allclose(got, _gradient(simulator_pt), rtol=1e-8)
    np.testing.assert_allclose(
        finite_difference_vjp(simulator, X0, WEIGHTS), simulator_vjp(X0, WEIGHTS), rtol=1e-8
    )


def test_taylor_exact_and_finite_difference():
    box = BlackBox(simulator, vjp=simulator_vjp, output_shape=3)
    assert abs(taylor_test(box.op, X0, random_seed=2).slope - 2.0) < 0.2
    with pytest.warns(UserWarning, match="finite differences"):
        fd_box = BlackBox(simulator, output_shape=3)
    assert abs(taylor_test(fd_box.op, X0, random_seed=2).slope - 2.0) < 0.2


def test_negative_control_wrong_vjp_is_detected():
    wrong = BlackBox(simulator, vjp=lambda x, c: 1.1 * simulator_vjp(x, c), output_shape=3)
    assert not np.allclose(_gradient(wrong.op), _gradient(simulator_pt), rtol=1e-8)
    assert abs(taylor_test(wrong.op, X0, random_seed=2).slope - 2.0) > 0.5  # first order


def test_bad_input_raises():
    with pytest.raises(TypeError, match="callable"):
        BlackBox(3.0, vjp=simulator_vjp, output_shape=3)
    box = BlackBox(simulator, vjp=simulator_vjp, output_shape=4)
    with pytest.raises(ValueError, match="output_shape"):
        box(x=X0)
    bad_vjp = BlackBox(simulator, vjp=lambda x, c: c, output_shape=3)
    with pytest.raises(ValueError, match="vjp returned shape"):
        _gradient(bad_vjp.op)


# A small nonlinear regression: mu_i = θ0 + exp(θ1) x_i, y ~ N(mu, 0.2²), θ ~ N(0, 1).
X_DATA = np.linspace(-1.0, 1.0, 12)


def regression(theta):
    return theta[0] + np.exp(theta[1]) * X_DATA


def regression_vjp(theta, c):
    return np.array([np.sum(c), np.exp(theta[1]) * np.sum(c * X_DATA)])


def _posterior(mean_fn, seed):
    y = np.random.default_rng(0).normal(regression(np.array([0.5, -0.3])), 0.2)
    with pm.Model():
        theta = pm.Normal("theta", 0.0, 1.0, shape=2)
        pm.Normal("y", mean_fn(theta), 0.2, observed=y)
        idata = pm.sample(
            draws=300, tune=300, chains=2, cores=1, random_seed=seed, progressbar=False
        )
    return idata


def test_nuts_through_op_matches_pure_pytensor_model():
    box = BlackBox(regression, vjp=regression_vjp, input="theta", output_shape=X_DATA.size)
    reference = _posterior(lambda t: t[0] + pt.exp(t[1]) * X_DATA, seed=1)
    through_op = _posterior(box.op, seed=2)  # different seed: an independent run
    mean_a = through_op.posterior["theta"].mean(("chain", "draw")).values
    mean_b = reference.posterior["theta"].mean(("chain", "draw")).values
    mcse_a = az.mcse(through_op, var_names=["theta"], method="mean")["theta"].values
    mcse_b = az.mcse(reference, var_names=["theta"], method="mean")["theta"].values
    # Two independent chains' means differ by N(0, mcse_a² + mcse_b²): 4 combined MCSE.
    assert np.all(np.abs(mean_a - mean_b) < 4 * np.hypot(mcse_a, mcse_b))
    # Sanity: the posterior is informative, so agreement is not trivial.
    assert np.all(through_op.posterior["theta"].std(("chain", "draw")).values < 0.2)
