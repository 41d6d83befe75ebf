"""Noise models: the likelihood of one modality's data given its prediction."""

from __future__ import annotations

from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import scipy.linalg as sla

from bayesjoint.priors import Prior

__all__ = ["Gaussian", "Noise", "StudentT"]


class Noise:
    """Base class of noise models.

    A noise model is validated against one modality's data (:meth:`validate`) and adds that
    modality's observed variable to the model (:meth:`build`).
    """

    def validate(self, modality: str, data_shape: tuple[int, ...]) -> None:
        """Raise ValueError/TypeError naming ``modality`` if the noise cannot fit the data."""

    def build(self, modality: str, mu: Any, data: np.ndarray, dims: tuple[str, ...]) -> Any:
        """Add the observed variable ``modality`` (and any learned noise variables)."""
        raise NotImplementedError

    def known_covariance_factor(self, data_shape: tuple[int, ...]) -> np.ndarray | None:
        """Return the Cholesky factor of the known covariance (or the sd vector), else None."""
        return None

    def describe(self) -> str:
        """Return a one-line description (used in provenance)."""
        return repr(self)


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
    the correlated data), not one per datum.

    Examples
    --------
    >>> import bayesjoint as bj
    >>> bj.noise.Gaussian(0.05)
    Gaussian(sd=0.05)
    >>> bj.noise.Gaussian(bj.priors.HalfNormal(0.1))
    Gaussian(sd=HalfNormal(sigma=0.1))
    """

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
        self.sd = sd if isinstance(sd, Prior) or sd is None else np.asarray(sd, dtype=float)
        self.cov = None if cov is None else np.asarray(cov, dtype=float)
        self.scale = scale
        self._chol: np.ndarray | None = None

    @property
    def learned(self) -> bool:
        """True when a noise hyperparameter is learned (not known in advance)."""
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
                self._chol = sla.cholesky(self.cov, lower=True)
            except np.linalg.LinAlgError:
                raise ValueError(
                    f"modality {modality!r}: noise covariance is not positive definite; check for "
                    "duplicated or perfectly correlated data, or add a small diagonal term"
                ) from None

    def known_covariance_factor(self, data_shape: tuple[int, ...]) -> np.ndarray | None:
        """Return the sd vector (diagonal case) or the lower Cholesky factor (full covariance)."""
        if self.learned:
            return None
        if self.cov is not None:
            if self._chol is None:
                self._chol = sla.cholesky(self.cov, lower=True)
            return self._chol
        return np.broadcast_to(self.sd, data_shape).ravel().astype(float)

    def factored(self, modality: str, n: int) -> tuple[Any, np.ndarray]:
        """Return ``(f, fixed)`` with the covariance ``f² · C``, adding learned variables if any.

        ``f`` is a scalar (a model variable when learned: ``<modality>_sigma`` or
        ``<modality>_noise_scale``, else 1.0); ``fixed`` is the known part: the sd vector of
        length ``n`` (``C = diag(fixed²)``) or the lower Cholesky factor of ``cov``
        (``C = fixed fixedᵀ``). Used when the noise is combined with a marginalized discrepancy.
        """
        if isinstance(self.sd, Prior):
            return self.sd.build(f"{modality}_sigma", (), None), np.ones(n)
        factor = (
            1.0 if self.scale is None else self.scale.build(f"{modality}_noise_scale", (), None)
        )
        if self.cov is not None:
            if self._chol is None:
                self._chol = sla.cholesky(self.cov, lower=True)
            return factor, self._chol
        return factor, np.broadcast_to(self.sd, (n,)).astype(float)

    def covariance_tensor(self, modality: str, n: int) -> Any:
        """Return the ``(n, n)`` noise covariance as a tensor, adding learned variables if any."""
        factor, fixed = self.factored(modality, n)
        known = self.cov if self.cov is not None else np.diag(fixed**2)
        return factor**2 * pt.constant(known)

    def build(self, modality, mu, data, dims):
        """Add the observed ``Normal``/``MvNormal`` named after the modality."""
        if isinstance(self.sd, Prior):
            sigma = self.sd.build(f"{modality}_sigma", (), None)
            return pm.Normal(modality, mu=mu, sigma=sigma, observed=data, dims=dims)
        factor = (
            1.0 if self.scale is None else self.scale.build(f"{modality}_noise_scale", (), None)
        )
        if self.cov is not None:
            chol = self.known_covariance_factor(data.shape)
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

    Examples
    --------
    >>> import bayesjoint as bj
    >>> bj.noise.StudentT(0.1, nu=3)
    StudentT(sd=0.1, nu=3.0)
    """

    def __init__(self, sd: Any, nu: float = 4.0):
        if isinstance(sd, Prior) and not sd.positive:
            raise ValueError("bj.noise.StudentT: an sd prior must be positive")
        self.sd = sd if isinstance(sd, Prior) else np.asarray(sd, dtype=float)
        self.nu = float(nu)
        if not np.isfinite(self.nu) or self.nu <= 0:
            raise ValueError(f"bj.noise.StudentT: nu must be positive, got {nu!r}")

    def validate(self, modality: str, data_shape: tuple[int, ...]) -> None:
        """Check the scale's positivity and shape."""
        if not isinstance(self.sd, Prior):
            _check_sd(self.sd, modality, data_shape)

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
