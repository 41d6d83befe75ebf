"""Benchmark the exact linear-Gaussian path at scale: the dense and the matrix-free routes.

The problem (issue 11, item 2): a 100 x 50 slowness field (5,000 cells, 10 m, Gaussian-field prior
with a 100 m correlation length) seen by 100,000 short straight rays (``bj.physics.TravelTime``,
about 10^6 non-zeros). Measured, per route of :class:`bayesjoint.linear.LinearGaussianSystem`:

* ``mean``: the posterior mean alone (``posterior(sd=False)``);
* ``mean_sd``: mean and sd (``posterior()``; matrix-free, the sd is a Monte Carlo estimate from
  ``--draws`` perturbation-optimization draws);
* ``draws``: ``--draws`` i.i.d. posterior draws, the mean included (``draws()``);

plus ``assemble`` (``linear_gaussian_system()``; ``build_s`` is the problem's construction, the
rays' matrix included, before it). ``large`` repeats ``mean`` and ``draws`` on a 200 x 100 field
with 400,000 rays (about 4 x 10^6 non-zeros), beyond the dense limit, where ``method="auto"``
takes the matrix-free route. Each case runs
``--repeat`` times, each in a fresh interpreter, so that the peak resident set size
(``ru_maxrss``) is that case's own; the JSON gives the median and every run (the machine is
shared, so medians). ``agreement`` checks that the routes agree (not timed). ``--quick`` runs
small sizes in-process (a smoke run). Prints ONE JSON object to stdout.

Usage::

    python benchmarks/exact_path.py                # full size, median of 3
    python benchmarks/exact_path.py --repeat 5
    python benchmarks/exact_path.py --quick        # seconds
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import _machine
import numpy as np
from _machine import rss_mib

SCHEMA = "bayesjoint-benchmark-exact-path/1"
SIZES = {
    # cells along x and z (10 m each), rays, ray length (m), draws
    "full": {"cells": (100, 50), "rays": 100_000, "ray_length": 75.0, "draws": 1000},
    "quick": {"cells": (20, 10), "rays": 2_000, "ray_length": 75.0, "draws": 100},
    # beyond the dense limit (20,000 > DENSE_LIMIT): the matrix-free route only
    "large": {"cells": (200, 100), "rays": 400_000, "ray_length": 75.0, "draws": 1000},
}
CASES = ("mean", "mean_sd", "draws")
ROUTES = ("dense", "matrix-free")
TARGET = {"time_s": 60.0, "peak_rss_gb": 2.0}
SEED = 20261203


def build(size_key: str) -> Any:
    """Return the linear-Gaussian problem (``bj.JointInversion``) of size ``size_key``."""
    import bayesjoint as bj

    size = SIZES[size_key]
    nx, nz = size["cells"]
    rng = np.random.default_rng(SEED)
    grid = bj.Grid.from_edges(
        x=np.linspace(0.0, 10.0 * nx, nx + 1), z=np.linspace(-10.0 * nz, 0.0, nz + 1)
    )
    n_rays = size["rays"]
    sources = np.column_stack(
        [rng.uniform(0.0, 10.0 * nx, n_rays), rng.uniform(-10.0 * nz, 0.0, n_rays)]
    )
    angle = rng.uniform(0.0, np.pi, n_rays)
    receivers = sources + size["ray_length"] * np.column_stack([np.cos(angle), np.sin(angle)])
    physics = bj.physics.TravelTime(grid, sources, receivers, input="slowness")
    prior = bj.priors.GaussianField(2e-5, 100.0, mean=5e-4)  # s/m; correlation length in m
    truth = 5e-4 + 2e-5 * rng.standard_normal(grid.shape)
    data = physics.matrix @ truth.ravel() + 1e-3 * rng.standard_normal(n_rays)
    field = bj.Field("slowness", grid, prior=prior)
    rays = bj.Modality("traveltime", physics, data, bj.noise.Gaussian(1e-3))  # s
    return bj.JointInversion([field], [rays])


def measure(case: str, size_key: str) -> dict[str, Any]:
    """Time one case once (in this process) and report its peak memory.

    ``case`` is ``assemble`` or ``<what>:<route>``, optionally after ``large/``.
    """
    import bayesjoint  # noqa: F401  (imports are not timed)

    if case.startswith("large/"):
        size_key, case = "large", case.removeprefix("large/")

    t0 = time.perf_counter()
    problem = build(size_key)
    build_s = time.perf_counter() - t0
    system = problem.linear_gaussian_system()
    assemble_s = time.perf_counter() - t0 - build_s
    n_draws = SIZES[size_key]["draws"]
    _, before = rss_mib()
    result: dict[str, Any] = {}
    if case == "assemble":
        elapsed = assemble_s
        result["build_s"] = build_s  # the rays' matrix and the problem, before the system
        result["n"] = system.n
        result["n_data"] = int(sum(g.shape[0] for g in system.operators))
        result["nnz"] = int(sum(getattr(g, "nnz", np.size(g)) for g in system.operators))
        result["prior_factor"] = repr(system.prior_factor)
    else:
        what, route = case.rsplit(":", 1)
        t0 = time.perf_counter()
        if what == "mean":
            system.posterior(method=route, sd=False)
        elif what == "mean_sd":
            system.posterior(method=route, sd_draws=n_draws)
        else:
            _, _, info = system.draws(
                n_draws, np.random.default_rng(SEED), method=route, return_info=True
            )
            result["info"] = {
                k: v for k, v in info.items() if isinstance(v, str | int | float | list)
            }
        elapsed = time.perf_counter() - t0
    _, peak = rss_mib()
    result.update({"time_s": elapsed, "peak_rss_mib": peak, "peak_rss_increase_mib": peak - before})
    return result


def agreement(size_key: str) -> dict[str, Any]:
    """Compare the routes: mean (in posterior sds), sds, and the draws' moments."""
    system = build(size_key).linear_gaussian_system()
    n_draws = SIZES[size_key]["draws"]
    dense = system.posterior(method="dense")
    free = system.posterior(method="matrix-free", sd_draws=n_draws)
    sd = dense["sd"].values
    out: dict[str, Any] = {
        "max_abs_mean_difference_in_sd": float(np.max(np.abs(free["mean"] - dense["mean"]) / sd)),
        "matrix_free_sd_ratio_range": [
            float(np.min(free["sd"] / dense["sd"])),
            float(np.max(free["sd"] / dense["sd"])),
        ],
    }
    for route in ROUTES:
        _, m = system.draws(n_draws, np.random.default_rng(SEED), method=route)
        z_mean = (m.mean(0) - dense["mean"].values) / (sd / np.sqrt(n_draws))
        ratio = m.std(0, ddof=1) / sd
        out[f"{route}_draws"] = {
            "max_abs_mean_z": float(np.max(np.abs(z_mean))),
            "sd_ratio_range": [float(ratio.min()), float(ratio.max())],
            "sd_ratio_halfwidth_4_mcse": 4.0 / np.sqrt(2 * (n_draws - 1)),
        }
    return out


def _run_isolated(argv: list[str]) -> Any:
    """Run this script with ``argv`` in a fresh interpreter and return its JSON output."""
    cmd = [sys.executable, os.path.abspath(__file__), *argv]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, check=False, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {argv} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout)


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(runs[0])
    out["time_s"] = statistics.median(r["time_s"] for r in runs)
    out["times_s"] = [r["time_s"] for r in runs]
    out["peak_rss_mib"] = statistics.median(r["peak_rss_mib"] for r in runs)
    out["peak_rss_mib_runs"] = [r["peak_rss_mib"] for r in runs]
    out["peak_rss_increase_mib"] = statistics.median(r["peak_rss_increase_mib"] for r in runs)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    size_key = "quick" if args.quick else "full"
    isolate = not args.quick

    def case(name: str) -> dict[str, Any]:
        if isolate:
            runs = [_run_isolated(["--worker", name]) for _ in range(args.repeat)]
        else:
            runs = [measure(name, size_key) for _ in range(args.repeat)]
        return _summary(runs)

    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    size = SIZES[size_key]
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "mode": size_key,
        "repeat": args.repeat,
        "isolation": "subprocess" if isolate else "inprocess",
        "command": " ".join(["python", "benchmarks/exact_path.py", *sys.argv[1:]]),
        "machine": _machine.machine_info(["numpy", "scipy", "pymc", "bayesjoint"]),
        "problem": {
            "cells": list(size["cells"]),
            "n_rays": size["rays"],
            "ray_length_m": size["ray_length"],
            "draws": size["draws"],
            "prior": "GaussianField(sigma=2e-5 s/m, correlation_length=100 m, matern52)",
            "noise_sd_s": 1e-3,
        },
        "assemble": case("assemble"),
        "routes": {route: {c: case(f"{c}:{route}") for c in CASES} for route in ROUTES},
    }
    if not args.quick and not args.no_large:
        large = SIZES["large"]
        result["large"] = {
            "problem": {
                "cells": list(large["cells"]),
                "n_rays": large["rays"],
                "ray_length_m": large["ray_length"],
                "draws": large["draws"],
            },
            "assemble": case("large/assemble"),
            "matrix-free": {c: case(f"large/{c}:auto") for c in ("mean", "draws")},
        }
    result["agreement"] = (
        _run_isolated(["--worker", "agreement"]) if isolate else agreement(size_key)
    )
    best = {
        route: {
            "mean_and_draws_s": result["routes"][route]["draws"]["time_s"],
            "peak_rss_gb": result["routes"][route]["draws"]["peak_rss_mib"] * 2**20 / 1e9,
        }
        for route in ROUTES
    }
    for figures in best.values():
        figures["met"] = (
            figures["mean_and_draws_s"] < TARGET["time_s"]
            and figures["peak_rss_gb"] < TARGET["peak_rss_gb"]
        )
    result["target"] = {**TARGET, "routes": best}
    result["machine"]["load_average_start"] = load_start
    if hasattr(os, "getloadavg"):
        result["machine"]["load_average_end"] = list(os.getloadavg())
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, in-process (smoke run)")
    parser.add_argument("--repeat", type=int, default=3, help="report the median of N runs")
    workers = ["assemble", "agreement", *(f"{c}:{r}" for c in CASES for r in ROUTES)]
    workers += ["large/assemble", "large/mean:auto", "large/draws:auto"]
    parser.add_argument("--no-large", action="store_true", help="skip the 20,000-cell problem")
    parser.add_argument("--worker", choices=workers, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size_key = "quick" if args.quick else "full"

    def compute() -> dict[str, Any]:
        if args.worker == "agreement":
            return agreement(size_key)
        if args.worker is not None:
            return measure(args.worker, size_key)
        return run(args)

    return _machine.print_json(compute)


if __name__ == "__main__":
    sys.exit(main())
