"""Run-time settings shared by the case studies."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Limit BLAS to one thread while the block runs (a no-op without threadpoolctl).

    The case studies' dense algebra is small (matrix-vector products with a mass matrix of at
    most a few thousand rows, solves of a few hundred): one thread loses little, while
    multi-threaded OpenBLAS on a shared, loaded machine spends its time waiting for its own
    threads (measured on ``gravity_magnetics --quick``: 24 % of the CPU time in system calls
    with the default BLAS threads, 9 % with one).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scipy/scikit-learn stacks
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
