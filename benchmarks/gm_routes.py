"""Benchmark: the gravity–magnetics case study's joint problem, default route against nuts-plain.

Row 3d asks for ``"nuts-plain"`` beside the default ``sample()`` on the gravity–magnetics case
study at full size (40 × 20 cells × 2 fields, cross-gradient; 1,600 sampled coordinates). The
problem is built by the case study's own ``build`` (seed 1). The default route runs the study's
settings (4 chains × 2,000 draws after 1,000 tuning); ``nuts-plain`` runs ``--plain-draws``
after ``--plain-tune`` (default 4 × 200 after 200: PyMC's NUTS hits its maximum tree depth on
this problem, so its full-length run would take hours), and the two are compared by ESS per
second. Printed as ONE JSON object: per route, wall time, min bulk / tail ESS over every cell,
ESS/s, max R-hat, divergences, mean leapfrog steps and the share of draws at the most steps
allowed; and the ESS/s ratio.

Usage::

    python benchmarks/gm_routes.py
    python benchmarks/gm_routes.py --quick      # the study's --quick grid, short chains
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import _machine
import numpy as np

SCHEMA = "bayesjoint-benchmark-gm-routes/1"
NAMES = ["density", "susceptibility"]


def _run(problem: Any, method: str, settings: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    idata = problem.sample(method=method, progressbar=False, **settings)
    wall = time.perf_counter() - start
    stats = idata.sample_stats
    max_depth = 10  # PyMC's default max_treedepth, which the routes keep
    return {
        "route": str(idata.posterior.attrs.get("route", "")),
        **settings,
        **_machine.convergence_row(idata, NAMES, wall),
        # share of draws whose tree used the most leapfrog steps allowed (2^depth - 1)
        "share_at_max_steps": round(float(np.mean(stats["n_steps"].values >= 2**max_depth - 1)), 3),
        "max_treedepth": max_depth,
    }


def compute(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "case_studies"))
    import gravity_magnetics as gm

    grid = gm.make_grid(args.quick)
    problems, _ = gm.build(grid, np.random.default_rng(args.seed))
    problem = problems["joint"]
    default = (
        {"draws": 1500, "tune": 1000, "chains": 4}
        if args.quick
        else {"draws": 2000, "tune": 1000, "chains": 4}
    )
    plain = {"draws": args.plain_draws, "tune": args.plain_tune, "chains": 4}
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "mode": "quick" if args.quick else "full",
        "grid": list(grid.shape),
        "machine": _machine.machine_info(("numpy", "scipy", "pymc", "pytensor", "arviz")),
    }
    out["default"] = _run(problem, "auto", {**default, "random_seed": args.seed + 10})
    print(f"gm_routes: default {out['default']}", file=sys.stderr, flush=True)
    out["nuts_plain"] = _run(problem, "nuts-plain", {**plain, "random_seed": args.seed + 10})
    out["ess_per_s_ratio_default_to_plain"] = round(
        out["default"]["ess_per_s"] / max(out["nuts_plain"]["ess_per_s"], 1e-12), 1
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--plain-draws", type=int, default=200)
    parser.add_argument("--plain-tune", type=int, default=200)
    args = parser.parse_args(argv)
    return _machine.print_json(lambda: compute(args))


if __name__ == "__main__":
    sys.exit(main())
