"""Case study: a porosity map of a stone slab from ultrasonic velocity and surface resistivity.

A water-saturated sandstone slab (200 × 100 mm face, 30 mm thick) is tested non-destructively
to map its porosity, which has a weathered, more porous patch. Two standard tests see it:

* ``ultrasonic``: a through-transmission pulse-velocity scan (a C-scan): at every cell the
  transit time of a compressional pulse through the thickness, t = D s with s the slowness;
  noise 0.04 µs on about 8 µs (0.5 %);
* ``resistivity``: a Wenner probe (electrode spacing 20 mm) placed on the face over every cell;
  each reading is the log apparent resistivity, a weighted average of the log resistivity
  under the probe (a Gaussian footprint of sd 10 mm whose weights sum to one, so that a
  uniform face reads its own resistivity: a simplified stand-in for the probe's sensitivity
  pattern, used both to simulate and to invert); noise 3 %.

Neither measures porosity. Rock physics links them to it, each only approximately:

* **Wyllie's time average**, s = φ/V_f + (1 − φ)/V_m (V_m = 5500 m/s quartz, V_f = 1500 m/s
  water): linear in φ, a :class:`~bayesjoint.coupling.Petrophysical` ``"linear"`` link from
  porosity to slowness whose scatter is learned (prior HalfNormal(10 µs/m));
* **Archie's law**, ρ = R_w F with formation factor F = φ^(−m) (m = 2): the resistivity latent is
  the log formation factor, the probe reads ln F + ln R_w, and the pore-fluid (brine)
  resistivity R_w is unknown (prior ln R_w ~ N(ln 0.3 Ω·m, 1)). The link ln F ≈ −m ln φ is used
  in its tangent-linear form about φ̂, the porosity the ultrasonic scan alone gives:
  ln F ≈ −m ln φ̂ − m (φ − φ̂)/φ̂; its scatter is learned too (prior HalfNormal(0.15)). The data
  are simulated with the exact law; the linearization error on the true model is reported
  (``archie_linearization_error``) and is well below the scatter.

With the two scatters fixed the problem is linear-Gaussian, so ``problem.sample()`` takes the
collapsed route: NUTS on the two scatters with the three maps and ln R_w integrated out exactly
(no funnel between a scatter and the values it spreads). Each instrument alone and the
information budget use the exact posterior with the scatters fixed at their posterior means.

Checks (``"checks"`` in the JSON line):

* ``porosity_recovered``: the true porosity lies in its central 90 % interval in at least 80 %
  of the cells, and the joint map's error is below the ultrasonic-alone map's;
* ``fluid_resistivity_recovered``: the true R_w lies in its central 90 % interval;
* ``budget_each_measurement_adds``: the information budget gives each instrument a positive
  gain on top of the other, and ln R_w's sd without the resistivity data stays near its prior
  (> 0.9) and without the ultrasonic data is at least twice the joint sd;
* ``archie_linearization_small``: the tangent-linear Archie error on the true model is below
  half the true scatter;
* ``convergence``: :func:`bayesjoint.diagnose` passes on convergence.

    python case_studies/materials_porosity.py [--quick] [--out FILE.nc] [--seed N] [--figure PNG]

Units: metres for positions, µs/m for slowness, µs for transit times, Ω·m for resistivity.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
from bayesjoint_case_studies._plotting import pyplot, save
from bayesjoint_case_studies._runtime import one_blas_thread, study_parser
from bayesjoint_case_studies._verdict import convergence, exit_status, publish
from scipy import stats

import bayesjoint as bj
from bayesjoint.coupling import Petrophysical, archie, wyllie

V_MATRIX, V_FLUID = 5500.0, 1500.0  # m/s
M_CEMENT = 2.0
THICKNESS = 0.03  # m
TRUE_RW = 0.45  # Ω·m, the brine's resistivity (unknown to the inversion)
TRUE_WYLLIE_SCATTER = 5.0  # µs/m, sd of slowness about Wyllie in the synthetic stone
TRUE_ARCHIE_SCATTER = 0.06  # sd of ln F about Archie
TT_SD = 0.04  # µs, transit-time noise
ERT_SD = 0.03  # ln ρa noise (3 %)
FOOTPRINT = 0.010  # m, sd of the probe's Gaussian footprint
PHI_MEAN, PHI_SD = 0.18, 0.05
CORRELATION = 0.03  # m, prior correlation length of the three maps
SLOWNESS_SD = 40.0  # µs/m, prior sd of slowness about Wyllie(φ̄)
LOG_F_SD = 0.6
LOG_RW_PRIOR = (np.log(0.3), 1.0)
WYLLIE_SCATTER_PRIOR, ARCHIE_SCATTER_PRIOR = 10.0, 0.15  # HalfNormal scales
LEVEL = 0.90
Z90 = stats.norm.ppf(0.5 + LEVEL / 2)
SLOPE_US = 1e6 * (1.0 / V_FLUID - 1.0 / V_MATRIX)  # µs/m per unit porosity
INTERCEPT_US = 1e6 / V_MATRIX  # µs/m


def make_grid(quick: bool) -> bj.Grid:
    """The slab's face, 200 × 100 mm: 10 × 5 cells of 20 mm (quick) or 14 × 7 of 14.3 mm."""
    nx = 10 if quick else 14
    return bj.Grid.from_edges(x=np.linspace(0.0, 0.2, nx + 1), y=np.linspace(0.0, 0.1, nx // 2 + 1))


def true_porosity(grid: bj.Grid) -> np.ndarray:
    """Sound stone (φ ≈ 0.16, a gentle trend) with a weathered patch (φ up to 0.27)."""
    x, y = np.meshgrid(grid.centers["x"], grid.centers["y"], indexing="ij")
    patch = np.exp(-(((x - 0.065) / 0.035) ** 2) - ((y - 0.06) / 0.03) ** 2)
    return 0.15 + 0.1 * x + 0.11 * patch


def probe_operator(grid: bj.Grid) -> tuple[np.ndarray, np.ndarray]:
    """Footprint weights (rows sum to one) of a probe reading at every cell centre, and where."""
    x, y = np.meshgrid(grid.centers["x"], grid.centers["y"], indexing="ij")
    probes = np.column_stack([x.ravel(), y.ravel()])
    d2 = ((probes[:, None, :] - probes[None, :, :]) ** 2).sum(-1)
    weights = np.exp(-0.5 * d2 / FOOTPRINT**2)
    return weights / weights.sum(axis=1, keepdims=True), probes


def simulate(grid: bj.Grid, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The synthetic slab and its two data sets (exact Wyllie and Archie plus scatter)."""
    phi = true_porosity(grid)
    slowness = 1e6 / wyllie(phi, V_MATRIX, V_FLUID)
    slowness = slowness + TRUE_WYLLIE_SCATTER * rng.standard_normal(grid.shape)
    log_f = np.log(archie(phi, rw=1.0, m=M_CEMENT)) + TRUE_ARCHIE_SCATTER * rng.standard_normal(
        grid.shape
    )
    w, _ = probe_operator(grid)
    tt = THICKNESS * slowness.ravel() + TT_SD * rng.standard_normal(grid.size)
    ert = w @ (log_f.ravel() + np.log(TRUE_RW)) + ERT_SD * rng.standard_normal(w.shape[0])
    return {
        "porosity": phi,
        "slowness": slowness,
        "log_formation_factor": log_f,
        "ultrasonic": tt,
        "resistivity": ert,
    }


def build(
    grid: bj.Grid,
    data: dict,
    phi_hat: np.ndarray,
    scatter: dict[str, Any] | None = None,
    which: tuple[str, ...] = ("ultrasonic", "resistivity"),
) -> bj.JointInversion:
    """The slab problem: three maps and ln R_w, the chosen instruments, the two soft links.

    ``scatter`` fixes the links' scatters (exact path); by default they are learned.
    """
    scatter = scatter or {
        "wyllie": bj.priors.HalfNormal(WYLLIE_SCATTER_PRIOR),
        "archie": bj.priors.HalfNormal(ARCHIE_SCATTER_PRIOR),
    }
    porosity = bj.Field(
        "porosity", grid, bj.priors.GaussianField(PHI_SD, CORRELATION, mean=PHI_MEAN), units="1"
    )
    slowness = bj.Field(
        "slowness",
        grid,
        bj.priors.GaussianField(SLOWNESS_SD, CORRELATION, mean=INTERCEPT_US + SLOPE_US * PHI_MEAN),
        units="us/m",
    )
    log_f = bj.Field(
        "log_formation_factor",
        grid,
        bj.priors.GaussianField(LOG_F_SD, CORRELATION, mean=-M_CEMENT * np.log(PHI_MEAN)),
        units="1",
    )
    log_rw = bj.Parameter("log_rw", prior=bj.priors.Normal(*LOG_RW_PRIOR), units="ln(ohm m)")
    mods = []
    if "ultrasonic" in which:
        mods.append(
            bj.Modality(
                "ultrasonic",
                bj.physics.Linear(
                    THICKNESS * sp.identity(grid.size, format="csr"), input="slowness"
                ),
                data["ultrasonic"],
                bj.noise.Gaussian(TT_SD),
                units="us",
            )
        )
    if "resistivity" in which:
        w, _ = probe_operator(grid)
        mods.append(
            bj.Modality(
                "resistivity",
                bj.physics.Linear(
                    np.hstack([w, np.ones((w.shape[0], 1))]),
                    input=["log_formation_factor", "log_rw"],
                ),
                data["resistivity"],
                bj.noise.Gaussian(ERT_SD),
                units="ln(ohm m)",
            )
        )
    links = [
        Petrophysical(
            "porosity",
            "slowness",
            "linear",
            scatter=scatter["wyllie"],
            parameters={"slope": SLOPE_US, "intercept": INTERCEPT_US},
            name="wyllie_link",
        ),
        Petrophysical(
            "porosity",
            "log_formation_factor",
            "linear",
            scatter=scatter["archie"],
            parameters={
                "slope": -M_CEMENT / phi_hat,
                "intercept": -M_CEMENT * np.log(phi_hat) + M_CEMENT,
            },
            name="archie_link",
        ),
    ]
    return bj.JointInversion([porosity, slowness, log_f, log_rw], mods, couplings=links)


def ultrasonic_porosity(grid: bj.Grid, data: dict) -> np.ndarray:
    """φ̂: the porosity the ultrasonic scan alone gives (Wyllie scatter at its prior median)."""
    median = float(stats.halfnorm.median(scale=WYLLIE_SCATTER_PRIOR))
    dummy = np.ones(grid.shape) * PHI_MEAN
    problem = build(grid, data, dummy, {"wyllie": median, "archie": 1.0}, which=("ultrasonic",))
    post = problem.exact_posterior()
    phi = post["mean"].values[post["latent"].values == "porosity"]
    return np.clip(phi.reshape(grid.shape), 0.05, 0.5)


def exact_maps(problem: bj.JointInversion, grid: bj.Grid) -> dict[str, tuple]:
    post = problem.exact_posterior()
    out = {}
    for name in ("porosity", "log_rw"):
        sel = post["latent"].values == name
        out[name] = (post["mean"].values[sel], post["sd"].values[sel])
    return out


def map_summary(mean, lo, hi, truth) -> dict[str, float]:
    mean, lo, hi, truth = (np.ravel(a) for a in (mean, lo, hi, truth))
    return {
        "rmse": round(float(np.sqrt(np.mean((mean - truth) ** 2))), 5),
        "coverage90": round(float(np.mean((lo <= truth) & (truth <= hi))), 4),
        "mean_width90": round(float(np.mean(hi - lo)), 5),
    }


def plot(path: str, grid: bj.Grid, data: dict, maps: dict, rw: dict) -> str | None:
    """Porosity maps (truth, each instrument alone, joint), joint sd, and R_w."""
    plt = pyplot()
    if plt is None:
        return None
    ex, ey = grid.edges["x"] * 1000, grid.edges["y"] * 1000
    fig, axes = plt.subplots(3, 2, figsize=(10, 8.0), constrained_layout=True)
    lo, hi = float(data["porosity"].min()) - 0.03, float(data["porosity"].max()) + 0.03
    panels = [
        ("true porosity", data["porosity"], "viridis", (lo, hi)),
        ("joint posterior mean", maps["joint"], "viridis", (lo, hi)),
        ("ultrasonic alone (Wyllie link)", maps["ultrasonic_only"], "viridis", (lo, hi)),
        (
            "resistivity alone (Archie link, R_w unknown)",
            maps["resistivity_only"],
            "viridis",
            (lo, hi),
        ),
        ("joint posterior sd", maps["joint_sd"], "magma", (0.0, float(maps["joint_sd"].max()))),
    ]
    _, probes = probe_operator(grid)
    for ax, (title, values, cmap, (vmin, vmax)) in zip(axes.ravel(), panels, strict=False):
        im = ax.pcolormesh(
            ex, ey, np.asarray(values).reshape(grid.shape).T, cmap=cmap, vmin=vmin, vmax=vmax
        )
        if "resistivity" in title:
            ax.plot(probes[:, 0] * 1000, probes[:, 1] * 1000, "w+", ms=5)
        ax.set_title(title, fontsize=9)
        ax.set_aspect("equal")
        ax.set_xlabel("x (mm)")
        ax.set_ylabel("y (mm)")
        fig.colorbar(im, ax=ax, shrink=0.8)
    ax = axes[2, 1]
    names = list(rw)
    for k, name in enumerate(names):
        centre, half = rw[name]
        ax.errorbar(k, centre, yerr=half, fmt="o", capsize=4, color=f"C{k}")
    ax.axhline(TRUE_RW, color="k", lw=1, label="true R_w")
    ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("R_w (Ω·m), 90 % interval")
    ax.set_title("pore-fluid resistivity", fontsize=9)
    ax.legend(fontsize=7)
    return save(fig, path)


def main(argv: list[str] | None = None) -> dict:
    """Run the study; return the figures (also printed as the last stdout line)."""
    with one_blas_thread():
        return _main(argv)


def _main(argv: list[str] | None) -> dict:
    parser = study_parser(
        __doc__, "materials_porosity", quick="10 x 5 cells, short chains (CI)", seed=4
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    grid = make_grid(args.quick)
    data = simulate(grid, np.random.default_rng(args.seed))
    phi_hat = ultrasonic_porosity(grid, data)
    truth_log_f_tangent = (
        -M_CEMENT * np.log(phi_hat) - M_CEMENT * (data["porosity"] - phi_hat) / phi_hat
    )
    lin_error = float(np.max(np.abs(truth_log_f_tangent + M_CEMENT * np.log(data["porosity"]))))

    problem = build(grid, data, phi_hat)
    settings = {"draws": 2000, "tune": 1000} if args.quick else {}
    tic = time.perf_counter()
    idata = problem.sample(random_seed=args.seed, progressbar=False, **settings)
    sample_s = time.perf_counter() - tic
    post = idata.posterior
    conv = convergence(idata, var_names=["wyllie_link_scatter", "archie_link_scatter", "log_rw"])

    phi_draws = post["porosity"]
    q = phi_draws.quantile([0.05, 0.95], dim=("chain", "draw")).values
    phi_mean = phi_draws.mean(("chain", "draw")).values
    rw_draws = np.exp(post["log_rw"].values.ravel())
    rw_lo, rw_hi = np.quantile(rw_draws, [0.05, 0.95])
    scatter_post = {k: post[f"{k}_link_scatter"].values.ravel() for k in ("wyllie", "archie")}
    true_scatter = {"wyllie": TRUE_WYLLIE_SCATTER, "archie": TRUE_ARCHIE_SCATTER}
    fixed = {k: float(v.mean()) for k, v in scatter_post.items()}

    # Each instrument alone, and the budget: exact, with the scatters at their posterior means.
    alone = {
        "joint_fixed_scatter": build(grid, data, phi_hat, fixed),
        "ultrasonic_only": build(grid, data, phi_hat, fixed, which=("ultrasonic",)),
        "resistivity_only": build(grid, data, phi_hat, fixed, which=("resistivity",)),
    }
    exact = {k: exact_maps(p, grid) for k, p in alone.items()}
    inversions: dict[str, Any] = {
        "joint": {
            "porosity": map_summary(phi_mean, q[0], q[1], data["porosity"]),
            "rw_interval90": [round(float(rw_lo), 4), round(float(rw_hi), 4)],
            "rw_median": round(float(np.median(rw_draws)), 4),
        }
    }
    for k, e in exact.items():
        m, s = e["porosity"]
        lm, ls = float(e["log_rw"][0][0]), float(e["log_rw"][1][0])
        inversions[k] = {
            "porosity": map_summary(m, m - Z90 * s, m + Z90 * s, data["porosity"]),
            "rw_interval90": [
                round(float(np.exp(lm - Z90 * ls)), 4),
                round(float(np.exp(lm + Z90 * ls)), 4),
            ],
            "log_rw_sd": round(ls, 4),
        }
    budget = alone["joint_fixed_scatter"].information_budget()
    gains = {
        "information_gain_alone": dict(
            zip(
                budget["modality"].values.tolist(),
                budget["information_gain_alone"].values.round(2).tolist(),
                strict=True,
            )
        ),
        "information_gain_added": dict(
            zip(
                budget["modality"].values.tolist(),
                budget["information_gain_added"].values.round(2).tolist(),
                strict=True,
            )
        ),
    }
    system = alone["joint_fixed_scatter"].linear_gaussian_system()
    sel = np.asarray(system.latent_of) == "log_rw"
    log_rw_sd = {"prior": LOG_RW_PRIOR[1]}
    for key, drop in (
        ("joint", []),
        ("without_resistivity", ["resistivity"]),
        ("without_ultrasonic", ["ultrasonic"]),
    ):
        log_rw_sd[key] = round(float(system.without(drop).posterior()["sd"].values[sel][0]), 4)
    porosity_sd = {}
    sel_phi = np.asarray(system.latent_of) == "porosity"
    for key, drop in (
        ("joint", []),
        ("without_resistivity", ["resistivity"]),
        ("without_ultrasonic", ["ultrasonic"]),
    ):
        porosity_sd[key] = round(
            float(system.without(drop).posterior()["sd"].values[sel_phi].mean()), 5
        )

    figures: dict[str, Any] = {
        "case_study": "materials_porosity",
        "grid": list(grid.shape),
        "n_ultrasonic": int(grid.size),
        "n_resistivity": int(data["resistivity"].size),
        "archie_linearization_error": round(lin_error, 5),
        "true": {
            "rw": TRUE_RW,
            "wyllie_scatter": TRUE_WYLLIE_SCATTER,
            "archie_scatter": TRUE_ARCHIE_SCATTER,
        },
        "scatter_posterior": {
            k: {
                "mean": round(float(v.mean()), 4),
                "interval98": [round(float(x), 4) for x in np.quantile(v, [0.01, 0.99])],
                "truth_in_interval98": bool(
                    np.quantile(v, 0.01) <= true_scatter[k] <= np.quantile(v, 0.99)
                ),
            }
            for k, v in scatter_post.items()
        },
        "inversions": inversions,
        "budget": {**gains, "log_rw_sd": log_rw_sd, "porosity_mean_sd": porosity_sd},
        "route": post.attrs.get("route"),
        "sample_seconds": round(sample_s, 1),
        "convergence": conv,
    }
    joint_phi = inversions["joint"]["porosity"]
    checks = {
        "porosity_recovered": joint_phi["coverage90"] >= 0.8
        and joint_phi["rmse"] < inversions["ultrasonic_only"]["porosity"]["rmse"],
        "fluid_resistivity_recovered": bool(rw_lo <= TRUE_RW <= rw_hi),
        "budget_each_measurement_adds": all(v > 0 for v in gains["information_gain_added"].values())
        and log_rw_sd["without_resistivity"] > 0.9 * LOG_RW_PRIOR[1]
        and log_rw_sd["without_ultrasonic"] >= 2.0 * log_rw_sd["joint"],
        "archie_linearization_small": lin_error < 0.5 * TRUE_ARCHIE_SCATTER,
        "convergence": conv["passed"],
    }
    maps = {
        "joint": phi_mean,
        "joint_sd": phi_draws.std(("chain", "draw")).values,
        "ultrasonic_only": exact["ultrasonic_only"]["porosity"][0],
        "resistivity_only": exact["resistivity_only"]["porosity"][0],
    }
    rw = {
        "joint": (
            np.median(rw_draws),
            [[np.median(rw_draws) - rw_lo], [rw_hi - np.median(rw_draws)]],
        )
    }
    for k in ("ultrasonic_only", "resistivity_only"):
        lo_k, hi_k = inversions[k]["rw_interval90"]
        c = float(np.sqrt(lo_k * hi_k))
        rw[k] = (c, [[c - lo_k], [hi_k - c]])
    png = args.figure or os.path.splitext(args.out)[0] + ".png"
    figures["figure"] = plot(png, grid, data, maps, rw)
    return publish(figures, checks, idata, "materials_porosity", args.out, start)


if __name__ == "__main__":
    sys.exit(exit_status(main(sys.argv[1:])))
