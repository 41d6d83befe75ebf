"""Gaussian-process model discrepancy: exactness, shared blocks, routes and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import bayesjoint as bj
from bayesjoint.discrepancy import kernel_matrix
from bayesjoint.testing import compare_with_exact


def test_kernel_matrix_closed_forms():
    # r = 2, ℓ = 2 (so r/ℓ = 1), amplitude 3: 9·k(1) for each kernel's closed form.
    xa, xb = np.zeros((1, 2)), np.array([[2.0, 0.0]])
    expect = {
        "squared_exponential": np.exp(-0.5),
        "matern32": (1 + np.sqrt(3)) * np.exp(-np.sqrt(3)),
        "matern52": (1 + np.sqrt(5) + 5 / 3) * np.exp(-np.sqrt(5)),
    }
    for kernel, k1 in expect.items():
        assert kernel_matrix(xa, xb, kernel, 2.0, 3.0)[0, 0] == pytest.approx(9 * k1, rel=1e-14)


def test_scalar_formula_with_discrepancy():
    # K measurements h_k m + δ_k + ε_k: posterior variance 1 / (1/σ0² + Σ h_k² / (σ_k² + σ_δk²)).
    h, sd, sd_delta, sigma0 = [1.5, -0.7, 2.0], [0.2, 0.4, 0.3], [0.3, 0.1, 0.5], 1.3
    m = bj.Parameter("m", prior=bj.priors.Normal(0.0, sigma0))
    mods = [
        bj.Modality(
            f"k{k}",
            bj.physics.Linear([[hk]], "m"),
            [0.5 * k],
            bj.noise.Gaussian(sk),
            discrepancy=bj.discrepancy.GP(lengthscale=1.0, amplitude=ak, coords=[0.0]),
        )
        for k, (hk, sk, ak) in enumerate(zip(h, sd, sd_delta, strict=True))
    ]
    post = bj.JointInversion([m], mods).exact_posterior()
    terms = [hk**2 / (s**2 + a**2) for hk, s, a in zip(h, sd, sd_delta, strict=True)]
    expected = 1 / (1 / sigma0**2 + sum(terms))
    assert float(post["sd"][0]) ** 2 == pytest.approx(expected, rel=1e-12)
    # Negative control: ignoring the discrepancy gives a different (overconfident) variance.
    naive = 1 / (1 / sigma0**2 + sum(hk**2 / s**2 for hk, s in zip(h, sd, strict=True)))
    assert abs(naive - expected) > 0.1 * expected


def _shared_problem(method="exact", n=(12, 9), amplitude=0.4, lengthscale=3.0, seed=2):
    rng = np.random.default_rng(seed)
    theta = bj.Parameter("theta", shape=2, prior=bj.priors.Normal(0.0, 2.0))
    shared = bj.discrepancy.GP(
        kernel="matern52",
        lengthscale=lengthscale,
        amplitude=amplitude,
        name="terrain",
        method=method,
    )
    xa, xb = np.linspace(0, 10, n[0]), np.linspace(1, 9, n[1])
    a, b = np.column_stack([np.ones(n[0]), xa]), np.column_stack([np.ones(n[1]), 0.5 * xb])
    mods = [
        bj.Modality(
            "a",
            bj.physics.Linear(a, "theta"),
            rng.normal(size=n[0]),
            bj.noise.Gaussian(0.2),
            discrepancy=shared.term(coords=xa),
        ),
        bj.Modality(
            "b",
            bj.physics.Linear(b, "theta"),
            rng.normal(size=n[1]),
            bj.noise.Gaussian(0.3),
            discrepancy=shared.term(coords=xb, scale=1.5),
        ),
    ]
    return bj.JointInversion([theta], mods), (a, b, xa, xb, mods)


def test_shared_discrepancy_against_dense_algebra():
    problem, (a, b, xa, xb, mods) = _shared_problem()
    post = problem.exact_posterior()
    # Brute force: stack both modalities; covariance = noise + s s' K over all coordinates.
    x = np.concatenate([xa, xb])[:, None]
    s = np.concatenate([np.ones(len(xa)), np.full(len(xb), 1.5)])
    k = kernel_matrix(x, x, "matern52", 3.0, 0.4) * np.outer(s, s)
    cov_d = np.diag(np.concatenate([np.full(len(xa), 0.04), np.full(len(xb), 0.09)])) + k
    big_a = np.vstack([a, b])
    d = np.concatenate([m.data for m in mods])
    lam = np.eye(2) / 4 + big_a.T @ np.linalg.solve(cov_d, big_a)
    cov = np.linalg.inv(lam)
    np.testing.assert_allclose(post["cov"].values, cov, rtol=1e-10)
    np.testing.assert_allclose(
        post["mean"].values, cov @ big_a.T @ np.linalg.solve(cov_d, d), rtol=1e-10
    )
    budget = problem.information_budget()
    assert budget["modality"].values.tolist() == ["terrain"]
    # Negative control: dropping the cross-modal terms changes the answer.
    k_block = k.copy()
    k_block[: len(xa), len(xa) :] = 0.0
    k_block[len(xa) :, : len(xa)] = 0.0
    cov_nocross = np.diag(np.diag(cov_d - k)) + k_block
    lam2 = np.eye(2) / 4 + big_a.T @ np.linalg.solve(cov_nocross, big_a)
    assert not np.allclose(np.linalg.inv(lam2), cov, rtol=1e-3)


def test_shared_block_in_the_model(tmp_path):
    problem, _ = _shared_problem()
    model = problem.model
    assert [rv.name for rv in model.observed_RVs] == ["terrain"]
    assert model.named_vars_to_dims["terrain"] == ("terrain_obs",)
    # The block's log density equals the dense Gaussian density (independent scipy evaluation).
    from scipy import stats

    _, (a, b, xa, xb, mods) = _shared_problem()
    theta = np.array([0.3, -0.1])
    x = np.concatenate([xa, xb])[:, None]
    s = np.concatenate([np.ones(len(xa)), np.full(len(xb), 1.5)])
    cov = np.diag(np.concatenate([np.full(len(xa), 0.04), np.full(len(xb), 0.09)]))
    cov = cov + kernel_matrix(x, x, "matern52", 3.0, 0.4) * np.outer(s, s)
    mean = np.concatenate([a @ theta, b @ theta])
    d = np.concatenate([m.data for m in mods])
    expected = stats.multivariate_normal(mean, cov).logpdf(d)
    logp = model.compile_fn(model.logp(vars=model.observed_RVs), on_unused_input="ignore")
    assert float(logp({"theta": theta})) == pytest.approx(expected, rel=1e-10)


def test_errors_name_the_modality():
    lin = bj.physics.Linear(np.eye(3), "x")
    with pytest.raises(ValueError, match="modality 'g': discrepancy coordinates have 2 rows"):
        bj.Modality(
            "g",
            lin,
            np.zeros(3),
            bj.noise.Gaussian(1.0),
            discrepancy=bj.discrepancy.GP(coords=[0.0, 1.0]),
        )
    with pytest.raises(ValueError, match="modality 'g': discrepancy lengthscale must be positive"):
        bj.Modality(
            "g",
            lin,
            np.zeros(3),
            bj.noise.Gaussian(1.0),
            discrepancy=bj.discrepancy.GP(lengthscale=-1.0),
        )
    with pytest.raises(ValueError, match="modality 'g': discrepancy amplitude must be positive"):
        bj.Modality(
            "g",
            lin,
            np.zeros(3),
            bj.noise.Gaussian(1.0),
            discrepancy=bj.discrepancy.GP(amplitude=0.0),
        )
    with pytest.raises(ValueError, match="modality 'g': discrepancy kernel 'rbf' unknown"):
        bj.Modality(
            "g",
            lin,
            np.zeros(3),
            bj.noise.Gaussian(1.0),
            discrepancy=bj.discrepancy.GP(kernel="rbf"),
        )
    shared = bj.discrepancy.GP(lengthscale=1.0, amplitude=1.0)
    x = bj.Parameter("x", shape=3, prior=bj.priors.Normal())
    mods = [
        bj.Modality(n, lin, np.zeros(3), bj.noise.Gaussian(1.0), discrepancy=shared)
        for n in ("a", "b")
    ]
    with pytest.raises(ValueError, match="share one discrepancy process; give it a name"):
        bj.JointInversion([x], mods)


def test_learned_hyperparameters_block_the_exact_path():
    x = bj.Parameter("x", shape=3, prior=bj.priors.Normal())
    mod = bj.Modality(
        "g",
        bj.physics.Linear(np.eye(3), "x"),
        np.zeros(3),
        bj.noise.Gaussian(1.0),
        discrepancy=bj.discrepancy.GP(),
    )
    with pytest.raises(ValueError, match="modality 'g': its discrepancy has learned"):
        bj.JointInversion([x], [mod]).exact_posterior()


@pytest.mark.slow
def test_nuts_with_exact_discrepancy_matches_exact_posterior():
    # 4 MCSE per parameter, sd within 10 % (see compare_with_exact for the reasoning).
    problem, _ = _shared_problem()
    idata = problem.sample(
        draws=1000, tune=1000, chains=2, cores=1, random_seed=4, progressbar=False
    )
    check = compare_with_exact(problem, idata, rhat_tol=1.02)
    assert check.passed, (check.max_abs_z, check.sd_ratio_range, check.max_rhat)


@pytest.mark.slow
def test_hsgp_and_exact_routes_agree_at_n_300():
    # The same shared-discrepancy problem with n = 300 data through both routes: the posterior
    # of the physical parameters agrees within 4 combined MCSE (independent chains).
    import arviz as az

    results = {}
    for method in ("exact", "hsgp"):
        problem, _ = _shared_problem(method=method, n=(150, 150), lengthscale=4.0, seed=9)
        idata = problem.sample(
            draws=500, tune=500, chains=2, cores=1, random_seed=5, progressbar=False
        )
        post = idata.posterior["theta"]
        results[method] = (
            post.mean(("chain", "draw")).values,
            az.mcse(idata.posterior, var_names=["theta"])["theta"].values,
            post.std(("chain", "draw")).values,
        )
        if method == "hsgp":
            process = problem.modalities["a"].discrepancy.process
            assert process.route == "hsgp" and process.hsgp_settings["m"][0] >= 8
    (m1, e1, s1), (m2, e2, s2) = results["exact"], results["hsgp"]
    assert np.all(np.abs(m1 - m2) <= 4 * np.hypot(e1, e2)), (m1, m2, e1, e2)
    np.testing.assert_allclose(s1, s2, rtol=0.15)  # sd estimates from ~300-ESS chains: ±6 % each


def test_two_learned_lengthscales_build_without_stray_variables():
    # Regression: the prior-range helper once nested a model and added a free variable '_ls'.
    x = bj.Parameter("x", prior=bj.priors.Normal())
    mods = [
        bj.Modality(
            n,
            bj.physics.Linear(np.ones((5, 1)), "x"),
            np.zeros(5),
            bj.noise.Gaussian(1.0),
            discrepancy=bj.discrepancy.GP(coords=np.arange(5.0), amplitude=1.0),
        )
        for n in ("a", "b")
    ]
    names = sorted(v.name for v in bj.JointInversion([x], mods).model.free_RVs)
    assert names == ["a_discrepancy_lengthscale", "b_discrepancy_lengthscale", "x"]


def test_default_hsgp_basis_does_not_grow_with_dense_data():
    # The default prior's lower end is at least extent/50, so on a 1 km profile the basis size
    # is the same for 2,000 and 20,000 data (it was 456,028 functions at 20,000 when the lower
    # end was the data spacing, and grew in proportion to n).
    from bayesjoint import discrepancy as dsc

    sizes = []
    for n in (2000, 20000):
        x = np.linspace(0, 1000, n)[:, None]
        prior = dsc.GP().default_lengthscale_prior(x)
        sizes.append(dsc.hsgp_basis_settings(x, "matern52", dsc._prior_range(prior), None)[0][0])
    assert sizes[0] == sizes[1] < 2000
