"""User settings of a model discrepancy: the :class:`GP` process and the per-modality term.

These objects are declarations. Building a problem never writes onto them: what a build decides
(route, basis, resolved hyperparameters) lives in the problem's discrepancy plan and provenance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bayesjoint._checks import as_count, checked_init
from bayesjoint.priors import LogNormal, Prior

__all__ = [
    "EXACT_MAX_DATA",
    "GP",
    "HSGP_SAFETY",
    "LARGE_BASIS",
    "MAX_LENGTHSCALE_RATIO",
    "DiscrepancyTerm",
    "as_term",
]


#: Largest block (number of data) that ``method="auto"`` marginalizes exactly.
EXACT_MAX_DATA = 400


#: The default lengthscale prior's lower end is at least the data extent divided by this.
MAX_LENGTHSCALE_RATIO = 50.0


#: Above this many HSGP basis functions, building the model warns of the cost.
LARGE_BASIS = 500


#: Factor applied to the Riutort-Mayol et al. (2022) minimum number of HSGP basis functions.
#: At the minimum, a Matérn-5/2 kernel (ℓ = 4 on a domain of 10) was off by 2.7 % of its variance
#: and shifted a physical parameter's posterior mean by 0.3 posterior sd; at 2.5x the kernel error
#: fell below 0.05 % and the posterior agreed to 0.01 sd.
HSGP_SAFETY = 2.5


_KERNELS = {"squared_exponential": "expquad", "matern52": "matern52", "matern32": "matern32"}


def _check_hyper(value: Any, what: str, owner: str) -> float | Prior | None:
    """Return ``value`` (a number as a float) if None, a positive prior or a positive number.

    Otherwise raise a TypeError or ValueError naming ``owner``.
    """
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


def _as_number(value: Any) -> Any:
    """Return a number as a float (so :attr:`GP.fixed` sees it); anything else unchanged.

    What is not a number or a prior is left for ``validate`` to reject, naming the modality.
    """
    if value is None or isinstance(value, Prior):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _frozen_coords(coords: Any) -> np.ndarray | None:
    """Return a read-only float copy of ``coords`` (the caller's array is left as it is)."""
    if coords is None:
        return None
    out = np.array(coords, dtype=float)
    out.setflags(write=False)
    return out


class _Declaration:
    """Base of the user's declarations: attributes are set in ``__init__`` and never after.

    What building a problem decides belongs to the problem
    (:class:`bayesjoint.discrepancy.builder.DiscrepancyBlock`), so one declaration can serve
    several problems.
    """

    _frozen = False

    def _freeze(self) -> None:
        object.__setattr__(self, "_frozen", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if self._frozen:
            kind = type(self).__name__
            raise AttributeError(
                f"{kind} is a declaration and does not change after construction (tried to set "
                f"{name!r}); create a new bj.discrepancy.{kind}(...) with the setting you want"
            )
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if self._frozen:
            raise AttributeError(
                f"{type(self).__name__} is a declaration and does not change after construction "
                f"(tried to delete {name!r})"
            )
        object.__delattr__(self, name)


class GP(_Declaration):
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
        ``"auto"`` marginalizes exactly up to :data:`EXACT_MAX_DATA` data per block, or when the
        HSGP basis would have at least as many functions as the block has data, and uses HSGP
        otherwise (always HSGP, with sampled coefficients, for non-Gaussian noise).
    n_basis : int, optional
        HSGP basis functions per coordinate dimension; default :data:`HSGP_SAFETY` times the
        minimum that the Riutort-Mayol et al. (2022) heuristics give for the lengthscale range
        (prior's 5-95 % quantiles, or the fixed value) and the domain
        (:func:`pymc.gp.hsgp_approx.approx_hsgp_hyperparams`). The number used and the boundary
        factor ``c`` are recorded per problem (see Notes).
    marginalize_basis : bool, optional
        HSGP route only: integrate the basis coefficients out (``True``) or sample them
        (``False``). Default: integrate out when every modality of the block has Gaussian noise
        (the only case where it is exact), sample otherwise.
    name : str, optional
        Names the hyperparameters (``<name>_lengthscale``, ``<name>_amplitude``) and, for a shared
        block (exact, or HSGP with integrated-out coefficients), the block's observed variable.
        Default ``<modality>_discrepancy`` for a single modality; required for a shared process.

    Notes
    -----
    A shared process is one :class:`GP` object attached to several modalities (directly or via
    :meth:`term`). With the exact route those modalities form **one** likelihood block whose
    observed variable is named after the process: ``log_likelihood`` then holds the joint density
    of the block's data (one value per draw), and ``observed_data`` the concatenated data (dim
    ``<name>_obs``, in modality order). The HSGP route with integrated-out coefficients (the
    default for Gaussian noise) forms the same single block. With sampled coefficients each
    modality keeps its own block and pointwise log-likelihood, conditional on ``<name>_basis``.

    A :class:`GP` is a declaration: its attributes are fixed at construction (setting one raises
    an AttributeError), and building a model never writes onto it, so one object can serve
    several problems. What a problem decides for each block lives in that problem:
    ``problem.discrepancy_blocks[block]`` (a
    :class:`~bayesjoint.discrepancy.builder.DiscrepancyBlock`) holds the route taken
    (``"exact"`` or ``"hsgp"``), the lengthscale and amplitude used (default priors included)
    and, for HSGP, the basis (``m``, ``c``, the lengthscale range, and ``coefficients``:
    ``"marginalized"`` or ``"sampled"``). Saved results carry the same in their
    ``discrepancies`` provenance attribute.

    Examples
    --------
    >>> import bayesjoint as bj
    >>> gp = bj.discrepancy.GP(kernel="matern52", lengthscale=50.0, amplitude=0.1)
    >>> gp.kernel, gp.fixed
    ('matern52', True)
    """

    @checked_init("bj.discrepancy.GP")
    def __init__(
        self,
        kernel: str = "squared_exponential",
        lengthscale: float | Prior | None = None,
        amplitude: float | Prior | None = None,
        coords: Any = None,
        *,
        method: str = "auto",
        n_basis: int | Sequence[int] | None = None,
        marginalize_basis: bool | None = None,
        name: str | None = None,
    ):
        self.kernel = kernel
        self.lengthscale = _as_number(lengthscale)
        self.amplitude = _as_number(amplitude)
        self.coords = _frozen_coords(coords)
        self.method = method
        if n_basis is not None:
            if np.ndim(n_basis) == 0:
                as_count(n_basis, "bj.discrepancy.GP(n_basis=...)", 1)
            else:
                for entry in n_basis:
                    as_count(entry, "bj.discrepancy.GP(n_basis=...) entry", 1)
        self.n_basis = n_basis
        self.marginalize_basis = marginalize_basis
        self.name = name
        self._freeze()

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
        if self.marginalize_basis is not None and not isinstance(self.marginalize_basis, bool):
            raise TypeError(
                f"{owner}: discrepancy marginalize_basis must be True, False or None, got "
                f"{self.marginalize_basis!r}"
            )
        _check_hyper(self.lengthscale, "lengthscale", owner)
        _check_hyper(self.amplitude, "amplitude", owner)

    def plan(self, n_data: int, gaussian: Sequence[bool], names: Sequence[str]) -> tuple[str, bool]:
        """Return ``(route, marginalize_basis)`` for a block of ``n_data`` data.

        ``gaussian`` tells, per modality of the block (``names``), whether its noise is Gaussian;
        a route that needs Gaussian noise raises a ValueError naming the first modality without.
        ``"auto"`` gives the exact route up to :data:`EXACT_MAX_DATA` data with Gaussian noise,
        otherwise HSGP (an HSGP basis at least as large as the block then falls back to the
        exact route, which is cheaper and exact: see
        :class:`~bayesjoint.discrepancy.builder.DiscrepancyBlock`).
        """
        others = [n for n, g in zip(names, gaussian, strict=True) if not g]
        route = self.method
        if route == "auto":
            route = "exact" if n_data <= EXACT_MAX_DATA and not others else "hsgp"
        if route == "exact":
            if others:
                raise ValueError(
                    f"modality {others[0]!r}: the exact discrepancy route needs Gaussian noise; "
                    "use bj.discrepancy.GP(method='hsgp') (coefficients sampled) for other noise"
                )
            return route, False
        marginalize = self.marginalize_basis
        if marginalize is None:
            marginalize = not others
        elif marginalize and others:
            raise ValueError(
                f"modality {others[0]!r}: integrating out the HSGP coefficients needs Gaussian "
                "noise; use marginalize_basis=False (or None) for other noise"
            )
        return route, marginalize

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


class DiscrepancyTerm(_Declaration):
    """One modality's view of a discrepancy process: coordinates and scale.

    Parameters
    ----------
    process : GP
    coords : array_like, shape (n,) or (n, d), optional
    scale : float or Prior, default 1
        The modality-specific factor ``s_k`` (a positive prior makes it learned).

    Notes
    -----
    Like :class:`GP`, a declaration: its attributes are fixed at construction.
    """

    @checked_init("bj.discrepancy.DiscrepancyTerm")
    def __init__(self, process: GP, coords: Any = None, scale: float | Prior = 1.0):
        if not isinstance(process, GP):
            raise TypeError("DiscrepancyTerm needs a bj.discrepancy.GP process")
        self.process = process
        self.coords = _frozen_coords(coords)
        self.scale = _as_number(scale)
        self._freeze()

    def validate(self, owner: str) -> None:
        """Check the process and the scale; errors name ``owner`` (the modality)."""
        self.process.validate(owner)
        _check_hyper(self.scale, "scale", owner)

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
