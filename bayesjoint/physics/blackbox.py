"""Black-box physics: an external numpy simulator wrapped as a differentiable pytensor Op.

The simulator ``fn(x) -> y`` runs in Python at every evaluation; its gradient enters the graph
through a vector-Jacobian product ``vjp(x, cotangent) -> cotangentᵀ ∂y/∂x``, supplied by the user
(adjoint code, automatic differentiation in another framework) or, when absent, approximated by
central finite differences. That is all NUTS needs (reverse-mode gradients of the log density).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from bayesjoint._checks import checked_init
from bayesjoint.physics.base import Physics

__all__ = ["BlackBox", "finite_difference_vjp"]

_DEFAULT_FD_STEP = float(np.finfo(float).eps ** (1.0 / 3.0))  # ≈ 6.1e-6


def finite_difference_vjp(
    fn: Callable[[np.ndarray], Any],
    x: Any,
    cotangent: Any,
    step: float = _DEFAULT_FD_STEP,
) -> np.ndarray:
    """Return ``cotangentᵀ ∂fn/∂x`` by central finite differences.

    Parameters
    ----------
    fn : callable
        ``fn(x) -> array`` (numpy in, numpy out).
    x : array_like
        The point.
    cotangent : array_like
        Weights shaped like ``fn(x)``.
    step : float, optional
        Relative step; the step in ``x_i`` is ``step · max(1, |x_i|)``. Default ``eps^(1/3)``.

    Returns
    -------
    numpy.ndarray
        Shaped like ``x``.

    Notes
    -----
    ``g_i = Σ_k c_k (fn_k(x + h_i e_i) − fn_k(x − h_i e_i)) / (2 h_i)``: 2 n calls of ``fn`` for
    ``n = x.size``. Truncation error ``O(h² fn''')`` plus round-off ``O(eps |fn| / h)``; the
    default step balances them (Nocedal & Wright 2006, *Numerical Optimization*, §8.1), giving a
    relative error near ``eps^(2/3) ≈ 4e-11`` for a smooth, well-scaled ``fn``.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.physics.blackbox import finite_difference_vjp
    >>> g = finite_difference_vjp(lambda x: x**2, np.array([1.0, 3.0]), np.array([1.0, 1.0]))
    >>> np.round(g, 6)
    array([2., 6.])
    """
    x = np.asarray(x, dtype=float)
    cotangent = np.asarray(cotangent, dtype=float)
    flat = x.ravel()
    grad = np.empty_like(flat)
    for i in range(flat.size):
        h = step * max(1.0, abs(flat[i]))
        up, down = flat.copy(), flat.copy()
        up[i] += h
        down[i] -= h
        diff = np.asarray(fn(up.reshape(x.shape)), float) - np.asarray(
            fn(down.reshape(x.shape)), float
        )
        grad[i] = np.sum(cotangent * diff) / (2.0 * h)
    return grad.reshape(x.shape)


class _BlackBoxOp(Op):
    """``y = fn(x)`` evaluated in Python; gradient through :class:`_VJPOp`."""

    def __init__(self, box: BlackBox) -> None:
        self.box = box
        self.vjp_op = _VJPOp(box)

    def make_node(self, x: Any) -> Apply:
        x = pt.cast(pt.as_tensor_variable(x), "float64")
        out = pt.tensor(dtype="float64", shape=self.box.out_shape)
        return Apply(self, [x], [out])

    def perform(self, node: Apply, inputs: Sequence[Any], outputs: Any) -> None:
        outputs[0][0] = self.box._forward_numpy(inputs[0])

    def infer_shape(self, fgraph: Any, node: Apply, input_shapes: Any) -> list[tuple[int, ...]]:
        return [self.box.out_shape]

    def grad(self, inputs: Sequence[Any], output_grads: Sequence[Any]) -> list[Any]:
        return [self.vjp_op(inputs[0], output_grads[0])]

    def __str__(self) -> str:
        return f"BlackBox{{{self.box.name}}}"


class _VJPOp(Op):
    """``cotangentᵀ ∂fn/∂x``; not differentiable itself (NUTS needs first derivatives only)."""

    def __init__(self, box: BlackBox) -> None:
        self.box = box

    def make_node(self, x: Any, cotangent: Any) -> Apply:
        x = pt.cast(pt.as_tensor_variable(x), "float64")
        cotangent = pt.cast(pt.as_tensor_variable(cotangent), "float64")
        return Apply(self, [x, cotangent], [x.type()])

    def perform(self, node: Apply, inputs: Sequence[Any], outputs: Any) -> None:
        outputs[0][0] = self.box._vjp_numpy(inputs[0], inputs[1])

    def infer_shape(self, fgraph: Any, node: Apply, input_shapes: Any) -> list[Any]:
        return [input_shapes[0]]

    def grad(self, inputs: Sequence[Any], output_grads: Sequence[Any]) -> list[Any]:
        return [grad_not_implemented(self, i, v) for i, v in enumerate(inputs)]

    def __str__(self) -> str:
        return f"BlackBoxVJP{{{self.box.name}}}"


class BlackBox(Physics):
    """An external numpy simulator as physics, differentiable through its vector-Jacobian product.

    Parameters
    ----------
    fn : callable
        ``fn(x) -> y``: numpy float64 array in, array of shape ``output_shape`` out. Must not keep
        references to ``x`` (a fresh copy is passed each call).
    vjp : callable, optional
        ``vjp(x, cotangent) -> g`` with ``g_i = Σ_k cotangent_k ∂y_k/∂x_i``, shaped like ``x``.
        When omitted, central finite differences (:func:`finite_difference_vjp`) are used and a
        ``UserWarning`` says so, once, when the object is created.
    input : str, default "x"
        The latent variable passed to ``fn`` (any fixed shape).
    output_shape : int or tuple of int
        Shape of ``fn``'s output (required: the graph needs it before ``fn`` runs).
    fd_step : float, optional
        Relative finite-difference step (default ``eps^(1/3)``); used only without ``vjp``.

    Attributes
    ----------
    op : pytensor.graph.op.Op
        The pytensor Op; ``box.op(x_tensor)`` also works in hand-written PyMC models.
    out_shape : tuple of int
        The declared output shape.

    Notes
    -----
    The Op's gradient is the standard reverse-mode rule ``∂L/∂x = (∂y/∂x)ᵀ ∂L/∂y``, i.e. one
    ``vjp`` call per log-density gradient, whatever the output size. Second derivatives are not
    available. ``fn`` and ``vjp`` run in Python (no C code), so their cost dominates sampling;
    for multi-process sampling (``cores > 1``) they must be picklable (module-level functions).

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.physics.blackbox import BlackBox
    >>> box = BlackBox(np.sin, vjp=lambda x, c: c * np.cos(x), input="x", output_shape=2)
    >>> np.round(box(x=np.array([0.0, np.pi / 2])), 6)
    array([0., 1.])
    """

    @checked_init("bj.physics.BlackBox")
    def __init__(
        self,
        fn: Callable[[np.ndarray], Any],
        vjp: Callable[[np.ndarray, np.ndarray], Any] | None = None,
        input: str = "x",
        *,
        output_shape: int | Sequence[int],
        fd_step: float | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"BlackBox(fn=...) must be callable, got {type(fn).__name__}")
        if vjp is not None and not callable(vjp):
            raise TypeError("BlackBox(vjp=...) must be callable vjp(x, cotangent) -> array or None")
        if not isinstance(input, str):
            raise TypeError("BlackBox(input=...) must be the name of a latent variable")
        shape = (output_shape,) if isinstance(output_shape, (int, np.integer)) else output_shape
        try:
            self.out_shape: tuple[int, ...] = tuple(int(n) for n in shape)
        except TypeError:
            raise TypeError(
                "BlackBox(output_shape=...) must be an int or a tuple of ints"
            ) from None
        if any(n < 0 for n in self.out_shape):
            raise ValueError("BlackBox(output_shape=...) entries must be >= 0")
        self.fn = fn
        self.vjp = vjp
        self.fd_step = _DEFAULT_FD_STEP if fd_step is None else float(fd_step)
        if not self.fd_step > 0:
            raise ValueError("BlackBox(fd_step=...) must be > 0")
        self.name = getattr(fn, "__name__", type(fn).__name__)
        self.inputs = (input,)
        if vjp is None:
            warnings.warn(
                f"BlackBox({self.name}): no vjp given, so gradients use central finite "
                "differences (2 calls of fn per input value per gradient, relative error "
                "~1e-10 for a smooth fn); pass vjp=... for exact, cheaper gradients",
                UserWarning,
                stacklevel=2,
            )
        self.op = _BlackBoxOp(self)

    def _forward_numpy(self, x: np.ndarray) -> np.ndarray:
        y = np.asarray(self.fn(np.array(x, dtype=float, copy=True)), dtype=float)
        if y.shape != self.out_shape:
            raise ValueError(
                f"BlackBox({self.name}) returned shape {y.shape} but output_shape="
                f"{self.out_shape}; fix fn or output_shape"
            )
        return y

    def _vjp_numpy(self, x: np.ndarray, cotangent: np.ndarray) -> np.ndarray:
        x = np.array(x, dtype=float, copy=True)
        if self.vjp is None:
            g = finite_difference_vjp(self._forward_numpy, x, cotangent, self.fd_step)
        else:
            g = np.asarray(self.vjp(x, np.array(cotangent, dtype=float, copy=True)), dtype=float)
        if g.shape != x.shape:
            raise ValueError(
                f"BlackBox({self.name}) vjp returned shape {g.shape}; it must match the input "
                f"shape {x.shape}"
            )
        return g

    def forward(self, latent: Mapping[str, Any]) -> Any:
        """Return the symbolic ``fn(x)`` (a node of the wrapped Op)."""
        return self.op(latent[self.inputs[0]])

    def _evaluate_numpy(self, values: Mapping[str, Any]) -> np.ndarray:
        return self._forward_numpy(np.asarray(values[self.inputs[0]], dtype=float))

    def output_shape(self, input_shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, ...]:
        """Return the declared ``output_shape`` (``fn`` decides; the input shape is not checked)."""
        return self.out_shape

    def __repr__(self) -> str:
        return f"BlackBox({self.name}, input={self.inputs[0]!r}, output_shape={self.out_shape})"
