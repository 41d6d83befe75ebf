"""netCDF save/load round trip and provenance."""

from __future__ import annotations

import json

import numpy as np
import pytest

import bayesjoint as bj

pytestmark = pytest.mark.slow


def test_save_load_round_trip_is_exact(idata, tmp_path):
    path = bj.save(idata, tmp_path / "run.nc")
    loaded = bj.load(path)
    assert loaded.groups() == idata.groups()
    for group in idata.groups():
        original, back = idata[group], loaded[group]
        # identical(): same variables, dims, coordinates, values, dtypes and attributes.
        assert back.identical(original), group
        for name in original.data_vars:
            assert back[name].dtype == original[name].dtype
            np.testing.assert_array_equal(back[name].values, original[name].values)


def test_round_trip_check_detects_a_change(idata, tmp_path):
    # Negative control: a single modified value or attribute makes identical() fail.
    loaded = bj.load(bj.save(idata, tmp_path / "run.nc"))
    loaded.posterior["x"].values[0, 0, 0] += 1e-12
    assert not loaded.posterior.identical(idata.posterior)
    loaded = bj.load(tmp_path / "run.nc")
    loaded.posterior.attrs["random_seed"] = "other"
    assert not loaded.posterior.identical(idata.posterior)


def test_provenance_in_every_group(idata, tmp_path):
    loaded = bj.load(bj.save(idata, tmp_path / "run.nc"))
    for group in loaded.groups():
        attrs = loaded[group].attrs
        for package in ("bayesjoint", "pymc", "pytensor", "arviz", "numpy"):
            assert attrs[f"{package}_version"], (group, package)
        assert attrs["random_seed"] == "20261129"
        assert attrs["bayesjoint_created_at"].endswith("+00:00")
        mods = json.loads(attrs["modalities"])
        assert [m["name"] for m in mods] == ["blurred", "points"]
        assert mods[0]["noise"] == "Gaussian(sd=0.05)"
        assert mods[1]["n_data"] == 30


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        bj.load(tmp_path / "missing.nc")
    bad = tmp_path / "bad.nc"
    bad.write_text("not a netCDF file")
    with pytest.raises(ValueError, match="not a readable netCDF file"):
        bj.load(bad)
    with pytest.raises(TypeError, match=r"bj\.save needs an arviz\.InferenceData"):
        bj.save({"x": 1}, tmp_path / "x.nc")
