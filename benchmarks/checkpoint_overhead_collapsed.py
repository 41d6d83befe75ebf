"""Checkpoint overhead on the collapsed route: wall time with and without ``checkpoint=``.

A blur of ``n`` values (prior sd 0.5) seen by ``n`` noisy data and 5 point data, both noise sds
learned: ``method="collapsed"`` runs NUTS on the two sds and draws the ``n`` values exactly per
draw. It is sampled with the same seed without a checkpoint, with the default write interval
(30 s) and with writes every second and every 0.2 s. With a checkpoint the fields of each draw
are drawn when a write is due (only the draws new since the last write, one random stream per
draw), so the draws are the same in every case; the figures isolate the cost of recording and
writing. Prints one JSON object: per case the wall time (and, without a checkpoint, with one
save of the result added, which the checkpoint's last write replaces), the number of writes,
their mean and largest time, the file size, and whether the draws equal those without a
checkpoint.

Run: ``python benchmarks/checkpoint_overhead_collapsed.py`` (``--quick``: n = 40, short chains).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

import _machine
import numpy as np

import bayesjoint as bj
from bayesjoint.validate import blur_matrix

SCHEMA = 1


def build_problem(n: int, seed: int = 1) -> bj.JointInversion:
    """The blur + points problem with both noise sds learned (HalfNormal(0.2) priors)."""
    rng = np.random.default_rng(seed)
    blur = blur_matrix(n, 1.5)
    points = np.linspace(0, n - 1, 5).astype(int)
    pick = np.zeros((points.size, n))
    pick[np.arange(points.size), points] = 1.0
    truth = 0.5 * rng.standard_normal(n)
    x = bj.Parameter("x", shape=n, prior=bj.priors.Normal(0.0, 0.5))
    learned = bj.noise.Gaussian(bj.priors.HalfNormal(0.2))
    blurred = bj.Modality(
        "blurred",
        bj.physics.Linear(blur, input="x"),
        blur @ truth + 0.1 * rng.standard_normal(n),
        learned,
    )
    point = bj.Modality(
        "points",
        bj.physics.Linear(pick, input="x"),
        pick @ truth + 0.05 * rng.standard_normal(points.size),
        bj.noise.Gaussian(bj.priors.HalfNormal(0.2)),
    )
    return bj.JointInversion([x], [blurred, point])


def _case(problem: Any, settings: dict[str, Any], every: float | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bj_ckpt_collapsed_") as folder:
        path = os.path.join(folder, "run.nc") if every is not None else None
        idata, wall, writes = _machine.timed_sample(problem, "collapsed", settings, path, every)
        if path is None:  # what keeping the result costs without a checkpoint: one save
            path = os.path.join(folder, "saved.nc")
            start = time.perf_counter()
            bj.save(idata, path)
            wall_saved = time.perf_counter() - start + wall
        else:  # the checkpoint's last write is the saved result
            wall_saved = wall
        size = os.path.getsize(path)
    return {
        "checkpoint_every_s": every,
        "wall_s": round(wall, 3),
        "wall_with_saved_result_s": round(wall_saved, 3),
        "writes": len(writes),
        "write_mean_s": round(float(np.mean(writes)), 4) if writes else None,
        "write_max_s": round(float(np.max(writes)), 4) if writes else None,
        "file_mib": round(size / 2**20, 3) if size else None,
        "x": idata.posterior["x"].values,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 40, short chains")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument(
        "--every",
        type=float,
        nargs="*",
        default=[30.0, 1.0, 0.2],
        help="write intervals in seconds to time (default 30 1 0.2)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        n, settings = 40, {"draws": 500, "tune": 300, "chains": 4}
    else:
        n, settings = 200, {"draws": 2000, "tune": 1000, "chains": 4}
    settings.update(random_seed=args.seed, cores=args.cores)
    problem = build_problem(n)
    # warm-up: compiles the models and the batched function of the draws' fields, so that no
    # case pays for compiling
    problem.sample(method="collapsed", progressbar=False, **{**settings, "draws": 500, "tune": 10})
    cases = [_case(problem, settings, every) for every in (None, *args.every)]
    reference = cases[0]["x"]
    for case in cases:  # the fields equal up to the rounding of batched linear algebra
        case["draws_equal_rtol_1e-10"] = bool(np.allclose(case.pop("x"), reference, rtol=1e-10))
    base = cases[0]["wall_with_saved_result_s"]
    for case in cases:  # against sampling and saving the result once
        case["overhead_pct"] = round(100.0 * (case["wall_with_saved_result_s"] / base - 1.0), 1)
    result = {
        "schema": SCHEMA,
        "mode": "quick" if args.quick else "full",
        "n": n,
        "settings": settings,
        "cases": cases,
        "machine": _machine.machine_info(["bayesjoint", "pymc", "pytensor", "numpy", "h5netcdf"]),
    }
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return result


if __name__ == "__main__":
    main()
