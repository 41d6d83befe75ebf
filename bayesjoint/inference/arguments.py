"""Checks of :meth:`bayesjoint.JointInversion.sample`'s arguments, before anything compiles.

They live beside the routes (not in :mod:`bayesjoint._checks`, which the constructors import) so
that the valid keyword names can be read off the route functions without an import cycle.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

import numpy as np

from bayesjoint._checks import (
    _FLOAT,
    as_count,
    as_seed,
    check_kwargs,
    check_memory,
    check_probability,
)
from bayesjoint.inference.keywords import (
    check_find_modes_arguments,
    check_sample_from_modes_arguments,
    check_smc_arguments,
    checked_keywords,
    find_map_keywords,
    pymc_sample_keywords,
    smc_keywords,
)

__all__ = [
    "check_find_modes_arguments",
    "check_sample_arguments",
    "check_sample_from_modes_arguments",
    "check_smc_arguments",
    "checked_keywords",
    "find_map_keywords",
    "pymc_sample_keywords",
    "sample_keywords",
    "smc_keywords",
]


def sample_keywords() -> set[str]:
    """Keyword names that ``sample(**kwargs)`` passes on to one of its routes.

    Those of :func:`pymc.sample`, :func:`pymc.sample_smc` and :class:`pymc.NUTS`, the NUTS
    options the preconditioned step takes, PyMC's per-step option dictionaries (``nuts={...}``)
    and the keyword-only parameters of the package's route functions.
    """
    import pymc as pm

    from bayesjoint.inference.collapsed import sample_collapsed
    from bayesjoint.inference.exact import sample_exact
    from bayesjoint.inference.nuts import NUTS_OPTIONS, sample_nuts
    from bayesjoint.inference.smc import sample_smc

    names: set[str] = set(NUTS_OPTIONS) | {"target_accept"}
    for fn in (pm.sample, pm.sample_smc, pm.NUTS.__init__):
        names |= set(inspect.signature(fn).parameters)
    for fn in (sample_nuts, sample_collapsed, sample_exact, sample_smc):
        names |= set(inspect.signature(fn).parameters)
    names |= {getattr(step, "name", "") for step in pm.STEP_METHODS}
    return {n for n in names if n and n not in ("self", "kwargs", "args", "vars", "problem")}


def check_sample_arguments(
    problem: Any,
    *,
    where: str = "sample",
    draws: Any,
    tune: Any,
    chains: Any,
    cores: Any,
    random_seed: Any,
    target_accept: Any,
    method: Any,
    kwargs: dict[str, Any],
) -> int | None:
    """Check ``sample()``'s arguments before anything is compiled; return the integer seed.

    Counts are whole numbers (``draws``, ``chains``, ``cores`` at least 1, ``tune`` at least
    0), ``target_accept`` lies in (0, 1), the seed is an int, Generator or SeedSequence,
    ``method`` is a route name, every other keyword is one some route takes (else the closest
    valid name is suggested), and the draws fit in memory: ``chains · draws`` draws of every
    latent value, 8 bytes each, must not exceed the machine's physical memory.

    Raises
    ------
    TypeError, ValueError
        Naming the argument and what to change.
    """
    from bayesjoint.inference.routes import ROUTES

    draws = as_count(draws, f"{where}(draws=...)", 1)
    as_count(tune, f"{where}(tune=...)", 0)
    chains = as_count(chains, f"{where}(chains=...)", 1)
    if cores is not None:
        as_count(cores, f"{where}(cores=...)", 1)
    if target_accept is not None:
        check_probability(target_accept, f"{where}(target_accept=...)")
    if not isinstance(method, str) or method not in ROUTES:
        close = difflib.get_close_matches(str(method), ROUTES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{where}(method={method!r}) is not a route; choose one of {ROUTES}{hint}")
    check_kwargs(kwargs, sample_keywords(), f"{where}()")
    seed = as_seed(random_seed, f"{where}(random_seed=...)")
    n_values = sum(int(np.prod(var.shape, dtype=float)) for var in problem.latent.values())
    check_memory(
        _FLOAT * float(chains) * float(draws) * n_values,
        f"{where}(draws={draws}, chains={chains}) of {n_values} latent values",
        "ask for fewer draws or chains (thin later with idata.sel(draw=slice(None, None, k)))",
    )
    return seed
