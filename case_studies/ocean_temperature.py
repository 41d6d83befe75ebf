"""Case study: an ocean temperature section from profiling floats and a satellite (skin bias).

A 600 km section (distance along a satellite ground track × depth to 500 m) of sea temperature
is seen by two instruments:

* ``casts``: five profiling floats (Argo-like) surfacing along the track, each giving the
  temperature of every layer of the section at its position: accurate (0.05 °C, instrument
  plus representativeness) but few;
* ``satellite``: the sea-surface temperature of every column along the track (infrared
  radiometer, 0.2 °C), which sees the top layer only, and sees its *skin*: a cool skin of
  about −0.2 °C plus a diurnal warm patch of 0.3–1 °C where the wind was
  calm, different for every pass.

The skin effect is a smooth error along track, so it is modelled as a Gaussian-process
discrepancy on the satellite modality (:class:`bayesjoint.discrepancy.GP`, squared exponential
in distance, lengthscale 80 km, amplitude 0.5 °C; fixed, so the problem stays linear-Gaussian).
Both instruments read the one section through :class:`bayesjoint.observe.Interpolate` at their
points (the casts at the layer centres under each float, the satellite at the centre of the top
layer of each column), after an identity physics on the section.

The prior is the climatological mean profile with a Matérn 5/2 Gaussian field about it (sd 1 °C,
correlation 100 km along track and 60 m in depth, a mixed layer's depth: the surface says little
about the water below the thermocline). Each replicate ocean is a draw from that prior plus a
warm-core eddy; each replicate pass has a fresh skin effect and fresh noise.

Checks (``"checks"`` in the JSON line):

* ``surface_coverage_with_bias_term``: over the replicates, the central 90 % intervals of the
  surface layer cover the true temperature at a rate within 0.05 of 0.90 with the discrepancy;
* ``surface_coverage_without_bias_term_poor``: without it, the rate is below 0.80 (the skin
  effect is taken for ocean);
* ``deep_constrained_by_casts_alone``: below 100 m the information budget gives the satellite
  no precision at all, and the posterior sd with the casts alone equals the joint one (ratio
  ≥ 0.98 in every cell);
* ``surface_constrained_by_both``: in the top layer the joint sd is below the sd of each
  instrument alone in every column, and on average below 0.8 times each of them;
* ``exact_route_matches_closed_form`` and ``convergence``: ``problem.sample()`` (the exact route)
  agrees with the exact posterior (mean within 4 MCSE in every cell) and
  :func:`bayesjoint.diagnose` passes on convergence.

    python case_studies/ocean_temperature.py [--quick] [--out FILE.nc] [--seed N] [--figure PNG]

Units: distance in km, depth (``z``, positive up) in m, temperature in °C.
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

LENGTH = 600.0  # km, along track
Z_EDGES = np.array([-500.0, -400.0, -300.0, -220.0, -150.0, -100.0, -60.0, -30.0, -10.0, 0.0])
FLOATS = np.array([60.0, 180.0, 300.0, 420.0, 540.0])  # km, where the floats surfaced
CAST_SD = 0.05  # °C
SAT_SD = 0.2  # °C
PRIOR_SD = 1.0  # °C
CORRELATION = {"x": 100.0, "z": 60.0}  # km along track, m in depth
SKIN_LENGTHSCALE, SKIN_AMPLITUDE = 80.0, 0.5  # km, °C: the discrepancy's fixed hyperparameters
DEEP = -100.0  # m: "below the surface" for the budget check
LEVEL = 0.90
Z90 = stats.norm.ppf(0.5 + LEVEL / 2)


def make_grid(quick: bool) -> bj.Grid:
    """The section: 20 columns of 30 km (quick) or 40 of 15 km, 9 layers to 500 m."""
    nx = 20 if quick else 40
    return bj.Grid.from_edges(x=np.linspace(0.0, LENGTH, nx + 1), z=Z_EDGES)


def climatology(z: np.ndarray) -> np.ndarray:
    """Climatological mean temperature (°C) at depth z (m, negative): a warm mixed layer over a
    thermocline, 18 °C at the surface and 7 °C at 500 m."""
    return 6.0 + 12.0 * np.exp(np.minimum(z, -20.0) / 200.0) * np.exp(20.0 / 200.0)


def prior(grid: bj.Grid) -> bj.priors.GaussianField:
    mean = np.broadcast_to(climatology(grid.centers["z"]), grid.shape)
    return bj.priors.GaussianField(PRIOR_SD, CORRELATION, mean=mean)


def true_section(grid: bj.Grid, rng: np.random.Generator) -> np.ndarray:
    """A replicate ocean: a draw from the prior plus a warm-core eddy (+1.5 °C at 100 m)."""
    mean, factor = prior(grid).gaussian_operator(grid.shape, grid)
    field = mean + factor @ rng.standard_normal(grid.size)
    x, z = np.meshgrid(grid.centers["x"], grid.centers["z"], indexing="ij")
    x0 = rng.uniform(150.0, 450.0)
    eddy = 1.5 * np.exp(-(((x - x0) / 60.0) ** 2) - ((z + 100.0) / 120.0) ** 2)
    return field.reshape(grid.shape) + eddy


def skin_effect(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Satellite minus bulk top-layer temperature (°C): cool skin plus a diurnal warm patch."""
    cool = -0.2 + 0.05 * rng.standard_normal()
    amp = rng.uniform(0.3, 1.0)
    x0 = rng.uniform(100.0, 500.0)
    width = rng.uniform(50.0, 120.0)
    return cool + amp * np.exp(-0.5 * ((x - x0) / width) ** 2)


def cast_points(grid: bj.Grid) -> np.ndarray:
    """(x, z) of every cast datum: each float at each layer centre."""
    xs = grid.centers["x"][np.abs(grid.centers["x"][:, None] - FLOATS).argmin(axis=0)]
    return np.array([(x, z) for x in xs for z in grid.centers["z"]])


def surface_points(grid: bj.Grid) -> np.ndarray:
    """(x, z) of every satellite datum: the centre of the top layer of each column."""
    top = grid.centers["z"][-1]
    return np.column_stack([grid.centers["x"], np.full(grid.shape[0], top)])


def simulate(grid: bj.Grid, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One replicate: the true section, the casts, the satellite pass and its skin effect."""
    truth = true_section(grid, rng)
    casts = bj.observe.Interpolate(grid, cast_points(grid))(truth)
    casts = casts + CAST_SD * rng.standard_normal(casts.size)
    skin = skin_effect(grid.centers["x"], rng)
    surface = truth[:, -1] + skin + SAT_SD * rng.standard_normal(grid.shape[0])
    return {"truth": truth, "casts": casts, "satellite": surface, "skin": skin}


def build(grid: bj.Grid, data: dict, skin_term: bool = True, which=("casts", "satellite")):
    """The section problem with the chosen instruments (satellite ± the skin discrepancy)."""
    section = bj.Field("temperature", grid, prior(grid), units="degC")
    identity = bj.physics.Linear(sp.identity(grid.size, format="csr"), input="temperature")
    mods = []
    if "casts" in which:
        mods.append(
            bj.Modality(
                "casts",
                identity,
                data["casts"],
                bj.noise.Gaussian(CAST_SD),
                observe=bj.observe.Interpolate(grid, cast_points(grid)),
                units="degC",
            )
        )
    if "satellite" in which:
        gp = None
        if skin_term:
            gp = bj.discrepancy.GP(
                "squared_exponential", lengthscale=SKIN_LENGTHSCALE, amplitude=SKIN_AMPLITUDE
            )
        mods.append(
            bj.Modality(
                "satellite",
                identity,
                data["satellite"],
                bj.noise.Gaussian(SAT_SD),
                observe=bj.observe.Interpolate(grid, surface_points(grid)),
                units="degC",
                dims="along_track",
                coords={"along_track": grid.centers["x"]},
                discrepancy=gp,
            )
        )
    return bj.JointInversion([section], mods)


def field_summary(mean, sd, truth) -> dict[str, float]:
    """RMSE, mean sd and 90 % coverage of the truth, over the cells given."""
    mean, sd, truth = np.ravel(mean), np.ravel(sd), np.ravel(truth)
    return {
        "rmse": round(float(np.sqrt(np.mean((mean - truth) ** 2))), 4),
        "mean_sd": round(float(np.mean(sd)), 4),
        "coverage90": round(float(np.mean(np.abs(mean - truth) <= Z90 * sd)), 4),
    }


def posterior_section(problem: bj.JointInversion, shape) -> tuple[np.ndarray, np.ndarray]:
    post = problem.exact_posterior()
    return post["mean"].values.reshape(shape), post["sd"].values.reshape(shape)


def coverage_study(grid: bj.Grid, n_replicates: int, seed: int) -> dict[str, Any]:
    """Surface and deep coverage over replicate oceans and passes (exact posteriors)."""
    seqs = np.random.SeedSequence([seed, 1]).spawn(n_replicates)
    deep = grid.centers["z"] < DEEP
    hits: dict[str, dict[str, list]] = {
        k: {"surface": [], "deep": [], "surface_err": []} for k in ("with_skin", "without_skin")
    }
    for seq in seqs:
        data = simulate(grid, np.random.default_rng(seq))
        for key in hits:
            mean, sd = posterior_section(build(grid, data, key == "with_skin"), grid.shape)
            ok = np.abs(mean - data["truth"]) <= Z90 * sd
            hits[key]["surface"].append(ok[:, -1].mean())
            hits[key]["deep"].append(ok[:, deep].mean())
            hits[key]["surface_err"].append(float(np.mean(mean[:, -1] - data["truth"][:, -1])))
    return {
        key: {
            "surface_coverage90": round(float(np.mean(v["surface"])), 4),
            "deep_coverage90": round(float(np.mean(v["deep"])), 4),
            "surface_mean_error": round(float(np.mean(v["surface_err"])), 4),
            "surface_mean_error_rms": round(
                float(np.sqrt(np.mean(np.square(v["surface_err"])))), 4
            ),
        }
        for key, v in hits.items()
    }


def budget_figures(problem: bj.JointInversion, grid: bj.Grid) -> dict[str, Any]:
    """Where each instrument's information goes: surface layer and below DEEP."""
    budget = problem.information_budget()
    names = budget["modality"].values.tolist()
    share = budget["precision_share"].values.reshape(len(names), *grid.shape)
    sd_alone = budget["posterior_sd_alone"].values.reshape(len(names), *grid.shape)
    sd = budget["posterior_sd"].values.reshape(grid.shape)
    deep = grid.centers["z"] < DEEP
    c, s = names.index("casts"), names.index("satellite")
    return {
        "information_gain_alone": dict(
            zip(names, budget["information_gain_alone"].values.round(2).tolist(), strict=True)
        ),
        "information_gain_added": dict(
            zip(names, budget["information_gain_added"].values.round(2).tolist(), strict=True)
        ),
        "satellite_share_deep_max": float(share[s][:, deep].max()),
        "satellite_share_surface_mean": round(float(share[s][:, -1].mean()), 4),
        "casts_share_surface_mean": round(float(share[c][:, -1].mean()), 4),
        "deep_sd_ratio_joint_over_casts_alone_min": round(
            float((sd[:, deep] / sd_alone[c][:, deep]).min()), 5
        ),
        "surface_sd_joint_mean": round(float(sd[:, -1].mean()), 4),
        "surface_sd_casts_alone_mean": round(float(sd_alone[c][:, -1].mean()), 4),
        "surface_sd_satellite_alone_mean": round(float(sd_alone[s][:, -1].mean()), 4),
        "surface_sd_ratio_joint_over_casts_alone_mean": round(
            float((sd[:, -1] / sd_alone[c][:, -1]).mean()), 4
        ),
        "surface_sd_ratio_joint_over_satellite_alone_mean": round(
            float((sd[:, -1] / sd_alone[s][:, -1]).mean()), 4
        ),
        "surface_joint_below_each_alone": bool(
            np.all(sd[:, -1] < sd_alone[c][:, -1]) and np.all(sd[:, -1] < sd_alone[s][:, -1])
        ),
        "_maps": {"share_satellite": share[s], "sd": sd, "sd_casts": sd_alone[c]},
    }


def plot(path: str, grid: bj.Grid, data: dict, maps: dict, surface: dict) -> str | None:
    """Truth, joint mean, sd maps and the surface line of replicate 0."""
    plt = pyplot()
    if plt is None:
        return None
    ex, ez = grid.edges["x"], grid.edges["z"]
    fig, axes = plt.subplots(3, 2, figsize=(10, 8.6), constrained_layout=True)
    clim = climatology(grid.centers["z"])[None, :]
    lim = float(np.max(np.abs(data["truth"] - clim)))
    panels = [
        ("true section − climatology (°C)", data["truth"] - clim, "RdBu_r", (-lim, lim)),
        ("joint posterior mean − climatology (°C)", maps["mean"] - clim, "RdBu_r", (-lim, lim)),
        ("joint posterior sd (°C)", maps["sd"], "magma", (0.0, PRIOR_SD)),
        ("posterior sd, joint / casts alone", maps["sd"] / maps["sd_casts"], "cividis", (0.5, 1.0)),
    ]
    for ax, (title, values, cmap, (lo, hi)) in zip(axes.ravel()[:4], panels, strict=True):
        im = ax.pcolormesh(ex, ez, np.asarray(values).T, cmap=cmap, vmin=lo, vmax=hi)
        for xf in cast_points(grid)[:, 0]:
            ax.axvline(xf, color="w", lw=0.5, alpha=0.6)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("distance along track (km)")
        ax.set_ylabel("z (m)")
        fig.colorbar(im, ax=ax, shrink=0.85)
    ax = axes[2, 0]
    x = grid.centers["x"]
    ax.plot(x, data["truth"][:, -1], "k", lw=1.5, label="true top layer")
    ax.plot(x, data["satellite"], "o", ms=3, color="C1", label="satellite (skin)")
    for key, colour in (("with_skin", "C2"), ("without_skin", "C3")):
        mean, sd = surface[key]
        label = "joint, with skin term" if key == "with_skin" else "joint, no skin term"
        ax.plot(x, mean, color=colour, label=label)
        ax.fill_between(x, mean - Z90 * sd, mean + Z90 * sd, color=colour, alpha=0.25)
    ax.plot(
        cast_points(grid)[:: grid.shape[1], 0],
        data["casts"][grid.shape[1] - 1 :: grid.shape[1]],
        "s",
        color="C0",
        label="float, top value",
    )
    ax.set_xlabel("distance along track (km)")
    ax.set_ylabel("°C")
    ax.set_title("surface layer: 90 % intervals", fontsize=9)
    ax.legend(fontsize=6)
    ax = axes[2, 1]
    ax.plot(x, data["skin"], "k", lw=1.5, label="true skin effect")
    ax.plot(x, data["satellite"] - surface["with_skin"][0], "C2", label="satellite − joint mean")
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set_xlabel("distance along track (km)")
    ax.set_ylabel("°C")
    ax.set_title("the skin effect, taken up by the discrepancy", fontsize=9)
    ax.legend(fontsize=7)
    return save(fig, path)


def main(argv: list[str] | None = None) -> dict:
    """Run the study; return the figures (also printed as the last stdout line)."""
    with one_blas_thread():
        return _main(argv)


def _main(argv: list[str] | None) -> dict:
    parser = study_parser(
        __doc__, "ocean_temperature", quick="coarse section, 60 replicates (CI)", seed=5
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    grid = make_grid(args.quick)
    n_replicates = 60 if args.quick else 300
    settings = {"draws": 250} if args.quick else {}

    data = simulate(grid, np.random.default_rng([args.seed, 0]))
    problems = {
        "joint": build(grid, data),
        "joint_without_skin_term": build(grid, data, skin_term=False),
        "casts_only": build(grid, data, which=("casts",)),
        "satellite_only": build(grid, data, which=("satellite",)),
    }
    deep = grid.centers["z"] < DEEP
    sections = {k: posterior_section(p, grid.shape) for k, p in problems.items()}
    inversions = {
        k: {
            "surface": field_summary(m[:, -1], s[:, -1], data["truth"][:, -1]),
            "deep": field_summary(m[:, deep], s[:, deep], data["truth"][:, deep]),
            "all": field_summary(m, s, data["truth"]),
        }
        for k, (m, s) in sections.items()
    }
    budget = budget_figures(problems["joint"], grid)
    maps = budget.pop("_maps")

    # The default sampler on the analysis model: sample() takes the exact route.
    idata = problems["joint"].sample(random_seed=args.seed, progressbar=False, **settings)
    draws = idata.posterior["temperature"].values.reshape(-1, grid.size)
    mean_exact, sd_exact = (a.ravel() for a in sections["joint"])
    mcse = sd_exact / np.sqrt(draws.shape[0])  # independent draws: ESS = number of draws
    gap = float(np.max(np.abs(draws.mean(axis=0) - mean_exact) / mcse))
    conv = convergence(idata, var_names=["temperature"])

    coverage = coverage_study(grid, n_replicates, args.seed)
    with_skin, without_skin = coverage["with_skin"], coverage["without_skin"]
    figures: dict[str, Any] = {
        "case_study": "ocean_temperature",
        "grid": list(grid.shape),
        "n_casts": int(problems["casts_only"].modalities["casts"].n_data),
        "n_satellite": int(grid.shape[0]),
        "replicate0": inversions,
        "budget": budget,
        "coverage": {"n_replicates": n_replicates, **coverage},
        "sampled_vs_exact_max_gap_in_mcse": round(gap, 3),
        "route": idata.posterior.attrs.get("route"),
        "convergence": conv,
    }
    checks = {
        "surface_coverage_with_bias_term": abs(with_skin["surface_coverage90"] - LEVEL) <= 0.05,
        "surface_coverage_without_bias_term_poor": without_skin["surface_coverage90"] < 0.80,
        "deep_constrained_by_casts_alone": budget["satellite_share_deep_max"] == 0.0
        and budget["deep_sd_ratio_joint_over_casts_alone_min"] >= 0.98,
        "surface_constrained_by_both": budget["surface_joint_below_each_alone"]
        and budget["surface_sd_ratio_joint_over_casts_alone_mean"] <= 0.8
        and budget["surface_sd_ratio_joint_over_satellite_alone_mean"] <= 0.8,
        "exact_route_matches_closed_form": gap <= 4.0,
        "convergence": conv["passed"],
    }
    png = args.figure or os.path.splitext(args.out)[0] + ".png"
    maps["mean"] = sections["joint"][0]
    surface = {
        "with_skin": (sections["joint"][0][:, -1], sections["joint"][1][:, -1]),
        "without_skin": (
            sections["joint_without_skin_term"][0][:, -1],
            sections["joint_without_skin_term"][1][:, -1],
        ),
    }
    figures["figure"] = plot(png, grid, data, maps, surface)
    return publish(figures, checks, idata, "ocean_temperature", args.out, start)


if __name__ == "__main__":
    sys.exit(exit_status(main(sys.argv[1:])))
