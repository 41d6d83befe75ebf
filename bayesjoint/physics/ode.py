"""Ordinary differential equations: compiled solvers with sensitivities, RK4, and ODE physics.

:func:`solve_ode` integrates ``dy/dt = rhs(t, y, params)`` (the right-hand side written with
pytensor operations) and returns the solution at fixed output times as one pytensor Op, compiled
with numba: the right-hand side and its Jacobians are printed once per model as straight-line
scalar code (:mod:`bayesjoint.physics._ode_compile`) and integrated together with the forward
sensitivities ``∂y/∂(y0, params)`` (:mod:`bayesjoint.physics._ode_kernels`); the gradient of the
solution contracts those sensitivities, so NUTS pays one forward integration per gradient. Two
methods: adaptive Dormand–Prince 5(4) (``"dopri5"``, error control) and classical fixed-step
Runge–Kutta (``"rk4"``, the method of :func:`rk4`). :func:`rk4` keeps its historical interface;
its ``backend="scan"`` builds the same steps as a ``pytensor.scan`` graph (differentiated in
reverse mode through the scan), which is also what a right-hand side the code generator cannot
handle falls back to. :class:`ODE` wraps a system as a physics (named latent inputs);
:class:`GeneExpression` is a two-stage gene-expression model.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt

from bayesjoint._checks import checked_init
from bayesjoint._tensor import is_symbolic
from bayesjoint.physics._ode_compile import Unsupported, build_rhs
from bayesjoint.physics._ode_numba import numba_available
from bayesjoint.physics._ode_op import ODESolution
from bayesjoint.physics.base import Physics

__all__ = ["ODE", "GeneExpression", "rk4", "solve_ode"]

_SCAN_HAS_RETURN_UPDATES = "return_updates" in inspect.signature(pytensor.scan).parameters
BACKENDS = ("auto", "compiled", "scan")
METHODS = ("dopri5", "rk4")


def _scan(fn: Callable[..., Any], **kwargs: Any) -> Any:
    """Call ``pytensor.scan`` and return only its outputs (across pytensor versions)."""
    if _SCAN_HAS_RETURN_UPDATES:
        return pytensor.scan(fn, return_updates=False, **kwargs)
    outputs, _ = pytensor.scan(fn, **kwargs)
    return outputs


def _step_grid(
    times: Any, substeps: Any, t0: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or times.size == 0 or not np.all(np.isfinite(times)):
        raise ValueError("times must be a non-empty finite 1-D array of output times")
    if np.any(np.diff(times) <= 0):
        raise ValueError("times must be strictly increasing")
    if isinstance(substeps, bool) or not isinstance(substeps, (int, np.integer)) or substeps < 1:
        raise ValueError(
            f"substeps must be an int >= 1 (RK4 steps per output interval), got {substeps!r}"
        )
    start = times[0] if t0 is None else float(t0)
    if not np.isfinite(start) or start > times[0]:
        raise ValueError(f"t0={t0} must be finite and <= times[0]={times[0]}")
    prepend = start < times[0]
    grid = np.concatenate([[start], times]) if prepend else times
    dt = np.repeat(np.diff(grid) / substeps, substeps)
    t_start = np.repeat(grid[:-1], substeps) + np.tile(np.arange(substeps), grid.size - 1) * dt
    return times, t_start, dt, prepend


def _rk4_step(rhs: Callable[..., Any], is_sequence: bool) -> Callable[..., Any]:
    """Return the classical RK4 step ``(t, h, y, *params) -> y(t + h)`` for ``pytensor.scan``.

    ``rhs(t, y, params)`` gets the parameters as a tuple when they were given as a sequence, and
    may return a list of components (stacked here).
    """

    def call_rhs(t: Any, y: Any, inner: Sequence[Any]) -> Any:
        p = tuple(inner) if is_sequence else inner[0]
        value = rhs(t, y, p)
        if isinstance(value, (list, tuple)):
            value = pt.stack([pt.as_tensor_variable(v) for v in value])
        return pt.cast(pt.as_tensor_variable(value), "float64")

    def step(t: Any, h: Any, y: Any, *inner: Any) -> Any:
        k1 = call_rhs(t, y, inner)
        k2 = call_rhs(t + 0.5 * h, y + (0.5 * h) * k1, inner)
        k3 = call_rhs(t + 0.5 * h, y + (0.5 * h) * k2, inner)
        k4 = call_rhs(t + h, y + h * k3, inner)
        return y + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

    return step


def _as_float_tensor(value: Any) -> Any:
    tensor = pt.as_tensor_variable(value if is_symbolic(value) else np.asarray(value, dtype=float))
    return pt.cast(tensor, "float64") if tensor.dtype != "float64" else tensor


def _compiled_solution(
    rhs: Callable[[Any, Any, Any], Any],
    y0: Any,
    params: Any,
    times: np.ndarray,
    start: float,
    method: str,
    backend: str,
    settings: Mapping[str, Any],
) -> Any:
    """Solve through :class:`ODESolution`; None where ``backend="auto"`` falls back to the scan.

    Numeric inputs give a numpy array (solved directly, no pytensor function is compiled);
    symbolic ones a tensor. Raises ValueError where the compiled path is required (``backend=
    "compiled"``, or ``method="dopri5"``, which has no scan form) but cannot be built.
    """
    is_sequence = isinstance(params, (list, tuple))
    param_list = list(params) if is_sequence else [params]
    numeric = not (is_symbolic(y0) or any(is_symbolic(p) for p in param_list))
    if method == "rk4" and backend == "auto" and not numba_available():
        return None  # uncompiled kernels are slower than the scan
    if numeric:
        values = [np.asarray(v, dtype=float) for v in (y0, *param_list)]
        tensors = [pt.tensor(dtype="float64", shape=v.shape) for v in values]
    else:
        tensors = [_as_float_tensor(v) for v in (y0, *param_list)]
    y_start = tensors[0]
    try:
        shape = y_start.type.shape
        if any(s is None for s in shape):
            raise Unsupported(f"y0 has no fixed shape ({y_start.type})")
        graph = build_rhs(rhs, tuple(int(s) for s in shape), tensors[1:], is_sequence)
    except Unsupported as err:
        if backend == "auto" and method == "rk4":
            return None
        raise ValueError(
            f"solve_ode(method={method!r}, backend={backend!r}): the right-hand side cannot be "
            f"compiled ({err}); give every parameter and y0 a fixed shape and use elementwise "
            "arithmetic, indexing, stacking, sums and dot products, or use "
            "rk4(..., backend='scan')"
        ) from None
    op = ODESolution(
        graph.source,
        graph.key,
        graph.n_state,
        graph.n_params,
        tuple(times.tolist()),
        start,
        method,
        sensitivities=not (numeric and not graph.extra),
        jit=numba_available(),
        **settings,
    )
    out_shape = (times.size, *(int(s) for s in y_start.type.shape))
    if numeric and not graph.extra:
        theta = np.concatenate([np.ravel(v) for v in values[1:]] + [np.zeros(0)])
        states, _, status = op.solve(np.ravel(values[0]), theta)
        if status != 0:
            raise ValueError(
                f"solve_ode(method={method!r}) stopped before t={times[-1]}: "
                + ("more than max_steps steps" if status == 1 else "the step size underflowed")
                + "; raise max_steps, loosen rtol/atol, or check the right-hand side"
            )
        return states.reshape(out_shape)
    if numeric:  # the right-hand side reads symbolic variables of an outer graph
        tensors = [pt.constant(v) for v in values]
    flat = [pt.flatten(_as_float_tensor(v)) for v in (*tensors[1:], *graph.extra)]
    theta = pt.concatenate(flat) if flat else pt.zeros((0,), dtype="float64")
    states, _ = op(pt.flatten(tensors[0]), theta)
    return states.reshape(out_shape)


def _check_backend(backend: str, method: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if backend == "scan" and method != "rk4":
        raise ValueError("backend='scan' integrates with method='rk4' only")
    if backend == "compiled" and not numba_available():
        raise ValueError("backend='compiled' needs numba (pip install numba)")


def solve_ode(
    rhs: Callable[[Any, Any, Any], Any],
    y0: Any,
    times: Any,
    params: Any = (),
    *,
    t0: float | None = None,
    method: str = "dopri5",
    rtol: float = 1e-6,
    atol: float = 1e-6,
    max_steps: int = 100_000,
    sensitivity_error_control: bool = True,
    substeps: int = 10,
    backend: str = "auto",
) -> Any:
    """Solve ``dy/dt = rhs(t, y, params)`` at fixed times, compiled, with a cheap gradient.

    Parameters
    ----------
    rhs : callable
        ``rhs(t, y, params) -> dy/dt`` written with pytensor operations; ``t`` is a float64
        scalar, ``y`` a tensor shaped like ``y0`` and ``params`` is passed as given (a tensor or a
        tuple of tensors). Must return a tensor (or a list of scalars, stacked) shaped like ``y``.
        Variables of an outer graph that it reads without receiving them in ``params`` are
        found and treated as further parameters.
    y0 : array_like or pytensor tensor
        State at the start time (any fixed shape; ``n`` values in all).
    times : array_like, shape (n_times,)
        Strictly increasing output times (numbers, fixed).
    params : pytensor tensor, array_like or sequence of them, default ()
        Parameters forwarded to ``rhs`` (``m`` values in all); fixed shapes, float dtype. The
        solution is differentiable in them and in ``y0``.
    t0 : float, optional
        Start time, ``<= times[0]``; default ``times[0]`` (then the first output is ``y0``).
    method : {"dopri5", "rk4"}, default "dopri5"
        Adaptive Dormand–Prince 5(4) with error control (``rtol``, ``atol``, ``max_steps``), or
        classical fixed-step Runge–Kutta with ``substeps`` steps per output interval.
    rtol, atol : float, default 1e-6
        ``dopri5``: a step is accepted when the root mean square over the state of
        ``error_i / (atol + rtol |y_i|)`` is at most 1 (state units for ``atol``).
    max_steps : int, default 100000
        ``dopri5``: most attempted steps; beyond it the remaining outputs are NaN inside a model
        (NUTS then rejects the proposal, like a divergence) and a ValueError for numpy inputs.
    sensitivity_error_control : bool, default True
        ``dopri5``: when the gradient is computed, the step size also keeps the error of the
        sensitivities within ``rtol``/``atol`` (as Stan's coupled ODE system and CVODES'
        ``errconS`` do). The gradient is then accurate, but the solution computed alongside it
        takes other steps than one computed without the gradient, so the two differ within the
        tolerance. False: steps chosen on the state alone, so the value does not depend on
        whether the gradient is asked for, and the gradient is accurate to about the tolerance
        times the sensitivities' size.
    substeps : int, default 10
        ``rk4``: steps per output interval.
    backend : {"auto", "compiled", "scan"}, default "auto"
        ``compiled``: the numba-compiled Op (ValueError where the right-hand side cannot be
        compiled); ``scan``: the ``pytensor.scan`` graph of :func:`rk4` (``rk4`` only);
        ``auto``: compiled, falling back to the scan for ``rk4``.

    Returns
    -------
    numpy.ndarray or pytensor tensor, shape (n_times,) + y0.shape
        The state at each output time: a tensor when ``y0`` or any parameter is a tensor,
        otherwise a numpy array.

    Notes
    -----
    Gradient by forward sensitivities: ``S(t) = ∂y(t)/∂(y0, θ)`` solves
    ``dS/dt = J_y S + [0 | J_θ]``, ``S(t0) = [I | 0]``, integrated stage by stage with the
    state (Hairer, Nørsett & Wanner 1993, *Solving ODEs I*, §I.14), ``J_y = ∂f/∂y`` and
    ``J_θ = ∂f/∂θ`` from the symbolic derivative of ``rhs``. The gradient of a scalar ``L`` is
    ``Σ_i (∂L/∂y(t_i))ᵀ S(t_i)``: one integration of ``n (1 + n + m)`` values per gradient.
    For ``rk4`` this is the exact derivative of the computed solution; for ``dopri5`` the step
    sizes are held fixed in the derivative, so the gradient is that of the exact solution up to
    the tolerance (see ``sensitivity_error_control``). Second derivatives are not implemented.

    Choosing the method for NUTS: loose tolerances make the log density rough at the scale of
    the tolerance (the step sequence jumps as the parameters move), which lowers NUTS' step
    size; ``rk4`` with enough ``substeps`` is smooth and its gradient exact, and costs a fixed
    ``4 × substeps`` right-hand sides per output interval.

    Cost: the right-hand side is compiled once per model (a few seconds; numba's cache on disk
    under pytensor's compile directory makes later processes load it). The supported operations
    are elementwise arithmetic and functions, stacking and concatenation, constant indexing
    and ``set_subtensor``, reshapes, sums, products, maxima and dot products, for systems of up
    to a few thousand Jacobian entries.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.physics.ode import solve_ode
    >>> y = solve_ode(lambda t, y, k: -k * y, np.array([1.0]), np.array([0.0, 1.0]),
    ...               params=np.array(2.0), rtol=1e-10, atol=1e-12)
    >>> bool(abs(y[-1, 0] - np.exp(-2.0)) < 1e-9)
    True
    """
    _check_backend(backend, method)
    if method == "rk4":
        return rk4(rhs, y0, times, params, substeps, t0, backend=backend)
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_steps must be an int >= 1, got {max_steps!r}")
    times, _, _, _ = _step_grid(times, 1, t0)
    start = float(times[0] if t0 is None else t0)
    settings = {
        "rtol": float(rtol),
        "atol": float(atol),
        "max_steps": int(max_steps),
        "sensitivity_error_control": bool(sensitivity_error_control),
    }
    return _compiled_solution(rhs, y0, params, times, start, "dopri5", backend, settings)


def rk4(
    rhs: Callable[[Any, Any, Any], Any],
    y0: Any,
    times: Any,
    params: Any = (),
    substeps: int = 10,
    t0: float | None = None,
    *,
    backend: str = "auto",
) -> Any:
    """Integrate ``dy/dt = rhs(t, y, params)`` with the classical fixed-step Runge–Kutta method.

    Parameters
    ----------
    rhs : callable
        ``rhs(t, y, params) -> dy/dt`` written with pytensor operations; ``t`` is a float64
        scalar, ``y`` a tensor shaped like ``y0`` and ``params`` is passed as given (a tensor or a
        tuple of tensors). Must return a tensor (or a list of scalars, stacked) shaped like ``y``.
    y0 : array_like or pytensor tensor
        State at the start time.
    times : array_like, shape (n_times,)
        Strictly increasing output times (numbers, fixed).
    params : pytensor tensor, array_like or sequence of them, default ()
        Parameters forwarded to ``rhs``; the solution is differentiable in them.
    substeps : int, default 10
        RK4 steps per output interval (the step is ``(t_{i+1} − t_i) / substeps``).
    t0 : float, optional
        Start time, ``<= times[0]``; default ``times[0]`` (then the first output is ``y0``).
    backend : {"auto", "compiled", "scan"}, default "auto"
        ``compiled``: one numba-compiled Op with forward sensitivities (see :func:`solve_ode`);
        ``scan``: a ``pytensor.scan`` over the steps, differentiated in reverse mode through the
        scan (any right-hand side pytensor can differentiate, but about 100 times slower);
        ``auto``: compiled where the right-hand side allows it, else the scan.

    Returns
    -------
    numpy.ndarray or pytensor tensor, shape (n_times,) + y0.shape
        The state at each output time: a tensor when ``y0`` or any parameter is a tensor,
        otherwise a numpy array.

    Notes
    -----
    Classical RK4 (Hairer, Nørsett & Wanner 1993, *Solving ODEs I*, §II.1), with step ``h``::

        k1 = f(t, y),  k2 = f(t + h/2, y + h k1/2),  k3 = f(t + h/2, y + h k2/2),
        k4 = f(t + h, y + h k3),  y ← y + h (k1 + 2k2 + 2k3 + k4)/6.

    Global error O(h⁴). For ``y' = −γy`` the step multiplies by the degree-4 Taylor polynomial of
    ``e^{−γh}``, so the relative error after time ``T`` is ≈ ``γT (γh)⁴ / 120``: choose
    ``substeps`` so that ``γ_max h`` is small (0.05 gives ~5e-8 per unit ``γT``). Stability needs
    ``γ_max h < 2.78``. Both backends take the same steps and agree to round-off; the compiled
    gradient is the exact derivative of the computed solution, like the scan's.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.physics.ode import rk4
    >>> y = rk4(lambda t, y, k: -k * y, np.array([1.0]), np.array([0.0, 1.0]), params=np.array(2.0))
    >>> round(float(y[-1, 0]), 4), round(float(np.exp(-2.0)), 4)
    (0.1353, 0.1353)
    """
    _check_backend(backend, "rk4")
    times, t_start, dt, prepend = _step_grid(times, substeps, t0)
    is_sequence = isinstance(params, (list, tuple))
    param_list = list(params) if is_sequence else [params]
    if backend != "scan" and dt.size > 0:
        start = float(times[0] if t0 is None else t0)
        solution = _compiled_solution(
            rhs, y0, params, times, start, "rk4", backend, {"substeps": int(substeps)}
        )
        if solution is not None:
            return solution
    if not (is_symbolic(y0) or any(is_symbolic(p) for p in param_list)):
        values = [np.asarray(y0, dtype=float)] + [np.asarray(p, dtype=float) for p in param_list]
        symbols = [pt.tensor(dtype="float64", shape=v.shape) for v in values]
        sym_params = tuple(symbols[1:]) if is_sequence else symbols[1]
        out = rk4(rhs, symbols[0], times, sym_params, substeps, t0, backend="scan")
        fn = pytensor.function(symbols, out, on_unused_input="ignore")
        return np.asarray(fn(*values))

    y_start = pt.as_tensor_variable(y0 if is_symbolic(y0) else np.asarray(y0, dtype=float))
    y_start = pt.cast(y_start, "float64")
    tensors = [
        pt.as_tensor_variable(p if is_symbolic(p) else np.asarray(p, dtype=float))
        for p in param_list
    ]

    if dt.size == 0:  # a single output time at the start: nothing to integrate
        return y_start[None]
    states = _scan(
        _rk4_step(rhs, is_sequence),
        sequences=[pt.constant(t_start), pt.constant(dt)],
        outputs_info=[y_start],
        non_sequences=tensors,
    )
    all_states = pt.concatenate([y_start[None], states], axis=0)
    # Every interval has `substeps` steps: the output times are every substeps-th state.
    return all_states[substeps::substeps] if prepend else all_states[::substeps]


class ODE(Physics):
    """An ODE system as physics: its solution at fixed times, from named latent inputs.

    Parameters
    ----------
    rhs : callable
        ``rhs(t, y, params) -> dy/dt`` written with pytensor operations; ``params`` is a tuple
        with one tensor per entry of ``params`` below, in that order.
    times : array_like, shape (n_times,)
        Strictly increasing output times.
    params : sequence of (str or array_like), default ()
        Each a latent name (that latent variable, any shape) or a fixed number / array.
    initial : sequence of (str or float), or str
        The initial state: one entry per component (a scalar latent name or a number), or the
        name of one vector latent.
    component : int, sequence of int or None, default None
        Which state components the physics returns: an int gives shape ``(n_times,)``, a
        sequence ``(n_times, k)``, None the whole state ``(n_times, n)``.
    t0 : float, optional
        Time of the initial state, ``<= times[0]``; default ``times[0]``.
    method, rtol, atol, max_steps, sensitivity_error_control, substeps, backend
        Passed to :func:`solve_ode` (default adaptive ``"dopri5"``, ``rtol = atol = 1e-6``).

    Notes
    -----
    Several physics built from the same ``rhs``, times, settings and inputs, e.g. one per
    observed component, share one solve in the compiled model: the solver Ops compare equal and
    pytensor merges them.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.physics.ode import ODE
    >>> decay = ODE(lambda t, y, p: -p[0] * y, np.array([0.0, 1.0]), params=("k",),
    ...             initial=(2.0,), component=0, rtol=1e-10, atol=1e-12)
    >>> np.round(decay(k=np.log(2.0)), 6)  # half-life 1
    array([2., 1.])
    """

    @checked_init("bj.physics.ODE")
    def __init__(
        self,
        rhs: Callable[[Any, Any, Any], Any],
        times: Any,
        params: Sequence[Any] = (),
        initial: Sequence[str | float] | str = (),
        *,
        component: int | Sequence[int] | None = None,
        t0: float | None = None,
        method: str = "dopri5",
        rtol: float = 1e-6,
        atol: float = 1e-6,
        max_steps: int = 100_000,
        sensitivity_error_control: bool = True,
        substeps: int = 10,
        backend: str = "auto",
    ) -> None:
        if not callable(rhs):
            raise TypeError(f"ODE(rhs=...) must be callable, got {type(rhs).__name__}")
        self.rhs = rhs
        self.times, _, _, _ = _step_grid(times, 1, t0)
        _check_backend(backend, method)
        if isinstance(params, str):
            params = (params,)
        self.params = tuple(v if isinstance(v, str) else np.asarray(v, float) for v in params)
        if isinstance(initial, str):
            self.initial: str | tuple[str | float, ...] = initial
        else:
            if len(initial) == 0:
                raise ValueError("ODE(initial=...) needs the initial state (names or numbers)")
            self.initial = tuple(v if isinstance(v, str) else float(v) for v in initial)
        if component is not None and not isinstance(component, (int, np.integer)):
            component = tuple(int(c) for c in component)
        self.component = component
        self.t0 = None if t0 is None else float(t0)
        self.settings = {
            "method": method,
            "rtol": rtol,
            "atol": atol,
            "max_steps": max_steps,
            "sensitivity_error_control": sensitivity_error_control,
            "substeps": substeps,
            "backend": backend,
        }
        entries = [self.initial] if isinstance(self.initial, str) else list(self.initial)
        names: list[str] = []
        for v in (*self.params, *entries):
            if isinstance(v, str) and v not in names:
                names.append(v)
        self.inputs = tuple(names)

    @staticmethod
    def _tensor(latent: Mapping[str, Any], entry: Any) -> Any:
        value = latent[entry] if isinstance(entry, str) else entry
        return _as_float_tensor(value)

    def forward(self, latent: Mapping[str, Any]) -> Any:
        """Return the symbolic solution (the selected components) at :attr:`times`."""
        params = tuple(self._tensor(latent, p) for p in self.params)
        if isinstance(self.initial, str):
            y0 = pt.flatten(self._tensor(latent, self.initial))
        else:
            y0 = pt.stack([self._tensor(latent, v).reshape(()) for v in self.initial])
        states = solve_ode(self.rhs, y0, self.times, params, t0=self.t0, **self.settings)
        if self.component is None:
            return states
        if isinstance(self.component, tuple):
            return states[:, list(self.component)]
        return states[:, self.component]

    def output_shape(self, input_shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, ...]:
        """Return the shape of the returned states, checking the initial-state inputs."""
        if isinstance(self.initial, str):
            n = int(np.prod(input_shapes[self.initial], dtype=int))
        else:
            n = len(self.initial)
            for name in self.initial:
                if isinstance(name, str) and int(np.prod(input_shapes[name], dtype=int)) != 1:
                    raise ValueError(
                        f"ODE reads '{name}' as one initial state component (a scalar), got "
                        f"shape {input_shapes[name]}"
                    )
        components = (
            [self.component] if isinstance(self.component, (int, np.integer)) else self.component
        )
        for c in components or ():
            if not -n <= c < n:
                raise ValueError(f"ODE(component={self.component}) is outside the {n} states")
        if self.component is None:
            return (self.times.size, n)
        if isinstance(self.component, tuple):
            return (self.times.size, len(self.component))
        return (self.times.size,)

    def __call__(self, latent: Mapping[str, Any] | None = None, **values: Any) -> Any:
        """Evaluate; with no latent inputs it may be called without arguments."""
        if not self.inputs:
            return self._evaluate_numpy({})
        return super().__call__(latent, **values)

    def __repr__(self) -> str:
        name = getattr(self.rhs, "__name__", "rhs")
        return f"ODE({name}, {self.times.size} times, method={self.settings['method']!r})"


class GeneExpression(Physics):
    """Two-stage gene-expression model (mRNA → protein), solved by RK4 at fixed times.

    Parameters
    ----------
    times : array_like, shape (n_times,)
        Observation times (e.g. hours), strictly increasing and ``>= t0``.
    inputs : sequence of 4 (str or float), default ("k_m", "gamma_m", "k_p", "gamma_p")
        Transcription rate ``k_m`` (molecules / time), mRNA decay rate ``γ_m`` (1 / time),
        translation rate ``k_p`` (proteins per mRNA per time) and protein decay rate ``γ_p``
        (1 / time), in this order: a latent name (scalar latent) or a fixed number each.
    initial : pair of (str or float), default (0.0, 0.0)
        Initial mRNA and protein counts ``(m0, p0)`` at ``t0``: latent names or numbers.
    observe : {"protein", "mrna", "both"}, default "protein"
        What the physics returns: ``p(t)`` with shape (n_times,), ``m(t)``, or both with shape
        (n_times, 2) (columns m, p).
    substeps : int, default 10
        RK4 steps per observation interval.
    t0 : float, default 0.0
        Time of the initial condition.
    log : bool, default False
        Whether the latent rates hold natural logarithms of the rates (fixed numbers are rates).

    Notes
    -----
    Linear two-stage model (e.g. Shahrezaei & Swain 2008, PNAS 105, 17256)::

        dm/dt = k_m − γ_m m,    dp/dt = k_p m − γ_p p.

    Closed form (used in the tests): ``m(t) = m* + (m0 − m*) e^{−γ_m t}``, ``m* = k_m/γ_m``, and
    ``p(t) = p0 e^{−γ_p t} + (k_p m*/γ_p)(1 − e^{−γ_p t}) + k_p (m0 − m*) (e^{−γ_m t} −
    e^{−γ_p t}) / (γ_p − γ_m)`` (last term ``k_p (m0 − m*) t e^{−γ t}`` when ``γ_m = γ_p = γ``).
    Time units are the user's; rates must use the same unit. RK4 accuracy: see :func:`rk4`.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.physics.ode import GeneExpression
    >>> op = GeneExpression(np.array([0.0, 50.0]), inputs=(2.0, 1.0, 3.0, 0.5), substeps=200)
    >>> np.round(op(), 4)  # steady state p* = k_p k_m / (γ_m γ_p) = 12
    array([ 0., 12.])
    """

    _RATES = ("k_m", "gamma_m", "k_p", "gamma_p")

    @checked_init("bj.physics.GeneExpression")
    def __init__(
        self,
        times: Any,
        inputs: Sequence[str | float] = ("k_m", "gamma_m", "k_p", "gamma_p"),
        initial: Sequence[str | float] = (0.0, 0.0),
        observe: str = "protein",
        substeps: int = 10,
        t0: float = 0.0,
        log: bool = False,
    ) -> None:
        self.times, _, _, _ = _step_grid(times, substeps, t0)
        if isinstance(inputs, str) or len(inputs) != 4:
            raise ValueError(
                "GeneExpression(inputs=...) needs 4 entries (k_m, gamma_m, k_p, gamma_p), each a "
                "latent name or a number"
            )
        if isinstance(initial, str) or len(initial) != 2:
            raise ValueError("GeneExpression(initial=...) needs 2 entries (m0, p0)")
        if observe not in ("protein", "mrna", "both"):
            raise ValueError(f"observe must be 'protein', 'mrna' or 'both', got {observe!r}")
        self.rates = tuple(self._entry(v, f"inputs[{i}]") for i, v in enumerate(inputs))
        self.initial = tuple(self._entry(v, f"initial[{i}]") for i, v in enumerate(initial))
        self.observe = observe
        self.substeps = int(substeps)
        self.t0 = float(t0)
        self.log = bool(log)
        names: list[str] = []
        for v in (*self.rates, *self.initial):
            if isinstance(v, str) and v not in names:
                names.append(v)
        self.inputs = tuple(names)

    @staticmethod
    def _entry(value: Any, what: str) -> str | float:
        if isinstance(value, str):
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"GeneExpression {what} must be a latent name or a number") from None
        if not np.isfinite(number):
            raise ValueError(f"GeneExpression {what} must be finite")
        return number

    @staticmethod
    def _scalar(latent: Mapping[str, Any], entry: str | float) -> Any:
        if isinstance(entry, str):
            value = latent[entry]
            value = pt.as_tensor_variable(value if is_symbolic(value) else np.asarray(value, float))
            return pt.cast(value, "float64").reshape(())
        return pt.constant(np.float64(entry))

    def forward(self, latent: Mapping[str, Any]) -> Any:
        """Return the symbolic trajectory at :attr:`times`."""
        rates = []
        for entry in self.rates:
            value = self._scalar(latent, entry)
            rates.append(pt.exp(value) if self.log and isinstance(entry, str) else value)
        y0 = pt.stack([self._scalar(latent, entry) for entry in self.initial])

        def rhs(t: Any, y: Any, p: Any) -> Any:
            k_m, gamma_m, k_p, gamma_p = p
            return pt.stack([k_m - gamma_m * y[0], k_p * y[0] - gamma_p * y[1]])

        states = rk4(rhs, y0, self.times, tuple(rates), self.substeps, self.t0)
        if self.observe == "protein":
            return states[:, 1]
        if self.observe == "mrna":
            return states[:, 0]
        return states

    def output_shape(self, input_shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, ...]:
        """Return ``(n_times,)`` or ``(n_times, 2)`` after checking the inputs are scalars."""
        for name in self.inputs:
            if int(np.prod(input_shapes[name], dtype=int)) != 1:
                raise ValueError(
                    f"GeneExpression reads '{name}' as a scalar, got shape {input_shapes[name]}"
                )
        n = self.times.size
        return (n, 2) if self.observe == "both" else (n,)

    def __call__(self, latent: Mapping[str, Any] | None = None, **values: Any) -> Any:
        """Evaluate; with all entries fixed numbers it may be called without arguments."""
        if not self.inputs:
            return self._evaluate_numpy({})
        return super().__call__(latent, **values)

    def __repr__(self) -> str:
        return f"GeneExpression({self.times.size} times, observe={self.observe!r})"
