"""What ``problem.with_data`` saves: a fit of new data on a built model against a fresh build.

    python benchmarks/with_data.py [--repeats 3] [--routes exact collapsed nuts] [--draws 100]

For each route (exact, collapsed, nuts; nuts-plain on request) on a small problem of that kind:
the time of the first ``sample`` of a new problem (``first_fit``: model build, compilation,
sampling), of ``build a new problem + sample`` with new data (``build_and_fit``: every model
build, compilation and assembly again) against ``problem.with_data(new).sample`` on a problem
that has sampled once already (``with_data_fit``), and of ``with_data(same data).sample``
(``refit_same_data``: what is left once nothing depends on the data: the difference to a refit
with new data is the work that the data's values trigger, e.g. a graph with the data as
constants compiled again); the medians of ``--repeats`` repeats, each with two new data sets
(one for the fresh build, one for the refits). Each time is given as
wall time (``*_s``) and as CPU time (``*_cpu_s``: this process's, where the fits run with
``cores=1``, plus that of the C compiler processes it waited for, ``os.times``), which a machine
loaded by other work changes much less.

Compilation is counted too, per phase and summed over the repeats: ``*_c_compiles``, the C
modules pytensor compiled (a graph not in its on-disk cache; the first fit's count depends on
what earlier runs left there), and ``*_new_c_modules``, the C modules asked for that the first
fit had not asked for (every one of them is compiled, or loaded from an earlier run's cache: a
refit that needs none compiles nothing whatever the cache holds). For a first fit that compiles
everything, start from an empty cache: ``PYTENSOR_FLAGS=compiledir=$(mktemp -d) python
benchmarks/with_data.py``. Prints one JSON line.
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
from bayesjoint.validate import CModuleWatch, blur_matrix


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


ROUTES = ("exact", "collapsed", "nuts", "nuts-plain")


def _sample_kwargs(route: str, draws: int) -> dict:
    """The ``sample`` options of ``route``: ``draws`` per chain, 2 chains, as many tuning steps."""
    if route == "exact":
        return {"draws": draws, "chains": 2}
    return {"draws": draws, "tune": draws, "chains": 2}


def _timed(into: list, fn, *args, **kwargs):
    """Call ``fn``; append its (wall, CPU) seconds to ``into``; return its result."""
    t0, c0 = time.perf_counter(), _cpu_seconds()
    result = fn(*args, **kwargs)
    into.append((time.perf_counter() - t0, _cpu_seconds() - c0))
    return result


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished child processes (the C compiler)."""
    children = os.times()
    return time.process_time() + children.children_user + children.children_system


def _counted(watch: CModuleWatch, seen: set, counts: dict, phase: str, fn, *args, **kwargs):
    """Call ``fn``; add its C compilations and C modules not in ``seen`` to ``counts[phase]``."""
    mark, compiled = len(watch.keys), watch.compiled
    result = fn(*args, **kwargs)
    counts[f"{phase}_c_compiles"] += watch.compiled - compiled
    counts[f"{phase}_new_c_modules"] += sum(key not in seen for key in watch.keys[mark:])
    return result


def _sample(problem: bj.JointInversion, kw: dict) -> None:
    """Sample ``problem`` (its first fit: model build and compilation included)."""
    problem.sample(**kw)


def _build_and_fit(route: str, data: dict, kw: dict) -> None:
    """Build a new problem with ``data`` and sample it (every build and compilation counted)."""
    _problem(route, data).sample(**kw)


def _fit(problem: bj.JointInversion, data: dict, kw: dict) -> bj.JointInversion:
    """``problem.with_data(data).sample(**kw)``; returns the new problem."""
    new = problem.with_data(data)
    new.sample(**kw)
    return new


PHASES = ("first_fit", "build_and_fit", "with_data_fit", "refit_same_data")


def _route(route: str, repeats: int, draws: int, rng: np.random.Generator) -> dict:
    """Time and count the four phases (module docstring) of ``route``; return the figures."""
    kw = {**_sample_kwargs(route, draws), "method": route, "cores": 1}
    kw.update(progressbar=False, random_seed=1)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in PHASES}
    counts = {f"{k}_{c}": 0 for k in PHASES for c in ("c_compiles", "new_c_modules")}
    seen: set = set()

    def phase(watch: CModuleWatch, name: str, fn, *args):
        return _counted(watch, seen, counts, name, _timed, times[name], fn, *args)

    with CModuleWatch() as watch:
        base = _problem(route, {"a": rng.standard_normal(8)})
        # the shared model and its compiled functions exist from here on
        phase(watch, "first_fit", _sample, base, kw)
        seen.update(watch.keys)  # what the first fit compiled or loaded
        for _ in range(repeats):
            # two new data sets: neither fit meets graphs that the other compiled for its data
            fresh, data = {"a": rng.standard_normal(8)}, {"a": rng.standard_normal(8)}
            phase(watch, "build_and_fit", _build_and_fit, route, fresh, kw)
            refitted = phase(watch, "with_data_fit", _fit, base, data, kw)
            phase(watch, "refit_same_data", _fit, refitted, data, kw)
    medians = {}
    for key, pairs in times.items():
        medians[f"{key}_s"] = float(np.median([w for w, _ in pairs]))
        medians[f"{key}_cpu_s"] = float(np.median([c for _, c in pairs]))
    out: dict = {key: round(value, 3) for key, value in medians.items()}
    out.update(counts)
    for name, reference in (
        ("saving_factor", "build_and_fit"),
        ("first_fit_over_refit", "first_fit"),
    ):
        for unit, suffix in (("s", ""), ("cpu_s", "_cpu")):
            ratio = medians[f"{reference}_{unit}"] / max(medians[f"with_data_fit_{unit}"], 1e-9)
            out[name + suffix] = round(ratio, 1)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--routes", nargs="+", default=["exact", "collapsed", "nuts"], choices=list(ROUTES)
    )
    parser.add_argument(
        "--draws", type=int, default=100, help="draws (and tuning steps) per chain, 2 chains"
    )
    args = parser.parse_args(argv)
    logging.getLogger("bayesjoint").setLevel(logging.WARNING)
    logging.getLogger("pymc").setLevel(logging.ERROR)
    rng = np.random.default_rng(0)
    out: dict = {"repeats": args.repeats, "draws": args.draws}
    out["cpus"] = len(os.sched_getaffinity(0))
    for route in args.routes:
        out[route] = _route(route, args.repeats, args.draws, rng)
        print(route, out[route], file=sys.stderr, flush=True)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
