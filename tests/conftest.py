"""Shared fixtures: a joint problem whose exact posterior is known, compiled and sampled once."""

from __future__ import annotations

import pytest

from bayesjoint.validate import blur_and_points_problem

SEED = 20261129


@pytest.fixture(scope="session")
def problem():
    """120 parameters seen through a blur and at 30 sparse points (linear-Gaussian)."""
    return blur_and_points_problem(120, random_seed=SEED)


@pytest.fixture(scope="session")
def idata(problem):
    """NUTS draws of ``problem`` (4 chains x 1000 after 1000 tuning), sampled once per session."""
    return problem.sample(
        draws=1000, tune=1000, chains=4, cores=1, random_seed=SEED, progressbar=False
    )
