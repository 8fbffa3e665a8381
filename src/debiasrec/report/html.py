"""Self-contained HTML report of a result folder (tables; no network needed to view it)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from debiasrec.errors import DataError
from debiasrec.report.tables import summary_table

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1rem 0;font-size:13px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
caption{text-align:left;font-weight:600;margin-bottom:.3rem}
pre{background:#f7f7f7;padding:1rem;overflow:auto;font-size:12px}
"""


def _table(df: pd.DataFrame, caption: str) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{body}</table>"


def write_report(folder: str | Path) -> Path:
    """Write ``folder/report.html`` from ``results.parquet``, ``summary.json`` and ``config.toml``."""
    folder = Path(folder)
    res_path = folder / "results.parquet"
    if not res_path.is_file():
        raise DataError(f"{folder} is not a result folder: results.parquet is missing")
    res = pd.read_parquet(res_path)
    summary = json.loads((folder / "summary.json").read_text()) if (
        folder / "summary.json").is_file() else {}
    config = (folder / "config.toml").read_text() if (folder / "config.toml").is_file() else ""
    parts = [f"<h1>debiasrec report: {html.escape(str(summary.get('name', folder.name)))}</h1>"]
    ds = summary.get("dataset") or {}
    if ds:
        parts.append(
            f"<p>Dataset <b>{html.escape(str(ds.get('name')))}</b>: {ds.get('n_users')} users, "
            f"{ds.get('n_items')} items, {ds.get('n_interactions')} interactions "
            f"(fingerprint {ds.get('fingerprint')}); seeds {summary.get('seeds')}, split seed "
            f"{summary.get('split_seed')}. Full ranking, training and validation items masked; "
            "95% bootstrap CIs over users.</p>"
        )
    tab = summary_table(res)
    parts.append(_table(tab, "Accuracy overall and per group, group gaps, item exposure"))
    gaps = res[res.metric.str.startswith(("gap_", "ratio_"))]
    if len(gaps):
        parts.append(_table(gaps.round(4), "Group gaps (max-min) and ratios (min/max)"))
    exp = res[res.group.str.startswith("item_pop=")]
    if len(exp):
        parts.append(_table(exp.drop(columns=["ci_low", "ci_high", "n"]).round(4),
                            "Item exposure by popularity tier vs share of training interactions"))
    if summary.get("purification"):
        parts.append("<h2>Purification</h2><pre>" + html.escape(
            json.dumps(summary["purification"], indent=2)) + "</pre>")
    parts.append("<h2>Resolved config</h2><pre>" + html.escape(config) + "</pre>")
    parts.append("<h2>Environment</h2><pre>" + html.escape(json.dumps(
        {k: summary.get(k) for k in ("versions", "git_commit", "timings_s")}, indent=2)) + "</pre>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>debiasrec report</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>")
    path = folder / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
