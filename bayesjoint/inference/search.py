"""Global search for the modes of a joint posterior, and their Laplace-approximate masses.

A rugged posterior (cycle skipping in waveform fitting, ambiguous sign or scale) has several
separated peaks. This module finds them and weighs them:

1. **global search** within bounds over the negative log posterior ``−log p(m | d)`` with
   :func:`scipy.optimize.differential_evolution` and a particle swarm (:func:`particle_swarm`);
2. **multi-start local optimization** (L-BFGS-B with the model's pytensor gradient) from the
   global searchers' best points and from a Latin-hypercube design of starting points;
3. **clustering** of the local optima into distinct modes (two optima are the same mode when no
   barrier separates them on the straight line between them);
4. per mode, the **Laplace approximation** of its posterior mass, ``p(m*) (2π)^{d/2} |H|^{-1/2}``,
   and the normalized weights.

The objective is the model's own log density (:meth:`pymc.Model.compile_logp` and
:meth:`pymc.Model.compile_dlogp`), on the flat vector of the model's value variables laid out by
:class:`pymc.blocking.DictToArrayBijection` — the coordinates NUTS samples in. See
:class:`LogPosterior` for how bounds given in the latent variables' own units are carried there.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pymc as pm
import scipy.linalg as sla
import scipy.optimize
import xarray as xr
from pymc.blocking import DictToArrayBijection, RaveledVars
from pymc.distributions.transforms import LogExpM1
from pymc.logprob.transforms import IntervalTransform, LogOddsTransform, LogTransform
from pymc.util import get_default_varnames
from scipy.stats import qmc

from bayesjoint._random import rng_and_seed
from bayesjoint.inference.keywords import check_find_modes_arguments, checked_keywords

__all__ = [
    "LogPosterior",
    "Mode",
    "SearchResult",
    "SwarmResult",
    "find_modes",
    "finite_difference_hessian",
    "laplace_log_mass",
    "local_descent",
    "log_posterior",
    "particle_swarm",
]

_log = logging.getLogger(__name__)

# Transforms that act element by element and increase monotonically: a box in the latent
# variable's units maps to a box in the sampler's coordinates.
_MONOTONE_TRANSFORMS = (LogTransform, IntervalTransform, LogOddsTransform, LogExpM1)
_BIG = 1e100  # stands in for +inf in the objective handed to the global searchers
METHODS = ("differential_evolution", "particle_swarm")


# ---------------------------------------------------------------------------------------------
# pure numpy/scipy kernels
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SwarmResult:
    """Outcome of :func:`particle_swarm`.

    Attributes
    ----------
    x : numpy.ndarray
        Best position found.
    fun : float
        Objective at ``x``.
    positions : numpy.ndarray, shape (n_particles, d)
        Each particle's best position at the end (mostly in the global basin once converged).
    values : numpy.ndarray, shape (n_particles,)
        The objective at ``positions``.
    early_positions : numpy.ndarray, shape (n_particles, d)
        Each particle's best position after the first ``early`` iterations, when the swarm
        still spreads over several basins (useful starting points for local optimization).
    n_evaluations : int
    n_iterations : int
    """

    x: np.ndarray
    fun: float
    positions: np.ndarray
    values: np.ndarray
    early_positions: np.ndarray
    n_evaluations: int
    n_iterations: int


def _check_bounds(bounds: Any) -> np.ndarray:
    box = np.asarray(bounds, dtype=float)
    if box.ndim != 2 or box.shape[1] != 2 or box.shape[0] == 0:
        raise ValueError(f"bounds must have shape (d, 2) as [(lower, upper), ...], got {box.shape}")
    if not np.all(np.isfinite(box)) or np.any(box[:, 1] <= box[:, 0]):
        raise ValueError("bounds must be finite with lower < upper in every coordinate")
    return box


class _CountedObjective:
    """Evaluate ``fun`` row by row, with non-finite values as ``+inf``, counting evaluations."""

    def __init__(self, fun: Callable[[np.ndarray], float]):
        self.fun = fun
        self.count = 0

    def __call__(self, points: np.ndarray) -> np.ndarray:
        self.count += len(points)
        out = np.array([float(self.fun(p)) for p in points])
        return np.where(np.isfinite(out), out, np.inf)


def _swarm_leaders(best_x: np.ndarray, best_f: np.ndarray, topology: str) -> np.ndarray:
    """Return each particle's leader, the best personal best among its neighbours.

    The neighbours are the particle itself and the two on either side of it on a ring
    (``"ring"``), or the whole swarm (``"global"``).
    """
    if topology == "global":
        return np.broadcast_to(best_x[np.argmin(best_f)], best_x.shape)
    n = len(best_f)
    idx = np.arange(n)
    neigh = np.stack([(idx - 1) % n, idx, (idx + 1) % n], axis=1)
    return best_x[neigh[idx, np.argmin(best_f[neigh], axis=1)]]


def _absorb_at_walls(
    x: np.ndarray, v: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Put positions outside the box back on the wall and zero those velocity components."""
    outside = (x < lo) | (x > hi)
    v[outside] = 0.0
    return np.clip(x, lo, hi), v


def particle_swarm(
    fun: Callable[[np.ndarray], float],
    bounds: Any,
    *,
    n_particles: int = 30,
    iterations: int = 200,
    inertia: float = 0.7298,
    cognitive: float = 1.49618,
    social: float = 1.49618,
    topology: str = "ring",
    patience: int = 50,
    ftol: float = 1e-10,
    early: int = 10,
    random_seed: int | np.random.Generator | None = None,
) -> SwarmResult:
    """Minimize ``fun`` within a box with a particle swarm.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> float`` for ``x`` of shape ``(d,)``; non-finite values count as worst.
    bounds : array_like, shape (d, 2)
        ``[(lower, upper), ...]``. Particles never leave the box.
    n_particles : int, default 30
    iterations : int, default 200
        Maximum number of swarm updates.
    inertia, cognitive, social : float
        Velocity-update coefficients; the defaults are Clerc & Kennedy's constriction values
        ``χ = 0.7298`` and ``χ · 2.05 = 1.49618``, which make the swarm converge without a
        velocity clamp.
    topology : {"ring", "global"}, default "ring"
        Whom each particle learns from: its two ring neighbours ("lbest"), which keeps several
        basins populated for longer, or the whole swarm ("gbest"), which converges faster.
        Either way the swarm ends in one basin; see ``early``.
    patience : int, default 50
        Stop early when the best value has not improved by more than ``ftol`` in this many
        iterations.
    ftol : float, default 1e-10
    early : int, default 10
        Iteration after which the personal bests are copied to ``early_positions``.
    random_seed : int or numpy.random.Generator, optional

    Returns
    -------
    SwarmResult

    Notes
    -----
    Velocity and position updates (Kennedy & Eberhart 1995; constriction form of Clerc &
    Kennedy 2002, IEEE Trans. Evol. Comput. 6, 58–73)::

        v ← w v + c₁ r₁ ⊙ (p_i − x) + c₂ r₂ ⊙ (g_i − x),   x ← x + v,

    with ``r₁, r₂ ~ U(0, 1)`` per coordinate, ``p_i`` the particle's best position and ``g_i``
    the best position among its neighbours (ring "lbest" topology, Kennedy & Mendes 2002).
    Positions leaving the box are put back on the wall and that velocity component is zeroed
    (absorbing walls). Initial positions are a Latin hypercube in the box; initial velocities are
    uniform in ``±(upper − lower)/2``.

    A hand-written swarm is used because the maintained PSO packages on PyPI are either
    unmaintained since 2021 (``pyswarms``) or large multi-objective frameworks; the algorithm is
    twenty lines and is tested on the Rastrigin function.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.inference import particle_swarm
    >>> res = particle_swarm(lambda x: float(np.sum((x - 0.3) ** 2)), [(-1.0, 1.0)] * 2,
    ...                      random_seed=0)
    >>> np.round(res.x, 4)
    array([0.3, 0.3])
    """
    box = _check_bounds(bounds)
    if topology not in ("ring", "global"):
        raise ValueError(f"topology must be 'ring' or 'global', got {topology!r}")
    if n_particles < 2 or iterations < 0:
        raise ValueError("particle_swarm needs n_particles >= 2 and iterations >= 0")
    rng, _ = rng_and_seed(random_seed)
    lo, hi = box[:, 0], box[:, 1]
    d = box.shape[0]
    evaluate = _CountedObjective(fun)
    x = lo + (hi - lo) * qmc.LatinHypercube(d=d, rng=rng).random(n_particles)
    v = (hi - lo) * rng.uniform(-0.5, 0.5, size=(n_particles, d))
    best_x, best_f = x.copy(), evaluate(x)
    history_best = float(np.min(best_f))
    early_x = best_x.copy()
    stale = 0
    done = 0
    for done in range(1, iterations + 1):
        leader = _swarm_leaders(best_x, best_f, topology)
        r1, r2 = rng.random((2, n_particles, d))
        v = inertia * v + cognitive * r1 * (best_x - x) + social * r2 * (leader - x)
        x, v = _absorb_at_walls(x + v, v, lo, hi)
        f = evaluate(x)
        better = f < best_f
        best_x[better], best_f[better] = x[better], f[better]
        if done == early:
            early_x = best_x.copy()
        current = float(np.min(best_f))
        stale = stale + 1 if history_best - current <= ftol * max(1.0, abs(current)) else 0
        history_best = min(history_best, current)
        if stale >= patience:
            break
    k = int(np.argmin(best_f))
    return SwarmResult(
        x=best_x[k].copy(),
        fun=float(best_f[k]),
        positions=best_x,
        values=best_f,
        early_positions=early_x,
        n_evaluations=evaluate.count,
        n_iterations=done,
    )


def finite_difference_hessian(
    gradient: Callable[[np.ndarray], np.ndarray], x: Any, step: Any = None
) -> np.ndarray:
    """Return the Hessian of a scalar function from central differences of its gradient.

    Parameters
    ----------
    gradient : callable
        ``gradient(x) -> array (d,)``, the exact gradient of the function.
    x : array_like, shape (d,)
    step : float or array_like, shape (d,), optional
        Difference step per coordinate; default ``1e-4 · max(1, |x_j|)``.

    Returns
    -------
    numpy.ndarray, shape (d, d)
        Symmetrized ``(H + Hᵀ)/2`` with columns ``(∇f(x + h_j e_j) − ∇f(x − h_j e_j)) / (2 h_j)``.

    Notes
    -----
    Central differences of an exact gradient have truncation error ``O(h²)`` (Nocedal & Wright
    2006, *Numerical Optimization*, §8.1) and cost ``2d`` gradient evaluations.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.inference import finite_difference_hessian
    >>> a = np.array([[2.0, 0.5], [0.5, 1.0]])
    >>> np.round(finite_difference_hessian(lambda x: a @ x, np.zeros(2)), 8)
    array([[2. , 0.5],
           [0.5, 1. ]])
    """
    x = np.asarray(x, dtype=float)
    d = x.size
    h = 1e-4 * np.maximum(1.0, np.abs(x)) if step is None else np.broadcast_to(step, (d,))
    hess = np.empty((d, d))
    for j in range(d):
        e = np.zeros(d)
        e[j] = h[j]
        hess[:, j] = (np.asarray(gradient(x + e)) - np.asarray(gradient(x - e))) / (2.0 * h[j])
    return 0.5 * (hess + hess.T)


def laplace_log_mass(log_density: float, hessian: Any) -> float:
    """Return the log of the Laplace approximation to the mass under a peak.

    Parameters
    ----------
    log_density : float
        The (unnormalized) log density at the peak, ``log p(m*)``.
    hessian : array_like, shape (d, d)
        Hessian of ``−log p`` at the peak (symmetric positive definite).

    Returns
    -------
    float
        ``log p(m*) + (d/2) log 2π − ½ log det H``; NaN when ``H`` is not positive definite (the
        point is a saddle or sits on a bound of the search box).

    Notes
    -----
    Laplace's method (Tierney & Kadane 1986, JASA 81, 82–86; MacKay 2003, *Information Theory,
    Inference and Learning Algorithms*, ch. 27): ``∫ p ≈ p(m*) (2π)^{d/2} |H|^{-1/2}``, exact for
    a Gaussian peak.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.inference import laplace_log_mass
    >>> # the unnormalized N(0, 2^2) density exp(-x^2/8) has mass sqrt(2 pi) * 2
    >>> round(laplace_log_mass(0.0, [[0.25]]) - float(np.log(np.sqrt(2 * np.pi) * 2.0)), 12)
    0.0
    """
    hess = np.atleast_2d(np.asarray(hessian, dtype=float))
    try:
        chol = sla.cholesky(hess, lower=True)
    except (sla.LinAlgError, ValueError):
        return float("nan")
    logdet = 2.0 * float(np.sum(np.log(np.diag(chol))))
    return float(log_density) + 0.5 * hess.shape[0] * math.log(2.0 * math.pi) - 0.5 * logdet


# ---------------------------------------------------------------------------------------------
# the model's log posterior as a function of one flat vector
# ---------------------------------------------------------------------------------------------
def _model_of(problem: Any) -> pm.Model:
    if isinstance(problem, pm.Model):
        return problem
    model = getattr(problem, "model", None)
    if isinstance(model, pm.Model):
        return model
    raise TypeError(
        "expected a bj.JointInversion (or a pymc.Model), got "
        f"{type(problem).__name__}; build the problem with bj.JointInversion(...)"
    )


_TARGETS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

#: The compiled functions of :class:`LogPosterior` per model, with the model's variables they
#: were compiled for: every LogPosterior of one model (the copies of ``problem.with_data`` share
#: theirs, the data being shared variables) reuses them until a variable is added to the model
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compiled_functions(model: pm.Model) -> dict[str, Any]:
    """Return the cache of compiled functions of ``model`` (emptied when its variables change)."""
    variables = (
        *model.value_vars,
        *model.observed_RVs,
        *model.potentials,
        *model.deterministics,
    )
    entry = _COMPILED.get(model)
    same = entry is not None and len(entry["variables"]) == len(variables)
    if not (same and all(a is b for a, b in zip(entry["variables"], variables, strict=True))):
        entry = {"variables": variables, "functions": {}}
        _COMPILED[model] = entry
    return entry["functions"]


def log_posterior(problem: Any) -> LogPosterior:
    """Return the :class:`LogPosterior` of a problem, compiled once per model and cached.

    The same object is returned while any reference to it is held; its compiled functions are
    kept per model, so a new one for the same problem compiles nothing.

    Parameters
    ----------
    problem : JointInversion, pymc.Model or LogPosterior

    Examples
    --------
    >>> import bayesjoint as bj
    >>> from bayesjoint.inference import log_posterior
    >>> x = bj.Parameter("x", prior=bj.priors.Normal(0.0, 1.0))
    >>> a = bj.Modality("a", physics=bj.physics.Linear([[1.0]], input="x"), data=[0.5],
    ...                 noise=bj.noise.Gaussian(1.0))
    >>> problem = bj.JointInversion(latent=[x], modalities=[a])
    >>> log_posterior(problem) is log_posterior(problem)
    True
    """
    if isinstance(problem, LogPosterior):
        return problem
    _model_of(problem)  # a clear TypeError for anything else
    # one target per problem: copies from ``with_data`` share a model but not their data (the
    # compiled functions are shared per model all the same, see ``LogPosterior``)
    # the cache holds the target weakly: a target holds its problem, so a strong value would
    # keep its own key alive and no problem would ever be freed (the compiled functions are
    # cached per model and outlive the target)
    ref = _TARGETS.get(problem)
    target = ref() if ref is not None else None
    if target is None:
        target = LogPosterior(problem)
        _TARGETS[problem] = weakref.ref(target)
    return target


class LogPosterior:
    """The log posterior density of a joint inversion as a function of one flat vector.

    Parameters
    ----------
    problem : JointInversion or pymc.Model
        Its :attr:`~bayesjoint.JointInversion.model` (built once, cached) is used.

    Attributes
    ----------
    model : pymc.Model
    size : int
        Length ``d`` of the flat vector.
    free_names : list of str
        The model's free random variables, in the order of the flat vector.
    value_names : list of str
        Their value variables (e.g. ``'t_interval__'`` for a bounded ``t``).
    x0 : numpy.ndarray
        The model's initial point as a flat vector.

    Notes
    -----
    **Coordinates.** The flat vector ``u`` concatenates the model's value variables (C order),
    laid out by :class:`pymc.blocking.DictToArrayBijection` — the coordinates NUTS samples in.
    A variable with an unbounded prior (``bj.priors.Normal``, the white noise of a whitened field)
    is its own value variable; a positive one is stored as ``log x``, a bounded one as
    ``log((x − a)/(b − x))``. The log density is :meth:`pymc.Model.compile_logp` with
    ``jacobian=True``, i.e. the density of ``u``: ``log p(u | d) = log p(x(u) | d) + log|dx/du|``.
    Its integral over any region equals the posterior mass of that region whatever the
    coordinates, so Laplace masses computed in ``u`` are masses of the posterior of ``x``.
    The modes are the modes of the density of ``u``; mapped back to latent units they coincide
    with the modes of ``p(x | d)`` for unbounded variables and differ by the Jacobian term
    (typically a small fraction of a posterior sd) for bounded or positive ones.

    **Bounds** (:meth:`bounds`) are given in the latent variables' own units and mapped to ``u``
    by each variable's transform, which must act element by element and increase (log,
    interval, log-odds, log-expm1); a box in ``x`` is then a box in ``u``. A whitened Gaussian
    field ``rho = mean + σ L z`` is not a free variable: a box on ``rho`` is not a box on ``z``,
    so give the bounds on ``rho_white`` instead, in standard-normal units (e.g. ``(-4, 4)``).
    Variables without bounds get the central 99.9 % interval of 2000 prior draws, element by
    element, in ``u``.

    Examples
    --------
    >>> import bayesjoint as bj
    >>> from bayesjoint.inference import LogPosterior
    >>> x = bj.Parameter("x", prior=bj.priors.Uniform(0.0, 2.0))
    >>> a = bj.Modality("a", physics=lambda m: m["x"][None], data=[1.0],
    ...                 noise=bj.noise.Gaussian(0.5))
    >>> lp = LogPosterior(bj.JointInversion(latent=[x], modalities=[a]))
    >>> lp.value_names, round(float(lp.latent(lp.x0)["x"]), 6)
    (['x_interval__'], 1.0)
    >>> lp.to_flat({"x": 1.5}).round(6)  # log((1.5 - 0) / (2 - 1.5))
    array([1.098612])
    """

    def __init__(self, problem: Any):
        self.model = _model_of(problem)
        self.problem = problem
        model = self.model
        start = model.initial_point()
        self.value_names = [v.name for v in model.value_vars]
        self.free_names = [model.values_to_rvs[v].name for v in model.value_vars]
        raveled = DictToArrayBijection.map({n: np.asarray(start[n]) for n in self.value_names})
        self._info = raveled.point_map_info
        self.x0 = np.asarray(raveled.data, dtype=float)
        self.size = int(self.x0.size)
        self.slices: dict[str, slice] = {}
        offset = 0
        for free, (_, _, size, _) in zip(self.free_names, self._info, strict=True):
            self.slices[free] = slice(offset, offset + size)
            offset += size
        self.shapes = {
            f: tuple(info[1]) for f, info in zip(self.free_names, self._info, strict=True)
        }
        self.transforms = {rv.name: model.rvs_to_transforms.get(rv, None) for rv in model.free_RVs}
        # compiled once per model (see _compiled_functions): a problem.with_data copy, whose
        # data are the model's shared variables, compiles nothing
        self._compiled = _compiled_functions(model)
        if "logp" not in self._compiled:
            self._compiled["logp"] = model.compile_logp(jacobian=True)
            self._compiled["dlogp"] = model.compile_dlogp(jacobian=True)
        self._logp = self._compiled["logp"]
        self._dlogp = self._compiled["dlogp"]
        names = get_default_varnames(model.unobserved_value_vars, include_transformed=False)
        self.latent_names = [v.name for v in names]
        self._latent_vars = names
        self._latent_fn: Any = None
        self._forward_fn: Any = None
        self.n_evaluations = 0

    def _bind(self) -> None:
        """Set the model's shared data to this problem's (copies from ``with_data`` share it)."""
        if self.problem is not self.model:
            _model_of(self.problem)  # JointInversion.model sets the data on reading

    # -- flat vector <-> points -----------------------------------------------------------
    def point(self, x: Any) -> dict[str, np.ndarray]:
        """Return the value-variable point ``{value name: array}`` of a flat vector."""
        return DictToArrayBijection.rmap(RaveledVars(np.asarray(x, dtype=float), self._info))

    def latent(self, x: Any) -> dict[str, np.ndarray]:
        """Return every named latent value (free variables and deterministics) in its own units."""
        if self._latent_fn is None:
            if "latent" not in self._compiled:
                self._compiled["latent"] = self.model.compile_fn(
                    self._latent_vars,
                    inputs=self.model.value_vars,
                    point_fn=True,
                    on_unused_input="ignore",
                )
            self._latent_fn = self._compiled["latent"]
        self._bind()
        values = self._latent_fn(self.point(x))
        return {n: np.asarray(v) for n, v in zip(self.latent_names, values, strict=True)}

    def initvals(self, x: Any) -> dict[str, np.ndarray]:
        """Return ``{free variable: value in its own units}``, as ``pymc.sample(initvals=...)``."""
        values = self.latent(x)
        return {n: values[n] for n in self.free_names}

    def _forward(self) -> Any:
        if self._forward_fn is None and "forward" in self._compiled:
            self._forward_fn = self._compiled["forward"]
        if self._forward_fn is None:
            from pymc.model.transform.conditioning import remove_value_transforms

            plain = remove_value_transforms(self.model)
            outs = []
            for rv in self.model.free_RVs:
                transform = self.model.rvs_to_transforms.get(rv, None)
                twin = plain[rv.name]
                outs.append(
                    twin if transform is None else transform.forward(twin, *twin.owner.inputs)
                )
            outs = plain.replace_rvs_by_values(outs)
            fn = plain.compile_fn(
                outs, inputs=plain.value_vars, point_fn=True, on_unused_input="ignore"
            )
            self._forward_fn = self._compiled["forward"] = fn
        return self._forward_fn

    def to_flat(self, values: Mapping[str, Any]) -> np.ndarray:
        """Map free-variable values in their own units to the flat vector ``u``.

        Parameters
        ----------
        values : mapping
            ``{free variable name: value}``; missing variables take the model's initial point.
        """
        unknown = sorted(set(values) - set(self.free_names))
        if unknown:
            raise ValueError(
                f"unknown free variable(s) {unknown}; the model's free variables are "
                f"{self.free_names} (a whitened field is set through '<name>_white')"
            )
        point = self.initvals(self.x0)
        for name, value in values.items():
            point[name] = np.broadcast_to(np.asarray(value, dtype=float), self.shapes[name])
        out = self._forward()(point)
        return np.concatenate([np.asarray(o, dtype=float).ravel() for o in out])

    def draws_to_flat(self, posterior: xr.Dataset) -> np.ndarray:
        """Map posterior draws (chain, draw) of the free variables to ``u``; shape (c, n, d)."""
        missing = [n for n in self.free_names if n not in posterior]
        if missing:
            raise ValueError(
                f"the posterior lacks free variable(s) {missing} of the model; pass the "
                "InferenceData sampled from this problem"
            )
        n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
        arrays = {
            n: posterior[n]
            .transpose("chain", "draw", ...)
            .values.reshape(n_chain, n_draw, *self.shapes[n])
            for n in self.free_names
        }
        fn = self._forward()
        out = np.empty((n_chain, n_draw, self.size))
        for c in range(n_chain):
            for k in range(n_draw):
                vals = fn({n: a[c, k] for n, a in arrays.items()})
                out[c, k] = np.concatenate([np.asarray(v, dtype=float).ravel() for v in vals])
        return out

    # -- density ----------------------------------------------------------------------------
    def logp(self, x: Any) -> float:
        """Return ``log p(u | d)`` (up to the evidence), ``-inf`` outside the support."""
        self.n_evaluations += 1
        self._bind()
        value = float(self._logp(self.point(x)))
        return value if math.isfinite(value) else -math.inf

    def dlogp(self, x: Any) -> np.ndarray:
        """Return the gradient of :meth:`logp` (pytensor)."""
        self._bind()
        return np.asarray(self._dlogp(self.point(x)), dtype=float)

    def objective(self, x: Any) -> float:
        """Return ``−log p``, with a large finite number instead of ``+inf`` (for searchers)."""
        value = -self.logp(x)
        return value if math.isfinite(value) else _BIG

    def objective_and_gradient(self, x: Any) -> tuple[float, np.ndarray]:
        """Return ``(−log p, −∇ log p)`` for :func:`scipy.optimize.minimize` with ``jac=True``."""
        value = self.objective(x)
        if value >= _BIG:
            return _BIG, np.zeros(self.size)
        return value, -self.dlogp(x)

    def hessian(self, x: Any) -> np.ndarray:
        """Return the Hessian of ``−log p`` at ``x`` by central differences of the gradient.

        Two passes: a first estimate with steps ``1e-4 · max(1, |u|)``, then steps of one
        hundredth of the local standard deviation ``1/√H_jj``, so the difference stays inside
        the quadratic part of sharp peaks.
        """
        x = np.asarray(x, dtype=float)

        def grad(y: np.ndarray) -> np.ndarray:
            return -self.dlogp(y)

        first = finite_difference_hessian(grad, x)
        diag = np.diag(first)
        step = np.where(
            diag > 0, 1e-2 / np.sqrt(np.where(diag > 0, diag, 1.0)), 1e-4 * np.maximum(1, abs(x))
        )
        return finite_difference_hessian(grad, x, step)

    # -- bounds -----------------------------------------------------------------------------
    def bounds(
        self,
        bounds: Mapping[str, Any] | None = None,
        *,
        random_seed: int | np.random.Generator | None = 0,
        n_prior_draws: int = 2000,
    ) -> np.ndarray:
        """Return the search box in ``u``, shape (d, 2), from bounds in the latent units.

        Parameters
        ----------
        bounds : mapping of str to (lower, upper), optional
            Per free variable, in its own units; scalars or arrays broadcast to its shape.
            Variables left out get the central 99.9 % interval of their prior draws.
        random_seed : int or numpy.random.Generator, default 0
            Seeds the prior draws used for the default bounds.
        n_prior_draws : int, default 2000

        Raises
        ------
        ValueError
            For unknown names, a deterministic name (e.g. a whitened field: use
            ``'<name>_white'``), a transform that is not element-wise monotone, or
            ``lower >= upper``.
        """
        given = dict(bounds or {})
        for name in given:
            self._check_bound_name(name)
        box = np.empty((self.size, 2))
        missing = [n for n in self.free_names if n not in given]
        if missing:
            rng, _ = rng_and_seed(random_seed)
            rvs = [self.model[n] for n in missing]
            draws = pm.draw(rvs, draws=n_prior_draws, random_seed=rng)
            draws = draws if isinstance(draws, list | tuple) else [draws]
            for name, sample in zip(missing, draws, strict=True):
                sample = np.asarray(sample, dtype=float).reshape(n_prior_draws, -1)
                box[self.slices[name]] = self._prior_interval(name, sample)
        for name, pair in given.items():
            box[self.slices[name]] = self._map_bounds(name, pair)
        bad = ~(box[:, 1] > box[:, 0]) | ~np.isfinite(box).all(axis=1)
        if bad.any():
            raise ValueError(
                f"the search box is empty or infinite in {int(bad.sum())} coordinate(s); give "
                "finite bounds with lower < upper inside each prior's support"
            )
        return box

    def _check_bound_name(self, name: str) -> None:
        """Raise unless ``name`` is a free variable (naming the fix for a whitened field)."""
        if name in self.free_names:
            return
        if f"{name}_white" in self.free_names:
            raise ValueError(
                f"bounds[{name!r}]: {name!r} is a whitened field computed from "
                f"'{name}_white'; a box on the field is not a box on its white noise, so "
                f"give bounds on '{name}_white' in standard-normal units, e.g. (-4, 4)"
            )
        raise ValueError(
            f"bounds[{name!r}]: not a free variable of the model; give bounds for {self.free_names}"
        )

    def _prior_interval(self, name: str, sample: np.ndarray) -> np.ndarray:
        """Return the central 99.9 % interval in ``u`` of prior draws (n, k) of ``name``, (k, 2)."""
        if self.transforms[name] is None or isinstance(self.transforms[name], _MONOTONE_TRANSFORMS):
            # quantiles commute with increasing element-wise maps
            pair = np.quantile(sample, [0.0005, 0.9995], axis=0)
            if np.all(pair[1] > pair[0]):
                return self._map_bounds(name, pair.reshape((2, *self.shapes[name])))
        start = self.initvals(self.x0)
        flat = np.array(
            [
                self.to_flat({**start, name: row.reshape(self.shapes[name])})[self.slices[name]]
                for row in sample
            ]
        )
        return np.stack(
            [np.quantile(flat, 0.0005, axis=0), np.quantile(flat, 0.9995, axis=0)], axis=-1
        )

    def _map_bounds(self, name: str, pair: Any) -> np.ndarray:
        try:
            lower, upper = pair
        except (TypeError, ValueError):
            raise ValueError(f"bounds[{name!r}] must be a pair (lower, upper)") from None
        shape = self.shapes[name]
        lower = np.broadcast_to(np.asarray(lower, dtype=float), shape).ravel()
        upper = np.broadcast_to(np.asarray(upper, dtype=float), shape).ravel()
        if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
            raise ValueError(f"bounds[{name!r}] must be finite")
        if np.any(upper <= lower):
            raise ValueError(f"bounds[{name!r}]: need lower < upper, got {pair!r}")
        transform = self.transforms[name]
        if transform is not None and not isinstance(transform, _MONOTONE_TRANSFORMS):
            raise ValueError(
                f"bounds[{name!r}]: its transform {type(transform).__name__} is not element-wise "
                "monotone, so a box in its units is not a box for the sampler; leave it out to "
                "use bounds from its prior draws"
            )
        s = self.slices[name]
        out = np.empty((lower.size, 2))
        for col, edge, inward in ((0, lower, upper), (1, upper, lower)):
            mapped = self.to_flat({name: edge.reshape(shape)})[s]
            if not np.all(np.isfinite(mapped)):  # an edge on the support's boundary
                nudged = edge + 1e-6 * (inward - edge)
                mapped = self.to_flat({name: nudged.reshape(shape)})[s]
            out[:, col] = mapped
        return out

    def design(self, box: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """Return ``n`` Latin-hypercube points of the box, uniform in the latent units.

        A box in ``u`` is a box in the latent units for element-wise monotone transforms, and a
        design uniform there spreads evenly over the values a user thinks in (uniform in
        ``u = logit(x)`` would crowd the edges of a bounded variable). Variables with other
        transforms are laid out uniformly in ``u``.
        """
        unit = qmc.LatinHypercube(d=self.size, rng=rng).random(n)
        points = box[:, 0] + unit * (box[:, 1] - box[:, 0])
        mapped = [
            name
            for name in self.free_names
            if self.transforms[name] is not None
            and isinstance(self.transforms[name], _MONOTONE_TRANSFORMS)
        ]
        if not mapped:
            return points
        lower, upper = self.latent(box[:, 0]), self.latent(box[:, 1])
        for row, u in zip(points, unit, strict=True):
            values = {}
            for name in mapped:
                lo, hi = np.ravel(lower[name]), np.ravel(upper[name])
                x = lo + u[self.slices[name]] * (hi - lo)
                values[name] = x.reshape(self.shapes[name])
            flat = self.to_flat({**self.initvals(row), **values})
            for name in mapped:
                row[self.slices[name]] = flat[self.slices[name]]
        return np.clip(points, box[:, 0], box[:, 1])

    def describe_point(self, x: Any, digits: int = 4) -> str:
        """Return ``'name = value, ...'`` for the free variables at ``x`` (plain words)."""
        values = self.latent(x)
        parts = []
        for name in self.free_names:
            v = values[name]
            if v.size == 1:
                parts.append(f"{name} = {float(v.ravel()[0]):.{digits}g}")
            else:
                parts.append(f"{name} = [{v.size} values, mean {float(v.mean()):.{digits}g}]")
        return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# modes
# ---------------------------------------------------------------------------------------------
@dataclass
class Mode:
    """One distinct mode of the posterior.

    Attributes
    ----------
    location : dict of str to numpy.ndarray
        Every named latent value at the mode, in its own units (free variables and
        deterministics such as whitened fields).
    value : numpy.ndarray, shape (d,)
        The mode in the sampler's flat coordinates ``u`` (see :class:`LogPosterior`).
    log_posterior : float
        ``log p(u* | d)`` up to the evidence (the model's log density with Jacobian).
    hessian : numpy.ndarray, shape (d, d)
        Hessian of ``−log p`` at the mode, in ``u``.
    log_mass : float
        Log Laplace mass (NaN when the Hessian is not positive definite).
    weight : float
        Normalized Laplace weight among the modes with a finite mass (NaN otherwise).
    hits : int
        How many local optimizations ended in this mode.
    found_by : tuple of str
        Which starting-point generators led here: ``"differential_evolution"``,
        ``"particle_swarm"``, ``"multi_start"``, ``"initial_point"``.
    at_bound : bool
        True when the mode touches the search box (widen the bounds; its mass is unreliable).
    initvals : dict of str to numpy.ndarray
        Free-variable values for ``pymc.sample(initvals=...)``.
    """

    location: dict[str, np.ndarray]
    value: np.ndarray
    log_posterior: float
    hessian: np.ndarray
    log_mass: float
    weight: float = float("nan")
    hits: int = 1
    found_by: tuple[str, ...] = ()
    at_bound: bool = False
    initvals: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def covariance(self) -> np.ndarray:
        """Laplace covariance ``H⁻¹`` in ``u`` (pseudo-inverse when not positive definite)."""
        return np.linalg.pinv(self.hessian)

    def distance(self, x: Any) -> float:
        """Mahalanobis distance ``√((x − u*)ᵀ H (x − u*))`` of ``x`` from the mode, in sds."""
        diff = np.asarray(x, dtype=float) - self.value
        return float(np.sqrt(max(float(diff @ self.hessian @ diff), 0.0)))


@dataclass
class SearchResult:
    """Outcome of :func:`find_modes`.

    Attributes
    ----------
    modes : list of Mode
        Distinct modes, largest Laplace mass first.
    weights : numpy.ndarray
        The modes' normalized Laplace weights (NaN for a mode without a finite mass).
    target : LogPosterior
        The compiled log posterior (reused by :mod:`bayesjoint.diagnostics.modes`).
    bounds : numpy.ndarray, shape (d, 2)
        The search box in ``u``.
    n_evaluations : int
        Log-density evaluations used, all stages together.
    n_local : int
        Local optimizations run.
    methods : tuple of str
    random_seed : int or str
    """

    modes: list[Mode]
    weights: np.ndarray
    target: LogPosterior
    bounds: np.ndarray
    n_evaluations: int
    n_local: int
    methods: tuple[str, ...]
    random_seed: Any

    @property
    def best(self) -> Mode:
        """The mode with the highest log posterior density."""
        return max(self.modes, key=lambda m: m.log_posterior)

    @property
    def message(self) -> str:
        """A plain-words description of the modes found."""
        n = len(self.modes)
        lines = [
            f"Found {n} distinct mode{'s' if n != 1 else ''} in {self.n_local} local "
            f"optimizations ({self.n_evaluations} log-density evaluations):"
        ]
        for k, mode in enumerate(self.modes, start=1):
            note = " (touches the search bounds: widen them)" if mode.at_bound else ""
            weight = "no Laplace weight" if not np.isfinite(mode.weight) else f"{mode.weight:.3g}"
            lines.append(
                f"  mode {k}: weight {weight}, log posterior {mode.log_posterior:.4g}: "
                f"{self.target.describe_point(mode.value)}{note}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.message

    def to_dataset(self) -> xr.Dataset:
        """Return the modes as an xarray Dataset on a ``mode`` dimension.

        Variables: every latent value (dims ``("mode", *its dims)``), ``log_posterior``,
        ``log_mass``, ``weight``, ``hits`` and ``at_bound``.
        """
        model = self.target.model
        dims = model.named_vars_to_dims
        data: dict[str, Any] = {}
        coords: dict[str, Any] = {"mode": np.arange(len(self.modes))}
        for name in self.target.latent_names:
            stack = np.stack([np.asarray(m.location[name]) for m in self.modes])
            var_dims = tuple(dims.get(name, ()))
            if len(var_dims) != stack.ndim - 1:
                var_dims = tuple(f"{name}_dim_{k}" for k in range(stack.ndim - 1))
            for dim in var_dims:
                if dim in model.coords and model.coords[dim] is not None:
                    coords[dim] = np.asarray(model.coords[dim])
            data[name] = (("mode", *var_dims), stack)
        for attr in ("log_posterior", "log_mass", "weight", "hits", "at_bound"):
            data[attr] = ("mode", np.array([getattr(m, attr) for m in self.modes]))
        return xr.Dataset(data, coords=coords)


def _local_length_scale(target: LogPosterior, x0: np.ndarray) -> np.ndarray:
    """Return the local length scale of ``−log p`` at ``x0`` per coordinate (see local_descent).

    ``1/√|H_jj|`` from central differences of the gradient for ``d ≤ 50``; for larger ``d`` one
    common ``1/√|vᵀHv|`` along the unit gradient ``v``. Coordinates without curvature get 1.
    """
    d = x0.size
    if d <= 50:
        h = 1e-4 * np.maximum(1.0, np.abs(x0))
        curvature = np.empty(d)
        for j in range(d):
            e = np.zeros(d)
            e[j] = h[j]
            curvature[j] = -(target.dlogp(x0 + e)[j] - target.dlogp(x0 - e)[j]) / (2.0 * h[j])
        size = np.abs(curvature)  # a concave start still has a local length scale
        return np.where(size > 0, 1.0 / np.sqrt(np.where(size > 0, size, 1.0)), 1.0)
    g = target.dlogp(x0)
    norm = float(np.linalg.norm(g))
    scale = np.ones(d)
    if norm > 0:
        v = g / norm
        step = 1e-4 * max(1.0, float(np.max(np.abs(x0))))
        hv = -(target.dlogp(x0 + step * v) - target.dlogp(x0 - step * v)) / (2.0 * step)
        along = abs(float(v @ hv))
        if along > 0:
            scale[:] = 1.0 / math.sqrt(along)
    return scale


def local_descent(
    target: LogPosterior, x0: Any, box: np.ndarray | None = None, maxiter: int = 1000
) -> tuple[np.ndarray, float]:
    """Minimize ``−log p`` from ``x0`` without leaving the valley it starts in.

    Parameters
    ----------
    target : LogPosterior
    x0 : array_like, shape (d,)
        Start, in the sampler's flat coordinates.
    box : numpy.ndarray, shape (d, 2), optional
        Bounds in the same coordinates.
    maxiter : int, default 1000
        L-BFGS-B iterations.

    Returns
    -------
    x : numpy.ndarray
        The local minimizer.
    value : float
        ``−log p`` there.

    Notes
    -----
    L-BFGS-B (Byrd et al. 1995, SIAM J. Sci. Comput. 16, 1190–1208) scales its first step to unit
    length, which in the sampler's coordinates can jump over several valleys of a rugged
    posterior. The coordinates are therefore rescaled by the local curvature at the start:
    ``1/√|H_jj|`` per coordinate (the Hessian diagonal of ``−log p`` by central differences of
    the gradient) for ``d ≤ 50``, and one common factor from the curvature along the gradient
    for larger ``d``. The first step is then about one local length scale (one standard
    deviation at a peak).

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> from bayesjoint.inference import local_descent, log_posterior
    >>> x = bj.Parameter("x", prior=bj.priors.Normal(0.0, 3.0))
    >>> sq = bj.Modality("sq", physics=lambda m: (m["x"] ** 2)[None], data=[4.0],
    ...                  noise=bj.noise.Gaussian(0.2))
    >>> target = log_posterior(bj.JointInversion(latent=[x], modalities=[sq]))
    >>> [round(float(local_descent(target, [s])[0][0]), 2) for s in (-3.5, 3.5)]
    [-2.0, 2.0]
    """
    x0 = np.asarray(x0, dtype=float)
    if box is not None:
        x0 = np.clip(x0, box[:, 0], box[:, 1])
    d = x0.size
    scale = _local_length_scale(target, x0)

    def fun(y: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = target.objective_and_gradient(x0 + scale * y)
        return value, grad * scale

    res = scipy.optimize.minimize(
        fun,
        np.zeros(d),
        jac=True,
        method="L-BFGS-B",
        bounds=None if box is None else (box - x0[:, None]) / scale[:, None],
        options={"maxiter": maxiter},
    )
    x = x0 + scale * np.asarray(res.x, dtype=float)
    if box is not None:
        x = np.clip(x, box[:, 0], box[:, 1])
    return x, float(res.fun)


def _barrier(target: LogPosterior, a: np.ndarray, b: np.ndarray, n_line: int) -> float:
    """Height of ``−log p`` on the segment a→b above the higher end (nats)."""
    fa, fb = target.objective(a), target.objective(b)
    ts = np.linspace(0.0, 1.0, n_line)[1:-1]
    inner = max(target.objective(a + t * (b - a)) for t in ts)
    return inner - max(fa, fb)


def _starting_points(
    target: LogPosterior,
    box: np.ndarray,
    methods: tuple[str, ...],
    n_starts: int,
    maxiter: int,
    popsize: int,
    n_particles: int,
    rng: np.random.Generator,
) -> list[tuple[np.ndarray, str]]:
    """Return the starts of the local optimizations, each with the generator that proposed it.

    The model's initial point, the global searchers' best points, the swarm's early personal
    bests and a Latin-hypercube design (see :func:`find_modes`).
    """
    starts: list[tuple[np.ndarray, str]] = [
        (np.clip(target.x0, box[:, 0], box[:, 1]), "initial_point")
    ]
    if "differential_evolution" in methods:
        res = scipy.optimize.differential_evolution(
            target.objective,
            box,
            maxiter=maxiter,
            popsize=popsize,
            polish=False,
            rng=rng,
            tol=1e-8,
        )
        starts.append((np.asarray(res.x, dtype=float), "differential_evolution"))
    if "particle_swarm" in methods:
        swarm = particle_swarm(
            target.objective, box, n_particles=n_particles, iterations=maxiter, random_seed=rng
        )
        starts.append((swarm.x, "particle_swarm"))
        starts.extend((p, "particle_swarm") for p in swarm.early_positions)
    if n_starts:
        starts.extend((p, "multi_start") for p in target.design(box, n_starts, rng))
    return starts


def _local_optima(
    target: LogPosterior,
    starts: Sequence[tuple[np.ndarray, str]],
    box: np.ndarray,
    local_maxiter: int,
) -> list[tuple[float, np.ndarray, str]]:
    """Return ``(−log p, x, origin)`` of every finite local optimum, lowest ``−log p`` first."""
    optima = []
    for x0, origin in starts:
        x, fx = local_descent(target, x0, box, local_maxiter)
        if fx < _BIG:
            optima.append((fx, x, origin))
    if not optima:
        raise ValueError(
            "every local optimization ended where the log posterior is -inf; check the bounds "
            "against the priors' supports"
        )
    optima.sort(key=lambda item: item[0])
    return optima


def _new_mode(target: LogPosterior, x: np.ndarray, fx: float, box: np.ndarray) -> Mode:
    """Return the :class:`Mode` at the optimum ``x`` (``fx = −log p``), with its Laplace mass."""
    hess = target.hessian(x)
    log_post = -fx
    width = box[:, 1] - box[:, 0]
    at_bound = bool(np.any((x - box[:, 0] < 1e-6 * width) | (box[:, 1] - x < 1e-6 * width)))
    return Mode(
        location=target.latent(x),
        value=x,
        log_posterior=log_post,
        hessian=hess,
        log_mass=laplace_log_mass(log_post, hess),
        at_bound=at_bound,
        initvals=target.initvals(x),
    )


def _cluster_optima(
    target: LogPosterior,
    optima: Sequence[tuple[float, np.ndarray, str]],
    box: np.ndarray,
    min_barrier: float,
) -> list[Mode]:
    """Group the local optima (best first) into distinct modes, with their hits and origins.

    An optimum joins one of the three nearest modes when it is within one posterior sd of it or
    no barrier higher than ``min_barrier`` nats separates them; otherwise it is a new mode.
    """
    clusters: list[dict[str, Any]] = []
    for fx, x, origin in optima:
        home = None
        ranked = sorted(clusters, key=lambda c: c["mode"].distance(x))
        for cluster in ranked[:3]:
            if cluster["mode"].distance(x) < 1.0 or (
                _barrier(target, cluster["mode"].value, x, 17) < min_barrier
            ):
                home = cluster
                break
        if home is not None:
            home["hits"] += 1
            home["found_by"].add(origin)
            continue
        clusters.append({"mode": _new_mode(target, x, fx, box), "hits": 1, "found_by": {origin}})
    modes = []
    for cluster in clusters:
        mode = cluster["mode"]
        mode.hits = cluster["hits"]
        mode.found_by = tuple(sorted(cluster["found_by"]))
        modes.append(mode)
    return modes


def _weigh_modes(modes: list[Mode]) -> tuple[list[Mode], np.ndarray]:
    """Set each mode's normalized Laplace weight; return the modes and weights, largest first.

    Modes without a finite mass get weight NaN and come last, by log posterior density.
    """
    log_mass = np.array([m.log_mass for m in modes])
    finite = np.isfinite(log_mass)
    weights = np.full(len(modes), np.nan)
    if finite.any():
        shifted = np.exp(log_mass[finite] - np.max(log_mass[finite]))
        weights[finite] = shifted / shifted.sum()
    for mode, weight in zip(modes, weights, strict=True):
        mode.weight = float(weight)
    order = sorted(
        range(len(modes)),
        key=lambda k: (-np.nan_to_num(weights[k], nan=-1.0), -modes[k].log_posterior),
    )
    return [modes[k] for k in order], weights[order]


@checked_keywords(check_find_modes_arguments)
def find_modes(
    problem: Any,
    bounds: Mapping[str, Any] | None = None,
    *,
    methods: Sequence[str] = METHODS,
    n_starts: int = 20,
    maxiter: int = 200,
    popsize: int = 15,
    n_particles: int = 30,
    local_maxiter: int = 1000,
    min_barrier: float = 1.0,
    random_seed: int | np.random.Generator | None = None,
) -> SearchResult:
    """Find the distinct modes of a joint posterior and their Laplace weights.

    Parameters
    ----------
    problem : JointInversion, pymc.Model or LogPosterior
        A :class:`LogPosterior` is reused as it is (no recompilation).
    bounds : mapping of str to (lower, upper), optional
        Search box per free variable in its own units (see :meth:`LogPosterior.bounds`; a
        whitened field takes bounds on ``'<name>_white'``). Omitted variables get their central
        99.9 % prior interval.
    methods : sequence of {"differential_evolution", "particle_swarm"}
        Global searchers to run; an empty sequence leaves the multi-start design alone.
    n_starts : int, default 20
        Latin-hypercube starting points for the multi-start local optimization, uniform in the
        latent units within the bounds (:meth:`LogPosterior.design`), in addition to the global
        searchers' points and the model's initial point. Give several per expected mode.
    maxiter : int, default 200
        Iterations of each global searcher.
    popsize : int, default 15
        Differential evolution's population per dimension.
    n_particles : int, default 30
        Swarm size; every particle's best position seeds a local optimization.
    local_maxiter : int, default 1000
        L-BFGS-B iterations per start.
    min_barrier : float, default 1.0
        Two optima are distinct modes when ``−log p`` rises by more than this many nats above the
        higher of the two on the straight line between them (and they are more than one
        posterior sd apart).
    random_seed : int or numpy.random.Generator, optional
        Seeds every random choice; drawn from OS entropy (and recorded) when omitted.

    Returns
    -------
    SearchResult
        ``modes`` (largest mass first), ``weights``, ``message`` in plain words,
        ``to_dataset()``.

    Notes
    -----
    Each mode ``k`` at ``u_k`` with Hessian ``H_k`` of ``−log p`` gets the Laplace mass
    ``M_k = p(u_k) (2π)^{d/2} |H_k|^{-1/2}`` (:func:`laplace_log_mass`) and the weight
    ``w_k = M_k / Σ_j M_j``. This is exact for Gaussian peaks; for skewed peaks it is a first
    answer that :func:`bayesjoint.inference.sample_from_modes` refines by bridge sampling.
    Differential evolution (Storn & Price 1997, J. Global Optim. 11, 341–359) and the swarm find
    the global basin reliably but collapse onto it; the other basins come from local
    optimizations started at the swarm's early personal bests (after ``early`` iterations, still
    spread out) and at the Latin-hypercube design. Every local optimization is
    :func:`local_descent`, whose steps stay in the valley they start in. Nothing guarantees that
    every mode is found: a mode whose basin of attraction is tiny compared with the box can be
    missed, so raise ``n_starts`` when the modes found depend on ``random_seed``.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> from bayesjoint.inference import find_modes
    >>> x = bj.Parameter("x", prior=bj.priors.Normal(0.0, 3.0))
    >>> sq = bj.Modality("sq", physics=lambda m: (m["x"] ** 2)[None], data=[4.0],
    ...                  noise=bj.noise.Gaussian(0.2))
    >>> result = find_modes(bj.JointInversion(latent=[x], modalities=[sq]),
    ...                     {"x": (-5.0, 5.0)}, n_starts=8, maxiter=30, random_seed=1)
    >>> sorted(round(float(m.location["x"]), 2) for m in result.modes)
    [-2.0, 2.0]
    >>> np.round(result.weights, 2)  # symmetric posterior: equal masses
    array([0.5, 0.5])
    """
    target = log_posterior(problem)
    methods = tuple(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    if n_starts < 0 or min_barrier <= 0:
        raise ValueError("find_modes needs n_starts >= 0 and min_barrier > 0")
    rng, seed = rng_and_seed(random_seed)
    evaluations_before = target.n_evaluations
    box = target.bounds(bounds, random_seed=rng)
    starts = _starting_points(target, box, methods, n_starts, maxiter, popsize, n_particles, rng)
    optima = _local_optima(target, starts, box, local_maxiter)
    modes, weights = _weigh_modes(_cluster_optima(target, optima, box, min_barrier))
    result = SearchResult(
        modes=modes,
        weights=weights,
        target=target,
        bounds=box,
        n_evaluations=target.n_evaluations - evaluations_before,
        n_local=len(starts),
        methods=methods,
        random_seed=seed,
    )
    _log.info("%s", result.message)
    return result
