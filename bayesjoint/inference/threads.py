"""How the sampling routes share the machine's CPUs between chains and BLAS threads.

A NUTS gradient of a joint inversion is a handful of matrix-vector products with the modalities'
operators: too small for a BLAS thread pool to pay off when the CPUs are busy, and a pool that
spins while other processes hold the CPUs is erratic (``benchmarks/blas_threads.py``: one log
density and gradient of a 3-D gravity + magnetics model beside two busy processes took 0.67 ms
median and up to 14.2 ms with OpenBLAS's default pool, 0.41 ms on one thread). Chains, on the
other hand, are independent: the CPUs are best spent one per chain, with BLAS single-threaded,
and only the CPUs left over given to BLAS.

PyMC's own default for ``cores`` halves the CPU count (it assumes every second CPU is a
hyperthread), so on a two-CPU machine it runs four chains one after the other; the package's
default runs as many chains at once as there are CPUs this process may use.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import platform
import re
import sys
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "available_cpus",
    "blas_limit",
    "chains_running",
    "jax_threads_running",
    "parallel_plan",
    "pymc_default_start_method",
    "safe_start_method",
    "sampling_plan",
]

_log = logging.getLogger(__name__)

#: BLAS threads per running chain of the sampling call in progress (None: no plan, no limit).
_PLAN: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "bayesjoint_blas_threads", default=None
)


def available_cpus() -> int:
    """Return the number of CPUs this process may run on (its affinity mask, else the count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - platforms without affinity masks
        return max(1, os.cpu_count() or 1)


def parallel_plan(chains: int, cores: int | None, cpus: int | None = None) -> tuple[int, int]:
    """Return ``(cores, blas_threads)``: chains run at once, and BLAS threads per chain.

    Parameters
    ----------
    chains : int
        Number of chains.
    cores : int or None
        The caller's ``cores`` (kept when given); None: ``min(chains, cpus)``.
    cpus : int, optional
        CPUs available (default :func:`available_cpus`).

    Returns
    -------
    cores : int
        At least 1.
    blas_threads : int
        ``max(1, cpus // min(cores, chains))``: the CPUs left to each running chain.

    Examples
    --------
    >>> parallel_plan(4, None, cpus=2)
    (2, 1)
    >>> parallel_plan(1, None, cpus=8)
    (1, 8)
    >>> parallel_plan(4, 1, cpus=8)
    (1, 8)
    """
    cpus = available_cpus() if cpus is None else max(1, int(cpus))
    chains = max(1, int(chains))
    running = max(1, int(cores)) if cores is not None else min(chains, cpus)
    return running, max(1, cpus // min(running, chains))


def jax_threads_running() -> bool:
    """Return whether JAX has started its runtime, and with it its threads, in this process.

    JAX starts them with its first computation (not on import) and installs a handler that
    warns at every ``os.fork()`` from then on; a missing marker (another JAX version) counts as
    started.
    """
    bridge = sys.modules.get("jax._src.xla_bridge")
    if bridge is None:
        return False
    return bool(getattr(bridge, "_at_fork_handler_installed", True))


def pymc_default_start_method() -> str:
    """Return the start method PyMC gives parallel chains when no ``mp_ctx`` is passed.

    Python's default (``fork`` on Linux up to Python 3.13), except on macOS, where PyMC picks
    ``fork`` on ARM processors and ``forkserver`` otherwise
    (``pymc.sampling.parallel._initialize_multiprocessing_context``).
    """
    if platform.system() == "Darwin":
        return "fork" if platform.processor() == "arm" else "forkserver"
    # a start method set by the program, else the platform's default (the first listed)
    method = multiprocessing.get_start_method(allow_none=True)
    return method or multiprocessing.get_all_start_methods()[0]


def safe_start_method(
    cores: int | None, kwargs: Mapping[str, Any], chains: int | None = None
) -> dict[str, Any]:
    """Return ``{"mp_ctx": "forkserver", ...}`` where PyMC would fork chains from JAX's threads.

    PyMC starts parallel chains by ``fork`` on Linux (and on macOS with ARM processors). A
    process forked while another thread holds a lock inherits the lock held, and JAX runs
    threads once it has computed anything (e.g. after the ``numpyro`` route or a JAX-compiled
    function): such a fork can hang (pymc-devs/pymc#7668). The chains then start from a
    ``forkserver`` instead, a clean single-threaded process: the step method is pickled to
    it, and a script must guard its entry point with ``if __name__ == "__main__":``. A forked
    chain inherits the BLAS limit of :func:`chains_running`; one started otherwise gets it
    from PyMC's ``blas_cores`` (``cores`` × the plan's threads per chain), passed along when
    ``cores`` is given (the sampling routes always give it).

    Parameters
    ----------
    cores : int or None
        Chains run at once; None is PyMC's default: half the CPU count (PyMC takes every
        second CPU for a hyperthread), at most 4 in ``pymc.sample``.
    kwargs : mapping
        The keyword arguments bound for the sampler: a given ``mp_ctx`` (or ``blas_cores``)
        is kept, and samplers other than PyMC's own (``nuts_sampler``) start no process.
    chains : int, optional
        Number of chains: one starts no process.

    Returns
    -------
    dict
        Keyword arguments to add to the sampler's call (empty: nothing to change).
    """
    if "mp_ctx" in kwargs or kwargs.get("nuts_sampler", "pymc") != "pymc":
        return {}
    if chains is not None and int(chains) <= 1:
        return {}
    # cores=None: PyMC's default, multiprocessing.cpu_count() // 2 (pymc.sampling.parallel)
    parallel = (multiprocessing.cpu_count() // 2 if cores is None else int(cores)) > 1
    if not parallel or not jax_threads_running() or pymc_default_start_method() != "fork":
        return {}
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    _log.warning(
        "bayesjoint: the chains start from a %s, not by fork: JAX's threads run in this process "
        "and a forked chain could hang. A script must guard its entry point with "
        '`if __name__ == "__main__":`; sample(mp_ctx="fork") forks all the same.',
        method,
    )
    extra: dict[str, Any] = {"mp_ctx": method}
    plan = _PLAN.get()
    if plan is not None and cores is not None and "blas_cores" not in kwargs:
        running = int(cores) if chains is None else min(int(cores), int(chains))
        extra["blas_cores"] = running * plan
    return extra


def _load_pytensor_blas() -> None:
    """Load the BLAS library named in pytensor's link flags (a no-op when it is loaded)."""
    import pytensor

    for name in re.findall(r"-l(\S+)", str(pytensor.config.blas__ldflags)):
        if "blas" not in name and "mkl" not in name:
            continue
        path = ctypes.util.find_library(name)
        if path:
            with contextlib.suppress(OSError):
                ctypes.CDLL(path)


@contextlib.contextmanager
def blas_limit(threads: int) -> Iterator[dict[str, Any]]:
    """Limit the BLAS thread pools loaded in this process to ``threads`` while the block runs.

    Parameters
    ----------
    threads : int
        Upper bound; a pool already set smaller (``OPENBLAS_NUM_THREADS=1``, an enclosing
        limit) is left as it is.

    Yields
    ------
    dict
        ``{"blas_threads": n}``: the largest pool size in force inside the block (``None`` when
        no BLAS library is found).

    Notes
    -----
    Uses :mod:`threadpoolctl` (a dependency of PyMC). Chains that PyMC forks inherit the limit
    (started otherwise, they get it from PyMC's ``blas_cores``: :func:`safe_start_method`).
    The BLAS library pytensor's compiled code links (``pytensor.config.blas__ldflags``) is
    loaded first, so that a model compiled inside the block is limited too.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    _load_pytensor_blas()
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if not pools:
        yield {"blas_threads": None}
        return
    current = max(int(p.get("num_threads") or 1) for p in pools)
    limit = max(1, min(int(threads), current))
    with threadpool_limits(limits=limit, user_api="blas"):
        yield {"blas_threads": limit}


@contextlib.contextmanager
def sampling_plan(blas_threads: int) -> Iterator[None]:
    """Make ``blas_threads`` the BLAS limit of the chains that run inside the block.

    Only the chains are limited (:func:`chains_running` around the sampler's call): the work
    the sampling routes do before and after them in this process (the MAP, a dense Hessian and
    its eigendecomposition, the collapsed route's conditional draws of the fields) keeps the
    BLAS pool.
    """
    token = _PLAN.set(max(1, int(blas_threads)))
    try:
        yield
    finally:
        _PLAN.reset(token)


@contextlib.contextmanager
def chains_running() -> Iterator[dict[str, Any]]:
    """Apply the :func:`sampling_plan` in force (if any) while the chains run.

    Yields
    ------
    dict
        ``{"blas_threads": n}`` in force inside the block; ``{}`` without a plan.
    """
    threads = _PLAN.get()
    if threads is None:
        yield {}
        return
    with blas_limit(threads) as limit:
        yield limit
