"""Self-checks shared by the case studies: named boolean checks, a verdict and an exit status.

Every case study ends its figures with ``"checks"`` (name → bool) and ``"passed"`` (all of them
true). One of the checks is always that :func:`bayesjoint.diagnose` passes on convergence
(:func:`convergence`); the others are the study's own validation (draws against an exact
posterior or quadrature, the claim the study makes). ``python case_studies/NAME.py`` and
``bayesjoint run NAME`` exit with status 3 when ``passed`` is false (1 is left to errors, 2 to
usage errors, as the ``bayesjoint`` command does).
"""

from __future__ import annotations

import json
import time
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


#: Exit status of a script whose checks failed: that of ``bayesjoint run`` (``cli.EXIT_CHECK``).
EXIT_CHECK = 3


def exit_status(figures: Mapping[str, Any]) -> int:
    """Return the script's exit status: 3 when ``figures["passed"]`` is false, else 0."""
    return EXIT_CHECK if figures.get("passed") is False else 0


def publish(
    figures: dict[str, Any],
    checks: Mapping[str, bool],
    idata: Any,
    case_study: str,
    out: str,
    start: float,
) -> dict[str, Any]:
    """End a case study: time it, add its checks, save its report, print its JSON line.

    In this order: ``figures["seconds"]`` (``time.perf_counter() - start``, s, rounded to 0.1),
    the checks and ``"passed"`` (:func:`finish`); the figures as JSON in the posterior attribute
    ``"figures"`` and ``case_study`` as an attribute of every group of ``idata``; the netCDF
    report written to ``out`` (:func:`bayesjoint.save`, its path in ``figures["report"]``); and
    the figures printed as one JSON line, the script's last line of output.

    Parameters
    ----------
    figures : dict
        The study's figures (changed in place).
    checks : mapping of str to bool
        The study's named checks.
    idata : arviz.InferenceData
        The run whose report is saved.
    case_study : str
        The study's name.
    out : str
        Path of the netCDF report.
    start : float
        ``time.perf_counter()`` at the start of the study.

    Returns
    -------
    dict
        ``figures``.
    """
    figures["seconds"] = round(time.perf_counter() - start, 1)
    finish(figures, checks)
    idata.posterior.attrs["figures"] = json.dumps(figures)
    for group in idata.groups():
        idata[group].attrs["case_study"] = case_study
    figures["report"] = bj.save(idata, out)
    print(json.dumps(figures))
    return figures
