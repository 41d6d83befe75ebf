"""The coupling protocol."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["Coupling"]


class Coupling:
    """Base class of couplings: soft priors that tie latent variables together.

    Subclasses set :attr:`name` and :attr:`inputs` (the latent names they read) and implement
    :meth:`build`, which adds their terms (``pm.Potential`` or hyperprior variables) to the model
    on the context stack.
    """

    name: str = "coupling"
    inputs: tuple[str, ...] = ()

    def build(self, latent: Mapping[str, Any]) -> None:
        """Add the coupling's terms to the current model."""
        raise NotImplementedError

    def describe(self) -> str:
        """Return a one-line description (used in provenance)."""
        return repr(self)
