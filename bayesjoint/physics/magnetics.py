"""Magnetics: dipole fields, uniformly magnetized prisms and induced total-field anomalies.

Conventions used throughout this module: right-handed coordinates in metres with ``x`` east,
``y`` north and ``z`` **up** (stations at ``z = 0``, bodies at negative ``z``). The inducing
(main) field is given by its inclination ``I`` (degrees, positive **down**, as in the northern
hemisphere), declination ``D`` (degrees **east of north**) and strength ``F`` (nT); its unit
vector is ``F̂ = (cos I sin D, cos I cos D, −sin I)``. Fields are returned in nT, magnetic
susceptibility is dimensionless SI, magnetization in A/m and dipole moments in A·m².
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.constants import mu_0

from bayesjoint._checks import checked_init
from bayesjoint.grid import Grid
from bayesjoint.physics.gravity import (
    _as_bounds,
    _as_per_body,
    _as_points,
    _corner_sum,
    _grid_axes,
    _nodal_sensitivity,
    _stations_for,
    _to_grid_order,
)
from bayesjoint.physics.linear import Linear

__all__ = [
    "Magnetics",
    "dipole_field",
    "field_direction",
    "magnetic_sensitivity",
    "prism_field",
    "prism_total_field",
]

_TESLA_TO_NT = 1e9


# ----------------------------------------------------------------------------------------------
# inducing field
# ----------------------------------------------------------------------------------------------
def field_direction(inclination: float, declination: float) -> np.ndarray:
    """Return the unit vector of a field with the given inclination and declination.

    Parameters
    ----------
    inclination : float
        Inclination in degrees, positive down, in [-90, 90].
    declination : float
        Declination in degrees, east of north.

    Returns
    -------
    numpy.ndarray, shape (3,)
        ``(x, y, z)`` components with x east, y north, z up.

    Notes
    -----
    ``F̂ = (cos I sin D, cos I cos D, −sin I)``: the north, east and down components of
    Blakely (1995, §4.1) rotated to the (east, north, up) frame of this package.

    Examples
    --------
    >>> from bayesjoint.physics.magnetics import field_direction
    >>> field_direction(90.0, 0.0).round(12).tolist()
    [0.0, 0.0, -1.0]
    """
    inc, dec = _check_angles(inclination, declination)
    ci = np.cos(np.radians(inc))
    return np.array(
        [ci * np.sin(np.radians(dec)), ci * np.cos(np.radians(dec)), -np.sin(np.radians(inc))]
    )


def _check_angles(inclination: Any, declination: Any) -> tuple[float, float]:
    try:
        inc, dec = float(inclination), float(declination)
    except (TypeError, ValueError):
        raise TypeError("inclination and declination must be numbers in degrees") from None
    if not (np.isfinite(inc) and -90.0 <= inc <= 90.0):
        raise ValueError(f"inclination must be in [-90, 90] degrees (positive down), got {inc}")
    if not np.isfinite(dec):
        raise ValueError(f"declination must be a finite angle in degrees east of north, got {dec}")
    return inc, dec


def _check_strength(strength: Any) -> float:
    try:
        f = float(strength)
    except (TypeError, ValueError):
        raise TypeError("strength must be a number (inducing field intensity in nT)") from None
    if not (np.isfinite(f) and f > 0):
        raise ValueError(f"strength must be a positive field intensity in nT, got {f}")
    return f


# ----------------------------------------------------------------------------------------------
# dipole
# ----------------------------------------------------------------------------------------------
def dipole_field(moment: Any, source: Any, points: Any) -> np.ndarray:
    r"""Return the magnetic induction of point dipoles, in nT.

    Parameters
    ----------
    moment : array_like, shape (3,) or (m, 3)
        Dipole moments in A·m² (x east, y north, z up).
    source : array_like, shape (3,) or (m, 3)
        Dipole positions in metres.
    points : array_like, shape (n, 3) or (3,)
        Observation points in metres (not at a source).

    Returns
    -------
    numpy.ndarray, shape (n, 3)
        ``B`` summed over the dipoles, in nT.

    Notes
    -----
    .. math:: \mathbf B = \frac{μ_0}{4π} \frac{3 (\mathbf m · \hat{\mathbf r})
              \hat{\mathbf r} - \mathbf m}{r^3},

    with ``r`` from the source to the point and ``μ0`` from :mod:`scipy.constants`
    (Blakely 1995, eq. 4.13). For ``m = 1`` A·m² and ``r = 1`` m this is 200 nT on the axis and
    100 nT, opposite to ``m``, on the equator.

    Examples
    --------
    >>> from bayesjoint.physics.magnetics import dipole_field
    >>> b = dipole_field([0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    >>> b[:, 2].round(6).tolist()
    [200.0, -100.0]
    """
    m = _as_points(moment, "moment")
    src = _as_points(source, "source")
    if m.shape[0] != src.shape[0]:
        if m.shape[0] == 1:
            m = np.broadcast_to(m, src.shape)
        elif src.shape[0] == 1:
            src = np.broadcast_to(src, m.shape)
        else:
            raise ValueError(
                f"moment ({m.shape[0]} rows) and source ({src.shape[0]} rows) must have the same "
                "number of dipoles (or one of them a single row)"
            )
    p = _as_points(points, "points")
    d = p[:, None, :] - src[None, :, :]
    r2 = np.sum(d * d, axis=-1)
    if np.any(r2 == 0):
        raise ValueError("points coincide with a dipole source, where its field is infinite")
    r = np.sqrt(r2)
    mdotr = np.sum(m[None, :, :] * d, axis=-1)
    b = (3.0 * mdotr[..., None] * d / r2[..., None] - m[None, :, :]) / (r2 * r)[..., None]
    return mu_0 / (4.0 * np.pi) * _TESLA_TO_NT * b.sum(axis=1)


# ----------------------------------------------------------------------------------------------
# closed forms: second derivatives of ∫ 1/r dV over a prism, at its corners
# ----------------------------------------------------------------------------------------------
def _atan_ratio(num: np.ndarray, den: np.ndarray, zero_den_sign: float) -> np.ndarray:
    """Return ``arctan(num / den)``; where ``den = 0`` take ``den → zero_den_sign · 0``.

    Where ``num = 0`` the value is 0. These are the one-sided limits used for observers on the
    planes of a prism (see :func:`prism_field`).
    """
    zden = den == 0
    safe = np.where(zden, 1.0, den)
    val = np.arctan(num / safe)
    lim = zero_den_sign * 0.5 * np.pi * np.sign(num)
    return np.where(zden, lim, val)


def _log_u_plus_r(u: np.ndarray, rho2: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Return ``ln(u + r)`` up to a function of the other two coordinates, safely.

    ``rho2 = r² − u²``. Where ``rho2 > 0`` the value is ``−ln(r − u)`` (``r − u`` computed as
    ``rho2 / (r + u)`` for ``u > 0``); it differs from ``ln(u + r)`` by ``ln rho2``, which does
    not depend on ``u`` and cancels in the corner sum along ``u``. On the line ``rho2 = 0`` (the
    observer on the line of an edge) ``ln(2u)`` is used for ``u > 0`` and ``−ln(−2u)`` for
    ``u < 0``; corner pairs on that line lie on one side of the observer unless the observer is
    on the edge itself, where the field is singular.
    """
    on_line = rho2 == 0
    pos = u > 0
    r_minus_u = np.where(pos, rho2 / np.where(pos, r + u, 1.0), r - u)
    off = -np.log(np.where(on_line, 1.0, r_minus_u))
    absu2 = np.where(u == 0, 1.0, 2.0 * np.abs(u))
    line = np.where(pos, np.log(absu2), -np.log(absu2))
    return np.where(on_line, line, off)


def _tensor_nodes(xi: np.ndarray, eta: np.ndarray, zeta: np.ndarray) -> tuple[np.ndarray, ...]:
    """Return ``(Kxx, Kyy, Kzz, Kxy, Kxz, Kyz)``: the second derivatives of ``∫∫∫ 1/r``."""
    xi, eta, zeta = np.broadcast_arrays(xi, eta, zeta)
    xi2, eta2, zeta2 = xi * xi, eta * eta, zeta * zeta
    r = np.sqrt(xi2 + eta2 + zeta2)
    # Side conventions where a coordinate is exactly 0: the observer is taken slightly towards
    # −x, −y (ξ, η → +0) and +z (ζ → −0, i.e. just above a horizontal face).
    kxx = -_atan_ratio(eta * zeta, xi * r, 1.0)
    kyy = -_atan_ratio(xi * zeta, eta * r, 1.0)
    kzz = -_atan_ratio(xi * eta, zeta * r, -1.0)
    kxy = _log_u_plus_r(zeta, xi2 + eta2, r)
    kxz = _log_u_plus_r(eta, xi2 + zeta2, r)
    kyz = _log_u_plus_r(xi, eta2 + zeta2, r)
    return kxx, kyy, kzz, kxy, kxz, kyz


def _projected_nodes(fhat: np.ndarray):
    """Return a node function for ``F̂ᵀ K F̂`` (3-D)."""
    fx, fy, fz = fhat

    def node_fn(xi, eta, zeta):
        kxx, kyy, kzz, kxy, kxz, kyz = _tensor_nodes(xi, eta, zeta)
        return (
            fx * fx * kxx
            + fy * fy * kyy
            + fz * fz * kzz
            + 2.0 * (fx * fy * kxy + fx * fz * kxz + fy * fz * kyz)
        )

    return node_fn


def _projected_nodes_2d(fhat: np.ndarray):
    """Return a node function for ``F̂ᵀ K F̂`` of a body infinite along y (2-D, x–z plane).

    The 2-D potential per unit strike is ``−2 ln ρ``, whose rectangle integrals have the second
    derivatives ``Kxx = −2 arctan(ζ/ξ)``, ``Kzz = −2 arctan(ξ/ζ)``, ``Kxz = −2 ln ρ`` (corner
    sums) and ``Kyy = Kxy = Kyz = 0``.
    """
    fx, _, fz = fhat

    def node_fn(xi, zeta):
        xi, zeta = np.broadcast_arrays(xi, zeta)
        rho2 = xi * xi + zeta * zeta
        kxx = -2.0 * _atan_ratio(zeta, xi, 1.0)
        kzz = -2.0 * _atan_ratio(xi, zeta, -1.0)
        kxz = -np.log(np.where(rho2 > 0, rho2, 1.0))
        return fx * fx * kxx + fz * fz * kzz + 2.0 * fx * fz * kxz

    return node_fn


def _on_edges(lo: np.ndarray, hi: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Return a (n, m) mask of points lying on an edge or corner of the boxes ``[lo, hi]``.

    A point is on an edge when it lies in the closed box and on a bounding plane along at least
    two axes (for 2-D bodies: on a corner, i.e. both axes).
    """
    pp = p[:, None, :]
    inside = np.all((pp >= lo[None]) & (pp <= hi[None]), axis=-1)
    on_plane = (pp == lo[None]) | (pp == hi[None])
    return inside & (on_plane.sum(axis=-1) >= min(2, p.shape[1]))


def _check_not_on_edges(
    lo: np.ndarray, hi: np.ndarray, p: np.ndarray, what: str, index: np.ndarray | None = None
) -> None:
    """Raise ValueError when a point lies on an edge of a box (checked in chunks of points)."""
    index = np.arange(p.shape[0]) if index is None else index
    chunk = max(1, 2**20 // max(1, lo.shape[0]))
    for start in range(0, p.shape[0], chunk):
        bad = _on_edges(lo, hi, p[start : start + chunk])
        if np.any(bad):
            i, j = np.argwhere(bad)[0]
            raise ValueError(
                f"{what} {int(index[start + i])} at {p[start + i].tolist()} lies on an edge or "
                f"corner of body {int(j)}, where the magnetic field of a uniformly magnetized "
                "prism is infinite; move the stations off the cell edges (e.g. slightly above "
                "the top of the grid)"
            )


# ----------------------------------------------------------------------------------------------
# public prism kernels
# ----------------------------------------------------------------------------------------------
def prism_field(bounds: Any, magnetization: Any, points: Any) -> np.ndarray:
    r"""Return the magnetic induction outside uniformly magnetized rectangular prisms, in nT.

    Parameters
    ----------
    bounds : array_like, shape (6,) or (m, 6)
        Prism bounds ``(x0, x1, y0, y1, z0, z1)`` in metres (x east, y north, z up).
    magnetization : array_like, shape (3,) or (m, 3)
        Magnetization vectors in A/m (one for all prisms or one per prism).
    points : array_like, shape (n, 3) or (3,)
        Observation points in metres, outside the prisms and not on their edges.

    Returns
    -------
    numpy.ndarray, shape (n, 3)
        ``B`` summed over the prisms, in nT.

    Notes
    -----
    Integrating the dipole field of :func:`dipole_field` over the prism gives
    ``B_i = (μ0/4π) Σ_j T_ij M_j`` with ``T_ij = ∂_i ∂_j ∫_V dV / |r − r'|``, whose closed
    form (Bhattacharyya 1964, *Geophysics* 29, 517–531; Blakely 1995, §9.2; Nagy et al. 2000)
    is the corner sum ``Σ (−1)^{i+j+k+1} K_ij(ξ, η, ζ)`` of

    .. math::

        K_{xx} = -\arctan\frac{ηζ}{ξ r}, \quad
        K_{xy} = \ln(ζ + r), \quad K_{xz} = \ln(η + r), \quad K_{yz} = \ln(ξ + r),

    and cyclically for ``K_yy``, ``K_zz`` (``ξ, η, ζ`` the corner coordinates relative to the
    point, ``r`` their norm). Safe forms: ``ln(u + r)`` is replaced by ``−ln(r − u)``, which
    differs by a term that cancels in the corner sum and has no cancellation for ``u < 0``;
    ``arctan(a/b)`` with ``b = 0`` takes its one-sided limit. A point on a face plane but off the
    face is exact; a point on a horizontal face gets the value just above it; points on an edge
    raise ``ValueError`` (the field diverges there). Inside a prism the result is ``μ0 H``, not
    ``B``.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.physics.magnetics import dipole_field, prism_field
    >>> cube = [-0.5, 0.5, -0.5, 0.5, -0.5, 0.5]
    >>> b = prism_field(cube, [0.0, 0.0, 1.0], [[0.0, 0.0, 30.0]])
    >>> d = dipole_field([0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [[0.0, 0.0, 30.0]])
    >>> bool(np.allclose(b, d, rtol=1e-6))
    True
    """
    b = _as_bounds(bounds)
    m = b.shape[0]
    mag = _as_points(magnetization, "magnetization")
    if mag.shape[0] not in (1, m):
        raise ValueError(
            f"magnetization must have shape (3,) or ({m}, 3) (one vector per prism), got "
            f"{mag.shape}"
        )
    mag = np.broadcast_to(mag, (m, 3))
    p = _as_points(points, "points")
    _check_not_on_edges(b[:, 0::2], b[:, 1::2], p, "point")
    comps = []
    for idx in range(6):
        comps.append(_corner_sum(lambda x, y, z, k=idx: _tensor_nodes(x, y, z)[k], b, p))
    txx, tyy, tzz, txy, txz, tyz = comps
    t = np.stack(
        [
            np.stack([txx, txy, txz], axis=-1),
            np.stack([txy, tyy, tyz], axis=-1),
            np.stack([txz, tyz, tzz], axis=-1),
        ],
        axis=-2,
    )  # (n, m, 3, 3)
    bvec = np.einsum("nmij,mj->ni", t, mag)
    return mu_0 / (4.0 * np.pi) * _TESLA_TO_NT * bvec


def prism_total_field(
    bounds: Any,
    susceptibility: Any,
    points: Any,
    inclination: float,
    declination: float,
    strength: float,
) -> np.ndarray:
    r"""Return the total-field anomaly of prisms magnetized by induction, in nT.

    Parameters
    ----------
    bounds : array_like, shape (6,) or (m, 6)
        Prism bounds ``(x0, x1, y0, y1, z0, z1)`` in metres (x east, y north, z up).
    susceptibility : float or array_like, shape (m,)
        Magnetic susceptibility (SI, dimensionless).
    points : array_like, shape (n, 3) or (3,)
        Observation points in metres, outside the prisms and off their edges.
    inclination, declination : float
        Inducing-field inclination (degrees, positive down) and declination (degrees east of
        north).
    strength : float
        Inducing-field intensity in nT.

    Returns
    -------
    numpy.ndarray, shape (n,)
        ``ΔT = F̂ · B_anomaly`` in nT.

    Notes
    -----
    Induced magnetization ``M = χ F / μ0`` along ``F̂`` (no remanence, no demagnetization: valid
    for ``χ ≪ 1``), and the total-field anomaly is the projection of the anomalous field on the
    inducing direction (Blakely 1995, §12.1), so

    .. math:: ΔT = \frac{χ F}{4π} \hat F^\top T \hat F

    with ``T`` the prism tensor of :func:`prism_field` and ``F`` in nT.

    Examples
    --------
    >>> from bayesjoint.physics.magnetics import prism_total_field
    >>> t = prism_total_field(
    ...     [-50.0, 50.0, -50.0, 50.0, -150.0, -50.0], 0.01, [[0.0, 0.0, 0.0]], 90.0, 0.0, 50000.0
    ... )
    >>> bool(t[0] > 0)
    True
    """
    b = _as_bounds(bounds)
    chi = _as_per_body(susceptibility, b.shape[0], "susceptibility")
    p = _as_points(points, "points")
    fhat = field_direction(inclination, declination)
    f = _check_strength(strength)
    _check_not_on_edges(b[:, 0::2], b[:, 1::2], p, "point")
    kernel = _corner_sum(_projected_nodes(fhat), b, p)
    return f / (4.0 * np.pi) * (kernel @ chi)


def magnetic_sensitivity(
    grid: Grid, stations: Any, inclination: float, declination: float, strength: float
) -> np.ndarray:
    """Return the total-field sensitivity of a prism grid, in nT per unit SI susceptibility.

    Parameters
    ----------
    grid : bayesjoint.Grid
        Either a 3-D grid with axes ``x`` (east), ``y`` (north), ``z`` (up) of rectangular prisms,
        or a 2-D grid with axes ``x``, ``z`` of bodies infinite along ``y``. Any axis order is
        accepted; columns follow the grid's C-order flattening.
    stations : array_like, shape (n, 3)
        Station coordinates in metres; ``(n, 2)`` as ``(x, z)`` is accepted for a 2-D grid (a
        ``y`` column is ignored there). Stations must not lie on cell edges.
    inclination, declination : float
        Inducing-field inclination (degrees, positive down) and declination (degrees east of
        north). For a 2-D grid the same formula applies with ``y`` the strike direction, so the
        declination is measured from the strike towards ``+x``.
    strength : float
        Inducing-field intensity in nT.

    Returns
    -------
    numpy.ndarray, shape (n, grid.size)
        Dense float64 matrix ``A`` with ``ΔT = A @ susceptibility.ravel()`` in nT.

    Notes
    -----
    Each entry is ``(F / 4π) F̂ᵀ T F̂`` (see :func:`prism_total_field`; induced magnetization,
    ``χ ≪ 1``, no remanence or demagnetization). In 2-D the tensor is that of a rectangle
    infinite along ``y`` (potential ``−2 ln ρ`` per unit length): ``T_xx = −2 Σ ± arctan(ζ/ξ)``,
    ``T_zz = −2 Σ ± arctan(ξ/ζ)``, ``T_xz = −2 Σ ± ln ρ`` (corner sums; Blakely 1995, §9.3), and
    ``T_yy = T_xy = T_yz = 0`` so the magnetization along strike has no external field. The
    closed forms are evaluated once per grid node and differenced, in chunks of stations.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> from bayesjoint.physics.magnetics import magnetic_sensitivity
    >>> grid = bj.Grid.from_edges(x=[-50.0, 0.0, 50.0], y=[-50.0, 50.0], z=[-150.0, -50.0])
    >>> A = magnetic_sensitivity(grid, [[-20.0, 0.0, 0.0], [20.0, 0.0, 0.0]], 90.0, 0.0, 5e4)
    >>> bool(np.isclose(A[0, 0], A[1, 1], rtol=1e-12))
    True
    """
    axes = _grid_axes(grid, "magnetic_sensitivity")
    st = _stations_for(axes, stations)
    fhat = field_direction(inclination, declination)
    f = _check_strength(strength)
    edges = [grid.edges[a] for a in axes]
    # Singular stations: on an edge (3-D) or a corner (2-D) of some cell.
    bounds = grid.cell_bounds()
    order = [grid.dims.index(a) for a in axes]
    lo = bounds[:, [2 * o for o in order]]
    hi = bounds[:, [2 * o + 1 for o in order]]
    on_edge_axes = np.stack([np.isin(st[:, a], edges[a]) for a in range(len(axes))], axis=-1).sum(
        axis=-1
    )
    suspect = on_edge_axes >= 2
    if np.any(suspect):
        _check_not_on_edges(lo, hi, st[suspect], "station", np.flatnonzero(suspect))
    node_fn = _projected_nodes(fhat) if len(axes) == 3 else _projected_nodes_2d(fhat)
    canonical = f / (4.0 * np.pi) * _nodal_sensitivity(node_fn, edges, st)
    return _to_grid_order(canonical, grid, axes)


class Magnetics(Linear):
    """Total-field magnetic anomaly of a susceptibility field on a prism grid (linear physics).

    Parameters
    ----------
    grid : bayesjoint.Grid
        3-D grid (axes ``x`` east, ``y`` north, ``z`` up) of prisms, or 2-D grid (axes ``x, z``)
        of bodies infinite along ``y``; see :func:`magnetic_sensitivity`.
    stations : array_like, shape (n, 3)
        Station coordinates in metres (``(n, 2)`` as ``(x, z)`` for a 2-D grid).
    inclination, declination : float
        Inducing-field inclination (degrees, positive down) and declination (degrees east of
        north).
    strength : float
        Inducing-field intensity in nT.
    input : str, optional
        Name of the latent susceptibility field (SI, shaped like the grid).

    Attributes
    ----------
    grid : bayesjoint.Grid
        The grid.
    stations : numpy.ndarray
        The validated station coordinates.
    direction : numpy.ndarray
        Unit vector of the inducing field (x east, y north, z up).

    Notes
    -----
    ``ΔT = A χ`` in nT with ``A`` from :func:`magnetic_sensitivity`: induced magnetization only
    (``χ ≪ 1``, no remanence, no demagnetization), closed form of Bhattacharyya (1964) / Blakely
    (1995).

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> from bayesjoint.physics.magnetics import Magnetics
    >>> grid = bj.Grid.from_edges(x=[-50.0, 50.0], y=[-50.0, 50.0], z=[-150.0, -50.0])
    >>> op = Magnetics(grid, [[0.0, 0.0, 0.0]], inclination=90.0, declination=0.0, strength=5e4)
    >>> bool(op(susceptibility=np.full(grid.shape, 0.01))[0] > 0)
    True
    """

    @checked_init("bj.physics.Magnetics")
    def __init__(
        self,
        grid: Grid,
        stations: Any,
        inclination: float,
        declination: float,
        strength: float,
        input: str = "susceptibility",
    ):
        axes = _grid_axes(grid, "Magnetics")
        self.grid = grid
        self.stations = _stations_for(axes, stations)
        self.direction = field_direction(inclination, declination)
        self.inclination, self.declination = _check_angles(inclination, declination)
        self.strength = _check_strength(strength)
        matrix = magnetic_sensitivity(grid, self.stations, inclination, declination, strength)
        super().__init__(matrix, input=input)

    def __repr__(self) -> str:
        return (
            f"Magnetics({self.grid!r}, stations={self.stations.shape[0]}, "
            f"I={self.inclination}, D={self.declination}, F={self.strength}, input={self.inputs})"
        )
