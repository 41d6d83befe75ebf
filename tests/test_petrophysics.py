"""Petrophysical relations against reference values; the soft link against exact algebra."""

from __future__ import annotations

import functools

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import bayesjoint as bj
from bayesjoint.coupling import (
    Petrophysical,
    archie,
    faust,
    gardner,
    gassmann,
    linear,
    wyllie,
)
from bayesjoint.validate import compare_with_exact, taylor_test

SEED = 20260504


# -- reference values (../shared/reference/closed_form.md, with the tolerances it states) --------
def test_archie_reference_values():
    # R_t = a R_w φ^−m S_w^−n with a = 1, m = n = 2, R_w = 0.05 Ω·m, φ = 0.2: rtol 1e-12.
    np.testing.assert_allclose(archie(0.2, rw=0.05), 1.25, rtol=1e-12)
    np.testing.assert_allclose(archie(0.2, saturation=0.5, rw=0.05), 5.0, rtol=1e-12)
    np.testing.assert_allclose(archie(0.2, 0.5, 0.05, a=1.0, m=2.0, n=2.0), 5.0, rtol=1e-12)


def test_gardner_wyllie_gassmann_reference_values():
    # Reference rtol: Gardner 1e-3 (the table gives 4 digits), Wyllie 1e-6, Gassmann 1e-7.
    np.testing.assert_allclose(gardner(3000.0), 2.294, rtol=1e-3)
    np.testing.assert_allclose(wyllie(0.2, v_matrix=4000.0, v_fluid=1484.0), 2987.12, rtol=1e-6)
    np.testing.assert_allclose(gassmann(15.0, 36.6, 2.8, 0.35), 17.6473742, rtol=1e-7)
    np.testing.assert_allclose(gassmann(28.0, 36.6, 2.8, 0.1), 29.4012504, rtol=1e-7)


def test_faust_against_the_original_feet_formula():
    # Faust (1953): V[ft/s] = 1948 (Z[ft] R)^(1/6). Independent route: evaluate in feet and
    # convert, against the SI function (exact unit algebra, so round-off level: rtol 1e-12).
    z_ft, resistivity = np.array([500.0, 1000.0, 4000.0]), np.array([2.0, 10.0, 80.0])
    v_ft = 1948.0 * (z_ft * resistivity) ** (1.0 / 6.0)
    np.testing.assert_allclose(faust(resistivity, z_ft * 0.3048), v_ft * 0.3048, rtol=1e-12)


def test_linear_relation_and_broadcasting():
    x = np.array([[0.1, 0.2], [0.3, 0.4]])
    np.testing.assert_array_equal(linear(x, slope=2.0, intercept=-1.0), 2.0 * x - 1.0)
    # A relation of arrays keeps their broadcast shape.
    assert archie(np.full((3, 2), 0.2), rw=0.05).shape == (3, 2)


def test_relations_on_pytensor_match_numpy():
    phi = pt.vector("phi", shape=(3,))
    values = np.array([0.1, 0.2, 0.35])
    cases = [
        (archie(phi, rw=0.05, m=1.8), archie(values, rw=0.05, m=1.8)),
        (wyllie(phi, 5500.0, 1500.0), wyllie(values, 5500.0, 1500.0)),
        (gassmann(10.0, 37.0, 2.25, phi), gassmann(10.0, 37.0, 2.25, values)),
        (gardner(phi * 1e4), gardner(values * 1e4)),
        (faust(phi * 100, 300.0), faust(values * 100, 300.0)),
        (linear(phi, 3.0, 1.0), linear(values, 3.0, 1.0)),
    ]
    # One compiled function for all six graphs; same formula through two evaluation engines, so
    # round-off agreement.
    outputs = pytensor.function([phi], [tensor for tensor, _ in cases])(values)
    for got, (_, expected) in zip(outputs, cases, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-13)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: archie(0.0, rw=0.05), "porosity must be a volume fraction"),
        (lambda: archie(20.0, rw=0.05), "porosity must be a volume fraction"),
        (lambda: archie(0.2, saturation=-0.1, rw=0.05), "saturation"),
        (lambda: archie(0.2), "give rw"),
        (lambda: archie(0.2, rw=0.0), "rw must be"),
        (lambda: gardner(-3000.0), "velocity must be"),
        (lambda: wyllie(0.2, v_matrix=0.0, v_fluid=1500.0), "v_matrix"),
        (lambda: gassmann(15.0, 36.6, np.nan, 0.3), "k_fluid contains NaN"),
        (lambda: faust(10.0, -100.0), "depth must be"),
    ],
)
def test_relations_reject_non_physical_numbers(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# -- the soft link ---------------------------------------------------------------------------------
def _linked_problem(scatter=0.3, coupling=True):
    """a, b (3 values each), each seen by its own linear modality; b ≈ 2 a + 1 (scatter s)."""
    rng = np.random.default_rng(SEED)
    a = bj.Parameter("a", shape=3, prior=bj.priors.Normal(0.0, 1.0))
    b = bj.Parameter("b", shape=3, prior=bj.priors.Normal(1.0, 2.0))
    ma, mb = rng.standard_normal((4, 3)), rng.standard_normal((2, 3))
    mods = [
        bj.Modality(
            "sees_a", bj.physics.Linear(ma, "a"), rng.standard_normal(4), bj.noise.Gaussian(0.5)
        ),
        bj.Modality(
            "sees_b", bj.physics.Linear(mb, "b"), rng.standard_normal(2), bj.noise.Gaussian(0.4)
        ),
    ]
    link = Petrophysical(
        "a", "b", "linear", scatter=scatter, parameters={"slope": 2.0, "intercept": 1.0}
    )
    problem = bj.JointInversion([a, b], mods, couplings=[link] if coupling else [])
    return problem, (ma, mb, mods)


def test_linear_link_is_one_more_gaussian_factor():
    # Brute force in covariance-free precision form: Λ = Λ0 + Σ AᵀΣ⁻¹A + CᵀC/s², with the link
    # C m = b − 2a, offset 1. Independent dense algebra; agreement to round-off (rtol 1e-10).
    problem, (ma, mb, mods) = _linked_problem()
    s = 0.3
    lam0 = np.diag(np.r_[np.ones(3), np.full(3, 0.25)])
    mu0 = np.r_[np.zeros(3), np.ones(3)]
    a_full = np.zeros((4, 6))
    a_full[:, :3] = ma
    b_full = np.zeros((2, 6))
    b_full[:, 3:] = mb
    link = np.hstack([-2.0 * np.eye(3), np.eye(3)])
    lam = lam0 + a_full.T @ a_full / 0.25 + b_full.T @ b_full / 0.16 + link.T @ link / s**2
    rhs = (
        lam0 @ mu0
        + a_full.T @ mods[0].data / 0.25
        + b_full.T @ mods[1].data / 0.16
        + link.T @ np.ones(3) / s**2
    )
    post = problem.exact_posterior()
    np.testing.assert_allclose(post["mean"].values, np.linalg.solve(lam, rhs), rtol=1e-10)
    np.testing.assert_allclose(post["cov"].values, np.linalg.inv(lam), rtol=1e-10, atol=1e-14)
    budget = problem.information_budget()
    assert "petrophysics_b" in budget["modality"].values.tolist()


def test_model_density_of_the_link_matches_the_formula():
    # The potential is Σ log N(b − 2a − 1 | 0, s²); compare with scipy's normal log pdf at a point.
    from scipy import stats

    problem, _ = _linked_problem()
    model = problem.model
    (potential,) = model.replace_rvs_by_values([model["petrophysics_b"]])
    fn = model.compile_fn(potential, inputs=model.value_vars, on_unused_input="ignore")
    point = {"a": np.array([0.1, -0.4, 0.3]), "b": np.array([1.5, 0.0, 2.2])}
    expected = stats.norm.logpdf(point["b"] - 2 * point["a"] - 1.0, scale=0.3).sum()
    np.testing.assert_allclose(fn(point), expected, rtol=1e-12)


@pytest.mark.slow
def test_sampler_reproduces_the_exact_linked_posterior():
    # compare_with_exact: every |mean − exact| within 4 MCSE, sd within 10 %, R-hat ≤ 1.01.
    problem, _ = _linked_problem()
    idata = problem.sample(
        draws=700, tune=500, chains=2, cores=1, random_seed=SEED, progressbar=False
    )
    result = compare_with_exact(problem, idata)
    assert result.passed, result
    # Negative control: the same draws against the posterior without the link fail the check.
    unlinked, _ = _linked_problem(coupling=False)
    wrong = compare_with_exact(problem, idata, unlinked.exact_posterior())
    assert not wrong.passed
    assert wrong.max_abs_z > 4.0


def test_taylor_gradient_of_a_log_space_archie_link():
    # Nonlinear link ln R = ln archie(φ) + ε on a field: the pytensor gradient of the coupling's
    # log density must make the first-order Taylor remainder fall as h² (slope 2 ± 0.2).
    grid = bj.Grid(x=np.arange(4.0), z=np.arange(3.0))
    phi = bj.Field("porosity", grid, bj.priors.Uniform(0.01, 0.5))
    res = bj.Field("resistivity", grid, bj.priors.LogNormal(0.0, 1.0))
    link = Petrophysical(
        "porosity", "resistivity", "archie", scatter=0.2, parameters={"rw": 0.05, "m": 1.9}
    )
    variables = {"porosity": phi, "resistivity": res}
    link.validate(variables)
    assert link.use_log(variables)
    rng = np.random.default_rng(SEED)
    x0 = np.stack([rng.uniform(0.1, 0.3, grid.shape), rng.uniform(1.0, 5.0, grid.shape)])

    def density(x):
        return link.log_density({"porosity": x[0], "resistivity": x[1]}, variables)

    result = taylor_test(density, x0, random_seed=1, steps=0.02 * 2.0 ** -np.arange(0, 8))
    assert abs(result.slope - 2.0) < 0.2, result
    # Learned scatter: gradient through the scatter too.
    learned = Petrophysical(
        "porosity",
        "resistivity",
        "archie",
        scatter=bj.priors.HalfNormal(0.5),
        parameters={"rw": 0.05},
    )
    x1 = np.append(x0.ravel(), np.log(0.3))

    def density_learned(x):
        fields = x[:-1].reshape(x0.shape)
        latent = {"porosity": fields[0], "resistivity": fields[1]}
        return learned.log_density(latent, variables, scatter=pt.exp(x[-1]))

    result = taylor_test(density_learned, x1, random_seed=2, steps=0.02 * 2.0 ** -np.arange(0, 8))
    assert abs(result.slope - 2.0) < 0.2, result


def test_taylor_negative_control_detects_a_wrong_gradient():
    # Blocking the gradient through the relation leaves an O(h) remainder: slope near 1, which
    # the 2 ± 0.2 criterion rejects.
    from pytensor.gradient import disconnected_grad

    grid = bj.Grid(x=np.arange(4.0), z=np.arange(3.0))
    variables = {
        "porosity": bj.Field("porosity", grid, bj.priors.Uniform(0.01, 0.5)),
        "resistivity": bj.Field("resistivity", grid, bj.priors.LogNormal(0.0, 1.0)),
    }
    broken = Petrophysical(
        "porosity",
        "resistivity",
        lambda phi: disconnected_grad(archie(phi, rw=0.05)),
        scatter=0.2,
    )
    rng = np.random.default_rng(SEED)
    x0 = np.stack([rng.uniform(0.1, 0.3, grid.shape), rng.uniform(1.0, 5.0, grid.shape)])
    result = taylor_test(
        lambda x: broken.log_density({"porosity": x[0], "resistivity": x[1]}, variables),
        x0,
        random_seed=1,
        steps=0.02 * 2.0 ** -np.arange(0, 8),
    )
    assert abs(result.slope - 2.0) > 0.5


def test_log_latent_and_multi_input_archie():
    # Latents holding ln φ and ln R: the residual is ln R − ln(a R_w φ^−m S^−n), computed here
    # independently in numpy (round-off agreement).
    grid = bj.Grid(x=np.arange(3.0), z=np.arange(3.0))
    prior = bj.priors.GaussianField(0.3, 2.0)
    variables = {
        "log_porosity": bj.Field("log_porosity", grid, prior),
        "saturation": bj.Field("saturation", grid, bj.priors.Uniform(0.05, 1.0)),
        "log_resistivity": bj.Field("log_resistivity", grid, prior),
    }
    link = Petrophysical(
        ("log_porosity", "saturation"),
        "log_resistivity",
        "archie",
        scatter=0.1,
        parameters={"rw": 0.05},
        log_latent=("log_porosity", "log_resistivity"),
    )
    link.validate(variables)
    rng = np.random.default_rng(SEED)
    lp, sw, lr = rng.uniform(-2, -1, (3, 3)), rng.uniform(0.3, 1, (3, 3)), rng.normal(0, 1, (3, 3))
    r = link.residual(
        {"log_porosity": pt.constant(lp), "saturation": pt.constant(sw), "log_resistivity": lr},
        variables,
    ).eval()
    expected = lr - np.log(0.05 * np.exp(lp) ** -2.0 * sw**-2.0)
    np.testing.assert_allclose(r, expected, rtol=1e-12)
    assert link.gaussian_factor(variables) is None


def _pattern_problems():
    """One porosity latent, two relations, two modalities (as physics callables and as Linear)."""
    rng = np.random.default_rng(SEED)
    n = 4
    v_m, v_f = 5000.0, 1500.0
    porosity = bj.Parameter("porosity", shape=n, prior=bj.priors.Normal(0.25, 0.05))
    lengths = rng.uniform(5.0, 20.0, (6, n))  # ray lengths (m) of 6 rays in 4 cells
    slope, intercept = -1650.0, 2650.0  # density (kg/m³) = 2650 − 1650 φ (brine-filled quartz)
    gsens = rng.uniform(1e-4, 3e-4, (3, n))  # mGal per kg/m³
    truth = rng.uniform(0.15, 0.35, n)
    times = lengths @ (1.0 / wyllie(truth, v_m, v_f)) + 2e-4 * rng.standard_normal(6)
    grav = gsens @ linear(truth, slope, intercept) + 0.01 * rng.standard_normal(3)

    def seismic(m):
        return pt.dot(pt.constant(lengths), 1.0 / wyllie(m["porosity"], v_m, v_f))

    def gravity(m):
        return pt.dot(pt.constant(gsens), linear(m["porosity"], slope, intercept))

    callables = bj.JointInversion(
        [porosity],
        [
            bj.Modality(
                "seismic",
                bj.physics.Function(seismic, ["porosity"]),
                times,
                bj.noise.Gaussian(2e-4),
            ),
            bj.Modality(
                "gravity", bj.physics.Function(gravity, ["porosity"]), grav, bj.noise.Gaussian(0.01)
            ),
        ],
    )
    # Wyllie slowness φ/V_f + (1 − φ)/V_m and the density line are affine in φ, so the same
    # problem written with Linear physics is linear-Gaussian and has an exact posterior.
    linear_form = bj.JointInversion(
        [porosity],
        [
            bj.Modality(
                "seismic",
                bj.physics.Linear(lengths * (1 / v_f - 1 / v_m), "porosity", lengths.sum(1) / v_m),
                times,
                bj.noise.Gaussian(2e-4),
            ),
            bj.Modality(
                "gravity",
                bj.physics.Linear(gsens * slope, "porosity", gsens.sum(1) * intercept),
                grav,
                bj.noise.Gaussian(0.01),
            ),
        ],
    )
    return callables, linear_form


@pytest.mark.slow
def test_shared_latent_pattern_reproduces_the_exact_posterior():
    # One porosity latent mapped by Wyllie into slowness (seen by travel times) and by a linear
    # density relation (seen by gravity): NUTS on the physics callables reproduces the exact
    # posterior of the equivalent linear problem within 4 MCSE (compare_with_exact).
    callables, linear_form = _pattern_problems()
    exact = linear_form.exact_posterior()
    # 2 x 1000 draws: the split R-hat of 2 x 700 independent-like draws fluctuates past 1.01
    idata = callables.sample(
        draws=1000, tune=500, chains=2, cores=1, random_seed=SEED, progressbar=False
    )
    assert idata.posterior.attrs["route"] == "nuts"  # callables: not known to be linear
    assert compare_with_exact(callables, idata, exact).passed
    # Each modality alone knows less: the joint posterior sd is below both single-modality ones.
    for name in ("seismic", "gravity"):
        alone = bj.JointInversion(
            list(linear_form.latent.values()), [linear_form.modalities[name]]
        ).exact_posterior()
        assert np.all(exact["sd"].values < alone["sd"].values)


def test_gaussian_factor_only_for_fixed_linear_links():
    grid = bj.Grid(x=np.arange(3.0), z=np.arange(2.0))
    variables = {
        "rho": bj.Field("rho", grid, bj.priors.Normal(2500.0, 100.0)),
        "vel": bj.Field("vel", grid, bj.priors.Normal(3000.0, 300.0)),
        "pos": bj.Field("pos", grid, bj.priors.LogNormal(8.0, 0.1)),
    }
    fixed = Petrophysical("rho", "vel", "linear", scatter=50.0, parameters={"slope": 1.2})
    ops, offset, sd = fixed.gaussian_factor(variables)
    np.testing.assert_array_equal(ops["rho"].toarray(), -1.2 * np.eye(6))
    np.testing.assert_array_equal(ops["vel"].toarray(), np.eye(6))
    assert np.all(offset == 0.0) and np.all(sd == 50.0)
    partial = Petrophysical(
        "rho", "vel", functools.partial(linear, slope=1.2, intercept=3.0), scatter=50.0
    )
    assert partial.is_linear and np.all(partial.gaussian_factor(variables)[1] == 3.0)
    learned = Petrophysical("rho", "vel", "linear", scatter=bj.priors.HalfNormal(50.0))
    in_log = Petrophysical("rho", "pos", "linear", scatter=0.1)  # positive prior: log space
    curved = Petrophysical("rho", "vel", lambda r: 0.001 * r**2, scatter=50.0)
    for link in (learned, in_log, curved):
        assert link.gaussian_factor(variables) is None


def test_exact_path_refuses_a_nonlinear_link():
    problem, _ = _linked_problem()
    a, b = problem.latent["a"], problem.latent["b"]
    link = Petrophysical("a", "b", lambda x: x**3, scatter=0.3)
    nonlinear = bj.JointInversion([a, b], list(problem.modalities.values()), couplings=[link])
    with pytest.raises(ValueError, match="petrophysics_b"):
        nonlinear.exact_posterior()


def _fields():
    grid = bj.Grid(x=np.arange(4.0), z=np.arange(3.0))
    other = bj.Grid(x=np.arange(4.0) + 0.5, z=np.arange(3.0))
    return {
        "porosity": bj.Field("porosity", grid, bj.priors.Normal(0.2, 0.02)),
        "resistivity": bj.Field("resistivity", grid, bj.priors.LogNormal(0.0, 1.0)),
        "shifted": bj.Field("shifted", other, bj.priors.LogNormal(0.0, 1.0)),
        "velocity": bj.Field("velocity", grid, bj.priors.Normal(3000.0, 200.0)),
        "short": bj.Parameter("short", shape=5, prior=bj.priors.Normal(0.0, 1.0)),
    }


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"a": "porosity", "b": "nothing"}, "unknown latent variable"),
        ({"a": "porosity", "b": "shifted"}, "different grids"),
        ({"a": "short", "b": "resistivity"}, "same shape"),
        ({"a": "porosity", "b": "velocity", "log": True}, "allows values <= 0"),
    ],
)
def test_validation_names_the_problem(kwargs, match):
    link = Petrophysical(relation="archie", scatter=0.1, parameters={"rw": 0.05}, **kwargs)
    with pytest.raises(ValueError, match=match):
        link.validate(_fields())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"relation": "archy"}, ValueError, "unknown relation 'archy'"),
        ({"parameters": {"Rw": 0.05}}, ValueError, r"no parameter\(s\) \['Rw'\]"),
        ({"parameters": {"rw": -0.05}}, ValueError, "rw must be"),
        ({"parameters": {"rw": 0.05}, "scatter": 0.0}, ValueError, "scatter must be positive"),
        ({"scatter": bj.priors.Normal(0.0, 1.0)}, ValueError, "positive prior"),
        ({"b": "porosity"}, ValueError, "both a and b"),
        ({"relation": 3.0}, TypeError, "callable"),
        ({"log_latent": "velocity"}, ValueError, "not among the linked"),
    ],
)
def test_constructor_rejects_bad_input(kwargs, error, match):
    args = {"a": "porosity", "b": "resistivity", "relation": "archie", "scatter": 0.1}
    args.update({"parameters": {"rw": 0.05}} if "parameters" not in kwargs else {})
    args.update(kwargs)
    with pytest.raises(error, match=match):
        Petrophysical(**args)
