"""The false-alarm rate of a calibrated SBC family, measured over independent seeds.

    python benchmarks/sbc_repeat.py --family linear --seeds 3000 3039 --simulations 200 [--out DIR]

Runs :func:`bayesjoint.validate.sbc` on one family of ``benchmarks/sbc.py`` once per seed of the
inclusive range (in this process, one seed after another), and prints a JSON line per seed, then
one of the summary: the number of failing seeds with its exact (Clopper–Pearson) 95 % interval,
and how often each quantity was flagged. With ``--out DIR`` each seed's result is kept as
``DIR/<seed>.nc`` and the summary adds ``pooled``: the verdict over all the seeds' simulations
together (the band for that many) and each quantity's mean rank in standard errors from
uniform, ``z = (mean − L/2) / sqrt(((L+1)² − 1) / (12 N))`` for ranks on ``0..L``.

For a family whose fits are right, each seed's verdict fails with probability about the band's
family-wise rate α = 0.05 (docs/calibration.md), whichever quantity it flags, and no quantity is
flagged more often than the others. A failure rate well above α, or one quantity flagged again
and again, points at the fit or the simulator rather than at chance.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from typing import Any

import numpy as np
import xarray as xr
from sbc import FAMILIES, SETTINGS, family
from scipy import stats

from bayesjoint.calibration import _atomic_write_netcdf, ecdf_verdict, sbc


def pooled(datasets: list[xr.Dataset]) -> dict[str, Any]:
    """The verdict and mean-rank z-scores of all the datasets' simulations together.

    Parameters
    ----------
    datasets : list of xarray.Dataset
        :func:`~bayesjoint.validate.sbc` results of one family (same quantities, same L + 1).

    Returns
    -------
    dict
        ``simulations``; ``verdict`` and ``flagged`` by the band for that many simulations;
        ``mean_rank_z`` per quantity (see the module's docstring).
    """
    ranks = np.concatenate([ds["rank"].values for ds in datasets])
    quantities = [str(q) for q in datasets[0]["quantity"].values]
    n_ranks = int(datasets[0].attrs["n_ranks"])
    outside, _ = ecdf_verdict(ranks, n_ranks)
    n = ranks.shape[0]
    se = np.sqrt((n_ranks**2 - 1) / 12.0 / n)
    z = (ranks.mean(axis=0) - (n_ranks - 1) / 2.0) / se
    return {
        "simulations": int(n),
        "verdict": "fail" if outside.any() else "pass",
        "flagged": [q for q, out in zip(quantities, outside, strict=True) if out],
        "mean_rank_z": {q: round(float(v), 2) for q, v in zip(quantities, z, strict=True)},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=FAMILIES, required=True)
    parser.add_argument("--seeds", type=int, nargs=2, required=True, metavar=("FIRST", "LAST"))
    parser.add_argument("--simulations", type=int, default=200, help="per seed, at least 1")
    parser.add_argument("--out", default=None, help="folder: each seed's result as <seed>.nc")
    args = parser.parse_args(argv)
    first, last = args.seeds
    if last < first:
        parser.error("--seeds FIRST LAST needs LAST >= FIRST")
    if args.simulations < 1:
        parser.error("--simulations must be at least 1")
    problem, simulator = family(args.family)
    runs, datasets = [], []
    t0 = time.perf_counter()
    for seed in range(first, last + 1):
        result = sbc(
            problem,
            args.simulations,
            client="serial",
            simulator=simulator,
            random_seed=seed,
            **SETTINGS[args.family],
        )
        alpha = float(result.dataset.attrs["alpha"])
        datasets.append(result.dataset)
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            _atomic_write_netcdf(result.dataset, os.path.join(args.out, f"{seed}.nc"))
        runs.append({"seed": seed, "verdict": result.verdict, "flagged": result.flagged})
        print(json.dumps(runs[-1]), flush=True)
    failures = sum(run["verdict"] == "fail" for run in runs)
    interval = stats.binomtest(failures, len(runs)).proportion_ci(0.95, method="exact")
    flagged = Counter(q for run in runs for q in run["flagged"])
    summary = {
        "family": args.family,
        "simulations_per_seed": args.simulations,
        "seeds": [first, last],
        "runs": len(runs),
        "failures": failures,
        "failure_rate": failures / len(runs),
        "failure_rate_95ci": [round(interval.low, 4), round(interval.high, 4)],
        "alpha_familywise": alpha,
        "flagged_counts": dict(flagged.most_common()),
        "wall_time_s": round(time.perf_counter() - t0, 1),
    }
    if args.out:
        summary["pooled"] = pooled(datasets)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
