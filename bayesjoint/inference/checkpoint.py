"""Checkpointed sampling: draws written to disk as they come, and runs resumed from the file.

``problem.sample(..., checkpoint="run.nc")`` keeps a results file that grows while the chains
run. It is an ordinary file of :func:`bayesjoint.save` (netCDF), so :func:`bayesjoint.load`,
``bayesjoint diagnose`` and ``bayesjoint report`` read it at any moment.

Design
------
- **Recording.** A :class:`ChainRecorder` is PyMC's ``callback=``: PyMC calls it in the main
  process after each draw of every chain, with that chain's trace, whatever ``cores`` is (the
  worker processes send their draws to the main process, which records them). The recorder keeps
  a reference to each chain's trace and, when ``checkpoint_every`` seconds have passed since the
  last write, writes every kept (post-tuning) draw of every chain to the file. Nothing is copied
  per draw, so recording costs a clock reading per draw.
- **Atomic writes.** Each write goes through :func:`bayesjoint.save`: a temporary file in the
  same folder, renamed over the checkpoint. A kill at any moment leaves the previous complete
  write or the new one, never a partial file; a stop signal arriving during a write waits until
  the rename (:meth:`StopSignals.deferred`).
- **Ragged chains.** Chains that were cut short hold fewer draws than others (with ``cores`` below
  ``chains`` the last chains may not have started). The file keeps every kept draw: the ``draw``
  dimension is as long as the longest chain and shorter chains are padded with NaN (integer and
  boolean sampler statistics become floating point for that). The provenance records
  ``complete`` (0 or 1), ``draws_per_chain`` (the real counts), and ``interrupted`` (the signal)
  when a signal stopped the run; :func:`kept_draws` reads them, :func:`complete_part` returns the
  rectangular part.
- **Routes.** On ``nuts`` and ``nuts-plain`` draws are written as they come. On ``collapsed``
  the recorder keeps the hyperparameter chains (NUTS on ``θ``) and each write draws the fields
  of the draws new since the last one
  (:class:`~bayesjoint.inference.collapsed.CollapsedAssembler`; one random stream per draw, so
  the file holds the final result's layout and draws). The ``exact`` route draws independently
  and fast; its file is written once at the end. ``smc`` takes no checkpoint.
- **Resume.** ``sample(..., checkpoint=PATH, resume=True)`` reads the file and continues every
  chain to the requested draws. A chain with kept draws restarts from its last draw with the
  step size NUTS had tuned (the file's ``step_size`` statistic at that draw; one step for the
  chains resumed together, the smallest). On ``nuts`` the mass matrix is the Laplace
  covariance at the MAP computed again (deterministically, as in the first run): no tuning. On
  ``nuts-plain`` and ``collapsed`` the adapted mass matrix lives in PyMC's workers and is not
  handed out, so a fixed diagonal one is estimated from the kept draws (variance in the
  sampler's coordinates) and the step size is re-tuned from the stored one for
  ``min(tune, RESUME_STEP_TUNE)`` draws, discarded. Without a stored step size, or with fewer
  than ``RESUME_MIN_DRAWS`` kept draws, PyMC re-tunes for ``min(tune, RESUME_TUNE)`` draws. A
  chain with no kept draw starts afresh with the full ``tune``. The kept and the new draws are
  joined per chain, and the log-likelihood is evaluated for all of them (collapsed: the kept
  draws' fields are kept, the new draws' drawn). The exact route is run again when the file is
  incomplete. Restarting a Markov chain from its last state with any fixed step size and mass
  matrix leaves its stationary distribution unchanged; the tuning only makes the continuation
  efficient.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import arviz as az
import numpy as np
import xarray as xr

from bayesjoint._random import SEED_BOUND
from bayesjoint.inference.interrupt import SamplingInterrupted, StopSampling, StopSignals
from bayesjoint.inference.threads import parallel_plan, sampling_plan

__all__ = [
    "CHECKPOINT_EVERY",
    "RESUME_TUNE",
    "ChainRecorder",
    "add_checkpoint_arguments",
    "checkpoint_folder",
    "complete_part",
    "kept_draws",
    "sample_checkpointed",
    "use_checkpoint_folder",
]

_log = logging.getLogger("bayesjoint")

#: Default seconds between two writes of the checkpoint file.
CHECKPOINT_EVERY = 30.0

#: Tuning draws of a chain resumed from its last draw without a stored step size (at most
#: ``tune``).
RESUME_TUNE = 200

#: Tuning draws of a resumed chain whose step size restarts from the stored one with a mass
#: matrix estimated from the kept draws (``nuts-plain``, ``collapsed``; at most ``tune``).
RESUME_STEP_TUNE = 50

#: Fewest kept draws (over the chains resumed together) to estimate a mass matrix from.
RESUME_MIN_DRAWS = 20

#: Routes whose draws are written as they come, and whose chains a resumed run continues.
STREAMED_ROUTES = ("nuts", "nuts-plain", "collapsed")

#: PyMC's sampler statistics as its InferenceData names them.
_STAT_NAMES = {
    "model_logp": "lp",
    "mean_tree_accept": "acceptance_rate",
    "depth": "tree_depth",
    "tree_size": "n_steps",
}
_SKIPPED_STATS = ("warning", "tune", "in_warmup")


# -- reading the bookkeeping ---------------------------------------------------------------------
def kept_draws(idata: az.InferenceData) -> dict[str, Any]:
    """Return how complete a run is, from its provenance.

    Parameters
    ----------
    idata : arviz.InferenceData

    Returns
    -------
    dict
        ``complete`` (bool), ``draws`` (requested per chain), ``draws_per_chain`` (kept, list),
        ``interrupted`` (signal name or None). A run without these entries (written before they
        existed, or not by bayesjoint) counts as complete with its posterior's sizes.

    Examples
    --------
    >>> import arviz as az, numpy as np
    >>> kept_draws(az.from_dict(posterior={"x": np.zeros((2, 5))}))["draws_per_chain"]
    [5, 5]
    """
    post = idata.posterior
    attrs = post.attrs
    n_chains, n_draws = int(post.sizes["chain"]), int(post.sizes["draw"])
    per_chain = attrs.get("draws_per_chain")
    per_chain = json.loads(per_chain) if isinstance(per_chain, str) else [n_draws] * n_chains
    draws = int(attrs.get("draws", n_draws))
    complete = bool(int(attrs.get("complete", 1)))
    interrupted = attrs.get("interrupted") or None
    return {
        "complete": complete,
        "draws": draws,
        "draws_per_chain": [int(n) for n in per_chain],
        "interrupted": interrupted,
    }


def complete_part(idata: az.InferenceData) -> tuple[az.InferenceData, str | None]:
    """Return the rectangular part of a cut-short run, and what was left out.

    Chains of unequal length are cut to a common length; the chains kept and that length
    maximize ``chains × length`` (as PyMC does after an interrupt). A complete run is returned as
    it is, with None.

    Returns
    -------
    idata : arviz.InferenceData
        Groups with ``chain`` and ``draw`` dimensions selected; other groups unchanged.
    note : str or None
        What was left out, e.g. ``"chains [3] (0 draws) left out; 2 chains cut to 66 draws"``.
    """
    info = kept_draws(idata)
    lengths = np.asarray(info["draws_per_chain"])
    n_draws = int(idata.posterior.sizes["draw"])
    if lengths.size != idata.posterior.sizes["chain"] or np.all(lengths == n_draws):
        return idata, None
    order = np.argsort(lengths)[::-1]
    scores = lengths[order] * np.arange(1, lengths.size + 1)
    best = int(np.argmax(scores))
    chains = sorted(int(c) for c in order[: best + 1])
    length = int(lengths[order[best]])
    chain_labels = idata.posterior["chain"].values[chains]
    groups = {}
    for name in idata.groups():
        data = idata[name]
        if "chain" in data.dims and "draw" in data.dims:
            data = data.sel(chain=chain_labels).isel(draw=slice(0, length))
        groups[name] = data
    left = [int(c) for c in range(lengths.size) if c not in chains]
    note = f"{len(chains)} chain(s) cut to {length} draws"
    if left:
        note = f"chain(s) {left} ({[int(lengths[c]) for c in left]} draws) left out; " + note
    return az.InferenceData(**groups), note


# -- recording -----------------------------------------------------------------------------------
class ChainRecorder:
    """PyMC ``callback=`` that keeps each chain's trace and writes the checkpoint file.

    Parameters
    ----------
    model : pymc.Model
        The model sampled (names, dims and coordinates of the variables).
    chains : int
        Chains of the whole run (file chain indices).
    draws : int
        Draws per chain requested.
    path : str or None
        Checkpoint file; None records without writing (for interrupts).
    every : float
        Seconds between writes.
    attrs : callable
        ``attrs(extra) -> dict``: the provenance attributes of a file with entries ``extra``.
    signals : StopSignals, optional
        Stop signals are deferred while the file is written.

    Attributes
    ----------
    writes : list of float
        Wall time (s) of each write, for the overhead figures.
    """

    def __init__(
        self,
        model: Any,
        *,
        chains: int,
        draws: int,
        path: str | None,
        every: float,
        attrs: Callable[[Mapping[str, Any]], dict[str, Any]],
        signals: StopSignals | None = None,
    ):
        self.model = model
        self.chains = int(chains)
        self.draws = int(draws)
        self.path = path
        self.every = float(every)
        self.attrs = attrs
        self.signals = signals
        self.info: dict[str, Any] = {}
        self.writes: list[float] = []
        self._previous: dict[int, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = {}
        self._traces: dict[int, tuple[Any, int, int]] = {}
        self._chain_ids: list[int] = list(range(self.chains))
        self._tune = 0
        self._user_callback: Callable[..., Any] | None = None
        self._last_write = time.monotonic()
        self._written_counts: list[int] | None = None
        self._dtypes: dict[str, Any] = {}
        self.assembler: Callable[..., az.InferenceData] | None = None
        self.tuning_discarded: dict[int, int] = {}

    def collapse(self, model: Any, assembler: Callable[..., az.InferenceData]) -> ChainRecorder:
        """Record the hyperparameter chains of the collapsed route (``model`` samples ``θ``).

        ``assembler(theta, stats, counts)`` turns the recorded ``θ`` draws and statistics
        (``(chains, length)`` arrays) into the route's result (see
        :class:`bayesjoint.inference.collapsed.CollapsedAssembler`).
        """
        self.model = model
        self.assembler = assembler
        return self

    # the pm.sample callback
    def begin(
        self,
        *,
        tune: int,
        chain_ids: list[int] | None = None,
        user_callback: Callable[..., Any] | None = None,
    ) -> ChainRecorder:
        """Prepare for one ``pymc.sample`` call whose chain ``i`` is file chain ``chain_ids[i]``."""
        self._tune = int(tune)
        self._chain_ids = list(range(self.chains)) if chain_ids is None else list(chain_ids)
        self._user_callback = user_callback
        self._last_write = time.monotonic()
        return self

    def __call__(self, trace: Any, draw: Any) -> None:
        """Keep ``trace`` as the trace of ``draw.chain``; write the file when it is due."""
        chain = self._chain_ids[draw.chain]
        self._traces[chain] = (trace, self._tune, self.draws - self._previous_count(chain))
        if self._user_callback is not None:
            self._user_callback(trace=trace, draw=draw)
        if self.path is not None and time.monotonic() - self._last_write >= self.every:
            self.write()

    def set_previous(self, idata: az.InferenceData, counts: list[int]) -> None:
        """Start every chain with the first ``counts[c]`` draws of chain ``c`` of ``idata``."""
        stats = idata.sample_stats if "sample_stats" in idata.groups() else xr.Dataset()
        for c, n in enumerate(counts):
            if n <= 0:
                continue
            post = {k: np.asarray(v.values[c, :n]) for k, v in idata.posterior.items()}
            sst = {k: np.asarray(v.values[c, :n]) for k, v in stats.items() if "draw" in v.dims}
            self._previous[c] = (post, sst)

    def _previous_count(self, chain: int) -> int:
        previous = self._previous.get(chain)
        if previous is None or not previous[0]:
            return 0
        return int(next(iter(previous[0].values())).shape[0])

    # what is kept
    def counts(self) -> list[int]:
        """Draws kept per file chain (earlier draws plus those of the current run)."""
        out = []
        for c in range(self.chains):
            n = self._previous_count(c)
            if c in self._traces:
                trace, tune, limit = self._traces[c]
                n += min(max(0, len(trace) - tune), limit)
            out.append(min(n, self.draws))
        return out

    def _hidden_names(self) -> set[str]:
        model = self.model
        return {
            model.rvs_to_values[rv].name
            for rv in model.free_RVs
            if model.rvs_to_transforms.get(rv) is not None
        }

    def _chain_arrays(self, c: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        post, stats = self._previous.get(c, ({}, {}))
        post, stats = dict(post), dict(stats)
        if c not in self._traces:
            return post, stats
        trace, tune, limit = self._traces[c]
        stop = tune + min(max(0, len(trace) - tune), limit)
        hidden = self._hidden_names()
        new_post = {
            name: np.asarray(trace.samples[name][tune:stop])
            for name in trace.varnames
            if name not in hidden
        }
        new_stats: dict[str, np.ndarray] = {}
        for sampler in trace._stats or []:
            for name, values in sampler.items():
                key = _STAT_NAMES.get(name, name)
                if key in _SKIPPED_STATS or key in new_stats:
                    continue
                values = np.asarray(values[tune:stop])
                if values.dtype == object:
                    continue
                new_stats[key] = values
        had_previous = bool(post)
        self._dtypes.update({k: v.dtype for k, v in {**new_post, **new_stats}.items()})
        for target, new in ((post, new_post), (stats, new_stats)):
            for name, values in new.items():
                if name in target:
                    target[name] = np.concatenate([target[name], values.astype(target[name].dtype)])
                elif not had_previous:
                    target[name] = values
        return post, stats

    def to_idata(self, extra: Mapping[str, Any]) -> az.InferenceData | None:
        """Return the kept draws as InferenceData (NaN-padded chains) with provenance, or None."""
        arrays = [self._chain_arrays(c) for c in range(self.chains)]
        counts = self.counts()
        length = max(counts, default=0)
        if length == 0:
            return None
        ragged = any(n != length for n in counts)
        dims = self.model.named_vars_to_dims
        coords = {k: np.asarray(v) for k, v in self.model.coords.items() if v is not None}
        groups = {}
        for group in (0, 1):
            names = next((a[group] for a in arrays if a[group]), {})
            data = {}
            for name in names:
                sample = next(a[group][name] for a in arrays if name in a[group])
                shape = sample.shape[1:]
                everywhere = all(name in a[group] for a, n in zip(arrays, counts, strict=True) if n)
                if ragged or not everywhere:
                    full = np.full((self.chains, length, *shape), np.nan)
                else:
                    dtype = self._dtypes.get(name, sample.dtype)
                    full = np.zeros((self.chains, length, *shape), dtype=dtype)
                for c, (post, stats) in enumerate(arrays):
                    values = (post, stats)[group].get(name)
                    if values is not None and counts[c]:
                        full[c, : counts[c]] = values[: counts[c]]
                var_dims = tuple(dims.get(name, ())) if group == 0 else ()
                if len(var_dims) != len(shape):
                    var_dims = tuple(f"{name}_dim_{i}" for i in range(len(shape)))
                data[name] = (("chain", "draw", *var_dims), full)
            used = {d for var_dims, _ in data.values() for d in var_dims}
            dataset = xr.Dataset(
                data,
                coords={
                    "chain": np.arange(self.chains),
                    "draw": np.arange(length),
                    **{k: v for k, v in coords.items() if k in used},
                },
            )
            groups["posterior" if group == 0 else "sample_stats"] = dataset
        if self.assembler is not None:  # the collapsed route: draw the fields of the θ draws
            theta = {k: v.values for k, v in groups["posterior"].items()}
            stats = {k: v.values for k, v in groups.get("sample_stats", xr.Dataset()).items()}
            idata = self.assembler(theta, stats, counts)
        else:
            idata = az.InferenceData(**groups)
        info = {**self.info, **extra, "draws_per_chain": counts, "draws": self.draws}
        attrs = self.attrs(info)
        for name in idata.groups():
            idata[name].attrs.update(attrs)
        return idata

    def write(self, extra: Mapping[str, Any] | None = None) -> az.InferenceData | None:
        """Write the kept draws to the checkpoint file (atomic); return them (None if none)."""
        from bayesjoint.io import save

        self._last_write = time.monotonic()
        counts = self.counts()
        if self.path is None or (counts == self._written_counts and extra is None):
            return None
        start = time.perf_counter()
        guard = self.signals.deferred() if self.signals is not None else _null()
        with guard:
            idata = self.to_idata({"complete": 0, **(extra or {})})
            if idata is not None:
                save(idata, self.path)
                self._written_counts = counts
        self.writes.append(time.perf_counter() - start)
        self._last_write = time.monotonic()
        return idata


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


# -- the sampling entry point --------------------------------------------------------------------
def _check_options(
    checkpoint: Any, checkpoint_every: Any, resume: Any
) -> tuple[str | None, float, bool]:
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(
            f"sample(checkpoint=...) takes a file path, got {type(checkpoint).__name__}"
        )
    path = None if checkpoint is None else os.path.abspath(os.fspath(checkpoint))
    if path is not None and os.path.isdir(path):
        raise ValueError(
            f"sample(checkpoint={path!r}) is a folder; give a file name such as 'run.nc'"
        )
    if path is not None and not os.path.isdir(os.path.dirname(path)):
        raise ValueError(
            f"sample(checkpoint={path!r}): folder {os.path.dirname(path)!r} does not exist"
        )
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, (int, float)):
        raise TypeError(
            "sample(checkpoint_every=...) takes seconds as a number, got "
            f"{type(checkpoint_every).__name__}"
        )
    if not np.isfinite(checkpoint_every) or checkpoint_every <= 0:
        raise ValueError(
            f"sample(checkpoint_every={checkpoint_every}) must be a positive number of seconds"
        )
    if not isinstance(resume, bool):
        raise TypeError(f"sample(resume=...) takes True or False, got {resume!r}")
    if resume and path is None:
        raise ValueError("sample(resume=True) needs checkpoint=PATH, the file to continue")
    if path is not None and not resume and os.path.exists(path):
        raise ValueError(
            f"checkpoint file {path!r} exists; pass resume=True to continue it, or remove it or "
            "give another path to start afresh"
        )
    return path, float(checkpoint_every), resume


def _resume_seed(seed: int, resumes: int, group: int) -> int:
    state = np.random.SeedSequence([int(seed), int(resumes), int(group)]).generate_state(1)
    return int(state[0] % SEED_BOUND)


def sample_checkpointed(
    problem: Any,
    method: str,
    attrs: Callable[[Mapping[str, Any]], dict[str, Any]],
    *,
    draws: int,
    tune: int,
    chains: int,
    cores: int | None,
    random_seed: int,
    target_accept: float | None,
    progressbar: bool,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: float = CHECKPOINT_EVERY,
    resume: bool = False,
    **kwargs: Any,
) -> az.InferenceData:
    """Sample with clean interrupts, and a checkpoint file when asked; see the module notes.

    Parameters
    ----------
    problem : JointInversion
    method : str
        The route (see :mod:`bayesjoint.inference.routes`).
    attrs : callable
        ``attrs(extra) -> dict``: the provenance of the results given the run's entries.
    draws, tune, chains, cores, random_seed, target_accept, progressbar, **kwargs
        As :meth:`bayesjoint.JointInversion.sample`.
    checkpoint : path, optional
        The file the draws are written to (netCDF, read by :func:`bayesjoint.load`).
    checkpoint_every : float, default 30
        Seconds between writes (nuts, nuts-plain and collapsed routes).
    resume : bool, default False
        Continue the run in ``checkpoint`` to ``draws`` per chain (start afresh when the file
        does not exist).

    Returns
    -------
    arviz.InferenceData
        Provenance with ``complete = 1`` and ``draws_per_chain``.

    Raises
    ------
    SamplingInterrupted
        On SIGINT or SIGTERM, with the kept draws (also in the checkpoint file).
    ValueError
        For a checkpoint that exists without ``resume=True``, a folder, a missing folder, a
        non-positive ``checkpoint_every``, ``smc`` with a checkpoint, or a checkpoint of another
        problem or number of chains.
    """
    from bayesjoint.inference.routes import choose_route, sample_route

    from_folder = False
    if checkpoint is None and not resume:
        default = _default_checkpoint()
        if default is not None:
            (checkpoint, resume), from_folder = default, True
    path, every, resume = _check_options(checkpoint, checkpoint_every, resume)
    sampler = kwargs.get("nuts_sampler", "pymc")
    if path is not None and sampler != "pymc":
        raise ValueError(
            f"sample(checkpoint=..., nuts_sampler={sampler!r}): only PyMC's own NUTS hands its "
            "draws over while it runs, so the checkpoint would stay empty and an interrupt would "
            "keep nothing; drop checkpoint= or use nuts_sampler='pymc'"
        )
    stored = None
    if resume and os.path.exists(path):
        from bayesjoint.io import load

        stored = load(path)
        _check_stored(stored, problem, path, chains, method)
    elif path is not None and choose_route(problem, method, kwargs)[0] == "smc":
        if not from_folder:
            raise ValueError("sample(method='smc') takes no checkpoint; drop checkpoint=")
        path = None
    recorder = ChainRecorder(
        problem.model, chains=chains, draws=draws, path=path, every=every, attrs=attrs
    )
    common = {
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "cores": cores,
        "random_seed": random_seed,
        "target_accept": target_accept,
        "progressbar": progressbar,
    }
    with StopSignals() as signals:
        recorder.signals = signals
        try:
            if stored is not None:
                idata, extra = _resume(problem, stored, recorder, common, kwargs)
            else:
                idata, extra = sample_route(problem, method, recorder=recorder, **common, **kwargs)
        except StopSampling as stop:
            raise _interrupted(stop.signum, recorder, path, draws) from None
        extra = {**extra, "complete": 1, "draws_per_chain": [draws] * chains}
        if stored is not None:
            extra["resumes"] = int(stored.posterior.attrs.get("resumes", 0)) + 1
        idata = _with_provenance(idata, attrs(extra))
        if path is not None:
            from bayesjoint.io import save

            try:
                with signals.deferred():
                    save(idata, path)
            except StopSampling as stop:  # arrived while the finished run was being written
                raise SamplingInterrupted(
                    stop.signum, idata, [draws] * chains, draws, path
                ) from None
    return idata


def _with_provenance(idata: az.InferenceData, attrs: Mapping[str, Any]) -> az.InferenceData:
    for group in idata.groups():
        idata[group].attrs.update(attrs)
    return idata


def _interrupted(signum: int, recorder: ChainRecorder, path: str | None, draws: int) -> Exception:
    """Write what was kept, return the :class:`SamplingInterrupted` to raise."""
    import signal as _signal

    name = _signal.Signals(signum).name
    extra = {"interrupted": name, "complete": 0}
    if path is not None:
        idata = recorder.write(extra)
        if idata is None:
            idata = recorder.to_idata(extra)
    else:
        idata = recorder.to_idata(extra)
    error = SamplingInterrupted(signum, idata, recorder.counts(), draws, path)
    _log.warning("bayesjoint: %s", error.describe())
    return error


def _check_stored(
    stored: az.InferenceData, problem: Any, path: str, chains: int, method: str
) -> None:
    """Refuse a checkpoint of another problem, chain count or route (before sampling)."""
    post = stored.posterior
    if int(post.sizes["chain"]) != chains:
        raise ValueError(
            f"checkpoint {path!r} holds {post.sizes['chain']} chains; resume with "
            f"chains={post.sizes['chain']}"
        )
    for name, var in problem.latent.items():
        if name not in post or tuple(post[name].shape[2:]) != tuple(var.shape):
            raise ValueError(
                f"checkpoint {path!r} was not written by this problem: latent variable {name!r} "
                f"{'is missing' if name not in post else 'has shape ' + str(post[name].shape[2:])}"
                "; give the checkpoint of this problem or another path"
            )
    route = post.attrs.get("route")
    if method not in ("auto", route):
        raise ValueError(
            f"checkpoint {path!r} was sampled by route {route!r}; resume with method='auto' or "
            f"method={route!r}"
        )


def _theta_view(stored: az.InferenceData, names: list[str]) -> az.InferenceData:
    """Return the collapsed route's file as its NUTS run on ``θ`` recorded it."""
    stats = stored.sample_stats.drop_vars("lp", errors="ignore")
    if "lp_marginal" in stats:
        stats = stats.rename({"lp_marginal": "lp"})
    return az.InferenceData(posterior=stored.posterior[names], sample_stats=stats)


def _sampled_size(model: Any) -> int:
    point = model.initial_point()
    return int(sum(point[v.name].size for v in model.value_vars))


def _stored_step_size(stored: az.InferenceData, counts: list[int], ids: list[int]) -> float | None:
    """Return the smallest tuned step size of chains ``ids`` at their last kept draw, or None."""
    if "sample_stats" not in stored.groups() or "step_size" not in stored.sample_stats:
        return None
    values = stored.sample_stats["step_size"].values
    steps = np.array([values[c, counts[c] - 1] for c in ids], dtype=float)
    if not np.all(np.isfinite(steps)) or np.any(steps <= 0):
        return None
    return float(steps.min())


def _kept_variance(
    model: Any, stored: az.InferenceData, counts: list[int], ids: list[int]
) -> np.ndarray | None:
    """Per-coordinate variance of the kept draws of chains ``ids`` in the sampler's coordinates.

    The coordinates are those of ``model.value_vars`` (transformed), in that order, as
    :class:`pymc.NUTS` lays them out. None when fewer than :data:`RESUME_MIN_DRAWS` draws are
    kept or a variance is not positive.
    """
    from bayesjoint.inference.collapsed import _transformed

    if sum(counts[c] for c in ids) < RESUME_MIN_DRAWS:
        return None
    columns = []
    for value in model.value_vars:
        name = model.values_to_rvs[value].name
        values = stored.posterior[name].values
        kept = np.concatenate([np.asarray(values[c, : counts[c]]) for c in ids])
        kept = kept.reshape(kept.shape[0], -1)
        columns.append(_transformed(model, name, kept).reshape(kept.shape[0], -1))
    variance = np.concatenate(columns, axis=1).var(axis=0, ddof=1)
    if not np.all(np.isfinite(variance)) or np.any(variance <= 0):
        return None
    return variance


def _restart_options(
    route: str,
    model: Any,
    stored: az.InferenceData,
    counts: list[int],
    ids: list[int],
    tune: int,
    accept: float,
    kwargs: dict[str, Any],
) -> tuple[dict[str, Any], int, str]:
    """How chains ``ids`` restart: sampler options, tuning draws (discarded), a description.

    ``nuts``: the mass matrix is the Laplace covariance, recomputed deterministically, and the
    stored step size (the smallest of the chains' last ones) is used as it is: no tuning
    (with ``adapt_mass=True`` the adapted scales are not stored, so the chains re-tune).
    ``nuts-plain`` and ``collapsed``: the mass matrix PyMC adapted is not handed out by its
    workers, so a fixed diagonal one is estimated from the kept draws (their variance in the
    sampler's coordinates, which PyMC's adaptation estimates too); the step size starts at the
    stored one and is re-tuned for ``min(tune, RESUME_STEP_TUNE)`` draws. Without a stored
    step size (or too few kept draws) PyMC re-tunes for ``min(tune, RESUME_TUNE)`` draws.
    """
    import pymc as pm
    from pymc.step_methods.hmc.quadpotential import QuadPotentialDiag

    from bayesjoint.inference.nuts import NUTS_OPTIONS

    options: dict[str, Any] = {}
    step = _stored_step_size(stored, counts, ids)
    n = _sampled_size(model)
    if route == "nuts" and kwargs.get("adapt_mass"):
        # the stored step size was tuned for adapted scales that are not stored (the Laplace
        # mass restarts unadapted): the chains re-tune both
        short = min(tune, RESUME_TUNE)
        return options, short, f"the Laplace mass matrix re-adapted for {short} draws (discarded)"
    if step is not None and route == "nuts":
        options["step_scale"] = step * n**0.25
        return options, 0, f"the stored step size {step:.4g} and the Laplace mass matrix, no tuning"
    variance = _kept_variance(model, stored, counts, ids) if step is not None else None
    if variance is None or "step" in kwargs:
        if route == "nuts-plain":
            options["init"] = "adapt_diag"
        short = min(tune, RESUME_TUNE)
        return options, short, f"re-tuned for {short} draws (discarded)"
    step_options = {k: kwargs.pop(k) for k in NUTS_OPTIONS if k in kwargs}
    step_options.update(kwargs.pop("nuts", None) or {})
    step_options.pop("step_scale", None)
    options["step"] = pm.NUTS(
        vars=model.value_vars,
        potential=QuadPotentialDiag(variance),
        step_scale=step * n**0.25,
        target_accept=step_options.pop("target_accept", accept),
        model=model,
        **step_options,
    )
    short = min(tune, RESUME_STEP_TUNE)
    return (
        options,
        short,
        (
            f"a diagonal mass matrix from the kept draws, the step size re-tuned from the stored "
            f"{step:.4g} for {short} draws (discarded)"
        ),
    )


def _resume(
    problem: Any,
    stored: az.InferenceData,
    recorder: ChainRecorder,
    common: dict[str, Any],
    kwargs: dict[str, Any],
) -> tuple[az.InferenceData, dict[str, Any]]:
    """Continue the run in ``stored`` to ``common['draws']`` per chain."""
    from bayesjoint.inference.routes import sample_route

    draws, tune, chains = common["draws"], common["tune"], common["chains"]
    attrs = stored.posterior.attrs
    route = str(attrs.get("route"))
    info = kept_draws(stored)
    counts = [min(n, draws) for n in info["draws_per_chain"]]
    resumes = int(attrs.get("resumes", 0))
    base = {k: attrs[k] for k in ("route", "route_reason") if k in attrs}
    if all(n >= draws for n in counts):
        done = stored.isel(draw=slice(0, draws))
        extra = {k: v for k, v in attrs.items() if k in ("route", "route_reason", "sampler")}
        extra["resumed_from"] = {"draws_per_chain": info["draws_per_chain"], "new_draws": 0}
        extra.update(draws=draws, chains=chains)
        return done, extra
    if route not in STREAMED_ROUTES or kwargs.get("nuts_sampler", "pymc") != "pymc":
        _log.warning("bayesjoint: checkpoint of route %r is incomplete; its run is repeated", route)
        idata, extra = sample_route(problem, route, recorder=recorder, **common, **kwargs)
        extra["resumed_from"] = {
            "draws_per_chain": info["draws_per_chain"],
            "method": "the run is repeated (its draws are independent)",
        }
        return idata, extra
    user_callback = kwargs.pop("callback", None)
    idata_kwargs = dict(kwargs.get("idata_kwargs") or {})
    log_likelihood = bool(idata_kwargs.get("log_likelihood", True))
    if route == "collapsed":
        from bayesjoint.inference.collapsed import (
            THETA_TARGET_ACCEPT,
            CollapsedAssembler,
            collapsed_problem,
        )

        target: Any = collapsed_problem(problem)
        model = target.model
        names = list(target.theta)
        assembler = CollapsedAssembler(problem, common["random_seed"], log_likelihood)
        assembler.set_previous(stored, counts)
        recorder.collapse(model, assembler)
        recorder.set_previous(_theta_view(stored, names), counts)
        accept = THETA_TARGET_ACCEPT if common["target_accept"] is None else common["target_accept"]
    else:
        target, model = problem, problem.model
        names = [rv.name for rv in _free(problem)]
        recorder.set_previous(stored, counts)
        accept = 0.8 if common["target_accept"] is None else common["target_accept"]
    recorder.info = dict(base)
    started = [c for c in range(chains) if 0 < counts[c] < draws]
    fresh = [c for c in range(chains) if counts[c] == 0]
    extra: dict[str, Any] = {}
    how: dict[str, str] = {}
    last = None
    for group, ids in enumerate((started, fresh)):
        if not ids:
            continue
        options = dict(kwargs)
        group_tune = tune
        if group == 0:
            options["initvals"] = [
                {name: stored.posterior[name].values[c, counts[c] - 1] for name in names}
                for c in ids
            ]
            restart, group_tune, how["started"] = _restart_options(
                route, model, stored, counts, ids, tune, accept, options
            )
            options.update(restart)
        else:
            how["fresh"] = f"started afresh, tuned for {tune} draws"
        recorder.begin(tune=group_tune, chain_ids=ids, user_callback=user_callback)
        last, extra = _run_group(
            route,
            target,
            max(draws - counts[c] for c in ids),
            group_tune,
            len(ids),
            seed=_resume_seed(common["random_seed"], resumes, group),
            accept=accept,
            common=common,
            recorder=recorder,
            idata_kwargs=idata_kwargs,
            options=options,
        )
        recorder.tuning_discarded[group] = group_tune * len(ids)
    idata = recorder.to_idata({})
    assert idata is not None and last is not None
    if route != "collapsed":
        for name in ("observed_data", "constant_data"):
            if name in last.groups():
                idata.add_groups({name: last[name]})
        import pymc as pm

        if log_likelihood:
            pm.compute_log_likelihood(idata, model=problem.model, progressbar=False)
    extra = {**extra, **base}
    extra.update(draws=draws, tune=tune, chains=chains)
    extra["resumed_from"] = {
        "draws_per_chain": info["draws_per_chain"],
        "method": "each chain restarts from its last kept draw with "
        + how.get("started", "-")
        + "; chains without kept draws: "
        + how.get("fresh", "none"),
        "tuning_draws_discarded": int(sum(recorder.tuning_discarded.values())),
    }
    return idata, extra


def _run_group(
    route: str,
    target: Any,
    draws: int,
    tune: int,
    chains: int,
    *,
    seed: int,
    accept: float,
    common: Mapping[str, Any],
    recorder: ChainRecorder,
    idata_kwargs: Mapping[str, Any],
    options: dict[str, Any],
) -> tuple[az.InferenceData, dict[str, Any]]:
    """Run one group of resumed chains on its route's sampler; return ``(idata, provenance)``.

    ``target`` is the :class:`~bayesjoint.inference.collapsed.CollapsedProblem` on the
    collapsed route (NUTS on its hyperparameters), the problem otherwise (``sample_nuts``,
    preconditioned on the ``"nuts"`` route). Every draw goes to ``recorder``.
    """
    cores, blas_threads = parallel_plan(chains, common["cores"])  # as a fresh run (routes.py)
    run = {
        "cores": cores,
        "random_seed": seed,
        "progressbar": common["progressbar"],
        "callback": recorder,
        **options,
    }
    if route != "collapsed":
        from bayesjoint.inference.nuts import sample_nuts

        with sampling_plan(blas_threads):
            last, extra = sample_nuts(
                target,
                draws,
                tune,
                chains,
                target_accept=accept,
                precondition=route == "nuts",
                **run,
            )
        return last, {**extra, "cores": cores, "blas_threads": blas_threads}
    from bayesjoint.inference.collapsed import _theta_run

    run.pop("idata_kwargs", None)
    kept = {k: v for k, v in idata_kwargs.items() if k != "log_likelihood"}
    with sampling_plan(blas_threads):
        last = _theta_run(target, draws, tune, chains, accept=accept, idata_kwargs=kept, **run)
    extra = {
        "cores": cores,
        "blas_threads": blas_threads,
        "sampler": "NUTS on the hyperparameters, exact conditional draws of the latent fields",
        "collapsed_hyperparameters": list(target.theta),
        "collapsed_form": target.describe(),
        "target_accept": accept,
    }
    return last, extra


def _free(problem: Any) -> list[Any]:
    return list(problem.model.free_RVs)


# -- a folder of checkpoints for programs that sample several times (case studies) ---------------
_FOLDER: dict[str, Any] = {}


@contextlib.contextmanager
def checkpoint_folder(folder: str | os.PathLike | None, *, resume: bool = False) -> Iterator[None]:
    """Give every :meth:`~bayesjoint.JointInversion.sample` call without ``checkpoint=`` a file.

    Inside the block the ``k``-th such call writes ``folder/run-<k>.nc`` (``k`` from 1), and with
    ``resume=True`` continues it (or starts afresh when it does not exist): a program whose runs
    come in a fixed order resumes every run, finished runs returning at once from their file.

    Parameters
    ----------
    folder : path or None
        Created if missing; None switches the default off inside the block.
    resume : bool, default False
    """
    previous = dict(_FOLDER)
    if folder is not None:
        _check_folder(folder)
    _FOLDER.clear()
    if folder is not None:
        os.makedirs(folder, exist_ok=True)
        _FOLDER.update({"folder": os.fspath(folder), "resume": bool(resume), "count": 0})
    try:
        yield
    finally:
        _FOLDER.clear()
        _FOLDER.update(previous)


def add_checkpoint_arguments(parser: Any) -> None:
    """Add ``--checkpoint FOLDER`` and ``--resume`` to a script's :class:`argparse.ArgumentParser`.

    Use :func:`use_checkpoint_folder` with the parsed values.
    """
    parser.add_argument(
        "--checkpoint",
        default=None,
        metavar="FOLDER",
        help="write each sampling run's draws to FOLDER/run-<k>.nc while sampling (read them "
        "with bj.load after an interrupt). A FOLDER, because a case study samples several "
        "times, the k-th run writing run-<k>.nc ('bayesjoint demo' takes a FILE: it samples "
        "once)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the runs in --checkpoint FOLDER"
    )


def _check_folder(folder: str | os.PathLike) -> None:
    """Refuse a file, or a name ending in ``.nc``, as a checkpoint FOLDER (before sampling)."""
    name = os.fspath(folder)
    if os.path.exists(name) and not os.path.isdir(name):
        raise ValueError(
            f"--checkpoint {name!r} is a file; a case study samples several times and takes a "
            "FOLDER (its k-th run writes FOLDER/run-<k>.nc): give a folder name"
        )
    if not os.path.exists(name) and name.rstrip(os.sep).endswith(".nc"):
        raise ValueError(
            f"--checkpoint {name!r} looks like a file name; a case study samples several times "
            "and takes a FOLDER (its k-th run writes FOLDER/run-<k>.nc): give a folder name "
            "such as 'checkpoints' ('bayesjoint demo' and sample(checkpoint=...) take a file)"
        )


def use_checkpoint_folder(folder: str | os.PathLike | None, *, resume: bool = False) -> None:
    """Like :func:`checkpoint_folder`, for the rest of the program (scripts' ``--checkpoint``).

    Raises
    ------
    ValueError
        For an existing file or a missing name ending in ``.nc`` (a FOLDER is expected), and
        for ``resume`` without a folder.
    """
    _FOLDER.clear()
    if folder is not None:
        _check_folder(folder)
        os.makedirs(folder, exist_ok=True)
        _FOLDER.update({"folder": os.fspath(folder), "resume": bool(resume), "count": 0})
    elif resume:
        raise ValueError("--resume needs --checkpoint FOLDER, the checkpoints to continue")


def _default_checkpoint() -> tuple[str, bool] | None:
    """Return the next file of the active checkpoint folder and its resume flag, or None."""
    if not _FOLDER:
        return None
    _FOLDER["count"] += 1
    path = os.path.join(_FOLDER["folder"], f"run-{_FOLDER['count']}.nc")
    return path, _FOLDER["resume"]
