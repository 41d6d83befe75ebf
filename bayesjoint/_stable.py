"""A Cholesky factor of the whitened posterior precision that survives extreme scales.

The exact path factors ``P = I + Σ_k W_kᵀ W_k`` (prior-whitened coordinates, noise-whitened
operators ``W_k``). When the data are many orders of magnitude more precise than the prior (a
noise sd of 1e-12 beside a prior sd of 1, or a prior sd of 1e6 beside a noise sd of 1e-8), the
entries of ``W_kᵀ W_k`` reach 1e24 and their rounding errors (about 1e8) swamp the identity in
the directions the data do not see: ``P`` as formed is no longer positive definite and Cholesky
fails, although the problem is well posed. Factoring the stacked matrix
``[W_1; …; W_K; I]`` by Householder QR gives the same factor without forming ``Wᵀ W``: its
``R`` satisfies ``Rᵀ R = P`` and is computed backward-stably (Golub & Van Loan, *Matrix
Computations*, 4th ed., §5.3: the least-squares view of ``P``), so the condition number is not
squared.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.linalg as sla

__all__ = ["STABLE_LIMIT", "qr_factorization"]

#: Largest diagonal entry of ``P`` (in prior-whitened units) up to which the Cholesky factor of
#: the formed ``P`` is used: beyond it, the normal equations lose more than 12 of the 16 digits
#: of double precision and the exact path factors ``[W; I]`` by QR instead.
STABLE_LIMIT = 1e12


def qr_factorization(
    whitened: Sequence[np.ndarray], targets: Sequence[np.ndarray], n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(C, z̄)`` of ``P = I + Σ_k W_kᵀ W_k`` by Householder QR of ``[W; I]``.

    Parameters
    ----------
    whitened : sequence of numpy.ndarray, each of shape (m_k, n)
        The whitened operators ``W_k``.
    targets : sequence of numpy.ndarray, each of shape (m_k,)
        What ``W_k z`` should fit: the whitened data less the prediction at the prior mean.
    n : int
        Number of parameters.

    Returns
    -------
    C : numpy.ndarray, shape (n, n)
        Lower triangular with a positive diagonal, ``C Cᵀ = P`` (Fortran order).
    z̄ : numpy.ndarray, shape (n,)
        The posterior mean in whitened coordinates, ``argmin ‖W z − t‖² + ‖z‖²``, solved from
        ``R z̄ = (Qᵀ [t; 0])[:n]`` without forming ``P``.

    Raises
    ------
    ValueError
        When an operator or a target holds NaN or inf (no factorization can help then).

    Notes
    -----
    Memory: the stacked ``(Σ m_k + n) × n`` matrix, 8 bytes per entry; the callers' dense
    ``W_k`` are of that size already.

    Examples
    --------
    >>> w = [np.array([[1e12, 1e12, 0.0]])]  # one datum 1e12 times more precise than the prior
    >>> c, z = qr_factorization(w, [np.array([2e12])], 3)
    >>> p = np.eye(3) + w[0].T @ w[0]
    >>> bool(np.allclose(c @ c.T, p, rtol=1e-12, atol=1e-12 * np.abs(p).max()))
    True
    >>> bool(abs(w[0] @ z - 2e12)[0] < 1e-3)  # the datum is fitted to its precision
    True
    """
    stacked = np.vstack([*(np.asarray(w, dtype=float) for w in whitened), np.eye(n)])
    rhs = np.concatenate([*(np.asarray(t, dtype=float).ravel() for t in targets), np.zeros(n)])
    if not (np.all(np.isfinite(stacked)) and np.all(np.isfinite(rhs))):
        raise ValueError(
            "the posterior precision cannot be factored: the whitened operators or data hold "
            "NaN or inf; check the operators and the noise for NaN, inf or zero sd"
        )
    qtb, r = sla.qr_multiply(stacked, rhs, mode="right", overwrite_a=True)
    r = r[:n]
    qtb = np.asarray(qtb).ravel()[:n]
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    r *= signs[:, None]
    qtb = qtb * signs
    mean_z = sla.solve_triangular(r, qtb, lower=False, check_finite=False)
    return np.asfortranarray(np.tril(r.T)), mean_z
