"""Structural coupling: the cross-gradient of two property fields and its scale-free soft prior.

Two layers, kept apart: :func:`cross_gradient` and :func:`normalized_cross_gradient` are pure
functions of two arrays on a :class:`~bayesjoint.Grid` (numpy in, numpy out; pytensor in,
pytensor out), and :class:`CrossGradient` is the coupling that puts a soft prior on the
normalized cross-gradient inside a :class:`~bayesjoint.JointInversion`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayesjoint._checks import checked_init
from bayesjoint._tensor import is_symbolic
from bayesjoint.coupling.base import Coupling
from bayesjoint.grid import Grid
from bayesjoint.latent import check_name
from bayesjoint.priors import GaussianField, Prior

if TYPE_CHECKING:
    from bayesjoint.latent import LatentVariable

__all__ = [
    "CrossGradient",
    "cross_gradient",
    "normalized_cross_gradient",
    "prior_gradient_scale",
]

#: Added to the product of the squared gradient scales so that an exactly constant field (whose
#: cross-gradient is exactly 0) gives 0 instead of 0/0. Far below any physical gradient².
_TINY = 1e-300


def _check_grid(grid: Any, what: str) -> Grid:
    if not isinstance(grid, Grid):
        raise TypeError(f"{what}: grid must be a bj.Grid, got {type(grid).__name__}")
    if grid.ndim not in (2, 3):
        raise ValueError(
            f"{what}: the cross-gradient needs a 2-D or 3-D grid, got {grid.ndim} axes "
            f"{grid.dims}; build the grid as bj.Grid(x=..., z=...) or bj.Grid(x=..., y=..., z=...)"
        )
    short = [d for d, n in zip(grid.dims, grid.shape, strict=True) if n < 3]
    if short:
        raise ValueError(
            f"{what}: central differences need at least 3 cells along every axis; axis "
            f"{short[0]!r} has {grid.shape[grid.dims.index(short[0])]}. Refine the grid"
        )
    return grid


def _as_field(values: Any, grid: Grid, name: str, what: str) -> Any:
    """Return ``values`` shaped like ``grid`` (numpy float64 array or pytensor tensor)."""
    if is_symbolic(values):
        tensor = pt.as_tensor_variable(values)
        static = tuple(tensor.type.shape)
        known = all(s is not None for s in static)
        if known and static not in (grid.shape, (grid.size,)):
            raise ValueError(
                f"{what}: {name} has shape {static}, expected the grid shape {grid.shape} "
                f"(or {grid.size} values in C order)"
            )
        return tensor.reshape(grid.shape)
    arr = np.asarray(values, dtype=float)
    if arr.shape not in (grid.shape, (grid.size,)):
        raise ValueError(
            f"{what}: {name} has shape {arr.shape}, expected the grid shape {grid.shape} "
            f"(or {grid.size} values in C order)"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: {name} contains NaN or inf; give finite property values")
    return arr.reshape(grid.shape)


def _difference_weights(centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(w_minus, w_plus)`` of the three-point derivative at the interior centres.

    ``f'(x_i) ≈ w_minus_i (f_{i-1} − f_i) + w_plus_i (f_{i+1} − f_i)``, exact for quadratics on
    any (non-uniform) spacing.
    """
    h_minus = centers[1:-1] - centers[:-2]
    h_plus = centers[2:] - centers[1:-1]
    total = h_minus + h_plus
    return -h_plus / (h_minus * total), h_minus / (h_plus * total)


def _interior_gradient(field: Any, grid: Grid) -> list[Any]:
    """Return the gradient components (one per grid axis) at the interior cells."""
    ndim = grid.ndim
    out = []
    for axis, dim in enumerate(grid.dims):
        w_minus, w_plus = _difference_weights(grid.centers[dim])
        shape = [1] * np.ndim(field) if not is_symbolic(field) else [1] * field.ndim
        shape[axis] = w_minus.size

        def take(sl: slice, axis: int = axis) -> tuple[slice, ...]:
            return tuple(sl if j == axis else slice(1, -1) for j in range(ndim))

        centre = field[take(slice(1, -1))]
        # Differences first, so a field constant along this axis gives exactly 0.
        minus = field[take(slice(0, -2))] - centre
        plus = field[take(slice(2, None))] - centre
        out.append(minus * w_minus.reshape(shape) + plus * w_plus.reshape(shape))
    return out


def _cross(grad_a: list[Any], grad_b: list[Any], symbolic: bool) -> Any:
    if len(grad_a) == 2:
        return grad_a[0] * grad_b[1] - grad_a[1] * grad_b[0]
    comps = [
        grad_a[1] * grad_b[2] - grad_a[2] * grad_b[1],
        grad_a[2] * grad_b[0] - grad_a[0] * grad_b[2],
        grad_a[0] * grad_b[1] - grad_a[1] * grad_b[0],
    ]
    return pt.stack(comps, axis=-1) if symbolic else np.stack(comps, axis=-1)


def _prepare(a: Any, b: Any, grid: Grid, what: str) -> tuple[Any, Any, bool]:
    _check_grid(grid, what)
    symbolic = is_symbolic(a) or is_symbolic(b)
    if symbolic:
        a = pt.as_tensor_variable(a, dtype="float64") if not is_symbolic(a) else a
        b = pt.as_tensor_variable(b, dtype="float64") if not is_symbolic(b) else b
    return _as_field(a, grid, "a", what), _as_field(b, grid, "b", what), symbolic


def cross_gradient(a: Any, b: Any, grid: Grid) -> Any:
    r"""Return the per-cell cross product of the gradients of two fields on a tensor grid.

    Parameters
    ----------
    a, b : array_like or pytensor tensor
        The two property fields, shaped like ``grid`` (or flat, ``grid.size`` values in C order),
        each in its own units.
    grid : bayesjoint.Grid
        A 2-D or 3-D rectilinear grid, possibly non-uniform, with at least 3 cells per axis.

    Returns
    -------
    numpy.ndarray or pytensor tensor
        On a 2-D grid the scalar ``t`` per interior cell, shape ``(n_0 − 2, n_1 − 2)``; on a 3-D
        grid the vector ``t`` per interior cell, shape ``(n_0 − 2, n_1 − 2, n_2 − 2, 3)`` with the
        components along the grid's axes. Units: (units of a) × (units of b) / length².
        Numpy inputs give a numpy array; any pytensor input gives a differentiable tensor.

    Notes
    -----
    The cross-gradient of Gallardo & Meju (2003, Geophys. Res. Lett. 30, 1658) is
    ``t = ∇a × ∇b``. With grid axes ``(u, v)`` in the grid's order (``(x, z)`` for
    ``bj.Grid(x=..., z=...)``) the 2-D scalar is

    .. math:: t = \frac{∂a}{∂u}\frac{∂b}{∂v} - \frac{∂a}{∂v}\frac{∂b}{∂u},

    and in 3-D ``t`` is the vector cross product in the frame of the grid's axes (right-handed
    for ``(x, y, z)`` with ``z`` up). Each derivative is the three-point central difference on
    the cell centres, ``f'_i ≈ w⁻_i (f_{i−1} − f_i) + w⁺_i (f_{i+1} − f_i)`` with
    ``w⁻ = −h⁺ / (h⁻ (h⁻ + h⁺))`` and ``w⁺ = h⁻ / (h⁺ (h⁻ + h⁺))`` (``h^±`` the spacings to the
    neighbours; Fornberg 1988, Math. Comp. 51, 699), second-order accurate and exact for
    quadratics on non-uniform spacing; on uniform spacing it is ``(f_{i+1} − f_{i−1}) / 2h``.
    All gradient components and their products live at the same cell centre, so ``t`` is the
    per-cell cross product itself (a discretization that forms squares on cell faces and then
    averages is not zero for ``(x, x²)``). Boundary treatment: only interior cells, which have a
    neighbour on both sides along every axis, get a value; the outermost layer of cells is
    dropped rather than differenced one-sidedly.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> from bayesjoint.coupling import cross_gradient
    >>> grid = bj.Grid(x=np.arange(5.0), z=np.array([-3.0, -1.5, -1.0, 0.0]))
    >>> x, z = np.meshgrid(grid.centers["x"], grid.centers["z"], indexing="ij")
    >>> cross_gradient(x + z, x - z, grid).round(12)
    array([[-2., -2.],
           [-2., -2.],
           [-2., -2.]])
    """
    a, b, symbolic = _prepare(a, b, grid, "cross_gradient")
    return _cross(_interior_gradient(a, grid), _interior_gradient(b, grid), symbolic)


def normalized_cross_gradient(
    a: Any, b: Any, grid: Grid, scale_a: Any = None, scale_b: Any = None
) -> Any:
    r"""Return the cross-gradient divided by the fields' typical gradient magnitudes.

    Parameters
    ----------
    a, b : array_like or pytensor tensor
        The two fields, shaped like ``grid`` (or flat in C order), in any units.
    grid : bayesjoint.Grid
        A 2-D or 3-D grid with at least 3 cells per axis.
    scale_a, scale_b : float or pytensor scalar, optional
        Typical gradient magnitudes ``s_a``, ``s_b`` (property units per length unit). Default:
        each field's own root-mean-square gradient magnitude over the interior cells.

    Returns
    -------
    numpy.ndarray or pytensor tensor
        Dimensionless ``t̃`` per interior cell, shaped like :func:`cross_gradient`'s result.

    Notes
    -----
    .. math:: \tilde t = \frac{∇a × ∇b}{s_a\, s_b},\qquad
              s_a = \Big(\frac{1}{M}\sum_{\text{interior}} |∇a|^2\Big)^{1/2}
              \ \text{(default)},

    ``M`` the number of interior cells. With the default scales ``t̃`` is invariant under
    ``a → c_1 a + d_1`` and ``b → c_2 b + d_2`` for any non-zero ``c_i``: per cell
    ``t̃ = sin θ · (|∇a| / s_a)(|∇b| / s_b)`` with ``θ`` the angle between the gradients, 0 where
    the structures are parallel or one field is flat, of order 1 where both fields have typical
    gradients at right angles. This makes it a unit-free measure of the structural disagreement
    of two given models. An exactly constant field gives ``t̃ = 0``. With fixed scales (as
    :class:`CrossGradient` uses, from the priors) ``t̃`` is bilinear in the fields.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> from bayesjoint.coupling import normalized_cross_gradient
    >>> grid = bj.Grid(x=np.arange(4.0), z=np.arange(4.0))
    >>> x, z = np.meshgrid(grid.centers["x"], grid.centers["z"], indexing="ij")
    >>> normalized_cross_gradient(1e4 * x, z, grid).round(12)
    array([[1., 1.],
           [1., 1.]])
    """
    a, b, symbolic = _prepare(a, b, grid, "normalized_cross_gradient")
    grad_a, grad_b = _interior_gradient(a, grid), _interior_gradient(b, grid)
    t = _cross(grad_a, grad_b, symbolic)
    xp: Any = pt if symbolic else np
    if scale_a is not None and scale_b is not None:
        return t / (scale_a * scale_b)
    power_a = xp.mean(sum(g * g for g in grad_a)) if scale_a is None else scale_a**2
    power_b = xp.mean(sum(g * g for g in grad_b)) if scale_b is None else scale_b**2
    return t / xp.sqrt(power_a * power_b + _TINY)


def _stencil_matrix(centers: np.ndarray) -> np.ndarray:
    """Return the (n − 2) × n matrix of the interior three-point derivative."""
    w_minus, w_plus = _difference_weights(centers)
    n = centers.size
    rows = np.arange(n - 2)
    out = np.zeros((n - 2, n))
    out[rows, rows] = w_minus
    out[rows, rows + 1] = -(w_minus + w_plus)
    out[rows, rows + 2] = w_plus
    return out


#: Largest field for which a dense prior covariance factor is used to compute the gradient scale.
_DENSE_LIMIT = 4096


def prior_gradient_scale(field: LatentVariable) -> float:
    r"""Return the typical gradient magnitude of a field under its prior.

    Parameters
    ----------
    field : bayesjoint.Field
        A field on a 2-D or 3-D grid whose prior is Gaussian:
        :class:`~bayesjoint.priors.GaussianField` (fixed or learned ``sigma``; for a learned one
        the scale per unit ``sigma`` is returned) or any prior with a fixed Gaussian form (e.g.
        :class:`~bayesjoint.priors.Normal`, for fields of at most 4096 cells).

    Returns
    -------
    float
        ``s = (E_prior[(1/M) Σ_interior |∇a|²])^{1/2}`` in the field's units per length unit.

    Raises
    ------
    ValueError
        For priors without a Gaussian form (give :class:`CrossGradient` an explicit ``scale``).

    Notes
    -----
    With ``a = μ + L z``, ``z ~ N(0, I)`` and the interior difference operators ``D_k``:
    ``s² = (1/M) Σ_k (‖D_k μ‖² + ‖D_k L‖_F²)``. For a separable Gaussian field
    ``σ² ⊗_j C_j`` the sum factorizes over axes, ``‖D_k L‖_F² = σ² tr(S_k C_k S_kᵀ)
    Π_{j≠k} tr(C_j^{int})``, so no ``n × n`` matrix is formed.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> from bayesjoint.coupling.cross_gradient import prior_gradient_scale
    >>> grid = bj.Grid(x=np.arange(50.0), z=np.arange(40.0))
    >>> iid = bj.Field("a", grid, prior=bj.priors.Normal(0.0, 2.0))
    >>> round(prior_gradient_scale(iid), 6)  # white noise, unit spacing: sqrt(2 · 2 · 2²/4)
    2.0
    """
    unit_power, mean_power, sigma = _scale_parts(field)
    sigma_value = 1.0 if isinstance(sigma, Prior) else sigma
    return float(np.sqrt(sigma_value**2 * unit_power + mean_power))


def _scale_parts(field: LatentVariable) -> tuple[float, float, float | Prior]:
    """Return ``(p, m, σ)`` with ``s² = σ² p + m`` (σ a Prior when it is learned)."""
    grid = field.grid
    prior = field.prior
    if isinstance(prior, GaussianField):
        corr = [f @ f.T for f in prior.axis_factors(grid)]
        power = 0.0
        for k, dim in enumerate(grid.dims):
            stencil = _stencil_matrix(grid.centers[dim])
            term = float(np.mean(np.einsum("ij,jk,ik->i", stencil, corr[k], stencil)))
            for j, c in enumerate(corr):
                if j != k:
                    term *= float(np.mean(np.diag(c)[1:-1]))
            power += term
        mean = np.broadcast_to(prior.mean, grid.shape).astype(float)
        mean_power = float(np.mean(sum(g**2 for g in _interior_gradient(mean, grid))))
        return power, mean_power, prior.sigma
    form = prior.gaussian(field.shape, grid) if field.size <= _DENSE_LIMIT else None
    if form is None:
        raise ValueError(
            f"field {field.name!r}: its prior {prior!r} has no fixed Gaussian form, so the typical "
            "gradient magnitude is unknown; give CrossGradient(..., scale={name: value}) in the "
            "field's units per length unit"
        )
    mean, factor = form
    stacked = np.concatenate([mean.reshape(*grid.shape, 1), factor.reshape(*grid.shape, -1)], -1)
    grads = _interior_gradient(stacked, grid)
    return float(np.mean(np.sum(sum(g**2 for g in grads), axis=-1))), 0.0, 1.0


def _prior_draws(field: LatentVariable, n: int, rng: np.random.Generator) -> np.ndarray | None:
    """Return ``n`` draws of a Gaussian prior (unit sigma if learned), or None."""
    prior, grid = field.prior, field.grid
    if isinstance(prior, GaussianField):
        draws = rng.standard_normal((n, *grid.shape))
        for axis, factor in enumerate(prior.axis_factors(grid)):
            draws = np.moveaxis(np.tensordot(factor, draws, axes=([1], [axis + 1])), 0, axis + 1)
        return draws
    form = prior.gaussian(field.shape, grid) if field.size <= _DENSE_LIMIT else None
    if form is None:
        return None
    return (form[1] @ rng.standard_normal((field.size, n))).T.reshape(n, *grid.shape)


def effective_terms(a: LatentVariable, b: LatentVariable, n_draws: int = 200) -> float:
    r"""Return the effective number of independent cross-gradient values under the priors.

    Parameters
    ----------
    a, b : bayesjoint.Field
        Two fields on the same grid with Gaussian priors.
    n_draws : int, default 200
        Prior draws (seeded: the result is deterministic).

    Returns
    -------
    float
        ``K_eff = tr(C)² / tr(C²)``, ``C`` the prior covariance of the cross-gradient vector; the
        number of interior terms ``K`` when a prior is not Gaussian.

    Notes
    -----
    The participation ratio of ``C``'s eigenvalues: ``K`` for independent, equally variable
    terms, fewer for smooth fields, whose cross-gradients are correlated over a correlation
    length. ``tr(C)`` and ``tr(C²)`` are estimated without bias from independent draws ``t_i``
    (mean zero by the symmetry ``a → −a``): ``mean |t_i|²`` and the U-statistic
    ``Σ_{i≠j} (t_i·t_j)² / (N (N − 1))``.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> from bayesjoint.coupling.cross_gradient import effective_terms
    >>> grid = bj.Grid(x=np.arange(30.0), z=np.arange(20.0))
    >>> rough = bj.priors.GaussianField(1.0, 1.0)
    >>> smooth = bj.priors.GaussianField(1.0, 8.0)
    >>> k_rough = effective_terms(bj.Field("a", grid, rough), bj.Field("b", grid, rough))
    >>> k_smooth = effective_terms(bj.Field("a", grid, smooth), bj.Field("b", grid, smooth))
    >>> bool(k_smooth < k_rough < 28 * 18)
    True
    """
    grid = a.grid
    rng = np.random.default_rng(20260504)
    draws_a, draws_b = _prior_draws(a, n_draws, rng), _prior_draws(b, n_draws, rng)
    n_terms = int(np.prod(_interior_shape(grid)))
    if draws_a is None or draws_b is None:
        return float(n_terms)
    t = np.stack(
        [cross_gradient(x, y, grid).ravel() for x, y in zip(draws_a, draws_b, strict=True)]
    )
    gram = t @ t.T
    trace = float(np.mean(np.diag(gram)))
    off = gram**2
    np.fill_diagonal(off, 0.0)
    trace_sq = float(off.sum()) / (n_draws * (n_draws - 1))
    return float(min(n_terms, max(1.0, trace**2 / trace_sq)))


class CrossGradient(Coupling):
    r"""Scale-free structural soft prior: the gradients of two fields tend to be parallel.

    Parameters
    ----------
    a, b : str
        Names of two :class:`~bayesjoint.Field` latent variables on the same grid (2-D or 3-D).
    strength : float or Prior, default 1.0
        The inverse standard deviation ``λ`` of the normalized cross-gradient in each interior
        cell (dimensionless): a float fixes it; a positive prior (e.g.
        ``bj.priors.HalfNormal(2.0)``) learns it as the scalar variable ``<name>_strength``.
    scale : mapping of str to float, optional
        Typical gradient magnitude of a field (its units per length unit), by field name.
        Default: computed from the field's prior (:func:`prior_gradient_scale`), which needs a
        Gaussian prior; give it for fields with other priors.
    name : str, optional
        Name of the coupling (its ``pm.Potential``); default ``"cross_gradient_<a>_<b>"``.

    Attributes
    ----------
    name : str
    inputs : tuple of str
        ``(a, b)``.
    strength : float or Prior

    Notes
    -----
    Each gradient is measured in units of its field's typical gradient magnitude under the prior,
    ``s = (E_prior[mean |∇a|²])^{1/2}`` (:func:`prior_gradient_scale`), so the normalized
    cross-gradient ``t̃ = (∇a × ∇b) / (s_a s_b)`` (:func:`cross_gradient`, per interior cell) is
    dimensionless: changing a property's units changes its prior, its data and ``s`` alike and
    leaves ``t̃`` unchanged, so one strength means the same whatever the units. The coupling
    treats the ``K`` values of ``t̃`` (interior cells, times 3 components in 3-D) as zero-valued
    pseudo-data worth ``K_eff`` independent observations with sd ``1/λ``:

    .. math:: \log p_c(a, b \mid λ) = K_\text{eff}\Big[\log λ - \tfrac12 \log 2π\Big]
              - \frac{λ^2}{2} \frac{K_\text{eff}}{K} \sum_{k=1}^{K} \tilde t_k(a, b)^2,

    added as a ``pm.Potential`` named ``name``. ``K_eff`` (:func:`effective_terms`) is the
    effective number of independent cross-gradient values under the priors: neighbouring cells
    of smooth fields carry nearly the same ``t̃``, so counting each cell as a datum would make
    the coupling stronger on every grid refinement; with ``K_eff`` it is set by the domain and
    the priors' correlation lengths, not by the cell count. ``t̃`` is bilinear in the fields:
    the penalty grows where both fields change strongly in different directions and vanishes
    where either is flat or the two gradients are parallel; it does not reward copying one
    field's structure into the other. For independent prior draws ``mean t̃² ≈ 1/2`` (2-D), so
    ``λ = 1`` (the default) costs about ``K_eff/4`` nats for unrelated structure — a soft
    preference, as the case studies show; large ``λ`` mostly shrinks the misaligned parts of
    both fields. It is the unit-free, probabilistic form of the cross-gradient constraint of
    Gallardo & Meju (2003, Geophys. Res. Lett. 30, 1658; 2004, J. Geophys. Res. 109, B03311),
    whose deterministic versions need a hand-tuned weight. With a learned strength the
    ``K_eff log λ`` term normalizes the pseudo-data density (an approximation: the exact
    normalizer of a prior on fields is intractable); because shrinking the fields also shrinks
    ``t̃``, a learned ``λ`` can grow well beyond its prior when the structures agree, so give it
    an informative prior. The model also records ``<name>_rms`` (``sqrt(mean t̃²)``,
    deterministic).

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> from bayesjoint.coupling import CrossGradient
    >>> grid = bj.Grid(x=np.arange(6.0) * 10.0, z=-np.arange(4.0)[::-1] * 10.0)
    >>> prior = bj.priors.GaussianField(sigma=1.0, correlation_length=20.0)
    >>> rho, chi = bj.Field("density", grid, prior), bj.Field("susceptibility", grid, prior)
    >>> coupling = CrossGradient("density", "susceptibility", strength=2.0)
    >>> coupling.validate({"density": rho, "susceptibility": chi})
    >>> coupling.name
    'cross_gradient_density_susceptibility'
    """

    @checked_init("bj.CrossGradient")
    def __init__(
        self,
        a: str,
        b: str,
        *,
        strength: float | Prior = 1.0,
        scale: Mapping[str, float] | None = None,
        name: str | None = None,
    ) -> None:
        for label, value in (("a", a), ("b", b)):
            if not isinstance(value, str):
                raise TypeError(
                    f"CrossGradient({label}=...) must be the name of a bj.Field, got "
                    f"{type(value).__name__}"
                )
        if a == b:
            raise ValueError(
                f"CrossGradient couples two different fields; got {a!r} twice. Name two fields"
            )
        self.a, self.b = a, b
        self.inputs = (a, b)
        self.name = check_name(
            name if name is not None else f"cross_gradient_{a}_{b}", "CrossGradient"
        )
        if isinstance(strength, Prior):
            if not strength.positive:
                raise ValueError(
                    f"CrossGradient {self.name!r}: a learned strength needs a positive prior, "
                    f"e.g. bj.priors.HalfNormal(2.0); got {strength!r}"
                )
            self.strength: float | Prior = strength
        else:
            self.strength = self._positive(strength, "strength", "the inverse sd of t̃ (try 1.0)")
        self.scale: dict[str, float] = {}
        for key, value in dict(scale or {}).items():
            if key not in self.inputs:
                raise ValueError(
                    f"CrossGradient {self.name!r}: scale given for {key!r}, which is not one of "
                    f"the coupled fields {self.inputs}"
                )
            self.scale[key] = self._positive(value, f"scale[{key!r}]", "in units per metre")

    def _positive(self, value: Any, what: str, hint: str) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TypeError(
                f"CrossGradient {self.name!r}: {what} must be a positive number"
                + (" or a positive prior (bj.priors.HalfNormal)" if what == "strength" else "")
                + f", got {type(value).__name__}"
            ) from None
        if not (np.isfinite(number) and number > 0):
            raise ValueError(
                f"CrossGradient {self.name!r}: {what} must be positive and finite, got {number}; "
                f"it is {hint}"
            )
        return number

    def validate(self, variables: Mapping[str, LatentVariable]) -> None:
        """Check that ``a`` and ``b`` are declared fields on the same 2-D or 3-D grid.

        Raises
        ------
        ValueError
            Naming the coupling: an unknown name, a variable that is not a field, fields on
            different grids, a grid the central differences cannot use, or a prior whose
            typical gradient is unknown (without an explicit ``scale``).
        """
        super().validate(variables)
        for key in self.inputs:
            var = variables[key]
            if var.grid is None:
                raise ValueError(
                    f"coupling {self.name!r}: {key!r} is a {type(var).__name__}, not a field on a "
                    f"grid; the cross-gradient needs bj.Field({key!r}, grid, prior=...)"
                )
        grid_a, grid_b = variables[self.a].grid, variables[self.b].grid
        if grid_a != grid_b:
            raise ValueError(
                f"coupling {self.name!r}: fields {self.a!r} ({grid_a!r}) and {self.b!r} "
                f"({grid_b!r}) are on different grids; declare both on the same bj.Grid"
            )
        _check_grid(grid_a, f"coupling {self.name!r}")
        for key in self.inputs:
            if key not in self.scale:
                try:
                    _scale_parts(variables[key])
                except ValueError as err:
                    raise ValueError(f"coupling {self.name!r}: {err}") from None

    def gradient_scales(self, variables: Mapping[str, LatentVariable]) -> tuple[Any, Any]:
        """Return ``(s_a, s_b)``: floats, or tensors for a learned prior ``sigma``.

        A learned ``GaussianField`` sigma is read from the model on the context stack
        (``<field>_sigma``).
        """
        out = []
        for key in self.inputs:
            if key in self.scale:
                out.append(self.scale[key])
                continue
            unit, mean_power, sigma = _scale_parts(variables[key])
            if isinstance(sigma, Prior):
                sigma_var = pm.modelcontext(None)[f"{key}_sigma"]
                out.append(pt.sqrt(sigma_var**2 * unit + mean_power))
            else:
                out.append(float(np.sqrt(sigma**2 * unit + mean_power)))
        return out[0], out[1]

    def normalized(self, latent: Mapping[str, Any], variables: Mapping[str, LatentVariable]):
        """Return the normalized cross-gradient ``t̃`` (tensor) of the latent fields."""
        scale_a, scale_b = self.gradient_scales(variables)
        return normalized_cross_gradient(
            pt.as_tensor_variable(latent[self.a], dtype="float64"),
            pt.as_tensor_variable(latent[self.b], dtype="float64"),
            variables[self.a].grid,
            scale_a,
            scale_b,
        )

    def log_density(
        self,
        latent: Mapping[str, Any],
        variables: Mapping[str, LatentVariable],
        strength: Any = None,
    ) -> Any:
        """Return the coupling's log density (a pytensor scalar) for the given field tensors.

        Parameters
        ----------
        latent : mapping of str to pytensor tensor
            Tensors of ``a`` and ``b``.
        variables : mapping of str to LatentVariable
            Their declarations (grid and priors).
        strength : float or pytensor scalar, optional
            ``λ``; default the fixed strength (required when the strength is learned).
        """
        if strength is None:
            if isinstance(self.strength, Prior):
                raise ValueError(
                    f"coupling {self.name!r}: the strength is learned; pass its tensor as strength="
                )
            strength = self.strength
        t = self.normalized(latent, variables)
        k_eff = self.effective_terms(variables)
        n_terms = float(np.prod(_interior_shape(variables[self.a].grid)))
        lam = pt.as_tensor_variable(strength, dtype="float64")
        return k_eff * (pt.log(lam) - 0.5 * np.log(2.0 * np.pi)) - 0.5 * lam**2 * (
            k_eff / n_terms
        ) * pt.sum(t**2)

    def effective_terms(self, variables: Mapping[str, LatentVariable]) -> float:
        """Return ``K_eff`` for these fields (computed once per pair of declarations)."""
        key = (id(variables[self.a]), id(variables[self.b]))
        cache = self.__dict__.setdefault("_k_eff", {})
        if key not in cache:
            cache[key] = effective_terms(variables[self.a], variables[self.b])
        return cache[key]

    def build(self, latent: Mapping[str, Any], variables: Mapping[str, LatentVariable]) -> None:
        """Add the strength hyperprior (if learned), the potential and ``<name>_rms``."""
        strength = (
            self.strength.build(f"{self.name}_strength", (), None)
            if isinstance(self.strength, Prior)
            else self.strength
        )
        pm.Potential(self.name, self.log_density(latent, variables, strength))
        t = self.normalized(latent, variables)
        pm.Deterministic(f"{self.name}_rms", pt.sqrt(pt.mean(t**2)))

    def describe(self) -> str:
        """Return a one-line description (used in provenance)."""
        return repr(self)

    def __repr__(self) -> str:
        extra = f", scale={self.scale!r}" if self.scale else ""
        return f"CrossGradient({self.a!r}, {self.b!r}, strength={self.strength!r}{extra})"


def _interior_shape(grid: Grid) -> tuple[int, ...]:
    shape = tuple(n - 2 for n in grid.shape)
    return shape if grid.ndim == 2 else (*shape, 3)
