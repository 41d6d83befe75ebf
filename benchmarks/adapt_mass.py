"""Benchmark: the Laplace mass matrix kept fixed (the default) against ``adapt_mass=True``.

``sample(method="nuts")`` uses the Laplace covariance at the MAP as NUTS's inverse mass matrix and
keeps it fixed; ``adapt_mass=True`` lets its diagonal scales keep adapting during ``tune``. Two
coupled problems, each run both ways side by side in one process (the machine may be shared, so
the ratios count):

* ``section``: the 20 × 10 density + slowness section of ``benchmarks/sampling.py`` row d
  (gravity, travel times, cross-gradient; 400 coordinates: dense Laplace mass matrix);
* ``block3d``: 3-D gravity + magnetics with the cross-gradient of ``benchmarks/simpeg_joint.py``
  on ``--cells`` (default 12 × 12 × 6: 864 cells per field, 1,728 coordinates: dense;
  ``--cells 16 16 8`` gives 4,096 coordinates and the low-rank + diagonal form).

Each problem is sampled once briefly first (compilation), then timed both ways. Printed as
ONE JSON object: per problem and setting, the wall time, min bulk / tail ESS over every
cell, ESS/s, max R-hat, divergences, mean leapfrog steps per draw and the step size.

Usage::

    python benchmarks/adapt_mass.py               # 4 chains x 1000 draws after 1000 tuning
    python benchmarks/adapt_mass.py --quick       # smoke run
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

import _machine
import numpy as np

SCHEMA = "bayesjoint-benchmark-adapt-mass/1"


def block3d(cells: list[int], seed: int):
    """The 3-D gravity + magnetics problem of ``simpeg_joint.py`` with the package's own data."""
    import simpeg_joint as sj

    import bayesjoint as bj

    geo = sj.geometry(cells)
    grid = bj.Grid.from_edges(**geo["edges"])
    gravity = bj.physics.Gravity(grid, geo["stations"], input="density")
    magnetics = bj.physics.Magnetics(grid, geo["stations"], input="susceptibility", **sj.FIELD)
    clean_g = np.asarray(gravity(density=geo["density"]))
    clean_m = np.asarray(magnetics(susceptibility=geo["chi"]))
    rng = np.random.default_rng(seed)
    sd_g = sj.NOISE_FRACTION * float(np.abs(clean_g).max())
    sd_m = sj.NOISE_FRACTION * float(np.abs(clean_m).max())
    d_g = clean_g + sd_g * rng.standard_normal(clean_g.shape)
    d_m = clean_m + sd_m * rng.standard_normal(clean_m.shape)
    return sj.bayesjoint_problem(geo, d_g, sd_g, d_m, sd_m)[0]


def run(problem: Any, names: list[str], settings: dict[str, Any], adapt: bool) -> dict[str, Any]:
    start = time.perf_counter()
    idata = problem.sample(method="nuts", adapt_mass=adapt, progressbar=False, **settings)
    wall = time.perf_counter() - start
    stats = idata.sample_stats
    return {
        **_machine.convergence_row(idata, names, wall),
        "step_size": float(stats["step_size"].mean()),
        "mass_matrix": str(idata.posterior.attrs.get("mass_matrix", "")),
        "cores": int(idata.posterior.attrs.get("cores", 0)),
        "blas_threads": idata.posterior.attrs.get("blas_threads"),
    }


def compute(args: argparse.Namespace) -> dict[str, Any]:
    from sampling import section_problem

    settings = {"draws": args.draws, "tune": args.tune, "chains": args.chains}
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "mode": "quick" if args.quick else "full",
        "settings": settings,
        "machine": _machine.machine_info(("numpy", "scipy", "pymc", "pytensor", "arviz")),
    }
    problems = {
        "section": (section_problem(20, 10, args.seed), ["density", "slowness"]),
        "block3d": (block3d(args.cells, args.seed), ["density", "susceptibility"]),
    }
    for label, (problem, names) in problems.items():
        # compile the model's functions first, so neither timed run pays for it
        problem.sample(method="nuts", draws=5, tune=5, chains=1, random_seed=0, progressbar=False)
        rows = {}
        for adapt in (False, True):
            key = "adapt_mass" if adapt else "fixed"
            rows[key] = run(problem, names, {**settings, "random_seed": args.seed}, adapt)
            print(f"adapt_mass: {label} {key} {rows[key]}", file=sys.stderr, flush=True)
        rows["ess_per_s_ratio_adapt_to_fixed"] = round(
            rows["adapt_mass"]["ess_per_s"] / rows["fixed"]["ess_per_s"], 3
        )
        out[label] = rows
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (short chains, 6x6x3)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cells", type=int, nargs=3, default=None, metavar=("NX", "NY", "NZ"))
    args = parser.parse_args(argv)
    args.draws, args.tune, args.chains = (100, 100, 2) if args.quick else (1000, 1000, 4)
    if args.cells is None:
        args.cells = [6, 6, 3] if args.quick else [12, 12, 6]
    logging.getLogger("pymc").setLevel(logging.ERROR)
    return _machine.print_json(lambda: compute(args))


if __name__ == "__main__":
    sys.exit(main())
