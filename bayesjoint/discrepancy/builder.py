"""The per-problem builder of discrepancy likelihood blocks (exact and HSGP routes).

A :class:`DiscrepancyBlock` is what one problem decides about one discrepancy block: the
modalities it joins, their coordinates and data, the route, the HSGP basis and the
hyperparameters as used (default priors included). :class:`bayesjoint.JointInversion` plans its
blocks when it is constructed (so a route's noise requirements fail early) and asks each block to
add itself to the PyMC model. The user's :class:`~bayesjoint.discrepancy.GP` and
:class:`~bayesjoint.discrepancy.DiscrepancyTerm` are only read, so one process declared once can
serve several problems, each with its own route and basis.
"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import scipy.linalg as sla

from bayesjoint.discrepancy.kernels import (
    _LogdetAndQuadratic,
    _prior_range,
    hsgp_basis,
    hsgp_basis_settings,
    hsgp_values,
    symbolic_kernel,
)
from bayesjoint.discrepancy.settings import GP, LARGE_BASIS
from bayesjoint.priors import HalfNormal, Prior

if TYPE_CHECKING:
    from bayesjoint.modality import Modality

__all__ = [
    "DiscrepancyBlock",
    "marginal_hsgp_likelihood",
    "process_name",
]


def process_name(modality: Modality) -> str:
    """Return the name of ``modality``'s discrepancy process.

    The process's ``name``, or ``<modality>_discrepancy`` by default. It prefixes the
    hyperparameters (``<name>_lengthscale``, ``<name>_amplitude``, ``<name>_basis``) and names the
    observed variable of a block shared by several modalities.
    """
    process = modality.discrepancy.process
    return process.name if process.name is not None else f"{modality.name}_discrepancy"


def _describe(value: Any) -> Any:
    return value.describe() if isinstance(value, Prior) else value


@dataclass(frozen=True, eq=False)
class _Resolution:
    """What building a block decides beyond the plan (see :class:`DiscrepancyBlock`)."""

    lengthscale: float | Prior
    amplitude: float | Prior
    lengthscale_range: tuple[float, float] | None
    route: str
    hsgp: Mapping[str, Any]


@dataclass(frozen=True, eq=False, repr=False)
class DiscrepancyBlock:
    """One problem's discrepancy block: its plan, its settings as built, and its builder.

    Create it with :meth:`plan`; :class:`bayesjoint.JointInversion` does, for every block of
    modalities with a discrepancy (:meth:`bayesjoint.JointInversion.blocks`), and lists them in
    :attr:`bayesjoint.JointInversion.discrepancy_blocks`.

    Attributes
    ----------
    name : str
        The block: the observed variable of a shared block (the process's name), else the
        modality's name.
    process_name : str
        Prefix of the hyperparameters (:func:`process_name`).
    process : GP
        The user's declaration (only read).
    modalities : tuple of Modality
        The modalities of the block, in declaration order.
    coords : numpy.ndarray, shape (n, d)
        Their discrepancy coordinates, concatenated.
    data : numpy.ndarray, shape (n,)
        Their data, flattened and concatenated.
    planned_route : {"exact", "hsgp"}
        The route :meth:`GP.plan` gives for the block's size and noise, before the basis-size
        check of :attr:`route`.
    marginalize : bool
        HSGP route: whether the basis coefficients are integrated out.

    Notes
    -----
    :attr:`route`, :attr:`lengthscale`, :attr:`amplitude`, :attr:`lengthscale_range` and
    :attr:`hsgp` are resolved on first use (the lengthscale prior's 5-95 % range comes from a
    seeded draw), so they are the same before and after the model is built. With
    ``method="auto"`` and integrated-out coefficients, a planned HSGP route whose basis would
    have at least as many functions as the block has data falls back to the exact route, which
    is then cheaper and exact.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> gp = bj.discrepancy.GP(lengthscale=2.0, amplitude=0.1)
    >>> x = bj.Parameter("x", prior=bj.priors.Normal())
    >>> g = bj.Modality("g", bj.physics.Linear(np.ones((5, 1)), "x"), np.zeros(5),
    ...                 bj.noise.Gaussian(0.1), discrepancy=gp.term(coords=np.arange(5.0)))
    >>> block = bj.JointInversion([x], [g]).discrepancy_blocks["g"]
    >>> block.route, block.process_name, block.hsgp
    ('exact', 'g_discrepancy', {})
    """

    name: str
    process_name: str
    process: GP
    modalities: tuple[Modality, ...]
    coords: np.ndarray
    data: np.ndarray
    planned_route: str
    marginalize: bool

    @classmethod
    def plan(
        cls, name: str, modalities: Sequence[Modality], taken: Collection[str] = ()
    ) -> DiscrepancyBlock:
        """Plan the block ``name`` of ``modalities`` (which share one discrepancy process).

        Parameters
        ----------
        name : str
            The block's name, as :meth:`bayesjoint.JointInversion.blocks` gives it.
        modalities : sequence of Modality
            At least one; all attached to the same :class:`GP`.
        taken : collection of str
            Names a shared block may not use (the problem's modalities, latent variables and
            dimensions).

        Raises
        ------
        ValueError
            The route needs Gaussian noise that a modality lacks, or a shared process has no
            name, a name already taken, or modalities whose coordinates differ in dimension.
        """
        mods = tuple(modalities)
        process = mods[0].discrepancy.process
        names = [m.name for m in mods]
        gaussian = [m.noise.is_gaussian for m in mods]
        route, marginalize = process.plan(sum(m.n_data for m in mods), gaussian, names)
        if len(mods) > 1:
            if process.name is None:
                raise ValueError(
                    f"modalities {names} share one discrepancy process; give it a name, e.g. "
                    "bj.discrepancy.GP(..., name='shared_discrepancy'), which names their block"
                )
            if name in taken:
                raise ValueError(
                    f"discrepancy name {name!r} (the block of {names}) is already used; rename it"
                )
            widths = {m.discrepancy_coords.shape[1] for m in mods}
            if len(widths) > 1:
                raise ValueError(
                    f"modalities {names} share discrepancy {name!r} but their coordinates have "
                    f"different dimensions {sorted(widths)}; give coordinates in one common space"
                )
        coords = np.concatenate([m.discrepancy_coords for m in mods])
        data = np.concatenate([m.data.ravel() for m in mods])
        coords.setflags(write=False)
        data.setflags(write=False)
        return cls(name, process_name(mods[0]), process, mods, coords, data, route, marginalize)

    def __repr__(self) -> str:
        return (
            f"DiscrepancyBlock({self.name!r}, process={self.process_name!r}, "
            f"modalities={self.modality_names}, n={self.data.size}, "
            f"planned_route={self.planned_route!r})"
        )

    # -- what the build decides -------------------------------------------------------------
    @functools.cached_property
    def _resolution(self) -> _Resolution:
        process = self.process
        ls = process.lengthscale
        if ls is None:
            ls = process.default_lengthscale_prior(self.coords)
        amp = process.amplitude
        if amp is None:
            amp = HalfNormal(float(np.std(self.data)) or 1.0)
        if self.planned_route != "hsgp":
            return _Resolution(ls, amp, None, self.planned_route, {})
        if isinstance(ls, Prior):
            ls_range = _prior_range(ls)
        else:
            ls_range = (ls, ls * (1.0 + 1e-6))  # a point: the heuristics need lo < hi
        m, c = hsgp_basis_settings(self.coords, process.kernel, ls_range, process.n_basis)
        if process.method == "auto" and self.marginalize and int(np.prod(m)) >= self.data.size:
            return _Resolution(ls, amp, ls_range, "exact", {})  # n x n: cheaper, and exact
        hsgp = {
            "m": [int(k) for k in m],
            "c": float(c),
            "lengthscale_range": [float(v) for v in ls_range],
            "coefficients": "marginalized" if self.marginalize else "sampled",
        }
        return _Resolution(ls, amp, ls_range, "hsgp", hsgp)

    @property
    def route(self) -> str:
        """The route taken: ``"exact"`` or ``"hsgp"``."""
        return self._resolution.route

    @property
    def lengthscale(self) -> float | Prior:
        """The lengthscale used: the process's, or the default prior for its coordinates."""
        return self._resolution.lengthscale

    @property
    def amplitude(self) -> float | Prior:
        """The amplitude used: the process's, or ``HalfNormal(sd of the block's data)``."""
        return self._resolution.amplitude

    @property
    def lengthscale_range(self) -> tuple[float, float] | None:
        """HSGP route: the lengthscale range (prior's 5-95 %) that sized the basis."""
        return self._resolution.lengthscale_range

    @property
    def hsgp(self) -> dict[str, Any]:
        """HSGP route: ``m`` (per dimension), ``c``, ``lengthscale_range``, ``coefficients``.

        Empty on the exact route. A copy: changing it changes nothing.
        """
        return {k: list(v) if isinstance(v, list) else v for k, v in self._resolution.hsgp.items()}

    @property
    def modality_names(self) -> list[str]:
        """Names of the block's modalities, in order."""
        return [m.name for m in self.modalities]

    def describe(self) -> dict[str, Any]:
        """Return the block as recorded in provenance (JSON-serializable values)."""
        process = self.process
        return {
            "block": self.name,
            "process": self.process_name,
            "modalities": self.modality_names,
            "kernel": process.kernel,
            "lengthscale": _describe(self.lengthscale),
            "amplitude": _describe(self.amplitude),
            "scales": {m.name: _describe(m.discrepancy.scale) for m in self.modalities},
            "method": process.method,
            "route": self.route,
            "hsgp": self.hsgp,
        }

    # -- the PyMC model ---------------------------------------------------------------------
    def build(self, model: pm.Model, means: Mapping[str, Any]) -> None:
        """Add the block's variables and likelihood to ``model`` (inside its context).

        ``means[modality]`` is the modality's predicted data ``H(F(m))``. Adds the learned
        hyperparameters and scales, then one observed variable named :attr:`name` (exact route,
        or HSGP with integrated-out coefficients) or, with sampled coefficients,
        ``<process>_basis`` and one observed variable per modality.
        """
        ls, amp = self._hyperparameter_variables()
        scales = self._scale_variables()
        mods = self.modalities
        if self.route == "hsgp":
            phi, weights = hsgp_basis(
                self.process,
                self.coords,
                ls,
                amp,
                self.lengthscale_range,
                basis=(self.hsgp["m"], self.hsgp["c"]),
            )
            self._warn_if_large(phi.shape[1])
            if not self.marginalize:
                delta = hsgp_values(self.process_name, phi, weights)
                start = 0
                for mod, scale in zip(mods, scales, strict=True):
                    piece = pt.reshape(delta[start : start + mod.n_data] * scale, mod.data.shape)
                    start += mod.n_data
                    mod.noise.build(mod.name, means[mod.name] + piece, mod.data, mod.dims)
                return
        mu = pt.concatenate([pt.as_tensor_variable(means[m.name]).flatten() for m in mods])
        dims = self._observed_dims(model)
        if self.route == "hsgp":
            noises = [m.noise.factored(m.name, m.n_data) for m in mods]
            sizes = [m.n_data for m in mods]
            marginal_hsgp_likelihood(
                self.name, mu, self.data, phi, weights, sizes, scales, noises, dims
            )
            return
        scale_all = pt.concatenate(
            [pt.ones(m.n_data) * s for m, s in zip(mods, scales, strict=True)]
        )
        kernel = symbolic_kernel(self.process, self.coords, ls, amp)
        kernel = kernel * pt.outer(scale_all, scale_all)
        noise = pt.linalg.block_diag(*[m.noise.covariance_tensor(m.name, m.n_data) for m in mods])
        pm.MvNormal(self.name, mu=mu, cov=noise + kernel, observed=self.data, dims=dims)

    def _hyperparameter_variables(self) -> tuple[Any, Any]:
        """Add the learned lengthscale and amplitude; return them (or the fixed values)."""
        ls, amp = self.lengthscale, self.amplitude
        if isinstance(ls, Prior):
            ls = ls.build(f"{self.process_name}_lengthscale", (), None)
        if isinstance(amp, Prior):
            amp = amp.build(f"{self.process_name}_amplitude", (), None)
        return ls, amp

    def _scale_variables(self) -> list[Any]:
        """Add each modality's learned discrepancy scale; return the scales."""
        scales = []
        for mod in self.modalities:
            s = mod.discrepancy.scale
            if isinstance(s, Prior):
                s = s.build(f"{mod.name}_discrepancy_scale", (), None)
            scales.append(s)
        return scales

    def _observed_dims(self, model: pm.Model) -> tuple[str, ...]:
        """Return the block's data dims: the modality's, or ``<block>_obs`` (added to ``model``)."""
        if len(self.modalities) == 1:
            return self.modalities[0].dims
        dims = (f"{self.name}_obs",)
        labels = [f"{m.name}[{i}]" for m in self.modalities for i in range(m.n_data)]
        model.add_coord(dims[0], labels)
        return dims

    def _warn_if_large(self, n_basis: int) -> None:
        if n_basis <= LARGE_BASIS:
            return
        lo, hi = self.lengthscale_range
        cost = (
            f"each evaluation factorizes a {n_basis} x {n_basis} matrix"
            if self.marginalize
            else f"NUTS samples {n_basis} coefficients"
        )
        warnings.warn(
            f"discrepancy {self.process_name!r}: the HSGP basis has {n_basis} functions for the "
            f"lengthscale range {lo:.3g}-{hi:.3g} (5-95 %), so {cost}. A narrower "
            "lengthscale prior (the basis grows with its max/min ratio), or n_basis=, "
            "makes it cheaper",
            UserWarning,
            stacklevel=5,  # here, build, JointInversion._build_model, .model, the caller
        )


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
