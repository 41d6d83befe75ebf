"""Observation operators ``H_k``: from a physical state to what the instrument records.

A modality predicts its data as ``H(F(m))``. An observation operator maps the physical state
returned by the physics (a pytensor tensor in a model, a numpy array otherwise) to the predicted
data. Linear operators expose :meth:`Observation.linear_operator` so that the exact
linear-Gaussian path can compose them with linear physics.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import product
from typing import Any

import numpy as np
import pytensor.sparse as pts
import pytensor.tensor as pt
import scipy.optimize
import scipy.signal
import scipy.sparse as sp

from bayesjoint._checks import checked_init
from bayesjoint._tensor import NumpyEvaluator, is_symbolic
from bayesjoint.grid import Grid, as_points
from bayesjoint.physics.linear import as_matrix, symbolic_matvec

__all__ = [
    "Chain",
    "Decimate",
    "Function",
    "Identity",
    "InstrumentResponse",
    "Interpolate",
    "Linear",
    "LowPass",
    "Observation",
    "SampleAt",
    "as_observation",
    "lowpass_matrix",
]


class Observation:
    """Base class of observation operators.

    Subclasses implement :meth:`apply` (symbolic) and, where they can, :meth:`output_shape` and
    :meth:`linear_operator`. Calling the operator on a numpy array returns a numpy array; calling it
    on a pytensor tensor returns a tensor. ``first >> second`` chains two operators (``first`` is
    applied first).
    """

    def apply(self, state: Any) -> Any:
        """Return the symbolic observation of a symbolic state."""
        raise NotImplementedError

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """Return the output shape for a state of ``input_shape``, or None when unknown."""
        return None

    def linear_operator(self, input_shape: tuple[int, ...]) -> np.ndarray | sp.spmatrix | None:
        """Return ``H`` with ``obs = H @ state.ravel()`` for a state of ``input_shape``, or None."""
        return None

    def __call__(self, state: Any) -> Any:
        """Apply the operator to a tensor (symbolic result) or an array (numpy result)."""
        if is_symbolic(state):
            return self.apply(state)
        evaluator = self.__dict__.get("_numpy_evaluator")
        if evaluator is None:
            evaluator = NumpyEvaluator(lambda v: self.apply(v["state"]))
            self.__dict__["_numpy_evaluator"] = evaluator
        return evaluator({"state": state})

    def __rshift__(self, other: Any) -> Chain:
        return Chain(self, as_observation(other))


class Identity(Observation):
    """The instrument records the physical state itself."""

    def apply(self, state: Any) -> Any:
        """Return ``state`` unchanged."""
        return state

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Return ``input_shape``."""
        return tuple(input_shape)

    def linear_operator(self, input_shape: tuple[int, ...]) -> sp.csr_matrix:
        """Return the identity matrix of size ``prod(input_shape)``."""
        return sp.identity(int(np.prod(input_shape, dtype=int)), format="csr")

    def __repr__(self) -> str:
        return "Identity()"


class Linear(Observation):
    """Linear observation ``H @ state.ravel()`` with a dense or sparse matrix.

    Parameters
    ----------
    matrix : array_like or scipy.sparse matrix, shape (n_obs, n_state)

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.observe import Linear
    >>> Linear([[0.5, 0.5, 0.0]])(np.array([1.0, 3.0, 9.0]))
    array([2.])
    """

    @checked_init("bj.observe.Linear")
    def __init__(self, matrix: Any):
        self.matrix = as_matrix(matrix, "Linear observation matrix")

    def _check(self, input_shape: tuple[int, ...]) -> None:
        n_state = int(np.prod(input_shape, dtype=int))
        if n_state != self.matrix.shape[1]:
            raise ValueError(
                f"Linear observation matrix has {self.matrix.shape[1]} columns but the physical "
                f"state has shape {tuple(input_shape)} ({n_state} values); give a matrix with "
                f"{n_state} columns"
            )

    def apply(self, state: Any) -> Any:
        """Return the symbolic ``H @ state.ravel()``."""
        return symbolic_matvec(self.matrix, pt.as_tensor_variable(state).flatten())

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Return ``(n_obs,)``."""
        self._check(input_shape)
        return (self.matrix.shape[0],)

    def linear_operator(self, input_shape: tuple[int, ...]) -> np.ndarray | sp.csr_matrix:
        """Return ``H``."""
        self._check(input_shape)
        return self.matrix

    def __call__(self, state: Any) -> Any:
        """Apply ``H``; numpy input gives a numpy result without compiling."""
        if is_symbolic(state):
            return self.apply(state)
        arr = np.asarray(state, dtype=float)
        self._check(arr.shape)
        return np.asarray(self.matrix @ arr.ravel()).ravel()

    def __repr__(self) -> str:
        return f"Linear({self.matrix.shape[0]}x{self.matrix.shape[1]})"


class Function(Observation):
    """Observation given as a plain callable ``state -> observed`` (assumed nonlinear)."""

    @checked_init("bj.observe.Function")
    def __init__(self, fn: Callable[[Any], Any]):
        if not callable(fn):
            raise TypeError(f"observe must be callable, got {type(fn).__name__}")
        self.fn = fn

    def apply(self, state: Any) -> Any:
        """Call the wrapped function."""
        return self.fn(state)

    def __repr__(self) -> str:
        return f"Function({getattr(self.fn, '__name__', type(self.fn).__name__)})"


class Chain(Observation):
    """Apply several observation operators in turn (the first one first).

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.observe import Linear
    >>> both = Linear(np.eye(3)) >> Linear([[1.0, 1.0, 1.0]])
    >>> both(np.array([1.0, 2.0, 3.0]))
    array([6.])
    """

    @checked_init("bj.observe.Chain")
    def __init__(self, *operators: Any):
        if not operators:
            raise ValueError("Chain needs at least one observation operator")
        self.operators = tuple(as_observation(op) for op in operators)

    def apply(self, state: Any) -> Any:
        """Apply each operator in order."""
        for op in self.operators:
            state = op.apply(state)
        return state

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """Return the final shape when every operator knows its own, else None."""
        shape: tuple[int, ...] | None = tuple(input_shape)
        for op in self.operators:
            if shape is None:
                return None
            shape = op.output_shape(shape)
        return shape

    def linear_operator(self, input_shape: tuple[int, ...]) -> np.ndarray | sp.spmatrix | None:
        """Return the product of the operators' matrices when all are linear, else None."""
        total = None
        shape: tuple[int, ...] | None = tuple(input_shape)
        for op in self.operators:
            if shape is None:
                return None
            mat = op.linear_operator(shape)
            if mat is None:
                return None
            total = mat if total is None else mat @ total
            shape = op.output_shape(shape)
        return total

    def __repr__(self) -> str:
        return " >> ".join(repr(op) for op in self.operators)


def as_observation(observe: Any) -> Observation:
    """Return ``observe`` as an :class:`Observation` (None → Identity, callable → Function)."""
    if observe is None:
        return Identity()
    if isinstance(observe, Observation):
        return observe
    if callable(observe):
        return Function(observe)
    raise TypeError(
        "observe must be a bayesjoint.observe operator, a callable state -> data, or None, got "
        f"{type(observe).__name__}"
    )


# --------------------------------------------------------------------------------------------------
# Sampling, interpolation and instrument operators (all linear, with sparse matrices).
# --------------------------------------------------------------------------------------------------


def _as_count(value: Any, name: str, minimum: int) -> int:
    """Return ``value`` as a Python int ``>= minimum`` or raise naming ``name``."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _static_shape(state: Any) -> tuple[Any, pt.TensorVariable]:
    """Return the static shape of a symbolic ``state`` and the tensor itself."""
    tensor = pt.as_tensor_variable(state)
    return tuple(tensor.type.shape), tensor


class _MatrixObservation(Observation):
    """Linear observation operator that builds one sparse matrix per input shape.

    Subclasses implement :meth:`output_shape` (validating the input shape), :meth:`_build` (the
    CSR matrix for a validated shape) and :meth:`apply`. Numpy input is mapped by the matrix.
    """

    def _build(self, input_shape: tuple[int, ...]) -> sp.csr_matrix:
        raise NotImplementedError

    def linear_operator(self, input_shape: tuple[int, ...]) -> sp.csr_matrix:
        """Return the sparse ``H`` with ``obs.ravel() = H @ state.ravel()`` for ``input_shape``."""
        shape = tuple(int(n) for n in input_shape)
        self.output_shape(shape)
        cache = self.__dict__.setdefault("_matrix_cache", {})
        if shape not in cache:
            cache[shape] = self._build(shape)
        return cache[shape]

    def __call__(self, state: Any) -> Any:
        """Apply the operator; numpy input gives a numpy result through the sparse matrix."""
        if is_symbolic(state):
            return self.apply(state)
        arr = np.asarray(state, dtype=float)
        out_shape = self.output_shape(arr.shape)
        return np.asarray(self.linear_operator(arr.shape) @ arr.ravel()).reshape(out_shape)


class SampleAt(_MatrixObservation):
    """Sample a state at receiver indices (point sampling, no interpolation).

    Parameters
    ----------
    indices : array_like of int, shape (n,) or (n, k)
        Receiver indices. A 1-D integer sequence indexes the first axis of the state; rows of
        ``k`` integers (tuples, e.g. ``[(ix, iz), ...]``) index its first ``k`` axes. For a single
        n-d receiver write ``[(ix, iz)]``. Indices must be non-negative.

    Notes
    -----
    ``d_i[...] = u[j_i1, ..., j_ik, ...]``: for a state ``u`` of shape ``(n_0, ..., n_{D-1})`` the
    output has shape ``(n,) + (n_k, ..., n_{D-1})`` (numpy advanced indexing of the first ``k``
    axes), so a wavefield of shape ``(nx, nt)`` sampled with ``SampleAt([3, 7])`` gives two traces
    of shape ``(2, nt)``. The matrix is a 0/1 selection matrix ``H`` with
    ``obs.ravel() = H @ u.ravel()`` (C order); it is the discrete point-evaluation observation
    operator of e.g. Tarantola (2005), *Inverse Problem Theory*, §1.3. Use :class:`Interpolate`
    for receivers between grid nodes. The operator is unit-free (output units = state units).

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.observe import SampleAt
    >>> field = np.arange(12.0).reshape(3, 4)
    >>> SampleAt([(0, 1), (2, 3)])(field)
    array([ 1., 11.])
    >>> SampleAt([2, 0])(field)
    array([[ 8.,  9., 10., 11.],
           [ 0.,  1.,  2.,  3.]])
    """

    @checked_init("bj.observe.SampleAt")
    def __init__(self, indices: Any):
        arr = np.asarray(indices)
        if arr.size == 0:
            raise ValueError("SampleAt(indices) needs at least one index")
        if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(
                "SampleAt(indices) must be integers (or tuples of integers for n-d states), got "
                f"dtype {arr.dtype}; use bayesjoint.observe.Interpolate for positions in metres"
            )
        if arr.ndim == 0:
            arr = arr[None]
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(
                f"SampleAt(indices) must have shape (n,) or (n, k), got shape {np.shape(indices)}"
            )
        if np.any(arr < 0):
            raise ValueError("SampleAt(indices) must be non-negative; count from the start")
        self.indices = arr.astype(np.int64)

    def _check_shape(self, shape: tuple[Any, ...]) -> None:
        k = self.indices.shape[1]
        if len(shape) < k:
            raise ValueError(
                f"SampleAt indices have {k} components per receiver but the state has only "
                f"{len(shape)} axes (shape {shape}); give one index per leading axis"
            )
        for ax in range(k):
            n = shape[ax]
            if n is not None and int(self.indices[:, ax].max()) >= n:
                raise ValueError(
                    f"SampleAt index {int(self.indices[:, ax].max())} on axis {ax} is out of "
                    f"bounds for a state of shape {shape}; indices must be < {n}"
                )

    def apply(self, state: Any) -> Any:
        """Return the symbolic ``state[indices]``."""
        shape, tensor = _static_shape(state)
        self._check_shape(shape)
        return tensor[tuple(pt.constant(col) for col in self.indices.T)]

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Return ``(n,) + input_shape[k:]``."""
        shape = tuple(input_shape)
        self._check_shape(shape)
        return (self.indices.shape[0], *shape[self.indices.shape[1] :])

    def _build(self, input_shape: tuple[int, ...]) -> sp.csr_matrix:
        k = self.indices.shape[1]
        lead = np.ravel_multi_index(tuple(self.indices.T), input_shape[:k])
        rest = int(np.prod(input_shape[k:], dtype=int))
        cols = (lead[:, None] * rest + np.arange(rest)[None, :]).ravel()
        size = int(np.prod(input_shape, dtype=int))
        data = np.ones(cols.size)
        return sp.csr_matrix((data, (np.arange(cols.size), cols)), shape=(cols.size, size))

    def __repr__(self) -> str:
        n, k = self.indices.shape
        return f"SampleAt({n} receivers, {k}-d indices)"


class Interpolate(_MatrixObservation):
    """Multilinear interpolation of a cell-centred field on a grid at arbitrary points.

    Parameters
    ----------
    grid : bayesjoint.grid.Grid
        The grid the field lives on; values sit at the cell centres.
    points : array_like, shape (n_points, grid.ndim) or (grid.ndim,)
        Positions in metres, one coordinate per grid axis in the grid's axis order.

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix, shape (n_points, grid.size)
        Interpolation weights (each row sums to one).

    Notes
    -----
    Along each axis with centres ``c_0 < ... < c_{n-1}`` a coordinate ``p`` with
    ``c_i <= p <= c_{i+1}`` gets weights ``1 − w`` on ``c_i`` and ``w = (p − c_i)/(c_{i+1} − c_i)``
    on ``c_{i+1}``; the multilinear (bilinear, trilinear) weight of a corner is the product of the
    per-axis weights (Press et al., *Numerical Recipes*, 3rd ed., §3.6). This equals
    ``scipy.interpolate.RegularGridInterpolator(..., method="linear")`` on the cell centres.
    Interpolation is defined only between the first and last centre of every axis: a point in
    the outer half cell, or outside the grid, raises ``ValueError`` (no extrapolation). An axis
    with a single cell is constant along that axis and accepts points within its edges. The state
    may have shape ``grid.shape`` or ``(grid.size,)`` (C order); the output has ``(n_points,)``
    in the units of the field.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.grid import Grid
    >>> from bayesjoint.observe import Interpolate
    >>> grid = Grid(x=[0.5, 1.5, 2.5], z=[-1.5, -0.5])
    >>> field = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    >>> Interpolate(grid, [[1.0, -1.0], [2.5, -0.5]])(field)
    array([1.5, 5. ])
    """

    @checked_init("bj.observe.Interpolate")
    def __init__(self, grid: Grid, points: Any):
        if not isinstance(grid, Grid):
            raise TypeError(
                f"Interpolate(grid) must be a bayesjoint Grid, got {type(grid).__name__}"
            )
        pts_arr = as_points(
            points,
            "Interpolate(points)",
            (grid.ndim,),
            f"with coordinates in the grid's axis order {grid.dims}",
            rows="n_points",
            allow_empty=False,
        )
        self.grid = grid
        self.points = pts_arr
        per_axis = []
        for ax, name in enumerate(grid.dims):
            c = grid.centers[name]
            p = pts_arr[:, ax]
            if c.size == 1:
                lo, hi = grid.edges[name][0], grid.edges[name][-1]
            else:
                lo, hi = c[0], c[-1]
            outside = (p < lo) | (p > hi)
            if np.any(outside):
                first = int(np.flatnonzero(outside)[0])
                raise ValueError(
                    f"Interpolate(points): {int(outside.sum())} point(s) lie outside the "
                    f"interpolation range [{lo}, {hi}] of axis {name!r} (between the first and "
                    f"last cell centres), e.g. point {first} at {pts_arr[first].tolist()}; move "
                    "them inside or extend the grid"
                )
            if c.size == 1:
                i = np.zeros(p.size, dtype=np.int64)
                w = np.zeros(p.size)
                per_axis.append(((i, 1.0 - w), (i, w)))
            else:
                i = np.clip(np.searchsorted(c, p, side="right") - 1, 0, c.size - 2)
                w = (p - c[i]) / (c[i + 1] - c[i])
                per_axis.append(((i, 1.0 - w), (i + 1, w)))
        rows, cols, vals = [], [], []
        n_pts = pts_arr.shape[0]
        for corner in product(*per_axis):
            flat = np.ravel_multi_index(tuple(c[0] for c in corner), grid.shape)
            weight = np.prod(np.stack([c[1] for c in corner]), axis=0)
            rows.append(np.arange(n_pts))
            cols.append(flat)
            vals.append(weight)
        mat = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n_pts, grid.size),
        )
        mat.sum_duplicates()
        mat.eliminate_zeros()
        self.matrix = mat

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Return ``(n_points,)`` after checking the state is shaped like the grid."""
        shape = tuple(input_shape)
        if shape != self.grid.shape and shape != (self.grid.size,):
            raise ValueError(
                f"Interpolate expects a state of shape {self.grid.shape} (the grid) or "
                f"({self.grid.size},), got {shape}"
            )
        return (self.points.shape[0],)

    def _build(self, input_shape: tuple[int, ...]) -> sp.csr_matrix:
        return self.matrix

    def apply(self, state: Any) -> Any:
        """Return the symbolic interpolated values ``H @ state.ravel()``."""
        shape, tensor = _static_shape(state)
        if None not in shape:
            self.output_shape(shape)
        return symbolic_matvec(self.matrix, tensor.flatten())

    def __repr__(self) -> str:
        return f"Interpolate({self.points.shape[0]} points, {self.grid!r})"


class InstrumentResponse(_MatrixObservation):
    """Discrete convolution of traces with an instrument impulse response (zero padding).

    Parameters
    ----------
    impulse_response : array_like, shape (m,)
        Filter coefficients ``h_0 … h_{m-1}`` per sample. For a continuous response ``h(t)``
        sampled at interval ``dt``, pass ``h(k dt) · dt`` so the sum approximates the integral.
    mode : {"same", "full", "causal"}, optional
        Output window, see Notes. Default ``"same"``.

    Notes
    -----
    The trace axis is the **last** axis of the state; leading axes are independent traces. With
    the trace ``x_0 … x_{n-1}`` extended by **zeros** outside ``[0, n)`` (zero padding, no
    wrap-around or reflection), the full discrete convolution is
    ``y_i = Σ_k h_k x_{i−k}``, ``i = 0 … n+m−2`` (Oppenheim & Schafer, *Discrete-Time Signal
    Processing*, §2.3). The modes return

    - ``"full"``: all ``n + m − 1`` samples, identical to ``np.convolve(x, h, "full")``;
    - ``"same"``: ``n`` samples ``y_{s} … y_{s+n−1}`` with ``s = (m − 1) // 2``, i.e. the response
      is treated as centred on its sample ``s`` (zero lag there). This equals
      ``scipy.signal.convolve(x, h, "same")`` always and ``np.convolve(x, h, "same")`` when
      ``n >= m`` (numpy returns ``max(n, m)`` samples otherwise);
    - ``"causal"``: the first ``n`` samples ``y_0 … y_{n−1}``, a causal response with zero lag at
      ``h_0`` (what a physical instrument does to a record that starts at rest).

    Samples near the ends therefore see zeros beyond the record. Output units are the state's
    units times those of ``h``.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.observe import InstrumentResponse
    >>> InstrumentResponse([0.25, 0.5, 0.25])(np.array([0.0, 4.0, 0.0, 0.0]))
    array([2., 1., 0., 0.])
    >>> InstrumentResponse([1.0, 1.0], mode="full")(np.array([1.0, 2.0, 3.0]))
    array([1., 3., 5., 3.])
    """

    _modes = ("same", "full", "causal")

    @checked_init("bj.observe.InstrumentResponse")
    def __init__(self, impulse_response: Any, mode: str = "same"):
        h = np.asarray(impulse_response, dtype=float)
        if h.ndim != 1 or h.size == 0:
            raise ValueError(
                "InstrumentResponse(impulse_response) must be a non-empty 1-D array of filter "
                f"coefficients, got shape {h.shape}"
            )
        if not np.all(np.isfinite(h)):
            raise ValueError("InstrumentResponse(impulse_response) contains NaN or inf")
        if mode not in self._modes:
            raise ValueError(
                f"InstrumentResponse(mode=...) must be one of {self._modes}, got {mode!r}"
            )
        self.impulse_response = h
        self.mode = mode

    def _n_out(self, n: int) -> int:
        return n + self.impulse_response.size - 1 if self.mode == "full" else n

    def _check_shape(self, shape: tuple[Any, ...]) -> None:
        if len(shape) == 0 or shape[-1] == 0:
            raise ValueError(
                "InstrumentResponse needs a state with a non-empty last (time) axis, got shape "
                f"{shape}"
            )

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Return ``input_shape[:-1] + (n_out,)``."""
        shape = tuple(input_shape)
        self._check_shape(shape)
        return (*shape[:-1], self._n_out(int(shape[-1])))

    def trace_matrix(self, n: int) -> sp.csr_matrix:
        """Return the ``(n_out, n)`` convolution matrix for one trace of ``n`` samples."""
        cache = self.__dict__.setdefault("_trace_cache", {})
        if n not in cache:
            h = self.impulse_response
            m = h.size
            j = np.tile(np.arange(n), m)
            k = np.repeat(np.arange(m), n)
            full = sp.csr_matrix((h[k], (j + k, j)), shape=(n + m - 1, n))
            start = (m - 1) // 2 if self.mode == "same" else 0
            cache[n] = full[start : start + self._n_out(n)].tocsr()
        return cache[n]

    def _build(self, input_shape: tuple[int, ...]) -> sp.csr_matrix:
        n = int(input_shape[-1])
        n_traces = int(np.prod(input_shape[:-1], dtype=int))
        return sp.kron(sp.identity(n_traces, format="csr"), self.trace_matrix(n), format="csr")

    def apply(self, state: Any) -> Any:
        """Return the symbolic convolution along the last axis (needs a static trace length)."""
        shape, tensor = _static_shape(state)
        self._check_shape(shape)
        n = shape[-1]
        if n is None:
            raise ValueError(
                "InstrumentResponse needs the trace length (last axis) to be known statically; "
                "give the state a fixed shape"
            )
        mat = self.trace_matrix(int(n))
        if tensor.ndim == 1:
            return symbolic_matvec(mat, tensor)
        traces = tensor.reshape((-1, int(n)))
        out = pts.structured_dot(pts.as_sparse_variable(mat), traces.T).T
        lead = tuple(tensor.shape[i] for i in range(tensor.ndim - 1))
        return out.reshape((*lead, mat.shape[0]))

    def __repr__(self) -> str:
        return f"InstrumentResponse({self.impulse_response.size} taps, mode={self.mode!r})"


class Decimate(_MatrixObservation):
    """Keep every ``factor``-th sample of the last axis, starting at ``offset``.

    Parameters
    ----------
    factor : int
        Decimation factor (>= 1).
    offset : int, optional
        Index of the first kept sample (>= 0). Default 0.

    Notes
    -----
    ``y_j = x_{offset + j · factor}`` for ``j = 0 … ceil((n − offset) / factor) − 1`` along the
    last (time) axis, i.e. ``x[..., offset::factor]``. This is pure downsampling with **no
    anti-alias filter**: content above the new Nyquist frequency ``1 / (2 · factor · dt)`` folds
    back (Oppenheim & Schafer, *Discrete-Time Signal Processing*, §4.6). Low-pass first, e.g.
    ``InstrumentResponse(lowpass) >> Decimate(4)``. An offset beyond the trace raises
    ``ValueError``. Units are those of the state.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.observe import Decimate
    >>> Decimate(3, offset=1)(np.arange(8.0))
    array([1., 4., 7.])
    """

    @checked_init("bj.observe.Decimate")
    def __init__(self, factor: int, offset: int = 0):
        self.factor = _as_count(factor, "Decimate(factor)", 1)
        self.offset = _as_count(offset, "Decimate(offset)", 0)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Return ``input_shape[:-1] + (n_out,)``."""
        shape = tuple(input_shape)
        if len(shape) == 0:
            raise ValueError("Decimate needs a state with at least one (time) axis")
        n = shape[-1]
        if n is None:
            return (*shape[:-1], None)  # type: ignore[return-value]
        n_out = len(range(self.offset, int(n), self.factor))
        if n_out == 0:
            raise ValueError(
                f"Decimate(offset={self.offset}) leaves no samples of a trace of length {n}; "
                f"use an offset < {n}"
            )
        return (*shape[:-1], n_out)

    def _build(self, input_shape: tuple[int, ...]) -> sp.csr_matrix:
        n = int(input_shape[-1])
        keep = np.arange(self.offset, n, self.factor)
        one = sp.csr_matrix(
            (np.ones(keep.size), (np.arange(keep.size), keep)), shape=(keep.size, n)
        )
        n_traces = int(np.prod(input_shape[:-1], dtype=int))
        return sp.kron(sp.identity(n_traces, format="csr"), one, format="csr")

    def apply(self, state: Any) -> Any:
        """Return the symbolic ``state[..., offset::factor]``."""
        shape, tensor = _static_shape(state)
        self.output_shape(shape)
        return tensor[..., self.offset :: self.factor]

    def __repr__(self) -> str:
        return f"Decimate(factor={self.factor}, offset={self.offset})"


def lowpass_matrix(n: int, sample_interval: float, cutoff: float, order: int = 4) -> np.ndarray:
    """Return the matrix of a zero-phase Butterworth low-pass filter on ``n`` samples.

    Parameters
    ----------
    n : int
        Trace length (samples).
    sample_interval : float
        Sampling interval in seconds.
    cutoff : float
        Corner frequency in Hz, below the Nyquist frequency ``1 / (2 sample_interval)``.
    order : int, default 4
        Butterworth order of one pass (the forward-backward filter has twice the roll-off).

    Returns
    -------
    numpy.ndarray, shape (n, n)
        ``F`` with ``F @ x == scipy.signal.sosfiltfilt(sos, x)``.

    Notes
    -----
    Forward-backward filtering (Gustafsson 1996, IEEE Trans. Signal Process. 44, 988–992) has
    zero phase, so it moves no arrival in time; its amplitude response is ``|B(ν)|²`` with
    ``|B(ν)|² = 1 / (1 + (ν/ν_c)^{2·order})`` of the Butterworth filter (−6 dB at the corner).
    The filter is linear, so filtering the data and the predictions with the same ``F`` keeps
    the misfit consistent.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.observe import lowpass_matrix
    >>> f = lowpass_matrix(1000, 0.001, 20.0)
    >>> t = np.arange(1000) * 0.001
    >>> slow, fast = np.sin(2 * np.pi * 5 * t), np.sin(2 * np.pi * 200 * t)
    >>> mid = slice(300, 700)  # away from the edge transients
    >>> bool(np.abs(f @ slow - slow)[mid].max() < 1e-4), bool(np.abs(f @ fast)[mid].max() < 1e-6)
    (True, True)
    """
    n = int(n)
    dt = float(sample_interval)
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError("sample_interval must be a positive number of seconds")
    nyquist = 0.5 / dt
    if not (0 < cutoff < nyquist):
        raise ValueError(
            f"cutoff={cutoff} Hz must lie between 0 and the Nyquist frequency {nyquist:g} Hz"
        )
    if not isinstance(order, int | np.integer) or order < 1:
        raise ValueError("order must be a positive integer")
    if order > 20:  # LowPass validates on 64 samples, which orders above 20 cannot pad
        raise ValueError(f"order={order} is too high; a Butterworth order of at most 20 works")
    sos = scipy.signal.butter(int(order), cutoff / nyquist, output="sos")
    padlen = 3 * (2 * len(sos) + 1)
    if n <= padlen:
        raise ValueError(f"a trace of {n} samples is too short for this filter; need > {padlen}")
    return scipy.signal.sosfiltfilt(sos, np.eye(n), axis=0)


class LowPass(Observation):
    """Zero-phase low-pass filter along the last (time) axis, as an observation operator.

    Parameters
    ----------
    cutoff : float
        Corner frequency in Hz.
    sample_interval : float
        Sampling interval of the traces in seconds.
    order : int, default 4

    Notes
    -----
    See :func:`lowpass_matrix`. Chain it after a modality's own observation operator
    (``observe >> LowPass(...)``) and filter the data with :meth:`filter_data`.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.observe import LowPass
    >>> op = LowPass(cutoff=20.0, sample_interval=0.001)
    >>> op(np.ones((2, 100))).shape
    (2, 100)
    """

    @checked_init("bj.observe.LowPass")
    def __init__(self, cutoff: float, sample_interval: float, order: int = 4):
        self.cutoff = float(cutoff)
        self.sample_interval = float(sample_interval)
        self.order = order
        lowpass_matrix(64, self.sample_interval, self.cutoff, order)  # validate early
        self._cache: dict[int, np.ndarray] = {}

    def matrix(self, n: int) -> np.ndarray:
        """Return the ``(n, n)`` filter matrix (cached)."""
        if n not in self._cache:
            self._cache[n] = lowpass_matrix(n, self.sample_interval, self.cutoff, self.order)
        return self._cache[n]

    def apply(self, state: Any) -> Any:
        """Return the symbolic filtered state."""
        state = pt.as_tensor_variable(state)
        n = state.type.shape[-1] if state.ndim else None
        if n is None:
            raise ValueError("LowPass needs traces with a known length along the last axis")
        return pt.tensordot(state, pt.constant(self.matrix(int(n)).T), axes=[[state.ndim - 1], [0]])

    def filter_data(self, data: Any) -> np.ndarray:
        """Filter numpy data along the last axis (the same linear map as :meth:`apply`)."""
        arr = np.asarray(data, dtype=float)
        return arr @ self.matrix(arr.shape[-1]).T

    def __call__(self, state: Any) -> Any:
        """Filter a tensor (symbolic result) or an array (numpy result)."""
        if isinstance(state, np.ndarray | list | tuple | float | int):
            return self.filter_data(state)
        return self.apply(state)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Return ``input_shape`` (filtering keeps the shape)."""
        return tuple(input_shape)

    def linear_operator(self, input_shape: tuple[int, ...]) -> sp.csr_matrix:
        """Return ``I ⊗ F`` acting on the C-order flattened state."""
        lead = int(np.prod(input_shape[:-1], dtype=int))
        return sp.kron(sp.identity(lead), sp.csr_matrix(self.matrix(int(input_shape[-1]))), "csr")

    def __repr__(self) -> str:
        return f"LowPass({self.cutoff:g} Hz)"
