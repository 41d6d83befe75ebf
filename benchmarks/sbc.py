"""Simulation-based calibration of the model families (docs/calibration.md).

    python benchmarks/sbc.py --family linear --simulations 200 [--client serial] [--store DIR]
        [--figure docs/figures/sbc_linear.png] [--out RESULT.nc]

Families (each small enough to fit in seconds, each exercising one kind of model and route):

- ``linear``: two linear-Gaussian modalities (a blur and sparse points), exact route;
- ``learned-noise``: the same with a learned noise sd on the blur, collapsed route;
- ``cross-gradient``: two 4 x 3 fields coupled by a cross-gradient (nonlinear potential, so
  the prior draws come from NUTS on the prior), each seen by its own linear modality; NUTS;
- ``gp-discrepancy``: a straight line seen through a GP discrepancy with learned lengthscale
  and amplitude and a learned noise sd, collapsed route;
- ``petrophysics``: two vectors tied by a linear petrophysical link with a learned scatter
  (prior draws by NUTS on the prior), collapsed route;
- ``negative-control``: the ``linear`` fit on data simulated with twice its noise sd, which
  the verdict must flag.

Prints one JSON line: the family, simulations, verdict, flagged quantities, the routes taken,
wall time, and the time per fit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np

import bayesjoint as bj
from bayesjoint.calibration import sbc
from bayesjoint.validate import blur_matrix, gp_discrepancy_problem

FAMILIES = (
    "linear",
    "learned-noise",
    "cross-gradient",
    "gp-discrepancy",
    "petrophysics",
    "negative-control",
)

#: Per family: draws, tune, chains, ranks (L + 1). NUTS fits keep 2 x 200 draws and rank among
#: 50 of them (spaced by the run's ESS when it allows).
SETTINGS = {
    "linear": {"draws": 100, "chains": 2, "tune": 0, "n_ranks": 100},
    "negative-control": {"draws": 100, "chains": 2, "tune": 0, "n_ranks": 100},
    "learned-noise": {"draws": 200, "chains": 2, "tune": 300, "n_ranks": 50},
    "gp-discrepancy": {"draws": 200, "chains": 2, "tune": 300, "n_ranks": 50},
    "petrophysics": {"draws": 200, "chains": 2, "tune": 300, "n_ranks": 50},
    "cross-gradient": {"draws": 200, "chains": 2, "tune": 300, "n_ranks": 50},
}


def _linear(noise_factor: float = 1.0, learned: bool = False) -> bj.JointInversion:
    n = 8
    x = bj.Parameter("x", shape=n, prior=bj.priors.Normal(0.0, 1.0))
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(n, size=3, replace=False))
    points = np.zeros((3, n))
    points[np.arange(3), idx] = 1.0
    blur_noise = (
        bj.noise.Gaussian(bj.priors.HalfNormal(0.5))
        if learned
        else bj.noise.Gaussian(0.3 * noise_factor)
    )
    blurred = bj.Modality(
        "blurred",
        physics=bj.physics.Linear(blur_matrix(n, 1.5), input="x"),
        data=np.zeros(n),
        noise=blur_noise,
    )
    pts = bj.Modality(
        "points",
        physics=bj.physics.Linear(points, input="x"),
        data=np.zeros(3),
        noise=bj.noise.Gaussian(0.2 * noise_factor),
    )
    return bj.JointInversion(latent=[x], modalities=[blurred, pts])


def _cross_gradient() -> bj.JointInversion:
    grid = bj.Grid(x=np.arange(4.0) * 10.0, z=-np.arange(3.0)[::-1] * 10.0)
    prior = bj.priors.GaussianField(1.0, 15.0)
    a = bj.Field("a", grid, prior)
    b = bj.Field("b", grid, prior)
    rng = np.random.default_rng(1)
    ga = rng.standard_normal((5, grid.size)) / np.sqrt(grid.size)
    gb = rng.standard_normal((5, grid.size)) / np.sqrt(grid.size)
    ma = bj.Modality("ma", bj.physics.Linear(ga, input="a"), np.zeros(5), bj.noise.Gaussian(0.2))
    mb = bj.Modality("mb", bj.physics.Linear(gb, input="b"), np.zeros(5), bj.noise.Gaussian(0.2))
    link = bj.CrossGradient("a", "b", strength=1.0)
    return bj.JointInversion([a, b], [ma, mb], couplings=[link])


def _petrophysics() -> bj.JointInversion:
    a = bj.Parameter("a", shape=4, prior=bj.priors.Normal(0.0, 1.0))
    b = bj.Parameter("b", shape=4, prior=bj.priors.Normal(1.0, 2.0))
    ma = bj.Modality(
        "ma", bj.physics.Linear(np.eye(4), input="a"), np.zeros(4), bj.noise.Gaussian(0.3)
    )
    mb = bj.Modality(
        "mb",
        bj.physics.Linear(np.eye(4), input="b"),
        np.zeros(4),
        bj.noise.Gaussian(bj.priors.HalfNormal(1.0)),
    )
    link = bj.Petrophysical(
        "a",
        "b",
        "linear",
        scatter=bj.priors.HalfNormal(0.5),
        parameters={"slope": 1.5, "intercept": 0.2},
    )
    return bj.JointInversion([a, b], [ma, mb], couplings=[link])


def family(name: str) -> tuple[bj.JointInversion, bj.JointInversion | None]:
    """Return ``(problem, simulator)`` of a family (simulator None: the problem itself)."""
    if name == "linear":
        return _linear(), None
    if name == "negative-control":
        return _linear(), _linear(noise_factor=2.0)
    if name == "learned-noise":
        return _linear(learned=True), None
    if name == "cross-gradient":
        return _cross_gradient(), None
    if name == "gp-discrepancy":
        return gp_discrepancy_problem(), None
    if name == "petrophysics":
        return _petrophysics(), None
    raise ValueError(f"unknown family {name!r}; choose one of {FAMILIES}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=FAMILIES, required=True)
    parser.add_argument("--simulations", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--client", default=None, help="'serial', a scheduler address, or none")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--store", default=None, help="folder of per-simulation files (resume)")
    parser.add_argument("--figure", default=None, help="write the ECDF difference plot here")
    parser.add_argument("--out", default=None, help="write the result Dataset here (netCDF)")
    args = parser.parse_args(argv)
    problem, simulator = family(args.family)
    t0 = time.perf_counter()
    result = sbc(
        problem,
        args.simulations,
        client=args.client,
        simulator=simulator,
        store=args.store,
        random_seed=args.seed,
        n_workers=args.workers,
        **SETTINGS[args.family],
    )
    wall = time.perf_counter() - t0
    ds = result.dataset
    if args.figure:
        result.plot(
            args.figure,
            title=f"{args.family}: {args.simulations} simulations, verdict {result.verdict}",
        )
    if args.out:
        from bayesjoint.calibration import _atomic_write_netcdf

        _atomic_write_netcdf(ds, args.out)
    routes = sorted({str(r) for r in ds["route"].values})
    summary = {
        "family": args.family,
        "simulations": int(ds.sizes["simulation"]),
        "ran_this_call": len(result.ran),
        "quantities": int(ds.sizes["quantity"]),
        "verdict": result.verdict,
        "flagged": result.flagged,
        "alpha_familywise": float(ds.attrs["alpha"]),
        "routes": routes,
        "ess_short": int(np.sum(ds["ess_short"].values)),
        "divergences": int(np.sum(ds["divergences"].values)),
        "wall_time_s": round(wall, 1),
        "fit_time_sum_s": round(float(np.sum(ds["wall_time"].values)), 1),
        "client": args.client or "LocalCluster",
        "workers": args.workers,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
