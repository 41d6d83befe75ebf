r"""Laplace mass matrices for NUTS: dense, or low-rank + diagonal, optionally rescaled in tuning.

The preconditioned ``"nuts"`` route (:mod:`bayesjoint.inference.nuts`) uses the Laplace
covariance ``C ≈ H⁻¹`` at the MAP as NUTS's inverse mass matrix. Up to
:data:`~bayesjoint.inference.nuts.DENSE_LIMIT` sampled coordinates ``C`` is dense (the Hessian
from ``2n`` gradients, a Cholesky factor). Beyond, :func:`low_rank_laplace` builds

.. math:: C = D^{1/2} (I + V \operatorname{diag}(λ) V^T)^{-1} D^{1/2}

without forming any ``n × n`` matrix: ``D`` is the prior variance (the inverse of the prior's
curvature, diagonal for the package's priors) and ``(V, λ)`` are the leading eigenpairs of
``D^{1/2} H D^{1/2} − I``, found by Lanczos iteration (:func:`scipy.sparse.linalg.eigsh`) on
Hessian-vector products (central differences of the exact pytensor gradient).
:class:`LaplaceMass` is the PyMC potential; it applies either form in ``O(n²)`` (dense) or
``O(n k)`` (low-rank) per leapfrog step and can rescale its diagonal during tuning.
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt
import scipy.linalg as sla
import scipy.sparse.linalg as spla
from pymc.step_methods.hmc.quadpotential import QuadPotential

_log = logging.getLogger(__name__)

__all__ = [
    "DenseCovariance",
    "LaplaceMass",
    "LowRankCovariance",
    "low_rank_laplace",
    "prior_variance",
]


class DenseCovariance:
    """A dense covariance ``C = F Fᵀ`` (``F`` lower-triangular Cholesky factor).

    Parameters
    ----------
    covariance : array_like, shape (n, n)
        Symmetric positive definite.
    """

    kind = "dense"

    def __init__(self, covariance: Any):
        self.matrix = np.array(covariance, dtype=float)
        if self.matrix.ndim != 2 or self.matrix.shape[0] != self.matrix.shape[1]:
            raise ValueError(
                f"DenseCovariance covariance must be a square matrix, got shape {self.matrix.shape}"
            )
        self.n = self.matrix.shape[0]
        self.chol = sla.cholesky(self.matrix, lower=True)

    def apply(self, p: np.ndarray) -> np.ndarray:
        """Return ``C p``."""
        return self.matrix @ p

    def precision_sqrt(self, xi: np.ndarray) -> np.ndarray:
        """Return ``F⁻ᵀ ξ`` (``Cov = C⁻¹`` for standard normal ``ξ``)."""
        return sla.solve_triangular(self.chol.T, xi, lower=False)

    def sqrt(self, eps: np.ndarray) -> np.ndarray:
        """Return ``F ε`` (``Cov = C`` for standard normal ``ε``); ``eps`` (n,) or (n, m)."""
        return self.chol @ eps

    def diagonal(self) -> np.ndarray:
        """Return ``diag C``."""
        return np.diag(self.matrix).copy()

    def dense(self) -> np.ndarray:
        """Return ``C`` as an ``n × n`` array."""
        return self.matrix.copy()


class LowRankCovariance:
    """``C = S (I + V diag(λ) Vᵀ)⁻¹ S`` with ``S = diag(s)``, ``V`` orthonormal (n × k).

    Parameters
    ----------
    scale : array_like, shape (n,)
        ``s = D^{1/2}``, positive.
    vectors : array_like, shape (n, k)
        Orthonormal columns ``V``.
    eigenvalues : array_like, shape (k,)
        ``λ > −1``: the eigenvalues of ``S⁻¹ C⁻¹ S⁻¹ − I`` along ``V``.

    Notes
    -----
    With ``A = I + V Λ Vᵀ`` and ``VᵀV = I``, functions of ``A`` act as ``I + V (f(1 + λ) − 1) Vᵀ``:

    - ``C p = s ⊙ (q − V (λ/(1 + λ) ⊙ Vᵀq))``, ``q = s ⊙ p``;
    - a draw from ``N(0, C⁻¹)`` is ``s⁻¹ ⊙ (ξ + V ((√(1+λ) − 1) ⊙ Vᵀξ))``;
    - a draw from ``N(0, C)`` is ``s ⊙ (ε + V ((1/√(1+λ) − 1) ⊙ Vᵀε))``;
    - ``diag C = s² ⊙ (1 − Σ_j V_ij² λ_j/(1 + λ_j))``.

    Each costs ``O(n k)``; nothing ``n × n`` is formed.
    """

    kind = "low-rank"

    def __init__(self, scale: Any, vectors: Any, eigenvalues: Any):
        self.scale = np.asarray(scale, dtype=float).ravel()
        self.n = self.scale.size
        self.vectors = np.asarray(vectors, dtype=float).reshape(self.n, -1)
        self.eigenvalues = np.asarray(eigenvalues, dtype=float).ravel()
        if self.vectors.shape[1] != self.eigenvalues.size:
            raise ValueError(
                f"LowRankCovariance has {self.vectors.shape[1]} vectors but "
                f"{self.eigenvalues.size} eigenvalues; pass one eigenvalue per column"
            )
        if not (np.all(self.scale > 0) and np.all(np.isfinite(self.scale))):
            raise ValueError("LowRankCovariance scale must be positive and finite")
        if not np.all(self.eigenvalues > -1.0):
            raise ValueError(
                "LowRankCovariance eigenvalues must exceed -1 (I + V diag(λ) Vᵀ positive definite)"
            )
        self.k = self.eigenvalues.size
        lam = self.eigenvalues
        self._shrink = lam / (1.0 + lam)
        self._up = np.sqrt(1.0 + lam) - 1.0
        self._down = 1.0 / np.sqrt(1.0 + lam) - 1.0

    def _low_rank(self, coef: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Return ``x + V (coef ⊙ Vᵀ x)`` for ``x`` of shape (n,) or (n, m)."""
        t = self.vectors.T @ x
        return x + self.vectors @ (coef * t if x.ndim == 1 else coef[:, None] * t)

    def _scaled(self, x: np.ndarray, power: float) -> np.ndarray:
        s = self.scale**power
        return s * x if x.ndim == 1 else s[:, None] * x

    def apply(self, p: np.ndarray) -> np.ndarray:
        """Return ``C p`` in ``O(n k)``; ``p`` of shape (n,) or (n, m)."""
        return self._scaled(self._low_rank(-self._shrink, self._scaled(p, 1.0)), 1.0)

    def precision_sqrt(self, xi: np.ndarray) -> np.ndarray:
        """Return ``S⁻¹ A^{1/2} ξ`` (``Cov = C⁻¹`` for standard normal ``ξ``)."""
        return self._scaled(self._low_rank(self._up, xi), -1.0)

    def sqrt(self, eps: np.ndarray) -> np.ndarray:
        """Return ``S A^{-1/2} ε`` (``Cov = C``); ``eps`` of shape (n,) or (n, m)."""
        return self._scaled(self._low_rank(self._down, eps), 1.0)

    def diagonal(self) -> np.ndarray:
        """Return ``diag C`` in ``O(n k)``."""
        return self.scale**2 * (1.0 - (self.vectors**2) @ self._shrink)

    def dense(self) -> np.ndarray:
        """Return ``C`` as an ``n × n`` array (for tests and small problems only)."""
        return self.apply(np.eye(self.n))


class LaplaceMass(QuadPotential):
    """NUTS potential with inverse mass matrix ``a ⊙ C ⊙ a`` (``C`` a Laplace covariance).

    Parameters
    ----------
    covariance : DenseCovariance or LowRankCovariance
        ``C``, the covariance of the Laplace approximation (inverse mass matrix).
    adapt : bool, default False
        Rescale the coordinates during tuning (see Notes); False keeps ``a = 1`` (fixed ``C``).
    initial_mean : numpy.ndarray, shape (n,), optional
        The MAP: the mean the variance estimator starts from. Zeros when omitted.
    initial_weight : float, default 100
        Weight, in draws, of the Laplace variances ``diag C`` in the variance estimates.
    adaptation_window : int, default 101
    discard_window : int, default 50
        Tuning draws ignored before the estimates start (as PyMC's diagonal adaptation).
    rng : numpy.random.Generator or int, optional

    Notes
    -----
    The kinetic energy is ``K(p) = ½ pᵀ M⁻¹ p`` with ``M⁻¹ = A C A``, ``A = diag(a)``, momenta
    ``p ~ N(0, M)`` (Neal 2011, "MCMC using Hamiltonian dynamics", §5.4). With ``adapt=True``
    the scales ``a`` follow the draws during tuning, keeping the Laplace correlations:
    ``a_i = √(σ̂_i² / C_ii)``, with ``σ̂_i²`` the variance of coordinate ``i`` over the current
    window of tuning draws, pooled with ``initial_weight`` pseudo-draws of variance ``C_ii``
    (so the first windows stay close to the Laplace covariance), and ``a_i`` clipped to
    ``[1/10, 10]``. Windows follow PyMC's diagonal adaptation
    (:class:`~pymc.step_methods.hmc.quadpotential.QuadPotentialDiagAdapt`: foreground and
    background windows of ``adaptation_window`` draws). Only the diagonal adapts: a dense
    sample covariance of one window (≈ 100 draws) is singular once ``n > 100``, and the Laplace
    correlation structure is the part the draws estimate worst. ``reset`` (called by PyMC at
    the start of each chain) restores ``a = 1``.
    """

    def __init__(
        self,
        covariance: DenseCovariance | LowRankCovariance,
        *,
        adapt: bool = False,
        initial_mean: np.ndarray | None = None,
        initial_weight: float = 100.0,
        adaptation_window: int = 101,
        discard_window: int = 50,
        rng: Any = None,
    ):
        super().__init__(rng)
        self.covariance = covariance
        self.n = covariance.n
        self.dtype = np.dtype("float64")
        self.adapt = bool(adapt)
        self._diag = covariance.diagonal()
        self._initial_mean = (
            np.zeros(self.n) if initial_mean is None else np.asarray(initial_mean, dtype=float)
        )
        self._initial_weight = float(initial_weight)
        self._window0 = int(adaptation_window)
        self._discard = int(discard_window)
        self.reset()

    # -- adaptation --------------------------------------------------------------------------
    def _estimator(self) -> list[Any]:
        w = self._initial_weight
        return [w, self._initial_mean.copy(), self._diag * w]  # weight, mean, weighted sq. sum

    def reset(self) -> None:
        """Restore ``a = 1`` and empty variance estimators (start of a chain)."""
        self.a = np.ones(self.n)
        self._foreground = self._estimator()
        self._background = self._estimator()
        self._n_samples = 0
        self.window = self._window0

    @staticmethod
    def _add(est: list[Any], x: np.ndarray) -> None:
        est[0] += 1.0
        delta = x - est[1]
        est[1] = est[1] + delta / est[0]
        est[2] = est[2] + delta * (x - est[1])

    def update(self, sample: np.ndarray, grad: np.ndarray, tune: bool) -> None:
        """Add a tuning draw to the variance estimates and rescale (``adapt=True`` only)."""
        if not (self.adapt and tune):
            return
        if self._n_samples > self._discard:
            self._add(self._foreground, sample)
            self._add(self._background, sample)
        if self._n_samples > self.window:
            weight, _, sq = self._foreground
            var = sq / max(weight - 1.0, 1.0)
            self.a = np.clip(np.sqrt(var / self._diag), 0.1, 10.0)
        if self._n_samples > 0 and self._n_samples % self.window == 0:
            self._foreground = self._background
            self._background = self._estimator()
        self._n_samples += 1

    # -- QuadPotential interface ---------------------------------------------------------------
    def velocity(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray | None:
        """Return ``M⁻¹ x = a ⊙ C (a ⊙ x)`` (into ``out`` when given, then returning None)."""
        v = self.a * self.covariance.apply(self.a * x)
        if out is None:
            return v
        out[...] = v
        return None

    def energy(self, x: np.ndarray, velocity: np.ndarray | None = None) -> float:
        """Return the kinetic energy ``½ xᵀ M⁻¹ x``."""
        if velocity is None:
            velocity = self.velocity(x)
        return 0.5 * float(np.dot(x, velocity))

    def velocity_energy(self, x: np.ndarray, v_out: np.ndarray) -> float:
        """Write ``M⁻¹ x`` into ``v_out`` and return the kinetic energy."""
        self.velocity(x, out=v_out)
        return 0.5 * float(np.dot(x, v_out))

    def random(self) -> np.ndarray:
        """Draw a momentum ``p ~ N(0, M)``, ``M = A⁻¹ C⁻¹ A⁻¹``."""
        return self.covariance.precision_sqrt(self.rng.standard_normal(self.n)) / self.a

    __call__ = random

    def raise_ok(self, map_info: Any = None) -> None:
        """Raise ValueError when the scales are not finite."""
        if not np.all(np.isfinite(self.a)):
            raise ValueError("LaplaceMass scales became non-finite during adaptation")


#: The compiled gradient of the prior's log density (with the transforms' Jacobians), per model:
#: ``{model: (value variables, function)}``; an entry goes with its model.
_PRIOR_GRADIENTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _prior_gradient(model: Any) -> Any:
    """Return ``fn(*values) -> ∇ log p_prior`` (flat, in value-variable order), once per model.

    The entry is compiled again only when the model's value variables are no longer the ones it
    was compiled for (a model changed after its first use).
    """
    value_vars = tuple(model.value_vars)
    cached = _PRIOR_GRADIENTS.get(model)
    if cached is not None and len(cached[0]) == len(value_vars):
        if all(a is b for a, b in zip(cached[0], value_vars, strict=True)):  # identity
            return cached[1]
    prior = model.logp(vars=model.free_RVs, jacobian=True, sum=True)
    grads = pt.grad(prior, list(value_vars))
    flat = pt.concatenate([pt.flatten(g) for g in grads])
    fn = pytensor.function(list(value_vars), flat, on_unused_input="ignore")
    _PRIOR_GRADIENTS[model] = (value_vars, fn)
    return fn


def prior_variance(log_posterior: Any, x: np.ndarray) -> tuple[np.ndarray, str]:
    """Return ``D``: the inverse diagonal curvature of the prior at ``x``, and how it was found.

    Parameters
    ----------
    log_posterior : LogPosterior
    x : numpy.ndarray, shape (n,)
        Point (the MAP) in the sampler's coordinates.

    Returns
    -------
    variance : numpy.ndarray, shape (n,)
    how : str

    Notes
    -----
    The prior (with the transforms' Jacobians) of the package's latents acts element by element
    (a whitened Gaussian field's white noise has curvature 1, a bounded scalar's logit its own),
    so its Hessian ``P`` is diagonal and one Hessian-vector product with the all-ones vector
    gives its diagonal. That is checked with a second product along a random ±1 vector ``r``
    (``P r = diag(P) ⊙ r``); when the check fails, or a curvature is not positive and finite,
    ``D = I`` is used instead (the returned string says so).

    The compiled prior gradient is kept per model (:func:`_prior_gradient`), so a second call
    on the same model (another run, a resumed run) compiles nothing.
    """
    fn = _prior_gradient(log_posterior.model)
    names = log_posterior.value_names

    def gradient(u: np.ndarray) -> np.ndarray:
        point = log_posterior.point(u)
        return -np.asarray(fn(*[point[n] for n in names]), dtype=float)

    def hvp(v: np.ndarray) -> np.ndarray:
        h = 1e-4 * max(1.0, float(np.max(np.abs(x))))
        return (gradient(x + h * v) - gradient(x - h * v)) / (2.0 * h)

    n = x.size
    diag = hvp(np.ones(n))
    r = np.where(np.random.default_rng(0).random(n) < 0.5, -1.0, 1.0)
    check = hvp(r)
    scale = np.maximum(np.abs(diag), 1e-12)
    if (
        np.all(np.isfinite(diag))
        and np.all(diag > 0)
        and np.allclose(check, diag * r, rtol=1e-4, atol=1e-6 * scale.max())
    ):
        return 1.0 / diag, "prior variance"
    return np.ones(n), "identity (the prior curvature is not diagonal and positive)"


def low_rank_laplace(
    log_posterior: Any,
    mode: np.ndarray,
    *,
    max_rank: int = 200,
    tol: float = 0.05,
    seed: int = 0,
) -> tuple[LowRankCovariance, dict[str, Any]]:
    """Low-rank + diagonal Laplace covariance at ``mode``, matrix-free.

    Parameters
    ----------
    log_posterior : LogPosterior
    mode : numpy.ndarray, shape (n,)
        The MAP in the sampler's coordinates.
    max_rank : int, default 200
        Largest number ``k`` of eigenpairs.
    tol : float, default 0.05
        The rank grows (32, 64, 128, … up to ``max_rank``) until the smallest ``|λ|`` found is
        below ``tol``: the directions left out then have posterior sd within ``tol/2`` (relative)
        of their prior sd.
    seed : int, default 0
        Seeds Lanczos's starting vector.

    Returns
    -------
    covariance : LowRankCovariance
    info : dict
        ``rank``, ``smallest_abs_eigenvalue``, ``largest_eigenvalue``, ``hessian_vector_products``,
        ``diagonal`` (how ``D`` was found), ``seconds``, ``floored`` (directions whose curvature
        ``1 + λ`` is not positive: the MAP is not a strict maximum there).

    Notes
    -----
    ``H`` is the Hessian of ``−log p`` in the sampler's coordinates; ``D`` comes from
    :func:`prior_variance`. The prior-preconditioned Hessian ``D^{1/2} H D^{1/2} = I + (data
    part)`` differs from the identity only along the directions the data (and couplings) inform,
    so its leading eigenpairs give the optimal low-rank update of the prior to the posterior
    (Flath et al. 2011, SIAM J. Sci. Comput. 33(1), 407–432; Spantini et al. 2015, SIAM J. Sci.
    Comput. 37(6), A2451–A2487). Lanczos (``which='LM'``) finds those of largest ``|λ|``, both
    ``λ > 0`` (the data narrow the prior) and ``−1 < λ < 0`` (a coupling widens it). One
    Hessian-vector product is ``(∇f(x + h u) − ∇f(x − h u)) / (2h)`` with ``u = D^{1/2} v``
    (``2`` gradient evaluations, exact for a quadratic ``f`` up to rounding).
    """
    start = time.perf_counter()
    mode = np.asarray(mode, dtype=float)
    n = mode.size
    variance, how = prior_variance(log_posterior, mode)
    s = np.sqrt(variance)
    count = [0]
    h0 = 1e-4 * max(1.0, float(np.max(np.abs(mode))))

    def matvec(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=float).ravel()
        u = s * v
        norm = float(np.max(np.abs(u)))
        if norm == 0.0:
            return -v
        h = h0 / norm
        count[0] += 1
        g_plus = log_posterior.dlogp(mode + h * u)
        g_minus = log_posterior.dlogp(mode - h * u)
        return s * (g_minus - g_plus) / (2.0 * h) - v

    operator = spla.LinearOperator((n, n), matvec=matvec, dtype=float)
    v0 = np.random.default_rng(seed).standard_normal(n)
    cap = max(1, min(int(max_rank), n - 2))
    k = min(32, cap)
    while True:
        try:
            lam, vec = spla.eigsh(operator, k=k, which="LM", v0=v0, tol=1e-6)
        except spla.ArpackNoConvergence as err:
            # finite-difference Hessian-vector products are symmetric only to rounding: keep the
            # eigenpairs that converged (the mass matrix is then the prior's beyond them)
            lam, vec = err.eigenvalues, err.eigenvectors
            _log.warning(
                "bayesjoint: the Lanczos iteration for the low-rank Laplace mass matrix "
                "converged for %d of %d eigenpairs; using those",
                lam.size,
                k,
            )
            break
        order = np.argsort(-np.abs(lam))
        lam, vec = lam[order], vec[:, order]
        if k >= cap or np.abs(lam).min() < tol:
            break
        k = min(2 * k, cap)
    if lam.size and k >= cap and np.abs(lam).min() >= tol:
        _log.warning(
            "bayesjoint: the low-rank Laplace mass matrix reached its rank cap %d with curvature "
            "%.3g left beyond the prior's (tolerance %.3g): the data inform more directions than "
            "it holds, so NUTS may need deeper trees (raise max_rank)",
            cap,
            float(np.abs(lam).min()),
            tol,
        )
    keep = np.abs(lam) >= 0.1 * tol  # directions indistinguishable from the prior add nothing
    lam, vec = lam[keep], vec[:, keep]
    curvature = 1.0 + lam
    floor = 1e-8 * max(float(curvature.max(initial=1.0)), 1.0)
    floored = int(np.sum(curvature < floor))
    lam = np.maximum(curvature, floor) - 1.0
    info = {
        "rank": int(lam.size),
        "smallest_abs_eigenvalue": float(np.abs(lam).min()) if lam.size else math.nan,
        "largest_eigenvalue": float(lam.max()) if lam.size else math.nan,
        "hessian_vector_products": count[0],
        "diagonal": how,
        "seconds": time.perf_counter() - start,
        "floored": floored,
    }
    return LowRankCovariance(s, vec, lam), info
