"""The coupling protocol."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from bayesjoint.latent import LatentVariable

__all__ = ["Coupling", "GaussianFactor"]

#: A linear-Gaussian factor over latent variables: ``(operators, offset, sd)`` meaning
#: ``Σ_j A_j vec(m_j) − offset ~ N(0, diag(sd²))``, with ``operators`` mapping latent names to
#: dense or sparse matrices ``A_j``.
GaussianFactor = tuple[Mapping[str, Any], np.ndarray, np.ndarray]


class Coupling:
    """Base class of couplings: soft priors that tie latent variables together.

    Subclasses set :attr:`name` and :attr:`inputs` (the latent names they read) and implement
    :meth:`build`, which adds their terms (``pm.Potential`` or hyperprior variables) to the model
    on the context stack. :meth:`validate` runs when the :class:`~bayesjoint.JointInversion` is
    constructed, before anything is compiled. Couplings that are one more linear-Gaussian factor
    with fixed parameters implement :meth:`gaussian_factor`, so the exact path can use them.
    """

    name: str = "coupling"
    inputs: tuple[str, ...] = ()

    def validate(self, variables: Mapping[str, LatentVariable]) -> None:
        """Raise a ValueError/TypeError naming the coupling when it cannot couple ``variables``.

        The default checks that every input is a declared latent variable.
        """
        unknown = [n for n in self.inputs if n not in variables]
        if unknown:
            raise ValueError(
                f"coupling {self.name!r} reads unknown latent variable(s) {unknown}; the problem "
                f"declares {sorted(variables)}. Fix the name or add the variable"
            )

    def build(self, latent: Mapping[str, Any], variables: Mapping[str, LatentVariable]) -> None:
        """Add the coupling's terms to the current model.

        Parameters
        ----------
        latent : mapping of str to pytensor tensor
            The latent variables' tensors by name.
        variables : mapping of str to LatentVariable
            Their declarations (grids, shapes, units).
        """
        raise NotImplementedError

    def gaussian_factor(self, variables: Mapping[str, LatentVariable]) -> GaussianFactor | None:
        """Return the coupling as a linear-Gaussian factor, or None when it is not one."""
        return None

    def describe(self) -> str:
        """Return a one-line description (used in provenance)."""
        return repr(self)
