"""The compiled ODE solution as one pytensor Op, with its gradient from forward sensitivities.

Not public: :func:`bayesjoint.physics.ode.solve_ode` and :func:`~bayesjoint.physics.ode.rk4`
build it. The Op takes the flat initial state ``y0`` (``n``) and the flat parameter vector ``θ``
(``m``) and returns the states at the output times (``n_times × n``) and, as a second output,
the sensitivities ``∂y(t_i)/∂(y0, θ)`` (``n_times × n × (n + m)``). Its gradient contracts the
upstream gradient with that second output, so a NUTS gradient costs one forward integration with
sensitivities and no reverse pass. When a compiled graph does not use the sensitivities (a
log-density without its gradient, a posterior-predictive draw), a rewrite swaps in the same Op
without them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, disconnected_type, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.graph.rewriting.basic import node_rewriter
from pytensor.tensor.rewriting.basic import register_specialize

from bayesjoint.physics._ode_numba import compile_source, numba_available

METHODS = ("rk4", "dopri5")


class ODESolution(Op):
    """Solve ``dy/dt = f(t, y, θ)`` at fixed output times; outputs ``(states, sensitivities)``.

    Parameters
    ----------
    source : str
        Printed right-hand side (``_rhs`` and ``_rhs_jac``), see
        :func:`bayesjoint.physics._ode_compile.build_rhs`.
    key : str
        SHA-256 of ``source``; Ops with equal keys and settings are equal (pytensor merges them).
    n_state, n_params : int
        Sizes ``n`` of the flat state and ``m`` of the flat parameter vector.
    times : tuple of float
        Strictly increasing output times.
    t0 : float
        Start time, ``<= times[0]``.
    method : {"rk4", "dopri5"}
        Fixed-step classical Runge–Kutta (``substeps`` steps per output interval) or adaptive
        Dormand–Prince 5(4) (``rtol``, ``atol``, ``max_steps``; with
        ``sensitivity_error_control`` the error of the sensitivities counts in the step size
        when they are computed).
    sensitivities : bool
        Whether the second output is computed (the gradient needs it).
    jit : bool
        Compile with numba (False runs the same kernels as plain Python, slowly).
    """

    __props__ = (
        "key",
        "n_state",
        "n_params",
        "times",
        "t0",
        "method",
        "substeps",
        "rtol",
        "atol",
        "max_steps",
        "sensitivity_error_control",
        "sensitivities",
        "jit",
    )

    def __init__(
        self,
        source: str,
        key: str,
        n_state: int,
        n_params: int,
        times: tuple[float, ...],
        t0: float,
        method: str,
        substeps: int = 10,
        rtol: float = 1e-6,
        atol: float = 1e-6,
        max_steps: int = 100_000,
        sensitivity_error_control: bool = True,
        sensitivities: bool = True,
        jit: bool = True,
    ):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.source = source
        self.key = key
        self.n_state = int(n_state)
        self.n_params = int(n_params)
        self.times = tuple(float(t) for t in times)
        self.t0 = float(t0)
        self.method = method
        self.substeps = int(substeps)
        self.rtol = float(rtol)
        self.atol = float(atol)
        self.max_steps = int(max_steps)
        self.sensitivity_error_control = bool(sensitivity_error_control)
        self.sensitivities = bool(sensitivities)
        self.jit = bool(jit)
        self._setup()

    def _setup(self) -> None:
        times = np.asarray(self.times, dtype=float)
        self._times = times
        self._namespace: dict[str, Any] | None = None
        if self.method == "rk4":
            prepend = self.t0 < times[0]
            grid = np.concatenate([[self.t0], times]) if prepend else times
            k = self.substeps
            dt = np.repeat(np.diff(grid) / k, k)
            self._t_start = np.repeat(grid[:-1], k) + np.tile(np.arange(k), grid.size - 1) * dt
            self._dt = dt
            record = -np.ones(dt.size + 1, dtype=np.int64)
            steps = np.arange(k if prepend else 0, dt.size + 1, k)
            record[steps] = np.arange(times.size)
            self._record = record
        q = self.n_state + self.n_params
        self._sens_shape = (times.size, self.n_state, q) if self.sensitivities else (0, 0, 0)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_namespace"] = None  # compiled functions are rebuilt (or loaded) where unpickled
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __str__(self) -> str:
        what = "ODESolution" if self.sensitivities else "ODESolution{no sensitivities}"
        return f"{what}{{{self.method}, n={self.n_state}, m={self.n_params}}}"

    def without_sensitivities(self) -> ODESolution:
        """Return the same solve without the second output's computation."""
        return self._copy(sensitivities=False)

    def with_sensitivities(self) -> ODESolution:
        """Return the same solve with the sensitivities."""
        return self._copy(sensitivities=True)

    def _copy(self, **changes: Any) -> ODESolution:
        settings = {name: getattr(self, name) for name in self.__props__ if name != "key"}
        settings.update(changes)
        return ODESolution(self.source, self.key, **settings)

    def make_node(self, y0: Any, theta: Any) -> Apply:
        y0 = pt.as_tensor_variable(y0)
        theta = pt.as_tensor_variable(theta)
        for value, size, what in ((y0, self.n_state, "y0"), (theta, self.n_params, "theta")):
            if value.type.ndim != 1 or value.type.shape[0] not in (None, size):
                raise TypeError(f"ODESolution: {what} must be a vector of length {size}")
        y0 = pt.specify_shape(pt.cast(y0, "float64"), (self.n_state,))
        theta = pt.specify_shape(pt.cast(theta, "float64"), (self.n_params,))
        nt = len(self.times)
        outputs = [pt.tensor(dtype="float64", shape=(nt, self.n_state))]
        outputs.append(pt.tensor(dtype="float64", shape=self._sens_shape))
        return Apply(self, [y0, theta], outputs)

    def infer_shape(self, fgraph: Any, node: Apply, shapes: Any) -> list[tuple[int, ...]]:
        return [(len(self.times), self.n_state), self._sens_shape]

    def namespace(self) -> dict[str, Any]:
        """Return the compiled kernels of this right-hand side (built at the first call)."""
        if self._namespace is None:
            self._namespace = compile_source(self.source, self.key, self.jit and numba_available())
        return self._namespace

    def solve(self, y0: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Return ``(states, sensitivities, status)`` for numeric ``y0`` and ``theta``."""
        ns = self._namespace if self._namespace is not None else self.namespace()
        y0 = np.ascontiguousarray(y0, dtype=np.float64)
        theta = np.ascontiguousarray(theta, dtype=np.float64)
        out = np.empty((len(self.times), self.n_state))
        sens = np.empty(self._sens_shape)
        if self.method == "rk4":
            status = ns["rk4"](
                y0, theta, self._t_start, self._dt, self._record, out, sens, self.sensitivities
            )
        else:
            status = ns["dopri5"](
                y0,
                theta,
                self.t0,
                self._times,
                self.rtol,
                self.atol,
                self.max_steps,
                out,
                sens,
                self.sensitivities,
                self.sensitivity_error_control,
            )
        return out, sens, int(status)

    def perform(self, node: Apply, inputs: list[np.ndarray], output_storage: list[list]) -> None:
        out, sens, _ = self.solve(inputs[0], inputs[1])
        output_storage[0][0] = out
        output_storage[1][0] = sens

    def L_op(self, inputs: list[Any], outputs: list[Any], output_grads: list[Any]) -> list[Any]:
        g_states, g_sens = output_grads
        if not isinstance(g_sens.type, DisconnectedType):
            return [
                grad_not_implemented(self, k, x, "second derivatives of an ODE solution")
                for k, x in enumerate(inputs)
            ]
        if isinstance(g_states.type, DisconnectedType):
            return [disconnected_type(), disconnected_type()]
        sens = outputs[1] if self.sensitivities else self.with_sensitivities()(*inputs)[1]
        g = pt.tensordot(g_states, sens, axes=[[0, 1], [0, 1]])
        return [g[: self.n_state], g[self.n_state :]]

    def connection_pattern(self, node: Apply) -> list[list[bool]]:
        return [[True, True], [True, True]]


@register_specialize
@node_rewriter([ODESolution])
def local_ode_drop_unused_sensitivities(fgraph: Any, node: Apply) -> Any:
    """Solve without sensitivities where nothing reads them."""
    op = node.op
    if not op.sensitivities or fgraph.clients.get(node.outputs[1]):
        return None
    states, _ = op.without_sensitivities()(*node.inputs)
    return {node.outputs[0]: states}


def _numba_funcify_ode_solution(op: ODESolution, node: Any = None, **kwargs: Any) -> Any:
    """Numba implementation of :class:`ODESolution` for pytensor's NUMBA mode (and nutpie).

    The compiled kernel is called directly from the jitted graph, without Python in between.
    """
    import numba

    ns = op.namespace()
    n_times, n_state = len(op.times), op.n_state
    sens_shape = op._sens_shape
    with_sens = op.sensitivities
    if op.method == "rk4":
        kernel = ns["rk4"]
        t_start, dt, record = op._t_start, op._dt, op._record

        @numba.njit
        def ode_solution(y0: Any, theta: Any) -> Any:  # pragma: no cover - numba-compiled
            out = np.empty((n_times, n_state))
            sens = np.empty(sens_shape)
            kernel(
                np.ascontiguousarray(y0),
                np.ascontiguousarray(theta),
                t_start,
                dt,
                record,
                out,
                sens,
                with_sens,
            )
            return out, sens

        return ode_solution

    kernel = ns["dopri5"]
    t0, times, rtol, atol, max_steps = op.t0, op._times, op.rtol, op.atol, op.max_steps
    sens_error = op.sensitivity_error_control

    @numba.njit
    def ode_solution_adaptive(y0: Any, theta: Any) -> Any:  # pragma: no cover - numba-compiled
        out = np.empty((n_times, n_state))
        sens = np.empty(sens_shape)
        kernel(
            np.ascontiguousarray(y0),
            np.ascontiguousarray(theta),
            t0,
            times,
            rtol,
            atol,
            max_steps,
            out,
            sens,
            with_sens,
            sens_error,
        )
        return out, sens

    return ode_solution_adaptive


try:  # pytensor's numba backend (numba is a dependency; the module layout is pytensor's)
    from pytensor.link.numba.dispatch.basic import numba_funcify as _numba_funcify
except ImportError:  # pragma: no cover - without numba the Op runs through perform
    pass
else:
    _numba_funcify.register(ODESolution)(_numba_funcify_ode_solution)
