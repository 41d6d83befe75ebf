"""Batch inversions: one problem, many data sets (sites, survey lines, time steps), on Dask."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bayesjoint.calibration import portable, run_tasks

__all__ = ["sample_many"]


def _fit_one(problem: Any, sample_kwargs: Mapping[str, Any], item: tuple[str, Any, int]) -> Any:
    """Fit one data set (a worker task): ``problem.with_data(data).sample(**sample_kwargs)``."""
    _key, data, seed = item
    return problem.with_data(data).sample(random_seed=seed, **sample_kwargs)


def _keys(datasets: Any) -> list[tuple[str, Mapping[str, Any]]]:
    if isinstance(datasets, Mapping):
        pairs = [(str(k), v) for k, v in datasets.items()]
        seen: dict[str, Any] = {}
        for k in datasets:
            if str(k) in seen:
                raise ValueError(
                    f"sample_many: data set names {seen[str(k)]!r} and {k!r} both give the file "
                    f"name {str(k)!r}; give names that differ as text"
                )
            seen[str(k)] = k
    elif isinstance(datasets, Sequence) and not isinstance(datasets, str | bytes):
        pairs = [(f"{k:06d}", v) for k, v in enumerate(datasets)]
    else:
        raise TypeError(
            "sample_many: datasets must be a sequence of {modality: data} mappings or a mapping "
            f"of name to such mappings, got {type(datasets).__name__}"
        )
    for key, value in pairs:
        if not isinstance(value, Mapping):
            raise TypeError(
                f"sample_many: data set {key!r} must be a mapping of modality name to data, got "
                f"{type(value).__name__}"
            )
        if not key or "/" in key or key.startswith("."):
            raise ValueError(
                f"sample_many: data set name {key!r} cannot name a file; use names without "
                "'/' that do not start with '.'"
            )
    return pairs


def sample_many(
    problem: Any,
    datasets: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]],
    *,
    client: Any = None,
    store: str | os.PathLike | None = None,
    random_seed: int = 0,
    n_workers: int | None = None,
    **sample_kwargs: Any,
) -> dict[str, Any]:
    """Invert many data sets with one problem: one ``sample`` per data set, each saved.

    Parameters
    ----------
    problem : JointInversion
        The model; each data set replaces the data of the modalities it names
        (:meth:`~bayesjoint.JointInversion.with_data`).
    datasets : sequence or mapping
        ``[{modality: data, ...}, ...]`` (named ``000000``, ``000001``, ...) or
        ``{name: {modality: data, ...}, ...}``.
    client : None, "serial", dask.distributed.Client or str
        Where the fits run (:func:`bayesjoint.calibration.run_tasks`): None starts a
        ``LocalCluster`` of one-thread worker processes on this machine.
    store : path, optional
        Folder for ``<name>.nc`` per data set (:func:`bayesjoint.save`, atomic). A data set whose
        file exists is not fitted again (the run resumes) and its result is read from the file.
        Without a store the results are returned in memory only.
    random_seed : int, default 0
        Data set ``k`` (in order) is sampled with the seed drawn from ``[random_seed, k]``.
    n_workers : int, optional
        Workers of the LocalCluster started when ``client`` is None.
    **sample_kwargs
        Passed to :meth:`~bayesjoint.JointInversion.sample` (``draws``, ``method``, ...);
        ``progressbar`` is False unless given, and progress is logged (logger ``bayesjoint``)
        as fits finish.

    Returns
    -------
    dict of str to arviz.InferenceData or str
        Per data set: its InferenceData, or, with a ``store``, the path of its file.

    Raises
    ------
    TypeError, ValueError
        For data sets that are not mappings of modality names to data, names that cannot name
        a file or that give the same file name (``1`` and ``"1"``), or data that do not fit
        the problem (checked for every data set before any fit).
    """
    from bayesjoint.io import save

    if "random_seed" in sample_kwargs:  # pragma: no cover - caught by the signature
        raise TypeError("sample_many takes random_seed once, for all data sets")
    pairs = _keys(datasets)
    for key, data in pairs:  # every data set is checked before anything runs
        try:
            problem.with_data(data)
        except (TypeError, ValueError) as err:
            raise type(err)(f"sample_many: data set {key!r}: {err}") from None
    sample_kwargs.setdefault("progressbar", False)
    sample_kwargs.setdefault("cores", 1)
    seeds = {
        key: int(np.random.SeedSequence([int(random_seed), k]).generate_state(1)[0] % (2**31 - 1))
        for k, (key, _) in enumerate(pairs)
    }
    results: dict[str, Any] = {}
    if store is not None:
        store = os.fspath(store)
        os.makedirs(store, exist_ok=True)
        for key, _ in pairs:
            path = os.path.join(store, f"{key}.nc")
            if os.path.exists(path):
                results[key] = path
    todo = [(key, dict(data), seeds[key]) for key, data in pairs if key not in results]

    def keep(item: tuple[str, Any, int], idata: Any) -> None:
        key = item[0]
        if store is None:
            results[key] = idata
        else:
            results[key] = save(idata, os.path.join(store, f"{key}.nc"))

    shared = portable(problem) if client != "serial" else problem
    run_tasks(
        _fit_one,
        [shared, dict(sample_kwargs)],
        todo,
        keep,
        client=client,
        n_workers=n_workers,
        label="inversion",
    )
    return {key: results[key] for key, _ in pairs}
