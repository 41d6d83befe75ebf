"""Mode detection: do the chains of an InferenceData sit in different modes? Said in plain words."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import arviz as az
import numpy as np
import xarray as xr

from bayesjoint._labels import element_labels
from bayesjoint.diagnostics.labels import _var_names

__all__ = [
    "ChainGroup",
    "ModeDetection",
    "detect_modes",
]


# ---------------------------------------------------------------------------------------------
# detection
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChainGroup:
    """Chains that sit in the same mode.

    Attributes
    ----------
    chains : tuple of int
        Chain indices (positions along the ``chain`` dimension).
    means : dict of str to numpy.ndarray
        Mean of each variable over the group's draws.
    n_draws : int
    """

    chains: tuple[int, ...]
    means: dict[str, np.ndarray]
    n_draws: int


@dataclass(frozen=True)
class ModeDetection:
    """Outcome of :func:`detect_modes`.

    Attributes
    ----------
    multimodal : bool
        True when the chains sit in two or more separate modes.
    modes : list of ChainGroup
        Groups of chains, most chains first.
    message : str
        Plain-words verdict, listing the modes.
    separation : numpy.ndarray, shape (chains, chains)
        Largest standardized distance between the per-chain means (in pooled within-chain sds).
    threshold : float
    weighted : bool
        True when the chains carry ``chain_weight`` (from :func:`sample_from_modes`): separate
        modes are then expected, and the weights say how to combine them.
    """

    multimodal: bool
    modes: list[ChainGroup]
    message: str
    separation: np.ndarray
    threshold: float
    weighted: bool = False

    def __bool__(self) -> bool:
        return self.multimodal


def detect_modes(
    idata: az.InferenceData | xr.Dataset,
    var_names: Sequence[str] | None = None,
    threshold: float = 4.0,
) -> ModeDetection:
    """Tell whether the chains sit in different modes of the posterior.

    Parameters
    ----------
    idata : InferenceData or Dataset
        Its posterior (dims ``chain``, ``draw``, then the variables' own).
    var_names : sequence of str, optional
        Variables to compare; default every posterior variable.
    threshold : float, default 4.0
        Two chains are in different modes when, for some scalar element ``i``,
        ``|m_a,i − m_b,i| > threshold · √((s²_a,i + s²_b,i)/2)`` (per-chain means ``m``,
        within-chain sds ``s``). Chains sampling one mode have means within a few Monte-Carlo
        errors of each other — a small fraction of ``s`` — so 4 leaves a wide margin, while
        chains in valleys that do not overlap are many ``s`` apart.

    Returns
    -------
    ModeDetection
        ``multimodal``, ``modes`` (groups of chains and their means), ``message``.

    Notes
    -----
    Chains are grouped by single linkage: chains closer than ``threshold`` (in the metric above)
    are joined, and the connected groups are the modes. R-hat (Vehtari et al. 2021, Bayesian
    Analysis 16, 667–718) flags such chains too, but only says that they disagree; this check
    says that they sit in separate modes and lists them, so that they are not averaged into one
    summary. A chain that never moves has zero spread; it forms its own group unless another
    chain sits at exactly the same place.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from bayesjoint.diagnostics import detect_modes
    >>> rng = np.random.default_rng(0)
    >>> draws = rng.normal(0.0, 0.01, (4, 200)) + np.array([[0.40], [0.45], [0.40], [0.40]])
    >>> result = detect_modes(xr.Dataset({"t": (("chain", "draw"), draws)}))
    >>> result.multimodal, [g.chains for g in result.modes]
    (True, [(0, 2, 3), (1,)])
    """
    post = idata.posterior if isinstance(idata, az.InferenceData) else idata
    if not isinstance(post, xr.Dataset) or "chain" not in post.dims or "draw" not in post.dims:
        raise TypeError("detect_modes needs an InferenceData or a Dataset with chain and draw dims")
    if not (threshold > 0):
        raise ValueError("threshold must be positive (in within-chain standard deviations)")
    names = [n for n in _var_names(post, var_names) if {"chain", "draw"} <= set(post[n].dims)]
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    blocks, labels, shapes = _chain_blocks(post, names)
    weighted = "chain_weight" in post.coords
    if not blocks or n_chain < 2:
        message = (
            "Only one chain: cannot tell whether chains sit in different modes; run at least two "
            "chains from different starting points."
            if n_chain < 2
            else "No variables to compare."
        )
        group = ChainGroup(tuple(range(n_chain)), {}, n_chain * n_draw)
        return ModeDetection(False, [group], message, np.zeros((n_chain, n_chain)), threshold)
    values = np.concatenate(blocks, axis=2)
    means, var, separation = _chain_separation(values)
    ordered = _single_linkage(separation, threshold)
    modes = []
    for chains in ordered:
        gmeans = {}
        for name, block in zip(names, blocks, strict=True):
            gmeans[name] = block[chains].mean(axis=(0, 1)).reshape(shapes[name])
        modes.append(ChainGroup(tuple(chains), gmeans, len(chains) * n_draw))
    multimodal = len(modes) > 1
    message = _detection_message(
        modes, ordered, means, var, labels, separation, threshold, n_chain, weighted
    )
    return ModeDetection(multimodal, modes, message, separation, float(threshold), weighted)


def _chain_blocks(
    post: xr.Dataset, names: Sequence[str]
) -> tuple[list[np.ndarray], list[str], dict[str, tuple[int, ...]]]:
    """Return per variable its draws as (chain, draw, k), all element labels and the shapes."""
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    blocks, labels, shapes = [], [], {}
    for name in names:
        arr = post[name].transpose("chain", "draw", ...)
        shapes[name] = tuple(arr.shape[2:])
        blocks.append(np.asarray(arr.values, dtype=float).reshape(n_chain, n_draw, -1))
        labels.extend(element_labels(name, shapes[name]))
    return blocks, labels, shapes


def _chain_separation(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return per-chain means and variances of ``values`` (chain, draw, k) and the separation.

    ``separation[a, b]`` is the largest ``|m_a,i − m_b,i| / √((s²_a,i + s²_b,i)/2)`` over the
    elements ``i``; differences at round-off level count as zero.
    """
    n_draw = values.shape[1]
    means = values.mean(axis=1)
    var = values.var(axis=1, ddof=1) if n_draw > 1 else np.zeros_like(means)
    diff = np.abs(means[:, None, :] - means[None, :, :])
    pooled = np.sqrt(0.5 * (var[:, None, :] + var[None, :, :]))
    scale = np.maximum(np.abs(means).max(axis=0), 1.0)  # relative round-off floor
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(diff <= 1e-12 * scale, 0.0, diff / pooled)
    separation = np.nan_to_num(z.max(axis=2), nan=0.0, posinf=np.inf)
    return means, var, separation


def _single_linkage(separation: np.ndarray, threshold: float) -> list[list[int]]:
    """Return the groups of chains joined by separations ``<= threshold``, largest first."""
    n_chain = separation.shape[0]
    parent = list(range(n_chain))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a in range(n_chain):
        for b in range(a + 1, n_chain):
            if separation[a, b] <= threshold:
                parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for c in range(n_chain):
        groups.setdefault(root(c), []).append(c)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))


def _detection_message(
    modes, ordered, means, var, labels, separation, threshold, n_chain, weighted
):
    if len(modes) == 1:
        worst = float(np.max(separation)) if separation.size else 0.0
        return (
            f"All {n_chain} chains sit in one mode (per-chain means at most {worst:.2g} "
            f"within-chain standard deviations apart; threshold {threshold:g})."
        )
    group_means = np.array([means[g].mean(axis=0) for g in ordered])
    spread = np.sqrt(var.mean(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        contrast = np.nan_to_num(
            (group_means.max(axis=0) - group_means.min(axis=0)) / spread, nan=0.0, posinf=1e300
        )
    show = np.argsort(-contrast)[: min(3, len(labels))]
    between = [separation[a][:, b].min() for i, a in enumerate(ordered) for b in ordered[i + 1 :]]
    gap = float(np.min(between))
    parts = []
    for k, chains in enumerate(ordered, start=1):
        vals = ", ".join(f"{labels[i]} = {group_means[k - 1][i]:.4g}" for i in show)
        which = "chain" if len(chains) == 1 else "chains"
        parts.append(f"mode {k} ({which} {', '.join(map(str, chains))}): {vals}")
    head = (
        f"The {n_chain} chains sit in {len(modes)} separate modes of the posterior (per-chain "
        f"means at least {gap:.3g} within-chain standard deviations apart; threshold "
        f"{threshold:g}): " + "; ".join(parts) + "."
    )
    if weighted:
        return (
            head + " The chains were started in different modes on purpose and carry the modes' "
            "weights (coordinate 'chain_weight'); combine them with "
            "bj.inference.weighted_mean or weighted_draws, never by plain averaging."
        )
    return (
        head + " Each chain describes only the mode it sits in, so pooling them into one summary "
        "(mean, sd, intervals) would be wrong: the share of chains per mode reflects where they "
        "started, not the posterior mass. Locate and weigh the modes with "
        "bj.inference.find_modes and bj.inference.sample_from_modes, or sample with "
        "bj.inference.sample_smc."
    )
