"""Keyword and settings checks of the package's sampling and search functions.

:func:`checked_keywords` decorates a function so that unknown keyword names are refused with the
closest valid one and its settings are range-checked before its body compiles anything. This
module imports nothing from :mod:`bayesjoint.inference`, so every route module can use it.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from bayesjoint._checks import as_count, check_kwargs, check_probability

__all__ = [
    "check_find_modes_arguments",
    "check_sample_from_modes_arguments",
    "check_smc_arguments",
    "checked_keywords",
    "find_map_keywords",
    "pymc_sample_keywords",
    "registered_keywords",
    "smc_keywords",
]

#: Own keyword names of every function decorated by :func:`checked_keywords`, by function name.
_REGISTERED: dict[str, frozenset[str]] = {}


def registered_keywords(name: str) -> set[str]:
    """Return the own keyword names of the decorated function ``name`` (e.g. ``"find_modes"``).

    Functions register when their module is imported, which ``import bayesjoint`` does for every
    decorated one.
    """
    if name not in _REGISTERED:
        raise RuntimeError(f"{name}() is not a keyword-checked function (or not imported yet)")
    return set(_REGISTERED[name])


# -- the other sampling and search functions -------------------------------------------------------
def _seed_type(value: Any, what: str) -> None:
    """Refuse a seed PyMC would not take (without drawing from a Generator)."""
    if value is None or isinstance(value, (np.random.Generator, np.random.SeedSequence)):
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"{what} takes an int, a numpy.random.Generator or a SeedSequence, got "
            f"{type(value).__name__} {value!r}"
        )
    if int(value) < 0:
        raise ValueError(f"{what} must be a non-negative int, got {value!r}")


def _positive_number(value: Any, what: str, *, zero: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{what} must be a number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not np.isfinite(number) or number < 0 or (number == 0 and not zero):
        bound = ">= 0" if zero else "> 0"
        raise ValueError(f"{what} must be a finite number {bound}, got {value!r}")
    return number


def _choice(value: Any, choices: tuple[str, ...], what: str) -> None:
    if not isinstance(value, str) or value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{what} must be one of {list(choices)}, got {value!r}{hint}")


def _parameters(*functions: Any) -> set[str]:
    names: set[str] = set()
    for fn in functions:
        for name, par in inspect.signature(fn).parameters.items():
            if par.kind not in (par.VAR_POSITIONAL, par.VAR_KEYWORD):
                names.add(name)
    return names - {"self", "model"}


def smc_keywords() -> set[str]:
    """Keyword names ``sample_smc(**kwargs)`` passes on: :func:`pymc.sample_smc`'s and kernels'."""
    import pymc as pm

    kernels = (pm.smc.kernels.IMH.__init__, pm.smc.kernels.MH.__init__)
    return _parameters(pm.sample_smc, *kernels) - {"kernel", "start", "draws"}


def pymc_sample_keywords() -> set[str]:
    """Keyword names :func:`pymc.sample` takes, with its NUTS step's options and step names."""
    import pymc as pm

    names = _parameters(pm.sample, pm.NUTS.__init__) | {"target_accept"}
    names |= {getattr(step, "name", "") for step in pm.STEP_METHODS}
    return {n for n in names if n and n != "vars"}


def find_map_keywords() -> set[str]:
    """Keyword names ``find_map(**kwargs)`` passes on to :func:`pymc.find_MAP` and SciPy."""
    import pymc as pm
    import scipy.optimize

    names = _parameters(pm.find_MAP, scipy.optimize.minimize)
    return names - {"seed", "include_transformed", "fun", "x0", "args"}


def check_smc_arguments(arguments: dict[str, Any]) -> None:
    """Range-check :func:`~bayesjoint.inference.sample_smc`'s settings (before compiling)."""
    as_count(arguments["draws"], "sample_smc(draws=...)", 10)
    as_count(arguments["chains"], "sample_smc(chains=...)", 1)
    if arguments["cores"] is not None:
        as_count(arguments["cores"], "sample_smc(cores=...)", 1)
    _choice(arguments["kernel"], ("IMH", "MH"), "sample_smc(kernel=...)")
    threshold = _positive_number(arguments["threshold"], "sample_smc(threshold=...)")
    if threshold > 1:
        raise ValueError(
            f"sample_smc(threshold={threshold}) is a ratio of effective to total sample size: "
            "it must lie in (0, 1] (e.g. 0.5)"
        )
    check_probability(arguments["correlation_threshold"], "sample_smc(correlation_threshold=...)")
    _seed_type(arguments["random_seed"], "sample_smc(random_seed=...)")


def check_find_modes_arguments(arguments: dict[str, Any]) -> None:
    """Range-check :func:`~bayesjoint.inference.find_modes`'s settings (before compiling)."""
    methods = arguments["methods"]
    if isinstance(methods, str):
        raise TypeError(
            f"find_modes(methods={methods!r}) takes a sequence of names, e.g. [{methods!r}]"
        )
    as_count(arguments["n_starts"], "find_modes(n_starts=...)", 0)
    for name in ("maxiter", "popsize", "n_particles", "local_maxiter"):
        as_count(arguments[name], f"find_modes({name}=...)", 1)
    _positive_number(arguments["min_barrier"], "find_modes(min_barrier=...)")
    _seed_type(arguments["random_seed"], "find_modes(random_seed=...)")


def check_sample_from_modes_arguments(arguments: dict[str, Any]) -> None:
    """Range-check :func:`~bayesjoint.inference.sample_from_modes`'s settings."""
    as_count(arguments["chains_per_mode"], "sample_from_modes(chains_per_mode=...)", 1)
    as_count(arguments["draws"], "sample_from_modes(draws=...)", 1)
    as_count(arguments["tune"], "sample_from_modes(tune=...)", 0)
    if arguments["cores"] is not None:
        as_count(arguments["cores"], "sample_from_modes(cores=...)", 1)
    _choice(arguments["weighting"], ("bridge", "laplace"), "sample_from_modes(weighting=...)")
    weight = _positive_number(
        arguments["min_weight"], "sample_from_modes(min_weight=...)", zero=True
    )
    if weight >= 1:
        raise ValueError(
            f"sample_from_modes(min_weight={weight}) is a share of the posterior mass: it must "
            "lie in [0, 1) (e.g. 1e-3)"
        )
    check_probability(arguments["target_accept"], "sample_from_modes(target_accept=...)")
    _seed_type(arguments["random_seed"], "sample_from_modes(random_seed=...)")
    search = arguments.get("search_kwargs")
    if search is not None:
        if not isinstance(search, Mapping):
            raise TypeError(
                "sample_from_modes(search_kwargs=...) takes a dict of find_modes options, got "
                f"{type(search).__name__}"
            )
        valid = registered_keywords("find_modes") - {"problem", "bounds"}
        check_kwargs(search, valid, "search_kwargs")


def checked_keywords(
    check: Callable[[dict[str, Any]], None] | None = None,
    passthrough: Callable[[], set[str]] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a function so that its keywords are checked before its body runs.

    Unknown keyword names are refused with the closest valid one (the function's own
    parameters, and ``passthrough()`` for those its ``**kwargs`` hands on); then
    ``check(arguments)`` range-checks the bound arguments (defaults applied).
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(fn)
        own = _parameters(fn) | ({"model"} & set(signature.parameters))
        _REGISTERED[fn.__name__] = frozenset(own)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            valid = own | (passthrough() if passthrough is not None else set())
            check_kwargs(kwargs, valid, f"{fn.__name__}()")
            if check is not None:
                known = {k: v for k, v in kwargs.items() if k in own}
                bound = signature.bind_partial(*args, **known)
                bound.apply_defaults()
                check(dict(bound.arguments))
            return fn(*args, **kwargs)

        return wrapper

    return decorate
