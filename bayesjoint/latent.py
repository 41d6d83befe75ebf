"""The shared latent model: named scalar/vector parameters and property fields on grids."""

from __future__ import annotations

import keyword
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bayesjoint._checks import (
    as_shape,
    check_dim_names,
    check_memory,
    check_units,
    checked_init,
    latent_bytes,
)
from bayesjoint._labels import element_labels
from bayesjoint.grid import Grid
from bayesjoint.priors import Prior, as_prior

__all__ = ["Field", "Grid", "LatentVariable", "Parameter", "check_name"]


def check_name(name: Any, what: str) -> str:
    """Validate a variable name (non-empty identifier, usable in netCDF and PyMC)."""
    if not isinstance(name, str):
        raise TypeError(f"{what} name must be a string, got {type(name).__name__}")
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(
            f"{what} name {name!r} is not a valid identifier; use letters, digits and underscores "
            "(e.g. 'gravity' or 'log_resistivity')"
        )
    return name


def dims_and_coords(
    owner: str,
    shape: tuple[int, ...],
    dims: str | Sequence[str] | None,
    coords: Mapping[str, Any] | None,
    stem: str,
) -> tuple[tuple[str, ...], dict[str, np.ndarray]]:
    """Return checked dimension names and coordinates of an array (a parameter, a data set).

    Parameters
    ----------
    owner : str
        Named in the error messages, e.g. ``"Parameter 'x'"``.
    shape : tuple of int
    dims : str or sequence of str, optional
        One name per axis; default ``stem`` (1-D) or ``'<stem>_<k>'``.
    coords : mapping of str to array_like, optional
        Coordinate values per dim, each of shape ``(n,)``; default ``0 .. n-1``.
    stem : str
        Stem of the default dim names.

    Raises
    ------
    ValueError
        For a wrong number of dims, coordinates of the wrong shape, or coordinates of unknown
        dims.

    Examples
    --------
    >>> dims_and_coords("Parameter 'v'", (2, 3), None, {"v_index_0": [10, 20]}, "v_index")[0]
    ('v_index_0', 'v_index_1')
    """
    if dims is None:
        dims_t = (stem,) if len(shape) == 1 else tuple(f"{stem}_{k}" for k in range(len(shape)))
    else:
        if not isinstance(dims, (str, Sequence)):
            raise TypeError(
                f"{owner}: dims must be a str or a sequence of str, got {type(dims).__name__}"
            )
        dims_t = (dims,) if isinstance(dims, str) else tuple(dims)
        check_dim_names(dims_t, f"{owner}: dims")
        if len(dims_t) != len(shape):
            raise ValueError(
                f"{owner}: {len(dims_t)} dims {dims_t} for shape {shape}; give one dim name per "
                "axis"
            )
    if coords is not None and not isinstance(coords, Mapping):
        raise TypeError(
            f"{owner}: coords must be a mapping of dim name to values, got {type(coords).__name__}"
        )
    given = dict(coords or {})
    out = {}
    for dim, n in zip(dims_t, shape, strict=True):
        values = np.asarray(given.pop(dim, np.arange(n)))
        if values.shape != (n,):
            raise ValueError(f"{owner}: coords[{dim!r}] has shape {values.shape}, expected ({n},)")
        out[dim] = values
    if given:
        raise ValueError(f"{owner}: coords for unknown dims {sorted(given)}")
    return dims_t, out


class LatentVariable:
    """Common interface of the latent model's parts (:class:`Parameter`, :class:`Field`).

    Attributes
    ----------
    name : str
    shape : tuple of int
    dims : tuple of str
        Dimension names in the InferenceData.
    coords : dict
        Coordinate values per dimension.
    prior : Prior
    units : str or None
    grid : Grid or None
    """

    name: str
    shape: tuple[int, ...]
    dims: tuple[str, ...]
    coords: dict[str, np.ndarray]
    prior: Prior
    units: str | None
    grid: Grid | None = None
    kind: str = "latent"

    @property
    def size(self) -> int:
        """Number of scalar values."""
        return int(np.prod(self.shape, dtype=int))

    def build(self) -> Any:
        """Add the variable (and any auxiliary variables of its prior) to the current model."""
        return self.prior.build(self.name, self.shape, self.dims or None, self.grid)

    def labels(self) -> list[str]:
        """Return one label per flattened (C-order) element, e.g. ``'x[3]'`` or ``'rho[2, 0]'``."""
        return element_labels(self.name, self.shape)


class Parameter(LatentVariable):
    """A named scalar or array parameter of the shared latent model.

    Parameters
    ----------
    name : str
        Variable name in the model and the InferenceData.
    shape : int or tuple of int, default ()
        Shape; ``()`` is a scalar.
    prior : Prior
        Prior family, e.g. ``bj.priors.Normal(0, 1)``.
    dims : sequence of str, optional
        Dimension names; default ``'<name>_index'`` (1-D) or ``'<name>_index_<k>'``.
    coords : mapping of str to array_like, optional
        Coordinate values for ``dims``; default ``0 .. n-1``.
    units : str, optional
        Physical units, recorded in reports.

    Examples
    --------
    >>> import bayesjoint as bj
    >>> x = bj.Parameter("x", shape=3, prior=bj.priors.Normal(0.0, 1.0))
    >>> x.dims, x.size
    (('x_index',), 3)
    """

    kind = "parameter"

    @checked_init("bj.Parameter")
    def __init__(
        self,
        name: str,
        shape: int | Sequence[int] = (),
        prior: Prior | None = None,
        *,
        dims: Sequence[str] | None = None,
        coords: Mapping[str, Any] | None = None,
        units: str | None = None,
    ):
        self.name = check_name(name, "Parameter")
        shape_t = as_shape(shape, f"Parameter {name!r}: shape")
        size = int(np.prod(shape_t, dtype=float))
        check_memory(
            latent_bytes(size, len(shape_t)),
            f"Parameter {name!r} of shape {shape_t} ({size:.3g} values)",
            "give a smaller shape",
        )
        self.shape = shape_t
        if prior is None:
            raise TypeError(f"Parameter {name!r}: give a prior, e.g. prior=bj.priors.Normal(0, 1)")
        self.prior = as_prior(prior, f"Parameter {name!r}")
        self.dims, self.coords = dims_and_coords(
            f"Parameter {name!r}", shape_t, dims, coords, f"{name}_index"
        )
        self.units = check_units(units, f"Parameter {name!r}")
        self.prior.validate(f"Parameter {name!r}", self.shape, None)

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={self.shape}, prior={self.prior!r})"


class Field(LatentVariable):
    """A property field with one value per cell of a :class:`Grid`.

    Parameters
    ----------
    name : str
        Variable name, e.g. ``"density"``.
    grid : Grid
        The grid; its axis names become the field's dims, with the cell centres as coordinates.
    prior : Prior
        Typically :class:`bayesjoint.priors.GaussianField`; any prior broadcasting to the grid
        shape works.
    units : str, optional
        Physical units, recorded in reports (e.g. ``"kg/m^3"``).

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> grid = bj.Grid(x=np.arange(5.0), z=-np.arange(3.0)[::-1])
    >>> rho = bj.Field("density", grid, prior=bj.priors.Normal(0.0, 100.0), units="kg/m^3")
    >>> rho.shape, rho.dims
    ((5, 3), ('x', 'z'))
    """

    kind = "field"

    @checked_init("bj.Field")
    def __init__(
        self, name: str, grid: Grid, prior: Prior | None = None, *, units: str | None = None
    ):
        self.name = check_name(name, "Field")
        if not isinstance(grid, Grid):
            raise TypeError(f"Field {name!r}: grid must be a bj.Grid, got {type(grid).__name__}")
        if prior is None:
            raise TypeError(
                f"Field {name!r}: give a prior, e.g. "
                "prior=bj.priors.GaussianField(sigma=1.0, correlation_length=10.0)"
            )
        self.grid = grid
        self.shape = grid.shape
        self.dims = grid.dims
        self.coords = dict(grid.centers)
        self.prior = as_prior(prior, f"Field {name!r}")
        self.units = check_units(units, f"Field {name!r}")
        self.prior.validate(f"Field {name!r}", self.shape, grid)

    def __repr__(self) -> str:
        return f"Field({self.name!r}, {self.grid!r}, prior={self.prior!r})"
