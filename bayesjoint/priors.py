"""Prior families for the latent model.

Every prior knows how to add its variable to a PyMC model (:meth:`Prior.build`) and, when it is
Gaussian with fixed hyperparameters, how to describe itself exactly (:meth:`Prior.gaussian`) for the
linear-Gaussian path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from bayesjoint._checks import as_real_array, checked_init

if TYPE_CHECKING:
    from bayesjoint.grid import Grid

__all__ = [
    "GaussianField",
    "HalfNormal",
    "KroneckerFactor",
    "LogNormal",
    "Normal",
    "Prior",
    "PyMC",
    "Uniform",
    "as_prior",
]


def _positive(value: Any, what: str) -> np.ndarray:
    arr = as_real_array(value, what)
    if arr.size == 0:
        raise ValueError(f"{what} is empty; give a positive number or a non-empty array")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{what} must be positive and finite, got {value!r}")
    return arr


def _finite(value: Any, what: str) -> np.ndarray:
    arr = as_real_array(value, what)
    if arr.size == 0:
        raise ValueError(f"{what} is empty; give a number or a non-empty array")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return arr


def _broadcast(value: np.ndarray, shape: tuple[int, ...], what: str, owner: str) -> np.ndarray:
    try:
        return np.broadcast_to(value, shape)
    except ValueError:
        raise ValueError(
            f"{owner}: {what} of shape {value.shape} does not broadcast to the variable's shape "
            f"{shape}; give a scalar or an array of shape {shape}"
        ) from None


class Prior:
    """Base class of prior families.

    Attributes
    ----------
    positive : bool
        True when the family only puts mass on positive values (usable as a noise sd prior).
    """

    positive: bool = False

    def build(
        self,
        name: str,
        shape: tuple[int, ...],
        dims: tuple[str, ...] | None,
        grid: Grid | None = None,
    ) -> Any:
        """Add the variable ``name`` to the PyMC model on the context stack and return it."""
        raise NotImplementedError

    def gaussian(
        self, shape: tuple[int, ...], grid: Grid | None = None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Return ``(mean, L)`` with the flat mean and a lower-triangular covariance factor.

        The prior is ``N(mean, L Lᵀ)`` over the C-order flattened variable. Returns None when the
        prior is not Gaussian with fixed hyperparameters.
        """
        return None

    def free_values(self, name: str, white: np.ndarray, value: np.ndarray) -> dict[str, np.ndarray]:
        """Return the values of the free variables :meth:`build` adds, given the variable's value.

        Used by the exact route to turn draws of a Gaussian prior's variable into the model's own
        free variables. The default: the variable itself is the free variable.

        Parameters
        ----------
        name : str
            The latent variable's name.
        white : numpy.ndarray, shape (n_draws, size)
            Draws in the prior-whitened coordinates ``L⁻¹ (value − mean)`` of :meth:`gaussian`.
        value : numpy.ndarray, shape (n_draws, size)
            The same draws in the variable's own units (flattened in C order).
        """
        return {name: value}

    def validate(self, owner: str, shape: tuple[int, ...], grid: Grid | None) -> None:
        """Raise a ValueError naming ``owner`` when the prior cannot describe this variable.

        The default checks that each array hyperparameter (``mu``, ``sigma``, ``lower``,
        ``upper``) broadcasts to ``shape``.
        """
        for attr in ("mu", "sigma", "lower", "upper"):
            value = getattr(self, attr, None)
            if isinstance(value, np.ndarray):
                _broadcast(value, shape, f"{type(self).__name__} {attr}", owner)

    def describe(self) -> str:
        """Return a one-line description (used in provenance)."""
        return repr(self)


class Normal(Prior):
    """Independent normal prior ``N(mu, sigma²)`` per element.

    Parameters
    ----------
    mu : float or array_like
        Mean, in the variable's units; broadcast to the variable's shape.
    sigma : float or array_like
        Standard deviation (> 0), in the variable's units.

    Examples
    --------
    >>> import bayesjoint as bj
    >>> bj.priors.Normal(0.0, 2.0).gaussian((2,))[1]
    array([[2., 0.],
           [0., 2.]])
    """

    @checked_init("bj.priors.Normal")
    def __init__(self, mu: Any = 0.0, sigma: Any = 1.0):
        self.mu = _finite(mu, "Normal mu")
        self.sigma = _positive(sigma, "Normal sigma")

    def validate(self, owner: str, shape: tuple[int, ...], grid: Grid | None) -> None:
        """Check that mu and sigma broadcast to ``shape``."""
        _broadcast(self.mu, shape, "Normal mu", owner)
        _broadcast(self.sigma, shape, "Normal sigma", owner)

    def build(self, name, shape, dims, grid=None):
        """Add ``pm.Normal(name, mu, sigma)``."""
        return pm.Normal(name, mu=self.mu, sigma=self.sigma, shape=shape, dims=dims)

    def gaussian(self, shape, grid=None):
        """Return the flat mean and the diagonal factor ``diag(sigma)``."""
        mean = np.broadcast_to(self.mu, shape).ravel().astype(float)
        sd = np.broadcast_to(self.sigma, shape).ravel().astype(float)
        return mean, np.diag(sd)

    def gaussian_operator(
        self, shape: tuple[int, ...], grid: Grid | None = None
    ) -> tuple[np.ndarray, sp.dia_matrix]:
        """Return the flat mean and the factor as what it is: a sparse diagonal ``diag(sigma)``.

        The same prior as :meth:`gaussian` without the dense ``n × n`` matrix.

        Examples
        --------
        >>> import bayesjoint as bj
        >>> bj.priors.Normal(0.0, [1.0, 2.0]).gaussian_operator((2,))[1].diagonal().tolist()
        [1.0, 2.0]
        """
        mean = np.broadcast_to(self.mu, shape).ravel().astype(float)
        sd = np.broadcast_to(self.sigma, shape).ravel().astype(float)
        return mean, sp.diags(sd, format="dia")

    def __repr__(self) -> str:
        return f"Normal(mu={self.mu.tolist()}, sigma={self.sigma.tolist()})"


class HalfNormal(Prior):
    """Half-normal prior on positive values with scale ``sigma``.

    Examples
    --------
    >>> import bayesjoint as bj
    >>> bj.priors.HalfNormal(0.1).positive
    True
    """

    positive = True

    @checked_init("bj.priors.HalfNormal")
    def __init__(self, sigma: Any = 1.0):
        self.sigma = _positive(sigma, "HalfNormal sigma")

    def build(self, name, shape, dims, grid=None):
        """Add ``pm.HalfNormal(name, sigma)``."""
        return pm.HalfNormal(name, sigma=self.sigma, shape=shape, dims=dims)

    def __repr__(self) -> str:
        return f"HalfNormal(sigma={self.sigma.tolist()})"


class LogNormal(Prior):
    """Log-normal prior: ``log(value) ~ N(mu, sigma²)``.

    Examples
    --------
    >>> import bayesjoint as bj
    >>> bj.priors.LogNormal(0.0, 0.5).positive
    True
    """

    positive = True

    @checked_init("bj.priors.LogNormal")
    def __init__(self, mu: Any = 0.0, sigma: Any = 1.0):
        self.mu = _finite(mu, "LogNormal mu")
        self.sigma = _positive(sigma, "LogNormal sigma")

    def build(self, name, shape, dims, grid=None):
        """Add ``pm.LogNormal(name, mu, sigma)``."""
        return pm.LogNormal(name, mu=self.mu, sigma=self.sigma, shape=shape, dims=dims)

    def __repr__(self) -> str:
        return f"LogNormal(mu={self.mu.tolist()}, sigma={self.sigma.tolist()})"


class Uniform(Prior):
    """Uniform prior on ``[lower, upper]``."""

    @checked_init("bj.priors.Uniform")
    def __init__(self, lower: Any, upper: Any):
        self.lower = _finite(lower, "Uniform lower")
        self.upper = _finite(upper, "Uniform upper")
        if np.any(self.upper <= self.lower):
            raise ValueError("bj.priors.Uniform needs upper > lower everywhere")
        self.positive = bool(np.all(self.lower >= 0))

    def build(self, name, shape, dims, grid=None):
        """Add ``pm.Uniform(name, lower, upper)``."""
        return pm.Uniform(name, lower=self.lower, upper=self.upper, shape=shape, dims=dims)

    def __repr__(self) -> str:
        return f"Uniform(lower={self.lower.tolist()}, upper={self.upper.tolist()})"


class PyMC(Prior):
    """Any PyMC distribution, given as ``fn(name, shape=..., dims=...) -> variable``.

    Parameters
    ----------
    fn : callable
        Called inside the model context with the variable's name, ``shape`` and ``dims``.
    positive : bool, default False
        Declare that the distribution is supported on positive values only.

    Examples
    --------
    >>> import pymc as pm
    >>> import bayesjoint as bj
    >>> heavy = bj.priors.PyMC(lambda name, **kw: pm.StudentT(name, nu=4, sigma=1.0, **kw))
    """

    @checked_init("bj.priors.PyMC")
    def __init__(self, fn: Callable[..., Any], positive: bool = False):
        if not callable(fn):
            raise TypeError("priors.PyMC needs a callable fn(name, shape=..., dims=...)")
        self.fn = fn
        self.positive = positive

    def build(self, name, shape, dims, grid=None):
        """Call ``fn(name, shape=shape, dims=dims)``."""
        return self.fn(name, shape=shape, dims=dims)

    def __repr__(self) -> str:
        return f"PyMC({getattr(self.fn, '__name__', 'fn')})"


_KERNELS = ("squared_exponential", "matern52", "matern32", "exponential")


def correlation_1d(x: np.ndarray, length: float, kernel: str) -> np.ndarray:
    """Return the 1-D correlation matrix of ``kernel`` at points ``x`` with correlation length.

    Notes
    -----
    With ``r = |x_i − x_j| / length``:

    - squared exponential: ``exp(−r²/2)``
    - Matérn 5/2: ``(1 + √5 r + 5r²/3) exp(−√5 r)``
    - Matérn 3/2: ``(1 + √3 r) exp(−√3 r)``
    - exponential (Matérn 1/2): ``exp(−r)``
    """
    r = np.abs(x[:, None] - x[None, :]) / length
    if kernel == "squared_exponential":
        return np.exp(-0.5 * r**2)
    if kernel == "matern52":
        s = np.sqrt(5.0) * r
        return (1.0 + s + s**2 / 3.0) * np.exp(-s)
    if kernel == "matern32":
        s = np.sqrt(3.0) * r
        return (1.0 + s) * np.exp(-s)
    if kernel == "exponential":
        return np.exp(-r)
    raise ValueError(f"unknown kernel {kernel!r}; choose one of {_KERNELS}")


class KroneckerFactor(LinearOperator):
    """The factor ``L = scale · (L_1 ⊗ … ⊗ L_d)`` of a separable covariance, applied axis by axis.

    Parameters
    ----------
    scale : float
        The scalar in front (a field's marginal sd).
    factors : sequence of numpy.ndarray
        Square per-axis factors ``L_i`` (shape ``(n_i, n_i)``), in the grid's axis order.

    Attributes
    ----------
    axis_shape : tuple of int
        ``(n_1, …, n_d)``; the operator acts on vectors of size ``n = n_1 ⋯ n_d`` in C order.

    Notes
    -----
    ``L x`` reshapes ``x`` to ``axis_shape`` and multiplies axis ``i`` by ``L_i``, one axis at a
    time: ``O(n Σ n_i)`` operations and ``O(n)`` memory instead of the ``O(n²)`` of the dense
    Kronecker product (Van Loan 2000, *J. Comput. Appl. Math.* 123, 85). ``Lᵀ x`` uses ``L_iᵀ``.
    :meth:`toarray` forms the dense product (only for small ``n``).

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.priors import KroneckerFactor
    >>> a, b = np.array([[1.0, 0.0], [0.5, 1.0]]), np.array([[2.0, 0.0], [1.0, 1.0]])
    >>> factor = KroneckerFactor(3.0, [a, b])
    >>> x = np.arange(4.0)
    >>> bool(np.allclose(factor @ x, 3.0 * np.kron(a, b) @ x))
    True
    """

    def __init__(self, scale: float, factors: Any):
        self.scale = float(scale)
        self.factors = [np.asarray(f, dtype=float) for f in factors]
        if not self.factors or any(f.ndim != 2 or f.shape[0] != f.shape[1] for f in self.factors):
            raise ValueError("KroneckerFactor needs one or more square per-axis factors")
        self.axis_shape = tuple(int(f.shape[0]) for f in self.factors)
        n = int(np.prod(self.axis_shape, dtype=np.int64))
        super().__init__(dtype=np.dtype(float), shape=(n, n))

    def _apply(self, x: np.ndarray, transpose: bool) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        k = x.shape[1]
        out = x.reshape(*self.axis_shape, k)
        for axis, f in enumerate(self.factors):
            out = np.moveaxis(np.tensordot(f.T if transpose else f, out, axes=(1, axis)), 0, axis)
        return self.scale * out.reshape(self.shape[0], k)

    def _matmat(self, x: np.ndarray) -> np.ndarray:
        return self._apply(x, transpose=False)

    def _rmatmat(self, x: np.ndarray) -> np.ndarray:
        return self._apply(x, transpose=True)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self._apply(np.reshape(x, (-1, 1)), transpose=False).ravel()

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self._apply(np.reshape(x, (-1, 1)), transpose=True).ravel()

    def _adjoint(self) -> LinearOperator:
        return _TransposedKronecker(self)

    def squared(self) -> KroneckerFactor:
        """Return the elementwise square ``L ∘ L = scale² (L_1∘L_1 ⊗ … ⊗ L_d∘L_d)``."""
        return KroneckerFactor(self.scale**2, [f**2 for f in self.factors])

    def toarray(self) -> np.ndarray:
        """Return the dense ``n × n`` factor (``O(n²)`` memory: small ``n`` only)."""
        dense = np.ones((1, 1))
        for f in self.factors:
            dense = np.kron(dense, f)
        return self.scale * dense

    def __repr__(self) -> str:
        return f"KroneckerFactor(scale={self.scale!r}, axis_shape={self.axis_shape})"


class _TransposedKronecker(LinearOperator):
    """``Lᵀ`` of a :class:`KroneckerFactor` (what ``factor.T`` returns)."""

    def __init__(self, factor: KroneckerFactor):
        self.factor = factor
        super().__init__(dtype=factor.dtype, shape=factor.shape)

    def _matmat(self, x: np.ndarray) -> np.ndarray:
        return self.factor._apply(x, transpose=True)

    def _rmatmat(self, x: np.ndarray) -> np.ndarray:
        return self.factor._apply(x, transpose=False)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self.factor._rmatvec(x)

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self.factor._matvec(x)

    def _adjoint(self) -> LinearOperator:
        return self.factor


class GaussianField(Prior):
    """Smooth Gaussian random-field prior on a grid, sampled in a whitened parameterization.

    Parameters
    ----------
    sigma : float or Prior
        Marginal standard deviation of the field (its units). A positive :class:`Prior` makes it a
        learned hyperparameter, named ``<field>_sigma``.
    correlation_length : float or mapping of str to float
        Correlation length (grid length units); a mapping gives one per grid axis.
    mean : float or array_like, default 0
        Prior mean, broadcast to the grid shape.
    kernel : {"matern52", "matern32", "exponential", "squared_exponential"}
        One-dimensional correlation function, combined across axes as a separable product.
    nugget : float, default 1e-6
        Relative jitter added to each 1-D correlation matrix's diagonal so it factorizes stably.

    Notes
    -----
    The covariance is separable: ``C = σ² (R_1 + εI) ⊗ … ⊗ (R_d + εI)`` with ``R_i`` the 1-D
    correlation of the cell centres along axis ``i`` (for the squared exponential the product
    is the isotropic kernel). With Cholesky factors ``L_i`` of each factor, the field is
    ``m = mean + σ (L_1 ⊗ … ⊗ L_d) z`` with ``z ~ N(0, I)``. NUTS samples ``z`` (named
    ``<field>_white``, on the grid's dims), which is a whitened, well-conditioned space whatever the
    correlation length; the field itself is a deterministic variable with the grid's coordinates.
    Applying the Kronecker factor one axis at a time costs ``O(n Σ n_i)`` instead of ``O(n²)``.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> grid = bj.Grid(x=np.linspace(0.0, 90.0, 10))
    >>> prior = bj.priors.GaussianField(sigma=2.0, correlation_length=30.0)
    >>> mean, L = prior.gaussian(grid.shape, grid)
    >>> round(float((L @ L.T)[0, 0]), 4)
    4.0
    """

    @checked_init("bj.priors.GaussianField")
    def __init__(
        self,
        sigma: float | Prior,
        correlation_length: float | Mapping[str, float],
        mean: Any = 0.0,
        kernel: str = "matern52",
        nugget: float = 1e-6,
    ):
        if isinstance(sigma, Prior):
            if not sigma.positive:
                raise ValueError(
                    "GaussianField sigma prior must be positive (HalfNormal, LogNormal)"
                )
            self.sigma: float | Prior = sigma
        else:
            self.sigma = float(_positive(sigma, "GaussianField sigma"))
        if isinstance(correlation_length, Mapping):
            self.correlation_length: float | dict[str, float] = {
                k: float(_positive(v, f"GaussianField correlation_length[{k!r}]"))
                for k, v in correlation_length.items()
            }
        else:
            self.correlation_length = float(
                _positive(correlation_length, "GaussianField correlation_length")
            )
        if kernel not in _KERNELS:
            raise ValueError(f"GaussianField kernel {kernel!r} unknown; choose one of {_KERNELS}")
        self.kernel = kernel
        self.mean = _finite(mean, "GaussianField mean")
        self.nugget = float(_positive(nugget, "GaussianField nugget"))

    def validate(self, owner: str, shape: tuple[int, ...], grid: Grid | None) -> None:
        """Require a grid, known axes for per-axis lengths, and a broadcastable mean."""
        if grid is None:
            raise ValueError(
                f"{owner}: GaussianField needs a grid; declare the variable as "
                f"bj.Field(name, grid, prior=...) instead of bj.Parameter"
            )
        if isinstance(self.correlation_length, dict):
            missing = set(grid.dims) - set(self.correlation_length)
            if missing:
                raise ValueError(
                    f"{owner}: GaussianField correlation_length has no value for grid axes "
                    f"{sorted(missing)}; give one per axis {grid.dims}"
                )
        _broadcast(self.mean, shape, "GaussianField mean", owner)

    def axis_factors(self, grid: Grid) -> list[np.ndarray]:
        """Return the lower Cholesky factor of each axis' correlation matrix (with nugget)."""
        factors = []
        for dim in grid.dims:
            length = (
                self.correlation_length[dim]
                if isinstance(self.correlation_length, dict)
                else self.correlation_length
            )
            corr = correlation_1d(grid.centers[dim], length, self.kernel)
            corr[np.diag_indices_from(corr)] += self.nugget
            factors.append(sla.cholesky(corr, lower=True))
        return factors

    def build(self, name, shape, dims, grid=None):
        """Add ``<name>_white ~ N(0, I)`` and the deterministic field ``name``."""
        white = pm.Normal(f"{name}_white", 0.0, 1.0, shape=shape, dims=dims)
        field = white
        for axis, factor in enumerate(self.axis_factors(grid)):
            field = pt.moveaxis(
                pt.tensordot(pt.constant(factor), field, axes=[[1], [axis]]), 0, axis
            )
        sigma = (
            self.sigma.build(f"{name}_sigma", (), None)
            if isinstance(self.sigma, Prior)
            else self.sigma
        )
        return pm.Deterministic(name, pt.constant(self.mean) + sigma * field, dims=dims)

    def free_values(self, name, white, value):
        """Return ``{<name>_white: white}``: the whitened variable NUTS samples is the free one."""
        return {f"{name}_white": white}

    def gaussian(self, shape, grid=None):
        """Return the flat mean and the Kronecker Cholesky factor (None if sigma is learned)."""
        if isinstance(self.sigma, Prior):
            return None
        factor = np.ones((1, 1))
        for f in self.axis_factors(grid):
            factor = np.kron(factor, f)
        mean = np.broadcast_to(self.mean, shape).ravel().astype(float)
        return mean, self.sigma * factor

    def gaussian_operator(
        self, shape: tuple[int, ...], grid: Grid | None = None
    ) -> tuple[np.ndarray, KroneckerFactor] | None:
        """Return the flat mean and the factor as what it is: a :class:`KroneckerFactor`.

        The same prior as :meth:`gaussian` (None if sigma is learned) without forming the dense
        ``n × n`` Kronecker product: ``L = sigma (L_1 ⊗ … ⊗ L_d)`` with the :meth:`axis_factors`.

        Examples
        --------
        >>> import numpy as np
        >>> import bayesjoint as bj
        >>> grid = bj.Grid(x=np.linspace(0.0, 90.0, 10), z=np.linspace(-20.0, 0.0, 5))
        >>> prior = bj.priors.GaussianField(sigma=2.0, correlation_length=30.0)
        >>> mean, factor = prior.gaussian_operator(grid.shape, grid)
        >>> factor.axis_shape
        (10, 5)
        >>> bool(np.allclose(factor.toarray(), prior.gaussian(grid.shape, grid)[1]))
        True
        """
        if isinstance(self.sigma, Prior):
            return None
        mean = np.broadcast_to(self.mean, shape).ravel().astype(float)
        return mean, KroneckerFactor(self.sigma, self.axis_factors(grid))

    def __repr__(self) -> str:
        return (
            f"GaussianField(sigma={self.sigma!r}, correlation_length={self.correlation_length!r}, "
            f"kernel={self.kernel!r})"
        )


def as_prior(prior: Any, owner: str) -> Prior:
    """Return ``prior`` if it is a :class:`Prior`; raise a TypeError naming ``owner`` otherwise."""
    if isinstance(prior, Prior):
        return prior
    raise TypeError(
        f"{owner}: prior must be a bayesjoint prior (e.g. bj.priors.Normal(0, 1)), got "
        f"{type(prior).__name__}"
    )
