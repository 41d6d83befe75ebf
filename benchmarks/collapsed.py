"""Benchmark row 3c: two modalities, 128 unknowns, both noise sds learned — collapsed vs plain NUTS.

The problem is the one of row 3b with the noise sds learned: ``x ~ N(0, 0.1²)`` (128 values) seen
through a Gaussian blur (128 data, true noise sd 0.05) and at 20 points (true noise sd 0.02),
each sd with a ``HalfNormal(0.1)`` prior — the "how do I weight my data sets" question. With 20
point data and 128 unknowns the points' sd can approach zero with the points still fitted, so
the joint posterior of the sds and ``x`` is a funnel for NUTS; given the two sds the problem is
linear-Gaussian.

Measured side by side in one run (the machine may be shared: ratios count, not absolute times):

* ``collapsed``: ``problem.sample()`` (``method="auto"``, which takes the collapsed route): NUTS
  on the two sds with ``x`` integrated out, then one exact conditional draw of ``x`` per draw;
* ``nuts_plain``: ``problem.sample(method="nuts-plain")``, PyMC's NUTS on the full model;
* ``pymc``: the same model written by hand in PyMC, ``pm.sample`` (``--no-pymc`` skips it).

Before the cases, PyMC samples a toy model once (C-code cache, ArviZ), so that no case pays the
process's first-use costs. For each: wall time of the whole call (compilation, tuning, draws,
assembly), the smallest bulk and tail ESS over the two sds and the 128 values of ``x``, ESS/s
(smallest bulk ESS / wall time), the largest R-hat, divergences, and the correctness check of
row 3c: the posterior means of the two sds and of every ``x`` against a reference by quadrature
over the two sds (closed-form conditional posterior of ``x`` given them), as
``|mean − reference| / MCSE`` (largest value and the number above 4).

BLAS runs on one thread by default (``--blas-threads 1``; ``0`` keeps the library default): on a
shared, loaded machine multi-threaded OpenBLAS made the small factorizations of every gradient
evaluation up to ~30x slower (threads spinning on busy cores), for both routes.

The quadrature grid is uniform in ``u = log s`` for both sds: a coarse pass (step 0.1 over
``[−8, 1] × [−20, 1]``) finds the window where the log density is within 40 of its maximum, a fine
pass covers it with 160 × 160 points, and a pass with half as many points per axis checks the
step (``quadrature.step_check``: the largest relative change of any reference value).

Prints ONE JSON object to stdout (library chatter goes to stderr).

Usage::

    python benchmarks/collapsed.py            # the full problem (several minutes: plain NUTS)
    python benchmarks/collapsed.py --quick    # 24 unknowns, short chains (smoke run)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

import _machine
import numpy as np

SCHEMA = "bayesjoint-benchmark-collapsed/1"
PRIOR_SD = 0.1
NOISE_SD = {"blurred": 0.05, "points": 0.02}
SD_PRIOR = 0.1  # HalfNormal scale of both learned sds
SIZES = {"full": (128, 20), "quick": (24, 6)}


def build(n: int, n_points: int, seed: int) -> tuple[Any, dict[str, Any]]:
    """Return the problem and its pieces (operators, data) for the hand-written model."""
    import bayesjoint as bj
    from bayesjoint.validate import blur_matrix

    rng = np.random.default_rng(seed)
    truth = PRIOR_SD * rng.standard_normal(n)
    blur = blur_matrix(n, 2.0)
    idx = np.sort(rng.choice(n, size=n_points, replace=False))
    pick = np.zeros((n_points, n))
    pick[np.arange(n_points), idx] = 1.0
    y = blur @ truth + NOISE_SD["blurred"] * rng.standard_normal(n)
    z = pick @ truth + NOISE_SD["points"] * rng.standard_normal(n_points)
    x = bj.Parameter("x", shape=n, prior=bj.priors.Normal(0.0, PRIOR_SD))
    learned = bj.priors.HalfNormal(SD_PRIOR)
    blurred = bj.Modality(
        "blurred", bj.physics.Linear(blur, input="x"), y, bj.noise.Gaussian(learned)
    )
    points = bj.Modality(
        "points", bj.physics.Linear(pick, input="x"), z, bj.noise.Gaussian(learned)
    )
    problem = bj.JointInversion([x], [blurred, points])
    return problem, {"blur": blur, "pick": pick, "idx": idx, "y": y, "z": z}


def hand_written(parts: dict[str, Any]) -> Any:
    """The same model written directly in PyMC."""
    import pymc as pm
    import pytensor.tensor as pt

    n = parts["blur"].shape[0]
    with pm.Model() as model:
        x = pm.Normal("x", 0.0, PRIOR_SD, shape=n)
        s1 = pm.HalfNormal("blurred_sigma", SD_PRIOR)
        s2 = pm.HalfNormal("points_sigma", SD_PRIOR)
        pm.Normal("blurred", mu=pt.dot(parts["blur"], x), sigma=s1, observed=parts["y"])
        pm.Normal("points", mu=x[parts["idx"]], sigma=s2, observed=parts["z"])
    return model


def _log_posterior(parts: dict[str, Any], u1: np.ndarray, u2: np.ndarray):
    """Log posterior density of ``(log s₁, log s₂)`` and ``E[x | d, s]`` at each grid point."""
    import scipy.stats

    a = np.vstack([parts["blur"], parts["pick"]])
    data = np.r_[parts["y"], parts["z"]]
    n_blur = parts["blur"].shape[0]
    prior_cov = PRIOR_SD**2 * np.eye(a.shape[1])
    base = a @ prior_cov @ a.T
    gain = a @ prior_cov
    logp, means = [], []
    for chunk in np.array_split(np.arange(u1.size), max(1, u1.size // 400)):
        s1, s2 = np.exp(u1[chunk]), np.exp(u2[chunk])
        diag = np.concatenate(
            [
                np.repeat(s1[:, None] ** 2, n_blur, 1),
                np.repeat(s2[:, None] ** 2, len(parts["z"]), 1),
            ],
            axis=1,
        )
        cov = base[None] + diag[:, :, None] * np.eye(data.size)[None]
        chol = np.linalg.cholesky(cov)
        alpha = np.linalg.solve(cov, np.broadcast_to(data, (chunk.size, data.size))[..., None])
        alpha = alpha[..., 0]
        logdet = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
        loglik = -0.5 * (logdet + alpha @ data + data.size * np.log(2.0 * np.pi))
        prior = scipy.stats.halfnorm.logpdf(s1, scale=SD_PRIOR)
        prior = prior + scipy.stats.halfnorm.logpdf(s2, scale=SD_PRIOR)
        logp.append(loglik + prior + u1[chunk] + u2[chunk])  # + u: the Jacobian of s = e^u
        means.append(alpha @ gain)
    return np.concatenate(logp), np.concatenate(means)


def _grid_means(parts: dict[str, Any], axis1: np.ndarray, axis2: np.ndarray) -> dict[str, Any]:
    u1, u2 = (g.ravel() for g in np.meshgrid(axis1, axis2, indexing="ij"))
    logp, means = _log_posterior(parts, u1, u2)
    weights = np.exp(logp - logp.max())
    weights /= weights.sum()
    return {
        "blurred_sigma": float(weights @ np.exp(u1)),
        "points_sigma": float(weights @ np.exp(u2)),
        "x": weights @ means,
    }


def quadrature(parts: dict[str, Any], points: int) -> dict[str, Any]:
    """Reference posterior means by quadrature over the two sds (see the module notes)."""
    t0 = time.perf_counter()
    axis1 = np.arange(-8.0, 1.0 + 1e-9, 0.1)
    axis2 = np.arange(-20.0, 1.0 + 1e-9, 0.1)
    u1, u2 = (g.ravel() for g in np.meshgrid(axis1, axis2, indexing="ij"))
    logp, _ = _log_posterior(parts, u1, u2)
    keep = logp > logp.max() - 40.0
    window = [
        (float(u1[keep].min() - 0.1), float(u1[keep].max() + 0.1)),
        (float(u2[keep].min() - 0.1), float(u2[keep].max() + 0.1)),
    ]
    fine = _grid_means(parts, *[np.linspace(lo, hi, points) for lo, hi in window])
    coarse = _grid_means(parts, *[np.linspace(lo, hi, points // 2) for lo, hi in window])
    check = max(
        float(np.max(np.abs(np.asarray(coarse[k]) - np.asarray(v)) / np.abs(np.asarray(v))))
        for k, v in fine.items()
    )
    return {
        "means": fine,
        "window_log_sd": window,
        "points_per_axis": points,
        "step_check": check,
        "time_s": time.perf_counter() - t0,
    }


def summarize(idata: Any, wall: float, reference: dict[str, Any]) -> dict[str, Any]:
    """ESS, ESS/s, R-hat, divergences and the 4-MCSE check against the reference."""
    import arviz as az

    names = ["blurred_sigma", "points_sigma", "x"]
    post = idata.posterior[names]
    bulk = az.ess(post, method="bulk")
    tail = az.ess(post, method="tail")
    rhat = az.rhat(post)
    mcse = az.mcse(post, method="mean")
    z = np.concatenate(
        [
            np.atleast_1d(
                np.abs(post[k].mean(("chain", "draw")).values - reference[k]) / mcse[k].values
            )
            for k in names
        ]
    )
    min_bulk = min(float(bulk[k].min()) for k in names)
    stats = idata.sample_stats
    return {
        "wall_s": wall,
        "sampling_time_s": float(stats.attrs.get("sampling_time", float("nan"))),
        "min_ess_bulk": min_bulk,
        "min_ess_tail": min(float(tail[k].min()) for k in names),
        "ess_per_s": min_bulk / wall,
        "max_rhat": max(float(rhat[k].max()) for k in names),
        "divergences": int(stats["diverging"].sum()),
        "max_z": float(z.max()),
        "n_z_above_4": int(np.sum(z > 4.0)),
        "within_4_mcse": bool(z.max() < 4.0),
        "posterior_mean_sds": [float(post[k].mean()) for k in names[:2]],
    }


def warm_up() -> None:
    """Run PyMC and ArviZ once on a toy model, so no case pays the process's first-use costs."""
    import arviz as az
    import pymc as pm

    with pm.Model():
        pm.Normal("toy", 0.0, 1.0)
        toy = pm.sample(draws=20, tune=20, chains=1, random_seed=0, progressbar=False)
    az.ess(toy.posterior)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import pymc as pm

    n, n_points = SIZES["quick" if args.quick else "full"]
    sample = {
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "cores": args.cores,
        "random_seed": args.seed,
        "progressbar": False,
    }
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "mode": "quick" if args.quick else "full",
        "problem": {"n": n, "n_points": n_points, "prior_sd": PRIOR_SD, "sd_prior": SD_PRIOR},
        "settings": {k: v for k, v in sample.items() if k != "progressbar"},
        "machine": _machine.machine_info(["numpy", "scipy", "pymc", "pytensor", "arviz"]),
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    problem, parts = build(n, n_points, args.seed)
    warm_up()
    reference = quadrature(parts, args.quadrature_points)
    result["quadrature"] = {k: v for k, v in reference.items() if k != "means"}
    means = reference["means"]
    result["reference_means_sds"] = [means["blurred_sigma"], means["points_sigma"]]
    cases: dict[str, Any] = {}
    t0 = time.perf_counter()
    idata = problem.sample(**sample, target_accept=args.target_accept)
    cases["collapsed"] = summarize(idata, time.perf_counter() - t0, means)
    cases["collapsed"]["route"] = idata.posterior.attrs["route"]
    cases["collapsed"]["draw_time_s"] = float(idata.sample_stats.attrs["draw_time"])
    cases["collapsed"]["assembly_time_s"] = float(idata.sample_stats.attrs["assembly_time"])
    print(json.dumps({"collapsed": cases["collapsed"]}), file=sys.stderr, flush=True)
    if not args.no_plain:
        t0 = time.perf_counter()
        idata = problem.sample(method="nuts-plain", **sample)
        cases["nuts_plain"] = summarize(idata, time.perf_counter() - t0, means)
        print(json.dumps({"nuts_plain": cases["nuts_plain"]}), file=sys.stderr, flush=True)
    if not args.no_pymc:
        t0 = time.perf_counter()
        with hand_written(parts):
            idata = pm.sample(**sample)
        cases["pymc"] = summarize(idata, time.perf_counter() - t0, means)
        print(json.dumps({"pymc": cases["pymc"]}), file=sys.stderr, flush=True)
    result["cases"] = cases
    ratios = {}
    for peer in ("nuts_plain", "pymc"):
        if peer in cases and cases[peer]["ess_per_s"] > 0:
            ratios[f"collapsed_over_{peer}"] = (
                cases["collapsed"]["ess_per_s"] / cases[peer]["ess_per_s"]
            )
    result["ess_per_s_ratios"] = ratios
    result["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="24 unknowns, short chains")
    parser.add_argument("--draws", type=int, default=None, help="draws per chain")
    parser.add_argument("--tune", type=int, default=None, help="tuning steps per chain")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--cores", type=int, default=1, help="parallel chains (default 1)")
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--quadrature-points", type=int, default=160, help="per axis")
    parser.add_argument(
        "--target-accept", type=float, default=None, help="of the collapsed route (its default)"
    )
    parser.add_argument("--no-plain", action="store_true", help="skip method='nuts-plain'")
    parser.add_argument("--no-pymc", action="store_true", help="skip the hand-written model")
    parser.add_argument(
        "--blas-threads", type=int, default=1, help="BLAS threads (0: the library default)"
    )
    args = parser.parse_args(argv)
    default = 300 if args.quick else 1000
    args.draws = default if args.draws is None else args.draws
    args.tune = default if args.tune is None else args.tune
    if args.draws < 1 or args.tune < 0 or args.chains < 1 or args.cores < 1:
        parser.error("--draws, --chains, --cores must be positive and --tune non-negative")
    if args.quadrature_points < 20:
        parser.error("--quadrature-points must be at least 20")
    if args.blas_threads < 0:
        parser.error("--blas-threads must be 0 (library default) or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("pymc").setLevel(logging.ERROR)
    return _machine.print_json(lambda: run(args), blas_threads=args.blas_threads)


if __name__ == "__main__":
    sys.exit(main())
