"""Couplings between latent variables, entering the model as soft priors."""

from bayesjoint.coupling.base import Coupling

__all__ = ["Coupling"]
