"""Tests of the 1-D DC resistivity sounding physics against closed forms and quadrature."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import integrate, special

from bayesjoint.physics.resistivity import (
    Schlumberger,
    Wenner,
    resistivity_transform,
    schlumberger,
    wenner,
)
from bayesjoint.validate import taylor_test

AB2 = np.logspace(0.0, 3.0, 31)  # AB/2 (or a) from 1 m to 1000 m
# (ρ1, ρ2, h1): k = (ρ2 − ρ1)/(ρ2 + ρ1) = −0.9, −0.5, +0.3, +0.9, −0.9 (thin), +0.9 (thick)
TWO_LAYER = [
    (19.0, 1.0, 5.0),
    (300.0, 100.0, 10.0),
    (10.0, 130.0 / 7.0, 2.0),
    (1.0, 19.0, 1.0),
    (190.0, 10.0, 0.5),
    (5.0, 95.0, 300.0),
]


def _image_terms(k: float) -> np.ndarray:
    # Sum to convergence: |k|^n < 1e-17 so every neglected term is below double round-off.
    n_max = int(np.ceil(np.log(1e-17) / np.log(max(abs(k), 1e-3)))) + 1
    return np.arange(1, n_max + 1)[:, None]


def schlumberger_image_series(rho1: float, rho2: float, h: float, s: np.ndarray) -> np.ndarray:
    """ρa = ρ1[1 + 2 Σ kⁿ s³/(s² + (2nh)²)^{3/2}] (Telford et al. 1990, Applied Geophysics §8.5)."""
    k = (rho2 - rho1) / (rho2 + rho1)
    n = _image_terms(k)
    return rho1 * (1.0 + 2.0 * np.sum(k**n * s**3 / (s**2 + (2.0 * n * h) ** 2) ** 1.5, axis=0))


def wenner_image_series(rho1: float, rho2: float, h: float, a: np.ndarray) -> np.ndarray:
    """ρa = ρ1[1 + 4 Σ kⁿ (1/√(1 + (2nh/a)²) − 1/√(4 + (2nh/a)²))] (Telford et al. 1990)."""
    k = (rho2 - rho1) / (rho2 + rho1)
    n = _image_terms(k)
    x = 2.0 * n * h / a
    return rho1 * (1.0 + 4.0 * np.sum(k**n * (1 / np.sqrt(1 + x**2) - 1 / np.sqrt(4 + x**2)), 0))


@pytest.mark.parametrize(("rho1", "rho2", "h"), TWO_LAYER)
def test_schlumberger_matches_two_layer_image_series(rho1, rho2, h):
    got = schlumberger([rho1, rho2], [h], AB2)
    # Measured error of the 135-point filter is < 2e-8 over these cases; 1e-6 leaves margin for
    # platform round-off and is far inside the required 1e-4.
    np.testing.assert_allclose(got, schlumberger_image_series(rho1, rho2, h, AB2), rtol=1e-6)


@pytest.mark.parametrize(("rho1", "rho2", "h"), TWO_LAYER)
def test_wenner_matches_two_layer_image_series(rho1, rho2, h):
    got = wenner([rho1, rho2], [h], AB2)
    # Measured < 3e-9; same margin as above.
    np.testing.assert_allclose(got, wenner_image_series(rho1, rho2, h, AB2), rtol=1e-6)


def test_three_layer_matches_brute_force_quadrature():
    # Independent of the filter: ρa = ρ1 + s² ∫ (T − ρ1) λ J1(λs) dλ by adaptive quadrature.
    rho, thick = np.array([50.0, 5.0, 200.0]), np.array([2.0, 6.0])
    spacings = np.array([3.0, 10.0, 30.0])

    def integrand(lam, s):
        t = resistivity_transform(rho, thick, np.array([lam]))[0]
        return (t - rho[0]) * lam * special.j1(lam * s)

    expected = []
    for s in spacings:
        # T − ρ1 decays as exp(−2λh1); beyond λ = 12 the integrand is below 1e-9 of its peak.
        value, _ = integrate.quad(integrand, 0.0, 12.0, args=(s,), limit=2000, epsabs=1e-12)
        expected.append(rho[0] + s**2 * value)
    # quad's estimated error is ~1e-9 here; the filter's ~1e-8: 1e-6 covers both.
    np.testing.assert_allclose(schlumberger(rho, thick, spacings), expected, rtol=1e-6)


def test_half_space_returns_rho1_exactly():
    # T − ρ1 is identically zero, so the filter sum adds exactly nothing.
    for fn in (schlumberger, wenner):
        np.testing.assert_array_equal(fn([42.0], [], AB2), np.full(AB2.shape, 42.0))
    # Equal layers: the recursion returns ρ up to round-off only.
    np.testing.assert_allclose(schlumberger([7.0, 7.0, 7.0], [1.0, 3.0], AB2), 7.0, rtol=1e-13)


def test_reduces_to_two_layers_when_layers_merge():
    # Exact identities of the recursion: equal adjacent layers merge (thicknesses add).
    three = schlumberger([20.0, 20.0, 80.0], [3.0, 4.0], AB2)
    two = schlumberger([20.0, 80.0], [7.0], AB2)
    np.testing.assert_allclose(three, two, rtol=1e-12)  # round-off only


def test_symbolic_path_equals_numpy_path():
    rho = pt.tensor("rho", shape=(3,), dtype="float64")
    thick = pt.tensor("thick", shape=(2,), dtype="float64")
    fn = pytensor.function([rho, thick], [schlumberger(rho, thick, AB2), wenner(rho, thick, AB2)])
    values = (np.array([30.0, 300.0, 10.0]), np.array([4.0, 20.0]))
    got_s, got_w = fn(*values)
    # Same arithmetic in another backend: round-off only.
    np.testing.assert_allclose(got_s, schlumberger(*values, AB2), rtol=1e-12)
    np.testing.assert_allclose(got_w, wenner(*values, AB2), rtol=1e-12)


def _log_model(x):
    # x = (ln ρ1, ln ρ2, ln ρ3, h1 / 10 m, h2 / 10 m): O(1) entries keep the Taylor steps sensible.
    return schlumberger(pt.exp(x[:3]), 10.0 * x[3:], AB2[::3])


X0 = np.array([np.log(30.0), np.log(300.0), np.log(10.0), 0.4, 2.0])
# Steps relative to max|x0| = ln 300: small enough to keep every thickness positive.
STEPS = 2.0 ** -np.arange(6, 14)


def test_taylor_log_resistivities_and_thicknesses():
    result = taylor_test(_log_model, X0, random_seed=3, steps=STEPS)
    assert abs(result.slope - 2.0) < 0.2  # second-order remainder: correct gradient


def test_negative_controls():
    rho1, rho2, h = 19.0, 1.0, 5.0
    reference = schlumberger_image_series(rho1, rho2, h, AB2)
    # A 1 % error in thickness is detected by the tolerance used above.
    wrong = schlumberger([rho1, rho2], [1.01 * h], AB2)
    assert not np.allclose(wrong, reference, rtol=1e-6, atol=0)
    # Confusing the arrays is detected: Wenner is not Schlumberger.
    assert not np.allclose(wenner([rho1, rho2], [h], AB2), reference, rtol=1e-4, atol=0)
    # A gradient that ignores the thicknesses gives a first-order remainder (slope ≈ 1).
    broken = taylor_test(
        lambda x: schlumberger(
            pt.exp(x[:3]), 10.0 * pytensor.gradient.disconnected_grad(x[3:]), AB2[::3]
        ),
        X0,
        random_seed=3,
        steps=STEPS,
    )
    assert abs(broken.slope - 2.0) > 0.5


def test_physics_classes():
    op = Schlumberger(AB2, resistivity="m", thickness="h", log=True)
    assert op.inputs == ("m", "h")
    assert op.output_shape({"m": (3,), "h": (2,)}) == (AB2.size,)
    m, h = np.log([30.0, 300.0, 10.0]), np.array([4.0, 20.0])
    np.testing.assert_allclose(op(m=m, h=h), schlumberger(np.exp(m), h, AB2), rtol=1e-14)
    sym_m = pt.tensor("m", shape=(3,), dtype="float64")
    sym_h = pt.tensor("h", shape=(2,), dtype="float64")
    out = pytensor.function([sym_m, sym_h], op({"m": sym_m, "h": sym_h}))(m, h)
    np.testing.assert_allclose(out, schlumberger(np.exp(m), h, AB2), rtol=1e-12)  # round-off

    fixed = Wenner(AB2, resistivity="rho", thickness=[4.0, 20.0], log=False)
    assert fixed.inputs == ("rho",)
    np.testing.assert_allclose(
        fixed(rho=np.exp(m)), wenner(np.exp(m), h, AB2), rtol=1e-14
    )  # same kernel
    with pytest.raises(ValueError, match="n_layers"):
        op.output_shape({"m": (3,), "h": (3,)})


def test_bad_input_raises():
    with pytest.raises(ValueError, match="resistivities"):
        schlumberger([10.0, -1.0], [1.0], AB2)
    with pytest.raises(ValueError, match="thicknesses"):
        schlumberger([10.0, 1.0], [1.0, 2.0], AB2)
    with pytest.raises(ValueError, match="ab2"):
        schlumberger([10.0, 1.0], [1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="fixed shape"):
        schlumberger(pt.vector("rho"), pt.vector("h"), AB2)
    with pytest.raises(TypeError, match="resistivity"):
        Schlumberger(AB2, resistivity=3)
