"""The verdict: :func:`diagnose` gathers convergence, per-modality checks, conflict and modes."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bayesjoint._random import run_seed
from bayesjoint.diagnostics.checks import _modality_section
from bayesjoint.diagnostics.conflict import ConflictResult, modality_conflict
from bayesjoint.diagnostics.convergence import (
    Thresholds,
    _check,
    _convergence_message,
    _sampler_stats,
    convergence_table,
)
from bayesjoint.diagnostics.labels import _load_if_path, latent_info, modality_names
from bayesjoint.diagnostics.modes import detect_modes
from bayesjoint.diagnostics.progress import _Progress
from bayesjoint.diagnostics.tables import (
    _CHECK_COLUMNS,
    _CONFLICT_COLUMNS,
    _MOD_COLUMNS,
    _VAR_COLUMNS,
    _format_table,
    _html_table,
    _jsonable,
)

__all__ = [
    "Diagnosis",
    "diagnose",
]


# -- the verdict -----------------------------------------------------------------------------
@dataclass
class Diagnosis:
    """Outcome of :func:`diagnose`.

    Attributes
    ----------
    verdict : str
        ``"pass"``, ``"warn"`` (usable, with caveats) or ``"fail"``.
    reasons : list of str
        Why, failures first.
    checks : pandas.DataFrame
        Every check: ``check``, ``scope``, ``status`` (ok/warn/fail/n/a), ``value``,
        ``threshold``, ``message``.
    table : pandas.DataFrame
        Convergence per posterior variable, grouped by latent variable
        (:func:`convergence_table`).
    elements : pandas.DataFrame
        Convergence per element.
    modalities : pandas.DataFrame
        Per modality: ``n_data``, ``elpd_loo``, ``elpd_loo_se``, ``p_loo``, ``pareto_k_max``,
        ``n_pareto_k_bad``, ``coverage90``, ``rms_residual``, ``max_abs_residual``, ``status``.
    loo : dict of str to arviz.ELPDData
    predictive : dict of str to dict
        :func:`posterior_predictive_checks` output (empty when no posterior predictive).
    conflict : ConflictResult or None
    sampler : dict
        Chains, draws, divergences, E-BFMI per chain, tree-depth fraction.
    thresholds : Thresholds
    notes : list of str
        What could not be checked, and why.
    """

    verdict: str
    reasons: list[str]
    checks: pd.DataFrame
    table: pd.DataFrame
    elements: pd.DataFrame
    modalities: pd.DataFrame
    loo: dict[str, Any] = field(default_factory=dict)
    predictive: dict[str, dict] = field(default_factory=dict)
    conflict: ConflictResult | None = None
    sampler: dict[str, Any] = field(default_factory=dict)
    thresholds: Thresholds = field(default_factory=Thresholds)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True unless the verdict is ``"fail"``."""
        return self.verdict != "fail"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serializable summary (verdict, reasons, tables as records)."""

        def records(df: pd.DataFrame) -> list[dict]:
            if df is None or not len(df):
                return []
            out = df.reset_index().to_dict(orient="records")
            return [{k: _jsonable(v) for k, v in r.items()} for r in out]

        return {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "sampler": {k: _jsonable(v) for k, v in self.sampler.items()},
            "thresholds": dataclasses.asdict(self.thresholds),
            "checks": records(self.checks),
            "variables": records(self.table),
            "modalities": records(self.modalities),
            "conflict": None
            if self.conflict is None
            else {
                "conflicting": self.conflict.conflicting,
                "message": self.conflict.message,
                "table": records(self.conflict.table),
            },
        }

    def __str__(self) -> str:
        return self.to_text()

    def to_text(self) -> str:
        """Return the human-readable report printed by ``bayesjoint diagnose``."""
        thr = self.thresholds
        lines = [f"verdict: {self.verdict.upper()}"]
        lines += [f"  - {r}" for r in self.reasons] or ["  - every check passed"]
        s = self.sampler
        lines.append("")
        lines.append(
            f"convergence (Vehtari et al. 2021: split R-hat <= {thr.rhat:g}, bulk and tail ESS "
            f">= {thr.ess_bulk:g}/{thr.ess_tail:g}); {s.get('chains', '?')} chains x "
            f"{s.get('draws', '?')} draws"
        )
        lines.append(_format_table(self.table, _VAR_COLUMNS))
        sampler_bits = []
        if "divergences" in s:
            sampler_bits.append(f"divergences {s['divergences']}")
        if "ebfmi" in s:
            sampler_bits.append(f"E-BFMI min {min(s['ebfmi']):.2f} (>= {thr.ebfmi:g})")
        if "treedepth_fraction" in s:
            sampler_bits.append(f"max tree depth reached in {s['treedepth_fraction']:.1%} of draws")
        if sampler_bits:
            lines.append("sampler: " + " | ".join(sampler_bits))
        if len(self.modalities):
            lines.append("")
            lines.append(
                "modalities (PSIS-LOO per modality; 90 % posterior-predictive coverage; "
                "standardized residuals)"
            )
            lines.append(_format_table(self.modalities, _MOD_COLUMNS))
        if self.conflict is not None:
            lines.append("")
            lines.append("conflict between modalities (each left out in turn)")
            if len(self.conflict.table):
                lines.append(_format_table(self.conflict.table, _CONFLICT_COLUMNS))
            lines.append(f"  {self.conflict.message}")
        if self.notes:
            lines.append("")
            lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_html(self) -> str:
        """Return an HTML fragment with the verdict and the tables (used by the HTML report)."""
        from html import escape

        cls = {"pass": "ok", "warn": "warn", "fail": "fail"}[self.verdict]
        parts = [f'<p class="verdict {cls}">verdict: {self.verdict.upper()}</p>', "<ul>"]
        parts += [f"<li>{escape(r)}</li>" for r in self.reasons] or ["<li>every check passed</li>"]
        parts.append("</ul>")
        parts.append("<h3>Convergence by variable</h3>")
        parts.append(_html_table(self.table, _VAR_COLUMNS))
        parts.append("<h3>Checks</h3>")
        parts.append(_html_table(self.checks.set_index("check"), _CHECK_COLUMNS))
        if len(self.modalities):
            parts.append("<h3>Modalities</h3>")
            parts.append(_html_table(self.modalities, _MOD_COLUMNS))
        if self.conflict is not None:
            parts.append("<h3>Conflict between modalities</h3>")
            if len(self.conflict.table):
                parts.append(_html_table(self.conflict.table, _CONFLICT_COLUMNS))
            parts.append(f"<p>{escape(self.conflict.message)}</p>")
        if self.notes:
            parts.append("<ul class='notes'>")
            parts += [f"<li>note: {escape(n)}</li>" for n in self.notes]
            parts.append("</ul>")
        return "\n".join(parts)

    def _repr_html_(self) -> str:  # pragma: no cover - notebooks
        return self.to_html()


def _multimodality(idata: Any, var_names: Sequence[str] | None) -> dict:
    try:
        result = detect_modes(idata, var_names=var_names)
    except Exception as err:  # a failing detector must not hide the other checks
        return _check("modes", "run", "warn", None, None, f"mode detection failed: {err}")
    multimodal = bool(getattr(result, "multimodal", False))
    message = str(getattr(result, "message", "")) or (
        "chains are in different modes" if multimodal else "chains agree on one mode"
    )
    return _check(
        "modes",
        "run",
        "fail" if multimodal else "ok",
        len(getattr(result, "modes", []) or []),
        None,
        message,
    )


def diagnose(
    idata: Any,
    problem: Any = None,
    *,
    thresholds: Thresholds | None = None,
    var_names: Sequence[str] | None = None,
    modality_checks: bool = True,
    conflict: str | None = "auto",
    progressbar: bool = False,
    random_seed: int | None = None,
    **overrides: Any,
) -> Diagnosis:
    """Diagnose a run: convergence, sampler health, each modality's fit, conflicts.

    Parameters
    ----------
    idata : arviz.InferenceData or path
        Results of :meth:`JointInversion.sample`, or a report saved by :func:`bayesjoint.save`.
    problem : JointInversion, optional
        The problem that produced ``idata``. With it, missing posterior-predictive draws are
        simulated, the conflict check is exact for linear-Gaussian problems, and modalities whose
        leave-out weights are unreliable are refitted.
    thresholds : Thresholds, optional
        Limits (see :class:`Thresholds`); keyword ``overrides`` such as ``rhat=1.05`` or
        ``ess_bulk=100`` replace single fields.
    var_names : sequence of str, optional
        Posterior variables for the convergence table (default all).
    modality_checks : bool, default True
        Run PSIS-LOO and posterior-predictive checks per modality.
    conflict : {"auto", "exact", "importance", "refit"} or None
        Conflict-check method (see :func:`modality_conflict`); None skips it.
    progressbar : bool, default False
        Show a progress bar (stderr) over the checks and refits.
    random_seed : int, optional
        Seeds posterior-predictive simulation and refits (default: the run's own seed).
    **overrides
        Fields of :class:`Thresholds`.

    Returns
    -------
    Diagnosis
        ``verdict`` is ``"fail"`` when any R-hat, ESS, divergence, E-BFMI, mode or conflict check
        fails; ``"warn"`` for tree-depth saturation, large Pareto k, low predictive coverage or
        large residuals; ``"pass"`` otherwise. ``str(diagnosis)`` is a readable report.

    Notes
    -----
    The convergence limits follow Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021),
    *Rank-normalization, folding, and localization: an improved R-hat for assessing convergence
    of MCMC*, Bayesian Analysis 16(2), 667–718: split R-hat ≤ 1.01 and bulk and tail ESS ≥ 400
    (100 per chain for 4 chains); E-BFMI ≥ 0.3 and no divergences follow Betancourt (2016, 2017).
    Per-modality checks: see :func:`loo_per_modality`, :func:`posterior_predictive_checks`;
    conflicts: :func:`modality_conflict`.

    Examples
    --------
    >>> import arviz as az, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> good = az.from_dict(posterior={"x": rng.normal(size=(4, 500))})
    >>> diagnose(good).verdict
    'pass'
    >>> stuck = az.from_dict(posterior={"x": rng.normal(size=(4, 500)) + np.arange(4)[:, None]})
    >>> result = diagnose(stuck)
    >>> result.verdict, result.reasons[0].split(":")[0]
    ('fail', 'x')
    """
    thr = _thresholds(thresholds, overrides)
    idata = _load_if_path(idata)
    if "posterior" not in idata.groups():
        raise ValueError("the InferenceData has no posterior group; nothing to diagnose")
    names = modality_names(idata, problem)
    has_ll = "log_likelihood" in idata.groups()
    steps = 2 + (len(names) + 1 if modality_checks and has_ll else 0) + (1 if conflict else 0)
    bar = _Progress(progressbar, steps, "diagnose")
    notes: list[str] = []
    checks: list[dict] = []
    idata, run_check = _cut_short(idata)
    if run_check is not None:
        checks.append(run_check)
    try:
        bar.step("convergence")
        table, elements = convergence_table(idata, var_names, thr)
        checks += _convergence_checks(table, thr)
        bar.step("sampler")
        sampler, sampler_checks = _sampler_stats(idata, thr)
        checks += sampler_checks
        checks.append(
            _multimodality(idata, [n for n in latent_info(idata) if n in idata.posterior] or None)
        )
        modalities, loo, predictive = pd.DataFrame(), {}, {}
        if modality_checks:
            modalities, loo, predictive = _modality_checks(
                idata, problem, names, thr, checks, notes, bar, random_seed
            )
        conflict_result = None
        if conflict and len(names) >= 2:
            bar.step("conflict between modalities")
            conflict_result = _conflict_section(
                idata, problem, conflict, thr, checks, notes, progressbar, random_seed
            )
    finally:
        bar.close()
    verdict, reasons = _verdict(checks)
    return Diagnosis(
        verdict=verdict,
        reasons=reasons,
        checks=pd.DataFrame(
            checks, columns=["check", "scope", "status", "value", "threshold", "message"]
        ),
        table=table,
        elements=elements,
        modalities=modalities,
        loo=loo,
        predictive=predictive,
        conflict=conflict_result,
        sampler=sampler,
        thresholds=thr,
        notes=notes,
    )


def _cut_short(idata: Any) -> tuple[Any, dict[str, Any] | None]:
    """Return the part of a cut-short run the checks use, and the ``run`` check saying so.

    A run stopped by a signal, or a checkpoint read before its run ended, records
    ``complete = 0`` and the draws kept per chain in its provenance
    (:func:`bayesjoint.inference.checkpoint.kept_draws`); its chains are cut to a common length
    (:func:`bayesjoint.inference.checkpoint.complete_part`) and the check warns.
    """
    from bayesjoint.inference.checkpoint import complete_part, kept_draws

    info = kept_draws(idata)
    if info["complete"]:
        return idata, None
    part, note = complete_part(idata)
    why = f"interrupted by {info['interrupted']}" if info["interrupted"] else "not finished"
    message = (
        f"run cut short ({why}): kept {info['draws_per_chain']} of {info['draws']} draws per "
        f"chain; the checks use {note or 'every kept draw'}"
    )
    check = {
        "check": "run complete",
        "scope": "run",
        "status": "warn",
        "value": sum(info["draws_per_chain"]),
        "threshold": info["draws"] * len(info["draws_per_chain"]),
        "message": message,
    }
    return part, check


def _verdict(checks: list[dict]) -> tuple[str, list[str]]:
    """Return the verdict (any failure fails, else any warning warns) and its reasons."""
    fails = [c["message"] for c in checks if c["status"] == "fail"]
    warns = [c["message"] for c in checks if c["status"] == "warn"]
    return ("fail" if fails else "warn" if warns else "pass"), fails + warns


def _thresholds(thresholds: Thresholds | None, overrides: dict[str, Any]) -> Thresholds:
    """Return ``thresholds`` (default :class:`Thresholds`) with single fields replaced."""
    thr = thresholds or Thresholds()
    if not overrides:
        return thr
    fields = [f.name for f in dataclasses.fields(Thresholds)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise TypeError(f"diagnose got unknown keyword(s) {unknown}; thresholds are {fields}")
    return dataclasses.replace(thr, **overrides)


def _convergence_checks(table: pd.DataFrame, thr: Thresholds) -> list[dict]:
    """Return one failed check per variable that did not converge, or one passed check."""
    limits = f"R-hat <= {thr.rhat:g}, ESS >= {thr.ess_bulk:g}"
    checks = [
        _check(
            "convergence",
            str(var),
            "fail",
            row["rhat_max"],
            limits,
            _convergence_message(str(var), row, thr),
        )
        for var, row in table.iterrows()
        if row["status"] != "ok"
    ]
    if checks:
        return checks
    return [
        _check(
            "convergence",
            "all variables",
            "ok",
            float(table["rhat_max"].max()),
            limits,
            f"max R-hat {table['rhat_max'].max():.3f}, min ESS bulk "
            f"{table['ess_bulk_min'].min():.0f}, tail {table['ess_tail_min'].min():.0f}",
        )
    ]


def _modality_checks(
    idata: Any,
    problem: Any,
    names: list[str],
    thr: Thresholds,
    checks: list[dict],
    notes: list[str],
    bar: _Progress,
    random_seed: int | None,
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, dict]]:
    """Run the per-modality checks, or note that there are no modalities to check."""
    if names:
        return _modality_section(idata, problem, names, thr, checks, notes, bar, random_seed)
    notes.append("no modalities found (no log_likelihood or provenance)")
    return pd.DataFrame(), {}, {}


def _conflict_section(
    idata: Any,
    problem: Any,
    method: str,
    thr: Thresholds,
    checks: list[dict],
    notes: list[str],
    progressbar: bool,
    random_seed: int | None,
) -> ConflictResult | None:
    """Run the conflict test; append its check, or a note when it cannot run."""
    try:
        result = modality_conflict(
            idata,
            problem,
            method=method,
            alpha=thr.conflict_alpha,
            pareto_k=thr.pareto_k,
            progressbar=progressbar,
            random_seed=run_seed(idata, random_seed),
        )
    except ValueError as err:
        notes.append(f"conflict check not run: {err}")
        return None
    if result is not None:
        checks.append(_conflict_check(result, thr))
    return result


def _conflict_check(result: ConflictResult, thr: Thresholds) -> dict[str, Any]:
    """Return the check of a conflict test: fail when a modality is flagged, n/a if none ran."""
    flagged = result.conflicting or (", ".join(result.tension) if result.tension else None)
    tested = len(result.table) and result.table["status"].isin(["ok", "conflict"]).any()
    return _check(
        "conflict",
        flagged or "modalities",
        "fail" if flagged else "ok" if tested else "n/a",
        None if flagged is None else float(result.table["p_value"].min()),
        f"p >= {thr.conflict_alpha:g}/K",
        result.message,
    )
