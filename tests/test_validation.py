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
