"""The built-in demonstration: gravity and borehole density along a 1 km profile.

A buried density-contrast layer (a thin horizontal sheet, 50 m thick, 100 m deep) is described by
a 1-D field on 100 cells along a profile. Two instruments see it:

- ``gravity``: 40 surface stations record the vertical attraction (mGal) — smooth, sees everything,
  resolves little;
- ``borehole``: 12 density logs sample the layer directly (kg/m³) — sharp, but only where drilled.

The problem is linear-Gaussian, so the sampler is checked against the exact posterior and the
information budget says what each instrument contributed. The synthetic data are generated
deterministically (fixed seed), so every run sees the same data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import arviz as az
import numpy as np
import xarray as xr

from bayesjoint.grid import Grid
from bayesjoint.joint import JointInversion
from bayesjoint.latent import Field
from bayesjoint.modality import Modality
from bayesjoint.noise import Gaussian
from bayesjoint.physics.linear import Linear
from bayesjoint.priors import GaussianField
from bayesjoint.validate import compare_with_exact

__all__ = [
    "DRAWS",
    "QUICK",
    "DemoResult",
    "build_problem",
    "run",
    "sheet_gravity_matrix",
    "true_density",
    "verdict",
]

GRAVITATIONAL_CONSTANT = 6.6743e-11  # m^3 kg^-1 s^-2 (CODATA 2018)
DATA_SEED = 20261129


def sheet_gravity_matrix(
    edges: np.ndarray, stations: np.ndarray, depth: float, thickness: float
) -> np.ndarray:
    """Vertical attraction (mGal per kg/m³) of thin 2-D sheet segments at surface stations.

    Parameters
    ----------
    edges : numpy.ndarray, shape (n + 1,)
        Segment edges along the profile (m).
    stations : numpy.ndarray, shape (s,)
        Station positions along the profile (m), at z = 0.
    depth : float
        Depth of the sheet below the stations (m, > 0).
    thickness : float
        Sheet thickness (m), small compared with ``depth``.

    Returns
    -------
    numpy.ndarray, shape (s, n)

    Notes
    -----
    A horizontal thin sheet of thickness ``t`` at depth ``D``, density contrast ``Δρ``, extending
    from ``x1`` to ``x2`` and infinitely along strike gives at ``(x_s, 0)``
    ``g_z = 2 G Δρ t [arctan((x2 − x_s)/D) − arctan((x1 − x_s)/D)]`` (Blakely 1995, §7),
    positive (downward attraction) for a positive contrast below the station; 1 mGal = 1e-5 m/s².
    An infinite sheet gives the Bouguer value ``2πGΔρt``.

    Examples
    --------
    >>> import numpy as np
    >>> g = sheet_gravity_matrix(np.array([-1e9, 1e9]), np.array([0.0]), 100.0, 10.5)
    >>> round(float(g[0, 0] * 2670.0), 5)  # Bouguer slab, 2670 kg/m³, 10.5 m
    1.17567
    """
    angles = np.arctan((edges[None, :] - stations[:, None]) / depth)
    return 2.0 * GRAVITATIONAL_CONSTANT * thickness * np.diff(angles, axis=1) * 1e5


def true_density(x: np.ndarray) -> np.ndarray:
    """Return the synthetic truth (kg/m³): a dense block, a light lens and a gentle trend."""
    block = 250.0 * ((x > 300.0) & (x < 450.0))
    lens = -150.0 * np.exp(-0.5 * ((x - 720.0) / 60.0) ** 2)
    trend = 40.0 * np.sin(2.0 * np.pi * x / 1000.0)
    return block + lens + trend


def build_problem(n_cells: int = 100, n_stations: int = 40) -> tuple[JointInversion, np.ndarray]:
    """Return the demo's joint inversion and the true density on its grid.

    Parameters
    ----------
    n_cells : int, default 100
        Cells along the 1 km profile.
    n_stations : int, default 40
        Gravity stations.

    Examples
    --------
    >>> problem, truth = build_problem(n_cells=50, n_stations=10)
    >>> sorted(problem.modalities), truth.shape
    (['borehole', 'gravity'], (50,))
    """
    rng = np.random.default_rng(DATA_SEED)
    width = 1000.0 / n_cells
    grid = Grid(x=(np.arange(n_cells) + 0.5) * width)
    truth = true_density(grid.centers["x"])
    density = Field(
        "density",
        grid,
        prior=GaussianField(sigma=150.0, correlation_length=80.0, kernel="matern52"),
        units="kg/m^3",
    )
    stations = np.linspace(0.0, 1000.0, n_stations)
    g_matrix = sheet_gravity_matrix(grid.edges["x"], stations, depth=100.0, thickness=50.0)
    g_sd = 0.05
    g_data = g_matrix @ truth + g_sd * rng.standard_normal(n_stations)
    gravity = Modality(
        "gravity",
        physics=Linear(g_matrix, input="density"),
        data=xr.DataArray(
            g_data, dims="station", coords={"station": stations}, attrs={"units": "mGal"}
        ),
        noise=Gaussian(g_sd),
    )
    holes = np.unique(np.linspace(0, n_cells - 1, 12).round().astype(int))
    selector = np.zeros((holes.size, n_cells))
    selector[np.arange(holes.size), holes] = 1.0
    b_sd = 25.0
    b_data = truth[holes] + b_sd * rng.standard_normal(holes.size)
    borehole = Modality(
        "borehole",
        physics=Linear(selector, input="density"),
        data=xr.DataArray(
            b_data,
            dims="well",
            coords={"well": grid.centers["x"][holes]},
            attrs={"units": "kg/m^3"},
        ),
        noise=Gaussian(b_sd),
    )
    return JointInversion(latent=[density], modalities=[gravity, borehole]), truth


@dataclass
class DemoResult:
    """What :func:`run` produced: the InferenceData, the exact posterior and the budget."""

    idata: az.InferenceData
    exact: xr.Dataset
    budget: xr.Dataset
    summary: dict[str, Any]
    path: str | None

    @property
    def passed(self) -> bool:
        """True when every self-check of :func:`verdict` passed (``summary["passed"]``)."""
        return bool(self.summary["passed"])


#: Settings of ``bayesjoint demo --quick`` (CI). NUTS with the exact covariance as mass matrix
#: makes each draw nearly antithetic to the last (bulk ESS above the number of draws) but keeps
#: ``|x - median|`` correlated: the tail ESS is about half the draws, and the folded R-hat
#: scatters as for half as many independent draws. 4 x 500 draws gave a max R-hat of 1.014
#: over the 80 variables; 4 x 1500 keeps it below :func:`bayesjoint.diagnose`'s 1.01.
QUICK = {"draws": 1500, "tune": 300, "chains": 4, "n_cells": 40}

#: Draws per chain of the full-size demo (4 chains): see :data:`QUICK` for why more than 1000.
DRAWS = 2000

#: Largest |sampled mean − exact mean| / MCSE of any cell: each z is approximately standard
#: normal for a correct sampler, so over 100 cells P(max |z| > 4) ≈ 100 · 6.3e-5 = 0.6 %.
Z_TOL = 4.0

#: Largest |sampled sd / exact sd − 1| of any cell: the relative error of an sd estimate is
#: about 1 / sqrt(2 ESS) (1.6 % at ESS 2000, 2.2 % at ESS 1000), so 10 % is more than four of
#: them for every cell of a run that passes the ESS check.
SD_RTOL = 0.10


def _diagnostics(idata: az.InferenceData, problem: JointInversion, exact: xr.Dataset) -> dict:
    from bayesjoint.diagnostics.diagnosis import diagnose

    post = idata.posterior[list(problem.latent)]
    ess_bulk = problem.stack_latent(az.ess(post, method="bulk")).values
    ess_tail = problem.stack_latent(az.ess(post, method="tail")).values
    check = compare_with_exact(problem, idata, exact, z_tol=Z_TOL, sd_rtol=SD_RTOL)
    rhat_all = az.rhat(idata.posterior)  # every sampled variable, the whitened field included
    stats = idata.get("sample_stats")
    diagnosis = diagnose(idata, problem, modality_checks=False, conflict=None)
    failed = diagnosis.checks[
        diagnosis.checks["check"].isin(["convergence", "divergences"])
        & (diagnosis.checks["status"] == "fail")
    ]
    summary = {
        "max_rhat": float(max(rhat_all[v].max() for v in rhat_all.data_vars)),
        "min_ess_bulk": float(ess_bulk.min()),
        "min_ess_tail": float(ess_tail.min()),
        "divergences": int(stats["diverging"].sum())
        if stats is not None and "diverging" in stats
        else 0,
        "max_abs_z_mean": check.max_abs_z,
        "sd_ratio_min": check.sd_ratio_range[0],
        "sd_ratio_max": check.sd_ratio_range[1],
    }
    summary["checks"] = {
        "diagnose_convergence": bool(failed.empty),
        "means_within_z_tol_mcse": bool(check.max_abs_z <= Z_TOL),
        "sds_within_sd_rtol": bool(
            max(abs(summary["sd_ratio_min"] - 1.0), abs(summary["sd_ratio_max"] - 1.0)) <= SD_RTOL
        ),
    }
    summary["passed"] = all(summary["checks"].values())
    return summary


def verdict(idata: az.InferenceData, problem: JointInversion, exact: xr.Dataset) -> dict:
    """Return the demo's self-check of ``idata`` against the exact posterior ``exact``.

    Parameters
    ----------
    idata : arviz.InferenceData
        Posterior draws of ``problem``.
    problem : JointInversion
    exact : xarray.Dataset
        The exact posterior (``problem.exact_posterior()``, or a deliberately wrong one for a
        negative control).

    Returns
    -------
    dict
        The figures (``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``, ``divergences``,
        ``max_abs_z_mean``, ``sd_ratio_min``, ``sd_ratio_max``), ``checks`` (name → bool) and
        ``passed``.

    Notes
    -----
    Three checks, all required:

    * ``diagnose_convergence``: :func:`bayesjoint.diagnose` passes on convergence (split R-hat
      ≤ 1.01, bulk and tail ESS ≥ 400 for every variable, no divergent transition);
    * ``means_within_z_tol_mcse``: every cell's sampled mean is within :data:`Z_TOL` = 4 Monte
      Carlo standard errors of the exact mean (``z = (mean − exact) / MCSE`` is approximately
      standard normal for a correct sampler; the family-wise false-alarm rate over 100 cells is
      about 0.6 %);
    * ``sds_within_sd_rtol``: every cell's sampled sd is within :data:`SD_RTOL` = 10 % of the
      exact sd (an sd estimate's relative error is about ``1/sqrt(2 ESS)``, 1.6 % at ESS 2000).
    """
    return _diagnostics(idata, problem, exact)


def run(
    out: str | None = "bayesjoint-demo.nc",
    *,
    draws: int = DRAWS,
    tune: int = 1000,
    chains: int = 4,
    random_seed: int = 2026,
    cores: int | None = None,
    progressbar: bool = True,
    n_cells: int = 100,
    echo: Any = None,
    checkpoint: str | None = None,
    resume: bool = False,
    checkpoint_every: float = 30.0,
) -> DemoResult:
    """Run the demo: sample, diagnose, compare with the exact posterior, budget, save.

    The run is sampled with NUTS (``method="nuts"``, not the exact route the problem would get
    by default) because the demo's point is to check a sampler against the closed form: see
    :func:`verdict` for the checks; ``result.passed`` says whether all of them held.

    Parameters
    ----------
    out : str or None
        netCDF report path; None writes nothing.
    draws, tune, chains, random_seed, cores, progressbar
        Passed to :meth:`JointInversion.sample`.
    n_cells : int
        Profile cells (fewer is faster).
    echo : callable, optional
        Receives each line of the human-readable summary (e.g. ``print``).
    checkpoint : str, optional
        Checkpoint file of the sampling run (see ``JointInversion.sample``).
    resume : bool, default False
        Continue the run in ``checkpoint``.
    checkpoint_every : float, default 30
        Seconds between writes of ``checkpoint``.

    Returns
    -------
    DemoResult
        With ``summary`` (the figures and checks of :func:`verdict`) and ``passed``.
    """
    from bayesjoint.io import save

    say = echo if echo is not None else (lambda line: None)
    problem, truth = build_problem(n_cells=n_cells)
    say("bayesjoint demo: gravity + borehole density, joint inversion along a 1 km profile")
    say(
        f"  latent: density ({n_cells} cells, Matérn-5/2 Gaussian field prior, whitened)  |  "
        + ", ".join(f"{m.name}: {m.n_data} data ({m.units})" for m in problem.modalities.values())
    )
    say(
        f"  sampling with NUTS: {chains} chains x {draws} draws ({tune} tuning), seed {random_seed}"
    )
    start = time.perf_counter()
    idata = problem.sample(
        draws=draws,
        tune=tune,
        chains=chains,
        method="nuts",  # the demo checks NUTS against the exact posterior
        cores=cores,
        random_seed=random_seed,
        progressbar=progressbar,
        checkpoint=checkpoint,
        resume=resume,
        checkpoint_every=checkpoint_every,
    )
    elapsed = time.perf_counter() - start
    problem.sample_posterior_predictive(idata, random_seed=random_seed + 1)
    exact = problem.exact_posterior()
    budget = problem.information_budget()
    summary = verdict(idata, problem, exact)
    summary["sampling_seconds"] = elapsed
    rmse = float(np.sqrt(np.mean((exact["mean"].values - truth) ** 2)))
    summary["rmse_exact_mean_vs_truth"] = rmse
    _say_checks(say, summary)
    _say_budget(say, budget, problem)
    path = None
    if out is not None:
        report = idata.copy()
        _add_report_groups(report, exact, budget, problem, truth)
        path = save(report, out)
        say(f"report written: {path} (groups: {', '.join(report.groups())})")
    return DemoResult(idata=idata, exact=exact, budget=budget, summary=summary, path=path)


def _say_checks(say: Any, summary: dict[str, Any]) -> None:
    """Say the convergence summary, the comparison with the exact posterior and the verdict."""
    checks = summary["checks"]
    say(
        f"diagnostics: max R-hat {summary['max_rhat']:.3f} | min ESS bulk "
        f"{summary['min_ess_bulk']:.0f} | min ESS tail {summary['min_ess_tail']:.0f} | "
        f"divergences {summary['divergences']} | {summary['sampling_seconds']:.1f} s  -> "
        f"{'OK' if checks['diagnose_convergence'] else 'FAIL'}"
    )
    say(
        f"vs exact posterior: max |mean - exact|/MCSE = {summary['max_abs_z_mean']:.2f} "
        f"(<= {Z_TOL:g}: {'OK' if checks['means_within_z_tol_mcse'] else 'FAIL'}); "
        f"sd ratio {summary['sd_ratio_min']:.3f}-{summary['sd_ratio_max']:.3f} "
        f"(within {SD_RTOL:.0%}: {'OK' if checks['sds_within_sd_rtol'] else 'FAIL'}); "
        f"RMSE of the posterior mean vs truth {summary['rmse_exact_mean_vs_truth']:.1f} kg/m^3"
    )
    failed = [name for name, ok in checks.items() if not ok]
    say(f"verdict: {'PASS' if summary['passed'] else 'FAIL (' + ', '.join(failed) + ')'}")


def _say_budget(say: Any, budget: xr.Dataset, problem: JointInversion) -> None:
    """Say the information budget as a table: one row per modality, then all together."""
    say("information budget (nats; alone = prior + that modality, added = on top of all others):")
    say(
        f"  {'modality':<10} {'n_data':>6} {'gain_alone':>11} {'gain_added':>11} "
        f"{'var_reduction':>14}"
    )
    prior_var = budget["prior_sd"] ** 2
    for name in budget["modality"].values:
        b = budget.sel(modality=name)
        reduction = float((1.0 - b["posterior_sd_alone"] ** 2 / prior_var).mean())
        say(
            f"  {name:<10} {problem.modalities[name].n_data:>6d} "
            f"{float(b['information_gain_alone']):>11.2f} "
            f"{float(b['information_gain_added']):>11.2f} {reduction:>14.1%}"
        )
    joint_reduction = float((1.0 - budget["posterior_sd"] ** 2 / prior_var).mean())
    say(
        f"  {'joint':<10} {sum(m.n_data for m in problem.modalities.values()):>6d} "
        f"{float(budget['information_gain_total']):>11.2f} {'':>11} {joint_reduction:>14.1%}"
    )
    say("  (var_reduction = mean over cells of 1 - posterior variance / prior variance)")


def _add_report_groups(
    idata: az.InferenceData,
    exact: xr.Dataset,
    budget: xr.Dataset,
    problem: JointInversion,
    truth: np.ndarray,
) -> None:
    """Attach the exact posterior, the budget and the truth as extra groups (in place)."""
    import warnings

    var = problem.latent["density"]
    truth_ds = xr.Dataset({"density": (var.dims, truth)}, coords=var.coords)
    with warnings.catch_warnings():
        # ArviZ warns that these groups are outside its standard schema; they are ours on purpose.
        warnings.filterwarnings("ignore", message=".*is not defined in the InferenceData scheme")
        idata.add_groups(
            {"exact_posterior": exact, "information_budget": budget, "true_model": truth_ds}
        )
    attrs = dict(idata.posterior.attrs)
    for group in ("exact_posterior", "information_budget", "true_model"):
        idata[group].attrs.update(attrs)
