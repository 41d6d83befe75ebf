"""Case study: gravity and borehole density along a 1 km profile (linear-Gaussian).

Runs the joint inversion and each single-instrument inversion, checks NUTS against the exact
posterior, and reports what each instrument contributes: information gains (nats), RMSE of the
posterior mean against the synthetic truth, and the coverage of the truth by 90 % credible
intervals. Writes a netCDF report of the joint run and ends with one JSON line of its figures,
whose ``checks`` and ``passed`` are its self-checks (the script exits with status 3 when one fails).

The joint run is sampled with NUTS (``bayesjoint.demo.run``), not with the exact route that
``sample()`` would choose for this linear-Gaussian problem: checking a sampler against the
closed form is the point of the demo.

    python case_studies/profile_gravity_borehole.py [--quick] [--out FILE.nc] [--seed N]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from bayesjoint_case_studies._verdict import exit_status, finish
from scipy import stats

import bayesjoint as bj
from bayesjoint import demo
from bayesjoint.inference.checkpoint import add_checkpoint_arguments, use_checkpoint_folder


def single_instrument(problem: bj.JointInversion, name: str) -> bj.JointInversion:
    """The same latent model seen by one instrument only."""
    return bj.JointInversion(list(problem.latent.values()), [problem.modalities[name]])


def exact_figures(problem: bj.JointInversion, truth: np.ndarray) -> dict:
    post = problem.exact_posterior()
    mean, sd = post["mean"].values, post["sd"].values
    half = stats.norm.ppf(0.95) * sd  # central 90 % interval of the Gaussian posterior
    return {
        "rmse": float(np.sqrt(np.mean((mean - truth) ** 2))),
        "coverage90": float(np.mean(np.abs(mean - truth) <= half)),
        "mean_sd": float(sd.mean()),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid, short chains (CI)")
    parser.add_argument("--out", default="profile_gravity_borehole.nc")
    parser.add_argument("--seed", type=int, default=11)
    add_checkpoint_arguments(parser)
    args = parser.parse_args(argv)
    use_checkpoint_folder(args.checkpoint, resume=args.resume)
    quick = {k: v for k, v in demo.QUICK.items() if k != "n_cells"}
    n_cells = demo.QUICK["n_cells"] if args.quick else 100
    settings = quick if args.quick else {}
    result = demo.run(
        out=args.out,
        random_seed=args.seed,
        n_cells=n_cells,
        progressbar=False,
        echo=print,
        **settings,
    )
    problem, truth = demo.build_problem(n_cells=n_cells)
    figures = {"joint": exact_figures(problem, truth)}
    for name in problem.modalities:
        figures[f"{name}_only"] = exact_figures(single_instrument(problem, name), truth)
    figures["information_gain_alone"] = dict(
        zip(
            result.budget["modality"].values.tolist(),
            result.budget["information_gain_alone"].values.round(3).tolist(),
            strict=True,
        )
    )
    figures["information_gain_total"] = round(float(result.budget["information_gain_total"]), 3)
    figures["sampler"] = {
        k: round(v, 4) if isinstance(v, float) else v
        for k, v in result.summary.items()
        if k not in ("checks", "passed")
    }
    joint = figures["joint"]
    finish(
        figures,
        {
            **result.summary["checks"],
            # precisions add up: the exact joint posterior sd can only be smaller on average
            "joint_sd_below_each_instrument": all(
                joint["mean_sd"] < figures[f"{name}_only"]["mean_sd"] for name in problem.modalities
            ),
        },
    )
    figures["report"] = result.path
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    raise SystemExit(exit_status(main()))
