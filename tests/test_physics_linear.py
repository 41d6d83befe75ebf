"""bj.physics.Linear's symbolic product: dense for small sparse operators, sparse for large ones."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.sparse as pts
import pytensor.tensor as pt
import scipy.sparse as sp
from pytensor.graph.traversal import io_toposort

from bayesjoint.physics.linear import SMALL_DENSE_ENTRIES, symbolic_matvec


def _product_and_ops(matrix):
    x = pt.vector("x")
    out = symbolic_matvec(matrix, x)
    ops = {type(node.op).__name__ for node in io_toposort([x], [out])}
    fn = pytensor.function([x], [out, pytensor.grad(out.sum(), x)])
    return fn, ops


def test_small_sparse_operator_enters_the_graph_dense_with_the_same_product_and_gradient():
    rng = np.random.default_rng(0)
    matrix = sp.random(20, 128, density=0.05, random_state=1, format="csr")
    fn, ops = _product_and_ops(matrix)
    assert not any("Structured" in op or "Sparse" in op for op in ops)
    x = rng.standard_normal(128)
    value, grad = fn(x)
    np.testing.assert_allclose(value, matrix @ x, rtol=1e-12)
    np.testing.assert_allclose(grad, np.asarray(matrix.sum(axis=0)).ravel(), rtol=1e-12)


def test_large_sparse_operator_stays_sparse_with_the_same_product():
    # negative control of the size rule: above the threshold the sparse product is kept
    n = SMALL_DENSE_ENTRIES // 100 + 1
    matrix = sp.random(200, n, density=0.001, random_state=2, format="csr")
    fn, ops = _product_and_ops(matrix)
    assert any("StructuredDot" in op for op in ops), ops
    x = np.random.default_rng(3).standard_normal(n)
    np.testing.assert_allclose(fn(x)[0], matrix @ x, rtol=1e-12)
    assert isinstance(pts.as_sparse_variable(matrix).type, pts.SparseTensorType)
