"""Gravity: closed-form vertical attraction of spheres and prisms, and grid sensitivities.

Conventions used throughout this module: coordinates in metres with ``z`` positive **up**
(stations at ``z = 0``, bodies at negative ``z``); density contrasts in kg/m³; the returned
``g_z`` is the *downward* component of the attraction in mGal (1 mGal = 1e-5 m/s²), so a positive
density contrast below a station gives a positive anomaly (the usual gravity-anomaly sign).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from bayesjoint._checks import checked_init
from bayesjoint.grid import Grid, as_points
from bayesjoint.physics.linear import Linear

__all__ = ["G", "Gravity", "gravity_sensitivity", "prism_gz", "sphere_gz"]

#: Newtonian constant of gravitation, m³ kg⁻¹ s⁻² (CODATA 2018).
G = 6.6743e-11
#: Conversion from m/s² to mGal.
SI_TO_MGAL = 1e5
# Target number of float64 elements in one chunk's node array (bounds peak memory per chunk).
_CHUNK_ELEMENTS = 2**16


# ----------------------------------------------------------------------------------------------
# validation helpers (shared with the magnetics module)
# ----------------------------------------------------------------------------------------------
def _as_points(points: Any, name: str, ncols: tuple[int, ...] = (3,)) -> np.ndarray:
    """Return ``points`` as a finite float array of shape (n, k) with k in ``ncols``."""
    return as_points(points, name, ncols, "(one row per point: coordinates in metres, z up)")


def _as_bounds(bounds: Any, name: str = "bounds", ncols: int = 6) -> np.ndarray:
    """Return prism bounds ``(x0, x1, y0, y1, z0, z1)`` as a validated (m, 6) float array."""
    arr = np.asarray(bounds, dtype=float)
    if arr.ndim == 1 and arr.size == ncols:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != ncols:
        raise ValueError(
            f"{name} must have shape ({ncols},) or (m, {ncols}) as (x0, x1, y0, y1, z0, z1) per "
            f"prism, got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; give finite prism bounds in metres")
    if not np.all(arr[:, 1::2] > arr[:, 0::2]):
        raise ValueError(
            f"{name}: each prism needs x0 < x1, y0 < y1 and z0 < z1; reorder the bounds"
        )
    return arr


def _as_per_body(values: Any, n_bodies: int, name: str) -> np.ndarray:
    """Broadcast a scalar or per-body property to shape (m,), checking it is finite."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim > 1 or (arr.ndim == 1 and arr.size not in (1, n_bodies)):
        raise ValueError(
            f"{name} must be a scalar or have one value per body ({n_bodies}), got shape "
            f"{arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; give finite values")
    return np.broadcast_to(arr.reshape(-1) if arr.ndim else arr, (n_bodies,)).astype(float)


def _grid_axes(grid: Any, what: str) -> tuple[str, ...]:
    """Return the canonical axis order ('x','y','z') or ('x','z') of ``grid`` after checking it."""
    if not isinstance(grid, Grid):
        raise TypeError(f"{what} needs a bayesjoint.Grid, got {type(grid).__name__}")
    dims = set(grid.dims)
    if dims == {"x", "y", "z"}:
        return ("x", "y", "z")
    if dims == {"x", "z"}:
        return ("x", "z")
    raise ValueError(
        f"{what} needs a grid with axes x, y, z (3-D prisms) or x, z (2-D, infinite strike along "
        f"y), got axes {grid.dims}; build it as bj.Grid(x=..., y=..., z=...) or "
        "bj.Grid(x=..., z=...)"
    )


def _stations_for(grid_axes: tuple[str, ...], stations: Any) -> np.ndarray:
    """Return stations as (n, 3) for a 3-D grid or (n, 2) ``(x, z)`` for a 2-D grid."""
    if len(grid_axes) == 3:
        return _as_points(stations, "stations", (3,))
    pts = _as_points(stations, "stations", (2, 3))
    return pts[:, [0, 2]] if pts.shape[1] == 3 else pts


def _to_grid_order(canonical: np.ndarray, grid: Grid, axes: tuple[str, ...]) -> np.ndarray:
    """Reorder a (n, *canonical shape) array to the grid's own axis order and flatten (C order)."""
    perm = [0] + [1 + axes.index(d) for d in grid.dims]
    return np.ascontiguousarray(canonical.transpose(perm)).reshape(canonical.shape[0], -1)


def _nodal_sensitivity(
    node_fn: Callable[..., np.ndarray],
    edges: list[np.ndarray],
    stations: np.ndarray,
    scale: float = 1.0,
    distinct: bool = False,
) -> np.ndarray:
    """Apply ``node_fn`` at every grid node relative to each station and difference to cells.

    ``node_fn(*rel)`` returns the antiderivative at the nodes; ``rel[a]`` is the (source minus
    station) coordinate along axis ``a``, broadcastable to ``(chunk, *node_shape)``. The cell
    values are the mixed finite differences over every axis, which equal the signed corner sums
    of the closed forms: adjacent cells share their corner evaluations. The result is multiplied
    by ``scale`` chunk by chunk (no full-size temporary).

    With ``distinct=True`` (only for an elementwise ``node_fn`` whose value does not depend on
    the sign of a zero argument), the closed form is evaluated once per distinct
    coordinate-difference triple when that is less work (see :func:`_distinct_plan`); the result
    is bit-for-bit that of the general path.
    """
    if distinct:
        plan = _distinct_plan(edges, stations)
        if plan is not None:
            return _distinct_sensitivity(node_fn, plan, scale)
    ndim = len(edges)
    node_shape = tuple(e.size for e in edges)
    out = np.empty((stations.shape[0], *(s - 1 for s in node_shape)))
    chunk = max(1, _CHUNK_ELEMENTS // int(np.prod(node_shape)))
    for start in range(0, stations.shape[0], chunk):
        st = stations[start : start + chunk]
        rel = []
        for a, e in enumerate(edges):
            shape = [1] * (ndim + 1)
            shape[0] = st.shape[0]
            shape[a + 1] = e.size
            rel.append((e[None, :] - st[:, a : a + 1]).reshape(shape))
        vals = node_fn(*rel)
        for a in range(ndim):
            vals = np.diff(vals, axis=a + 1)
        np.multiply(vals, scale, out=out[start : start + chunk])
    return out


def _distinct_plan(edges: list[np.ndarray], stations: np.ndarray) -> list[tuple] | None:
    """Return the per-axis distinct-value plan of :func:`_distinct_sensitivity`, or None.

    For axis ``a``, the node coordinates relative to the stations, ``edges[a] − stations[:, a]``
    (shape ``(n, n_edges)``), usually repeat when the stations lie on a grid aligned with the
    model: ``u`` holds their distinct values and ``inv`` the index of each in ``u``. A cell's
    difference along ``a`` only needs the pair ``(inv[:, i], inv[:, i + 1])``; the distinct pairs
    are ``(lo, hi)`` (indices into ``u``) and ``pair[s, i]`` is the pair of cell ``i`` seen from
    station ``s``. Each entry is ``(u, lo, hi, pair)``.

    None is returned when the lattice of distinct values plus the differenced lattices would have
    as many elements as the node–station product (scattered stations): then the general path is
    cheaper.
    """
    n = stations.shape[0]
    work_general = n * math.prod([e.size for e in edges])
    plan = []
    for a, e in enumerate(edges):
        # The same subtraction as the general path, so the distinct values are bit-identical.
        rel = e[None, :] - stations[:, a : a + 1]
        u, inv = np.unique(rel, return_inverse=True)
        inv = inv.reshape(rel.shape)
        plan.append([u, inv])
    if math.prod([p[0].size for p in plan]) >= work_general:
        return None
    for p in plan:
        u, inv = p
        key = inv[:, :-1] * u.size + inv[:, 1:]
        pairs, pair = np.unique(key, return_inverse=True)
        p[:] = [u, pairs // u.size, pairs % u.size, pair.reshape(key.shape)]
    # Lattice sizes: the evaluation, then one differencing stage per axis.
    sizes = [p[0].size for p in plan]
    work = math.prod(sizes)
    for a, p in enumerate(plan):
        sizes[a] = p[1].size
        work += math.prod(sizes)
    if work >= work_general:
        return None
    return [tuple(p) for p in plan]


def _row_gather_rows(plan: list[tuple]) -> tuple[np.ndarray, np.ndarray] | None:
    """Return ``(rows, row_of)`` for a row-wise gather along the last axis, or None.

    ``rows`` are the distinct per-station pair-index rows of the last axis (one per station
    height when the stations are at a few heights) and ``row_of[s]`` is station ``s``'s row.
    Pre-gathering the lattice for each of them lets whole rows be copied at once; that is used
    only while the pre-gathered table stays below a quarter of the result's size (otherwise,
    e.g. one distinct height per station, cells are gathered one by one).
    """
    pair_last = plan[-1][3]
    rows, row_of = np.unique(pair_last, axis=0, return_inverse=True)
    n, n_last = pair_last.shape
    table_size = rows.shape[0] * math.prod([p[1].size for p in plan[:-1]]) * n_last
    if table_size > n * math.prod([p[3].shape[1] for p in plan]) // 4:
        return None
    return rows, row_of.reshape(-1)


def _distinct_sensitivity(
    node_fn: Callable[..., np.ndarray], plan: list[tuple], scale: float
) -> np.ndarray:
    """Evaluate ``node_fn`` on the lattice of distinct node coordinates and gather per station.

    The lattice ``node_fn(u_0 × u_1 × …)`` is differenced along each axis in the same order and
    with the same subtraction as ``np.diff`` in the general path (``hi − lo`` for every distinct
    pair), scaled, and the cell values are then gathered with the per-station pair indices, so
    every matrix entry is computed by exactly the same floating-point operations on the same
    operands as in the general path.
    """
    ndim = len(plan)
    n = plan[0][3].shape[0]
    ncells = tuple(p[3].shape[1] for p in plan)
    lat = node_fn(
        *(p[0].reshape([-1 if b == a else 1 for b in range(ndim)]) for a, p in enumerate(plan))
    )
    for a, (_, lo, hi, _) in enumerate(plan):
        lat = np.take(lat, hi, axis=a) - np.take(lat, lo, axis=a)
    lat *= scale
    out = np.empty((n, *ncells))
    row_table = _row_gather_rows(plan)
    if row_table is not None:
        rows, row_of = row_table
        lead = lat.shape[:-1]
        # table[(i_0, …, i_{ndim-2}, r)] is the row lat[i_0, …, i_{ndim-2}, rows[r]].
        table = lat[..., rows].reshape(-1, ncells[-1])
        chunk = max(1, _CHUNK_ELEMENTS // math.prod(ncells))
        for start in range(0, n, chunk):
            sl = slice(start, start + chunk)
            idx = np.zeros((min(chunk, n - start), *ncells[:-1]), dtype=np.intp)
            for a in range(ndim - 1):
                shape = [1] * ndim
                shape[0], shape[a + 1] = -1, ncells[a]
                idx *= lead[a]
                idx += plan[a][3][sl].reshape(shape)
            idx *= rows.shape[0]
            idx += row_of[sl].reshape([-1] + [1] * (ndim - 1))
            # mode="clip" (indices are in range) lets take write straight into ``out``.
            np.take(table, idx, axis=0, out=out[sl], mode="clip")
        return out
    chunk = max(1, _CHUNK_ELEMENTS // math.prod(ncells))
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        index = []
        for a in range(ndim):
            shape = [1] * (ndim + 1)
            shape[0], shape[a + 1] = -1, ncells[a]
            index.append(plan[a][3][sl].reshape(shape))
        out[sl] = lat[tuple(index)]
    return out


def _corner_sum(node_fn: Callable[..., np.ndarray], bounds: np.ndarray, points: np.ndarray):
    """Return the signed corner sum of ``node_fn`` for every (point, prism) pair, shape (n, m).

    ``bounds`` is (m, 2 ndim) as (lo, hi) per axis and ``points`` is (n, ndim). Work is chunked
    over points to bound memory.
    """
    ndim = points.shape[1]
    m = bounds.shape[0]
    out = np.empty((points.shape[0], m))
    chunk = max(1, _CHUNK_ELEMENTS // (m * 2**ndim))
    for start in range(0, points.shape[0], chunk):
        p = points[start : start + chunk]
        rel = []
        for a in range(ndim):
            shape = [p.shape[0], m] + [1] * ndim
            shape[2 + a] = 2
            rel.append((bounds[None, :, 2 * a : 2 * a + 2] - p[:, None, a : a + 1]).reshape(shape))
        vals = node_fn(*rel)
        for a in range(ndim):
            vals = np.diff(vals, axis=2 + a)
        out[start : start + chunk] = vals.reshape(p.shape[0], m)
    return out


# ----------------------------------------------------------------------------------------------
# closed-form antiderivatives
# ----------------------------------------------------------------------------------------------
def _xlog_yr(x: np.ndarray, y: np.ndarray, rho2: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Return ``x · ln(y + r)`` with ``rho2 = r² − y²``, safe where ``y + r`` cancels or is 0.

    For ``y < 0`` the identity ``y + r = rho2 / (r − y)`` avoids cancellation; where ``x = 0`` the
    term is 0 (its limit), which also covers ``y + r = 0`` (that needs ``rho2 = 0``, hence
    ``x = 0``).
    """
    neg = y < 0
    num = np.where(neg, rho2, y + r)
    den = np.where(neg, r - y, 1.0)
    ok = x != 0
    arg = np.where(ok, num / np.where(den > 0, den, 1.0), 1.0)
    return np.where(ok, x * np.log(np.where(arg > 0, arg, 1.0)), 0.0)


def _gz_prism_nodes(xi: np.ndarray, eta: np.ndarray, zeta: np.ndarray) -> np.ndarray:
    """Antiderivative ``ξ ln(η + r) + η ln(ξ + r) − ζ arctan(ξη / (ζ r))`` of Nagy et al. (2000)."""
    xi, eta, zeta = np.broadcast_arrays(xi, eta, zeta)
    xi2, eta2, zeta2 = xi * xi, eta * eta, zeta * zeta
    r = np.sqrt(xi2 + eta2 + zeta2)
    out = _xlog_yr(xi, eta, xi2 + zeta2, r)
    out += _xlog_yr(eta, xi, eta2 + zeta2, r)
    # ζ arctan(ξη/(ζ r)) → 0 as ζ → 0 (bounded arctan times ζ); r > 0 wherever ζ ≠ 0.
    nz = zeta != 0
    den = np.where(nz, zeta * r, 1.0)
    out -= np.where(nz, zeta * np.arctan(xi * eta / den), 0.0)
    return out


def _gz_rect2d_nodes(xi: np.ndarray, zeta: np.ndarray) -> np.ndarray:
    """Antiderivative ``ξ ln ρ + ζ arctan(ξ / ζ)`` of the 2-D kernel ``ζ / ρ²``."""
    xi, zeta = np.broadcast_arrays(xi, zeta)
    rho2 = xi * xi + zeta * zeta
    nx = xi != 0
    out = np.where(nx, 0.5 * xi * np.log(np.where(nx, rho2, 1.0)), 0.0)
    nz = zeta != 0
    out += np.where(nz, zeta * np.arctan(xi / np.where(nz, zeta, 1.0)), 0.0)
    return out


# Prefactors turning the corner sums into mGal per (kg/m³).
_PRISM_FACTOR = G * SI_TO_MGAL
_RECT2D_FACTOR = -2.0 * G * SI_TO_MGAL


# ----------------------------------------------------------------------------------------------
# public kernels
# ----------------------------------------------------------------------------------------------
def sphere_gz(center: Any, radius: Any, density: Any, points: Any) -> np.ndarray:
    r"""Return the vertical gravity attraction of homogeneous spheres, in mGal.

    Parameters
    ----------
    center : array_like, shape (3,) or (m, 3)
        Sphere centres ``(x, y, z)`` in metres (z up).
    radius : float or array_like, shape (m,)
        Radii in metres (positive).
    density : float or array_like, shape (m,)
        Density contrasts in kg/m³.
    points : array_like, shape (n, 3) or (3,)
        Observation points in metres.

    Returns
    -------
    numpy.ndarray, shape (n,)
        Downward attraction ``g_z`` summed over the spheres, in mGal; positive for a positive
        contrast below the point.

    Notes
    -----
    Outside a sphere the field is that of a point mass ``M = (4/3)πR³Δρ`` at its centre,

    .. math:: g_z = G M (z_p - z_c) / r^3, \qquad r = |p - c|,

    with ``G = 6.6743e-11`` m³ kg⁻¹ s⁻² (Blakely 1995, *Potential Theory in Gravity and Magnetic
    Applications*, §3.3). At a point inside a sphere only the mass within radius ``r`` attracts
    (shell theorem), so ``M`` is replaced by ``M (r/R)³``; the centre itself gives 0.

    Examples
    --------
    >>> from bayesjoint.physics.gravity import sphere_gz
    >>> g = sphere_gz([0.0, 0.0, -100.0], 50.0, 500.0, [[0.0, 0.0, 0.0]])
    >>> round(float(g[0]), 6)
    0.174733
    """
    c = _as_points(center, "center")
    m = c.shape[0]
    rad = _as_per_body(radius, m, "radius")
    if np.any(rad <= 0):
        raise ValueError("radius must be positive (metres)")
    rho = _as_per_body(density, m, "density")
    p = _as_points(points, "points")
    d = p[:, None, :] - c[None, :, :]
    r = np.sqrt(np.sum(d * d, axis=-1))
    mass = (4.0 / 3.0) * np.pi * rad**3 * rho
    inside = r < rad
    # Outside: G M dz / r³; inside: G M dz / R³ (enclosed mass M r³/R³ over r²) — both finite.
    denom = np.where(inside, rad[None, :] ** 3, np.where(r > 0, r, 1.0) ** 3)
    g = G * mass[None, :] * d[..., 2] / denom
    return SI_TO_MGAL * g.sum(axis=1)


def prism_gz(bounds: Any, density: Any, points: Any) -> np.ndarray:
    r"""Return the vertical gravity attraction of right rectangular prisms, in mGal.

    Parameters
    ----------
    bounds : array_like, shape (6,) or (m, 6)
        Prism bounds ``(x0, x1, y0, y1, z0, z1)`` in metres (z up), with ``x0 < x1`` etc.
    density : float or array_like, shape (m,)
        Density contrasts in kg/m³.
    points : array_like, shape (n, 3) or (3,)
        Observation points in metres. Points may lie on faces, edges or corners of a prism (or
        inside it): ``g_z`` is continuous and the closed form is evaluated through its limits.

    Returns
    -------
    numpy.ndarray, shape (n,)
        Downward attraction ``g_z`` summed over the prisms, in mGal; positive for a positive
        contrast below the point.

    Notes
    -----
    With ``ξ, η, ζ`` the prism-corner coordinates relative to the point and
    ``r = √(ξ² + η² + ζ²)``, the closed form of Nagy, Papp & Benedek (2000, *J. Geodesy* 74,
    552–560; also Okabe 1979) is

    .. math::

        g_z = G Δρ \sum_{i,j,k=1}^{2} (-1)^{i+j+k+1}
              \left[ ξ_i \ln(η_j + r) + η_j \ln(ξ_i + r)
              - ζ_k \arctan\frac{ξ_i η_j}{ζ_k r} \right]

    (the sign makes ``g_z`` the downward attraction). Numerically safe forms: for ``η < 0``,
    ``η + r`` is evaluated as ``(ξ² + ζ²)/(r − η)`` to avoid cancellation, and the terms
    ``ξ ln(·)`` and ``ζ arctan(·)`` are set to their limit 0 where ``ξ = 0`` or ``ζ = 0`` — which
    is what makes points on the planes and edges of a prism safe. Far from a small prism the
    corner sum loses digits to cancellation, roughly ``1e-16 (r / size)³`` relative.

    Examples
    --------
    >>> from bayesjoint.physics.gravity import prism_gz
    >>> g = prism_gz([-50.0, 50.0, -50.0, 50.0, -150.0, -50.0], 1000.0, [0.0, 0.0, 0.0])
    >>> round(float(g[0]), 6)
    0.629385
    """
    b = _as_bounds(bounds)
    rho = _as_per_body(density, b.shape[0], "density")
    p = _as_points(points, "points")
    kernel = _corner_sum(_gz_prism_nodes, b, p)
    return _PRISM_FACTOR * (kernel @ rho)


def gravity_sensitivity(grid: Grid, stations: Any) -> np.ndarray:
    r"""Return the gravity sensitivity matrix of a prism grid, in mGal per (kg/m³).

    Parameters
    ----------
    grid : bayesjoint.Grid
        Either a 3-D grid with axes ``x``, ``y``, ``z`` (each cell a rectangular prism) or a
        2-D grid with axes ``x``, ``z`` (each cell a rectangle of infinite extent along ``y``).
        Any axis order is accepted; columns follow the grid's C-order flattening.
    stations : array_like, shape (n, 3)
        Station coordinates ``(x, y, z)`` in metres (z up). For a 2-D grid, shape (n, 2) as
        ``(x, z)`` is also accepted, and a ``y`` column is ignored (the body is infinite in y).

    Returns
    -------
    numpy.ndarray, shape (n, grid.size)
        Dense float64 matrix ``A`` with ``g_z = A @ density.ravel()`` (downward attraction in
        mGal for density contrasts in kg/m³).

    Notes
    -----
    3-D cells use the prism closed form of :func:`prism_gz` (Nagy et al. 2000). 2-D cells use
    the closed form for a rectangle infinite along ``y`` (the two-dimensional limit of the prism,
    equivalent to Talwani, Worzel & Landisman 1959 for a four-sided polygon):

    .. math::

        g_z = -2 G Δρ \sum_{i,k=1}^{2} (-1)^{i+k}
              \left[ ξ_i \ln \sqrt{ξ_i^2 + ζ_k^2} + ζ_k \arctan(ξ_i / ζ_k) \right],

    with ``ξ, ζ`` the corner coordinates relative to the station. A wide 2-D slab gives the
    Bouguer value ``2πGΔρh``. Evaluations are shared between adjacent cells: the antiderivative
    is computed once per grid node and station and differenced along each axis, with stations
    processed in small chunks to bound memory. When the stations lie on a grid aligned with the
    model, the node-minus-station coordinates repeat along each axis; the antiderivative is then
    evaluated and differenced once per *distinct* coordinate combination and the cell values are
    gathered per station, whenever that lattice is smaller than the node–station product. Both
    routes perform the same floating-point operations on the same operands, so they give
    identical matrices; peak memory is close to the size of the result.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> from bayesjoint.physics.gravity import gravity_sensitivity
    >>> grid = bj.Grid.from_edges(x=[-50.0, 50.0], y=[-50.0, 50.0], z=[-150.0, -50.0])
    >>> A = gravity_sensitivity(grid, [[0.0, 0.0, 0.0]])
    >>> A.shape, round(float(A[0, 0] * 1000.0), 6)
    ((1, 1), 0.629385)
    """
    axes = _grid_axes(grid, "gravity_sensitivity")
    st = _stations_for(axes, stations)
    edges = [grid.edges[a] for a in axes]
    if len(axes) == 3:
        node_fn, factor = _gz_prism_nodes, _PRISM_FACTOR
    else:
        node_fn, factor = _gz_rect2d_nodes, _RECT2D_FACTOR
    # Both closed forms are elementwise and ignore the sign of a zero coordinate (each term with
    # a zero factor is set to its limit 0), as the distinct-value path requires.
    canonical = _nodal_sensitivity(node_fn, edges, st, scale=factor, distinct=True)
    return _to_grid_order(canonical, grid, axes)


class Gravity(Linear):
    """Gravity anomaly of a density-contrast field on a prism grid (linear physics).

    Parameters
    ----------
    grid : bayesjoint.Grid
        3-D grid (axes ``x, y, z``) of prisms, or 2-D grid (axes ``x, z``) of bodies infinite
        along ``y``; see :func:`gravity_sensitivity`.
    stations : array_like, shape (n, 3)
        Station coordinates in metres (z up); ``(n, 2)`` as ``(x, z)`` for a 2-D grid.
    input : str, optional
        Name of the latent density-contrast field (kg/m³, shaped like the grid).

    Attributes
    ----------
    grid : bayesjoint.Grid
        The grid.
    stations : numpy.ndarray
        The validated station coordinates.

    Notes
    -----
    The forward map is ``g_z = A ρ`` with ``A`` from :func:`gravity_sensitivity`: downward
    attraction in mGal, positive for a positive density contrast below a station (z up). The
    formulas are the prism closed form of Nagy et al. (2000) and its 2-D limit.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> grid = bj.Grid.from_edges(x=[-50.0, 0.0, 50.0], y=[-50.0, 50.0], z=[-150.0, -50.0])
    >>> from bayesjoint.physics.gravity import Gravity
    >>> op = Gravity(grid, [[0.0, 0.0, 0.0]])
    >>> g = op(density=np.full(grid.shape, 1000.0))
    >>> round(float(g[0]), 6)
    0.629385
    """

    @checked_init("bj.physics.Gravity")
    def __init__(self, grid: Grid, stations: Any, input: str = "density"):
        axes = _grid_axes(grid, "Gravity")
        self.grid = grid
        self.stations = _stations_for(axes, stations)
        super().__init__(gravity_sensitivity(grid, self.stations), input=input)

    def __repr__(self) -> str:
        return f"Gravity({self.grid!r}, stations={self.stations.shape[0]}, input={self.inputs})"
