"""Names, roles and labels of the variables in an InferenceData, read from its provenance."""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import arviz as az
import numpy as np
import xarray as xr

from bayesjoint._labels import element_labels

_SAMPLE_DIMS = ("chain", "draw")


# -- helpers ---------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence numerical warnings of ArviZ/numpy; their content is reported as checks instead."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def _attrs_json(idata: Any, key: str) -> list[dict]:
    for group in ("posterior", "log_likelihood", "observed_data"):
        if group in idata.groups():
            raw = idata[group].attrs.get(key)
            if raw is None:
                continue
            try:
                value = json.loads(raw) if isinstance(raw, str) else raw
            except ValueError:
                return []
            return value if isinstance(value, list) else []
    return []


def latent_info(idata: Any) -> dict[str, dict]:
    """Return the latent variables recorded in the provenance (name → kind, shape, units, prior).

    Examples
    --------
    >>> import arviz as az, numpy as np
    >>> idata = az.from_dict(posterior={"x": np.zeros((1, 5))})
    >>> latent_info(idata)
    {}
    """
    return {d["name"]: d for d in _attrs_json(idata, "latent") if "name" in d}


def modality_info(idata: Any) -> dict[str, dict]:
    """Return the modalities recorded in the provenance (name → noise, units, n_data)."""
    return {d["name"]: d for d in _attrs_json(idata, "modalities") if "name" in d}


def modality_names(idata: Any, problem: Any = None) -> list[str]:
    """Return the modality names: from the problem, the provenance, or the log-likelihood."""
    if problem is not None:
        return list(problem.modalities)
    names = list(modality_info(idata))
    if names:
        return names
    for group in ("log_likelihood", "observed_data"):
        if group in idata.groups():
            return list(idata[group].data_vars)
    return []


def _role(name: str, latent: Mapping[str, dict], modalities: Sequence[str]) -> tuple[str, str]:
    """Return ``(group, role)`` of a posterior variable."""
    if name in latent:
        return name, str(latent[name].get("kind", "latent"))
    for suffix, role in (("_white", "whitened field"), ("_sigma", "prior sd")):
        stem = name[: -len(suffix)] if name.endswith(suffix) else None
        if stem and stem in latent:
            return stem, role
    for suffix, role in (
        ("_sigma", "noise sd"),
        ("_noise_scale", "noise scale"),
        ("_discrepancy_scale", "discrepancy scale"),
    ):
        stem = name[: -len(suffix)] if name.endswith(suffix) else None
        if stem and stem in modalities:
            return stem, role
    for suffix in ("_lengthscale", "_amplitude", "_basis"):  # a discrepancy process's variables
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], f"discrepancy {suffix[1:]}"
    return name, "latent" if not latent else "other"


def _element_labels(da: xr.DataArray) -> list[str]:
    """Return one label per element of a posterior variable (its non-sample dims, C order)."""
    return element_labels(str(da.name), [da.sizes[d] for d in da.dims if d not in _SAMPLE_DIMS])


def _flat(da: xr.DataArray) -> np.ndarray:
    """Return ``(chain, draw, k)`` values of a variable, C-order over its other dims."""
    other = [d for d in da.dims if d not in _SAMPLE_DIMS]
    arr = da.transpose("chain", "draw", *other).values
    return arr.reshape(arr.shape[0], arr.shape[1], -1).astype(float)


def _var_names(post: xr.Dataset, var_names: Sequence[str] | None) -> list[str]:
    """Return ``var_names`` (default: every variable of ``post``), checked to be in ``post``."""
    names = list(post.data_vars) if var_names is None else list(var_names)
    missing = [n for n in names if n not in post]
    if missing:
        raise ValueError(
            f"var_names: {missing} not in the posterior; it has {list(post.data_vars)}"
        )
    return names


def _numeric_vars(post: xr.Dataset, var_names: Sequence[str] | None) -> list[str]:
    names = _var_names(post, var_names)
    return [n for n in names if np.issubdtype(post[n].dtype, np.number)]


def _load_if_path(idata: Any) -> Any:
    if isinstance(idata, (str, os.PathLike)):
        from bayesjoint.io import load

        return load(idata)
    if not isinstance(idata, az.InferenceData):
        raise TypeError(
            f"diagnose needs an arviz.InferenceData or a path to a saved report, got "
            f"{type(idata).__name__}"
        )
    return idata
