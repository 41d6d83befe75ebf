"""Run-time settings shared by the case studies."""

from __future__ import annotations

import argparse
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


def study_parser(doc: str, name: str, *, quick: str, seed: int) -> argparse.ArgumentParser:
    """The options every study takes: ``--quick``, ``--out``, ``--seed`` and ``--figure``.

    Parameters
    ----------
    doc : str
        The study's module docstring (its first line is the description).
    name : str
        The study's name; the report defaults to ``<name>.nc``.
    quick : str
        What ``--quick`` does (help text).
    seed : int
        The default seed of the data and the sampler.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--out", default=f"{name}.nc", help="netCDF report path")
    parser.add_argument("--seed", type=int, default=seed, help="random seed (data and sampler)")
    parser.add_argument("--figure", default=None, help="PNG path (default: next to --out)")
    return parser
