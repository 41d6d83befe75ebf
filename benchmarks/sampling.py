"""Benchmark the sampling routes against the limit (independent draws) and against plain PyMC.

Rows (issue "fast by default"), measured side by side in one run, since the machine is shared and
ratios count, not absolute times:

* ``a_gradient_overhead``: one log-density-and-gradient evaluation of a two-modality
  linear-Gaussian model built by bayesjoint against the same model written by hand in PyMC;
* ``b_linear_gaussian``: that problem (128 parameters, a dense blur and 20 sparse points):
  ``problem.sample()`` (the exact route) against numpy draws from the same Cholesky factor and
  against hand-written PyMC NUTS, in ESS per second (draw time and InferenceData assembly time
  reported apart; ``repeats``: the two timings again, ``--repeat-b`` times interleaved, with
  the spread of the ratio);
* ``c_learned_noise_sds``: the same problem with both noise sds learned (HalfNormal priors),
  ``sample()`` (the collapsed route) against PyMC NUTS on the full model (see
  ``benchmarks/collapsed.py`` for its correctness check against quadrature);
* ``d_section``: a 20 × 10 density + slowness section seen by surface gravity and straight-ray
  travel times, with a cross-gradient coupling: default ``sample()`` against ``"nuts-plain"``,
  convergence figures of every cell.

ESS is the minimum bulk ESS over the latent parameters (and learned sds) (ArviZ,
rank-normalized), per second of wall time of the whole call; for the numpy draws of row b, by
the same estimator over their draws split into the same chains (their nominal ESS, the number of
draws, is reported beside it). BLAS runs on one thread by default (``--blas-threads``): on a
shared, loaded machine multi-threaded OpenBLAS spins on busy cores. Prints ONE JSON object to
stdout.

Usage::

    python benchmarks/sampling.py            # full settings
    python benchmarks/sampling.py --quick    # small settings (a smoke run, seconds to minutes)
    python benchmarks/sampling.py --rows abc --nutpie   # rows a-c; row c also with nutpie
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import time
import warnings
from typing import Any

import _machine
import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import scipy.linalg as sla

import bayesjoint as bj
from bayesjoint.validate import blur_and_points_problem

SCHEMA = "bayesjoint-benchmark-sampling/1"
SETTINGS = {
    "full": {"n": 128, "points": 20, "draws": 1000, "tune": 1000, "chains": 4, "section": (20, 10)},
    "quick": {"n": 32, "points": 8, "draws": 100, "tune": 100, "chains": 2, "section": (8, 4)},
}


@contextlib.contextmanager
def _quiet():
    """Keep PyMC's and ArviZ's chatter off stdout (the JSON) and stderr."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(previous)


def _min_ess(idata: az.InferenceData, names: list[str]) -> dict[str, float]:
    post = idata.posterior[names]
    bulk = az.ess(post, method="bulk")
    tail = az.ess(post, method="tail")
    rhat = az.rhat(post)
    return {
        "ess_bulk_min": float(min(bulk[v].min() for v in names)),
        "ess_tail_min": float(min(tail[v].min() for v in names)),
        "rhat_max": float(max(rhat[v].max() for v in names)),
    }


def _hand_model(problem: bj.JointInversion, learned: bool = False) -> pm.Model:
    """The blur-and-points problem written directly in PyMC (dense blur, dense point matrix)."""
    blur, points = problem.modalities["blurred"], problem.modalities["points"]
    a = np.asarray(blur.physics.matrix)
    b = points.physics.matrix
    b = b.toarray() if hasattr(b, "toarray") else np.asarray(b)
    n = a.shape[1]
    with pm.Model() as model:
        x = pm.Normal("x", 0.0, 0.1, shape=n)
        sd_blur = pm.HalfNormal("blurred_sd", 0.1) if learned else 0.05
        sd_points = pm.HalfNormal("points_sd", 0.1) if learned else 0.02
        pm.Normal("blurred", pt.dot(a, x), sd_blur, observed=blur.data)
        pm.Normal("points", pt.dot(b, x), sd_points, observed=points.data)
    return model


def _time_per_call(fn: Any, x: np.ndarray, repeat: int) -> float:
    fn(x)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            fn(x)
        times.append((time.perf_counter() - start) / repeat)
    return float(np.median(times))


def row_a(problem: bj.JointInversion, repeat: int) -> dict[str, Any]:
    """Gradient overhead: bayesjoint's model against the hand-written one."""
    out = {}
    for label, model in (("bayesjoint", problem.model), ("pymc_by_hand", _hand_model(problem))):
        fn = model.logp_dlogp_function(ravel_inputs=True)
        fn.set_extra_values({})
        size = sum(int(np.prod(v.shape)) for v in model.initial_point().values())
        x = np.random.default_rng(0).normal(0.0, 0.1, size)
        out[f"{label}_s"] = _time_per_call(fn, x, repeat)
    out["ratio"] = out["bayesjoint_s"] / out["pymc_by_hand_s"]
    return out


def row_b(
    problem: bj.JointInversion, s: dict[str, Any], seed: int, repeat: int = 0
) -> dict[str, Any]:
    """Exact route vs numpy draws from the same factor vs hand-written PyMC NUTS.

    ``repeat``: how many more interleaved timings of the first two (see :func:`_row_b_repeats`).
    """
    total = s["draws"] * s["chains"]
    problem.sample(draws=10, chains=1, random_seed=seed, progressbar=False)  # compile once
    start = time.perf_counter()
    idata = problem.sample(
        draws=s["draws"], chains=s["chains"], random_seed=seed, progressbar=False
    )
    wall = time.perf_counter() - start
    stats = idata.sample_stats.attrs
    ours = {**_min_ess(idata, ["x"]), "wall_s": wall, "route": idata.posterior.attrs["route"]}
    ours["draw_s"], ours["assembly_s"] = stats["draw_time"], stats["assembly_time"]
    ours["ess_per_s"] = ours["ess_bulk_min"] / wall
    exact = problem.exact_posterior()
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    chol = sla.cholesky(exact["cov"].values, lower=True)
    factor_s = time.perf_counter() - start
    start = time.perf_counter()
    draws = exact["mean"].values + rng.standard_normal((total, chol.shape[0])) @ chol.T
    numpy_s = time.perf_counter() - start
    # the limit: draws from a factor already computed (the factorization is timed apart); its
    # ESS by the same estimator as sample()'s (the minimum bulk ESS over the parameters)
    split = draws.reshape(s["chains"], s["draws"], -1)
    ess = az.ess(az.convert_to_dataset({"x": split}), method="bulk")["x"].values
    numpy_row = {"draw_s": numpy_s, "factor_s": factor_s, "ess": total}
    numpy_row["ess_bulk_min"] = float(ess.min())
    numpy_row["ess_per_s"] = numpy_row["ess_bulk_min"] / numpy_s
    numpy_row["nominal_ess_per_s"] = total / numpy_s
    numpy_row["check_max_abs_mean_error_in_sd"] = float(
        np.max(np.abs(draws.mean(0) - exact["mean"].values) / exact["sd"].values)
    )
    with _quiet(), _hand_model(problem):
        start = time.perf_counter()
        hand = pm.sample(
            draws=s["draws"],
            tune=s["tune"],
            chains=s["chains"],
            cores=1,
            random_seed=seed,
            progressbar=False,
            compute_convergence_checks=False,
        )
        hand_s = time.perf_counter() - start
    hand_row = {**_min_ess(hand, ["x"]), "wall_s": hand_s}
    hand_row["ess_per_s"] = hand_row["ess_bulk_min"] / hand_s
    return {
        "sample": ours,
        "numpy_iid": numpy_row,
        "pymc_nuts_by_hand": hand_row,
        "ratio_to_numpy_iid": ours["ess_per_s"] / numpy_row["ess_per_s"],
        "ratio_to_numpy_iid_draw_time_only": (ours["ess_bulk_min"] / ours["draw_s"])
        / numpy_row["ess_per_s"],
        "ratio_to_pymc_nuts": ours["ess_per_s"] / hand_row["ess_per_s"],
        "repeats": _row_b_repeats(problem, s, seed, repeat, exact, chol, ours, numpy_row),
    }


def _row_b_repeats(
    problem: bj.JointInversion,
    s: dict[str, Any],
    seed: int,
    repeat: int,
    exact: Any,
    chol: np.ndarray,
    ours: dict[str, Any],
    numpy_row: dict[str, Any],
) -> dict[str, Any]:
    """Row b's two timings again, ``repeat`` times, interleaved (one call can hit a busy moment).

    Each repeat times one ``sample()`` call (new seed), the same call without the
    ``log_likelihood`` group (``idata_kwargs={"log_likelihood": False}``: what the pointwise
    log-likelihoods cost) and then the numpy draws of the same size from the same factor; the
    ESS of each side is the one of the single run above.
    """
    if repeat < 1:
        return {"n": 0}
    total = s["draws"] * s["chains"]
    walls, draws_s, assembly_s, numpy_s, no_loglik = [], [], [], [], []
    for i in range(repeat):
        start = time.perf_counter()
        idata = problem.sample(
            draws=s["draws"], chains=s["chains"], random_seed=seed + 1 + i, progressbar=False
        )
        walls.append(time.perf_counter() - start)
        draws_s.append(idata.sample_stats.attrs["draw_time"])
        assembly_s.append(idata.sample_stats.attrs["assembly_time"])
        del idata
        start = time.perf_counter()
        idata = problem.sample(
            draws=s["draws"],
            chains=s["chains"],
            random_seed=seed + 1 + i,
            progressbar=False,
            idata_kwargs={"log_likelihood": False},
        )
        no_loglik.append(time.perf_counter() - start)
        del idata
        rng = np.random.default_rng(seed + 1 + i)
        start = time.perf_counter()
        draws = exact["mean"].values + rng.standard_normal((total, chol.shape[0])) @ chol.T
        numpy_s.append(time.perf_counter() - start)
        del draws

    def spread(values: list[float]) -> list[float]:
        return [float(np.min(values)), float(np.median(values)), float(np.max(values))]

    ess_ratio = ours["ess_bulk_min"] / numpy_row["ess_bulk_min"]
    time_ratios = np.array(numpy_s) / np.array(walls)
    return {
        "n": repeat,
        "sample_wall_s_min_median_max": spread(walls),
        "sample_draw_s_min_median_max": spread(draws_s),
        "sample_assembly_s_min_median_max": spread(assembly_s),
        "numpy_draw_s_min_median_max": spread(numpy_s),
        # ESS/s ratio of each repeat: (ESS_ours / wall_i) / (ESS_numpy / numpy_i)
        "ratio_to_numpy_iid_min_median_max": spread(list(ess_ratio * time_ratios)),
        "no_log_likelihood_wall_s_min_median_max": spread(no_loglik),
        "no_log_likelihood_ratio_to_numpy_iid_min_median_max": spread(
            list(ess_ratio * np.array(numpy_s) / np.array(no_loglik))
        ),
    }


def _learned(problem: bj.JointInversion) -> bj.JointInversion:
    mods = [
        bj.Modality(
            m.name,
            m.physics,
            m.data,
            bj.noise.Gaussian(bj.priors.HalfNormal(0.1)),
        )
        for m in problem.modalities.values()
    ]
    return bj.JointInversion(list(problem.latent.values()), mods)


def row_c(
    problem: bj.JointInversion, s: dict[str, Any], seed: int, nutpie: bool = False
) -> dict[str, Any]:
    """Both noise sds learned: sample() against PyMC NUTS on the full model.

    With ``nutpie``, also ``sample(nuts_sampler="nutpie")`` (the collapsed route run by nutpie;
    its wall time includes numba's compilation).
    """
    learned = _learned(problem)
    names = ["x", "blurred_sd", "points_sd"]
    with _quiet():
        start = time.perf_counter()
        idata = learned.sample(
            draws=s["draws"], tune=s["tune"], chains=s["chains"], cores=1,
            random_seed=seed, progressbar=False,
        )  # fmt: skip
        ours_s = time.perf_counter() - start
    sd_names = [n for n in idata.posterior.data_vars if n.endswith(("_sd", "_sigma"))]
    ours = {**_min_ess(idata, ["x", *sd_names]), "wall_s": ours_s}
    ours["route"] = idata.posterior.attrs["route"]
    ours["ess_per_s"] = ours["ess_bulk_min"] / ours_s
    with _quiet(), _hand_model(problem, learned=True):
        start = time.perf_counter()
        hand = pm.sample(
            draws=s["draws"], tune=s["tune"], chains=s["chains"], cores=1,
            random_seed=seed, progressbar=False, compute_convergence_checks=False,
        )  # fmt: skip
        hand_s = time.perf_counter() - start
    hand_row = {**_min_ess(hand, names), "wall_s": hand_s}
    hand_row["ess_per_s"] = hand_row["ess_bulk_min"] / hand_s
    out = {"sample": ours, "pymc_nuts_by_hand": hand_row,
           "ratio_to_pymc_nuts": ours["ess_per_s"] / hand_row["ess_per_s"]}  # fmt: skip
    ours["draw_s"] = idata.sample_stats.attrs["draw_time"]
    ours["assembly_s"] = idata.sample_stats.attrs["assembly_time"]
    ours["sampling_s"] = idata.sample_stats.attrs.get("sampling_time")
    if nutpie:
        with _quiet():
            start = time.perf_counter()
            other = _learned(problem).sample(
                draws=s["draws"], tune=s["tune"], chains=s["chains"], random_seed=seed,
                progressbar=False, nuts_sampler="nutpie",
            )  # fmt: skip
            wall = time.perf_counter() - start
        row = {**_min_ess(other, ["x", *sd_names]), "wall_s": wall}
        row["route"] = other.posterior.attrs["route"]
        row["ess_per_s"] = row["ess_bulk_min"] / wall
        out["sample_nutpie"] = row
        out["ratio_nutpie_to_pymc_nuts"] = row["ess_per_s"] / hand_row["ess_per_s"]
    return out


def section_problem(nx: int, nz: int, seed: int) -> bj.JointInversion:
    """A density + slowness section under gravity and travel times, with a cross-gradient."""
    rng = np.random.default_rng(seed)
    grid = bj.Grid.from_edges(x=np.linspace(0.0, 400.0, nx + 1), z=np.linspace(-200.0, 0.0, nz + 1))
    xc, zc = np.meshgrid(grid.centers["x"], grid.centers["z"], indexing="ij")
    body = ((xc - 200.0) / 80.0) ** 2 + ((zc + 90.0) / 45.0) ** 2 < 1.0
    density_true = 300.0 * body
    slowness_true = -2e-5 * body
    stations = np.column_stack([np.linspace(0.0, 400.0, 2 * nx), np.full(2 * nx, 1.0)])
    gravity = bj.physics.Gravity(grid, stations, input="density")
    depths = -np.linspace(10.0, 190.0, nz)
    sources = np.column_stack([np.zeros(nz), depths])
    receivers = np.column_stack([np.full(nz, 400.0), depths])
    src, rec = np.repeat(sources, nz, axis=0), np.tile(receivers, (nz, 1))
    travel = bj.physics.TravelTime(grid, src, rec, input="slowness")
    g = gravity(density=density_true)
    t = travel(slowness=slowness_true)
    sd_g, sd_t = 0.02 * np.abs(g).max(), 0.02 * np.abs(t).max()
    fields = [
        bj.Field("density", grid, bj.priors.GaussianField(200.0, 60.0), units="kg/m^3"),
        bj.Field("slowness", grid, bj.priors.GaussianField(2e-5, 60.0), units="s/m"),
    ]
    modalities = [
        bj.Modality("gravity", gravity, g + sd_g * rng.standard_normal(g.shape),
                    bj.noise.Gaussian(sd_g)),
        bj.Modality("travel_time", travel, t + sd_t * rng.standard_normal(t.shape),
                    bj.noise.Gaussian(sd_t)),
    ]  # fmt: skip
    coupling = bj.CrossGradient("density", "slowness", name="cross_gradient")
    return bj.JointInversion(fields, modalities, couplings=[coupling])


def row_d(s: dict[str, Any], seed: int) -> dict[str, Any]:
    """The coupled section: default sample() against nuts-plain."""
    out = {}
    for method in ("auto", "nuts-plain"):
        problem = section_problem(*s["section"], seed)
        with _quiet():
            start = time.perf_counter()
            idata = problem.sample(
                draws=s["draws"], tune=s["tune"], chains=s["chains"], cores=1,
                random_seed=seed, progressbar=False, method=method,
            )  # fmt: skip
            wall = time.perf_counter() - start
        row = {**_min_ess(idata, ["density", "slowness"]), "wall_s": wall}
        row["route"] = idata.posterior.attrs["route"]
        row["divergences"] = int(idata.sample_stats["diverging"].sum())
        row["ess_per_s"] = row["ess_bulk_min"] / wall
        out["sample" if method == "auto" else "nuts_plain"] = row
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings (smoke run)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rows", default="abcd", help="which rows to run, e.g. 'ab'")
    parser.add_argument(
        "--blas-threads", type=int, default=1, help="BLAS threads (0: the library default)"
    )
    parser.add_argument(
        "--nutpie", action="store_true", help="row c: also sample(nuts_sampler='nutpie')"
    )
    parser.add_argument(
        "--repeat-b",
        type=int,
        default=None,
        help="row b: interleaved repeats of its two timings (default 10; 3 with --quick)",
    )
    args = parser.parse_args(argv)
    if args.blas_threads:  # on a shared machine multi-threaded BLAS spins on busy cores
        with contextlib.suppress(ImportError):
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=args.blas_threads, user_api="blas")
    mode = "quick" if args.quick else "full"
    if args.repeat_b is None:
        args.repeat_b = 3 if args.quick else 10
    s = SETTINGS[mode]
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "mode": mode,
        "settings": s,
        "machine": _machine.machine_info(["bayesjoint", "pymc", "pytensor", "numpy", "scipy"]),
        "blas_threads": args.blas_threads or "library default",
        "loadavg_start": list(os.getloadavg()),
    }
    problem = blur_and_points_problem(s["n"], n_points=s["points"], random_seed=args.seed)
    with _quiet():
        if "a" in args.rows:
            result["a_gradient_overhead"] = row_a(problem, 200 if args.quick else 2000)
        if "b" in args.rows:
            result["b_linear_gaussian"] = row_b(problem, s, args.seed, args.repeat_b)
    if "c" in args.rows:
        result["c_learned_noise_sds"] = row_c(problem, s, args.seed, nutpie=args.nutpie)
    if "d" in args.rows:
        result["d_section"] = row_d(s, args.seed)
    result["loadavg_end"] = list(os.getloadavg())
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return result


if __name__ == "__main__":
    main()
