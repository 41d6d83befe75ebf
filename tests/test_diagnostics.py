"""bj.diagnose: the convergence gate, per-modality LOO and predictive checks, modality conflicts."""

from __future__ import annotations

import json

import arviz as az
import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

import bayesjoint as bj
from bayesjoint.diagnostics import (
    Thresholds,
    convergence_table,
    diagnose,
    loo_per_modality,
    modality_conflict,
    posterior_predictive_checks,
)
from bayesjoint.validate import blur_and_points_problem


def _stacked_system(problem):
    """Rows, noise sds, data and owner of every datum of a linear-Gaussian problem (numpy)."""
    rows, sds, data, owner = [], [], [], []
    for name, mod in problem.modalities.items():
        a, b = mod.linear_operator(problem.latent_shapes)
        rows.append(a.toarray() if sp.issparse(a) else np.asarray(a))
        sd = mod.noise.known_covariance_factor(mod.data.shape)
        sds.append(sd)
        data.append(mod.data.ravel() - b)
        owner += [name] * sd.size
    return np.vstack(rows), np.concatenate(sds), np.concatenate(data), np.asarray(owner)


def _exact_loo(problem, prior_sd, noise_scale=1.0):
    """log p(d_j | all other data) for every datum, in closed form.

    With the full posterior covariance C, h_j = a_jᵀ C a_j and residual r_j = d_j − a_jᵀ μ, the
    posterior without datum j predicts d_j with mean d_j − r_j σ²/(σ² − h_j) and variance
    σ⁴/(σ² − h_j) (Sherman–Morrison rank-one downdate; the PRESS residual of linear regression).
    """
    a, sd, d, owner = _stacked_system(problem)
    sd = sd * noise_scale
    n = a.shape[1]
    cov = np.linalg.inv(np.eye(n) / prior_sd**2 + a.T @ (a / sd[:, None] ** 2))
    mean = cov @ (a.T @ (d / sd**2))
    h = np.einsum("ij,jk,ik->i", a, cov, a)
    resid = d - a @ mean
    var = sd**4 / (sd**2 - h)
    return stats.norm.logpdf(resid * sd**2 / (sd**2 - h), 0.0, np.sqrt(var)), owner


def _psis_se(ll):
    """Delta-method Monte Carlo sd of each PSIS-LOO term (rows: data; independent draws)."""
    lw, _ = az.psislw(-ll.copy())
    w = np.exp(lw - lw.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    p = np.exp(ll - ll.max(axis=1, keepdims=True))
    e = np.sum(w * p, axis=1)
    return np.sqrt(np.sum(w**2 * (p - e[:, None]) ** 2, axis=1)) / e


# -- convergence gate -------------------------------------------------------------------------
def test_diagnose_passes_a_good_run(idata):
    result = diagnose(idata)
    # 4 x 1000 NUTS draws of a Gaussian posterior: every convergence check passes; the only
    # reasons are the Pareto-k warnings of the very influential point data (see the LOO test).
    assert result.passed and result.verdict == "warn"
    assert result.table.loc["x", "status"] == "ok"
    assert result.table.loc["x", "rhat_max"] <= 1.01
    assert result.table.loc["x", "ess_bulk_min"] >= 400
    assert result.reasons and all("Pareto k" in r for r in result.reasons)
    checks = result.checks.set_index("check")
    assert checks.loc["divergences", "status"] == "ok"
    assert checks.loc["E-BFMI", "status"] == "ok"
    assert len(result.elements) == 120
    text = str(result)
    assert "verdict:" in text and "Vehtari" in text and "blurred" in text
    json.dumps(result.to_dict())  # serializable


def test_diagnose_fails_an_unconverged_run():
    # Negative control: 2 chains x 30 draws after 10 tuning steps cannot reach ESS 400.
    problem = blur_and_points_problem(20, n_points=5)
    short = problem.sample(draws=30, tune=10, chains=2, cores=1, random_seed=4, progressbar=False)
    result = diagnose(short, conflict=None)
    assert result.verdict == "fail" and not result.passed
    assert result.table.loc["x", "status"].startswith("fail")
    assert any("ESS" in r for r in result.reasons)
    # thresholds are configurable: with permissive limits the same run passes the gate
    loose = diagnose(short, conflict=None, modality_checks=False, rhat=10.0, ess_bulk=1, ess_tail=1)
    assert loose.table.loc["x", "status"] == "ok"
    with pytest.raises(TypeError, match="unknown keyword"):
        diagnose(short, rhat_limit=1.1)


def test_sampler_pathologies_fail_the_gate(idata):
    # Divergences, a stuck chain (different mode) and low E-BFMI are each reported.
    bad = idata.copy()
    bad.sample_stats["diverging"].values[0, :5] = True
    bad.posterior["x"].values[1] += 5 * idata.posterior["x"].std().values  # chain 1 elsewhere
    energy = bad.sample_stats["energy"].values
    energy[2] = np.cumsum(np.full(energy.shape[1], 0.01))  # slow energy drift: E-BFMI ~ 0
    result = diagnose(bad, modality_checks=False, conflict=None)
    checks = result.checks.set_index("check")
    assert result.verdict == "fail"
    assert checks.loc["divergences", "status"] == "fail"
    assert checks.loc["E-BFMI", "status"] == "fail"
    assert checks.loc["modes", "status"] == "fail"  # chains in different modes
    assert result.table.loc["x", "rhat_max"] > 1.5


def test_convergence_table_matches_arviz_and_groups_by_latent(idata):
    table, elements = convergence_table(idata)
    # Independent reference: ArviZ's own summary for the same draws (same estimators).
    summary = az.summary(idata, var_names=["x"], kind="diagnostics", round_to="none")
    np.testing.assert_allclose(elements["rhat"].values, summary["r_hat"].values, rtol=1e-12)
    np.testing.assert_allclose(elements["ess_bulk"].values, summary["ess_bulk"].values, rtol=1e-12)
    np.testing.assert_allclose(
        elements["mcse_mean"].values, summary["mcse_mean"].values, rtol=1e-12
    )
    # MCSE of the sd: ArviZ's numba-free implementation is the reference (its numba path fails
    # with numpy 2, which is why bayesjoint computes it); same estimator, round-off tolerance.
    was_enabled = az.Numba.numba_flag
    az.Numba.disable_numba()
    try:
        reference = az.mcse(idata.posterior[["x"]], method="sd")["x"].values
    finally:
        if was_enabled:
            az.Numba.enable_numba()
    np.testing.assert_allclose(elements["mcse_sd"].values, reference, rtol=1e-10)
    assert table.loc["x", "group"] == "x" and table.loc["x", "role"] == "parameter"
    assert Thresholds().good_k(4000) == pytest.approx(0.7)


# -- per-modality checks ----------------------------------------------------------------------
def test_loo_per_modality_matches_exact_leave_one_out(problem, idata):
    exact, owner = _exact_loo(problem, prior_sd=0.1)
    loo = loo_per_modality(idata)
    assert sorted(loo) == ["blurred", "points"]
    ll = idata.log_likelihood["blurred"].stack(s=("chain", "draw")).transpose(..., "s").values
    se = _psis_se(ll)
    est = loo["blurred"].loo_i.values
    ref = exact[owner == "blurred"]
    assert np.all(loo["blurred"].pareto_k.values <= 0.7)
    # Pointwise: within 5 Monte Carlo sds of each PSIS term (delta method; 5 leaves room for
    # the autocorrelation the iid formula ignores). Total: within the sum of those sds (the
    # bound when all terms' errors are perfectly correlated, as they share the same draws).
    assert np.all(np.abs(est - ref) <= 5 * se)
    assert abs(est.sum() - ref.sum()) <= se.sum()
    # Negative control: the exact LOO of a model with 50 % larger noise is detected as different.
    wrong, _ = _exact_loo(problem, prior_sd=0.1, noise_scale=1.5)
    assert abs(est.sum() - wrong[owner == "blurred"].sum()) > se.sum()


def test_pareto_k_warnings_flag_the_unreliable_terms(problem, idata):
    # The 30 point data (sd 0.02 against a prior sd of 0.1) each pin one parameter down, so their
    # PSIS weights are heavy-tailed: diagnose warns, and those are exactly the terms whose PSIS
    # estimate is far from the exact LOO value.
    exact, owner = _exact_loo(problem, prior_sd=0.1)
    result = diagnose(idata, conflict=None)
    row = result.modalities.loc["points"]
    k = result.loo["points"].pareto_k.values
    assert row["n_pareto_k_bad"] == int(np.sum(k > 0.7)) > 0
    assert row["status"].startswith("warn")
    err = np.abs(result.loo["points"].loo_i.values - exact[owner == "points"])
    assert err[k > 0.7].mean() > 5 * err[k <= 0.7].mean() or err[k > 0.7].mean() > 0.3


def test_posterior_predictive_coverage_matches_the_exact_predictive(problem, idata):
    # For a linear-Gaussian problem y_rep ~ N(A μ, A C Aᵀ + σ² I) exactly; the fraction of data
    # inside its central 90 % interval is the reference. Quantiles estimated from 4000 draws
    # move an interval end by ~0.03 sd, so at most 3 of 120 data may switch sides.
    pp = problem.sample_posterior_predictive(idata, extend_inferencedata=False, random_seed=3)
    checks = posterior_predictive_checks(pp)
    exact = problem.exact_posterior()
    mod = problem.modalities["blurred"]
    a = mod.linear_operator(problem.latent_shapes)[0]
    mean = a @ exact["mean"].values
    sd = np.sqrt(np.einsum("ij,jk,ik->i", a, exact["cov"].values, a) + 0.05**2)
    z = (mod.data - mean) / sd
    inside = np.abs(z) <= stats.norm.ppf(0.95)
    assert abs(checks["blurred"]["coverage90"] - inside.mean()) <= 3 / 120
    # standardized residuals: 5 % relative (sd of y_rep from 4000 draws: ~1.1 %) + 0.05 abs
    np.testing.assert_allclose(checks["blurred"]["residual"].values, z, rtol=0.05, atol=0.05)


def test_misfit_modality_is_reported():
    # Negative control: data whose stated noise is 4x too small are not fitted (coverage falls).
    rng = np.random.default_rng(7)
    truth = rng.normal(size=30)
    x = bj.Parameter("x", shape=30, prior=bj.priors.Normal(0.0, 1.0))
    good = bj.Modality(
        "good",
        physics=bj.physics.Linear(np.eye(30), input="x"),
        data=truth + 0.1 * rng.normal(size=30),
        noise=bj.noise.Gaussian(0.1),
    )
    a = rng.normal(size=(40, 30)) / 6
    optimistic = bj.Modality(
        "optimistic",
        physics=bj.physics.Linear(a, input="x"),
        data=a @ truth + 0.4 * rng.normal(size=40),
        noise=bj.noise.Gaussian(0.1),
    )
    problem = bj.JointInversion(latent=[x], modalities=[good, optimistic])
    run = problem.sample(draws=300, tune=300, chains=2, cores=1, random_seed=2, progressbar=False)
    result = diagnose(run, problem, ess_bulk=100, ess_tail=100)
    assert result.modalities.loc["optimistic", "status"].startswith("warn")
    assert result.modalities.loc["optimistic", "coverage90"] < 0.75  # the limit is 0.76
    assert any(r.startswith("optimistic") and "not fitted" in r for r in result.reasons)


# -- conflict between modalities --------------------------------------------------------------
def _three(shift, noise_c=0.3, seed=3):
    """x (6 values) seen by three random linear surveys; survey c sees truth + shift."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=6)
    x = bj.Parameter("x", shape=6, prior=bj.priors.Normal(0.0, 1.0))
    mods = []
    for name, s, sd in [("a", 0.0, 0.3), ("b", 0.0, 0.3), ("c", shift, noise_c)]:
        a = rng.normal(size=(8, 6)) / np.sqrt(6)
        data = a @ (truth + s) + sd * rng.normal(size=8)
        mods.append(
            bj.Modality(
                name, physics=bj.physics.Linear(a, input="x"), data=data,
                noise=bj.noise.Gaussian(sd),
            )
        )  # fmt: skip
    return bj.JointInversion(latent=[x], modalities=mods)


def test_conflict_check_names_the_modality_from_a_shifted_truth():
    result = modality_conflict(problem=_three(shift=1.0))
    assert result.conflicting == "c" and result.named == ["c"]
    assert result.table.loc["c", "status"] == "conflict"
    # a and b agree once c is left out
    assert list(result.table.loc[["a", "b"], "status"]) == ["ok", "ok"]
    assert "'c' disagrees with the others" in result.message
    # the exact predictive statistic is χ² with 8 dof: recompute c's by hand
    problem = _three(shift=1.0)
    ab = bj.JointInversion(
        latent=list(problem.latent.values()),
        modalities=[problem.modalities["a"], problem.modalities["b"]],
    ).exact_posterior()
    a = problem.modalities["c"].linear_operator(problem.latent_shapes)[0]
    e = problem.modalities["c"].data - a @ ab["mean"].values
    s = a @ ab["cov"].values @ a.T + 0.3**2 * np.eye(8)
    chi2 = float(e @ np.linalg.solve(s, e))
    assert result.table.loc["c", "statistic"] == pytest.approx(chi2, rel=1e-9)
    assert result.table.loc["c", "p_value"] == pytest.approx(stats.chi2.sf(chi2, 8), rel=1e-6)


def test_conflict_check_stays_quiet_when_the_data_agree():
    # Negative control: the same surveys without the shift.
    result = modality_conflict(problem=_three(shift=0.0))
    assert result.conflicting is None and not result.tension
    assert set(result.table["status"]) == {"ok"}


def test_sampled_conflict_check_agrees_with_the_exact_one():
    # A weak third survey (sd 1.5) can be left out by importance reweighting (small Pareto k);
    # shifts agree with the exact ones within Monte Carlo error (0.15 posterior sd ≈ 4 MCSE at
    # ~1000 effective draws). A refit names the shifted survey like the exact check.
    problem = _three(shift=0.0, noise_c=1.5)
    run = problem.sample(draws=400, tune=250, chains=2, cores=1, random_seed=8, progressbar=False)
    exact = modality_conflict(problem=problem)
    sampled = modality_conflict(run, problem, method="importance")
    assert sampled.table.loc["c", "pareto_k"] < 0.7
    np.testing.assert_allclose(
        sampled.shifts.sel(modality="c").values, exact.shifts.sel(modality="c").values, atol=0.15
    )
    shifted = _three(shift=1.0)
    run = shifted.sample(draws=200, tune=200, chains=2, cores=1, random_seed=8, progressbar=False)
    refit = modality_conflict(
        run, shifted, method="refit", refit_kwargs={"draws": 150, "tune": 150}, random_seed=1
    )
    assert set(refit.table["method"]) == {"refit"}
    assert refit.conflicting == "c"


def test_diagnose_reports_a_conflict_and_two_modality_tension():
    problem = _three(shift=1.0)
    run = problem.sample(draws=300, tune=300, chains=2, cores=1, random_seed=9, progressbar=False)
    result = diagnose(run, problem, ess_bulk=100, ess_tail=100)
    assert result.verdict == "fail"
    assert result.conflict.conflicting == "c"
    assert any("'c' disagrees" in r for r in result.reasons)
    two = bj.JointInversion(
        latent=list(problem.latent.values()),
        modalities=[problem.modalities["a"], problem.modalities["c"]],
    )
    pair = modality_conflict(problem=two)
    assert pair.conflicting is None and sorted(pair.tension) == ["a", "c"]
    assert "cannot be told apart" in pair.message


def test_diagnose_accepts_a_path_and_rejects_other_input(idata, tmp_path):
    path = bj.save(idata, tmp_path / "run.nc")
    # (with the progress bar on stderr, as the command shows it on a terminal)
    assert diagnose(path, conflict=None, progressbar=True).table.loc["x", "status"] == "ok"
    with pytest.raises(TypeError, match=r"arviz\.InferenceData or a path"):
        diagnose({"x": 1})
    with pytest.raises(ValueError, match="no posterior group"):
        diagnose(az.InferenceData(observed_data=idata.observed_data))


def test_roles_of_discrepancy_variables():
    from bayesjoint.diagnostics.labels import _role

    latent = {"theta": {"kind": "parameter"}}
    assert _role("terrain_lengthscale", latent, ["a", "b"]) == (
        "terrain",
        "discrepancy lengthscale",
    )
    assert _role("g_discrepancy_amplitude", latent, ["g"]) == (
        "g_discrepancy",
        "discrepancy amplitude",
    )
    assert _role("b_discrepancy_scale", latent, ["a", "b"]) == ("b", "discrepancy scale")
    assert _role("b_sigma", latent, ["a", "b"]) == ("b", "noise sd")
    assert _role("other_thing", latent, ["a"]) == ("other_thing", "other")
