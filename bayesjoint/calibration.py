"""Simulation-based calibration (SBC) and the batch runner it shares with ``bj.sample_many``.

:func:`sbc` draws a latent model (and every learned hyperparameter) from the prior, simulates
every modality's data through its physics, observation, discrepancy and noise, fits the data by
the problem's own sampling route and ranks the truth among the posterior draws. For a correct
model, route and code, every rank is uniform over ``0..L`` (Talts et al. 2018, arXiv:1804.06788;
Modrák et al. 2023, Bayesian Anal., doi:10.1214/23-BA1404). The verdict is a simultaneous ECDF
band (Säilynoja, Bürkner & Vehtari 2022, Stat. Comput. 32, 32): :func:`ecdf_band`.

The fits run on ``dask.distributed`` (:func:`run_tasks`): a ``LocalCluster`` of one-thread
worker processes when ``client`` is None, any existing ``Client`` (or a scheduler address)
otherwise, or in this process with ``client="serial"``. Each finished simulation is written at
once to the ``store`` folder as its own netCDF file (atomically), so a stopped run resumes with the
missing simulations only.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

__all__ = [
    "SBCResult",
    "ecdf_band",
    "ecdf_verdict",
    "plot_sbc",
    "run_tasks",
    "sbc",
]

_log = logging.getLogger("bayesjoint")

#: Family-wise false-alarm rate of the SBC verdict (over all ranked quantities together).
ALPHA = 0.05


# -- the simultaneous ECDF band ----------------------------------------------------------------
def _tail(counts: np.ndarray, n: int, z: np.ndarray) -> np.ndarray:
    """Return the two-sided tail ``2 min(P(C ≤ c), P(C ≥ c))``, ``C ~ Binomial(n, z)``."""
    from scipy import stats

    low = stats.binom.cdf(counts, n, z)
    high = stats.binom.sf(counts - 1, n, z)
    return np.minimum(1.0, 2.0 * np.minimum(low, high))


def _counts(ranks: np.ndarray, n_ranks: int) -> np.ndarray:
    """ECDF counts ``#(rank < i)``, ``i = 1..L`` (``L = n_ranks − 1``), per row of ``ranks``."""
    ranks = np.asarray(ranks, dtype=np.int64)
    rows = ranks.shape[0]
    offsets = (np.arange(rows, dtype=np.int64) * n_ranks)[:, None]
    hist = np.bincount((ranks + offsets).ravel(), minlength=rows * n_ranks)
    return np.cumsum(hist.reshape(rows, n_ranks), axis=1)[:, :-1]


@functools.lru_cache(maxsize=32)
def _critical_tail(n: int, n_ranks: int, level: float, replicates: int, seed: int) -> float:
    """Return the ``level`` quantile of ``min_i tail_i`` over simulated uniform rank sets."""
    rng = np.random.default_rng(seed)
    z = np.arange(1, n_ranks) / n_ranks
    mins = []
    chunk = max(1, int(4e6 // max(n, 1)))
    for start in range(0, replicates, chunk):
        k = min(chunk, replicates - start)
        counts = _counts(rng.integers(0, n_ranks, size=(k, n)), n_ranks)
        mins.append(_tail(counts, n, z).min(axis=1))
    mins = np.sort(np.concatenate(mins))
    # the largest γ with P(min tail < γ) ≤ level: the statistic's value at that order statistic
    k = int(np.floor(level * replicates))
    return float(mins[k]) if k < mins.size else 1.0


def ecdf_band(
    n_simulations: int,
    n_ranks: int,
    *,
    alpha: float = ALPHA,
    quantities: int = 1,
    replicates: int | None = None,
    random_seed: int = 20221001,
) -> xr.Dataset:
    """Return the simultaneous band for the ECDF of ranks uniform on ``{0, …, n_ranks − 1}``.

    Parameters
    ----------
    n_simulations : int
        Ranks per quantity ``N``.
    n_ranks : int
        Number of possible ranks ``L + 1`` (``L`` posterior draws per simulation).
    alpha : float, default 0.05
        Family-wise false-alarm rate over all ``quantities``.
    quantities : int, default 1
        Quantities judged together; each band has level ``alpha / quantities`` (Bonferroni),
        so the chance that any uniform quantity leaves its band is at most ``alpha``.
    replicates : int, optional
        Simulated uniform rank sets for the band's level; default ``max(4000, 40 / level)``
        so that at least 40 sets fall below the critical value.
    random_seed : int
        Seeds the simulation of the band (fixed, so a verdict can be reproduced).

    Returns
    -------
    xarray.Dataset
        On dim ``z`` (the evaluation points ``i / (L + 1)``, ``i = 1..L``): ``lower`` and
        ``upper``, the counts ``#(rank < i)`` inside the band, and the scalar ``critical_tail``
        ``γ``; attributes ``alpha``, ``level``, ``quantities``, ``replicates``.

    Notes
    -----
    Säilynoja, Bürkner & Vehtari (2022, Stat. Comput. 32, 32): under uniformity the ECDF count at
    ``z_i`` is ``C_i ~ Binomial(N, z_i)``; the statistic is ``T = min_i 2 min(P(C_i ≤ c_i),
    P(C_i ≥ c_i))``, and ``γ`` is its ``level`` quantile over simulated uniform rank sets. The
    band holds, at each ``z_i``, the counts whose two-sided tail is at least ``γ``; a rank set
    leaves it, somewhere, with probability ``level`` (up to the simulation's error and the
    discreteness of ``T``).
    """
    n, n_ranks = int(n_simulations), int(n_ranks)
    if n < 1 or n_ranks < 2:
        raise ValueError(
            f"ecdf_band needs at least one simulation and two possible ranks, got "
            f"n_simulations={n_simulations}, n_ranks={n_ranks}"
        )
    if not 0.0 < alpha < 1.0 or int(quantities) < 1:
        raise ValueError(
            f"ecdf_band: alpha must be in (0, 1) and quantities ≥ 1, got {alpha}, {quantities}"
        )
    level = float(alpha) / int(quantities)
    if replicates is None:
        replicates = int(max(4000, np.ceil(40.0 / level)))
    gamma = _critical_tail(n, n_ranks, level, int(replicates), int(random_seed))
    z = np.arange(1, n_ranks) / n_ranks
    counts = np.arange(n + 1)
    inside = _tail(counts[None, :], n, z[:, None]) >= gamma
    lower = np.array([counts[row].min() if row.any() else 0 for row in inside])
    upper = np.array([counts[row].max() if row.any() else n for row in inside])
    return xr.Dataset(
        {"lower": ("z", lower), "upper": ("z", upper), "critical_tail": ((), gamma)},
        coords={"z": z},
        attrs={
            "alpha": float(alpha),
            "level": level,
            "quantities": int(quantities),
            "replicates": int(replicates),
            "n_simulations": n,
            "n_ranks": n_ranks,
        },
    )


def ecdf_verdict(
    ranks: np.ndarray, n_ranks: int, *, alpha: float = ALPHA, band: xr.Dataset | None = None
) -> tuple[np.ndarray, xr.Dataset]:
    """Return, per quantity (column of ``ranks``), whether its ECDF leaves the band, and the band.

    ``ranks`` has shape ``(N, Q)``; the band is :func:`ecdf_band` with ``quantities=Q``.
    """
    ranks = np.asarray(ranks)
    if ranks.ndim == 1:
        ranks = ranks[:, None]
    n, q = ranks.shape
    if band is None:
        band = ecdf_band(n, n_ranks, alpha=alpha, quantities=q)
    counts = _counts(ranks.T, n_ranks)
    outside = (counts < band["lower"].values) | (counts > band["upper"].values)
    return outside.any(axis=1), band


# -- quiet fits: a thread-local switch, no change to the loggers while tasks run -------------
_QUIET = threading.local()


class _QuietFilter(logging.Filter):
    """Drop the package's records below WARNING in a thread inside :func:`_quiet`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not getattr(_QUIET, "on", False)


_QUIET_FILTER = _QuietFilter()


def _install_quiet_filter() -> None:
    """Attach the filter to the package's loggers (once each; called from the main thread).

    A logger's filters see only the records logged on it, so the logger of every module of
    the package gets it (``logging.getLogger(__name__)`` later returns the same object), at
    import: no task changes a logger.
    """
    root = os.path.dirname(os.path.abspath(__file__))
    names = {"bayesjoint"}
    for folder, _, files in os.walk(root):
        package = os.path.relpath(folder, os.path.dirname(root)).replace(os.sep, ".")
        names.update(f"{package}.{f[:-3]}" for f in files if f.endswith(".py"))
    names.update(
        name
        for name, logger in list(logging.Logger.manager.loggerDict.items())
        if name.startswith("bayesjoint.") and isinstance(logger, logging.Logger)
    )
    for name in sorted(names):
        logger = logging.getLogger(name.removesuffix(".__init__"))
        if _QUIET_FILTER not in logger.filters:
            logger.addFilter(_QUIET_FILTER)


class _quiet:
    """Silence the package's INFO lines in this thread only (shared logger state untouched)."""

    def __enter__(self) -> None:
        self._before = getattr(_QUIET, "on", False)
        _QUIET.on = True

    def __exit__(self, *exc: Any) -> None:
        _QUIET.on = self._before


_install_quiet_filter()


# -- the task runner (dask.distributed) -------------------------------------------------------
def _atomic_write_netcdf(dataset: xr.Dataset, path: str) -> None:
    """Write ``dataset`` to ``path`` atomically (:func:`bayesjoint.io._atomic_write`)."""
    from bayesjoint.io import _atomic_write

    _atomic_write(path, lambda temporary: dataset.to_netcdf(temporary, engine="h5netcdf"))


def _local_client(n_workers: int | None) -> tuple[Any, Any]:
    """Start a LocalCluster of one-thread worker processes (BLAS limited to one thread each)."""
    from dask.distributed import Client, LocalCluster

    if n_workers is None:
        n_workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        n_workers = max(1, n_workers or os.cpu_count() or 1)
    one = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    cluster = LocalCluster(
        n_workers=int(n_workers),
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # a free port: another cluster may hold the default
        env=one,
    )
    return Client(cluster), cluster


class _Payload:
    """A function and its shared arguments, pickled once (protocol 4) for the workers.

    Protocol 4 copies numpy arrays into fresh (aligned) memory when read back; the zero-copy
    buffers of protocol 5 can come back unaligned, which pytensor's C code refuses.
    """

    def __init__(self, function: Callable[..., Any], shared: Sequence[Any]):
        import cloudpickle

        self.blob = cloudpickle.dumps((function, list(shared)), protocol=4)
        self.token = hashlib.sha1(self.blob).hexdigest()


_UNPACKED: dict[str, tuple[Any, list[Any]]] = {}


_TASK_LOCK = threading.Lock()


def _call(payload: _Payload, item: Any) -> Any:
    """Run one task on a worker; the shared arguments are unpickled once per worker process."""
    import pickle

    # One task at a time per worker process: the tasks of a run share one unpickled problem,
    # whose PyMC model holds the observed data of the task being fitted (with_data), so worker
    # threads (a user's Client with threads_per_worker > 1) must not interleave on it.
    with _TASK_LOCK:
        if payload.token not in _UNPACKED:
            _UNPACKED.clear()  # one run at a time per worker: free the previous run's objects
            _UNPACKED[payload.token] = pickle.loads(payload.blob)
        function, shared = _UNPACKED[payload.token]
        return function(*shared, item)


def run_tasks(
    function: Callable[..., Any],
    shared: Sequence[Any],
    items: Iterable[Any],
    on_result: Callable[[Any, Any], None],
    *,
    client: Any = None,
    n_workers: int | None = None,
    label: str = "task",
) -> int:
    """Run ``function(*shared, item)`` for every item, handing each result to ``on_result``.

    Parameters
    ----------
    function : callable
        Must be importable by name on the workers (a module-level function).
    shared : sequence
        Arguments shared by every call (sent once per worker: ``Client.scatter``).
    items : iterable
        One call per item.
    on_result : callable
        ``on_result(item, result)``, called in this process as each call finishes (in any
        order): the place to write results at once.
    client : None, "serial", dask.distributed.Client or str
        None: a ``LocalCluster`` on this machine (closed afterwards); ``"serial"``: in this
        process, one after the other; a ``Client``; a scheduler address.
    n_workers : int, optional
        Workers of the LocalCluster (default: the CPUs this process may use).
    label : str
        Names the tasks in the progress lines (logger ``bayesjoint``).

    Returns
    -------
    int
        Number of calls run.
    """
    items = list(items)
    total = len(items)
    if total == 0:
        return 0
    step = max(1, total // 10)

    def progress(done: int) -> None:
        if done % step == 0 or done == total:
            _log.info("bayesjoint: %d/%d %ss done", done, total, label)

    if isinstance(client, str) and client == "serial":
        for done, item in enumerate(items, start=1):
            on_result(item, function(*shared, item))
            progress(done)
        return total
    from dask.distributed import Client, as_completed

    own = None
    if client is None:
        client, _ = _local_client(n_workers)
        own = client
    elif isinstance(client, str):
        client = Client(client)
        own = client
    elif not isinstance(client, Client):
        raise TypeError(
            f"client must be None, 'serial', a dask.distributed.Client or a scheduler address, "
            f"got {type(client).__name__}"
        )
    futures: dict = {}
    try:
        payload = _Payload(function, shared)
        run = uuid.uuid4().hex[:12]
        scattered = client.scatter(payload, broadcast=True)
        futures = {
            client.submit(_call, scattered, item, pure=False, key=f"{label}-{k}-{run}"): item
            for k, item in enumerate(items)
        }
        for done, future in enumerate(as_completed(futures), start=1):
            on_result(futures[future], future.result())
            progress(done)
    except BaseException:  # a failed task, a failing on_result or Ctrl-C: stop the rest
        if futures:
            client.cancel(list(futures))
        raise
    finally:
        if own is not None:
            cluster = getattr(own, "cluster", None)
            own.close()
            if cluster is not None:
                cluster.close()
    return total


def portable(problem: Any) -> Any:
    """Return a shallow copy of ``problem`` without its built model and caches (for pickling)."""
    out = copy.copy(problem)
    out._model = None
    out._linear_system = None
    out._observed = {}
    return out


# -- prior draws and simulated data -------------------------------------------------------------
_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _rngs(fn: Any) -> list[Any]:
    from pytensor.tensor.random.type import RandomGeneratorType

    return [s for s in fn.get_shared() if isinstance(s.type, RandomGeneratorType)]


def _forward_function(model: Any, conditioned: bool) -> tuple[Any, list[str], list[str]]:
    """Compile (once per model) ``inputs ↦ free RVs, deterministics, observed RVs``.

    ``conditioned``: the free RVs are inputs (given prior draws); else they are drawn too.
    """
    import pytensor.tensor as pt
    from pymc.pytensorf import compile as compile_pymc
    from pytensor.graph.replace import graph_replace

    cache = _FORWARD.setdefault(model, {})
    if conditioned in cache:
        return cache[conditioned]
    free = list(model.free_RVs)
    outputs = [*free, *model.deterministics, *model.observed_RVs]
    names = [v.name for v in outputs]
    inputs: list[Any] = []
    if conditioned:
        inputs = [pt.tensor(name=v.name, shape=v.type.shape, dtype=v.dtype) for v in free]
        outputs = graph_replace(outputs, dict(zip(free, inputs, strict=True)), strict=False)
    fn = compile_pymc(inputs, outputs, random_seed=0, on_unused_input="ignore")
    cache[conditioned] = (fn, names, [v.name for v in free])
    return cache[conditioned]


def _simulate(simulator: Any, seed: Any, given: Mapping[str, np.ndarray] | None) -> dict:
    """One joint draw of every free RV, deterministic and observed RV of ``simulator``'s model."""
    from pymc.pytensorf import reseed_rngs

    model = simulator.model
    fn, names, free = _forward_function(model, given is not None)
    reseed_rngs(_rngs(fn), seed)
    args = [np.asarray(given[name]) for name in free] if given is not None else []
    return {name: np.asarray(v) for name, v in zip(names, fn(*args), strict=True)}


def _modality_data(problem: Any, draw: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Split the simulated observed variables into each modality's data."""
    data = {}
    for block, mods in problem.blocks():
        if all(m.name in draw for m in mods):
            for m in mods:
                data[m.name] = np.asarray(draw[m.name]).reshape(m.data.shape)
            continue
        flat = np.asarray(draw[block]).ravel()
        start = 0
        for m in mods:
            data[m.name] = flat[start : start + m.n_data].reshape(m.data.shape)
            start += m.n_data
    return data


def _prior_model(model: Any) -> Any:
    """Return the model without its observed variables (the prior, with the potentials)."""
    from pymc.model.fgraph import fgraph_from_model, model_from_fgraph
    from pytensor.graph.fg import FunctionGraph

    fgraph, _ = fgraph_from_model(model)
    observed = {v.name for v in model.observed_RVs}
    keep = [out for out in fgraph.outputs if out.name not in observed]
    prior = FunctionGraph(outputs=keep, clone=False)
    prior._coords = fgraph._coords  # what model_from_fgraph reads the dims from
    prior._dim_lengths = fgraph._dim_lengths
    return model_from_fgraph(prior, mutate_fgraph=True)


#: Simulations per NUTS run on the prior: simulation ``i`` takes its truth from the run of block
#: ``i // PRIOR_BLOCK`` (seeded by ``[random_seed, block]``), so it depends only on the seed and
#: ``i``, whatever the number of simulations.
PRIOR_BLOCK = 50


def _prior_block_by_mcmc(
    prior: Any, names: list[str], block: int, seed: int, chains: int = 2
) -> tuple[list[dict[str, np.ndarray]], float, int]:
    """``PRIOR_BLOCK`` roughly independent draws of ``prior`` (NUTS, thinned by ESS), or raise."""
    import arviz as az
    import pymc as pm

    n = PRIOR_BLOCK
    per_chain = max(200, int(np.ceil(n / chains)))
    run_seed = int(np.random.SeedSequence([seed, block, 7]).generate_state(1)[0] % (2**31 - 1))
    factor = 1
    for _ in range(4):
        draws = per_chain * factor
        idata = pm.sample(
            draws=draws,
            tune=max(500, draws // 4),
            chains=chains,
            cores=1,
            model=prior,
            random_seed=run_seed,
            progressbar=False,
            compute_convergence_checks=False,
        )
        ess = az.ess(idata.posterior[names])
        min_ess = float(min(float(np.min(ess[v].values)) for v in names))
        total = draws * chains
        thin = int(np.ceil(total / max(min_ess, 1.0)))
        if total // thin >= n:
            break
        factor *= 2
    if total // thin < n:
        raise ValueError(
            f"sbc: the prior has no exact sampler here (a coupling potential that is not Gaussian "
            f"given the hyperparameters), and NUTS on the prior reached a bulk ESS of only "
            f"{min_ess:.0f} over {total} draws for a block of {n} simulations: the truths would "
            "be correlated and the ranks not uniform even for a correct fit. Reparametrize the "
            "prior (e.g. fix the coupling's scatter) or give the data through simulator= a "
            "problem whose prior can be sampled"
        )
    stacked = {
        v: idata.posterior[v].values.reshape(total, *idata.posterior[v].shape[2:]) for v in names
    }
    index = np.linspace(0, total - 1, n).round().astype(int)
    return [{v: stacked[v][i] for v in names} for i in index], min_ess, total


def _prior_draws(
    simulator: Any, indices: Sequence[int], seed: int, sampler: Any
) -> tuple[dict[int, dict[str, np.ndarray]], dict]:
    """Prior draws of a model with potentials for the given simulations (exact, else NUTS).

    Each draw depends only on ``(seed, index)``: exact draws are seeded by ``[seed, index]``;
    NUTS draws come in blocks of :data:`PRIOR_BLOCK` simulations, each block its own run.
    """
    if sampler is not None:
        draws = {int(i): sampler.draw([int(seed), int(i)]) for i in indices}
        return draws, {"prior_sampler": "exact (Gaussian given the hyperparameters)"}
    prior = _prior_model(simulator.model)
    names = [v.name for v in prior.free_RVs]
    draws, ess = {}, []
    for block in sorted({int(i) // PRIOR_BLOCK for i in indices}):
        block_draws, min_ess, _total = _prior_block_by_mcmc(prior, names, block, int(seed))
        ess.append(min_ess)
        for i in indices:
            if int(i) // PRIOR_BLOCK == block:
                draws[int(i)] = block_draws[int(i) % PRIOR_BLOCK]
    info = {
        "prior_sampler": f"NUTS, blocks of {PRIOR_BLOCK} simulations",
        "prior_min_ess": float(min(ess)),
    }
    return draws, info


def _exact_prior_sampler(simulator: Any) -> tuple[_ExactPrior | None, str | None]:
    """Return an exact sampler of ``simulator``'s prior, or None and the reason there is none.

    The prior (the model without its data: latent priors, hyperpriors and coupling potentials)
    is Gaussian in the latent free variables ``x`` given the other free variables ``h`` when its
    log density ``f(x, h)`` is quadratic in ``x``; checked at random points. Without an exact
    sampler (not quadratic, a graph without the needed derivatives, or no rejection bound that
    holds: see :class:`_ExactPrior`) the prior is drawn by NUTS; the reason is returned (the
    SBC result records it as ``prior_sampler_fallback``) and logged once, here.
    """
    try:
        return _ExactPrior(simulator), None
    except _NotGaussian as err:
        reason = str(err) or (
            "the prior is not Gaussian in the latent variables given the hyperparameters"
        )
    except _NoBound as err:
        reason = str(err)
    except (NotImplementedError, ValueError, TypeError, FloatingPointError) as err:
        reason = f"building the exact prior sampler failed: {type(err).__name__}: {err}"
    _log.warning("bayesjoint: sbc draws the prior by NUTS, not exactly: %s", reason)
    return None, reason


class _NotGaussian(Exception):
    """The prior is not Gaussian in the latent variables given the hyperparameters."""


class _NoBound(Exception):
    """The hyperparameters' marginal has no rejection bound that holds (or accepts anything)."""


class _ExactPrior:
    r"""Exact draws of a prior that is Gaussian given a few hyperparameters.

    Notes
    -----
    With ``f(x, h) = log p(x | h) + Σ potentials`` (the latent priors and the couplings' log
    densities, quadratic in ``x``: ``f = f_0(h) + g(h)ᵀx − ½ xᵀQ(h)x``), the prior is
    ``p(x, h) ∝ p(h) exp f(x, h)``, so

    * ``x | h ~ N(Q⁻¹g, Q⁻¹)``;
    * ``h`` has the marginal ``p(h) Z(h)`` with
      ``log Z(h) = f_0 + ½ gᵀQ⁻¹g − ½ log det Q + (n/2) log 2π``.

    ``h`` is drawn by rejection: proposals from the hyperpriors (forward sampling), accepted
    with probability ``Z(h) / M``, ``M ≥ sup Z``. ``M`` is the largest ``Z`` over
    :data:`BOUND_PROPOSALS` (1,000) prior proposals and a local maximization (Nelder–Mead) from
    the best of them, times ``e^0.1``. The maximization runs in the hyperparameters' value
    coordinates (``log σ`` for a positive ``σ``, the log-odds of a bounded one), which cover
    their whole support: a ``Z`` that grows without bound toward an edge of the support (e.g.
    ``σ → 0``) sends it there and ``M`` far above the proposals' ``Z``.

    The bound is checked when the sampler is built, before any draw, on as many independent
    proposals: the sampler is refused (:class:`_NoBound`, and the prior is drawn by NUTS) when
    ``M`` is not finite (no hyperparameter value gives the latent variables a proper Gaussian),
    when one of them has ``Z > M`` (the bound does not hold; with a fraction ``q`` of the
    proposal mass above ``M`` this happens with probability ``1 − (1 − q)^1000``, 95 % for
    ``q = 0.003``), or when their mean acceptance ``mean(Z / M)`` is below
    :data:`MIN_ACCEPTANCE` (``M`` far above the proposals' ``Z``: typically an unbounded ``Z``,
    and more than a thousand proposals a draw). A proposal above ``M`` during sampling still
    raises (the draws would not be exact).
    """

    #: Hyperprior proposals that set the rejection bound; as many again check it.
    BOUND_PROPOSALS = 1000
    #: Smallest mean acceptance ``Z / M`` over the check's proposals the sampler runs with.
    MIN_ACCEPTANCE = 1e-3

    def __init__(self, simulator: Any, seed: int = 0):
        import pytensor
        import pytensor.tensor as pt
        from pymc.model.transform.conditioning import remove_value_transforms
        from pymc.pytensorf import compile as compile_pymc
        from pytensor.graph.replace import graph_replace

        from bayesjoint.inference.exact import latent_free_names

        self.simulator = simulator
        model = simulator.model
        internal = set(latent_free_names(simulator.latent))
        free = list(model.free_RVs)
        self.latent = [rv.name for rv in free if rv.name in internal]
        self.hyper = [rv.name for rv in free if rv.name not in internal]
        if not self.latent:
            raise _NotGaussian("the model has no latent free variable to draw exactly")
        prior = _prior_model(model)
        self._coordinates = self._value_coordinates(prior)
        plain = remove_value_transforms(prior)
        value = {rv.name: plain.rvs_to_values[rv] for rv in plain.free_RVs}
        latent_rvs = [plain[name] for name in self.latent]
        terms = [*latent_rvs, *plain.potentials]
        logp = plain.logp(vars=terms, sum=True)
        if any(s is None for n in self.latent for s in value[n].type.shape):
            raise _NotGaussian("the latent variables' shapes are known only at run time")
        shapes = [tuple(int(s) for s in value[n].type.shape) for n in self.latent]
        sizes = [int(np.prod(s, dtype=int)) for s in shapes]
        self.shapes, self.n = dict(zip(self.latent, shapes, strict=True)), int(sum(sizes))
        flat = pt.vector("x_flat", shape=(self.n,), dtype="float64")
        parts, start = {}, 0
        for name, shape, size in zip(self.latent, shapes, sizes, strict=True):
            parts[value[name]] = flat[start : start + size].reshape(shape)
            start += size
        logp = graph_replace(logp, parts, strict=False)
        grad = pytensor.gradient.grad(logp, flat)
        hess = pytensor.gradient.hessian(logp, flat)
        hyper_inputs = [value[name] for name in self.hyper]
        self._fn = compile_pymc([*hyper_inputs, flat], [logp, grad, hess], on_unused_input="ignore")
        rng = np.random.default_rng([int(seed), 0x5BC])
        self._check_quadratic(rng)
        self._log_m = self._bound(rng)
        self.acceptance = self._check_bound(rng)

    def _terms(self, h: Mapping[str, np.ndarray], x: np.ndarray) -> tuple[float, Any, Any]:
        f, g, hess = self._fn(*[np.asarray(h[n], dtype=float) for n in self.hyper], x)
        return float(f), np.asarray(g), np.asarray(hess)

    def _proposal(self, seed: Sequence[int]) -> dict[str, np.ndarray]:
        draw = _simulate(self.simulator, list(seed), None)
        return {n: np.asarray(draw[n]) for n in self.hyper}

    def _check_quadratic(self, rng: np.random.Generator) -> None:
        for k in range(3):
            h = self._proposal([int(rng.integers(2**31)), k])
            f0, g0, hess0 = self._terms(h, np.zeros(self.n))
            x = rng.standard_normal(self.n)
            f1, _, hess1 = self._terms(h, x)
            quad = f0 + g0 @ x + 0.5 * x @ hess0 @ x
            scale = 1.0 + abs(f1) + abs(f0)
            if (
                not np.isfinite(f1)
                or abs(f1 - quad) > 1e-8 * scale
                or not np.allclose(hess1, hess0, rtol=1e-8, atol=1e-10)
            ):
                raise _NotGaussian(
                    "the prior's log density is not quadratic in the latent variables given the "
                    "hyperparameters (checked at random points), so not Gaussian"
                )

    def log_z(self, h: Mapping[str, np.ndarray]) -> tuple[float, np.ndarray, np.ndarray]:
        """``log Z(h)``, the conditional mean ``Q⁻¹g`` and the Cholesky factor of ``Q``."""
        from scipy import linalg

        f0, g, hess = self._terms(h, np.zeros(self.n))
        if not (np.isfinite(f0) and np.all(np.isfinite(g)) and np.all(np.isfinite(hess))):
            return -np.inf, np.zeros(self.n), np.eye(self.n)  # outside the hyperprior's support
        try:
            chol = linalg.cholesky(-hess, lower=True)
        except linalg.LinAlgError:
            return -np.inf, np.zeros(self.n), np.eye(self.n)
        mean = linalg.cho_solve((chol, True), g)
        log_z = (
            f0 + 0.5 * g @ mean - np.sum(np.log(np.diag(chol))) + 0.5 * self.n * np.log(2 * np.pi)
        )
        return (float(log_z) if np.isfinite(log_z) else -np.inf), mean, chol

    def _value_coordinates(self, prior: Any) -> tuple[Any, Any] | None:
        """``(h → u, u → h)`` between the hyperparameters and their value coordinates, or None.

        Both maps take and return lists in :attr:`hyper` order. None (the bound is then sought in
        the hyperparameters' own units) when no hyperparameter has a transform, when a
        transform's parameters depend on a free variable (the maps would need its value), or
        when the maps do not compile.
        """
        from pymc.pytensorf import compile as compile_pymc
        from pytensor.graph.traversal import ancestors

        rvs = [prior[name] for name in self.hyper]
        transforms = [prior.rvs_to_transforms.get(rv, None) for rv in rvs]
        if all(t is None for t in transforms):
            return None
        free = set(prior.free_RVs)
        if any(a in free for a in ancestors([i for rv in rvs for i in rv.owner.inputs])):
            return None
        values = [prior.rvs_to_values[rv] for rv in rvs]
        plain = [rv.type(name=f"{rv.name}_own_units") for rv in rvs]
        back, forth = [], []
        for rv, t, value, x in zip(rvs, transforms, values, plain, strict=True):
            back.append(value if t is None else t.backward(value, *rv.owner.inputs))
            forth.append(x if t is None else t.forward(x, *rv.owner.inputs))
        try:
            to_u = compile_pymc(plain, forth, on_unused_input="ignore")
            to_h = compile_pymc(values, back, on_unused_input="ignore")
        except (NotImplementedError, TypeError, ValueError):  # a transform without a graph
            return None
        return to_u, to_h

    def _bound(self, rng: np.random.Generator) -> float:
        from scipy import optimize

        proposals = [
            self._proposal([int(rng.integers(2**31)), 1, k]) for k in range(self.BOUND_PROPOSALS)
        ]
        values = np.array([self.log_z(h)[0] for h in proposals])
        best = proposals[int(np.argmax(values))]
        keys = list(self.hyper)
        shapes = [np.shape(best[k]) for k in keys]
        sizes = [int(np.prod(s, dtype=int)) for s in shapes]
        to_u, to_h = self._coordinates or (None, None)

        def unpack(v: np.ndarray) -> dict[str, np.ndarray]:
            parts, start = [], 0
            for s, size in zip(shapes, sizes, strict=True):
                parts.append(v[start : start + size].reshape(s))
                start += size
            if to_h is not None:
                parts = to_h(*parts)
            return {k: np.asarray(p, dtype=float) for k, p in zip(keys, parts, strict=True)}

        top = float(np.max(values))
        if not keys:  # nothing to draw by rejection: Z is one number
            return top
        first = [best[k] for k in keys] if to_u is None else to_u(*[best[k] for k in keys])
        start = np.concatenate([np.ravel(p) for p in first]).astype(float)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            res = optimize.minimize(
                lambda v: -self.log_z(unpack(v))[0], start, method="Nelder-Mead"
            )
        if np.isfinite(res.fun):
            top = max(top, -float(res.fun))
        return top + 0.1

    def _check_bound(self, rng: np.random.Generator) -> float:
        """Refuse, before any draw, a bound that does not hold; return the mean acceptance."""
        log_m, n = self._log_m, self.BOUND_PROPOSALS
        if not np.isfinite(log_m):
            raise _NoBound(
                f"the exact prior sampler has no rejection bound: log Z(h) is {log_m:.3g} over "
                f"{n} hyperprior proposals (no hyperparameter value gives the latent variables "
                "a proper Gaussian prior)"
            )
        proposals = [self._proposal([int(rng.integers(2**31)), 2, k]) for k in range(n)]
        values = np.array([self.log_z(h)[0] for h in proposals])
        worst = float(np.max(values))
        if worst > log_m:
            raise _NoBound(
                f"the rejection bound of the exact prior sampler does not hold: log M = "
                f"{log_m:.3f}, but one of {n} independent hyperprior proposals has log Z = "
                f"{worst:.3f} (Z(h) may grow without bound); the draws would not be exact"
            )
        acceptance = float(np.mean(np.exp(values - log_m)))
        if acceptance < self.MIN_ACCEPTANCE:
            raise _NoBound(
                f"the rejection bound of the exact prior sampler, log M = {log_m:.3f}, lies far "
                f"above the hyperprior proposals' log Z (largest {worst:.3f} of {n}): mean "
                f"acceptance {acceptance:.2g} < {self.MIN_ACCEPTANCE:g} (Z(h) grows without bound "
                "toward an edge of the hyperprior's support, or is sharply peaked)"
            )
        return acceptance

    def draw(self, seed: Sequence[int]) -> dict[str, np.ndarray]:
        """One exact prior draw of every free variable, from ``seed`` alone."""
        from scipy import linalg

        rng = np.random.default_rng([*seed, 3])
        for attempt in range(100_000):
            h = self._proposal([*seed, 3, attempt])
            log_z, mean, chol = self.log_z(h)
            if log_z > self._log_m:  # passed its check on independent proposals at build
                raise RuntimeError(
                    f"sbc: the rejection bound of the exact prior sampler ({self._log_m:.3f}) is "
                    f"exceeded ({log_z:.3f}); the prior draws would not be exact. Give the "
                    "hyperparameters a prior that keeps them away from where Z(h) grows, or "
                    "fix them"
                )
            if np.log(rng.random()) < log_z - self._log_m:
                break
        else:  # pragma: no cover - an acceptance rate below 1e-5
            raise RuntimeError("sbc: the exact prior sampler accepts almost no proposal")
        x = mean + linalg.solve_triangular(chol.T, rng.standard_normal(self.n), lower=False)
        out = {k: np.asarray(v) for k, v in h.items()}
        start = 0
        for name in self.latent:
            size = int(np.prod(self.shapes[name], dtype=int))
            out[name] = x[start : start + size].reshape(self.shapes[name])
            start += size
        return out


# -- one simulation ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Settings:
    draws: int
    tune: int
    chains: int
    method: str
    n_ranks: int
    random_seed: int
    fit_kwargs: dict = field(default_factory=dict)


def ranked_quantities(problem: Any) -> tuple[list[str], list[str]]:
    """Return the ranked variables (latent variables, then learned hyperparameters) and labels."""
    from bayesjoint.inference.exact import latent_free_names

    internal = set(latent_free_names(problem.latent))
    hyper = [
        rv.name
        for rv in problem.model.free_RVs
        if rv.name not in internal and rv.name not in problem.latent
    ]
    names = [*problem.latent, *hyper]
    labels = [lab for var in problem.latent.values() for lab in var.labels()]
    model = problem.model
    for name in hyper:
        size = (
            int(np.prod(model[name].type.shape or (), dtype=int)) if model[name].type.shape else 1
        )
        labels.extend([name] if size == 1 else [f"{name}[{i}]" for i in range(size)])
    return names, labels


_LOGLIK: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _loglik_function(model: Any) -> tuple[Any, list[str], list[str]]:
    """Compile (once per model) ``free RVs (constrained) ↦ Σ log p(block data)`` per block."""
    from pymc.model.transform.conditioning import remove_value_transforms

    if model in _LOGLIK:
        return _LOGLIK[model]
    plain = remove_value_transforms(model)
    observed = list(plain.observed_RVs)
    fn = plain.compile_fn(
        [plain.logp(vars=[rv], sum=True) for rv in observed],
        inputs=plain.value_vars,
        on_unused_input="ignore",
    )
    _LOGLIK[model] = (fn, [v.name for v in plain.value_vars], [rv.name for rv in observed])
    return _LOGLIK[model]


def _block_loglik(
    problem: Any, points: Sequence[Mapping[str, np.ndarray]], data: Mapping[str, np.ndarray]
) -> tuple[list[str], np.ndarray]:
    """``Σ log p(d_block | θ)`` per likelihood block at each point, shape (points, blocks)."""
    model = problem.model  # sets the problem's data into a shared model
    fn, inputs, blocks = _loglik_function(model)
    # the transform-free clone holds copies of the data; point them at this problem's data
    for name, shared in _clone_data(fn).items():
        if name in data:
            shared.set_value(np.asarray(data[name]), borrow=True)
    out = np.array([[float(v) for v in fn({k: p[k] for k in inputs})] for p in points])
    return blocks, out


def _clone_data(fn: Any) -> dict[str, Any]:
    """Shared data variables (``<modality>__observed``) of a compiled log-likelihood function."""
    shared = {}
    for s in fn.f.get_shared():
        name = getattr(s, "name", None) or ""
        if name.endswith("__observed"):
            shared[name[: -len("__observed")]] = s
    return shared


def _thin_index(ess: float, total: int, chains: int, n_draws: int) -> tuple[np.ndarray, int]:
    """Return indices of ``n_draws`` draws spread over the run, and the thinning ``total/ess``."""
    thin = int(np.ceil(total / max(ess, 1.0)))
    return np.linspace(0, total - 1, n_draws).round().astype(int), thin


def _rank(draws: np.ndarray, truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rank of each truth among the draws (axis 0), ties broken at random."""
    below = np.sum(draws < truth, axis=0)
    ties = np.sum(draws == truth, axis=0)
    return below + rng.integers(0, ties + 1)


def one_simulation(
    problem: Any, simulator: Any, prior_draws: Any, settings: _Settings, index: int
) -> dict[str, Any]:
    """Simulate data for simulation ``index``, fit it and return its ranks (see :func:`sbc`)."""
    import arviz as az

    t0 = time.perf_counter()
    seed = [int(settings.random_seed), int(index)]
    given = None if prior_draws is None else prior_draws[index]
    truth = _simulate(simulator, [*seed, 0], given)
    data = _modality_data(simulator, truth)
    data = {name: data[name] for name in problem.modalities}
    fitted = problem.with_data(data)
    with _quiet():  # the route is recorded per simulation
        idata = fitted.sample(
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            method=settings.method,
            cores=1,
            random_seed=int(np.random.SeedSequence([*seed, 1]).generate_state(1)[0] % (2**31 - 1)),
            progressbar=False,
            **settings.fit_kwargs,
        )
    t_fit = time.perf_counter() - t0
    names, _ = ranked_quantities(problem)
    post = idata.posterior
    total = post.sizes["chain"] * post.sizes["draw"]
    ess = az.ess(post[names], method="bulk")
    min_ess = float(min(float(np.nanmin(ess[v].values)) for v in names))
    n_draws = settings.n_ranks - 1
    index_kept, thin = _thin_index(min_ess, total, post.sizes["chain"], n_draws)
    flat = {v: post[v].values.reshape(total, -1)[index_kept] for v in post.data_vars if v in post}
    rng = np.random.default_rng([*seed, 2])
    draws = np.concatenate([flat[v] for v in names], axis=1)
    true_vec = np.concatenate([np.asarray(truth[v], dtype=float).ravel() for v in names])
    ranks = _rank(draws, true_vec, rng)
    # the log-likelihood of each block as a test quantity: truth against draws
    free = [rv.name for rv in problem.model.free_RVs]
    points = [{v: truth[v] for v in free}] + [
        {v: flat[v][i].reshape(np.shape(truth[v])) for v in free} for i in range(n_draws)
    ]
    blocks, loglik = _block_loglik(fitted, points, data)
    ll_ranks = _rank(loglik[1:], loglik[0], rng)
    route = idata.posterior.attrs.get("route", "")
    diverging = idata.sample_stats.get("diverging")
    return {
        "index": int(index),
        "ranks": np.concatenate([ranks, ll_ranks]).astype(np.int64),
        "blocks": blocks,
        "min_ess": min_ess,
        "thin": thin,
        "ess_short": bool(total / thin < n_draws),
        "divergences": int(diverging.values.sum()) if diverging is not None else 0,
        "route": str(route),
        "wall_time": time.perf_counter() - t0,
        "fit_time": t_fit,
    }


# -- the result ----------------------------------------------------------------------------------
@dataclass
class SBCResult:
    """Outcome of :func:`sbc`.

    Attributes
    ----------
    dataset : xarray.Dataset
        ``rank`` (simulation, quantity) and per simulation ``min_ess``, ``thin``, ``ess_short``,
        ``divergences``, ``wall_time``; per quantity ``outside`` (the ECDF leaves its band);
        the band ``lower``/``upper`` on ``z``; attributes ``verdict``, ``alpha``, ``n_ranks``,
        ``prior_sampler`` (how the truths were drawn) and, where a prior with coupling
        potentials is drawn by NUTS, ``prior_sampler_fallback`` (why not exactly).
    verdict : str
        ``"pass"`` when every quantity's ECDF stays in its band, ``"fail"`` otherwise.
    ran : list of int
        Simulations run by this call (the others were read from ``store``).
    """

    dataset: xr.Dataset
    verdict: str
    ran: list[int]

    @property
    def flagged(self) -> list[str]:
        """Quantities whose ECDF leaves the band."""
        ds = self.dataset
        return [str(q) for q in ds["quantity"].values[ds["outside"].values]]

    def plot(self, path: str | os.PathLike | None = None, **kwargs: Any) -> Any:
        """ECDF difference plot with the band; see :func:`plot_sbc`."""
        return plot_sbc(self.dataset, path, **kwargs)


def _check_positive(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"sbc: {what} must be a positive int, got {value!r}")
    return int(value)


def _read_store(store: str, manifest: Mapping[str, Any]) -> dict[int, dict]:
    """Read the finished simulations of ``store``; refuse a store made with other settings."""
    os.makedirs(store, exist_ok=True)
    path = os.path.join(store, "manifest.nc")
    if os.path.exists(path):
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            old = {k: ds.attrs[k] for k in manifest if k in ds.attrs}
        if {k: str(v) for k, v in old.items()} != {k: str(v) for k, v in manifest.items()}:
            raise ValueError(
                f"sbc: store {store!r} holds simulations made with other settings ({old}); "
                f"these are {dict(manifest)}. Use another store folder or the same settings"
            )
    else:
        _atomic_write_netcdf(xr.Dataset(attrs={k: str(v) for k, v in manifest.items()}), path)
    done = {}
    for name in sorted(os.listdir(store)):
        if name.startswith("sim_") and name.endswith(".nc"):
            with xr.open_dataset(os.path.join(store, name), engine="h5netcdf") as ds:
                ds = ds.load()
            done[int(ds.attrs["index"])] = _record_from_dataset(ds)
    return done


def _record_dataset(record: Mapping[str, Any]) -> xr.Dataset:
    return xr.Dataset(
        {"rank": ("quantity", np.asarray(record["ranks"]))},
        attrs={
            "index": int(record["index"]),
            "min_ess": float(record["min_ess"]),
            "thin": int(record["thin"]),
            "ess_short": int(record["ess_short"]),
            "divergences": int(record["divergences"]),
            "route": record["route"],
            "wall_time": float(record["wall_time"]),
            "fit_time": float(record["fit_time"]),
            "blocks": ",".join(record["blocks"]),
        },
    )


def _record_from_dataset(ds: xr.Dataset) -> dict[str, Any]:
    a = ds.attrs
    return {
        "index": int(a["index"]),
        "ranks": ds["rank"].values.astype(np.int64),
        "blocks": str(a["blocks"]).split(","),
        "min_ess": float(a["min_ess"]),
        "thin": int(a["thin"]),
        "ess_short": bool(a["ess_short"]),
        "divergences": int(a["divergences"]),
        "route": str(a["route"]),
        "wall_time": float(a["wall_time"]),
        "fit_time": float(a["fit_time"]),
    }


def sbc(
    problem: Any,
    simulations: int = 200,
    *,
    client: Any = None,
    simulator: Any = None,
    store: str | os.PathLike | None = None,
    random_seed: int = 0,
    draws: int = 200,
    tune: int = 300,
    chains: int = 2,
    method: str = "auto",
    n_ranks: int = 100,
    alpha: float = ALPHA,
    n_workers: int | None = None,
    **fit_kwargs: Any,
) -> SBCResult:
    """Simulation-based calibration of a problem, its sampling route and its code.

    Parameters
    ----------
    problem : JointInversion
        The problem as it will be fitted (its data are replaced by simulated data).
    simulations : int, default 200
        Number of simulated data sets ``N``.
    client : None, "serial", dask.distributed.Client or str
        Where the fits run (see :func:`run_tasks`): None starts a ``LocalCluster`` of one-thread
        worker processes on this machine.
    simulator : JointInversion, optional
        The problem that generates the data (default ``problem``): e.g. the same model with
        another noise sd, for a negative control or a study of misspecification. Its latent
        variables and learned hyperparameters must include the fitted problem's.
    store : path, optional
        Folder for one netCDF file per finished simulation (written atomically) and ``sbc.nc``,
        the result; a later call with the same store and settings runs only the missing
        simulations.
    random_seed : int, default 0
        Simulation ``i`` uses the seed ``[random_seed, i]`` whatever ran before it.
    draws, tune, chains : int
        Per fit (``tune`` does not apply to the exact route).
    method : str, default "auto"
        The sampling route (:meth:`bayesjoint.JointInversion.sample`).
    n_ranks : int, default 100
        ``L + 1``: each truth is ranked among ``L`` posterior draws, spread over the run.
    alpha : float, default 0.05
        Family-wise false-alarm rate of the verdict over all ranked quantities.
    n_workers : int, optional
        Workers of the LocalCluster started when ``client`` is None.
    **fit_kwargs
        Passed to :meth:`~bayesjoint.JointInversion.sample`.

    Returns
    -------
    SBCResult

    Raises
    ------
    ValueError
        For non-positive counts, fewer draws than ``n_ranks − 1``, a simulator that lacks a
        ranked quantity or a modality of the problem, a store made with other settings, or
        prior draws by NUTS whose ESS falls short of a block's simulations (before any fit).

    Notes
    -----
    Simulation ``i``: the latent model and every learned hyperparameter are drawn from the
    simulator's prior, from the seed ``[random_seed, i]`` alone: by forward sampling, or, when
    couplings add potentials (which forward sampling cannot honour), exactly when the prior is
    Gaussian in the latent variables given the hyperparameters (``_ExactPrior``: the
    hyperparameters from their exact marginal by rejection, the latent variables from their
    Gaussian conditional), else from NUTS on the prior in blocks of ``PRIOR_BLOCK`` (50)
    simulations (block ``i // PRIOR_BLOCK`` its own run, thinned by ESS; too small an ESS
    raises before any fit; the reason there is no exact sampler is logged and recorded as the
    attribute ``prior_sampler_fallback``). Every modality's data from its observed variable given
    that draw (physics, observation, discrepancy and noise). The data are fitted by
    ``problem.with_data(data).sample(...)``; ``L`` draws are taken evenly over the run (spaced by
    at least ``total / ESS`` when the bulk ESS allows, else ``ess_short`` is set). Ranks: every
    latent scalar and learned hyperparameter, and, per likelihood block, the log-likelihood
    ``log p(d | θ)`` of the simulated data (the truth's against the draws'), which reacts to
    a wrong noise level even when the means are right. For a calibrated model every rank is
    uniform on ``0..L``.

    Verdict: ``"fail"`` when any quantity's rank ECDF leaves its simultaneous band
    (:func:`ecdf_band`, level ``alpha / Q`` each for ``Q`` quantities: Bonferroni, so the
    family-wise false-alarm rate is at most ``alpha``), else ``"pass"``.
    """
    simulations = _check_positive("simulations", simulations)
    for what, value in (("draws", draws), ("chains", chains), ("n_ranks", n_ranks)):
        _check_positive(what, value)
    if n_ranks < 2 or draws * chains < n_ranks - 1:
        raise ValueError(
            f"sbc: ranks among n_ranks - 1 = {n_ranks - 1} draws need draws * chains ≥ that, "
            f"got {draws} * {chains}; raise draws or lower n_ranks"
        )
    simulator = problem if simulator is None else simulator
    names, labels = ranked_quantities(problem)
    sim_names = set(simulator.model.named_vars)
    missing = [n for n in names if n not in sim_names]
    missing += [rv.name for rv in problem.model.free_RVs if rv.name not in sim_names]
    missing += [m for m in problem.modalities if m not in simulator.modalities]
    if missing:
        raise ValueError(
            f"sbc: the simulator has no {missing}; it must declare the fitted problem's latent "
            "variables, learned hyperparameters and modalities (same names)"
        )
    blocks = [rv.name for rv in problem.model.observed_RVs]
    quantity = [*labels, *[f"loglik[{b}]" for b in blocks]]
    settings = _Settings(
        draws=int(draws),
        tune=int(tune),
        chains=int(chains),
        method=method,
        n_ranks=int(n_ranks),
        random_seed=int(random_seed),
        fit_kwargs=dict(fit_kwargs),
    )
    manifest = {
        "problem": repr(problem),
        "simulator": repr(simulator) + ("" if simulator is problem else " (other)"),
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "method": method,
        "n_ranks": n_ranks,
        "random_seed": random_seed,
        "quantities": ",".join(quantity),
        "fit_kwargs": repr(sorted(fit_kwargs.items())),
    }
    sampler, fallback = None, None
    if simulator.model.potentials:  # forward sampling cannot honour a potential
        sampler, fallback = _exact_prior_sampler(simulator)
        manifest["prior_draws"] = "exact" if sampler is not None else f"nuts/{PRIOR_BLOCK}"
    store = None if store is None else os.fspath(store)
    done = _read_store(store, manifest) if store is not None else {}
    todo = [i for i in range(simulations) if i not in done]
    prior_draws, prior_info = None, {"prior_sampler": "forward sampling"}
    if simulator.model.potentials:
        prior_info["prior_sampler"] = (
            "exact (Gaussian given the hyperparameters)"
            if sampler is not None
            else f"NUTS, blocks of {PRIOR_BLOCK} simulations"
        )
    if simulator.model.potentials and todo:  # before any fit: may refuse (ESS too low)
        prior_draws, prior_info = _prior_draws(simulator, todo, int(random_seed), sampler)
    if fallback is not None:  # why the prior is not drawn exactly
        prior_info["prior_sampler_fallback"] = fallback

    def keep(index: int, record: dict) -> None:
        done[index] = record
        if store is not None:
            _atomic_write_netcdf(
                _record_dataset(record), os.path.join(store, f"sim_{index:06d}.nc")
            )

    t0 = time.perf_counter()
    fit_problem = portable(problem) if client != "serial" else problem
    fit_simulator = (
        fit_problem
        if simulator is problem
        else (portable(simulator) if client != "serial" else simulator)
    )
    run_tasks(
        one_simulation,
        [fit_problem, fit_simulator, prior_draws, settings],
        todo,
        keep,
        client=client,
        n_workers=n_workers,
        label="simulation",
    )
    elapsed = time.perf_counter() - t0
    records = [done[i] for i in range(simulations)]
    ranks = np.stack([r["ranks"] for r in records])
    outside, band = ecdf_verdict(ranks, n_ranks, alpha=alpha)
    verdict = "fail" if outside.any() else "pass"
    ds = xr.Dataset(
        {
            "rank": (("simulation", "quantity"), ranks),
            "outside": ("quantity", outside),
            "min_ess": ("simulation", [r["min_ess"] for r in records]),
            "thin": ("simulation", [r["thin"] for r in records]),
            "ess_short": ("simulation", [r["ess_short"] for r in records]),
            "divergences": ("simulation", [r["divergences"] for r in records]),
            "wall_time": ("simulation", [r["wall_time"] for r in records]),
            "route": ("simulation", [r["route"] for r in records]),
            "lower": ("z", band["lower"].values),
            "upper": ("z", band["upper"].values),
        },
        coords={"simulation": np.arange(simulations), "quantity": quantity, "z": band["z"].values},
        attrs={
            "verdict": verdict,
            "alpha": float(alpha),
            "band_level": float(band.attrs["level"]),
            "critical_tail": float(band["critical_tail"]),
            "n_ranks": int(n_ranks),
            "simulations": simulations,
            "ran_this_call": len(todo),
            "elapsed_this_call": elapsed,
            "random_seed": int(random_seed),
            "draws": int(draws),
            "chains": int(chains),
            "tune": int(tune),
            "method": method,
            "problem": repr(problem),
            "simulator": repr(simulator),
            **{k: str(v) for k, v in prior_info.items()},
        },
    )
    if store is not None:
        _atomic_write_netcdf(ds, os.path.join(store, "sbc.nc"))
    return SBCResult(dataset=ds, verdict=verdict, ran=todo)


# -- the figure ----------------------------------------------------------------------------------
def plot_sbc(
    dataset: xr.Dataset,
    path: str | os.PathLike | None = None,
    *,
    quantities: Sequence[str] | None = None,
    max_panels: int = 8,
    title: str | None = None,
) -> Any:
    """Plot ``ECDF(z) − z`` of each quantity's ranks with the band (ECDF difference plot).

    By default the log-likelihood quantities and the quantities furthest from uniform (largest
    excursion relative to the band), up to ``max_panels``. Returns the matplotlib Figure (saved
    to ``path`` when given).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n_ranks = int(dataset.attrs["n_ranks"])
    n = dataset.sizes["simulation"]
    z = dataset["z"].values
    counts = _counts(dataset["rank"].values.T, n_ranks)
    names = [str(q) for q in dataset["quantity"].values]
    if quantities is None:
        half = (dataset["upper"].values - dataset["lower"].values) / 2.0 + 0.5
        centre = (dataset["upper"].values + dataset["lower"].values) / 2.0
        score = np.max(np.abs(counts - centre) / half, axis=1)
        loglik = [i for i, q in enumerate(names) if q.startswith("loglik[")]
        rest = [i for i in np.argsort(-score) if i not in loglik]
        order = (loglik + rest)[:max_panels]
    else:
        order = [names.index(q) for q in quantities]
    cols = min(4, len(order))
    rows = int(np.ceil(len(order) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.ravel()[len(order) :]:
        ax.axis("off")
    for ax, i in zip(axes.ravel(), order, strict=False):
        ax.fill_between(
            z,
            dataset["lower"].values / n - z,
            dataset["upper"].values / n - z,
            step="post",
            color="0.85",
            label=f"{100 * (1 - dataset.attrs['alpha']):.0f}% band",
        )
        bad = bool(dataset["outside"].values[i])
        ax.step(z, counts[i] / n - z, where="post", color="C3" if bad else "C0")
        ax.axhline(0.0, color="0.5", lw=0.5)
        ax.set_title(names[i], fontsize=8, color="C3" if bad else "black")
        ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("ECDF − uniform", fontsize=8)
    fig.suptitle(
        title
        or f"SBC: {n} simulations, verdict {dataset.attrs['verdict']} "
        f"(family-wise α = {dataset.attrs['alpha']})",
        fontsize=9,
    )
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
