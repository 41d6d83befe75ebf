"""Petrophysical relations and the soft petrophysical coupling ``b ≈ g(a)``.

The relations (:func:`archie`, :func:`gardner`, :func:`wyllie`, :func:`gassmann`, :func:`faust`,
:func:`linear`) are pure functions: numpy inputs give numpy outputs (and are checked, so a
non-physical value raises a ValueError naming the argument), any pytensor input gives a
differentiable tensor. They serve both as physics building blocks (e.g. a travel-time modality
that reads a porosity field through ``1 / wyllie(porosity, ...)``) and as the relation of a
:class:`Petrophysical` coupling.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import scipy.linalg as sla
import scipy.sparse as sp
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from bayesjoint._checks import as_real_array, checked_init
from bayesjoint._tensor import is_symbolic
from bayesjoint.coupling.base import Coupling, GaussianFactor
from bayesjoint.latent import check_name
from bayesjoint.priors import Prior

#: Largest residual size whose normalizer spectrum is computed at model build: a dense
#: ``n × n`` eigh (measured on one core of the 2-core test machine: 2.5 s at n = 2,048, 21 s at
#: n = 4,096; 134 MB per matrix at 4,096).
NORMALIZER_LIMIT = 4096
#: Largest number of stacked residual elements of links sharing fields that are normalized
#: jointly: a dense ``N × N`` Cholesky factorization and triangular inverse per log-density
#: evaluation, value and gradient together (measured on one core of the loaded 2-core test
#: machine: 1.7 ms at N = 196, 24 ms at 512, 0.11 s at 1,024, 0.70 s at 2,048; the collapsed
#: route factorizes up to 3,000 per evaluation). Beyond it each learned link is normalized over
#: its own fields' priors, with a warning.
JOINT_NORMALIZER_LIMIT = 1024

if TYPE_CHECKING:
    from bayesjoint.latent import LatentVariable

__all__ = [
    "FAUST_A",
    "RELATIONS",
    "Petrophysical",
    "archie",
    "faust",
    "gardner",
    "gassmann",
    "linear",
    "wyllie",
]

#: Faust's constant in SI units: 1948 (ft/s)·(ft·Ω·m)^(−1/6) × 0.3048^(5/6) ≈ 723.78.
FAUST_A = 1948.0 * 0.3048 ** (5.0 / 6.0)

# What each named argument must satisfy when it is given as numbers.
_RULES: dict[str, tuple[str, str]] = {
    "porosity": ("fraction", "a volume fraction in (0, 1], not a percentage"),
    "saturation": ("fraction", "a fraction of the pore space in (0, 1]"),
    "rw": ("positive", "the formation-water resistivity in Ω·m, > 0"),
    "velocity": ("positive", "a P-wave velocity in m/s, > 0"),
    "v_matrix": ("positive", "the matrix (grain) velocity in m/s, > 0"),
    "v_fluid": ("positive", "the pore-fluid velocity in m/s, > 0"),
    "k_dry": ("positive", "the dry-rock bulk modulus, > 0"),
    "k_mineral": ("positive", "the mineral bulk modulus, > 0"),
    "k_fluid": ("positive", "the pore-fluid bulk modulus, > 0"),
    "resistivity": ("positive", "a resistivity in Ω·m, > 0"),
    "depth": ("positive", "a depth below the surface in metres, > 0"),
    "a": ("positive", "a positive coefficient"),
    "b": ("finite", "a finite exponent"),
    "m": ("finite", "a finite cementation exponent"),
    "n": ("finite", "a finite saturation exponent"),
    "exponent": ("finite", "a finite exponent"),
    "slope": ("finite", "a finite number"),
    "intercept": ("finite", "a finite number"),
    "x": ("finite", "finite values"),
}


def _check(fn: str, name: str, value: Any) -> np.ndarray:
    """Return ``value`` as a float array after checking the rule for ``name``."""
    arr = np.asarray(value, dtype=float)
    kind, meaning = _RULES[name]
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{fn}: {name} contains NaN or inf; it must be {meaning}")
    if kind == "positive" and np.any(arr <= 0):
        raise ValueError(f"{fn}: {name} must be {meaning}; got a minimum of {float(np.min(arr))!r}")
    if kind == "fraction" and (np.any(arr <= 0) or np.any(arr > 1)):
        raise ValueError(
            f"{fn}: {name} must be {meaning}; got values in "
            f"[{float(np.min(arr))!r}, {float(np.max(arr))!r}]"
        )
    return arr


def _inputs(fn: str, values: Mapping[str, Any]) -> tuple[list[Any], bool]:
    """Return checked numpy arrays, or pytensor tensors when any value is symbolic."""
    if any(is_symbolic(v) for v in values.values()):
        return [pt.as_tensor_variable(v, dtype="float64") for v in values.values()], True
    return [_check(fn, k, v) for k, v in values.items()], False


def _result(value: Any, symbolic: bool) -> Any:
    return value if symbolic else np.asarray(value, dtype=float)[()]


def archie(
    porosity: Any,
    saturation: Any = 1.0,
    rw: Any = None,
    a: Any = 1.0,
    m: Any = 2.0,
    n: Any = 2.0,
) -> Any:
    r"""Return the formation resistivity from Archie's law.

    Parameters
    ----------
    porosity : array_like or pytensor tensor
        Porosity φ, a volume fraction in (0, 1].
    saturation : array_like or pytensor tensor, default 1.0
        Water saturation S_w in (0, 1] (1: fully saturated, giving R_o).
    rw : array_like or pytensor tensor
        Formation-water resistivity R_w in Ω·m (required).
    a : float, default 1.0
        Tortuosity factor.
    m : float, default 2.0
        Cementation exponent.
    n : float, default 2.0
        Saturation exponent.

    Returns
    -------
    numpy.ndarray, float or pytensor tensor
        Resistivity R_t in Ω·m, broadcast over the inputs.

    Notes
    -----
    .. math:: R_t = a\, R_w\, φ^{-m}\, S_w^{-n}

    (Archie 1942, Trans. AIME 146, 54; Mavko et al., *The Rock Physics Handbook*). Clean,
    conductive-brine rocks only (no clay conduction). Numpy inputs are checked (φ and S_w in
    (0, 1], R_w > 0); tensors are not, so keep porosity positive in a model.

    Examples
    --------
    >>> from bayesjoint.coupling import archie
    >>> round(float(archie(0.2, rw=0.05)), 12), round(float(archie(0.2, 0.5, rw=0.05)), 12)
    (1.25, 5.0)
    """
    if rw is None:
        raise TypeError("archie: give rw, the formation-water resistivity in Ω·m (e.g. rw=0.05)")
    (phi, sw, rw_, a_, m_, n_), symbolic = _inputs(
        "archie",
        {"porosity": porosity, "saturation": saturation, "rw": rw, "a": a, "m": m, "n": n},
    )
    return _result(a_ * rw_ * phi ** (-m_) * sw ** (-n_), symbolic)


def gardner(velocity: Any, a: Any = 0.31, b: Any = 0.25) -> Any:
    r"""Return the bulk density from Gardner's relation.

    Parameters
    ----------
    velocity : array_like or pytensor tensor
        P-wave velocity in m/s (> 0).
    a : float, default 0.31
        Coefficient for velocity in m/s and density in g/cm³.
    b : float, default 0.25
        Exponent.

    Returns
    -------
    numpy.ndarray, float or pytensor tensor
        Bulk density in g/cm³ (multiply by 1000 for kg/m³).

    Notes
    -----
    .. math:: ρ = a\, V^{b}

    (Gardner, Gardner & Gregory 1974, Geophysics 39, 770; Mavko et al., *The Rock Physics
    Handbook*), empirical for brine-saturated sedimentary rocks, roughly 1500–6100 m/s.

    Examples
    --------
    >>> from bayesjoint.coupling import gardner
    >>> round(float(gardner(3000.0)), 3)
    2.294
    """
    (v, a_, b_), symbolic = _inputs("gardner", {"velocity": velocity, "a": a, "b": b})
    return _result(a_ * v**b_, symbolic)


def wyllie(porosity: Any, v_matrix: Any, v_fluid: Any) -> Any:
    r"""Return the P-wave velocity from Wyllie's time average.

    Parameters
    ----------
    porosity : array_like or pytensor tensor
        Porosity φ in (0, 1].
    v_matrix : array_like or pytensor tensor
        Matrix (grain) velocity V_m in m/s.
    v_fluid : array_like or pytensor tensor
        Pore-fluid velocity V_f in m/s.

    Returns
    -------
    numpy.ndarray, float or pytensor tensor
        Velocity V in m/s.

    Notes
    -----
    .. math:: \frac{1}{V} = \frac{φ}{V_f} + \frac{1 - φ}{V_m}

    (Wyllie, Gregory & Gardner 1956, Geophysics 21, 41; Mavko et al., *The Rock Physics
    Handbook*). The slowness ``1/V`` is linear in φ, so straight-ray travel times through a
    Wyllie rock are linear in porosity.

    Examples
    --------
    >>> from bayesjoint.coupling import wyllie
    >>> round(float(wyllie(0.2, v_matrix=4000.0, v_fluid=1484.0)), 2)
    2987.12
    """
    (phi, vm, vf), symbolic = _inputs(
        "wyllie", {"porosity": porosity, "v_matrix": v_matrix, "v_fluid": v_fluid}
    )
    return _result(1.0 / (phi / vf + (1.0 - phi) / vm), symbolic)


def gassmann(k_dry: Any, k_mineral: Any, k_fluid: Any, porosity: Any) -> Any:
    r"""Return the saturated bulk modulus from Gassmann's equation.

    Parameters
    ----------
    k_dry : array_like or pytensor tensor
        Dry-rock (frame) bulk modulus K_d.
    k_mineral : array_like or pytensor tensor
        Mineral bulk modulus K_m.
    k_fluid : array_like or pytensor tensor
        Pore-fluid bulk modulus K_f.
    porosity : array_like or pytensor tensor
        Porosity φ in (0, 1].

    Returns
    -------
    numpy.ndarray, float or pytensor tensor
        Saturated bulk modulus K_sat, in the units of the inputs (e.g. GPa).

    Notes
    -----
    .. math:: K_{sat} = K_d + \frac{(1 - K_d/K_m)^2}{φ/K_f + (1 - φ)/K_m - K_d/K_m^2}

    (Gassmann 1951, Vierteljahrsschr. Naturforsch. Ges. Zürich 96, 1; Mavko et al., *The Rock
    Physics Handbook*, §6.3). Low-frequency limit, isotropic monomineralic frame; all moduli in
    the same units. The shear modulus is unchanged by the fluid.

    Examples
    --------
    >>> from bayesjoint.coupling import gassmann
    >>> round(float(gassmann(15.0, 36.6, 2.8, 0.35)), 7)
    17.6473742
    """
    (kd, km, kf, phi), symbolic = _inputs(
        "gassmann",
        {"k_dry": k_dry, "k_mineral": k_mineral, "k_fluid": k_fluid, "porosity": porosity},
    )
    return _result(kd + (1.0 - kd / km) ** 2 / (phi / kf + (1.0 - phi) / km - kd / km**2), symbolic)


def faust(resistivity: Any, depth: Any, a: Any = FAUST_A, exponent: Any = 1.0 / 6.0) -> Any:
    r"""Return the P-wave velocity from Faust's resistivity–depth relation.

    Parameters
    ----------
    resistivity : array_like or pytensor tensor
        Formation resistivity R in Ω·m.
    depth : array_like or pytensor tensor
        Depth below the surface in metres, positive downwards (``depth = −z`` with z up).
    a : float, default FAUST_A ≈ 723.78
        Coefficient in SI units (m/s per (m·Ω·m)^exponent).
    exponent : float, default 1/6

    Returns
    -------
    numpy.ndarray, float or pytensor tensor
        Velocity in m/s.

    Notes
    -----
    .. math:: V = a\, (Z R)^{c},\qquad c = 1/6

    Faust (1953, Geophysics 18, 271) gave ``V = 1948 (Z R)^{1/6}`` with V in ft/s and Z in ft;
    in SI this is ``a = 1948 · 0.3048^{5/6} ≈ 723.78``. Empirical, for shales and sands.

    Examples
    --------
    >>> from bayesjoint.coupling import faust
    >>> round(float(faust(10.0, 304.8)) / 0.3048, 3)  # 1948 (1000 ft · 10 Ω·m)^(1/6) ft/s
    9041.815
    """
    (r, z, a_, c), symbolic = _inputs(
        "faust", {"resistivity": resistivity, "depth": depth, "a": a, "exponent": exponent}
    )
    return _result(a_ * (z * r) ** c, symbolic)


def linear(x: Any, slope: Any = 1.0, intercept: Any = 0.0) -> Any:
    """Return the linear relation ``slope · x + intercept``.

    Parameters
    ----------
    x : array_like or pytensor tensor
        The input property.
    slope : float or array_like, default 1.0
        In units of the output per unit of ``x``.
    intercept : float or array_like, default 0.0
        In units of the output.

    Returns
    -------
    numpy.ndarray, float or pytensor tensor

    Notes
    -----
    A :class:`Petrophysical` coupling with this relation, a fixed scatter and ``log=False`` is one
    more linear-Gaussian factor, so the exact path
    (:meth:`bayesjoint.JointInversion.exact_posterior`) and the information budget include it.
    Example: a density–velocity line fitted to logs (Birch 1961, J. Geophys. Res. 66, 2199).

    Examples
    --------
    >>> from bayesjoint.coupling import linear
    >>> float(linear(2.0, slope=0.5, intercept=1.0))
    2.0
    """
    (x_, s, c), symbolic = _inputs("linear", {"x": x, "slope": slope, "intercept": intercept})
    return _result(s * x_ + c, symbolic)


#: The named relations accepted by :class:`Petrophysical` as ``relation="<name>"``.
RELATIONS: dict[str, Callable[..., Any]] = {
    "archie": archie,
    "faust": faust,
    "gardner": gardner,
    "gassmann": gassmann,
    "linear": linear,
    "wyllie": wyllie,
}
# Relations whose value is positive for valid inputs (log space is natural for them).
_POSITIVE = frozenset({archie, faust, gardner, gassmann, wyllie})


def _unwrap(fn: Callable[..., Any]) -> tuple[Callable[..., Any], tuple, dict]:
    """Return ``(base function, bound positional args, bound keywords)`` of nested partials."""
    args: tuple = ()
    keywords: dict = {}
    while isinstance(fn, functools.partial):
        args = tuple(fn.args) + args
        keywords = {**fn.keywords, **keywords}
        fn = fn.func
    return fn, args, keywords


def _relation(owner: str, relation: str | Callable[..., Any]) -> Callable[..., Any]:
    """Return the relation function: a name in ``RELATIONS`` or a callable."""
    if isinstance(relation, str):
        if relation not in RELATIONS:
            raise ValueError(
                f"{owner}: unknown relation {relation!r}; choose one of {sorted(RELATIONS)} "
                "or pass a callable"
            )
        return RELATIONS[relation]
    if callable(relation):
        return relation
    raise TypeError(
        f"{owner}: relation must be a name in {sorted(RELATIONS)} or a callable, got "
        f"{type(relation).__name__}"
    )


def _scatter(owner: str, scatter: Any) -> np.ndarray | Prior:
    """Return the scatter sd of b about g(a): positive finite values, or a positive prior."""
    if isinstance(scatter, Prior):
        if not scatter.positive:
            raise ValueError(
                f"{owner}: a learned scatter needs a positive prior, e.g. "
                f"bj.priors.HalfNormal(0.2); got {scatter!r}"
            )
        return scatter
    try:
        arr = as_real_array(scatter, f"{owner}: scatter")
    except (TypeError, ValueError):
        raise TypeError(
            f"{owner}: scatter must be a positive number, an array or a positive prior, "
            f"got {type(scatter).__name__}"
        ) from None
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(
            f"{owner}: scatter must be positive and finite (the sd of b about g(a)), "
            f"got {scatter!r}"
        )
    return arr


class Petrophysical(Coupling):
    r"""Soft petrophysical link ``b ≈ g(a)`` between latent properties.

    Parameters
    ----------
    a : str or sequence of str
        Latent name(s) fed to the relation, positionally (e.g. ``("porosity", "saturation")``
        for Archie).
    b : str
        Latent name of the linked property.
    relation : str or callable
        A name in :data:`RELATIONS` (``"archie"``, ``"gardner"``, ``"wyllie"``,
        ``"gassmann"``, ``"faust"``, ``"linear"``) or any callable ``g(*a, **parameters)``
        written with arithmetic operators or :mod:`pytensor.tensor` (it receives tensors).
    scatter : float, array_like or Prior
        Standard deviation of ``b`` about ``g(a)``: in natural-log units (≈ relative scatter)
        in log space, in ``b``'s units otherwise. A positive prior (e.g.
        ``bj.priors.HalfNormal(0.2)``) learns one scatter, named ``<name>_scatter``.
    log : bool, optional
        Compare ``ln b`` with ``ln g(a)``. Default (None): log space when ``b`` is positive, i.e.
        its prior is positive-only or it is listed in ``log_latent``.
    parameters : mapping, optional
        Fixed keyword arguments of the relation (e.g. ``{"rw": 0.05, "m": 2.0}``); numbers are
        checked at construction by the named relations' rules.
    log_latent : str or sequence of str, optional
        Names among ``a`` and ``b`` whose latent variable stores the natural logarithm of the
        property (the usual way to keep a positive property positive): they are exponentiated
        before entering the relation, and a log-latent ``b`` is compared directly in log space.
    name : str, optional
        Name of the coupling (its ``pm.Potential``); default ``"petrophysics_<b>"``.

    Attributes
    ----------
    name : str
    inputs : tuple of str
        ``(*a, b)``.
    relation : callable
        ``g`` with the fixed parameters bound.

    Notes
    -----
    With residual ``r = ln b − ln g(a)`` (log space) or ``r = b − g(a)``, the coupling adds

    .. math:: \log p_c = \sum_i \big[-\log s_i - \tfrac12 \log 2π - \tfrac12 (r_i / s_i)^2\big]

    as a ``pm.Potential``: the conditional density of ``b`` (or ``ln b``) given ``a``. With a
    fixed ``s`` the product of this factor and the fields' own priors is normalized up to a
    constant. With a learned scalar ``s = σ`` it is not: its integral over the field priors is

    .. math:: Z(σ) = \int p(a)\,p(b) \prod_i N(r_i; 0, σ^2)\,da\,db = N(0;\, m_r,\, C_r + σ^2 I),

    with ``m_r``, ``C_r`` the prior mean and covariance of ``r``. Smooth priors leave ``r``
    little variance in some directions, where ``Z`` grows as σ shrinks, so σ would be pulled
    toward 0. For a linear link (``relation="linear"``, linear space, no
    log latents) between fields whose priors are Gaussian with fixed hyperparameters, the
    model therefore also adds ``−log Z(σ)`` as the potential ``<name>_normalizer``, with
    ``C_r = U diag(λ) Uᵀ`` and ``μ = Uᵀ m_r`` computed once
    (:meth:`normalizer_spectrum`):

    .. math:: \log Z(σ) = -\tfrac12 \sum_i \big[\log 2π(λ_i + σ^2) + μ_i^2 / (λ_i + σ^2)\big],

    so σ's prior is the one given. Elsewhere (nonlinear relations, learned field
    hyperparameters) ``Z`` is left out with a warning at build time: σ's posterior is then
    biased toward small values. Linear links that share a field (directly or through other
    linear links, fixed or learned) are normalized jointly: with ``s_j = r_j + ε_j`` the
    residual of link ``j`` plus its scatter, each link built after others of its group adds
    ``−log p(s_k = 0 | s_j = 0, j < k)``, and the terms sum to

    .. math:: \log Z(σ_1, …, σ_K) = \log N\big(0;\, m,\, C + \mathrm{diag}(σ_j^2 I_j)\big)

    over the stacked residuals (:meth:`joint_log_normalizer`; one Cholesky factorization of
    size ``N = Σ n_j`` per evaluation, ``N ≤ JOINT_NORMALIZER_LIMIT``; beyond it each learned
    link is normalized over its own fields' priors, with a warning). Other couplings on the
    same fields (nonlinear links, cross-gradients) are not included in ``Z``. Elementwise
    relations need ``a`` and ``b`` of the same shape (same grid for fields); scalars
    broadcast. Petrophysical relations are empirical, so a soft link with a scatter that matches
    the rocks (Mavko et al., *The Rock Physics Handbook*) is more honest than a hard
    substitution ``b = g(a)``. With
    ``relation="linear"``, a fixed scatter and linear space, the link is one more linear-Gaussian
    factor ``b − slope·a − intercept ~ N(0, s²)`` (:meth:`gaussian_factor`), so the exact path
    and the information budget include it. Positivity: in log space ``b`` and ``g(a)`` must be
    positive, and the relations take powers of porosity, velocity, resistivity; numbers are
    checked, but inside a model use positive priors or log latents (``log_latent``) so the
    sampler never proposes non-positive values.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> from bayesjoint.coupling import Petrophysical
    >>> link = Petrophysical("porosity", "resistivity", "archie", scatter=0.1,
    ...                      parameters={"rw": 0.05})
    >>> round(float(link.relation(np.array(0.2))), 6)
    1.25
    >>> Petrophysical("density", "velocity", "linear", scatter=50.0,
    ...               parameters={"slope": 1.5, "intercept": -1000.0}).is_linear
    True
    """

    @checked_init("bj.Petrophysical")
    def __init__(
        self,
        a: str | Sequence[str],
        b: str,
        relation: str | Callable[..., Any],
        *,
        scatter: Any,
        log: bool | None = None,
        parameters: Mapping[str, Any] | None = None,
        log_latent: str | Sequence[str] = (),
        name: str | None = None,
    ) -> None:
        a_names = (a,) if isinstance(a, str) else tuple(a)
        if not a_names or not all(isinstance(n, str) for n in a_names):
            raise TypeError("Petrophysical(a=...) must be a latent name or a sequence of names")
        if not isinstance(b, str):
            raise TypeError(f"Petrophysical(b=...) must be a latent name, got {type(b).__name__}")
        if b in a_names:
            raise ValueError(f"Petrophysical links two different properties; {b!r} is both a and b")
        self.a, self.b = a_names, b
        self.inputs = (*a_names, b)
        self.name = check_name(name if name is not None else f"petrophysics_{b}", "Petrophysical")
        owner = f"Petrophysical {self.name!r}"
        self.parameters = dict(parameters or {})
        fn = _relation(owner, relation)
        self._base, bound_args, bound_kw = _unwrap(fn)
        self._check_parameters(owner, fn, {**bound_kw, **self.parameters})
        self.relation: Callable[..., Any] = functools.partial(fn, **self.parameters)
        self.relation_name = getattr(self._base, "__name__", type(self._base).__name__)
        merged = {**bound_kw, **self.parameters}
        self.is_linear = bool(
            self._base is linear and not bound_args and len(a_names) == 1 and "x" not in merged
        )
        self._slope = merged.get("slope", 1.0)
        self._intercept = merged.get("intercept", 0.0)
        if log is not None and not isinstance(log, bool):
            raise TypeError(f"{owner}: log must be True, False or None (automatic)")
        self.log = log
        self.log_latent = (log_latent,) if isinstance(log_latent, str) else tuple(log_latent)
        stray = [n for n in self.log_latent if n not in self.inputs]
        if stray:
            raise ValueError(
                f"{owner}: log_latent names {stray} are not among the linked variables "
                f"{self.inputs}"
            )
        self.scatter: np.ndarray | Prior = _scatter(owner, scatter)

    @staticmethod
    def _check_parameters(owner: str, fn: Callable[..., Any], params: Mapping[str, Any]) -> None:
        base, _, _ = _unwrap(fn)
        try:
            sig = inspect.signature(base)
        except (TypeError, ValueError):  # builtins without a signature: nothing to check
            return
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        unknown = [k for k in params if k not in sig.parameters and not accepts_any]
        if unknown:
            raise ValueError(
                f"{owner}: the relation {getattr(base, '__name__', base)!r} has no parameter(s) "
                f"{unknown}; its parameters are {list(sig.parameters)}"
            )
        if base in RELATIONS.values():
            for key, value in params.items():
                if key in _RULES and not is_symbolic(value):
                    try:
                        _check(base.__name__, key, value)
                    except ValueError as err:
                        raise ValueError(f"{owner}: {err}") from None

    # -- resolution against the declared variables ------------------------------------------
    def use_log(self, variables: Mapping[str, LatentVariable]) -> bool:
        """Return whether the comparison is made in log space for these declarations."""
        if self.log is not None:
            return self.log
        if self.b in self.log_latent:
            return True
        return bool(variables[self.b].prior.positive)

    def validate(self, variables: Mapping[str, LatentVariable]) -> None:
        """Check names, shapes, grids, scatter shape and log-space positivity.

        Raises
        ------
        ValueError
            Naming the coupling and what to change.
        """
        super().validate(variables)
        owner = f"coupling {self.name!r}"
        target = variables[self.b]
        for key in self.a:
            var = variables[key]
            try:
                shape = np.broadcast_shapes(var.shape, target.shape)
            except ValueError:
                shape = None
            if shape != target.shape:
                raise ValueError(
                    f"{owner}: {key!r} has shape {var.shape} but {self.b!r} has shape "
                    f"{target.shape}; the relation is applied element by element, so give them "
                    "the same shape (or a scalar input)"
                )
            if var.grid is not None and target.grid is not None and var.grid != target.grid:
                raise ValueError(
                    f"{owner}: fields {key!r} ({var.grid!r}) and {self.b!r} ({target.grid!r}) are "
                    "on different grids; declare both on the same bj.Grid"
                )
        if isinstance(self.scatter, np.ndarray):
            try:
                np.broadcast_to(self.scatter, target.shape)
            except ValueError:
                raise ValueError(
                    f"{owner}: scatter of shape {self.scatter.shape} does not broadcast to "
                    f"{self.b!r}'s shape {target.shape}; give a scalar or one value per element"
                ) from None
        if self.use_log(variables) and self.b not in self.log_latent:
            if not target.prior.positive:
                raise ValueError(
                    f"{owner}: log space takes ln({self.b}), but the prior of {self.b!r} "
                    f"({target.prior!r}) also allows values <= 0. Use a positive prior (e.g. "
                    f"bj.priors.LogNormal), store ln({self.b}) in the latent and pass "
                    f"log_latent={self.b!r}, or set log=False"
                )

    # -- the density --------------------------------------------------------------------------
    def residual(self, latent: Mapping[str, Any], variables: Mapping[str, LatentVariable]) -> Any:
        """Return ``ln b − ln g(a)`` (log space) or ``b − g(a)`` as a tensor shaped like ``b``."""
        props = []
        for key in self.a:
            value = pt.as_tensor_variable(latent[key], dtype="float64")
            props.append(pt.exp(value) if key in self.log_latent else value)
        predicted = pt.as_tensor_variable(self.relation(*props), dtype="float64")
        value_b = pt.as_tensor_variable(latent[self.b], dtype="float64")
        if self.use_log(variables):
            log_b = value_b if self.b in self.log_latent else pt.log(value_b)
            return log_b - pt.log(predicted)
        if self.b in self.log_latent:
            value_b = pt.exp(value_b)
        return value_b - predicted

    def log_density(
        self,
        latent: Mapping[str, Any],
        variables: Mapping[str, LatentVariable],
        scatter: Any = None,
    ) -> Any:
        """Return the coupling's log density (a pytensor scalar).

        Parameters
        ----------
        latent : mapping of str to pytensor tensor
            Tensors of the linked variables.
        variables : mapping of str to LatentVariable
            Their declarations.
        scatter : float or pytensor scalar, optional
            Default the fixed scatter (required when the scatter is learned).
        """
        if scatter is None:
            if isinstance(self.scatter, Prior):
                raise ValueError(
                    f"coupling {self.name!r}: the scatter is learned; pass its tensor as scatter="
                )
            scatter = self.scatter
        r = self.residual(latent, variables)
        shape = variables[self.b].shape
        s = pt.as_tensor_variable(scatter, dtype="float64")
        s_full = pt.broadcast_to(s, shape) if shape else s
        terms = -pt.log(s_full) - 0.5 * np.log(2.0 * np.pi) - 0.5 * (r / s_full) ** 2
        return pt.sum(terms)

    def build(self, latent: Mapping[str, Any], variables: Mapping[str, LatentVariable]) -> None:
        """Add the scatter hyperprior (if learned), the potential and the normalizer.

        The normalizer potential ``<name>_normalizer`` comes with a learned scatter on a linear
        link between Gaussian priors, and with a fixed linear link that joins learned ones on
        shared fields (see the class Notes and :meth:`build_normalizer`).
        """
        if not isinstance(self.scatter, Prior):
            pm.Potential(self.name, self.log_density(latent, variables, self.scatter))
            self.build_normalizer(None, variables, warn=False)
            return
        scatter = self.scatter.build(f"{self.name}_scatter", (), None)
        pm.Potential(self.name, self.log_density(latent, variables, scatter))
        self.build_normalizer(scatter, variables)

    def build_normalizer(
        self, scatter: Any, variables: Mapping[str, LatentVariable], *, warn: bool = True
    ) -> None:
        """Add this link's share of ``−log Z`` as the potential ``<name>_normalizer``.

        Links are normalized in the order they are built into the current model. A learned
        link alone on its fields adds ``−log Z(σ)`` over the fields' own priors
        (:meth:`normalizer_spectrum`). A linear link that shares a field (directly or through
        other links) with linear links built before it adds the conditional term
        ``−log p(s_k = 0 | s_j = 0, j < k)`` of the stacked residuals ``s_j = r_j + ε_j``, so the
        terms of a group sum to its joint normalizer
        ``log Z(σ_1, …, σ_K) = log N(0; m, C + diag(σ_j² I_j))``. A fixed link's term is added
        only when its group has a learned scatter (otherwise it is a constant).

        Parameters
        ----------
        scatter : pytensor scalar or None
            The learned scatter's tensor; None for a fixed scatter.
        variables : mapping of str to LatentVariable
            The declarations of the linked variables.
        warn : bool, default True
            Warn where a learned scatter gets no normalizer, or only a separate one.
        """
        learned = isinstance(self.scatter, Prior)
        if learned and scatter is None:
            raise ValueError(
                f"coupling {self.name!r}: the scatter is learned; pass its tensor as scatter="
            )
        if self._linear_reason(variables) is not None:  # no closed-form normalizer
            if learned:
                self.normalizer_spectrum(variables, warn=warn)  # warns with the reason
            return
        model = pm.modelcontext(None)
        records = _LINKS.setdefault(model, [])
        group = _group(records, {self.a[0], self.b})
        n = variables[self.b].size
        if learned:
            variance = pt.square(pt.as_tensor_variable(scatter, dtype="float64")) * np.ones(n)
        else:
            variance = np.broadcast_to(self.scatter, variables[self.b].shape).ravel() ** 2.0
        records.append(_Registered(self, variance, learned))
        if not group:
            if learned:
                self._add_separate(scatter, variables, warn)
            return
        if not learned and not any(r.learned for r in group):
            return  # a constant: no learned scatter in the group
        owner = f"coupling {self.name!r}"
        others = [r.coupling.name for r in group]
        size = n + sum(variables[r.coupling.b].size for r in group)
        reason = None
        if size > JOINT_NORMALIZER_LIMIT:
            reason = (
                f"the links {others} share fields with it and their stacked residuals have "
                f"{size} elements, more than JOINT_NORMALIZER_LIMIT={JOINT_NORMALIZER_LIMIT} "
                "(a Cholesky factorization of that size per log-density evaluation)"
            )
        else:
            moments = joint_normalizer_moments([r.coupling for r in group] + [self], variables)
            if moments is None:
                reason = (
                    f"a field of the links {others} it shares fields with has a prior that is "
                    "not Gaussian with fixed hyperparameters"
                )
        if reason is not None:
            if learned:
                if warn:
                    warnings.warn(
                        f"{owner}: its learned scatter is normalized over its own fields' priors "
                        f"only, not jointly: {reason}. The scatters' posterior is then close "
                        "to, not exactly, that of the normalized joint prior",
                        stacklevel=3,
                    )
                self._add_separate(scatter, variables, warn)
            return
        mean, cov, sizes = moments
        variances = pt.concatenate(
            [pt.as_tensor_variable(r.variance, dtype="float64") for r in group]
            + [pt.as_tensor_variable(variance, dtype="float64")]
        )
        value = self.joint_log_normalizer(variances, (mean, cov), given=size - sizes[-1])
        pm.Potential(f"{self.name}_normalizer", -value)

    def _add_separate(self, scatter: Any, variables: Mapping[str, LatentVariable], warn: bool):
        spectrum = self.normalizer_spectrum(variables, warn=warn)
        if spectrum is not None:
            pm.Potential(f"{self.name}_normalizer", -self.log_normalizer(scatter, spectrum))

    def _linear_reason(self, variables: Mapping[str, LatentVariable]) -> str | None:
        """Return why the link has no closed-form normalizer (nonlinear), or None."""
        if not self.is_linear or self.use_log(variables) or self.log_latent:
            return (
                "its link is not linear in the fields (a nonlinear relation, log space or log "
                "latents), so the normalizer Z(σ) has no closed form. The factor N(r; 0, σ²) is "
                "then not normalized over the field priors and σ's posterior is biased toward "
                "small values; fix the scatter (scatter=<number>) or use relation='linear' with "
                "log=False"
            )
        return None

    def residual_moments(self, variables: Mapping[str, LatentVariable]) -> dict[str, Any] | None:
        """Return the linear residual's pieces ``r = b − A a − c`` over the fields' priors.

        Returns
        -------
        dict or None
            ``{"op_a": A (n × n_a), "offset": c (n,), "a": (mean, factor), "b": (mean, factor)}``
            with each field's prior ``N(mean, factor factorᵀ)``; None where the link is not
            linear or a prior is not Gaussian with fixed hyperparameters.
        """
        if self._linear_reason(variables) is not None:
            return None
        var_a, var_b = variables[self.a[0]], variables[self.b]
        ga = var_a.prior.gaussian(var_a.shape, var_a.grid)
        gb = var_b.prior.gaussian(var_b.shape, var_b.grid)
        if ga is None or gb is None:
            return None
        n = var_b.size
        slope = np.broadcast_to(np.asarray(self._slope, float), var_b.shape).ravel()
        cols = np.broadcast_to(np.arange(var_a.size).reshape(var_a.shape), var_b.shape).ravel()
        op_a = np.zeros((n, var_a.size))
        np.add.at(op_a, (np.arange(n), cols), slope)
        offset = np.broadcast_to(np.asarray(self._intercept, float), var_b.shape).ravel()
        return {
            "op_a": op_a,
            "offset": offset.astype(float),
            "a": tuple(np.asarray(x, float) for x in ga),
            "b": tuple(np.asarray(x, float) for x in gb),
        }

    def normalizer_spectrum(
        self, variables: Mapping[str, LatentVariable], *, warn: bool = False
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Return ``(λ, μ)``: the eigenvalues of ``C_r`` and ``μ = Uᵀ m_r``, or None.

        ``m_r`` and ``C_r = U diag(λ) Uᵀ`` are the mean and covariance of the residual
        ``r = b − slope·a − intercept`` under the two fields' own Gaussian priors. None where
        the scatter is fixed (``Z`` is then a constant); None, with a ``UserWarning`` when
        ``warn``, where the link is not linear in the space it works in, a prior is not Gaussian
        with fixed hyperparameters, or the residual has more than ``NORMALIZER_LIMIT`` elements.

        Parameters
        ----------
        variables : mapping of str to LatentVariable
            The declarations of the linked variables.
        warn : bool, default False
            Warn where a learned scatter gets no normalizer.
        """
        if not isinstance(self.scatter, Prior):
            return None
        owner = f"coupling {self.name!r}"
        reason = self._linear_reason(variables)
        if reason is None:
            var_b = variables[self.b]
            if var_b.size > NORMALIZER_LIMIT:
                reason = (
                    f"the residual has {var_b.size} elements, more than NORMALIZER_LIMIT="
                    f"{NORMALIZER_LIMIT}, so Z(σ) is left out: σ's posterior is biased toward "
                    "small values; fix the scatter or coarsen the grid"
                )
            else:
                parts = self.residual_moments(variables)
                if parts is None:
                    reason = (
                        "a linked field's prior is not Gaussian with fixed hyperparameters (e.g. "
                        "a learned field sd), so Z(σ) depends on them and is left out: σ's "
                        "posterior is biased toward small values; fix the fields' "
                        "hyperparameters or the scatter"
                    )
                else:
                    op_a, offset = parts["op_a"], parts["offset"]
                    (mean_a, fa), (mean_b, fb) = parts["a"], parts["b"]
                    la = op_a @ fa
                    cov = fb @ fb.T + la @ la.T
                    m_r = mean_b - op_a @ mean_a - offset
                    eigenvalues, vectors = np.linalg.eigh(0.5 * (cov + cov.T))
                    return np.clip(eigenvalues, 0.0, None), vectors.T @ m_r
        if warn:
            warnings.warn(f"{owner}: learned scatter without a normalizer: {reason}", stacklevel=3)
        return None

    @staticmethod
    def log_normalizer(scatter: Any, spectrum: tuple[np.ndarray, np.ndarray]) -> Any:
        """Return ``log Z(σ) = −½ Σ_i [log 2π(λ_i + σ²) + μ_i² / (λ_i + σ²)]`` (a tensor).

        Parameters
        ----------
        scatter : float or pytensor scalar
            ``σ``, in ``b``'s units.
        spectrum : tuple of numpy.ndarray
            ``(λ, μ)`` from :meth:`normalizer_spectrum`.
        """
        _register_backends()
        eigenvalues, projected = spectrum
        return _LOG_NORMALIZER(scatter, pt.constant(eigenvalues), pt.constant(projected**2))

    @staticmethod
    def joint_log_normalizer(
        variances: Any, moments: tuple[np.ndarray, np.ndarray], *, given: int = 0
    ) -> Any:
        r"""Return ``log N(0; m, C + diag(v)) − log N(0; m_g, C_g + diag(v_g))`` (a tensor).

        Parameters
        ----------
        variances : array_like or pytensor vector, shape (N,)
            ``v``: each stacked residual element's link variance (``σ_j²`` on link ``j``'s rows).
        moments : tuple of numpy.ndarray
            ``(m, C)``: the stacked residuals' prior mean (N,) and covariance (N, N), from
            ``joint_normalizer_moments``.
        given : int, default 0
            ``g``: the number of leading elements conditioned on (0: the joint ``log Z``).

        Notes
        -----
        With ``S = C + diag(v) = L Lᵀ`` and ``z = L⁻¹ m``, the value is
        ``−½ (N − g) log 2π − Σ_{i ≥ g} [log L_ii + ½ z_i²]`` (the leading ``g × g`` block of
        ``L`` is the Cholesky factor of ``S_g``). Its gradient in ``v`` is
        ``½ (α_i² − (S⁻¹)_ii)`` with ``α = S⁻¹ m``, minus the same for ``S_g`` on the first
        ``g`` elements, from ``L⁻¹`` (whose leading block is ``L_g⁻¹``). Cost per evaluation of
        the value and gradient together: one Cholesky factorization and one triangular inverse,
        ``≈ 2N³/3`` flops; ``N ≤ JOINT_NORMALIZER_LIMIT``.
        """
        _register_backends()
        mean, cov = (np.asarray(x, dtype=float) for x in moments)
        value, _ = _JointLogNormalizer(int(given))(variances, pt.constant(mean), pt.constant(cov))
        return value

    def gaussian_factor(self, variables: Mapping[str, LatentVariable]) -> GaussianFactor | None:
        """Return ``b − slope·a − intercept ~ N(0, s²)`` for a fixed linear link, else None."""
        if (
            not self.is_linear
            or isinstance(self.scatter, Prior)
            or self.use_log(variables)
            or self.log_latent
        ):
            return None
        var_a, var_b = variables[self.a[0]], variables[self.b]
        n = var_b.size
        slope = np.broadcast_to(np.asarray(self._slope, dtype=float), var_b.shape).ravel()
        cols = np.broadcast_to(np.arange(var_a.size).reshape(var_a.shape), var_b.shape).ravel()
        op_a = sp.csr_matrix((-slope, (np.arange(n), cols)), shape=(n, var_a.size))
        offset = np.broadcast_to(np.asarray(self._intercept, dtype=float), var_b.shape).ravel()
        sd = np.broadcast_to(self.scatter, var_b.shape).ravel().astype(float)
        return {self.b: sp.identity(n, format="csr"), self.a[0]: op_a}, offset.copy(), sd

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.parameters.items())
        scatter = self.scatter if isinstance(self.scatter, Prior) else self.scatter.tolist()
        return (
            f"Petrophysical({list(self.a)!r} -> {self.b!r}, relation={self.relation_name}"
            f"({params}), scatter={scatter!r}, log={self.log})"
        )


class _LogNormalizer(Op):
    """``log Z(σ) = −½ Σ_i [log 2π(λ_i + σ²) + μ_i² / (λ_i + σ²)]`` as one Op of ``(σ, λ, μ²)``.

    One node instead of an elementwise graph over the ``n`` eigenvalues: PyMC's graph rewrites
    before differentiation then see a scalar function of ``σ`` (on a collapsed model with a
    large marginal-likelihood graph the elementwise form sent them into minutes of rewriting).
    The gradient in ``σ`` is ``−σ Σ_i [1/v_i − μ_i²/v_i²]``, ``v_i = λ_i + σ²``; ``λ`` and
    ``μ²`` are constants of the model.
    """

    __props__ = ()

    def make_node(self, scatter, eigenvalues, squares):
        inputs = [
            pt.as_tensor_variable(x, dtype="float64") for x in (scatter, eigenvalues, squares)
        ]
        return Apply(self, inputs, [pt.dscalar()])

    def perform(self, node, inputs, outputs):
        scatter, eigenvalues, squares = inputs
        v = eigenvalues + float(scatter) ** 2
        outputs[0][0] = np.asarray(-0.5 * np.sum(np.log(2.0 * np.pi * v) + squares / v))

    def L_op(self, inputs, outputs, output_grads):
        scatter, eigenvalues, squares = inputs
        (grad,) = output_grads
        v = eigenvalues + scatter**2
        d_scatter = -scatter * pt.sum(1.0 / v - squares / v**2)
        return [
            grad * d_scatter,
            pytensor.gradient.disconnected_type(),
            pytensor.gradient.disconnected_type(),
        ]

    def connection_pattern(self, node):
        return [[True], [False], [False]]


_LOG_NORMALIZER = _LogNormalizer()


# -- joint normalization of links that share fields ------------------------------------------
@dataclass(frozen=True)
class _Registered:
    """A linear link built into a model: the coupling, its residual variances, learned or not."""

    coupling: Petrophysical
    variance: Any  # tensor (learned σ² on each element) or numpy array (fixed scatter²)
    learned: bool


#: The linear links built into each model so far, in build order (see ``build_normalizer``).
_LINKS: weakref.WeakKeyDictionary[pm.Model, list[_Registered]] = weakref.WeakKeyDictionary()


def _group(records: Sequence[_Registered], fields: set[str]) -> list[_Registered]:
    """Return the records connected to ``fields`` through shared fields, in build order."""
    fields = set(fields)
    chosen: set[int] = set()
    grown = True
    while grown:
        grown = False
        for i, record in enumerate(records):
            linked = {record.coupling.a[0], record.coupling.b}
            if i not in chosen and linked & fields:
                chosen.add(i)
                fields |= linked
                grown = True
    return [records[i] for i in sorted(chosen)]


def joint_normalizer_moments(
    links: Sequence[Petrophysical], variables: Mapping[str, LatentVariable]
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]] | None:
    """Return ``(m, C, sizes)``: the stacked linear residuals' prior mean and covariance.

    Parameters
    ----------
    links : sequence of Petrophysical
        Linear links (``relation="linear"``, linear space); their residuals
        ``r_j = b_j − A_j a_j − c_j`` are stacked in this order.
    variables : mapping of str to LatentVariable
        The declarations; each field's prior must be Gaussian with fixed hyperparameters.

    Returns
    -------
    tuple or None
        ``m`` (N,), ``C`` (N, N) under the fields' own (independent) priors, and each link's
        number of elements; None where a link is not linear or a prior is not Gaussian.

    Notes
    -----
    With ``H`` the stacked residual operator over the stacked fields (``+I`` on ``b_j``,
    ``−A_j`` on ``a_j``) and each field's prior ``N(μ_f, F_f F_fᵀ)``:
    ``m = H μ − c`` and ``C = (H F)(H F)ᵀ``, ``F = blockdiag(F_f)``.
    """
    parts = [link.residual_moments(variables) for link in links]
    if any(p is None for p in parts):
        return None
    priors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for link, p in zip(links, parts, strict=True):
        priors.setdefault(link.a[0], p["a"])
        priors.setdefault(link.b, p["b"])
    columns, start = {}, 0
    for name, (_, factor) in priors.items():
        columns[name] = slice(start, start + factor.shape[1])
        start += factor.shape[1]
    sizes = tuple(p["offset"].size for p in parts)
    rows = np.zeros((sum(sizes), start))
    mean = np.empty(sum(sizes))
    row = 0
    for link, p, n in zip(links, parts, sizes, strict=True):
        block = slice(row, row + n)
        (mean_a, fa), (mean_b, fb) = p["a"], p["b"]
        rows[block, columns[link.b]] += fb
        rows[block, columns[link.a[0]]] -= p["op_a"] @ fa
        mean[block] = mean_b - p["op_a"] @ mean_a - p["offset"]
        row += n
    cov = rows @ rows.T
    return mean, 0.5 * (cov + cov.T), sizes


def _joint_terms(
    variances: np.ndarray, mean: np.ndarray, cov: np.ndarray, given: int
) -> tuple[float, np.ndarray]:
    """Value and gradient (in ``variances``) of :meth:`Petrophysical.joint_log_normalizer`."""
    n = mean.size
    try:
        lower = sla.cholesky(cov + np.diag(variances), lower=True, check_finite=False)
    except np.linalg.LinAlgError:  # not positive definite in floating point: Z is unbounded
        return np.inf, np.full(n, np.nan)
    inv, info = sla.lapack.dtrtri(lower, lower=1)
    if info != 0:
        return np.inf, np.full(n, np.nan)
    z = inv @ mean
    value = -0.5 * (n - given) * np.log(2.0 * np.pi) - np.sum(
        np.log(np.diag(lower)[given:]) + 0.5 * z[given:] ** 2
    )
    grad = 0.5 * ((inv.T @ z) ** 2 - np.einsum("ij,ij->j", inv, inv))
    if given:
        inv_g = inv[:given, :given]
        grad[:given] -= 0.5 * ((inv_g.T @ z[:given]) ** 2 - np.einsum("ij,ij->j", inv_g, inv_g))
    return float(value), grad


class _JointLogNormalizer(Op):
    """``log N(0; m, C + diag(v)) − log N(0; m_g, C_g + diag(v_g))`` of ``(v, m, C)``.

    Two outputs, the value and its gradient in ``v``, from one Cholesky factorization per
    evaluation; the gradient graph reuses the second output, so a compiled log density and
    gradient factorize once. ``g`` (``given``) leading elements are conditioned on. Second
    derivatives are not implemented.
    """

    __props__ = ("given",)

    def __init__(self, given: int = 0):
        self.given = int(given)

    def make_node(self, variances, mean, cov):
        inputs = [pt.as_tensor_variable(x, dtype="float64") for x in (variances, mean, cov)]
        return Apply(self, inputs, [pt.dscalar(), pt.dvector()])

    def perform(self, node, inputs, outputs):
        value, grad = _joint_terms(*inputs, self.given)
        outputs[0][0] = np.asarray(value)
        outputs[1][0] = grad

    def L_op(self, inputs, outputs, output_grads):
        from pytensor.gradient import DisconnectedType, disconnected_type, grad_not_implemented

        g_value, g_grad = output_grads
        if not isinstance(g_grad.type, DisconnectedType):
            return [
                grad_not_implemented(self, 0, inputs[0], "second derivatives of the normalizer"),
                disconnected_type(),
                disconnected_type(),
            ]
        return [g_value * outputs[1], disconnected_type(), disconnected_type()]

    def connection_pattern(self, node):
        return [[True, True], [False, False], [False, False]]

    def infer_shape(self, fgraph, node, shapes):
        return [(), shapes[0]]


_BACKENDS: set[str] = set()


def _register_backends() -> None:
    """Register numba (and, when installed, JAX) implementations of the normalizer Ops.

    Done on first use rather than at import, so importing the package does not import numba's
    or JAX's pytensor backends. numba comes with pytensor; JAX is optional.
    """
    if "numba" not in _BACKENDS:
        _register_numba()
        _BACKENDS.add("numba")
    if "jax" not in _BACKENDS and importlib.util.find_spec("jax") is not None and _register_jax():
        _BACKENDS.add("jax")


def _register_numba() -> None:
    from pytensor.link.numba.dispatch.basic import numba_funcify, numba_njit

    @numba_funcify.register(_LogNormalizer)
    def _numba_log_normalizer(op, node=None, **kwargs):
        @numba_njit
        def log_normalizer(scatter, eigenvalues, squares):
            v = eigenvalues + scatter.item() ** 2
            return np.array(-0.5 * np.sum(np.log(2.0 * np.pi * v) + squares / v))

        return log_normalizer

    @numba_funcify.register(_JointLogNormalizer)
    def _numba_joint_log_normalizer(op, node=None, **kwargs):
        given = op.given

        @numba_njit
        def joint_log_normalizer(variances, mean, cov):
            n = mean.shape[0]
            s = cov.copy()
            for i in range(n):
                s[i, i] += variances[i]
            try:
                lower = np.linalg.cholesky(s)
            except Exception:  # not positive definite in floating point: Z is unbounded
                return np.array(np.inf), np.full(n, np.nan)
            inv = np.linalg.inv(lower)
            z = inv @ mean
            value = -0.5 * (n - given) * np.log(2.0 * np.pi)
            for i in range(given, n):
                value -= np.log(lower[i, i]) + 0.5 * z[i] ** 2
            alpha = z @ inv  # (L⁻ᵀ z)ᵀ
            grad = 0.5 * (alpha**2 - (inv * inv).sum(axis=0))
            if given > 0:
                inv_g = np.ascontiguousarray(inv[:given, :given])
                alpha_g = np.ascontiguousarray(z[:given]) @ inv_g
                grad[:given] -= 0.5 * (alpha_g**2 - (inv_g * inv_g).sum(axis=0))
            return np.array(value), grad

        return joint_log_normalizer


def _register_jax() -> bool:
    """Register the JAX implementations; False where JAX (optional, with numpyro) is missing."""
    try:
        import jax.numpy as jnp
        from jax.scipy.linalg import solve_triangular
        from pytensor.link.jax.dispatch import jax_funcify
    except ImportError:  # absent or broken: numpyro is then refused, naming the Ops
        return False

    @jax_funcify.register(_LogNormalizer)
    def _jax_log_normalizer(op, **kwargs):
        def log_normalizer(scatter, eigenvalues, squares):
            v = eigenvalues + scatter**2
            return -0.5 * jnp.sum(jnp.log(2.0 * jnp.pi * v) + squares / v)

        return log_normalizer

    @jax_funcify.register(_JointLogNormalizer)
    def _jax_joint_log_normalizer(op, **kwargs):
        given = op.given

        def joint_log_normalizer(variances, mean, cov):
            n = mean.shape[0]
            lower = jnp.linalg.cholesky(cov + jnp.diag(variances))
            inv = solve_triangular(lower, jnp.eye(n), lower=True)
            z = inv @ mean
            value = -0.5 * (n - given) * jnp.log(2.0 * jnp.pi) - jnp.sum(
                jnp.log(jnp.diag(lower)[given:]) + 0.5 * z[given:] ** 2
            )
            grad = 0.5 * ((inv.T @ z) ** 2 - jnp.sum(inv * inv, axis=0))
            if given:
                inv_g = inv[:given, :given]
                grad_g = 0.5 * ((inv_g.T @ z[:given]) ** 2 - jnp.sum(inv_g * inv_g, axis=0))
                grad = grad.at[:given].add(-grad_g)
            return value, grad

        return joint_log_normalizer

    return True
