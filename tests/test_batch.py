"""bj.sample_many: one inversion per data set, each saved, resumable, checked before it runs.

Each result is compared with ``problem.with_data(d).sample(...)`` at the seed ``sample_many``
documents (exact route: the same draws to rounding, ``atol=1e-12``).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

import bayesjoint as bj
from bayesjoint.validate import blur_and_points_problem

KW = dict(method="exact", draws=40, chains=2)


@pytest.fixture(scope="module")
def problem():
    return blur_and_points_problem(8, n_points=3)


def _datasets(problem, k):
    rng = np.random.default_rng(4)
    return {
        f"site{i}": {
            name: m.data + 0.2 * i + 0.01 * rng.standard_normal(m.data.shape)
            for name, m in problem.modalities.items()
        }
        for i in range(k)
    }


def _seed(random_seed, k):
    return int(np.random.SeedSequence([random_seed, k]).generate_state(1)[0] % (2**31 - 1))


def test_sample_many_fits_each_data_set_like_with_data(problem, caplog):
    datasets = _datasets(problem, 3)
    with caplog.at_level(logging.INFO, logger="bayesjoint"):
        out = bj.sample_many(problem, datasets, client="serial", random_seed=5, **KW)
    assert list(out) == ["site0", "site1", "site2"]
    for k, (key, data) in enumerate(datasets.items()):
        ref = problem.with_data(data).sample(random_seed=_seed(5, k), **KW)
        np.testing.assert_allclose(
            out[key].posterior["x"].values, ref.posterior["x"].values, atol=1e-12
        )
        np.testing.assert_array_equal(out[key].observed_data["points"].values, data["points"])
    assert "3/3 inversions done" in caplog.text
    # negative control: different data sets give different posteriors
    assert not np.allclose(out["site0"].posterior["x"].values, out["site2"].posterior["x"].values)


def test_sample_many_saves_each_result_and_resumes(problem, tmp_path):
    datasets = [d for d in _datasets(problem, 4).values()]
    store = tmp_path / "runs"
    paths = bj.sample_many(problem, datasets, client="serial", store=store, **KW)
    assert sorted(os.path.basename(p) for p in paths.values()) == [f"{k:06d}.nc" for k in range(4)]
    first = {k: bj.load(p).posterior["x"].values for k, p in paths.items()}
    os.remove(paths["000002"])
    stamps = {k: os.stat(p).st_mtime_ns for k, p in paths.items() if k != "000002"}
    again = bj.sample_many(problem, datasets, client="serial", store=store, **KW)
    assert {k: os.stat(p).st_mtime_ns for k, p in again.items() if k != "000002"} == stamps
    np.testing.assert_allclose(bj.load(again["000002"]).posterior["x"].values, first["000002"])


def test_sample_many_checks_every_data_set_before_fitting(problem, tmp_path):
    datasets = _datasets(problem, 2)
    datasets["site1"]["points"] = np.zeros(7)
    with pytest.raises(ValueError, match=r"data set 'site1'.*shape"):
        bj.sample_many(problem, datasets, client="serial", store=tmp_path, **KW)
    assert os.listdir(tmp_path) == []  # nothing ran
    with pytest.raises(TypeError, match="sequence of"):
        bj.sample_many(problem, 3, client="serial")
    with pytest.raises(ValueError, match="cannot name a file"):
        bj.sample_many(problem, {"a/b": {}}, client="serial")


def test_sample_many_refuses_names_that_give_the_same_file(problem, tmp_path):
    one = _datasets(problem, 1)["site0"]
    with pytest.raises(ValueError, match=r"names 1 and '1' both give the file name '1'"):
        bj.sample_many(problem, {1: one, "1": one}, client="serial", store=tmp_path, **KW)
    assert os.listdir(tmp_path) == []  # refused before anything ran
    # negative control: names that differ as text are accepted
    paths = bj.sample_many(problem, {1: one, "2": one}, client="serial", store=tmp_path, **KW)
    assert sorted(paths) == ["1", "2"]
