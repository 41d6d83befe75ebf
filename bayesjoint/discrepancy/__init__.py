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

The package: :mod:`~bayesjoint.discrepancy.settings` holds the user's declarations (:class:`GP`,
:class:`DiscrepancyTerm`, fixed once constructed), :mod:`~bayesjoint.discrepancy.kernels` the
kernels, the HSGP basis and the compiled Ops, and :mod:`~bayesjoint.discrepancy.builder` the
per-problem :class:`DiscrepancyBlock`: what one problem decides for one block (route, basis,
hyperparameters as used) and the code that adds the block to its PyMC model.
"""

from bayesjoint.discrepancy.builder import (
    DiscrepancyBlock,
    marginal_hsgp_likelihood,
    process_name,
)
from bayesjoint.discrepancy.kernels import (
    hsgp_basis,
    hsgp_basis_settings,
    hsgp_values,
    kernel_matrix,
    symbolic_kernel,
)
from bayesjoint.discrepancy.settings import (
    EXACT_MAX_DATA,
    GP,
    HSGP_SAFETY,
    LARGE_BASIS,
    MAX_LENGTHSCALE_RATIO,
    DiscrepancyTerm,
    as_term,
)

__all__ = [
    "EXACT_MAX_DATA",
    "GP",
    "HSGP_SAFETY",
    "LARGE_BASIS",
    "MAX_LENGTHSCALE_RATIO",
    "DiscrepancyBlock",
    "DiscrepancyTerm",
    "as_term",
    "hsgp_basis",
    "hsgp_basis_settings",
    "hsgp_values",
    "kernel_matrix",
    "marginal_hsgp_likelihood",
    "process_name",
    "symbolic_kernel",
]
