"""Linear (affine) physics: ``F(m) = A m + b`` with a dense or sparse matrix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytensor.sparse as pts
import pytensor.tensor as pt
import scipy.sparse as sp

from bayesjoint._checks import checked_init
from bayesjoint.physics.base import Physics

__all__ = ["Linear", "as_matrix", "symbolic_matvec"]


def as_matrix(matrix: Any, what: str) -> np.ndarray | sp.csr_matrix:
    """Validate a 2-D finite float matrix, keeping scipy.sparse input sparse (CSR)."""
    if sp.issparse(matrix):
        mat = sp.csr_matrix(matrix, dtype=float)
        values = mat.data
    else:
        mat = np.asarray(matrix, dtype=float)
        values = mat
    if mat.ndim != 2:
        raise ValueError(f"{what} must be a 2-D matrix, got shape {mat.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what} contains NaN or inf entries; replace them with finite values")
    return mat


#: A sparse operator with at most this many entries (m · n) enters the compiled graph as a dense
#: matrix: a dense BLAS product of that size costs a few microseconds, while pytensor's sparse
#: product and its gradient cost about 30 µs per evaluation whatever the size (measured with
#: pytensor 2.38: a 20 × 128 point-sampling operator made a whole model's gradient 2× slower).
SMALL_DENSE_ENTRIES = 2**16


def symbolic_matvec(matrix: np.ndarray | sp.csr_matrix, vector: Any) -> Any:
    """Return the pytensor product ``matrix @ vector`` for a constant dense or sparse matrix.

    A sparse matrix stays sparse in the graph unless it has at most ``SMALL_DENSE_ENTRIES``
    entries, where the dense product is faster.
    """
    if sp.issparse(matrix):
        if matrix.shape[0] * matrix.shape[1] > SMALL_DENSE_ENTRIES:
            return pts.structured_dot(pts.as_sparse_variable(matrix), vector[:, None])[:, 0]
        matrix = matrix.toarray()
    return pt.dot(pt.constant(matrix), vector)


class Linear(Physics):
    """Affine forward map ``F(m) = A · vec(m) + b``.

    Parameters
    ----------
    matrix : array_like or scipy.sparse matrix, shape (n_out, n_in)
        The operator ``A``. Sparse input stays sparse in the compiled graph (unless it is small:
        see ``symbolic_matvec``).
    input : str or sequence of str
        Name(s) of the latent variable(s) read. Several names are flattened (C order) and
        concatenated in the given order, so ``n_in`` is the sum of their sizes.
    offset : array_like, shape (n_out,), optional
        The constant ``b``; zero when omitted.

    Notes
    -----
    Units: ``A`` maps the latent units to the data units. The operator is linear, so a modality
    using it (with a linear observation operator and Gaussian noise of known covariance) keeps the
    problem linear-Gaussian and :meth:`bayesjoint.JointInversion.exact_posterior` applies.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> op = bj.physics.Linear(np.array([[1.0, 2.0], [0.0, 1.0]]), input="x", offset=[0.5, 0.0])
    >>> op(x=np.array([1.0, 1.0]))
    array([3.5, 1. ])
    """

    @checked_init("bj.physics.Linear")
    def __init__(self, matrix: Any, input: str | Sequence[str], offset: Any = None):
        self.matrix = as_matrix(matrix, "Linear physics matrix")
        names = (input,) if isinstance(input, str) else tuple(input)
        if not names or not all(isinstance(n, str) for n in names):
            raise TypeError("Linear(input=...) must be a latent name or a sequence of latent names")
        self.inputs = names
        n_out = self.matrix.shape[0]
        if offset is None:
            self.offset = np.zeros(n_out)
        else:
            self.offset = np.broadcast_to(np.asarray(offset, dtype=float), (n_out,)).copy()
            if not np.all(np.isfinite(self.offset)):
                raise ValueError("Linear physics offset contains NaN or inf entries")

    def _stack(self, latent: Mapping[str, Any], symbolic: bool) -> Any:
        parts = [latent[name] for name in self.inputs]
        if symbolic:
            flat = [pt.as_tensor_variable(p).flatten() for p in parts]
            return flat[0] if len(flat) == 1 else pt.concatenate(flat)
        return np.concatenate([np.asarray(p, dtype=float).ravel() for p in parts])

    def forward(self, latent: Mapping[str, Any]) -> Any:
        """Return the symbolic ``A · vec(m) + b``."""
        out = symbolic_matvec(self.matrix, self._stack(latent, symbolic=True))
        if np.any(self.offset):
            out = out + pt.constant(self.offset)
        return out

    def _evaluate_numpy(self, values: Mapping[str, Any]) -> np.ndarray:
        x = self._stack(values, symbolic=False)
        self._check_size(x.size)
        return np.asarray(self.matrix @ x).ravel() + self.offset

    def _check_size(self, n_in: int) -> None:
        if n_in != self.matrix.shape[1]:
            raise ValueError(
                f"Linear physics matrix has {self.matrix.shape[1]} columns but its input "
                f"{list(self.inputs)} has {n_in} values in all; give a matrix of shape "
                f"({self.matrix.shape[0]}, {n_in})"
            )

    def output_shape(self, input_shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, ...]:
        """Return ``(n_out,)`` after checking the inputs' total size against the columns."""
        self._check_size(int(sum(np.prod(input_shapes[n], dtype=int) for n in self.inputs)))
        return (self.matrix.shape[0],)

    def linear_operator(self) -> tuple[np.ndarray | sp.csr_matrix, np.ndarray]:
        """Return ``(A, b)``."""
        return self.matrix, self.offset

    def __repr__(self) -> str:
        kind = "sparse" if sp.issparse(self.matrix) else "dense"
        return f"Linear({kind} {self.matrix.shape[0]}x{self.matrix.shape[1]}, input={self.inputs})"
