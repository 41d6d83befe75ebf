"""Kernels, the Hilbert-space (HSGP) basis and the compiled Ops of the discrepancy blocks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import scipy.linalg as sla
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from bayesjoint.discrepancy.settings import _KERNELS, GP, HSGP_SAFETY
from bayesjoint.priors import Prior

__all__ = [
    "hsgp_basis",
    "hsgp_basis_settings",
    "hsgp_values",
    "kernel_matrix",
    "symbolic_kernel",
]


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
    process: GP,
    coords: np.ndarray,
    lengthscale: Any,
    amplitude: Any,
    ls_range: tuple[float, float],
    *,
    basis: tuple[list[int], float] | None = None,
) -> tuple[np.ndarray, Any]:
    """Return the fixed HSGP basis ``Φ`` (n × M array) and the symbolic weights ``λ`` (M,).

    ``δ = Φ (β ⊙ λ)`` with ``β ~ N(0, I)`` has covariance ``Φ diag(λ²) Φᵀ ≈ amplitude² K``.
    ``basis`` is ``(m, c)`` as :func:`hsgp_basis_settings` returns it for ``ls_range`` (computed
    when omitted). ``process`` is only read.
    """
    from pymc.gp.hsgp_approx import calc_eigenvalues, calc_eigenvectors

    if basis is None:
        basis = hsgp_basis_settings(coords, process.kernel, ls_range, process.n_basis)
    m, c = basis
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
