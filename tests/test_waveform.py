"""Tests of the waveform physics: Ricker wavelet, convolutional model, shifted wavelet."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import integrate, optimize

from bayesjoint.physics.waveform import (
    ConvolutionalSeismogram,
    ShiftedWavelet,
    convolutional_seismogram,
    reflectivity_from_impedance,
    ricker,
)
from bayesjoint.validate import taylor_test

F = 25.0  # Hz
T0 = 0.3  # s


def test_ricker_closed_form_points():
    # r(τ) = (1 − 2u) e^{−u}, u = π²f²τ²: r = 1 at τ = 0; r = 0 where u = 1/2, i.e.
    # τ = ±1/(πf√2); dr/du = (2u − 3) e^{−u} = 0 at u = 3/2, where r = −2 e^{−3/2}.
    tau_zero = 1.0 / (np.pi * F * np.sqrt(2.0))
    tau_lobe = np.sqrt(1.5) / (np.pi * F)
    assert ricker(np.array(T0), F, T0) == 1.0
    # atol: rounding of t (ulp(0.3 s) ≈ 6e-17 s) times the slope there (|r'| ≈ 2.4πf ≈ 190 /s).
    np.testing.assert_allclose(ricker(T0 + np.array([-tau_zero, tau_zero]), F, T0), 0, atol=1e-13)
    np.testing.assert_allclose(
        ricker(T0 + np.array([-tau_lobe, tau_lobe]), F, T0), -2 * np.exp(-1.5), rtol=1e-14
    )
    # Independent of the derivation: locate the crossing and the side lobe numerically.
    root = optimize.brentq(lambda t: ricker(t, F, T0), T0, T0 + 1.5 * tau_zero, xtol=1e-15)
    assert abs(root - (T0 + tau_zero)) < 1e-12  # brentq's xtol plus round-off
    lobe = optimize.minimize_scalar(
        lambda t: ricker(t, F, T0),
        bounds=(T0, T0 + 0.05),
        method="bounded",
        options={"xatol": 1e-10},
    )
    assert abs(lobe.x - (T0 + tau_lobe)) < 1e-7  # a flat minimum: position good to ~sqrt(eps)


def test_ricker_zero_mean():
    value, _ = integrate.quad(lambda t: ricker(t, F, T0), T0 - 1.0, T0 + 1.0, points=[T0])
    scale, _ = integrate.quad(lambda t: abs(ricker(t, F, T0)), T0 - 1.0, T0 + 1.0, points=[T0])
    # exp(−π²f²) beyond ±1 s is 0 in double precision; quad's own error is ~1e-14.
    assert abs(value) < 1e-10 * scale


def _fourier_amplitude(nu: float) -> float:
    # The wavelet is even about t0: |R(ν)| = |∫ r(τ) cos(2πντ) dτ|.
    value, _ = integrate.quad(
        lambda tau: ricker(tau, F) * np.cos(2 * np.pi * nu * tau), -0.2, 0.2, limit=200
    )
    return abs(value)


def test_ricker_spectrum_closed_form_and_peak():
    nus = np.array([5.0, 25.0, 60.0])
    expected = 2 / np.sqrt(np.pi) * nus**2 / F**3 * np.exp(-(nus**2) / F**2)
    got = [_fourier_amplitude(nu) for nu in nus]
    np.testing.assert_allclose(got, expected, rtol=1e-8)  # quadrature accuracy (epsrel 1.5e-8)
    peak = optimize.minimize_scalar(
        lambda nu: -_fourier_amplitude(nu), bounds=(5.0, 60.0), method="bounded"
    )
    assert abs(peak.x - F) < 1e-3 * F  # flat maximum: located to ~sqrt(quad error)


def test_ricker_symbolic_equals_numpy():
    t = np.linspace(0.0, 0.6, 61)
    t0 = pt.dscalar("t0")
    fn = pytensor.function([t0], ricker(t, F, t0))
    np.testing.assert_allclose(fn(T0), ricker(t, F, T0), rtol=1e-14, atol=1e-15)  # round-off


def test_reflectivity_formula():
    z = np.array([2.0, 6.0, 6.0, 3.0])
    # (6 − 2)/(6 + 2) = 0.5; 0; (3 − 6)/(3 + 6) = −1/3. Tolerances: one or two roundings.
    np.testing.assert_allclose(reflectivity_from_impedance(z), [0.5, 0.0, -1 / 3], rtol=1e-15)
    np.testing.assert_allclose(
        reflectivity_from_impedance(np.log(z), log=True), [0.5, 0.0, -1 / 3], rtol=1e-14
    )  # tanh(Δ ln Z / 2) is the same quantity
    batch = np.stack([z, z[::-1]])
    np.testing.assert_allclose(
        reflectivity_from_impedance(batch)[1], [1 / 3, 0.0, -0.5], rtol=1e-15
    )


def test_convolution_matches_numpy_convolve():
    rng = np.random.default_rng(7)
    r = rng.standard_normal(40)
    w = ricker(np.arange(-10, 11) * 0.002, F)
    for center in (None, 4):
        c = 10 if center is None else center
        expected = np.convolve(r, w)[c : c + r.size]
        got = convolutional_seismogram(wavelet=w, reflectivity=r, center=center)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)  # round-off
    # Same sums in another order/backend below: round-off tolerances (1e-12 rel, 1e-14 abs).
    batch = rng.standard_normal((3, 40))
    got = convolutional_seismogram(wavelet=w, reflectivity=batch)
    for row, trace in zip(batch, got, strict=True):
        np.testing.assert_allclose(trace, np.convolve(row, w)[10:50], rtol=1e-12, atol=1e-14)
    sym = pt.matrix("r", dtype="float64")
    fn = pytensor.function([sym], convolutional_seismogram(wavelet=w, reflectivity=sym))
    np.testing.assert_allclose(fn(batch), got, rtol=1e-12, atol=1e-14)
    z = np.exp(rng.standard_normal(41))
    np.testing.assert_allclose(
        convolutional_seismogram(wavelet=w, impedance=z),
        np.convolve(reflectivity_from_impedance(z), w)[10:50],
        rtol=1e-12,
        atol=1e-14,
    )


def test_convolutional_physics_linear_operator():
    w = ricker(np.arange(-6, 7) * 0.004, F)
    op = ConvolutionalSeismogram(w, input="r", kind="reflectivity", n_samples=30)
    matrix, offset = op.linear_operator()
    r = np.random.default_rng(2).standard_normal(30)
    # The Toeplitz product and the convolution add the same terms: round-off only.
    np.testing.assert_allclose(matrix @ r + offset, op(r=r), rtol=1e-12, atol=1e-14)
    assert op.output_shape({"r": (30,)}) == (30,)
    assert ConvolutionalSeismogram(w).linear_operator() is None  # impedance: nonlinear


def test_taylor_log_impedance_seismogram():
    w = ricker(np.arange(-6, 7) * 0.004, F)
    op = ConvolutionalSeismogram(w, input="logz", log=True)
    x0 = np.random.default_rng(4).normal(15.0, 0.3, size=20)
    # Steps relative to max|x0| ≈ 15: keep the perturbations of ln Z below ~0.1.
    result = taylor_test(
        lambda x: op({"logz": x}), x0, random_seed=5, steps=2.0 ** -np.arange(7, 15)
    )
    assert abs(result.slope - 2.0) < 0.2


def test_shifted_wavelet_values_and_taylor():
    times = np.linspace(0.0, 0.5, 101)
    op = ShiftedWavelet(times, F, input="t_a", amplitude="amp")
    assert op.inputs == ("t_a", "amp")
    t_a, amp = np.array([0.1, 0.2, 0.33]), np.array([1.0, -0.5, 2.0])
    out = op(t_a=t_a, amp=amp)
    assert out.shape == op.output_shape({"t_a": (3,), "amp": (3,)}) == (3, 101)
    # Same formula, one extra multiplication: round-off only.
    np.testing.assert_allclose(out[1], -0.5 * ricker(times, F, 0.2), rtol=1e-14, atol=1e-15)

    def traces(x):
        return op({"t_a": x[:3], "amp": x[3:]})

    result = taylor_test(
        traces, np.concatenate([t_a, amp]), random_seed=6, steps=2.0 ** -np.arange(8, 16)
    )
    assert abs(result.slope - 2.0) < 0.2  # second-order remainder: the gradient is right


def test_negative_controls():
    # A wrong zero-crossing formula (1/(πf)) is detected.
    assert abs(ricker(np.array(T0 + 1.0 / (np.pi * F)), F, T0)) > 0.1
    # A one-sample misalignment of the wavelet is detected.
    rng = np.random.default_rng(1)
    r, w = rng.standard_normal(30), ricker(np.arange(-6, 7) * 0.004, F)
    shifted = convolutional_seismogram(wavelet=w, reflectivity=r, center=7)
    assert not np.allclose(shifted, np.convolve(r, w)[6:36], rtol=1e-6)
    # A gradient that misses the arrival time gives slope ≈ 1.
    op = ShiftedWavelet(np.linspace(0.0, 0.5, 101), F)
    broken = taylor_test(
        lambda x: op({"arrival_time": pytensor.gradient.disconnected_grad(x)}) + 0.1 * x[..., None],
        np.array([0.1, 0.2]),
        random_seed=6,
        steps=2.0 ** -np.arange(8, 16),
    )
    assert abs(broken.slope - 2.0) > 0.5


def test_bad_input_raises():
    with pytest.raises(ValueError, match="peak_frequency"):
        ricker(np.zeros(3), -1.0)
    with pytest.raises(ValueError, match="impedance"):
        reflectivity_from_impedance(np.array([1.0, -2.0]))
    with pytest.raises(TypeError, match="exactly one"):
        convolutional_seismogram(wavelet=np.ones(3))
    with pytest.raises(ValueError, match="kind"):
        ConvolutionalSeismogram(np.ones(3), kind="velocity")
    with pytest.raises(ValueError, match="times"):
        ShiftedWavelet(np.zeros((2, 2)), F)
