"""Modality: one instrument's physics, observation operator, data and noise — a likelihood block."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import xarray as xr

from bayesjoint._checks import check_dim_names, check_units, checked_init
from bayesjoint.discrepancy.settings import as_term
from bayesjoint.latent import check_name, dims_and_coords
from bayesjoint.noise import Noise
from bayesjoint.observe import Observation, as_observation
from bayesjoint.physics.base import Physics, as_physics

__all__ = ["Modality"]


class Modality:
    """One kind of instrument: predicts its data as ``H(F(m))`` and scores them with a noise model.

    Parameters
    ----------
    name : str
        Modality name; its observed variable, log-likelihood and posterior-predictive variables
        carry this name.
    physics : Physics or callable
        The forward map ``F``: a :mod:`bayesjoint.physics` object or any callable
        ``latent -> tensor`` where ``latent`` maps latent names to pytensor tensors.
    data : array_like or xarray.DataArray
        Observed data. A DataArray's dims and coordinates become the modality's data dims;
        a numpy array gets dims ``'<name>_obs'`` (1-D) or ``'<name>_obs_<k>'``.
    noise : Noise
        Noise model, e.g. ``bj.noise.Gaussian(0.05)``.
    observe : Observation or callable, optional
        The observation operator ``H``; identity when omitted.
    units : str, optional
        Data units (recorded in reports). Defaults to a DataArray's ``units`` attribute.
    dims : sequence of str, optional
        Data dimension names for numpy data.
    coords : mapping of str to array_like, optional
        Coordinate values for numpy data.
    discrepancy : bayesjoint.discrepancy.GP or DiscrepancyTerm, optional
        A Gaussian-process model discrepancy added to the prediction (1-D data). Attaching the
        same GP to several modalities makes it shared; see :mod:`bayesjoint.discrepancy`.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> m = bj.Modality("gravity", physics=bj.physics.Linear(np.eye(3), input="x"),
    ...                 data=np.zeros(3), noise=bj.noise.Gaussian(0.1), units="mGal")
    >>> m.dims, m.data.shape
    (('gravity_obs',), (3,))
    """

    @checked_init("bj.Modality")
    def __init__(
        self,
        name: str,
        physics: Any,
        data: Any,
        noise: Noise,
        observe: Observation | Any = None,
        *,
        units: str | None = None,
        dims: Sequence[str] | None = None,
        coords: Mapping[str, Any] | None = None,
        discrepancy: Any = None,
    ):
        self.name = check_name(name, "Modality")
        try:
            self.physics: Physics = as_physics(physics)
            self.observe: Observation = as_observation(observe)
        except TypeError as err:
            raise TypeError(f"modality {name!r}: {err}") from None
        if not isinstance(noise, Noise):
            raise TypeError(
                f"modality {name!r}: noise must be a bayesjoint noise model, e.g. "
                f"bj.noise.Gaussian(0.1), got {type(noise).__name__}"
            )
        self.noise = noise
        self.data, self.dims, self.coords, data_units = self._read_data(data, dims, coords)
        self.units = check_units(
            units if units is not None else data_units, f"modality {self.name!r}"
        )
        self.noise.validate(self.name, self.data.shape)
        self.discrepancy = as_term(discrepancy, self.name)
        self.discrepancy_coords = None
        if self.discrepancy is not None:
            if self.data.ndim != 1:
                raise ValueError(
                    f"modality {self.name!r}: a discrepancy needs 1-D data, got shape "
                    f"{self.data.shape}; flatten the data and give the coordinates per datum"
                )
            self.discrepancy_coords = self.discrepancy.resolve_coords(
                self.name, self.data, self.coords
            )

    def _read_data(self, data, dims, coords):
        units = None
        if isinstance(data, xr.DataArray):
            if dims is not None or coords is not None:
                raise TypeError(
                    f"modality {self.name!r}: data is a DataArray; its dims and coords are used, "
                    "so do not pass dims= or coords="
                )
            values = np.asarray(data.values)
            dims_t = check_dim_names(
                tuple(str(d) for d in data.dims), f"modality {self.name!r}: data dims"
            )
            coords_d = {
                d: np.asarray(data.coords[d].values) if d in data.coords else np.arange(n)
                for d, n in zip(dims_t, values.shape, strict=True)
            }
            units = data.attrs.get("units")
        else:
            try:
                values = np.asarray(data)
            except Exception as err:  # pragma: no cover - numpy's own message is clear
                raise TypeError(f"modality {self.name!r}: data is not array-like: {err}") from None
            if values.size == 0:
                raise ValueError(
                    f"modality {self.name!r}: data are empty (shape {values.shape}); give at "
                    "least one datum"
                )
            if values.ndim == 0:
                raise ValueError(
                    f"modality {self.name!r}: data must have at least one dimension; "
                    "wrap a single value as [value]"
                )
            dims_t, coords_d = dims_and_coords(
                f"modality {self.name!r}", values.shape, dims, coords, f"{self.name}_obs"
            )
        if not np.issubdtype(values.dtype, np.number) or np.iscomplexobj(values):
            raise TypeError(
                f"modality {self.name!r}: data must be real numbers, got dtype {values.dtype}"
            )
        values = values.astype(float)
        bad = ~np.isfinite(values)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"modality {self.name!r}: data contain {int(bad.sum())} NaN or inf value(s) "
                f"(first at index {first}); remove those data (and their noise entries) before "
                "building the modality"
            )
        return values, dims_t, coords_d, units

    @property
    def n_data(self) -> int:
        """Number of data values."""
        return int(self.data.size)

    def predict(self, latent: Mapping[str, Any]) -> Any:
        """Return ``H(F(m))`` for a mapping of latent tensors (or numpy arrays)."""
        return self.observe(self.physics(latent))

    def predicted_shape(
        self, latent_shapes: Mapping[str, tuple[int, ...]]
    ) -> tuple[int, ...] | None:
        """Return the predicted data shape from the physics and observation, if statically known."""
        if not self.physics.inputs:
            return None
        state = self.physics.output_shape({k: latent_shapes[k] for k in self.physics.inputs})
        return None if state is None else self.observe.output_shape(state)

    def linear_operator(
        self, latent_shapes: Mapping[str, tuple[int, ...]]
    ) -> tuple[np.ndarray | sp.spmatrix, np.ndarray] | None:
        """Return ``(A, b)`` with prediction ``A @ concat(flat physics inputs) + b``, else None."""
        phys = self.physics.linear_operator()
        if phys is None:
            return None
        a_phys, b_phys = phys
        state_shape = self.physics.output_shape({k: latent_shapes[k] for k in self.physics.inputs})
        if state_shape is None:
            return None
        h = self.observe.linear_operator(state_shape)
        if h is None:
            return None
        return h @ a_phys, np.asarray(h @ b_phys).ravel()

    def __repr__(self) -> str:
        return (
            f"Modality({self.name!r}, physics={self.physics!r}, observe={self.observe!r}, "
            f"n_data={self.n_data}, noise={self.noise!r})"
        )
