"""Benchmark: one NUTS log density + gradient with BLAS's default thread pool against one thread.

The model is the 3-D gravity + magnetics problem with the cross-gradient of
``benchmarks/simpeg_joint.py`` (``--cells``, default 16 × 16 × 8: 4,096 sampled coordinates, two
256 × 2,048 operators). PyMC's compiled ``logp_dlogp_function`` (what its NUTS calls once per
leapfrog step) is timed ``--calls`` times at a fixed point, alternately with the BLAS pools as
loaded and limited to one thread (:func:`bayesjoint.inference.threads.blas_limit`), for
``--rounds`` rounds. With ``--busy N``, N processes spin on the CPUs meanwhile (a shared
machine). Printed as ONE JSON object: per setting, the median and range over rounds of the time
per call (ms), and the ratio.

Usage::

    python benchmarks/blas_threads.py                 # idle machine
    python benchmarks/blas_threads.py --busy 2        # two other busy processes
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import sys
import time
from typing import Any

import _machine
import numpy as np

SCHEMA = "bayesjoint-benchmark-blas-threads/1"


def _spin(stop: Any) -> None:
    x = 0.0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1.0


def compute(args: argparse.Namespace) -> dict[str, Any]:
    from adapt_mass import block3d

    from bayesjoint.inference.threads import blas_limit

    problem = block3d(args.cells, 1)
    fn = problem.model.logp_dlogp_function(ravel_inputs=True)
    fn.set_extra_values({})
    size = sum(int(np.size(v)) for v in problem.model.initial_point().values())
    x = np.random.default_rng(0).standard_normal(size) * 0.1
    fn(x)  # compile and warm up
    with blas_limit(1):
        fn(x)
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    spinners = [context.Process(target=_spin, args=(stop,), daemon=True) for _ in range(args.busy)]
    for p in spinners:
        p.start()
    times: dict[str, list[float]] = {"default_pool": [], "one_thread": []}
    pools = _machine.blas_pools()
    try:
        for _ in range(args.rounds):
            for key in times:
                limit = blas_limit(1) if key == "one_thread" else contextlib.nullcontext()
                with limit:
                    start = time.perf_counter()
                    for _ in range(args.calls):
                        fn(x)
                    times[key].append(1e3 * (time.perf_counter() - start) / args.calls)
    finally:
        stop.set()
        for p in spinners:
            p.join(5)
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "cells": list(args.cells),
        "coordinates": size,
        "busy_processes": args.busy,
        "calls_per_round": args.calls,
        "rounds": args.rounds,
        "blas_pools": pools,
        "machine": _machine.machine_info(("numpy", "pytensor", "pymc", "threadpoolctl")),
    }
    for key, values in times.items():
        out[key] = {
            "ms_per_call_median": round(float(np.median(values)), 3),
            "ms_per_call_min": round(min(values), 3),
            "ms_per_call_max": round(max(values), 3),
        }
    out["default_over_one_thread"] = round(
        out["default_pool"]["ms_per_call_median"] / out["one_thread"]["ms_per_call_median"], 2
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, nargs=3, default=[16, 16, 8])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--busy", type=int, default=0, help="spinning processes meanwhile")
    args = parser.parse_args(argv)
    return _machine.print_json(lambda: compute(args))


if __name__ == "__main__":
    sys.exit(main())
