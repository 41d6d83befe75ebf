"""Case study: mRNA and protein time courses of an induced gene sharing four rate constants.

A gene is switched on at t = 0 (m = p = 0 before). Its transcripts and protein follow the
two-stage model of gene expression (e.g. Shahrezaei & Swain 2008, PNAS 105, 17256)::

    dm/dt = k_tx − d_m m,        dp/dt = k_tl m − d_p p,

with transcription rate k_tx (mRNA per cell per hour), mRNA degradation rate d_m (1/h),
translation rate k_tl (proteins per mRNA per hour) and protein degradation rate d_p (1/h).
Two assays see the same cells:

* **mRNA** (RT-qPCR against a standard curve, copies per cell): 8 early time points,
  0.5–8 h; multiplicative error, sd 0.2 in ln (about 20 %), so the modality compares ln m(t)
  with ln of the measurement;
* **protein** (calibrated fluorescent reporter, molecules per cell): 8 time points, 2–24 h;
  additive error, sd 80 molecules per cell.

The full run has 3 biological replicates per time point and assay; ``--quick`` one.

The model is written as the analyst would: the right-hand side in pytensor, solved by the
compiled ODE physics (:class:`bayesjoint.physics.ODE`, adaptive Dormand–Prince, rtol = atol =
1e-8) with the four log rates as scalar latent parameters. Priors (natural-log rates): the
synthesis rates are vague, ln k_tx, ln k_tl ~ N(ln 10, 1.5²) (a factor of 20 either way at
2 sd); the degradation rates use typical half-lives of short-lived transcripts and proteins,
ln d_m ~ N(ln 0.4, 0.5²), ln d_p ~ N(ln 0.08, 0.5²).

Why both assays: with m0 = p0 = 0 the protein curve is

    p(t) = k_tx k_tl / (d_m d_p) · [1 − (d_p e^{−d_m t} − d_m e^{−d_p t}) / (d_p − d_m)],

which depends on k_tx and k_tl only through their product (and on d_m, d_p symmetrically). The
protein assay alone leaves a ridge ln k_tx + ln k_tl = const along which only the prior
decides; the mRNA assay measures k_tx and d_m, which breaks it.

Three inversions of the same data: protein alone, mRNA alone, both. The mRNA-alone and joint
runs take ``problem.sample()``'s route (``nuts``: the ODE is nonlinear). The protein-alone
posterior reaches across the fold d_m = d_p (the protein curve is symmetric in the two rates)
into the mirror region, where NUTS diverges now and then; it is sampled by SMC with
random-walk Metropolis moves, checked against quadrature in the tests. Checks (``"checks"`` in
the JSON line):

* ``ode_matches_closed_form``: the ODE physics at the true rates equals the closed form above
  (and m(t) = k_tx/d_m (1 − e^{−d_m t})) to relative error 1e-6;
* ``rates_in_joint_intervals``: each true rate lies in its joint central 99 % credible interval
  (for a calibrated posterior each misses with probability 1 %, all four pass with probability
  ≥ 96 %);
* ``protein_alone_ridge``: the protein-alone posterior correlation of ln k_tx and ln k_tl is
  below −0.9 (the ridge);
* ``joint_breaks_ridge``: the joint posterior correlation is above −0.5 and the sd along the
  ridge, sd((ln k_tx − ln k_tl)/√2), is at least 5 times smaller than with the protein alone;
* ``mrna_alone_leaves_translation_at_prior``: the mRNA data do not involve k_tl or d_p, so
  their mRNA-alone posterior is their prior: sd of ln k_tl and ln d_p within 4 MCSE of 1.5 and
  0.5 (a check on the sampler against a known answer);
* ``*_diagnose_convergence``: :func:`bayesjoint.diagnose` passes on convergence for each run.

    python case_studies/gene_expression.py [--quick] [--out FILE.nc] [--seed N]

Writes a netCDF report of the joint run (figures in the posterior attributes), a pair plot of
the three posteriors with the time courses (PNG next to it, when matplotlib is installed) and
ends with one JSON line of its figures. Time in hours.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import arviz as az
import numpy as np
import pytensor.tensor as pt
from bayesjoint_case_studies._plotting import pyplot, save
from bayesjoint_case_studies._verdict import convergence, exit_status, publish

import bayesjoint as bj
from bayesjoint.inference.checkpoint import add_checkpoint_arguments, use_checkpoint_folder

RATES = ("k_tx", "d_m", "k_tl", "d_p")
LATENT = tuple(f"ln_{r}" for r in RATES)  # the latent parameters: natural-log rates
TRUE_RATES = {"k_tx": 20.0, "d_m": 0.5, "k_tl": 5.0, "d_p": 0.1}  # /h (k_tx: mRNA/cell/h)
#: Prior (median, sd of ln) per rate.
PRIOR = {"k_tx": (10.0, 1.5), "d_m": (0.4, 0.5), "k_tl": (10.0, 1.5), "d_p": (0.08, 0.5)}
MRNA_TIMES = np.array([0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0])  # h
PROTEIN_TIMES = np.array([2.0, 4.0, 6.0, 8.0, 12.0, 16.0, 20.0, 24.0])  # h
MRNA_LOG_SD = 0.2  # RT-qPCR, sd of ln(copies per cell)
PROTEIN_SD = 80.0  # reporter, molecules per cell
UNITS = {"k_tx": "mRNA/cell/h", "d_m": "1/h", "k_tl": "protein/mRNA/h", "d_p": "1/h"}


# -- problem -----------------------------------------------------------------------------------
def rhs(t: Any, y: Any, p: Any) -> Any:
    """The two-stage model with the rates given as natural logarithms."""
    k_tx, d_m, k_tl, d_p = (pt.exp(v) for v in p)
    return pt.stack([k_tx - d_m * y[0], k_tl * y[0] - d_p * y[1]])


def closed_form(rates: dict[str, float], t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return m(t) and p(t) from m0 = p0 = 0 (distinct degradation rates)."""
    k_tx, d_m, k_tl, d_p = (rates[r] for r in RATES)
    m = k_tx / d_m * (1.0 - np.exp(-d_m * t))
    p = (k_tx * k_tl / (d_m * d_p)) * (
        1.0 - (d_p * np.exp(-d_m * t) - d_m * np.exp(-d_p * t)) / (d_p - d_m)
    )
    return m, p


def _log(state: Any) -> Any:
    return np.log(state) if isinstance(state, np.ndarray) else pt.log(state)


def ode(times: np.ndarray, component: int) -> bj.physics.ODE:
    """The ODE physics returning one state component (0: mRNA, 1: protein) at ``times``."""
    return bj.physics.ODE(
        rhs,
        times,
        params=LATENT,
        initial=(0.0, 0.0),
        component=component,
        t0=0.0,
        rtol=1e-8,
        atol=1e-8,
    )


def simulate(replicates: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Synthetic assay data (replicates stacked time-major: t1 r1, t1 r2, …)."""
    m_true, _ = closed_form(TRUE_RATES, MRNA_TIMES)
    _, p_true = closed_form(TRUE_RATES, PROTEIN_TIMES)
    m_rep, p_rep = np.repeat(m_true, replicates), np.repeat(p_true, replicates)
    return {
        "mrna": m_rep * np.exp(MRNA_LOG_SD * rng.standard_normal(m_rep.size)),
        "protein": p_rep + PROTEIN_SD * rng.standard_normal(p_rep.size),
    }


def build(data: dict[str, np.ndarray], replicates: int) -> dict[str, bj.JointInversion]:
    """Return the protein-alone, mRNA-alone and joint problems (same latent declarations)."""
    latent = [
        bj.Parameter(
            name,
            prior=bj.priors.Normal(float(np.log(PRIOR[r][0])), PRIOR[r][1]),
            units=f"ln({UNITS[r]})",
        )
        for name, r in zip(LATENT, RATES, strict=True)
    ]
    m_index = np.repeat(np.arange(MRNA_TIMES.size), replicates)
    p_index = np.repeat(np.arange(PROTEIN_TIMES.size), replicates)

    def qpcr(state: Any) -> Any:  # the replicates of ln m at each time
        return _log(state)[m_index]

    def reporter(state: Any) -> Any:
        return state[p_index]

    mrna = bj.Modality(
        "mrna",
        ode(MRNA_TIMES, 0),
        np.log(data["mrna"]),
        bj.noise.Gaussian(MRNA_LOG_SD),
        observe=bj.observe.Function(qpcr),
        units="ln(copies/cell)",
    )
    protein = bj.Modality(
        "protein",
        ode(PROTEIN_TIMES, 1),
        data["protein"],
        bj.noise.Gaussian(PROTEIN_SD),
        observe=bj.observe.Function(reporter),
        units="molecules/cell",
    )
    return {
        "protein_only": bj.JointInversion(latent, [protein]),
        "mrna_only": bj.JointInversion(latent, [mrna]),
        "joint": bj.JointInversion(latent, [mrna, protein]),
    }


# -- figures ------------------------------------------------------------------------------------
def protein_alone_by_quadrature(
    data: np.ndarray, replicates: int, protein_sd: float = PROTEIN_SD, n: int = 160
) -> dict[str, Any]:
    """Moments of the protein-alone posterior by quadrature, with no sampler.

    An ``n`` × ``n`` grid in (ln d_m, ln d_p), wide enough that its edges hold less than 1e-6
    of the mass (checked), and at each of its points a 1-D integral over the product
    S = k_tx k_tl.

    Parameters
    ----------
    data : numpy.ndarray
        The protein assay, molecules per cell, ``replicates`` per time point (time-major).
    replicates : int
        Replicates per time point of :data:`PROTEIN_TIMES`.
    protein_sd : float, default PROTEIN_SD
        Noise sd of the assay, molecules per cell.
    n : int, default 160
        Grid points per log degradation rate.

    Returns
    -------
    dict
        ``"ln_d_m"``, ``"ln_d_p"``, ``"ln_k_tx"``: (posterior mean, sd) of the log rate;
        ``"mirror"``: the posterior probability of d_m < d_p.

    Raises
    ------
    ValueError
        When the grid's edges hold 1e-6 of the mass or more, or the two synthesis rates'
        priors differ (the factorization below needs them equal).

    Notes
    -----
    The protein curve is p(t) = S g(t; d_m, d_p), so the log-likelihood is quadratic in S:
    ``−(Σd² − G Ŝ²)/(2σ²) − G (S − Ŝ)²/(2σ²)`` with ``G = Σg²``, ``Ŝ = Σ g d / G``. The prior
    of (ln k_tx, ln k_tl), independent with equal sd 1.5, factors into
    s = ln S ~ N(μ_tx + μ_tl, 2 · 1.5²) and a = ln k_tx − ln k_tl ~ N(0, 2 · 1.5²), independent
    of s and absent from the likelihood: ln k_tx = (s + a)/2 has mean E[s]/2 and variance
    (var s + 2 · 1.5²)/4. The integral over S runs on Ŝ ± 10 σ/√G (201 points, trapezoid,
    with the Jacobian ds = dS/S). The fold d_m = d_p runs through grid points (one grid for
    both log rates), which count half on each side.
    """
    if PRIOR["k_tx"] != PRIOR["k_tl"]:
        raise ValueError(
            "protein_alone_by_quadrature needs equal priors for k_tx and k_tl (then ln k_tx + "
            f"ln k_tl and ln k_tx − ln k_tl are independent); got {PRIOR['k_tx']}, {PRIOR['k_tl']}"
        )
    t = np.repeat(PROTEIN_TIMES, replicates)
    data = np.asarray(data, dtype=float)
    mu = {r: np.log(PRIOR[r][0]) for r in RATES}
    lg = np.linspace(mu["d_p"] - 2.4, mu["d_m"] + 2.4, n)
    LM, LP = np.meshgrid(lg, lg, indexing="ij")
    dm, dp = np.exp(LM), np.exp(LP)
    same = np.isclose(dm, dp, rtol=1e-9, atol=0.0)  # on the fold, the limit d_m = d_p = d:
    diff = np.where(same, 1.0, dp - dm)  # g = (1 − (1 + d t) e^{−d t}) / d²
    g = np.stack(
        [
            np.where(
                same,
                (1 - (1 + dm * ti) * np.exp(-dm * ti)) / dm**2,
                (1 - (dp * np.exp(-dm * ti) - dm * np.exp(-dp * ti)) / diff) / (dm * dp),
            )
            for ti in t
        ],
        -1,
    )
    gg = np.sum(g * g, axis=-1)
    s_hat = np.sum(g * data, axis=-1) / gg
    width = protein_sd / np.sqrt(gg)
    log_cell = -(np.sum(data * data) - gg * s_hat**2) / (2 * protein_sd**2)
    sd_m, sd_p = PRIOR["d_m"][1], PRIOR["d_p"][1]
    log_cell += -0.5 * ((LM - mu["d_m"]) / sd_m) ** 2 - 0.5 * ((LP - mu["d_p"]) / sd_p) ** 2
    var_s = 2 * PRIOR["k_tx"][1] ** 2
    u = np.linspace(-10.0, 10.0, 201)
    product = s_hat[..., None] + width[..., None] * u  # S on each cell's own grid
    product = np.maximum(product, 1e-300)  # the prior of ln S vanishes long before S = 0
    ln_s = np.log(product)
    f = np.exp(-0.5 * u**2 - 0.5 * (ln_s - mu["k_tx"] - mu["k_tl"]) ** 2 / var_s) / product
    moments = [np.trapezoid(f * ln_s**k, u, axis=-1) * width for k in range(3)]
    log_w = log_cell + np.log(np.maximum(moments[0], 1e-300))
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    edge = w[[0, -1]].sum() + w[:, [0, -1]].sum()
    if edge > 1e-6:
        raise ValueError(f"the quadrature grid is too narrow: {edge:.2g} of the mass on its edges")
    s_mean = float(np.sum(w * moments[1] / moments[0]))
    s_var = float(np.sum(w * moments[2] / moments[0])) - s_mean**2

    def mean_sd(x: np.ndarray) -> tuple[float, float]:
        m = float(np.sum(w * x))
        return m, float(np.sqrt(np.sum(w * (x - m) ** 2)))

    return {
        "ln_d_m": mean_sd(LM),
        "ln_d_p": mean_sd(LP),
        "ln_k_tx": (s_mean / 2, float(np.sqrt(s_var + var_s) / 2)),
        "mirror": float(np.sum(w * (np.sign(LP - LM) + 1.0) / 2)),
    }


def run_figures(idata: az.InferenceData, seconds: float) -> dict[str, Any]:
    """Per rate: mean, sd, central 90 %/99 % intervals of ln rate; the ridge figures."""
    post = idata.posterior
    draws = {name: post[name].values.ravel() for name in LATENT}
    table, _ = bj.diagnostics.convergence_table(idata, var_names=list(LATENT))
    rates = {}
    for name, r in zip(LATENT, RATES, strict=True):
        x = draws[name]
        q = np.quantile(x, [0.005, 0.05, 0.95, 0.995])
        rates[r] = {
            "ln_mean": round(float(x.mean()), 4),
            "ln_sd": round(float(x.std()), 4),
            "ln_sd_mcse": round(float(table.loc[name, "mcse_sd_max"]), 4),
            "interval90": [round(float(np.exp(q[1])), 4), round(float(np.exp(q[2])), 4)],
            "interval99": [round(float(np.exp(q[0])), 4), round(float(np.exp(q[3])), 4)],
            "truth_in_99": bool(q[0] <= np.log(TRUE_RATES[r]) <= q[3]),
        }
    along_ridge = (draws["ln_k_tx"] - draws["ln_k_tl"]) / np.sqrt(2.0)
    across_ridge = (draws["ln_k_tx"] + draws["ln_k_tl"]) / np.sqrt(2.0)
    return {
        "rates": rates,
        "corr_ln_k_tx_ln_k_tl": round(
            float(np.corrcoef(draws["ln_k_tx"], draws["ln_k_tl"])[0, 1]), 4
        ),
        "ridge_sd": round(float(along_ridge.std()), 4),
        "product_ln_sd": round(float(across_ridge.std() * np.sqrt(2.0)), 4),
        "sampler": {
            "route": str(post.attrs.get("route", "")),
            **convergence(idata),
            "seconds": round(seconds, 1),
        },
    }


def plot(path: str, runs: dict[str, az.InferenceData], data: dict, replicates: int) -> str | None:
    """Pair plot of the log rates (three posteriors, truth) with the joint fit of both assays."""
    plt = pyplot()
    if plt is None:
        return None
    colours = {"protein_only": "tab:red", "mrna_only": "tab:blue", "joint": "k"}
    labels = {"protein_only": "protein alone", "mrna_only": "mRNA alone", "joint": "joint"}
    fig = plt.figure(figsize=(9.5, 9.0), constrained_layout=True)
    grid = fig.add_gridspec(4, 4)
    truth = {name: np.log(TRUE_RATES[r]) for name, r in zip(LATENT, RATES, strict=True)}
    every = {
        k: max(1, v.posterior.sizes["draw"] * v.posterior.sizes["chain"] // 600)
        for k, v in runs.items()
    }
    for i, yi in enumerate(LATENT):
        for j, xj in enumerate(LATENT[: i + 1]):
            ax = fig.add_subplot(grid[i, j])
            for key, idata in runs.items():
                x = idata.posterior[xj].values.ravel()
                if i == j:
                    ax.hist(x, bins=40, density=True, histtype="step", color=colours[key])
                else:
                    y = idata.posterior[yi].values.ravel()
                    ax.plot(
                        x[:: every[key]],
                        y[:: every[key]],
                        ".",
                        ms=1.5,
                        alpha=0.35,
                        color=colours[key],
                        label=labels[key],
                    )
            ax.axvline(truth[xj], color="tab:green", lw=0.8)
            if i != j:
                ax.axhline(truth[yi], color="tab:green", lw=0.8)
            if i == 3:
                ax.set_xlabel(xj.replace("ln_", "ln "))
            if j == 0 and i > 0:
                ax.set_ylabel(yi.replace("ln_", "ln "))
            if (i, j) == (2, 0):
                ax.set_title("the ridge: ln k_tl against ln k_tx", fontsize=8)
            ax.tick_params(labelsize=7)
    handles = [
        plt.Line2D([], [], color=colours[k], marker="o", ls="", label=labels[k]) for k in runs
    ]
    handles.append(plt.Line2D([], [], color="tab:green", label="truth"))
    t = np.linspace(0.0, 24.0, 121)
    joint = runs["joint"].posterior
    pick = np.linspace(0, joint.sizes["chain"] * joint.sizes["draw"] - 1, 200).astype(int)
    stacked = {name: joint[name].values.ravel()[pick] for name in LATENT}
    curves = np.array(
        [
            closed_form(
                {r: float(np.exp(stacked[n][k])) for n, r in zip(LATENT, RATES, strict=True)}, t
            )
            for k in range(pick.size)
        ]
    )
    m_true, p_true = closed_form(TRUE_RATES, t)
    for row, (comp, times, obs, true, unit) in enumerate(
        (
            (0, MRNA_TIMES, data["mrna"], m_true, "mRNA (copies/cell)"),
            (1, PROTEIN_TIMES, data["protein"], p_true, "protein (molecules/cell)"),
        )
    ):
        ax = fig.add_subplot(grid[row, row + 1 :])
        lo, hi = np.quantile(curves[:, comp], [0.05, 0.95], axis=0)
        ax.fill_between(t, lo, hi, color="0.8", label="joint 90 % band")
        ax.plot(t, true, color="tab:green", lw=1.0, label="truth")
        ax.plot(
            np.repeat(times, replicates),
            obs,
            "o",
            ms=3,
            color=colours["mrna_only" if comp == 0 else "protein_only"],
            label="assay",
        )
        ax.set_ylabel(unit, fontsize=8)
        ax.set_xlabel("time after induction (h)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="lower right")
    legend_ax = fig.add_subplot(grid[2, 3])
    legend_ax.axis("off")
    legend_ax.legend(handles=handles, loc="center", fontsize=9, frameon=False)
    return save(fig, path)


def main(argv: list[str] | None = None) -> dict:
    """Run the study; return the figures (also printed as the last stdout line)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one replicate, shorter chains (CI)")
    parser.add_argument("--out", default="gene_expression.nc", help="netCDF report path")
    parser.add_argument("--seed", type=int, default=4, help="random seed (data and sampler)")
    add_checkpoint_arguments(parser)
    args = parser.parse_args(argv)
    use_checkpoint_folder(args.checkpoint, resume=args.resume)
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    replicates = 1 if args.quick else 3
    data = simulate(replicates, rng)
    problems = build(data, replicates)
    # The forward model against the closed form (an independent check of the ODE physics).
    truth_latent = {name: np.log(TRUE_RATES[r]) for name, r in zip(LATENT, RATES, strict=True)}
    m_cf, _ = closed_form(TRUE_RATES, MRNA_TIMES)
    _, p_cf = closed_form(TRUE_RATES, PROTEIN_TIMES)
    ode_error = max(
        float(np.max(np.abs(ode(MRNA_TIMES, 0)(**truth_latent) / m_cf - 1.0))),
        float(np.max(np.abs(ode(PROTEIN_TIMES, 1)(**truth_latent) / p_cf - 1.0))),
    )
    settings = {"draws": 500, "tune": 500, "chains": 4, "cores": 1}
    if not args.quick:
        settings = {"draws": 2000, "tune": 1000, "chains": 4, "cores": min(4, os.cpu_count() or 1)}
    runs, by_run = {}, {}
    for k, name in enumerate(("protein_only", "mrna_only", "joint")):
        tic = time.time()
        # The protein alone cannot tell d_m from d_p (its curve is symmetric in them): its
        # posterior reaches across the fold d_m = d_p into the mirror region that the priors
        # disfavour (2.2 % of its mass at seed 4, 0.33 % at seed 6: protein_alone_by_quadrature,
        # benchmarks/gene_expression_fold.py). NUTS diverges now and then on the way there
        # (1 divergent transition in 8,000 draws at seed 6, even at target_accept 0.99), so
        # this run uses SMC with random-walk Metropolis moves, which matches the quadrature;
        # its independent-proposal kernel (IMH) misses two thirds of that mass at seed 4. The other
        # runs use the default route.
        extra: dict[str, Any] = {}
        if name == "protein_only":
            extra = {"method": "smc", "kernel": "MH", "tune": None}
        kwargs = {k_: v for k_, v in {**settings, **extra}.items() if v is not None}
        runs[name] = problems[name].sample(
            random_seed=args.seed + 10 * k, progressbar=False, **kwargs
        )
        by_run[name] = run_figures(runs[name], time.time() - tic)
    prot, mrna, joint = by_run["protein_only"], by_run["mrna_only"], by_run["joint"]
    figures: dict[str, Any] = {
        "case_study": "gene_expression",
        "replicates": replicates,
        "n_data": {"mrna": int(data["mrna"].size), "protein": int(data["protein"].size)},
        "true_rates": TRUE_RATES,
        "ode_max_relative_error": float(f"{ode_error:.3g}"),
        "protein_only": prot,
        "mrna_only": mrna,
        "joint": joint,
        "ridge_sd_shrink_factor": round(prot["ridge_sd"] / joint["ridge_sd"], 3),
    }
    at_prior = all(
        abs(mrna["rates"][r]["ln_sd"] - PRIOR[r][1]) <= 4.0 * mrna["rates"][r]["ln_sd_mcse"]
        for r in ("k_tl", "d_p")
    )
    checks = {
        "ode_matches_closed_form": ode_error <= 1e-6,
        "rates_in_joint_intervals": all(joint["rates"][r]["truth_in_99"] for r in RATES),
        "protein_alone_ridge": prot["corr_ln_k_tx_ln_k_tl"] < -0.9,
        "joint_breaks_ridge": joint["corr_ln_k_tx_ln_k_tl"] > -0.5
        and figures["ridge_sd_shrink_factor"] >= 5.0,
        "mrna_alone_leaves_translation_at_prior": at_prior,
        **{f"{name}_diagnose_convergence": by_run[name]["sampler"]["passed"] for name in runs},
    }
    figures["figure"] = plot(os.path.splitext(args.out)[0] + ".png", runs, data, replicates)
    return publish(figures, checks, runs["joint"], "gene_expression", args.out, start)


if __name__ == "__main__":
    sys.exit(exit_status(main(sys.argv[1:])))
