"""Bad input: a clear ValueError/TypeError naming the modality or field, before any compilation."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import bayesjoint as bj


def _x(n=3):
    return bj.Parameter("x", shape=n, prior=bj.priors.Normal(0.0, 1.0))


def _mod(name="grav", data=None, noise=None, matrix=None, input="x"):
    return bj.Modality(
        name,
        physics=bj.physics.Linear(np.eye(3) if matrix is None else matrix, input=input),
        data=np.zeros(3) if data is None else data,
        noise=noise or bj.noise.Gaussian(0.1),
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_data(bad):
    with pytest.raises(
        ValueError, match=r"modality 'grav': data contain 1 NaN or inf .*index \(1,\)"
    ):
        _mod(data=np.array([0.0, bad, 1.0]))


def test_nan_in_dataarray_data():
    da = xr.DataArray([1.0, np.nan], dims="station")
    with pytest.raises(ValueError, match="modality 'grav'"):
        bj.Modality("grav", bj.physics.Linear(np.eye(2), "x"), da, bj.noise.Gaussian(1.0))


def test_data_length_differs_from_forward_output():
    with pytest.raises(ValueError, match=r"modality 'grav'.*predict shape \(3,\).*shape \(4,\)"):
        bj.JointInversion([_x()], [_mod(data=np.zeros(4), noise=bj.noise.Gaussian(0.1))])


def test_data_length_mismatch_for_a_plain_callable_is_caught_at_model_build():
    mod = bj.Modality(
        "wave", physics=lambda m: m["x"] * 2.0, data=np.zeros(5), noise=bj.noise.Gaussian(0.1)
    )
    problem = bj.JointInversion([_x()], [mod])
    with pytest.raises(ValueError, match=r"modality 'wave'.*predict shape \(3,\).*shape \(5,\)"):
        problem.model  # noqa: B018 - building the model is the action under test


@pytest.mark.parametrize("sd", [0.0, -1.0, np.nan, np.inf, [0.1, 0.0, 0.2]])
def test_non_positive_or_non_finite_sd(sd):
    with pytest.raises(ValueError, match="modality 'grav': noise sd must be positive and finite"):
        _mod(noise=bj.noise.Gaussian(sd))


def test_sd_shape_mismatch():
    with pytest.raises(ValueError, match=r"modality 'grav': noise sd of shape \(2,\)"):
        _mod(noise=bj.noise.Gaussian([0.1, 0.2]))


def test_covariance_not_symmetric():
    cov = np.eye(3)
    cov[0, 1] = 0.5
    with pytest.raises(ValueError, match="modality 'grav': noise covariance is not symmetric"):
        _mod(noise=bj.noise.Gaussian(cov=cov))


def test_covariance_not_positive_definite():
    cov = np.array([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(
        ValueError, match="modality 'grav': noise covariance is not positive definite"
    ):
        _mod(noise=bj.noise.Gaussian(cov=cov))


def test_covariance_wrong_shape():
    with pytest.raises(ValueError, match=r"modality 'grav': noise covariance has shape \(2, 2\)"):
        _mod(noise=bj.noise.Gaussian(cov=np.eye(2)))


def test_duplicate_modality_names():
    with pytest.raises(ValueError, match="duplicate modality name 'grav'"):
        bj.JointInversion([_x()], [_mod(), _mod()])


def test_physics_asks_for_unknown_latent():
    with pytest.raises(
        ValueError, match=r"modality 'grav': physics reads unknown latent.*\['rho'\]"
    ):
        bj.JointInversion([_x()], [_mod(input="rho")])


def test_plain_callable_asks_for_unknown_latent():
    mod = bj.Modality(
        "wave", physics=lambda m: m["velocity"], data=np.zeros(3), noise=bj.noise.Gaussian(0.1)
    )
    problem = bj.JointInversion([_x()], [mod])
    with pytest.raises(
        ValueError, match="modality 'wave': physics asks for latent variable 'velocity'"
    ):
        problem.model  # noqa: B018


def test_no_modalities():
    with pytest.raises(ValueError, match="needs at least one modality"):
        bj.JointInversion([_x()], [])


def test_matrix_columns_do_not_match_latent_size():
    with pytest.raises(ValueError, match="3 columns but its input \\['x'\\] has 4 values"):
        bj.JointInversion([_x(4)], [_mod()])


def test_name_used_for_variable_and_dimension():
    grid = bj.Grid(x=np.arange(3.0))
    rho = bj.Field("rho", grid, prior=bj.priors.Normal(0.0, 1.0))
    x = bj.Parameter("x", prior=bj.priors.Normal(0.0, 1.0))
    with pytest.raises(ValueError, match="'x' names both a variable and a dimension"):
        bj.JointInversion([rho, x], [_mod(input="rho")])


def test_type_errors_name_the_part():
    with pytest.raises(TypeError, match="modality 'grav': noise must be a bayesjoint noise model"):
        bj.Modality("grav", bj.physics.Linear(np.eye(3), "x"), np.zeros(3), noise=0.1)
    with pytest.raises(TypeError, match="modality 'grav': physics must be"):
        bj.Modality("grav", physics=3, data=np.zeros(3), noise=bj.noise.Gaussian(1.0))
    with pytest.raises(TypeError, match="Field 'rho': give a prior"):
        bj.Field("rho", bj.Grid(x=np.arange(3.0)))
    with pytest.raises(ValueError, match="Field name 'my field'"):
        bj.Field("my field", bj.Grid(x=np.arange(3.0)), prior=bj.priors.Normal())


def test_gaussian_field_needs_a_grid():
    with pytest.raises(ValueError, match="Parameter 'w': GaussianField needs a grid"):
        bj.Parameter("w", shape=4, prior=bj.priors.GaussianField(1.0, 2.0))


def test_conflicting_coordinates():
    g1, g2 = bj.Grid(x=np.arange(3.0)), bj.Grid(x=np.arange(3.0) + 1.0)
    a = bj.Field("a", g1, prior=bj.priors.Normal())
    b = bj.Field("b", g2, prior=bj.priors.Normal())
    with pytest.raises(ValueError, match="latent 'b' and latent 'a' both use dimension 'x'"):
        bj.JointInversion([a, b], [_mod(input="a")])


def test_valid_input_passes():
    # Control: the same constructors accept good input (so the checks above are specific).
    problem = bj.JointInversion([_x()], [_mod()])
    assert list(problem.modalities) == ["grav"]


# -- issue 12: every bad input refused before compiling or sampling ------------------------------
@pytest.mark.parametrize("units", [np.float32(1), b"mGal", 1, ["m"]])
def test_units_must_be_a_string(units):
    with pytest.raises(TypeError, match=r"Parameter 'x'.*units"):
        bj.Parameter("x", prior=bj.priors.Normal(), units=units)
    with pytest.raises(TypeError, match=r"(?i)modality 'grav'.*units"):
        bj.Modality(
            "grav", bj.physics.Linear(np.eye(3), "x"), np.zeros(3), bj.noise.Gaussian(1.0),
            units=units,
        )  # fmt: skip


def test_duplicate_dims_are_refused():
    with pytest.raises(ValueError, match=r"Parameter 'v': dims repeat 'd'"):
        bj.Parameter("v", shape=(2, 2), prior=bj.priors.Normal(), dims=("d", "d"))
    with pytest.raises(ValueError, match=r"modality 'grav': dims repeat 'd'"):
        bj.Modality(
            "grav", bj.physics.Linear(np.eye(4), "x"), np.zeros((2, 2)),
            bj.noise.Gaussian(1.0), dims=("d", "d"),
        )  # fmt: skip


@pytest.mark.parametrize("dim", ["x/m", "", " x"])
def test_dimension_names_netcdf_cannot_hold(dim):
    with pytest.raises(ValueError, match="cannot be saved in netCDF"):
        bj.Parameter("v", shape=2, prior=bj.priors.Normal(), dims=(dim,))
    with pytest.raises(ValueError, match="Grid axis names: dimension name"):
        bj.Grid(**{dim: np.arange(3.0)})
    with pytest.raises(ValueError, match="modality 'grav': data dims"):
        _mod(data=xr.DataArray(np.zeros(3), dims=(dim,)))


@pytest.mark.parametrize(
    ("shape", "kind"), [(5.7, TypeError), ("3", TypeError), (0, ValueError), ((2, 0), ValueError)]
)
def test_shape_must_be_whole_and_positive(shape, kind):
    with pytest.raises(kind, match="Parameter 'x': shape"):
        bj.Parameter("x", shape=shape, prior=bj.priors.Normal())


def test_whole_valued_float_shape_is_accepted():
    # Control: 3.0 is a whole number (5.7 above is not silently made 5).
    assert bj.Parameter("x", shape=3.0, prior=bj.priors.Normal()).shape == (3,)


def test_impossible_shape_is_refused_with_the_memory_figure():
    with pytest.raises(ValueError, match=r"Parameter 'x' of shape \(10000000000,\).*GiB of memory"):
        bj.Parameter("x", shape=10**10, prior=bj.priors.Normal())


@pytest.mark.parametrize("prior", [bj.priors.HalfNormal, bj.priors.LogNormal, bj.priors.Normal])
def test_prior_that_does_not_broadcast_is_refused_at_construction(prior):
    with pytest.raises(ValueError, match=r"Parameter 'x': \w+ sigma of shape \(2,\) does not"):
        bj.Parameter("x", shape=3, prior=prior(sigma=np.ones(2)))
    grid = bj.Grid(x=np.arange(3.0))
    with pytest.raises(ValueError, match=r"Field 'rho': Uniform lower of shape \(2,\)"):
        bj.Field("rho", grid, prior=bj.priors.Uniform(np.zeros(2), 1.0))


def test_masked_data_are_refused():
    data = np.ma.masked_array([0.0, 1.0, 2.0], mask=[0, 1, 0])
    with pytest.raises(TypeError, match=r"bj\.Modality 'grav': argument data is a masked array"):
        _mod(data=data)


def test_complex_operators_and_data_are_refused():
    with pytest.raises(TypeError, match=r"bj\.physics\.Linear: argument matrix has complex values"):
        bj.physics.Linear(np.eye(3) * (1 + 1j), input="x")
    with pytest.raises(TypeError, match="argument data has complex values"):
        _mod(data=np.zeros(3) + 1j)
    with pytest.raises(TypeError, match=r"bj\.observe\.Linear: argument matrix has complex"):
        bj.observe.Linear(np.eye(3) + 0j)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: bj.priors.Normal(0.0, "abc"), "Normal sigma must be a real number"),
        (lambda: bj.priors.Normal("abc", 1.0), "Normal mu must be a real number"),
        (lambda: bj.noise.Gaussian("abc"), "bj.noise.Gaussian sd must be a real number"),
        (lambda: bj.physics.Linear([["a"]], input="x"), "bj.physics.Linear: argument matrix"),
        (lambda: bj.Grid(x=["a", "b"]), "Grid axis 'x': centres must be real numbers"),
        (lambda: bj.priors.Normal(0.0, [[1.0], [1.0, 2.0]]), "Normal sigma must be a real"),
        (lambda: bj.noise.StudentT(1.0, nu="abc"), "bj.noise.StudentT: argument nu"),
        (lambda: bj.JointInversion(object(), []), "bj.JointInversion"),
    ],
)
def test_raw_numpy_messages_are_wrapped_with_the_object(make, match):
    with pytest.raises((TypeError, ValueError), match=match) as info:
        make()
    assert "could not convert" not in str(info.value).split(":")[0]


def test_bytes_and_booleans_are_not_numbers():
    with pytest.raises(TypeError, match="is bytes"):
        bj.priors.Normal(0.0, b"1")
    with pytest.raises(TypeError, match=r"bj\.noise\.StudentT: argument nu must be a number"):
        bj.noise.StudentT(1.0, nu=True)
    with pytest.raises(TypeError, match="Normal sigma must be real numbers, got booleans"):
        bj.priors.Normal(0.0, True)


def test_empty_data_are_refused():
    with pytest.raises(ValueError, match="modality 'grav': data are empty"):
        _mod(data=[])


@pytest.mark.parametrize("n_basis", [0, 2.5, "4"])
def test_discrepancy_basis_size_is_checked_at_construction(n_basis):
    with pytest.raises((TypeError, ValueError), match=r"bj.discrepancy.GP\(n_basis=...\)"):
        bj.discrepancy.GP(lengthscale=1.0, amplitude=1.0, n_basis=n_basis)


# -- sample() arguments, checked before anything is compiled ------------------------------------
@pytest.fixture(scope="module")
def small():
    return bj.JointInversion([_x()], [_mod()])


@pytest.mark.parametrize(
    ("kwargs", "kind", "match"),
    [
        ({"draw": 10}, TypeError, "unexpected keyword argument 'draw'; did you mean 'draws'"),
        ({"chain": 2}, TypeError, "did you mean 'chains'"),
        ({"target_accept": 1.5}, ValueError, r"target_accept=...\) must lie strictly between"),
        ({"target_accept": 0.0}, ValueError, "strictly between 0 and 1"),
        ({"random_seed": 1.7}, TypeError, r"random_seed=...\) must be an int, a numpy"),
        ({"random_seed": -1}, ValueError, "non-negative"),
        ({"chains": 0}, ValueError, r"chains=...\) must be at least 1, got 0"),
        ({"draws": 2.5}, TypeError, r"draws=...\) must be a whole number"),
        ({"tune": -1}, ValueError, r"tune=...\) must be at least 0"),
        ({"cores": 0}, ValueError, r"cores=...\) must be at least 1"),
        ({"method": "exactt"}, ValueError, "did you mean 'exact'"),
        ({"draws": 10**12}, ValueError, r"GiB of memory, more than this machine's"),
    ],
)
def test_sample_arguments_are_refused_before_compiling(small, kwargs, kind, match):
    with pytest.raises(kind, match=match):
        small.sample(progressbar=False, **kwargs)
    assert small._model is None  # nothing was built: the refusal came first


def test_valid_pymc_options_are_not_taken_for_typos(small):
    # Control: known pymc.sample / NUTS options pass the keyword check (the exact route then
    # refuses them itself, naming them, which shows they got past the check).
    with pytest.raises(ValueError, match=r"takes no pymc.sample options, got \['max_treedepth'\]"):
        small.sample(draws=5, chains=1, method="exact", max_treedepth=5, progressbar=False)


def test_seeds_accept_generator_and_seedsequence_like_pymc(small):
    runs = {}
    for label, seed in [
        ("generator", lambda: np.random.default_rng(5)),
        ("seedsequence", lambda: np.random.SeedSequence(5)),
        ("numpy int", lambda: np.int64(5)),
    ]:
        first = small.sample(draws=3, chains=1, random_seed=seed(), progressbar=False)
        again = small.sample(draws=3, chains=1, random_seed=seed(), progressbar=False)
        # the same Generator state / SeedSequence gives the same draws, and the integer used
        # is recorded in the provenance
        np.testing.assert_array_equal(first.posterior["x"].values, again.posterior["x"].values)
        assert int(first.posterior.attrs["random_seed"]) >= 0
        runs[label] = first.posterior["x"].values
    assert not np.array_equal(runs["generator"], runs["seedsequence"])


# -- exact_posterior at extreme scales ----------------------------------------------------------
def _one_datum_problem(noise_sd, prior_sd, a):
    x = bj.Parameter("x", shape=a.size, prior=bj.priors.Normal(0.0, prior_sd))
    mod = bj.Modality(
        "g", physics=bj.physics.Linear(a[None, :], input="x"), data=[1.0],
        noise=bj.noise.Gaussian(noise_sd),
    )  # fmt: skip
    return bj.JointInversion([x], [mod])


def _one_datum_closed_form(noise_sd, prior_sd, a, d=1.0):
    """Posterior of x ~ N(0, s² I), d = aᵀx + e, e ~ N(0, σ²), in the data-space form.

    mean = s² a d / (s² |a|² + σ²); var_i = s² − s⁴ a_i² / (s² |a|² + σ²) = s² (s² (|a|² − a_i²)
    + σ²) / (s² |a|² + σ²): no cancellation, exact to round-off whatever the scales.
    """
    s2, v2, a2 = prior_sd**2, noise_sd**2, float(a @ a)
    denom = s2 * a2 + v2
    mean = s2 * a * d / denom
    var = s2 * (s2 * (a2 - a**2) + v2) / denom
    return mean, np.sqrt(var)


@pytest.mark.parametrize(
    ("noise_sd", "prior_sd"), [(1e-12, 1.0), (1.0, 1e6), (1e-12, 1e6), (1e-8, 1e8), (0.1, 1.0)]
)
def test_exact_posterior_at_extreme_scales_matches_the_closed_form(noise_sd, prior_sd):
    # Three parameters, one datum: the data leave two directions to the prior while fixing the
    # third to within noise_sd, so the precision spans (prior_sd/noise_sd)² ≤ 1e32.
    a = np.array([1.0, 2.0, -0.5])
    post = _one_datum_problem(noise_sd, prior_sd, a).exact_posterior()
    mean, sd = _one_datum_closed_form(noise_sd, prior_sd, a)
    # Tolerance: 1e-6 relative on the mean and on the sd (round-off of the QR factorization is
    # about 1e-16 × cond([W; I]) = 1e-16 × prior_sd/noise_sd ≤ 1e-2 in the direction of a,
    # relative to the prior scale, which is ≤ 1e-6 of the entries compared here).
    np.testing.assert_allclose(post["mean"].values, mean, rtol=1e-6)
    np.testing.assert_allclose(post["sd"].values, sd, rtol=1e-6)
    # the datum is fitted to within its noise
    assert abs(a @ post["mean"].values - 1.0) < 3 * noise_sd + 1e-15


def test_the_normal_equations_fail_where_the_stable_factorization_works():
    # Negative control: Cholesky of the formed precision I + WᵀW breaks down at these scales,
    # the failure the QR factorization of [W; I] avoids.
    import scipy.linalg as sla

    a = np.array([1.0, 2.0, -0.5])
    w = (1e6 * a / 1e-12)[None, :]
    with pytest.raises(np.linalg.LinAlgError):
        sla.cholesky(np.eye(3) + w.T @ w, lower=True)


def test_exact_sampling_at_extreme_scales(small):
    problem = _one_datum_problem(1e-12, 1e6, np.array([1.0, 2.0, -0.5]))
    idata = problem.sample(method="exact", draws=200, chains=2, random_seed=3, progressbar=False)
    a = np.array([1.0, 2.0, -0.5])
    fitted = np.einsum("cdi,i->cd", idata.posterior["x"].values, a)
    # every draw fits the datum to within 6 noise sd (1e-12) up to round-off of the prior scale
    assert np.max(np.abs(fitted - 1.0)) < 6e-12 + 1e-16 * 1e6 * 10


@pytest.mark.parametrize(("noise_sd", "prior_sd"), [(1e-12, 1e6), (1e-12, 1.0), (0.1, 1.0)])
def test_information_budget_at_extreme_scales_matches_the_closed_form(noise_sd, prior_sd):
    # One datum on three parameters: the information gain is ½ log(1 + s²|a|²/σ²) nats and
    # the posterior sd as in _one_datum_closed_form. Tolerance 1e-9 relative on the gain (a
    # sum of logs of factor diagonals, each exact to ~1e-15 relative) and 1e-6 on the sd.
    a = np.array([1.0, 2.0, -0.5])
    budget = _one_datum_problem(noise_sd, prior_sd, a).information_budget()
    gain = 0.5 * np.log1p(prior_sd**2 * float(a @ a) / noise_sd**2)
    np.testing.assert_allclose(float(budget["information_gain_total"]), gain, rtol=1e-9)
    np.testing.assert_allclose(budget["information_gain_alone"].values, [gain], rtol=1e-9)
    np.testing.assert_allclose(budget["information_gain_added"].values, [gain], rtol=1e-9)
    _, sd = _one_datum_closed_form(noise_sd, prior_sd, a)
    np.testing.assert_allclose(budget["posterior_sd"].values, sd, rtol=1e-6)
