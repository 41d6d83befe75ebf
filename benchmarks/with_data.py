"""What ``problem.with_data`` saves: a fit of new data on a built model against a fresh build.

    python benchmarks/with_data.py [--repeats 3] [--routes exact collapsed nuts nuts-plain]

For each route (exact, collapsed, nuts, nuts-plain) on a small problem of that kind: the time of
the first ``sample`` of a new problem, of ``build a new problem + sample`` (every model build,
compilation and assembly included) against ``problem.with_data(new).sample`` on a problem that
has sampled once already, and of ``with_data(same data).sample`` (what is left once nothing
depends on the data: the difference to a refit with new data is the work that the data's
values trigger, e.g. a graph with the data as constants compiled again); the medians of
``--repeats`` new data sets. Each time is given as wall time (``*_s``) and as this process's CPU
time (``*_cpu_s``, ``time.process_time``: the fits run in this process, ``cores=1``), which a
machine loaded by other work changes much less. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import numpy as np

import bayesjoint as bj
from bayesjoint.validate import blur_matrix


def _problem(kind: str, data: dict | None = None) -> bj.JointInversion:
    n = 8
    data = data or {}
    x = bj.Parameter("x", shape=n, prior=bj.priors.Normal(0.0, 1.0))
    if kind in ("nuts", "nuts-plain"):
        physics = lambda m: m["x"] ** 3 + m["x"]  # noqa: E731 - a nonlinear forward model
        noise = bj.noise.Gaussian(0.3)
    else:
        physics = bj.physics.Linear(blur_matrix(n, 1.5), input="x")
        noise = bj.noise.Gaussian(bj.priors.HalfNormal(0.5) if kind == "collapsed" else 0.3)
    mod = bj.Modality("a", physics=physics, data=data.get("a", np.zeros(n)), noise=noise)
    return bj.JointInversion(latent=[x], modalities=[mod])


SAMPLE = {
    "exact": {"draws": 500, "chains": 2},
    "collapsed": {"draws": 200, "tune": 200, "chains": 2},
    "nuts": {"draws": 200, "tune": 200, "chains": 2},
    "nuts-plain": {"draws": 200, "tune": 200, "chains": 2},
}


def _timed(into: list, fn, *args, **kwargs):
    """Call ``fn``; append its (wall, CPU) seconds to ``into``; return its result."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    into.append((time.perf_counter() - t0, time.process_time() - c0))
    return result


def _build_and_fit(route: str, data: dict, kw: dict) -> None:
    """Build a new problem with ``data`` and sample it (every build and compilation counted)."""
    _problem(route, data).sample(**kw)


def _fit(problem: bj.JointInversion, data: dict, kw: dict) -> bj.JointInversion:
    """``problem.with_data(data).sample(**kw)``; returns the new problem."""
    new = problem.with_data(data)
    new.sample(**kw)
    return new


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--routes", nargs="+", default=list(SAMPLE), choices=list(SAMPLE))
    args = parser.parse_args(argv)
    logging.getLogger("bayesjoint").setLevel(logging.WARNING)
    logging.getLogger("pymc").setLevel(logging.ERROR)
    rng = np.random.default_rng(0)
    out: dict = {"repeats": args.repeats, "cpus": len(os.sched_getaffinity(0))}
    for route in args.routes:
        kw = SAMPLE[route]
        kw = {**kw, "method": route, "cores": 1, "progressbar": False, "random_seed": 1}
        times: dict[str, list[tuple[float, float]]] = {
            k: [] for k in ("first_fit", "build_and_fit", "with_data_fit", "refit_same_data")
        }
        base = _problem(route)
        # the shared model and its compiled functions exist from here on
        _timed(times["first_fit"], base.sample, **kw)
        for _ in range(args.repeats):
            data = {"a": rng.standard_normal(8)}
            _timed(times["build_and_fit"], _build_and_fit, route, data, kw)
            refitted = _timed(times["with_data_fit"], _fit, base, data, kw)
            _timed(times["refit_same_data"], _fit, refitted, data, kw)
        out[route] = {}
        for key, pairs in times.items():
            out[route][f"{key}_s"] = round(float(np.median([w for w, _ in pairs])), 3)
            out[route][f"{key}_cpu_s"] = round(float(np.median([c for _, c in pairs])), 3)
        out[route]["saving_factor"] = round(
            out[route]["build_and_fit_s"] / out[route]["with_data_fit_s"], 1
        )
        out[route]["saving_factor_cpu"] = round(
            out[route]["build_and_fit_cpu_s"] / out[route]["with_data_fit_cpu_s"], 1
        )
        print(route, out[route], file=sys.stderr, flush=True)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
