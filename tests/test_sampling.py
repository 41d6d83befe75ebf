"""NUTS against the exact linear-Gaussian posterior (the statistical acceptance test)."""

from __future__ import annotations

import numpy as np
import pytest

from bayesjoint.validate import blur_and_points_problem, compare_with_exact

pytestmark = pytest.mark.slow


def test_nuts_matches_exact_posterior(problem, idata):
    # Tolerances: every mean within 4 MCSE (z ~ N(0, 1) per parameter, 6e-5 false-alarm rate each),
    # every sd within 10 % (sd estimate error ~ 1/sqrt(2 ESS) ~ 1-2 % here), R-hat <= 1.01.
    assert problem.exact_posterior().sizes["parameter"] >= 100
    check = compare_with_exact(problem, idata)
    assert check.max_rhat <= 1.01, check.max_rhat
    assert check.max_abs_z <= 4.0, check.max_abs_z
    assert 0.9 <= check.sd_ratio_range[0] and check.sd_ratio_range[1] <= 1.1, check.sd_ratio_range
    assert check.passed
    assert int(idata.sample_stats["diverging"].sum()) == 0


def test_check_fails_against_posterior_without_one_modality(problem, idata):
    # Negative control: the same draws compared with the exact posterior of the problem with the
    # 'points' modality dropped must fail, proving the check can detect a wrong answer.
    wrong = blur_and_points_problem(120, include_points=False, random_seed=20261129)
    wrong = wrong.exact_posterior()
    check = compare_with_exact(problem, idata, wrong)
    assert not check.passed
    assert check.max_abs_z > 20.0
    assert check.sd_ratio_range[0] < 0.5  # points pin some parameters far below the blur-only sd


def test_posterior_sd_is_smaller_than_either_modality_alone(problem):
    # Information adds up: the joint posterior sd never exceeds the sd with one modality alone.
    budget = problem.information_budget()
    joint = budget["posterior_sd"].values
    for name in ("blurred", "points"):
        assert np.all(joint <= budget["posterior_sd_alone"].sel(modality=name).values + 1e-15)
