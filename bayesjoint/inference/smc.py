"""Sequential Monte Carlo with likelihood tempering (PyMC's SMC).

SMC explores all valleys of a rugged posterior at once and weighs them by construction.
"""

from __future__ import annotations

from typing import Any

import arviz as az
import pymc as pm

from bayesjoint._random import rng_and_seed
from bayesjoint.inference.keywords import check_smc_arguments, checked_keywords, smc_keywords
from bayesjoint.inference.multistart import _provenance_for, _with_log_likelihood
from bayesjoint.inference.search import _model_of
from bayesjoint.inference.threads import chains_running, safe_start_method
from bayesjoint.io import attach_provenance

__all__ = [
    "sample_smc",
]


# ---------------------------------------------------------------------------------------------
# SMC
# ---------------------------------------------------------------------------------------------
@checked_keywords(check_smc_arguments, smc_keywords)
def sample_smc(
    problem: Any,
    draws: int = 2000,
    chains: int = 2,
    *,
    kernel: str = "IMH",
    threshold: float = 0.5,
    correlation_threshold: float = 0.01,
    cores: int | None = 1,
    random_seed: int | None = None,
    progressbar: bool = False,
    **kwargs: Any,
) -> az.InferenceData:
    """Sample the posterior with sequential Monte Carlo and likelihood tempering.

    Parameters
    ----------
    problem : JointInversion or pymc.Model
    draws : int, default 2000
        Particles per chain (each chain is an independent SMC run).
    chains : int, default 2
    kernel : {"IMH", "MH"}, default "IMH"
        Mutation kernel: independent Metropolis-Hastings with a Gaussian proposal fitted to the
        particles (PyMC's default), or random-walk Metropolis-Hastings.
    threshold : float, default 0.5
        Target ratio of effective to total sample size that sets each tempering step.
    correlation_threshold : float, default 0.01
        Mutation steps continue until the particles' autocorrelation falls below this.
    cores : int, default 1
    random_seed : int, optional
        Drawn from OS entropy and recorded when omitted.
    progressbar : bool, default False
    **kwargs
        Passed to :func:`pymc.sample_smc`.

    Returns
    -------
    arviz.InferenceData
        ``posterior``, ``sample_stats`` (with ``log_marginal_likelihood`` and the tempering
        ``beta`` schedule per chain), ``log_likelihood`` (one variable per modality),
        ``observed_data``; provenance in every group's attributes.

    Notes
    -----
    SMC moves particles from the prior ``p(m)`` to the posterior through the tempered densities
    ``p(m) p(d | m)^β``, ``0 = β₀ < … < β_T = 1``, reweighting, resampling and mutating at each
    step (Del Moral, Doucet & Jasra 2006, JRSS-B 68, 411–436; Ching & Chen 2007, J. Eng. Mech.
    133, 816–832, the scheme PyMC implements). At small ``β`` every valley is reachable, so the
    particles settle into the valleys in proportion to their posterior mass: no search and no
    weights are needed. It needs a proper prior and many more log-density evaluations than NUTS;
    with many well-separated, narrow valleys, raise ``draws`` so that each valley keeps
    particles through the tempering.

    Examples
    --------
    >>> import numpy as np
    >>> import bayesjoint as bj
    >>> from bayesjoint.inference import sample_smc
    >>> x = bj.Parameter("x", prior=bj.priors.Normal(0.0, 3.0))
    >>> sq = bj.Modality("sq", physics=lambda m: (m["x"] ** 2)[None], data=[4.0],
    ...                  noise=bj.noise.Gaussian(0.2))
    >>> idata = sample_smc(bj.JointInversion(latent=[x], modalities=[sq]), draws=500,
    ...                    chains=1, random_seed=2)
    >>> share_positive = float((idata.posterior["x"] > 0).mean())
    >>> bool(0.35 < share_positive < 0.65)  # two mirror-image modes of equal mass
    True
    """
    kernels = {"IMH": pm.smc.kernels.IMH, "MH": pm.smc.kernels.MH}
    if kernel not in kernels:
        raise ValueError(f"kernel must be 'IMH' or 'MH', got {kernel!r}")
    if draws < 10 or chains < 1:
        raise ValueError("sample_smc needs draws >= 10 and chains >= 1")
    _, seed = rng_and_seed(random_seed)
    model = _model_of(problem)
    idata_kwargs = _with_log_likelihood(kwargs)
    kwargs.setdefault("compute_convergence_checks", False)
    kwargs.update(safe_start_method(cores, kwargs, chains))
    with model, chains_running():
        idata = pm.sample_smc(
            draws=draws,
            kernel=kernels[kernel],
            chains=chains,
            cores=cores,
            random_seed=seed,
            progressbar=progressbar,
            threshold=threshold,
            correlation_threshold=correlation_threshold,
            idata_kwargs=idata_kwargs,
            **kwargs,
        )
    extra = {"sampler": f"SMC ({kernel})", "draws": draws, "chains": chains}
    return attach_provenance(idata, _provenance_for(problem, seed, extra))
