"""Model discrepancy: Gaussian-process terms per modality and shared across modalities.

A forward model is an approximation; the error it makes is structured. A discrepancy term adds a
Gaussian process ``δ_k`` over a modality's observation coordinates to its prediction,

    d_k = H_k(F_k(m)) + s_k δ(x_k) + ε_k,

where ``s_k`` is a per-modality scale (1 by default) and ``δ`` may be shared by several modalities
(the same :class:`GP` object attached to each). Two routes, one interface:

- **exact**: ``δ`` is integrated out, so the modality's effective covariance is
  ``Σ_noise + s_k² K(x_k, x_k)`` (Cholesky in the sampler). A shared process couples its
  modalities into one likelihood block with cross-modal covariance ``s_a s_b K(x_a, x_b)``.
- **hsgp**: Hilbert-space reduced-rank approximation (Riutort-Mayol et al. 2022, through
  :class:`pymc.gp.HSGP`): ``δ = Φ (β ⊙ √S(ω))`` with ``β ~ N(0, I)``, linear cost in the number of
  data. Each modality keeps its own likelihood block, conditionally independent given ``β``.

``method="auto"`` picks the exact route up to :data:`EXACT_MAX_DATA` data per block, HSGP above.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayesjoint.priors import LogNormal, Prior

__all__ = [
    "EXACT_MAX_DATA",
    "GP",
    "HSGP_SAFETY",
    "MAX_LENGTHSCALE_RATIO",
    "DiscrepancyTerm",
    "as_term",
    "kernel_matrix",
]

#: Largest block (number of data) that ``method="auto"`` marginalizes exactly.
EXACT_MAX_DATA = 400

#: The default lengthscale prior's lower end is at least the data extent divided by this.
MAX_LENGTHSCALE_RATIO = 50.0

#: Factor applied to the Riutort-Mayol et al. (2022) minimum number of HSGP basis functions.
#: At the minimum, a Matérn-5/2 kernel (ℓ = 4 on a domain of 10) was off by 2.7 % of its variance
#: and shifted a physical parameter's posterior mean by 0.3 posterior sd; at 2.5x the kernel error
#: fell below 0.05 % and the posterior agreed to 0.01 sd.
HSGP_SAFETY = 2.5

_KERNELS = {"squared_exponential": "expquad", "matern52": "matern52", "matern32": "matern32"}


def kernel_matrix(
    xa: np.ndarray, xb: np.ndarray, kernel: str, lengthscale: float, amplitude: float
) -> np.ndarray:
    """Return the isotropic covariance ``amplitude² k(|x_a − x_b| / lengthscale)``.

    Parameters
    ----------
    xa, xb : numpy.ndarray, shape (n, d) and (m, d)
    kernel : {"squared_exponential", "matern52", "matern32"}
    lengthscale, amplitude : float

    Examples
    --------
    >>> import numpy as np
    >>> k = kernel_matrix(np.zeros((1, 1)), np.ones((1, 1)), "squared_exponential", 1.0, 2.0)
    >>> round(float(k[0, 0]), 6)  # 4 exp(-1/2)
    2.426123
    """
    xa = np.asarray(xa, dtype=float).reshape(len(xa), -1)
    xb = np.asarray(xb, dtype=float).reshape(len(xb), -1)
    r = np.sqrt(((xa[:, None, :] - xb[None, :, :]) ** 2).sum(-1))
    if kernel not in _KERNELS:
        raise ValueError(f"discrepancy kernel {kernel!r} unknown; choose one of {sorted(_KERNELS)}")
    s = r / lengthscale
    if kernel == "squared_exponential":
        k = np.exp(-0.5 * s**2)
    elif kernel == "matern52":
        q = np.sqrt(5.0) * s
        k = (1.0 + q + q**2 / 3.0) * np.exp(-q)
    else:
        q = np.sqrt(3.0) * s
        k = (1.0 + q) * np.exp(-q)
    return amplitude**2 * k


def _pymc_cov(kernel: str, n_dims: int, lengthscale: Any) -> Any:
    if kernel == "squared_exponential":
        return pm.gp.cov.ExpQuad(n_dims, ls=lengthscale)
    if kernel == "matern52":
        return pm.gp.cov.Matern52(n_dims, ls=lengthscale)
    return pm.gp.cov.Matern32(n_dims, ls=lengthscale)


def _check_hyper(value: Any, what: str, owner: str) -> float | Prior | None:
    if value is None or isinstance(value, Prior):
        if isinstance(value, Prior) and not value.positive:
            raise ValueError(
                f"{owner}: discrepancy {what} prior must be positive (HalfNormal, LogNormal)"
            )
        return value
    try:
        val = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: discrepancy {what} must be a number or a prior") from None
    if not np.isfinite(val) or val <= 0:
        raise ValueError(f"{owner}: discrepancy {what} must be positive and finite, got {value!r}")
    return val


class GP:
    """A Gaussian-process model discrepancy.

    Parameters
    ----------
    kernel : {"squared_exponential", "matern52", "matern32"}
        Isotropic stationary kernel.
    lengthscale : float or Prior, optional
        Correlation length in the coordinates' units. Default: a log-normal prior with 90 % of its
        mass between the smallest spacing (but at least extent / :data:`MAX_LENGTHSCALE_RATIO`)
        and the extent of the data coordinates.
    amplitude : float or Prior, optional
        Marginal sd of the discrepancy in data units. Default: ``HalfNormal(sd of the data)``.
    coords : array_like, shape (n,) or (n, d), optional
        Observation coordinates. When omitted each modality's (numeric) data coordinates are used.
        Ignored for shared processes, where each modality gives its own via :meth:`term`.
    method : {"auto", "exact", "hsgp"}
        ``"auto"`` marginalizes exactly up to :data:`EXACT_MAX_DATA` data per block.
    n_basis : int, optional
        HSGP basis functions per coordinate dimension; default :data:`HSGP_SAFETY` times the
        minimum that the Riutort-Mayol et al. (2022) heuristics give for the lengthscale range
        (prior's 5-95 % quantiles, or the fixed value) and the domain
        (:func:`pymc.gp.hsgp_approx.approx_hsgp_hyperparams`). The number used and the boundary
        factor ``c`` are recorded in :attr:`hsgp_settings` after the model is built.
    name : str, optional
        Names the hyperparameters (``<name>_lengthscale``, ``<name>_amplitude``) and, for a shared
        exact block, the block's observed variable. Default ``<modality>_discrepancy`` for a
        single modality; required for a shared process.

    Notes
    -----
    A shared process is one :class:`GP` object attached to several modalities (directly or via
    :meth:`term`). With the exact route those modalities form **one** likelihood block whose
    observed variable is named after the process: ``log_likelihood`` then holds the joint density
    of the block's data (one value per draw), and ``observed_data`` the concatenated data (dim
    ``<name>_obs``, in modality order). With the HSGP route each modality keeps its own block and
    pointwise log-likelihood, conditional on the sampled basis coefficients ``<name>_basis``.

    Examples
    --------
    >>> import bayesjoint as bj
    >>> gp = bj.discrepancy.GP(kernel="matern52", lengthscale=50.0, amplitude=0.1)
    >>> gp.kernel, gp.fixed
    ('matern52', True)
    """

    def __init__(
        self,
        kernel: str = "squared_exponential",
        lengthscale: float | Prior | None = None,
        amplitude: float | Prior | None = None,
        coords: Any = None,
        *,
        method: str = "auto",
        n_basis: int | Sequence[int] | None = None,
        name: str | None = None,
    ):
        self.kernel = kernel
        self.lengthscale = lengthscale
        self.amplitude = amplitude
        self.coords = None if coords is None else np.asarray(coords, dtype=float)
        self.method = method
        self.n_basis = n_basis
        self.name = name
        self.hsgp_settings: dict[str, Any] = {}

    def validate(self, owner: str) -> None:
        """Check kernel, method and hyperparameters; errors name ``owner`` (the modality)."""
        if self.kernel not in _KERNELS:
            raise ValueError(
                f"{owner}: discrepancy kernel {self.kernel!r} unknown; choose one of "
                f"{sorted(_KERNELS)}"
            )
        if self.method not in ("auto", "exact", "hsgp"):
            raise ValueError(
                f"{owner}: discrepancy method {self.method!r}; choose 'auto', 'exact' or 'hsgp'"
            )
        self.lengthscale = _check_hyper(self.lengthscale, "lengthscale", owner)
        self.amplitude = _check_hyper(self.amplitude, "amplitude", owner)

    @property
    def fixed(self) -> bool:
        """True when lengthscale and amplitude are fixed numbers (exact path applies)."""
        return isinstance(self.lengthscale, float) and isinstance(self.amplitude, float)

    def term(self, coords: Any = None, scale: float | Prior = 1.0) -> DiscrepancyTerm:
        """Return this process seen by one modality at ``coords`` with a scale ``s_k``."""
        return DiscrepancyTerm(self, coords, scale)

    def default_lengthscale_prior(self, coords: np.ndarray) -> LogNormal:
        """Log-normal prior with 90 % mass between a short length and the extent.

        The short length is the smallest data spacing, but no less than
        ``extent / MAX_LENGTHSCALE_RATIO``: otherwise dense data would make the prior (and the
        HSGP basis it sizes) grow without bound with the number of data.
        """
        lo, hi = _spacing_and_extent(coords)
        lo = max(lo, hi / MAX_LENGTHSCALE_RATIO)
        mu = 0.5 * (np.log(lo) + np.log(hi))
        sigma = max((np.log(hi) - np.log(lo)) / (2 * 1.6449), 0.1)
        return LogNormal(mu, sigma)

    def __repr__(self) -> str:
        return (
            f"GP(kernel={self.kernel!r}, lengthscale={self.lengthscale!r}, "
            f"amplitude={self.amplitude!r}, method={self.method!r})"
        )


class DiscrepancyTerm:
    """One modality's view of a discrepancy process: coordinates and scale.

    Parameters
    ----------
    process : GP
    coords : array_like, shape (n,) or (n, d), optional
    scale : float or Prior, default 1
        The modality-specific factor ``s_k`` (a positive prior makes it learned).
    """

    def __init__(self, process: GP, coords: Any = None, scale: float | Prior = 1.0):
        if not isinstance(process, GP):
            raise TypeError("DiscrepancyTerm needs a bj.discrepancy.GP process")
        self.process = process
        self.coords = None if coords is None else np.asarray(coords, dtype=float)
        self.scale = scale

    def validate(self, owner: str) -> None:
        """Check the process and the scale; errors name ``owner`` (the modality)."""
        self.process.validate(owner)
        self.scale = _check_hyper(self.scale, "scale", owner)

    def resolve_coords(self, modality: str, data: np.ndarray, data_coords: dict) -> np.ndarray:
        """Return the coordinates as an (n, d) array, checking their length against the data."""
        coords = self.coords if self.coords is not None else self.process.coords
        if coords is None:
            if len(data_coords) != 1:
                raise ValueError(
                    f"modality {modality!r}: give discrepancy coordinates (GP(coords=...) or "
                    "gp.term(coords=...)) for multi-dimensional data"
                )
            coords = np.asarray(next(iter(data_coords.values())))
            if not np.issubdtype(coords.dtype, np.number):
                raise ValueError(
                    f"modality {modality!r}: data coordinates are not numeric; give discrepancy "
                    "coordinates explicitly"
                )
        coords = np.asarray(coords, dtype=float)
        coords = coords.reshape(len(coords), -1) if coords.ndim else coords.reshape(1, 1)
        if coords.shape[0] != data.size:
            raise ValueError(
                f"modality {modality!r}: discrepancy coordinates have {coords.shape[0]} rows but "
                f"the data have {data.size} values; give one coordinate row per datum"
            )
        if not np.all(np.isfinite(coords)):
            raise ValueError(f"modality {modality!r}: discrepancy coordinates contain NaN or inf")
        return coords


def as_term(discrepancy: Any, modality: str) -> DiscrepancyTerm | None:
    """Return ``discrepancy`` as a :class:`DiscrepancyTerm` (a bare GP means scale 1)."""
    if discrepancy is None:
        return None
    if isinstance(discrepancy, GP):
        discrepancy = discrepancy.term()
    if isinstance(discrepancy, DiscrepancyTerm):
        discrepancy.validate(f"modality {modality!r}")
        return discrepancy
    raise TypeError(
        f"modality {modality!r}: discrepancy must be a bj.discrepancy.GP (or gp.term(...)), got "
        f"{type(discrepancy).__name__}"
    )


def _spacing_and_extent(coords: np.ndarray) -> tuple[float, float]:
    coords = coords.reshape(len(coords), -1)
    extent = float(np.max(np.ptp(coords, axis=0)))
    spacings = []
    for col in coords.T:
        diffs = np.diff(np.unique(col))
        if diffs.size:
            spacings.append(diffs.min())
    lo = float(min(spacings)) if spacings else extent
    if extent <= 0:
        extent = 1.0
        lo = min(lo, 1.0) if lo > 0 else 1.0
    return max(lo, 1e-12 * extent), extent


def hsgp_basis_settings(
    coords: np.ndarray, kernel: str, lengthscale_range: tuple[float, float], n_basis: Any
) -> tuple[list[int], float]:
    """Return ``(m, c)`` per the Riutort-Mayol et al. heuristics (``m`` per dimension)."""
    m_all, c_all = [], []
    for col in coords.T:
        lo, hi = float(col.min()), float(col.max())
        if hi <= lo:
            hi = lo + lengthscale_range[1]
        m, c = pm.gp.hsgp_approx.approx_hsgp_hyperparams(
            [lo, hi], list(lengthscale_range), _KERNELS[kernel]
        )
        m_all.append(int(np.ceil(HSGP_SAFETY * m)))
        c_all.append(float(c))
    if n_basis is not None:
        m_all = [int(n_basis)] * coords.shape[1] if np.ndim(n_basis) == 0 else list(n_basis)
    return m_all, max(max(c_all), 1.2)


def build_hyperparameters(process: GP, name: str, coords: np.ndarray, data: np.ndarray):
    """Add (or fix) the lengthscale and amplitude; return them and the lengthscale range."""
    ls = process.lengthscale
    if ls is None:
        ls = process.default_lengthscale_prior(coords)
    amp = process.amplitude
    if amp is None:
        from bayesjoint.priors import HalfNormal

        amp = HalfNormal(float(np.std(data)) or 1.0)
    if isinstance(ls, Prior):
        ls_range = _prior_range(ls)
        ls_var = ls.build(f"{name}_lengthscale", (), None)
    else:
        ls_range = (ls, ls * (1.0 + 1e-6))  # a point: the heuristics need lo < hi
        ls_var = ls
    amp_var = amp.build(f"{name}_amplitude", (), None) if isinstance(amp, Prior) else amp
    return ls_var, amp_var, ls_range


def _prior_range(prior: Prior) -> tuple[float, float]:
    """Return the 5 % and 95 % quantiles of a positive prior (by a seeded draw)."""
    with pm.Model(model=None):  # standalone, not nested in the problem's model
        var = prior.build("_ls", (), None)
        draws = pm.draw(var, draws=4000, random_seed=0)
    lo, hi = np.quantile(draws, [0.05, 0.95])
    return float(max(lo, 1e-12)), float(max(hi, lo * (1 + 1e-9)))


def symbolic_kernel(process: GP, coords: np.ndarray, lengthscale: Any, amplitude: Any) -> Any:
    """Return the symbolic covariance matrix ``amplitude² K(coords, coords)``."""
    cov = _pymc_cov(process.kernel, coords.shape[1], lengthscale)
    return amplitude**2 * cov(pt.constant(coords))


def hsgp_values(
    process: GP, name: str, coords: np.ndarray, lengthscale: Any, amplitude: Any, ls_range
) -> Any:
    """Add the HSGP basis coefficients ``<name>_basis`` and return ``δ`` at ``coords``."""
    m, c = hsgp_basis_settings(coords, process.kernel, ls_range, process.n_basis)
    process.hsgp_settings = {"m": m, "c": c, "lengthscale_range": list(ls_range)}
    cov = amplitude**2 * _pymc_cov(process.kernel, coords.shape[1], lengthscale)
    gp = pm.gp.HSGP(m=m, c=c, cov_func=cov)
    phi, sqrt_psd = gp.prior_linearized(pt.constant(coords))
    beta = pm.Normal(f"{name}_basis", 0.0, 1.0, shape=gp.n_basis_vectors)
    return phi @ (beta * sqrt_psd)
