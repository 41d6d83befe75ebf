"""Case study: breast tissue seen by X-ray transmission and ultrasound time of flight.

A 6.4 cm × 6.4 cm cross-section of breast tissue (32 × 32 pixels of 2 mm; 12 × 12 with
``--quick``) is a continuous map of tissue density: each pixel mixes fat and fibroglandular
tissue, and the densest pixels reach the values of a lesion. Two scanners see different
properties of the same tissue:

* **X-ray** (sparse-view fan-beam CT, the low-dose setting): the line integrals of the linear
  attenuation coefficient μ (1/cm) along the rays from a source on a circle of radius 6 cm to a
  detector arc (8 views × 24 detector bins; 6 × 12 with ``--quick``), i.e. −ln(I/I0); noise sd
  0.01 (photon noise of ~10⁴ counts per bin);
* **ultrasound** (ring-array transmission tomography): the time of flight between every pair of
  transducers on a ring of radius 4.2 cm (16 transducers, 120 paths; 12 and 66 with
  ``--quick``), the line integral of the slowness s = 1/c (μs/cm) along straight paths; picking
  noise sd 0.05 μs. Straight rays ignore refraction, a fair approximation for the few-percent
  sound-speed contrasts of soft tissue.

Both are straight-ray line integrals (:class:`bayesjoint.physics.TravelTime`, exact ray
lengths per pixel); rays or paths that miss the field of view are dropped.

The tissues (illustrative values: μ at an effective energy of about 60 keV; sound speeds of
breast tissue in transmission ultrasound):

==============  ============  ============  ===============
tissue          μ (1/cm)      c (m/s)       s (μs/cm)
==============  ============  ============  ===============
fat             0.190         1450          6.897
fibroglandular  0.215         1515          6.601
lesion          0.232         1560          6.410
==============  ============  ============  ===============

Denser tissue attenuates more and carries sound faster, so across tissue types s falls with μ;
the study's tissue-type link is the line through the three tissues,
``s = slope · μ + intercept`` (slope −11.6 μs, intercept 9.10 μs/cm), with scatter σ.

Priors: Matérn 5/2 Gaussian fields with correlation length 1 cm, μ = 0.205 ± 0.015 /cm,
s = 6.70 ± 0.17 μs/cm (the link maps one prior sd onto the other), and the link's factor
``Π N(r_i; 0, σ²)`` on the residuals ``r = s − slope · μ − intercept``.

**The truth is drawn from the model's own prior** (:func:`phantom`): one draw of (μ, s) from
the normalized joint prior at the true scatter σ = 0.02 μs/cm, the two Gaussian fields times the
link factor (a Gaussian; drawn exactly by conditioning a prior draw on the link, Matheron's
rule). The model is then well specified, so its 90 % intervals should cover about 90 % of the
true pixels, and the coverage check tests the inference, not the phantom. The *lesion* is
the set of pixels denser than the midpoint between the fibroglandular and lesion values
(μ above 0.2235 /cm). A piecewise-constant phantom with per-pixel texture lies outside this
smooth prior; its intervals undercover (see the docs page).

Three inversions of the same data:

* **X-ray alone** (μ) and **ultrasound alone** (s): linear-Gaussian, ``problem.sample()`` takes
  the exact route;
* **joint**: both scanners, the cross-gradient (:class:`bayesjoint.coupling.CrossGradient`,
  default strength: the two images share their edges) and the tissue-type link
  (:class:`bayesjoint.coupling.Petrophysical`, relation ``"linear"``) at the scatter learned
  below. ``problem.sample()`` takes the ``nuts`` route.

**The link's scatter σ is learned with the images integrated out.** Given σ the link-only
problem (both scanners and the link) is linear-Gaussian, so ``log p(d | σ)`` is a closed form
(:class:`bayesjoint.inference.collapsed.CollapsedProblem`), evaluated on a grid of ln σ and
multiplied by a log-normal prior (median 0.02 μs/cm, sd 0.5 in ln). The link enters the model
as the factor ``Π N(r_i; 0, σ²)`` on top of the two field priors, which is not normalized in
(μ, s): its integral over the priors, ``Z(σ) = N(0; m_r, C_r + σ² I)`` with ``C_r = C_s +
slope² C_μ`` (:meth:`bayesjoint.coupling.Petrophysical.normalizer_spectrum` and
``log_normalizer``, the package's own), grows without bound as σ → 0 because the smooth
priors leave the residual almost no variance in their high-frequency modes. Left in, ``Z(σ)``
drags σ's posterior to the smoothness of the priors (at full size the unnormalized evidence
is highest at the lowest σ tried, 0.002 μs/cm); divided out, what remains is the evidence of
the normalized joint prior (:func:`log_evidence`, checked against dense Gaussian algebra in
the tests). The joint run then conditions on σ's posterior median (σ's uncertainty is not
carried into the images).

The structural figure is the **edge correlation**: the correlation, over the pixels, between
the gradient magnitude of a posterior mean image and that of the true image (1: every edge
where the truth has one, with the truth's relative strength). Also reported per image: the
**Dice coefficient of the lesion mask** (pixels past the midpoint between the fibroglandular
and lesion values, μ above 0.2235 /cm or s below 6.5055 μs/cm, against the true lesion,
``2|A ∩ B| / (|A| + |B|)``; with ``--quick`` the lesion has 7 pixels, so one pixel moves it by
about 0.1), the RMSE and the coverage of the true image by the central 90 % intervals.

Checks (``"checks"`` in the JSON line):

* ``joint_edges_beat_each_alone``: the joint edge correlation of μ exceeds the X-ray-alone one
  and the joint edge correlation of s exceeds the ultrasound-alone one;
* ``joint_coverage_near_nominal``: the joint 90 % intervals cover a fraction of the true pixels
  of each image within 0.9 ± 3 binomial standard errors, ``sqrt(0.9 · 0.1 / n_eff)``, with
  ``n_eff = tr(R)² / tr(R²)`` the effective number of independent pixels under the prior
  (:func:`effective_pixels`; about 20 for this field of view at either size, since pixels are
  correlated over the 1 cm correlation length): the band is [0.70, 1];
* ``alone_draws_match_exact``: the exact-route draws of each single scanner reproduce its
  closed-form posterior sd (mean over pixels, 5 %; the sd of an sd estimated from N independent
  draws is ~1/√(2N));
* ``scatter_quadrature_resolved``: less than 0.1 % of σ's posterior mass in each end cell of
  the quadrature grid (±5 prior sd);
* ``scatter_interval_holds_truth``: σ's 90 % credible interval holds the true 0.02 μs/cm;
* ``joint_diagnose_convergence``: :func:`bayesjoint.diagnose` passes on convergence.

    python case_studies/medical_imaging.py [--quick] [--out FILE.nc] [--seed N] [--figure PNG]

Writes a netCDF report of the joint run (figures in the posterior attributes), a PNG of the
images next to it or at ``--figure`` (when matplotlib is installed) and ends with one JSON
line of its figures. Lengths in cm, times in μs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import arviz as az
import numpy as np
import pytensor
import pytensor.tensor as pt
from bayesjoint_case_studies._plotting import plot_sections
from bayesjoint_case_studies._runtime import one_blas_thread, study_parser
from bayesjoint_case_studies._verdict import convergence, exit_status, publish
from scipy import stats

import bayesjoint as bj
from bayesjoint.coupling import CrossGradient, Petrophysical
from bayesjoint.inference.checkpoint import add_checkpoint_arguments, use_checkpoint_folder
from bayesjoint.inference.collapsed import CollapsedProblem

FOV = 6.4  # cm, side of the square field of view
#: tissue: (μ in 1/cm, sound speed in m/s)
TISSUES = {"fat": (0.190, 1450.0), "fibroglandular": (0.215, 1515.0), "lesion": (0.232, 1560.0)}
LINK_SCATTER_TRUE = 0.02  # μs/cm, the link scatter σ of the truth's joint prior
XRAY_NOISE = 0.01  # sd of −ln(I/I0)
US_NOISE = 0.05  # μs, time-of-flight picking error
MU_PRIOR = (0.205, 0.015)  # 1/cm, mean and sd
CORRELATION = 1.0  # cm
SCATTER_PRIOR = (0.02, 0.5)  # μs/cm median, sd of its ln (the quadrature of σ's posterior)
NOMINAL = 0.9  # the central credible intervals whose coverage of the true pixels is checked


def slowness(speed: Any) -> Any:
    """Slowness in μs/cm of a sound speed in m/s."""
    return 1e4 / np.asarray(speed, dtype=float)


def link_line() -> tuple[float, float]:
    """Return (slope, intercept) of the least-squares line s(μ) through the tissue table."""
    mu = np.array([v[0] for v in TISSUES.values()])
    s = slowness([v[1] for v in TISSUES.values()])
    slope, intercept = np.polyfit(mu, s, 1)
    return float(slope), float(intercept)


def thresholds() -> tuple[float, float]:
    """Midpoints between fibroglandular and lesion values: (μ, s)."""
    mu_g, c_g = TISSUES["fibroglandular"]
    mu_l, c_l = TISSUES["lesion"]
    return 0.5 * (mu_g + mu_l), float(0.5 * (slowness(c_g) + slowness(c_l)))


# -- field of view and truth --------------------------------------------------------------------
def make_grid(quick: bool, n: int | None = None) -> bj.Grid:
    """The field of view: 12 × 12 (``--quick``) or 32 × 32 square pixels (``n × n`` if given)."""
    n = n if n is not None else (12 if quick else 32)
    edges = np.linspace(0.0, FOV, n + 1)
    return bj.Grid.from_edges(x=edges, z=edges)


def joint_prior_draws(
    grid: bj.Grid, scatter: float, rng: np.random.Generator, size: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Draws of (μ, s) from the normalized joint prior: the two field priors times the link.

    Returns two arrays of shape ``(size, n_pixels)`` (C-order flattened images).

    Notes
    -----
    The joint prior ``p(μ) p(s) Π_i N(r_i; 0, σ²) / Z(σ)``, ``r = s − slope·μ − intercept``, is
    the Gaussian posterior of ``x = (μ, s)`` under the prior ``N(m₀, C₀)``,
    ``C₀ = blockdiag(C_μ, C_s)``, given the pseudo-observation ``b = D x + e``: ``b`` the
    intercept in every pixel, ``D = [−slope·I, I]``, ``e ~ N(0, σ² I)``. Matheron's rule
    draws it exactly without inverting ``C₀``: with ``x₀ ~ N(m₀, C₀)`` and ``e₀ ~ N(0, σ² I)``,

    .. math:: x = x₀ + C₀ Dᵀ (C_r + σ² I)^{-1} (b − D x₀ − e₀),

    ``C_r = D C₀ Dᵀ = C_s + slope² C_μ`` ((μs/cm)²).
    """
    slope, intercept = link_line()
    priors = field_priors()
    m_mu, l_mu = priors["attenuation"].gaussian(grid.shape, grid)
    m_s, l_s = priors["slowness"].gaussian(grid.shape, grid)
    n = m_mu.size
    mu0 = m_mu[:, None] + l_mu @ rng.standard_normal((n, size))
    s0 = m_s[:, None] + l_s @ rng.standard_normal((n, size))
    e0 = scatter * rng.standard_normal((n, size))
    c_mu, c_s = l_mu @ l_mu.T, l_s @ l_s.T
    innovation = intercept - (s0 - slope * mu0) - e0
    gain = np.linalg.solve(c_s + slope**2 * c_mu + scatter**2 * np.eye(n), innovation)
    return (mu0 - slope * (c_mu @ gain)).T, (s0 + c_s @ gain).T


def phantom(grid: bj.Grid, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The true μ and s images, one draw of the joint prior at σ = 0.02, and the lesion mask.

    The lesion is the pixels whose true μ is past the fibroglandular–lesion midpoint.
    """
    mu, s = (v.reshape(grid.shape) for v in joint_prior_draws(grid, LINK_SCATTER_TRUE, rng))
    return {"lesion": mu > thresholds()[0], "attenuation": mu, "slowness": s}


# -- scanners -----------------------------------------------------------------------------------
def fan_beam(n_views: int, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Source and detector-bin positions of a fan beam (radius 6 cm, fan ±40°)."""
    centre = np.array([FOV / 2, FOV / 2])
    radius, half_fan = 6.0, np.deg2rad(40.0)
    src, rec = [], []
    for a in np.linspace(0.0, 2.0 * np.pi, n_views, endpoint=False):
        source = centre + radius * np.array([np.cos(a), np.sin(a)])
        for g in np.linspace(-half_fan, half_fan, n_bins):
            direction = a + np.pi + g
            src.append(source)
            rec.append(source + 2.0 * radius * np.array([np.cos(direction), np.sin(direction)]))
    return np.array(src), np.array(rec)


def ring_array(n_transducers: int) -> tuple[np.ndarray, np.ndarray]:
    """Every transmitter–receiver pair of a ring of transducers (radius 4.2 cm)."""
    centre = np.array([FOV / 2, FOV / 2])
    angles = np.linspace(0.0, 2.0 * np.pi, n_transducers, endpoint=False)
    points = centre + 4.2 * np.column_stack([np.cos(angles), np.sin(angles)])
    i, j = np.triu_indices(n_transducers, 1)
    return points[i], points[j]


def scanner(grid: bj.Grid, rays: tuple[np.ndarray, np.ndarray], name: str) -> bj.physics.Linear:
    """Straight-ray line integrals of latent ``name``, rays that miss the image dropped."""
    lengths = bj.physics.TravelTime(grid, rays[0], rays[1], input=name).matrix
    hit = np.asarray(lengths.sum(axis=1)).ravel() > 0.0
    return bj.physics.Linear(lengths[hit], input=name)


def field_priors() -> dict[str, bj.priors.GaussianField]:
    """The Gaussian-field priors of μ (1/cm) and s (μs/cm); the link maps one sd onto the other."""
    slope, intercept = link_line()
    return {
        "attenuation": bj.priors.GaussianField(MU_PRIOR[1], CORRELATION, mean=MU_PRIOR[0]),
        "slowness": bj.priors.GaussianField(
            abs(slope) * MU_PRIOR[1], CORRELATION, mean=slope * MU_PRIOR[0] + intercept
        ),
    }


def link_normalizer(problem: bj.JointInversion) -> Any:
    """``log Z(σ)`` of the learned tissue link of ``problem``, as a function of σ (μs/cm).

    The package's own normalizer: the spectrum ``(λ, Uᵀ m_r)`` of the residual's prior
    covariance ``C_r = C_s + slope² C_μ`` from
    :meth:`bayesjoint.coupling.Petrophysical.normalizer_spectrum`, and
    ``log Z(σ) = −½ Σ_i [log 2π(λ_i + σ²) + μ_i² / (λ_i + σ²)]`` from
    :meth:`~bayesjoint.coupling.Petrophysical.log_normalizer`, compiled once.
    """
    (link,) = [c for c in problem.couplings if isinstance(c, Petrophysical)]
    spectrum = link.normalizer_spectrum(problem.latent)
    if spectrum is None:
        raise ValueError(
            f"the link {link.name!r} has no closed-form normalizer (learned scatter on a linear "
            "link between fixed Gaussian field priors is needed)"
        )
    scatter = pt.dscalar("scatter")
    return pytensor.function([scatter], Petrophysical.log_normalizer(scatter, spectrum))


def effective_pixels(grid: bj.Grid) -> float:
    """Effective number of independent pixels under the prior: ``tr(R)² / tr(R²)``.

    ``R`` is the prior correlation matrix of the pixels (the participation ratio of its
    eigenvalues: ``n`` for independent pixels, about the number of correlation areas in the
    field of view for a smooth field). ``R`` is separable, so the ratio is the product over axes.
    """
    ratio = 1.0
    for factor in field_priors()["attenuation"].axis_factors(grid):
        corr = factor @ factor.T
        ratio *= np.trace(corr) ** 2 / np.sum(corr * corr)
    return float(ratio)


def coverage_band(n_effective: float, z: float = 3.0) -> tuple[float, float]:
    """Band of a 90 % coverage over ``n_effective`` independent pixels: ``0.9 ± z·SE``, in [0, 1].

    ``SE = sqrt(0.9 · 0.1 / n_effective)`` is the binomial standard error.
    """
    half = z * np.sqrt(NOMINAL * (1.0 - NOMINAL) / n_effective)
    return max(0.0, NOMINAL - half), min(1.0, NOMINAL + half)


def build(grid: bj.Grid, truth: dict, quick: bool, rng: np.random.Generator) -> dict[str, Any]:
    """Return the problems (X-ray alone, ultrasound alone, joint) and the data."""
    xray_op = scanner(grid, fan_beam(*((6, 12) if quick else (8, 24))), "attenuation")
    us_op = scanner(grid, ring_array(12 if quick else 16), "slowness")
    xray_data = xray_op(attenuation=truth["attenuation"])
    us_data = us_op(slowness=truth["slowness"])
    xray_data = xray_data + XRAY_NOISE * rng.standard_normal(xray_data.shape)
    us_data = us_data + US_NOISE * rng.standard_normal(us_data.shape)
    slope, intercept = link_line()
    priors = field_priors()
    mu = bj.Field("attenuation", grid, priors["attenuation"], units="1/cm")
    s = bj.Field("slowness", grid, priors["slowness"], units="us/cm")
    xray = bj.Modality("xray", xray_op, xray_data, bj.noise.Gaussian(XRAY_NOISE), units="1")
    us = bj.Modality("ultrasound", us_op, us_data, bj.noise.Gaussian(US_NOISE), units="us")
    link = Petrophysical(
        "attenuation",
        "slowness",
        "linear",
        scatter=bj.priors.LogNormal(float(np.log(SCATTER_PRIOR[0])), SCATTER_PRIOR[1]),
        parameters={"slope": slope, "intercept": intercept},
        name="tissue_link",
    )
    edges = CrossGradient("attenuation", "slowness", name="cross_gradient")

    def joint_with_scatter(scatter: float) -> bj.JointInversion:
        fixed = Petrophysical(
            "attenuation",
            "slowness",
            "linear",
            scatter=scatter,
            parameters={"slope": slope, "intercept": intercept},
            name="tissue_link",
        )
        return bj.JointInversion([mu, s], [xray, us], couplings=[fixed, edges])

    return {
        "xray_only": bj.JointInversion([mu], [xray]),
        "ultrasound_only": bj.JointInversion([s], [us]),
        "link_scatter": bj.JointInversion([mu, s], [xray, us], couplings=[link]),
        "joint_with_scatter": joint_with_scatter,
        "n_rays": {"xray": int(xray_data.size), "ultrasound": int(us_data.size)},
        "operators": {"xray": xray_op, "ultrasound": us_op},
        "data": {"xray": xray_data, "ultrasound": us_data},
    }


def log_evidence(collapsed: CollapsedProblem, log_normalizer: Any, scatter: float) -> float:
    """``log p(d | σ)`` of the link-only problem, the link normalized as a prior.

    The collapsed problem's log marginal likelihood integrates the images out of the
    unnormalized product ``p(μ) p(s) Π N(r_i; 0, σ²)``; minus ``log Z(σ)``
    (``log_normalizer``, from :func:`link_normalizer`) it is the evidence of the normalized
    joint prior.
    """
    (name,) = collapsed.theta
    raw = collapsed.log_marginal_likelihood({name: float(scatter)})
    return float(raw - log_normalizer(float(scatter)))


def scatter_posterior(
    problem: bj.JointInversion, n: int = 81, normalized: bool = True
) -> dict[str, Any]:
    """Posterior of the link scatter σ by quadrature over ln σ (images integrated out).

    ``p(ln σ | d) ∝ p(d | σ) p(ln σ)``, with ``log p(d | σ)`` from :func:`log_evidence` (or,
    with ``normalized=False``, the unnormalized one that collapses) and the log-normal prior
    ``ln σ ~ N(ln 0.02, 0.5²)``; the grid spans ±5 prior sd.
    """
    collapsed = CollapsedProblem(problem)
    normalizer = link_normalizer(problem) if normalized else (lambda _: 0.0)
    centre, width = np.log(SCATTER_PRIOR[0]), SCATTER_PRIOR[1]
    log_s = np.linspace(centre - 5.0 * width, centre + 5.0 * width, n)
    log_ev = np.array([log_evidence(collapsed, normalizer, float(np.exp(v))) for v in log_s])
    log_post = log_ev - 0.5 * ((log_s - centre) / width) ** 2
    density = np.exp(log_post - log_post.max())
    cells = 0.5 * (density[1:] + density[:-1]) * np.diff(log_s)
    cdf = np.concatenate([[0.0], np.cumsum(cells)]) / cells.sum()
    quantiles = np.exp(np.interp([0.05, 0.5, 0.95], cdf, log_s))
    return {
        "median": float(f"{quantiles[1]:.4g}"),
        "interval90": [float(f"{quantiles[0]:.4g}"), float(f"{quantiles[2]:.4g}")],
        "edge_mass": float(f"{max(cells[0], cells[-1]) / cells.sum():.3g}"),
        "evidence_range_nats": round(float(log_ev.max() - log_ev.min()), 2),
        "grid": np.exp(log_s),
        "density": density,
    }


# -- figures ------------------------------------------------------------------------------------
def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient ``2|A ∩ B| / (|A| + |B|)`` of two boolean masks (1 when both empty)."""
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else 2.0 * float(np.sum(a & b)) / total


def gradient_magnitude(image: np.ndarray, grid: bj.Grid) -> np.ndarray:
    gx, gz = np.gradient(image, grid.centers["x"], grid.centers["z"])
    return np.hypot(gx, gz)


def image_figures(
    name: str, mean, lo, hi, sd, truth: dict, grid: bj.Grid, threshold: float
) -> dict[str, Any]:
    """Dice of the lesion mask, gradient correlation, RMSE, 90 % coverage, mean sd."""
    true = truth[name]
    mean = np.asarray(mean).reshape(grid.shape)
    mask = mean > threshold if name == "attenuation" else mean < threshold
    grad = np.corrcoef(
        gradient_magnitude(mean, grid).ravel(), gradient_magnitude(true, grid).ravel()
    )[0, 1]
    return {
        "lesion_dice": round(dice(mask, truth["lesion"]), 4),
        "gradient_correlation": round(float(grad), 4),
        "rmse": float(f"{np.sqrt(np.mean((mean - true) ** 2)):.4g}"),
        "coverage90": round(
            float(np.mean((np.ravel(lo) <= true.ravel()) & (true.ravel() <= np.ravel(hi)))), 4
        ),
        "mean_sd": float(f"{np.mean(sd):.4g}"),
    }


def draws_summary(idata: az.InferenceData, name: str) -> tuple[np.ndarray, ...]:
    da = idata.posterior[name]
    q = da.quantile([0.05, 0.95], dim=("chain", "draw")).values
    return (
        da.mean(("chain", "draw")).values,
        q[0],
        q[1],
        da.std(("chain", "draw")).values,
    )


def main(argv: list[str] | None = None) -> dict:
    """Run the study; return the figures (also printed as the last stdout line)."""
    parser = study_parser(
        __doc__, "medical_imaging", quick="12 x 12 pixels, fewer rays (CI)", seed=2
    )
    add_checkpoint_arguments(parser)
    args = parser.parse_args(argv)
    use_checkpoint_folder(args.checkpoint, resume=args.resume)
    start = time.perf_counter()
    with one_blas_thread():
        return study(args, start)


def study(args: argparse.Namespace, start: float) -> dict:
    """The body of :func:`main` (dense algebra on one BLAS thread)."""
    rng = np.random.default_rng(args.seed)
    grid = make_grid(args.quick)
    truth = phantom(grid, rng)
    problems = build(grid, truth, args.quick, rng)
    thr = dict(zip(("attenuation", "slowness"), thresholds(), strict=True))
    # the mass matrix is fixed (Laplace), so tuning adapts the step size only
    settings = {"draws": 750, "tune": 300, "chains": 4, "cores": 1}
    if not args.quick:
        settings = {"draws": 750, "tune": 400, "chains": 4, "cores": min(4, os.cpu_count() or 1)}
    figures: dict[str, Any] = {
        "case_study": "medical_imaging",
        "grid": list(grid.shape),
        "n_rays": problems["n_rays"],
        "lesion_pixels": int(truth["lesion"].sum()),
        "link": dict(zip(("slope", "intercept"), (round(v, 4) for v in link_line()), strict=True)),
    }
    runs, sd_match = {}, {}
    for k, (run, name) in enumerate(
        (("xray_only", "attenuation"), ("ultrasound_only", "slowness"))
    ):
        tic = time.time()
        runs[run] = problems[run].sample(
            random_seed=args.seed + 10 * k, progressbar=False, **settings
        )
        mean, lo, hi, sd = draws_summary(runs[run], name)
        exact = problems[run].exact_posterior()
        half = stats.norm.ppf(0.95) * exact["sd"].values
        ex_mean = exact["mean"].values
        figures[run] = {
            name: image_figures(name, mean, lo, hi, sd, truth, grid, thr[name]),
            "exact": image_figures(
                name,
                ex_mean,
                ex_mean - half,
                ex_mean + half,
                exact["sd"].values,
                truth,
                grid,
                thr[name],
            ),
            "route": str(runs[run].posterior.attrs.get("route", "")),
            "seconds": round(time.time() - tic, 1),
        }
        sd_match[run] = abs(float(np.mean(sd)) / float(exact["sd"].values.mean()) - 1.0)
    # The link's scatter σ learned from the data, the images integrated out: log p(d | σ) of
    # the link-only problem (linear-Gaussian given σ, the link normalized as a prior) on a grid
    # of ln σ, times the log-normal prior, normalized by the trapezoidal rule.
    tic = time.time()
    scatter = scatter_posterior(problems["link_scatter"])
    figures["link_scatter"] = {
        **{k: v for k, v in scatter.items() if k not in ("grid", "density")},
        "prior_median": SCATTER_PRIOR[0],
        "true": LINK_SCATTER_TRUE,
        "seconds": round(time.time() - tic, 1),
    }
    # The joint run: both couplings, the link at σ's posterior median (route "nuts").
    tic = time.time()
    problem = problems["joint_with_scatter"](scatter["median"])
    joint_settings = {**settings, "draws": 2 * settings["draws"]}
    joint = problem.sample(random_seed=args.seed + 30, progressbar=False, **joint_settings)
    seconds = time.time() - tic
    figures["joint"] = {
        name: image_figures(name, *draws_summary(joint, name), truth, grid, thr[name])
        for name in ("attenuation", "slowness")
    }
    figures["joint"]["sampler"] = {
        "route": str(joint.posterior.attrs.get("route", "")),
        **convergence(joint),
        "seconds": round(seconds, 1),
    }
    jnt = figures["joint"]
    n_eff = effective_pixels(grid)
    band = coverage_band(n_eff)
    figures["coverage_band"] = {
        "pixels": int(np.prod(grid.shape)),
        "effective_pixels": round(n_eff, 1),
        "band": [round(band[0], 4), round(band[1], 4)],
    }
    checks = {
        "joint_edges_beat_each_alone": jnt["attenuation"]["gradient_correlation"]
        > figures["xray_only"]["attenuation"]["gradient_correlation"]
        and jnt["slowness"]["gradient_correlation"]
        > figures["ultrasound_only"]["slowness"]["gradient_correlation"],
        "joint_coverage_near_nominal": all(
            band[0] <= jnt[name]["coverage90"] <= band[1] for name in ("attenuation", "slowness")
        ),
        "alone_draws_match_exact": all(v <= 0.05 for v in sd_match.values()),
        # the quadrature grid holds the posterior of σ: < 0.1 % of its mass in each end cell
        "scatter_quadrature_resolved": scatter["edge_mass"] < 1e-3,
        "scatter_interval_holds_truth": scatter["interval90"][0]
        <= LINK_SCATTER_TRUE
        <= scatter["interval90"][1],
        "joint_diagnose_convergence": jnt["sampler"]["passed"],
    }
    panels = {
        "true μ (1/cm)": (truth["attenuation"], "mu"),
        "true s (μs/cm)": (truth["slowness"], "s"),
        "μ, X-ray alone (posterior mean)": (
            draws_summary(runs["xray_only"], "attenuation")[0],
            "mu",
        ),
        "s, ultrasound alone (posterior mean)": (
            draws_summary(runs["ultrasound_only"], "slowness")[0],
            "s",
        ),
        "μ, joint (posterior mean)": (draws_summary(joint, "attenuation")[0], "mu"),
        "s, joint (posterior mean)": (draws_summary(joint, "slowness")[0], "s"),
    }
    figures["figure"] = plot_sections(
        args.figure or os.path.splitext(args.out)[0] + ".png", grid, panels, length_unit="cm"
    )
    return publish(figures, checks, joint, "medical_imaging", args.out, start)


if __name__ == "__main__":
    sys.exit(exit_status(main(sys.argv[1:])))
