"""Tests of the RK4 integrator and the gene-expression physics against the closed-form solution."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from bayesjoint.physics.ode import GeneExpression, rk4
from bayesjoint.validate import taylor_test

TIMES = np.linspace(0.0, 10.0, 21)  # output interval 0.5
RATES = (2.0, 1.0, 3.0, 0.5)  # k_m, γ_m, k_p, γ_p
INITIAL = (0.5, 0.1)  # m0, p0


def closed_form(t, k_m, gamma_m, k_p, gamma_p, m0, p0):
    """Solution of m' = k_m − γ_m m, p' = k_p m − γ_p p (integrating factor, derived below).

    m(t) = m* + A e^{−γ_m t} with m* = k_m/γ_m, A = m0 − m*. Then
    p(t) = p0 e^{−γ_p t} + k_p ∫_0^t e^{−γ_p (t−τ)} (m* + A e^{−γ_m τ}) dτ
         = p0 e^{−γ_p t} + (k_p m*/γ_p)(1 − e^{−γ_p t}) + k_p A e^{−γ_p t} ∫_0^t e^{(γ_p−γ_m)τ} dτ,
    and the last integral is (e^{(γ_p−γ_m)t} − 1)/(γ_p − γ_m), or t when γ_p = γ_m.
    """
    m_star = k_m / gamma_m
    amp = m0 - m_star
    m = m_star + amp * np.exp(-gamma_m * t)
    if gamma_p == gamma_m:
        coupled = k_p * amp * t * np.exp(-gamma_p * t)
    else:
        coupled = k_p * amp * (np.exp(-gamma_m * t) - np.exp(-gamma_p * t)) / (gamma_p - gamma_m)
    p = p0 * np.exp(-gamma_p * t) + k_p * m_star / gamma_p * (1 - np.exp(-gamma_p * t)) + coupled
    return np.stack([m, p], axis=-1)


def test_closed_form_solves_the_ode():
    # Check the derivation itself: central differences of the closed form satisfy the ODE.
    for rates in (RATES, (2.0, 0.7, 3.0, 0.7)):
        t, eps = np.linspace(0.1, 9.0, 50), 1e-5
        y = closed_form(t, *rates, *INITIAL)
        dy = (closed_form(t + eps, *rates, *INITIAL) - closed_form(t - eps, *rates, *INITIAL)) / (
            2 * eps
        )
        k_m, gamma_m, k_p, gamma_p = rates
        rhs = np.stack([k_m - gamma_m * y[:, 0], k_p * y[:, 0] - gamma_p * y[:, 1]], axis=-1)
        np.testing.assert_allclose(dy, rhs, rtol=1e-8, atol=1e-8)  # O(eps²) + round-off/eps
        np.testing.assert_allclose(closed_form(0.0, *rates, *INITIAL), INITIAL, rtol=1e-15)


@pytest.mark.parametrize("rates", [RATES, (2.0, 0.7, 3.0, 0.7)], ids=["distinct", "equal-decay"])
def test_gene_expression_matches_closed_form(rates):
    op = GeneExpression(
        TIMES, inputs=("k_m", "g_m", "k_p", "g_p"), initial=INITIAL, observe="both", substeps=10
    )
    got = op(dict(zip(op.inputs, rates, strict=True)))
    # Step h = 0.05, γ_max h = 0.05: the RK4 relative error for decay over γT ≤ 10 is
    # ≈ γT (γh)⁴/120 ≈ 5e-7 (see rk4 Notes; measured 1.1e-7); 2e-6 leaves room for the
    # coupled p-equation's error constant.
    np.testing.assert_allclose(got, closed_form(TIMES, *rates, *INITIAL), rtol=2e-6)


def test_fourth_order_convergence():
    expected = closed_form(TIMES, *RATES, *INITIAL)
    op_errors = []
    for substeps in (2, 4, 8):
        op = GeneExpression(TIMES, inputs=RATES, initial=INITIAL, observe="both", substeps=substeps)
        op_errors.append(np.max(np.abs(op() - expected)))
    orders = np.log2(np.array(op_errors[:-1]) / np.array(op_errors[1:]))
    # Halving h divides the error by 2⁴ asymptotically; at γh = 0.25 … 0.0625 the observed
    # order is within 0.3 of 4 (higher-order terms).
    np.testing.assert_allclose(orders, 4.0, atol=0.3)


def test_rk4_generic_interface():
    # Vector state, start before the first output time, params as a single tensor.
    k = pt.dscalar("k")
    y = rk4(lambda t, y, k: -k * y, pt.constant(np.array([1.0, 2.0])), [1.0, 2.0], k, 20, t0=0.0)
    out = pytensor.function([k], y)(0.8)
    expected = np.array([[1.0, 2.0]]) * np.exp(-0.8 * np.array([[1.0], [2.0]]))
    np.testing.assert_allclose(out, expected, rtol=1e-7)  # γh = 0.04: error ≈ γT (γh)⁴/120 ≈ 3e-8
    # Time-dependent right-hand side: y' = cos t, y(0) = 0 → y = sin t (numpy path).
    ts = np.linspace(0.0, 3.0, 7)
    sol = rk4(lambda t, y, p: pt.cos(t) * pt.ones_like(y), np.zeros(1), ts, (), 10)
    np.testing.assert_allclose(sol[:, 0], np.sin(ts), atol=1e-8)  # h = 0.05: error ~ h⁴/120·T


def test_taylor_rates():
    op = GeneExpression(TIMES[:9], inputs=("k_m", "g_m", "k_p", "g_p"), initial=INITIAL, log=True)

    def trajectory(x):
        return op({"k_m": x[0], "g_m": x[1], "k_p": x[2], "g_p": x[3]})

    result = taylor_test(trajectory, np.log(np.array(RATES)), random_seed=11)
    assert abs(result.slope - 2.0) < 0.2  # second-order remainder: gradient through scan is right


def test_negative_controls():
    op = GeneExpression(TIMES, inputs=RATES, initial=INITIAL, observe="both", substeps=10)
    got = op()
    # Using the γ_m = γ_p formula with distinct rates (a wrong closed form) is detected.
    k_m, gamma_m, k_p, gamma_p = RATES
    amp = INITIAL[0] - k_m / gamma_m
    right_term = (
        k_p * amp * (np.exp(-gamma_m * TIMES) - np.exp(-gamma_p * TIMES)) / (gamma_p - gamma_m)
    )
    wrong_term = k_p * amp * TIMES * np.exp(-gamma_p * TIMES)
    wrong = closed_form(TIMES, *RATES, *INITIAL)
    wrong[:, 1] += wrong_term - right_term
    assert not np.allclose(got, wrong, rtol=2e-6)
    # Swapping the decay rates is detected.
    assert not np.allclose(got, closed_form(TIMES, 2.0, 0.5, 3.0, 1.0, *INITIAL), rtol=2e-6)
    # A gradient blind to the protein decay rate gives a first-order remainder.
    sym = GeneExpression(TIMES[:9], inputs=("a", "b", "c", "d"), initial=INITIAL)
    broken = taylor_test(
        lambda x: sym(
            {"a": x[0], "b": x[1], "c": x[2], "d": pytensor.gradient.disconnected_grad(x[3])}
        ),
        np.array(RATES),
        random_seed=11,
    )
    assert abs(broken.slope - 2.0) > 0.5


def test_physics_metadata_and_errors():
    op = GeneExpression(TIMES, inputs=("k", "g", "k", 0.5), initial=("m0", 0.0))
    assert op.inputs == ("k", "g", "m0")
    assert op.output_shape({"k": (), "g": (), "m0": (1,)}) == (TIMES.size,)
    with pytest.raises(ValueError, match="scalar"):
        op.output_shape({"k": (2,), "g": (), "m0": ()})
    with pytest.raises(ValueError, match="4 entries"):
        GeneExpression(TIMES, inputs=("a", "b"))
    with pytest.raises(ValueError, match="observe"):
        GeneExpression(TIMES, observe="rna")
    with pytest.raises(ValueError, match="increasing"):
        GeneExpression(TIMES[::-1])
    with pytest.raises(ValueError, match="substeps"):
        rk4(lambda t, y, p: -y, np.ones(1), TIMES, (), 0)
