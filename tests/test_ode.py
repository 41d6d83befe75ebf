"""Tests of the ODE solvers (compiled Op and scan), their gradients and the ODE physics."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from bayesjoint.physics.ode import ODE, GeneExpression, rk4, solve_ode
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


# ------------------------------------------------------------------------------------------------
# the compiled solver (solve_ode, rk4's compiled backend): values, gradients, negative controls
# ------------------------------------------------------------------------------------------------
LV_TIMES = np.arange(0.0, 21.0)  # yearly outputs, t0 = 0 (the posteriordb lotka_volterra model)
LV_THETA = np.array([0.55, 0.028, 0.80, 0.024])  # α, β, γ, δ near the hare/lynx posterior mean
LV_Z0 = np.array([33.0, 6.0])  # hare, lynx (thousands)


def lotka_volterra(t, y, theta):
    alpha, beta, gamma, delta = theta[0], theta[1], theta[2], theta[3]
    return pt.stack([(alpha - beta * y[1]) * y[0], (-gamma + delta * y[0]) * y[1]])


def lotka_volterra_np(t, y, theta):
    alpha, beta, gamma, delta = theta
    return [(alpha - beta * y[1]) * y[0], (-gamma + delta * y[0]) * y[1]]


def reference_lv(theta, z0, times=LV_TIMES):
    """scipy's DOP853 at rtol 1e-12 (global error ~1e-11 relative, far below what is tested)."""
    from scipy.integrate import solve_ivp

    sol = solve_ivp(
        lotka_volterra_np,
        (0.0, times[-1]),
        z0,
        t_eval=times,
        args=(theta,),
        method="DOP853",
        rtol=1e-12,
        atol=1e-12,
    )
    assert sol.success
    return sol.y.T


def lv_loss(states):
    """A scalar of the whole trajectory, like a log-normal likelihood's sum of squares."""
    return pt.sum((pt.log(states) - 2.5) ** 2)


def lv_loss_np(states):
    return float(np.sum((np.log(states) - 2.5) ** 2))


def _has_op(fn, name):
    return any(type(node.op).__name__ == name for node in fn.maker.fgraph.apply_nodes)


def test_compiled_rk4_equals_the_scan():
    # Same steps, same arithmetic: values agree to round-off and the gradients (both the exact
    # derivative of the computed solution, one by forward sensitivities, one by reverse mode
    # through the scan) to 1e-10 relative (round-off accumulated over 200 steps).
    theta, z0 = (
        pt.tensor("theta", dtype="float64", shape=(4,)),
        pt.tensor("z0", dtype="float64", shape=(2,)),
    )
    out = {}
    for backend in ("compiled", "scan"):
        states = rk4(lotka_volterra, z0, LV_TIMES, theta, substeps=10, backend=backend)
        loss = lv_loss(states)
        fn = pytensor.function([theta, z0], [states, loss, *pytensor.grad(loss, [theta, z0])])
        assert _has_op(fn, "ODESolution") == (backend == "compiled")
        out[backend] = fn(LV_THETA, LV_Z0)
    np.testing.assert_allclose(out["compiled"][0], out["scan"][0], rtol=1e-12)
    for got, want in zip(out["compiled"][1:], out["scan"][1:], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10)


def test_gene_expression_runs_compiled():
    # The default backend compiles GeneExpression's right-hand side (no scan in the graph).
    op = GeneExpression(TIMES, inputs=("a", "b", "c", "d"), initial=INITIAL, observe="both")
    x = pt.tensor("x", dtype="float64", shape=(4,))
    fn = pytensor.function([x], op({"a": x[0], "b": x[1], "c": x[2], "d": x[3]}))
    assert _has_op(fn, "ODESolution") and not _has_op(fn, "Scan")
    # rtol as in test_gene_expression_matches_closed_form (same RK4 steps).
    np.testing.assert_allclose(fn(np.array(RATES)), closed_form(TIMES, *RATES, *INITIAL), rtol=2e-6)


def test_dopri5_matches_scipy_reference():
    got = solve_ode(lotka_volterra, LV_Z0, LV_TIMES, LV_THETA, rtol=1e-10, atol=1e-10)
    # Local error control at 1e-10 gives a global error of ~1e-9 relative over these 20 years
    # (about three cycles); 1e-7 leaves room and still fails for any wrong stage coefficient.
    np.testing.assert_allclose(got, reference_lv(LV_THETA, LV_Z0), rtol=1e-7)
    # The defaults (rtol = atol = 1e-6) stay within 1e-4 relative: what NUTS uses.
    loose = solve_ode(lotka_volterra, LV_Z0, LV_TIMES, LV_THETA)
    np.testing.assert_allclose(loose, reference_lv(LV_THETA, LV_Z0), rtol=1e-4)


@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_closed_forms_and_their_gradients(method):
    settings = {"rtol": 1e-11, "atol": 1e-13} if method == "dopri5" else {"substeps": 40}
    ts = np.linspace(0.0, 3.0, 7)
    # Exponential decay y' = -k y: y = y0 exp(-k t), ∂y/∂k = -t y, ∂y/∂y0 = exp(-k t).
    k, y0 = pt.dscalar("k"), pt.tensor("y0", dtype="float64", shape=(1,))
    y = solve_ode(lambda t, y, k: -k * y, y0, ts, k, method=method, **settings)[:, 0]
    jac = pytensor.function([k, y0], [y, *pytensor.gradient.jacobian(y, [k, y0])])
    val, dk, dy0 = jac(1.3, np.array([2.0]))
    expected = 2.0 * np.exp(-1.3 * ts)
    # dopri5 at rtol 1e-11: ~1e-10 relative; rk4 with h = 0.0125, γh = 0.016: error
    # ≈ γT (γh)⁴/120 ≈ 2e-9 (see rk4's Notes). 1e-8 covers both.
    np.testing.assert_allclose(val, expected, rtol=1e-8)
    np.testing.assert_allclose(dk, -ts * expected, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(dy0[:, 0], expected / 2.0, rtol=1e-8)
    # Harmonic oscillator x'' = -ω² x, x(0) = 1, v(0) = 0: x = cos ωt, ∂x/∂ω = -t sin ωt.
    omega = pt.dscalar("omega")
    osc = solve_ode(
        lambda t, y, w: pt.stack([y[1], -(w**2) * y[0]]),
        np.array([1.0, 0.0]),
        ts,
        omega,
        method=method,
        **settings,
    )
    fn = pytensor.function([omega], [osc, pytensor.gradient.jacobian(osc[:, 0], omega)])
    states, dx = fn(2.0)
    np.testing.assert_allclose(states[:, 0], np.cos(2.0 * ts), atol=1e-8)  # as above, |x| ≤ 1
    np.testing.assert_allclose(states[:, 1], -2.0 * np.sin(2.0 * ts), atol=2e-8)
    np.testing.assert_allclose(dx, -ts * np.sin(2.0 * ts), atol=1e-7)  # |∂x/∂ω| ≤ 3


def _lv_objective(method, **settings):
    """x = log(α, β, γ, δ, hare0, lynx0) -> the trajectory, through solve_ode."""

    def fn(x):
        p = pt.exp(x)
        return solve_ode(lotka_volterra, p[4:], LV_TIMES, p[:4], method=method, **settings)

    return fn


X0 = np.log(np.concatenate([LV_THETA, LV_Z0]))
STEPS = 2.0 ** -np.arange(8, 16)  # relative to |x0|∞ = 3.6: 0.014 ... 6e-5 in log-parameters


@pytest.mark.parametrize(
    "method, settings",
    [("dopri5", {"rtol": 1e-12, "atol": 1e-12}), ("rk4", {"substeps": 10})],
    ids=["dopri5", "rk4"],
)
def test_gradient_passes_the_taylor_test(method, settings):
    result = taylor_test(_lv_objective(method, **settings), X0, random_seed=5, steps=STEPS)
    # Second-order remainder (slope 2) over the range of steps; a wrong gradient gives slope 1.
    assert abs(result.slope - 2.0) < 0.2


@functools.lru_cache(maxsize=1)
def fd_reference_gradient():
    """Central differences (step 1e-5 in log-parameters) of the loss of scipy's solution."""

    def reference(xv):
        pv = np.exp(xv)
        return lv_loss_np(reference_lv(pv[:4], pv[4:]))

    eps = 1e-5
    return np.array(
        [(reference(X0 + eps * e) - reference(X0 - eps * e)) / (2 * eps) for e in np.eye(6)]
    )


def lv_gradient(**settings):
    x = pt.tensor("x", dtype="float64", shape=(6,))
    p = pt.exp(x)
    loss = lv_loss(solve_ode(lotka_volterra, p[4:], LV_TIMES, p[:4], **settings))
    return pytensor.function([x], pytensor.grad(loss, x))(X0)


def test_gradient_matches_finite_differences_of_scipy():
    grad = lv_gradient(rtol=1e-10, atol=1e-10)
    # Central differences: truncation ~eps² |φ'''| ≈ 1e-8, round-off ~1e-12/eps = 1e-7 (the
    # reference's global error), against gradients of size 10-1000; the solver's own gradient
    # error at rtol 1e-10 is ~1e-8 relative. 1e-6 relative with a 1e-4 floor covers both.
    np.testing.assert_allclose(grad, fd_reference_gradient(), rtol=1e-6, atol=1e-4)


def test_sensitivity_error_control_makes_the_gradient_as_accurate_as_the_state():
    # Step sizes chosen on the state alone leave the sensitivities' error uncontrolled; counting
    # it in the error norm (the default, like Stan's coupled system) makes the gradient as
    # accurate as asked. Measured: 5e-4 vs 2e-2 at (1e-5, 1e-3), 4e-6 vs 8e-5 at (1e-6, 1e-6).
    fd = fd_reference_gradient()
    for rtol, atol, bound in ((1e-5, 1e-3, 2e-3), (1e-6, 1e-6, 2e-5)):
        errors = {
            control: np.max(
                np.abs(lv_gradient(rtol=rtol, atol=atol, sensitivity_error_control=control) - fd)
                / np.abs(fd)
            )
            for control in (True, False)
        }
        assert errors[True] < bound
        assert errors[False] > 5.0 * errors[True]


def test_negative_control_wrong_sensitivity_fails_both_checks(monkeypatch):
    # A wrong Jacobian entry (∂f_hare/∂β set to 0 in the printed code) gives a gradient whose
    # Taylor remainder falls at first order only and that disagrees with finite differences.
    from bayesjoint.physics import _ode_op

    original = _ode_op.ODESolution.__init__

    def broken_init(self, source, key, *args, **kwargs):
        lines = source.splitlines()
        target = [i for i, line in enumerate(lines) if line.strip().startswith("jp[0, 1] =")]
        assert len(target) == 1  # the entry exists (else this control would test nothing)
        lines[target[0]] = "    jp[0, 1] = 0.0"
        original(self, "\n".join(lines), key + "-broken", *args, **kwargs)

    monkeypatch.setattr(_ode_op.ODESolution, "__init__", broken_init)
    broken = taylor_test(_lv_objective("rk4"), X0, random_seed=5, steps=STEPS)
    # The remainder leaves second order (slope 1.3 here: the wrong entry is one of 24 and the
    # second-order term still weighs in over these steps); the correct gradient gives 2 ± 0.2.
    assert abs(broken.slope - 2.0) > 0.5
    grad = lv_gradient(rtol=1e-10, atol=1e-10)
    fd = fd_reference_gradient()
    # β's entry is off by far more than the 1e-6 tolerance of the positive test above; the
    # others (whose Jacobian entries are intact) still agree.
    assert abs(grad[1] - fd[1]) > 1e-2 * abs(fd[1])
    np.testing.assert_allclose(np.delete(grad, 1), np.delete(fd, 1), rtol=1e-6, atol=1e-4)


def test_negative_control_disconnected_parameter():
    # Cutting the gradient of γ (disconnected_grad) leaves a first-order Taylor remainder.
    def cut(x):
        p = pt.exp(x)
        theta = pt.stack([p[0], p[1], pytensor.gradient.disconnected_grad(p[2]), p[3]])
        return solve_ode(lotka_volterra, p[4:], LV_TIMES, theta, rtol=1e-12, atol=1e-12)

    broken = taylor_test(cut, X0, random_seed=5, steps=STEPS)
    assert abs(broken.slope - 2.0) > 0.5


def test_unsupported_rhs_falls_back_to_the_scan_or_says_why():
    # pt.sort has no scalar form: rk4 "auto" integrates with the scan (same values), while
    # backend="compiled" and dopri5 (which has no scan form) raise naming the operation.
    def sorted_decay(t, y, k):
        return -k * pt.sort(y)

    k = pt.dscalar("k")
    y0 = np.array([1.0, 2.0])
    auto = rk4(sorted_decay, y0, [0.0, 1.0], k, 20)
    fn = pytensor.function([k], auto)
    assert _has_op(fn, "Scan") and not _has_op(fn, "ODESolution")
    np.testing.assert_allclose(fn(0.5)[-1], y0 * np.exp(-0.5), rtol=1e-7)  # γh = 0.025
    with pytest.raises(ValueError, match=r"cannot be compiled.*Sort"):
        rk4(sorted_decay, y0, [0.0, 1.0], k, 20, backend="compiled")
    with pytest.raises(ValueError, match="cannot be compiled"):
        solve_ode(sorted_decay, y0, [0.0, 1.0], k)


def test_variables_read_from_the_outer_graph_are_parameters():
    # A right-hand side may read a tensor it was not given; it is found, becomes an input of
    # the solver, and the gradient reaches it (same value and gradient as passing it).
    k = pt.dscalar("k")
    rate = pt.exp(k)
    tol = {"rtol": 1e-10, "atol": 1e-12}
    closed = solve_ode(lambda t, y, p: -rate * y, np.array([1.0]), [0.0, 2.0], (), **tol)
    passed = solve_ode(lambda t, y, r: -r * y, np.array([1.0]), [0.0, 2.0], rate, **tol)
    fn = pytensor.function(
        [k], [closed[-1, 0], pytensor.grad(closed[-1, 0], k), pytensor.grad(passed[-1, 0], k)]
    )
    value, g_closed, g_passed = fn(np.log(0.3))
    np.testing.assert_allclose(value, np.exp(-0.6), rtol=1e-8)  # rtol 1e-10 over 2 units
    np.testing.assert_allclose(g_closed, g_passed, rtol=1e-12)
    np.testing.assert_allclose(g_closed, -0.6 * np.exp(-0.6), rtol=1e-8)  # ∂/∂log r


def lv_physics_rhs(t, y, params):
    (theta,) = params  # ODE passes one tensor per entry of params=
    return lotka_volterra(t, y, theta)


def test_ode_physics_shares_one_solve_and_checks_shapes():
    hare = ODE(lv_physics_rhs, LV_TIMES, params=("theta",), initial=("h0", "l0"), component=0)
    lynx = ODE(lv_physics_rhs, LV_TIMES, params=("theta",), initial=("h0", "l0"), component=1)
    latent = {
        "theta": pt.tensor("theta", dtype="float64", shape=(4,)),
        "h0": pt.dscalar(),
        "l0": pt.dscalar(),
    }
    both = hare(latent) + lynx(latent)
    fn = pytensor.function(list(latent.values()), [both, pytensor.grad(both.sum(), latent["h0"])])
    solves = [n for n in fn.maker.fgraph.apply_nodes if type(n.op).__name__ == "ODESolution"]
    assert len(solves) == 1  # equal Ops on equal inputs are merged: one integration
    value, _ = fn(LV_THETA, *LV_Z0)
    np.testing.assert_allclose(value, reference_lv(LV_THETA, LV_Z0).sum(axis=1), rtol=1e-4)
    # Numeric evaluation; rtol: the default tolerances (1e-6) give ~1e-5 relative here.
    np.testing.assert_allclose(
        hare(theta=LV_THETA, h0=LV_Z0[0], l0=LV_Z0[1]), reference_lv(LV_THETA, LV_Z0)[:, 0], 1e-4
    )
    assert hare.inputs == ("theta", "h0", "l0")
    assert hare.output_shape({"theta": (4,), "h0": (), "l0": ()}) == (LV_TIMES.size,)
    whole = ODE(lv_physics_rhs, LV_TIMES, params=("theta",), initial="z0")
    assert whole.output_shape({"theta": (4,), "z0": (2,)}) == (LV_TIMES.size, 2)
    with pytest.raises(ValueError, match="scalar"):
        hare.output_shape({"theta": (4,), "h0": (2,), "l0": ()})
    with pytest.raises(ValueError, match="component"):
        ODE(lv_physics_rhs, LV_TIMES, ("theta",), "z0", component=2).output_shape(
            {"theta": (4,), "z0": (2,)}
        )
    with pytest.raises(ValueError, match="initial"):
        ODE(lv_physics_rhs, LV_TIMES, ("theta",), ())
    with pytest.raises(ValueError, match="method"):
        ODE(lv_physics_rhs, LV_TIMES, ("theta",), "z0", method="euler")
    with pytest.raises(ValueError, match="backend='scan'"):
        solve_ode(lotka_volterra, LV_Z0, LV_TIMES, LV_THETA, backend="scan")
    with pytest.raises(ValueError, match="backend"):
        rk4(lotka_volterra, LV_Z0, LV_TIMES, LV_THETA, backend="cuda")


def test_compiled_function_pickles():
    # PyMC sends the compiled model to its chain processes by pickling: the Op travels as its
    # printed source and recompiles (or loads numba's cache) where it lands.
    import pickle

    theta = pt.tensor("theta", dtype="float64", shape=(4,))
    states = solve_ode(lotka_volterra, LV_Z0, LV_TIMES, theta)
    fn = pytensor.function([theta], [states, pytensor.grad(lv_loss(states), theta)])
    clone = pickle.loads(pickle.dumps(fn))
    for got, want in zip(clone(LV_THETA), fn(LV_THETA), strict=True):
        np.testing.assert_array_equal(got, want)


def test_step_limit_gives_nan_in_a_model_and_an_error_for_numpy():
    theta = pt.tensor("theta", dtype="float64", shape=(4,))
    states = solve_ode(lotka_volterra, LV_Z0, LV_TIMES, theta, max_steps=5)
    out = pytensor.function([theta], states)(LV_THETA)
    assert np.all(out[0] == LV_Z0) and np.isnan(out[-1]).all()  # t0 is an output; the rest NaN
    with pytest.raises(ValueError, match="max_steps"):
        solve_ode(lotka_volterra, LV_Z0, LV_TIMES, LV_THETA, max_steps=5)
    with pytest.raises(ValueError, match="max_steps"):
        solve_ode(lotka_volterra, LV_Z0, LV_TIMES, LV_THETA, max_steps=0)
    with pytest.raises(ValueError, match="rtol"):
        solve_ode(lotka_volterra, LV_Z0, LV_TIMES, LV_THETA, rtol=0.0)


def test_without_numba_rk4_uses_the_scan_and_dopri5_runs_uncompiled(monkeypatch):
    from bayesjoint.physics import _ode_op, ode

    monkeypatch.setattr(ode, "numba_available", lambda: False)
    monkeypatch.setattr(_ode_op, "numba_available", lambda: False)
    k = pt.dscalar("k")
    fn = pytensor.function([k], rk4(lambda t, y, k: -k * y, np.ones(1), [0.0, 1.0], k, 20))
    assert _has_op(fn, "Scan")
    y = solve_ode(lambda t, y, k: -k * y, np.ones(1), [0.0, 1.0], 0.7, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y[-1, 0], np.exp(-0.7), rtol=1e-9)  # same kernels, in Python
    with pytest.raises(ValueError, match="numba"):
        rk4(lambda t, y, k: -k * y, np.ones(1), [0.0, 1.0], k, backend="compiled")


BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "ode.py"


def test_benchmark_quick_run_prints_one_json_object():
    proc = subprocess.run(
        [sys.executable, str(BENCHMARK), "--quick", "--no-posterior", "--repeat", "2"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)  # fails on anything besides one JSON document
    assert data["schema"] == "bayesjoint-benchmark-ode/1" and data["mode"] == "quick"
    grad = data["gradient"]
    for case in ("op_rk4_fast_run", "op_dopri5_fast_run", "op_dopri5_numba", "model_logp_dlogp"):
        assert len(grad[case]["times_s"]) == 2 and grad[case]["time_s"] > 0.0
    # The same log-likelihood through RK4 (h = 0.1) and the adaptive solver (rtol 1e-5): the
    # solutions differ by ~1e-5 relative, the log-likelihood (~40) by far less than 0.1.
    assert abs(grad["op_rk4_fast_run"]["loglik"] - grad["op_dopri5_fast_run"]["loglik"]) < 0.1
    assert data["posterior"] is None and data["stan"] is None


def test_benchmark_bad_option_fails_without_json():
    proc = subprocess.run(
        [sys.executable, str(BENCHMARK), "--repeat", "0"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode != 0 and proc.stdout == ""
