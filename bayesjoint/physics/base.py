"""The physics protocol: a forward map F from named latent variables to a physical state."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from bayesjoint._checks import checked_init
from bayesjoint._tensor import NumpyEvaluator, any_symbolic

__all__ = ["Function", "Physics", "as_physics"]


class Physics:
    """Base class of forward operators ``F(m)``.

    A physics object reads one or more named latent variables and returns the physical state (a
    pytensor tensor inside a model, a numpy array when called with numpy arrays).

    Subclasses set :attr:`inputs` and implement :meth:`forward`. Linear operators also implement
    :meth:`linear_operator` so that the exact linear-Gaussian path can use them.

    Attributes
    ----------
    inputs : tuple of str
        Names of the latent variables the operator reads, in the order :meth:`linear_operator`
        stacks them.
    """

    inputs: tuple[str, ...] = ()

    def forward(self, latent: Mapping[str, Any]) -> Any:
        """Return the symbolic physical state for symbolic latent inputs.

        Parameters
        ----------
        latent : mapping of str to pytensor tensor
            The latent variables by name; only :attr:`inputs` are read.

        Returns
        -------
        pytensor tensor
        """
        raise NotImplementedError

    def output_shape(self, input_shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, ...] | None:
        """Return the output shape for the given input shapes, or None when unknown."""
        return None

    def linear_operator(self) -> tuple[np.ndarray | sp.spmatrix, np.ndarray] | None:
        """Return ``(A, b)`` with ``F(m) = A @ concat(flat inputs) + b``, or None if not linear."""
        return None

    def __call__(self, latent: Mapping[str, Any] | None = None, **values: Any) -> Any:
        """Evaluate the operator.

        Accepts a mapping and/or keyword arguments. With pytensor inputs the result is symbolic;
        with numpy inputs it is a numpy array (a pytensor function compiled once per input shape).
        """
        merged = {**(dict(latent) if latent is not None else {}), **values}
        missing = [k for k in self.inputs if k not in merged]
        if missing:
            raise ValueError(
                f"{type(self).__name__} reads latent variable(s) {missing}; pass them by name, "
                f"e.g. op({missing[0]}=...)."
            )
        if any_symbolic(merged):
            return self.forward(merged)
        return self._evaluate_numpy({k: merged[k] for k in self.inputs})

    def _evaluate_numpy(self, values: Mapping[str, Any]) -> np.ndarray:
        evaluator = self.__dict__.get("_numpy_evaluator")
        if evaluator is None:
            evaluator = NumpyEvaluator(self.forward)
            self.__dict__["_numpy_evaluator"] = evaluator
        return evaluator(values)


class Function(Physics):
    """Physics given as a plain callable of the latent mapping.

    Parameters
    ----------
    fn : callable
        ``fn(latent) -> tensor``, where ``latent`` maps latent names to pytensor tensors. The
        callable may read any declared latent variable by name.
    inputs : sequence of str, optional
        Names read by ``fn``. When omitted they are discovered when the model is built.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.physics import Function
    >>> square = Function(lambda m: m["x"] ** 2, inputs=["x"])
    >>> square(x=np.array([1.0, 2.0]))
    array([1., 4.])
    """

    @checked_init("bj.physics.Function")
    def __init__(self, fn: Callable[[Mapping[str, Any]], Any], inputs: Sequence[str] | None = None):
        if not callable(fn):
            raise TypeError(f"physics must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.inputs = tuple(inputs) if inputs is not None else ()

    def forward(self, latent: Mapping[str, Any]) -> Any:
        """Call the wrapped function on the latent mapping."""
        return self.fn(latent)

    def __call__(self, latent: Mapping[str, Any] | None = None, **values: Any) -> Any:
        """Evaluate ``fn``; numpy inputs give a numpy result."""
        if latent is not None and not values:
            if any_symbolic(latent) or not self.inputs:
                return self.fn(latent)  # keep the caller's mapping (it names unknown keys)
        merged = {**(dict(latent) if latent is not None else {}), **values}
        if any_symbolic(merged) or not self.inputs:
            return self.fn(merged)
        return self._evaluate_numpy(merged)

    def __repr__(self) -> str:
        name = getattr(self.fn, "__name__", type(self.fn).__name__)
        return f"Function({name})"


def as_physics(physics: Any) -> Physics:
    """Return ``physics`` as a :class:`Physics` (wrapping a plain callable in :class:`Function`)."""
    if isinstance(physics, Physics):
        return physics
    if callable(physics):
        return Function(physics)
    raise TypeError(
        "physics must be a bayesjoint.physics object (e.g. bj.physics.Linear(A, input='x')) or a "
        f"callable latent -> tensor, got {type(physics).__name__}"
    )
