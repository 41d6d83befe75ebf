"""Tests of bayesjoint.physics.gravity against closed forms, quadrature and invariances."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import tplquad

import bayesjoint as bj
from bayesjoint.physics import gravity as gravity_module
from bayesjoint.physics.gravity import G, Gravity, gravity_sensitivity, prism_gz, sphere_gz
from bayesjoint.validate import taylor_test

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


# ---------------------------------------------------------------- distinct-value fast path
def _both_paths(grid, stations):
    """Return (plan, fast-path matrix, general-path matrix) in canonical axis order."""
    axes = gravity_module._grid_axes(grid, "test")
    st = gravity_module._stations_for(axes, stations)
    edges = [grid.edges[a] for a in axes]
    if len(axes) == 3:
        fn, factor = gravity_module._gz_prism_nodes, gravity_module._PRISM_FACTOR
    else:
        fn, factor = gravity_module._gz_rect2d_nodes, gravity_module._RECT2D_FACTOR
    plan = gravity_module._distinct_plan(edges, st)
    general = gravity_module._nodal_sensitivity(fn, edges, st, scale=factor, distinct=False)
    fast = gravity_module._nodal_sensitivity(fn, edges, st, scale=factor, distinct=True)
    return plan, fast, general


def _aligned_3d():
    grid = bj.Grid.from_edges(
        x=np.linspace(-100.0, 100.0, 9), y=np.linspace(-50.0, 70.0, 7), z=np.linspace(-80.0, 0, 5)
    )
    cx, cy = np.meshgrid(grid.centers["x"], grid.centers["y"], indexing="ij")
    return grid, cx.ravel(), cy.ravel()


@pytest.mark.parametrize(
    ("layout", "row_gather"),
    [
        ("centres", True),
        ("nodes-on-top-face", True),
        ("three-heights", True),
        ("inside-nodes", True),
        ("borehole", False),
    ],
)
def test_distinct_path_is_bit_identical_on_aligned_3d_grids(layout, row_gather):
    grid, cx, cy = _aligned_3d()
    ex, ey = np.meshgrid(grid.edges["x"], grid.edges["y"], indexing="ij")
    if layout == "centres":
        stations = np.c_[cx, cy, np.zeros(cx.size)]
    elif layout == "nodes-on-top-face":  # on cell corners and edges: the ζ = 0, ξ = η = 0 limits
        stations = np.c_[ex.ravel(), ey.ravel(), np.zeros(ex.size)]
    elif layout == "three-heights":  # a few heights: whole rows along z are gathered
        heights = np.repeat([0.0, 5.0, -20.0], cx.size)
        stations = np.c_[np.tile(cx, 3), np.tile(cy, 3), heights]
    elif layout == "inside-nodes":  # inside the model, on nodes
        stations = np.c_[ex.ravel(), ey.ravel(), np.full(ex.size, -40.0)]
    else:  # one station per cell depth in a borehole: a distinct z row per station
        grid = bj.Grid.from_edges(x=grid.edges["x"], y=grid.edges["y"], z=np.linspace(-80, 0, 9))
        zc = grid.centers["z"]
        stations = np.c_[np.full(zc.size, 25.0), np.full(zc.size, -40.0), zc]
    plan, fast, general = _both_paths(grid, stations)
    assert plan is not None  # the lattice of distinct differences is the cheaper route here
    assert (gravity_module._row_gather_rows(plan) is not None) == row_gather
    # Same floating-point operations on the same operands: equal to the last bit, not "close".
    assert np.all(np.isfinite(fast))
    np.testing.assert_array_equal(fast, general)


def test_distinct_path_is_bit_identical_in_2d_and_any_axis_order():
    grid = bj.Grid.from_edges(x=np.linspace(-100.0, 100.0, 21), z=np.linspace(-60.0, 0.0, 7))
    for st in (np.c_[grid.centers["x"], np.zeros(20)], np.c_[grid.edges["x"], np.zeros(21)]):
        plan, fast, general = _both_paths(grid, st)
        assert plan is not None
        np.testing.assert_array_equal(fast, general)
    grid3, cx, cy = _aligned_3d()
    st3 = np.c_[cx, cy, np.zeros(cx.size)]
    perm = bj.Grid.from_edges(z=grid3.edges["z"], x=grid3.edges["x"], y=grid3.edges["y"])
    a, a_perm = gravity_sensitivity(grid3, st3), gravity_sensitivity(perm, st3)
    # Reordering the columns is a permutation of the same numbers: exact.
    np.testing.assert_array_equal(
        a_perm.reshape(-1, 4, 8, 6).transpose(0, 2, 3, 1), a.reshape(-1, 8, 6, 4)
    )


def test_scattered_stations_take_the_general_path():
    rng = np.random.default_rng(11)
    grid, _, _ = _aligned_3d()
    st = np.c_[rng.uniform(-120.0, 120.0, (30, 2)), rng.uniform(0.0, 5.0, 30)]
    plan, fast, general = _both_paths(grid, st)
    assert plan is None  # every difference is distinct: the lattice would be larger
    np.testing.assert_array_equal(fast, general)
    st2 = np.c_[rng.uniform(-150.0, 150.0, 25), rng.uniform(-5.0, 5.0, 25)]
    grid2 = bj.Grid.from_edges(x=np.linspace(-100.0, 100.0, 11), z=np.linspace(-60.0, 0.0, 4))
    plan2, fast2, general2 = _both_paths(grid2, st2)
    assert plan2 is None
    np.testing.assert_array_equal(fast2, general2)


def test_distinct_path_matches_independent_prism_corner_sums():
    grid, cx, cy = _aligned_3d()
    st = np.c_[cx, cy, np.zeros(cx.size)]
    a = gravity_sensitivity(grid, st)
    # Per-prism corner sums (8 corners each, no node sharing) differ only by the round-off of
    # the summation order, far below 1e-10 relative at these distances.
    ref = np.column_stack([prism_gz(b, 1.0, st) for b in grid.cell_bounds()])
    np.testing.assert_allclose(a, ref, rtol=1e-10, atol=1e-14 * np.abs(ref).max())


def test_distinct_path_peak_memory_is_near_the_result_size():
    import tracemalloc

    grid = bj.Grid.from_edges(
        x=np.linspace(0.0, 500.0, 17), y=np.linspace(0.0, 500.0, 17), z=np.linspace(-200, -10, 9)
    )
    cx, cy = np.meshgrid(grid.centers["x"], grid.centers["y"], indexing="ij")
    st = np.c_[cx.ravel(), cy.ravel(), np.zeros(cx.size)]
    tracemalloc.start()
    a = gravity_sensitivity(grid, st)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # The lattice (≈ 32×32×9 values) and one chunk of gather indices are small next to the
    # 256 × 2048 result (4 MiB); the old 2**21-element chunks would have added ~8 MiB.
    assert peak < 1.25 * a.nbytes


def test_negative_control_corrupted_distinct_plan_is_detected():
    grid, cx, cy = _aligned_3d()
    st = np.c_[cx, cy, np.zeros(cx.size)]
    edges = [grid.edges[a] for a in ("x", "y", "z")]
    plan = gravity_module._distinct_plan(edges, st)
    u, lo, hi, pair = plan[0]
    # Swapping which node is subtracted flips the sign of those cells: the equality check
    # used above must catch it.
    bad = [(u, hi, lo, pair), *plan[1:]]
    wrong = gravity_module._distinct_sensitivity(
        gravity_module._gz_prism_nodes, bad, gravity_module._PRISM_FACTOR
    )
    right = gravity_module._distinct_sensitivity(
        gravity_module._gz_prism_nodes, plan, gravity_module._PRISM_FACTOR
    )
    with pytest.raises(AssertionError):
        np.testing.assert_array_equal(wrong, right)
    np.testing.assert_array_equal(wrong, -right)


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
