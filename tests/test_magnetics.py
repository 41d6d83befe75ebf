"""Tests of bayesjoint.physics.magnetics against the dipole closed form, quadrature, invariances."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.constants import mu_0
from scipy.special import roots_legendre

import bayesjoint as bj
from bayesjoint.physics.magnetics import (
    Magnetics,
    dipole_field,
    field_direction,
    magnetic_sensitivity,
    prism_field,
    prism_total_field,
)
from bayesjoint.validate import taylor_test

F_NT = 50000.0


def dipole_quadrature(bounds, magnetization, points, n):
    """B (nT) of a uniformly magnetized prism by n³-point Gauss–Legendre sums of dipoles."""
    x, w = roots_legendre(n)
    axes = []
    for lo, hi in zip(bounds[0::2], bounds[1::2], strict=True):
        axes.append((0.5 * (hi - lo) * x + 0.5 * (hi + lo), 0.5 * (hi - lo) * w))
    (xs, wx), (ys, wy), (zs, wz) = axes
    mesh = np.meshgrid(xs, ys, zs, indexing="ij")
    src = np.stack([m.ravel() for m in mesh], axis=-1)
    weights = (wx[:, None, None] * wy[None, :, None] * wz[None, None, :]).ravel()
    moments = weights[:, None] * np.asarray(magnetization, dtype=float)[None, :]
    return np.stack([dipole_field(moments, src, [p])[0] for p in np.atleast_2d(points)])


# ---------------------------------------------------------------- dipole reference (closed_form.md)
def test_dipole_reference_values():
    # closed_form.md: m = 1 A·m², r = 1 m: 200 nT on the axis, 100 nT opposite on the equator,
    # rtol 1e-9.
    pts = [[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]
    b = dipole_field([0.0, 0.0, 1.0], [0.0, 0.0, 0.0], pts)
    np.testing.assert_allclose(b[:, 2], [200.0, 200.0, -100.0, -100.0], rtol=1e-9)
    np.testing.assert_allclose(b[:, :2], 0.0, atol=1e-12)
    # Same values for a dipole along x, moved away from the origin (translation + rotation).
    b2 = dipole_field([1.0, 0.0, 0.0], [3.0, -2.0, -5.0], [[4.0, -2.0, -5.0], [3.0, -1.0, -5.0]])
    np.testing.assert_allclose(b2[:, 0], [200.0, -100.0], rtol=1e-9)


def test_field_direction_conventions():
    # x east, y north, z up; inclination positive down; declination east of north.
    np.testing.assert_allclose(field_direction(90.0, 0.0), [0.0, 0.0, -1.0], atol=1e-15)
    np.testing.assert_allclose(field_direction(0.0, 0.0), [0.0, 1.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(field_direction(0.0, 90.0), [1.0, 0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(
        field_direction(45.0, 0.0), [0.0, np.sqrt(0.5), -np.sqrt(0.5)], atol=1e-15
    )


# ------------------------------------------------------------ prism against independent numerics
@pytest.mark.parametrize("point", [[7.0, 3.0, 2.0], [40.0, -20.0, -5.0]])
def test_prism_field_matches_dipole_quadrature(point):
    bounds = [-10.0, 20.0, -5.0, 15.0, -30.0, -8.0]
    mag = [1.0, -2.0, 3.0]
    ref40 = dipole_quadrature(bounds, mag, point, 40)
    ref30 = dipole_quadrature(bounds, mag, point, 30)
    scale = np.max(np.abs(ref40))
    # Gauss–Legendre converges exponentially for this smooth integrand: 30 vs 40 points agree
    # to < 1e-11, so the 40-point sum is a reference to ~1e-12 relative.
    assert np.max(np.abs(ref40 - ref30)) < 1e-11 * scale
    b = prism_field(bounds, mag, point)
    np.testing.assert_allclose(b, ref40, rtol=0, atol=1e-10 * scale)


def test_far_field_cube_is_dipole():
    a, depth, chi = 10.0, 100.0, 0.01
    cube = [-a / 2, a / 2, -a / 2, a / 2, -depth - a / 2, -depth + a / 2]
    pts = np.array([[150.0, 70.0, 0.0], [-200.0, 30.0, 50.0], [0.0, 0.0, 100.0]])
    for inc, dec in [(60.0, 10.0), (-30.0, 250.0), (90.0, 0.0)]:
        fhat = field_direction(inc, dec)
        moment = chi * F_NT * 1e-9 / mu_0 * a**3 * fhat  # M = χ F / μ0, m = M V (A·m²)
        dipole = dipole_field(moment, [0.0, 0.0, -depth], pts) @ fhat
        # A cube has no quadrupole, so the dipole approximation is good to O((a/r)⁴) ≈ 1e-5.
        np.testing.assert_allclose(
            prism_total_field(cube, chi, pts, inc, dec, F_NT), dipole, rtol=1e-4
        )


def test_vertical_field_anomaly_is_symmetric_about_body():
    # Pole (I = 90°): the field and magnetization are vertical, so a square prism's anomaly has the
    # square's symmetry; the eight stations below are images of one another.
    bounds = [-25.0, 25.0, -25.0, 25.0, -80.0, -30.0]
    d1, d2 = 15.0, 60.0
    pts = np.array(
        [[sx * a, sy * b, 0.0] for a, b in [(d1, d2), (d2, d1)] for sx in (1, -1) for sy in (1, -1)]
    )
    t = prism_total_field(bounds, 0.02, pts, 90.0, 37.0, F_NT)
    np.testing.assert_allclose(t, np.full(8, t[0]), rtol=1e-12)  # round-off only
    # Directly above the body a positive susceptibility gives a positive anomaly at the pole.
    assert prism_total_field(bounds, 0.02, [0.0, 0.0, 0.0], 90.0, 0.0, F_NT)[0] > 0


def test_laplace_trace_vanishes_outside():
    # Σ over three orthogonal inducing directions of F̂ᵀ T F̂ is trace(T) = ∇²(∫1/r) = 0 outside.
    bounds = [-10.0, 20.0, -5.0, 15.0, -30.0, -8.0]
    pts = np.array([[7.0, 3.0, 0.0], [40.0, -20.0, -5.0], [0.0, 0.0, -40.0]])
    dirs = [(0.0, 90.0), (0.0, 0.0), (90.0, 0.0)]  # east, north, down
    parts = [prism_total_field(bounds, 1.0, pts, inc, dec, F_NT) for inc, dec in dirs]
    np.testing.assert_allclose(sum(parts), 0.0, atol=1e-12 * np.max(np.abs(parts)))


def test_superposition_of_sub_prisms():
    xe, ye, ze = np.linspace(-50, 50, 3), np.linspace(-40, 60, 4), np.linspace(-150, -50, 3)
    sub = np.array(
        [
            [xe[i], xe[i + 1], ye[j], ye[j + 1], ze[k], ze[k + 1]]
            for i in range(2)
            for j in range(3)
            for k in range(2)
        ]
    )
    pts = np.array([[13.0, -7.0, 5.0], [1.0, 2.0, 0.0], [200.0, -30.0, 1.0], [60.0, 70.0, -50.0]])
    whole = prism_total_field([-50, 50, -40, 60, -150, -50], 0.03, pts, 65.0, -12.0, F_NT)
    parts = prism_total_field(sub, 0.03, pts, 65.0, -12.0, F_NT)
    # Superposition is exact; only round-off of the corner sums differs.
    np.testing.assert_allclose(parts, whole, rtol=1e-10)


def test_2d_sensitivity_matches_long_3d_row():
    xe, ze = np.linspace(-40.0, 40.0, 5), np.linspace(-60.0, -20.0, 3)
    g2 = bj.Grid.from_edges(x=xe, z=ze)
    g3 = bj.Grid.from_edges(x=xe, y=[-1e5, 1e5], z=ze)  # one 2e5 m long cell along y
    st2 = np.array([[-30.0, 0.0], [5.0, 0.0], [70.0, 3.0]])
    st3 = np.c_[st2[:, 0], np.zeros(3), st2[:, 1]]
    for inc, dec in [(60.0, 10.0), (90.0, 0.0), (-30.0, 70.0), (0.0, 90.0)]:
        a2 = magnetic_sensitivity(g2, st2, inc, dec, F_NT)
        a3 = magnetic_sensitivity(g3, st3, inc, dec, F_NT)
        # The truncated row misses the field of its far ends: O((distance / L)²) ≈ 1e-6.
        np.testing.assert_allclose(a2, a3, rtol=1e-5, atol=1e-6 * np.max(np.abs(a3)))


# ---------------------------------------------------------------- points on planes and edges
@pytest.mark.parametrize(
    "point",
    [[3.0, 4.0, 0.0], [20.0, 30.0, -10.0], [20.0, 15.0, 5.0], [20.0, 0.0, 3.0]],
    ids=["top-face", "side-plane", "edge-line", "side-plane-above"],
)
def test_observer_on_planes_is_continuous(point):
    bounds = [-10.0, 20.0, -5.0, 15.0, -30.0, 0.0]
    p = np.array(point)
    b0 = prism_field(bounds, [1.0, 2.0, 3.0], p)
    assert np.all(np.isfinite(b0))
    # On the top face the value is the limit from above; elsewhere the field is continuous. A
    # 1e-7 m offset (upward) changes it by at most ~|∇B|·1e-7 ≈ 1e-4 nT.
    for shift in ([1e-7, 1e-7, 1e-7], [-1e-7, -1e-7, 1e-7]):
        np.testing.assert_allclose(prism_field(bounds, [1.0, 2.0, 3.0], p + shift), b0, atol=1e-3)


def test_observer_on_edge_raises():
    bounds = [-10.0, 20.0, -5.0, 15.0, -30.0, 0.0]
    with pytest.raises(ValueError, match="edge or corner"):
        prism_field(bounds, [0.0, 0.0, 1.0], [3.0, 15.0, 0.0])
    grid = bj.Grid.from_edges(x=[0.0, 10.0, 20.0], y=[0.0, 10.0], z=[-10.0, 0.0])
    with pytest.raises(ValueError, match="station 1"):
        magnetic_sensitivity(grid, [[5.0, 5.0, 0.0], [10.0, 5.0, 0.0]], 60.0, 0.0, F_NT)
    # Off the edges (stations on grid nodes but above the top) is fine.
    assert np.all(np.isfinite(magnetic_sensitivity(grid, [[10.0, 10.0, 1.0]], 60.0, 0.0, F_NT)))


# ---------------------------------------------------------------- sensitivity and physics
def test_sensitivity_matches_prism_sum_and_axis_order():
    rng = np.random.default_rng(7)
    xe, ye = np.array([0.0, 10.0, 25.0]), np.array([-5.0, 5.0, 12.0, 20.0])
    ze = np.array([-30.0, -18.0, -10.0, 0.0])
    grid = bj.Grid.from_edges(x=xe, y=ye, z=ze)
    st = np.c_[rng.uniform(-20, 40, 6), rng.uniform(-20, 30, 6), np.zeros(6)]
    a = magnetic_sensitivity(grid, st, 55.0, 20.0, F_NT)
    chi = rng.uniform(0.0, 0.05, grid.shape)
    ref = prism_total_field(grid.cell_bounds(), chi.ravel(), st, 55.0, 20.0, F_NT)
    # Node-shared and per-prism evaluations are the same formulas up to round-off.
    np.testing.assert_allclose(a @ chi.ravel(), ref, rtol=1e-10)
    perm = bj.Grid.from_edges(y=ye, z=ze, x=xe)
    a_perm = magnetic_sensitivity(perm, st, 55.0, 20.0, F_NT)
    np.testing.assert_allclose(a_perm @ chi.transpose(1, 2, 0).ravel(), ref, rtol=1e-10)


def test_magnetics_physics_is_linear_with_exact_gradient():
    grid = bj.Grid.from_edges(x=[-50.0, 0.0, 50.0], y=[-50.0, 50.0], z=[-150.0, -100.0, -50.0])
    st = [[0.0, 0.0, 1.0], [30.0, 10.0, 1.0]]
    op = Magnetics(grid, st, inclination=60.0, declination=5.0, strength=F_NT)
    assert op.inputs == ("susceptibility",)
    chi = np.full(grid.shape, 0.01)
    ref = prism_total_field([-50, 50, -50, 50, -150, -50], 0.01, st, 60.0, 5.0, F_NT)
    np.testing.assert_allclose(op(susceptibility=chi), ref, rtol=1e-10)  # superposition
    res = taylor_test(lambda x: op.forward({"susceptibility": x}), chi, random_seed=2)
    # Linear operator: the first-order remainder is round-off, far below the O(h) change.
    assert np.max(res.first) < 1e-10 * np.max(res.zeroth)


# ---------------------------------------------------------------- negative controls and errors
def test_negative_controls_detect_wrong_inputs():
    # A moment 1e-6 too large, or the observer on the wrong axis, fails the 1e-9 reference.
    b = dipole_field([0.0, 0.0, 1.000001], [0.0, 0.0, 0.0], [[0.0, 0.0, 1.0]])
    assert not np.isclose(b[0, 2], 200.0, rtol=1e-9)
    b = dipole_field([0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [[1.0, 0.0, 0.0]])
    assert not np.isclose(b[0, 2], 200.0, rtol=1e-9)
    # The far-field check detects a wrong moment (χ off by 1 %).
    cube = [-5.0, 5.0, -5.0, 5.0, -105.0, -95.0]
    fhat = field_direction(60.0, 10.0)
    wrong = 0.0101 * F_NT * 1e-9 / mu_0 * 1000.0 * fhat
    dip = dipole_field(wrong, [0.0, 0.0, -100.0], [[150.0, 70.0, 0.0]]) @ fhat
    tot = prism_total_field(cube, 0.01, [[150.0, 70.0, 0.0]], 60.0, 10.0, F_NT)
    assert not np.allclose(tot, dip, rtol=1e-4)
    # Away from the pole, flipping the inclination sign changes a non-symmetric anomaly.
    a = prism_total_field(cube, 0.01, [[30.0, 20.0, 0.0]], 45.0, 0.0, F_NT)
    b = prism_total_field(cube, 0.01, [[30.0, 20.0, 0.0]], -45.0, 0.0, F_NT)
    assert not np.isclose(a[0], b[0], rtol=1e-3)


def test_bad_inputs_raise():
    grid = bj.Grid.from_edges(x=[0.0, 1.0], y=[0.0, 1.0], z=[-1.0, 0.0])
    with pytest.raises(ValueError, match="inclination"):
        magnetic_sensitivity(grid, [[0.5, 0.5, 1.0]], 95.0, 0.0, F_NT)
    with pytest.raises(ValueError, match="strength"):
        magnetic_sensitivity(grid, [[0.5, 0.5, 1.0]], 60.0, 0.0, -1.0)
    with pytest.raises(TypeError, match="inclination"):
        field_direction("steep", 0.0)
    with pytest.raises(ValueError, match="magnetization"):
        prism_field([0, 1, 0, 1, -1, 0], np.ones((2, 3)), [0.5, 0.5, 1.0])
    with pytest.raises(ValueError, match="coincide"):
        dipole_field([0, 0, 1.0], [0, 0, 0.0], [0, 0, 0.0])
    with pytest.raises(ValueError, match="axes"):
        Magnetics(bj.Grid.from_edges(x=[0.0, 1.0]), [[0, 0, 1.0]], 60.0, 0.0, F_NT)
