"""Saving and loading results as netCDF, with provenance."""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import arviz as az

from bayesjoint._version import __version__

__all__ = ["load", "provenance", "save"]

_PACKAGES = ("bayesjoint", "pymc", "pytensor", "arviz", "numpy", "scipy", "xarray")
_ENGINE = "h5netcdf"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        if package == "bayesjoint":
            return __version__
        return "unknown"


def provenance(
    random_seed: Any = None, modalities: Any = None, extra: Mapping[str, Any] | None = None
) -> dict[str, str | int]:
    """Return the provenance attributes written into every saved file.

    Parameters
    ----------
    random_seed : int or None
        Seed of the run that produced the results.
    modalities : sequence of Modality, optional
        Their names, noise models, data units and sizes are recorded.
    extra : mapping, optional
        Further JSON-serializable entries.

    Returns
    -------
    dict
        Flat netCDF-safe attributes: ``bayesjoint_version``, ``<package>_version``,
        ``random_seed``, ``bayesjoint_created_at`` (UTC ISO 8601), ``modalities`` (JSON).

    Examples
    --------
    >>> from bayesjoint.io import provenance
    >>> sorted(provenance(random_seed=1))[:3]
    ['arviz_version', 'bayesjoint_created_at', 'bayesjoint_version']
    """
    attrs: dict[str, str | int] = {f"{p}_version": _version(p) for p in _PACKAGES}
    attrs["random_seed"] = "none" if random_seed is None else str(random_seed)
    attrs["bayesjoint_created_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat()
    described = []
    for mod in modalities or ():
        described.append(
            {
                "name": mod.name,
                "noise": mod.noise.describe(),
                "units": mod.units,
                "n_data": mod.n_data,
                "physics": repr(mod.physics),
                "observe": repr(mod.observe),
            }
        )
    attrs["modalities"] = json.dumps(described)
    for key, value in (extra or {}).items():
        attrs[key] = value if isinstance(value, (str, int, float)) else json.dumps(value)
    return attrs


def attach_provenance(idata: az.InferenceData, attrs: Mapping[str, Any]) -> az.InferenceData:
    """Write ``attrs`` into the attributes of every group of ``idata`` (in place)."""
    for group in idata.groups():
        idata[group].attrs.update(attrs)
    return idata


def save(idata: az.InferenceData, path: str | os.PathLike) -> str:
    """Save an InferenceData as netCDF (HDF5), every group plus provenance.

    Parameters
    ----------
    idata : arviz.InferenceData
        Results, e.g. from :meth:`bayesjoint.JointInversion.sample`. Groups lacking provenance get
        the package versions and the creation time.
    path : str or path-like
        Output file, conventionally ``*.nc``. Overwritten if it exists.

    Returns
    -------
    str
        The path written.

    Notes
    -----
    Arrays, coordinates and attributes round-trip exactly through :func:`load`.
    """
    if not isinstance(idata, az.InferenceData):
        raise TypeError(f"bj.save needs an arviz.InferenceData, got {type(idata).__name__}")
    missing = [g for g in idata.groups() if "bayesjoint_version" not in idata[g].attrs]
    if missing:
        base = provenance()
        for group in missing:
            for key, value in base.items():
                idata[group].attrs.setdefault(key, value)
    path = os.fspath(path)
    idata.to_netcdf(path, engine=_ENGINE)
    return path


def load(path: str | os.PathLike) -> az.InferenceData:
    """Load a netCDF file written by :func:`save`, fully into memory.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is not a readable netCDF/HDF5 file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    try:
        idata = az.from_netcdf(path, engine=_ENGINE)
    except OSError as err:
        raise ValueError(f"{path!r} is not a readable netCDF file ({err})") from None
    for group in idata.groups():
        idata[group].load()
    return idata
