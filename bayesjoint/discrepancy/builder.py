"""The per-problem builder of discrepancy likelihood blocks (exact and HSGP routes)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import scipy.linalg as sla

from bayesjoint.discrepancy.kernels import _LogdetAndQuadratic, _prior_range
from bayesjoint.discrepancy.settings import GP
from bayesjoint.priors import Prior

__all__ = [
    "build_hyperparameters",
    "marginal_hsgp_likelihood",
]


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
