"""Noise models: the likelihood of one modality's data given its prediction.

A noise model is one class. The rest of the package never checks which class it is: it asks the
model through the methods of :class:`Noise` (is it Gaussian, is anything learned, what is its
known covariance factor, what Gaussian stands for it in a linearization), so a new noise model is
a subclass in one place.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import scipy.linalg as sla

from bayesjoint._checks import as_real_array, checked_init
from bayesjoint.priors import Prior

__all__ = ["Gaussian", "Noise", "StudentT"]

PosteriorMean = Callable[[str, str], float]
"""``posterior_mean(name, what) -> float``: the posterior mean of the scalar model variable
``name``; ``what`` says what it is (e.g. ``"modality 'a': the noise sd"``) for the error raised
when no posterior draws of it were given."""


class Noise:
    """Base class of noise models: each answers for itself.

    The package uses a noise model only through the methods below; subclasses override what
    applies to them. Nothing here writes onto the noise object: one noise model can serve several
    modalities and problems.

    - :meth:`validate`: asked once by the modality, against its data;
    - :meth:`build`: adds the observed variable when the model is built;
    - :attr:`is_gaussian`: asked by discrepancy blocks (exact route, integrated HSGP basis),
      which then use :meth:`factored` and :meth:`covariance_tensor`;
    - :attr:`learned`: asked by the exact path and by survey design (candidates);
    - :meth:`gaussian_factor`: the known covariance factor, for the exact linear-Gaussian path;
    - :meth:`linearized_factor`: the Gaussian standing for the noise in the linearized budget and
      the conflict check;
    - :meth:`describe`: provenance.

    Notes
    -----
    A Gaussian noise model (``is_gaussian`` true) has covariance ``f² C`` with ``f`` a scalar
    (learned, or 1) and ``C`` known; it needs to implement only :meth:`build` and
    :meth:`factored`: the defaults of :meth:`gaussian_factor`, :meth:`linearized_factor` and
    :meth:`covariance_tensor` follow from :meth:`factored`. A non-Gaussian model implements
    :meth:`build` and, to take part in linearizations, :meth:`linearized_factor`.

    Examples
    --------
    A Gaussian noise with one fixed sd per datum, written from scratch:

    >>> import numpy as np
    >>> import pymc as pm
    >>> class PerDatum(Noise):
    ...     is_gaussian = True
    ...     def __init__(self, sd):
    ...         self.sd = np.asarray(sd, dtype=float)
    ...     def build(self, modality, mu, data, dims):
    ...         return pm.Normal(modality, mu=mu, sigma=self.sd, observed=data, dims=dims)
    ...     def factored(self, modality, n):
    ...         return 1.0, self.sd.ravel()
    >>> PerDatum([0.1, 0.2]).gaussian_factor("a", (2,)).tolist()
    [0.1, 0.2]
    """

    @property
    def is_gaussian(self) -> bool:
        """True when the likelihood is Gaussian given the noise hyperparameters (fixed or learned).

        A Gaussian noise model implements :meth:`factored`.
        """
        return False

    @property
    def learned(self) -> bool:
        """True when a noise hyperparameter is learned (a model variable), not known in advance."""
        return False

    def validate(self, modality: str, data_shape: tuple[int, ...]) -> None:
        """Raise ValueError/TypeError naming ``modality`` if the noise cannot fit the data."""

    def build(self, modality: str, mu: Any, data: np.ndarray, dims: tuple[str, ...]) -> Any:
        """Add the observed variable ``modality`` (and any learned noise variables)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement build()")

    def factored(self, modality: str, n: int) -> tuple[Any, np.ndarray]:
        """Return ``(f, fixed)`` with the covariance ``f² C``, adding learned variables if any.

        Parameters
        ----------
        modality : str
            Names the learned variables and the errors.
        n : int
            Number of data.

        Returns
        -------
        f : float or tensor
            A scalar: 1.0 when nothing is learned, else a model variable (so call this inside
            the model's context).
        fixed : numpy.ndarray
            The known part: an sd vector of length ``n`` (``C = diag(fixed²)``) or the lower
            Cholesky factor of ``C`` (``C = fixed fixedᵀ``).

        Raises
        ------
        ValueError
            When the noise is not Gaussian (the default).
        """
        raise ValueError(
            f"modality {modality!r}: noise {self!r} is not Gaussian; this needs "
            "bj.noise.Gaussian (or a noise model with is_gaussian and factored())"
        )

    def covariance_tensor(self, modality: str, n: int) -> Any:
        """Return the ``(n, n)`` covariance ``f² C`` as a tensor (adds learned variables if any)."""
        factor, fixed = self.factored(modality, n)
        known = fixed @ fixed.T if np.ndim(fixed) == 2 else np.diag(np.asarray(fixed) ** 2)
        return factor**2 * pt.constant(known)

    def gaussian_factor(self, modality: str, data_shape: tuple[int, ...]) -> np.ndarray:
        """Return the factor of the known covariance, for the exact linear-Gaussian path.

        Parameters
        ----------
        modality : str
            Names the modality in errors.
        data_shape : tuple of int
            Shape of the modality's data.

        Returns
        -------
        numpy.ndarray
            The sd vector (flat, C order of the data) or the lower Cholesky factor ``R`` of the
            covariance ``Σ = R Rᵀ``. Treat it as read-only.

        Raises
        ------
        ValueError
            Naming ``modality`` when the noise is not Gaussian or has learned hyperparameters
            (then the posterior is not Gaussian).
        """
        if not self.is_gaussian:
            raise ValueError(
                f"modality {modality!r}: noise {self!r} is not Gaussian; the exact path needs "
                "bj.noise.Gaussian with a known sd or covariance, or use sample()"
            )
        if self.learned:
            raise ValueError(
                f"modality {modality!r}: noise {self!r} is learned, so the posterior is not "
                "Gaussian; fix the sd to use the exact path, or use sample()"
            )
        return np.asarray(self.factored(modality, int(np.prod(data_shape, dtype=int)))[1])

    def linearized_factor(
        self, modality: str, data_shape: tuple[int, ...], posterior_mean: PosteriorMean
    ) -> np.ndarray:
        """Return the factor of the Gaussian that stands for this noise in a linearization.

        Parameters
        ----------
        modality : str
        data_shape : tuple of int
        posterior_mean : callable
            ``posterior_mean(name, what)`` gives the posterior mean of the learned scalar
            variable ``name`` (and raises, naming ``what``, when no draws of it were given).

        Returns
        -------
        numpy.ndarray
            An sd vector or a lower Cholesky factor, as in :meth:`gaussian_factor`.

        Notes
        -----
        The default serves Gaussian noise with nothing learned (its own factor). Learned
        Gaussian noise enters with its hyperparameters at their posterior means; non-Gaussian
        noise with the Gaussian of equal Fisher information about the prediction.
        """
        if self.is_gaussian and not self.learned:
            return self.gaussian_factor(modality, data_shape)
        raise ValueError(
            f"modality {modality!r}: noise {self!r} has no Gaussian approximation in the "
            "linearization; use bj.noise.Gaussian or bj.noise.StudentT, or implement "
            "linearized_factor()"
        )

    def known_covariance_factor(self, data_shape: tuple[int, ...]) -> np.ndarray | None:
        """Return :meth:`gaussian_factor` when the covariance is known, else None."""
        if not self.is_gaussian or self.learned:
            return None
        return self.gaussian_factor("", data_shape)

    def describe(self) -> str:
        """Return a one-line description (used in provenance)."""
        return repr(self)


# Cholesky factors of known covariances, keyed by the matrix's bytes (not by the object, which
# may be shared or changed in place): validation, model build and the linear paths factor once.
_CHOLESKY: OrderedDict[tuple, np.ndarray] = OrderedDict()
_CHOLESKY_KEEP = 4


def _cholesky(cov: np.ndarray) -> np.ndarray:
    """Return the lower Cholesky factor of ``cov`` (read-only; LinAlgError if not SPD)."""
    digest = hashlib.blake2b(memoryview(np.ascontiguousarray(cov)), digest_size=16).digest()
    key = (cov.shape, cov.dtype.str, digest)
    chol = _CHOLESKY.get(key)
    if chol is None:
        chol = sla.cholesky(cov, lower=True)
        chol.flags.writeable = False
        _CHOLESKY[key] = chol
        while len(_CHOLESKY) > _CHOLESKY_KEEP:
            _CHOLESKY.popitem(last=False)
    else:
        _CHOLESKY.move_to_end(key)
    return chol


def _sd_vector(sd: np.ndarray, data_shape: tuple[int, ...]) -> np.ndarray:
    """Return the fixed sd as a flat vector over the data (C order)."""
    return np.broadcast_to(sd, data_shape).ravel().astype(float)


def _check_sd(sd: Any, modality: str, data_shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(sd, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        bad = int(np.sum(~np.isfinite(arr) | (arr <= 0)))
        raise ValueError(
            f"modality {modality!r}: noise sd must be positive and finite; {bad} value(s) are not. "
            "Give the measurement standard deviation in data units (> 0)."
        )
    try:
        np.broadcast_to(arr, data_shape)
    except ValueError:
        raise ValueError(
            f"modality {modality!r}: noise sd of shape {arr.shape} does not match data of shape "
            f"{data_shape}; give a scalar or one sd per datum"
        ) from None
    return arr


class Gaussian(Noise):
    """Gaussian noise: fixed sd, learned sd, or full covariance.

    Parameters
    ----------
    sd : float, array_like or Prior, optional
        Standard deviation in data units: a scalar, one per datum, or a positive prior (e.g.
        ``bj.priors.HalfNormal(0.1)``) to learn one sd for the modality (named
        ``<modality>_sigma``). That learned sd is the modality's weight in the joint inversion.
    cov : array_like, shape (n, n), optional
        Full covariance of the (1-D) data, symmetric positive definite. Exclusive with ``sd``.
    scale : Prior, optional
        A positive prior on a multiplicative factor applied to the known sd or covariance factor
        (named ``<modality>_noise_scale``), for data whose stated errors may be too optimistic.

    Notes
    -----
    With fixed sd or covariance the noise is *known*, which the exact linear-Gaussian path needs.
    With ``cov`` the modality's ``log_likelihood`` holds one value per draw (the joint density of
    the correlated data), not one per datum. In a linearization a learned sd or scale enters at
    its posterior mean.

    Examples
    --------
    >>> import bayesjoint as bj
    >>> bj.noise.Gaussian(0.05)
    Gaussian(sd=0.05)
    >>> bj.noise.Gaussian(bj.priors.HalfNormal(0.1))
    Gaussian(sd=HalfNormal(sigma=0.1))
    >>> bj.noise.Gaussian(bj.priors.HalfNormal(0.1)).learned
    True
    """

    @checked_init("bj.noise.Gaussian")
    def __init__(self, sd: Any = None, *, cov: Any = None, scale: Prior | None = None):
        if (sd is None) == (cov is None):
            raise TypeError("bj.noise.Gaussian needs exactly one of sd= or cov=")
        if isinstance(sd, Prior) and not sd.positive:
            raise ValueError(
                "bj.noise.Gaussian: an sd prior must be positive (HalfNormal, LogNormal)"
            )
        if scale is not None and not (isinstance(scale, Prior) and scale.positive):
            raise TypeError(
                "bj.noise.Gaussian: scale must be a positive prior, e.g. LogNormal(0, 0.5)"
            )
        if isinstance(sd, Prior) and scale is not None:
            raise TypeError("bj.noise.Gaussian: a learned sd already sets the scale; drop scale=")
        self.sd = (
            sd if isinstance(sd, Prior) or sd is None else as_real_array(sd, "bj.noise.Gaussian sd")
        )
        self.cov = None if cov is None else as_real_array(cov, "bj.noise.Gaussian cov")
        self.scale = scale

    @property
    def is_gaussian(self) -> bool:
        """Always True."""
        return True

    @property
    def learned(self) -> bool:
        """True when the sd or a scale is learned (not known in advance)."""
        return isinstance(self.sd, Prior) or self.scale is not None

    def validate(self, modality: str, data_shape: tuple[int, ...]) -> None:
        """Check sd positivity/shape or covariance shape, symmetry and positive definiteness."""
        if isinstance(self.sd, np.ndarray):
            _check_sd(self.sd, modality, data_shape)
        if self.cov is not None:
            n = int(np.prod(data_shape, dtype=int))
            if len(data_shape) != 1:
                raise ValueError(
                    f"modality {modality!r}: a full noise covariance needs 1-D data, got data of "
                    f"shape {data_shape}; flatten the data (and give dims) first"
                )
            if self.cov.shape != (n, n):
                raise ValueError(
                    f"modality {modality!r}: noise covariance has shape {self.cov.shape} but the "
                    f"data have {n} values; give an ({n}, {n}) matrix"
                )
            if not np.all(np.isfinite(self.cov)):
                raise ValueError(f"modality {modality!r}: noise covariance has NaN or inf entries")
            scale = max(float(np.max(np.abs(self.cov))), np.finfo(float).tiny)
            if not np.allclose(self.cov, self.cov.T, rtol=0.0, atol=1e-12 * scale):
                raise ValueError(
                    f"modality {modality!r}: noise covariance is not symmetric; "
                    "use (cov + cov.T) / 2 if the asymmetry is round-off"
                )
            try:
                _cholesky(self.cov)
            except np.linalg.LinAlgError:
                raise ValueError(
                    f"modality {modality!r}: noise covariance is not positive definite; check for "
                    "duplicated or perfectly correlated data, or add a small diagonal term"
                ) from None

    def _fixed_part(self, data_shape: tuple[int, ...]) -> np.ndarray:
        """Return the known sd vector or covariance Cholesky factor (``sd`` must not be a prior)."""
        if self.cov is not None:
            return _cholesky(self.cov)
        return _sd_vector(self.sd, data_shape)

    def factored(self, modality: str, n: int) -> tuple[Any, np.ndarray]:
        """Return ``(f, fixed)`` with the covariance ``f² C`` (see :meth:`Noise.factored`).

        ``f`` is ``<modality>_sigma`` (learned sd, with ``fixed`` ones), ``<modality>_noise_scale``
        (scale=) or 1.0. Used when the noise is combined with a marginalized discrepancy.
        """
        if isinstance(self.sd, Prior):
            return self.sd.build(f"{modality}_sigma", (), None), np.ones(n)
        factor = (
            1.0 if self.scale is None else self.scale.build(f"{modality}_noise_scale", (), None)
        )
        if self.cov is None and self.sd.size == n:  # one sd per datum, in the data's shape
            return factor, self.sd.ravel().astype(float)
        return factor, self._fixed_part((n,))

    def covariance_tensor(self, modality: str, n: int) -> Any:
        """Return the ``(n, n)`` noise covariance as a tensor, adding learned variables if any."""
        factor, fixed = self.factored(modality, n)
        known = self.cov if self.cov is not None else np.diag(fixed**2)
        return factor**2 * pt.constant(known)

    def gaussian_factor(self, modality: str, data_shape: tuple[int, ...]) -> np.ndarray:
        """Return the sd vector or the covariance's Cholesky factor (see :meth:`Noise`)."""
        if self.learned:
            return super().gaussian_factor(modality, data_shape)  # raises, naming the modality
        return self._fixed_part(data_shape)

    def linearized_factor(
        self, modality: str, data_shape: tuple[int, ...], posterior_mean: PosteriorMean
    ) -> np.ndarray:
        """Return the factor with a learned sd or scale at its posterior mean."""
        if isinstance(self.sd, Prior):
            sd = posterior_mean(f"{modality}_sigma", f"modality {modality!r}: the noise sd")
            return np.full(int(np.prod(data_shape, dtype=int)), sd)
        scale = 1.0
        if self.scale is not None:
            scale = posterior_mean(
                f"{modality}_noise_scale", f"modality {modality!r}: the noise scale"
            )
        return scale * self._fixed_part(data_shape)

    def build(self, modality, mu, data, dims):
        """Add the observed ``Normal``/``MvNormal`` named after the modality."""
        if isinstance(self.sd, Prior):
            sigma = self.sd.build(f"{modality}_sigma", (), None)
            return pm.Normal(modality, mu=mu, sigma=sigma, observed=data, dims=dims)
        factor = (
            1.0 if self.scale is None else self.scale.build(f"{modality}_noise_scale", (), None)
        )
        if self.cov is not None:
            chol = _cholesky(self.cov)
            return pm.MvNormal(modality, mu=mu, chol=factor * chol, observed=data, dims=dims)
        return pm.Normal(modality, mu=mu, sigma=factor * self.sd, observed=data, dims=dims)

    def __repr__(self) -> str:
        if self.cov is not None:
            text = f"cov=<{self.cov.shape[0]}x{self.cov.shape[1]}>"
        elif isinstance(self.sd, Prior):
            text = f"sd={self.sd!r}"
        elif self.sd.ndim == 0:
            text = f"sd={float(self.sd):g}"
        else:
            text = f"sd=<array {self.sd.shape}>"
        if self.scale is not None:
            text += f", scale={self.scale!r}"
        return f"Gaussian({text})"


class StudentT(Noise):
    """Student-t noise for data with outliers (not linear-Gaussian).

    Parameters
    ----------
    sd : float, array_like or Prior
        Scale in data units (fixed) or a positive prior (learned, ``<modality>_sigma``).
    nu : float, default 4
        Degrees of freedom (> 0); smaller means heavier tails.

    Notes
    -----
    In a linearization Student-t noise of scale ``s`` and ``ν`` degrees of freedom stands as the
    Gaussian with the same Fisher information about the prediction, of sd
    ``s √((ν + 3)/(ν + 1))`` (Lange, Little & Taylor 1989, JASA 84, 881); a learned scale enters
    at its posterior mean.

    Examples
    --------
    >>> import bayesjoint as bj
    >>> bj.noise.StudentT(0.1, nu=3)
    StudentT(sd=0.1, nu=3.0)
    >>> bj.noise.StudentT(0.1, nu=3).is_gaussian
    False
    """

    @checked_init("bj.noise.StudentT")
    def __init__(self, sd: Any, nu: float = 4.0):
        if isinstance(sd, Prior) and not sd.positive:
            raise ValueError("bj.noise.StudentT: an sd prior must be positive")
        self.sd = sd if isinstance(sd, Prior) else as_real_array(sd, "bj.noise.StudentT sd")
        self.nu = float(nu)
        if not np.isfinite(self.nu) or self.nu <= 0:
            raise ValueError(f"bj.noise.StudentT: nu must be positive, got {nu!r}")

    @property
    def learned(self) -> bool:
        """True when the scale is learned."""
        return isinstance(self.sd, Prior)

    def validate(self, modality: str, data_shape: tuple[int, ...]) -> None:
        """Check the scale's positivity and shape."""
        if not isinstance(self.sd, Prior):
            _check_sd(self.sd, modality, data_shape)

    def linearized_factor(
        self, modality: str, data_shape: tuple[int, ...], posterior_mean: PosteriorMean
    ) -> np.ndarray:
        """Return the sd of the Gaussian with equal Fisher information, ``s √((ν+3)/(ν+1))``."""
        if isinstance(self.sd, Prior):
            s = posterior_mean(f"{modality}_sigma", f"modality {modality!r}: the noise scale")
            scale = np.full(int(np.prod(data_shape, dtype=int)), s)
        else:
            scale = _sd_vector(self.sd, data_shape)
        return scale * np.sqrt((self.nu + 3.0) / (self.nu + 1.0))

    def build(self, modality, mu, data, dims):
        """Add the observed ``StudentT`` named after the modality."""
        sigma = (
            self.sd.build(f"{modality}_sigma", (), None) if isinstance(self.sd, Prior) else self.sd
        )
        return pm.StudentT(modality, nu=self.nu, mu=mu, sigma=sigma, observed=data, dims=dims)

    def __repr__(self) -> str:
        sd = (
            repr(self.sd)
            if isinstance(self.sd, Prior)
            else (f"{float(self.sd):g}" if self.sd.ndim == 0 else f"<array {self.sd.shape}>")
        )
        return f"StudentT(sd={sd}, nu={self.nu})"
