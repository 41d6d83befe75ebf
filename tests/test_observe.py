"""Tests of the sampling, interpolation and instrument observation operators."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
import scipy.signal
import scipy.sparse as sp
from scipy.interpolate import RegularGridInterpolator

from bayesjoint.grid import Grid
from bayesjoint.observe import (
    Chain,
    Decimate,
    InstrumentResponse,
    Interpolate,
    Linear,
    SampleAt,
)
from bayesjoint.validate import taylor_test

# Operators and their results are linear maps evaluated in float64: comparisons against numpy /
# scipy use rtol 1e-12 (a few ulps of accumulated round-off in short sums).
RTOL = 1e-12


def _symbolic(op, x):
    """Evaluate ``op.apply`` through a compiled pytensor graph (the model path)."""
    v = pt.tensor("state", dtype="float64", shape=x.shape)
    return pytensor.function([v], op.apply(v))(x)


def _matrix_path(op, x):
    """Evaluate through ``linear_operator`` and reshape to ``output_shape``."""
    H = op.linear_operator(x.shape)
    assert sp.issparse(H)
    return np.asarray(H @ x.ravel()).reshape(op.output_shape(x.shape))


def _check_all_paths(op, x, expected):
    np.testing.assert_allclose(op(x), expected, rtol=RTOL, atol=1e-14)
    np.testing.assert_allclose(_matrix_path(op, x), expected, rtol=RTOL, atol=1e-14)
    np.testing.assert_allclose(_symbolic(op, x), expected, rtol=RTOL, atol=1e-14)
    assert op.output_shape(x.shape) == np.shape(expected)


def _grid_2d():
    return Grid.from_edges(x=[0.0, 0.4, 1.0, 1.3, 2.5, 3.0], z=[-2.0, -1.2, -0.7, -0.2, 0.0])


def _grid_3d():
    return Grid.from_edges(x=[0.0, 1.0, 1.5, 3.0], y=[-1.0, 0.0, 2.0], z=[-3.0, -2.0, -0.5, 0.0])


# ---------------------------------------------------------------------------------------------
# SampleAt
# ---------------------------------------------------------------------------------------------


def test_sample_at_matches_numpy_indexing():
    rng = np.random.default_rng(0)
    u1 = rng.standard_normal(9)
    _check_all_paths(SampleAt([4, 0, 8, 4]), u1, u1[[4, 0, 8, 4]])
    u2 = rng.standard_normal((5, 7))
    _check_all_paths(SampleAt([3, 1]), u2, u2[[3, 1]])  # whole traces along the first axis
    _check_all_paths(SampleAt([(0, 6), (4, 2), (2, 2)]), u2, u2[[0, 4, 2], [6, 2, 2]])
    u3 = rng.standard_normal((3, 4, 6))
    _check_all_paths(SampleAt([(2, 3), (0, 1)]), u3, u3[[2, 0], [3, 1]])
    _check_all_paths(SampleAt([(2, 3, 5)]), u3, u3[[2], [3], [5]])


def test_sample_at_bad_inputs():
    with pytest.raises(TypeError, match="integers"):
        SampleAt([0.5, 1.0])
    with pytest.raises(ValueError, match="non-negative"):
        SampleAt([0, -1])
    with pytest.raises(ValueError, match="at least one"):
        SampleAt([])
    with pytest.raises(ValueError, match="out of bounds"):
        SampleAt([0, 5])(np.zeros(5))
    with pytest.raises(ValueError, match="axes"):
        SampleAt([(0, 1, 2)])(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="out of bounds"):
        SampleAt([7]).apply(pt.tensor(shape=(4,)))


# ---------------------------------------------------------------------------------------------
# Interpolate
# ---------------------------------------------------------------------------------------------


def test_interpolate_1d_matches_np_interp():
    grid = Grid.from_edges(x=[0.0, 0.5, 2.0, 2.2, 4.0])
    c = grid.centers["x"]
    rng = np.random.default_rng(1)
    field = rng.standard_normal(grid.shape)
    points = np.concatenate([rng.uniform(c[0], c[-1], 20), c])  # includes the nodes themselves
    expected = np.interp(points, c, field)
    _check_all_paths(Interpolate(grid, points[:, None]), field, expected)


@pytest.mark.parametrize("grid_fn", [_grid_2d, _grid_3d])
def test_interpolate_matches_regular_grid_interpolator(grid_fn):
    grid = grid_fn()
    rng = np.random.default_rng(2)
    field = rng.standard_normal(grid.shape)
    axes = [grid.centers[d] for d in grid.dims]
    points = rng.uniform([a[0] for a in axes], [a[-1] for a in axes], (30, grid.ndim))
    points = np.vstack([points, grid.cell_centers()[:5]])
    expected = RegularGridInterpolator(axes, field, method="linear")(points)
    op = Interpolate(grid, points)
    _check_all_paths(op, field, expected)
    # A flattened (C-order) state is accepted too, and every row of weights sums to one.
    np.testing.assert_allclose(op(field.ravel()), expected, rtol=RTOL)
    np.testing.assert_allclose(np.asarray(op.matrix.sum(axis=1)).ravel(), 1.0, rtol=RTOL)


def test_interpolate_negative_control_transposed_field():
    # Feeding a field in the wrong axis order must give detectably different values.
    grid = Grid.from_edges(x=[0.0, 1.0, 2.0, 3.0, 4.0], z=[0.0, 1.0, 2.0, 3.0, 4.0])
    field = np.arange(16.0).reshape(4, 4) ** 1.5
    points = np.array([[0.7, 2.2], [1.9, 0.6]])
    expected = RegularGridInterpolator((grid.centers["x"], grid.centers["z"]), field)(points)
    op = Interpolate(grid, points)
    np.testing.assert_allclose(op(field), expected, rtol=RTOL)
    assert not np.allclose(op(field.T), expected, rtol=1e-3)


def test_interpolate_single_cell_axis_is_constant():
    grid = Grid(edges={"y": [-1.0, 1.0]}, x=[0.5, 1.5, 2.5], y=[0.0])
    field = np.array([[1.0], [2.0], [4.0]])
    op = Interpolate(grid, [[1.0, -0.9], [2.0, 0.7]])
    np.testing.assert_allclose(op(field), [1.5, 3.0], rtol=RTOL)


def test_interpolate_bad_inputs():
    grid = _grid_2d()
    with pytest.raises(ValueError, match="outside the interpolation range"):
        Interpolate(grid, [[0.1, -1.0]])  # x = 0.1 is in the outer half cell, before c_0 = 0.2
    with pytest.raises(ValueError, match="outside the interpolation range"):
        Interpolate(grid, [[1.0, 5.0]])
    with pytest.raises(ValueError, match="shape"):
        Interpolate(grid, [[1.0, -1.0, 0.0]])
    with pytest.raises(ValueError, match="NaN"):
        Interpolate(grid, [[np.nan, -1.0]])
    with pytest.raises(TypeError, match="Grid"):
        Interpolate({"x": [0.0, 1.0]}, [[0.5]])
    op = Interpolate(grid, [[1.0, -1.0]])
    with pytest.raises(ValueError, match="expects a state of shape"):
        op(np.zeros((4, 5)))


# ---------------------------------------------------------------------------------------------
# InstrumentResponse
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("m", [1, 2, 3, 4, 7])
def test_instrument_response_matches_np_convolve(m):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(12)
    h = rng.standard_normal(m)
    _check_all_paths(InstrumentResponse(h, mode="full"), x, np.convolve(x, h, mode="full"))
    _check_all_paths(InstrumentResponse(h, mode="same"), x, np.convolve(x, h, mode="same"))
    _check_all_paths(InstrumentResponse(h, mode="causal"), x, np.convolve(x, h)[: x.size])


def test_instrument_response_long_filter_same_matches_scipy():
    # With m > n numpy's "same" returns m samples; ours keeps n, as scipy.signal.convolve does.
    rng = np.random.default_rng(4)
    x, h = rng.standard_normal(5), rng.standard_normal(8)
    expected = scipy.signal.convolve(x, h, mode="same", method="direct")
    _check_all_paths(InstrumentResponse(h, mode="same"), x, expected)


def test_instrument_response_batches_over_leading_axes():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 10))
    h = rng.standard_normal(4)
    expected = np.apply_along_axis(lambda t: np.convolve(t, h, mode="same"), -1, x)
    _check_all_paths(InstrumentResponse(h), x, expected)


def test_instrument_response_negative_control_alignment():
    # An uncentred window (first n samples of "full") is not "same": the check must tell.
    rng = np.random.default_rng(6)
    x, h = rng.standard_normal(10), rng.standard_normal(5)
    causal = InstrumentResponse(h, mode="causal")(x)
    assert not np.allclose(causal, np.convolve(x, h, mode="same"), rtol=1e-3)


def test_instrument_response_bad_inputs():
    with pytest.raises(ValueError, match="mode"):
        InstrumentResponse([1.0], mode="valid")
    with pytest.raises(ValueError, match="1-D"):
        InstrumentResponse(np.ones((2, 2)))
    with pytest.raises(ValueError, match="non-empty"):
        InstrumentResponse([])
    with pytest.raises(ValueError, match="NaN"):
        InstrumentResponse([1.0, np.inf])
    with pytest.raises(ValueError, match="statically"):
        InstrumentResponse([1.0, 2.0]).apply(pt.vector("x"))


# ---------------------------------------------------------------------------------------------
# Decimate
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("factor", "offset"), [(1, 0), (2, 0), (3, 1), (4, 3), (5, 7)])
def test_decimate_matches_slicing(factor, offset):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(11)
    _check_all_paths(Decimate(factor, offset), x, x[offset::factor])
    x2 = rng.standard_normal((3, 11))
    _check_all_paths(Decimate(factor, offset), x2, x2[:, offset::factor])


def test_decimate_bad_inputs():
    with pytest.raises(ValueError, match="factor"):
        Decimate(0)
    with pytest.raises(TypeError, match="factor"):
        Decimate(2.0)
    with pytest.raises(TypeError, match="factor"):
        Decimate(True)
    with pytest.raises(ValueError, match="offset"):
        Decimate(2, offset=-1)
    with pytest.raises(ValueError, match="offset"):
        Decimate(2, offset=5)(np.zeros(5))


# ---------------------------------------------------------------------------------------------
# Composition, gradients, representations
# ---------------------------------------------------------------------------------------------


def test_composition_equals_matrix_product():
    rng = np.random.default_rng(8)
    wavefield = rng.standard_normal((6, 20))  # (receiver position, time sample)
    h = rng.standard_normal(5)
    first, second, third = SampleAt([4, 1]), InstrumentResponse(h), Decimate(3, offset=1)
    chain = first >> second >> third
    assert isinstance(chain, Chain)
    H = chain.linear_operator(wavefield.shape)
    H1 = first.linear_operator((6, 20))
    H2 = second.linear_operator((2, 20))
    H3 = third.linear_operator((2, 20))
    np.testing.assert_allclose((H3 @ H2 @ H1).toarray(), H.toarray(), rtol=RTOL)
    expected = np.stack([np.convolve(t, h, mode="same")[1::3] for t in wavefield[[4, 1]]])
    assert chain.output_shape(wavefield.shape) == expected.shape
    np.testing.assert_allclose((H @ wavefield.ravel()).reshape(expected.shape), expected, rtol=RTOL)
    np.testing.assert_allclose(chain(wavefield), expected, rtol=RTOL)
    np.testing.assert_allclose(_symbolic(chain, wavefield), expected, rtol=RTOL)
    # With an existing dense Linear operator in the chain.
    grid = _grid_2d()
    interp = Interpolate(grid, grid.cell_centers()[[0, 3, 7]])
    weights = rng.standard_normal((2, 3))
    chain2 = interp >> Linear(weights)
    field = rng.standard_normal(grid.shape)
    np.testing.assert_allclose(
        chain2.linear_operator(grid.shape) @ field.ravel(), weights @ interp(field), rtol=RTOL
    )


def test_linear_operators_have_round_off_taylor_remainder():
    rng = np.random.default_rng(9)
    grid = _grid_2d()
    cases = [
        (SampleAt([(1, 2), (3, 0)]), rng.standard_normal(grid.shape)),
        (Interpolate(grid, [[1.0, -1.0], [2.0, -0.5]]), rng.standard_normal(grid.shape)),
        (InstrumentResponse(rng.standard_normal(4)), rng.standard_normal((2, 9))),
        (Decimate(2, 1), rng.standard_normal(9)),
    ]
    for op, x0 in cases:
        res = taylor_test(op.apply, x0, random_seed=1)
        # Linear: the first-order remainder is round-off only (inputs are O(1)).
        assert np.max(res.first) < 1e-12, op


def test_reprs():
    assert repr(SampleAt([1, 2])) == "SampleAt(2 receivers, 1-d indices)"
    assert "Interpolate(1 points" in repr(Interpolate(_grid_2d(), [[1.0, -1.0]]))
    assert repr(InstrumentResponse([1.0, 2.0])) == "InstrumentResponse(2 taps, mode='same')"
    assert repr(Decimate(2, 1) >> SampleAt([0])) == (
        "Decimate(factor=2, offset=1) >> SampleAt(1 receivers, 1-d indices)"
    )
