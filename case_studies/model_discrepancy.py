"""Case study: a gravity calibration whose physics lacks the regional field (model discrepancy).

The physical parameter is the density contrast Δρ of a buried sphere (radius 50 m, centre 100 m
deep) seen by 61 gravity stations on a 1.2 km profile (noise 5 µGal). The data-generating
process adds a smooth *regional* field (a random linear trend plus a random broad bump from a
deeper source) that the inversion's physics deliberately omits. Over many simulated replicate
datasets (fixed true Δρ, fresh regional and noise each time) the study reports the coverage of
the true Δρ by central 90 % credible intervals

* (a) without a discrepancy term: the regional is forced into Δρ; intervals are narrow and miss;
* (b) with a squared-exponential GP discrepancy (:class:`bayesjoint.discrepancy.GP`) whose
  lengthscale sits at the centre of the library's default prior (geometric mean of the station
  spacing, but no less than 1/50 of the profile, and the profile length: 170 m) and amplitude
  50 µGal;

then the identifiability caveat (the discrepancy and Δρ trade off: the sphere's anomaly is
itself smooth, so a GP with a comparable lengthscale can absorb part of it; posterior
correlation of Δρ with the discrepancy at the anomaly peak, widened intervals), and two remedies:

* (c) an informative discrepancy prior: the regional comes from deeper sources, so its lengthscale
  is long (400 m), which the sphere's anomaly (half-width ≈ 77 m) cannot share;
* (d) a second modality that does not share the discrepancy: four core measurements of Δρ
  (sd 60 kg/m³ each), added to (b).

All replicate posteriors use the exact linear-Gaussian path (``exact_posterior()``; fixed
hyperparameters keep the problem linear-Gaussian), so hundreds of replicates take seconds. A few
replicates are then sampled with *learned* hyperparameters (the library's default priors, and
informative priors) by ``problem.sample()``'s default route (``collapsed``: NUTS on the two
hyperparameters, Δρ and the discrepancy integrated out exactly) to confirm the picture. The run
of replicate 0 with informative priors is saved as a netCDF report (figures in the posterior
attributes); the script ends with one JSON line of its figures, whose ``checks`` (named
booleans: every sampled run passes ``bj.diagnose`` on convergence, the coverage claims hold
within their binomial tolerances, the sampled intervals overlap the exact ones) and ``passed``
are its self-checks; it exits with status 3 when one fails.

    python case_studies/model_discrepancy.py [--quick] [--out FILE.nc] [--seed N]

Units: metres (z up, stations at z = 0), Δρ in kg/m³, gravity in mGal (downward attraction).
Forward model (Blakely 1995, §3.3): g_z(x) = G (4/3)π R³ Δρ h / (x² + h²)^{3/2} with h = 100 m.
"""

from __future__ import annotations

import argparse
import json
import time

import arviz as az
import numpy as np
from bayesjoint_case_studies._verdict import convergence, exit_status, finish
from scipy import stats

import bayesjoint as bj
from bayesjoint.discrepancy import kernel_matrix
from bayesjoint.inference.checkpoint import add_checkpoint_arguments, use_checkpoint_folder
from bayesjoint.physics import sphere_gz

STATIONS = np.linspace(-600.0, 600.0, 61)  # m, profile at z = 0 (20 m spacing)
SPHERE_CENTRE = (0.0, 0.0, -100.0)  # m
SPHERE_RADIUS = 50.0  # m
TRUE_CONTRAST = 500.0  # kg/m³
PRIOR_MEAN, PRIOR_SD = 0.0, 1000.0  # kg/m³, weak prior on Δρ
NOISE_SD = 0.005  # mGal (5 µGal)
# Regional field (the term the physics lacks), drawn afresh per replicate:
#   r(x) = b x / 600 m + c exp(−(x − x0)² / (2 w²)),
#   b ~ N(0, 0.03 mGal), c ~ N(0, 0.05 mGal), x0 ~ U(−600, 600) m, w ~ U(250, 500) m.
TREND_SD, BUMP_SD, BUMP_WIDTH = 0.03, 0.05, (250.0, 500.0)
DISCREPANCY_AMPLITUDE = 0.05  # mGal: the a-priori size of the regional
INFORMATIVE_LENGTHSCALE = 400.0  # m: regional sources are deeper than the target
CORE_N, CORE_SD = 4, 60.0  # second modality: core measurements of Δρ (kg/m³)
LEVEL = 0.90
Z90 = stats.norm.ppf(0.5 + LEVEL / 2)  # half-width of the central 90 % interval in sd


def sensitivity() -> np.ndarray:
    """Gravity (mGal) of the sphere per kg/m³ of contrast at each station, shape (61,)."""
    points = np.column_stack([STATIONS, np.zeros_like(STATIONS), np.zeros_like(STATIONS)])
    return sphere_gz(SPHERE_CENTRE, SPHERE_RADIUS, 1.0, points)


def default_lengthscale() -> float:
    """Centre (median) of the library's default lengthscale prior for these stations."""
    prior = bj.discrepancy.GP().default_lengthscale_prior(STATIONS[:, None])
    return float(np.exp(prior.mu))


def replicate(seed_seq: np.random.SeedSequence) -> dict:
    """One synthetic dataset: gravity with a regional the physics lacks, and core samples."""
    rng = np.random.default_rng(seed_seq)
    b = rng.normal(0.0, TREND_SD)
    c = rng.normal(0.0, BUMP_SD)
    x0 = rng.uniform(STATIONS[0], STATIONS[-1])
    w = rng.uniform(*BUMP_WIDTH)
    regional = b * STATIONS / STATIONS[-1] + c * np.exp(-((STATIONS - x0) ** 2) / (2 * w**2))
    gravity = TRUE_CONTRAST * sensitivity() + regional + rng.normal(0.0, NOISE_SD, STATIONS.size)
    cores = TRUE_CONTRAST + rng.normal(0.0, CORE_SD, CORE_N)
    return {"gravity": gravity, "cores": cores, "regional": regional}


def configurations() -> dict[str, dict]:
    """The inversion set-ups compared (fixed discrepancy hyperparameters: exact path)."""
    weak = {"lengthscale": default_lengthscale(), "amplitude": DISCREPANCY_AMPLITUDE}
    return {
        "a_no_discrepancy": {"gp": None, "cores": False},
        "b_discrepancy": {"gp": weak, "cores": False},
        "b_anomaly_scale_lengthscale": {
            "gp": {"lengthscale": 80.0, "amplitude": DISCREPANCY_AMPLITUDE},
            "cores": False,
        },
        "c_informative_discrepancy": {
            "gp": {"lengthscale": INFORMATIVE_LENGTHSCALE, "amplitude": DISCREPANCY_AMPLITUDE},
            "cores": False,
        },
        "d_discrepancy_plus_cores": {"gp": weak, "cores": True},
    }


def build_problem(data: dict, gp: dict | None, cores: bool) -> bj.JointInversion:
    """The joint inversion of one replicate: gravity (± discrepancy) (+ cores)."""
    contrast = bj.Parameter(
        "density_contrast", prior=bj.priors.Normal(PRIOR_MEAN, PRIOR_SD), units="kg/m^3"
    )
    discrepancy = None
    if gp is not None:
        discrepancy = bj.discrepancy.GP(kernel="squared_exponential", coords=STATIONS, **gp)
    mods = [
        bj.Modality(
            "gravity",
            physics=bj.physics.Linear(sensitivity()[:, None], input="density_contrast"),
            data=data["gravity"],
            noise=bj.noise.Gaussian(NOISE_SD),
            units="mGal",
            dims="station",
            coords={"station": STATIONS},
            discrepancy=discrepancy,
        )
    ]
    if cores:
        mods.append(
            bj.Modality(
                "cores",
                physics=bj.physics.Linear(np.ones((CORE_N, 1)), input="density_contrast"),
                data=data["cores"],
                noise=bj.noise.Gaussian(CORE_SD),
                units="kg/m^3",
            )
        )
    return bj.JointInversion([contrast], mods)


def joint_with_discrepancy(gp: dict | None, cores: bool) -> dict:
    """Posterior sd of Δρ and its correlation with δ(0) from the explicit joint Gaussian.

    Dense algebra on the unknowns (Δρ, δ(x_1..x_n)) with δ kept as unknowns (not integrated
    out): prior covariance P = diag(σ0², K), observation matrix H = [g, I] (gravity) and
    [1, 0] (cores); posterior covariance P − P Hᵀ (H P Hᵀ + Σ)⁻¹ H P. It does not depend on the
    data (linear-Gaussian), so it is the same for every replicate.
    """
    g = sensitivity()
    n = g.size
    k = (
        np.zeros((n, n))
        if gp is None
        else kernel_matrix(STATIONS[:, None], STATIONS[:, None], "squared_exponential", **gp)
    )
    p = np.zeros((n + 1, n + 1))
    p[0, 0] = PRIOR_SD**2
    p[1:, 1:] = k
    rows = [np.column_stack([g, np.eye(n)])]
    noise = [np.full(n, NOISE_SD**2)]
    if cores:
        rows.append(np.column_stack([np.ones(CORE_N), np.zeros((CORE_N, n))]))
        noise.append(np.full(CORE_N, CORE_SD**2))
    h = np.vstack(rows)
    s = h @ p @ h.T + np.diag(np.concatenate(noise))
    post = p - p @ h.T @ np.linalg.solve(s, h @ p)
    peak = 1 + int(np.argmin(np.abs(STATIONS)))
    sd = float(np.sqrt(post[0, 0]))
    corr = None if gp is None else float(post[0, peak] / np.sqrt(post[0, 0] * post[peak, peak]))
    return {"sd": sd, "corr_with_discrepancy_at_peak": corr}


def exact_study(n_replicates: int, seed: int) -> dict:
    """Coverage, bias and width of every configuration over the replicates (exact path)."""
    seqs = np.random.SeedSequence(seed).spawn(n_replicates)
    datasets = [replicate(s) for s in seqs]
    out = {}
    for name, cfg in configurations().items():
        means, sds = [], []
        for data in datasets:
            post = build_problem(data, cfg["gp"], cfg["cores"]).exact_posterior()
            means.append(float(post["mean"][0]))
            sds.append(float(post["sd"][0]))
        means, sds = np.array(means), np.array(sds)
        covered = np.abs(means - TRUE_CONTRAST) <= Z90 * sds
        dense = joint_with_discrepancy(cfg["gp"], cfg["cores"])
        out[name] = {
            "coverage90": float(covered.mean()),
            "mean_bias": float(np.mean(means - TRUE_CONTRAST)),
            "rmse": float(np.sqrt(np.mean((means - TRUE_CONTRAST) ** 2))),
            "posterior_sd": float(sds.mean()),
            "posterior_sd_dense_check": dense["sd"],
            "corr_contrast_vs_discrepancy_at_peak": dense["corr_with_discrepancy_at_peak"],
            "discrepancy": cfg["gp"],
            "second_modality": cfg["cores"],
        }
    base = out["a_no_discrepancy"]["posterior_sd"]
    for fig in out.values():
        fig["interval_width_ratio_vs_a"] = fig["posterior_sd"] / base
    return out


def nuts_run(data: dict, priors: str, settings: dict, seed: int) -> tuple[az.InferenceData, dict]:
    """NUTS with learned discrepancy hyperparameters on one replicate."""
    if priors == "default":
        gp = {}  # the library's default priors (lengthscale from the coordinates, amplitude)
    else:
        gp = {
            "lengthscale": bj.priors.LogNormal(np.log(INFORMATIVE_LENGTHSCALE), 0.25),
            "amplitude": bj.priors.HalfNormal(DISCREPANCY_AMPLITUDE),
        }
    problem = build_problem(data, gp, cores=False)
    t0 = time.perf_counter()
    idata = problem.sample(random_seed=seed, progressbar=False, cores=1, **settings)
    wall = time.perf_counter() - t0
    draws = idata.posterior["density_contrast"].values.ravel()
    lo, hi = np.quantile(draws, [0.5 - LEVEL / 2, 0.5 + LEVEL / 2])
    summary = az.summary(idata, var_names=["density_contrast"], kind="diagnostics")
    fig = {
        "priors": priors,
        "interval90": [float(lo), float(hi)],
        "covered": bool(lo <= TRUE_CONTRAST <= hi),
        "posterior_sd": float(draws.std()),
        "r_hat": float(summary["r_hat"].iloc[0]),
        "ess_bulk": float(summary["ess_bulk"].iloc[0]),
        "sampling_route": str(idata.posterior.attrs.get("route", "")),
        "diagnose": convergence(idata),
        "route": problem.discrepancy_blocks["gravity"].route,
        "wall_s": round(wall, 2),
    }
    fig["divergences"] = fig["diagnose"]["divergences"]
    for hyper in ("lengthscale", "amplitude"):
        name = f"gravity_discrepancy_{hyper}"
        if name in idata.posterior:
            fig[f"{hyper}_posterior_median"] = float(idata.posterior[name].median())
    return idata, fig


def main(argv: list[str] | None = None) -> dict:
    """Run the study; return the figures (also printed as the last stdout line)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scipy/scikit-learn stacks
        return _main(argv)
    # One BLAS thread: the matrices here are 61 x 61, and multi-threaded OpenBLAS made each
    # small triangular solve ~200x slower (20 ms instead of 0.1 ms) on a shared, loaded machine.
    with threadpool_limits(limits=1, user_api="blas"):
        return _main(argv)


def _main(argv: list[str] | None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 replicates, short chains (CI)")
    parser.add_argument("--out", default="model_discrepancy.nc")
    parser.add_argument("--seed", type=int, default=2024)
    add_checkpoint_arguments(parser)
    args = parser.parse_args(argv)
    use_checkpoint_folder(args.checkpoint, resume=args.resume)
    n_replicates = 50 if args.quick else 500
    nuts_replicates = 1 if args.quick else 4
    # 4 chains: bj.diagnose's bulk and tail ESS >= 400 and R-hat <= 1.01 for every variable
    settings = (
        {"draws": 1000, "tune": 500, "chains": 4}
        if args.quick
        else {"draws": 1000, "tune": 1000, "chains": 4}
    )
    t0 = time.perf_counter()
    exact = exact_study(n_replicates, args.seed)
    exact_s = time.perf_counter() - t0
    # Monte-Carlo sd of a coverage estimate at the nominal 0.9 (binomial).
    mc_sd = float(np.sqrt(LEVEL * (1 - LEVEL) / n_replicates))
    figures: dict = {
        "n_replicates": n_replicates,
        "true_density_contrast": TRUE_CONTRAST,
        "coverage90_a_without_discrepancy": exact["a_no_discrepancy"]["coverage90"],
        "coverage90_b_with_discrepancy": exact["b_discrepancy"]["coverage90"],
        "coverage_mc_sd_at_0.9": mc_sd,
        "exact": exact,
        "exact_wall_s": round(exact_s, 2),
    }
    seqs = np.random.SeedSequence(args.seed).spawn(nuts_replicates)
    nuts, report = [], None
    for r, seq in enumerate(seqs):
        data = replicate(seq)
        for priors in ("informative", "default"):
            if args.quick and priors == "default":
                continue  # CI budget: the informative run only
            idata, fig = nuts_run(data, priors, settings, seed=args.seed + r)
            fig["replicate"] = r
            # The exact interval of the same replicate with the hyperparameters fixed at the
            # informative values (c) or at the default prior's centre (b).
            cfg = configurations()[
                "c_informative_discrepancy" if priors == "informative" else "b_discrepancy"
            ]
            post = build_problem(data, cfg["gp"], cores=False).exact_posterior()
            mean, sd = float(post["mean"][0]), float(post["sd"][0])
            fig["exact_fixed_interval90"] = [mean - Z90 * sd, mean + Z90 * sd]
            nuts.append(fig)
            if r == 0 and priors == "informative":
                report = idata
    figures["nuts"] = nuts
    figures["nuts_settings"] = settings
    cov_a = exact["a_no_discrepancy"]["coverage90"]
    cov_b = exact["b_discrepancy"]["coverage90"]
    cov_c = exact["c_informative_discrepancy"]["coverage90"]
    finish(
        figures,
        {
            "sampled_runs_diagnose_convergence": all(r["diagnose"]["passed"] for r in nuts),
            # the exact path against the independent dense algebra on (Δρ, δ): the same
            # Gaussian, so the sds agree to round-off (measured ~1e-12)
            "exact_sd_matches_dense_algebra": all(
                abs(f["posterior_sd"] / f["posterior_sd_dense_check"] - 1.0) < 1e-8
                for f in exact.values()
            ),
            # the claims, with the binomial Monte-Carlo sd of a coverage estimate (mc_sd)
            "discrepancy_moves_coverage_towards_0.9": abs(cov_b - LEVEL) < abs(cov_a - LEVEL),
            "without_discrepancy_below_0.9_by_5_mc_sd": cov_a < LEVEL - 5 * mc_sd,
            "with_discrepancy_not_below_0.9_by_3_mc_sd": cov_b > LEVEL - 3 * mc_sd,
            "informative_discrepancy_within_3_mc_sd": abs(cov_c - LEVEL) <= 3 * mc_sd,
            # learned hyperparameters against fixed ones: the intervals overlap
            "sampled_intervals_overlap_exact": all(
                r["interval90"][0] < r["exact_fixed_interval90"][1]
                and r["exact_fixed_interval90"][0] < r["interval90"][1]
                for r in nuts
            ),
        },
    )
    report.posterior.attrs["figures"] = json.dumps(figures)
    for group in report.groups():
        report[group].attrs["case_study"] = "model_discrepancy"
    figures["report"] = bj.save(report, args.out)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    raise SystemExit(exit_status(main()))
