"""Information budget of nonlinear problems by Gauss–Newton / Laplace linearization.

At a point ``m₀`` (by default the posterior mean) every modality's prediction is replaced by its
first-order Taylor expansion ``f_k(m) ≈ f_k(m₀) + J_k (m − m₀)``, with the Jacobian ``J_k`` of the
prediction ``H_k(F_k(m))`` with respect to the stacked latent vector taken by pytensor's automatic
differentiation. The prior is replaced by a Gaussian (exact when it is one, Laplace otherwise).
What results is a :class:`bayesjoint.linear.LinearGaussianSystem`, so the linearized budget has
exactly the variables of the exact one (``J_kᵀ Σ_k⁻¹ J_k`` per modality, information gains alone
and added, precision shares, posterior sds) and the linearized posterior is its
:meth:`~bayesjoint.linear.LinearGaussianSystem.posterior`.

The same machinery answers the survey-design question "which modality next": the expected
information gain of adding a candidate instrument, linearized (:func:`expected_information_gain`).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import scipy.linalg as sla
import scipy.sparse as sp
import xarray as xr
from pytensor.graph.replace import graph_replace

try:  # pytensor >= 2.31 moved graph traversal helpers
    from pytensor.graph.traversal import ancestors
except ImportError:  # pragma: no cover - older pytensor
    from pytensor.graph.basic import ancestors

from bayesjoint.linear import LinearGaussianSystem
from bayesjoint.modality import Modality
from bayesjoint.noise import Gaussian, StudentT
from bayesjoint.priors import GaussianField, Prior

__all__ = [
    "expected_information_gain",
    "jacobians",
    "linearization_point",
    "linearized_budget",
    "linearized_system",
    "prediction_function",
]

_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# -- stacking ---------------------------------------------------------------------------------
def _columns(problem: Any) -> dict[str, slice]:
    columns, start = {}, 0
    for name, var in problem.latent.items():
        columns[name] = slice(start, start + var.size)
        start += var.size
    return columns


def _n_latent(problem: Any) -> int:
    return int(sum(var.size for var in problem.latent.values()))


def _symbolic_latent(problem: Any) -> tuple[Any, dict[str, Any]]:
    """Return a stacked float64 vector ``m`` and the latent tensors cut from it (C order)."""
    m = pt.vector("m", shape=(_n_latent(problem),), dtype="float64")
    tensors = {}
    for name, cols in _columns(problem).items():
        tensors[name] = m[cols].reshape(problem.latent[name].shape)
    return m, tensors


def _check_problem(problem: Any) -> None:
    from bayesjoint.joint import JointInversion

    if not isinstance(problem, JointInversion):
        raise TypeError(f"problem must be a bj.JointInversion, got {type(problem).__name__}")


def linearization_point(problem: Any, idata: Any = None, point: Any = None) -> np.ndarray:
    """Return the stacked latent vector at which to linearize.

    Parameters
    ----------
    problem : JointInversion
    idata : arviz.InferenceData, optional
        Its posterior mean is used when ``point`` is not given.
    point : array_like or mapping of str to array_like, optional
        The point itself: a stacked vector (order of :meth:`JointInversion.stack_latent`) or one
        array per latent variable.

    Returns
    -------
    numpy.ndarray, shape (n,)
        With neither ``idata`` nor ``point``, the maximum a posteriori point
        (:meth:`JointInversion.find_map`).

    Examples
    --------
    >>> from bayesjoint.testing import blur_and_points_problem
    >>> problem = blur_and_points_problem(6, n_points=2)
    >>> linearization_point(problem, point={"x": [0.0] * 6}).shape
    (6,)
    """
    _check_problem(problem)
    n = _n_latent(problem)
    if point is not None:
        if isinstance(point, Mapping):
            missing = [k for k in problem.latent if k not in point]
            if missing:
                raise ValueError(
                    f"point: no value for latent variable(s) {missing}; give one array per "
                    f"latent variable {list(problem.latent)}"
                )
            pieces = []
            for name, var in problem.latent.items():
                value = np.asarray(point[name], dtype=float)
                if value.size != var.size:
                    raise ValueError(
                        f"point[{name!r}] has {value.size} values, the variable has {var.size}"
                    )
                pieces.append(value.ravel())
            vec = np.concatenate(pieces)
        else:
            vec = np.asarray(point, dtype=float).ravel()
            if vec.size != n:
                raise ValueError(
                    f"point has {vec.size} values but the stacked latent vector has {n}; give "
                    "a mapping {name: array} or a vector in stack_latent order"
                )
    elif idata is not None:
        post = getattr(idata, "posterior", None)
        missing = [k for k in problem.latent if post is None or k not in post]
        if missing:
            raise ValueError(
                f"idata has no posterior draws of {missing}; pass the InferenceData of this "
                "problem or point="
            )
        vec = problem.stack_latent(post[list(problem.latent)]).mean(("chain", "draw")).values
    else:
        found = problem.find_map()
        vec = np.concatenate(
            [np.asarray(found[name].values, dtype=float).ravel() for name in problem.latent]
        )
    if not np.all(np.isfinite(vec)):
        raise ValueError("the linearization point has NaN or inf values")
    return vec


# -- predictions and Jacobians ----------------------------------------------------------------
def _compile(problem: Any, modality: Modality, with_jacobian: bool) -> Any:
    m, tensors = _symbolic_latent(problem)
    try:
        mu = pt.as_tensor_variable(modality.predict(tensors)).astype("float64").ravel()
    except KeyError as err:
        raise ValueError(
            f"modality {modality.name!r}: physics reads latent variable {err} that the problem "
            f"does not declare ({sorted(problem.latent)})"
        ) from None
    outputs = [mu]
    if with_jacobian:
        try:  # one batched backward pass (fast), where every op of the graph can be batched
            jac = pytensor.gradient.jacobian(mu, m, vectorize=True, disconnected_inputs="ignore")
        except (TypeError, NotImplementedError, ValueError):  # e.g. sparse ops: row by row (scan)
            jac = pytensor.gradient.jacobian(mu, m, vectorize=False, disconnected_inputs="ignore")
        outputs.append(jac)
    return pytensor.function([m], outputs, on_unused_input="ignore")


def _function(problem: Any, modality: Modality, with_jacobian: bool) -> Any:
    cache = _COMPILED.setdefault(problem, {})
    key = (id(modality), with_jacobian)
    entry = cache.get(key)
    if entry is None or entry[0] is not modality:
        entry = (modality, _compile(problem, modality, with_jacobian))
        cache[key] = entry
    return entry[1]


def prediction_function(problem: Any, modality: str | Modality) -> Any:
    """Return a compiled ``f(m) -> H(F(m))`` (flat) for a stacked latent vector ``m``.

    Parameters
    ----------
    problem : JointInversion
    modality : str or Modality
        A modality of the problem (by name) or a candidate reading the problem's latent variables.

    Returns
    -------
    callable
        Takes a vector of shape ``(n,)`` and returns the flat prediction (float64).

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.testing import blur_and_points_problem
    >>> problem = blur_and_points_problem(6, n_points=2)
    >>> f = prediction_function(problem, "blurred")
    >>> f(np.ones(6)).round(6).tolist()  # rows of the blur sum to one
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    """
    _check_problem(problem)
    mod = _modality(problem, modality)
    fn = _function(problem, mod, False)
    return lambda m: np.asarray(fn(np.asarray(m, dtype=float))[0])


def _modality(problem: Any, modality: str | Modality) -> Modality:
    if isinstance(modality, Modality):
        return modality
    if modality not in problem.modalities:
        raise ValueError(
            f"unknown modality {modality!r}; the problem has {list(problem.modalities)}"
        )
    return problem.modalities[modality]


def jacobians(
    problem: Any, point: Any, modalities: Sequence[str | Modality] | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return each modality's prediction and Jacobian at a point.

    Parameters
    ----------
    problem : JointInversion
    point : array_like or mapping
        See :func:`linearization_point`.
    modalities : sequence of str or Modality, optional
        Default: all modalities of the problem.

    Returns
    -------
    dict of str to (numpy.ndarray, numpy.ndarray)
        ``(f_k(m₀), J_k)`` with the flat prediction (m_k,) and ``J_k = ∂f_k/∂m`` (m_k, n) with
        respect to the stacked latent vector.

    Notes
    -----
    The Jacobian is pytensor's reverse-mode derivative of the modality's symbolic prediction
    (physics then observation), one row per datum.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.testing import blur_and_points_problem
    >>> problem = blur_and_points_problem(6, n_points=2)
    >>> pred, jac = jacobians(problem, np.zeros(6))["points"]
    >>> jac.sum(axis=1).tolist()  # each point datum reads one cell
    [1.0, 1.0]
    """
    _check_problem(problem)
    m0 = linearization_point(problem, point=point)
    out = {}
    for item in modalities if modalities is not None else list(problem.modalities):
        mod = _modality(problem, item)
        pred, jac = _function(problem, mod, True)(m0)
        out[mod.name] = (np.asarray(pred, dtype=float), np.asarray(jac, dtype=float))
    return out


# -- noise -----------------------------------------------------------------------------------
def _posterior_mean(idata: Any, name: str, owner: str) -> float:
    post = getattr(idata, "posterior", None)
    if post is None or name not in post:
        raise ValueError(
            f"{owner} is learned, so the linearization needs its posterior mean: pass the "
            f"InferenceData that holds {name!r} (idata=...)"
        )
    return float(post[name].mean())


def noise_factor(modality: Modality, idata: Any = None) -> np.ndarray:
    """Return the noise sd vector or covariance Cholesky factor used by the linearization.

    Known noise gives its own factor. Learned noise uses the posterior mean of its learned
    hyperparameter (``<name>_sigma`` or ``<name>_noise_scale``). Student-t noise of scale ``s`` and
    ``ν`` degrees of freedom gives the sd with the same Fisher information about the prediction:
    ``s √((ν + 3)/(ν + 1))`` (Lange, Little & Taylor 1989, JASA 84, 881).
    """
    noise, name = modality.noise, modality.name
    shape = modality.data.shape
    if isinstance(noise, Gaussian):
        if isinstance(noise.sd, Prior):
            sd = _posterior_mean(idata, f"{name}_sigma", f"modality {name!r}: the noise sd")
            return np.full(modality.n_data, sd)
        scale = 1.0
        if noise.scale is not None:
            scale = _posterior_mean(
                idata, f"{name}_noise_scale", f"modality {name!r}: the noise scale"
            )
        if noise.cov is not None:
            if noise._chol is None:
                noise._chol = sla.cholesky(noise.cov, lower=True)
            return scale * noise._chol
        return scale * np.broadcast_to(noise.sd, shape).ravel().astype(float)
    if isinstance(noise, StudentT):
        if isinstance(noise.sd, Prior):
            s = np.full(
                modality.n_data,
                _posterior_mean(idata, f"{name}_sigma", f"modality {name!r}: the noise scale"),
            )
        else:
            s = np.broadcast_to(noise.sd, shape).ravel().astype(float)
        return s * np.sqrt((noise.nu + 3.0) / (noise.nu + 1.0))
    raise ValueError(
        f"modality {name!r}: noise {noise!r} has no Gaussian approximation in the linearization; "
        "use bj.noise.Gaussian or bj.noise.StudentT"
    )


def _whiten(factor: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    if factor.ndim == 1:
        return matrix / (factor[:, None] if matrix.ndim == 2 else factor)
    return sla.solve_triangular(factor, matrix, lower=True)


# -- priors (Laplace) ------------------------------------------------------------------------
def _replace_free_rvs(model: pm.Model, graph: Any, keep: Any, idata: Any, owner: str) -> Any:
    """Replace free random variables other than ``keep`` in ``graph`` by posterior means."""
    others = [
        rv for rv in model.free_RVs if rv is not keep and rv in set(ancestors([graph], blockers=[]))
    ]
    if not others:
        return graph
    replacements = {}
    for rv in others:
        value = _posterior_mean_array(idata, rv.name, owner)
        replacements[rv] = pt.constant(value.astype(rv.dtype))
    return graph_replace(graph, replacements, strict=False)


def _posterior_mean_array(idata: Any, name: str, owner: str) -> np.ndarray:
    post = getattr(idata, "posterior", None)
    if post is None or name not in post:
        raise ValueError(
            f"{owner} depends on the learned variable {name!r}; pass the InferenceData that "
            "holds it (idata=...) so the linearization can use its posterior mean"
        )
    return np.asarray(post[name].mean(("chain", "draw")).values, dtype=float)


def _prior_gaussian(var: Any, m0: np.ndarray, idata: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """Return ``(mean, cov_factor_lower, method)`` of the Gaussian standing for the prior."""
    form = var.prior.gaussian(var.shape, var.grid)
    if form is not None:
        return np.asarray(form[0], float), np.asarray(form[1], float), "exact Gaussian"
    owner = f"latent {var.name!r}: prior {var.prior!r}"
    if isinstance(var.prior, GaussianField):  # learned marginal sd: condition on its mean
        sigma = _posterior_mean(idata, f"{var.name}_sigma", f"{owner} sd")
        factor = np.ones((1, 1))
        for f in var.prior.axis_factors(var.grid):
            factor = np.kron(factor, f)
        mean = np.broadcast_to(var.prior.mean, var.shape).ravel().astype(float)
        return mean, sigma * factor, "Gaussian field, sd at its posterior mean"
    with pm.Model() as tmp:
        rv = var.prior.build(var.name, var.shape, None, var.grid)
    if rv not in tmp.free_RVs:
        raise ValueError(
            f"{owner} is neither Gaussian nor a single PyMC distribution, so no Laplace "
            "approximation can be formed; give the variable a bj.priors family"
        )
    value = pt.vector(f"{var.name}_value", shape=(var.size,), dtype="float64")
    logp = pm.logp(rv, value.reshape(var.shape)).sum()
    logp = _replace_free_rvs(tmp, logp, rv, idata, owner)
    grad = pytensor.grad(logp, value)
    hess = pytensor.gradient.hessian(logp, value)
    g, h = pytensor.function([value], [grad, hess])(m0)
    precision = -0.5 * (np.asarray(h) + np.asarray(h).T)
    eig = np.linalg.eigvalsh(precision) if precision.size else np.ones(1)
    if np.all(np.isfinite(eig)) and eig.min() > 1e-12 * max(1.0, abs(eig).max()):
        cov = np.linalg.inv(precision)
        cov = 0.5 * (cov + cov.T)
        mean = m0 + cov @ np.asarray(g)
        return mean, sla.cholesky(cov, lower=True), "Laplace at the linearization point"
    # Flat or non-log-concave at m₀ (e.g. Uniform): match the prior's first two moments.
    draws_rv = _replace_free_rvs(tmp, rv, rv, idata, owner)
    draws = np.asarray(pm.draw(draws_rv, draws=4000, random_seed=0), float).reshape(4000, -1)
    return draws.mean(axis=0), np.diag(draws.std(axis=0, ddof=1)), "moment-matched"


def _coupling_rows(
    problem: Any, coupling: Any, m0: np.ndarray, idata: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Return whitened rows ``(G_c, r_c)`` standing for one coupling at ``m0``."""
    n = m0.size
    columns = _columns(problem)
    factor = coupling.gaussian_factor(problem.latent)
    if factor is not None:
        ops, offset, sd = factor
        rows = np.zeros((np.size(offset), n))
        for name, mat in ops.items():
            mat = mat.toarray() if sp.issparse(mat) else np.asarray(mat, dtype=float)
            rows[:, columns[name]] += mat
        sd = np.broadcast_to(np.asarray(sd, dtype=float), np.shape(offset))
        return rows / sd[:, None], np.asarray(offset, dtype=float).ravel() / sd.ravel()
    m, tensors = _symbolic_latent(problem)
    with pm.Model() as tmp:
        coupling.build(tensors, problem.latent)
    if not tmp.potentials:
        raise ValueError(
            f"coupling {coupling.name!r} adds no potential terms, so the linearization cannot "
            "represent it; give it a gaussian_factor()"
        )
    owner = f"coupling {coupling.name!r}"
    total = pt.sum([pt.sum(p) for p in tmp.potentials])
    total = _replace_free_rvs(tmp, total, None, idata, owner)
    g, h = pytensor.function(
        [m],
        [
            pytensor.grad(total, m, disconnected_inputs="ignore"),
            pytensor.gradient.hessian(total, m, disconnected_inputs="ignore"),
        ],
        on_unused_input="ignore",
    )(m0)
    precision = -0.5 * (np.asarray(h) + np.asarray(h).T)
    eig, vec = np.linalg.eigh(precision)
    eig = np.clip(eig, 0.0, None)  # Gauss–Newton: keep the positive-semidefinite part
    rows = np.sqrt(eig)[:, None] * vec.T
    rhs = np.asarray(g) + precision @ m0
    resid = np.linalg.lstsq(rows.T, rhs, rcond=None)[0]
    return rows, resid


# -- the linearized system -------------------------------------------------------------------
def linearized_system(
    problem: Any, idata: Any = None, *, point: Any = None
) -> LinearGaussianSystem:
    """Return the Gauss–Newton / Laplace linearization of a joint inversion.

    Parameters
    ----------
    problem : JointInversion
    idata : arviz.InferenceData, optional
        Posterior draws: their mean is the linearization point and learned noise or prior
        hyperparameters enter at their posterior means.
    point : array_like or mapping, optional
        Linearize here instead (see :func:`linearization_point`).

    Returns
    -------
    LinearGaussianSystem
        Its ``budget()`` is the linearized information budget and its ``posterior()`` the
        Gauss–Newton posterior (one Newton step from the point).

    Notes
    -----
    With ``m₀`` the point and ``J_k`` the Jacobian of modality ``k``, the data model is
    ``d_k ≈ f_k(m₀) + J_k (m − m₀) + ε_k``, so the whitened operator is ``Σ_k^{-1/2} J_k`` and the
    whitened data ``Σ_k^{-1/2} (d_k − f_k(m₀) + J_k m₀)``; the posterior precision is the
    Gauss–Newton matrix ``Λ₀ + Σ_k J_kᵀ Σ_k⁻¹ J_k`` (Tarantola 2005, *Inverse Problem Theory*,
    §3.2.2; Nocedal & Wright 2006, §10.3). The noise covariance ``Σ_k`` is the known one; learned
    noise uses the posterior mean of its sd or scale, Student-t noise the Gaussian of equal
    Fisher information (:func:`noise_factor`).

    The prior: Gaussian families are exact; a Gaussian field with a learned sd uses the
    posterior-mean sd; any other prior is replaced by its **Laplace approximation** at ``m₀``:
    precision ``−∇² log p(m₀)`` and mean ``m₀ + (−∇² log p)⁻¹ ∇ log p(m₀)`` (the Gaussian with the
    same second-order Taylor expansion). Where that Hessian is not negative definite (a flat
    Uniform prior, a non-log-concave density at ``m₀``) the prior's mean and marginal variances are
    matched by 4000 seeded prior draws instead. Couplings that are linear-Gaussian factors enter
    exactly (like a modality, under their own name); other couplings enter through the
    positive-semidefinite part of the negative Hessian of their potential at ``m₀``.

    For a linear-Gaussian problem the result equals :meth:`JointInversion.linear_gaussian_system`
    at any point.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> x = bj.Parameter("x", prior=bj.priors.Normal(0.0, 1.0))
    >>> sq = bj.Modality("square", physics=lambda m: m["x"] ** 2 * np.ones(1), data=[1.0],
    ...                  noise=bj.noise.Gaussian(0.5))
    >>> problem = bj.JointInversion(latent=[x], modalities=[sq])
    >>> system = linearized_system(problem, point={"x": 1.0})
    >>> float(system.operators[0][0, 0])  # J / sd = 2 x / 0.5
    4.0
    """
    return _linearize(problem, idata, point)[0]


def _linearize(
    problem: Any, idata: Any, point: Any
) -> tuple[LinearGaussianSystem, np.ndarray, dict[str, str]]:
    """Return the linearized system, the point and each latent's prior approximation."""
    _check_problem(problem)
    m0 = linearization_point(problem, idata, point)
    means, factors, labels, latent_of, methods = [], [], [], [], {}
    columns = _columns(problem)
    for name, var in problem.latent.items():
        mean, factor, method = _prior_gaussian(var, m0[columns[name]], idata)
        means.append(mean)
        factors.append(factor)
        labels.extend(var.labels())
        latent_of.extend([name] * var.size)
        methods[name] = method
    operators, residuals, names = [], [], []
    for name, (pred, jac) in jacobians(problem, m0).items():
        mod = problem.modalities[name]
        factor = noise_factor(mod, idata)
        operators.append(_whiten(factor, jac))
        residuals.append(_whiten(factor, mod.data.ravel() - pred + jac @ m0))
        names.append(name)
    for coupling in problem.couplings:
        rows, resid = _coupling_rows(problem, coupling, m0, idata)
        operators.append(rows)
        residuals.append(resid)
        names.append(coupling.name)
    system = LinearGaussianSystem(
        labels=labels,
        latent_of=latent_of,
        prior_mean=np.concatenate(means),
        prior_factor=sla.block_diag(*factors),
        modalities=names,
        operators=operators,
        residuals=residuals,
    )
    return system, m0, methods


def linearized_budget(problem: Any, idata: Any = None, *, point: Any = None) -> xr.Dataset:
    """Return the information budget of a (nonlinear) problem, linearized at the posterior mean.

    Parameters
    ----------
    problem : JointInversion
    idata : arviz.InferenceData, optional
        Posterior draws (their mean is the point; learned hyperparameters at posterior means).
    point : array_like or mapping, optional
        Linearize here instead.

    Returns
    -------
    xarray.Dataset
        The variables of :func:`bayesjoint.linear.information_budget` (``precision`` =
        ``J_kᵀ Σ_k⁻¹ J_k`` per modality, ``information_gain_alone``/``_added``/``_total`` in nats,
        ``precision_share``, ``posterior_sd_alone``, ``posterior_sd``, ``prior_sd``), plus
        ``linearization_point`` (parameter); attributes ``method`` and ``prior_approximation``.

    Notes
    -----
    See :func:`linearized_system` for the approximation. Gains are those of the linearized
    (Gaussian) problem; they are exact for linear-Gaussian problems and otherwise describe the
    local information near the posterior mean.

    Examples
    --------
    >>> from bayesjoint.testing import blur_and_points_problem
    >>> problem = blur_and_points_problem(20, n_points=5)
    >>> lin = linearized_budget(problem, point=[0.0] * 20)
    >>> exact = problem.information_budget()
    >>> bool(abs(lin["information_gain_total"] - exact["information_gain_total"]) < 1e-8)
    True
    """
    system, m0, methods = _linearize(problem, idata, point)
    budget = system.budget()
    budget["linearization_point"] = ("parameter", m0)
    budget.attrs.update(
        {
            "method": "Gauss-Newton/Laplace linearization"
            + (" at the posterior mean" if point is None and idata is not None else ""),
            "prior_approximation": "; ".join(f"{k}: {v}" for k, v in methods.items()),
        }
    )
    return budget


def expected_information_gain(
    problem: Any,
    candidates: Modality | Sequence[Modality],
    idata: Any = None,
    *,
    point: Any = None,
) -> xr.Dataset:
    """Rank candidate modalities or surveys by the information they would add ("which next").

    Parameters
    ----------
    problem : JointInversion
        The current problem (its modalities are the data already in hand).
    candidates : Modality or sequence of Modality
        Planned instruments reading the problem's latent variables, each with the noise it would
        have (known sd or covariance). Their data values are ignored; only the data shape is
        used, so zeros will do.
    idata : arviz.InferenceData, optional
        Posterior draws of the current problem: the linearization point is their mean.
    point : array_like or mapping, optional
        Linearize here instead.

    Returns
    -------
    xarray.Dataset
        On dim ``candidate``: ``expected_information_gain`` (nats, added to the current data),
        ``information_gain_alone`` (nats, candidate with the prior only), ``mean_sd_ratio``
        (mean over parameters of posterior sd with the candidate / without), ``rank`` (1 = most
        informative); ``posterior_sd_with`` (candidate, parameter) and ``posterior_sd`` (parameter,
        current).

    Notes
    -----
    In the linearized (Gaussian) problem the expected information gain of new data ``d_c`` — the
    mutual information between ``d_c`` and ``m`` given the data in hand — does not depend on the
    values that will be observed: ``EIG = ½ log det(I + W_c P⁻¹ W_cᵀ)`` nats, with ``P`` the
    current posterior precision in prior-whitened coordinates and ``W_c`` the candidate's whitened
    Jacobian (Lindley 1956, Ann. Math. Stat. 27, 986; Alexanderian 2021, Inverse Problems 37,
    043001, §3, for the linearized Bayesian optimal design of inverse problems).

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> x = bj.Parameter("x", shape=2, prior=bj.priors.Normal(0.0, 1.0))
    >>> first = bj.Modality("first", physics=bj.physics.Linear([[1.0, 0.0]], input="x"),
    ...                     data=[0.3], noise=bj.noise.Gaussian(0.1))
    >>> problem = bj.JointInversion(latent=[x], modalities=[first])
    >>> again = bj.Modality("again", physics=bj.physics.Linear([[1.0, 0.0]], input="x"),
    ...                     data=[0.0], noise=bj.noise.Gaussian(0.1))
    >>> other = bj.Modality("other", physics=bj.physics.Linear([[0.0, 1.0]], input="x"),
    ...                     data=[0.0], noise=bj.noise.Gaussian(0.1))
    >>> eig = expected_information_gain(problem, [again, other], point=[0.0, 0.0])
    >>> eig["rank"].values.tolist()  # measuring the unseen component first
    [2, 1]
    >>> round(float(eig["expected_information_gain"].sel(candidate="other")), 4)  # ½ log 101
    2.3076
    """
    _check_problem(problem)
    cands = [candidates] if isinstance(candidates, Modality) else list(candidates)
    if not cands:
        raise ValueError("candidates is empty; give one or more bj.Modality to compare")
    seen = set()
    for cand in cands:
        if not isinstance(cand, Modality):
            raise TypeError(f"candidates must be bj.Modality objects, got {type(cand).__name__}")
        if cand.name in seen:
            raise ValueError(f"duplicate candidate name {cand.name!r}; name each one distinctly")
        seen.add(cand.name)
        unknown = [k for k in cand.physics.inputs if k not in problem.latent]
        if unknown:
            raise ValueError(
                f"candidate {cand.name!r} reads latent variable(s) {unknown} that the problem "
                f"does not declare ({sorted(problem.latent)})"
            )
        if getattr(cand.noise, "learned", False) or (
            isinstance(cand.noise, (Gaussian, StudentT)) and isinstance(cand.noise.sd, Prior)
        ):
            raise ValueError(
                f"candidate {cand.name!r}: give the planned measurement noise as a fixed sd or "
                "covariance (a learned noise has no posterior yet)"
            )
    system, m0, _ = _linearize(problem, idata, point)
    w = system.whitened()
    precision = np.eye(system.n)
    for wk in w:
        precision += wk.T @ wk
    chol = sla.cholesky(precision, lower=True)
    cov_z = sla.cho_solve((chol, True), np.eye(system.n))
    sd_now = np.sqrt(
        np.sum(sla.solve_triangular(chol, system.prior_factor.T, lower=True) ** 2, axis=0)
    )
    gains, alone, ratio, sd_with = [], [], [], []
    for cand in cands:
        _, jac = jacobians(problem, m0, [cand])[cand.name]
        wc = _whiten(noise_factor(cand), jac) @ system.prior_factor
        small = np.eye(wc.shape[0]) + wc @ cov_z @ wc.T
        gains.append(0.5 * np.linalg.slogdet(small)[1])
        alone.append(0.5 * np.linalg.slogdet(np.eye(wc.shape[0]) + wc @ wc.T)[1])
        chol_c = sla.cholesky(precision + wc.T @ wc, lower=True)
        b = sla.solve_triangular(chol_c, system.prior_factor.T, lower=True)
        sd_c = np.sqrt(np.sum(b**2, axis=0))
        sd_with.append(sd_c)
        ratio.append(float(np.mean(sd_c / sd_now)))
    gains_arr = np.asarray(gains)
    order = np.argsort(-gains_arr, kind="stable")
    rank = np.empty(len(cands), dtype=int)
    rank[order] = np.arange(1, len(cands) + 1)
    return xr.Dataset(
        {
            "expected_information_gain": ("candidate", gains_arr),
            "information_gain_alone": ("candidate", np.asarray(alone)),
            "mean_sd_ratio": ("candidate", np.asarray(ratio)),
            "rank": ("candidate", rank),
            "posterior_sd_with": (("candidate", "parameter"), np.stack(sd_with)),
            "posterior_sd": ("parameter", sd_now),
        },
        coords={
            "candidate": [c.name for c in cands],
            "parameter": list(system.labels),
            "latent": ("parameter", list(system.latent_of)),
        },
        attrs={
            "units": "information gains in nats",
            "method": "linearized (Gauss-Newton/Laplace) expected information gain",
        },
    )
