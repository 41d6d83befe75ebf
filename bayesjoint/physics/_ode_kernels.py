"""Integrators of ``dy/dt = f(t, y, θ)`` with forward sensitivities, compiled by numba (not public).

This module is a *template*: its source is joined with the printed right-hand side of one model
(``_rhs`` and ``_rhs_jac`` below are placeholders that the printed code redefines) and the whole
is compiled with ``numba.njit`` (see :mod:`bayesjoint.physics._ode_numba`). It is plain Python,
so it also runs uncompiled, slowly, for debugging.

Forward sensitivities. With ``S = ∂y/∂(y0, θ)`` (``n × (n + m)``) every stage of a Runge–Kutta
step is differentiated along with the state: a stage ``k_s = f(t_s, Y_s)`` with
``Y_s = y + h Σ_j a_sj k_j`` has the derivative ``K_s = J_y(t_s, Y_s) (S + h Σ_j a_sj K_j) +
[0 | J_θ(t_s, Y_s)]``, and the step's update ``y + h Σ b_s k_s`` gives ``S + h Σ b_s K_s``. For
the fixed-step method this is the exact derivative of the computed solution (what
differentiating through the steps gives); for the adaptive method the step sizes are held fixed,
so it is the derivative of the solution up to the integration tolerance.
"""

import math

import numpy as np

# Dormand–Prince 5(4) (Hairer, Nørsett & Wanner 1993, Table II.5.2): nodes, coefficients, the
# fifth-order weights (= the last row, first-same-as-last) and the error weights b - b̂.
DP_C = np.array([0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0])
DP_A = np.array(
    [
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [1.0 / 5.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [3.0 / 40.0, 9.0 / 40.0, 0.0, 0.0, 0.0, 0.0],
        [44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0, 0.0, 0.0, 0.0],
        [19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0, 0.0, 0.0],
        [9017.0 / 3168.0, -355.0 / 33.0, 46732.0 / 5247.0, 49.0 / 176.0, -5103.0 / 18656.0, 0.0],
        [35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0],
    ]
)
DP_E = np.array(
    [
        71.0 / 57600.0,
        0.0,
        -71.0 / 16695.0,
        71.0 / 1920.0,
        -17253.0 / 339200.0,
        22.0 / 525.0,
        -1.0 / 40.0,
    ]
)

OK = 0
TOO_MANY_STEPS = 1
STEP_UNDERFLOW = 2


def _rhs(t, y, p, f):  # pragma: no cover - replaced by the printed right-hand side
    raise NotImplementedError


def _rhs_jac(t, y, p, f, jy, jp):  # pragma: no cover - replaced by the printed code
    raise NotImplementedError


def _stage(t, y, p, s_in, k, dk, jy, jp, with_sens):
    """``k = f(t, y)``; with sensitivities also ``dk = J_y s_in + [0 | J_θ]``."""
    if not with_sens:
        _rhs(t, y, p, k)
        return
    _rhs_jac(t, y, p, k, jy, jp)
    n = y.size
    q = s_in.shape[1]
    for i in range(n):
        for c in range(q):
            acc = 0.0
            for j in range(n):
                acc += jy[i, j] * s_in[j, c]
            dk[i, c] = acc
        for c in range(q - n):
            dk[i, n + c] += jp[i, c]


def rk4(y0, p, t_start, dt, record, out, sens, with_sens):
    """Take classical RK4 steps; fill ``out`` (and ``sens`` when ``with_sens``).

    ``record[k]`` is the output row of the state after ``k`` steps (-1: not an output).
    """
    n = y0.size
    m = p.size
    q = n + m
    y = y0.copy()
    s = np.zeros((n, q))
    for i in range(n):
        s[i, i] = 1.0
    k1 = np.empty(n)
    k2 = np.empty(n)
    k3 = np.empty(n)
    k4 = np.empty(n)
    tmp = np.empty(n)
    dk1 = np.zeros((n, q))
    dk2 = np.zeros((n, q))
    dk3 = np.zeros((n, q))
    dk4 = np.zeros((n, q))
    stmp = np.empty((n, q))
    jy = np.zeros((n, n))
    jp = np.zeros((n, m))
    if record[0] >= 0:
        out[record[0], :] = y
        if with_sens:
            sens[record[0], :, :] = s
    for step in range(dt.size):
        t = t_start[step]
        h = dt[step]
        half = 0.5 * h
        _stage(t, y, p, s, k1, dk1, jy, jp, with_sens)
        for i in range(n):
            tmp[i] = y[i] + half * k1[i]
        if with_sens:
            for i in range(n):
                for c in range(q):
                    stmp[i, c] = s[i, c] + half * dk1[i, c]
        _stage(t + half, tmp, p, stmp, k2, dk2, jy, jp, with_sens)
        for i in range(n):
            tmp[i] = y[i] + half * k2[i]
        if with_sens:
            for i in range(n):
                for c in range(q):
                    stmp[i, c] = s[i, c] + half * dk2[i, c]
        _stage(t + half, tmp, p, stmp, k3, dk3, jy, jp, with_sens)
        for i in range(n):
            tmp[i] = y[i] + h * k3[i]
        if with_sens:
            for i in range(n):
                for c in range(q):
                    stmp[i, c] = s[i, c] + h * dk3[i, c]
        _stage(t + h, tmp, p, stmp, k4, dk4, jy, jp, with_sens)
        sixth = h / 6.0
        for i in range(n):
            y[i] = y[i] + sixth * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i])
        if with_sens:
            for i in range(n):
                for c in range(q):
                    s[i, c] = s[i, c] + sixth * (
                        dk1[i, c] + 2.0 * dk2[i, c] + 2.0 * dk3[i, c] + dk4[i, c]
                    )
        row = record[step + 1]
        if row >= 0:
            out[row, :] = y
            if with_sens:
                sens[row, :, :] = s
    return OK


def _rms_scaled(v, y_a, y_b, rtol, atol):
    acc = 0.0
    for i in range(v.size):
        scale = atol + rtol * max(abs(y_a[i]), abs(y_b[i]))
        acc += (v[i] / scale) ** 2
    return math.sqrt(acc / max(v.size, 1))


def _initial_step(t0, y0, p, f0, span, rtol, atol, work_y, work_f):
    """Hairer, Nørsett & Wanner (1993), §II.4 (the starting step of their DOPRI5 code)."""
    n = y0.size
    d0 = _rms_scaled(y0, y0, y0, rtol, atol)
    d1 = _rms_scaled(f0, y0, y0, rtol, atol)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    h0 = min(h0, span)
    for i in range(n):
        work_y[i] = y0[i] + h0 * f0[i]
    _rhs(t0 + h0, work_y, p, work_f)
    for i in range(n):
        work_f[i] = work_f[i] - f0[i]
    d2 = _rms_scaled(work_f, y0, y0, rtol, atol) / h0
    big = max(d1, d2)
    h1 = max(1e-6, h0 * 1e-3) if big <= 1e-15 else (0.01 / big) ** 0.2
    return min(100.0 * h0, h1, span)


def dopri5(y0, p, t0, times, rtol, atol, max_steps, out, sens, with_sens, sens_error):
    """Dormand–Prince 5(4) with step-size control; steps end on every output time.

    The error of a step is the root mean square of ``e_i / (atol + rtol max(|y_i|, |y_new_i|))``
    over the state, and over the sensitivities as well when ``with_sens and sens_error``; a step
    is accepted when it is ≤ 1, and the next step is the current one times
    ``min(10, max(0.2, 0.9 err^(-1/5)))``. Returns ``OK``, ``TOO_MANY_STEPS`` (more than
    ``max_steps`` attempted steps) or ``STEP_UNDERFLOW`` (non-finite state or a step below
    round-off); the outputs not reached are NaN.
    """
    n = y0.size
    m = p.size
    q = n + m
    n_out = times.size
    y = y0.copy()
    y_new = np.empty(n)
    tmp = np.empty(n)
    err = np.empty(n)
    k = np.zeros((7, n))
    s = np.zeros((n, q))
    for i in range(n):
        s[i, i] = 1.0
    s_new = np.empty((n, q))
    stmp = np.empty((n, q))
    dk = np.zeros((7, n, q))
    jy = np.zeros((n, n))
    jp = np.zeros((n, m))
    out[:, :] = np.nan
    if with_sens:
        sens[:, :, :] = np.nan
    t = t0
    row = 0
    while row < n_out and times[row] <= t0:
        out[row, :] = y
        if with_sens:
            sens[row, :, :] = s
        row += 1
    if row == n_out:
        return OK
    _stage(t, y, p, s, k[0], dk[0], jy, jp, with_sens)
    h = _initial_step(t, y, p, k[0], times[n_out - 1] - t0, rtol, atol, tmp, err)
    attempts = 0
    while row < n_out:
        attempts += 1
        if attempts > max_steps:
            return TOO_MANY_STEPS
        target = times[row]
        hit = t + h >= target - 1e-12 * max(abs(target), 1.0)
        h_try = target - t if hit else h
        if not (h_try > 1e-14 * max(abs(t), 1.0)) or not math.isfinite(h_try):
            return STEP_UNDERFLOW
        for st in range(1, 7):
            for i in range(n):
                acc = y[i]
                for j in range(st):
                    acc += h_try * DP_A[st, j] * k[j, i]
                tmp[i] = acc
            if with_sens:
                for i in range(n):
                    for c in range(q):
                        acc = s[i, c]
                        for j in range(st):
                            acc += h_try * DP_A[st, j] * dk[j, i, c]
                        stmp[i, c] = acc
            _stage(t + DP_C[st] * h_try, tmp, p, stmp, k[st], dk[st], jy, jp, with_sens)
            if st == 6:
                for i in range(n):
                    y_new[i] = tmp[i]
                if with_sens:
                    for i in range(n):
                        for c in range(q):
                            s_new[i, c] = stmp[i, c]
        for i in range(n):
            acc = 0.0
            for j in range(7):
                acc += DP_E[j] * k[j, i]
            err[i] = h_try * acc
        err_norm = _rms_scaled(err, y, y_new, rtol, atol)
        if with_sens and sens_error:
            # RMS over the state and the sensitivities together (Stan's coupled system,
            # CVODES' errconS): the gradient is then as accurate as the state.
            acc = err_norm * err_norm * n
            for i in range(n):
                for c in range(q):
                    e = 0.0
                    for j in range(7):
                        e += DP_E[j] * dk[j, i, c]
                    scale = atol + rtol * max(abs(s[i, c]), abs(s_new[i, c]))
                    acc += (h_try * e / scale) ** 2
            err_norm = math.sqrt(acc / (n * (1 + q)))
        if not math.isfinite(err_norm):
            h = 0.2 * h_try
            continue
        if err_norm <= 1.0:
            t = target if hit else t + h_try
            for i in range(n):
                y[i] = y_new[i]
                k[0, i] = k[6, i]
            if with_sens:
                for i in range(n):
                    for c in range(q):
                        s[i, c] = s_new[i, c]
                        dk[0, i, c] = dk[6, i, c]
            factor = 10.0 if err_norm == 0.0 else min(10.0, 0.9 * err_norm**-0.2)
            h_next = h_try * factor
            h = max(h_next, h) if hit else h_next
            if hit:
                out[row, :] = y
                if with_sens:
                    sens[row, :, :] = s
                row += 1
        else:
            h = h_try * max(0.2, 0.9 * err_norm**-0.2)
    return OK
