"""Case study: crosshole travel times and resistivity soundings sharing porosity (Wyllie + Archie).

A 2-D section (x, z; z up) of porosity is seen by two instruments that measure different
properties:

* **seismic** (good data): straight-ray crosshole and surface-to-borehole first-arrival times
  (:class:`bayesjoint.physics.TravelTime`), noise 0.1 ms. The rock obeys Wyllie's time average,
  so the physics is a callable on the porosity latent: ``slowness = 1 / wyllie(porosity, ...)``.
* **ERT** (noisy data): one Schlumberger sounding (8 spacings, AB/2 = 3–100 m) at the centre of
  every grid column, noise 10 % (0.1 in ln ρa). Each sounding sees the 1-D layered earth of its
  column (:func:`bayesjoint.physics.resistivity.schlumberger`, the layers are the column's cells,
  the deepest cell is the half-space). The data are simulated with the full nonlinear sounding;
  the inversion uses its tangent-linear form about a homogeneous half-space,
  ``ln ρa ≈ J ln ρ`` (``J`` by central differences of ``schlumberger``; its rows sum to 1, so a
  half-space is reproduced exactly). The linearization error on the true model is reported
  (``ert_linearization_error``) and is well below the noise.

The truth: porosity with a high-porosity lens and a tight zone; resistivity from Archie's law
(R_w = 0.2 Ω·m, m = 2, brine-saturated) times a log-normal petrophysical scatter of 5 %.

Two inversions of the same data:

* **separate**: porosity from the travel times, ln ρ from the soundings, no link (exact
  linear-Gaussian posterior: Wyllie's slowness is affine in porosity);
* **joint**: the same plus the soft link ``ln ρ = ln archie(φ) + ε``, ε ~ N(0, 0.1²)
  (:class:`bayesjoint.coupling.Petrophysical`), sampled with NUTS. The porosity latent is shared:
  Wyllie maps it into the velocity the seismic sees, Archie into the resistivity the ERT sees.

The seed's claim is checked by two factors: how much the link shrinks the posterior sd of ln ρ
(``resistivity_sd_shrink_factor`` = mean sd separate / joint) and how much it cuts the error of
the posterior mean against the truth (``resistivity_error_fall_factor`` = RMSE separate / joint).

The joint run uses ``problem.sample()``'s default route (``nuts``: NUTS preconditioned at the
MAP, the Laplace covariance as a dense mass matrix, chains started from Laplace draws). The
exact posterior of the problem with the Archie link linearized at the seismic porosity estimate
is reported beside it as a check on the draws.

The figures end with ``checks`` (named booleans: the run passes ``bj.diagnose`` on convergence,
agrees with the linearized exact posterior, and the link shrinks the sd and the error of ln ρ)
and ``passed``; the script exits with status 3 when a check fails.

    python case_studies/seismic_resistivity.py [--quick] [--out FILE.nc] [--seed N]

Writes a netCDF report (figures in the posterior attributes), a PNG figure next to it when
matplotlib is installed, and ends with one JSON line of its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import arviz as az
import numpy as np
import scipy.sparse as sp
from bayesjoint_case_studies._plotting import plot_sections
from bayesjoint_case_studies._runtime import one_blas_thread
from bayesjoint_case_studies._verdict import convergence, exit_status, finish
from scipy import stats

import bayesjoint as bj
from bayesjoint.coupling import Petrophysical, archie, wyllie
from bayesjoint.inference.checkpoint import add_checkpoint_arguments, use_checkpoint_folder
from bayesjoint.physics.resistivity import schlumberger

V_MATRIX, V_FLUID = 5500.0, 1500.0  # m/s, quartz sandstone matrix and brine
RW, M_CEMENT = 0.2, 2.0  # Ω·m formation water, Archie cementation exponent (a = 1, S_w = 1)
TRUE_SCATTER = 0.05  # ln units, petrophysical scatter of the synthetic rock
LINK_SCATTER = 0.1  # ln units, scatter assumed by the coupling (conservative)
TT_NOISE = 1e-4  # s, travel-time noise (0.1 ms)
ERT_NOISE = 0.1  # ln ρa noise (10 %)
AB2 = np.logspace(0.5, 2.0, 8)  # m, Schlumberger half spacings
PHI_MEAN, PHI_SD = 0.23, 0.05  # porosity prior
CORRELATION = 15.0  # m, prior correlation length of both fields
LOG_RHO_SD = 0.5  # prior sd of ln ρ


# -- problem -----------------------------------------------------------------------------------
def make_grid(quick: bool) -> bj.Grid:
    """Return the section: 120 m wide, 60 m deep (5 m cells; 10 m cells with --quick)."""
    cell = 10.0 if quick else 5.0
    return bj.Grid.from_edges(x=np.arange(0.0, 120.0 + cell, cell), z=np.arange(-60.0, cell, cell))


def true_model(grid: bj.Grid, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return the true porosity and ln resistivity on the grid."""
    x, z = np.meshgrid(grid.centers["x"], grid.centers["z"], indexing="ij")

    def bump(x0, z0, rx, rz):
        r = np.sqrt(((x - x0) / rx) ** 2 + ((z - z0) / rz) ** 2)
        return 0.5 * (1.0 - np.tanh((r - 1.0) / 0.25))

    porosity = 0.23 + 0.07 * bump(38.0, -22.0, 22.0, 10.0) - 0.06 * bump(85.0, -40.0, 18.0, 12.0)
    log_rho = np.log(archie(porosity, rw=RW, m=M_CEMENT))
    log_rho = log_rho + TRUE_SCATTER * rng.standard_normal(grid.shape)
    return porosity, log_rho


def ray_geometry(grid: bj.Grid, quick: bool) -> tuple[np.ndarray, np.ndarray]:
    """Crosshole (left → right borehole) and surface-to-right-borehole rays, as (x, z)."""
    width = grid.edges["x"][-1]
    depth = -grid.edges["z"][0]
    n = 6 if quick else 12
    zs = -np.linspace(0.04, 0.96, n) * depth
    left = np.column_stack([np.zeros(n), zs])
    surface = np.column_stack([np.linspace(0.1, 0.8, n // 2) * width, np.zeros(n // 2)])
    right = np.column_stack([np.full(n, width), zs])
    sources = np.vstack([left, surface])
    src = np.repeat(sources, n, axis=0)
    rec = np.tile(right, (sources.shape[0], 1))
    return src, rec


def sounding_jacobian(grid: bj.Grid, log_rho0: float) -> np.ndarray:
    """Return ``J = ∂ ln ρa / ∂ ln ρ_layer`` of one column about a half-space ρ0 (layers top first).

    Central differences of :func:`~bayesjoint.physics.resistivity.schlumberger` with step 1e-5
    (truncation ~1e-10, round-off ~1e-11).
    """
    thick = np.diff(grid.edges["z"])[::-1][:-1]  # top layer first; the deepest is the half-space
    nz = grid.shape[1]
    jac = np.empty((AB2.size, nz))
    h = 1e-5
    for k in range(nz):
        up, down = np.full(nz, log_rho0), np.full(nz, log_rho0)
        up[k] += h
        down[k] -= h
        jac[:, k] = (
            np.log(schlumberger(np.exp(up), thick, AB2))
            - np.log(schlumberger(np.exp(down), thick, AB2))
        ) / (2 * h)
    return jac


def ert_operator(grid: bj.Grid, log_rho0: float) -> sp.csr_matrix:
    """Block operator: one linearized sounding per column, on the C-ordered (x, z) field."""
    jac = sounding_jacobian(grid, log_rho0)[:, ::-1]  # grid z ascends (deepest first)
    return sp.csr_matrix(sp.kron(sp.identity(grid.shape[0]), jac))


def simulate_ert(grid: bj.Grid, log_rho: np.ndarray) -> np.ndarray:
    """Full nonlinear soundings of every column: ln ρa, shape (nx * n_ab2,)."""
    thick = np.diff(grid.edges["z"])[::-1][:-1]
    return np.concatenate([np.log(schlumberger(np.exp(col[::-1]), thick, AB2)) for col in log_rho])


def build(grid: bj.Grid, seismic_data, ert_data, rays, ert_matrix) -> dict[str, Any]:
    """Return the separate, joint and linearized-joint problems (same latent declarations)."""
    porosity = bj.Field(
        "porosity",
        grid,
        bj.priors.GaussianField(PHI_SD, CORRELATION, mean=PHI_MEAN),
        units="1",
    )
    log_rho0 = float(np.log(archie(PHI_MEAN, rw=RW, m=M_CEMENT)))
    log_rho = bj.Field(
        "log_resistivity",
        grid,
        bj.priors.GaussianField(LOG_RHO_SD, CORRELATION, mean=log_rho0),
        units="ln(ohm m)",
    )
    travel = bj.physics.TravelTime(grid, rays[0], rays[1], input="slowness")
    lengths = travel.matrix
    # Wyllie's slowness is affine in porosity: the exact-path form of the same physics.
    seismic_linear = bj.physics.Linear(
        lengths * (1.0 / V_FLUID - 1.0 / V_MATRIX),
        input="porosity",
        offset=lengths @ np.full(grid.size, 1.0 / V_MATRIX),
    )

    def seismic_physics(latent):
        # The shared-latent pattern: the porosity latent becomes a velocity through Wyllie.
        slowness = 1.0 / wyllie(latent["porosity"], V_MATRIX, V_FLUID)
        return travel({"slowness": slowness})

    seismic = bj.Modality(
        "seismic",
        bj.physics.Function(seismic_physics, inputs=["porosity"]),
        seismic_data,
        bj.noise.Gaussian(TT_NOISE),
        units="s",
    )
    seismic_exact = bj.Modality(
        "seismic", seismic_linear, seismic_data, bj.noise.Gaussian(TT_NOISE), units="s"
    )
    ert = bj.Modality(
        "ert",
        bj.physics.Linear(ert_matrix, input="log_resistivity"),
        ert_data,
        bj.noise.Gaussian(ERT_NOISE),
        units="ln(ohm m)",
    )
    link = Petrophysical(
        "porosity",
        "log_resistivity",
        "archie",
        scatter=LINK_SCATTER,
        parameters={"rw": RW, "m": M_CEMENT},
        log_latent="log_resistivity",
        name="archie_link",
    )
    latent = [porosity, log_rho]
    separate = bj.JointInversion(latent, [seismic_exact, ert])
    joint = bj.JointInversion(latent, [seismic, ert], couplings=[link])
    # Tangent-linear Archie link at the seismic porosity estimate φ̂:
    # ln archie(φ) ≈ ln archie(φ̂) − m (φ − φ̂)/φ̂, a linear Petrophysical factor.
    phi_hat = bj.JointInversion([porosity], [seismic_exact]).exact_posterior()["mean"].values
    phi_hat = np.clip(phi_hat, 0.05, 0.6).reshape(grid.shape)
    tangent = Petrophysical(
        "porosity",
        "log_resistivity",
        "linear",
        scatter=LINK_SCATTER,
        parameters={
            "slope": -M_CEMENT / phi_hat,
            "intercept": np.log(archie(phi_hat, rw=RW, m=M_CEMENT)) + M_CEMENT,
        },
        name="archie_link",
    )
    linearized = bj.JointInversion(latent, [seismic_exact, ert], couplings=[tangent])
    return {"separate": separate, "joint": joint, "linearized": linearized}


# -- figures ------------------------------------------------------------------------------------
def summary(mean: np.ndarray, sd: np.ndarray, lo: np.ndarray, hi: np.ndarray, truth) -> dict:
    """RMSE, mean sd, coverage of the truth by the central 90 % intervals, correlation."""
    truth = np.ravel(truth)
    return {
        "rmse": round(float(np.sqrt(np.mean((np.ravel(mean) - truth) ** 2))), 5),
        "mean_sd": round(float(np.mean(sd)), 5),
        "coverage90": round(float(np.mean((np.ravel(lo) <= truth) & (truth <= np.ravel(hi)))), 4),
        "correlation": round(float(np.corrcoef(np.ravel(mean), truth)[0, 1]), 4),
    }


def exact_summary(problem: bj.JointInversion, name: str, truth: np.ndarray) -> dict:
    post = problem.exact_posterior()
    sel = post["latent"].values == name
    mean, sd = post["mean"].values[sel], post["sd"].values[sel]
    half = stats.norm.ppf(0.95) * sd
    return summary(mean, sd, mean - half, mean + half, truth)


def draws_summary(idata: az.InferenceData, name: str, truth: np.ndarray) -> dict:
    da = idata.posterior[name]
    q = da.quantile([0.05, 0.95], dim=("chain", "draw")).values
    return summary(
        da.mean(("chain", "draw")).values, da.std(("chain", "draw")).values, q[0], q[1], truth
    )


def sampler_summary(idata: az.InferenceData, seconds: float) -> dict:
    return {
        "route": str(idata.posterior.attrs.get("route", "")),
        **convergence(idata),
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the study; return the figures (also printed as the last stdout line)."""
    with one_blas_thread():
        return _main(argv)


def _main(argv: list[str] | None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="coarse grid, short chains (CI)")
    parser.add_argument("--out", default="seismic_resistivity.nc", help="netCDF report path")
    parser.add_argument("--seed", type=int, default=7, help="random seed (data and sampler)")
    add_checkpoint_arguments(parser)
    args = parser.parse_args(argv)
    use_checkpoint_folder(args.checkpoint, resume=args.resume)
    start = time.time()
    rng = np.random.default_rng(args.seed)
    grid = make_grid(args.quick)
    phi_true, log_rho_true = true_model(grid, rng)
    rays = ray_geometry(grid, args.quick)
    travel = bj.physics.TravelTime(grid, rays[0], rays[1])
    slowness = 1.0 / wyllie(phi_true, V_MATRIX, V_FLUID)
    seismic_data = travel(slowness=slowness) + TT_NOISE * rng.standard_normal(rays[0].shape[0])
    ert_clean = simulate_ert(grid, log_rho_true)
    ert_data = ert_clean + ERT_NOISE * rng.standard_normal(ert_clean.shape)
    log_rho0 = float(np.log(archie(PHI_MEAN, rw=RW, m=M_CEMENT)))
    ert_matrix = ert_operator(grid, log_rho0)
    problems = build(grid, seismic_data, ert_data, rays, ert_matrix)
    # The callable physics and its exact-path form agree (same Wyllie rock): a self-check.
    callable_tt = problems["joint"].modalities["seismic"].physics(porosity=phi_true)
    linear_tt = problems["separate"].modalities["seismic"].physics(porosity=phi_true)
    assert np.allclose(callable_tt, linear_tt, rtol=1e-10), "Wyllie physics forms disagree"

    # 4 chains: the largest R-hat over every cell of both fields and the smallest tail ESS must
    # meet bj.diagnose's limits (R-hat <= 1.01, ESS >= 400). NUTS draws of |x - median| stay
    # correlated even with a near-perfect mass matrix (tail ESS ~60 % of the draws), and the
    # full size has 4x the cells, so it gets twice the draws.
    settings = (
        {"draws": 1000, "tune": 500, "chains": 4, "cores": 1}
        if args.quick
        else {"draws": 2000, "tune": 1000, "chains": 4, "cores": min(4, os.cpu_count() or 1)}
    )
    tic = time.time()
    idata = problems["joint"].sample(random_seed=args.seed, progressbar=False, **settings)
    seconds = time.time() - tic
    separate = {
        "log_resistivity": exact_summary(problems["separate"], "log_resistivity", log_rho_true),
        "porosity": exact_summary(problems["separate"], "porosity", phi_true),
    }
    joint = {
        "log_resistivity": draws_summary(idata, "log_resistivity", log_rho_true),
        "porosity": draws_summary(idata, "porosity", phi_true),
        "sampler": sampler_summary(idata, seconds),
    }
    linearized = {
        "log_resistivity": exact_summary(problems["linearized"], "log_resistivity", log_rho_true)
    }
    sep, jnt = separate["log_resistivity"], joint["log_resistivity"]
    figures = {
        "case_study": "seismic_resistivity",
        "grid": list(grid.shape),
        "n_rays": int(rays[0].shape[0]),
        "n_ert": int(ert_data.size),
        "ert_linearization_error": round(
            float(np.max(np.abs(ert_clean - ert_matrix @ log_rho_true.ravel()))), 4
        ),
        "separate": separate,
        "joint": joint,
        "linearized_joint_exact": linearized,
        "resistivity_sd_shrink_factor": round(sep["mean_sd"] / jnt["mean_sd"], 3),
        "resistivity_error_fall_factor": round(sep["rmse"] / jnt["rmse"], 3),
    }
    lin = linearized["log_resistivity"]
    finish(
        figures,
        {
            "joint_diagnose_convergence": joint["sampler"]["passed"],
            # Archie is nearly linear over the posterior's range: the sampled joint posterior
            # and the linearized link's exact one agree to a fraction of the posterior sd
            "joint_matches_linearized_exact": abs(lin["rmse"] - jnt["rmse"])
            < 0.25 * jnt["mean_sd"],
            # the claim, both factors (the link carries ~4x the prior-plus-ERT precision)
            "link_shrinks_resistivity_sd": figures["resistivity_sd_shrink_factor"] > 1.3,
            "link_cuts_resistivity_error": figures["resistivity_error_fall_factor"] > 1.3,
            "joint_coverage90_at_least_0.8": jnt["coverage90"] >= 0.8,
            "ert_linearization_error_below_half_noise": figures["ert_linearization_error"]
            < 0.5 * ERT_NOISE,
        },
    )
    sep_post = problems["separate"].exact_posterior()
    sel = sep_post["latent"].values == "log_resistivity"
    joint_post = idata.posterior["log_resistivity"]
    panels = {
        "true ln ρ (Ω·m)": (log_rho_true, "log_rho"),
        "true porosity": (phi_true, "porosity"),
        "ln ρ posterior mean, separate (ERT only)": (sep_post["mean"].values[sel], "log_rho"),
        "ln ρ posterior mean, joint (Archie link)": (
            joint_post.mean(("chain", "draw")).values,
            "log_rho",
        ),
        "ln ρ posterior sd, separate": (sep_post["sd"].values[sel], "sd"),
        "ln ρ posterior sd, joint": (joint_post.std(("chain", "draw")).values, "sd"),
    }
    png = plot_sections(os.path.splitext(args.out)[0] + ".png", grid, panels)
    figures["figure"] = png
    figures["seconds"] = round(time.time() - start, 1)
    idata.posterior.attrs["figures"] = json.dumps(figures)
    for group in idata.groups():
        idata[group].attrs["case_study"] = "seismic_resistivity"
    figures["report"] = bj.save(idata, args.out)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    raise SystemExit(exit_status(main()))
