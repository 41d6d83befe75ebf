"""The false-alarm rate of a calibrated SBC family, measured over independent seeds.

    python benchmarks/sbc_repeat.py --family linear --seeds 3000 3039 --simulations 200 [--out DIR]

Runs :func:`bayesjoint.validate.sbc` on one family of ``benchmarks/sbc.py`` once per seed of the
inclusive range (in this process, one seed after another), and prints one JSON line: the verdict
and flagged quantities of every seed, the number of failing seeds with its exact (Clopper–Pearson)
95 % interval, and how often each quantity was flagged.

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

from sbc import FAMILIES, SETTINGS, family
from scipy import stats

from bayesjoint.calibration import _atomic_write_netcdf, sbc


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=FAMILIES, required=True)
    parser.add_argument("--seeds", type=int, nargs=2, required=True, metavar=("FIRST", "LAST"))
    parser.add_argument("--simulations", type=int, default=200)
    parser.add_argument("--out", default=None, help="folder: each seed's result as <seed>.nc")
    args = parser.parse_args(argv)
    first, last = args.seeds
    if last < first:
        parser.error("--seeds FIRST LAST needs LAST >= FIRST")
    problem, simulator = family(args.family)
    runs = []
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
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
