"""The exact route: independent draws from the exact posterior of a linear-Gaussian problem.

When every prior is Gaussian with fixed hyperparameters, every physics and observation operator is
linear, every noise is Gaussian with a known covariance, every discrepancy has fixed
hyperparameters and every coupling is a linear-Gaussian factor, the posterior is Gaussian and
:class:`~bayesjoint.linear.LinearGaussianSystem` gives it in closed form. Independent draws from it
are exact (no burn-in, no autocorrelation: the effective sample size is the number of draws) and
cost one triangular solve each, against thousands of gradient evaluations for NUTS.

:func:`sample_exact` returns them in the layout of a NUTS run: the same ``posterior`` variables and
dims (free variables, e.g. the whitened ``<field>_white``, and deterministic fields),
``log_likelihood`` with one variable per likelihood block, ``observed_data`` and a
``sample_stats`` group with the log posterior density ``lp`` of every draw.
"""

from __future__ import annotations

import datetime as _dt
import time
import weakref
from collections.abc import Mapping
from typing import Any

import arviz as az
import numpy as np
import pymc as pm
import scipy.sparse as sp
import xarray as xr
from pymc.backends.arviz import find_observations
from pytensor.graph.replace import vectorize_graph

from bayesjoint.linear import LinearGaussianSystem

__all__ = [
    "exact_draws",
    "free_variable_values",
    "latent_free_names",
    "latent_free_values",
    "sample_exact",
    "unmodelled_free_variables",
]


def exact_draws(
    system: LinearGaussianSystem, n_draws: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw from the exact posterior of a linear-Gaussian system.

    Parameters
    ----------
    system : LinearGaussianSystem
    n_draws : int
        Number of independent draws.
    rng : numpy.random.Generator

    Returns
    -------
    z, m : numpy.ndarray, shape (n_draws, n)
        The draws in the prior-whitened coordinates ``z = L⁻¹ (m − μ)`` and in model coordinates.

    Notes
    -----
    :meth:`~bayesjoint.linear.LinearGaussianSystem.draws` picks the route: a dense Cholesky factor
    ``P = C Cᵀ`` of the whitened posterior precision ``P = I + Σ_k W_kᵀ W_k`` (formed from sparse
    products) and ``z = z̄ + C⁻ᵀ ε``, ``ε ~ N(0, I)``, up to
    :data:`~bayesjoint.linear.DENSE_LIMIT` parameters; beyond, matrix-free
    perturbation-optimization with conjugate gradients. Then ``m = μ + L z``.

    Examples
    --------
    One parameter with prior N(0, 2²) measured once with unit noise (d = 3): the posterior is
    N(2.4, 0.8).

    >>> import numpy as np
    >>> from bayesjoint.linear import LinearGaussianSystem
    >>> system = LinearGaussianSystem(["x"], ["x"], np.zeros(1), np.array([[2.0]]), ["m"],
    ...                               [np.array([[1.0]])], [np.array([3.0])])
    >>> z, m = exact_draws(system, 200_000, np.random.default_rng(0))
    >>> round(float(m.mean()), 2), round(float(m.var()), 2)
    (2.4, 0.8)
    """
    return system.draws(n_draws, rng)


def latent_free_names(latent: Mapping[str, Any]) -> dict[str, str]:
    """Return ``{free variable: latent variable}`` for the free variables the priors declare."""
    names = {}
    for name, var in latent.items():
        probe = np.zeros((1, var.size))
        for free_name in var.prior.free_values(name, probe, probe):
            names[free_name] = name
    return names


def latent_free_values(
    latent: Mapping[str, Any], z: np.ndarray, m: np.ndarray
) -> dict[str, np.ndarray]:
    """Map draws of the stacked latent vector to the free variables the priors declare.

    ``z`` and ``m`` (shape (n_draws, n)) are the draws in prior-whitened and in model
    coordinates; each prior says which free variable they fill (``Prior.free_values``).
    """
    values: dict[str, np.ndarray] = {}
    start = 0
    for name, var in latent.items():
        block = slice(start, start + var.size)
        start += var.size
        for free_name, source in var.prior.free_values(name, z[:, block], m[:, block]).items():
            values[free_name] = np.asarray(source).reshape(m.shape[0], *var.shape)
    return values


def unmodelled_free_variables(problem: Any) -> list[str]:
    """Return the model's free variables that are not a latent variable's own (sorted).

    The exact system gives the posterior of the latent variables only; a model that also samples,
    say, HSGP basis coefficients has a posterior the exact route cannot draw from.
    """
    declared = latent_free_names(problem.latent)
    return sorted({rv.name for rv in problem.model.free_RVs} - set(declared))


def free_variable_values(problem: Any, z: np.ndarray, m: np.ndarray) -> dict[str, np.ndarray]:
    """Map exact draws of the stacked latent vector to the model's free variables.

    Parameters
    ----------
    problem : JointInversion
    z, m : numpy.ndarray, shape (n_draws, n)
        Whitened and model-coordinate draws from :func:`exact_draws`.

    Returns
    -------
    dict of str to numpy.ndarray
        Per free variable of ``problem.model``, its draws with shape ``(n_draws, *shape)``.

    Raises
    ------
    ValueError
        When the model has a free variable that is not a latent variable's own (for instance
        sampled HSGP coefficients), so its posterior is not given by the exact system.
    """
    _refuse_unmodelled(unmodelled_free_variables(problem))
    return latent_free_values(problem.latent, z, m)


def _refuse_unmodelled(extra: list[str]) -> None:
    if extra:
        raise ValueError(
            f"the model samples {extra}, which are not latent variables of the exact system "
            "(e.g. sampled HSGP coefficients or a learned hyperparameter), so the exact route "
            "does not apply; use method='nuts'"
        )


def _batched_function(model: pm.Model, outputs: list[Any]) -> Any:
    """Compile ``outputs`` of the value variables as a function of draws stacked on axis 0.

    The graph is vectorized over a leading draw axis (one call for all draws) when pytensor can
    do it and the vectorized function reproduces the per-draw function on the first and last
    draws; otherwise (e.g. sparse products) the per-draw function runs in a loop. The vectorized
    function is compiled on the first batched call; the per-draw one is the returned function's
    ``single`` attribute.
    """
    import pytensor
    import pytensor.tensor as pt

    values = model.value_vars
    # evaluated once per run on a whole batch, not thousands of times: pytensor's
    # FAST_COMPILE mode (Python thunks, few rewrites) compiles in a second where the C backend
    # takes tens of seconds on a new graph, and numpy does the batched arithmetic either way
    single = pytensor.function(values, outputs, mode=_MODE, on_unused_input="ignore")

    def loop(*arrays: np.ndarray) -> list[np.ndarray]:
        rows = [single(*row) for row in zip(*arrays, strict=True)]
        return [np.stack([np.asarray(r[i]) for r in rows]) for i in range(len(outputs))]

    state: dict[str, Any] = {"vectorized": None, "trusted": True}

    def vectorized() -> Any:
        if state["vectorized"] is None:
            try:
                batched = [
                    pt.tensor(name=v.name, shape=(None, *v.type.shape), dtype=v.dtype)
                    for v in values
                ]
                graph = vectorize_graph(outputs, replace=dict(zip(values, batched, strict=True)))
                state["vectorized"] = pytensor.function(
                    batched, graph, mode=_MODE, on_unused_input="ignore"
                )
            except (TypeError, NotImplementedError, ValueError):
                state["trusted"] = False
        return state["vectorized"]

    def checked(*arrays: np.ndarray) -> list[np.ndarray]:
        n = arrays[0].shape[0]
        if state["vectorized"] is None and state["trusted"]:
            start = time.perf_counter()
            loop(*[a[[0, -1]] for a in arrays])
            if (time.perf_counter() - start) / 2 * n < _LOOP_SECONDS:
                return loop(*arrays)  # cheaper than compiling the vectorized graph
        if not state["trusted"] or vectorized() is None:
            return loop(*arrays)
        try:
            out = [np.asarray(o) for o in state["vectorized"](*arrays)]
        except (TypeError, NotImplementedError, ValueError):
            out = None
        if out is not None:
            ends = loop(*[a[[0, -1]] for a in arrays])
            if all(
                o.shape == (n, *e.shape[1:]) and np.allclose(o[[0, -1]], e, rtol=1e-10, atol=0.0)
                for o, e in zip(out, ends, strict=True)
            ):
                return out
        state["trusted"] = False  # a failed check sends every later call to the loop
        return loop(*arrays)

    checked.single = single  # type: ignore[attr-defined]
    return checked


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: pytensor mode of the functions of the draws (see :func:`_batched_function`).
_MODE = "FAST_COMPILE"
#: Below this projected time (seconds) a batch of draws runs through the per-draw function in a
#: loop rather than paying for compiling the vectorized graph (seconds) on first use.
_LOOP_SECONDS = 0.5
#: Sparse operators with at most this many entries are densified for the products of
#: :func:`_quadratic_derived` (a dense product of the draws is faster than scipy's there).
_DENSIFY_LIMIT = 2**18
#: A sparse operator with at most this many entries per row on average (and at most one entry in
#: eight) is applied to the draws by gathering the columns it reads (:meth:`_Plan.half_residuals`).
_GATHER_PER_ROW = 4
#: Dense operators with at most this many entries are copied, scaled and stacked into one matrix
#: (one product for all); larger ones are used as they are, one product each.
_STACK_LIMIT = 2**22
_HALF_SQRT = float(np.sqrt(0.5))


def _derived_function(model: pm.Model, log_likelihood: bool) -> Any:
    """Return the batched function of the deterministics, ``lp`` and pointwise log-likelihoods.

    Compiled once per model (see :func:`_batched_function`).
    """
    key = (log_likelihood,)
    cache = _COMPILED.setdefault(model, {})
    if key not in cache:
        observed = list(model.observed_RVs) if log_likelihood else []
        pointwise = model.logp(vars=observed, sum=False) if observed else []
        fields = model.replace_rvs_by_values(list(model.deterministics))  # of the value variables
        cache[key] = _batched_function(model, [*fields, model.logp(), *pointwise])
    return cache[key]


def _unpack(
    model: pm.Model, outputs: list[Any], n_draws: int, log_likelihood: bool
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    deterministics = list(model.deterministics)
    observed = list(model.observed_RVs) if log_likelihood else []

    def per_draw(out: Any) -> np.ndarray:
        return np.asarray(out).reshape(n_draws, *np.shape(out)[1:])

    n_det = len(deterministics)
    derived = {var.name: per_draw(out) for var, out in zip(deterministics, outputs, strict=False)}
    lp = np.asarray(outputs[n_det], dtype=float).reshape(n_draws)
    loglik = {
        rv.name: per_draw(out) for rv, out in zip(observed, outputs[n_det + 1 :], strict=True)
    }
    return derived, lp, loglik


def _derived_quantities(
    model: pm.Model, values: Mapping[str, np.ndarray], log_likelihood: bool
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """Return the deterministics, the log posterior density and the pointwise log-likelihoods.

    One compiled function (cached per model) evaluates all three for every draw.
    """
    function = _derived_function(model, log_likelihood)
    outputs = function(*[values[model.values_to_rvs[v].name] for v in model.value_vars])
    n_draws = next(iter(values.values())).shape[0]
    return _unpack(model, outputs, n_draws, log_likelihood)


class _Plan:
    """What the numpy paths reuse between calls for one (model, system) pair.

    Kept per model (see :func:`_plan`): the latent columns, the stacked noise-whitened operators
    of the likelihood blocks (dense, scaled by ``1/√2``), the draw operator scaled by a diagonal
    prior factor, and which latent variables' free variables read only the model-coordinate
    draws. Nothing here depends on the draws.
    """

    def __init__(self, problem: Any, system: LinearGaussianSystem):
        self.system = weakref.ref(system)
        self.factor = system.prior_operator
        self.diagonal = (
            np.concatenate([v for _, _, v in self.factor.blocks])
            if self.factor.is_diagonal
            else None
        )
        self.columns: dict[str, slice] = {}
        self.value_only: dict[str, bool] = {}
        start = 0
        for name, var in problem.latent.items():
            self.columns[name] = slice(start, start + var.size)
            start += var.size
            white, value = np.zeros((1, var.size)), np.zeros((1, var.size))
            sources = var.prior.free_values(name, white, value).values()
            self.value_only[name] = all(
                np.shares_memory(np.asarray(s), value)
                and not np.shares_memory(np.asarray(s), white)
                for s in sources
            )
        self.extra = unmodelled_free_variables(problem)
        self.operators = dict(zip(system.modalities, system.operators, strict=True))
        self.residuals = dict(zip(system.modalities, system.residuals, strict=True))
        self._stacked: dict[tuple[str, ...], Any] = {}
        self._draw: tuple[Any, ...] | None = None
        #: ``lp`` constant and per-datum offsets of :func:`_quadratic_derived`, once checked
        self.constants: dict[tuple[str, bool], tuple[float, list[np.ndarray]]] = {}

    def scaled_draw_operator(
        self, inverse: np.ndarray, mean_z: np.ndarray, prior_mean: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(C⁻¹ D, μ + D z̄)`` for a diagonal prior factor ``D`` (kept per ``C⁻¹``)."""
        if self._draw is None or self._draw[0] is not inverse:
            operator = inverse * self.diagonal  # column scaling keeps it lower triangular
            shift = prior_mean + mean_z * self.diagonal
            self._draw = (inverse, np.asfortranarray(operator), shift)
        return self._draw[1], self._draw[2]

    def half_residuals(
        self, m: np.ndarray, names: list[str]
    ) -> list[tuple[np.ndarray, dict[str, slice]]]:
        """Return ``(G_k m − r̃_k) / √2`` of the blocks ``names`` (so that its square is ``½ e_k²``).

        Each part is ``(array (n_draws, rows), {block: columns})``. A sparse operator with at
        most :data:`_GATHER_PER_ROW` entries per row on average (no empty row) and a small
        share of entries (e.g. point samples) is applied by gathering the columns it reads; the
        dense ones up to :data:`_STACK_LIMIT` entries and the other sparse ones up to
        :data:`_DENSIFY_LIMIT` entries are stacked into one dense matrix (one product for all);
        larger ones get one product each, as they are (sparse ones stay sparse).
        """
        key = tuple(names)
        if key not in self._stacked:
            self._stacked[key] = self._prepare(names)
        stacked, gathers, singles = self._stacked[key]
        out = []
        if stacked is not None:
            gt, r, slices = stacked
            resid = m @ gt
            resid -= r
            out.append((resid, slices))
        for columns, data, starts, r, name in gathers:
            resid = np.take(m, columns, axis=1)  # a new array (faster than m[:, columns])
            resid *= data
            if starts is not None:  # several entries in some row: sum them
                resid = np.add.reduceat(resid, starts, axis=1)
            resid -= r
            out.append((resid, {name: slice(0, resid.shape[1])}))
        for g, r, name in singles:  # large operators, not copied: scaled after the product
            if sp.issparse(g):
                resid = np.asarray(g @ np.ascontiguousarray(m.T)).T  # scipy copies m.T anyway
            else:
                resid = m @ g.T
            resid *= _HALF_SQRT
            resid -= r
            out.append((resid, {name: slice(0, resid.shape[1])}))
        return out

    def _prepare(self, names: list[str]) -> tuple[Any, list[Any], list[Any]]:
        dense, gathers, singles = [], [], []
        for name in names:
            g = self.operators[name]
            r = np.asarray(self.residuals[name], dtype=float) * _HALF_SQRT
            rows, cols = g.shape
            if sp.issparse(g):
                csr = sp.csr_array(g, copy=True)
                csr.sum_duplicates()
                counts = np.diff(csr.indptr)
                if (
                    counts.min(initial=1) >= 1
                    and csr.nnz <= _GATHER_PER_ROW * rows
                    and csr.nnz * 8 <= rows * cols
                ):
                    starts = None if np.all(counts == 1) else csr.indptr[:-1].copy()
                    gathers.append((csr.indices, csr.data * _HALF_SQRT, starts, r, name))
                    continue
                if rows * cols > _DENSIFY_LIMIT:
                    singles.append((csr, r, name))
                    continue
            elif rows * cols > _STACK_LIMIT:
                singles.append((np.asarray(g, dtype=float), r, name))
                continue
            dense.append((name, g, r))
        stacked = None
        if dense:
            gt = np.concatenate(
                [
                    (g.toarray() if sp.issparse(g) else np.asarray(g, dtype=float)).T
                    for _, g, _ in dense
                ],
                axis=1,
            )
            gt *= _HALF_SQRT
            slices, start = {}, 0
            for name, g, _ in dense:
                slices[name] = slice(start, start + g.shape[0])
                start += g.shape[0]
            r = np.concatenate([r for _, _, r in dense])
            stacked = (np.ascontiguousarray(gt), r, slices)
        return stacked, gathers, singles


def _plan(problem: Any, system: LinearGaussianSystem) -> _Plan:
    """Return the :class:`_Plan` of ``problem`` and ``system`` (built once, kept per model)."""
    cache = _COMPILED.setdefault(problem.model, {})
    plan = cache.get("plan")
    if plan is None or plan.system() is not system:
        plan = cache["plan"] = _Plan(problem, system)
    return plan


def _dense_draws(
    plan: _Plan, system: LinearGaussianSystem, n_draws: int, rng: np.random.Generator
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray] | None:
    """Exact draws through the kept inverse factor, with ``‖ε‖²``; None where it does not apply.

    Returns ``(z, m, ‖ε‖²)``; ``z`` is None for a diagonal prior factor (see Notes).

    Notes
    -----
    The route of :meth:`~bayesjoint.linear.LinearGaussianSystem.draws` when the system keeps
    its factor (dense, at most :data:`~bayesjoint.linear.FACTOR_CACHE_LIMIT` parameters), with
    the same standard normal numbers ``ε`` (the same draws to rounding): ``z = z̄ + C⁻ᵀ ε``,
    ``m = μ + L z``. For a diagonal ``L = D`` the two steps are one triangular product,
    ``m = (μ + D z̄) + D C⁻ᵀ ε`` (``C⁻¹ D`` is lower triangular), and ``z`` is not formed. The
    squared norm ``‖ε‖²`` gives the log density: with ``P = C Cᵀ``, ``½ (z − z̄)ᵀ P (z − z̄) =
    ½ ‖ε‖²`` (:func:`_quadratic_derived`).
    """
    from scipy.linalg import blas

    from bayesjoint import linear

    if system.n > linear.FACTOR_CACHE_LIMIT or system._route("auto", n_draws) != "dense":
        return None
    _, mean_z = system._factorization()
    inverse = system._draw_operator()
    if inverse is None:  # pragma: no cover - kept with the factorization up to the limit
        return None
    eps = rng.standard_normal((n_draws, system.n))
    eps_sq = np.einsum("ij,ij->i", eps, eps)
    if plan.diagonal is not None:
        operator, shift = plan.scaled_draw_operator(inverse, mean_z, system.prior_mean)
        m = blas.dtrmm(1.0, operator, eps.T, side=0, lower=1, trans_a=1, overwrite_b=1).T
        m += shift
        return None, m, eps_sq
    z = blas.dtrmm(1.0, inverse, eps.T, side=0, lower=1, trans_a=1, overwrite_b=1).T
    z += mean_z
    m = plan.factor.right(z.copy(), transpose=True)
    m += system.prior_mean
    return z, m, eps_sq


def _plan_free_values(
    plan: _Plan, latent: Mapping[str, Any], z: np.ndarray | None, m: np.ndarray
) -> dict[str, np.ndarray]:
    """:func:`free_variable_values` of the draws; ``z`` (None: not formed) only where read.

    A latent variable whose free variables read only its model-coordinate draws (the plan's
    probe) gets its block of ``m`` in place of the whitened one; another, with ``z`` None
    (diagonal prior factor), gets ``z = (m − μ) / d`` for its block.
    """
    _refuse_unmodelled(plan.extra)
    system = plan.system()
    values: dict[str, np.ndarray] = {}
    for name, var in latent.items():
        block = plan.columns[name]
        value = m[:, block]
        if z is not None:
            white = z[:, block]
        elif plan.value_only[name]:
            white = value  # not read (the plan's probe)
        else:
            white = (value - system.prior_mean[block]) / plan.diagonal[block]
        for free_name, source in var.prior.free_values(name, white, value).items():
            values[free_name] = np.asarray(source).reshape(m.shape[0], *var.shape)
    return values


def _quadratic_derived(
    problem: Any,
    system: LinearGaussianSystem,
    z: np.ndarray | None,
    m: np.ndarray,
    values: Mapping[str, np.ndarray],
    log_likelihood: bool,
    eps_sq: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]] | None:
    """:func:`_derived_quantities` of exact draws in numpy, checked; None where it does not apply.

    ``eps_sq``: ``‖ε‖²`` per draw when the draws are ``z = z̄ + C⁻ᵀ ε`` (:func:`_dense_draws`);
    then ``z`` may be None.

    Notes
    -----
    For the exact system, with the whitened residuals ``e_k = r̃_k − G_k m`` of every block
    ``k`` (modalities, linear-Gaussian couplings), the model's log density is
    ``lp = c − ½ (‖z‖² + Σ_k ‖e_k‖²)`` (the value variables are ``m`` or ``z`` blocks, a
    constant-Jacobian change of coordinates). This quadratic in ``z`` has its minimum at the
    posterior mean ``z̄`` and Hessian ``P = C Cᵀ``, so for ``z = z̄ + C⁻ᵀ ε`` it equals
    ``c' − ½ ‖ε‖²``: with ``eps_sq`` no residual of a coupling is formed. A block with
    independent Gaussian noise has the pointwise log-likelihood ``c_k − ½ e_k²`` and a
    deterministic named after a latent variable is its block of ``m``. The constants come from
    the compiled model at the first draw; the compiled model at the last draw must then agree
    (relative 1e-9) with every array, else None (the caller evaluates the compiled model for
    every draw). Cost: one product with the stacked operators of the blocks needed (sparse ones
    beyond :data:`_DENSIFY_LIMIT` entries stay sparse) and elementwise work in place, no
    compiled call per draw.
    """
    model = problem.model
    n_draws = m.shape[0]
    deterministics = [v.name for v in model.deterministics]
    observed = [rv.name for rv in model.observed_RVs] if log_likelihood else []
    blocks = list(system.modalities)
    if n_draws < 2 or any(n not in problem.latent for n in deterministics):
        return None
    if any(name not in blocks for name in observed) or (eps_sq is None and z is None):
        return None
    plan = _plan(problem, system)
    key = ("eps" if eps_sq is not None else "z", log_likelihood)
    kept = plan.constants.get(key)
    if kept is None and n_draws < 2:
        return None
    parts = plan.half_residuals(m, observed if eps_sq is not None else blocks)
    if eps_sq is None:
        squares = np.einsum("ij,ij->i", z, z)
        for resid, _ in parts:
            squares += 2.0 * np.einsum("ij,ij->i", resid, resid)
    else:
        squares = eps_sq
    for resid, _ in parts:
        np.square(resid, out=resid)  # ½ e_k²
    # the reference: the compiled model (one with log-likelihoods already compiled will do)
    full = log_likelihood or (True,) in _COMPILED.get(model, {})
    function = _derived_function(model, full).single

    def evaluate(i: int) -> Any:
        out = function(*[values[model.values_to_rvs[v].name][i] for v in model.value_vars])
        return _unpack(model, [np.asarray(o)[None] for o in out], 1, full)

    last = evaluate(n_draws - 1)
    derived = {}
    for name in deterministics:
        shape = last[0][name].shape[1:]
        block = m[:, plan.columns[name]]
        if block.shape[1] != int(np.prod(shape, dtype=int)):
            return None
        derived[name] = block.reshape(n_draws, *shape)
    for _, slices in parts:
        for name, cols in slices.items():
            if name in observed and last[2][name].size != cols.stop - cols.start:
                return None  # one value per block (correlated noise): not pointwise quadratic
    if kept is None:  # the constants, from the compiled model at the first draw
        first = evaluate(0)
        offsets = []
        for resid, slices in parts:
            offset = resid[0].copy()  # ½ e_k² at the first draw, plus its log-likelihood
            for name, cols in slices.items():
                if name in observed:
                    offset[cols] += first[2][name].ravel()
            offsets.append(offset)
        constants = (float(first[1][0]) + 0.5 * float(squares[0]), offsets)
    else:
        constants = kept
    lp = squares * -0.5  # a new array: eps_sq is the caller's
    lp += constants[0]
    loglik = {}
    for (resid, slices), offset in zip(parts, constants[1], strict=True):
        np.subtract(offset, resid, out=resid)  # c_k − ½ e_k², in place
        for name, cols in slices.items():
            if name in observed:
                shape = last[2][name].shape[1:]
                loglik[name] = resid[:, cols].reshape(n_draws, *shape)

    def agrees(fast: np.ndarray, reference: np.ndarray) -> bool:
        reference = np.asarray(reference, dtype=float)
        scale = 1.0 + float(np.max(np.abs(reference), initial=0.0))
        return fast.shape == reference.shape and bool(
            np.allclose(fast, reference, rtol=1e-9, atol=1e-9 * scale)
        )

    checks = [agrees(lp[-1:], last[1])]
    checks += [agrees(derived[k][-1:], last[0][k]) for k in deterministics]
    checks += [agrees(loglik[k][-1:], last[2][k]) for k in observed]
    if not all(checks):
        plan.constants.pop(key, None)
        return None
    plan.constants[key] = constants
    return derived, lp, loglik


def _split_chains(arrays: Mapping[str, np.ndarray], chains: int) -> dict[str, np.ndarray]:
    return {k: v.reshape(chains, -1, *v.shape[1:]) for k, v in arrays.items()}


#: One-dimension coordinates (``xarray.Coordinates`` with their index) kept for reuse, keyed by
#: ``(dim, size)`` for the integer ones and ``(dim, values)`` for a model's coordinate; their
#: values are read-only, so the groups built on them share them safely.
_COORDS: dict[tuple[Any, ...], xr.Coordinates] = {}
_COORDS_LIMIT = 256


def _coordinate(dim: str, size: int, values: Any = None) -> xr.Coordinates:
    key = (dim, size) if values is None else (dim, size, tuple(np.asarray(values).tolist()))
    coord = _COORDS.get(key)
    if coord is None:
        if len(_COORDS) >= _COORDS_LIMIT:
            _COORDS.clear()
        data = np.arange(size) if values is None else np.asarray(values)
        coord = _COORDS[key] = xr.Coordinates({dim: data})
    return coord


def _dataset(
    arrays: Mapping[str, np.ndarray],
    coords: Mapping[str, np.ndarray],
    dims: Mapping[str, list[str]],
    attrs: Mapping[str, Any],
    sample_dims: bool = True,
) -> xr.Dataset:
    """Build one InferenceData group directly, in the layout of :func:`arviz.from_dict`.

    ``arrays`` have shape ``(chain, draw, *shape)`` when ``sample_dims``; a variable without
    named dims gets ``<name>_dim_<i>`` with an integer coordinate, as ArviZ names them. The
    arrays are not copied (ArviZ's converter copies and checks every one, which dominated the
    exact route's time), and the coordinates with their indexes are reused between calls.
    """
    variables: dict[str, Any] = {}
    index: dict[str, xr.Coordinates] = {}
    lead = ["chain", "draw"] if sample_dims else []
    if sample_dims and arrays:
        first = np.shape(next(iter(arrays.values())))
        index = {"chain": _coordinate("chain", first[0]), "draw": _coordinate("draw", first[1])}
    for name, value in arrays.items():
        value = np.asarray(value)
        shape = value.shape[len(lead) :]
        names = list(dims.get(name, []))[: len(shape)]  # e.g. one log-likelihood per block
        names += [f"{name}_dim_{i}" for i in range(len(names), len(shape))]
        for dim, size in zip(names, shape, strict=True):
            if dim not in index:
                index[dim] = _coordinate(dim, size, coords.get(dim))
        variables[name] = xr.Variable([*lead, *names], value)
    merged: dict[str, Any] = {}
    indexes: dict[str, Any] = {}
    for coord in index.values():
        # shallow copies: the cached coordinates' values are shared, their attrs are not
        merged.update({k: v.copy(deep=False) for k, v in coord.variables.items()})
        indexes.update(coord.xindexes)
    if _DIRECT:
        try:  # xarray's own constructor without its merge and alignment (a tenth of the time)
            return xr.Dataset._construct_direct(
                variables={**variables, **merged},
                coord_names=set(merged),
                dims=None,
                attrs=dict(attrs),
                indexes=indexes,
            )
        except (AttributeError, TypeError):  # pragma: no cover - an xarray without it
            pass
    return xr.Dataset(variables, coords=xr.Coordinates(merged, indexes), attrs=dict(attrs))


#: Build the groups with ``xarray.Dataset._construct_direct`` (their variables, coordinates and
#: indexes are consistent by construction); False: the public constructor (same result).
_DIRECT = True


def _inference_data(
    model: pm.Model,
    groups: Mapping[str, Mapping[str, np.ndarray] | None],
    observed: bool = True,
) -> az.InferenceData:
    """Return ``InferenceData`` of ``groups`` (``(chain, draw, ...)`` arrays) on the model's dims.

    ``observed`` adds the ``observed_data`` group. Attributes ``created_at`` and
    ``arviz_version`` as ArviZ writes them.
    """
    dims = {name: list(d) for name, d in model.named_vars_to_dims.items() if d}
    coords = {name: np.asarray(values) for name, values in model.coords.items()}
    attrs = {"created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
             "arviz_version": az.__version__}  # fmt: skip
    out = {
        name: _dataset(arrays, coords, dims, attrs)
        for name, arrays in groups.items()
        if arrays is not None
    }
    if observed:
        values = {name: np.asarray(v) for name, v in find_observations(model).items()}
        out["observed_data"] = _dataset(values, coords, dims, attrs, sample_dims=False)
    return az.InferenceData(**out)


def sample_exact(
    problem: Any,
    draws: int = 1000,
    chains: int = 4,
    *,
    random_seed: int | np.random.Generator | None = None,
    log_likelihood: bool = True,
) -> az.InferenceData:
    """Independent draws from the exact posterior of a linear-Gaussian problem.

    Parameters
    ----------
    problem : JointInversion
        A linear-Gaussian problem (see the module notes).
    draws, chains : int
        Draws per chain and chains. The chains are independent by construction; several are kept
        so that the result reads like a NUTS run (and R-hat, which should be 1, is defined).
    random_seed : int or numpy.random.Generator, optional
    log_likelihood : bool, default True
        Add the ``log_likelihood`` group (one variable per likelihood block).

    Returns
    -------
    arviz.InferenceData
        ``posterior`` (free and deterministic variables on the model's dims), ``sample_stats``
        (``lp``; attributes ``draw_time`` and ``assembly_time`` in seconds), ``log_likelihood``,
        ``observed_data``. No provenance: :meth:`bayesjoint.JointInversion.sample` adds it.

    Raises
    ------
    ValueError
        Naming the part of the problem that is not linear-Gaussian.

    Notes
    -----
    ``draw_time`` covers the draws in model coordinates (and the factorization, on the first
    call); ``assembly_time`` the free variables, ``lp``, the pointwise log-likelihoods and the
    ``InferenceData``. With the kept factor (:func:`_dense_draws`) the draws are the standard
    normal numbers and one triangular product; ``lp`` is then ``c − ½ ‖ε‖²`` and the
    log-likelihoods one product with the stacked operators of the observed blocks
    (:func:`_quadratic_derived`).
    """
    for what, value in (("draws", draws), ("chains", chains)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"sample(method='exact') {what} must be a positive int, got {value!r}")
    rng = (
        random_seed
        if isinstance(random_seed, np.random.Generator)
        else (np.random.default_rng(random_seed))
    )
    system = problem.linear_gaussian_system()
    model = problem.model
    plan = _plan(problem, system)
    _refuse_unmodelled(plan.extra)  # before drawing
    t0 = time.perf_counter()
    drawn = _dense_draws(plan, system, draws * chains, rng)
    if drawn is None:  # matrix-free, or a factor too large to keep
        z, m = exact_draws(system, draws * chains, rng)
        eps_sq = None
    else:
        z, m, eps_sq = drawn
    draw_time = time.perf_counter() - t0
    t1 = time.perf_counter()
    free = _plan_free_values(plan, problem.latent, z, m)
    fast = _quadratic_derived(problem, system, z, m, free, log_likelihood, eps_sq)
    if fast is None:
        derived, lp, loglik = _derived_quantities(model, free, log_likelihood)
    else:
        derived, lp, loglik = fast
    idata = _inference_data(
        model,
        {
            "posterior": _split_chains({**free, **derived}, chains),
            "sample_stats": _split_chains({"lp": lp}, chains),
            "log_likelihood": _split_chains(loglik, chains) if log_likelihood else None,
        },
    )
    assembly_time = time.perf_counter() - t1
    idata.sample_stats.attrs.update(
        {"draw_time": draw_time, "assembly_time": assembly_time, "sampling_time": draw_time}
    )
    return idata
