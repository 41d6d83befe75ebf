"""Tests of bayesjoint.physics.gravity against closed forms, quadrature and invariances."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import tplquad

import bayesjoint as bj
from bayesjoint.physics.gravity import G, Gravity, gravity_sensitivity, prism_gz, sphere_gz
from bayesjoint.testing import taylor_test

REF_PRISM = [-50.0, 50.0, -50.0, 50.0, -150.0, -50.0]


def brute_force_gz(bounds, density, point):
    """Downward attraction in mGal by adaptive triple quadrature of G ρ (z_p − z') / r³."""
    x0, x1, y0, y1, z0, z1 = bounds
    px, py, pz = point

    def integrand(z, y, x):
        return (pz - z) / ((x - px) ** 2 + (y - py) ** 2 + (z - pz) ** 2) ** 1.5

    val, _ = tplquad(integrand, x0, x1, y0, y1, z0, z1, epsabs=0.0, epsrel=1e-12)
    return G * density * val * 1e5


# ---------------------------------------------------------------- reference values (closed_form.md)
def test_prism_reference_value():
    # closed_form.md: |g_z| = 0.629385 mGal, rtol 1e-6 (printed to 6 significant figures).
    g = prism_gz(REF_PRISM, 1000.0, [[0.0, 0.0, 0.0]])
    np.testing.assert_allclose(g, [0.629385], rtol=1e-6)
    assert g[0] > 0  # positive contrast below a station attracts downward: positive anomaly


def test_sphere_reference_values():
    # closed_form.md: R = 50 m, centre depth 100 m, Δρ = 500 kg/m³, rtol 1e-5.
    pts = [[0.0, 0.0, 0.0], [50.0, 0.0, 0.0], [100.0, 0.0, 0.0]]
    g = sphere_gz([0.0, 0.0, -100.0], 50.0, 500.0, pts)
    np.testing.assert_allclose(g, [0.174733, 0.125029, 0.061777], rtol=1e-5)


def test_bouguer_slab_wide_thin_prism():
    # closed_form.md: h = 10.5 m, Δρ = 2670 → 1.17567 mGal, rtol 1e-5. A prism 2e7 m wide
    # misses ~h/L ≈ 1e-6 of the infinite slab, well inside the tolerance.
    half = 1e7
    g = prism_gz([-half, half, -half, half, -10.5, 0.0], 2670.0, [0.0, 0.0, 0.0])
    np.testing.assert_allclose(g, [1.17567], rtol=1e-5)


def test_bouguer_slab_2d():
    # Same reference through the 2-D closed form (infinite along y; 2e8 m wide along x).
    grid = bj.Grid.from_edges(x=[-1e8, 1e8], z=[-10.5, 0.0])
    a = gravity_sensitivity(grid, [[0.0, 0.0]])
    np.testing.assert_allclose(a[0] * 2670.0, [1.17567], rtol=1e-5)
    # Per metre of thickness: the reference 0.11197 is printed to 5 figures (±5e-6 / 0.112 ≈
    # 4.5e-5 relative), so that is the tolerance here.
    thin = bj.Grid.from_edges(x=[-1e8, 1e8], z=[-1.0, 0.0])
    np.testing.assert_allclose(
        gravity_sensitivity(thin, [[0.0, 0.0]])[0] * 2670.0, [0.11197], rtol=5e-5
    )


# ---------------------------------------------------------------- independent numerics
@pytest.mark.parametrize("point", [[13.0, -7.0, 5.0], [80.0, 120.0, 0.0]])
def test_prism_matches_triple_quadrature(point):
    bounds = [-50.0, 50.0, -40.0, 60.0, -150.0, -50.0]
    # Adaptive quadrature converged to ~1e-12 on a smooth integrand (station outside); the
    # closed form loses < 1e-12 to cancellation at this distance: rtol 1e-9 leaves margin.
    ref = brute_force_gz(bounds, 1000.0, point)
    np.testing.assert_allclose(prism_gz(bounds, 1000.0, point), [ref], rtol=1e-9)


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
    pts = np.array([[13.0, -7.0, 5.0], [0.0, 0.0, 0.0], [200.0, -30.0, 1.0], [50.0, 60.0, -50.0]])
    whole = prism_gz([-50.0, 50.0, -40.0, 60.0, -150.0, -50.0], 700.0, pts)
    # Linear superposition is exact; only round-off of the corner sums differs (1e-12).
    np.testing.assert_allclose(prism_gz(sub, 700.0, pts), whole, rtol=1e-12)


def test_symmetric_stations_give_equal_values():
    # Square prism centred on the z axis: the eight stations related by the square's symmetry
    # group see the same attraction, to round-off.
    d1, d2 = 30.0, 70.0
    pts = np.array(
        [[sx * a, sy * b, 0.0] for a, b in [(d1, d2), (d2, d1)] for sx in (1, -1) for sy in (1, -1)]
    )
    g = prism_gz(REF_PRISM, 1000.0, pts)
    np.testing.assert_allclose(g, np.full(8, g[0]), rtol=1e-12)


def test_far_field_cube_is_point_mass():
    a, depth = 10.0, 100.0
    cube = [-a / 2, a / 2, -a / 2, a / 2, -depth - a / 2, -depth + a / 2]
    pts = np.array([[150.0, 70.0, 0.0], [-200.0, 30.0, 50.0], [0.0, 0.0, 100.0]])
    point_mass = sphere_gz([0.0, 0.0, -depth], (3 * a**3 / (4 * np.pi)) ** (1 / 3), 1000.0, pts)
    # A cube has no quadrupole moment, so the next correction is O((a/r)⁴) ≈ 1e-5 here.
    np.testing.assert_allclose(prism_gz(cube, 1000.0, pts), point_mass, rtol=1e-4)


def test_2d_sensitivity_matches_long_3d_row():
    xe, ze = np.linspace(-40.0, 40.0, 5), np.linspace(-60.0, -20.0, 3)
    g2 = bj.Grid.from_edges(x=xe, z=ze)
    g3 = bj.Grid.from_edges(x=xe, y=[-1e5, 1e5], z=ze)  # one cell along y, 2e5 m long
    st2 = np.array([[-30.0, 0.0], [5.0, 0.0], [70.0, 3.0]])
    st3 = np.c_[st2[:, 0], np.zeros(3), st2[:, 1]]
    a2, a3 = gravity_sensitivity(g2, st2), gravity_sensitivity(g3, st3)
    # The finite row misses the attraction beyond |y| = 1e5 m: O(distance / L) ≈ 1e-6 relative.
    np.testing.assert_allclose(a2, a3, rtol=1e-5)
    # A y column in the stations is ignored for a 2-D grid.
    np.testing.assert_array_equal(gravity_sensitivity(g2, st3), a2)


def test_sphere_inside_uses_enclosed_mass():
    # Shell theorem: 20 m above the centre, inside, only the mass within r = 20 m attracts
    # (downward): g = G (4/3)π ρ r, independent of R; same arithmetic up to round-off.
    g = sphere_gz([0.0, 0.0, -100.0], 50.0, 500.0, [[0.0, 0.0, -80.0]])
    np.testing.assert_allclose(g, [(4 / 3) * np.pi * G * 500.0 * 20.0 * 1e5], rtol=1e-12)


# ---------------------------------------------------------------- points on planes, edges, corners
@pytest.mark.parametrize(
    "point",
    [[3.0, 4.0, 0.0], [20.0, 15.0, 0.0], [3.0, 15.0, 0.0], [20.0, 30.0, -10.0], [20.0, 15.0, 5.0]],
    ids=["top-face", "corner", "top-edge", "side-plane", "edge-line"],
)
def test_observer_on_prism_geometry_is_finite_and_continuous(point):
    bounds = [-10.0, 20.0, -5.0, 15.0, -30.0, 0.0]
    p = np.array(point)
    g0 = prism_gz(bounds, 1000.0, p)
    assert np.all(np.isfinite(g0))
    # g_z is continuous; a 1e-7 m offset changes it by at most ~|∇g|·1e-7 ≈ 1e-8 mGal.
    for shift in ([1e-7, 1e-7, 1e-7], [-1e-7, -1e-7, 1e-7], [1e-7, -1e-7, -1e-7]):
        np.testing.assert_allclose(prism_gz(bounds, 1000.0, p + shift), g0, atol=1e-7)


# ---------------------------------------------------------------- sensitivity matrix and physics
def test_sensitivity_matches_prism_sum_and_axis_order():
    rng = np.random.default_rng(3)
    xe, ye, ze = (
        np.array([0.0, 10.0, 25.0]),
        np.array([-5.0, 5.0, 12.0, 20.0]),
        np.array([-30.0, -18.0, -10.0, 0.0]),
    )
    grid = bj.Grid.from_edges(x=xe, y=ye, z=ze)
    st = np.c_[rng.uniform(-20, 40, 6), rng.uniform(-20, 30, 6), np.zeros(6)]
    st[0] = [10.0, 5.0, 0.0]  # on a grid node at the top surface
    a = gravity_sensitivity(grid, st)
    rho = rng.uniform(-300, 300, grid.shape)
    # Node-shared evaluation and per-prism corner sums are the same arithmetic up to round-off.
    np.testing.assert_allclose(
        a @ rho.ravel(), prism_gz(grid.cell_bounds(), rho.ravel(), st), rtol=1e-10, atol=1e-14
    )
    perm = bj.Grid.from_edges(z=ze, x=xe, y=ye)
    a_perm = gravity_sensitivity(perm, st)
    np.testing.assert_allclose(a_perm @ rho.transpose(2, 0, 1).ravel(), a @ rho.ravel(), rtol=1e-12)


def test_gravity_physics_is_linear_with_exact_gradient():
    grid = bj.Grid.from_edges(x=[-50.0, 0.0, 50.0], y=[-50.0, 50.0], z=[-150.0, -100.0, -50.0])
    op = Gravity(grid, [[0.0, 0.0, 0.0], [30.0, 10.0, 0.0]])
    assert op.inputs == ("density",)
    rho = np.full(grid.shape, 1000.0)
    np.testing.assert_allclose(op(density=rho)[0], 0.629385, rtol=1e-6)  # closed_form.md
    _, b = op.linear_operator()
    np.testing.assert_array_equal(b, 0.0)
    res = taylor_test(lambda x: op.forward({"density": x}), rho * 0.3, random_seed=5)
    # Linear operator: the first-order remainder is round-off, far below the O(h) change.
    assert np.max(res.first) < 1e-10 * np.max(res.zeroth)


# ---------------------------------------------------------------- negative controls and errors
def test_negative_controls_detect_wrong_inputs():
    # A 1 % wrong density, a body above the station, or dropping the arctan term must all fail
    # the reference check.
    assert not np.isclose(prism_gz(REF_PRISM, 1010.0, [0, 0, 0])[0], 0.629385, rtol=1e-6)
    above = [-50.0, 50.0, -50.0, 50.0, 50.0, 150.0]
    assert prism_gz(above, 1000.0, [0, 0, 0])[0] < 0
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(
            prism_gz(REF_PRISM, 1000.0, [5.0, 0.0, 0.0]), [0.629385], rtol=1e-6
        )
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(
            sphere_gz([0, 0, -100.0], 50.0, 500.0, [0, 0, 0]), [0.125029], rtol=1e-5
        )


def test_bad_inputs_raise():
    grid = bj.Grid.from_edges(x=[0.0, 1.0], y=[0.0, 1.0], z=[-1.0, 0.0])
    with pytest.raises(ValueError, match="x0 < x1"):
        prism_gz([1.0, 0.0, 0.0, 1.0, -1.0, 0.0], 1.0, [0, 0, 1])
    with pytest.raises(ValueError, match="points"):
        prism_gz(REF_PRISM, 1.0, [[0.0, 0.0]])
    with pytest.raises(ValueError, match="density"):
        prism_gz(REF_PRISM, [1.0, 2.0], [0, 0, 1])
    with pytest.raises(ValueError, match="radius"):
        sphere_gz([0, 0, -1.0], -1.0, 1.0, [0, 0, 0])
    with pytest.raises(ValueError, match="stations"):
        gravity_sensitivity(grid, [[0.0, np.nan, 0.0]])
    with pytest.raises(ValueError, match="axes"):
        gravity_sensitivity(bj.Grid.from_edges(x=[0.0, 1.0], y=[0.0, 1.0]), [[0, 0, 0]])
    with pytest.raises(TypeError, match="Grid"):
        Gravity("grid", [[0, 0, 0]])
