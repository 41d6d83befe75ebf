"""Case study: one temperature seen by three thermometers, one of them drifting (sensor fusion).

A calibration bath is held at one temperature T for a two-hour session while three instruments
log it:

* ``prt``: a reference platinum resistance thermometer read by hand every 20 min
  (6 readings, standard uncertainty 0.05 °C);
* ``thermocouple``: a type-T thermocouple on a data logger, once a minute (120 readings,
  0.30 °C);
* ``thermistor``: a thermistor logger every 30 s (240 readings, 0.02 °C) whose calibration
  drifts slowly during the session (an offset and a ramp, each of order 0.1 °C).

The estimate of T is a weighted mean; the question is what the weights must be. Without a term
for the drift, the thermistor's 240 precise readings dominate (its precision n/σ² is 250 times
the reference thermometer's) and its drift becomes the error of T. The drift is modelled as a
Gaussian-process discrepancy in time on the thermistor
(:class:`bayesjoint.discrepancy.GP`, squared exponential, lengthscale 60 min, amplitude 0.1 °C,
the logger's stated drift), which keeps the problem linear-Gaussian.

Checks (``"checks"`` in the JSON line):

* ``sd_no_drift_exact``: the exact posterior sd without the drift term equals the textbook
  1/σ² = 1/σ0² + Σ_k n_k/σ_k² to rtol 1e-10;
* ``sd_no_drift_sampled``: the sd of ``problem.sample()`` draws is within 4 MCSE of it;
* ``sd_drift_exact``: with the drift term, the exact sd equals generalized least squares,
  1/σ² = 1/σ0² + n_A/σ_A² + n_B/σ_B² + 1ᵀ(σ_C² I + K)⁻¹1, to rtol 1e-10;
* ``budget_gains_closed_form`` and ``budget_ranks_instruments``: the information budget's gain
  of each instrument alone equals ½ ln(1 + σ0² P_k) (P_k the precision it brings), and it ranks
  the instruments as those precisions do: the thermistor first without the drift term, last
  with it;
* ``coverage_with_drift_nominal`` / ``coverage_without_drift_not_nominal``: over ≥ 200 replicate
  sessions (fresh drift and noise, exact posteriors), the central 90 % interval covers the true
  T at a rate inside the 99 % binomial band around 0.90 with the drift term, and outside it
  without;
* ``convergence``: :func:`bayesjoint.diagnose` passes on convergence for the sampled run.

    python case_studies/sensor_fusion.py [--quick] [--out FILE.nc] [--seed N] [--figure PNG]

Units: °C and minutes.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import arviz as az
import numpy as np
from bayesjoint_case_studies._plotting import pyplot, save
from bayesjoint_case_studies._runtime import one_blas_thread, study_parser
from bayesjoint_case_studies._verdict import convergence, exit_status, publish
from scipy import stats

import bayesjoint as bj
from bayesjoint.discrepancy import kernel_matrix
from bayesjoint.inference.checkpoint import add_checkpoint_arguments, use_checkpoint_folder

TRUE_T = 21.30  # °C, the bath's temperature during the session
PRIOR_MEAN, PRIOR_SD = 20.0, 5.0  # °C, the bath's nominal set-point, loosely
SESSION = 120.0  # min
#: name: (reading interval in min, standard uncertainty in °C, drifts)
INSTRUMENTS = {
    "prt": (20.0, 0.05, False),
    "thermocouple": (1.0, 0.30, False),
    "thermistor": (0.5, 0.02, True),
}
DRIFT_LENGTHSCALE = 60.0  # min, GP discrepancy lengthscale (slow drift)
DRIFT_AMPLITUDE = 0.10  # °C, GP discrepancy marginal sd (the logger's stated drift)
# The true drift of each replicate: offset + ramp over the session,
#   d(t) = d0 + r t / SESSION,   d0 ~ N(0, 0.08 °C),   r ~ N(0, 0.06 °C).
DRIFT_OFFSET_SD, DRIFT_RAMP_SD = 0.08, 0.06
LEVEL = 0.90
Z = stats.norm.ppf(0.5 + LEVEL / 2)  # half-width of the central 90 % interval in sd


def reading_times(name: str) -> np.ndarray:
    """Times (min) of an instrument's readings: every interval from 0 to the session's end."""
    step = INSTRUMENTS[name][0]
    return np.arange(0.0, SESSION, step)


def drift_covariance() -> np.ndarray:
    """The thermistor's GP discrepancy covariance K (°C²) at its reading times."""
    t = reading_times("thermistor")[:, None]
    return kernel_matrix(
        t, t, "squared_exponential", lengthscale=DRIFT_LENGTHSCALE, amplitude=DRIFT_AMPLITUDE
    )


def simulate(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One session's readings (and the thermistor's true drift)."""
    data: dict[str, np.ndarray] = {}
    for name, (_, sd, drifts) in INSTRUMENTS.items():
        t = reading_times(name)
        values = TRUE_T + sd * rng.standard_normal(t.size)
        if drifts:
            drift = rng.normal(0.0, DRIFT_OFFSET_SD) + rng.normal(0.0, DRIFT_RAMP_SD) * t / SESSION
            values = values + drift
            data["drift"] = drift
        data[name] = values
    return data


def build(data: dict[str, np.ndarray], drift: bool) -> bj.JointInversion:
    """The fusion problem: one temperature, three instruments (± the drift term)."""
    temperature = bj.Parameter(
        "temperature", prior=bj.priors.Normal(PRIOR_MEAN, PRIOR_SD), units="degC"
    )
    modalities = []
    for name, (_, sd, drifts) in INSTRUMENTS.items():
        t = reading_times(name)
        gp = None
        if drifts and drift:
            gp = bj.discrepancy.GP(
                "squared_exponential", lengthscale=DRIFT_LENGTHSCALE, amplitude=DRIFT_AMPLITUDE
            )
        modalities.append(
            bj.Modality(
                name,
                bj.physics.Linear(np.ones((t.size, 1)), input="temperature"),
                data[name],
                bj.noise.Gaussian(sd),
                units="degC",
                dims=f"{name}_time",
                coords={f"{name}_time": t},
                discrepancy=gp,
            )
        )
    return bj.JointInversion([temperature], modalities)


def precisions(drift: bool) -> dict[str, float]:
    """P_k (1/°C²): the precision on T that each instrument brings, by hand.

    n_k/σ_k² for white noise; 1ᵀ(σ² I + K)⁻¹1 (generalized least squares) for the drifting
    thermistor when the drift term is in the model.
    """
    out = {}
    for name, (_, sd, drifts) in INSTRUMENTS.items():
        n = reading_times(name).size
        if drifts and drift:
            cov = sd**2 * np.eye(n) + drift_covariance()
            out[name] = float(np.ones(n) @ np.linalg.solve(cov, np.ones(n)))
        else:
            out[name] = n / sd**2
    return out


def closed_form_sd(drift: bool) -> float:
    """Posterior sd of T: 1/σ² = 1/σ0² + Σ_k P_k."""
    return float(1.0 / np.sqrt(1.0 / PRIOR_SD**2 + sum(precisions(drift).values())))


def budget_figures(problem: bj.JointInversion, drift: bool) -> dict[str, Any]:
    """Each instrument's information gain alone (nats) from the budget and by hand."""
    budget = problem.information_budget()
    gains = dict(
        zip(
            budget["modality"].values.tolist(),
            budget["information_gain_alone"].values.tolist(),
            strict=True,
        )
    )
    by_hand = {k: 0.5 * np.log1p(PRIOR_SD**2 * p) for k, p in precisions(drift).items()}
    return {
        "gain_alone": {k: round(v, 4) for k, v in gains.items()},
        "gain_alone_closed_form": {k: round(float(v), 4) for k, v in by_hand.items()},
        "max_rel_error": float(max(abs(gains[k] / by_hand[k] - 1.0) for k in by_hand)),
        "ranking": sorted(gains, key=gains.get, reverse=True),
        "ranking_by_precision": sorted(by_hand, key=by_hand.get, reverse=True),
        "precision_share": dict(
            zip(
                budget["modality"].values.tolist(),
                budget["precision_share"].values[:, 0].round(4).tolist(),
                strict=True,
            )
        ),
    }


def coverage_study(n_replicates: int, seed: int) -> dict[str, Any]:
    """Coverage of the true T by 90 % intervals over replicate sessions (exact posteriors)."""
    seqs = np.random.SeedSequence([seed, 1]).spawn(n_replicates)
    out: dict[str, Any] = {}
    intervals: dict[str, list] = {"with_drift": [], "without_drift": []}
    for seq in seqs:
        data = simulate(np.random.default_rng(seq))
        for key, drift in (("with_drift", True), ("without_drift", False)):
            post = build(data, drift).exact_posterior()
            mean, sd = float(post["mean"][0]), float(post["sd"][0])
            intervals[key].append((mean - Z * sd, mean + Z * sd))
    lo, hi = stats.binom.ppf([0.005, 0.995], n_replicates, LEVEL) / n_replicates
    out["binomial_band99"] = [float(lo), float(hi)]
    for key, ivs in intervals.items():
        arr = np.array(ivs)
        covered = (arr[:, 0] <= TRUE_T) & (TRUE_T <= arr[:, 1])
        centre = arr.mean(axis=1)
        out[key] = {
            "coverage90": float(covered.mean()),
            "rmse": round(float(np.sqrt(np.mean((centre - TRUE_T) ** 2))), 5),
            "mean_sd": round(float(np.mean(arr[:, 1] - arr[:, 0]) / (2 * Z)), 5),
        }
    out["intervals"] = {k: np.array(v) for k, v in intervals.items()}
    return out


def sampled_sd(idata: az.InferenceData) -> dict[str, float]:
    """Posterior mean and sd of T from draws, with their Monte-Carlo standard errors."""
    x = idata.posterior["temperature"].values  # (chain, draw)
    mean, sd = float(x.mean()), float(x.std())
    # Delta method: var(ŝ) ≈ var((x − μ)²) / (4 s² ESS of (x − μ)²) (as ArviZ's mcse "sd").
    sq = (x - mean) ** 2
    ess_sq = float(az.ess(sq))
    return {
        "mean": mean,
        "sd": sd,
        "mcse_mean": sd / np.sqrt(float(az.ess(x))),
        "mcse_sd": float(np.sqrt(sq.var() / ess_sq) / (2.0 * sd)),
    }


def drift_posterior(data: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and sd of the thermistor's drift (dense algebra on (T, δ), figure only)."""
    names = list(INSTRUMENTS)
    sizes = [reading_times(n).size for n in names]
    n_c = sizes[-1]
    p = np.zeros((1 + n_c, 1 + n_c))
    p[0, 0] = PRIOR_SD**2
    p[1:, 1:] = drift_covariance()
    rows, noise, y = [], [], []
    for name, n in zip(names, sizes, strict=True):
        h = np.zeros((n, 1 + n_c))
        h[:, 0] = 1.0
        if INSTRUMENTS[name][2]:
            h[:, 1:] = np.eye(n)
        rows.append(h)
        noise.append(np.full(n, INSTRUMENTS[name][1] ** 2))
        y.append(data[name])
    h, y = np.vstack(rows), np.concatenate(y)
    m0 = np.zeros(1 + n_c)
    m0[0] = PRIOR_MEAN
    s = h @ p @ h.T + np.diag(np.concatenate(noise))
    gain = np.linalg.solve(s, h @ p).T
    mean = m0 + gain @ (y - h @ m0)
    cov = p - gain @ h @ p
    return mean[1:], np.sqrt(np.clip(np.diag(cov)[1:], 0.0, None))


def plot(path: str, data: dict, posts: dict, coverage: dict, budgets: dict) -> str | None:
    """Readings and estimates of replicate 0, drift, intervals over replicates, the budget."""
    plt = pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.4), constrained_layout=True)
    ax = axes[0, 0]
    colours = {"prt": "C0", "thermocouple": "C7", "thermistor": "C1"}
    for name in INSTRUMENTS:
        size = 8 if name == "prt" else 3
        ax.plot(reading_times(name), data[name], "o", ms=size, color=colours[name], label=name)
    ax.axhline(TRUE_T, color="k", lw=1, label="true T")
    for key in ("with_drift", "without_drift"):
        mean, sd = posts[key]
        ax.axhspan(
            mean - Z * sd,
            mean + Z * sd,
            color="C2" if key == "with_drift" else "C3",
            alpha=0.3,
            label=f"90 % interval, {key.replace('_', ' ')}",
        )
    ax.set_ylim(TRUE_T - 0.5, TRUE_T + 0.5)
    ax.set_xlabel("time (min)")
    ax.set_ylabel("°C")
    ax.set_title("one session's readings and the fused estimates", fontsize=9)
    ax.legend(fontsize=6, ncol=2, loc="lower left")
    ax = axes[0, 1]
    t = reading_times("thermistor")
    mean, sd = drift_posterior(data)
    ax.plot(t, data["drift"], "k", lw=1, label="true drift")
    ax.plot(t, mean, "C1", label="posterior mean (GP discrepancy)")
    ax.fill_between(t, mean - Z * sd, mean + Z * sd, color="C1", alpha=0.3, label="90 % band")
    ax.set_xlabel("time (min)")
    ax.set_ylabel("°C")
    ax.set_title("the thermistor's drift, recovered", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    n_show = 40
    for j, (key, colour) in enumerate((("with_drift", "C2"), ("without_drift", "C3"))):
        ivs = coverage["intervals"][key][:n_show]
        x = np.arange(n_show) + (0.2 if j else -0.2)
        ax.vlines(
            x,
            ivs[:, 0],
            ivs[:, 1],
            color=colour,
            lw=2,
            label=f"{key.replace('_', ' ')}: coverage {coverage[key]['coverage90']:.3f}",
        )
    ax.axhline(TRUE_T, color="k", lw=1)
    ax.set_xlabel("replicate session")
    ax.set_ylabel("90 % interval of T (°C)")
    ax.set_title(f"coverage over {coverage['n_replicates']} sessions (first {n_show})", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    names = list(INSTRUMENTS)
    x = np.arange(len(names))
    for j, (key, colour) in enumerate((("without_drift", "C3"), ("with_drift", "C2"))):
        gains = [budgets[key]["gain_alone"][n] for n in names]
        ax.bar(
            x + (0.2 if j else -0.2), gains, width=0.4, color=colour, label=key.replace("_", " ")
        )
    ax.set_xticks(x, names)
    ax.set_ylabel("information gain alone (nats)")
    ax.set_title("information budget: what each instrument tells", fontsize=9)
    ax.legend(fontsize=7)
    return save(fig, path)


def main(argv: list[str] | None = None) -> dict:
    """Run the study; return the figures (also printed as the last stdout line)."""
    with one_blas_thread():
        return _main(argv)


def _main(argv: list[str] | None) -> dict:
    parser = study_parser(
        __doc__, "sensor_fusion", quick="200 replicates, fewer draws (CI)", seed=3
    )
    add_checkpoint_arguments(parser)
    args = parser.parse_args(argv)
    use_checkpoint_folder(args.checkpoint, resume=args.resume)
    start = time.perf_counter()
    n_replicates = 200 if args.quick else 1000
    settings = {"draws": 250} if args.quick else {}

    data = simulate(np.random.default_rng([args.seed, 0]))
    problems = {"with_drift": build(data, True), "without_drift": build(data, False)}
    exact = {k: p.exact_posterior() for k, p in problems.items()}
    posts = {k: (float(e["mean"][0]), float(e["sd"][0])) for k, e in exact.items()}
    closed = {k: closed_form_sd(k == "with_drift") for k in problems}
    rel = {k: abs(posts[k][1] / closed[k] - 1.0) for k in problems}

    # The default sampler: sample() takes the exact route (linear-Gaussian, fixed drift kernel).
    sampled, idatas = {}, {}
    for j, (key, problem) in enumerate(problems.items()):
        idatas[key] = problem.sample(random_seed=args.seed + j, progressbar=False, **settings)
        sampled[key] = sampled_sd(idatas[key])
        sampled[key]["route"] = idatas[key].posterior.attrs.get("route")
    nd = sampled["without_drift"]
    sd_gap_mcse = abs(nd["sd"] - closed["without_drift"]) / nd["mcse_sd"]
    mean_gap_mcse = abs(nd["mean"] - posts["without_drift"][0]) / nd["mcse_mean"]
    conv = convergence(idatas["with_drift"])

    budgets = {k: budget_figures(p, k == "with_drift") for k, p in problems.items()}
    coverage = coverage_study(n_replicates, args.seed)
    coverage["n_replicates"] = n_replicates
    band = coverage["binomial_band99"]
    cov_with = coverage["with_drift"]["coverage90"]
    cov_without = coverage["without_drift"]["coverage90"]

    figures: dict[str, Any] = {
        "case_study": "sensor_fusion",
        "true_temperature": TRUE_T,
        "instruments": {
            k: {"n": int(reading_times(k).size), "sd": v[1], "drifts": v[2]}
            for k, v in INSTRUMENTS.items()
        },
        "precision_per_instrument": {
            k: {n: round(p, 2) for n, p in precisions(k == "with_drift").items()} for k in problems
        },
        "posterior": {
            k: {
                "mean": round(posts[k][0], 5),
                "sd": posts[k][1],
                "sd_closed_form": closed[k],
                "sd_rel_error": rel[k],
                "sampled": sampled[k],
            }
            for k in problems
        },
        "sd_no_drift_sampled_gap_in_mcse": round(sd_gap_mcse, 3),
        "mean_no_drift_sampled_gap_in_mcse": round(mean_gap_mcse, 3),
        "budget": budgets,
        "coverage": {k: v for k, v in coverage.items() if k != "intervals"},
        "convergence": conv,
        "sampler_settings": {"draws": settings.get("draws", 1000), "chains": 4},
    }
    ranks = {k: b["ranking"] == b["ranking_by_precision"] for k, b in budgets.items()}
    checks = {
        "sd_no_drift_exact": rel["without_drift"] <= 1e-10,
        "sd_no_drift_sampled": sd_gap_mcse <= 4.0 and mean_gap_mcse <= 4.0,
        "sd_drift_exact": rel["with_drift"] <= 1e-10,
        "budget_gains_closed_form": all(b["max_rel_error"] <= 1e-8 for b in budgets.values()),
        "budget_ranks_instruments": all(ranks.values())
        and budgets["without_drift"]["ranking"][0] == "thermistor"
        and budgets["with_drift"]["ranking"][-1] == "thermistor",
        "coverage_with_drift_nominal": band[0] <= cov_with <= band[1],
        "coverage_without_drift_not_nominal": not band[0] <= cov_without <= band[1],
        "convergence": conv["passed"],
    }
    png = args.figure or os.path.splitext(args.out)[0] + ".png"
    figures["figure"] = plot(png, data, posts, coverage, budgets)
    return publish(figures, checks, idatas["with_drift"], "sensor_fusion", args.out, start)


if __name__ == "__main__":
    sys.exit(exit_status(main(sys.argv[1:])))
