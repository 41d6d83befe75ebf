"""Checkpoint overhead on the demo problem: wall time and ESS/s with and without ``checkpoint=``.

The demo's gravity + borehole problem is sampled with NUTS (``method="nuts"``) three times with
the same seed: without a checkpoint, with the default write interval (30 s) and with a write every
second. The draws are identical (the checkpoint only records them), so the figures isolate the
cost of writing. Prints one JSON object: per case the wall time, the minimum bulk ESS per
second, the number of writes and their mean and largest time, and the file size.

Run: ``python benchmarks/checkpoint_overhead.py`` (``--quick`` for the 40-cell demo).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any

import _machine
import arviz as az
import numpy as np

from bayesjoint import demo

SCHEMA = 1


def _case(problem: Any, settings: dict[str, Any], every: float | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bj_ckpt_") as folder:
        path = os.path.join(folder, "run.nc") if every is not None else None
        idata, wall, writes = _machine.timed_sample(problem, "nuts", settings, path, every)
        size = os.path.getsize(path) if path else None
    ess = float(az.ess(idata.posterior, method="bulk").to_array().min())
    return {
        "checkpoint_every_s": every,
        "wall_s": round(wall, 3),
        "ess_bulk_min": round(ess, 1),
        "ess_per_s": round(ess / wall, 2),
        "writes": len(writes),
        "write_mean_s": round(float(np.mean(writes)), 4) if writes else None,
        "write_max_s": round(float(np.max(writes)), 4) if writes else None,
        "file_mib": round(size / 2**20, 3) if size else None,
        "first_draw": float(idata.posterior["density"].values.ravel()[0]),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the 40-cell demo, short chains")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--cores", type=int, default=1)
    args = parser.parse_args(argv)
    if args.quick:
        n_cells, settings = 40, {"draws": 500, "tune": 300, "chains": 4}
    else:
        n_cells, settings = 100, {"draws": 1000, "tune": 1000, "chains": 4}
    settings.update(random_seed=args.seed, cores=args.cores)
    problem, _ = demo.build_problem(n_cells=n_cells)
    problem.sample(method="nuts", progressbar=False, **{**settings, "draws": 10, "tune": 10})
    cases = [_case(problem, settings, every) for every in (None, 30.0, 1.0)]
    same = len({c.pop("first_draw") for c in cases}) == 1
    result = {
        "schema": SCHEMA,
        "mode": "quick" if args.quick else "full",
        "n_cells": n_cells,
        "settings": settings,
        "identical_draws": same,
        "cases": cases,
        "machine": _machine.machine_info(["bayesjoint", "pymc", "pytensor", "numpy", "h5netcdf"]),
    }
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return result


if __name__ == "__main__":
    main()
