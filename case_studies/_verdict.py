"""Self-checks shared by the case studies: named boolean checks, a verdict and an exit status.

Every case study ends its figures with ``"checks"`` (name → bool) and ``"passed"`` (all of them
true). One of the checks is always that :func:`bayesjoint.diagnose` passes on convergence
(:func:`convergence`); the others are the study's own validation (draws against an exact
posterior or quadrature, the claim the study makes). ``python case_studies/NAME.py`` and
``bayesjoint run NAME`` exit non-zero when ``passed`` is false.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import bayesjoint as bj

#: The checks of :func:`bayesjoint.diagnose` that make up "convergence": split R-hat ≤ 1.01 and
#: bulk and tail ESS ≥ 400 for every posterior variable, and no divergent transition.
CONVERGENCE_CHECKS = ("convergence", "divergences")


def convergence(idata: Any, var_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Diagnose ``idata`` on convergence only; return its figures and whether it passed.

    Parameters
    ----------
    idata : arviz.InferenceData
        Posterior draws (any route: ``sample_stats`` may lack ``diverging``).
    var_names : sequence of str, optional
        Posterior variables to check (default: all of them).

    Returns
    -------
    dict
        ``passed`` (no failed :data:`CONVERGENCE_CHECKS` check of :func:`bayesjoint.diagnose`
        at its default thresholds), ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``,
        ``divergences`` (None when the sampler records none, e.g. the exact route) and
        ``failed`` (the messages of the failed checks).
    """
    result = bj.diagnose(idata, modality_checks=False, conflict=None, var_names=var_names)
    checks = result.checks
    failed = checks[checks["check"].isin(CONVERGENCE_CHECKS) & (checks["status"] == "fail")]
    table = result.table
    divergences = result.sampler.get("divergences")
    return {
        "passed": bool(failed.empty),
        "max_rhat": round(float(table["rhat_max"].max()), 4),
        "min_ess_bulk": round(float(table["ess_bulk_min"].min()), 1),
        "min_ess_tail": round(float(table["ess_tail_min"].min()), 1),
        "divergences": None if divergences is None else int(divergences),
        "failed": [str(m) for m in failed["message"]],
    }


def divergences(idata: Any) -> int | None:
    """Return the number of divergent transitions, or None when the route records none."""
    stats = idata.get("sample_stats")
    if stats is None or "diverging" not in stats:
        return None
    return int(stats["diverging"].sum())


def finish(figures: dict[str, Any], checks: Mapping[str, bool]) -> dict[str, Any]:
    """Store the named checks and their conjunction in ``figures`` (in place); return it."""
    figures["checks"] = {name: bool(value) for name, value in checks.items()}
    figures["passed"] = all(figures["checks"].values())
    return figures


def exit_status(figures: Mapping[str, Any]) -> int:
    """Return the script's exit status: 1 when ``figures["passed"]`` is false, else 0."""
    return 1 if figures.get("passed") is False else 0
