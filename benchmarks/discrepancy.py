"""Benchmark the exact and HSGP routes of ``bayesjoint.discrepancy`` (gradient time, ESS/s, memory).

One modality of ``n`` data on a 1 km profile, two physical parameters (a buried sphere's
anomaly and a linear trend, ``bj.physics.Linear``), Gaussian noise of known sd, and a Matérn-5/2
GP discrepancy with *learned* hyperparameters (lengthscale ``LogNormal(log 200 m, 0.4)``, 5–95 %
range 103–386 m whatever ``n`` is; amplitude ``HalfNormal(0.05 mGal)``). The same problem is built
on three routes,

* ``exact``: ``method="exact"``, δ integrated out: an ``n x n`` covariance and its Cholesky
  factor per evaluation;
* ``hsgp``: ``method="hsgp"`` (the default there), reduced-rank basis with its coefficients
  integrated out (Woodbury identity, ``O(n M + M³)`` per evaluation);
* ``hsgp_sampled``: ``method="hsgp", marginalize_basis=False``, the basis coefficients sampled by
  NUTS with the hyperparameters,

at ``n = 200, 1,000, 5,000, 20,000`` and measured for

* **gradient time**: one log-density-plus-gradient evaluation, the function NUTS calls
  (``model.logp_dlogp_function(ravel_inputs=True)``), median and best of repeated calls at the
  initial point, after one warm-up call;
* **ESS per second**: a short NUTS run (``--draws``/``--tune``, 2 chains, one core); the
  smallest bulk ESS over all free variables divided by PyMC's sampling time (compilation
  excluded);
* **peak memory**: the peak resident set size (``ru_maxrss``) of a fresh interpreter running that
  case alone, and the RSS after imports (the interpreter + PyMC baseline) for reference.

Cases whose cost is known in advance to be infeasible are skipped with the reason in the JSON:
the exact route at ``n = 20,000`` (one 20,000² float64 matrix is 3.2 GB; the gradient of the
Cholesky-based log density holds several such matrices, and one O(n³/3) factorization is
~2.7 Tflop, minutes per evaluation on 2 cores), and NUTS wherever a single gradient evaluation
takes longer than ``--nuts-max-grad-ms`` (a short run needs ~10⁴ evaluations).

Prints ONE JSON object to stdout (library chatter goes to stderr), with the machine, the BLAS
thread pools and the load average (``os.getloadavg``) at start and end — the machine may be
shared, which makes timings noisy.

Usage::

    python benchmarks/discrepancy.py                   # full sizes, one subprocess per case
    python benchmarks/discrepancy.py --blas-threads 2  # let OpenBLAS use two threads
    python benchmarks/discrepancy.py --quick           # n = 50 in-process (smoke run)
    python benchmarks/discrepancy.py --routes hsgp --sizes 20000   # one case
    python benchmarks/discrepancy.py --routes hsgp --sizes 20000 --draws 0 --default-lengthscale

BLAS runs on one thread by default (``--blas-threads 1``; ``0`` keeps the library default): on a
shared, loaded 2-core machine multi-threaded OpenBLAS made small triangular solves ~200x slower
(threads spinning on busy cores).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import warnings
from typing import Any

import _machine
import numpy as np
from _machine import rss_mib

SCHEMA = "bayesjoint-benchmark-discrepancy/1"
SIZES = {"full": (200, 1_000, 5_000, 20_000), "quick": (50,)}
ROUTES = ("exact", "hsgp", "hsgp_sampled")
PROFILE = 1000.0  # m
NOISE_SD = 0.005  # mGal
EXACT_MAX_N = 5_000  # larger exact cases are skipped (see the module docstring)
GOAL = {"route": "hsgp", "n": 20_000, "grad_ms": 20.0, "peak_rss_gib": 2.0, "cores": 2}


def build(n: int, route: str, default_lengthscale: bool = False):
    """Return the JointInversion of the benchmark problem with ``n`` data.

    ``default_lengthscale`` replaces the benchmark's lengthscale prior by the library's default
    (90 % between extent/50 and the extent), which needs a much larger HSGP basis.
    """
    import bayesjoint as bj
    from bayesjoint.physics import sphere_gz

    x = np.linspace(0.0, PROFILE, n)
    pts = np.column_stack([x, np.zeros(n), np.zeros(n)])
    # Column 0: a sphere (R = 50 m, centre 100 m deep at x = 500 m) of 500 kg/m³, in mGal;
    # column 1: a 0.05 mGal linear trend across the profile.
    a = np.column_stack(
        [sphere_gz([500.0, 0.0, -100.0], 50.0, 500.0, pts), 0.05 * (x - 500.0) / 500.0]
    )
    rng = np.random.default_rng(n)
    smooth = 0.03 * np.sin(2 * np.pi * x / 700.0)  # the discrepancy the physics lacks
    data = a @ np.array([1.0, 0.5]) + smooth + rng.normal(0.0, NOISE_SD, n)
    theta = bj.Parameter("theta", shape=2, prior=bj.priors.Normal(0.0, 2.0))
    gp = bj.discrepancy.GP(
        kernel="matern52",
        lengthscale=None if default_lengthscale else bj.priors.LogNormal(float(np.log(200.0)), 0.4),
        amplitude=bj.priors.HalfNormal(0.05),
        coords=x,
        method="exact" if route == "exact" else "hsgp",
        marginalize_basis=False if route == "hsgp_sampled" else None,
    )
    mod = bj.Modality(
        "gravity",
        bj.physics.Linear(a, "theta"),
        data,
        bj.noise.Gaussian(NOISE_SD),
        discrepancy=gp,
    )
    return bj.JointInversion([theta], [mod]), gp


def measure(n: int, route: str, args: argparse.Namespace) -> dict[str, Any]:
    """Gradient time, optional short NUTS run, and memory of one case (in this process)."""
    import pymc as pm  # noqa: F401  (imported before the baseline RSS is read)

    import bayesjoint as bj  # noqa: F401

    rss_imports, _ = rss_mib()
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # the large-basis warning, expected with the default prior
        warnings.simplefilter("ignore", UserWarning)
        problem, _ = build(n, route, args.default_lengthscale)
        model = problem.model  # the warning is raised here, when the basis is built
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    # The function NUTS calls; compiled once, timed here, then handed to the NUTS step.
    fn = model.logp_dlogp_function(ravel_inputs=True)
    fn.set_extra_values({})
    fn.trust_input = True
    compile_s = time.perf_counter() - t0
    point = model.initial_point()
    q = np.concatenate([np.atleast_1d(point[v.name]).ravel() for v in model.continuous_value_vars])
    t1 = time.perf_counter()
    logp, _ = fn(q)  # warm-up (first call allocates)
    warm_s = time.perf_counter() - t1
    # At least 3 timed calls, or 1 when a single call exceeds the time budget (exact, n = 5,000).
    min_repeat = 1 if warm_s > args.grad_seconds else 3
    times = []
    budget = time.perf_counter() + args.grad_seconds
    while len(times) < args.max_repeat and (
        len(times) < min_repeat or time.perf_counter() < budget
    ):
        t1 = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - t1)
    out: dict[str, Any] = {
        "n": n,
        "route": route,
        "n_free_parameters": int(q.size),
        "grad_ms_median": 1e3 * float(np.median(times)),
        "grad_ms_best": 1e3 * float(np.min(times)),
        "grad_repeats": len(times),
        "grad_ms_first_call": 1e3 * warm_s,
        "logp_at_initial_point": float(logp),
        "build_s": build_s,
        "compile_s": compile_s,
        "default_lengthscale_prior": args.default_lengthscale,
        "hsgp_basis": problem.discrepancy_blocks["gravity"].hsgp.get("m"),
        "hsgp_c": problem.discrepancy_blocks["gravity"].hsgp.get("c"),
        "hsgp_coefficients": problem.discrepancy_blocks["gravity"].hsgp.get("coefficients"),
    }
    grad_ms = out["grad_ms_median"]
    if args.draws == 0:
        out["nuts"] = None
        out["nuts_skipped"] = "--draws 0"
    elif grad_ms > args.nuts_max_grad_ms:
        out["nuts"] = None
        out["nuts_skipped"] = (
            f"one gradient takes {grad_ms:.0f} ms > --nuts-max-grad-ms {args.nuts_max_grad_ms:g}; "
            "a short NUTS run (~1e4 evaluations) would take too long"
        )
    else:
        out["nuts"] = nuts(problem, fn, args)
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_info

        out["blas_threads"] = {
            os.path.basename(p["filepath"]): p["num_threads"] for p in threadpool_info()
        }
    rss_now, rss_peak = rss_mib()
    out.update(
        {
            "rss_after_imports_mib": rss_imports,
            "rss_end_mib": rss_now,
            "rss_peak_mib": rss_peak,
            "rss_peak_gib": None if rss_peak is None else rss_peak / 1024.0,
        }
    )
    return out


def nuts(problem, fn, args: argparse.Namespace) -> dict[str, Any]:
    """A short NUTS run: smallest bulk ESS over the free variables per second of sampling.

    The step reuses the compiled ``fn``; its mass matrix adapts from the identity
    (PyMC's diagonal adaptation), and both chains start at the model's initial point.
    """
    import arviz as az
    import pymc as pm

    t0 = time.perf_counter()
    # pymc.sample directly: JointInversion.sample passes target_accept, which PyMC rejects next
    # to a ready-made step.
    with problem.model:
        idata = pm.sample(
            draws=args.draws,
            tune=args.tune,
            chains=2,
            cores=1,
            step=pm.NUTS(logp_dlogp_func=fn, target_accept=0.8),
            random_seed=1,
            progressbar=False,
            compute_convergence_checks=False,
        )
    wall = time.perf_counter() - t0
    sampling = float(idata.sample_stats.attrs.get("sampling_time", wall))
    ess = az.ess(idata.posterior, method="bulk")
    per_var = {k: float(np.min(v.values)) for k, v in ess.data_vars.items()}
    rhat = az.rhat(idata.posterior)
    worst = min(per_var, key=per_var.get)
    return {
        "draws": args.draws,
        "tune": args.tune,
        "chains": 2,
        "sampling_s": sampling,
        "wall_s_with_compile": wall,
        "min_ess_bulk": per_var[worst],
        "min_ess_variable": worst,
        "ess_bulk_theta": per_var.get("theta"),
        "ess_per_s": per_var[worst] / sampling,
        "ess_per_s_theta": per_var.get("theta", np.nan) / sampling,
        "max_rhat": float(max(np.max(v.values) for v in rhat.data_vars.values())),
        "divergences": int(idata.sample_stats["diverging"].sum()),
        "mean_tree_size": float(idata.sample_stats["n_steps"].mean()),
        # Sanity check across routes: the physical parameters' posterior (truth: 1.0, 0.5).
        "theta_mean": idata.posterior["theta"].mean(("chain", "draw")).values.tolist(),
        "theta_sd": idata.posterior["theta"].std(("chain", "draw")).values.tolist(),
    }


def machine_info() -> dict[str, Any]:
    """Platform, CPU, versions, BLAS thread pools and the BLAS pytensor's C code links."""
    info = _machine.machine_info(("numpy", "scipy", "pymc", "pytensor", "bayesjoint"))
    with contextlib.suppress(Exception):
        import pytensor

        info["pytensor_blas_ldflags"] = pytensor.config.blas__ldflags
    return info


def _load() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _case_argv(n: int, route: str, args: argparse.Namespace) -> list[str]:
    argv = ["--worker", f"{route}:{n}", "--draws", str(args.draws), "--tune", str(args.tune)]
    argv += ["--grad-seconds", str(args.grad_seconds), "--max-repeat", str(args.max_repeat)]
    argv += ["--nuts-max-grad-ms", str(args.nuts_max_grad_ms)]
    argv += ["--blas-threads", str(args.blas_threads)]
    if args.default_lengthscale:
        argv.append("--default-lengthscale")
    return argv


def _run_isolated(argv: list[str], blas_threads: int | None) -> dict[str, Any]:
    env = dict(os.environ)
    if blas_threads:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(blas_threads)
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *argv],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-5:]}
    return json.loads(proc.stdout)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every (route, n) case; one subprocess per case unless in-process."""
    size_key = "quick" if args.quick else "full"
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "mode": size_key,
        "isolation": args.isolation,
        "blas_threads_requested": args.blas_threads,
        "goal": GOAL,
        "machine": machine_info(),
        "load_average_start": _load(),
        "cases": [],
    }
    t_start = time.perf_counter()
    for n in args.sizes or SIZES[size_key]:
        for route in args.routes:
            if route == "exact" and n > EXACT_MAX_N:
                result["cases"].append(
                    {
                        "n": n,
                        "route": route,
                        "skipped": (
                            f"n x n covariance is {n * n * 8 / 1e9:.1f} GB per matrix (the "
                            "gradient holds several) and one Cholesky is "
                            f"{n**3 / 3e12:.1f} Tflop: infeasible on a 2-core, 24 GB machine"
                        ),
                    }
                )
                continue
            load_before = _load()
            if args.isolation == "subprocess":
                case = _run_isolated(_case_argv(n, route, args), args.blas_threads)
            else:
                case = measure(n, route, args)
            case["load_average_before"] = load_before
            result["cases"].append(case)
            # Progress (and a record should the run be interrupted) on stderr, one line a case.
            print(json.dumps(case), file=sys.stderr, flush=True)
    result["total_s"] = time.perf_counter() - t_start
    result["load_average_end"] = _load()
    if args.isolation == "inprocess":  # thread pools as the cases saw them (all libraries loaded)
        result["machine"]["blas"] = _machine.blas_pools()
    goal_case = next(
        (
            c
            for c in result["cases"]
            if c.get("route") == GOAL["route"] and c.get("n") == GOAL["n"] and "grad_ms_median" in c
        ),
        None,
    )
    if goal_case is not None:
        result["goal_met"] = {
            "grad_ms_median": goal_case["grad_ms_median"],
            "grad_under_20_ms": goal_case["grad_ms_median"] < GOAL["grad_ms"],
            "peak_rss_gib": goal_case["rss_peak_gib"],
            "memory_under_2_gib": (
                goal_case["rss_peak_gib"] is not None
                and goal_case["rss_peak_gib"] < GOAL["peak_rss_gib"]
            ),
        }
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="n = 50 in-process (smoke run)")
    parser.add_argument("--draws", type=int, default=None, help="NUTS draws per chain (0: none)")
    parser.add_argument("--tune", type=int, default=None, help="NUTS tuning steps per chain")
    parser.add_argument(
        "--grad-seconds", type=float, default=None, help="time budget per gradient timing"
    )
    parser.add_argument("--max-repeat", type=int, default=200, help="most gradient calls timed")
    parser.add_argument(
        "--nuts-max-grad-ms",
        type=float,
        default=100.0,
        help="skip NUTS where one gradient is slower than this",
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="BLAS threads per case (OPENBLAS/OMP/MKL_NUM_THREADS and threadpoolctl); "
        "0 keeps the library default",
    )
    parser.add_argument(
        "--isolation",
        choices=("subprocess", "inprocess"),
        default=None,
        help="fresh interpreter per case (per-case peak RSS; default for full runs) or one "
        "process (default with --quick)",
    )
    parser.add_argument(
        "--sizes",
        type=lambda v: tuple(int(x) for x in v.split(",")),
        default=None,
        help="comma-separated data sizes instead of the defaults, e.g. 200,20000",
    )
    parser.add_argument(
        "--routes",
        type=lambda v: tuple(v.split(",")),
        default=ROUTES,
        help=f"comma-separated routes among {','.join(ROUTES)} (default: all)",
    )
    parser.add_argument(
        "--default-lengthscale",
        action="store_true",
        help="use the library's default lengthscale prior (a larger HSGP basis)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.draws is None:
        args.draws = 20 if args.quick else 300
    if args.tune is None:
        args.tune = 20 if args.quick else 300
    if args.grad_seconds is None:
        args.grad_seconds = 0.2 if args.quick else 3.0
    if args.draws < 0 or args.tune < 0:
        parser.error("--draws and --tune must be non-negative")
    if args.max_repeat < 3:
        parser.error("--max-repeat must be at least 3")
    if args.blas_threads < 0:
        parser.error("--blas-threads must be 0 (library default) or more")
    unknown = sorted(set(args.routes) - set(ROUTES))
    if unknown:
        parser.error(f"unknown route(s) {unknown}; choose among {list(ROUTES)}")
    if args.isolation is None:
        args.isolation = "inprocess" if args.quick else "subprocess"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def compute() -> dict[str, Any]:
        if args.worker is not None:
            route, n = args.worker.split(":")
            return measure(int(n), route, args)
        return run(args)

    return _machine.print_json(compute, blas_threads=args.blas_threads)


if __name__ == "__main__":
    sys.exit(main())
