"""Seismic waveforms: the Ricker wavelet, the convolutional model and a shifted-wavelet physics.

Every function accepts numpy arrays (numpy result) or pytensor tensors (differentiable graph).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytensor.tensor as pt
import scipy.signal
from pytensor.tensor.signal import convolve1d

from bayesjoint._checks import checked_init
from bayesjoint._tensor import is_symbolic
from bayesjoint.physics.base import Physics

__all__ = [
    "ConvolutionalSeismogram",
    "ShiftedWavelet",
    "convolutional_seismogram",
    "reflectivity_from_impedance",
    "ricker",
]


def _float_tensor(value: Any) -> Any:
    return pt.as_tensor_variable(value if is_symbolic(value) else np.asarray(value, dtype=float))


def _check_frequency(peak_frequency: Any) -> None:
    if not is_symbolic(peak_frequency):
        f = np.asarray(peak_frequency, dtype=float)
        if not np.all(np.isfinite(f)) or np.any(f <= 0):
            raise ValueError("peak_frequency must be finite and > 0 (Hz)")


def ricker(t: Any, peak_frequency: Any, t0: Any = 0.0) -> Any:
    """Return the Ricker wavelet (negative normalised second derivative of a Gaussian).

    Parameters
    ----------
    t : array_like or pytensor tensor
        Times in seconds.
    peak_frequency : float or pytensor tensor
        Peak (most energetic) frequency ``f`` of the amplitude spectrum, in Hz.
    t0 : float, array_like or pytensor tensor, default 0.0
        Time of the central peak in seconds (broadcast against ``t``).

    Returns
    -------
    numpy.ndarray or pytensor tensor
        Dimensionless amplitude, 1 at ``t = t0``; a tensor when any input is a tensor
        (differentiable in all three).

    Notes
    -----
    Ricker (1953, Geophysics 18, 10–40); Wang (2015, Geophysics 80(2), A31–A37)::

        r(t) = (1 − 2π²f²τ²) exp(−π²f²τ²),   τ = t − t0.

    Zero crossings at ``τ = ±1/(π f √2)``, side lobes ``−2 e^{−3/2}`` at ``τ = ±√(3/2)/(π f)``,
    zero mean, and Fourier amplitude ``(2/√π) ν²/f³ exp(−ν²/f²)``, which peaks at ``ν = f``.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.physics.waveform import ricker
    >>> ricker(np.array([0.0, 1.0 / (np.pi * 25.0 * np.sqrt(2.0))]), 25.0).round(12)
    array([1., 0.])
    """
    _check_frequency(peak_frequency)
    if is_symbolic(t) or is_symbolic(peak_frequency) or is_symbolic(t0):
        t, peak_frequency, t0 = (_float_tensor(v) for v in (t, peak_frequency, t0))
        xp: Any = pt
    else:
        t, peak_frequency, t0 = (np.asarray(v, dtype=float) for v in (t, peak_frequency, t0))
        xp = np
    arg = (np.pi * peak_frequency * (t - t0)) ** 2
    return (1.0 - 2.0 * arg) * xp.exp(-arg)


def reflectivity_from_impedance(impedance: Any, log: bool = False) -> Any:
    """Return normal-incidence reflection coefficients between consecutive impedance samples.

    Parameters
    ----------
    impedance : array_like or pytensor tensor, shape (..., n)
        Acoustic impedance ``Z = ρ V`` (kg m⁻² s⁻¹; any consistent unit) along the last axis,
        ordered in increasing travel time (downwards). With ``log=True``, ``ln Z`` instead.
    log : bool, default False
        Whether ``impedance`` holds natural logarithms.

    Returns
    -------
    numpy.ndarray or pytensor tensor, shape (..., n - 1)
        Dimensionless reflectivity of each interface.

    Notes
    -----
    ``r_i = (Z_{i+1} − Z_i) / (Z_{i+1} + Z_i)`` (Sheriff & Geldart 1995, *Exploration
    Seismology*, eq. 3.8), positive where impedance increases downwards. For logarithms the same
    value is ``tanh((ln Z_{i+1} − ln Z_i) / 2)``.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.physics.waveform import reflectivity_from_impedance
    >>> reflectivity_from_impedance(np.array([1.0, 3.0, 1.0]))
    array([ 0.5, -0.5])
    """
    if is_symbolic(impedance):
        z = pt.as_tensor_variable(impedance)
        if log:
            return pt.tanh(0.5 * (z[..., 1:] - z[..., :-1]))
        return (z[..., 1:] - z[..., :-1]) / (z[..., 1:] + z[..., :-1])
    z = np.asarray(impedance, dtype=float)
    if z.ndim < 1 or z.shape[-1] < 2:
        raise ValueError("impedance needs at least two samples along its last axis")
    if not np.all(np.isfinite(z)):
        raise ValueError("impedance contains NaN or inf values")
    if log:
        return np.tanh(0.5 * (z[..., 1:] - z[..., :-1]))
    if np.any(z <= 0):
        raise ValueError("impedance must be > 0; pass log=True if it holds ln Z")
    return (z[..., 1:] - z[..., :-1]) / (z[..., 1:] + z[..., :-1])


def _center(wavelet: Any, center: int | None) -> int:
    if center is not None:
        if not isinstance(center, (int, np.integer)) or center < 0:
            raise TypeError("center must be a non-negative int (the wavelet's time-zero sample)")
        return int(center)
    length = (
        pt.as_tensor_variable(wavelet).type.shape[-1]
        if is_symbolic(wavelet)
        else np.shape(wavelet)[-1]
    )
    if length is None:
        raise ValueError("give center=... for a symbolic wavelet of unknown length")
    return (int(length) - 1) // 2


def convolutional_seismogram(
    *,
    wavelet: Any,
    reflectivity: Any = None,
    impedance: Any = None,
    log: bool = False,
    center: int | None = None,
) -> Any:
    """Return the convolutional-model seismogram ``s = w * r``.

    Parameters
    ----------
    wavelet : array_like or pytensor tensor, shape (m,)
        The source wavelet, sampled at the same interval as the reflectivity.
    reflectivity : array_like or pytensor tensor, shape (..., n), optional
        Reflection coefficients in two-way time order (last axis).
    impedance : array_like or pytensor tensor, shape (..., n + 1), optional
        Impedance instead of reflectivity (converted by :func:`reflectivity_from_impedance`).
        Give exactly one of ``reflectivity`` and ``impedance``.
    log : bool, default False
        Whether ``impedance`` holds ``ln Z``.
    center : int, optional
        Index of the wavelet sample at time zero; default ``(m - 1) // 2`` (a centred,
        odd-length, zero-phase wavelet).

    Returns
    -------
    numpy.ndarray or pytensor tensor, shape (..., n)
        The trace at the reflectivity samples (same units as the wavelet).

    Notes
    -----
    Robinson (1967); Yilmaz (2001, *Seismic Data Analysis*, §2.1)::

        s_i = Σ_j r_j w_{i − j + c},   i = 0 … n − 1,

    i.e. ``numpy.convolve(r, w)[c : c + n]``: a spike at sample ``j`` returns the wavelet with
    its time-zero sample at ``j``. Linear in the reflectivity; differentiable in all inputs.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.physics.waveform import convolutional_seismogram
    >>> convolutional_seismogram(wavelet=np.array([-1.0, 2.0, -1.0]),
    ...                          reflectivity=np.array([0.0, 1.0, 0.0, 0.0]))
    array([-1.,  2., -1.,  0.])
    """
    if (reflectivity is None) == (impedance is None):
        raise TypeError("give exactly one of reflectivity=... or impedance=...")
    series = reflectivity if impedance is None else reflectivity_from_impedance(impedance, log=log)
    c = _center(wavelet, center)
    if is_symbolic(series) or is_symbolic(wavelet):
        r = _float_tensor(series)
        w = _float_tensor(wavelet)
        full = convolve1d(r, w, mode="full")
        return full[..., c : c + r.shape[-1]]
    r = np.asarray(series, dtype=float)
    w = np.asarray(wavelet, dtype=float)
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"wavelet must be a non-empty 1-D array, got shape {w.shape}")
    if c >= w.size:
        raise ValueError(f"center={c} is outside the wavelet (length {w.size})")
    if r.ndim < 1:
        raise ValueError("reflectivity must have at least one axis (time last)")
    full = scipy.signal.convolve(r, w.reshape((1,) * (r.ndim - 1) + (-1,)), method="direct")
    return full[..., c : c + r.shape[-1]]


class ConvolutionalSeismogram(Physics):
    """Convolutional seismogram of a latent reflectivity or impedance, as physics.

    Parameters
    ----------
    wavelet : array_like, shape (m,)
        Fixed source wavelet sampled at the trace interval (e.g. from :func:`ricker`).
    input : str, default "impedance"
        Latent variable read, time along its last axis.
    kind : {"impedance", "reflectivity"}, default "impedance"
        What the latent holds. A latent impedance with ``n + 1`` samples gives ``n`` trace samples.
    log : bool, default False
        For ``kind="impedance"``: whether the latent holds ``ln Z``.
    center : int, optional
        Time-zero sample of the wavelet; default ``(m - 1) // 2``.
    n_samples : int, optional
        Reflectivity length; lets :meth:`linear_operator` build the matrix for
        ``kind="reflectivity"`` (the map is then linear).

    Notes
    -----
    See :func:`convolutional_seismogram` and :func:`reflectivity_from_impedance`.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.physics.waveform import ConvolutionalSeismogram
    >>> op = ConvolutionalSeismogram(np.array([0.5, 1.0, 0.5]), input="z")
    >>> op(z=np.array([1.0, 1.0, 3.0, 3.0]))
    array([0.25, 0.5 , 0.25])
    """

    @checked_init("bj.physics.ConvolutionalSeismogram")
    def __init__(
        self,
        wavelet: Any,
        input: str = "impedance",
        kind: str = "impedance",
        log: bool = False,
        center: int | None = None,
        n_samples: int | None = None,
    ) -> None:
        self.wavelet = np.asarray(wavelet, dtype=float)
        if self.wavelet.ndim != 1 or not np.all(np.isfinite(self.wavelet)):
            raise ValueError("ConvolutionalSeismogram(wavelet=...) must be a finite 1-D array")
        if kind not in ("impedance", "reflectivity"):
            raise ValueError(f"kind must be 'impedance' or 'reflectivity', got {kind!r}")
        if not isinstance(input, str):
            raise TypeError("ConvolutionalSeismogram(input=...) must be a latent name")
        self.center = _center(self.wavelet, center)
        if self.center >= self.wavelet.size:
            raise ValueError(f"center={self.center} is outside the wavelet")
        self.kind = kind
        self.log = bool(log)
        self.n_samples = n_samples
        self.inputs = (input,)

    def _series_kwargs(self, value: Any) -> dict[str, Any]:
        if self.kind == "impedance":
            return {"impedance": value, "log": self.log}
        return {"reflectivity": value}

    def forward(self, latent: Mapping[str, Any]) -> Any:
        """Return the symbolic trace(s)."""
        value = _float_tensor(latent[self.inputs[0]])
        return convolutional_seismogram(
            wavelet=pt.constant(self.wavelet), center=self.center, **self._series_kwargs(value)
        )

    def _evaluate_numpy(self, values: Mapping[str, Any]) -> np.ndarray:
        return convolutional_seismogram(
            wavelet=self.wavelet, center=self.center, **self._series_kwargs(values[self.inputs[0]])
        )

    def output_shape(self, input_shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, ...]:
        """Return the trace shape: the input's, one sample shorter for an impedance."""
        shape = tuple(input_shapes[self.inputs[0]])
        if not shape:
            raise ValueError(f"'{self.inputs[0]}' must have a time axis (last)")
        return shape[:-1] + ((shape[-1] - 1,) if self.kind == "impedance" else shape[-1:])

    def linear_operator(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Return the convolution matrix for ``kind="reflectivity"`` with ``n_samples`` set."""
        if self.kind != "reflectivity" or self.n_samples is None:
            return None
        n = int(self.n_samples)
        i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        k = i - j + self.center
        valid = (k >= 0) & (k < self.wavelet.size)
        matrix = np.where(valid, self.wavelet[np.clip(k, 0, self.wavelet.size - 1)], 0.0)
        return matrix, np.zeros(n)

    def __repr__(self) -> str:
        return f"ConvolutionalSeismogram({self.kind}, input={self.inputs[0]!r})"


class ShiftedWavelet(Physics):
    """A Ricker wavelet arriving at a latent time, sampled at fixed times.

    Parameters
    ----------
    times : array_like, shape (n,)
        Sample times in seconds.
    peak_frequency : float
        Ricker peak frequency in Hz.
    input : str, default "arrival_time"
        Latent arrival time(s) in seconds: a scalar gives one trace of shape (n,), an array of
        shape ``s`` gives traces of shape ``s + (n,)`` (one per arrival, e.g. per receiver).
    amplitude : float or str, default 1.0
        Fixed amplitude, or the name of a latent amplitude broadcastable to the arrival times.

    Notes
    -----
    Output ``A · r(t − t_a)`` with ``r`` from :func:`ricker` (peak value ``A`` at ``t = t_a``).
    Smooth in ``t_a``, so NUTS can sample arrival times directly.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesjoint.physics.waveform import ShiftedWavelet
    >>> op = ShiftedWavelet(np.array([0.0, 0.1, 0.2]), peak_frequency=10.0, amplitude=2.0)
    >>> trace = op(arrival_time=np.array(0.1))
    >>> trace.shape, round(float(trace[1]), 12)
    ((3,), 2.0)
    """

    @checked_init("bj.physics.ShiftedWavelet")
    def __init__(
        self,
        times: Any,
        peak_frequency: float,
        input: str = "arrival_time",
        amplitude: float | str = 1.0,
    ) -> None:
        self.times = np.asarray(times, dtype=float)
        if self.times.ndim != 1 or self.times.size == 0 or not np.all(np.isfinite(self.times)):
            raise ValueError("ShiftedWavelet(times=...) must be a non-empty finite 1-D array (s)")
        _check_frequency(peak_frequency)
        self.peak_frequency = float(peak_frequency)
        if not isinstance(input, str):
            raise TypeError("ShiftedWavelet(input=...) must be a latent name")
        self.amplitude = amplitude
        if isinstance(amplitude, str):
            self.inputs = (input, amplitude)
        else:
            if not np.isfinite(float(amplitude)):
                raise ValueError("ShiftedWavelet(amplitude=...) must be finite or a latent name")
            self.inputs = (input,)

    def forward(self, latent: Mapping[str, Any]) -> Any:
        """Return the symbolic trace(s) ``A · r(t − t_a)``."""
        arrival = _float_tensor(latent[self.inputs[0]])
        out = ricker(pt.constant(self.times), self.peak_frequency, arrival[..., None])
        if isinstance(self.amplitude, str):
            return _float_tensor(latent[self.amplitude])[..., None] * out
        return float(self.amplitude) * out

    def output_shape(self, input_shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, ...]:
        """Return ``arrival_shape + (n_times,)``."""
        return (*input_shapes[self.inputs[0]], self.times.size)

    def __repr__(self) -> str:
        return f"ShiftedWavelet({self.times.size} samples, {self.peak_frequency} Hz)"
