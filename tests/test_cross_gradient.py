"""Cross-gradient: reference values, exactness on non-uniform grids, the scale-free soft prior."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytensor.tensor as pt
import pytest
from pytensor.gradient import disconnected_grad

import bayesjoint as bj
from bayesjoint.coupling import CrossGradient, cross_gradient, normalized_cross_gradient
from bayesjoint.coupling.cross_gradient import effective_terms, prior_gradient_scale
from bayesjoint.validate import taylor_test

SEED = 20260504


def _nonuniform_grid():
    rng = np.random.default_rng(SEED)
    x = np.cumsum(rng.uniform(5.0, 25.0, 9))
    z = -np.cumsum(rng.uniform(5.0, 25.0, 7))[::-1]
    return bj.Grid(x=x, z=z)


def _mesh(grid):
    return np.meshgrid(*grid.centers.values(), indexing="ij")


# -- reference values (../shared/reference/closed_form.md: rtol 1e-10) ---------------------------
@pytest.mark.parametrize("symbolic", [False, True])
def test_reference_values_on_a_nonuniform_grid(symbolic):
    grid = _nonuniform_grid()
    x, z = _mesh(grid)
    cases = [(x, z, 1.0), (x + z, x - z, -2.0), (x, 2 * x + 1, 0.0), (x, x**2, 0.0)]
    for a, b, expected in cases:
        if symbolic:
            ta, tb = pt.matrix("a", shape=grid.shape), pt.matrix("b", shape=grid.shape)
            t = cross_gradient(ta, tb, grid).eval({ta: a, tb: b})
        else:
            t = cross_gradient(a, b, grid)
        assert t.shape == (grid.shape[0] - 2, grid.shape[1] - 2)
        # rtol 1e-10 relative to the size of the gradient product (zero has no relative scale):
        # |∇a||∇b| ≤ 1 · 2 max|x| here.
        scale = max(abs(expected), 1.0) * (1.0 if expected else 2.0 * np.abs(x).max())
        np.testing.assert_allclose(t, expected, rtol=0, atol=1e-10 * scale)
        if expected == 0.0:
            assert np.all(t == 0.0)  # a field constant along z gives an exactly zero derivative


def test_exact_for_quadratics_on_nonuniform_spacing():
    # a = x², b = z² → t = ∂a/∂x ∂b/∂z = 4 x z at the interior centres (closed form). The
    # three-point weights are exact for quadratics, so agreement is at round-off (rtol 1e-10).
    grid = _nonuniform_grid()
    x, z = _mesh(grid)
    t = cross_gradient(x**2, z**2, grid)
    np.testing.assert_allclose(t, (4 * x * z)[1:-1, 1:-1], rtol=1e-10)
    # Flat (C-order) input is the same field.
    np.testing.assert_array_equal(cross_gradient((x**2).ravel(), (z**2).ravel(), grid), t)


def test_negative_control_naive_centred_difference_is_caught():
    # (f_{i+1} − f_{i−1}) / (x_{i+1} − x_{i−1}) is only first-order on a non-uniform grid: the
    # quadratic-exactness check above would reject it (error far above its 1e-10 tolerance).
    grid = _nonuniform_grid()
    xc = grid.centers["x"]
    f = xc**2
    naive = (f[2:] - f[:-2]) / (xc[2:] - xc[:-2])
    error = np.max(np.abs(naive / (2 * xc[1:-1]) - 1.0))
    assert error > 1e-4


def test_three_d_vector_against_numpy_cross():
    # Linear fields a = p·r, b = q·r have constant gradients p, q, so t = p × q (numpy.cross,
    # independent) in every interior cell; non-uniform axes, rtol 1e-10.
    rng = np.random.default_rng(SEED)
    grid = bj.Grid(
        x=np.cumsum(rng.uniform(1, 3, 5)), y=np.cumsum(rng.uniform(1, 3, 4)), z=np.arange(3.0)
    )
    x, y, z = _mesh(grid)
    p, q = rng.standard_normal(3), rng.standard_normal(3)
    t = cross_gradient(p[0] * x + p[1] * y + p[2] * z, q[0] * x + q[1] * y + q[2] * z, grid)
    assert t.shape == (3, 2, 1, 3)
    np.testing.assert_allclose(t, np.broadcast_to(np.cross(p, q), t.shape), rtol=1e-10)
    # Unit vectors: x × y = z, y × z = x (right-handed frame of the grid's axes).
    np.testing.assert_allclose(cross_gradient(x, y, grid)[0, 0, 0], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(cross_gradient(y, z, grid)[0, 0, 0], [1, 0, 0], atol=1e-12)


def test_axis_order_sets_the_sign():
    grid_xz = bj.Grid(x=np.arange(4.0), z=np.arange(3.0))
    grid_zx = bj.Grid(z=np.arange(3.0), x=np.arange(4.0))
    x, z = _mesh(grid_xz)
    assert np.all(cross_gradient(x, z, grid_xz) == 1.0)
    assert np.all(cross_gradient(x.T, z.T, grid_zx) == -1.0)


def test_normalized_cross_gradient_is_unit_free():
    # t̃ is invariant under a → c a + d (exact algebra; round-off rtol 1e-12).
    grid = _nonuniform_grid()
    rng = np.random.default_rng(SEED)
    a, b = rng.standard_normal(grid.shape), rng.standard_normal(grid.shape)
    base = normalized_cross_gradient(a, b, grid)
    np.testing.assert_allclose(
        normalized_cross_gradient(1e4 * a + 7.0, -3e-5 * b, grid), -base, rtol=1e-12
    )
    # ... while the raw cross-gradient carries the units (negative control).
    assert not np.allclose(cross_gradient(1e4 * a, b, grid), cross_gradient(a, b, grid))
    # An exactly constant field gives 0, not NaN.
    assert np.all(normalized_cross_gradient(np.full(grid.shape, 3.0), b, grid) == 0.0)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((np.zeros((9, 7)), np.zeros((9, 6))), ValueError, "b has shape"),
        ((np.full((9, 7), np.nan), np.zeros((9, 7))), ValueError, "NaN"),
    ],
)
def test_function_rejects_bad_arrays(args, error, match):
    with pytest.raises(error, match=match):
        cross_gradient(*args, _nonuniform_grid())


def test_function_rejects_bad_grids():
    with pytest.raises(ValueError, match="2-D or 3-D grid"):
        cross_gradient(np.zeros(5), np.zeros(5), bj.Grid(x=np.arange(5.0)))
    with pytest.raises(ValueError, match="at least 3 cells"):
        cross_gradient(np.zeros((5, 2)), np.zeros((5, 2)), bj.Grid(x=np.arange(5.0), z=[0.0, 1.0]))
    with pytest.raises(TypeError, match=r"bj\.Grid"):
        cross_gradient(np.zeros((3, 3)), np.zeros((3, 3)), "grid")


# -- the coupling -----------------------------------------------------------------------------
def _variables(grid=None, prior_a=None):
    grid = grid or bj.Grid(x=np.arange(6.0) * 10.0, z=-np.arange(5.0)[::-1] * 10.0)
    prior = bj.priors.GaussianField(1.0, 20.0)
    return {
        "a": bj.Field("a", grid, prior_a or prior),
        "b": bj.Field("b", grid, prior),
    }


def test_prior_gradient_scale_against_monte_carlo_and_closed_form():
    # White noise N(0, σ²) on a unit grid: each central difference has variance 2σ²/4, two axes
    # → s = σ exactly (closed form, round-off).
    grid = bj.Grid(x=np.arange(9.0), z=np.arange(7.0))
    assert abs(prior_gradient_scale(bj.Field("w", grid, bj.priors.Normal(0.0, 3.0))) - 3.0) < 1e-12
    # Smooth field on a non-uniform grid: the separable formula against the mean squared
    # gradient of 4000 prior draws (independent route). The estimate of s² has a relative
    # Monte-Carlo sd below 1 % here, so 4 % is four of them.
    grid = _nonuniform_grid()
    field = bj.Field("f", grid, bj.priors.GaussianField(2.0, 30.0, mean=0.5))
    mean, factor = field.prior.gaussian(grid.shape, grid)
    rng = np.random.default_rng(SEED)
    draws = (mean[:, None] + factor @ rng.standard_normal((grid.size, 4000))).T
    x, z = _mesh(grid)
    powers = []
    for d in draws:
        # gradient magnitude² via the cross-gradient with the coordinate fields:
        # (∇a × ∇z)² + (∇x × ∇a)² = (∂a/∂x)² + (∂a/∂z)²
        f = d.reshape(grid.shape)
        powers.append(np.mean(cross_gradient(f, z, grid) ** 2 + cross_gradient(x, f, grid) ** 2))
    np.testing.assert_allclose(prior_gradient_scale(field) ** 2, np.mean(powers), rtol=0.04)


def test_effective_terms_against_a_brute_force_covariance():
    # K_eff = tr(C)² / tr(C²) of the cross-gradient's prior covariance: the library's 200-draw
    # unbiased estimate against C estimated from 20 000 draws on a 5 × 5 grid (K = 9 terms).
    # Monte-Carlo error of the library's estimate is a few per cent: 15 % tolerance.
    grid = bj.Grid(x=np.arange(5.0), z=np.arange(5.0))
    fields = [bj.Field(n, grid, bj.priors.GaussianField(1.0, 1.5)) for n in ("a", "b")]
    _, factor = fields[0].prior.gaussian(grid.shape, grid)
    rng = np.random.default_rng(SEED)
    n = 20_000
    da = (factor @ rng.standard_normal((grid.size, n))).T.reshape(n, *grid.shape)
    db = (factor @ rng.standard_normal((grid.size, n))).T.reshape(n, *grid.shape)
    t = np.stack([cross_gradient(x, y, grid).ravel() for x, y in zip(da, db, strict=True)])
    cov = t.T @ t / n
    brute = np.trace(cov) ** 2 / np.trace(cov @ cov)
    estimate = effective_terms(*fields)
    assert 1.0 < brute < 9.0
    np.testing.assert_allclose(estimate, brute, rtol=0.15)


def test_log_density_matches_the_formula():
    # K_eff (log λ − ½ log 2π) − λ²/2 (K_eff/K) Σ (t / (s_a s_b))², with t from the numpy function
    # (independent of the pytensor graph) and s from the priors; round-off agreement.
    variables = _variables()
    grid = variables["a"].grid
    rng = np.random.default_rng(SEED)
    a, b = rng.standard_normal(grid.shape), rng.standard_normal(grid.shape)
    k_eff = effective_terms(variables["a"], variables["b"])
    for scale, s_ab in (
        (None, prior_gradient_scale(variables["a"]) ** 2),
        ({"a": 2.0, "b": 0.5}, 1.0),
    ):
        coupling = CrossGradient("a", "b", strength=2.5, scale=scale)
        value = coupling.log_density({"a": pt.constant(a), "b": pt.constant(b)}, variables).eval()
        t = cross_gradient(a, b, grid) / s_ab
        expected = k_eff * (np.log(2.5) - 0.5 * np.log(2 * np.pi)) - 0.5 * 2.5**2 * (
            k_eff / t.size
        ) * np.sum(t**2)
        np.testing.assert_allclose(value, expected, rtol=1e-12)


def test_taylor_gradient_of_the_coupling():
    # Seeded Taylor test of the pytensor gradient (fields and log-strength): slope 2 ± 0.2.
    variables = _variables()
    coupling = CrossGradient("a", "b", strength=bj.priors.HalfNormal(3.0))
    rng = np.random.default_rng(SEED)
    shape = variables["a"].shape
    x0 = np.append(rng.standard_normal(2 * np.prod(shape)), np.log(1.5))

    def density(x):
        fields = x[:-1].reshape((2, *shape))
        return coupling.log_density(
            {"a": fields[0], "b": fields[1]}, variables, strength=pt.exp(x[-1])
        )

    result = taylor_test(density, x0, random_seed=3, steps=0.05 * 2.0 ** -np.arange(0, 8))
    assert abs(result.slope - 2.0) < 0.2, result

    # Negative control: dropping the gradient with respect to b (same values) leaves an O(h)
    # remainder that the criterion rejects.
    def broken(x):
        fields = x[:-1].reshape((2, *shape))
        latent = {"a": fields[0], "b": disconnected_grad(fields[1])}
        return coupling.log_density(latent, variables, strength=pt.exp(x[-1]))

    wrong = taylor_test(broken, x0, random_seed=3, steps=0.05 * 2.0 ** -np.arange(0, 8))
    assert abs(wrong.slope - 2.0) > 0.5, wrong


def test_model_records_the_structure_and_learns_the_strength():
    variables = _variables()
    grid = variables["a"].grid
    rng = np.random.default_rng(SEED)
    mods = [
        bj.Modality(
            f"sees_{name}",
            bj.physics.Linear(rng.standard_normal((4, grid.size)), name),
            np.zeros(4),
            bj.noise.Gaussian(1.0),
        )
        for name in ("a", "b")
    ]
    coupling = CrossGradient("a", "b", strength=bj.priors.HalfNormal(2.0), name="xg")
    problem = bj.JointInversion(list(variables.values()), mods, couplings=[coupling])
    model = problem.model
    assert {"xg", "xg_strength", "xg_rms"} <= set(model.named_vars)
    # The exact path refuses the (non-Gaussian) coupling and says which one.
    with pytest.raises(ValueError, match="coupling 'xg'"):
        problem.exact_posterior()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"a": "a", "b": "a"}, ValueError, "two different fields"),
        ({"a": 1, "b": "b"}, TypeError, "name of a bj.Field"),
        ({"strength": 0.0}, ValueError, "strength must be positive"),
        ({"strength": "strong"}, TypeError, "positive number"),
        ({"strength": bj.priors.Normal(0.0, 1.0)}, ValueError, "positive prior"),
        ({"scale": {"c": 1.0}}, ValueError, "not one of the coupled fields"),
        ({"scale": {"a": -1.0}}, ValueError, "scale"),
    ],
)
def test_constructor_rejects_bad_input(kwargs, error, match):
    args = {"a": "a", "b": "b", **kwargs}
    with pytest.raises(error, match=match):
        CrossGradient(**args)


def test_validation_names_the_problem():
    variables = _variables()
    other = bj.Grid(x=np.arange(6.0) * 10.0 + 1.0, z=-np.arange(5.0)[::-1] * 10.0)
    bad = {
        "unknown": ({**variables}, CrossGradient("a", "c"), "unknown latent variable"),
        "grids": (
            {**variables, "c": bj.Field("c", other, bj.priors.Normal(0.0, 1.0))},
            CrossGradient("a", "c"),
            "different grids",
        ),
        "parameter": (
            {**variables, "c": bj.Parameter("c", 30, bj.priors.Normal(0.0, 1.0))},
            CrossGradient("a", "c"),
            "not a field",
        ),
        "thin": (
            {
                "p": bj.Field("p", bj.Grid(x=np.arange(5.0), z=[0.0, 1.0]), bj.priors.Normal()),
                "q": bj.Field("q", bj.Grid(x=np.arange(5.0), z=[0.0, 1.0]), bj.priors.Normal()),
            },
            CrossGradient("p", "q"),
            "at least 3 cells",
        ),
    }
    bad["prior"] = (
        {**variables, "c": bj.Field("c", variables["a"].grid, bj.priors.LogNormal(0.0, 1.0))},
        CrossGradient("a", "c"),
        "give CrossGradient",
    )
    for variables_, coupling, match in bad.values():
        with pytest.raises(ValueError, match=match):
            coupling.validate(variables_)
    # With an explicit scale the non-Gaussian prior is accepted.
    CrossGradient("a", "c", scale={"c": 1.0}).validate(bad["prior"][0])


# -- unit invariance --------------------------------------------------------------------------
def _unit_problem(factor, coupling_cls=CrossGradient, strength=2.0):
    """Two fields on a 6×5 grid, each seen by a small linear survey; a's units times factor."""
    rng = np.random.default_rng(SEED)
    grid = bj.Grid(x=np.arange(6.0) * 10.0, z=-np.arange(5.0)[::-1] * 10.0)
    x, z = _mesh(grid)
    truth_a = np.where((x > 15) & (x < 40) & (z > -30), 1.0, 0.0)
    truth_b = np.where((x > 15) & (x < 40) & (z > -30), -2.0, 0.0) + 0.3 * z / 40
    ga, gb = rng.standard_normal((8, grid.size)), rng.standard_normal((8, grid.size))
    data_a = ga @ truth_a.ravel() + 0.3 * rng.standard_normal(8)
    data_b = gb @ truth_b.ravel() + 0.3 * rng.standard_normal(8)
    a = bj.Field("a", grid, bj.priors.GaussianField(factor * 1.0, 15.0, mean=factor * 0.2))
    b = bj.Field("b", grid, bj.priors.GaussianField(1.0, 15.0))
    mods = [
        # a in new units: prior, data and noise scale by factor; the sensitivity maps new units
        # of a to new data units, so it is unchanged.
        bj.Modality(
            "sees_a", bj.physics.Linear(ga, "a"), factor * data_a, bj.noise.Gaussian(factor * 0.3)
        ),
        bj.Modality("sees_b", bj.physics.Linear(gb, "b"), data_b, bj.noise.Gaussian(0.3)),
    ]
    coupling = coupling_cls("a", "b", strength=strength, name="xg")
    return bj.JointInversion([a, b], mods, couplings=[coupling])


class _RawCrossGradient(CrossGradient):
    """The unnormalized cross-gradient penalty (what scale-free normalization avoids)."""

    def log_density(self, latent, variables, strength=None):
        t = cross_gradient(latent["a"], latent["b"], variables["a"].grid)
        return -0.5 * (self.strength * 100.0) ** 2 * pt.sum(t**2)


def _log_density_at(problem, points):
    logp = problem.model.compile_logp()
    return np.array([logp(p) for p in points])


def test_unit_change_leaves_the_log_density_unchanged_up_to_a_constant():
    # In the whitened coordinates that NUTS samples, the two unit systems must define the same
    # posterior: log densities equal up to an additive constant (round-off: atol 1e-8).
    rng = np.random.default_rng(SEED)
    shape = (6, 5)
    points = [
        {"a_white": rng.standard_normal(shape), "b_white": rng.standard_normal(shape)}
        for _ in range(4)
    ]
    same = _log_density_at(_unit_problem(1.0), points) - _log_density_at(_unit_problem(1e4), points)
    np.testing.assert_allclose(same - same[0], 0.0, atol=1e-8)
    # Negative control: the raw cross-gradient changes the posterior when the units change.
    raw = _log_density_at(_unit_problem(1.0, _RawCrossGradient), points) - _log_density_at(
        _unit_problem(1e4, _RawCrossGradient), points
    )
    assert np.max(np.abs(raw - raw[0])) > 1.0


@pytest.mark.slow
def test_unit_change_leaves_the_posterior_structure_unchanged_within_mcse():
    # Sample both unit systems (different seeds, so the chains are independent) and compare the
    # posterior means of the unit-free quantities — a / factor and the rms normalized
    # cross-gradient — within 4 combined Monte-Carlo standard errors.
    results = []
    for factor, seed in ((1.0, 1), (1e4, 2)):
        idata = _unit_problem(factor).sample(
            draws=250, tune=250, chains=2, cores=1, random_seed=seed, progressbar=False
        )
        post = idata.posterior
        unit_free = post[["xg_rms"]].assign(a_scaled=post["a"] / factor)
        results.append((unit_free.mean(("chain", "draw")), az.mcse(unit_free, method="mean")))
    (m1, e1), (m2, e2) = results
    for name in ("xg_rms", "a_scaled"):
        z = (m1[name] - m2[name]) / np.sqrt(e1[name] ** 2 + e2[name] ** 2)
        assert float(np.max(np.abs(z))) < 4.0, name
