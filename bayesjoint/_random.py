"""Seeds and random generators: how a ``random_seed`` argument becomes draws, in one place.

Every random choice in the package goes through a :class:`numpy.random.Generator` or an explicit
integer seed; nothing here reads or changes numpy's global random state. A seed that the caller
did not give is drawn from OS entropy and returned, so that it can be recorded in the provenance
and the run repeated.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Exclusive upper bound of the integer seeds drawn here (fits a signed 32-bit integer, which
#: every sampler backend accepts).
SEED_BOUND = 2**31 - 1


def fresh_seed() -> int:
    """Return a seed drawn from OS entropy (never from global state), to be recorded.

    Examples
    --------
    >>> 0 <= fresh_seed() < SEED_BOUND
    True
    """
    return int(np.random.SeedSequence().entropy % SEED_BOUND)


def rng_and_seed(random_seed: Any) -> tuple[np.random.Generator, Any]:
    """Return a Generator and the seed to record.

    Parameters
    ----------
    random_seed : int, numpy.random.Generator or None
        A Generator is used as it is (recorded as ``"generator"``); None draws a seed from OS
        entropy (:func:`fresh_seed`).

    Returns
    -------
    rng : numpy.random.Generator
    seed : int or str
        The integer seed, or ``"generator"`` when a Generator was given.

    Examples
    --------
    >>> rng, seed = rng_and_seed(3)
    >>> seed, float(rng.random()) == float(np.random.default_rng(3).random())
    (3, True)
    >>> rng_and_seed(np.random.default_rng(0))[1]
    'generator'
    """
    if isinstance(random_seed, np.random.Generator):
        return random_seed, "generator"
    if random_seed is None:
        random_seed = fresh_seed()
    return np.random.default_rng(random_seed), int(random_seed)


def child_seed(rng: np.random.Generator) -> int:
    """Return an integer seed drawn from ``rng``, for a library that takes an integer seed.

    Examples
    --------
    >>> child_seed(np.random.default_rng(0)) == child_seed(np.random.default_rng(0))
    True
    """
    return int(rng.integers(SEED_BOUND))


def run_seed(idata: Any, random_seed: int | None = None) -> int | None:
    """Return ``random_seed`` when given, else the integer seed recorded with the run.

    Parameters
    ----------
    idata : arviz.InferenceData
        A run whose posterior attributes hold its ``random_seed`` (the provenance).
    random_seed : int, optional
        Overrides the recorded seed.

    Returns
    -------
    int or None
        None when neither is given, or the recorded seed is not an integer (e.g. ``"none"``).

    Examples
    --------
    >>> import arviz as az, numpy as np
    >>> idata = az.from_dict(posterior={"x": np.zeros((1, 2))})
    >>> idata.posterior.attrs["random_seed"] = "7"  # as the provenance records it
    >>> run_seed(idata), run_seed(idata, 3)
    (7, 3)
    """
    if random_seed is not None:
        return random_seed
    raw = idata.posterior.attrs.get("random_seed")
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None
