"""Labels of the elements of an array variable, as the package prints them everywhere."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def element_labels(name: str, shape: Sequence[int]) -> list[str]:
    """Return one label per element, in C (flattening) order: ``'x'``, ``'x[3]'``, ``'rho[2, 0]'``.

    Parameters
    ----------
    name : str
        The variable's name.
    shape : sequence of int
        Its shape; ``()`` is a scalar, labelled by the bare name.

    Examples
    --------
    >>> element_labels("t", ())
    ['t']
    >>> element_labels("rho", (2, 2))
    ['rho[0, 0]', 'rho[0, 1]', 'rho[1, 0]', 'rho[1, 1]']
    """
    shape = tuple(int(s) for s in shape)
    if not shape:
        return [name]
    return [f"{name}[{', '.join(str(i) for i in idx)}]" for idx in np.ndindex(*shape)]
