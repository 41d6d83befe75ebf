"""Small helpers shared by the pytensor-facing layers (not public)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.graph.basic import Variable


def is_symbolic(value: Any) -> bool:
    """Return True when ``value`` is a pytensor variable (symbolic graph node)."""
    return isinstance(value, Variable)


def any_symbolic(values: Mapping[str, Any]) -> bool:
    """Return True when any value of ``values`` is a pytensor variable."""
    return any(is_symbolic(v) for v in values.values())


class NumpyEvaluator:
    """Compile and cache a numpy evaluation of a symbolic map.

    ``build(tensors)`` receives a mapping of symbolic inputs (one per name, with the static shape of
    the numpy value) and returns one symbolic output. Functions are cached by the names, shapes and
    dtypes of the inputs, so repeated numpy calls compile once.
    """

    def __init__(self, build):
        self._build = build
        self._cache: dict[tuple, Any] = {}

    def __call__(self, values: Mapping[str, Any]) -> np.ndarray:
        arrays = {k: np.asarray(v, dtype=float) for k, v in values.items()}
        key = tuple((k, a.shape) for k, a in sorted(arrays.items()))
        fn = self._cache.get(key)
        if fn is None:
            names = sorted(arrays)
            inputs = {k: pt.tensor(name=k, dtype="float64", shape=arrays[k].shape) for k in names}
            out = self._build(inputs)
            fn = pytensor.function([inputs[k] for k in names], out, on_unused_input="ignore")
            self._cache[key] = fn
        return np.asarray(fn(*[arrays[k] for k in sorted(arrays)]))
