"""Benchmark the compiled ODE solver: gradient cost, and a full posterior against Stan.

Problem: the posteriordb model ``lotka_volterra`` on the data ``hudson_lynx_hare`` (Hudson's Bay
Company hare and lynx pelts, 1900–1920; ``benchmarks/data/``), written with the package as two
modalities, hare and lynx, that share one Lotka–Volterra ODE::

    du/dt = (α − β v) u,    dv/dt = (−γ + δ u) v,    (u, v)(0) = (hare0, lynx0),

with α, γ ~ N(1, 0.5) and β, δ ~ N(0.05, 0.05) truncated to positive values, hare0, lynx0 ~
LogNormal(log 10, 1), and log-normal data: log(pelts) ~ N(log z(t), σ_species) at t = 0 … 20 years,
σ_species ~ LogNormal(−1, 1). The ODE is solved like Stan's ``ode_rk45_tol`` in the posteriordb
program: Dormand–Prince 5(4), rtol 1e-5, atol 1e-3.

Measured, and printed as ONE JSON object on stdout (everything else goes to stderr):

* ``gradient``: seconds per evaluation of the log-likelihood and its gradient (8 parameters) for
  the ODE integrated by the ``pytensor.scan`` of ``rk4(backend="scan")`` (pytensor's C backend and
  its Numba backend), by the compiled Op with the same RK4 steps, and by the compiled adaptive
  solver; median over ``--repeat`` timings of ``--number`` calls each, the compile time, and the
  largest difference of each gradient from the scan's. Also the package model's
  ``logp_dlogp_function`` (what PyMC's NUTS calls per leapfrog step).
* ``posterior``: ``JointInversion.sample(method=--route)`` with 4 chains x 1000 draws after 1000
  tuning steps: wall time (model compilation included), divergences, and per parameter the mean,
  sd, MCSE of the mean, bulk / tail ESS and R-hat. Chains start as Stan's do (``--init stan``:
  every unconstrained coordinate uniform on (-2, 2)); PyMC's own start (jitter around the prior
  moments) tends to leave chains in a local mode of this posterior with larger noise sds.
* ``stan`` (with ``--stan-python``, the interpreter of a separate environment with pystan 3, never
  a dependency of the package): the same model and draws in Stan, build and sampling time, the
  same summaries; ``comparison``: wall-time ratios bayesjoint / Stan and, per parameter, the
  difference of the means in MCSE units ``(m₁ − m₂) / √(mcse₁² + mcse₂²)`` and the sd ratio.

Usage::

    python benchmarks/ode.py                                   # gradients + posterior
    python benchmarks/ode.py --stan-python /tmp/stanvenv/bin/python   # + Stan
    python benchmarks/ode.py --quick                           # smoke run (compiled Op only)

The machine may be shared: timings are medians of repeats, and ratios measured side by side in
one run are what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _machine
import numpy as np

SCHEMA = "bayesjoint-benchmark-ode/1"
DATA = Path(__file__).resolve().parent / "data" / "hudson_lynx_hare.json"
PARAMS = ("alpha", "beta", "gamma", "delta", "hare0", "lynx0", "hare_sigma", "lynx_sigma")
# The posterior mean of the hare/lynx model (posteriordb reference), where gradients are timed.
POINT = {
    "alpha": 0.55,
    "beta": 0.028,
    "gamma": 0.80,
    "delta": 0.024,
    "hare0": 33.9,
    "lynx0": 5.9,
    "hare_sigma": 0.25,
    "lynx_sigma": 0.25,
}
SOLVER = {"method": "dopri5", "rtol": 1e-5, "atol": 1e-3}  # posteriordb: ode_rk45, 1e-5, 1e-3

STAN_PROGRAM = """
functions {
  vector dz_dt(real t, vector z, array[] real theta) {
    real u = z[1];
    real v = z[2];
    return [(theta[1] - theta[2] * v) * u, (-theta[3] + theta[4] * u) * v]';
  }
}
data {
  int<lower=0> N;
  array[N] real ts;
  array[2] real y_init;
  array[N, 2] real<lower=0> y;
}
parameters {
  array[4] real<lower=0> theta;
  array[2] real<lower=0> z_init;
  array[2] real<lower=0> sigma;
}
transformed parameters {
  array[N] vector[2] z = ode_rk45_tol(dz_dt, to_vector(z_init), 0, ts, 1e-5, 1e-3, 500, theta);
}
model {
  theta[{1, 3}] ~ normal(1, 0.5);
  theta[{2, 4}] ~ normal(0.05, 0.05);
  sigma ~ lognormal(-1, 1);
  z_init ~ lognormal(log(10), 1);
  for (k in 1:2) {
    y_init[k] ~ lognormal(log(z_init[k]), sigma[k]);
    y[ : , k] ~ lognormal(log(z[ : , k]), sigma[k]);
  }
}
"""

# Run by the Stan interpreter: argv = program, data, output .npz, chains, draws, warmup, seed.
STAN_RUNNER = """
import json, sys, time
import numpy as np
import stan

program, data_path, out_path = sys.argv[1:4]
chains, draws, warmup, seed = (int(a) for a in sys.argv[4:8])
data = json.load(open(data_path))
t0 = time.perf_counter()
posterior = stan.build(open(program).read(), data=data, random_seed=seed)
t1 = time.perf_counter()
fit = posterior.sample(num_chains=chains, num_samples=draws, num_warmup=warmup)
t2 = time.perf_counter()
arrays = {}
for name in ("theta", "z_init", "sigma", "divergent__", "n_leapfrog__"):
    a = np.asarray(fit[name])  # (dims..., draws * chains), draw-major: column = draw * chains + c
    a = a.reshape(-1, draws, chains).transpose(2, 1, 0)  # (chain, draw, k)
    arrays[name] = a
np.savez(out_path, **arrays)
import importlib.metadata as md
print(json.dumps({"build_s": t1 - t0, "sample_s": t2 - t1,
                  "versions": {p: md.version(p) for p in ("pystan", "httpstan")}}))
"""


def load_data() -> dict[str, Any]:
    return json.loads(DATA.read_text(encoding="utf-8"))


def observations(data: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(times, hare, lynx)``: t = 0 (``y_init``) then ``ts``; pelts in thousands."""
    times = np.concatenate([[0.0], np.asarray(data["ts"], dtype=float)])
    y = np.asarray(data["y"], dtype=float)
    hare = np.concatenate([[data["y_init"][0]], y[:, 0]])
    lynx = np.concatenate([[data["y_init"][1]], y[:, 1]])
    return times, hare, lynx


def lotka_volterra(t: Any, z: Any, params: Any) -> Any:
    """``dz/dt`` with ``params = (α, β, γ, δ)`` (one scalar tensor each)."""
    import pytensor.tensor as pt

    alpha, beta, gamma, delta = params
    u, v = z[0], z[1]
    return pt.stack([(alpha - beta * v) * u, (-gamma + delta * u) * v])


def lotka_volterra_vector(t: Any, z: Any, theta: Any) -> Any:
    """Same right-hand side, parameters as one vector ``θ = (α, β, γ, δ)``."""
    return lotka_volterra(t, z, (theta[0], theta[1], theta[2], theta[3]))


def build_problem(data: dict[str, Any], solver: dict[str, Any] | None = None) -> Any:
    """The hare/lynx model written with the package: two modalities sharing one ODE."""
    import pymc as pm
    import pytensor.tensor as pt

    import bayesjoint as bj
    from bayesjoint.physics.ode import ODE

    def truncated(mu: float, sigma: float) -> Any:
        def build(name: str, **kwargs: Any) -> Any:
            return pm.TruncatedNormal(name, mu=mu, sigma=sigma, lower=0.0, **kwargs)

        return bj.priors.PyMC(build, positive=True)

    times, hare, lynx = observations(data)
    latent = [
        bj.Parameter("alpha", prior=truncated(1.0, 0.5)),
        bj.Parameter("beta", prior=truncated(0.05, 0.05)),
        bj.Parameter("gamma", prior=truncated(1.0, 0.5)),
        bj.Parameter("delta", prior=truncated(0.05, 0.05)),
        bj.Parameter("hare0", prior=bj.priors.LogNormal(np.log(10.0), 1.0)),
        bj.Parameter("lynx0", prior=bj.priors.LogNormal(np.log(10.0), 1.0)),
    ]
    settings = dict(SOLVER if solver is None else solver)
    ode = {
        "params": ("alpha", "beta", "gamma", "delta"),
        "initial": ("hare0", "lynx0"),
        "t0": 0.0,
        **settings,
    }
    modalities = [
        bj.Modality(
            name,
            physics=ODE(lotka_volterra, times, component=k, **ode),
            observe=pt.log,
            data=np.log(values),
            noise=bj.noise.Gaussian(bj.priors.LogNormal(-1.0, 1.0)),
            units="log(thousand pelts)",
        )
        for k, (name, values) in enumerate((("hare", hare), ("lynx", lynx)))
    ]
    return bj.JointInversion(latent=latent, modalities=modalities)


# ------------------------------------------------------------------------------------------------
# gradient cost
# ------------------------------------------------------------------------------------------------
def _time_calls(fn: Any, args: tuple, repeat: int, number: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn(*args)
        times.append((time.perf_counter() - t0) / number)
    return times


def _loglik_graph(data: dict[str, Any], variant: str) -> tuple[list, Any]:
    """Inputs and log-likelihood (log-normal, both species) of the ODE through ``variant``."""
    import pytensor.tensor as pt

    from bayesjoint.physics.ode import rk4, solve_ode

    times, hare, lynx = observations(data)
    theta = pt.tensor("theta", dtype="float64", shape=(4,))
    z0 = pt.tensor("z0", dtype="float64", shape=(2,))
    sigma = pt.tensor("sigma", dtype="float64", shape=(2,))
    if variant == "scan":
        states = rk4(lotka_volterra_vector, z0, times, theta, substeps=10, backend="scan")
    elif variant == "op_rk4":
        states = rk4(lotka_volterra_vector, z0, times, theta, substeps=10, backend="compiled")
    else:
        states = solve_ode(lotka_volterra_vector, z0, times, theta, backend="compiled", **SOLVER)
    logy = np.log(np.stack([hare, lynx], axis=1))
    resid = (pt.constant(logy) - pt.log(states)) / sigma[None, :]
    loglik = -0.5 * pt.sum(resid**2) - times.size * pt.sum(pt.log(sigma))
    return [theta, z0, sigma], loglik


def gradient_cases(
    data: dict[str, Any], repeat: int, number: int, with_scan: bool
) -> dict[str, Any]:
    import pytensor

    point = (
        np.array([POINT[k] for k in ("alpha", "beta", "gamma", "delta")]),
        np.array([POINT["hare0"], POINT["lynx0"]]),
        np.array([POINT["hare_sigma"], POINT["lynx_sigma"]]),
    )
    cases = [("op_rk4", "FAST_RUN"), ("op_dopri5", "FAST_RUN"), ("op_dopri5", "NUMBA")]
    if with_scan:
        cases = [("scan", "FAST_RUN"), ("scan", "NUMBA"), *cases]
    out: dict[str, Any] = {}
    reference = None
    for variant, mode in cases:
        inputs, loglik = _loglik_graph(data, variant)
        t0 = time.perf_counter()
        fn = pytensor.function(inputs, [loglik, *pytensor.grad(loglik, inputs)], mode=mode)
        value = fn(*point)  # first call: numba compiles here (or loads its cache)
        compile_s = time.perf_counter() - t0
        fn.trust_input = True
        n = max(1, number // 50) if variant == "scan" else number
        times = _time_calls(fn, point, repeat, n)
        grad = np.concatenate([np.ravel(g) for g in value[1:]])
        if variant == "scan" and mode == "FAST_RUN":
            reference = grad
        case = {
            "variant": variant,
            "mode": mode,
            "compile_s": compile_s,
            "time_s": float(np.median(times)),
            "times_s": times,
            "calls_per_timing": n,
            "loglik": float(value[0]),
        }
        if reference is not None:
            case["max_rel_grad_diff_vs_scan"] = float(
                np.max(np.abs(grad - reference) / np.maximum(np.abs(reference), 1.0))
            )
        out[f"{variant}_{mode.lower()}"] = case
    if with_scan:
        base = out["scan_fast_run"]["time_s"]
        out["speedup_vs_scan_c"] = {k: base / v["time_s"] for k, v in out.items() if "time_s" in v}
    return out


def model_gradient(problem: Any, repeat: int, number: int) -> dict[str, Any]:
    """Seconds per call of the model's ``logp_dlogp_function`` (what NUTS evaluates)."""
    model = problem.model
    t0 = time.perf_counter()
    fn = model.logp_dlogp_function(ravel_inputs=True)
    fn.set_extra_values({})
    ip = model.initial_point()
    x = np.concatenate([np.ravel(ip[v.name]) for v in fn._grad_vars])
    fn(x)
    compile_s = time.perf_counter() - t0
    times = _time_calls(fn, (x,), repeat, number)
    return {"compile_s": compile_s, "time_s": float(np.median(times)), "times_s": times}


# ------------------------------------------------------------------------------------------------
# posterior
# ------------------------------------------------------------------------------------------------
def summarize(posterior: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Mean, sd, MCSE of the mean, bulk/tail ESS and R-hat of (chain, draw) arrays."""
    import arviz as az

    out = {}
    for name, draws in posterior.items():
        ary = np.asarray(draws, dtype=float)
        out[name] = {
            "mean": float(ary.mean()),
            "sd": float(ary.std(ddof=1)),
            "mcse_mean": float(np.ravel(az.mcse(ary, method="mean"))[0]),
            "ess_bulk": float(az.ess(ary, method="bulk")),
            "ess_tail": float(az.ess(ary, method="tail")),
            "r_hat": float(az.rhat(ary)),
        }
    return out


def stan_initial_values(chains: int, seed: int) -> list[dict[str, float]]:
    """Stan's default initialization: every unconstrained coordinate uniform on (-2, 2).

    All parameters here are positive (Stan's ``log`` transform), so each starts at
    ``exp(U(-2, 2))``, drawn independently per chain.
    """
    rng = np.random.default_rng(seed)
    return [{name: float(np.exp(rng.uniform(-2.0, 2.0))) for name in PARAMS} for _ in range(chains)]


def run_posterior(
    data: dict[str, Any],
    chains: int,
    draws: int,
    tune: int,
    seed: int,
    route: str,
    cores: Any,
    init: str,
) -> dict[str, Any]:
    problem = build_problem(data)
    kwargs: dict[str, Any] = {}
    if init == "stan":
        kwargs = {"initvals": stan_initial_values(chains, seed), "init": "adapt_diag"}
    t0 = time.perf_counter()
    idata = problem.sample(
        draws=draws,
        tune=tune,
        chains=chains,
        method=route,
        cores=cores,
        random_seed=seed,
        progressbar=False,
        **kwargs,
    )
    wall = time.perf_counter() - t0
    post = {name: idata.posterior[name].values for name in PARAMS}
    stats = idata.sample_stats
    steps = stats["n_steps"].values if "n_steps" in stats else None
    return {
        "route": route,
        "init": init,
        "chains": chains,
        "draws": draws,
        "tune": tune,
        "cores": cores,
        "wall_s": wall,
        "divergences": int(stats["diverging"].values.sum()),
        "mean_leapfrog_steps": None if steps is None else float(np.mean(steps)),
        "summary": summarize(post),
    }


def run_stan(
    python: str, data: dict[str, Any], chains: int, draws: int, warmup: int, seed: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "model.stan").write_text(STAN_PROGRAM, encoding="utf-8")
        (folder / "data.json").write_text(json.dumps(data), encoding="utf-8")
        (folder / "runner.py").write_text(STAN_RUNNER, encoding="utf-8")
        args = [str(folder / n) for n in ("runner.py", "model.stan", "data.json", "draws.npz")]
        t0 = time.perf_counter()
        proc = subprocess.run(
            [python, *args, str(chains), str(draws), str(warmup), str(seed)],
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - t0
        sys.stderr.write(proc.stderr[-4000:])
        if proc.returncode != 0:
            raise RuntimeError(f"Stan run failed ({proc.returncode}): {proc.stderr[-2000:]}")
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        arrays = dict(np.load(folder / "draws.npz"))
    post = {}
    for k, name in enumerate(("alpha", "beta", "gamma", "delta")):
        post[name] = arrays["theta"][:, :, k]
    post["hare0"], post["lynx0"] = arrays["z_init"][:, :, 0], arrays["z_init"][:, :, 1]
    post["hare_sigma"], post["lynx_sigma"] = arrays["sigma"][:, :, 0], arrays["sigma"][:, :, 1]
    return {
        "chains": chains,
        "draws": draws,
        "warmup": warmup,
        "process_wall_s": wall,
        "build_s": info["build_s"],
        "sample_s": info["sample_s"],
        "versions": info["versions"],
        "divergences": int(arrays["divergent__"].sum()),
        "mean_leapfrog_steps": float(arrays["n_leapfrog__"].mean()),
        "summary": summarize(post),
    }


def compare(ours: dict[str, Any], stan: dict[str, Any]) -> dict[str, Any]:
    per = {}
    for name in PARAMS:
        a, b = ours["summary"][name], stan["summary"][name]
        per[name] = {
            "z_mcse": (a["mean"] - b["mean"]) / float(np.hypot(a["mcse_mean"], b["mcse_mean"])),
            "sd_ratio": a["sd"] / b["sd"],
        }
    return {
        "wall_ratio_vs_stan_sampling": ours["wall_s"] / stan["sample_s"],
        "wall_ratio_vs_stan_build_and_sampling": ours["wall_s"]
        / (stan["build_s"] + stan["sample_s"]),
        "max_abs_z_mcse": max(abs(v["z_mcse"]) for v in per.values()),
        "sd_ratio_range": [
            min(v["sd_ratio"] for v in per.values()),
            max(v["sd_ratio"] for v in per.values()),
        ],
        "per_parameter": per,
    }


# ------------------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small and fast")
    parser.add_argument("--repeat", type=int, default=7, help="timings per gradient case")
    parser.add_argument("--number", type=int, default=500, help="calls per timing")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20250101)
    parser.add_argument(
        "--route", default="nuts-plain", help="JointInversion.sample(method=...) to time"
    )
    parser.add_argument(
        "--cores",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="parallel chains (default: min(4, CPUs), like Stan's parallel chains)",
    )
    parser.add_argument(
        "--init",
        choices=("stan", "pymc"),
        default="stan",
        help="chain starting points: Stan's default (exp(U(-2, 2)) per parameter and chain, "
        "as the Stan run gets) or PyMC's jitter around the prior moments",
    )
    parser.add_argument("--no-scan", action="store_true", help="skip the scan baselines")
    parser.add_argument("--no-posterior", action="store_true", help="gradients only")
    parser.add_argument(
        "--stan-python",
        default=os.environ.get("BAYESJOINT_STAN_PYTHON"),
        help="python of an environment with pystan 3 (default: $BAYESJOINT_STAN_PYTHON)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.number < 1 or min(args.chains, args.draws, args.tune) < 1:
        parser.error("--repeat, --number, --chains, --draws and --tune must be >= 1")
    if args.quick:
        args.repeat, args.number = min(args.repeat, 3), min(args.number, 50)
        args.chains, args.draws, args.tune = 2, 100, 100
        args.no_scan = True
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    data = load_data()
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "mode": "quick" if args.quick else "full",
        "machine": _machine.machine_info(
            ["numpy", "scipy", "pytensor", "pymc", "numba", "arviz", "bayesjoint"]
        ),
        "problem": {
            "data": "posteriordb hudson_lynx_hare",
            "model": "posteriordb lotka_volterra",
            "n_times": len(data["ts"]) + 1,
            "solver": SOLVER,
        },
        "repeat": args.repeat,
        "number": args.number,
    }
    result["gradient"] = gradient_cases(data, args.repeat, args.number, not args.no_scan)
    result["gradient"]["model_logp_dlogp"] = model_gradient(
        build_problem(data), args.repeat, args.number
    )
    if args.no_posterior:
        result["posterior"], result["posterior_reason"] = None, "--no-posterior"
    else:
        result["posterior"] = run_posterior(
            data, args.chains, args.draws, args.tune, args.seed, args.route, args.cores, args.init
        )
    if args.stan_python and not args.no_posterior:
        result["stan"] = run_stan(
            args.stan_python, data, args.chains, args.draws, args.tune, args.seed
        )
        result["comparison"] = compare(result["posterior"], result["stan"])
    else:
        result["stan"] = None
        result["stan_reason"] = (
            "--no-posterior" if args.no_posterior else "no --stan-python (pystan environment)"
        )
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return _machine.print_json(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
