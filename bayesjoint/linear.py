"""The linear-Gaussian system of a joint inversion: exact path, linearized budget, survey design.

One module assembles the system. With prior ``m ~ N(μ, L Lᵀ)`` and likelihood blocks
``d_k = A_k m + b_k + ε_k``, ``ε_k ~ N(0, Σ_k)``, the posterior is Gaussian with precision

    Λ_post = Λ_0 + Σ_k A_kᵀ Σ_k⁻¹ A_k,     Λ_0 = (L Lᵀ)⁻¹,

and mean ``Λ_post⁻¹ (Λ_0 μ + Σ_k A_kᵀ Σ_k⁻¹ (d_k − b_k))``. :class:`LinearGaussianSystem` holds
that form (pure numpy: no PyMC) and gives the posterior and the information budget.

The same assembly — priors, one block per modality or shared discrepancy, couplings — serves
every use:

- :func:`linear_gaussian_system`: the exact form of a linear-Gaussian problem (what
  :meth:`bayesjoint.JointInversion.exact_posterior` and
  :meth:`~bayesjoint.JointInversion.information_budget` use), or a ValueError naming the first part
  that is not linear-Gaussian;
- :func:`linearized_system`: the Gauss–Newton / Laplace linearization of any problem at a point
  (by default the posterior mean), where every prediction ``H_k(F_k(m))`` is replaced by its
  first-order Taylor expansion with pytensor's Jacobian, each noise model by the Gaussian it
  gives for itself (:meth:`bayesjoint.noise.Noise.linearized_factor`) and each prior by a
  Gaussian (exact when it is one, Laplace otherwise). :func:`linearized_budget` is its budget, with
  exactly the variables of the exact one, and :func:`expected_information_gain` answers the
  survey-design question "which modality next";
- the conflict check (:func:`bayesjoint.diagnostics.modality_conflict`) leaves blocks out of the
  exact system (:meth:`LinearGaussianSystem.without`) and asks :func:`noise_covariance` and
  :func:`prediction_function` for its predictive test from draws.
"""

from __future__ import annotations

import os
import warnings
import weakref
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import scipy.linalg as sla
import scipy.sparse as sp
import xarray as xr
from pytensor.graph.replace import graph_replace
from scipy.sparse.linalg import LinearOperator

try:  # pytensor >= 2.31 moved graph traversal helpers
    from pytensor.graph.traversal import ancestors
except ImportError:  # pragma: no cover - older pytensor
    from pytensor.graph.basic import ancestors

from bayesjoint.discrepancy.kernels import kernel_matrix
from bayesjoint.modality import Modality
from bayesjoint.noise import PosteriorMean
from bayesjoint.priors import GaussianField, KroneckerFactor

__all__ = [
    "COV_LIMIT",
    "DENSE_LIMIT",
    "FACTOR_CACHE_LIMIT",
    "LinearGaussianSystem",
    "PriorFactor",
    "exact_posterior",
    "expected_information_gain",
    "information_budget",
    "jacobians",
    "linear_gaussian_system",
    "linearization_point",
    "linearized_budget",
    "linearized_system",
    "noise_covariance",
    "noise_factor",
    "prediction_function",
]

_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# -- memory -----------------------------------------------------------------------------------
#: Largest number of parameters the default route factorizes densely (an ``n × n`` float64
#: matrix of 12,000² is 1.15 GB); beyond, :meth:`LinearGaussianSystem.draws` goes matrix-free.
DENSE_LIMIT = 12_000
#: Largest number of parameters for which :meth:`LinearGaussianSystem.posterior` includes the
#: ``n × n`` covariance unless asked (4,096² float64 = 134 MB).
COV_LIMIT = 4_096
#: Largest number of parameters for which the system keeps its dense Cholesky factor and its
#: inverse after the first use (2 × 4,096² float64 = 268 MB at most), so that repeated draws
#: (the exact sampling route) skip the factorization.
FACTOR_CACHE_LIMIT = 4_096
#: Working memory of one block of right-hand sides of the matrix-free route (bytes).
BLOCK_BYTES = 256 * 2**20
#: Working memory of the matrix-free route's preconditioner sketch (bytes).
SKETCH_BYTES = 2**30


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _available_memory() -> int:
    """Return the bytes this process can still allocate: the smallest of what the OS reports.

    ``MemAvailable`` of ``/proc/meminfo`` (else free pages, ``os.sysconf``) and, under a cgroup v2
    memory limit, that limit less the group's current use (without its inactive page cache).
    """
    figures = []
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    figures.append(int(line.split()[1]) * 1024)
                    break
    except OSError:
        pass
    if not figures:
        try:
            figures.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    limit = _read_int("/sys/fs/cgroup/memory.max")
    used = _read_int("/sys/fs/cgroup/memory.current")
    if limit is not None and used is not None:
        try:  # the group's reclaimable page cache counts as free
            with open("/sys/fs/cgroup/memory.stat") as fh:
                stat = dict(line.split() for line in fh if line.count(" ") == 1)
            used -= int(stat.get("inactive_file", 0))
        except (OSError, ValueError):
            pass
        figures.append(max(limit - used, 0))
    return min(figures) if figures else 2**63 - 1


def _gb(nbytes: float) -> str:
    if nbytes >= 1e8:
        return f"{nbytes / 1e9:.2f} GB"
    return f"{nbytes / 1e6:.1f} MB" if nbytes >= 1e5 else f"{nbytes / 1e3:.1f} kB"


def _require(nbytes: float, what: str, fix: str) -> None:
    """Raise a ValueError naming the figure when ``nbytes`` will not fit in memory."""
    available = _available_memory()
    if nbytes > available:
        raise ValueError(
            f"{what} needs about {_gb(nbytes)} of memory but about {_gb(available)} is "
            f"available; {fix}"
        )


# -- the prior factor, each block as what it is -----------------------------------------------
def _kron_inplace(
    buf: np.ndarray, lead: int, trail: int, factor: KroneckerFactor, transpose: bool
) -> None:
    """Apply ``factor`` (or its transpose) to the middle axes of ``buf`` seen as (lead, n, trail).

    ``buf`` is C-contiguous and is overwritten with the result; one work array of its size
    alternates with it, one axis at a time.
    """
    dims = factor.axis_shape
    work = np.empty_like(buf)
    src, dst = buf, work
    for axis, f in enumerate(factor.factors):
        a = lead * int(np.prod(dims[:axis], dtype=np.int64))
        b = int(np.prod(dims[axis + 1 :], dtype=np.int64)) * trail
        shape = (a, dims[axis], b)
        np.matmul(f.T if transpose else f, src.reshape(shape), out=dst.reshape(shape))
        src, dst = dst, src
    if src is not buf:
        buf[...] = src
    buf *= factor.scale


class PriorFactor:
    """Block-diagonal factor ``L`` of the prior covariance ``L Lᵀ``, each block as what it is.

    Parameters
    ----------
    blocks : sequence of (str, object)
        One ``(kind, value)`` per latent variable, in stacking order: ``("diagonal", sd)`` with
        the sd vector, ``("kronecker", KroneckerFactor)`` or ``("dense", L)`` with a square array.

    Notes
    -----
    Products with ``L`` and ``Lᵀ`` cost ``O(n)`` per vector for a diagonal block (a
    :class:`bayesjoint.priors.Normal` prior), ``O(n Σ n_i)`` for a Kronecker block (a
    :class:`bayesjoint.priors.GaussianField`, one grid axis at a time) and ``O(n_b²)`` for a
    dense one; no ``n × n`` matrix is formed unless :meth:`toarray` (or ``numpy.asarray``) asks.
    ``factor @ x`` is ``L x`` and ``x @ factor`` is ``x L`` for numpy arrays.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.linear import PriorFactor
    >>> factor = PriorFactor([("diagonal", np.array([1.0, 2.0])), ("dense", np.eye(1) * 3.0)])
    >>> (factor @ np.ones(3)).tolist(), factor.variances().tolist()
    ([1.0, 2.0, 3.0], [1.0, 4.0, 9.0])
    """

    def __init__(self, blocks: Sequence[tuple[str, Any]]):
        self.blocks: list[tuple[slice, str, Any]] = []
        start = 0
        for kind, value in blocks:
            if kind == "diagonal":
                value = np.asarray(value, dtype=float).ravel()
                size = value.size
            elif kind == "kronecker":
                size = value.shape[0]
            elif kind == "dense":
                value = np.asarray(value, dtype=float)
                size = value.shape[0]
            else:
                raise ValueError(f"unknown PriorFactor block kind {kind!r}")
            self.blocks.append((slice(start, start + size), kind, value))
            start += size
        self.n = start

    @classmethod
    def of(cls, *parts: Any) -> PriorFactor:
        """Return the block-diagonal factor of ``parts``, each kept as what it is.

        A part is a :class:`PriorFactor`, a :class:`bayesjoint.priors.KroneckerFactor`, a sparse
        matrix or a numpy array (diagonal ones, sparse or dense, become diagonal blocks).
        """
        blocks: list[tuple[str, Any]] = []
        for part in parts:
            if isinstance(part, PriorFactor):
                blocks.extend((kind, value) for _, kind, value in part.blocks)
            elif isinstance(part, KroneckerFactor):
                blocks.append(("kronecker", part))
            elif sp.issparse(part):
                part = sp.csr_array(part)
                diag = part.diagonal()
                if part.count_nonzero() == np.count_nonzero(diag):
                    blocks.append(("diagonal", diag))
                else:
                    blocks.append(("dense", part.toarray()))
            else:
                arr = np.asarray(part, dtype=float)
                if arr.ndim == 0:
                    arr = arr.reshape(1, 1)
                if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
                    raise ValueError(f"a prior factor must be square, got shape {arr.shape}")
                diag = np.diagonal(arr)
                if np.count_nonzero(arr) == np.count_nonzero(diag):
                    blocks.append(("diagonal", diag.copy()))
                else:
                    blocks.append(("dense", arr))
        return cls(blocks)

    shape = property(lambda self: (self.n, self.n), doc="``(n, n)``.")
    ndim = 2
    dtype = np.dtype(float)
    __array_ufunc__ = None  # ``x @ factor`` for a numpy ``x`` calls :meth:`__rmatmul__`

    @property
    def is_diagonal(self) -> bool:
        """True when every block is diagonal."""
        return all(kind == "diagonal" for _, kind, _ in self.blocks)

    def left(self, x: np.ndarray, transpose: bool = False) -> np.ndarray:
        """Overwrite a C-contiguous ``x`` of shape (n,) or (n, k) with ``L x`` (``Lᵀ x``)."""
        if not x.flags.c_contiguous:
            raise ValueError("PriorFactor.left needs a C-contiguous array")
        x2 = x.reshape(self.n, -1)
        k = x2.shape[1]
        for sl, kind, value in self.blocks:
            if kind == "diagonal":
                x2[sl] *= value[:, None]
            elif kind == "kronecker":
                _kron_inplace(x2[sl], 1, k, value, transpose)
            else:
                x2[sl] = (value.T if transpose else value) @ x2[sl]
        return x

    def right(self, x: np.ndarray, transpose: bool = False) -> np.ndarray:
        """Overwrite a C-contiguous ``x`` of shape (r, n) with ``x L`` (``x Lᵀ``)."""
        if not x.flags.c_contiguous:
            raise ValueError("PriorFactor.right needs a C-contiguous array")
        x2 = x.reshape(-1, self.n)
        rows = x2.shape[0]
        for sl, kind, value in self.blocks:
            if kind == "diagonal":
                x2[:, sl] *= value
            elif kind == "kronecker":  # x L acts on the column axes with the transposed factors
                if sl.stop - sl.start == self.n:
                    _kron_inplace(x2, rows, 1, value, not transpose)
                else:
                    part = np.ascontiguousarray(x2[:, sl])
                    _kron_inplace(part, rows, 1, value, not transpose)
                    x2[:, sl] = part
            else:
                x2[:, sl] = x2[:, sl] @ (value.T if transpose else value)
        return x

    def squared(self, v: np.ndarray, transpose: bool = False) -> np.ndarray:
        """Return ``(L∘L) v`` (or ``(L∘L)ᵀ v``) for a vector ``v``: elementwise-squared factor."""
        out = np.array(v, dtype=float).reshape(self.n, 1)
        for sl, kind, value in self.blocks:
            if kind == "diagonal":
                out[sl] *= value[:, None] ** 2
            elif kind == "kronecker":
                _kron_inplace(out[sl], 1, 1, value.squared(), transpose)
            else:
                out[sl] = (value.T**2 if transpose else value**2) @ out[sl]
        return out.ravel()

    def variances(self) -> np.ndarray:
        """Return ``diag(L Lᵀ)``, the prior variances, without forming ``L Lᵀ``."""
        return self.squared(np.ones(self.n))

    def toarray(self) -> np.ndarray:
        """Return the dense ``n × n`` factor (``O(n²)`` memory)."""
        _require(
            8.0 * self.n**2,
            f"the dense {self.n} × {self.n} prior factor",
            "use the factor's products (factor @ x) instead",
        )
        dense = np.zeros((self.n, self.n))
        for sl, kind, value in self.blocks:
            if kind == "diagonal":
                dense[sl, sl] = np.diag(value)
            elif kind == "kronecker":
                dense[sl, sl] = value.toarray()
            else:
                dense[sl, sl] = value
        return dense

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        dense = self.toarray()
        return dense if dtype is None else dense.astype(dtype)

    def __matmul__(self, x: Any) -> np.ndarray:
        if sp.issparse(x):
            x = x.toarray()
        return self.left(np.array(x, dtype=float, order="C"))

    def __rmatmul__(self, x: Any) -> np.ndarray:
        if sp.issparse(x):
            x = x.toarray()
        return self.right(np.array(x, dtype=float, order="C"))

    def aslinearoperator(self) -> LinearOperator:
        """Return ``L`` as a :class:`scipy.sparse.linalg.LinearOperator`."""
        return LinearOperator(
            (self.n, self.n),
            matvec=lambda x: self @ np.ravel(x),
            rmatvec=lambda x: self.left(np.array(np.ravel(x), dtype=float), transpose=True),
            matmat=lambda x: self @ x,
            rmatmat=lambda x: self.left(np.array(x, dtype=float, order="C"), transpose=True),
            dtype=float,
        )

    def __repr__(self) -> str:
        kinds = ", ".join(f"{kind} {sl.stop - sl.start}" for sl, kind, _ in self.blocks)
        return f"PriorFactor(n={self.n}: {kinds})"


# -- matrix-free solves -----------------------------------------------------------------------
#: Seed of the random sketch behind the matrix-free preconditioner (so it is reproducible).
SKETCH_SEED = 20_261_203
#: The preconditioner's sketch grows until its smallest eigenvalue is at most this.
NYSTROM_TARGET = 1.0


def _pcg(
    apply: Any, b: np.ndarray, precondition: Any, rtol: float, maxiter: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """Solve ``P X = B`` column by column with preconditioned conjugate gradients.

    All columns advance together (one product ``P Y`` of an ``n × k`` block per iteration, one
    application of the preconditioner ``M⁻¹``); a column stops once ``‖r_j‖ ≤ rtol ‖b_j‖`` and
    leaves the block.
    """
    k = b.shape[1]
    x = np.zeros_like(b)
    norms = np.linalg.norm(b, axis=0)
    target = rtol * norms
    active = np.flatnonzero(norms > 0.0)
    r = b[:, active].copy()
    z = precondition(r)
    p = z.copy()
    rz = np.einsum("ij,ij->j", r, z)
    xa = np.zeros_like(r)
    it = 0
    while active.size and it < maxiter:
        it += 1
        q = apply(p)
        alpha = rz / np.einsum("ij,ij->j", p, q)
        xa += alpha * p
        r -= alpha * q
        done = np.linalg.norm(r, axis=0) <= target[active]
        if done.any():
            x[:, active[done]] = xa[:, done]
            keep = ~done
            active, xa, r, p, rz = active[keep], xa[:, keep], r[:, keep], p[:, keep], rz[keep]
            if not active.size:
                break
        z = precondition(r)
        rz_new = np.einsum("ij,ij->j", r, z)
        p *= rz_new / rz
        p += z
        rz = rz_new
    residual = 0.0
    if active.size:
        x[:, active] = xa
        residual = float(np.max(np.linalg.norm(r, axis=0) / norms[active]))
        warnings.warn(
            f"conjugate gradients stopped after maxiter={maxiter} iterations with "
            f"{active.size} of {k} right-hand sides at relative residual {residual:.2e} > "
            f"rtol={rtol:g}; raise maxiter or use method='dense'",
            RuntimeWarning,
            stacklevel=4,
        )
    return x, {"iterations": it, "unconverged": int(active.size), "residual": residual}


def _nystrom(
    apply_data: Any, n: int, max_rank: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(U, λ̂)``, a randomized Nyström approximation ``A ≈ U diag(λ̂) Uᵀ`` of a PSD ``A``.

    The sketch grows (32, 64, …, ``max_rank`` columns, earlier products reused) until the
    smallest kept eigenvalue is at most :data:`NYSTROM_TARGET` or stops halving: then ``I + A``
    preconditioned by :func:`_nystrom_inverse` has a condition number of about ``1 + λ̂_ℓ``.

    Notes
    -----
    Frangella, Tropp & Udell 2023, *SIAM J. Matrix Anal. Appl.* 44, 718 (Algorithms 2.1 and
    5.4), with a Gaussian test matrix ``Ω`` (Tropp, Yurtsever, Udell & Cevher 2017, NeurIPS 30,
    "Fixed-rank approximation of a positive-semidefinite matrix from streaming data"):
    ``Y = A Ω``, a shift ``ν`` of the size of the round-off, ``Y_ν = Y + νΩ``,
    ``Cᵀ C = Ωᵀ Y_ν`` and ``B = Y_ν C⁻¹ = U Σ Vᵀ``; then ``λ̂ = max(Σ² − ν, 0)``.
    ``Σ`` and ``V`` come from the small ``Bᵀ B = C⁻ᵀ (Y_νᵀ Y_ν) C⁻¹``, whose pieces ``ΩᵀΩ``,
    ``ΩᵀY`` and ``YᵀY`` are updated as the sketch grows, so that each size costs ``O(ℓ³)``
    besides its new products; ``U = B V Σ⁻¹`` is formed once.
    """
    omega = np.empty((n, max_rank))
    y = np.empty((n, max_rank))
    oo, oy, yy = (np.empty((max_rank, max_rank)) for _ in range(3))
    done, size, previous = 0, min(32, max_rank), np.inf
    while True:
        new = slice(done, size)
        omega[:, new] = rng.standard_normal((n, size - done))
        y[:, new] = apply_data(omega[:, new])
        for gram, left, right in ((oo, omega, omega), (oy, omega, y), (yy, y, y)):
            gram[:size, new] = left[:, :size].T @ right[:, new]
            gram[new, :done] = left[:, new].T @ right[:, :done]
        done = size
        o_o, o_y, y_y = oo[:size, :size], oy[:size, :size], yy[:size, :size]
        shift = np.sqrt(n) * np.finfo(float).eps * np.sqrt(np.trace(y_y))
        core = o_y + shift * o_o  # Ωᵀ Y_ν
        chol = sla.cholesky(0.5 * (core + core.T), lower=False)
        yv = y_y + shift * (o_y + o_y.T) + shift**2 * o_o  # Y_νᵀ Y_ν
        half = sla.solve_triangular(chol, yv, trans="T", lower=False)
        small = sla.solve_triangular(chol, half.T, trans="T", lower=False)  # C⁻ᵀ Y_νᵀY_ν C⁻¹
        sigma2, vecs = np.linalg.eigh(0.5 * (small + small.T))
        sigma2, vecs = np.clip(sigma2[::-1], 0.0, None), vecs[:, ::-1]
        lam = np.maximum(sigma2 - shift, 0.0)
        if lam[-1] <= NYSTROM_TARGET or lam[-1] > 0.5 * previous or size >= max_rank:
            break
        previous, size = lam[-1], min(2 * size, max_rank)
    keep = sigma2 > 0.0
    coef = sla.solve_triangular(chol, vecs[:, keep], lower=False) / np.sqrt(sigma2[keep])
    u = (y[:, :size] + shift * omega[:, :size]) @ coef  # Y_ν C⁻¹ V Σ⁻¹
    return u, lam[keep]


def _nystrom_inverse(u: np.ndarray, lam: np.ndarray) -> Any:
    """Return ``R ↦ M⁻¹ R`` for ``M ≈ I + U diag(λ̂) Uᵀ`` (Frangella, Tropp & Udell 2023, eq. 5.3).

    ``M⁻¹ = (λ̂_ℓ + 1) U diag(1 / (λ̂ + 1)) Uᵀ + (I − U Uᵀ)``.
    """
    weights = (lam[-1] + 1.0) / (lam + 1.0) - 1.0

    def apply(r: np.ndarray) -> np.ndarray:
        return r + u @ (weights[:, None] * (u.T @ r))

    return apply


def _gram_chunks(g: Any) -> Iterator[sp.csr_array]:
    """Yield ``G_cᵀ G_c`` over chunks of rows of a sparse ``G``; they sum to ``Gᵀ G``.

    A chunk holds at most ``BLOCK_BYTES / 24`` row-pair products (the bound ``Σ nnz_row²`` on its
    product's non-zeros), so no single product outgrows the working memory.
    """
    g = sp.csr_array(g)
    pairs = np.cumsum(np.diff(g.indptr).astype(float) ** 2)
    budget = BLOCK_BYTES / 24.0
    start = 0
    while start < g.shape[0]:
        base = pairs[start - 1] if start else 0.0
        stop = int(np.searchsorted(pairs, base + budget, side="right"))
        stop = max(stop, start + 1)
        part = g[start:stop]
        yield sp.csr_array(part.T @ part)
        start = stop


# -- the system -------------------------------------------------------------------------------
def _logdet_spd(matrix: np.ndarray) -> float:
    """Return ``log det`` of a symmetric positive definite matrix via its Cholesky factor."""
    chol = sla.cholesky(matrix, lower=True)
    return 2.0 * float(np.sum(np.log(np.diag(chol))))


def _dense(matrix: Any) -> np.ndarray:
    return matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix, dtype=float)


@dataclass(frozen=True)
class LinearGaussianSystem:
    """A linear-Gaussian joint inversion in flat form.

    Parameters
    ----------
    labels : sequence of str
        One label per element of the stacked latent vector.
    latent_of : sequence of str
        Latent variable name of each element.
    prior_mean : numpy.ndarray, shape (n,)
    prior_factor : numpy.ndarray or PriorFactor, shape (n, n)
        Lower-triangular factor ``L`` of the prior covariance ``L Lᵀ``. The assembly gives a
        :class:`PriorFactor` (diagonal and Kronecker blocks never formed densely);
        ``numpy.asarray`` turns it into the dense matrix.
    modalities : sequence of str
        Modality names.
    operators : sequence of numpy.ndarray or scipy.sparse matrix
        Per modality, the noise-whitened forward operator ``G_k = R_k⁻¹ A_k`` (shape (m_k, n)),
        where ``Σ_k = R_k R_kᵀ``. A sparse operator with diagonal noise stays sparse.
    residuals : sequence of numpy.ndarray
        Per modality, the noise-whitened data ``R_k⁻¹ (d_k − b_k)``.

    Notes
    -----
    All computations run in the prior-whitened coordinates ``z = L⁻¹ (m − μ)``, where the
    posterior precision is ``P = I + Σ_k W_kᵀ W_k`` with ``W_k = G_k L``. ``P`` is always
    well-conditioned (eigenvalues ≥ 1), so its Cholesky factor is stable even when the prior
    covariance is nearly singular. Back in model coordinates, ``mean = μ + L P⁻¹ Σ W_kᵀ r̃_k``
    and ``cov = L P⁻¹ Lᵀ``. The information gain of the data is
    ``½ log det(Λ_post Λ_0⁻¹) = ½ log det P`` nats.

    Two routes give the posterior mean and draws (:meth:`posterior`, :meth:`draws`):

    - **dense** (default up to :data:`DENSE_LIMIT` parameters, when it fits in memory): ``P`` is
      formed from the sparse products ``G_kᵀ G_k`` with ``L`` applied on both sides one block
      (one grid axis) at a time, and factorized by LAPACK's Cholesky ``P = C Cᵀ``; a draw is
      ``z̄ + C⁻ᵀ ε``, ``ε ~ N(0, I)``, and the sds are the row norms of ``L C⁻ᵀ``;
    - **matrix-free** (beyond, or ``method="matrix-free"``): perturbation-optimization
      (Papandreou & Yuille 2010, NIPS 23, 1858; Orieux, Féron & Giovannelli 2012, IEEE Signal
      Process. Lett. 19, 251): with ``η₀ ~ N(0, I_n)`` and ``η_k ~ N(0, I_{m_k})``, the solution
      of ``P x = η₀ + Σ_k W_kᵀ η_k`` is ``N(0, P⁻¹)`` (its covariance is ``P⁻¹ P P⁻¹``), so
      ``z̄ + x`` is an exact draw. Each solve is preconditioned conjugate gradients on the
      products ``P y = y + Lᵀ Σ_k G_kᵀ G_k L y`` (sparse ``G_k``, or the sparse ``G_kᵀ G_k`` when
      it is smaller), many right-hand sides at once. The preconditioner is the diagonal of
      ``P`` for a diagonal ``L``, else a randomized Nyström approximation of the data term
      (Frangella, Tropp & Udell 2023, SIAM J. Matrix Anal. Appl. 44, 718), which takes out the
      few large eigenvalues a correlated prior leaves. Since ``P ⪰ I``, a residual ``r`` leaves
      an error ``‖x̂ − x‖₂ ≤ ‖r‖₂`` in the whitened coordinates: ``rtol · ‖b‖₂`` at most.

    Every dense allocation is checked against the available memory first, and a problem that
    will not fit is refused with a ValueError giving the figure.
    """

    labels: Sequence[str]
    latent_of: Sequence[str]
    prior_mean: np.ndarray
    prior_factor: np.ndarray | PriorFactor
    modalities: Sequence[str]
    operators: Sequence[np.ndarray | sp.sparray | sp.spmatrix]
    residuals: Sequence[np.ndarray]

    @property
    def n(self) -> int:
        """Number of latent parameters."""
        return int(self.prior_mean.size)

    @property
    def prior_operator(self) -> PriorFactor:
        """The prior factor ``L`` as a :class:`PriorFactor` (structured, never densified)."""
        factor = self.prior_factor
        return factor if isinstance(factor, PriorFactor) else PriorFactor.of(factor)

    def whitened(self) -> list[np.ndarray]:
        """Return ``W_k = G_k L`` per modality (dense arrays, shape (m_k, n)).

        Raises
        ------
        ValueError
            When the dense ``W_k`` will not fit in memory (the figure is in the message).
        """
        rows = sum(g.shape[0] for g in self.operators)
        _require(
            8.0 * rows * self.n,
            f"the dense whitened operators ({rows} × {self.n})",
            "use posterior() or draws(), which keep sparse operators sparse",
        )
        factor = self.prior_operator
        return [
            factor.right(g.toarray() if sp.issparse(g) else np.array(g, dtype=float, order="C"))
            for g in self.operators
        ]

    def without(self, names: Collection[str]) -> LinearGaussianSystem:
        """Return the system with the blocks (modalities, couplings) named in ``names`` left out.

        Examples
        --------
        >>> import numpy as np
        >>> system = LinearGaussianSystem(["x"], ["x"], np.zeros(1), np.eye(1), ["a", "b"],
        ...                               [np.eye(1), np.eye(1)], [np.ones(1)] * 2)
        >>> list(system.without(["a"]).modalities)
        ['b']
        """
        keep = [k for k, name in enumerate(self.modalities) if name not in names]
        return replace(
            self,
            modalities=[self.modalities[k] for k in keep],
            operators=[self.operators[k] for k in keep],
            residuals=[self.residuals[k] for k in keep],
        )

    def _coords(self) -> dict[str, object]:
        return {
            "parameter": list(self.labels),
            "parameter_": list(self.labels),
            "latent": ("parameter", list(self.latent_of)),
        }

    # -- the pieces both routes share -----------------------------------------------------
    def _rhs(self) -> np.ndarray:
        """Return ``Σ_k W_kᵀ (r̃_k − G_k μ)`` (whitened coordinates), sparse products only."""
        rhs = np.zeros(self.n)
        for g, r in zip(self.operators, self.residuals, strict=True):
            rhs += np.asarray(g.T @ (r - g @ self.prior_mean)).ravel()
        return self.prior_operator.left(rhs, transpose=True)

    def _dense_bytes(self, n_draws: int = 0, cov: bool = False, sd: bool = False) -> float:
        """Peak bytes of the dense route: ``P`` and one work matrix, draws, sd and cov."""
        n2 = float(self.n) ** 2
        return 8.0 * (2 * n2 + (n2 if cov else 0.0) + 3.0 * n_draws * self.n) + max(
            self._gram_chunk_bytes(), 8.0 * n2 if sd else 0.0
        )

    def _gram_chunk_bytes(self) -> float:
        """Bound on the bytes of one chunk product of :func:`_gram_chunks` (with its indices)."""
        bound = 0.0
        for g in self.operators:
            if sp.issparse(g):
                pairs = float(np.sum(np.diff(sp.csr_array(g).indptr).astype(float) ** 2))
                bound = max(bound, min(pairs, float(self.n) ** 2))
        return min(40.0 * bound, BLOCK_BYTES * 40.0 / 24.0)

    def _block_columns(self, n_draws: int, rows: int | None = None) -> int:
        """Right-hand sides per matrix-free block, from :data:`BLOCK_BYTES`.

        ``rows``: the most rows of a ``G_k`` whose product ``G_k U`` the solves form (default:
        of any ``G_k``, the bound before :meth:`_data_operator` has chosen its products).
        """
        if rows is None:
            rows = max((g.shape[0] for g in self.operators), default=0)
        per_column = 8.0 * (9 * self.n + 2 * rows)
        return int(max(1, min(n_draws, BLOCK_BYTES // per_column)))

    def _matrix_free_bytes(self, n_draws: int) -> float:
        """Peak bytes of the matrix-free route: the draws, one block, preconditioner, operators."""
        rows = max((g.shape[0] for g in self.operators), default=0)
        operators = sum(
            16.0 * g.nnz if sp.issparse(g) else 8.0 * g.shape[0] * g.shape[1]
            for g in self.operators
        )
        block = self._block_columns(max(n_draws, 1)) * 8.0 * (9 * self.n + 2 * rows)
        sketch = 0.0 if self.prior_operator.is_diagonal else 48.0 * self.n * min(self.n // 2, 2048)
        sketch_and_gram = min(sketch, SKETCH_BYTES) + self._gram_chunk_bytes()
        return 8.0 * 3 * max(n_draws, 1) * self.n + block + sketch_and_gram + 2 * operators

    def _route(self, method: str, n_draws: int, *, cov: bool = False, sd: bool = False) -> str:
        """Return ``"dense"`` or ``"matrix-free"`` for ``method``; refuse what will not fit."""
        if method not in ("auto", "dense", "matrix-free"):
            raise ValueError(f"method={method!r} unknown; choose 'auto', 'dense' or 'matrix-free'")
        if cov and method == "matrix-free":
            raise ValueError(
                "the covariance needs the dense route; use method='auto' or 'dense', or cov=False"
            )
        dense = self._dense_bytes(n_draws, cov=cov, sd=sd)
        what = f"the dense posterior precision of {self.n} parameters ({self.n} × {self.n})"
        if method == "dense" or cov:
            fix = (
                "leave the covariance out (cov=False)"
                if cov
                else "use method='matrix-free' (conjugate-gradient draws)"
            )
            _require(dense, what + (" with its covariance" if cov else ""), fix)
            return "dense"
        free = self._matrix_free_bytes(n_draws)
        if method == "auto" and self.n <= DENSE_LIMIT and dense <= _available_memory():
            return "dense"
        _require(
            free,
            f"{n_draws} matrix-free draws of {self.n} parameters (dense route: {_gb(dense)})",
            "ask for fewer draws at a time",
        )
        return "matrix-free"

    # -- the dense route ------------------------------------------------------------------
    def _precision(self) -> np.ndarray:
        """Return ``P = I + Lᵀ (Σ G_kᵀ G_k) L``, C-contiguous, from sparse products."""
        p = np.zeros((self.n, self.n))
        flat = p.reshape(-1)
        for g in self.operators:
            if sp.issparse(g):
                for part in _gram_chunks(g):  # no duplicate entries within one product
                    rows = np.repeat(np.arange(self.n, dtype=np.int64), np.diff(part.indptr))
                    flat[rows * self.n + part.indices] += part.data
            else:
                g = np.asarray(g, dtype=float)
                p += g.T @ g
        factor = self.prior_operator
        factor.left(p, transpose=True)
        factor.right(p)
        p[np.diag_indices(self.n)] += 1.0
        return p

    def _factorization(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(C, z̄)``: the Cholesky factor of ``P`` and the whitened mean ``P⁻¹ b``.

        Kept on the system (computed once) up to :data:`FACTOR_CACHE_LIMIT` parameters, so that
        repeated draws (the exact sampling route) cost triangular solves only. The factor is
        read-only once kept: callers that overwrite must copy.
        """
        kept = self.__dict__.get("_kept_factorization")
        if kept is not None:
            return kept
        chol = self._cholesky()
        mean_z = self.__dict__.pop("_stable_mean", None)
        if mean_z is None:
            mean_z = sla.cho_solve((chol, True), self._rhs(), check_finite=False)
        if self.n <= FACTOR_CACHE_LIMIT:
            chol.setflags(write=False)
            mean_z.setflags(write=False)
            object.__setattr__(self, "_kept_factorization", (chol, mean_z))  # frozen dataclass
        return chol, mean_z

    def _draw_operator(self) -> np.ndarray | None:
        """Return ``C⁻¹`` (dense, lower triangular) when the factorization is kept, else None.

        With it, the whitened draws of a block of ``ε`` rows are the product ``z̄ + ε C⁻¹``
        (one matrix product, as fast as drawing from a covariance factor) instead of a
        triangular solve per call.
        """
        kept = self.__dict__.get("_kept_draw_operator")
        if kept is not None or "_kept_factorization" not in self.__dict__:
            return kept
        chol, _ = self._factorization()
        inverse, info = sla.lapack.dtrtri(chol, lower=1, overwrite_c=0)
        if info != 0:  # pragma: no cover - C has a positive diagonal (P ⪰ I)
            return None
        inverse = np.ascontiguousarray(np.tril(inverse))
        inverse.setflags(write=False)
        object.__setattr__(self, "_kept_draw_operator", inverse)
        return inverse

    def _cholesky(self) -> np.ndarray:
        """Return the lower Cholesky factor ``C`` of ``P`` (Fortran order, built in place)."""
        p = self._precision()
        # P ⪰ I, but when the data are far more precise than the prior the rounding of
        # Σ G_kᵀ G_k swamps I: then [W; I] is factored by QR (bayesjoint._stable)
        from bayesjoint._stable import STABLE_LIMIT, qr_factorization

        extreme = float(np.max(p.diagonal())) > STABLE_LIMIT
        chol, info = sla.lapack.dpotrf(p.T, lower=1, clean=1, overwrite_a=1)
        if info == 0 and not extreme:
            return chol
        try:
            targets = [
                np.asarray(r - g @ self.prior_mean).ravel()
                for g, r in zip(self.operators, self.residuals, strict=True)
            ]
            chol, mean_z = qr_factorization(self.whitened(), targets, self.n)
        except ValueError:
            if info == 0:  # the dense [W; I] does not fit: keep the Cholesky factor
                return chol
            raise
        object.__setattr__(self, "_stable_mean", mean_z)  # read once by _factorization
        return chol

    # -- the matrix-free route ------------------------------------------------------------
    def _data_operator(self) -> tuple[Any, int]:
        """Return ``U ↦ Σ_k G_kᵀ G_k U`` on (n, k) blocks, by the cheaper of two products.

        Per block, the sparse ``G_kᵀ G_k`` (formed in row chunks, given up as soon as it has
        ``2 nnz(G_k)`` non-zeros) or ``G_kᵀ (G_k U)``. Also returns the most rows of a ``G_k``
        kept as such (0 when every block uses ``G_kᵀ G_k``).
        """
        terms = []
        for g in self.operators:
            if sp.issparse(g):
                g = sp.csr_array(g)
                gram = None
                for part in _gram_chunks(g):  # stop as soon as it is the dearer product
                    gram = part if gram is None else gram + part
                    if gram.nnz >= 2 * g.nnz:
                        gram = None
                        break
                terms.append((g, sp.csr_array(g.T)) if gram is None else (sp.csr_array(gram), None))
            else:
                g = np.asarray(g, dtype=float)
                if g.shape[1] <= g.shape[0] and 8.0 * g.shape[1] ** 2 <= BLOCK_BYTES:
                    terms.append((g.T @ g, None))
                else:
                    terms.append((g, g.T))

        def apply(u: np.ndarray) -> np.ndarray:
            v = np.zeros_like(u)
            for g, gt in terms:
                v += g @ u if gt is None else gt @ (g @ u)
            return v

        return apply, max((g.shape[0] for g, gt in terms if gt is not None), default=0)

    def _precision_operator(self) -> tuple[Any, Any, dict[str, Any]]:
        """Return ``Y ↦ P Y`` on (n, k) blocks, a preconditioner ``R ↦ M⁻¹ R`` and its notes.

        The preconditioner: for a diagonal ``L`` (independent normal priors) the exact diagonal
        of ``P`` (Jacobi); otherwise a randomized Nyström approximation of ``Lᵀ (Σ G_kᵀ G_k) L``
        (:func:`_nystrom`), whose few large eigenvalues (the smooth modes a correlated prior lets
        the data see) are what slows conjugate gradients.
        """
        factor = self.prior_operator
        data, rows = self._data_operator()
        block = self._block_columns(self.n, rows)

        def apply_data(y: np.ndarray) -> np.ndarray:  # Lᵀ H L Y, in column blocks
            out = np.empty_like(y)
            for start in range(0, y.shape[1], block):
                u = factor.left(np.array(y[:, start : start + block], order="C"))
                out[:, start : start + block] = factor.left(data(u), transpose=True)
            return out

        def apply(y: np.ndarray) -> np.ndarray:
            v = apply_data(y)
            v += y
            return v

        if factor.is_diagonal:
            gram_diag = np.zeros(self.n)
            for g in self.operators:
                gram_diag += (
                    np.asarray(sp.csr_array(g).multiply(g).sum(axis=0)).ravel()
                    if sp.issparse(g)
                    else np.einsum("ij,ij->j", g, g)
                )
            inv_diag = 1.0 / (1.0 + factor.squared(gram_diag, transpose=True))
            notes = {"preconditioner": "Jacobi", "rows": rows}
            return apply, lambda r: r * inv_diag[:, None], notes
        max_rank = min(self.n // 2, 2048, int(SKETCH_BYTES // (48.0 * self.n)))
        if max_rank < 16:
            return apply, lambda r: r, {"preconditioner": "none", "rows": rows}
        u, lam = _nystrom(apply_data, self.n, max_rank, np.random.default_rng(SKETCH_SEED))
        notes = {
            "preconditioner": f"Nystrom rank {lam.size}",
            "smallest_eigenvalue": float(lam[-1]),
            "rows": rows,
        }
        return apply, _nystrom_inverse(u, lam), notes

    def _matrix_free(
        self, rtol: float, maxiter: int | None, mean_rtol: float
    ) -> tuple[np.ndarray, Any, dict]:
        """Return the whitened mean ``z̄``, a block solver ``B ↦ P⁻¹ B`` and notes.

        The mean is solved to ``mean_rtol``, the blocks to ``rtol``.
        """
        apply, precondition, notes = self._precision_operator()
        cap = 10 * self.n if maxiter is None else int(maxiter)

        def solve(rhs: np.ndarray, tol: float = rtol) -> tuple[np.ndarray, dict[str, Any]]:
            return _pcg(apply, rhs, precondition, tol, cap)

        mean_z, info = solve(self._rhs()[:, None], mean_rtol)
        return mean_z[:, 0], solve, {**notes, **info}

    def _perturbed(
        self, n_draws: int, rng: np.random.Generator, solve: Any, mean_z: np.ndarray, rows: int
    ) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
        """Yield blocks of whitened draws, shape (k, n), by perturbation-optimization."""
        factor = self.prior_operator
        block = self._block_columns(n_draws, rows)
        for start in range(0, n_draws, block):
            k = min(block, n_draws - start)
            data = np.zeros((self.n, k))
            chunk = max(1024, int(BLOCK_BYTES // (16.0 * k)))  # rows of η_k at a time
            for g in self.operators:  # Σ G_kᵀ η_k, then Lᵀ: the data perturbation W_kᵀ η_k
                g = sp.csr_array(g) if sp.issparse(g) else g
                for c0 in range(0, g.shape[0], chunk):
                    part = g[c0 : c0 + chunk]
                    data += np.asarray(part.T @ rng.standard_normal((part.shape[0], k)))
            rhs = rng.standard_normal((self.n, k)) + factor.left(data, transpose=True)
            x, info = solve(rhs)
            z = np.ascontiguousarray(x.T)
            z += mean_z
            yield z, {**info, "block": k}

    # -- what the system gives ------------------------------------------------------------
    def draws(
        self,
        n_draws: int,
        rng: np.random.Generator,
        *,
        method: str = "auto",
        rtol: float = 1e-6,
        maxiter: int | None = None,
        return_info: bool = False,
    ) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Draw independently from the exact posterior.

        Parameters
        ----------
        n_draws : int
            Number of independent draws.
        rng : numpy.random.Generator
        method : {"auto", "dense", "matrix-free"}
            ``"auto"``: dense up to :data:`DENSE_LIMIT` parameters when it fits in memory, else
            matrix-free (see the class notes).
        rtol : float, default 1e-6
            Matrix-free only: relative residual at which conjugate gradients stop; the error
            of each whitened draw is at most ``rtol · ‖b‖₂`` (``P ⪰ I``), that of the mean
            ``min(rtol, 1e-10) · ‖b‖₂``.
        maxiter : int, optional
            Matrix-free only: iteration cap per block (default ``10 n``).
        return_info : bool, default False
            Also return ``{"method": ..., ...}`` (matrix-free: block size and iterations).

        Returns
        -------
        z, m : numpy.ndarray, shape (n_draws, n)
            The draws in the prior-whitened coordinates ``z = L⁻¹ (m − μ)`` and in model
            coordinates.

        Raises
        ------
        ValueError
            When the route will not fit in memory (the figure is in the message).

        Notes
        -----
        Dense: with ``P = C Cᵀ`` and ``z̄ = P⁻¹ Σ_k W_kᵀ (r̃_k − G_k μ)``, a draw is
        ``z = z̄ + C⁻ᵀ ε``, ``ε ~ N(0, I)``, since ``Cov(C⁻ᵀ ε) = C⁻ᵀ C⁻¹ = P⁻¹``; then
        ``m = μ + L z``. Up to :data:`FACTOR_CACHE_LIMIT` parameters the system keeps ``C``,
        ``z̄`` and ``C⁻¹`` after the first call, and later calls cost one triangular product
        ``C⁻ᵀ ε`` for all draws (BLAS ``trmm``); beyond, one triangular solve per call.
        Matrix-free: perturbation-optimization (class notes).

        Examples
        --------
        >>> import numpy as np
        >>> system = LinearGaussianSystem(["x"], ["x"], np.zeros(1), np.array([[2.0]]), ["m"],
        ...                               [np.array([[1.0]])], [np.array([3.0])])
        >>> z, m = system.draws(100_000, np.random.default_rng(0), method="matrix-free")
        >>> round(float(m.mean()), 2), round(float(m.var()), 2)  # N(2.4, 0.8)
        (2.4, 0.8)
        """
        n_draws = int(n_draws)
        if n_draws < 1:
            raise ValueError(f"n_draws must be at least 1, got {n_draws}")
        route = self._route(method, n_draws)
        if route == "matrix-free":
            mean_z, solve, first = self._matrix_free(rtol, maxiter, min(rtol, 1e-10))
            z = np.empty((n_draws, self.n))
            start, iterations = 0, [first["iterations"]]
            for block, step in self._perturbed(n_draws, rng, solve, mean_z, first["rows"]):
                z[start : start + block.shape[0]] = block
                start += block.shape[0]
                iterations.append(step["iterations"])
            m = self.prior_operator.right(z.copy(), transpose=True)
            m += self.prior_mean
            block_size = self._block_columns(n_draws, first["rows"])
            info = {**first, "block": block_size, "iterations": iterations}
        else:
            chol, mean_z = self._factorization()
            eps = rng.standard_normal((n_draws, self.n))
            inverse = self._draw_operator()
            if inverse is not None:  # kept factor: z = C⁻ᵀ ε per draw, a triangular product
                z = sla.blas.dtrmm(1.0, inverse, eps.T, side=0, lower=1, trans_a=1, overwrite_b=1).T
            else:  # C⁻ᵀ ε for all draws in one triangular solve, in place (Fortran view of eps)
                z = sla.solve_triangular(
                    chol, eps.T, trans="T", lower=True, overwrite_b=True, check_finite=False
                ).T
            del chol, eps
            z += mean_z
            factor = self.prior_operator
            if factor.is_diagonal:  # m = μ + z ⊙ diag L in two passes, no copy
                m = np.multiply(z, np.concatenate([v for _, _, v in factor.blocks]))
            else:
                m = factor.right(z.copy(), transpose=True)
            m += self.prior_mean
            info = {}
        info = {"method": route, **info}
        return (z, m, info) if return_info else (z, m)

    def posterior(
        self,
        *,
        cov: bool | None = None,
        method: str = "auto",
        rtol: float = 1e-10,
        sd: bool = True,
        sd_draws: int = 1000,
        random_seed: int = 0,
    ) -> xr.Dataset:
        """Return the exact posterior (see :func:`exact_posterior`).

        Parameters
        ----------
        cov : bool, optional
            Include the ``n × n`` covariance (dense route only). Default: up to
            :data:`COV_LIMIT` parameters on the dense route (else ``attrs["cov"]`` says how to
            ask for it).
        method : {"auto", "dense", "matrix-free"}
            As in :meth:`draws`. Matrix-free, the mean is a conjugate-gradient solve to ``rtol``
            and the sd is estimated from ``sd_draws`` perturbation-optimization draws (relative
            Monte Carlo error ``≈ 1/√(2 sd_draws)``; ``attrs["sd_method"]`` says so).
        rtol : float, default 1e-10
            Matrix-free only: conjugate-gradient relative residual of the mean (the sd's draws
            use ``max(rtol, 1e-6)``, far below their Monte Carlo error).
        sd : bool, default True
            Include the sd; False gives the mean alone (dense: no triangular inverse;
            matrix-free: no draws).
        sd_draws : int, default 1000
            Matrix-free only: draws for the sd.
        random_seed : int, default 0
            Matrix-free only: seed of those draws.
        """
        if cov is None:
            want_cov = self.n <= COV_LIMIT and method != "matrix-free" and sd
        else:
            want_cov = bool(cov)
        sd_draws = int(sd_draws) if sd else 0
        if want_cov and not sd:
            raise ValueError("cov=True needs sd=True (the covariance comes with the sd)")
        route = self._route(method, 0 if want_cov else sd_draws, cov=want_cov, sd=sd)
        factor = self.prior_operator
        attrs = {"method": "exact linear-Gaussian posterior (Cholesky, prior-whitened)"}
        covariance = sd_values = None
        if route == "dense":
            chol, mean_z = self._factorization()
        if route == "dense" and sd:
            inverse, info = sla.lapack.dtrtri(chol, lower=1, overwrite_c=int(chol.flags.writeable))
            if info != 0:
                raise ValueError(f"the Cholesky factor is singular (LAPACK dtrtri info={info})")
            y = factor.left(inverse.T)  # L C⁻ᵀ, in place: cov = Y Yᵀ
            del chol
            sd_values = np.sqrt(np.einsum("ij,ij->i", y, y))
            if want_cov:
                covariance = y @ y.T
                covariance += covariance.T
                covariance *= 0.5
            del y, inverse
        elif route == "matrix-free":
            mean_z, solve, notes = self._matrix_free(max(rtol, 1e-6), None, rtol)
            attrs["method"] = "exact linear-Gaussian posterior (matrix-free, prior-whitened)"
        if route == "matrix-free" and sd:
            mean_m = self.prior_mean + factor @ mean_z
            squares = np.zeros(self.n)  # about the exact mean: unbiased with N, not N − 1
            rng = np.random.default_rng(random_seed)
            for block, _ in self._perturbed(sd_draws, rng, solve, mean_z, notes["rows"]):
                m = factor.right(block, transpose=True)
                m += self.prior_mean - mean_m
                squares += np.einsum("ij,ij->j", m, m)
            sd_values = np.sqrt(squares / sd_draws)
            attrs["sd_method"] = (
                f"Monte Carlo from {sd_draws} perturbation-optimization draws (relative error "
                f"≈ {1 / np.sqrt(2 * int(sd_draws)):.3f})"
            )
        if covariance is None:
            attrs["cov"] = (
                f"left out ({self.n} parameters); posterior(cov=True) adds the {self.n} × "
                f"{self.n} covariance"
            )
        mean = self.prior_mean + factor @ mean_z
        variables: dict[str, Any] = {"mean": ("parameter", mean)}
        if sd_values is not None:
            variables["sd"] = ("parameter", sd_values)
        if covariance is not None:
            variables["cov"] = (("parameter", "parameter_"), covariance)
        variables["prior_mean"] = ("parameter", self.prior_mean.copy())
        variables["prior_sd"] = ("parameter", np.sqrt(factor.variances()))
        coords = self._coords()
        if covariance is None:
            coords.pop("parameter_")
        return xr.Dataset(variables, coords=coords, attrs=attrs)

    # -- the information budget (dense by nature: one n × n precision per modality) ------
    def _posterior_factors(self, whitened: Sequence[np.ndarray], keep: Sequence[int]):
        """Return the Cholesky factor of ``I + Σ_{k in keep} W_kᵀ W_k``."""
        precision = np.eye(self.n)
        for k in keep:
            precision += whitened[k].T @ whitened[k]
        from bayesjoint._stable import STABLE_LIMIT, qr_factorization

        if float(np.max(precision.diagonal())) <= STABLE_LIMIT:
            return sla.cholesky(precision, lower=True), precision
        # data far more precise than the prior: factor [W; I] by QR (bayesjoint._stable)
        parts = [whitened[k] for k in keep]
        chol, _ = qr_factorization(parts, [np.zeros(w.shape[0]) for w in parts], self.n)
        return chol, precision

    def budget(self) -> xr.Dataset:
        """Return the information budget (see :func:`information_budget`)."""
        k_blocks = len(self.operators)
        _require(
            8.0 * float(self.n) ** 2 * (2 * k_blocks + 8),
            f"the information budget of {self.n} parameters and {k_blocks} blocks (one "
            f"{self.n} × {self.n} precision per block)",
            "use posterior() for the mean and sd alone",
        )
        lf = np.asarray(self.prior_factor, dtype=float)
        w = self.whitened()
        k_all = range(len(w))
        chol, _ = self._posterior_factors(w, k_all)
        logdet_post = 2.0 * float(np.sum(np.log(np.diag(chol))))
        l_inv = sla.solve_triangular(lf, np.eye(self.n), lower=True)
        prior_precision = l_inv.T @ l_inv
        contributions = np.stack([_dense(g.T @ g) for g in self.operators])
        posterior_precision = prior_precision + contributions.sum(axis=0)
        diag_post = np.diag(posterior_precision)
        gain_alone, gain_added, sd_alone = [], [], []
        for k, wk in enumerate(w):
            small = wk @ wk.T if wk.shape[0] < self.n else None
            chol_k, _ = self._posterior_factors(w, [k])
            gain_alone.append(
                0.5 * _logdet_spd(np.eye(small.shape[0]) + small)
                if small is not None and float(np.max(small.diagonal(), initial=0.0)) < 1e12
                else float(np.sum(np.log(np.diag(chol_k))))
            )
            # log det of the precision without block k, factored afresh (subtracting W_kᵀ W_k
            # from the total cancels catastrophically when the data dwarf the prior)
            chol_o, _ = self._posterior_factors(w, [j for j in k_all if j != k])
            gain_added.append(0.5 * logdet_post - float(np.sum(np.log(np.diag(chol_o)))))
            sd_alone.append(np.sqrt(np.sum(sla.solve_triangular(chol_k, lf.T, lower=True) ** 2, 0)))
        b = sla.solve_triangular(chol, lf.T, lower=True)
        return xr.Dataset(
            {
                "precision": (("modality", "parameter", "parameter_"), contributions),
                "prior_precision": (("parameter", "parameter_"), prior_precision),
                "posterior_precision": (("parameter", "parameter_"), posterior_precision),
                "precision_share": (
                    ("modality", "parameter"),
                    np.stack([np.diag(c) for c in contributions]) / diag_post,
                ),
                "prior_precision_share": ("parameter", np.diag(prior_precision) / diag_post),
                "information_gain_alone": ("modality", np.asarray(gain_alone)),
                "information_gain_added": ("modality", np.asarray(gain_added)),
                "information_gain_total": ((), 0.5 * logdet_post),
                "posterior_sd_alone": (("modality", "parameter"), np.stack(sd_alone)),
                "posterior_sd": ("parameter", np.sqrt(np.sum(b**2, axis=0))),
                "prior_sd": ("parameter", np.sqrt(np.sum(lf**2, axis=1))),
            },
            coords={**self._coords(), "modality": list(self.modalities)},
            attrs={"units": "information gains in nats"},
        )


def exact_posterior(system: LinearGaussianSystem, *, cov: bool | None = None) -> xr.Dataset:
    """Exact Gaussian posterior of a linear-Gaussian system.

    Parameters
    ----------
    system : LinearGaussianSystem
    cov : bool, optional
        Include the ``n × n`` covariance; by default only up to :data:`COV_LIMIT` parameters.

    Returns
    -------
    xarray.Dataset
        ``mean``, ``sd`` and ``prior_mean``, ``prior_sd`` on dim ``parameter``; ``cov`` on
        ``(parameter, parameter_)`` when included (otherwise ``attrs["cov"]`` says how to ask).
        The coordinate ``latent`` names each element's variable.

    Notes
    -----
    Up to :data:`DENSE_LIMIT` parameters (and when it fits in memory) the mean and sd are exact
    to round-off (one dense Cholesky factor of the whitened precision, formed from sparse
    products); beyond, the mean is a conjugate-gradient solve and the sd a Monte Carlo estimate
    (see :meth:`LinearGaussianSystem.posterior`).

    Examples
    --------
    One parameter with prior N(0, 2²) measured once with unit noise (h = 1, d = 3):

    >>> import numpy as np
    >>> from bayesjoint.linear import LinearGaussianSystem, exact_posterior
    >>> system = LinearGaussianSystem(["x"], ["x"], np.zeros(1), np.array([[2.0]]), ["m"],
    ...                               [np.array([[1.0]])], [np.array([3.0])])
    >>> post = exact_posterior(system)
    >>> float(post["mean"][0]), float(post["sd"][0] ** 2)
    (2.4, 0.8)
    """
    return system.posterior(cov=cov)


def information_budget(system: LinearGaussianSystem) -> xr.Dataset:
    """Per-modality information budget of a linear-Gaussian system.

    Returns
    -------
    xarray.Dataset
        ``precision`` ``(modality, parameter, parameter_)``: ``A_kᵀ Σ_k⁻¹ A_k``;
        ``prior_precision`` and ``posterior_precision``;
        ``precision_share`` (modality, parameter): ``diag(A_kᵀ Σ_k⁻¹ A_k) / diag(Λ_post)``, each
        modality's share of each parameter's posterior precision (with ``prior_precision_share``
        the shares sum to one);
        ``information_gain_alone`` (modality): ``½ log det(I + W_kᵀ W_k)`` nats, the gain of the
        prior plus that modality alone;
        ``information_gain_added`` (modality): ``½ log det P − ½ log det(P − W_kᵀ W_k)`` nats, the
        gain of adding the modality to all the others;
        ``information_gain_total``: ``½ log det P`` nats;
        ``posterior_sd_alone`` (modality, parameter), ``posterior_sd``, ``prior_sd``.

    Notes
    -----
    Diagonal shares use the conditional precision of each parameter (the diagonal of the
    precision matrix). Gains are invariant to reparameterization of the latent model.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.linear import LinearGaussianSystem, information_budget
    >>> system = LinearGaussianSystem(["x"], ["x"], np.zeros(1), np.array([[1.0]]), ["a", "b"],
    ...                               [np.array([[1.0]]), np.array([[1.0]])], [np.ones(1)] * 2)
    >>> budget = information_budget(system)
    >>> budget["precision_share"].values.round(4).ravel().tolist()
    [0.3333, 0.3333]
    >>> round(float(budget["information_gain_total"]), 6)  # ½ log 3
    0.549306
    """
    return system.budget()


# -- the stacked latent vector ----------------------------------------------------------------
def _columns(problem: Any) -> dict[str, slice]:
    columns, start = {}, 0
    for name, var in problem.latent.items():
        columns[name] = slice(start, start + var.size)
        start += var.size
    return columns


def _n_latent(problem: Any) -> int:
    return int(sum(var.size for var in problem.latent.values()))


def _symbolic_latent(problem: Any) -> tuple[Any, dict[str, Any]]:
    """Return a stacked float64 vector ``m`` and the latent tensors cut from it (C order)."""
    m = pt.vector("m", shape=(_n_latent(problem),), dtype="float64")
    tensors = {}
    for name, cols in _columns(problem).items():
        tensors[name] = m[cols].reshape(problem.latent[name].shape)
    return m, tensors


def _check_problem(problem: Any) -> None:
    # By what it offers, not by class: bayesjoint.joint imports this module, not the reverse.
    if not all(hasattr(problem, a) for a in ("latent", "modalities", "couplings", "blocks")):
        raise TypeError(f"problem must be a bj.JointInversion, got {type(problem).__name__}")


def _point_vector(problem: Any, point: Any) -> np.ndarray:
    """Return a point given as a stacked vector or as one array per latent variable."""
    if not isinstance(point, Mapping):
        vec = np.asarray(point, dtype=float).ravel()
        n = _n_latent(problem)
        if vec.size != n:
            raise ValueError(
                f"point has {vec.size} values but the stacked latent vector has {n}; give "
                "a mapping {name: array} or a vector in stack_latent order"
            )
        return vec
    missing = [k for k in problem.latent if k not in point]
    if missing:
        raise ValueError(
            f"point: no value for latent variable(s) {missing}; give one array per "
            f"latent variable {list(problem.latent)}"
        )
    pieces = []
    for name, var in problem.latent.items():
        value = np.asarray(point[name], dtype=float)
        if value.size != var.size:
            raise ValueError(
                f"point[{name!r}] has {value.size} values, the variable has {var.size}"
            )
        pieces.append(value.ravel())
    return np.concatenate(pieces)


def linearization_point(problem: Any, idata: Any = None, point: Any = None) -> np.ndarray:
    """Return the stacked latent vector at which to linearize.

    Parameters
    ----------
    problem : JointInversion
    idata : arviz.InferenceData, optional
        Its posterior mean is used when ``point`` is not given.
    point : array_like or mapping of str to array_like, optional
        The point itself: a stacked vector (order of :meth:`JointInversion.stack_latent`) or one
        array per latent variable.

    Returns
    -------
    numpy.ndarray, shape (n,)
        With neither ``idata`` nor ``point``, the maximum a posteriori point
        (:meth:`JointInversion.find_map`).

    Examples
    --------
    >>> from bayesjoint.validate import blur_and_points_problem
    >>> problem = blur_and_points_problem(6, n_points=2)
    >>> linearization_point(problem, point={"x": [0.0] * 6}).shape
    (6,)
    """
    _check_problem(problem)
    if point is not None:
        vec = _point_vector(problem, point)
    elif idata is not None:
        post = getattr(idata, "posterior", None)
        missing = [k for k in problem.latent if post is None or k not in post]
        if missing:
            raise ValueError(
                f"idata has no posterior draws of {missing}; pass the InferenceData of this "
                "problem or point="
            )
        vec = problem.stack_latent(post[list(problem.latent)]).mean(("chain", "draw")).values
    else:
        found = problem.find_map()
        vec = np.concatenate(
            [np.asarray(found[name].values, dtype=float).ravel() for name in problem.latent]
        )
    if not np.all(np.isfinite(vec)):
        raise ValueError("the linearization point has NaN or inf values")
    return vec


# -- predictions and Jacobians ----------------------------------------------------------------
def _compile(problem: Any, modality: Modality, with_jacobian: bool) -> Any:
    m, tensors = _symbolic_latent(problem)
    try:
        mu = pt.as_tensor_variable(modality.predict(tensors)).astype("float64").ravel()
    except KeyError as err:
        raise ValueError(
            f"modality {modality.name!r}: physics reads latent variable {err} that the problem "
            f"does not declare ({sorted(problem.latent)})"
        ) from None
    outputs = [mu]
    if with_jacobian:
        try:  # one batched backward pass (fast), where every op of the graph can be batched
            jac = pytensor.gradient.jacobian(mu, m, vectorize=True, disconnected_inputs="ignore")
        except (TypeError, NotImplementedError, ValueError):  # e.g. sparse ops: row by row (scan)
            jac = pytensor.gradient.jacobian(mu, m, vectorize=False, disconnected_inputs="ignore")
        outputs.append(jac)
    return pytensor.function([m], outputs, on_unused_input="ignore")


def _function(problem: Any, modality: Modality, with_jacobian: bool) -> Any:
    """Return the compiled prediction (and Jacobian), cached per problem (not on the modality)."""
    cache = _COMPILED.setdefault(problem, {})
    key = (id(modality), with_jacobian)
    entry = cache.get(key)
    if entry is None or entry[0] is not modality:
        entry = (modality, _compile(problem, modality, with_jacobian))
        cache[key] = entry
    return entry[1]


def _modality(problem: Any, modality: str | Modality) -> Modality:
    if isinstance(modality, Modality):
        return modality
    if modality not in problem.modalities:
        raise ValueError(
            f"unknown modality {modality!r}; the problem has {list(problem.modalities)}"
        )
    return problem.modalities[modality]


def prediction_function(problem: Any, modality: str | Modality) -> Any:
    """Return a compiled ``f(m) -> H(F(m))`` (flat) for a stacked latent vector ``m``.

    Parameters
    ----------
    problem : JointInversion
    modality : str or Modality
        A modality of the problem (by name) or a candidate reading the problem's latent variables.

    Returns
    -------
    callable
        Takes a vector of shape ``(n,)`` and returns the flat prediction (float64).

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.validate import blur_and_points_problem
    >>> problem = blur_and_points_problem(6, n_points=2)
    >>> f = prediction_function(problem, "blurred")
    >>> f(np.ones(6)).round(6).tolist()  # rows of the blur sum to one
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    """
    _check_problem(problem)
    mod = _modality(problem, modality)
    fn = _function(problem, mod, False)
    return lambda m: np.asarray(fn(np.asarray(m, dtype=float))[0])


def jacobians(
    problem: Any, point: Any, modalities: Sequence[str | Modality] | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return each modality's prediction and Jacobian at a point.

    Parameters
    ----------
    problem : JointInversion
    point : array_like or mapping
        See :func:`linearization_point`.
    modalities : sequence of str or Modality, optional
        Default: all modalities of the problem.

    Returns
    -------
    dict of str to (numpy.ndarray, numpy.ndarray)
        ``(f_k(m₀), J_k)`` with the flat prediction (m_k,) and ``J_k = ∂f_k/∂m`` (m_k, n) with
        respect to the stacked latent vector.

    Notes
    -----
    The Jacobian is pytensor's reverse-mode derivative of the modality's symbolic prediction
    (physics then observation), one row per datum.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.validate import blur_and_points_problem
    >>> problem = blur_and_points_problem(6, n_points=2)
    >>> pred, jac = jacobians(problem, np.zeros(6))["points"]
    >>> jac.sum(axis=1).tolist()  # each point datum reads one cell
    [1.0, 1.0]
    """
    _check_problem(problem)
    m0 = linearization_point(problem, point=point)
    out = {}
    for item in modalities if modalities is not None else list(problem.modalities):
        mod = _modality(problem, item)
        pred, jac = _function(problem, mod, True)(m0)
        out[mod.name] = (np.asarray(pred, dtype=float), np.asarray(jac, dtype=float))
    return out


# -- noise: each noise model gives its own Gaussian -------------------------------------------
def _posterior_mean(idata: Any, name: str, owner: str) -> float:
    post = getattr(idata, "posterior", None)
    if post is None or name not in post:
        raise ValueError(
            f"{owner} is learned, so the linearization needs its posterior mean: pass the "
            f"InferenceData that holds {name!r} (idata=...)"
        )
    return float(post[name].mean())


def _posterior_means(idata: Any) -> PosteriorMean:
    """Return the ``posterior_mean(name, what)`` that noise models ask, reading ``idata``."""
    return lambda name, what: _posterior_mean(idata, name, what)


def noise_factor(modality: Modality, idata: Any = None) -> np.ndarray:
    """Return the noise sd vector or covariance Cholesky factor used by the linearization.

    Parameters
    ----------
    modality : Modality
    idata : arviz.InferenceData, optional
        Posterior draws holding the learned noise hyperparameters, if any.

    Returns
    -------
    numpy.ndarray
        Shape ``(m,)`` (sds) or ``(m, m)`` (lower Cholesky factor ``R``, ``Σ = R Rᵀ``).

    Notes
    -----
    The noise model answers (:meth:`bayesjoint.noise.Noise.linearized_factor`): known noise
    gives its own factor; learned noise uses the posterior mean of its learned hyperparameter
    (``<name>_sigma`` or ``<name>_noise_scale``); Student-t noise of scale ``s`` and ``ν`` degrees
    of freedom the sd with the same Fisher information about the prediction,
    ``s √((ν + 3)/(ν + 1))`` (Lange, Little & Taylor 1989, JASA 84, 881).

    Examples
    --------
    >>> import bayesjoint as bj
    >>> mod = bj.Modality("t", physics=bj.physics.Linear([[1.0]], input="x"), data=[0.0],
    ...                   noise=bj.noise.StudentT(1.0, nu=1.0))
    >>> noise_factor(mod).round(6).tolist()  # √2
    [1.414214]
    """
    return modality.noise.linearized_factor(
        modality.name, modality.data.shape, _posterior_means(idata)
    )


def _covariance(factor: np.ndarray) -> np.ndarray:
    """Return ``Σ`` from an sd vector (``diag(sd²)``) or a Cholesky factor (``R Rᵀ``)."""
    return factor @ factor.T if factor.ndim == 2 else np.diag(factor**2)


def noise_covariance(modality: Modality, idata: Any = None) -> np.ndarray:
    """Return the dense noise covariance ``Σ`` of :func:`noise_factor`, shape ``(m, m)``."""
    return _covariance(noise_factor(modality, idata))


def _whiten(factor: np.ndarray, matrix: Any) -> Any:
    """Return ``R⁻¹ matrix``: row scaling by sds keeps a sparse matrix sparse."""
    if factor.ndim == 1:
        if sp.issparse(matrix):
            return sp.csr_array(sp.diags_array(1.0 / factor) @ matrix)
        return matrix / (factor[:, None] if matrix.ndim == 2 else factor)
    return sla.solve_triangular(factor, _dense(matrix), lower=True)


# -- priors (Laplace) ------------------------------------------------------------------------
def _replace_free_rvs(model: pm.Model, graph: Any, keep: Any, idata: Any, owner: str) -> Any:
    """Replace free random variables other than ``keep`` in ``graph`` by posterior means."""
    others = [
        rv for rv in model.free_RVs if rv is not keep and rv in set(ancestors([graph], blockers=[]))
    ]
    if not others:
        return graph
    replacements = {}
    for rv in others:
        value = _posterior_mean_array(idata, rv.name, owner)
        replacements[rv] = pt.constant(value.astype(rv.dtype))
    return graph_replace(graph, replacements, strict=False)


def _posterior_mean_array(idata: Any, name: str, owner: str) -> np.ndarray:
    post = getattr(idata, "posterior", None)
    if post is None or name not in post:
        raise ValueError(
            f"{owner} depends on the learned variable {name!r}; pass the InferenceData that "
            "holds it (idata=...) so the linearization can use its posterior mean"
        )
    return np.asarray(post[name].mean(("chain", "draw")).values, dtype=float)


def _approximate_prior(var: Any, m0: np.ndarray, idata: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """Return ``(mean, L, method)`` of a Gaussian standing for a non-Gaussian prior."""
    owner = f"latent {var.name!r}: prior {var.prior!r}"
    if isinstance(var.prior, GaussianField):  # learned marginal sd: condition on its mean
        sigma = _posterior_mean(idata, f"{var.name}_sigma", f"{owner} sd")
        factor = KroneckerFactor(sigma, var.prior.axis_factors(var.grid))
        mean = np.broadcast_to(var.prior.mean, var.shape).ravel().astype(float)
        return mean, factor, "Gaussian field, sd at its posterior mean"
    with pm.Model() as tmp:
        rv = var.prior.build(var.name, var.shape, None, var.grid)
    if rv not in tmp.free_RVs:
        raise ValueError(
            f"{owner} is neither Gaussian nor a single PyMC distribution, so no Laplace "
            "approximation can be formed; give the variable a bj.priors family"
        )
    value = pt.vector(f"{var.name}_value", shape=(var.size,), dtype="float64")
    logp = pm.logp(rv, value.reshape(var.shape)).sum()
    logp = _replace_free_rvs(tmp, logp, rv, idata, owner)
    grad = pytensor.grad(logp, value)
    hess = pytensor.gradient.hessian(logp, value)
    g, h = pytensor.function([value], [grad, hess])(m0)
    precision = -0.5 * (np.asarray(h) + np.asarray(h).T)
    eig = np.linalg.eigvalsh(precision) if precision.size else np.ones(1)
    if np.all(np.isfinite(eig)) and eig.min() > 1e-12 * max(1.0, abs(eig).max()):
        cov = np.linalg.inv(precision)
        cov = 0.5 * (cov + cov.T)
        mean = m0 + cov @ np.asarray(g)
        return mean, sla.cholesky(cov, lower=True), "Laplace at the linearization point"
    # Flat or non-log-concave at m₀ (e.g. Uniform): match the prior's first two moments.
    draws_rv = _replace_free_rvs(tmp, rv, rv, idata, owner)
    draws = np.asarray(pm.draw(draws_rv, draws=4000, random_seed=0), float).reshape(4000, -1)
    return draws.mean(axis=0), np.diag(draws.std(axis=0, ddof=1)), "moment-matched"


# -- one assembly for the exact and the linearized system ------------------------------------
@dataclass(frozen=True)
class _At:
    """Where the system is formed: exactly (``m0`` None) or linearized at ``m0``."""

    m0: np.ndarray | None = None
    idata: Any = None

    @property
    def exact(self) -> bool:
        return self.m0 is None


def _prior_part(var: Any, at: _At, cols: slice) -> tuple[np.ndarray, Any, str]:
    """Return ``(mean, L, method)`` of the Gaussian prior of one latent variable.

    ``L`` as the prior gives it: its ``gaussian_operator`` (a sparse diagonal, a
    :class:`~bayesjoint.priors.KroneckerFactor`) where it has one, else the dense ``gaussian``.
    """
    operator = getattr(var.prior, "gaussian_operator", None)
    form = (operator or var.prior.gaussian)(var.shape, var.grid)
    if form is not None:
        factor = form[1]
        if not (sp.issparse(factor) or isinstance(factor, KroneckerFactor)):
            factor = np.asarray(factor, float)
        return np.asarray(form[0], float), factor, "exact Gaussian"
    if at.exact:
        raise ValueError(
            f"latent {var.name!r}: prior {var.prior!r} is not Gaussian with fixed "
            "hyperparameters, so the exact path does not apply; use sample()"
        )
    return _approximate_prior(var, at.m0[cols], at.idata)


def _linear_rows(problem: Any, mod: Modality, columns: Mapping[str, slice]):
    """Return ``(A, d − b)`` of a linear modality on the stacked latent vector."""
    op = mod.linear_operator(problem.latent_shapes)
    if op is None:
        part = "physics" if mod.physics.linear_operator() is None else "observation operator"
        which = mod.physics if part == "physics" else mod.observe
        raise ValueError(
            f"modality {mod.name!r}: its {part} {which!r} is not linear, so the exact path "
            "does not apply; use bj.physics.Linear / a linear observation, or sample()"
        )
    a_local, offset = op
    placed = _place(a_local, mod.physics.inputs, columns, _n_latent(problem))
    return placed, mod.data.ravel() - offset


def _place(
    local: Any, inputs: Sequence[str], columns: Mapping[str, slice], n: int
) -> np.ndarray | sp.csr_array:
    """Return the columns of ``local`` (one group per input, in order) on the stacked vector.

    A sparse ``local`` stays sparse (its column indices are mapped); a dense one is placed in a
    dense matrix. Columns of a latent read twice add up.
    """
    target = np.concatenate([np.arange(columns[name].start, columns[name].stop) for name in inputs])
    if sp.issparse(local):
        coo = sp.coo_array(local)
        return sp.csr_array(
            (coo.data, (coo.row, target[coo.col])), shape=(local.shape[0], n), dtype=float
        )
    full = np.zeros((local.shape[0], n))
    np.add.at(full.T, target, np.asarray(local, dtype=float).T)
    return full


def _modality_part(problem: Any, mod: Modality, columns: Mapping[str, slice], at: _At):
    """Return ``(A, r, noise factor)``: operator, data less offset, and the noise's factor.

    Exact: the linear operator and the known noise. Linearized at ``m₀``: the Jacobian ``J``,
    ``r = d − f(m₀) + J m₀``, and the noise's own Gaussian stand-in.
    """
    if at.exact:
        a, r = _linear_rows(problem, mod, columns)
        return a, r, mod.noise.gaussian_factor(mod.name, mod.data.shape)
    pred, jac = _function(problem, mod, True)(at.m0)
    jac = np.asarray(jac, dtype=float)
    r = mod.data.ravel() - np.asarray(pred, dtype=float) + jac @ at.m0
    return jac, r, noise_factor(mod, at.idata)


def _discrepancy_fixed(mods: Sequence[Modality]) -> bool:
    return mods[0].discrepancy.process.fixed and all(
        isinstance(m.discrepancy.scale, float) for m in mods
    )


def _fixed_discrepancy_covariance(mods: Sequence[Modality]) -> np.ndarray:
    """Return ``s_a s_b K(x_a, x_b)`` over a block with fixed discrepancy hyperparameters."""
    process = mods[0].discrepancy.process
    if not _discrepancy_fixed(mods):
        raise ValueError(
            f"modality {mods[0].name!r}: its discrepancy has learned hyperparameters or "
            "scales, so the posterior is not Gaussian; fix lengthscale, amplitude and scale "
            "to use the exact path, or use sample()"
        )
    coords = np.concatenate([m.discrepancy_coords for m in mods])
    s = np.concatenate([np.full(m.n_data, m.discrepancy.scale) for m in mods])
    k = kernel_matrix(coords, coords, process.kernel, process.lengthscale, process.amplitude)
    return k * np.outer(s, s)


def _likelihood_blocks(
    problem: Any, at: _At, notes: dict[str, str]
) -> Iterator[tuple[str, list[Modality], bool]]:
    """Yield ``(name, modalities, with_discrepancy)`` per likelihood block of the system.

    A linearization leaves out a discrepancy whose hyperparameters are learned (each of its
    modalities then stands alone, with its noise) and says so in ``notes``.
    """
    for block, mods in problem.blocks():
        if mods[0].discrepancy is None:
            yield block, mods, False
        elif at.exact or _discrepancy_fixed(mods):
            if not at.exact:
                notes[block] = "discrepancy included (fixed hyperparameters)"
            yield block, mods, True
        else:
            notes[block] = "discrepancy left out (learned hyperparameters)"
            for mod in mods:
                yield mod.name, [mod], False


def _block_rows(
    problem: Any,
    mods: Sequence[Modality],
    columns: Mapping[str, slice],
    at: _At,
    with_discrepancy: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the whitened ``(G, r̃)`` of one likelihood block."""
    parts = [_modality_part(problem, mod, columns, at) for mod in mods]
    if any(sp.issparse(p[0]) for p in parts):
        a = sp.csr_array(sp.vstack([sp.csr_array(p[0]) for p in parts]))
    else:
        a = np.vstack([p[0] for p in parts])
    r = np.concatenate([p[1] for p in parts])
    if with_discrepancy:
        cov = sla.block_diag(*[_covariance(p[2]) for p in parts])
        factor = sla.cholesky(cov + _fixed_discrepancy_covariance(mods), lower=True)
    else:
        factor = parts[0][2]
    return _whiten(factor, a), _whiten(factor, r)


def _coupling_factors(problem: Any, at: _At) -> dict[str, Any]:
    """Return each coupling's linear-Gaussian factor (None where it has none)."""
    factors = {}
    for coupling in problem.couplings:
        factor = coupling.gaussian_factor(problem.latent)
        if factor is None and at.exact:
            raise ValueError(
                f"coupling {coupling.name!r} ({coupling!r}) is not a linear-Gaussian factor "
                "with fixed parameters, so the exact path does not apply; use sample()"
            )
        factors[coupling.name] = factor
    return factors


def _factor_rows(
    factor: Any, columns: Mapping[str, slice], n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return whitened rows ``(G_c, r_c)`` of a coupling's linear-Gaussian factor."""
    ops, offset, sd = factor
    m = np.size(offset)
    parts = [(name, mat) for name, mat in ops.items()]
    if any(sp.issparse(mat) for _, mat in parts):
        rows: Any = sp.csr_array((m, n))
        for name, mat in parts:
            rows = rows + _place(sp.csr_array(mat), [name], columns, n)
        rows = sp.csr_array(rows)
    else:
        rows = np.zeros((m, n))
        for name, mat in parts:
            rows[:, columns[name]] += np.asarray(mat, dtype=float)
    sd = np.broadcast_to(np.asarray(sd, dtype=float), np.shape(offset)).ravel()
    return _whiten(sd, rows), np.asarray(offset, dtype=float).ravel() / sd


def _hessian_rows(
    problem: Any, coupling: Any, m0: np.ndarray, idata: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Return rows ``(G_c, r_c)`` standing for a coupling's potential at ``m0`` (Gauss–Newton)."""
    m, tensors = _symbolic_latent(problem)
    with pm.Model() as tmp:
        coupling.build(tensors, problem.latent)
    if not tmp.potentials:
        raise ValueError(
            f"coupling {coupling.name!r} adds no potential terms, so the linearization cannot "
            "represent it; give it a gaussian_factor()"
        )
    owner = f"coupling {coupling.name!r}"
    total = pt.sum([pt.sum(p) for p in tmp.potentials])
    total = _replace_free_rvs(tmp, total, None, idata, owner)
    g, h = pytensor.function(
        [m],
        [
            pytensor.grad(total, m, disconnected_inputs="ignore"),
            pytensor.gradient.hessian(total, m, disconnected_inputs="ignore"),
        ],
        on_unused_input="ignore",
    )(m0)
    precision = -0.5 * (np.asarray(h) + np.asarray(h).T)
    eig, vec = np.linalg.eigh(precision)
    eig = np.clip(eig, 0.0, None)  # Gauss–Newton: keep the positive-semidefinite part
    rows = np.sqrt(eig)[:, None] * vec.T
    rhs = np.asarray(g) + precision @ m0
    resid = np.linalg.lstsq(rows.T, rhs, rcond=None)[0]
    return rows, resid


def _assemble(problem: Any, at: _At) -> tuple[LinearGaussianSystem, dict[str, dict[str, str]]]:
    """Return the system (exact, or linearized at ``at.m0``) and notes on its approximations.

    The notes are ``{"prior": {latent: method}, "discrepancy": {block: what}}``.
    """
    couplings = _coupling_factors(problem, at)  # the exact path's cheapest refusal first
    columns = _columns(problem)
    n = _n_latent(problem)
    notes: dict[str, dict[str, str]] = {"prior": {}, "discrepancy": {}}
    means, factors, labels, latent_of = [], [], [], []
    for name, var in problem.latent.items():
        mean, factor, method = _prior_part(var, at, columns[name])
        means.append(mean)
        factors.append(factor)
        labels.extend(var.labels())
        latent_of.extend([name] * var.size)
        notes["prior"][name] = method
    operators, residuals, names = [], [], []
    for block, mods, with_discrepancy in _likelihood_blocks(problem, at, notes["discrepancy"]):
        g, r = _block_rows(problem, mods, columns, at, with_discrepancy)
        operators.append(g)
        residuals.append(r)
        names.append(block)
    for coupling in problem.couplings:
        factor = couplings[coupling.name]
        if factor is not None:
            g, r = _factor_rows(factor, columns, n)
        else:
            g, r = _hessian_rows(problem, coupling, at.m0, at.idata)
        operators.append(g)
        residuals.append(r)
        names.append(coupling.name)
    system = LinearGaussianSystem(
        labels=labels,
        latent_of=latent_of,
        prior_mean=np.concatenate(means),
        prior_factor=PriorFactor.of(*factors),
        modalities=names,
        operators=operators,
        residuals=residuals,
    )
    return system, notes


# -- the exact and the linearized system ------------------------------------------------------
def linear_gaussian_system(problem: Any) -> LinearGaussianSystem:
    """Return the exact flat linear-Gaussian form of a problem.

    Parameters
    ----------
    problem : JointInversion
        Gaussian priors with fixed hyperparameters, linear physics and observation operators,
        noise models with a known Gaussian covariance, discrepancies with fixed hyperparameters
        and couplings that are linear-Gaussian factors.

    Returns
    -------
    LinearGaussianSystem
        One block per modality (or per shared discrepancy) in declaration order, then one per
        coupling.

    Raises
    ------
    ValueError
        Naming the first part that is not linear-Gaussian (a coupling, a prior, a physics or
        observation operator, a noise model, a discrepancy).

    Notes
    -----
    A block with a discrepancy has the noise covariance plus ``s_a s_b K(x_a, x_b)``; it is
    whitened by the Cholesky factor of the sum.

    Examples
    --------
    >>> import bayesjoint as bj
    >>> x = bj.Parameter("x", prior=bj.priors.Normal(0.0, 2.0))
    >>> a = bj.Modality("a", physics=bj.physics.Linear([[1.0]], input="x"), data=[3.0],
    ...                 noise=bj.noise.Gaussian(0.5))
    >>> system = linear_gaussian_system(bj.JointInversion(latent=[x], modalities=[a]))
    >>> system.operators[0].tolist(), system.residuals[0].tolist()  # A / sd, d / sd
    ([[2.0]], [6.0])
    """
    _check_problem(problem)
    return _assemble(problem, _At())[0]


def linearized_system(
    problem: Any, idata: Any = None, *, point: Any = None
) -> LinearGaussianSystem:
    """Return the Gauss–Newton / Laplace linearization of a joint inversion.

    Parameters
    ----------
    problem : JointInversion
    idata : arviz.InferenceData, optional
        Posterior draws: their mean is the linearization point and learned noise or prior
        hyperparameters enter at their posterior means.
    point : array_like or mapping, optional
        Linearize here instead (see :func:`linearization_point`).

    Returns
    -------
    LinearGaussianSystem
        Its ``budget()`` is the linearized information budget and its ``posterior()`` the
        Gauss–Newton posterior (one Newton step from the point).

    Notes
    -----
    With ``m₀`` the point and ``J_k`` the Jacobian of modality ``k``, the data model is
    ``d_k ≈ f_k(m₀) + J_k (m − m₀) + ε_k``, so the whitened operator is ``Σ_k^{-1/2} J_k`` and the
    whitened data ``Σ_k^{-1/2} (d_k − f_k(m₀) + J_k m₀)``; the posterior precision is the
    Gauss–Newton matrix ``Λ₀ + Σ_k J_kᵀ Σ_k⁻¹ J_k`` (Tarantola 2005, *Inverse Problem Theory*,
    §3.2.2; Nocedal & Wright 2006, §10.3). The noise covariance ``Σ_k`` is the one each noise
    model gives for itself (:func:`noise_factor`): the known one; learned noise at the posterior
    mean of its sd or scale; Student-t noise the Gaussian of equal Fisher information. A
    discrepancy with fixed hyperparameters adds its covariance to its block's, as in the exact
    path; one with learned hyperparameters is left out (each of its modalities stands alone).

    The prior: Gaussian families are exact; a Gaussian field with a learned sd uses the
    posterior-mean sd; any other prior is replaced by its **Laplace approximation** at ``m₀``:
    precision ``−∇² log p(m₀)`` and mean ``m₀ + (−∇² log p)⁻¹ ∇ log p(m₀)`` (the Gaussian with the
    same second-order Taylor expansion). Where that Hessian is not negative definite (a flat
    Uniform prior, a non-log-concave density at ``m₀``) the prior's mean and marginal variances are
    matched by 4000 seeded prior draws instead. Couplings that are linear-Gaussian factors enter
    exactly (like a modality, under their own name); other couplings enter through the
    positive-semidefinite part of the negative Hessian of their potential at ``m₀``.

    For a linear-Gaussian problem the result equals :func:`linear_gaussian_system` at any point.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> x = bj.Parameter("x", prior=bj.priors.Normal(0.0, 1.0))
    >>> sq = bj.Modality("square", physics=lambda m: m["x"] ** 2 * np.ones(1), data=[1.0],
    ...                  noise=bj.noise.Gaussian(0.5))
    >>> problem = bj.JointInversion(latent=[x], modalities=[sq])
    >>> system = linearized_system(problem, point={"x": 1.0})
    >>> float(system.operators[0][0, 0])  # J / sd = 2 x / 0.5
    4.0
    """
    return _linearize(problem, idata, point)[0]


def _linearize(
    problem: Any, idata: Any, point: Any
) -> tuple[LinearGaussianSystem, np.ndarray, dict[str, dict[str, str]]]:
    """Return the linearized system, the point and the notes of :func:`_assemble`."""
    _check_problem(problem)
    m0 = linearization_point(problem, idata, point)
    system, notes = _assemble(problem, _At(m0, idata))
    return system, m0, notes


def linearized_budget(problem: Any, idata: Any = None, *, point: Any = None) -> xr.Dataset:
    """Return the information budget of a (nonlinear) problem, linearized at the posterior mean.

    Parameters
    ----------
    problem : JointInversion
    idata : arviz.InferenceData, optional
        Posterior draws (their mean is the point; learned hyperparameters at posterior means).
    point : array_like or mapping, optional
        Linearize here instead.

    Returns
    -------
    xarray.Dataset
        The variables of :func:`information_budget` (``precision`` = ``J_kᵀ Σ_k⁻¹ J_k`` per
        modality, ``information_gain_alone``/``_added``/``_total`` in nats, ``precision_share``,
        ``posterior_sd_alone``, ``posterior_sd``, ``prior_sd``), plus ``linearization_point``
        (parameter); attributes ``method`` and ``prior_approximation`` (and ``discrepancy`` when
        the problem has discrepancies).

    Notes
    -----
    See :func:`linearized_system` for the approximation. Gains are those of the linearized
    (Gaussian) problem; they are exact for linear-Gaussian problems and otherwise describe the
    local information near the posterior mean.

    Examples
    --------
    >>> from bayesjoint.validate import blur_and_points_problem
    >>> problem = blur_and_points_problem(20, n_points=5)
    >>> lin = linearized_budget(problem, point=[0.0] * 20)
    >>> exact = problem.information_budget()
    >>> bool(abs(lin["information_gain_total"] - exact["information_gain_total"]) < 1e-8)
    True
    """
    system, m0, notes = _linearize(problem, idata, point)
    budget = system.budget()
    budget["linearization_point"] = ("parameter", m0)
    budget.attrs.update(
        {
            "method": "Gauss-Newton/Laplace linearization"
            + (" at the posterior mean" if point is None and idata is not None else ""),
            "prior_approximation": "; ".join(f"{k}: {v}" for k, v in notes["prior"].items()),
        }
    )
    if notes["discrepancy"]:
        budget.attrs["discrepancy"] = "; ".join(
            f"{k}: {v}" for k, v in notes["discrepancy"].items()
        )
    return budget


def _check_candidates(problem: Any, candidates: Modality | Sequence[Modality]) -> list[Modality]:
    """Return the candidates as a list; errors name the candidate and the fix."""
    cands = [candidates] if isinstance(candidates, Modality) else list(candidates)
    if not cands:
        raise ValueError("candidates is empty; give one or more bj.Modality to compare")
    seen = set()
    for cand in cands:
        if not isinstance(cand, Modality):
            raise TypeError(f"candidates must be bj.Modality objects, got {type(cand).__name__}")
        if cand.name in seen:
            raise ValueError(f"duplicate candidate name {cand.name!r}; name each one distinctly")
        seen.add(cand.name)
        unknown = [k for k in cand.physics.inputs if k not in problem.latent]
        if unknown:
            raise ValueError(
                f"candidate {cand.name!r} reads latent variable(s) {unknown} that the problem "
                f"does not declare ({sorted(problem.latent)})"
            )
        if cand.noise.learned:
            raise ValueError(
                f"candidate {cand.name!r}: give the planned measurement noise as a fixed sd or "
                "covariance (a learned noise has no posterior yet)"
            )
    return cands


def expected_information_gain(
    problem: Any,
    candidates: Modality | Sequence[Modality],
    idata: Any = None,
    *,
    point: Any = None,
) -> xr.Dataset:
    """Rank candidate modalities or surveys by the information they would add ("which next").

    Parameters
    ----------
    problem : JointInversion
        The current problem (its modalities are the data already in hand).
    candidates : Modality or sequence of Modality
        Planned instruments reading the problem's latent variables, each with the noise it would
        have (known sd or covariance). Their data values are ignored; only the data shape is
        used, so zeros will do.
    idata : arviz.InferenceData, optional
        Posterior draws of the current problem: the linearization point is their mean.
    point : array_like or mapping, optional
        Linearize here instead.

    Returns
    -------
    xarray.Dataset
        On dim ``candidate``: ``expected_information_gain`` (nats, added to the current data),
        ``information_gain_alone`` (nats, candidate with the prior only), ``mean_sd_ratio``
        (mean over parameters of posterior sd with the candidate / without), ``rank`` (1 = most
        informative); ``posterior_sd_with`` (candidate, parameter) and ``posterior_sd`` (parameter,
        current).

    Notes
    -----
    In the linearized (Gaussian) problem the expected information gain of new data ``d_c`` — the
    mutual information between ``d_c`` and ``m`` given the data in hand — does not depend on the
    values that will be observed: ``EIG = ½ log det(I + W_c P⁻¹ W_cᵀ)`` nats, with ``P`` the
    current posterior precision in prior-whitened coordinates and ``W_c`` the candidate's whitened
    Jacobian (Lindley 1956, Ann. Math. Stat. 27, 986; Alexanderian 2021, Inverse Problems 37,
    043001, §3, for the linearized Bayesian optimal design of inverse problems).

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> x = bj.Parameter("x", shape=2, prior=bj.priors.Normal(0.0, 1.0))
    >>> first = bj.Modality("first", physics=bj.physics.Linear([[1.0, 0.0]], input="x"),
    ...                     data=[0.3], noise=bj.noise.Gaussian(0.1))
    >>> problem = bj.JointInversion(latent=[x], modalities=[first])
    >>> again = bj.Modality("again", physics=bj.physics.Linear([[1.0, 0.0]], input="x"),
    ...                     data=[0.0], noise=bj.noise.Gaussian(0.1))
    >>> other = bj.Modality("other", physics=bj.physics.Linear([[0.0, 1.0]], input="x"),
    ...                     data=[0.0], noise=bj.noise.Gaussian(0.1))
    >>> eig = expected_information_gain(problem, [again, other], point=[0.0, 0.0])
    >>> eig["rank"].values.tolist()  # measuring the unseen component first
    [2, 1]
    >>> round(float(eig["expected_information_gain"].sel(candidate="other")), 4)  # ½ log 101
    2.3076
    """
    _check_problem(problem)
    cands = _check_candidates(problem, candidates)
    system, m0, _ = _linearize(problem, idata, point)
    lf = np.asarray(system.prior_factor, dtype=float)  # dense: one n × n factor per candidate
    precision = np.eye(system.n)
    for wk in system.whitened():
        precision += wk.T @ wk
    chol = sla.cholesky(precision, lower=True)
    cov_z = sla.cho_solve((chol, True), np.eye(system.n))
    sd_now = np.sqrt(np.sum(sla.solve_triangular(chol, lf.T, lower=True) ** 2, axis=0))
    gains, alone, ratio, sd_with = [], [], [], []
    for cand in cands:
        _, jac = jacobians(problem, m0, [cand])[cand.name]
        wc = _whiten(noise_factor(cand), jac) @ lf
        small = np.eye(wc.shape[0]) + wc @ cov_z @ wc.T
        gains.append(0.5 * np.linalg.slogdet(small)[1])
        alone.append(0.5 * np.linalg.slogdet(np.eye(wc.shape[0]) + wc @ wc.T)[1])
        chol_c = sla.cholesky(precision + wc.T @ wc, lower=True)
        b = sla.solve_triangular(chol_c, lf.T, lower=True)
        sd_c = np.sqrt(np.sum(b**2, axis=0))
        sd_with.append(sd_c)
        ratio.append(float(np.mean(sd_c / sd_now)))
    gains_arr = np.asarray(gains)
    order = np.argsort(-gains_arr, kind="stable")
    rank = np.empty(len(cands), dtype=int)
    rank[order] = np.arange(1, len(cands) + 1)
    return xr.Dataset(
        {
            "expected_information_gain": ("candidate", gains_arr),
            "information_gain_alone": ("candidate", np.asarray(alone)),
            "mean_sd_ratio": ("candidate", np.asarray(ratio)),
            "rank": ("candidate", rank),
            "posterior_sd_with": (("candidate", "parameter"), np.stack(sd_with)),
            "posterior_sd": ("parameter", sd_now),
        },
        coords={
            "candidate": [c.name for c in cands],
            "parameter": list(system.labels),
            "latent": ("parameter", list(system.latent_of)),
        },
        attrs={
            "units": "information gains in nats",
            "method": "linearized (Gauss-Newton/Laplace) expected information gain",
        },
    )
