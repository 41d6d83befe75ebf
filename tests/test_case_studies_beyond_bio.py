"""The medical-imaging and gene-expression case studies: their --quick runs and their helpers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.stats import multivariate_normal

import bayesjoint as bj

pytestmark = pytest.mark.slow
CASES = Path(__file__).resolve().parent.parent / "case_studies"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_case_{name}", CASES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_quick(name, tmp_path, capsys, seed):
    module = _load(name)
    figures = module.main(["--quick", "--out", str(tmp_path / f"{name}.nc"), "--seed", seed])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == json.loads(json.dumps(figures))  # the final JSON line
    report = bj.load(figures["report"])
    assert report.posterior.attrs["case_study"] == name
    stored = json.loads(report.posterior.attrs["figures"])
    assert stored == {k: v for k, v in figures.items() if k != "report"}
    if figures["figure"] is not None:
        assert Path(figures["figure"]).stat().st_size > 0
    return module, figures


# -- gene expression ----------------------------------------------------------------------------
def test_gene_expression_closed_form_matches_an_independent_ode_solver():
    # The study checks its ODE physics against closed_form; the closed form itself is checked
    # here against scipy's Radau (rtol 1e-10), for rates unlike the study's.
    module = _load("gene_expression")
    rates = {"k_tx": 3.0, "d_m": 1.3, "k_tl": 7.0, "d_p": 0.2}
    t = np.array([0.1, 0.5, 2.0, 9.0, 30.0])

    def rhs(_, y):
        return [rates["k_tx"] - rates["d_m"] * y[0], rates["k_tl"] * y[0] - rates["d_p"] * y[1]]

    ref = solve_ivp(rhs, (0.0, 30.0), [0.0, 0.0], method="Radau", t_eval=t, rtol=1e-10, atol=1e-12)
    m, p = module.closed_form(rates, t)
    np.testing.assert_allclose(m, ref.y[0], rtol=1e-7)
    np.testing.assert_allclose(p, ref.y[1], rtol=1e-7)
    # Negative control: swapping the two synthesis rates changes m(t) (k_tx/k_tl are
    # identifiable from mRNA), while p(t) sees only their product and is unchanged.
    swapped = {**rates, "k_tx": rates["k_tl"], "k_tl": rates["k_tx"]}
    m_s, p_s = module.closed_form(swapped, t)
    assert not np.allclose(m_s, m, rtol=1e-3)
    np.testing.assert_allclose(p_s, p, rtol=1e-12)


def test_gene_expression_quick_passes_its_checks(tmp_path, capsys):
    _, figures = _run_quick("gene_expression", tmp_path, capsys, "4")
    assert figures["passed"] is True and all(figures["checks"].values()), figures["checks"]
    prot, joint = figures["protein_only"], figures["joint"]
    # The ridge: near -1 from the protein alone (the prior alone bounds it), broken jointly.
    assert prot["corr_ln_k_tx_ln_k_tl"] < -0.9 < joint["corr_ln_k_tx_ln_k_tl"]
    # Negative control of joint_breaks_ridge: the protein-alone run fails its criterion.
    assert not (prot["corr_ln_k_tx_ln_k_tl"] > -0.5)
    assert figures["ridge_sd_shrink_factor"] >= 5.0
    assert figures["protein_only"]["sampler"]["route"] == "smc"
    for run in ("mrna_only", "joint"):
        assert figures[run]["sampler"]["route"] == "nuts"


def _brute_force_moments(module, data, replicates, n=60, m=400):
    """The protein-alone posterior on a plain 3-D grid in (ln d_m, ln d_p, ln k_tx k_tl).

    No change of variable and no analytic step: the closed form p(t) at every grid point, the
    Gaussian log-likelihood and the three Gaussian log priors (s = ln k_tx k_tl has sd
    √2 · 1.5), summed by the midpoint rule. The two rate grids are offset by half a step, so
    that no point lies on the fold d_m = d_p (the closed form's removable singularity).
    """
    t = np.repeat(module.PROTEIN_TIMES, replicates)
    mu = {r: np.log(module.PRIOR[r][0]) for r in module.RATES}
    lo, hi = mu["d_p"] - 2.4, mu["d_m"] + 2.4
    step = (hi - lo) / n
    lm = lo + step * (np.arange(n) + 0.5)
    lp = lo + step * np.arange(n)
    s = np.linspace(1.0, 8.5, m)
    LM, LP = np.meshgrid(lm, lp, indexing="ij")
    var_s = 2 * module.PRIOR["k_tx"][1] ** 2
    logpost = np.empty((n, n, m))
    for k, sk in enumerate(s):
        rates = {"k_tx": np.exp(sk), "d_m": np.exp(LM)[..., None], "k_tl": 1.0}
        _, p = module.closed_form({**rates, "d_p": np.exp(LP)[..., None]}, t)
        logpost[:, :, k] = -0.5 * np.sum((data - p) ** 2, axis=-1) / module.PROTEIN_SD**2
    logpost += (
        -0.5 * ((LM - mu["d_m"]) / module.PRIOR["d_m"][1]) ** 2
        - 0.5 * ((LP - mu["d_p"]) / module.PRIOR["d_p"][1]) ** 2
    )[..., None]
    logpost += (-0.5 * (s - mu["k_tx"] - mu["k_tl"]) ** 2 / var_s)[None, None, :]
    w = np.exp(logpost - logpost.max())
    w /= w.sum()

    def mean_sd(x):
        mean = float(np.sum(w * x))
        return mean, float(np.sqrt(np.sum(w * (x - mean) ** 2)))

    s_mean, s_sd = mean_sd(s[None, None, :])
    return {
        "ln_d_m": mean_sd(LM[..., None]),
        "ln_d_p": mean_sd(LP[..., None]),
        "ln_k_tx": (s_mean / 2, float(np.sqrt(s_sd**2 + var_s) / 2)),
        "mirror": float(np.sum(w * (LM < LP)[..., None])),
    }


def test_gene_expression_quadrature_matches_a_brute_force_grid():
    module = _load("gene_expression")
    data = module.simulate(3, np.random.default_rng(4))["protein"]
    exact = module.protein_alone_by_quadrature(data, 3)
    brute = _brute_force_moments(module, data, 3)
    # tolerance: the coarse brute-force grid's own error (step 0.11 in the log rates)
    for name in ("ln_d_m", "ln_d_p", "ln_k_tx"):
        np.testing.assert_allclose(brute[name], exact[name], atol=2e-3)
    assert abs(brute["mirror"] - exact["mirror"]) < 1.5e-3
    # negative control: the quadrature for another noise sd is told apart
    other = module.protein_alone_by_quadrature(data, 3, protein_sd=1.5 * module.PROTEIN_SD)
    assert not np.allclose(brute["ln_d_p"], other["ln_d_p"], atol=2e-3)


def _far_from(post, reference, names=("ln_d_m", "ln_d_p", "ln_k_tx", "mirror")) -> list[str]:
    """Names whose posterior figure is 5 standard errors or more from ``reference``.

    The standard errors come from the spread between chains (8 independent SMC runs: within
    one, the particles are correlated by the resampling, and arviz's ESS of them measured up
    to 1.6 times too optimistic): ``se = sd(chain values) / √chains``. With 7 degrees of
    freedom a quantity leaves ±5 se by chance with probability 0.0016.
    """
    chains = post.sizes["chain"]
    far = []
    for name in names:
        if name == "mirror":
            per_chain = [(post["ln_d_m"] < post["ln_d_p"]).values.mean(axis=1)]
        else:  # the mean and the sd, chain by chain
            per_chain = [post[name].values.mean(axis=1), post[name].values.std(axis=1)]
        for values, wanted in zip(per_chain, np.atleast_1d(reference[name]), strict=False):
            if abs(values.mean() - wanted) >= 5 * values.std(ddof=1) / np.sqrt(chains):
                far.append(name)
                break
    return far


# SMC's per-stage statistics have one entry per stage (7 here), fewer than the 8 chains
@pytest.mark.filterwarnings("ignore:More chains .* than draws:UserWarning")
def test_gene_expression_protein_alone_smc_matches_quadrature_across_the_fold():
    # The protein curve is symmetric in (d_m, d_p); its posterior reaches across d_m = d_p
    # into the mirror region (2.2 % of the mass with the full run's three replicates at seed 4),
    # which the study samples with SMC (MH kernel); here 8 chains of --quick's 500 draws.
    module = _load("gene_expression")
    seed, replicates = 4, 3
    data = module.simulate(replicates, np.random.default_rng(seed))
    problem = module.build(data, replicates)["protein_only"]
    idata = problem.sample(
        method="smc", kernel="MH", draws=500, chains=8, cores=1, random_seed=seed,
        progressbar=False,
    )  # fmt: skip
    post = idata.posterior
    exact = module.protein_alone_by_quadrature(data["protein"], replicates)
    assert exact["mirror"] > 0.015  # the fold is crossed: the checks below are not vacuous
    # the quadrature has converged: a coarser grid gives the same figures to 1e-3
    coarse = module.protein_alone_by_quadrature(data["protein"], replicates, n=100)
    assert all(np.allclose(coarse[k], exact[k], atol=1e-3) for k in exact)
    assert _far_from(post, exact) == []
    # negative controls: draws that never cross the fold, and the posterior of twice the
    # noise sd, are told apart
    kept = post.where(post["ln_d_m"] >= post["ln_d_p"])
    assert "mirror" in _far_from(kept, exact)
    wrong = module.protein_alone_by_quadrature(data["protein"], replicates, 2 * module.PROTEIN_SD)
    assert _far_from(post, wrong)


# -- medical imaging ----------------------------------------------------------------------------
def test_medical_imaging_dice_and_link_line():
    module = _load("medical_imaging")
    a = np.zeros((4, 4), dtype=bool)
    a[1:3, 1:3] = True
    b = np.zeros((4, 4), dtype=bool)
    b[1:3, 1:4] = True
    assert module.dice(a, a) == 1.0
    assert module.dice(a, b) == pytest.approx(2 * 4 / (4 + 6))
    assert module.dice(a, ~a) == 0.0  # disjoint masks: the figure can fail completely
    # The link line: least squares through the tissue table, by the normal equations.
    mu = np.array([v[0] for v in module.TISSUES.values()])
    s = 1e4 / np.array([v[1] for v in module.TISSUES.values()])
    design = np.column_stack([mu, np.ones_like(mu)])
    slope, intercept = np.linalg.solve(design.T @ design, design.T @ s)
    assert module.link_line() == pytest.approx((slope, intercept), rel=1e-10)


def _dense_joint_prior(module, grid, scatter):
    """Mean and precision of the normalized joint prior of (μ, s), by dense algebra.

    ``P = blockdiag(C_μ, C_s)⁻¹ + DᵀD/σ²``, ``D = [−slope·I, I]``, mean
    ``P⁻¹ (P₀ m₀ + Dᵀ intercept / σ²)``: the product of the two field priors and the link.
    """
    slope, intercept = module.link_line()
    priors = module.field_priors()
    m_mu, l_mu = priors["attenuation"].gaussian(grid.shape, grid)
    m_s, l_s = priors["slowness"].gaussian(grid.shape, grid)
    n = m_mu.size
    p0 = np.linalg.inv(np.block([[l_mu @ l_mu.T, 0 * np.eye(n)], [0 * np.eye(n), l_s @ l_s.T]]))
    link = np.hstack([-slope * np.eye(n), np.eye(n)])
    precision = p0 + link.T @ link / scatter**2
    mean = np.linalg.solve(
        precision,
        p0 @ np.concatenate([m_mu, m_s]) + link.T @ np.full(n, intercept) / scatter**2,
    )
    return mean, precision


def test_medical_imaging_truth_draws_follow_the_dense_joint_prior():
    # The truth is a draw of the normalized joint prior (Matheron's rule). 4,000 draws on a
    # 4 × 4 image (32 coordinates), whitened with the dense mean and precision
    # (_dense_joint_prior), must be standard normal: each whitened mean within 4.5/√N of 0
    # (its sd is 1/√N), each element of their covariance within 5·√(2/N) of the identity's
    # (the sd of a sample covariance element of N standard-normal draws is at most √(2/N)).
    module = _load("medical_imaging")
    grid = module.make_grid(False, 4)
    n_draws = 4000
    mean, precision = _dense_joint_prior(module, grid, module.LINK_SCATTER_TRUE)
    whiten = np.linalg.cholesky(precision).T  # (x − m)ᵀ P (x − m) = |Lᵀ (x − m)|²

    def standardized(scatter):
        mu, s = module.joint_prior_draws(grid, scatter, np.random.default_rng(5), n_draws)
        z = (np.hstack([mu, s]) - mean) @ whiten.T
        return np.abs(z.mean(axis=0)).max(), np.abs(np.cov(z.T) - np.eye(z.shape[1])).max()

    mean_err, cov_err = standardized(module.LINK_SCATTER_TRUE)
    assert mean_err < 4.5 / np.sqrt(n_draws)
    assert cov_err < 5.0 * np.sqrt(2.0 / n_draws)
    # Negative control: with a scatter of 10 μs/cm the link is void and the draws are those of
    # the two independent field priors, which the same whitening does not standardize.
    assert standardized(10.0)[1] > 5.0 * np.sqrt(2.0 / n_draws)
    # The phantom is one such draw, its lesion the pixels past the μ midpoint.
    truth = module.phantom(grid, np.random.default_rng(1))
    np.testing.assert_array_equal(truth["lesion"], truth["attenuation"] > module.thresholds()[0])


def test_medical_imaging_normalized_evidence_equals_the_dense_gaussian_evidence():
    # log p(d | σ) of the link-only problem, the link normalized as a prior (collapsed
    # marginal likelihood minus the package's log Z(σ)), against brute-force dense Gaussian
    # algebra on a 4 × 4 image: the joint prior of (μ, s) given σ is N(m, P⁻¹)
    # (_dense_joint_prior); the data are N(G m, G P⁻¹ Gᵀ + R). And log Z(σ) itself against
    # scipy's N(0; m_r, C_r + σ² I), m_r = m_s − slope·m_μ − intercept, C_r = C_s + slope² C_μ.
    # Agreement to 1e-8 (rounding).
    module = _load("medical_imaging")
    grid = module.make_grid(False, 4)
    rng = np.random.default_rng(0)
    problems = module.build(grid, module.phantom(grid, rng), True, rng)
    collapsed = module.CollapsedProblem(problems["link_scatter"])
    normalizer = module.link_normalizer(problems["link_scatter"])
    slope, intercept = module.link_line()
    priors = module.field_priors()
    m_mu, l_mu = priors["attenuation"].gaussian(grid.shape, grid)
    m_s, l_s = priors["slowness"].gaussian(grid.shape, grid)
    n = m_mu.size
    c_r = l_s @ l_s.T + slope**2 * (l_mu @ l_mu.T)
    m_r = m_s - slope * m_mu - intercept
    g_x = np.asarray(problems["operators"]["xray"].matrix.toarray())
    g_u = np.asarray(problems["operators"]["ultrasound"].matrix.toarray())
    g = np.block([[g_x, np.zeros((len(g_x), n))], [np.zeros((len(g_u), n)), g_u]])
    d = np.concatenate([problems["data"]["xray"], problems["data"]["ultrasound"]])
    noise = np.concatenate(
        [np.full(len(g_x), module.XRAY_NOISE**2), np.full(len(g_u), module.US_NOISE**2)]
    )
    brute, raw = [], []
    for scatter in (0.005, 0.03, 0.1):
        z_dense = multivariate_normal(m_r, c_r + scatter**2 * np.eye(n)).logpdf(np.zeros(n))
        assert float(normalizer(scatter)) == pytest.approx(z_dense, abs=1e-8)
        mean, precision = _dense_joint_prior(module, grid, scatter)
        cov = g @ np.linalg.solve(precision, g.T) + np.diag(noise)
        brute.append(multivariate_normal(g @ mean, cov).logpdf(d))
        assert module.log_evidence(collapsed, normalizer, scatter) == pytest.approx(
            brute[-1], abs=1e-8
        )
        raw.append(collapsed.log_marginal_likelihood({next(iter(collapsed.theta)): scatter}))
    # Negative control: without the normalizer the evidence is off by log Z(σ), which depends
    # on σ (the collapse toward small σ that the normalizer removes).
    gaps = np.array(raw) - np.array(brute)
    assert np.ptp(gaps) > 1.0
    # A fixed scatter has no normalizer to take: refused by name.
    with pytest.raises(ValueError, match="'tissue_link' has no closed-form normalizer"):
        module.link_normalizer(problems["joint_with_scatter"](0.02))


def test_medical_imaging_coverage_band_from_effective_pixels():
    # tr(R)²/tr(R²) is n for independent pixels and 1 for perfectly correlated ones (closed
    # forms), and the band is 0.9 ± 3 binomial SE.
    module = _load("medical_imaging")
    grid = module.make_grid(True)
    n_eff = module.effective_pixels(grid)
    assert 1.0 < n_eff < 144.0
    # the 12 × 12 and 32 × 32 images hold about the same number of correlation areas
    assert module.effective_pixels(module.make_grid(False)) == pytest.approx(n_eff, rel=0.05)
    lo, hi = module.coverage_band(n_eff)
    assert lo == pytest.approx(0.9 - 3.0 * np.sqrt(0.09 / n_eff), rel=1e-12)
    assert hi == 1.0
    # Negative control: intervals of half the right width (±0.82 sd) cover about 59 % of
    # standard-normal truths, below the band's lower end.
    truth = np.random.default_rng(3).standard_normal(400)
    coverage = np.mean(np.abs(truth) <= 0.5 * 1.645)
    assert not lo <= coverage <= hi


def test_medical_imaging_quick_passes_its_checks(tmp_path, capsys):
    _, figures = _run_quick("medical_imaging", tmp_path, capsys, "2")
    assert figures["passed"] is True and all(figures["checks"].values()), figures["checks"]
    assert figures["xray_only"]["route"] == figures["ultrasound_only"]["route"] == "exact"
    assert figures["joint"]["sampler"]["route"] == "nuts"
    # The quadrature of the link scatter's posterior: its interval holds its median and the
    # true scatter, and the joint run used that median.
    scatter = figures["link_scatter"]
    assert scatter["interval90"][0] < scatter["median"] < scatter["interval90"][1]
    assert scatter["interval90"][0] <= scatter["true"] <= scatter["interval90"][1]
    band = figures["coverage_band"]
    assert band["pixels"] == 144 and band["band"][0] < 0.9 < band["band"][1]
    joint = figures["joint"]
    for name, alone in (("attenuation", "xray_only"), ("slowness", "ultrasound_only")):
        assert joint[name]["gradient_correlation"] > figures[alone][name]["gradient_correlation"]
