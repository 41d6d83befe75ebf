"""The collapsed route: NUTS on a few hyperparameters, the latent fields integrated out exactly.

Many problems are linear-Gaussian once a few hyperparameters ``θ`` are fixed: a learned noise sd
or noise ``scale`` (the "how do I weight my data sets" question), the learned marginal sd of a
:class:`~bayesjoint.priors.GaussianField`, the learned hyperparameters of a GP discrepancy on its
exact route, the learned scatter of a linear petrophysical link. Plain NUTS on the joint posterior
of ``θ`` and the fields meets a funnel there (a noise sd near zero pins the field to the data);
the collapsed route does not: the fields are integrated out in closed form, NUTS runs on ``θ``
alone (a handful of coordinates) with the log marginal likelihood ``log p(d | θ)`` as a
``pm.Potential``, and every ``θ`` draw gets one exact draw of the fields from ``p(m | θ, d)``. The
result has the layout of NUTS on the full model.

The data enter the compiled graphs as shared variables, so a ``problem.with_data`` copy fits
its new data with the marginal model compiled for the first (:meth:`CollapsedProblem.for_problem`).

The problem's conditional system comes from the exact path itself
(:meth:`bayesjoint.JointInversion.linear_gaussian_system`) applied to a copy of the problem in
which every learned factor is 1, so whatever that path can express (sparse operators,
observation operators, fixed discrepancies, linear couplings) the collapsed route can too.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import time
import warnings
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import arviz as az
import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import scipy.linalg as sla
import scipy.sparse as sp
from pytensor.gradient import DisconnectedType, zero_grad
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from bayesjoint.coupling.petrophysics import Petrophysical
from bayesjoint.discrepancy.kernels import _spd_inverse, kernel_matrix, symbolic_kernel
from bayesjoint.inference.exact import (
    _derived_quantities,
    _inference_data,
    latent_free_names,
    latent_free_values,
)
from bayesjoint.inference.threads import chains_running, safe_start_method
from bayesjoint.noise import Noise
from bayesjoint.priors import GaussianField, Prior

__all__ = [
    "COLLAPSED_LIMIT",
    "CONDITIONAL_CHUNK_BYTES",
    "THETA_TARGET_ACCEPT",
    "CollapsedAssembler",
    "CollapsedProblem",
    "DrawStreams",
    "collapsed_draws",
    "collapsed_idata",
    "collapsed_route_blocker",
    "draw_streams",
    "sample_collapsed",
]

#: Default target acceptance rate of NUTS on the hyperparameters. They are few, so smaller steps
#: cost little, and the marginal posterior of a noise sd in the sampler's log coordinates often
#: has one steep side (where the sd prior's tail meets the data), which larger steps diverge on.
THETA_TARGET_ACCEPT = 0.95

#: Largest ``min(n, N)`` (latent values, data) for which the collapsed route applies: each
#: evaluation of the log marginal likelihood factorizes a dense matrix of that size.
COLLAPSED_LIMIT = 3000

#: Largest memory (bytes) the batched conditional draws of the fields build at once; the draws
#: are made in chunks of draws below it (see :meth:`CollapsedProblem.chunk_draws`).
CONDITIONAL_CHUNK_BYTES = 256 * 2**20

_LOG_2PI = float(np.log(2.0 * np.pi))
_POTRF, _POTRI = sla.lapack.dpotrf, sla.lapack.dpotri


class DrawStreams:
    """One random stream per draw: draw ``k``'s standard normals depend on its key only.

    Parameters
    ----------
    keys : sequence
        One :class:`numpy.random.SeedSequence` entropy per draw, e.g. ``(seed, 1, chain, i)``.

    Notes
    -----
    ``standard_normal((S, k))`` returns row ``s`` from stream ``s``, continuing it; so draws
    made in chunks, or some now and the rest later, are the draws made all at once.
    """

    def __init__(self, keys: Any = (), *, generators: list | None = None):
        self.generators = (
            list(generators)
            if generators is not None
            else [np.random.default_rng(list(k)) for k in keys]
        )

    def __len__(self) -> int:
        return len(self.generators)

    def __getitem__(self, index: slice) -> DrawStreams:
        return DrawStreams(generators=self.generators[index])

    def standard_normal(self, shape: Any) -> np.ndarray:
        """Return an array of ``shape`` whose row ``s`` (axis 0) comes from stream ``s``."""
        shape = tuple(np.atleast_1d(shape).tolist())
        if not shape or shape[0] != len(self.generators):
            raise ValueError(f"DrawStreams of {len(self)} draws cannot fill shape {shape}")
        rows = [g.standard_normal(shape[1:]) for g in self.generators]
        return np.stack(rows) if rows else np.empty(shape)


def draw_streams(random_seed: int, chains: Any, indices: Any) -> DrawStreams:
    """Return the streams of draws ``indices[s]`` of chains ``chains[s]`` of a run seeded so."""
    return DrawStreams(
        (int(random_seed), 1, int(c), int(i)) for c, i in zip(chains, indices, strict=True)
    )


class _Known(Noise):
    """Gaussian noise with a known covariance ``C`` (the fixed part of a learned noise)."""

    is_gaussian = True

    def __init__(self, fixed: np.ndarray):
        self.fixed = np.asarray(fixed, dtype=float)

    def factored(self, modality: str, n: int) -> tuple[Any, np.ndarray]:
        """Return ``(1.0, fixed)``: nothing is learned."""
        return 1.0, self.fixed

    def build(self, modality, mu, data, dims):  # pragma: no cover - the copy is never built
        """Add the observed variable (sd vector or Cholesky factor of ``C``)."""
        if self.fixed.ndim == 2:
            return pm.MvNormal(modality, mu=mu, chol=self.fixed, observed=data, dims=dims)
        sd = self.fixed.reshape(np.shape(data))
        return pm.Normal(modality, mu=mu, sigma=sd, observed=data, dims=dims)

    def __repr__(self) -> str:
        return f"_Known(<{self.fixed.shape}>)"


def _logdet_factor(fixed: np.ndarray) -> float:
    """Return ``log det C`` for an sd vector (``C = diag(sd²)``) or a Cholesky factor of ``C``."""
    diag = fixed if fixed.ndim == 1 else np.diag(fixed)
    return 2.0 * float(np.sum(np.log(np.abs(diag))))


def _dense(matrix: Any) -> np.ndarray:
    return np.asarray(matrix.toarray() if sp.issparse(matrix) else matrix, dtype=float)


def _compression(w: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Return ``(R, Q)`` of the thin QR factorization ``W = Q R`` of the operator rows ``W``.

    ``(W, None)`` when ``W`` has no more rows than columns (nothing to compress). It depends on
    the operator only, not on the data.
    """
    if w.shape[0] <= w.shape[1]:
        return w, None
    q, r = np.linalg.qr(w)
    return r, q


def _compressed_data(q: np.ndarray | None, e: np.ndarray) -> tuple[np.ndarray, float]:
    """Return ``(b, ρ)`` with ``‖e − W x‖² = ρ + ‖b − R x‖²`` for all ``x`` (see _compression)."""
    if q is None:
        return e, 0.0
    b = q.T @ e
    return b, float(np.sum((e - q @ b) ** 2))


def _compress(w: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Return ``(R, b, ρ)`` with ``‖e − W x‖² = ρ + ‖b − R x‖²`` for all ``x`` (thin QR)."""
    r, q = _compression(w)
    return (r, *_compressed_data(q, e))


class _LogdetAndSolve(Op):
    """``(log det P, P⁻¹ B)`` for a symmetric positive-definite ``P``, with their gradients.

    One Cholesky factorization forward (``B`` a matrix: several right-hand sides); backward
    ``∂ log det P / ∂P = P⁻¹`` and, with ``X = P⁻¹ B`` and ``G`` the gradient of ``X``,
    ``∂/∂P = −P⁻¹ G Xᵀ``, ``∂/∂B = P⁻¹ G``: one inverse (LAPACK ``potrf`` + ``potri``). A
    factorization that fails gives ``+inf`` and NaNs (a log density of ``-inf``).
    """

    __props__ = ()

    def make_node(self, matrix, rhs):
        matrix = pt.as_tensor_variable(matrix, dtype="float64")
        rhs = pt.as_tensor_variable(rhs, dtype="float64")
        return Apply(self, [matrix, rhs], [pt.dscalar(), pt.dmatrix()])

    def perform(self, node, inputs, outputs):
        matrix, rhs = inputs
        try:
            factor = sla.cholesky(matrix, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            outputs[0][0] = np.asarray(np.inf)
            outputs[1][0] = np.full_like(rhs, np.nan)
            return
        outputs[0][0] = np.asarray(2.0 * np.sum(np.log(np.diag(factor))))
        outputs[1][0] = sla.cho_solve((factor, True), rhs, check_finite=False)

    def L_op(self, inputs, outputs, output_grads):
        matrix, rhs = inputs
        _, solution = outputs
        g_logdet, g_solution = output_grads
        inverse = _spd_inverse(matrix)
        grad_matrix = pt.zeros_like(matrix)
        grad_rhs = pt.zeros_like(rhs)
        if not isinstance(g_logdet.type, DisconnectedType):
            grad_matrix = grad_matrix + g_logdet * inverse
        if not isinstance(g_solution.type, DisconnectedType):
            back = pt.dot(inverse, g_solution)
            grad_matrix = grad_matrix - pt.dot(back, solution.T)
            grad_rhs = grad_rhs + back
        return [grad_matrix, grad_rhs]


_logdet_and_solve = _LogdetAndSolve()


@functools.lru_cache(maxsize=16)
def _upper_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n, 1)


class _GaussianQuadratic(Op):
    """``log det K + rᵀ K⁻¹ r`` for a symmetric positive-definite ``K``, with its gradient.

    The forward pass also returns ``K⁻¹`` and ``K⁻¹ r`` (one Cholesky factorization, LAPACK
    ``potri``), so the gradient ``∂/∂K = K⁻¹ − x xᵀ``, ``∂/∂r = 2 x`` (``x = K⁻¹ r``) costs no
    further factorization or Op call: for the small data-space blocks of the collapsed route the
    call overhead, not the arithmetic, dominates. A failed factorization gives ``+inf``.
    """

    __props__ = ()

    def make_node(self, matrix, vector):
        matrix = pt.as_tensor_variable(matrix, dtype="float64")
        vector = pt.as_tensor_variable(vector, dtype="float64")
        return Apply(self, [matrix, vector], [pt.dscalar(), pt.dmatrix(), pt.dvector()])

    def perform(self, node, inputs, outputs):
        matrix, vector = inputs
        factor, info = _POTRF(matrix, lower=1, clean=0)  # LAPACK directly: small matrices
        if info == 0:
            inverse, info = _POTRI(factor, lower=1)
        if info != 0:
            outputs[0][0] = np.asarray(np.inf)
            outputs[1][0] = np.full_like(matrix, np.nan)
            outputs[2][0] = np.full_like(vector, np.nan)
            return
        upper = _upper_indices(inverse.shape[0])
        inverse[upper] = inverse.T[upper]  # potri fills the lower triangle only
        solution = inverse @ vector
        outputs[0][0] = np.asarray(2.0 * np.log(factor.diagonal()).sum() + solution @ vector)
        outputs[1][0] = inverse
        outputs[2][0] = solution

    def L_op(self, inputs, outputs, output_grads):
        _, inverse, solution = outputs
        grad = output_grads[0]
        if any(not isinstance(g.type, DisconnectedType) for g in output_grads[1:]):
            raise NotImplementedError("_GaussianQuadratic: only its first output is differentiable")
        return [grad * (inverse - pt.outer(solution, solution)), grad * 2.0 * solution]

    def connection_pattern(self, node):
        return [[True, False, False], [True, False, False]]


def _gaussian_quadratic(matrix: Any, vector: Any) -> Any:
    """Return ``log det K + rᵀ K⁻¹ r`` (see :class:`_GaussianQuadratic`)."""
    return _GaussianQuadratic()(matrix, vector)[0]


def _learned_noise(mod: Any) -> tuple[str | None, np.ndarray]:
    """Return ``(θ name or None, fixed factor)`` of a modality's Gaussian noise.

    The noise model answers through :meth:`bayesjoint.noise.Noise.factored` (called in a
    throwaway model, so the learned variable it adds is seen but kept nowhere).
    """
    with pm.Model() as probe:
        factor, fixed = mod.noise.factored(mod.name, mod.n_data)
    fixed = np.asarray(fixed, dtype=float)
    if not probe.free_RVs:
        return None, fixed
    rv = probe.free_RVs[0]
    if len(probe.free_RVs) > 1 or factor is not rv or rv.ndim != 0:
        raise ValueError(
            f"modality {mod.name!r}: noise {mod.noise!r} learns "
            f"{[v.name for v in probe.free_RVs]}, not one scalar factor of a known covariance"
        )
    return rv.name, fixed


@dataclass
class _Block:
    """Rows of the conditional system in noise-whitened coordinates.

    ``e = W z + ε`` with ``z`` the prior-whitened latent vector (at unit field sds), and
    ``ε ~ N(0, f² I)`` (``factor`` the name of ``f`` or None for 1) or, for a discrepancy block
    with learned parts, ``ε ~ N(0, Σ̃(θ))`` (``discrepancy`` set).
    """

    name: str
    w: np.ndarray
    e: np.ndarray
    factor: str | None = None
    discrepancy: _Discrepancy | None = None


@dataclass
class _Discrepancy:
    """A GP discrepancy block with learned hyperparameters (exact route), whitened by ``R``.

    ``Σ̃ = R⁻¹ (blockdiag(f_k² C_k) + S K(ℓ, a) S) R⁻ᵀ = blockdiag(f_k² I) + R⁻¹ S K S R⁻ᵀ``.
    """

    block: Any  # DiscrepancyBlock
    sizes: list[int]
    factors: list[str | None]
    rinv: np.ndarray  # (N,) for diagonal R, else (N, N)
    lengthscale: float | str
    amplitude: float | str
    scales: list[float | str]


@dataclass
class _Plan:
    """The learned hyperparameters: their names, the noise factors, fields, blocks, couplings."""

    theta: dict[str, str] = field(default_factory=dict)  # θ name -> what it is
    noise: dict[str, tuple[str | None, np.ndarray]] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)  # latent -> θ name of its sd
    dense: dict[str, Any] = field(default_factory=dict)  # block name -> DiscrepancyBlock
    scatter: dict[str, str] = field(default_factory=dict)  # coupling -> θ name


def _plan(problem: Any) -> _Plan:
    """Find the hyperparameters to sample; raise ValueError naming a part the route cannot take."""
    plan = _Plan()
    for name, var in problem.latent.items():
        prior = var.prior
        if prior.gaussian(var.shape, var.grid) is not None:
            continue
        if isinstance(prior, GaussianField) and isinstance(prior.sigma, Prior):
            plan.fields[name] = f"{name}_sigma"
            plan.theta[f"{name}_sigma"] = f"latent {name!r}: the Gaussian field's sd"
            continue
        raise ValueError(
            f"latent {name!r}: prior {prior!r} is not Gaussian given its hyperparameters "
            "(the collapsed route takes Gaussian priors and Gaussian fields with a learned sd)"
        )
    blocks = problem.discrepancy_blocks
    for block, mods in problem.blocks():
        for mod in mods:
            if not mod.noise.is_gaussian:
                raise ValueError(
                    f"modality {mod.name!r}: noise {mod.noise!r} is not Gaussian, so the "
                    "problem is not linear-Gaussian given any hyperparameters"
                )
            theta, fixed = _learned_noise(mod)
            plan.noise[mod.name] = (theta, fixed)
            if theta is not None:
                plan.theta[theta] = f"modality {mod.name!r}: the noise factor"
        if block not in blocks:
            continue
        disc = blocks[block]
        learned = {
            f"{disc.process_name}_lengthscale": isinstance(disc.lengthscale, Prior),
            f"{disc.process_name}_amplitude": isinstance(disc.amplitude, Prior),
            **{f"{m.name}_discrepancy_scale": isinstance(m.discrepancy.scale, Prior) for m in mods},
        }
        if not any(learned.values()) and all(plan.noise[m.name][0] is None for m in mods):
            continue  # fixed: the exact path takes it as it is
        if disc.route != "exact":
            raise ValueError(
                f"discrepancy {block!r} has learned hyperparameters on the {disc.route!r} "
                "route; the collapsed route takes the exact discrepancy route "
                "(bj.discrepancy.GP(..., method='exact'))"
            )
        plan.dense[block] = disc
        for name, is_learned in learned.items():
            if is_learned:
                plan.theta[name] = f"discrepancy {block!r}: {name}"
    for coupling in problem.couplings:
        if isinstance(coupling, Petrophysical) and isinstance(coupling.scatter, Prior):
            plan.scatter[coupling.name] = f"{coupling.name}_scatter"
            plan.theta[f"{coupling.name}_scatter"] = f"coupling {coupling.name!r}: the scatter"
    if not plan.theta:
        raise ValueError(
            "the problem learns no hyperparameters, so there is nothing to integrate over; "
            "it is linear-Gaussian or not at all (method='exact' or 'nuts')"
        )
    return plan


def _shadow(problem: Any, plan: _Plan) -> Any:
    """Return a copy of ``problem`` with every learned factor set to 1 (known noise, unit sds)."""
    latent = []
    for name, var in problem.latent.items():
        if name in plan.fields:
            prior = copy.copy(var.prior)
            prior.sigma = 1.0
            var = copy.copy(var)
            var.prior = prior
        latent.append(var)
    in_dense = {m.name for block in plan.dense.values() for m in block.modalities}
    modalities = []
    for mod in problem.modalities.values():
        theta, fixed = plan.noise[mod.name]
        if theta is not None or mod.name in in_dense:
            mod = copy.copy(mod)
            if theta is not None:
                mod.noise = _Known(fixed)
            if mod.name in in_dense:
                mod.discrepancy = None
                mod.discrepancy_coords = None
        modalities.append(mod)
    couplings = []
    for coupling in problem.couplings:
        if coupling.name in plan.scatter:
            coupling = copy.copy(coupling)
            coupling.scatter = np.asarray(1.0)
        couplings.append(coupling)
    return type(problem)(latent=latent, modalities=modalities, couplings=couplings)


class CollapsedProblem:
    """A conditionally linear-Gaussian problem with its latent fields integrated out.

    Parameters
    ----------
    problem : JointInversion
        Linear-Gaussian once the hyperparameters ``θ`` are fixed (see the module notes).
    form : {"auto", "parameter", "data"}, default "auto"
        How the log marginal likelihood is factorized: ``"parameter"`` (an ``n × n`` precision,
        ``n`` latent values, plus the data-space rows of the Notes) or ``"data"`` (``N × N``,
        ``N`` data and coupling rows); ``"auto"`` takes the cheaper.

    Attributes
    ----------
    theta : dict of str to str
        The sampled hyperparameters (model variable names, as in the full model) and what each
        is.
    n, n_data : int
        Latent values and data rows.
    form : str

    Raises
    ------
    ValueError
        Naming the part of the problem that keeps it from being linear-Gaussian given ``θ``.

    Notes
    -----
    Write the prior ``m = μ + L₀ D(θ) z``, ``z ~ N(0, I)``, with ``L₀`` the prior factor at unit
    field sds and ``D(θ)`` the learned field sds on the diagonal (1 elsewhere), and whiten each
    block's data by its known noise factor ``R_k``: ``e_k = R_k⁻¹ (d_k − b_k − A_k μ) =
    W_k D z + ε_k`` with ``W_k = R_k⁻¹ A_k L₀`` and ``ε_k ~ N(0, f_k² I)`` (or ``Σ̃_k(θ)`` for a
    discrepancy block). Then ``e ~ N(0, Σ̃ + W D² Wᵀ)``, and

    - data form: ``−2 log p(d | θ) = N log 2π + log det R² + log det K + eᵀ K⁻¹ e`` with
      ``K = Σ̃ + Σ_j d_j² M_j``, ``M_j = W_{:,j} W_{:,j}ᵀ`` per group of columns sharing a
      scale, precomputed: ``O(N³)`` per evaluation;
    - parameter form: the blocks ``B`` with a known noise or a learned factor on at least ``n``
      rows enter the precision ``P_B = I + D (Σ_B W_kᵀ W_k / f_k²) D`` (Gram matrices
      precomputed, so ``O(n³)`` per evaluation, not ``O(N n²)``) with ``h_B = D Σ_B W_kᵀ e_k /
      f_k²``; by the determinant lemma and Woodbury their part is
      ``Σ_B N_k log f_k² + log det P_B + J_B(ẑ)``, ``ẑ = P_B⁻¹ h_B``, with
      ``J_B(z) = ‖z‖² + Σ_B ‖e_k − W_k D z‖² / f_k²`` evaluated from compressed residuals (a
      thin QR factorization per block), never as the difference ``eᵀ Σ̃⁻¹ e − hᵀ P⁻¹ h`` of two
      ``1/f²``-sized terms; ``J_B`` is minimal at ``ẑ``, so its gradient in ``θ`` is the partial
      one at ``ẑ`` fixed. The other rows ``S`` (a learned factor on fewer than ``n`` rows, which
      may approach zero with the data still fitted; discrepancy blocks) enter in data space
      given ``B``: ``e_S ~ N(W_S D ẑ, K_S)``, ``K_S = Σ̃_S + W_S D P_B⁻¹ D W_Sᵀ``, which stays
      well conditioned as ``f → 0``. One Cholesky factorization of ``P_B`` gives its log
      determinant, ``ẑ`` and ``P_B⁻¹ D W_Sᵀ``. When a single scalar moves ``P_B`` (one
      learned noise among the blocks ``B``, or one learned sd scaling every latent value), its
      generalized eigenvectors are computed once and an evaluation costs ``O(n + N_S² n)``
      instead (``_single_scale``): the usual case of one or two learned noise sds.

    The factorizations are Ops with analytic gradients (one Cholesky factorization forward, one
    inverse backward). Given ``θ`` a draw is exact: see :meth:`conditional_draws`.

    Only ``e`` depends on the data. What derives from it (``b_k = Q_kᵀ e_k``, ``ρ_k``,
    ``R_kᵀ b_k``, ``e_S``, the closed form's projections) enters the graphs as shared
    variables, the operators' pieces (``R_k``, ``Q_k``, ``M_j``, eigenvectors) as constants, so
    the collapsed problem of new data (:meth:`for_problem`, which the route takes for a
    ``problem.with_data`` copy) reuses this one's model of ``θ`` and compiled functions.

    Examples
    --------
    ``x ~ N(0, 2²)`` measured once (3.0) with a learned noise sd ``s``: ``d ~ N(0, 2² + s²)``.

    >>> import bayesjoint as bj
    >>> x = bj.Parameter("x", prior=bj.priors.Normal(0.0, 2.0))
    >>> a = bj.Modality("a", bj.physics.Linear([[1.0]], input="x"), [3.0],
    ...                 bj.noise.Gaussian(bj.priors.HalfNormal(1.0)))
    >>> collapsed = CollapsedProblem(bj.JointInversion([x], [a]))
    >>> list(collapsed.theta)
    ['a_sigma']
    >>> round(collapsed.log_marginal_likelihood({"a_sigma": 1.0}), 6)  # log N(3; 0, 5)
    -2.623657
    """

    def __init__(self, problem: Any, form: str = "auto"):
        if form not in ("auto", "parameter", "data"):
            raise ValueError(f"form={form!r}; choose 'auto', 'parameter' or 'data'")
        plan = _plan(problem)
        self._plan = plan
        # what the copies of for_problem() share: the operators' pieces, the shared data
        # variables, the compiled functions and the model of θ (see for_problem)
        self._shared_state: dict[str, Any] = {"structures": {}, "tensors": {}, "functions": {}}
        self.theta = dict(plan.theta)
        self._check_free_variables(problem)
        n = int(sum(var.size for var in problem.latent.values()))
        n_data = int(sum(m.n_data for m in problem.modalities.values()))
        if min(n, n_data) > COLLAPSED_LIMIT:
            raise ValueError(
                f"the problem has {n} latent values and {n_data} data; the collapsed route "
                f"factorizes a dense matrix of the smaller size, up to {COLLAPSED_LIMIT}"
            )
        system = _shadow(problem, plan).linear_gaussian_system()
        self._latent = dict(problem.latent)
        self._modalities = dict(problem.modalities)
        self._couplings = {c.name: c for c in problem.couplings}
        self.prior_mean = np.asarray(system.prior_mean, dtype=float)
        self.prior_factor = _dense(system.prior_factor)
        self.n = int(self.prior_mean.size)
        self._columns: list[tuple[slice, str | None]] = []
        start = 0
        for name, var in problem.latent.items():
            self._columns.append((slice(start, start + var.size), plan.fields.get(name)))
            start += var.size
        self._blocks, self._log_det_r = self._assemble(problem, system)
        self.n_data = int(sum(b.e.size for b in self._blocks))
        if min(self.n, self.n_data) > COLLAPSED_LIMIT:  # the coupling rows count too
            raise ValueError(
                f"the problem has {self.n} latent values and {self.n_data} data and coupling "
                f"rows; the collapsed route factorizes a dense matrix of the smaller size, up to "
                f"{COLLAPSED_LIMIT}"
            )
        if form == "auto":
            form = min(("parameter", "data"), key=self._cost)
        self.form = form

    # -- set-up -------------------------------------------------------------------------------
    def _check_free_variables(self, problem: Any) -> None:
        known = set(self.theta) | set(latent_free_names(problem.latent))
        extra = sorted({rv.name for rv in problem.model.free_RVs} - known)
        if extra:
            raise ValueError(
                f"the model samples {extra}, which the collapsed route neither integrates out "
                "nor samples (e.g. sampled HSGP coefficients)"
            )

    def _assemble(self, problem: Any, system: Any) -> tuple[list[_Block], float]:
        """Return the whitened blocks of the conditional system and ``log det R²``."""
        plan = self._plan
        whitened = [_dense(w) for w in system.whitened()]
        data = self._data_rows(system)
        rows = {name: (w, data[name]) for name, w in zip(system.modalities, whitened, strict=True)}
        blocks: list[_Block] = []
        log_det = 0.0
        for block, mods in problem.blocks():
            if block in plan.dense:
                blocks.append(self._dense_block(block, plan.dense[block], rows))
                log_det += sum(_logdet_factor(plan.noise[m.name][1]) for m in mods)
                continue
            if block in problem.discrepancy_blocks:  # fixed: whitened by the full covariance
                log_det += self._fixed_discrepancy_logdet(problem.discrepancy_blocks[block])
                blocks.append(_Block(block, *rows[block]))
                continue
            (mod,) = mods
            theta, fixed = plan.noise[mod.name]
            log_det += _logdet_factor(fixed)
            blocks.append(_Block(block, *rows[block], factor=theta))
        for coupling in problem.couplings:
            theta = plan.scatter.get(coupling.name)
            if theta is None:
                _, offset, sd = coupling.gaussian_factor(problem.latent)
                sd = np.broadcast_to(np.asarray(sd, float), np.shape(offset)).ravel()
                log_det += 2.0 * float(np.sum(np.log(sd)))
            blocks.append(_Block(coupling.name, *rows[coupling.name], factor=theta))
        return blocks, log_det

    def _data_rows(self, system: Any) -> dict[str, np.ndarray]:
        """Return ``e_k = R_k⁻¹ (d_k − b_k) − G_k μ`` per block of the conditional system."""
        return {
            name: np.asarray(r, dtype=float) - _dense(g) @ self.prior_mean
            for name, g, r in zip(
                system.modalities, system.operators, system.residuals, strict=True
            )
        }

    def for_problem(self, problem: Any) -> CollapsedProblem:
        """Return the collapsed problem of ``problem``, which differs from this one's in its data.

        Parameters
        ----------
        problem : JointInversion
            This problem with other data (:meth:`~bayesjoint.JointInversion.with_data`, whose
            copies share the PyMC model): the same latent variables, operators, noise models,
            couplings and data shapes.

        Returns
        -------
        CollapsedProblem
            A copy that shares the operators' pieces (QR and eigen factorizations, Gram
            matrices), the model of ``θ`` and every compiled function with this one, and holds
            the whitened data rows of ``problem``: the conditional system's data vector is
            assembled afresh, nothing is compiled again (the graphs read the data through
            shared variables, set to the copy's values whenever it is used). Its results are
            those of a collapsed problem built afresh on ``problem``.

        Raises
        ------
        ValueError
            When ``problem``'s data shapes differ from this one's, the data of a discrepancy
            block differ (its plan may read them), or its model samples a variable the route
            neither integrates out nor samples.
        """
        shapes = {name: m.data.shape for name, m in problem.modalities.items()}
        own = {name: m.data.shape for name, m in self._modalities.items()}
        latent = {name: var.shape for name, var in self._latent.items()}
        if shapes != own or dict(problem.latent_shapes) != latent:
            raise ValueError(
                f"the problem has data of shapes {shapes} and latent shapes "
                f"{dict(problem.latent_shapes)}; this collapsed problem was built for {own} and "
                f"{latent}: build the collapsed problem afresh (CollapsedProblem(problem))"
            )
        for block, mods in problem.blocks():
            if block in problem.discrepancy_blocks and any(
                not np.array_equal(m.data, self._modalities[m.name].data) for m in mods
            ):
                raise ValueError(
                    f"discrepancy block {block!r} has new data, and its plan may read them; "
                    "build the collapsed problem afresh (CollapsedProblem(problem))"
                )
        self._check_free_variables(problem)
        system = _shadow(problem, self._plan).linear_gaussian_system()
        rows = self._data_rows(system)
        blocks = []
        for block in self._blocks:
            if block.discrepancy is not None:
                e = np.concatenate([rows[m.name] for m in block.discrepancy.block.modalities])
            else:
                e = rows[block.name]
            if e.shape != block.e.shape:
                raise ValueError(
                    f"block {block.name!r} has {e.size} data rows, the collapsed problem "
                    f"{block.e.size}; build the collapsed problem afresh (CollapsedProblem(...))"
                )
            blocks.append(dataclasses.replace(block, e=e))
        new = copy.copy(self)
        new.__dict__.pop("_constants", None)  # this problem's data pieces: its own
        new._blocks = blocks
        new._modalities = dict(problem.modalities)
        return new

    def _dense_block(self, name: str, disc: Any, rows: Mapping[str, Any]) -> _Block:
        plan = self._plan
        mods = disc.modalities
        w = np.vstack([rows[m.name][0] for m in mods])
        e = np.concatenate([rows[m.name][1] for m in mods])
        fixed = [plan.noise[m.name][1] for m in mods]
        if all(f.ndim == 1 for f in fixed):
            rinv = 1.0 / np.concatenate(fixed)
        else:
            rinv = sla.block_diag(
                *[
                    np.diag(1.0 / f)
                    if f.ndim == 1
                    else sla.solve_triangular(f, np.eye(f.shape[0]), lower=True)
                    for f in fixed
                ]
            )
        prefix = disc.process_name
        info = _Discrepancy(
            block=disc,
            sizes=[m.n_data for m in mods],
            factors=[plan.noise[m.name][0] for m in mods],
            rinv=rinv,
            lengthscale=f"{prefix}_lengthscale"
            if isinstance(disc.lengthscale, Prior)
            else float(disc.lengthscale),
            amplitude=f"{prefix}_amplitude"
            if isinstance(disc.amplitude, Prior)
            else float(disc.amplitude),
            scales=[
                f"{m.name}_discrepancy_scale"
                if isinstance(m.discrepancy.scale, Prior)
                else float(m.discrepancy.scale)
                for m in mods
            ],
        )
        return _Block(name, w, e, discrepancy=info)

    @staticmethod
    def _fixed_discrepancy_logdet(disc: Any) -> float:
        """Return ``log det`` of a fixed discrepancy block's covariance (noise + ``S K S``)."""
        mods = disc.modalities
        covs = []
        for mod in mods:
            f = np.asarray(mod.noise.gaussian_factor(mod.name, mod.data.shape), dtype=float)
            covs.append(f @ f.T if f.ndim == 2 else np.diag(f**2))
        s = np.concatenate([np.full(m.n_data, float(m.discrepancy.scale)) for m in mods])
        k = kernel_matrix(
            disc.coords,
            disc.coords,
            disc.process.kernel,
            float(disc.lengthscale),
            float(disc.amplitude),
        )
        cov = sla.block_diag(*covs) + k * np.outer(s, s)
        return 2.0 * float(np.sum(np.log(np.diag(sla.cholesky(cov, lower=True)))))

    # -- the hyperparameters ------------------------------------------------------------------
    def build_theta(self) -> dict[str, Any]:
        """Add the hyperparameters to the model on the context stack, as the full model does.

        Each owner builds its own (the noise model through
        :meth:`~bayesjoint.noise.Noise.factored`, the field's sd prior, the discrepancy block,
        the coupling's scatter prior), so names and priors are those of the full model.

        Returns
        -------
        dict of str to tensor
        """
        theta: dict[str, Any] = {}
        for name, var in self._latent.items():
            if name in self._plan.fields:
                theta[f"{name}_sigma"] = var.prior.sigma.build(f"{name}_sigma", (), None)
        for name, mod in self._modalities.items():
            key = self._plan.noise[name][0]
            if key is not None:
                theta[key] = mod.noise.factored(name, mod.n_data)[0]
        for disc in self._plan.dense.values():
            ls, amp = disc._hyperparameter_variables()
            scales = disc._scale_variables()
            for value in (ls, amp, *scales):
                if isinstance(value, pt.TensorVariable) and value.name in self.theta:
                    theta[value.name] = value
        for name, key in self._plan.scatter.items():
            theta[key] = self._couplings[name].scatter.build(key, (), None)
        return theta

    @staticmethod
    def _value(theta: Mapping[str, Any], value: float | str | None) -> Any:
        if value is None:
            return 1.0
        return theta[value] if isinstance(value, str) else value

    def _column_scales(self, theta: Mapping[str, Any]) -> Any:
        """Return ``diag D(θ)`` as a tensor, or None when no field sd is learned."""
        if all(key is None for _, key in self._columns):
            return None
        parts = [
            pt.ones(cols.stop - cols.start) * self._value(theta, key) for cols, key in self._columns
        ]
        return pt.concatenate(parts)

    def _noise_covariance(self, block: _Block, theta: Mapping[str, Any]) -> Any:
        """Return ``Σ̃(θ)`` of a discrepancy block (whitened by its known noise factor)."""
        info = block.discrepancy
        ls = self._value(theta, info.lengthscale)
        amp = self._value(theta, info.amplitude)
        kernel = symbolic_kernel(info.block.process, info.block.coords, ls, amp)
        s = pt.concatenate(
            [
                pt.ones(size) * pt.as_tensor_variable(self._value(theta, sc), dtype="float64")
                for size, sc in zip(info.sizes, info.scales, strict=True)
            ]
        )
        kernel = kernel * pt.outer(s, s)
        if info.rinv.ndim == 1:
            kernel = kernel * pt.constant(np.outer(info.rinv, info.rinv))
        else:
            rinv = pt.constant(info.rinv)
            kernel = rinv @ kernel @ rinv.T
        f2 = pt.concatenate(
            [
                pt.ones(size) * pt.as_tensor_variable(self._value(theta, f), dtype="float64") ** 2
                for size, f in zip(info.sizes, info.factors, strict=True)
            ]
        )
        return kernel + pt.diag(f2)

    # -- the partition of the blocks ---------------------------------------------------------
    def _in_parameter_space(self, block: _Block, form: str) -> bool:
        """Whether ``block`` enters through the ``n × n`` precision (else through data space).

        In the parameter form: blocks with a known noise, and blocks with a learned noise
        factor and at least ``n`` rows (a factor near zero leaves them no posterior mass). A
        learned factor on fewer rows can approach zero with the data still fitted exactly;
        there ``1/f²`` would swamp the precision's unit prior part, so such blocks and the
        discrepancy blocks go to data space, where ``f → 0`` is harmless.
        """
        if form == "data" or block.discrepancy is not None:
            return False
        return block.factor is None or block.e.size >= self.n

    def _one_scale(self) -> bool:
        """Whether the parameter form's precision moves with one scalar (see _single_scale).

        The same conditions as :meth:`_single_scale`, read from the blocks without computing
        anything: one key over all latent columns (one learned sd scaling all, or none), at most
        one learned-noise block in parameter space, and not both known blocks and a learned
        noise block when a field sd is learned.
        """
        keys = {key for _, key in self._columns}
        if len(keys) != 1:
            return False
        inside = [b for b in self._blocks if self._in_parameter_space(b, "parameter")]
        scaled = [b for b in inside if b.factor is not None]
        fixed = [b for b in inside if b.factor is None]
        field_key = next(iter(keys))
        return len(scaled) <= 1 and not (fixed and scaled and field_key is not None)

    def _cost(self, form: str) -> float:
        """Floating-point work of one evaluation of ``form`` (the order of magnitude).

        Data form ``N_S³``; parameter form ``n³ + N_S³ + n² N_S`` (a Cholesky factorization of
        ``P_B``), or with one moving scale ``n + N_S² n + N_S³`` (:meth:`_single_scale`).
        """
        rows = sum(b.e.size for b in self._blocks if not self._in_parameter_space(b, form))
        if form == "data":
            return float(rows) ** 3
        if self._one_scale():
            return float(self.n) * (1.0 + float(rows) ** 2) + float(rows) ** 3
        return float(self.n) ** 3 + float(rows) ** 3 + float(self.n) ** 2 * rows

    @cached_property
    def _constants(self) -> dict[str, dict[str, Any]]:
        return {}  # this problem's own (its data's) pieces, per form; see _form_constants

    def _structure(self, form: str) -> dict[str, Any]:
        """Return the pieces of ``form`` that do not depend on the data, computed once.

        ``inside``: per compressed parameter-space entry ``(θ name or None, rows, R, Q, block
        indices)`` (see :func:`_compression`); ``outside``: the indices of the data-space blocks
        (diagonal noise first); ``w``: their stacked rows; ``grams`` (data form); ``single``
        (parameter form, see :meth:`_single_scale`). Shared by the copies of
        :meth:`for_problem`, which differ from this problem in their data only.
        """
        structures = self._shared_state["structures"]
        if form in structures:
            return structures[form]
        blocks = self._blocks
        inside = [k for k, b in enumerate(blocks) if self._in_parameter_space(b, form)]
        outside = [k for k, b in enumerate(blocks) if not self._in_parameter_space(b, form)]
        outside.sort(key=lambda k: blocks[k].discrepancy is not None)  # diagonal noise first
        entries: list[tuple[Any, ...]] = []
        fixed = [k for k in inside if blocks[k].factor is None]
        if fixed:
            w = np.vstack([blocks[k].w for k in fixed])
            rows = int(sum(blocks[k].e.size for k in fixed))
            entries.append((None, rows, *_compression(w), fixed))
        entries += [
            (blocks[k].factor, blocks[k].e.size, *_compression(blocks[k].w), [k])
            for k in inside
            if blocks[k].factor
        ]
        struct: dict[str, Any] = {"inside": entries, "outside": outside}
        if outside:
            w = np.vstack([blocks[k].w for k in outside])
            struct["w"] = w
            if form == "data":
                groups: dict[str | None, list[slice]] = {}
                for cols, key in self._columns:
                    groups.setdefault(key, []).append(cols)
                struct["grams"] = {}
                for key, slices in groups.items():
                    part = np.hstack([w[:, cols] for cols in slices])
                    struct["grams"][key] = part @ part.T
        if form == "parameter":
            struct["single"] = self._single_scale(entries, struct.get("w"))
        structures[form] = struct
        return struct

    def _form_constants(self, form: str) -> dict[str, Any]:
        """Precomputed pieces of a form: the compressed parameter-space blocks, the data rows.

        A parameter-space block with more rows than columns is replaced by ``(R, b, ρ)`` from
        the thin QR factorization ``W = Q R``, ``b = Qᵀ e``, ``ρ = ‖e − Q b‖²``, so that
        ``‖e − W x‖² = ρ + ‖b − R x‖²`` with at most ``n`` rows; the known-noise blocks are
        stacked into one. Data form: ``M_j = W_{:,j} W_{:,j}ᵀ`` per group of columns sharing a
        scale. ``R``, ``Q``, ``M_j`` and the closed form's eigenvectors depend on the operators
        only (:meth:`_structure`, computed once); ``b``, ``ρ``, the data rows ``e_S`` and what
        derives from them are this problem's (``terms``: what the graphs read through shared
        variables, see :meth:`_tensors`).
        """
        if form in self._constants:
            return self._constants[form]
        struct = self._structure(form)
        blocks = self._blocks
        inside = []
        for key, rows, r, q, indices in struct["inside"]:
            e = (
                np.concatenate([blocks[k].e for k in indices])
                if key is None
                else blocks[indices[0]].e
            )
            inside.append((key, rows, r, *_compressed_data(q, e)))
        outside = [blocks[k] for k in struct["outside"]]
        const: dict[str, Any] = {"inside": inside, "outside": outside}
        if outside:
            const["w"] = struct["w"]
            const["e"] = np.concatenate([b.e for b in outside])
            if "grams" in struct:
                const["grams"] = struct["grams"]
        if form == "parameter":
            single = struct["single"]
            const["single"] = None if single is None else self._single_data(single, inside)
        terms: dict[str, np.ndarray] = {}
        for k, (_, _, r, b, rho) in enumerate(inside):
            terms[f"b{k}"] = np.asarray(b, dtype=float)
            terms[f"rho{k}"] = np.asarray(rho, dtype=float)
            terms[f"rb{k}"] = r.T @ b
        if outside:
            terms["e"] = const["e"]
        if const.get("single") is not None:
            single = const["single"]
            base, rho_learned, weights, _ = single["misfit"]
            terms.update(
                {name: np.asarray(single[name], dtype=float) for name in ("g0", "g1", "t0", "t1")}
            )
            terms["base"] = np.asarray(base, dtype=float)
            terms["rho_learned"] = np.asarray(rho_learned, dtype=float)
            terms["weights"] = weights
        const["terms"] = terms
        self._constants[form] = const
        return const

    def _tensors(self, form: str) -> dict[str, Any]:
        """Return the shared variables that hold the data terms of ``form`` in the graphs.

        One set per form for this problem and its copies (:meth:`for_problem`), set to this
        problem's values (:meth:`_bind`): the compiled graphs read the data through them, so
        new data need no new compilation.
        """
        shared = self._shared_state["tensors"].setdefault(form, {})
        for name, value in self._form_constants(form)["terms"].items():
            if name not in shared:
                shared[name] = pytensor.shared(value, name=f"collapsed_{form}_{name}")
        self._bind()
        return shared

    def _bind(self) -> None:
        """Set the shared data variables (every form built so far) to this problem's values."""
        for form, shared in self._shared_state["tensors"].items():
            terms = self._form_constants(form)["terms"]
            for name, variable in shared.items():
                value = terms[name]
                current = variable.get_value(borrow=True)
                if current is value:
                    continue
                if np.shape(current) != np.shape(value):  # pragma: no cover - a copy's data
                    raise ValueError(  # keep their shape (with_data refuses others)
                        f"collapsed data term {name!r} has shape {np.shape(value)}, the compiled "
                        f"graph {np.shape(current)}; build the collapsed problem afresh"
                    )
                variable.set_value(value, borrow=True)

    def _single_scale(self, compressed: list, w_outside: np.ndarray | None) -> dict | None:
        """Precompute ``P_B = A₀ + c(θ) A₁`` in closed form when one scalar ``c`` moves it.

        With ``s`` the field sd (when one learned sd scales every latent column, else 1) and
        ``f`` the factor of the one learned-noise block ``G`` in parameter space,
        ``P_B = I + s² Q_F + (s² / f²) Q_G`` (``F``: the known-noise blocks) has a single moving
        scalar when ``s`` is 1 (``A₀ = I + Q_F``, ``c = 1/f²``), or there is no ``G``
        (``A₀ = I``, ``A₁ = Q_F``, ``c = s²``) or no ``F`` (``A₀ = I``, ``A₁ = Q_G``,
        ``c = s²/f²``). With ``A₀ = L Lᵀ`` and the SVD ``R L⁻ᵀ = U Σ Vᵀ`` of the moving blocks'
        stacked (compressed) rows, ``T = L⁻ᵀ V`` gives ``P_B⁻¹ = T diag(1/(1 + cλ)) Tᵀ``,
        ``λ = σ²``, and ``log det P_B = log det A₀ + Σ log(1 + c λ_i)``; the misfit at the mode
        is ``J = K + ρ_G / f² + k Σ_i (β_i − σ_i y₀_i)² / (1 + c λ_i)`` (``β = Uᵀ b``, ``y₀`` the
        ridge fit of the known blocks in these coordinates, ``ρ_G`` the learned block's misfit
        outside the range of its rows, ``k`` 1 or ``1/f²``): a sum of non-negative terms, no
        division by a singular value, ``O(n)`` per evaluation (and ``O(N_S² n)`` for the
        data-space rows). Returns None otherwise.

        The entries of ``compressed`` are those of :meth:`_structure` (``θ`` name first, ``R``
        third); what is returned depends on the operators only, and :meth:`_single_data` adds
        the data's part (``g₀, g₁, Tᵀg₀, Tᵀg₁``, the misfit's terms).
        """
        keys = {key for _, key in self._columns}
        if len(keys) != 1:
            return None
        field_key = next(iter(keys))
        fixed = [c for c in compressed if c[0] is None]
        scaled = [c for c in compressed if c[0] is not None]
        if len(scaled) > 1 or (fixed and scaled and field_key is not None):
            return None
        n = self.n

        def stack(parts: list) -> np.ndarray:
            return np.vstack([p[2] for p in parts]) if parts else np.zeros((0, n))

        r_f, r_g = stack(fixed), stack(scaled)
        if field_key is not None and fixed:  # P = I + s² Q_F
            kind, a0, r_m = "one", np.eye(n), r_f
        else:  # P = (I + Q_F) + (s² / f²) Q_G, with s = 1 or Q_F = 0
            kind, a0, r_m = "inv_f2", np.eye(n) + r_f.T @ r_f, r_g
        chol = sla.cholesky(a0, lower=True)
        moving = sla.solve_triangular(chol, r_m.T, lower=True).T  # R L⁻ᵀ
        if moving.shape[0]:
            left, sig, vt = np.linalg.svd(moving, full_matrices=True)
        else:
            left, sig, vt = np.zeros((0, 0)), np.zeros(0), np.eye(n)
        rank = sig.size
        lam = np.zeros(n)
        lam[:rank] = sig**2
        t = sla.solve_triangular(chol.T, vt.T, lower=False)  # L⁻ᵀ V
        return {
            "field": field_key,
            "noise": scaled[0][0] if scaled else None,
            "c_from_fixed": kind == "one",
            "a0": a0,
            "a1": r_m.T @ r_m,
            "t": t,
            "lam": lam,
            "logdet_a0": 2.0 * float(np.sum(np.log(np.diag(chol)))),
            "u": None if w_outside is None else w_outside @ t,
            "basis": (kind, r_f, r_g, chol, left, sig, vt),
        }

    def _single_data(self, single: dict, compressed: list) -> dict:
        """Return :meth:`_single_scale`'s ``single`` with the data's part of ``compressed``.

        ``compressed``: this problem's ``(θ name or None, rows, R, b, ρ)`` entries.
        """
        n = self.n
        kind, r_f, r_g, chol, left, sig, vt = single["basis"]
        rank = sig.size

        def stack(parts: list) -> tuple[np.ndarray, float]:
            if not parts:
                return np.zeros(0), 0.0
            return np.concatenate([p[3] for p in parts]), float(sum(p[4] for p in parts))

        b_f, rho_f = stack([c for c in compressed if c[0] is None])
        b_g, rho_g = stack([c for c in compressed if c[0] is not None])
        b_m, rho_m = (b_f, rho_f) if kind == "one" else (b_g, rho_g)
        beta = left[:, :rank].T @ b_m
        outside_range = rho_m + float(np.sum((b_m - left[:, :rank] @ beta) ** 2))
        g0, g1 = r_f.T @ b_f, r_g.T @ b_g
        weights = np.zeros(n)
        if kind == "one":
            base, rho_learned = outside_range, 0.0
            weights[:rank] = beta**2
        else:
            z0 = sla.cho_solve((chol, True), g0)  # ridge fit of the known blocks
            base = float(z0 @ z0) + rho_f + float(np.sum((b_f - r_f @ z0) ** 2))
            rho_learned = outside_range
            y0 = vt @ (chol.T @ z0)
            weights[:rank] = (beta - sig * y0[:rank]) ** 2
        t = single["t"]
        return {
            **single,
            "g0": g0,
            "g1": g1,
            "t0": t.T @ g0,
            "t1": t.T @ g1,
            "misfit": (base, rho_learned, weights, kind),
        }

    def _pieces(self, theta: Mapping[str, Any], form: str) -> dict[str, Any]:
        """Return the symbolic pieces of ``form`` at ``theta`` (see the class notes).

        ``precision``, ``rhs``: ``P_B`` and ``h_B`` of the parameter-space blocks (and the
        prior); ``mode`` = ``P_B⁻¹ h_B`` with ``logdet_p``; ``misfit`` = ``J_B(mode)`` and
        ``logdet_noise`` = ``Σ_B N_k log f_k²``; for the data-space rows: ``noise`` (``Σ̃_S``),
        ``cov`` (``Σ̃_S + W_S D P_B⁻¹ D W_Sᵀ``) and ``resid`` (``e_S − W_S D mode``); ``scales``:
        ``diag D`` (None when no field sd is learned). The data enter through shared variables
        (:meth:`_tensors`), the operators as constants.
        """
        const = self._form_constants(form)
        data = self._tensors(form)
        d = self._column_scales(theta)
        out: dict[str, Any] = {"scales": d}
        gram = pt.zeros((self.n, self.n))
        rhs = pt.zeros(self.n)
        rows: list[tuple[Any, np.ndarray, Any, Any]] = []
        logdet_noise = pt.as_tensor_variable(0.0)
        for k, (key, _, r, _, _) in enumerate(const["inside"]):
            if key is None:
                gram = gram + r.T @ r
                rhs = rhs + data[f"rb{k}"]
                rows.append((1.0, r, data[f"b{k}"], data[f"rho{k}"]))
        scaled = [(k, c) for k, c in enumerate(const["inside"]) if c[0] is not None]
        if scaled:
            f = pt.stack([pt.as_tensor_variable(theta[c[0]], dtype="float64") for _, c in scaled])
            inv = 1.0 / f**2
            gram = gram + pt.tensordot(inv, np.stack([c[2].T @ c[2] for _, c in scaled]), axes=1)
            rhs = rhs + pt.dot(inv, pt.stack([data[f"rb{k}"] for k, _ in scaled]))
            logdet_noise = pt.dot(np.asarray([c[1] for _, c in scaled], float), pt.log(f**2))
            rows += [
                (inv[j], c[2], data[f"b{k}"], data[f"rho{k}"]) for j, (k, c) in enumerate(scaled)
            ]
        outside = const["outside"]
        single = const.get("single")
        if single is not None:
            sd = self._value(theta, single["field"])
            inv_f2 = 0.0
            if single["noise"] is not None:
                inv_f2 = 1.0 / self._value(theta, single["noise"]) ** 2
            c = sd**2 if single["c_from_fixed"] else sd**2 * inv_f2
            lam = pt.constant(single["lam"])
            delta = 1.0 / (1.0 + c * lam)
            y = sd * (data["t0"] + inv_f2 * data["t1"])
            precision = single["a0"] + c * pt.constant(single["a1"])
            rhs = sd * (data["g0"] + inv_f2 * data["g1"])
            logdet_p = single["logdet_a0"] + pt.sum(pt.log1p(c * lam))
            mode = pt.dot(pt.constant(single["t"]), delta * y)
            kind = single["misfit"][3]
            k = 1.0 if kind == "one" else inv_f2
            misfit = (
                data["base"] + inv_f2 * data["rho_learned"] + k * pt.sum(data["weights"] * delta)
            )
            out.update(delta=delta, y=y, sd=pt.as_tensor_variable(sd, dtype="float64"))
        else:
            if d is not None:
                gram = d[:, None] * gram * d[None, :]
                rhs = d * rhs
            precision = pt.eye(self.n) + gram
            w = pt.constant(const["w"]) if outside else None
            wd = w if d is None or w is None else w * d[None, :]
            # one factorization of P_B for its log det, the mode and (mixed form) P_B⁻¹ D W_Sᵀ
            columns = [rhs[:, None]] + ([wd.T] if outside and form != "data" else [])
            logdet_p, solved = _logdet_and_solve(precision, pt.concatenate(columns, axis=1))
            mode = solved[:, 0]
            # J(z) = ‖z‖² + Σ_k (ρ_k + ‖b_k − R_k D z‖²) / f_k² is minimal at the mode, where
            # it equals eᵀ Σ̃⁻¹ e − hᵀ P⁻¹ h; from the residuals it has no cancellation, and
            # (envelope theorem) its gradient in θ is ∂J/∂θ with the mode held fixed.
            fixed_mode = zero_grad(mode)
            scaled_mode = fixed_mode if d is None else d * fixed_mode
            misfit = pt.dot(fixed_mode, fixed_mode)
            for weight, r, b, rho in rows:
                resid = b - pt.dot(pt.constant(r), scaled_mode)
                misfit = misfit + weight * (rho + pt.dot(resid, resid))
        out.update(
            precision=precision,
            rhs=rhs,
            mode=mode,
            logdet_p=logdet_p,
            misfit=misfit,
            logdet_noise=logdet_noise,
        )
        if not outside:
            return out
        diag = []
        for block in outside:
            if block.discrepancy is None:
                f2 = 1.0
                if block.factor is not None:
                    f2 = pt.as_tensor_variable(theta[block.factor], dtype="float64") ** 2
                diag.append(pt.ones(block.e.size) * f2)
        parts = []
        if diag:
            variances = pt.concatenate(diag)
            parts.append(
                pt.eye(sum(b.e.size for b in outside if b.discrepancy is None)) * variances
            )
        parts += [self._noise_covariance(b, theta) for b in outside if b.discrepancy is not None]
        noise = parts[0] if len(parts) == 1 else pt.linalg.block_diag(*parts)
        if form == "data":
            cov = noise
            for key, m in const["grams"].items():
                scale = 1.0 if key is None else pt.as_tensor_variable(theta[key], "float64") ** 2
                cov = cov + scale * pt.constant(m)
            resid = data["e"]
        elif single is not None:
            u = pt.constant(single["u"])
            cov = noise + sd**2 * pt.dot(u * delta[None, :], u.T)
            resid = data["e"] - sd * pt.dot(u, delta * y)
        else:
            cov = noise + wd @ solved[:, 1:]  # Σ̃_S + W_S D P_B⁻¹ D W_Sᵀ
            resid = data["e"] - pt.dot(wd, mode)
        out.update(noise=noise, cov=cov, resid=resid)
        return out

    # -- the log marginal likelihood ----------------------------------------------------------
    def log_marginal_likelihood_graph(self, theta: Mapping[str, Any], form: str | None = None):
        """Return ``log p(d | θ)`` as a pytensor scalar of the hyperparameter tensors ``theta``.

        Parameters
        ----------
        theta : mapping of str to tensor
            One scalar per name of :attr:`theta`.
        form : {"parameter", "data"}, optional
            Default :attr:`form`.
        """
        form = form or self.form
        if form not in ("parameter", "data"):
            raise ValueError(f"form={form!r}; choose 'parameter' or 'data'")
        pieces = self._pieces(theta, form)
        total = pieces["logdet_noise"] + pieces["logdet_p"] + pieces["misfit"]
        if "cov" in pieces:
            total = total + _gaussian_quadratic(pieces["cov"], pieces["resid"])
        return -0.5 * (self.n_data * _LOG_2PI + self._log_det_r + total)

    def _scalars(self) -> dict[str, Any]:
        return {name: pt.dscalar(name) for name in self.theta}

    @property
    def _functions(self) -> dict[tuple[str, bool], Any]:
        """The compiled log marginal likelihoods by ``(form, gradient)`` (shared by copies)."""
        return self._shared_state["functions"]

    def log_marginal_likelihood(
        self, theta: Mapping[str, float], *, form: str | None = None, gradient: bool = False
    ) -> float | tuple[float, dict[str, float]]:
        """Evaluate ``log p(d | θ)`` (nats), and optionally its gradient.

        Parameters
        ----------
        theta : mapping of str to float
            A value for each name of :attr:`theta` (in the variables' own units).
        form : {"parameter", "data"}, optional
        gradient : bool, default False
            Also return ``{name: ∂ log p / ∂θ_name}``.
        """
        form = form or self.form
        key = (form, gradient)
        if key not in self._functions:
            scalars = self._scalars()
            value = self.log_marginal_likelihood_graph(scalars, form)
            outputs = [value]
            if gradient:
                outputs += pytensor.grad(value, list(scalars.values()))
            self._functions[key] = pytensor.function(list(scalars.values()), outputs)
        missing = sorted(set(self.theta) - set(theta))
        if missing:
            raise ValueError(f"theta has no value for {missing}")
        self._bind()
        out = self._functions[key](*[float(theta[name]) for name in self.theta])
        if not gradient:
            return float(out[0])
        return float(out[0]), {name: float(g) for name, g in zip(self.theta, out[1:], strict=True)}

    @property
    def model(self) -> pm.Model:
        """The PyMC model of ``θ``: the full model's priors and ``log p(d | θ)`` as a Potential.

        Built once and shared with the copies of :meth:`for_problem`; the data enter through
        shared variables set to this problem's values whenever the model is read, so sample
        through this attribute (not a model object held on to from a copy).

        A learned link scatter also gets the link's normalizer ``−log Z(σ)`` as the potential
        ``<coupling>_normalizer``, built by the coupling as in the full model
        (``Petrophysical.build_normalizer``), so both target the same
        posterior: :meth:`log_marginal_likelihood` integrates the fields out of the unnormalized
        product ``p(m) Π N(r_i; 0, σ²)``, and the normalizer turns it into the evidence of the
        normalized joint prior.
        """
        return self._shared("model", self._build_model)

    def _shared(self, key: str, build: Any) -> Any:
        """Return ``build()``, made once and kept for every copy, with this copy's data bound."""
        state = self._shared_state
        if key not in state:
            state[key] = build()
        self._bind()
        return state[key]

    def _build_model(self) -> pm.Model:
        with pm.Model() as model:
            theta = self.build_theta()
            pm.Potential("log_marginal_likelihood", self.log_marginal_likelihood_graph(theta))
            for name, coupling in self._couplings.items():
                # in build order, fixed linear links too: links sharing fields with a learned
                # one are normalized jointly; the full model's build has warned already
                if isinstance(coupling, Petrophysical):
                    key = self._plan.scatter.get(name)
                    scatter = None if key is None else theta[key]
                    coupling.build_normalizer(scatter, self._latent, warn=False)
        return model

    # -- conditional draws --------------------------------------------------------------------
    @property
    def _conditional_function(self) -> Any:
        """The compiled conditional pieces at one ``θ`` (shared by copies, bound to this one)."""
        return self._shared("conditional", self._compile_conditional)

    def _compile_conditional(self) -> Any:
        scalars = self._scalars()
        pieces = self._pieces(scalars, self.form)
        d = pieces["scales"]
        if "delta" in pieces:  # closed form: draws in its eigen-coordinates, all at once
            outputs = [pieces["delta"], pieces["y"], pieces["sd"]]
        else:
            outputs = [pieces["precision"], pieces["rhs"], pt.ones(self.n) if d is None else d]
        if "cov" in pieces:
            outputs += [pieces["cov"], pieces["noise"]]
        return pytensor.function(list(scalars.values()), outputs, on_unused_input="ignore")

    @property
    def _conditional_batched(self) -> Any:
        """:attr:`_conditional_function` over vectors of θ draws (one call), or None.

        Vectorized with pytensor over a leading draw axis; outputs that do not depend on ``θ``
        are broadcast. None when pytensor cannot vectorize the graph. Compiled once, shared by
        copies (the data are its shared inputs).
        """
        return self._shared("batched", self._compile_batched)

    def _compile_batched(self) -> Any:
        from pytensor.graph.replace import vectorize_graph

        scalars = self._scalars()
        outputs = self._conditional_function.maker.fgraph.outputs
        # the θ scalars come first; the shared data variables follow and stay as they are
        inputs = self._conditional_function.maker.fgraph.inputs[: len(scalars)]
        vectors = [pt.dvector(name) for name in scalars]
        try:
            graph = vectorize_graph(outputs, replace=dict(zip(inputs, vectors, strict=True)))
            function = pytensor.function(
                vectors, graph, mode="FAST_COMPILE", on_unused_input="ignore"
            )
        except (TypeError, NotImplementedError, ValueError):
            return None
        ndims = [o.ndim for o in outputs]

        def batched(values: list[np.ndarray]) -> list[np.ndarray]:
            n_draws = values[0].size if values else 1
            out = function(*values)
            return [
                np.broadcast_to(o, (n_draws, *np.shape(o))) if np.ndim(o) == nd else np.asarray(o)
                for o, nd in zip(out, ndims, strict=True)
            ]

        return batched

    def _conditional_outputs(self, values: list[np.ndarray], n_draws: int) -> list[np.ndarray]:
        """Return the conditional function's outputs for every θ draw, stacked on axis 0.

        One vectorized call when it reproduces the per-draw function on the first and last
        draws (relative 1e-10), else a loop of per-draw calls.
        """
        fn = self._conditional_function
        batched = self._conditional_batched
        ends = [fn(*[v[i] for v in values]) for i in sorted({0, n_draws - 1})]
        if batched is not None:
            try:
                out = batched(values)
            except (TypeError, NotImplementedError, ValueError):
                out = None
            if out is not None and all(
                np.allclose(o[[0, -1]], np.stack([e[k] for e in ends])[[0, -1]], rtol=1e-10)
                for k, o in enumerate(out)
            ):
                return out
        rows = [fn(*[v[i] for v in values]) for i in range(n_draws)]
        return [np.stack([np.asarray(r[k]) for r in rows]) for k in range(len(rows[0]))]

    def conditional_draws(
        self, theta: Mapping[str, np.ndarray], rng: np.random.Generator | DrawStreams
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw the latent vector from ``p(m | θ, d)``, once per ``θ`` draw.

        Parameters
        ----------
        theta : mapping of str to numpy.ndarray
            Per name of :attr:`theta`, its draws (all of one length ``S``).
        rng : numpy.random.Generator or DrawStreams
            With :class:`DrawStreams` (one stream per draw) each draw depends on its own seed
            only, whatever the draws drawn with it: a checkpoint drawn in pieces and the final
            result agree.

        Returns
        -------
        z, m : numpy.ndarray, shape (S, n)
            The draws in the prior-whitened coordinates of the conditional system (``z`` of
            ``m = μ + L₀ D(θ) z``; for a Gaussian field that is its ``<field>_white``) and in
            model coordinates.

        Notes
        -----
        A draw from the parameter-space blocks' posterior ``N(P_B⁻¹ h_B, P_B⁻¹)`` is
        ``z_B = P_B⁻¹ h_B + C⁻ᵀ ε`` (``P_B = C Cᵀ``); the data-space rows then update it exactly
        (Matheron's rule): ``z = z_B + P_B⁻¹ D W_Sᵀ K_S⁻¹ (e_S − W_S D z_B − ε_S)``,
        ``ε_S ~ N(0, Σ̃_S)``, ``K_S = Σ̃_S + W_S D P_B⁻¹ D W_Sᵀ``.
        """
        values = [np.asarray(theta[name], dtype=float).ravel() for name in self.theta]
        n_draws = values[0].size if values else 0
        if isinstance(rng, DrawStreams) and len(rng) != n_draws:
            raise ValueError(f"DrawStreams holds {len(rng)} streams for {n_draws} draws")
        chunk = self.chunk_draws()
        if n_draws > chunk:  # bounded memory: the batched draws build matrices per draw
            parts = [
                self.conditional_draws(
                    {k: v[start : start + chunk] for k, v in zip(self.theta, values, strict=True)},
                    rng[start : start + chunk] if isinstance(rng, DrawStreams) else rng,
                )
                for start in range(0, n_draws, chunk)
            ]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        fn = self._conditional_function
        const = self._form_constants(self.form)
        if const.get("single") is not None:
            return self._closed_form_draws(values, n_draws, rng)
        z = np.empty((n_draws, self.n))
        scales = np.empty((n_draws, self.n))
        for i in range(n_draws):
            gen = rng.generators[i] if isinstance(rng, DrawStreams) else rng
            out = fn(*[v[i] for v in values])
            precision, rhs, d = out[:3]
            scales[i] = d
            chol = sla.cholesky(precision, lower=True, check_finite=False)
            mean = sla.cho_solve((chol, True), rhs, check_finite=False)
            eps = gen.standard_normal(self.n)
            draw = mean + sla.solve_triangular(chol.T, eps, lower=False, check_finite=False)
            if len(out) > 3:
                cov, noise = out[3:]
                wd = const["w"] * d[None, :]
                gain = sla.cho_solve((chol, True), wd.T, check_finite=False)
                noise_chol = sla.cholesky(noise, lower=True, check_finite=False)
                eps_s = noise_chol @ gen.standard_normal(noise.shape[0])
                innovation = const["e"] - wd @ draw - eps_s
                draw = draw + gain @ sla.solve(cov, innovation, assume_a="pos")
            z[i] = draw
        m = self.prior_mean + (z * scales) @ self.prior_factor.T
        return z, m

    def chunk_draws(self) -> int:
        """Return how many draws :meth:`conditional_draws` handles at once.

        The batched draws hold, per draw, the data-space covariance ``K_S`` and its factor
        (``r × r`` for ``r`` data-space rows) and a few latent vectors (``n``): about
        ``8 (2 r² + 4 n)`` bytes; the chunk keeps that below :data:`CONDITIONAL_CHUNK_BYTES`.
        """
        rows = sum(b.e.size for b in self._blocks if not self._in_parameter_space(b, self.form))
        per_draw = 8 * (2 * rows * rows + 4 * self.n + 1)
        return max(1, int(CONDITIONAL_CHUNK_BYTES // per_draw))

    def _closed_form_outputs(
        self, values: list[np.ndarray], n_draws: int
    ) -> list[np.ndarray] | None:
        """Return ``δ, y, s`` (and ``K_S``, ``Σ̃_S``) of every θ draw in numpy, no compiled graph.

        The closed form of :meth:`_single_scale` (what :attr:`_conditional_function` computes,
        per draw) when the data-space rows have diagonal noise; None with a discrepancy block.
        """
        single = self._form_constants(self.form)["single"]
        outside = self._form_constants(self.form)["outside"]
        if any(b.discrepancy is not None for b in outside):
            return None
        theta = dict(zip(self.theta, values, strict=True))

        def value(key: str | None) -> np.ndarray:
            return np.ones(n_draws) if key is None else np.asarray(theta[key], dtype=float)

        sd = value(single["field"])
        inv_f2 = np.zeros(n_draws) if single["noise"] is None else 1.0 / value(single["noise"]) ** 2
        c = sd**2 if single["c_from_fixed"] else sd**2 * inv_f2
        delta = 1.0 / (1.0 + c[:, None] * single["lam"][None, :])
        y = sd[:, None] * (single["t0"][None, :] + inv_f2[:, None] * single["t1"][None, :])
        outs = [delta, y, sd]
        if outside:
            variances = np.concatenate(
                [np.repeat(value(b.factor)[:, None] ** 2, b.e.size, axis=1) for b in outside],
                axis=1,
            )
            u = single["u"]
            cov = np.matmul(u[None, :, :] * ((sd**2)[:, None] * delta)[:, None, :], u.T)
            diag = np.arange(u.shape[0])
            cov[:, diag, diag] += variances
            outs += [cov, variances]  # the noise is diagonal here: its variances per draw
        return outs

    def _closed_form_draws(
        self, values: list[np.ndarray], n_draws: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`conditional_draws` when ``P_B⁻¹ = T diag(δ) Tᵀ`` (see :meth:`_single_scale`).

        In the coordinates ``y = T⁻¹ z`` the parameter-space posterior is independent:
        ``η = δ ⊙ Tᵀh + √δ ⊙ ε``; the data-space rows update it by Matheron's rule with
        ``W_S D T = s U``: ``η += s δ ⊙ Uᵀ K_S⁻¹ (e_S − s U η − ε_S)``. Then ``z = T η``: a few
        matrix products for all draws together.
        """
        single = self._form_constants(self.form)["single"]
        const = self._form_constants(self.form)
        outs = self._closed_form_outputs(values, n_draws)
        if outs is None:  # discrepancy blocks: their covariance from the compiled graph
            outs = self._conditional_outputs(values, n_draws)
        delta = outs[0]
        mean = delta * outs[1]
        sd = np.asarray(outs[2], dtype=float).reshape(n_draws)
        eta = mean + np.sqrt(delta) * rng.standard_normal((n_draws, self.n))
        if len(outs) > 3:
            u = single["u"]
            cov, noise = outs[3], np.asarray(outs[4], dtype=float)
            normal = rng.standard_normal((n_draws, noise.shape[1]))
            if noise.ndim == 2:  # diagonal noise: (draws, rows) variances
                eps = np.sqrt(noise) * normal
            else:  # a full covariance per draw (the compiled graph's, with discrepancy blocks)
                eps = np.einsum("sij,sj->si", np.linalg.cholesky(noise), normal)
            innovation = const["e"][None, :] - sd[:, None] * (eta @ u.T) - eps
            gain = np.linalg.solve(cov, innovation[..., None])[..., 0]
            eta = eta + sd[:, None] * delta * (gain @ u)
        z = eta @ single["t"].T
        m = self.prior_mean + (sd[:, None] * z) @ self.prior_factor.T
        return z, m

    def free_values(self, z: np.ndarray, m: np.ndarray) -> dict[str, np.ndarray]:
        """Map conditional draws to the full model's free latent variables (as the exact route)."""
        return latent_free_values(self._latent, z, m)

    def describe(self) -> str:
        """Return a one-line description (provenance)."""
        rows = sum(b.e.size for b in self._blocks if not self._in_parameter_space(b, self.form))
        if self.form == "data":
            return f"data space ({rows} x {rows})"
        return f"parameter space ({self.n} x {self.n}) + data space ({rows} x {rows})"


_BUILT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: The first collapsed problem built for each PyMC model of a problem: the copies that
#: ``problem.with_data`` makes share that model (only when no discrepancy block's data change),
#: and their collapsed problems are its copies with their own data (CollapsedProblem.for_problem)
_BY_MODEL: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def collapsed_problem(problem: Any) -> CollapsedProblem:
    """Return the :class:`CollapsedProblem` of ``problem``, built once per problem.

    A problem from :meth:`~bayesjoint.JointInversion.with_data` that shares its PyMC model with
    one whose collapsed problem was built gets a copy of that one with its own data
    (:meth:`CollapsedProblem.for_problem`): nothing is factorized or compiled again.

    Raises
    ------
    ValueError
        Naming the part of the problem that rules the collapsed route out (raised again on
        every call, without rebuilding).
    """
    if problem not in _BUILT:
        model = getattr(problem, "_model", None)  # built: with_data copies share it
        template = _BY_MODEL.get(model) if model is not None else None
        built: CollapsedProblem | ValueError | None = None
        if template is not None:
            try:
                built = template.for_problem(problem)
            except ValueError:  # e.g. new data in a discrepancy block: build afresh below
                built = None
        if built is None:
            try:
                built = CollapsedProblem(problem)
                if template is None:
                    _BY_MODEL[problem.model] = built
            except ValueError as err:
                built = err
        _BUILT[problem] = built
    built = _BUILT[problem]
    if isinstance(built, ValueError):
        raise ValueError(str(built))
    return built


def collapsed_route_blocker(problem: Any) -> str | None:
    """Return why the collapsed route does not apply to ``problem``, or None when it does."""
    try:
        collapsed_problem(problem)
    except ValueError as err:
        return str(err)
    return None


_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _transformed(model: pm.Model, name: str, values: np.ndarray) -> np.ndarray:
    """Return ``values`` of the free variable ``name`` in the sampler's (transformed) space.

    The forward transform is compiled once per model and variable.
    """
    rv = model[name]
    transform = model.rvs_to_transforms.get(rv)
    if transform is None:
        return values
    cache = _FORWARD.setdefault(model, {})
    if name not in cache:
        x = pt.dvector("x")
        forward = transform.forward(x, *rv.owner.inputs)
        cache[name] = pytensor.function([x], forward, mode="FAST_COMPILE", on_unused_input="ignore")
    return np.asarray(cache[name](np.asarray(values, dtype=float).ravel())).reshape(values.shape)


def _theta_run(
    collapsed: CollapsedProblem,
    draws: int,
    tune: int,
    chains: int,
    *,
    cores: int | None,
    random_seed: int,
    accept: float,
    progressbar: bool,
    idata_kwargs: Mapping[str, Any],
    **kwargs: Any,
) -> az.InferenceData:
    """Run NUTS on the hyperparameters alone (the collapsed model); return PyMC's result."""
    if kwargs.get("nuts_sampler", "pymc") == "pymc":  # nutpie ignores (and warns about) them
        kwargs["idata_kwargs"] = {**idata_kwargs, "log_likelihood": False}
    if "step" not in kwargs:
        kwargs["target_accept"] = accept
    kwargs.update(safe_start_method(cores, kwargs, chains))
    with collapsed.model, warnings.catch_warnings(), chains_running():
        # nutpie (numba): the factorization Ops have no numba code and run their numpy/LAPACK
        # perform in object mode, as intended
        warnings.filterwarnings("ignore", "Numba will use object mode", UserWarning)
        return pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            random_seed=random_seed,
            progressbar=progressbar,
            **kwargs,
        )


def collapsed_draws(
    problem: Any,
    theta: Mapping[str, np.ndarray],
    chains: np.ndarray,
    indices: np.ndarray,
    random_seed: int,
    log_likelihood: bool,
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """Return the fields, deterministics, log density and log-likelihoods of ``θ`` draws.

    Parameters
    ----------
    problem : JointInversion
    theta : mapping of str to numpy.ndarray
        The hyperparameters' draws, shape ``(S,)`` each (model coordinates).
    chains, indices : numpy.ndarray of int, shape (S,)
        Chain and draw index (within its chain) of each draw: draw ``s`` of the fields uses the
        stream ``(random_seed, 1, chains[s], indices[s])``, so it does not depend on which
        other draws are made with it (checkpoints drawn in pieces, resumed runs).
    random_seed : int
    log_likelihood : bool

    Returns
    -------
    posterior : dict
        The free latent variables and the deterministics, ``(S, ...)`` each.
    lp : numpy.ndarray, shape (S,)
        The full model's log density.
    loglik : dict
        Pointwise log-likelihoods (empty without ``log_likelihood``).
    """
    collapsed = collapsed_problem(problem)
    z, m = collapsed.conditional_draws(theta, draw_streams(random_seed, chains, indices))
    model = problem.model
    free = collapsed.free_values(z, m)
    values = {**free, **{k: _transformed(model, k, np.asarray(v)) for k, v in theta.items()}}
    derived, lp, loglik = _derived_quantities(model, values, log_likelihood)
    return {**free, **derived}, np.asarray(lp).reshape(-1), dict(loglik or {})


def _padded(values: np.ndarray, counts: list[int], length: int) -> np.ndarray:
    """``(S, ...)`` draws of chains with ``counts`` draws each → ``(chains, length, ...)``."""
    values = np.asarray(values)
    if all(n == length for n in counts):
        return values.reshape(len(counts), length, *values.shape[1:])
    out = np.full((len(counts), length, *values.shape[1:]), np.nan)
    start = 0
    for c, n in enumerate(counts):
        out[c, :n] = values[start : start + n]
        start += n
    return out


def collapsed_idata(
    problem: Any,
    theta: Mapping[str, np.ndarray],
    stats: Mapping[str, np.ndarray],
    counts: list[int],
    draws: tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]],
    log_likelihood: bool,
) -> az.InferenceData:
    """Return the collapsed route's result in the layout of NUTS on the full model.

    Parameters
    ----------
    problem : JointInversion
    theta, stats : mapping of str to numpy.ndarray
        The hyperparameters and the NUTS statistics, ``(chains, length)`` (chains with fewer
        than ``length`` draws padded with NaN).
    counts : list of int
        Draws per chain.
    draws : tuple
        :func:`collapsed_draws` of the ``sum(counts)`` draws, chain by chain.
    log_likelihood : bool
    """
    length = int(next(iter(theta.values())).shape[1]) if theta else max(counts, default=0)
    post, lp, loglik = draws
    stats = dict(stats)
    marginal = stats.pop("lp", None)
    marginal = stats.pop("logp", None) if marginal is None else marginal  # nutpie's name
    if marginal is not None:
        stats["lp_marginal"] = marginal
    stats["lp"] = _padded(lp, counts, length)
    return _inference_data(
        problem.model,
        {
            "posterior": {
                **{k: np.asarray(v) for k, v in theta.items()},
                **{k: _padded(v, counts, length) for k, v in post.items()},
            },
            "sample_stats": stats,
            "log_likelihood": (
                {k: _padded(v, counts, length) for k, v in loglik.items()}
                if log_likelihood
                else None
            ),
        },
    )


class CollapsedAssembler:
    """Turn the hyperparameter draws recorded so far into the collapsed route's result.

    Used by the checkpoint recorder: each draw's fields are drawn once (from its own stream,
    see :func:`collapsed_draws`) and kept, so a checkpoint written every ``k`` seconds costs
    the conditional draws of the new draws only, and every write, the final result and a
    resumed run agree on every draw.

    Parameters
    ----------
    problem : JointInversion
    random_seed : int
    log_likelihood : bool
    """

    def __init__(self, problem: Any, random_seed: int, log_likelihood: bool):
        self.problem = problem
        self.random_seed = int(random_seed)
        self.log_likelihood = bool(log_likelihood)
        self.theta_names = list(collapsed_problem(problem).theta)
        self._cache: dict[int, tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]]
        self._cache = {}

    def set_previous(self, stored: az.InferenceData, counts: list[int]) -> None:
        """Keep the first ``counts[c]`` drawn fields of chain ``c`` of a checkpoint."""
        post = stored.posterior
        names = [k for k in post.data_vars if k not in self.theta_names]
        loglik = stored.log_likelihood if "log_likelihood" in stored.groups() else None
        if self.log_likelihood and loglik is None:  # not kept: every draw's fields drawn anew
            return
        for c, n in enumerate(counts):
            if n <= 0:
                continue
            self._cache[c] = (
                {k: np.asarray(post[k].values[c, :n]) for k in names},
                np.asarray(stored.sample_stats["lp"].values[c, :n]),
                {k: np.asarray(v.values[c, :n]) for k, v in (loglik or {}).items()}
                if self.log_likelihood
                else {},
            )

    def _count(self, c: int) -> int:
        return int(self._cache[c][1].shape[0]) if c in self._cache else 0

    def __call__(
        self, theta: Mapping[str, np.ndarray], stats: Mapping[str, np.ndarray], counts: list[int]
    ) -> az.InferenceData:
        """Return the result for the first ``counts[c]`` draws of each chain ``c``."""
        todo = [(c, i) for c, n in enumerate(counts) for i in range(self._count(c), n)]
        if todo:
            chains, indices = (np.array(v) for v in zip(*todo, strict=True))
            values = {k: np.asarray(theta[k])[chains, indices] for k in self.theta_names}
            post, lp, loglik = collapsed_draws(
                self.problem, values, chains, indices, self.random_seed, self.log_likelihood
            )
            for c in sorted(set(chains.tolist())):
                pick = chains == c
                new = ({k: v[pick] for k, v in post.items()}, lp[pick])
                new_ll = {k: v[pick] for k, v in loglik.items()}
                if c in self._cache:
                    old_post, old_lp, old_ll = self._cache[c]
                    new = (
                        {k: np.concatenate([old_post[k], v]) for k, v in new[0].items()},
                        np.concatenate([old_lp, new[1]]),
                    )
                    new_ll = {k: np.concatenate([old_ll[k], v]) for k, v in new_ll.items()}
                self._cache[c] = (*new, new_ll)
        kept = [c for c, n in enumerate(counts) if n]
        first = self._cache[kept[0]] if kept else ({}, np.zeros(0), {})
        post = {
            k: np.concatenate([self._cache[c][0][k][: counts[c]] for c in kept]) for k in first[0]
        }
        lp = np.concatenate([self._cache[c][1][: counts[c]] for c in kept]) if kept else first[1]
        loglik = {
            k: np.concatenate([self._cache[c][2][k][: counts[c]] for c in kept]) for k in first[2]
        }
        theta = {k: theta[k] for k in self.theta_names}
        return collapsed_idata(
            self.problem, theta, stats, counts, (post, lp, loglik), self.log_likelihood
        )


def sample_collapsed(
    problem: Any,
    draws: int,
    tune: int,
    chains: int,
    *,
    cores: int | None,
    random_seed: int,
    target_accept: float | None,
    progressbar: bool,
    **kwargs: Any,
) -> tuple[az.InferenceData, dict[str, Any]]:
    """NUTS on the hyperparameters, then one exact conditional draw of the fields per draw.

    Parameters
    ----------
    problem : JointInversion
        Conditionally linear-Gaussian (see :class:`CollapsedProblem`).
    draws, tune, chains : int
    cores : int or None
    random_seed : int
        Seeds PyMC's NUTS; the fields of draw ``i`` of chain ``c`` use the stream
        ``(random_seed, 1, c, i)`` (see :func:`collapsed_draws`).
    target_accept : float or None
        NUTS's target acceptance rate on ``θ``; None means :data:`THETA_TARGET_ACCEPT`.
    progressbar : bool
    **kwargs
        Passed to :func:`pymc.sample` (``idata_kwargs={"log_likelihood": False}`` drops the
        ``log_likelihood`` group; a ``callback`` receives the hyperparameters' draws).

    Returns
    -------
    idata : arviz.InferenceData
        The layout of NUTS on the full model: ``posterior`` (the hyperparameters, the free latent
        variables, the deterministics), ``log_likelihood`` (one variable per likelihood block),
        ``observed_data``, and ``sample_stats`` of the NUTS run on ``θ`` with ``lp`` the full
        model's log density of each draw and ``lp_marginal`` the collapsed one (attributes
        ``draw_time`` and ``assembly_time`` in seconds besides PyMC's).
    info : dict
        For the provenance.
    """
    collapsed = collapsed_problem(problem)
    accept = THETA_TARGET_ACCEPT if target_accept is None else float(target_accept)
    idata_kwargs = dict(kwargs.pop("idata_kwargs", None) or {})
    log_likelihood = bool(idata_kwargs.pop("log_likelihood", True))
    run = _theta_run(
        collapsed,
        draws,
        tune,
        chains,
        cores=cores,
        random_seed=random_seed,
        accept=accept,
        progressbar=progressbar,
        idata_kwargs=idata_kwargs,
        **kwargs,
    )
    n_chains, n_draws = run.posterior.sizes["chain"], run.posterior.sizes["draw"]
    theta = {name: np.asarray(run.posterior[name].values) for name in collapsed.theta}
    flat = {name: value.reshape(-1) for name, value in theta.items()}
    t0 = time.perf_counter()
    chain_of = np.repeat(np.arange(n_chains), n_draws)
    index_of = np.tile(np.arange(n_draws), n_chains)
    per_draw = collapsed_draws(problem, flat, chain_of, index_of, random_seed, log_likelihood)
    draw_time = time.perf_counter() - t0
    t1 = time.perf_counter()
    stats = {name: np.asarray(run.sample_stats[name].values) for name in run.sample_stats}
    idata = collapsed_idata(problem, theta, stats, [n_draws] * n_chains, per_draw, log_likelihood)
    assembly_time = time.perf_counter() - t1
    idata.sample_stats.attrs.update(
        {
            **{k: v for k, v in run.sample_stats.attrs.items() if k not in ("created_at",)},
            "draw_time": draw_time,
            "assembly_time": assembly_time,
        }
    )
    info = {
        "sampler": "NUTS on the hyperparameters, exact conditional draws of the latent fields",
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "collapsed_hyperparameters": list(collapsed.theta),
        "collapsed_form": collapsed.describe(),
        "target_accept": accept,
    }
    return idata, info
