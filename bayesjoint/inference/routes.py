"""How :meth:`bayesjoint.JointInversion.sample` samples: the route table and its choice.

- ``exact``: independent draws from the closed-form Gaussian posterior; for linear-Gaussian
  problems.
- ``collapsed``: NUTS on the learned hyperparameters θ with the fields integrated out, then one
  exact draw of the fields per θ draw; for problems that are linear-Gaussian given θ.
- ``nuts``: NUTS with the Laplace covariance at the MAP as mass matrix and chains started from
  Laplace draws; for differentiable models (the mass matrix is dense up to ``DENSE_LIMIT``
  sampled coordinates, low-rank + diagonal beyond).
- ``nuts-plain``: PyMC's NUTS unchanged (diagonal mass matrix adaptation); differentiable models.
- ``smc``: tempered sequential Monte Carlo (PyMC); any model.

``method="auto"`` (the default) takes the first that applies of ``exact``, ``collapsed``,
``nuts``, ``nuts-plain``; a user-given ``step=`` means ``nuts-plain`` (the step carries its own
settings).

``nuts_sampler="pymc" | "nutpie" | "numpyro"`` chooses the NUTS implementation of the
``collapsed`` and ``nuts-plain`` routes (passed to :func:`pymc.sample`). The preconditioned
``nuts`` route sets PyMC's own step (a fixed dense mass matrix), so with another sampler
``auto`` takes ``nuts-plain`` (nutpie and numpyro adapt their own mass matrices), and ``auto``
leaves out the ``exact`` route, which runs no NUTS. What blocks a backend is refused before
anything is compiled: the package not installed, or (numpyro) an operation of the model
without a JAX implementation.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Mapping
from typing import Any

import arviz as az
import pymc as pm

from bayesjoint.inference.collapsed import (
    CollapsedAssembler,
    collapsed_problem,
    collapsed_route_blocker,
    sample_collapsed,
)
from bayesjoint.inference.exact import sample_exact, unmodelled_free_variables
from bayesjoint.inference.nuts import DENSE_LIMIT, PLAIN_NUTS_OPTIONS, sample_nuts
from bayesjoint.inference.smc import sample_smc
from bayesjoint.inference.threads import parallel_plan, sampling_plan

__all__ = [
    "NUTS_SAMPLERS",
    "ROUTES",
    "check_nuts_sampler",
    "choose_route",
    "collapsed_route_blocker",
    "exact_route_blocker",
    "sample_route",
]

_log = logging.getLogger("bayesjoint")

#: The routes :meth:`bayesjoint.JointInversion.sample` accepts as ``method``.
ROUTES = ("auto", "exact", "collapsed", "nuts", "nuts-plain", "smc")
#: The NUTS implementations ``sample(nuts_sampler=...)`` accepts (PyMC's names).
NUTS_SAMPLERS = ("pymc", "nutpie", "numpyro")
#: Routes that run NUTS through :func:`pymc.sample` and so can use another NUTS implementation.
_EXTERNAL_ROUTES = ("collapsed", "nuts-plain")
_INSTALL = {
    "nutpie": ("nutpie", "pip install nutpie"),
    "numpyro": ("numpyro", "pip install numpyro (it brings jax)"),
}


def _jax_blockers(model: pm.Model) -> list[str]:
    """Return the operations of ``model``'s log density that have no JAX implementation.

    pytensor's JAX dispatch raises :class:`NotImplementedError` for an operation (or a
    configuration of one) it cannot translate: that is a blocker. Any other error while
    translating is not expected; it is raised again as a :class:`RuntimeError` that names the
    operation, so it surfaces here, before compiling, and not inside numpyro.
    """
    from pytensor.graph.traversal import applys_between
    from pytensor.link.jax.dispatch import jax_funcify

    graph = [model.logp(), *model.replace_rvs_by_values(list(model.deterministics))]
    blockers = set()
    for node in applys_between(model.value_vars, graph):
        try:
            jax_funcify(node.op, node=node)
        except NotImplementedError:
            blockers.add(type(node.op).__name__)
        except Exception as err:
            raise RuntimeError(
                f"nuts_sampler='numpyro': translating the operation {node.op} "
                f"({type(node.op).__name__}) of the model to JAX failed with "
                f"{type(err).__name__}: {err}; use nuts_sampler='pymc' or 'nutpie'"
            ) from err
    return sorted(blockers)


def check_nuts_sampler(sampler: str, route: str, model: pm.Model | None = None) -> None:
    """Refuse a ``nuts_sampler`` that cannot run ``route``, naming what blocks it.

    Parameters
    ----------
    sampler : {"pymc", "nutpie", "numpyro"}
    route : str
        The chosen route.
    model : pymc.Model, optional
        The model the sampler would run (numpyro: every operation needs a JAX implementation).

    Raises
    ------
    ValueError
        An unknown sampler, a route that does not run :func:`pymc.sample`'s NUTS, a package
        that is not installed (with the command that installs it), or the operations without a
        JAX implementation.
    """
    if sampler not in NUTS_SAMPLERS:
        raise ValueError(f"nuts_sampler={sampler!r} is unknown; choose one of {NUTS_SAMPLERS}")
    if sampler == "pymc":
        return
    if route not in _EXTERNAL_ROUTES:
        why = {
            "exact": "draws independently from the closed-form posterior (no NUTS)",
            "smc": "runs sequential Monte Carlo (no NUTS)",
            "nuts": "sets PyMC's own NUTS step (the fixed Laplace mass matrix)",
        }.get(route, "does not run NUTS through pymc.sample")
        raise ValueError(
            f"nuts_sampler={sampler!r} does not apply to method={route!r}, which {why}; use "
            f"method='nuts-plain' or 'collapsed' with it, or drop nuts_sampler"
        )
    module, install = _INSTALL[sampler]
    missing = [m for m in (module, "jax") if m == module or sampler == "numpyro"]
    missing = [m for m in missing if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(
            f"nuts_sampler={sampler!r} needs {missing}, which are not installed: {install}"
        )
    if sampler == "numpyro" and model is not None:
        blockers = _jax_blockers(model)
        if blockers:
            raise ValueError(
                f"nuts_sampler='numpyro' runs the model through JAX, but pytensor has no JAX "
                f"implementation of {blockers} (custom operations of this model); use "
                "nuts_sampler='pymc' or 'nutpie'"
            )


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
        For an unknown method, an explicit route that does not apply (naming why), or
        ``adapt_mass`` on a route other than ``"nuts"`` (the only one with a Laplace mass matrix).
    """
    route, reason = _choose_route(problem, method, kwargs)
    if "adapt_mass" in kwargs and route != "nuts":
        raise ValueError(
            f"sample(adapt_mass=...) adapts the Laplace mass matrix of the 'nuts' route, but this "
            f"call takes the {route!r} route ({reason}); drop adapt_mass, or ask for "
            "method='nuts'"
        )
    return route, reason


def _choose_route(problem: Any, method: str, kwargs: Mapping[str, Any]) -> tuple[str, str]:
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
    sampler = kwargs.get("nuts_sampler", "pymc")
    if method != "auto":
        return method, "requested"
    if "step" in kwargs:
        return "nuts-plain", "a step method was given"
    if _plain_options(kwargs):
        return "nuts-plain", (
            f"pymc.sample options {_plain_options(kwargs)} ask for PyMC's own initialization"
        )
    blocker = exact_route_blocker(problem)
    if blocker is None and sampler == "pymc":
        return "exact", "the problem is linear-Gaussian"
    collapsed_blocker = collapsed_route_blocker(problem)
    if collapsed_blocker is None:
        return "collapsed", (
            f"linear-Gaussian given its learned hyperparameters, not as it stands ({blocker})"
        )
    if sampler != "pymc":
        what = (
            f"not linear-Gaussian ({blocker})"
            if blocker
            else "linear-Gaussian, but method='exact' runs no NUTS"
        )
        return "nuts-plain", (
            f"{what}; nuts_sampler={sampler!r} adapts its own mass matrix (the preconditioned "
            "route sets PyMC's step)"
        )
    size = _sampled_size(problem)
    mass = "dense" if size <= DENSE_LIMIT else "low-rank + diagonal"
    return (
        "nuts",
        f"not linear-Gaussian ({blocker}); {size} sampled coordinates ({mass} Laplace mass)",
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
    recorder: Any = None,
    **kwargs: Any,
) -> tuple[az.InferenceData, dict[str, Any]]:
    """Sample ``problem`` by the route ``method`` picks; return the draws and provenance entries.

    The choice is logged in one line (logger ``bayesjoint``) and recorded under ``route`` and
    ``route_reason``. A ``recorder`` (``bayesjoint.inference.checkpoint.ChainRecorder``)
    receives the draws of the NUTS routes as they come (checkpoints, interrupts).
    """
    route, reason = choose_route(problem, method, kwargs)
    sampler = kwargs.get("nuts_sampler", "pymc")
    model = None
    if sampler == "numpyro" and importlib.util.find_spec("jax") is not None:
        model = collapsed_problem(problem).model if route == "collapsed" else problem.model
    check_nuts_sampler(sampler, route, model)
    if sampler == "pymc":
        kwargs.pop("nuts_sampler", None)
    _log.info("bayesjoint: sampling route %r (%s)", route, reason)
    info: dict[str, Any] = {"route": route, "route_reason": reason}
    if sampler != "pymc":
        info["nuts_sampler"] = sampler
    if recorder is not None:
        recorder.info = {**info, "draws": draws, "tune": tune, "chains": chains}
        if route in ("nuts", "nuts-plain") and sampler == "pymc":  # others take no callback
            kwargs["callback"] = recorder.begin(tune=tune, user_callback=kwargs.get("callback"))
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
    # chains in parallel, one CPU each, BLAS single-threaded while they run unless CPUs are
    # left over (the MAP, Hessians and conditional draws in this process keep the BLAS pool)
    cores, blas_threads = parallel_plan(chains, cores)
    with sampling_plan(blas_threads):
        info.update({"cores": cores, "blas_threads": blas_threads})
        if route == "collapsed":
            if recorder is not None and sampler == "pymc":
                # θ draws recorded, fields drawn on write
                idata_kwargs = kwargs.get("idata_kwargs") or {}
                log_likelihood = bool(idata_kwargs.get("log_likelihood", True))
                recorder.collapse(
                    collapsed_problem(problem).model,
                    CollapsedAssembler(problem, random_seed, log_likelihood),
                )
                kwargs["callback"] = recorder.begin(tune=tune, user_callback=kwargs.get("callback"))
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
        with warnings.catch_warnings():
            # the log-likelihood nutpie leaves out is added below (_complete_external)
            warnings.filterwarnings("ignore", "`idata_kwargs` are currently ignored", UserWarning)
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
        if sampler != "pymc":
            info["sampler"] = f"NUTS ({sampler})"
            _complete_external(problem.model, idata, kwargs)
        return idata, info


def _complete_external(model: pm.Model, idata: az.InferenceData, kwargs: Mapping[str, Any]):
    """Add the ``log_likelihood`` group that another NUTS implementation may leave out.

    nutpie ignores ``idata_kwargs``; the group is computed from the posterior as PyMC does
    (:func:`pymc.compute_log_likelihood`), unless ``idata_kwargs={"log_likelihood": False}``.
    """
    wanted = bool((kwargs.get("idata_kwargs") or {}).get("log_likelihood", True))
    if wanted and "log_likelihood" not in idata.groups():
        pm.compute_log_likelihood(idata, model=model, progressbar=False)
