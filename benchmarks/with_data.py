"""What ``problem.with_data`` saves: a fit of new data on a built model against a fresh build.

    python benchmarks/with_data.py [--repeats 3] [--routes exact collapsed nuts-plain]

For each route (exact, collapsed, nuts-plain) on a small problem of that kind: the time of
``build a new problem + sample`` (every model build, compilation and assembly included) against
``problem.with_data(new).sample`` on a problem that has sampled once already; the medians of
``--repeats`` new data sets. Prints one JSON line.
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
    if kind == "nuts-plain":
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
    "nuts-plain": {"draws": 200, "tune": 200, "chains": 2},
}


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
        base = _problem(route)
        base.sample(**kw)  # the shared model and its compiled functions exist from here on
        fresh, refit = [], []
        for _ in range(args.repeats):
            data = {"a": rng.standard_normal(8)}
            t0 = time.perf_counter()
            _problem(route, data).sample(**kw)
            fresh.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            base.with_data(data).sample(**kw)
            refit.append(time.perf_counter() - t0)
        out[route] = {
            "build_and_fit_s": round(float(np.median(fresh)), 3),
            "with_data_fit_s": round(float(np.median(refit)), 3),
            "saving_factor": round(float(np.median(fresh) / np.median(refit)), 1),
        }
        print(route, out[route], file=sys.stderr, flush=True)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
