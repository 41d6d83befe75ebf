"""False-alarm rate and power of the SBC verdict's simultaneous ECDF band (docs/calibration.md).

For each (N, L + 1, Q) row, draws ``--families`` families of Q independent uniform rank vectors
of N simulations and counts the families the verdict flags (false alarms), then replaces one
quantity's ranks with the skewed ⌊(L + 1) U^1.3⌋ and counts the families flagged (power).
Prints one JSON object; the standard error of a rate p over F families is sqrt(p (1 - p) / F).

    python benchmarks/sbc_band.py --families 2000 --seed 0
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from bayesjoint.calibration import ecdf_band, ecdf_verdict

ROWS = ((200, 100, 10), (200, 50, 11), (60, 20, 7))


def rates(n: int, n_ranks: int, q: int, families: int, rng: np.random.Generator) -> dict:
    band = ecdf_band(n, n_ranks, quantities=q)
    alarms = hits = 0
    for _ in range(families):
        ranks = rng.integers(0, n_ranks, size=(n, q))
        alarms += bool(ecdf_verdict(ranks, n_ranks, band=band)[0].any())
        ranks[:, 0] = np.floor(n_ranks * rng.uniform(size=n) ** 1.3).astype(int)
        hits += bool(ecdf_verdict(ranks, n_ranks, band=band)[0].any())
    p = alarms / families
    return {
        "N": n,
        "L+1": n_ranks,
        "Q": q,
        "false_alarm_rate": p,
        "false_alarm_se": float(np.sqrt(p * (1 - p) / families)),
        "power": hits / families,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    out = {"families": args.families, "seed": args.seed, "rows": []}
    for n, n_ranks, q in ROWS:
        out["rows"].append(rates(n, n_ranks, q, args.families, rng))
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
