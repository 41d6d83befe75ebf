"""Turn a pytensor right-hand side ``f(t, y, θ)`` into straight-line scalar code (not public).

The right-hand side of an ODE is written by the user with pytensor operations on tensors. For
the compiled integrators it is rewritten here, once per model, into a pure *scalar* graph: every
element of ``y`` and of the parameters becomes a scalar symbol, and each tensor operation
(elementwise arithmetic, stacking, indexing, reductions, dot products, reshapes, …) is carried
out element by element on numpy object arrays of pytensor scalar variables. The Jacobians
``∂f/∂y`` and ``∂f/∂θ`` are then the reverse-mode derivatives of that scalar graph
(``pytensor.grad``), and the three are printed as one Python function of plain floats that numba
compiles without any array allocation inside. Operations outside the supported set raise
:class:`Unsupported`, and the caller falls back to the ``pytensor.scan`` integrator.
"""

from __future__ import annotations

import hashlib
import importlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytensor
import pytensor.scalar as ps
import pytensor.tensor as pt
import pytensor.tensor.basic as ptb
import pytensor.tensor.elemwise as pte
import pytensor.tensor.math as ptm
import pytensor.tensor.subtensor as pts
from pytensor.graph.basic import Constant, Variable

try:  # pytensor >= 2.35 moved the traversal helpers
    from pytensor.graph.traversal import ancestors, io_toposort
except ImportError:  # pragma: no cover - older pytensor
    from pytensor.graph.basic import ancestors, io_toposort

_shape_ops = importlib.import_module("pytensor.tensor.shape")

#: Largest number of scalar outputs (``n`` values of ``f`` plus ``n (n + m)`` Jacobian entries)
#: printed as straight-line code; larger systems use the ``pytensor.scan`` integrator.
MAX_OUTPUTS = 4096
#: Largest number of scalar operations in the printed code (numba compile time grows with it).
MAX_LINES = 40_000


class Unsupported(Exception):
    """The right-hand side uses something the scalar code generator does not handle."""


def _obj(value: Any) -> np.ndarray:
    """Return a 0-d object array holding ``value`` (``np.array`` would iterate it)."""
    out = np.empty((), dtype=object)
    out[()] = value
    return out


def _const(value: Any, dtype: str) -> Variable:
    return ps.constant(np.asarray(value, dtype=dtype).item(), dtype=dtype)


def _is_const(var: Any) -> bool:
    return isinstance(var, Constant)


def _apply_scalar(op: Any, args: Sequence[Variable]) -> list[Variable]:
    """Apply scalar ``op``; fold when every argument is a constant."""
    if all(_is_const(a) for a in args) and not isinstance(op, ps.Composite):
        node = op.make_node(*args)
        values = op.impl(*[a.data for a in args])
        if node.nout == 1:
            values = [values]
        return [_const(v, o.type.dtype) for v, o in zip(values, node.outputs, strict=True)]
    node = op.make_node(*args)
    return list(node.outputs)


def _int_values(array: np.ndarray, what: str) -> np.ndarray:
    """Resolve an object array of scalar constants to integers (indices, shapes, axes)."""
    flat = []
    for v in array.ravel():
        if not _is_const(v):
            raise Unsupported(f"{what} depends on the state or parameters")
        flat.append(int(v.data))
    return np.array(flat, dtype=np.int64).reshape(array.shape)


def _broadcast(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    try:
        return list(np.broadcast_arrays(*arrays))
    except ValueError as err:
        raise Unsupported(f"shapes do not broadcast: {err}") from None


def _reduce(op: Any, values: Sequence[Variable], dtype: str) -> Variable:
    if not values:
        identity = getattr(op, "identity", None)
        if identity is None or not np.isfinite(float(identity)):
            raise Unsupported(f"empty reduction with {op}")
        return _const(identity, dtype)
    acc = values[0]
    for v in values[1:]:
        (acc,) = _apply_scalar(op, [acc, v])
    return acc


class _Scalarizer:
    """Evaluate a tensor graph on object arrays of pytensor scalar variables."""

    def __init__(self, known: dict[Variable, np.ndarray]):
        self.values = dict(known)

    def value(self, var: Variable) -> np.ndarray:
        if var in self.values:
            return self.values[var]
        if isinstance(var, Constant):
            data = np.asarray(var.data)
            dtype = getattr(var.type, "dtype", str(data.dtype))
            arr = np.empty(data.shape, dtype=object)
            for idx in np.ndindex(data.shape):
                arr[idx] = _const(data[idx], dtype)
            self.values[var] = arr
            return arr
        raise Unsupported(f"free variable {var} (shape unknown)")

    def run(self, outputs: Sequence[Variable]) -> list[np.ndarray]:
        inputs = list(self.values)
        for node in io_toposort(inputs, list(outputs)):
            results = self.apply(node)
            for out, res in zip(node.outputs, results, strict=True):
                self.values[out] = res
        return [self.value(o) for o in outputs]

    def apply(self, node: Any) -> list[np.ndarray]:
        op = node.op
        name = type(op).__name__
        ins = [self.value(i) for i in node.inputs]
        out_dtypes = [getattr(o.type, "dtype", None) for o in node.outputs]
        if isinstance(op, pte.Elemwise):
            return self._elemwise(op.scalar_op, ins, len(node.outputs))
        if isinstance(op, ps.ScalarOp):  # a scalar-typed node inside the tensor graph
            return [_obj(v) for v in _apply_scalar(op, [a[()] for a in ins])]
        if isinstance(op, pte.DimShuffle):
            return [self._dimshuffle(ins[0], op.new_order)]
        if isinstance(op, pte.CAReduce):
            return [self._careduce(op, ins[0], out_dtypes[0])]
        if isinstance(op, ptb.MakeVector):
            out = np.empty(len(ins), dtype=object)
            for k, a in enumerate(ins):
                out[k] = self._cast(a[()], op.dtype)
            return [out]
        if isinstance(op, ptb.Join):
            axis = int(_int_values(ins[0], "Join axis"))
            arrays = [a for a in ins[1:]]
            axis = axis % max(arrays[0].ndim, 1)
            return [np.concatenate(arrays, axis=axis)]
        if isinstance(op, ptb.Alloc):
            shape = tuple(int(_int_values(s, "Alloc shape")) for s in ins[1:])
            return [np.broadcast_to(ins[0], shape).copy()]
        if isinstance(op, _shape_ops.Shape):
            return [self._constant_array(np.array(ins[0].shape, dtype=np.int64), "int64")]
        if isinstance(op, _shape_ops.Shape_i):
            return [_obj(_const(ins[0].shape[op.i], "int64"))]
        if isinstance(op, _shape_ops.SpecifyShape):
            return [ins[0]]
        if isinstance(op, _shape_ops.Reshape):
            shape = tuple(int(s) for s in _int_values(ins[1], "Reshape shape"))
            try:
                return [ins[0].reshape(shape)]
            except ValueError as err:
                raise Unsupported(f"reshape: {err}") from None
        if isinstance(op, (ptb.ScalarFromTensor, ptb.TensorFromScalar)):
            return [ins[0]]
        if name in ("ViewOp", "DeepCopyOp", "OutputGuard", "Assert", "CheckAndRaise"):
            return [ins[0]]
        if isinstance(op, pts.Subtensor):
            idx = self._indices(node.inputs[1:], op.idx_list)
            return [self._copy(ins[0][idx])]
        if isinstance(op, pts.IncSubtensor):
            idx = self._indices(node.inputs[2:], op.idx_list)
            return [self._set(ins[0], idx, ins[1], op.set_instead_of_inc)]
        if isinstance(op, pts.AdvancedSubtensor1):
            index = _int_values(ins[1], "index")
            return [self._copy(ins[0][index])]
        if isinstance(op, pts.AdvancedIncSubtensor1):
            index = _int_values(ins[2], "index")
            return [self._set(ins[0], index, ins[1], op.set_instead_of_inc)]
        if isinstance(op, ptm.Dot):
            return [self._dot(ins[0], ins[1], np.dot)]
        if name == "Blockwise" and isinstance(getattr(op, "core_op", None), ptm.Dot):
            return [self._dot(ins[0], ins[1], np.matmul)]
        if isinstance(op, ptb.ARange):
            start, stop, step = (int(_int_values(a, "arange")) for a in ins)
            return [self._constant_array(np.arange(start, stop, step), out_dtypes[0])]
        raise Unsupported(f"operation {op} ({name})")

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _cast(value: Variable, dtype: str) -> Variable:
        if value.type.dtype == dtype:
            return value
        return _apply_scalar(ps.Cast(ps.get_scalar_type(dtype)), [value])[0]

    @staticmethod
    def _copy(value: Any) -> np.ndarray:
        if isinstance(value, np.ndarray):
            return value.copy()
        return _obj(value)

    @staticmethod
    def _constant_array(values: np.ndarray, dtype: str) -> np.ndarray:
        out = np.empty(values.shape, dtype=object)
        for idx in np.ndindex(values.shape):
            out[idx] = _const(values[idx], dtype)
        return out

    def _elemwise(self, scalar_op: Any, ins: list[np.ndarray], nout: int) -> list[np.ndarray]:
        args = _broadcast(ins)
        shape = args[0].shape if args else ()
        outs = [np.empty(shape, dtype=object) for _ in range(nout)]
        for idx in np.ndindex(shape):
            results = _apply_scalar(scalar_op, [a[idx] for a in args])
            for o, r in zip(outs, results, strict=True):
                o[idx] = r
        return outs

    @staticmethod
    def _dimshuffle(x: np.ndarray, new_order: Sequence[Any]) -> np.ndarray:
        kept = [d for d in new_order if d != "x"]
        dropped = tuple(d for d in range(x.ndim) if d not in kept)
        if any(x.shape[d] != 1 for d in dropped):
            raise Unsupported("DimShuffle drops a dimension longer than 1")
        squeezed = np.squeeze(x, axis=dropped) if dropped else x
        remaining = [d for d in range(x.ndim) if d not in dropped]
        moved = np.transpose(squeezed, [remaining.index(d) for d in kept]) if kept else squeezed
        shape, it = [], iter(moved.shape)
        for d in new_order:
            shape.append(1 if d == "x" else next(it))
        return moved.reshape(shape)

    def _careduce(self, op: Any, x: np.ndarray, dtype: str) -> np.ndarray:
        axes = tuple(range(x.ndim)) if op.axis is None else tuple(a % x.ndim for a in op.axis)
        keep = [d for d in range(x.ndim) if d not in axes]
        moved = np.transpose(x, keep + list(axes))
        lead = moved.shape[: len(keep)]
        flat = moved.reshape((*lead, -1)) if moved.size else moved.reshape((*lead, 0))
        out = np.empty(lead, dtype=object)
        for idx in np.ndindex(lead):
            values = [self._cast(v, dtype) for v in flat[idx]]
            out[idx] = _reduce(op.scalar_op, values, dtype)
        return out

    @staticmethod
    def _dot(a: np.ndarray, b: np.ndarray, fn: Callable[..., Any]) -> np.ndarray:
        if a.size == 0 or b.size == 0:
            raise Unsupported("dot product of empty arrays")
        result = fn(a, b)
        return result if isinstance(result, np.ndarray) else _obj(result)

    def _indices(self, inputs: Sequence[Variable], idx_list: Sequence[Any]) -> tuple:
        resolved = []
        for entry in pts.indices_from_subtensor(list(inputs), idx_list):
            if isinstance(entry, slice):
                parts = [
                    None
                    if p is None
                    else int(_int_values(self.value(p), "slice"))
                    if isinstance(p, Variable)
                    else int(p)
                    for p in (entry.start, entry.stop, entry.step)
                ]
                resolved.append(slice(*parts))
            elif isinstance(entry, Variable):
                resolved.append(int(_int_values(self.value(entry), "index")))
            else:
                resolved.append(int(entry))
        return tuple(resolved)

    @staticmethod
    def _set(x: np.ndarray, idx: Any, y: np.ndarray, set_instead_of_inc: bool) -> np.ndarray:
        out = x.copy()
        if set_instead_of_inc:
            out[idx] = y
        elif isinstance(idx, np.ndarray):  # repeated indices accumulate
            np.add.at(out, idx, y)
        else:
            out[idx] = out[idx] + y
        return out


# ------------------------------------------------------------------------------------------------
# printing a scalar graph as Python source
# ------------------------------------------------------------------------------------------------
_NARY = {"Add": " + ", "Mul": " * "}
_INFIX = {
    "Sub": " - ",
    "TrueDiv": " / ",
    "IntDiv": " // ",
    "Mod": " % ",
    "Pow": " ** ",
    "LT": " < ",
    "GT": " > ",
    "LE": " <= ",
    "GE": " >= ",
    "EQ": " == ",
    "NEQ": " != ",
    "AND": " & ",
    "OR": " | ",
    "XOR": " ^ ",
}
_CALL = {
    "Exp": "math.exp",
    "Expm1": "math.expm1",
    "Exp2": "_exp2",
    "Log": "math.log",
    "Log1p": "math.log1p",
    "Log2": "math.log2",
    "Log10": "math.log10",
    "Sqrt": "math.sqrt",
    "Sin": "math.sin",
    "Cos": "math.cos",
    "Tan": "math.tan",
    "ArcSin": "math.asin",
    "ArcCos": "math.acos",
    "ArcTan": "math.atan",
    "ArcTan2": "math.atan2",
    "Sinh": "math.sinh",
    "Cosh": "math.cosh",
    "Tanh": "math.tanh",
    "ArcSinh": "math.asinh",
    "ArcCosh": "math.acosh",
    "ArcTanh": "math.atanh",
    "Erf": "math.erf",
    "Erfc": "math.erfc",
    "GammaLn": "math.lgamma",
    "Gamma": "math.gamma",
    "Abs": "abs",
    "Floor": "np.floor",
    "Ceil": "np.ceil",
    "Trunc": "np.trunc",
    "Sign": "_sign",
    "Maximum": "_maximum",
    "ScalarMaximum": "_maximum",
    "Minimum": "_minimum",
    "ScalarMinimum": "_minimum",
    "Sigmoid": "_sigmoid",
    "Softplus": "_softplus",
    "Log1mexp": "_log1mexp",
    "Clip": "_clip",
}

#: Helper functions available to the printed code (numba-compiled with it).
HELPERS = """
def _exp2(x):
    return 2.0 ** x


def _sign(x):
    return (x > 0) - (x < 0) if x == x else x


def _maximum(a, b):
    return a if (a >= b or a != a) else b


def _minimum(a, b):
    return a if (a <= b or a != a) else b


def _clip(x, lo, hi):
    return _minimum(_maximum(x, lo), hi)


def _sigmoid(x):
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _softplus(x):
    if x < -37.0:
        return math.exp(x)
    if x < 18.0:
        return math.log1p(math.exp(x))
    if x < 33.3:
        return x + math.exp(-x)
    return x


def _log1mexp(x):
    if x < -0.6931471805599453:
        return math.log1p(-math.exp(x))
    return math.log(-math.expm1(x))
"""


def _literal(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return str(int(value)) if value >= 0 else f"({int(value)})"
    value = float(value)
    if math.isnan(value):
        return "math.nan"
    if math.isinf(value):
        return "math.inf" if value > 0 else "(-math.inf)"
    return repr(value) if value >= 0 else f"({value!r})"


def _python_value(value: Any, dtype: str) -> Any:
    """Return a constant as a Python bool / int / float of the scalar's kind."""
    value = np.asarray(value, dtype=dtype).item()
    return value


class _Printer:
    """Print scalar graphs as straight-line assignments, with folding and common subexpressions.

    A printed value is either a Python number (a folded constant) or the name of a local.
    """

    def __init__(self, names: dict[Variable, str]):
        self.codes: dict[Variable, Any] = dict(names)
        self.lines: list[str] = []
        self.memo: dict[tuple, str] = {}

    def code(self, var: Variable) -> Any:
        if var in self.codes:
            return self.codes[var]
        if isinstance(var, Constant):
            return _python_value(var.data, var.type.dtype)
        raise Unsupported(f"free scalar {var}")

    def run(self, inputs: Sequence[Variable], outputs: Sequence[Variable]) -> list[Any]:
        for node in io_toposort(list(inputs), list(outputs)):
            args = [self.code(i) for i in node.inputs]
            results = self.emit(node.op, args, node.outputs)
            for out, res in zip(node.outputs, results, strict=True):
                self.codes[out] = res
            if len(self.lines) > MAX_LINES:
                raise Unsupported(f"the right-hand side and Jacobians exceed {MAX_LINES} lines")
        return [self.code(o) for o in outputs]

    def assign(self, key: tuple, expr: str) -> str:
        name = self.memo.get(key)
        if name is None:
            name = f"_v{len(self.lines)}"
            self.lines.append(f"{name} = {expr}")
            self.memo[key] = name
        return name

    def emit(self, op: Any, args: list[Any], outputs: Sequence[Variable]) -> list[Any]:
        if isinstance(op, ps.Composite):
            inner = _Printer({})
            inner.codes = dict(zip(op.fgraph.inputs, args, strict=True))
            inner.lines, inner.memo = self.lines, self.memo
            return inner.run(op.fgraph.inputs, op.fgraph.outputs)
        out = outputs[0]
        dtype = out.type.dtype
        name = type(op).__name__
        numbers = [not isinstance(a, str) for a in args]
        if all(numbers):
            value = op.impl(*args)
            return [_python_value(value, dtype)]
        folded = self._simplify(name, args, dtype)
        if folded is not None:
            return [folded]
        key = (name, str(op), dtype, tuple(args))
        return [self.assign(key, self._expression(op, name, args, dtype))]

    @staticmethod
    def _simplify(name: str, args: list[Any], dtype: str) -> Any:
        """Identities that remove work: x + 0, x * 1, x * 0, x - 0, x / 1, casts, fill."""

        def is_number(a: Any, value: float) -> bool:
            return not isinstance(a, str) and not isinstance(a, bool) and a == value

        float_out = dtype.startswith("float")
        if name == "Add":
            rest = [a for a in args if not is_number(a, 0)]
            if len(rest) == 1 and isinstance(rest[0], str):
                return rest[0]
        elif name == "Mul":
            if float_out and any(is_number(a, 0) for a in args):
                return 0.0
            rest = [a for a in args if not is_number(a, 1)]
            if len(rest) == 1 and isinstance(rest[0], str):
                return rest[0]
        elif name == "Sub" and is_number(args[1], 0):
            return args[0]
        elif name == "TrueDiv" and is_number(args[1], 1):
            return args[0]
        elif name == "TrueDiv" and float_out and is_number(args[0], 0) and isinstance(args[1], str):
            return 0.0
        elif name == "Second":
            return args[1]
        elif name == "Identity":
            return args[0]
        elif name == "Switch" and not isinstance(args[0], str):
            return args[1] if args[0] else args[2]
        elif name == "Switch" and args[1] == args[2]:
            return args[1]
        return None

    def _expression(self, op: Any, name: str, args: list[Any], dtype: str) -> str:
        text = [a if isinstance(a, str) else _literal(a) for a in args]
        if name in _NARY:
            kept = [
                t
                for a, t in zip(args, text, strict=True)
                if isinstance(a, str) or a != (0 if name == "Add" else 1)
            ]
            return _NARY[name].join(kept or text[:1])
        if name in _INFIX:
            return _INFIX[name].join(text)
        if name in _CALL:
            return f"{_CALL[name]}({', '.join(text)})"
        if name == "Neg":
            return f"-{text[0]}"
        if name == "Sqr":
            return f"{text[0]} * {text[0]}"
        if name == "Reciprocal":
            return f"1.0 / {text[0]}"
        if name == "Switch":
            return f"{text[1]} if {text[0]} else {text[2]}"
        if name == "Invert":
            return f"not {text[0]}" if dtype == "bool" else f"~{text[0]}"
        if name == "Cast":
            if dtype.startswith("float"):
                return f"float({text[0]})"
            if dtype == "bool":
                return f"bool({text[0]})"
            return f"int({text[0]})"
        raise Unsupported(f"scalar operation {op} ({name})")


# ------------------------------------------------------------------------------------------------
# the system: right-hand side and Jacobians of one model, printed and keyed by their source
# ------------------------------------------------------------------------------------------------
class RHSGraph:
    """The right-hand side of ``dy/dt = f(t, y, θ)`` as printed scalar code.

    Attributes
    ----------
    source : str
        Python source defining ``_rhs(t, y, p, f)`` and ``_rhs_jac(t, y, p, f, jy, jp)``.
    n_state : int
        Number of state components ``n`` (the state is flattened).
    n_params : int
        Number of parameter scalars ``m`` (all parameters and captured variables, flattened).
    extra : list of pytensor Variable
        Variables of the outer graph that the right-hand side reads without being given them as
        parameters; they become inputs of the solver (after the given parameters).
    key : str
        SHA-256 of :attr:`source` (equal sources compile once per process).
    """

    def __init__(self, source: str, n_state: int, n_params: int, extra: list[Variable]):
        self.source = source
        self.n_state = n_state
        self.n_params = n_params
        self.extra = extra
        self.key = hashlib.sha256(source.encode()).hexdigest()


def _scalar_symbols(prefix: str, shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    for k, idx in enumerate(np.ndindex(shape)):
        out[idx] = ps.float64(f"{prefix}{k}")
    return out


def _outer_variables(outputs: Sequence[Variable], own: Sequence[Variable]) -> list[Variable]:
    """Variables of the outer graph read by ``outputs`` (not constants, not ``own`` symbols)."""
    own_set = set(own)
    dependent: set[Variable] = set(own)
    found: list[Variable] = []
    nodes = io_toposort(list(own), list(outputs))
    for node in nodes:
        if any(i in dependent for i in node.inputs):
            dependent.update(node.outputs)
    for node in nodes:
        if not any(o in dependent for o in node.outputs):
            continue
        for i in node.inputs:
            if i in dependent or i in own_set or isinstance(i, Constant) or i in found:
                continue
            roots = [r for r in ancestors([i]) if r.owner is None]
            if all(isinstance(r, Constant) for r in roots):
                continue  # a constant expression: evaluated inside
            found.append(i)
    for out in outputs:  # an output that does not depend on the symbols at all
        if out not in dependent and not isinstance(out, Constant) and out not in found:
            roots = [r for r in ancestors([out]) if r.owner is None]
            if not all(isinstance(r, Constant) for r in roots):
                found.append(out)
    return found


def _static_shape(var: Variable, what: str) -> tuple[int, ...]:
    shape = getattr(var.type, "shape", None)
    if shape is None or any(s is None for s in shape):
        raise Unsupported(f"{what} has no fixed shape ({var.type})")
    return tuple(int(s) for s in shape)


def build_rhs(
    rhs: Callable[[Any, Any, Any], Any],
    state_shape: tuple[int, ...],
    params: Sequence[Variable],
    is_sequence: bool,
) -> RHSGraph:
    """Trace ``rhs`` on symbols, scalarize it, differentiate it and print it.

    Parameters
    ----------
    rhs : callable
        ``rhs(t, y, params)`` written with pytensor operations.
    state_shape : tuple of int
        Shape of the state ``y``.
    params : sequence of pytensor Variable
        The parameter tensors as given (their static shapes are used; values are not read).
    is_sequence : bool
        Whether ``rhs`` receives the parameters as a tuple (else the single tensor).

    Raises
    ------
    Unsupported
        When an operation, a shape or the size is outside what the code generator handles.
    """
    t_sym = pt.dscalar("t")
    y_sym = pt.tensor("y", dtype="float64", shape=state_shape)
    p_syms = []
    for k, p in enumerate(params):
        if not str(p.dtype).startswith("float"):
            raise Unsupported(f"parameter {k} has dtype {p.dtype}; the solver needs floats")
        p_syms.append(pt.tensor(f"p{k}", dtype=p.dtype, shape=_static_shape(p, f"parameter {k}")))
    value = rhs(t_sym, y_sym, tuple(p_syms) if is_sequence else p_syms[0])
    if isinstance(value, (list, tuple)):
        value = pt.stack([pt.as_tensor_variable(v) for v in value])
    f_sym = pt.cast(pt.as_tensor_variable(value), "float64")

    extra = _outer_variables([f_sym], [t_sym, y_sym, *p_syms])
    extra_syms = []
    for k, v in enumerate(extra):
        if not str(getattr(v.type, "dtype", "")).startswith("float"):
            raise Unsupported(f"the right-hand side reads {v} of dtype {v.type}, not a float")
        extra_syms.append(pt.tensor(f"e{k}", dtype=v.dtype, shape=_static_shape(v, str(v))))
    if extra:
        f_sym = pytensor.clone_replace(f_sym, dict(zip(extra, extra_syms, strict=True)))

    n = int(np.prod(state_shape, dtype=int))
    sizes = [int(np.prod(s.type.shape, dtype=int)) for s in (*p_syms, *extra_syms)]
    m = int(sum(sizes))
    if n * (1 + n + m) > MAX_OUTPUTS:
        raise Unsupported(f"{n} states x {m} parameters is too large for straight-line code")

    t_s = ps.float64("t")
    y_s = _scalar_symbols("y", (n,))
    p_s = _scalar_symbols("p", (m,))
    known = {t_sym: _obj(t_s), y_sym: y_s.reshape(state_shape)}
    offset = 0
    for sym, size in zip((*p_syms, *extra_syms), sizes, strict=True):
        known[sym] = p_s[offset : offset + size].reshape(sym.type.shape)
        offset += size
    (f_obj,) = _Scalarizer(known).run([f_sym])
    try:
        f_flat = np.broadcast_to(f_obj, state_shape).ravel()
    except ValueError:
        raise Unsupported(
            f"rhs returns shape {f_obj.shape}, the state has shape {state_shape}"
        ) from None

    wrt = list(y_s) + list(p_s)
    jac = np.empty((n, n + m), dtype=object)
    for i, fi in enumerate(f_flat):
        if not any(v.owner is None and not isinstance(v, Constant) for v in ancestors([fi])):
            jac[i, :] = _const(0.0, "float64")
            continue
        grads = pytensor.grad(fi, wrt=wrt, disconnected_inputs="ignore", return_disconnected="None")
        for k, g in enumerate(grads):
            jac[i, k] = _const(0.0, "float64") if g is None else g

    names = {t_s: "t"}
    names.update({v: f"y{k}" for k, v in enumerate(y_s)})
    names.update({v: f"p{k}" for k, v in enumerate(p_s)})
    inputs = [t_s, *y_s, *p_s]

    printer = _Printer(names)
    f_codes = printer.run(inputs, list(f_flat))
    rhs_lines = list(printer.lines)
    jac_codes = printer.run(inputs, list(jac.ravel()))
    jac_lines = list(printer.lines)

    def text(code: Any) -> str:
        return code if isinstance(code, str) else _literal(float(code))

    unpack = [f"    y{k} = y[{k}]" for k in range(n)] + [f"    p{k} = p[{k}]" for k in range(m)]
    src = ["def _rhs(t, y, p, f):", *unpack]
    src += [f"    {line}" for line in rhs_lines]
    src += [f"    f[{i}] = {text(c)}" for i, c in enumerate(f_codes)]
    src += ["", "", "def _rhs_jac(t, y, p, f, jy, jp):", *unpack]
    src += [f"    {line}" for line in jac_lines]
    src += [f"    f[{i}] = {text(c)}" for i, c in enumerate(f_codes)]
    for i in range(n):
        for k in range(n + m):
            c = jac_codes[i * (n + m) + k]
            target = f"jy[{i}, {k}]" if k < n else f"jp[{i}, {k - n}]"
            src.append(f"    {target} = {text(c)}")
    src.append("")
    return RHSGraph("\n".join(src), n, m, extra)
