"""Frequency continuation: low-passed data first, then the full band.

Fitting low-passed waveform data first walks a local optimizer into the right valley of a
cycle-skipping misfit before the full band sharpens it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bayesjoint.inference.search import LogPosterior, local_descent, log_posterior
from bayesjoint.modality import Modality
from bayesjoint.observe import LowPass

__all__ = [
    "ContinuationResult",
    "ContinuationStage",
    "frequency_continuation",
]


@dataclass(frozen=True)
class ContinuationStage:
    """One stage of :func:`frequency_continuation`.

    Attributes
    ----------
    cutoff : float or None
        Corner frequency in Hz (None: full band).
    location : dict of str to numpy.ndarray
        Latent values at the stage's optimum, in their own units.
    value : numpy.ndarray
        The optimum in the sampler's flat coordinates.
    log_posterior : float
        The stage's log posterior density at its optimum.
    """

    cutoff: float | None
    location: dict[str, np.ndarray]
    value: np.ndarray
    log_posterior: float


@dataclass(frozen=True)
class ContinuationResult:
    """Outcome of :func:`frequency_continuation`.

    Attributes
    ----------
    stages : list of ContinuationStage
        Lowest band first, the full band last.
    initvals : dict of str to numpy.ndarray
        Free-variable values at the final optimum, for
        ``problem.sample(initvals=..., init="adapt_diag")``.
    """

    stages: list[ContinuationStage]
    initvals: dict[str, np.ndarray]

    @property
    def location(self) -> dict[str, np.ndarray]:
        """Latent values at the full-band optimum."""
        return self.stages[-1].location


def _lowpassed_problem(problem: Any, names: Sequence[str], cutoff: float, dt: float, order: int):
    """Return ``problem`` (same class) with the modalities ``names`` seen through a low-pass."""
    mods = []
    for mod in problem.modalities.values():
        if mod.name not in names:
            mods.append(mod)
            continue
        if getattr(mod, "discrepancy", None) is not None:
            raise ValueError(
                f"modality {mod.name!r}: frequency continuation does not handle a discrepancy "
                "term; drop it for the continuation stages"
            )
        lowpass = LowPass(cutoff, dt, order)
        mods.append(
            Modality(
                mod.name,
                physics=mod.physics,
                data=lowpass.filter_data(mod.data),
                noise=mod.noise,
                observe=mod.observe >> lowpass,
                units=mod.units,
                dims=mod.dims,
                coords=mod.coords,
            )
        )
    return type(problem)(
        latent=list(problem.latent.values()), modalities=mods, couplings=problem.couplings
    )


def _waveform_names(problem: Any, modalities: str | Sequence[str]) -> list[str]:
    """Return the names of the modalities to low-pass, checked against the problem's."""
    names = [modalities] if isinstance(modalities, str) else list(modalities)
    known = getattr(problem, "modalities", None)
    if not isinstance(known, Mapping):
        raise TypeError("frequency_continuation needs a bj.JointInversion")
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(
            f"modalities={names!r}: name the waveform modalities to low-pass among {list(known)}"
        )
    return names


def frequency_continuation(
    problem: Any,
    cutoffs: Sequence[float],
    *,
    modalities: Sequence[str],
    sample_interval: float,
    start: Mapping[str, Any] | None = None,
    bounds: Mapping[str, Any] | None = None,
    order: int = 4,
    maxiter: int = 1000,
) -> ContinuationResult:
    """Fit low-passed waveform data first, then the full band (multiscale continuation).

    Parameters
    ----------
    problem : JointInversion
    cutoffs : sequence of float
        Corner frequencies in Hz, visited from the lowest up; the full band comes last.
    modalities : sequence of str
        The waveform modalities to low-pass (time along the data's last axis). Other modalities
        (e.g. travel-time picks) enter every stage unchanged.
    sample_interval : float
        Sampling interval of those traces in seconds.
    start : mapping, optional
        Free-variable values (own units) to start from; the model's initial point otherwise.
    bounds : mapping, optional
        Box per free variable in its own units (see
        :meth:`bayesjoint.inference.search.LogPosterior.bounds`); unbounded when omitted.
    order : int, default 4
        Butterworth order (see :func:`lowpass_matrix`).
    maxiter : int, default 1000
        L-BFGS-B iterations per stage.

    Returns
    -------
    ContinuationResult
        The optimum of each stage and ``initvals`` for sampling the full problem.

    Raises
    ------
    ValueError
        For an unknown modality name, a cutoff at or above Nyquist, or a trace too short.

    Notes
    -----
    Low-passing data and predictions with the same zero-phase filter (:class:`LowPass`)
    lengthens the dominant period, so the valleys of the misfit widen and a local optimizer
    started up to half a *low-band* period from the truth reaches the right valley; each higher
    band then refines within a valley that already contains the answer. Use a ladder of bands
    (e.g. a third and a half of the dominant frequency): the lowest band is the noisiest, and
    each stage must end within half a period of the next band (Bunks et al. 1995,
    Geophysics 60, 1457–1473; Virieux & Operto 2009, Geophysics 74, WCC1–WCC26). It needs
    signal at the low frequencies: a narrow-band or ringing wavelet whose low band is below the
    noise gives the low stages nothing to fit. The low-band stages keep each modality's noise
    model, so they locate the valley but are not calibrated posteriors; sample the full problem
    from ``initvals`` with ``init="adapt_diag"`` (no jitter, which could push the chains into
    another valley).

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> from bayesjoint.inference import frequency_continuation
    >>> from bayesjoint.physics.waveform import ShiftedWavelet, ricker
    >>> t = np.arange(400) * 0.002
    >>> data = ricker(t, 20.0, 0.40)
    >>> arrival = bj.Parameter("arrival_time", prior=bj.priors.Normal(0.4, 0.2))
    >>> wave = bj.Modality("wave", physics=ShiftedWavelet(t, 20.0), data=data,
    ...                    noise=bj.noise.Gaussian(0.1))
    >>> problem = bj.JointInversion(latent=[arrival], modalities=[wave])
    >>> result = frequency_continuation(problem, [6.0], modalities=["wave"],
    ...                                 sample_interval=0.002, start={"arrival_time": 0.45})
    >>> [round(float(s.location["arrival_time"]), 3) for s in result.stages]
    [0.4, 0.4]
    """
    names = _waveform_names(problem, modalities)
    bands = sorted(float(c) for c in cutoffs)
    full = log_posterior(problem)
    x = full.x0 if start is None else full.to_flat(start)
    box = None if bounds is None else full.bounds(bounds)
    stages = []
    for cutoff in [*bands, None]:
        if cutoff is None:
            target = full
        else:
            target = LogPosterior(
                _lowpassed_problem(problem, names, cutoff, sample_interval, order)
            )
            if target.value_names != full.value_names:  # pragma: no cover - same latent model
                raise ValueError("the low-passed problem has different free variables")
        x, value = local_descent(target, x, box, maxiter)
        stages.append(
            ContinuationStage(cutoff=cutoff, location=full.latent(x), value=x, log_posterior=-value)
        )
    return ContinuationResult(stages=stages, initvals=full.initvals(x))
