"""Testing utilities: Taylor gradient checks, checks against exact posteriors, example problems.

:func:`sbc` (simulation-based calibration) lives in :mod:`bayesjoint.calibration`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt

from bayesjoint.calibration import sbc

__all__ = [
    "CUBIC_BASINS",
    "CModuleWatch",
    "ExactComparison",
    "TaylorResult",
    "blur_and_points_problem",
    "blur_matrix",
    "compare_with_exact",
    "cubic_log_density",
    "cubic_problem",
    "gp_discrepancy_problem",
    "sbc",
    "taylor_test",
]


@dataclass(frozen=True)
class TaylorResult:
    """Outcome of :func:`taylor_test`.

    Attributes
    ----------
    steps : numpy.ndarray
        The step sizes ``h``.
    zeroth : numpy.ndarray
        ``|φ(x + h d) − φ(x)|`` (falls as O(h)).
    first : numpy.ndarray
        ``|φ(x + h d) − φ(x) − h ∇φ·d|`` (falls as O(h²) when the gradient is right).
    slope : float
        Least-squares slope of ``log(first)`` against ``log(h)``.
    """

    steps: np.ndarray
    zeroth: np.ndarray
    first: np.ndarray
    slope: float


def taylor_test(
    fn: Callable[[Any], Any],
    x0: Any,
    *,
    random_seed: int | np.random.Generator | None = 0,
    steps: Sequence[float] | None = None,
) -> TaylorResult:
    """Check the pytensor gradient of ``fn`` at ``x0`` by a Taylor remainder test.

    Parameters
    ----------
    fn : callable
        Maps a pytensor float64 tensor shaped like ``x0`` to a tensor of any shape.
    x0 : array_like
        The point (float64).
    random_seed : int or numpy.random.Generator, optional
        Seeds the random direction ``d`` and the random weights ``w``.
    steps : sequence of float, optional
        Step sizes relative to ``max(1, |x0|_∞)``; default ``2**-k`` for ``k = 2..9``.

    Returns
    -------
    TaylorResult

    Notes
    -----
    The scalar functional ``φ(x) = Σ w ⊙ fn(x)`` with random weights ``w`` reduces any output to
    a number; its gradient comes from ``pytensor.grad``. With a correct gradient the first-order
    remainder ``|φ(x + h d) − φ(x) − h ∇φ·d|`` falls as ``h²`` (slope 2 on a log-log plot), while a
    wrong gradient leaves it at O(h) (slope 1). For a linear ``fn`` the remainder is at round-off
    level for every step, so check its size rather than the slope.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.validate import taylor_test
    >>> res = taylor_test(lambda x: x**3, np.array([0.3, 1.2]), random_seed=1)
    >>> bool(abs(res.slope - 2.0) < 0.2)
    True
    """
    rng = np.random.default_rng(random_seed)
    x0 = np.asarray(x0, dtype=float)
    x = pt.tensor("x", dtype="float64", shape=x0.shape)
    out = pt.as_tensor_variable(fn(x))
    probe = pytensor.function([x], out)
    w = rng.standard_normal(np.shape(probe(x0)))
    phi = pt.sum(pt.constant(w) * out)
    f_phi = pytensor.function([x], [phi, pytensor.grad(phi, x)])
    d = rng.standard_normal(x0.shape)
    scale = max(1.0, float(np.max(np.abs(x0)))) if x0.size else 1.0
    hs = np.asarray(steps if steps is not None else 2.0 ** -np.arange(2, 10), dtype=float) * scale
    phi0, g0 = f_phi(x0)
    slope_dir = float(np.sum(np.asarray(g0) * d))
    zeroth, first = [], []
    for h in hs:
        phih = float(f_phi(x0 + h * d)[0])
        zeroth.append(abs(phih - float(phi0)))
        first.append(abs(phih - float(phi0) - h * slope_dir))
    zeroth_arr, first_arr = np.asarray(zeroth), np.asarray(first)
    positive = first_arr > 0
    slope = (
        float(np.polyfit(np.log(hs[positive]), np.log(first_arr[positive]), 1)[0])
        if positive.sum() >= 2
        else float("nan")
    )
    return TaylorResult(steps=hs, zeroth=zeroth_arr, first=first_arr, slope=slope)


@dataclass(frozen=True)
class ExactComparison:
    """Outcome of :func:`compare_with_exact`.

    Attributes
    ----------
    z_mean : numpy.ndarray
        ``(sampled mean − exact mean) / MCSE`` per parameter.
    sd_ratio : numpy.ndarray
        Sampled sd over exact sd per parameter.
    rhat : numpy.ndarray
        Rank-normalized split R-hat per parameter.
    max_abs_z : float
    sd_ratio_range : tuple of float
    max_rhat : float
    passed : bool
        True when every ``|z| ≤ z_tol``, every ``|sd_ratio − 1| ≤ sd_rtol`` and every
        ``rhat ≤ rhat_tol``.
    """

    z_mean: np.ndarray
    sd_ratio: np.ndarray
    rhat: np.ndarray
    max_abs_z: float
    sd_ratio_range: tuple[float, float]
    max_rhat: float
    passed: bool


def compare_with_exact(
    problem: Any,
    idata: Any,
    exact: Any = None,
    *,
    z_tol: float = 4.0,
    sd_rtol: float = 0.10,
    rhat_tol: float = 1.01,
) -> ExactComparison:
    """Compare posterior draws with an exact Gaussian posterior, parameter by parameter.

    Parameters
    ----------
    problem : JointInversion
        The problem that produced ``idata`` (gives the stacking order).
    idata : arviz.InferenceData
        Posterior draws.
    exact : xarray.Dataset, optional
        Exact posterior (``mean``, ``sd`` on ``parameter``); default ``problem.exact_posterior()``.
    z_tol : float, default 4
        Allowed ``|mean − exact| / MCSE``: with a correct sampler each z is approximately
        standard normal, so 4 MCSE leaves a false-alarm rate of about 6e-5 per parameter.
    sd_rtol : float, default 0.10
        Allowed relative sd error: the sd estimate's own relative error is about
        ``1/sqrt(2 ESS)`` (≈ 1.6 % at ESS 2000), so 10 % is several of its standard errors.
    rhat_tol : float, default 1.01
        Largest acceptable R-hat (Vehtari et al. 2021).

    Returns
    -------
    ExactComparison
    """
    import arviz as az

    if exact is None:
        exact = problem.exact_posterior()
    names = list(problem.latent)
    post = idata.posterior[names]
    stacked = problem.stack_latent(post)
    mean = stacked.mean(("chain", "draw")).values
    sd = stacked.std(("chain", "draw"), ddof=1).values
    mcse = problem.stack_latent(az.mcse(post, method="mean")).values
    rhat = problem.stack_latent(az.rhat(post)).values
    z = (mean - exact["mean"].values) / mcse
    ratio = sd / exact["sd"].values
    passed = bool(
        np.all(np.abs(z) <= z_tol)
        and np.all(np.abs(ratio - 1.0) <= sd_rtol)
        and np.all(rhat <= rhat_tol)
    )
    return ExactComparison(
        z_mean=z,
        sd_ratio=ratio,
        rhat=rhat,
        max_abs_z=float(np.max(np.abs(z))),
        sd_ratio_range=(float(np.min(ratio)), float(np.max(ratio))),
        max_rhat=float(np.max(rhat)),
        passed=passed,
    )


class CModuleWatch:
    """Record the C modules pytensor's module cache is asked for inside a ``with`` block.

    A graph compiled to C asks the on-disk module cache for its module by key; a key not in the
    cache is compiled by the C compiler. Inside the block every key asked for is appended to
    :attr:`keys` and every compilation counted in :attr:`compiled`, so that "a refit compiles
    nothing" can be checked: no new key, no compilation.

    Attributes
    ----------
    keys : list
        The module keys asked for, in order (repeats included).
    compiled : int
        C compilations run.

    Examples
    --------
    >>> import numpy as np, pytensor, pytensor.tensor as pt
    >>> x = pt.dvector("x")
    >>> with CModuleWatch() as watch:
    ...     f = pytensor.function([x], pt.exp(x) + 1.0)
    >>> mark = len(watch.keys)
    >>> with watch:
    ...     g = pytensor.function([x], pt.exp(x) + 1.0)  # the same graph again
    >>> watch.new_since(mark, watch.keys[:mark])
    []
    """

    def __init__(self) -> None:
        self.keys: list = []
        self.compiled = 0
        self._saved: tuple | None = None

    def new_since(self, mark: int, seen: Sequence) -> list:
        """Return the keys asked for after position ``mark`` that are not among ``seen``."""
        known = set(seen)
        return [key for key in self.keys[mark:] if key not in known]

    def __enter__(self) -> CModuleWatch:
        from pytensor.link.c import cmodule

        lookup = cmodule.ModuleCache.module_from_key
        compile_str = cmodule.GCC_compiler.compile_str
        self._saved = (lookup, compile_str)

        def spy_lookup(cache: Any, key: Any, lnk: Any) -> Any:
            self.keys.append(key)
            return lookup(cache, key, lnk)

        def spy_compile(*args: Any, **kwargs: Any) -> Any:
            self.compiled += 1
            return compile_str(*args, **kwargs)

        cmodule.ModuleCache.module_from_key = spy_lookup
        cmodule.GCC_compiler.compile_str = staticmethod(spy_compile)
        return self

    def __exit__(self, *exc: Any) -> None:
        from pytensor.link.c import cmodule

        lookup, compile_str = self._saved
        cmodule.ModuleCache.module_from_key = lookup
        cmodule.GCC_compiler.compile_str = staticmethod(compile_str)


def blur_matrix(n: int, width: float) -> np.ndarray:
    """Return a row-normalized Gaussian blur of ``n`` samples with ``width`` samples' sd."""
    idx = np.arange(n)
    kernel = np.exp(-0.5 * ((idx[:, None] - idx[None, :]) / width) ** 2)
    return kernel / kernel.sum(axis=1, keepdims=True)


def blur_and_points_problem(
    n: int = 120,
    *,
    n_points: int = 30,
    include_points: bool = True,
    random_seed: int = 20261129,
) -> Any:
    """Return the contract's linear-Gaussian example: ``n`` parameters, a blur and sparse points.

    The latent ``x ~ N(0, 0.1²)`` (``n`` values) is seen by ``"blurred"`` (a Gaussian blur of
    width 2 samples, noise sd 0.05, dense operator) and by ``"points"`` (``n_points`` sampled
    values, noise sd 0.02, sparse operator). The data are simulated from a seeded truth. Dropping
    ``"points"`` (``include_points=False``) gives a different posterior on the same data — a
    negative control for sampler checks.

    Examples
    --------
    >>> from bayesjoint.validate import blur_and_points_problem
    >>> problem = blur_and_points_problem(20, n_points=5)
    >>> sorted(problem.modalities), problem.exact_posterior().sizes["parameter"]
    (['blurred', 'points'], 20)
    """
    import scipy.sparse as sp

    from bayesjoint.joint import JointInversion
    from bayesjoint.latent import Parameter
    from bayesjoint.modality import Modality
    from bayesjoint.noise import Gaussian
    from bayesjoint.physics import Linear
    from bayesjoint.priors import Normal

    rng = np.random.default_rng(random_seed)
    prior_sd = 0.1
    truth = prior_sd * rng.standard_normal(n)
    a = blur_matrix(n, 2.0)
    idx = np.sort(rng.choice(n, size=n_points, replace=False))
    b = sp.csr_matrix((np.ones(n_points), (np.arange(n_points), idx)), shape=(n_points, n))
    y = a @ truth + 0.05 * rng.standard_normal(n)
    z = b @ truth + 0.02 * rng.standard_normal(n_points)
    x = Parameter("x", shape=n, prior=Normal(0.0, prior_sd))
    blurred = Modality("blurred", physics=Linear(a, input="x"), data=y, noise=Gaussian(0.05))
    points = Modality("points", physics=Linear(b, input="x"), data=z, noise=Gaussian(0.02))
    return JointInversion(latent=[x], modalities=[blurred, points] if include_points else [blurred])


def gp_discrepancy_problem(data: Any = None) -> Any:
    """Return a straight line seen through a learned GP discrepancy and a learned noise sd.

    ``x`` (intercept and slope, each ``N(0, 1)``) is seen at 10 points ``t`` evenly spaced on
    ``[−1, 1]`` as ``x_0 + x_1 t`` (modality ``"profile"``), plus a Matérn-5/2 GP discrepancy on
    the sample index ``0..9`` (lengthscale ``LogNormal(log 3, 0.3)``, amplitude
    ``HalfNormal(0.5)``, exact covariance), plus Gaussian noise of learned sd ``HalfNormal(0.2)``.
    Its hyperparameters are integrated exactly by the ``"collapsed"`` route.

    Parameters
    ----------
    data : array_like, shape (10,), optional
        The profile's data (default zeros, e.g. for :func:`sbc`, which replaces them).

    Examples
    --------
    >>> from bayesjoint.validate import gp_discrepancy_problem
    >>> problem = gp_discrepancy_problem()
    >>> problem.modalities["profile"].physics.matrix.shape
    (10, 2)
    """
    from bayesjoint import discrepancy
    from bayesjoint.joint import JointInversion
    from bayesjoint.latent import Parameter
    from bayesjoint.modality import Modality
    from bayesjoint.noise import Gaussian
    from bayesjoint.physics import Linear
    from bayesjoint.priors import HalfNormal, LogNormal, Normal

    x = Parameter("x", shape=2, prior=Normal(0.0, 1.0))
    design = np.c_[np.ones(10), np.linspace(-1.0, 1.0, 10)]
    gp = discrepancy.GP(
        "matern52",
        lengthscale=LogNormal(np.log(3.0), 0.3),
        amplitude=HalfNormal(0.5),
        coords=np.arange(10.0),
        method="exact",
    )
    profile = Modality(
        "profile",
        Linear(design, input="x"),
        np.zeros(10) if data is None else data,
        Gaussian(HalfNormal(0.2)),
        discrepancy=gp,
    )
    return JointInversion([x], [profile])


# The three-peak example: x ~ N(0.4, 1); y = x³ − 3x observed as 0 with noise sd 0.3.
_CUBIC_PRIOR = (0.4, 1.0)
_CUBIC_DATUM, _CUBIC_NOISE_SD = 0.0, 0.3

#: The basins of :func:`cubic_problem`'s three peaks (near −√3, 0 and √3); the barriers between
#: them, at x = ±1 where the derivative of x³ − 3x vanishes, are more than 20 nats high.
CUBIC_BASINS = ((-4.0, -1.0), (-1.0, 1.0), (1.0, 4.0))


def cubic_problem() -> Any:
    """Return a one-parameter problem with three well-separated posterior peaks.

    ``x ~ N(0.4, 1)`` and the modality ``"cubic"`` observes ``x³ − 3x`` as 0 with noise sd 0.3:
    the posterior peaks near the roots ``0`` and ``±√3`` (slopes 3 and 6), in the basins
    :data:`CUBIC_BASINS`. :func:`cubic_log_density` is its unnormalized density in closed form,
    for checks by quadrature.

    Examples
    --------
    >>> from bayesjoint.validate import cubic_problem
    >>> list(cubic_problem().modalities)
    ['cubic']
    """
    from bayesjoint.joint import JointInversion
    from bayesjoint.latent import Parameter
    from bayesjoint.modality import Modality
    from bayesjoint.noise import Gaussian
    from bayesjoint.priors import Normal

    x = Parameter("x", prior=Normal(*_CUBIC_PRIOR))
    cubic = Modality(
        "cubic",
        physics=lambda m: (m["x"] ** 3 - 3.0 * m["x"])[None],
        data=[_CUBIC_DATUM],
        noise=Gaussian(_CUBIC_NOISE_SD),
    )
    return JointInversion(latent=[x], modalities=[cubic])


def cubic_log_density(x: Any) -> np.ndarray:
    """Unnormalized log posterior density of :func:`cubic_problem` (scipy, independent of PyMC).

    Examples
    --------
    >>> from bayesjoint.validate import cubic_log_density
    >>> bool(cubic_log_density(0.0) > cubic_log_density(1.0) + 20)  # the barrier at x = 1
    True
    """
    from scipy import stats

    x = np.asarray(x, dtype=float)
    return stats.norm.logpdf(x, *_CUBIC_PRIOR) + stats.norm.logpdf(
        _CUBIC_DATUM, x**3 - 3.0 * x, _CUBIC_NOISE_SD
    )
