"""Model discrepancy: Gaussian-process terms per modality and shared across modalities.

A forward model is an approximation; the error it makes is structured. A discrepancy term adds a
Gaussian process ``δ_k`` over a modality's observation coordinates to its prediction,

    d_k = H_k(F_k(m)) + s_k δ(x_k) + ε_k,

where ``s_k`` is a per-modality scale (1 by default) and ``δ`` may be shared by several modalities
(the same :class:`GP` object attached to each). Two routes, one interface:

- **exact**: ``δ`` is integrated out, so the modality's effective covariance is
  ``Σ_noise + s_k² K(x_k, x_k)`` (Cholesky in the sampler). A shared process couples its
  modalities into one likelihood block with cross-modal covariance ``s_a s_b K(x_a, x_b)``.
- **hsgp**: Hilbert-space reduced-rank approximation (Riutort-Mayol et al. 2022, basis from
  :class:`pymc.gp.HSGP`): ``δ = Φ (β ⊙ λ)`` with ``M`` fixed basis functions ``Φ`` (n × M),
  spectral weights ``λ = √S(ω)`` (functions of the hyperparameters) and ``β ~ N(0, I)``. By default
  ``β`` is **integrated out** (Gaussian noise): the covariance is the low-rank update
  ``Σ_noise + A Aᵀ`` with ``A = s Φ diag(λ)``, evaluated with the Woodbury identity and the
  matrix-determinant lemma at ``O(n M + M³)`` per evaluation, the fixed products ``Φᵀ C⁻¹ Φ``
  computed once. The block then has one observed variable, as on the exact route. With
  ``marginalize_basis=False`` (or non-Gaussian noise) ``β`` is sampled (``<name>_basis``) and each
  modality keeps its own block, conditionally independent given ``β``; NUTS then has to explore
  ``β`` jointly with the hyperparameters, which mixes poorly when the data are many and precise.

``method="auto"`` picks the exact route up to :data:`EXACT_MAX_DATA` data per block (or while the
HSGP basis would be at least as large as the block), HSGP above, and HSGP with sampled
coefficients for non-Gaussian noise.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import scipy.linalg as sla
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from bayesjoint.priors import LogNormal, Prior

__all__ = [
    "EXACT_MAX_DATA",
    "GP",
    "HSGP_SAFETY",
    "LARGE_BASIS",
    "MAX_LENGTHSCALE_RATIO",
    "DiscrepancyTerm",
    "as_term",
    "kernel_matrix",
    "marginal_hsgp_likelihood",
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
        ``"auto"`` marginalizes exactly up to :data:`EXACT_MAX_DATA` data per block, or when the
        HSGP basis would have at least as many functions as the block has data, and uses HSGP
        otherwise (always HSGP, with sampled coefficients, for non-Gaussian noise).
    n_basis : int, optional
        HSGP basis functions per coordinate dimension; default :data:`HSGP_SAFETY` times the
        minimum that the Riutort-Mayol et al. (2022) heuristics give for the lengthscale range
        (prior's 5-95 % quantiles, or the fixed value) and the domain
        (:func:`pymc.gp.hsgp_approx.approx_hsgp_hyperparams`). The number used and the boundary
        factor ``c`` are recorded in :attr:`hsgp_settings` after the model is built.
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

    Once the model is built, :attr:`route` records the route taken (``"exact"`` or ``"hsgp"``),
    :attr:`resolved_hyperparameters` the lengthscale and amplitude used (default priors
    included) and, for HSGP, :attr:`hsgp_settings` the basis (``m``, ``c``, the lengthscale
    range, and ``coefficients``: ``"marginalized"`` or ``"sampled"``). Saved results carry the
    same in their ``discrepancies`` provenance attribute.

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
        marginalize_basis: bool | None = None,
        name: str | None = None,
    ):
        self.kernel = kernel
        self.lengthscale = lengthscale
        self.amplitude = amplitude
        self.coords = None if coords is None else np.asarray(coords, dtype=float)
        self.method = method
        self.n_basis = n_basis
        self.marginalize_basis = marginalize_basis
        self.name = name
        self.hsgp_settings: dict[str, Any] = {}
        self.route: str | None = None
        self.resolved_hyperparameters: dict[str, Any] = {}

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
        self.lengthscale = _check_hyper(self.lengthscale, "lengthscale", owner)
        self.amplitude = _check_hyper(self.amplitude, "amplitude", owner)

    def plan(self, n_data: int, gaussian: Sequence[bool], names: Sequence[str]) -> tuple[str, bool]:
        """Return ``(route, marginalize_basis)`` for a block of ``n_data`` data.

        ``gaussian`` tells, per modality of the block (``names``), whether its noise is Gaussian;
        a route that needs Gaussian noise raises a ValueError naming the first modality without.
        ``"auto"`` gives the exact route up to :data:`EXACT_MAX_DATA` data with Gaussian noise,
        otherwise HSGP (when the model is built, an HSGP basis at least as large as the block
        falls back to the exact route, which is then cheaper and exact).
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
    process.resolved_hyperparameters = {"lengthscale": ls, "amplitude": amp}
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


def hsgp_basis(
    process: GP, coords: np.ndarray, lengthscale: Any, amplitude: Any, ls_range
) -> tuple[np.ndarray, Any]:
    """Return the fixed HSGP basis ``Φ`` (n × M array) and the symbolic weights ``λ`` (M,).

    ``δ = Φ (β ⊙ λ)`` with ``β ~ N(0, I)`` has covariance ``Φ diag(λ²) Φᵀ ≈ amplitude² K``.
    Records ``m``, ``c`` and the lengthscale range in ``process.hsgp_settings``.
    """
    from pymc.gp.hsgp_approx import calc_eigenvalues, calc_eigenvectors

    m, c = hsgp_basis_settings(coords, process.kernel, ls_range, process.n_basis)
    process.hsgp_settings = {"m": m, "c": c, "lengthscale_range": list(ls_range)}
    centre = (coords.max(axis=0) + coords.min(axis=0)) / 2.0
    half_width = c * (coords.max(axis=0) - coords.min(axis=0)) / 2.0  # L, as pymc sets it
    cov = amplitude**2 * _pymc_cov(process.kernel, coords.shape[1], lengthscale)
    gp = pm.gp.HSGP(m=m, L=list(half_width), cov_func=cov)
    _, sqrt_psd = gp.prior_linearized(pt.constant(coords))
    # Φ through a compiled function of the centred coordinates: evaluating the graph on constants
    # would fold it element by element in Python (minutes for 20,000 x 1,265).
    x = pt.dmatrix("x")
    bound = pt.constant(half_width)
    basis = calc_eigenvectors(x, bound, calc_eigenvalues(bound, m), m)
    phi = pytensor.function([x], basis)(coords - centre)
    return np.asarray(phi, dtype=float), sqrt_psd


def hsgp_values(name: str, phi: np.ndarray, weights: Any) -> Any:
    """Add the HSGP basis coefficients ``<name>_basis`` and return ``δ = Φ (β ⊙ λ)``."""
    beta = pm.Normal(f"{name}_basis", 0.0, 1.0, shape=phi.shape[1])
    return pt.constant(phi) @ (beta * weights)


class _LogdetAndQuadratic(Op):
    """``log det B + sign · bᵀ B⁻¹ b`` for a symmetric positive-definite ``B``, with its gradient.

    One Cholesky factorization forward; the gradient ``∂/∂B = B⁻¹ − sign · x xᵀ``,
    ``∂/∂b = 2 sign · x`` (``x = B⁻¹ b``) needs ``B⁻¹`` (LAPACK ``potrf`` + ``potri``), about a
    third of the work of differentiating through a generic Cholesky op. A factorization that fails
    (``B`` not positive definite in floating point) gives ``+inf``, a log density of ``-inf``.
    """

    __props__ = ("sign",)

    def __init__(self, sign: float):
        self.sign = float(sign)

    def make_node(self, matrix, vector):
        matrix = pt.as_tensor_variable(matrix, dtype="float64")
        vector = pt.as_tensor_variable(vector, dtype="float64")
        return Apply(self, [matrix, vector], [pt.dscalar()])

    def perform(self, node, inputs, outputs):
        matrix, vector = inputs
        try:
            factor = sla.cholesky(matrix, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            outputs[0][0] = np.asarray(np.inf)
            return
        half = sla.solve_triangular(factor, vector, lower=True, check_finite=False)
        logdet = 2.0 * np.sum(np.log(np.diag(factor)))
        outputs[0][0] = np.asarray(logdet + self.sign * (half @ half))

    def L_op(self, inputs, outputs, output_grads):
        matrix, vector = inputs
        (grad,) = output_grads
        inverse = _spd_inverse(matrix)
        x = pt.dot(inverse, vector)
        return [grad * (inverse - self.sign * pt.outer(x, x)), grad * 2.0 * self.sign * x]


class _SPDInverse(Op):
    """Inverse of a symmetric positive-definite matrix through its Cholesky factor."""

    __props__ = ()

    def make_node(self, matrix):
        matrix = pt.as_tensor_variable(matrix, dtype="float64")
        return Apply(self, [matrix], [pt.dmatrix()])

    def perform(self, node, inputs, outputs):
        (matrix,) = inputs
        try:
            factor = sla.cholesky(matrix, lower=True, check_finite=False)
            inverse, info = sla.lapack.dpotri(factor, lower=1)
        except np.linalg.LinAlgError:
            info = 1
        if info != 0:
            outputs[0][0] = np.full_like(matrix, np.nan)
            return
        lower = np.tril(inverse)
        outputs[0][0] = lower + np.tril(inverse, -1).T


_spd_inverse = _SPDInverse()


def marginal_hsgp_likelihood(
    name: str,
    mu: Any,
    data: np.ndarray,
    phi: np.ndarray,
    weights: Any,
    sizes: Sequence[int],
    scales: Sequence[Any],
    noises: Sequence[tuple[Any, np.ndarray]],
    dims: tuple[str, ...] | None = None,
) -> Any:
    r"""Add the observed block ``name`` with the HSGP coefficients integrated out.

    The block's data (``K`` modalities of ``sizes[k]`` data, concatenated) are Gaussian,

        y ~ N(μ, D + A Aᵀ),   D = blockdiag(f_k² C_k),   A = S Φ diag(λ),

    with ``S`` repeating each modality's discrepancy scale ``s_k`` over its data and ``noises[k] =
    (f_k, C_k's fixed factor)`` from :meth:`bayesjoint.noise.Gaussian.factored`.

    Parameters
    ----------
    name : str
        Name of the observed variable.
    mu : tensor, shape (n,)
        Prediction of the physics for the concatenated data.
    data : numpy.ndarray, shape (n,)
    phi : numpy.ndarray, shape (n, M)
        Fixed basis functions at the data coordinates.
    weights : tensor, shape (M,)
        Spectral weights ``λ`` (functions of the lengthscale and amplitude).
    sizes, scales, noises : sequences of length K
        Number of data, discrepancy scale ``s_k`` and noise factors per modality.
    dims : tuple of str, optional

    Notes
    -----
    With whitened residuals ``ρ_k = L_k⁻¹ (y_k − μ_k)`` (``C_k = L_k L_kᵀ``), ``Ψ_k = L_k⁻¹ Φ_k``
    and ``G_k = Ψ_kᵀ Ψ_k`` (computed once), the Woodbury identity and the matrix-determinant lemma
    give

    .. math::

        B = I_M + \operatorname{diag}(λ) \Big(\sum_k \frac{s_k^2}{f_k^2} G_k\Big)
            \operatorname{diag}(λ), \qquad
        b = λ ⊙ \sum_k \frac{s_k}{f_k^2} Ψ_k^T ρ_k,

        -2 \log p(y) = \sum_k \frac{\|ρ_k\|^2}{f_k^2} - b^T B^{-1} b
            + \log\det B + \sum_k (2 n_k \log f_k + \log\det C_k) + n \log 2π,

    an ``M × M`` Cholesky factorization and two ``n × M`` products per evaluation. When
    ``M ≥ n`` the whitened ``n × n`` covariance ``diag(f²) + (SΨ diag λ)(SΨ diag λ)ᵀ`` is
    factorized instead, the smaller of the two. Posterior predictive draws sample ``β``, the
    discrepancy and the noise.
    """
    sizes = [int(n) for n in sizes]
    bounds = np.cumsum([0, *sizes])
    segments = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
    fixed = [np.asarray(f, dtype=float) for _, f in noises]
    psi = np.empty_like(phi)
    logdet_c = 0.0
    for seg, factor in zip(segments, fixed, strict=True):
        if factor.ndim == 1:
            psi[seg] = phi[seg] / factor[:, None]
            logdet_c += 2.0 * float(np.sum(np.log(factor)))
        else:
            psi[seg] = sla.solve_triangular(factor, phi[seg], lower=True)
            logdet_c += 2.0 * float(np.sum(np.log(np.diag(factor))))
    grams = np.stack([psi[seg].T @ psi[seg] for seg in segments])
    n, n_basis = phi.shape
    constant = logdet_c + n * np.log(2.0 * np.pi)
    dense = n_basis >= n

    def logp(value, mu, weights, scales, factors):
        resid = value - mu
        rho = []
        for seg, factor in zip(segments, fixed, strict=True):
            if factor.ndim == 1:
                rho.append(resid[seg] * (1.0 / factor))
            else:
                rho.append(pt.linalg.solve_triangular(factor, resid[seg], lower=True))
        if dense:  # M ≥ n: the n × n whitened covariance is the smaller factorization
            rep = np.repeat(np.arange(len(sizes)), sizes)
            low = (scales[rep][:, None] * psi) * weights[None, :]
            cov = pt.diag(factors[rep] ** 2) + low @ low.T
            return -0.5 * (_LogdetAndQuadratic(1.0)(cov, pt.concatenate(rho)) + constant)
        inv_f2 = 1.0 / factors**2
        sq = pt.stack([pt.sum(r**2) for r in rho])
        u = pt.concatenate([r * (scales[k] * inv_f2[k]) for k, r in enumerate(rho)])
        b = weights * pt.dot(psi.T, u)
        gram = pt.tensordot(scales**2 * inv_f2, grams, axes=1)
        inner = pt.eye(n_basis) + weights[:, None] * gram * weights[None, :]
        noise_logdet = 2.0 * pt.sum(np.array(sizes) * pt.log(factors))
        woodbury = _LogdetAndQuadratic(-1.0)(inner, b)  # log det B − bᵀ B⁻¹ b
        return -0.5 * (pt.sum(sq * inv_f2) + woodbury + noise_logdet + constant)

    def random(mu, weights, scales, factors, rng=None, size=None):
        shape = tuple(np.atleast_1d(size)) if size is not None else ()
        coeff = rng.standard_normal((*shape, n_basis)) * weights
        eps = rng.standard_normal((*shape, n))
        out = np.array(mu + (coeff @ phi.T) * np.repeat(scales, sizes), dtype=float)
        for k, (seg, factor) in enumerate(zip(segments, fixed, strict=True)):
            noise = eps[..., seg] * factor if factor.ndim == 1 else eps[..., seg] @ factor.T
            out[..., seg] += factors[k] * noise
        return out

    scale_vec = pt.stack([pt.as_tensor_variable(s, dtype="float64") for s in scales])
    factor_vec = pt.stack([pt.as_tensor_variable(f, dtype="float64") for f, _ in noises])
    return pm.CustomDist(
        name,
        pt.as_tensor_variable(mu),
        weights,
        scale_vec,
        factor_vec,
        logp=logp,
        random=random,
        signature="(n),(m),(k),(k)->(n)",
        observed=data,
        dims=dims,
    )
