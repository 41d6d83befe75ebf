"""Gaussian-process model discrepancy: exactness, shared blocks, routes and bad input."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import bayesjoint as bj
from bayesjoint.discrepancy import kernel_matrix
from bayesjoint.validate import compare_with_exact


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


def _shared_problem(
    method="exact", n=(12, 9), amplitude=0.4, lengthscale=3.0, seed=2, marginalize_basis=None
):
    rng = np.random.default_rng(seed)
    theta = bj.Parameter("theta", shape=2, prior=bj.priors.Normal(0.0, 2.0))
    shared = bj.discrepancy.GP(
        kernel="matern52",
        lengthscale=lengthscale,
        amplitude=amplitude,
        name="terrain",
        method=method,
        marginalize_basis=marginalize_basis,
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
    # The same shared-discrepancy problem with n = 300 data through the exact route and the HSGP
    # route with the coefficients integrated out (the default) and sampled: the posterior of
    # the physical parameters agrees within 4 combined MCSE (independent chains).
    import arviz as az

    results = {}
    for route in ("exact", "hsgp", "hsgp_sampled"):
        method = "exact" if route == "exact" else "hsgp"
        problem, _ = _shared_problem(
            method=method,
            n=(150, 150),
            lengthscale=4.0,
            seed=9,
            marginalize_basis=False if route == "hsgp_sampled" else None,
        )
        idata = problem.sample(
            draws=500, tune=500, chains=2, cores=1, random_seed=5, progressbar=False
        )
        post = idata.posterior["theta"]
        results[route] = (
            post.mean(("chain", "draw")).values,
            az.mcse(idata.posterior, var_names=["theta"])["theta"].values,
            post.std(("chain", "draw")).values,
        )
        if method == "hsgp":
            block = problem.discrepancy_blocks["terrain"]
            assert block.route == "hsgp" and block.hsgp["m"][0] >= 8
            sampled = "terrain_basis" in idata.posterior
            assert sampled == (route == "hsgp_sampled")
    m1, e1, s1 = results["exact"]
    for route in ("hsgp", "hsgp_sampled"):
        m2, e2, s2 = results[route]
        assert np.all(np.abs(m1 - m2) <= 4 * np.hypot(e1, e2)), (route, m1, m2, e1, e2)
        np.testing.assert_allclose(s1, s2, rtol=0.15)  # sd from ~300-ESS chains: ±6 % each


def test_hsgp_coefficients_sampled_for_non_gaussian_noise():
    x = bj.Parameter("x", prior=bj.priors.Normal())
    coords = np.linspace(0.0, 10.0, 20)

    def problem(noise, **gp):
        gp = bj.discrepancy.GP(lengthscale=2.0, amplitude=0.5, coords=coords, **gp)
        mod = bj.Modality(
            "g", bj.physics.Linear(np.ones((20, 1)), "x"), np.zeros(20), noise, discrepancy=gp
        )
        return bj.JointInversion([x], [mod])

    robust = problem(bj.noise.StudentT(0.1), method="hsgp")
    model = robust.model
    block = robust.discrepancy_blocks["g"]
    assert block.hsgp["coefficients"] == "sampled"
    assert model["g_discrepancy_basis"].eval().shape == (block.hsgp["m"][0],)
    # The modality keeps its own pointwise Student-t likelihood, given the coefficients.
    assert [rv.name for rv in model.observed_RVs] == ["g"]
    assert model["g"].owner.op.name == "t"
    with pytest.raises(ValueError, match="modality 'g': integrating out the HSGP coefficients"):
        problem(bj.noise.StudentT(0.1), method="hsgp", marginalize_basis=True)
    with pytest.raises(ValueError, match="modality 'g': the exact discrepancy route needs"):
        problem(bj.noise.StudentT(0.1), method="exact")
    with pytest.raises(TypeError, match="modality 'g': discrepancy marginalize_basis must be"):
        problem(bj.noise.Gaussian(0.1), marginalize_basis="yes")
    explicit = problem(bj.noise.Gaussian(0.1), method="hsgp", marginalize_basis=False)
    assert "g_discrepancy_basis" in explicit.model.named_vars
    assert explicit.discrepancy_blocks["g"].hsgp["coefficients"] == "sampled"


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
    from bayesjoint.discrepancy.kernels import _prior_range

    sizes = []
    for n in (2000, 20000):
        x = np.linspace(0, 1000, n)[:, None]
        prior = dsc.GP().default_lengthscale_prior(x)
        sizes.append(dsc.hsgp_basis_settings(x, "matern52", _prior_range(prior), None)[0][0])
    assert sizes[0] == sizes[1] < 2000


# -- HSGP route with the basis coefficients integrated out ------------------------------------


def _hsgp_basis_by_hand(x: np.ndarray, m: int, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Laplacian eigenfunctions on [-L, L] around the centre of x, and their frequencies.

    Written from Solin & Särkkä (2020), eq. 11: φ_j(x) = L^{-1/2} sin(π j (x + L) / (2L)),
    √λ_j = π j / (2L), with L = c · max|x − centre| (Riutort-Mayol et al. 2022).
    """
    xs = x - (x.max() + x.min()) / 2
    half = c * np.max(np.abs(xs))
    omega = np.pi * np.arange(1, m + 1) / (2 * half)
    return np.sqrt(1 / half) * np.sin(omega[None] * (xs[:, None] + half)), omega


def _marginal_hsgp_problem(n_basis=None):
    """Two modalities sharing a learned HSGP discrepancy; learned and full-covariance noise.

    The default basis (35 functions) is evaluated through the Woodbury form; ``n_basis=80``,
    more functions than the 55 data, through the dense n × n form.
    """
    rng = np.random.default_rng(1)
    xa, xb = np.linspace(0, 10, 30), np.linspace(1, 9, 25)
    theta = bj.Parameter("theta", shape=2, prior=bj.priors.Normal(0.0, 2.0))
    gp = bj.discrepancy.GP(
        kernel="squared_exponential",
        lengthscale=bj.priors.LogNormal(np.log(3.0), 0.3),
        amplitude=bj.priors.HalfNormal(0.5),
        name="terrain",
        method="hsgp",
        n_basis=n_basis,
    )
    a = np.column_stack([np.ones(xa.size), xa])
    b = np.column_stack([np.ones(xb.size), 0.5 * xb])
    cov_b = 0.09 * np.exp(-np.abs(xb[:, None] - xb[None]) / 2.0)
    mods = [
        bj.Modality(
            "a",
            bj.physics.Linear(a, "theta"),
            rng.normal(size=xa.size),
            bj.noise.Gaussian(bj.priors.HalfNormal(1.0)),
            discrepancy=gp.term(coords=xa),
        ),
        bj.Modality(
            "b",
            bj.physics.Linear(b, "theta"),
            rng.normal(size=xb.size),
            bj.noise.Gaussian(cov=cov_b, scale=bj.priors.LogNormal(0.0, 0.3)),
            discrepancy=gp.term(coords=xb, scale=bj.priors.LogNormal(0.0, 0.5)),
        ),
    ]
    point = {
        "theta": np.array([0.3, -0.2]),
        "terrain_lengthscale": 2.5,
        "terrain_amplitude": 0.4,
        "a_sigma": 0.3,
        "b_noise_scale": 1.2,
        "b_discrepancy_scale": 1.7,
    }
    return bj.JointInversion([theta], mods), gp, (a, b, xa, xb, cov_b, mods), point


@functools.cache
def _built_marginal_hsgp(n_basis=None):
    """The problem with its model built, and the test point in the model's value space."""
    problem, gp, parts, point = _marginal_hsgp_problem(n_basis)
    model = problem.model
    values = {}
    for rv in model.free_RVs:
        transform = model.rvs_to_transforms[rv]
        val = np.asarray(point[rv.name], dtype=float)
        values[model.rvs_to_values[rv].name] = (
            val if transform is None else transform.forward(val).eval()
        )
    return problem, gp, parts, point, values


@pytest.fixture(params=[None, 80], ids=["woodbury", "dense"])
def marginal_hsgp(request):
    return _built_marginal_hsgp(request.param)


def _dense_low_rank_covariance(problem, parts, point, *, cross=True):
    """Noise + A Aᵀ built by hand (the HSGP's basis and squared-exponential spectral density)."""
    a, b, xa, xb, cov_b, _ = parts
    x = np.concatenate([xa, xb])
    hsgp = problem.discrepancy_blocks["terrain"].hsgp
    phi, omega = _hsgp_basis_by_hand(x, hsgp["m"][0], hsgp["c"])
    ls, amp = point["terrain_lengthscale"], point["terrain_amplitude"]
    psd = amp**2 * np.sqrt(2 * np.pi) * ls * np.exp(-0.5 * (ls * omega) ** 2)
    s = np.concatenate([np.ones(xa.size), np.full(xb.size, point["b_discrepancy_scale"])])
    low = s[:, None] * phi * np.sqrt(psd)[None]
    disc = low @ low.T
    if not cross:
        disc[: xa.size, xa.size :] = disc[xa.size :, : xa.size] = 0.0
    noise = np.zeros_like(disc)
    noise[: xa.size, : xa.size] = np.eye(xa.size) * point["a_sigma"] ** 2
    noise[xa.size :, xa.size :] = point["b_noise_scale"] ** 2 * cov_b
    mean = np.concatenate([a, b]) @ point["theta"]
    return mean, noise + disc


def test_marginal_hsgp_block_is_the_dense_low_rank_gaussian(marginal_hsgp):
    # One observed block, no basis coefficients among the free variables, and its log density
    # equals scipy's dense Gaussian with covariance noise + A Aᵀ (basis written out by hand).
    from scipy import stats

    problem, _, parts, point, values = marginal_hsgp
    model = problem.model
    assert [rv.name for rv in model.observed_RVs] == ["terrain"]
    assert not any(rv.name.endswith("_basis") for rv in model.free_RVs)
    block = problem.discrepancy_blocks["terrain"]
    assert block.route == "hsgp" and block.hsgp["coefficients"] == "marginalized"
    data = np.concatenate([m.data for m in parts[-1]])
    mean, cov = _dense_low_rank_covariance(problem, parts, point)
    expected = stats.multivariate_normal(mean, cov).logpdf(data)
    logp = model.compile_fn(model.logp(vars=model.observed_RVs), on_unused_input="ignore")
    # Same density, algebra in another order (Woodbury vs a dense factorization): round-off only.
    assert float(logp(values)) == pytest.approx(expected, rel=1e-11)
    # Negative control: without the cross-modal covariance the density is different.
    mean, cov_nocross = _dense_low_rank_covariance(problem, parts, point, cross=False)
    assert abs(stats.multivariate_normal(mean, cov_nocross).logpdf(data) - expected) > 0.1


def test_marginal_hsgp_gradient_matches_finite_differences(marginal_hsgp):
    # Central differences with step 1e-5 in the unconstrained space: truncation error ~1e-10
    # times the third derivative, so agreement to 1e-6 relative tests the symbolic gradient.
    problem, _, _, _, values = marginal_hsgp
    model = problem.model
    logp = model.compile_logp()
    dlogp = model.compile_dlogp()
    grad = dlogp(values)
    names = [v.name for v in model.value_vars]
    flat = np.concatenate([np.atleast_1d(values[n]).ravel() for n in names])
    sizes = [np.atleast_1d(values[n]).size for n in names]

    def unflatten(vec):
        out, start = {}, 0
        for name, size in zip(names, sizes, strict=True):
            out[name] = vec[start : start + size].reshape(np.shape(values[name]))
            start += size
        return out

    step = 1e-5
    numeric = np.array(
        [
            (logp(unflatten(flat + step * e)) - logp(unflatten(flat - step * e))) / (2 * step)
            for e in np.eye(flat.size)
        ]
    )
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6)


def test_marginal_hsgp_draws_have_the_block_covariance():
    # Forward draws of the block at fixed parameters: sample mean and covariance against the
    # dense Gaussian. With N = 20,000 draws the standard error of a covariance entry is
    # sqrt((Σii Σjj + Σij²) / N); every entry must lie within 5 standard errors (~1,500 entries,
    # so a false alarm has probability ~1e-3), the mean within 5 standard errors.
    import pymc as pm

    problem, _, parts, point, _ = _built_marginal_hsgp()
    model = problem.model
    fixed = {name: np.asarray(val) for name, val in point.items()}
    # The block's forward graph with the free variables as inputs (held at the point).
    fn = pm.compile(list(model.free_RVs), model["terrain"], random_seed=3)
    draws = np.stack([fn(*[fixed[rv.name] for rv in model.free_RVs]) for _ in range(20_000)])
    mean, cov = _dense_low_rank_covariance(problem, parts, point)
    n = draws.shape[0]
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.max(np.abs(draws.mean(0) - mean) / se_mean) < 5
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    z = np.abs(np.cov(draws, rowvar=False) - cov) / se_cov
    assert z.max() < 5, z.max()
    # Negative control: against the covariance without the cross-modal terms the check fails.
    _, cov_nocross = _dense_low_rank_covariance(problem, parts, point, cross=False)
    assert (np.abs(np.cov(draws, rowvar=False) - cov_nocross) / se_cov).max() > 5


def test_auto_route_choice_and_large_basis_warning():
    x = bj.Parameter("x", prior=bj.priors.Normal())

    def build(n, noise, **gp):
        gp = bj.discrepancy.GP(coords=np.linspace(0.0, 1000.0, n), **gp)
        mod = bj.Modality(
            "g", bj.physics.Linear(np.ones((n, 1)), "x"), np.zeros(n), noise, discrepancy=gp
        )
        problem = bj.JointInversion([x], [mod])
        model = problem.model
        assert [rv.name for rv in model.observed_RVs] == ["g"]
        return problem.discrepancy_blocks["g"]

    # Small Gaussian block: exact. Non-Gaussian noise: HSGP with sampled coefficients.
    assert build(50, bj.noise.Gaussian(0.1)).route == "exact"
    robust = build(50, bj.noise.StudentT(0.1), lengthscale=200.0, amplitude=0.1)
    assert (robust.route, robust.hsgp["coefficients"]) == ("hsgp", "sampled")
    # 450 data, above EXACT_MAX_DATA: a fixed long lengthscale needs a small basis (HSGP), the
    # default prior (20-1000 m) needs more functions than data, so the exact route is used.
    assert build(450, bj.noise.Gaussian(0.1), lengthscale=300.0, amplitude=0.1).route == "hsgp"
    assert build(450, bj.noise.Gaussian(0.1), amplitude=0.1).route == "exact"
    with pytest.warns(UserWarning, match="'g_discrepancy': the HSGP basis has 600 functions"):
        build(700, bj.noise.Gaussian(0.1), method="hsgp", n_basis=600, amplitude=0.1)


def test_provenance_records_the_discrepancy_as_built():
    import json

    problem, gp, _, _, _ = _built_marginal_hsgp()
    (entry,) = json.loads(problem._provenance(random_seed=1)["discrepancies"])
    assert entry["block"] == "terrain" and entry["modalities"] == ["a", "b"]
    assert entry["route"] == "hsgp" and entry["hsgp"]["coefficients"] == "marginalized"
    assert entry["hsgp"] == problem.discrepancy_blocks["terrain"].hsgp
    assert entry["hsgp"]["m"][0] >= 8
    assert entry["lengthscale"] == gp.lengthscale.describe()
    assert entry["scales"]["a"] == 1.0 and entry["scales"]["b"].startswith("LogNormal")
    # Default priors are recorded as the priors actually used, not as None.
    x = bj.Parameter("x", prior=bj.priors.Normal())
    mod = bj.Modality(
        "g",
        bj.physics.Linear(np.ones((5, 1)), "x"),
        np.arange(5.0),
        bj.noise.Gaussian(1.0),
        discrepancy=bj.discrepancy.GP(coords=np.arange(5.0)),
    )
    plain = bj.JointInversion([x], [mod])
    assert "g_discrepancy_lengthscale" in {rv.name for rv in plain.model.free_RVs}
    (entry,) = json.loads(plain._provenance(random_seed=1)["discrepancies"])
    assert entry["lengthscale"].startswith("LogNormal")
    assert entry["amplitude"].startswith("HalfNormal") and entry["route"] == "exact"


def test_shared_process_keeps_each_problems_route_and_basis():
    # One GP declared once serves two problems: 50 data (exact route) and 450 data (above
    # EXACT_MAX_DATA, and the fixed long lengthscale needs only a small basis: HSGP). Each
    # problem's provenance records its own route and basis, before and after the other model is
    # built, and building never writes onto the GP.
    import json

    from pymc.distributions.multivariate import MvNormalRV

    gp = bj.discrepancy.GP(kernel="matern52", lengthscale=300.0, amplitude=0.1)
    before = dict(gp.__dict__)
    x = bj.Parameter("x", prior=bj.priors.Normal())

    def problem(n):
        coords = np.linspace(0.0, 1000.0, n)
        lin = bj.physics.Linear(np.ones((n, 1)), "x")
        term = gp.term(coords=coords)
        mod = bj.Modality("g", lin, np.zeros(n), bj.noise.Gaussian(0.1), discrepancy=term)
        return bj.JointInversion([x], [mod])

    def recorded(p):
        (entry,) = json.loads(p._provenance(random_seed=1)["discrepancies"])
        return entry

    small, large = problem(50), problem(450)
    planned = recorded(small), recorded(large)  # decided per problem, before any model exists
    small_model, large_model = small.model, large.model  # the larger one is built last
    assert (recorded(small), recorded(large)) == planned
    assert recorded(small)["route"] == "exact" and recorded(small)["hsgp"] == {}
    hsgp = recorded(large)["hsgp"]
    assert recorded(large)["route"] == "hsgp" and hsgp["coefficients"] == "marginalized"
    assert hsgp["lengthscale_range"][0] == pytest.approx(300.0) and 0 < hsgp["m"][0] < 450
    assert small.discrepancy_blocks["g"].route == "exact"
    assert large.discrepancy_blocks["g"].hsgp == hsgp
    # The models follow their own plans: a dense Gaussian block and the low-rank HSGP block.
    assert isinstance(small_model["g"].owner.op, MvNormalRV)
    assert not isinstance(large_model["g"].owner.op, MvNormalRV)
    # The declaration is untouched (same attributes, same objects) and refuses changes.
    assert gp.__dict__.keys() == before.keys()
    assert all(gp.__dict__[k] is v for k, v in before.items())
    assert not any(hasattr(gp, a) for a in ("route", "hsgp_settings", "resolved_hyperparameters"))
    with pytest.raises(AttributeError, match="GP is a declaration"):
        gp.lengthscale = 10.0
    term = small.modalities["g"].discrepancy
    with pytest.raises(AttributeError, match="DiscrepancyTerm is a declaration"):
        term.scale = 2.0
    # Coordinates are kept as a read-only copy; the caller's array stays writable.
    user = np.linspace(0.0, 1.0, 5)
    own = bj.discrepancy.GP(coords=user).coords
    assert user.flags.writeable and not own.flags.writeable and not np.shares_memory(user, own)


def test_logdet_and_quadratic_op():
    # log det B ± bᵀB⁻¹b against numpy, its gradient against finite differences (pytensor's
    # verify_grad, through a symmetric parameterization B = A Aᵀ + I), and +inf for a matrix
    # that is not positive definite.
    import pytensor
    import pytensor.tensor as pt

    from bayesjoint.discrepancy.kernels import _LogdetAndQuadratic

    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=6)
    spd = a @ a.T + np.eye(6)
    mat, vec = pt.dmatrix("B"), pt.dvector("b")
    for sign in (1.0, -1.0):
        value = pytensor.function([mat, vec], _LogdetAndQuadratic(sign)(mat, vec))
        expected = np.linalg.slogdet(spd)[1] + sign * b @ np.linalg.solve(spd, b)
        # A 6 x 6 matrix of condition number 14: agreement to round-off.
        assert float(value(spd, b)) == pytest.approx(expected, rel=1e-12)
        assert float(value(-spd, b)) == np.inf
        pytensor.gradient.verify_grad(
            lambda a_, b_, s=sign: _LogdetAndQuadratic(s)(a_ @ a_.T + pt.eye(6), b_),
            [a, b],
            rng=np.random.default_rng(6),
        )
