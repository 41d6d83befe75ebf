"""Tests of the straight-ray travel-time operator (exact Siddon ray lengths)."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
import scipy.sparse as sp

from bayesjoint.grid import Grid
from bayesjoint.physics.linear import Linear
from bayesjoint.physics.traveltime import TravelTime, ray_lengths
from bayesjoint.validate import taylor_test

# Reference problem, by hand: 2x2 unit cells on x, z in [0, 2], slowness s(ix, iz) with
# s(0,0) = 1, s(1,0) = 2, s(0,1) = 3, s(1,1) = 4 s/m. The horizontal ray at z = 0.5 crosses
# cells (0,0) and (1,0) for 1 m each: 1 + 2 = 3 s. The ray (0,0)→(1,2) has length √5, half of it
# in cell (0,0) (z < 1) and half in (0,1): (√5/2)(1 + 3) = 2√5 s. The diagonal (0,0)→(2,2)
# runs √2 m in cell (0,0) and √2 m in (1,1), touching (1,0) and (0,1) only at the corner (1,1):
# √2 (1 + 4) = 5√2 s.
REF_GRID = Grid.from_edges(x=[0.0, 1.0, 2.0], z=[0.0, 1.0, 2.0])
REF_SLOWNESS = np.array([[1.0, 3.0], [2.0, 4.0]])  # indexed [ix, iz]
REF_RAYS = [
    ((0.0, 0.5), (2.0, 0.5), 3.0),
    ((0.0, 0.0), (1.0, 2.0), 2.0 * np.sqrt(5.0)),
    ((0.0, 0.0), (2.0, 2.0), 5.0 * np.sqrt(2.0)),  # through the shared corner (1, 1)
]


def _ref_arrays():
    src = np.array([r[0] for r in REF_RAYS])
    rec = np.array([r[1] for r in REF_RAYS])
    expected = np.array([r[2] for r in REF_RAYS])
    return src, rec, expected


def _irregular_grid_2d():
    return Grid.from_edges(x=[0.0, 0.3, 1.0, 1.2, 2.0, 2.9, 3.0], z=[-2.0, -1.6, -1.0, -0.25, 0.0])


def _irregular_grid_3d():
    return Grid.from_edges(
        x=[0.0, 0.5, 1.5, 2.0, 3.0], y=[-1.0, 0.0, 0.4, 1.0], z=[-2.0, -1.5, -1.2, -0.6, -0.1, 0.0]
    )


def _random_rays(grid, n, rng, margin=0.7):
    lo = np.array([grid.edges[d][0] for d in grid.dims]) - margin
    hi = np.array([grid.edges[d][-1] for d in grid.dims]) + margin
    return rng.uniform(lo, hi, (n, grid.ndim)), rng.uniform(lo, hi, (n, grid.ndim))


def _inside(grid, p):
    ok = np.ones(p.shape[:-1], dtype=bool)
    for ax, d in enumerate(grid.dims):
        ok &= (p[..., ax] >= grid.edges[d][0]) & (p[..., ax] <= grid.edges[d][-1])
    return ok


def _brute_inside_length(grid, a, b, n_coarse=4001):
    """Length of segment a→b inside the box, by sampling then bisection of the entry/exit points.

    Independent of the slab formula: only the point-in-box predicate is used. Returns None when
    no coarse sample is inside (the inside part is then shorter than |b − a| / (n_coarse − 1)).
    """
    t = np.linspace(0.0, 1.0, n_coarse)
    ins = _inside(grid, a + t[:, None] * (b - a))
    if not ins.any():
        return None
    k_in, k_out = np.flatnonzero(ins)[[0, -1]]

    def refine(t_out, t_in):  # t_in inside, t_out outside (or equal)
        for _ in range(80):
            mid = 0.5 * (t_in + t_out)
            if _inside(grid, a + mid * (b - a)):
                t_in = mid
            else:
                t_out = mid
        return t_in

    t0 = t[k_in] if k_in == 0 else refine(t[k_in - 1], t[k_in])
    t1 = t[k_out] if k_out == n_coarse - 1 else refine(t[k_out + 1], t[k_out])
    return (t1 - t0) * np.linalg.norm(b - a)


def _dense_sample_lengths(grid, a, b, n_samples):
    """Per-cell length by point sampling at the midpoints of n_samples equal sub-segments."""
    t = (np.arange(n_samples) + 0.5) / n_samples
    p = a + t[:, None] * (b - a)
    ins = _inside(grid, p)
    p = p[ins]
    flat = np.zeros(p.shape[0], dtype=np.int64)
    for ax, d in enumerate(grid.dims):
        e = grid.edges[d]
        cell = np.clip(np.searchsorted(e, p[:, ax], side="right") - 1, 0, e.size - 2)
        flat = flat * (e.size - 1) + cell
    step = np.linalg.norm(b - a) / n_samples
    return np.bincount(flat, minlength=grid.size) * step, step


# ---------------------------------------------------------------------------------------------
# Closed-form references
# ---------------------------------------------------------------------------------------------


def test_reference_travel_times():
    src, rec, expected = _ref_arrays()
    times = ray_lengths(REF_GRID, src, rec) @ REF_SLOWNESS.ravel()
    # rtol from closed_form.md: the lengths are exact up to round-off.
    np.testing.assert_allclose(times, expected, rtol=1e-12)
    op = TravelTime(REF_GRID, src, rec)
    np.testing.assert_allclose(op(slowness=REF_SLOWNESS), expected, rtol=1e-12)


def test_reference_negative_control_fortran_order():
    # Flattening the slowness in the wrong (Fortran) order must be detected by the same check.
    src, rec, expected = _ref_arrays()
    wrong = ray_lengths(REF_GRID, src, rec) @ REF_SLOWNESS.ravel(order="F")
    assert not np.allclose(wrong, expected, rtol=1e-12)


def test_corner_ray_touches_only_diagonal_cells():
    L = ray_lengths(REF_GRID, [0.0, 0.0], [2.0, 2.0]).toarray()[0]
    # Exact: sqrt(2) in cells (0,0) and (1,1); the off-diagonal cells are only touched at a point.
    np.testing.assert_allclose(L, [np.sqrt(2.0), 0.0, 0.0, np.sqrt(2.0)], rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    ("a", "b", "cells"),
    [
        ((0.0, 1.0), (2.0, 1.0), [1, 3]),  # interior face z = 1 -> cells above (iz = 1)
        ((1.0, 0.0), (1.0, 2.0), [2, 3]),  # interior face x = 1 -> cells with ix = 1
        ((0.0, 2.0), (2.0, 2.0), [1, 3]),  # outer top face -> top row
        ((0.0, 0.0), (2.0, 0.0), [0, 2]),  # outer bottom face -> bottom row
        ((-1.0, 1.0), (3.0, 1.0), [1, 3]),  # same face, ray extending beyond the grid
    ],
)
def test_boundary_rays_counted_once(a, b, cells):
    for p, q in ((a, b), (b, a)):
        L = ray_lengths(REF_GRID, p, q).toarray()[0]
        expected = np.zeros(4)
        expected[cells] = 1.0
        # Exact: unit-length segments on a face, assigned once to the larger-coordinate cell.
        np.testing.assert_allclose(L, expected, rtol=1e-12, atol=0)
        assert L.sum() == pytest.approx(2.0, rel=1e-12)  # not 4: no double counting


# ---------------------------------------------------------------------------------------------
# Geometry against brute force
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("grid_fn", [_irregular_grid_2d, _irregular_grid_3d])
def test_row_sums_equal_length_inside_grid(grid_fn):
    grid = grid_fn()
    rng = np.random.default_rng(11)
    src, rec = _random_rays(grid, 60, rng)
    sums = np.asarray(ray_lengths(grid, src, rec).sum(axis=1)).ravel()
    n_hit = 0
    for i in range(src.shape[0]):
        brute = _brute_inside_length(grid, src[i], rec[i])
        full = np.linalg.norm(rec[i] - src[i])
        if brute is None:
            # Missed by the coarse sampling: the inside part is shorter than one coarse step.
            assert sums[i] <= full / 4000 + 1e-12
            continue
        n_hit += 1
        # Bisection to 80 halvings locates entry/exit to round-off; allow 1e-12 of the ray length.
        assert sums[i] == pytest.approx(brute, abs=1e-12 * full)
    assert n_hit > 30  # the test really exercises clipped rays


def test_3d_homogeneous_analytic_lengths():
    grid = _irregular_grid_3d()
    s0 = 0.25  # s/m
    slowness = np.full(grid.shape, s0)
    rng = np.random.default_rng(3)
    lo = np.array([grid.edges[d][0] for d in grid.dims])
    hi = np.array([grid.edges[d][-1] for d in grid.dims])
    # Rays with both ends inside: t = s0 |b - a|.
    a = rng.uniform(lo, hi, (25, 3))
    b = rng.uniform(lo, hi, (25, 3))
    # Main diagonal corner to corner, and an x-parallel ray crossing the whole box from outside.
    a = np.vstack([a, lo, [-5.0, 0.2, -0.7]])
    b = np.vstack([b, hi, [9.0, 0.2, -0.7]])
    expected = s0 * np.linalg.norm(b - a, axis=1)
    expected[-1] = s0 * (hi[0] - lo[0])
    times = TravelTime(grid, a, b)(slowness=slowness)
    # Analytic lengths; only round-off differs.
    np.testing.assert_allclose(times, expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("grid_fn", "n_rays"), [(_irregular_grid_2d, 30), (_irregular_grid_3d, 15)]
)
def test_random_rays_match_dense_sampling(grid_fn, n_rays):
    grid = grid_fn()
    rng = np.random.default_rng(7)
    src, rec = _random_rays(grid, n_rays, rng)
    L = ray_lengths(grid, src, rec).toarray()
    n_samples = 100_000
    for i in range(n_rays):
        brute, step = _dense_sample_lengths(grid, src[i], rec[i], n_samples)
        # Midpoint sampling: the number of sample points in a cell's parameter interval differs
        # from (interval / step) by less than one, so each cell's length is within one step.
        np.testing.assert_allclose(L[i], brute, rtol=0, atol=step * (1 + 1e-9))


def test_dense_sampling_negative_control():
    # A deliberately wrong length (one entry off by 1 %) must fail the dense-sampling comparison.
    grid = _irregular_grid_2d()
    a, b = np.array([-0.5, -1.9]), np.array([3.4, -0.1])
    L = ray_lengths(grid, a, b).toarray()[0]
    brute, step = _dense_sample_lengths(grid, a, b, 100_000)
    np.testing.assert_allclose(L, brute, rtol=0, atol=step * (1 + 1e-9))
    wrong = L.copy()
    j = int(np.argmax(wrong))
    wrong[j] *= 1.01
    assert not np.allclose(wrong, brute, rtol=0, atol=step * (1 + 1e-9))


def test_reversed_rays_equal():
    for grid in (_irregular_grid_2d(), _irregular_grid_3d(), REF_GRID):
        rng = np.random.default_rng(5)
        src, rec = _random_rays(grid, 40, rng)
        forward = ray_lengths(grid, src, rec)
        backward = ray_lengths(grid, rec, src)
        # Same segments traversed in the other order: equal to round-off.
        np.testing.assert_allclose(forward.toarray(), backward.toarray(), rtol=1e-12, atol=1e-14)


def test_missing_and_degenerate_rays_give_empty_rows():
    L = ray_lengths(
        REF_GRID,
        [[-1.0, -1.0], [3.0, 0.0], [0.5, 0.5], [0.0, 3.0]],
        [[-1.0, 5.0], [3.0, 2.0], [0.5, 0.5], [3.0, 0.0]],
    )
    assert L.shape == (4, 4)
    # Rays outside the grid, and a zero-length ray, have no segments.
    assert L.getrow(0).nnz == L.getrow(1).nnz == L.getrow(2).nnz == 0
    # (0, 3) -> (3, 0) clips to (1, 2) -> (2, 1): one diagonal of cell (1, 1), and touches the
    # corner (1, 2) only at a point.
    np.testing.assert_allclose(L.toarray()[3], [0, 0, 0, np.sqrt(2.0)], rtol=1e-12, atol=0)


def test_matrix_format_and_broadcasting():
    rec = np.array([[2.0, 0.2], [2.0, 1.0], [2.0, 1.9]])
    L = ray_lengths(REF_GRID, [0.0, 1.0], rec)
    assert sp.issparse(L) and L.format == "csr" and L.shape == (3, 4)
    same = ray_lengths(REF_GRID, np.tile([0.0, 1.0], (3, 1)), rec)
    np.testing.assert_array_equal(L.toarray(), same.toarray())


def test_many_rays_and_chunking(monkeypatch):
    # 100x100 cells, 2000 rays; every row sums to the ray length and chunking changes nothing.
    import bayesjoint.physics.traveltime as tt

    grid = Grid.from_edges(x=np.linspace(0.0, 100.0, 101), z=np.linspace(-100.0, 0.0, 101))
    rng = np.random.default_rng(0)
    src = np.c_[np.zeros(2000), rng.uniform(-100.0, 0.0, 2000)]
    rec = np.c_[np.full(2000, 100.0), rng.uniform(-100.0, 0.0, 2000)]
    L = ray_lengths(grid, src, rec)
    # Both ends on the grid boundary: the whole ray is inside (exact up to round-off).
    np.testing.assert_allclose(
        np.asarray(L.sum(axis=1)).ravel(), np.linalg.norm(rec - src, axis=1), rtol=1e-12
    )
    monkeypatch.setattr(tt, "_CHUNK_POINTS", 1000)  # about 5 rays per chunk
    chunked = ray_lengths(grid, src[:50], rec[:50])
    np.testing.assert_array_equal(chunked.toarray(), L[:50].toarray())


# ---------------------------------------------------------------------------------------------
# The physics wrapper
# ---------------------------------------------------------------------------------------------


def test_travel_time_is_linear_physics_and_symbolic_matches_numpy():
    src, rec, expected = _ref_arrays()
    op = TravelTime(REF_GRID, src, rec, input="s")
    assert isinstance(op, Linear) and op.inputs == ("s",)
    assert op.output_shape({"s": REF_GRID.shape}) == (3,)
    A, b = op.linear_operator()
    assert sp.issparse(A) and np.all(b == 0)
    x = pt.tensor("s", dtype="float64", shape=REF_GRID.shape)
    f = pytensor.function([x], op.forward({"s": x}))
    np.testing.assert_allclose(f(REF_SLOWNESS), expected, rtol=1e-12)
    assert "TravelTime(3 rays" in repr(op)
    assert op.sources.shape == op.receivers.shape == (3, 2)


def test_travel_time_gradient_linear_remainder():
    grid = _irregular_grid_2d()
    rng = np.random.default_rng(2)
    src, rec = _random_rays(grid, 10, rng)
    op = TravelTime(grid, src, rec)
    s0 = rng.uniform(2e-4, 5e-4, grid.shape)
    res = taylor_test(lambda s: op.forward({"slowness": s}), s0, random_seed=4)
    # Linear operator: the first-order Taylor remainder is pure round-off (values are O(1e-3)).
    assert np.max(res.first) < 1e-13


def test_bad_inputs_raise():
    with pytest.raises(TypeError, match="grid"):
        ray_lengths({"x": [0, 1]}, [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="sources"):
        ray_lengths(REF_GRID, [[0.0, 0.0, 0.0]], [[1.0, 1.0]])
    with pytest.raises(ValueError, match="receivers"):
        ray_lengths(REF_GRID, [[0.0, 0.0]], [[np.nan, 1.0]])
    with pytest.raises(ValueError, match="same number of rows"):
        ray_lengths(REF_GRID, np.zeros((2, 2)), np.ones((3, 2)))
    op = TravelTime(REF_GRID, [0.0, 0.5], [2.0, 0.5])
    with pytest.raises(ValueError, match="columns"):
        op(slowness=np.ones(5))
