"""How :meth:`bayesjoint.JointInversion.sample` samples: the route table and its choice.

- ``exact``: independent draws from the closed-form Gaussian posterior; for linear-Gaussian
  problems.
- ``collapsed``: NUTS on the learned hyperparameters θ with the fields integrated out, then one
  exact draw of the fields per θ draw; for problems that are linear-Gaussian given θ.
- ``nuts``: NUTS with the Laplace covariance at the MAP as mass matrix and chains started from
  Laplace draws; for differentiable models up to ``DENSE_LIMIT`` sampled coordinates.
- ``nuts-plain``: PyMC's NUTS unchanged (diagonal mass matrix adaptation); differentiable models.
- ``smc``: tempered sequential Monte Carlo (PyMC); any model.

``method="auto"`` (the default) takes the first that applies of ``exact``, ``collapsed``,
``nuts``, ``nuts-plain``; a user-given ``step=`` means ``nuts-plain`` (the step carries its own
settings).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import arviz as az

from bayesjoint.inference.collapsed import collapsed_route_blocker, sample_collapsed
from bayesjoint.inference.exact import sample_exact, unmodelled_free_variables
from bayesjoint.inference.nuts import DENSE_LIMIT, PLAIN_NUTS_OPTIONS, sample_nuts
from bayesjoint.inference.smc import sample_smc

__all__ = [
    "ROUTES",
    "choose_route",
    "collapsed_route_blocker",
    "exact_route_blocker",
    "sample_route",
]

_log = logging.getLogger("bayesjoint")

#: The routes :meth:`bayesjoint.JointInversion.sample` accepts as ``method``.
ROUTES = ("auto", "exact", "collapsed", "nuts", "nuts-plain", "smc")


def exact_route_blocker(problem: Any) -> str | None:
    """Return why the exact route does not apply to ``problem``, or None when it does.

    The reason names the part of the problem that is not linear-Gaussian (a prior, an operator,
    a noise model, a discrepancy, a coupling) or a free variable the exact system does not give.
    """
    try:
        problem.linear_gaussian_system()
    except ValueError as err:
        return str(err)
    extra = unmodelled_free_variables(problem)
    if extra:
        return (
            f"the model samples {extra}, which are not latent variables of the exact system "
            "(e.g. sampled HSGP coefficients)"
        )
    return None


def _sampled_size(problem: Any) -> int:
    model = problem.model
    point = model.initial_point()
    return int(sum(point[v.name].size for v in model.value_vars))


def _plain_options(kwargs: Mapping[str, Any]) -> list[str]:
    """Return the given ``pymc.sample`` options that ask for PyMC's own initialization."""
    return sorted(set(PLAIN_NUTS_OPTIONS) & set(kwargs))


def choose_route(problem: Any, method: str, kwargs: Mapping[str, Any]) -> tuple[str, str]:
    """Return ``(route, reason)`` for ``method`` (one of :data:`ROUTES`).

    Raises
    ------
    ValueError
        For an unknown method, or an explicit route that does not apply (naming why).
    """
    if method not in ROUTES:
        raise ValueError(f"sample(method={method!r}) is not a route; choose one of {ROUTES}")
    if method == "exact":
        blocker = exact_route_blocker(problem)
        if blocker is not None:
            raise ValueError(f"method='exact' does not apply: {blocker}")
        return "exact", "requested"
    if method == "collapsed":
        blocker = collapsed_route_blocker(problem)
        if blocker is not None:
            raise ValueError(f"method='collapsed' does not apply: {blocker}")
        return "collapsed", "requested"
    if method == "nuts" and _plain_options(kwargs):
        raise ValueError(
            f"method='nuts' sets its own initialization; drop {_plain_options(kwargs)} or ask "
            "for method='nuts-plain'"
        )
    if method != "auto":
        return method, "requested"
    if "step" in kwargs:
        return "nuts-plain", "a step method was given"
    if _plain_options(kwargs):
        return "nuts-plain", (
            f"pymc.sample options {_plain_options(kwargs)} ask for PyMC's own initialization"
        )
    blocker = exact_route_blocker(problem)
    if blocker is None:
        return "exact", "the problem is linear-Gaussian"
    collapsed_blocker = collapsed_route_blocker(problem)
    if collapsed_blocker is None:
        return "collapsed", (
            f"linear-Gaussian given its learned hyperparameters, not as it stands ({blocker})"
        )
    size = _sampled_size(problem)
    if size <= DENSE_LIMIT:
        return "nuts", f"not linear-Gaussian ({blocker})"
    return "nuts-plain", (
        f"not linear-Gaussian ({blocker}); {size} sampled coordinates exceed the dense "
        f"Laplace mass matrix limit {DENSE_LIMIT}"
    )


def sample_route(
    problem: Any,
    method: str,
    *,
    draws: int,
    tune: int,
    chains: int,
    cores: int | None,
    random_seed: int,
    target_accept: float | None,
    progressbar: bool,
    **kwargs: Any,
) -> tuple[az.InferenceData, dict[str, Any]]:
    """Sample ``problem`` by the route ``method`` picks; return the draws and provenance entries.

    The choice is logged in one line (logger ``bayesjoint``) and recorded under ``route`` and
    ``route_reason``.
    """
    route, reason = choose_route(problem, method, kwargs)
    _log.info("bayesjoint: sampling route %r (%s)", route, reason)
    info: dict[str, Any] = {"route": route, "route_reason": reason}
    if route == "exact":
        idata_kwargs = dict(kwargs.pop("idata_kwargs", None) or {})
        unused = sorted(kwargs) + [
            f"idata_kwargs[{k!r}]" for k in idata_kwargs if k != "log_likelihood"
        ]
        if unused:
            raise ValueError(
                f"sample(method='exact') takes no pymc.sample options, got {unused}; drop them "
                "or ask for method='nuts'"
            )
        idata = sample_exact(
            problem,
            draws,
            chains,
            random_seed=random_seed,
            log_likelihood=bool(idata_kwargs.get("log_likelihood", True)),
        )
        info.update({"sampler": "exact (independent draws)", "draws": draws, "chains": chains})
        return idata, info
    if route == "collapsed":
        idata, extra = sample_collapsed(
            problem,
            draws,
            tune,
            chains,
            cores=cores,
            random_seed=random_seed,
            target_accept=target_accept,
            progressbar=progressbar,
            **kwargs,
        )
        info.update(extra)
        return idata, info
    if route == "smc":
        kwargs.setdefault("cores", cores)
        idata = sample_smc(
            problem, draws, chains, random_seed=random_seed, progressbar=progressbar, **kwargs
        )
        info.update({"sampler": "SMC", "draws": draws, "chains": chains})
        return idata, info
    idata, extra = sample_nuts(
        problem,
        draws,
        tune,
        chains,
        cores=cores,
        random_seed=random_seed,
        target_accept=0.8 if target_accept is None else target_accept,
        progressbar=progressbar,
        precondition=route == "nuts",
        **kwargs,
    )
    info.update(extra)
    return idata, info
