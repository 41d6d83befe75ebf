"""Text and HTML tables of a diagnosis, and JSON-safe values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

_VAR_COLUMNS = {
    "group": ("group", "{}"),
    "role": ("role", "{}"),
    "size": ("size", "{:d}"),
    "rhat_max": ("max R-hat", "{:.3f}"),
    "ess_bulk_min": ("min ESS bulk", "{:.0f}"),
    "ess_tail_min": ("min ESS tail", "{:.0f}"),
    "mcse_over_sd_max": ("max MCSE/sd", "{:.3f}"),
    "status": ("status", "{}"),
}


_MOD_COLUMNS = {
    "n_data": ("n_data", "{:d}"),
    "elpd_loo": ("elpd_loo", "{:.1f}"),
    "elpd_loo_se": ("se", "{:.1f}"),
    "p_loo": ("p_loo", "{:.1f}"),
    "pareto_k_max": ("max k", "{:.2f}"),
    "n_pareto_k_bad": ("k>limit", "{:d}"),
    "coverage90": ("cover90", "{:.0%}"),
    "rms_residual": ("rms z", "{:.2f}"),
    "status": ("status", "{}"),
}


_CONFLICT_COLUMNS = {
    "method": ("method", "{}"),
    "pareto_k": ("k", "{:.2f}"),
    "statistic": ("statistic", "{:.1f}"),
    "dof": ("dof", "{:.1f}"),
    "p_value": ("p", "{:.2g}"),
    "max_abs_shift_sd": ("max shift/sd", "{:.2f}"),
    "status": ("status", "{}"),
}


_CHECK_COLUMNS = {
    "scope": ("scope", "{}"),
    "status": ("status", "{}"),
    "message": ("message", "{}"),
}


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    try:
        if spec == "{:d}":
            return f"{int(value):d}"
        return spec.format(value)
    except (ValueError, TypeError):
        return str(value)


def _format_table(df: pd.DataFrame, columns: Mapping[str, tuple[str, str]]) -> str:
    cols = [c for c in columns if c in df.columns]
    header = [df.index.name or ""] + [columns[c][0] for c in cols]
    body = [
        [str(df.index[pos])] + [_fmt(df.iloc[pos][c], columns[c][1]) for c in cols]
        for pos in range(len(df))
    ]
    widths = [max(len(r[j]) for r in [header, *body]) for j in range(len(header))]
    out = []
    for r in [header, *body]:
        cells = [r[0].ljust(widths[0])] + [
            r[j].rjust(widths[j])
            if j < len(r) - 1 or not cols or cols[-1] != "status"
            else r[j].ljust(widths[j])
            for j in range(1, len(r))
        ]
        out.append("  " + "  ".join(cells).rstrip())
    return "\n".join(out)


def _html_table(df: pd.DataFrame, columns: Mapping[str, tuple[str, str]]) -> str:
    from html import escape

    cols = [c for c in columns if c in df.columns]
    head = "".join(f"<th>{escape(columns[c][0])}</th>" for c in cols)
    rows = []
    for pos in range(len(df)):
        row = df.iloc[pos]
        cells = []
        for c in cols:
            text = _fmt(row[c], columns[c][1])
            cls = "text" if columns[c][1] == "{}" else "num"
            if c == "status" and text.startswith(("fail", "conflict")):
                cls = "fail"
            elif c == "status" and text.startswith(("warn", "unreliable", "tension")):
                cls = "warn"
            cells.append(f"<td class='{cls}'>{escape(text)}</td>")
        rows.append(f"<tr><th>{escape(str(df.index[pos]))}</th>{''.join(cells)}</tr>")
    name = escape(df.index.name or "")
    return (
        f"<table><thead><tr><th>{name}</th>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
