"""Noise models answer for themselves, and nothing the package does is written onto them."""

from __future__ import annotations

import copy

import arviz as az
import numpy as np
import pymc as pm
import pytest

import bayesjoint as bj
from bayesjoint.linear import linearized_budget, noise_factor
from bayesjoint.noise import Noise


class PerDatumSd(Noise):
    """Gaussian noise with one fixed sd per datum, written only against the documented methods.

    It lives in this test file: the package never names it, so the exact path and the
    linearization can only work with it by asking it.
    """

    is_gaussian = True

    def __init__(self, sd):
        self.sd = np.asarray(sd, dtype=float)

    def validate(self, modality, data_shape):
        if self.sd.shape != data_shape:
            raise ValueError(f"modality {modality!r}: give one sd per datum {data_shape}")

    def build(self, modality, mu, data, dims):
        return pm.Normal(modality, mu=mu, sigma=self.sd, observed=data, dims=dims)

    def factored(self, modality, n):
        return 1.0, self.sd.ravel()

    def __repr__(self):
        return f"PerDatumSd(<{self.sd.size}>)"


class Laplace(Noise):
    """Laplace noise of fixed scale b: not Gaussian; linearized by its Fisher information."""

    def __init__(self, b):
        self.b = float(b)

    def build(self, modality, mu, data, dims):
        return pm.Laplace(modality, mu=mu, b=self.b, observed=data, dims=dims)

    def linearized_factor(self, modality, data_shape, posterior_mean):
        # Fisher information of a Laplace location is 1/b², so the Gaussian of equal
        # information has sd b.
        return np.full(int(np.prod(data_shape)), self.b)

    def __repr__(self):
        return f"Laplace(b={self.b:g})"


def _linear_problem(noise, n=5, seed=0):
    rng = np.random.default_rng(seed)
    x = bj.Parameter("x", shape=3, prior=bj.priors.Normal(0.0, 1.0))
    op = rng.standard_normal((n, 3))
    mod = bj.Modality("m", bj.physics.Linear(op, input="x"), rng.standard_normal(n), noise)
    return bj.JointInversion([x], [mod])


# -- a new noise model in one class -----------------------------------------------------------
def test_a_noise_model_defined_here_works_in_the_exact_path_and_the_linearization():
    # The same per-datum sds through bj.noise.Gaussian and through the class above: both routes
    # are the same algebra, so they agree to round-off.
    sd = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    mine, ref = _linear_problem(PerDatumSd(sd)), _linear_problem(bj.noise.Gaussian(sd))
    post, expect = mine.exact_posterior(), ref.exact_posterior()
    np.testing.assert_allclose(post["mean"], expect["mean"], rtol=1e-12)
    np.testing.assert_allclose(post["cov"], expect["cov"], rtol=1e-12)
    lin = linearized_budget(mine, point=np.zeros(3))
    np.testing.assert_allclose(
        lin["precision"].values, ref.information_budget()["precision"].values, rtol=1e-12
    )
    # its model is the reference model: equal log densities at a point
    point = {"x": np.array([0.3, -0.1, 0.7])}
    assert mine.model.compile_logp()(point) == pytest.approx(ref.model.compile_logp()(point))


def test_a_noise_model_defined_here_joins_a_discrepancy_block():
    # A discrepancy block asks the noise whether it is Gaussian and for its covariance
    # (factored() and the default covariance_tensor()); same algebra as bj.noise.Gaussian, so
    # exact posteriors and model densities agree to round-off.
    sd = np.linspace(0.1, 0.3, 6)
    op = np.repeat(np.eye(3), 2, axis=0)
    data, where = np.linspace(-0.5, 0.5, 6), np.linspace(0.0, 1.0, 6)

    def problem(noise):
        x = bj.Parameter("x", shape=3, prior=bj.priors.Normal(0.0, 1.0))
        gp = bj.discrepancy.GP(lengthscale=0.3, amplitude=0.5)
        mod = bj.Modality(
            "m", bj.physics.Linear(op, "x"), data, noise, discrepancy=gp.term(coords=where)
        )
        return bj.JointInversion([x], [mod])

    mine, ref = problem(PerDatumSd(sd)), problem(bj.noise.Gaussian(sd))
    np.testing.assert_allclose(
        mine.exact_posterior()["cov"], ref.exact_posterior()["cov"], rtol=1e-12
    )
    point = {"x": np.array([0.2, -0.4, 0.1])}
    assert mine.model.compile_logp()(point) == pytest.approx(ref.model.compile_logp()(point))


def test_a_non_gaussian_noise_model_is_refused_by_the_exact_path_and_linearized_by_itself():
    problem = _linear_problem(Laplace(0.4))
    with pytest.raises(ValueError, match=r"modality 'm': noise Laplace\(b=0.4\) is not Gaussian"):
        problem.exact_posterior()
    budget = linearized_budget(problem, point=np.zeros(3))
    ref = _linear_problem(bj.noise.Gaussian(0.4)).information_budget()
    np.testing.assert_allclose(budget["precision"].values, ref["precision"].values, rtol=1e-12)
    # Without linearized_factor() a non-Gaussian noise says what to implement.
    plain = type("Plain", (Noise,), {"build": Laplace.build, "__init__": Laplace.__init__})(0.4)
    with pytest.raises(ValueError, match=r"modality 'm'.*implement linearized_factor\(\)"):
        linearized_budget(_linear_problem(plain), point=np.zeros(3))


def test_the_noise_classes_answer_for_themselves():
    fixed, cov = bj.noise.Gaussian(0.5), bj.noise.Gaussian(cov=[[4.0, 1.0], [1.0, 2.0]])
    learned = bj.noise.Gaussian(bj.priors.HalfNormal(1.0))
    scaled = bj.noise.Gaussian(0.5, scale=bj.priors.LogNormal(0.0, 0.3))
    student = bj.noise.StudentT(0.7, nu=3.0)
    assert [n.is_gaussian for n in (fixed, cov, learned, student)] == [True, True, True, False]
    assert [n.learned for n in (fixed, cov, learned, scaled, student)] == [
        False,
        False,
        True,
        True,
        False,
    ]
    assert bj.noise.StudentT(bj.priors.HalfNormal(1.0)).learned
    np.testing.assert_array_equal(fixed.gaussian_factor("a", (3,)), [0.5, 0.5, 0.5])
    chol = cov.gaussian_factor("a", (2,))
    np.testing.assert_allclose(chol @ chol.T, cov.cov, rtol=1e-14)
    with pytest.raises(ValueError, match=r"modality 'a': noise Gaussian.*is learned"):
        learned.gaussian_factor("a", (3,))
    with pytest.raises(ValueError, match=r"modality 'a': noise StudentT.*is not Gaussian"):
        student.gaussian_factor("a", (3,))
    # learned parts enter the linearization at their posterior means (given by the caller)
    means = {"a_sigma": 0.3, "a_noise_scale": 2.0}
    np.testing.assert_allclose(learned.linearized_factor("a", (2,), lambda n, w: means[n]), 0.3)
    np.testing.assert_allclose(scaled.linearized_factor("a", (2,), lambda n, w: means[n]), 1.0)
    # Student-t: sd of equal Fisher information s √((ν+3)/(ν+1)) = 0.7 √(6/4)
    np.testing.assert_allclose(student.linearized_factor("a", (1,), None), 0.7 * np.sqrt(1.5))


def test_a_factor_follows_the_covariance_when_it_is_changed_in_place():
    # Factorizations are cached by the matrix's content, never on the object: changing the
    # covariance in place gives the new factor (a stale cache would give the old one).
    noise = bj.noise.Gaussian(cov=np.diag([1.0, 4.0]))
    first = noise.gaussian_factor("a", (2,))
    np.testing.assert_allclose(np.diag(first), [1.0, 2.0])
    assert not first.flags.writeable  # callers cannot corrupt the cached factor
    noise.cov[1, 1] = 9.0
    np.testing.assert_allclose(np.diag(noise.gaussian_factor("a", (2,))), [1.0, 3.0])


# -- nothing is written onto user noise objects -----------------------------------------------
def _snapshot(objects):
    return [(obj, dict(vars(obj)), copy.deepcopy(vars(obj))) for obj in objects]


def _assert_unchanged(snapshot):
    for obj, before, values in snapshot:
        now = vars(obj)
        changed = set(now) ^ set(before)
        assert not changed, f"{obj!r} gained or lost attributes: {changed}"
        for key, value in before.items():
            assert now[key] is value, f"{obj!r}.{key} was replaced"
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(now[key], values[key])


def test_the_unchanged_check_catches_a_written_attribute():
    # Negative control for the check below: a factorization stored on the object is caught.
    noise = bj.noise.Gaussian(cov=np.eye(2))
    snap = _snapshot([noise])
    noise._chol = np.eye(2)
    with pytest.raises(AssertionError, match="gained or lost attributes"):
        _assert_unchanged(snap)


def test_building_sampling_and_the_linear_paths_leave_noise_objects_unchanged():
    rng = np.random.default_rng(4)
    shared_cov = bj.noise.Gaussian(cov=np.diag([0.04, 0.09, 0.01]) + 0.005)  # two modalities
    known = [shared_cov, bj.noise.Gaussian(np.array([0.1, 0.2, 0.3])), bj.noise.Gaussian(0.2)]
    x = bj.Parameter("x", shape=3, prior=bj.priors.Normal(0.0, 1.0))
    mods = [
        bj.Modality(
            f"k{i}", bj.physics.Linear(rng.standard_normal((3, 3)), "x"), rng.normal(size=3), n
        )
        for i, n in enumerate([known[0], *known])
    ]
    other = [
        bj.noise.Gaussian(bj.priors.HalfNormal(0.5)),
        bj.noise.Gaussian(0.2, scale=bj.priors.LogNormal(0.0, 0.3)),
        bj.noise.StudentT(0.2, nu=4.0),
        bj.noise.StudentT(bj.priors.HalfNormal(0.5), nu=5.0),
    ]
    mods += [
        bj.Modality(f"u{i}", lambda m: pm.math.exp(0.3 * m["x"]), rng.normal(1.0, 0.1, 3), n)
        for i, n in enumerate(other)
    ]
    snap = _snapshot(known + other)
    linear = bj.JointInversion([x], mods[:4])
    linear.exact_posterior()
    linear.information_budget()
    bj.diagnostics.modality_conflict(problem=linear)
    linearized_budget(linear, point=np.zeros(3))
    problem = bj.JointInversion([x], mods)
    problem.model  # noqa: B018 - builds the model
    idata = problem.sample(draws=60, tune=60, chains=1, cores=1, random_seed=3, progressbar=False)
    assert isinstance(idata, az.InferenceData)
    budget = linearized_budget(problem, idata)
    assert np.all(np.isfinite(budget["precision"].values))
    for mod in mods:
        noise_factor(mod, idata)
    _assert_unchanged(snap)
