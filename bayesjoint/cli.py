"""The ``bayesjoint`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayesjoint",
        description="Bayesian multi-modal joint inversion.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="run the built-in two-modality joint inversion and write a netCDF report",
        description="Gravity + borehole density along a 1 km profile: sample with NUTS, check "
        "against the exact linear-Gaussian posterior, print diagnostics and the per-modality "
        "information budget, write a netCDF report.",
    )
    demo.add_argument("--out", default="bayesjoint-demo.nc", help="report path (netCDF)")
    demo.add_argument("--seed", type=int, default=2026, help="random seed (default 2026)")
    demo.add_argument("--draws", type=int, default=500, help="draws per chain (default 500)")
    demo.add_argument("--tune", type=int, default=500, help="tuning draws per chain (default 500)")
    demo.add_argument("--chains", type=int, default=4, help="chains (default 4)")
    demo.add_argument("--cores", type=int, default=None, help="parallel chains")
    demo.add_argument(
        "--quick", action="store_true", help="small and fast (40 cells, 2 x 200 draws)"
    )
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "demo":
        from bayesjoint import demo

        settings = {"draws": args.draws, "tune": args.tune, "chains": args.chains, "n_cells": 100}
        if args.quick:
            settings = {"draws": 200, "tune": 200, "chains": 2, "n_cells": 40}
        try:
            result = demo.run(
                out=args.out,
                random_seed=args.seed,
                cores=args.cores,
                progressbar=not args.no_progress,
                echo=print,
                **settings,
            )
        except OSError as err:
            print(f"bayesjoint demo: cannot write the report: {err}", file=sys.stderr)
            return 1
        ok = result.summary["max_rhat"] <= 1.01 and result.summary["divergences"] == 0
        return 0 if ok or args.quick else 3
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
