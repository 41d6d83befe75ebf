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
    extra = unmodelled_free_variables(problem)
    if extra:
        raise ValueError(
            f"the model samples {extra}, which are not latent variables of the exact system "
            "(e.g. sampled HSGP coefficients or a learned hyperparameter), so the exact route "
            "does not apply; use method='nuts'"
        )
    return latent_free_values(problem.latent, z, m)


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


def _quadratic_derived(
    problem: Any,
    system: LinearGaussianSystem,
    z: np.ndarray,
    m: np.ndarray,
    values: Mapping[str, np.ndarray],
    log_likelihood: bool,
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]] | None:
    """:func:`_derived_quantities` of exact draws in numpy, checked; None where it does not apply.

    Notes
    -----
    For the exact system, with the whitened residuals ``e_k = r̃_k − G_k m`` of every block
    ``k`` (modalities, linear-Gaussian couplings), the model's log density is
    ``lp = c − ½ (‖z‖² + Σ_k ‖e_k‖²)`` (the value variables are ``m`` or ``z`` blocks, a
    constant-Jacobian change of coordinates), a block with independent Gaussian noise has the
    pointwise log-likelihood ``c_k − ½ e_k²`` and a deterministic named after a latent variable is
    its block of ``m``. The constants come from the compiled model at the first draw; the
    compiled model at the last draw must then agree (relative 1e-9) with every array, else None
    (the caller evaluates the compiled model for every draw). Cost: one product with each
    ``G_k`` (sparse ones stay sparse) and elementwise work, no compiled call per draw.
    """
    model = problem.model
    n_draws = z.shape[0]
    deterministics = [v.name for v in model.deterministics]
    observed = [rv.name for rv in model.observed_RVs] if log_likelihood else []
    blocks = list(system.modalities)
    if n_draws < 2 or any(n not in problem.latent for n in deterministics):
        return None
    if any(name not in blocks for name in observed):
        return None
    squares = np.einsum("ij,ij->i", z, z)
    residuals = {}
    for name, g, r in zip(blocks, system.operators, system.residuals, strict=True):
        if sp.issparse(g) and g.shape[0] * g.shape[1] > _DENSIFY_LIMIT:
            resid = np.asarray(g @ np.ascontiguousarray(m.T)).T  # scipy would copy m.T anyway
        else:  # small sparse blocks: a dense product is faster than scipy's
            resid = m @ (g.toarray() if sp.issparse(g) else np.asarray(g, dtype=float)).T
        resid -= np.asarray(r, dtype=float)  # −e_k, in place (few temporaries: they dominate)
        np.square(resid, out=resid)
        resid *= 0.5  # ½ e_k²
        squares += 2.0 * resid.sum(axis=1)
        residuals[name] = resid
    columns, start = {}, 0
    for name, var in problem.latent.items():
        columns[name] = slice(start, start + var.size)
        start += var.size
    function = _derived_function(model, log_likelihood).single
    ends = []
    for i in (0, n_draws - 1):
        out = function(*[values[model.values_to_rvs[v].name][i] for v in model.value_vars])
        ends.append(_unpack(model, [np.asarray(o)[None] for o in out], 1, log_likelihood))
    derived = {}
    for name in deterministics:
        shape = ends[0][0][name].shape[1:]
        block = m[:, columns[name]]
        if block.shape[1] != int(np.prod(shape, dtype=int)):
            return None
        derived[name] = block.reshape(n_draws, *shape)
    lp = ends[0][1][0] + 0.5 * squares[0] - 0.5 * squares
    loglik = {}
    for name in observed:
        ref = ends[0][2][name][0]
        half = residuals[name]  # ½ e_k², overwritten into the log-likelihood
        if ref.size != half.shape[1]:
            return None  # one value per block (correlated noise): not pointwise quadratic
        offset = ref.ravel() + half[0]
        half *= -1.0
        half += offset
        loglik[name] = half.reshape(n_draws, *ref.shape)

    def agrees(fast: np.ndarray, reference: np.ndarray) -> bool:
        reference = np.asarray(reference, dtype=float)
        scale = 1.0 + float(np.max(np.abs(reference), initial=0.0))
        return fast.shape == reference.shape and bool(
            np.allclose(fast, reference, rtol=1e-9, atol=1e-9 * scale)
        )

    last = ends[1]
    checks = [agrees(lp[-1:], last[1])]
    checks += [agrees(derived[k][-1:], last[0][k]) for k in deterministics]
    checks += [agrees(loglik[k][-1:], last[2][k]) for k in observed]
    return (derived, lp, loglik) if all(checks) else None


def _split_chains(arrays: Mapping[str, np.ndarray], chains: int) -> dict[str, np.ndarray]:
    return {k: v.reshape(chains, -1, *v.shape[1:]) for k, v in arrays.items()}


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
    exact route's time).
    """
    variables: dict[str, Any] = {}
    index: dict[str, np.ndarray] = {}
    lead = ["chain", "draw"] if sample_dims else []
    for name, value in arrays.items():
        value = np.asarray(value)
        shape = value.shape[len(lead) :]
        names = list(dims.get(name, []))[: len(shape)]  # e.g. one log-likelihood per block
        names += [f"{name}_dim_{i}" for i in range(len(names), len(shape))]
        for dim, size in zip(names, shape, strict=True):
            if dim not in index:
                index[dim] = np.asarray(coords[dim]) if dim in coords else np.arange(size)
        variables[name] = xr.Variable([*lead, *names], value)
    if sample_dims and arrays:
        first = np.asarray(next(iter(arrays.values())))
        index = {"chain": np.arange(first.shape[0]), "draw": np.arange(first.shape[1]), **index}
    return xr.Dataset(variables, coords=index, attrs=dict(attrs))


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
    t0 = time.perf_counter()
    z, m = exact_draws(system, draws * chains, rng)
    draw_time = time.perf_counter() - t0
    t1 = time.perf_counter()
    free = free_variable_values(problem, z, m)
    fast = _quadratic_derived(problem, system, z, m, free, log_likelihood)
    derived, lp, loglik = fast or _derived_quantities(model, free, log_likelihood)
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
