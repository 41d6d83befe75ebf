"""Saving and loading results as netCDF, with provenance."""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import re
import secrets
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

import arviz as az
import h5py
import xarray as xr

from bayesjoint._version import __version__

__all__ = ["load", "provenance", "save"]

_PACKAGES = ("bayesjoint", "pymc", "pytensor", "arviz", "numpy", "scipy", "xarray")
_ENGINE = "h5netcdf"
_TEMP_SUFFIX = ".tmp"


@functools.cache  # read once per process: metadata lookups cost milliseconds
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


def _temporary_name(path: str) -> str:
    """Return a fresh hidden name next to ``path`` for the file being written.

    The name carries the writer's process id, so that a later save can tell the remnant of a
    killed writer (removed) from a save still under way in another process (left alone).
    """
    folder, base = os.path.split(path)
    token = secrets.token_hex(4)
    return os.path.join(folder, f".{base}.{os.getpid()}.{token}{_TEMP_SUFFIX}")


def _remove_stale_temporaries(path: str) -> list[str]:
    """Remove the temporary files of earlier saves to ``path`` whose writer no longer runs."""
    folder, base = os.path.split(path)
    prefix = f".{base}."
    removed = []
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return removed
    # exactly ".<base>.<pid>.<8 hex>.tmp": a save to "run.7" writes ".run.7.<pid>...", which
    # must not pass for a leftover of "run"
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.[0-9a-f]{8}" + re.escape(_TEMP_SUFFIX) + "$")
    for name in names:
        match = pattern.match(name)
        if match is None or _process_alive(int(match.group(1))):
            continue
        try:
            os.remove(os.path.join(folder, name))
            removed.append(name)
        except OSError:  # pragma: no cover - removed by someone else meanwhile
            pass
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # another user's process: alive, leave its file
        return True
    return True


def _fsync_folder(folder: str) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems without folder fsync
        pass
    finally:
        os.close(fd)


def save(idata: az.InferenceData, path: str | os.PathLike) -> str:
    """Save an InferenceData as netCDF (HDF5), every group plus provenance, atomically.

    Parameters
    ----------
    idata : arviz.InferenceData
        Results, e.g. from :meth:`bayesjoint.JointInversion.sample`. Groups lacking provenance get
        the package versions and the creation time.
    path : str or path-like
        Output file, conventionally ``*.nc``. Replaced if it exists.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    TypeError
        When ``idata`` is not an InferenceData.
    ValueError
        When ``path`` is an existing folder, or its folder does not exist.

    Notes
    -----
    The file is written under a hidden temporary name in the same folder
    (``.<name>.<pid>.<random>.tmp``), flushed to disk (``fsync``) and then renamed over ``path``
    (``os.replace``, atomic on POSIX and Windows). A save killed at any moment therefore
    leaves either the old file or the new one at ``path``, never a partial file; the remnant of a
    killed writer is removed by the next save to the same path. Loading a file, editing it and
    saving it to the same path works, because :func:`load` keeps no file open.

    Arrays, coordinates and attributes round-trip exactly through :func:`load`.
    """
    if not isinstance(idata, az.InferenceData):
        raise TypeError(f"bj.save needs an arviz.InferenceData, got {type(idata).__name__}")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"bj.save: {path!r} is a folder; give a file name such as 'run.nc'")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"bj.save: folder {folder!r} does not exist; create it first")
    missing = [g for g in idata.groups() if "bayesjoint_version" not in idata[g].attrs]
    if missing:
        base = provenance()
        for group in missing:
            for key, value in base.items():
                idata[group].attrs.setdefault(key, value)
    return _atomic_write(path, lambda temporary: idata.to_netcdf(temporary, engine=_ENGINE))


def _atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> str:
    """Write a file atomically: ``write(temporary)``, ``fsync``, then rename over ``path``.

    The temporary is a hidden name in the same folder (:func:`_temporary_name`); the remnants of
    killed writers to ``path`` are removed first; on any failure the temporary is removed and
    ``path`` keeps its old content; the new file keeps the old one's permissions.
    """
    path = os.fspath(path)
    _remove_stale_temporaries(path)
    temporary = _temporary_name(path)
    try:
        write(temporary)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        _copy_mode(path, temporary)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.remove(temporary)
        except OSError:
            pass
        raise
    _fsync_folder(os.path.dirname(path))
    return path


def _copy_mode(path: str, temporary: str) -> None:
    """Give the new file the permissions of the file it replaces (else the umask's default)."""
    try:
        mode = os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    try:
        os.chmod(temporary, mode)
    except OSError:  # pragma: no cover - file systems without permissions
        pass


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _hdf5_end(head: bytes) -> int | None:
    """Return the file size the HDF5 superblock at the start of ``head`` declares, if readable.

    Superblock versions 0 and 1 store the end-of-file address after the base and free-space
    addresses; versions 2 and 3 after the base and extension addresses (HDF5 file format
    specification, section II.A).
    """
    if len(head) < 16 or not head.startswith(_HDF5_SIGNATURE):
        return None
    version = head[8]
    if version in (0, 1):
        size = head[13]
        start = 24 if version == 0 else 28
    elif version in (2, 3):
        size = head[9]
        start = 12
    else:
        return None
    if size not in (2, 4, 8) or len(head) < start + 3 * size:
        return None
    base = int.from_bytes(head[start : start + size], "little")
    end = int.from_bytes(head[start + 2 * size : start + 3 * size], "little")
    return base + end


def _file_problem(path: str) -> str | None:
    """Return why ``path`` cannot be a bayesjoint file judging by its bytes, or None."""
    size = os.path.getsize(path)
    if size == 0:
        return "it is empty (0 bytes), e.g. the remnant of a write that never finished"
    with open(path, "rb") as handle:
        head = handle.read(64)
    if head[:3] == b"CDF" and len(head) > 3 and head[3] in (1, 2, 5):
        return (
            "it is a netCDF-3 (classic) file; bayesjoint reads netCDF-4/HDF5 files as bj.save "
            "writes them (open it with xarray.open_dataset, or convert it with "
            "`nccopy -k nc4 IN OUT`)"
        )
    if not head.startswith(_HDF5_SIGNATURE):
        return (
            f"it is neither netCDF-4/HDF5 nor netCDF-3 (it starts with {head[:8]!r}); "
            "it is corrupt or another kind of file"
        )
    end = _hdf5_end(head)
    if end is not None and size < end:
        return (
            f"it is truncated: {size} bytes of the {end} its header declares (a copy or a write "
            "cut short); save the results again or restore the file"
        )
    return None


def load(path: str | os.PathLike) -> az.InferenceData:
    """Load a netCDF file written by :func:`save`, fully into memory, and close it.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save` (or by the ``bayesjoint`` command's ``--out``).

    Returns
    -------
    arviz.InferenceData
        Every group, in memory; no file handle stays open, so the same path can be saved to
        again at once.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        Saying which: ``path`` is a folder; the file is empty, truncated, corrupt, a netCDF-3
        file, or a netCDF-4 file not written by bayesjoint (no InferenceData groups, or no
        ``bayesjoint_version`` provenance).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a folder, not a netCDF file written by bj.save")
    problem = _file_problem(path)
    if problem is not None:
        raise ValueError(f"{path!r} is not a readable netCDF file: {problem}")
    try:
        with h5py.File(path, mode="r") as handle:
            names = [name for name, item in handle.items() if isinstance(item, h5py.Group)]
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ValueError(
            f"{path!r} is not a readable netCDF file: it is corrupt (HDF5 cannot read it: {err})"
        ) from None
    if not names:
        raise ValueError(
            f"{path!r} is a netCDF-4 file but not one written by bj.save: it has no "
            "InferenceData groups (posterior, sample_stats, ...); open it with "
            "xarray.open_dataset"
        )
    groups = {}
    try:
        for name in names:
            with xr.open_dataset(path, group=name, engine=_ENGINE) as dataset:
                groups[name] = dataset.load()
        with xr.open_dataset(path, engine=_ENGINE) as root:
            attrs = dict(root.attrs)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as err:
        raise ValueError(
            f"{path!r} is not a readable netCDF file: it is corrupt (reading its groups "
            f"failed: {err})"
        ) from None
    if not any("bayesjoint_version" in data.attrs for data in groups.values()):
        raise ValueError(
            f"{path!r} is a netCDF-4 file but not one written by bj.save (no "
            "'bayesjoint_version' provenance in any group); read it with arviz.from_netcdf"
        )
    return az.InferenceData(attrs=attrs, **groups)
