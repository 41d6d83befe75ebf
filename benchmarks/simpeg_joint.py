"""Benchmark: 3-D gravity + magnetics with the cross-gradient, posterior against SimPEG.

Problem: a tensor mesh of ``NX × NY × NZ`` cells (default 16 × 16 × 8, cells 25 m, 400 m × 400 m
× 200 m deep) holds two blocks:

* block A: density contrast +300 kg/m³ **and** susceptibility 0.02 SI;
* block B: density contrast +300 kg/m³ only.

One station 10 m above the surface over every cell column (``NX × NY`` stations) records the
vertical gravity anomaly ``g_z`` (mGal) and the total-field anomaly induced in a 50 000 nT field
of inclination 60°, declination 0° (nT); Gaussian noise, 2 % of each anomaly's peak, is added
once (seeded). Both programs invert the same noisy data:

* ``simpeg``: SimPEG's deterministic joint inversion with its cross-gradient regularization
  (``regularization.CrossGradient``), set up as in SimPEG's "joint inversion with
  cross-gradient" example: integral simulations with sensitivities in memory, one
  ``WeightedLeastSquares`` regularization per property, ``ProjectedGNCG``,
  ``PairedBetaEstimate_ByEig``, ``ScalingMultipleDataMisfits_ByEig``, ``PairedBetaSchedule``,
  ``MovingAndMultiTargetStopping``, ``UpdateSensitivityWeights``, ``UpdatePreconditioner``.
  The coupling weight is set so that ``λ φ_cg`` equals the package's coupling penalty
  ``½ (K_eff / K) Σ t̃²`` on prior draws (the same strength in each program's own units);
  SimPEG's beta cooling then rescales it, so it is not the same objective.
* ``bayesjoint``: :class:`bayesjoint.physics.Gravity` and :class:`bayesjoint.physics.Magnetics`
  on the same cells and stations, Matérn 5/2 Gaussian-field priors (density sd 150 kg/m³,
  susceptibility sd 0.01 SI, correlation length 75 m), Gaussian noise with the known sds, and
  :class:`bayesjoint.coupling.CrossGradient` (strength 1); ``problem.sample()`` with its
  default route and default draws (4 chains × 1000 after 1000 tuning steps unless
  ``--draws``/``--tune``/``--chains`` say otherwise).

Measured, and printed as ONE JSON object on stdout (everything else goes to stderr):

* ``operators``: the largest difference between the package's sensitivity matrices and SimPEG's
  on the same mesh and stations, relative to the largest entry (an independent check of both
  closed forms), and of the data they predict for the true model;
* ``simpeg``: wall time (simulations with their sensitivities, and the inversion), iterations,
  final misfits; ``bayesjoint``: wall time (operators, model, sampling), route, and over every
  cell of both fields the largest R-hat, the smallest bulk and tail ESS, the divergences;
* ``models``: correlation and RMSE against the truth of SimPEG's recovered model and of the
  posterior mean (informative, not a criterion), and between the two;
* ``criteria``: R-hat ≤ 1.01, bulk and tail ESS ≥ 400 for every cell, no divergences, and the
  wall-time ratio bayesjoint / SimPEG ≤ 20.

Usage::

    python benchmarks/simpeg_joint.py                       # 16 x 16 x 8 cells
    python benchmarks/simpeg_joint.py --cells 8 8 4         # smaller mesh
    python benchmarks/simpeg_joint.py --quick               # smoke run (4 x 4 x 3, short chains)

SimPEG is used by this benchmark only (``pip install simpeg``); without it the script prints a
JSON object whose ``skipped`` says so and exits 0. The machine may be shared: the two programs
run one after the other in one process, and their ratio is what to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import time
from typing import Any

import _machine
import numpy as np

SCHEMA = "bayesjoint-benchmark-simpeg-joint/1"
CELL = 25.0  # m, every axis
HEIGHT = 10.0  # m, stations above the surface
FIELD = {"inclination": 60.0, "declination": 0.0, "strength": 50_000.0}  # degrees, nT
DENSITY_CONTRAST, SUSCEPTIBILITY = 300.0, 0.02  # kg/m³, SI
NOISE_FRACTION = 0.02
PRIOR_DENSITY_SD, PRIOR_SUSCEPTIBILITY_SD, CORRELATION = 150.0, 0.01, 75.0
STRENGTH = 1.0
RHAT_MAX, ESS_MIN, RATIO_MAX = 1.01, 400.0, 20.0


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, nargs=3, metavar=("NX", "NY", "NZ"), default=None)
    parser.add_argument("--quick", action="store_true", help="4 x 4 x 3 cells, 2 x 100 draws")
    parser.add_argument("--seed", type=int, default=1, help="data noise and sampler seed")
    parser.add_argument("--draws", type=int, default=None, help="default: sample()'s")
    parser.add_argument("--tune", type=int, default=None, help="default: sample()'s")
    parser.add_argument("--chains", type=int, default=None, help="default: sample()'s")
    parser.add_argument("--method", default="auto", help="sample(method=...), default auto")
    args = parser.parse_args(argv)
    if args.cells is None:
        args.cells = [4, 4, 3] if args.quick else [16, 16, 8]
    if min(args.cells) < 3:
        parser.error(
            f"--cells needs at least 3 cells per axis (the cross-gradient), got {args.cells}"
        )
    if args.quick:
        for key, value in (("draws", 100), ("tune", 100), ("chains", 2)):
            if getattr(args, key) is None:
                setattr(args, key, value)
    for key in ("draws", "tune", "chains"):
        value = getattr(args, key)
        if value is not None and value < 1:
            parser.error(f"--{key} must be positive, got {value}")
    return args


# -- geometry and truth (shared) ---------------------------------------------------------------
def geometry(cells: list[int]) -> dict[str, Any]:
    """Cell edges (x, y east/north from 0; z up, surface at 0), stations, true models."""
    nx, ny, nz = cells
    edges = {
        "x": np.arange(nx + 1) * CELL,
        "y": np.arange(ny + 1) * CELL,
        "z": -nz * CELL + np.arange(nz + 1) * CELL,
    }
    centers = {k: 0.5 * (e[1:] + e[:-1]) for k, e in edges.items()}
    sx, sy = np.meshgrid(centers["x"], centers["y"], indexing="ij")
    stations = np.column_stack([sx.ravel(), sy.ravel(), np.full(sx.size, HEIGHT)])
    # Blocks in fractions of the mesh, so every size has them in the same place.
    x, y, z = np.meshgrid(centers["x"], centers["y"], centers["z"], indexing="ij")
    lx, ly, lz = nx * CELL, ny * CELL, nz * CELL
    in_a = (x > 0.15 * lx) & (x < 0.45 * lx) & (y > 0.3 * ly) & (y < 0.7 * ly)
    in_a &= (z > -0.65 * lz) & (z < -0.15 * lz)
    in_b = (x > 0.55 * lx) & (x < 0.85 * lx) & (y > 0.3 * ly) & (y < 0.7 * ly)
    in_b &= (z > -0.85 * lz) & (z < -0.35 * lz)
    density = DENSITY_CONTRAST * (in_a | in_b)  # (nx, ny, nz), C order = bayesjoint's
    chi = SUSCEPTIBILITY * in_a
    return {"edges": edges, "stations": stations, "density": density, "chi": chi}


def to_simpeg(field: np.ndarray) -> np.ndarray:
    """(nx, ny, nz) array -> discretize's cell order (x fastest)."""
    return np.ravel(field, order="F")


def from_simpeg(vector: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.reshape(vector, shape, order="F")


def clock() -> tuple[float, float]:
    """Wall time and CPU time of this process and its waited-for children, in seconds."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter(), time.process_time() + children.ru_utime + children.ru_stime


def since(start: tuple[float, float]) -> tuple[float, float]:
    now = clock()
    return now[0] - start[0], now[1] - start[1]


def stats(estimate: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    a, b = np.ravel(estimate), np.ravel(truth)
    return {
        "correlation": round(float(np.corrcoef(a, b)[0, 1]), 4),
        "rmse": float(f"{np.sqrt(np.mean((a - b) ** 2)):.5g}"),
    }


# -- SimPEG --------------------------------------------------------------------------------------
def simpeg_setup(geo: dict[str, Any]) -> dict[str, Any]:
    """Mesh, surveys and simulations; density in g/cc as SimPEG's examples use."""
    import discretize
    from simpeg import maps
    from simpeg.potential_fields import gravity, magnetics

    e = geo["edges"]
    mesh = discretize.TensorMesh(
        [np.diff(e["x"]), np.diff(e["y"]), np.diff(e["z"])],
        origin=(e["x"][0], e["y"][0], e["z"][0]),
    )
    n = mesh.n_cells
    active = np.ones(n, dtype=bool)
    wires = maps.Wires(("density", n), ("susceptibility", n))
    rec_g = gravity.receivers.Point(geo["stations"], components="gz")
    survey_g = gravity.survey.Survey(gravity.sources.SourceField(receiver_list=[rec_g]))
    rec_m = magnetics.receivers.Point(geo["stations"], components="tmi")
    source_m = magnetics.sources.UniformBackgroundField(
        receiver_list=[rec_m],
        amplitude=FIELD["strength"],
        inclination=FIELD["inclination"],
        declination=FIELD["declination"],
    )
    survey_m = magnetics.survey.Survey(source_m)
    sim_g = gravity.simulation.Simulation3DIntegral(
        survey=survey_g,
        mesh=mesh,
        rhoMap=wires.density,
        active_cells=active,
        store_sensitivities="ram",
    )
    sim_m = magnetics.simulation.Simulation3DIntegral(
        survey=survey_m,
        mesh=mesh,
        model_type="scalar",
        chiMap=wires.susceptibility,
        active_cells=active,
        store_sensitivities="ram",
    )
    return {"mesh": mesh, "wires": wires, "active": active, "sim_g": sim_g, "sim_m": sim_m}


def simpeg_invert(
    sp: dict[str, Any], d_g: np.ndarray, sd_g: float, d_m: np.ndarray, sd_m: float, lam: float
) -> tuple[np.ndarray, dict[str, Any]]:
    """SimPEG's joint inversion with the cross-gradient; returns the model and its figures."""
    from simpeg import (
        data,
        data_misfit,
        directives,
        inverse_problem,
        inversion,
        optimization,
        regularization,
    )

    mesh, wires, active = sp["mesh"], sp["wires"], sp["active"]
    sim_g, sim_m = sp["sim_g"], sp["sim_m"]
    data_g = data.Data(sim_g.survey, dobs=d_g, standard_deviation=np.full(d_g.size, sd_g))
    data_m = data.Data(sim_m.survey, dobs=d_m, standard_deviation=np.full(d_m.size, sd_m))
    dmis_g = data_misfit.L2DataMisfit(data=data_g, simulation=sim_g)
    dmis_m = data_misfit.L2DataMisfit(data=data_m, simulation=sim_m)
    reg_g = regularization.WeightedLeastSquares(mesh, active_cells=active, mapping=wires.density)
    reg_m = regularization.WeightedLeastSquares(
        mesh, active_cells=active, mapping=wires.susceptibility
    )
    cross = regularization.CrossGradient(mesh, wire_map=wires, active_cells=active)
    dmis = dmis_g + dmis_m
    reg = reg_g + reg_m + lam * cross
    opt = optimization.ProjectedGNCG(
        maxIter=20, lower=-2.0, upper=2.0, maxIterLS=20, cg_maxiter=100, cg_rtol=1e-3, tolX=1e-3
    )
    inv_prob = inverse_problem.BaseInvProblem(dmis, reg, opt)
    stopping = directives.MovingAndMultiTargetStopping(tol=1e-6)
    directive_list = [
        directives.SimilarityMeasureInversionDirective(),
        directives.UpdateSensitivityWeights(every_iteration=False),
        stopping,
        directives.PairedBetaEstimate_ByEig(beta0_ratio=1.0, seed=1),
        directives.ScalingMultipleDataMisfits_ByEig(chi0_ratio=[1.0, 1.0], random_seed=1),
        directives.PairedBetaSchedule(cooling_factor=5.0, cooling_rate=1),
        directives.UpdatePreconditioner(),
    ]
    inv = inversion.BaseInversion(inv_prob, directive_list)
    with contextlib.redirect_stdout(sys.stderr):
        model = inv.run(np.zeros(2 * mesh.n_cells))
    phi_g = float(dmis_g(model))
    phi_m = float(dmis_m(model))
    return model, {
        "iterations": int(opt.iter),
        "stopped_at_max_iterations": bool(opt.iter >= opt.maxIter),
        "phi_d_gravity": float(f"{phi_g:.5g}"),
        "phi_d_magnetics": float(f"{phi_m:.5g}"),
        "n_data_each": int(d_g.size),
        "coupling_weight": float(f"{lam:.5g}"),
        "cross_gradient_phi": float(f"{float(cross(model)):.5g}"),
    }


# -- bayesjoint ----------------------------------------------------------------------------------
def bayesjoint_problem(geo: dict[str, Any], d_g: np.ndarray, sd_g: float, d_m, sd_m):
    import bayesjoint as bj
    from bayesjoint.coupling import CrossGradient

    grid = bj.Grid.from_edges(**geo["edges"])
    gravity = bj.physics.Gravity(grid, geo["stations"], input="density")
    magnetics = bj.physics.Magnetics(grid, geo["stations"], input="susceptibility", **FIELD)
    density = bj.Field(
        "density", grid, bj.priors.GaussianField(PRIOR_DENSITY_SD, CORRELATION), units="kg/m^3"
    )
    chi = bj.Field(
        "susceptibility",
        grid,
        bj.priors.GaussianField(PRIOR_SUSCEPTIBILITY_SD, CORRELATION),
        units="SI",
    )
    modalities = [
        bj.Modality("gravity", gravity, d_g, bj.noise.Gaussian(sd_g), units="mGal"),
        bj.Modality("magnetics", magnetics, d_m, bj.noise.Gaussian(sd_m), units="nT"),
    ]
    coupling = CrossGradient("density", "susceptibility", strength=STRENGTH, name="cross_gradient")
    problem = bj.JointInversion([density, chi], modalities, couplings=[coupling])
    return problem, grid, gravity, magnetics


def coupling_weight(sp: dict[str, Any], grid) -> float:
    """SimPEG's λ such that ``λ φ_cg = ½ (K_eff/K) Σ t̃²`` on average over smooth fields.

    Built from fields and a coupling of its own, so nothing is cached for the timed run.
    """
    from simpeg import regularization

    import bayesjoint as bj
    from bayesjoint.coupling import CrossGradient, normalized_cross_gradient
    from bayesjoint.coupling.cross_gradient import prior_gradient_scale

    density = bj.Field("density", grid, bj.priors.GaussianField(PRIOR_DENSITY_SD, CORRELATION))
    chi = bj.Field(
        "susceptibility", grid, bj.priors.GaussianField(PRIOR_SUSCEPTIBILITY_SD, CORRELATION)
    )
    coupling = CrossGradient("density", "susceptibility", strength=STRENGTH)
    s_rho, s_chi = prior_gradient_scale(density), prior_gradient_scale(chi)
    variables = {"density": density, "susceptibility": chi}
    k_eff = coupling.effective_terms(variables)
    cross = regularization.CrossGradient(
        sp["mesh"], wire_map=sp["wires"], active_cells=sp["active"]
    )
    rng = np.random.default_rng(20261201)
    ours, theirs = 0.0, 0.0
    for _ in range(8):
        a = PRIOR_DENSITY_SD * _smooth(rng, grid.shape)
        b = PRIOR_SUSCEPTIBILITY_SD * _smooth(rng, grid.shape)
        t = normalized_cross_gradient(a, b, grid, s_rho, s_chi)
        ours += 0.5 * STRENGTH**2 * k_eff / t.size * float(np.sum(t**2))
        theirs += float(cross(np.concatenate([to_simpeg(a) / 1000.0, to_simpeg(b)])))
    return ours / theirs


def _smooth(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A smooth random field (white noise averaged over 3 cells per axis), unit sd."""
    from scipy.ndimage import uniform_filter

    field = uniform_filter(rng.standard_normal(shape), size=3, mode="nearest")
    return field / field.std()


def convergence(idata) -> dict[str, Any]:
    import arviz as az

    post = idata.posterior[["density", "susceptibility"]]
    rhat = az.rhat(post)
    bulk = az.ess(post, method="bulk")
    tail = az.ess(post, method="tail")
    stats_ = idata.get("sample_stats")
    div = None
    if stats_ is not None and "diverging" in stats_:
        div = int(stats_["diverging"].sum())
    steps = None  # leapfrog steps per draw (PyMC's n_steps), mean over chains and draws
    if stats_ is not None and "n_steps" in stats_:
        steps = round(float(stats_["n_steps"].mean()), 1)
    return {
        "mean_leapfrog_steps": steps,
        "max_rhat": round(float(max(rhat[v].max() for v in rhat.data_vars)), 4),
        "min_ess_bulk": round(float(min(bulk[v].min() for v in bulk.data_vars)), 1),
        "min_ess_tail": round(float(min(tail[v].min() for v in tail.data_vars)), 1),
        "divergences": div,
        "n_cells_checked": int(
            sum(post[v].size // (post.sizes["chain"] * post.sizes["draw"]) for v in post.data_vars)
        ),
    }


# -- main ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "mode": "quick" if args.quick else "full",
        "cells": list(args.cells),
        "machine": _machine.machine_info(
            ("numpy", "scipy", "pymc", "pytensor", "arviz", "simpeg", "discretize", "geoana")
        ),
    }
    try:
        import simpeg  # noqa: F401
    except ImportError as exc:
        out["skipped"] = (
            f"simpeg is not installed ({exc}); it is used by this benchmark only: "
            "pip install simpeg"
        )
        return out
    geo = geometry(args.cells)
    shape = tuple(args.cells)
    out["n_stations"] = int(geo["stations"].shape[0])
    out["n_cells"] = int(np.prod(shape))

    # SimPEG: simulations (sensitivities computed when first needed, here: the data).
    tic = clock()
    sp = simpeg_setup(geo)
    m_true = np.concatenate([to_simpeg(geo["density"]) / 1000.0, to_simpeg(geo["chi"])])
    clean_g = np.asarray(sp["sim_g"].dpred(m_true))
    clean_m = np.asarray(sp["sim_m"].dpred(m_true))
    t_simpeg_setup = since(tic)
    rng = np.random.default_rng(args.seed)
    sd_g = NOISE_FRACTION * float(np.max(np.abs(clean_g)))
    sd_m = NOISE_FRACTION * float(np.max(np.abs(clean_m)))
    d_g = clean_g + sd_g * rng.standard_normal(clean_g.shape)
    d_m = clean_m + sd_m * rng.standard_normal(clean_m.shape)
    out["noise_sd"] = {"gravity_mGal": sd_g, "magnetics_nT": sd_m}

    # bayesjoint: operators and the problem (timed), then the operator cross-check (not timed).
    # SimPEG's g_z is the upward component; the package's is the downward one.
    tic = clock()
    problem, grid, gravity, magnetics = bayesjoint_problem(geo, -d_g, sd_g, d_m, sd_m)
    bj_setup = since(tic)
    out["operators"] = operator_check(sp, gravity, magnetics, geo, clean_g, clean_m, shape)

    lam = coupling_weight(sp, grid)
    tic = clock()
    model, simpeg_figures = simpeg_invert(sp, d_g, sd_g, d_m, sd_m, lam)
    t_simpeg_invert = since(tic)
    simpeg_total = t_simpeg_setup[0] + t_simpeg_invert[0]
    simpeg_cpu = t_simpeg_setup[1] + t_simpeg_invert[1]
    out["simpeg"] = {
        **simpeg_figures,
        "setup_s": round(t_simpeg_setup[0], 2),
        "inversion_s": round(t_simpeg_invert[0], 2),
        "total_s": round(simpeg_total, 2),
        "cpu_s": round(simpeg_cpu, 2),
    }
    # Progress on stderr: a long sampling run leaves SimPEG's figures readable meanwhile.
    print(f"simpeg_joint: simpeg {json.dumps(out['simpeg'])}", file=sys.stderr, flush=True)
    rho_simpeg = 1000.0 * from_simpeg(sp["wires"].density * model, shape)
    chi_simpeg = from_simpeg(sp["wires"].susceptibility * model, shape)

    from bayesjoint.inference.routes import choose_route

    out["auto_route"] = list(choose_route(problem, "auto", {}))  # what method="auto" takes
    kwargs = {
        k: getattr(args, k) for k in ("draws", "tune", "chains") if getattr(args, k) is not None
    }
    tic = clock()
    with contextlib.redirect_stdout(sys.stderr):
        idata = problem.sample(
            method=args.method, random_seed=args.seed, progressbar=False, **kwargs
        )
    sample = since(tic)
    bj_total = bj_setup[0] + sample[0]
    bj_cpu = bj_setup[1] + sample[1]
    post = idata.posterior
    route = str(post.attrs.get("route", ""))
    conv = convergence(idata)
    out["bayesjoint"] = {
        "route": route,
        "route_reason": str(post.attrs.get("route_reason", "")),
        "mass_matrix": str(post.attrs.get("mass_matrix", "")),
        "chains": int(post.sizes["chain"]),
        "draws": int(post.sizes["draw"]),
        **conv,
        "setup_s": round(bj_setup[0], 2),
        "sample_s": round(sample[0], 2),
        "total_s": round(bj_total, 2),
        "cpu_s": round(bj_cpu, 2),
    }
    rho_mean = post["density"].mean(("chain", "draw")).values
    chi_mean = post["susceptibility"].mean(("chain", "draw")).values
    out["models"] = {
        "simpeg_vs_truth": {
            "density": stats(rho_simpeg, geo["density"]),
            "susceptibility": stats(chi_simpeg, geo["chi"]),
        },
        "posterior_mean_vs_truth": {
            "density": stats(rho_mean, geo["density"]),
            "susceptibility": stats(chi_mean, geo["chi"]),
        },
        "posterior_mean_vs_simpeg": {
            "density": stats(rho_mean, rho_simpeg),
            "susceptibility": stats(chi_mean, chi_simpeg),
        },
    }
    ratio = bj_total / simpeg_total
    out["wall_time_ratio"] = round(ratio, 2)
    out["cpu_time_ratio"] = round(bj_cpu / simpeg_cpu, 2)
    criteria = {
        "rhat": conv["max_rhat"] <= RHAT_MAX,
        "ess_bulk": conv["min_ess_bulk"] >= ESS_MIN,
        "ess_tail": conv["min_ess_tail"] >= ESS_MIN,
        "no_divergences": not conv["divergences"],
        "wall_time_ratio": ratio <= RATIO_MAX,
    }
    out["criteria"] = {**criteria, "all": all(criteria.values())}
    return out


def operator_check(sp, gravity, magnetics, geo, clean_g, clean_m, shape) -> dict[str, Any]:
    """Compare the package's sensitivity matrices with SimPEG's on the same cells."""
    g_simpeg = np.asarray(sp["sim_g"].G)  # mGal per g/cc, discretize cell order
    m_simpeg = np.asarray(sp["sim_m"].G)  # nT per SI
    # Columns to the package's order (C order of (nx, ny, nz)); density g/cc -> kg/m³.
    perm = to_simpeg(np.arange(int(np.prod(shape))).reshape(shape))
    # SimPEG's g_z is the upward component (negative over a dense body), the package's the
    # downward one: the sign is flipped to compare.
    g_ours = -1000.0 * gravity.matrix[:, perm]
    m_ours = magnetics.matrix[:, perm]

    def rel(a, b):
        return float(f"{np.max(np.abs(a - b)) / np.max(np.abs(b)):.3g}")

    d_g = -gravity.matrix @ geo["density"].ravel()
    d_m = magnetics.matrix @ geo["chi"].ravel()
    return {
        "gravity_matrix_rel_diff": rel(g_ours, g_simpeg),
        "magnetics_matrix_rel_diff": rel(m_ours, m_simpeg),
        "gravity_data_rel_diff": rel(d_g, clean_g),
        "magnetics_data_rel_diff": rel(d_m, clean_m),
        "shape": [int(g_simpeg.shape[0]), int(g_simpeg.shape[1])],
    }


if __name__ == "__main__":
    result = main(sys.argv[1:])
    os.write(1, (json.dumps(result, indent=1) + "\n").encode())
