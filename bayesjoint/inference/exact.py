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

import time
import weakref
from collections.abc import Mapping
from typing import Any

import arviz as az
import numpy as np
import pymc as pm
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
    draws; otherwise (e.g. sparse products) the per-draw function runs in a loop.
    """
    import pytensor
    import pytensor.tensor as pt

    values = model.value_vars
    single = pytensor.function(values, outputs, on_unused_input="ignore")

    def loop(*arrays: np.ndarray) -> list[np.ndarray]:
        rows = [single(*row) for row in zip(*arrays, strict=True)]
        return [np.stack([np.asarray(r[i]) for r in rows]) for i in range(len(outputs))]

    try:
        batched = [
            pt.tensor(name=v.name, shape=(None, *v.type.shape), dtype=v.dtype) for v in values
        ]
        graph = vectorize_graph(outputs, replace=dict(zip(values, batched, strict=True)))
        vectorized = pytensor.function(batched, graph, on_unused_input="ignore")
    except (TypeError, NotImplementedError, ValueError):
        return loop

    trusted = {"vectorized": True}  # a failed check sends every later call to the loop

    def checked(*arrays: np.ndarray) -> list[np.ndarray]:
        if not trusted["vectorized"]:
            return loop(*arrays)
        n = arrays[0].shape[0]
        try:
            out = [np.asarray(o) for o in vectorized(*arrays)]
        except (TypeError, NotImplementedError, ValueError):
            out = None
        if out is not None:
            ends = loop(*[a[[0, -1]] for a in arrays])
            if all(
                o.shape == (n, *e.shape[1:]) and np.allclose(o[[0, -1]], e, rtol=1e-10, atol=0.0)
                for o, e in zip(out, ends, strict=True)
            ):
                return out
        trusted["vectorized"] = False
        return loop(*arrays)

    return checked


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _derived_quantities(
    model: pm.Model, values: Mapping[str, np.ndarray], log_likelihood: bool
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """Return the deterministics, the log posterior density and the pointwise log-likelihoods.

    One compiled function (cached per model) evaluates all three for every draw.
    """
    deterministics = list(model.deterministics)
    observed = list(model.observed_RVs) if log_likelihood else []
    key = (log_likelihood,)
    cache = _COMPILED.setdefault(model, {})
    if key not in cache:
        pointwise = model.logp(vars=observed, sum=False) if observed else []
        fields = model.replace_rvs_by_values(deterministics)  # in terms of the value variables
        cache[key] = _batched_function(model, [*fields, model.logp(), *pointwise])
    outputs = cache[key](*[values[model.values_to_rvs[v].name] for v in model.value_vars])
    n_draws = next(iter(values.values())).shape[0]

    def per_draw(out: Any) -> np.ndarray:
        return np.asarray(out).reshape(n_draws, *np.shape(out)[1:])

    n_det = len(deterministics)
    derived = {var.name: per_draw(out) for var, out in zip(deterministics, outputs, strict=False)}
    lp = np.asarray(outputs[n_det], dtype=float).reshape(n_draws)
    loglik = {
        rv.name: per_draw(out) for rv, out in zip(observed, outputs[n_det + 1 :], strict=True)
    }
    return derived, lp, loglik


def _split_chains(arrays: Mapping[str, np.ndarray], chains: int) -> dict[str, np.ndarray]:
    return {k: v.reshape(chains, -1, *v.shape[1:]) for k, v in arrays.items()}


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
    derived, lp, loglik = _derived_quantities(model, free, log_likelihood)
    dims = {name: list(d) for name, d in model.named_vars_to_dims.items() if d}
    coords = {name: np.asarray(values) for name, values in model.coords.items()}
    observed = {name: np.asarray(value) for name, value in find_observations(model).items()}
    idata = az.from_dict(
        posterior=_split_chains({**free, **derived}, chains),
        sample_stats=_split_chains({"lp": lp}, chains),
        log_likelihood=_split_chains(loglik, chains) if log_likelihood else None,
        observed_data=observed,
        coords=coords,
        dims=dims,
    )
    assembly_time = time.perf_counter() - t1
    idata.sample_stats.attrs.update(
        {"draw_time": draw_time, "assembly_time": assembly_time, "sampling_time": draw_time}
    )
    return idata
