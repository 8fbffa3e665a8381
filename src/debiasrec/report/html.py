"""Self-contained HTML report of a result folder: tables and inline-SVG plots, no network needed.

Sections: summary table per method (accuracy, group gaps, leakage, calibration, exposure, with
CIs and paired-test marks); fairness-accuracy Pareto frontiers; per-group accuracy with CIs; item
exposure (Lorenz curves, popularity tiers); calibration of sample users (history vs recommended
genre mix); the LLM counterfactual audit heatmap when the run has counterfactual metrics;
transparency (each recommendation of sample users with the history items behind it, and what each
debiasing method changed); paired tests; self-calibration; all group metrics; the resolved config
and the environment. A Markdown summary is written beside it (``report.md``).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

from debiasrec.report import svg
from debiasrec.report.data import ReportData, load_report_data
from debiasrec.report.tables import method_table, metrics_table

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1280px;color:#222;padding:0 1rem}
h1{font-size:1.6rem} h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:1rem 0;font-size:12px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
td.l,th.l{text-align:left}
caption{text-align:left;font-weight:600;margin-bottom:.3rem}
pre{background:#f7f7f7;padding:1rem;overflow:auto;font-size:12px}
.plots{display:flex;flex-wrap:wrap;gap:1.2rem;align-items:flex-start}
figure{margin:0} figcaption{font-size:12px;color:#555;max-width:520px}
.note{color:#555;font-size:13px} .added{color:#1a7f37;font-weight:600}
.removed{color:#b42318;text-decoration:line-through} .scroll{overflow-x:auto}
details{margin:.4rem 0} summary{cursor:pointer;font-weight:600}
nav a{margin-right:.8rem;font-size:13px}
"""

_SECTIONS = [
    ("summary", "Summary"),
    ("frontier", "Fairness-accuracy frontiers"),
    ("groups", "Per-group accuracy"),
    ("exposure", "Item exposure"),
    ("calibration", "Calibration"),
    ("llm-audit", "LLM counterfactual audit"),
    ("transparency", "Transparency"),
    ("tests", "Paired tests"),
    ("metrics", "Every metric"),
    ("details", "All group metrics"),
    ("config", "Config and environment"),
]


def _e(text: object) -> str:
    return html.escape(str(text))


def _table(df: pd.DataFrame, caption: str = "", *, cls: str = "") -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>"
        for row in df.itertuples(index=False)
    )
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return f'<div class="scroll"><table class="{cls}">{cap}<tr>{head}</tr>{body}</table></div>'


def _bar_series(
    method: str, s: pd.DataFrame, groups: list[str]
) -> tuple[str, list[float], list[float], list[float]]:
    """(method, means, CI lows, CI highs) over ``groups`` from a frame indexed by group."""
    cols = [[float(s[c].get(g, np.nan)) for g in groups] for c in ("mean", "ci_low", "ci_high")]
    return method, cols[0], cols[1], cols[2]


def _figure(svg_text: str, caption: str) -> str:
    return f"<figure>{svg_text}<figcaption>{_e(caption)}</figcaption></figure>"


def _section(sid: str, title: str, content: str) -> str:
    return f'<section id="{sid}"><h2>{_e(title)}</h2>{content}</section>'


# ------------------------------------------------------------------------------------ sections
def _summary(d: ReportData) -> str:
    tab = method_table(d.aggregate, k=d.k, methods=d.methods, info=d.info, tests=d.tests)
    ds = d.summary.get("dataset") or {}
    intro = ""
    if ds:
        intro = (
            f"<p>Dataset <b>{_e(ds.get('name'))}</b>: {ds.get('n_users')} users, "
            f"{ds.get('n_items')} items, {ds.get('n_interactions')} interactions (fingerprint "
            f"{_e(ds.get('fingerprint'))}); sensitive attributes {_e(ds.get('sensitive'))}; "
            f"seeds {_e(d.summary.get('seeds'))}, split seed {_e(d.summary.get('split_seed'))}. "
            "Full ranking with training and validation items masked.</p>"
        )
    legend = (
        '<p class="note">Cells: mean over seeds [95% CI] (t-interval over seeds; with one seed '
        "the bootstrap CI over users). ▲*/▼*: a per-user paired test against the method's base "
        "model is significant (p &lt; 0.05) in every seed, in the direction shown (for gaps, a "
        "lower gap is ▼). Leakage: AUC of a fresh logistic probe predicting the attribute from "
        "the top-K lists (recs) or from the user embeddings (emb); 0.5 = no leakage. "
        "Miscalibration: Steck's C_KL between history and list genre mix. Gini: concentration "
        "of item exposure. APLT: share of long-tail items in the lists.</p>"
    )
    return intro + _table(tab, f"Methods at K={d.k}") + legend


def _frontier(d: ReportData) -> str:
    if d.frontier.empty:
        return '<p class="note">No fairness metric to trade off against accuracy.</p>'
    figs = []
    for (metric, group), sub in d.frontier.groupby(["fairness_metric", "group"], sort=False):
        pts = [
            (str(r.method), float(r.fairness), float(r.accuracy), bool(r.on_frontier))
            for r in sub.itertuples(index=False)
        ]
        axis = metric if group == "all" else f"{metric} ({group})"
        order = {m: i for i, m in enumerate(d.methods)}
        colors = [svg.color(order.get(p[0], i)) for i, p in enumerate(pts)]
        figs.append(
            _figure(
                svg.scatter_frontier(
                    pts,
                    title=f"ndcg@{d.k} vs {axis}",
                    xlabel=axis,
                    ylabel=f"ndcg@{d.k}",
                    colors=colors,
                ),
                f"Accuracy vs {axis} (lower is fairer). Filled points joined by the dashed line "
                "are Pareto-optimal: no other method is both more accurate and fairer.",
            )
        )
    return f'<div class="plots">{"".join(figs)}</div>'


def _groups(d: ReportData) -> str:
    agg = d.aggregate
    metric = f"ndcg@{d.k}"
    sub = agg[agg.metric == metric]
    attrs = sorted({g.split("=", 1)[0] for g in sub.group if "=" in g and "&" not in g})
    figs = []
    for attr in attrs:
        groups = [g for g in dict.fromkeys(sub.group) if g.startswith(f"{attr}=")]
        series = []
        for m in d.methods:
            s = sub[sub.method == m].set_index("group")
            if s.empty:
                continue
            series.append(_bar_series(m, s, groups))
        labels = [g.split("=", 1)[1] for g in groups]
        figs.append(
            _figure(
                svg.bars_ci(labels, series, title=f"{metric} by {attr}", ylabel=metric),
                f"{metric} per {attr} group, one bar per method, with 95% CIs.",
            )
        )
    if not figs:
        return '<p class="note">No per-group accuracy in this run.</p>'
    return f'<div class="plots">{"".join(figs)}</div>'


def _exposure(d: ReportData) -> str:
    n_items = int((d.summary.get("dataset") or {}).get("n_items") or 0)
    parts = []
    if d.recs:
        lorenz = []
        for m in d.methods:
            r = d.recs.get(m)
            if r is None or r.empty:
                continue
            if "seed" in r.columns:
                r = r[r.seed == r.seed.min()]
            r = r[r["rank"] <= d.k]
            counts = r["item_id"].astype(str).value_counts().to_numpy()
            n = max(n_items, len(counts))
            full = np.concatenate([counts, np.zeros(n - len(counts))])
            x, y = svg.lorenz(full)
            lorenz.append((m, x.tolist(), y.tolist()))
        if lorenz:
            parts.append(
                _figure(
                    svg.lines(
                        lorenz,
                        title="Lorenz curves of item exposure",
                        xlabel="share of items (least exposed first)",
                        ylabel="share of exposure",
                        diagonal=True,
                    ),
                    f"Lorenz curves of how often each catalog item appears in the top-{d.k} lists "
                    "(first seed). The diagonal is equal exposure; the further below it, the more "
                    "exposure is concentrated on few items.",
                )
            )
    agg = d.aggregate
    tiers = agg[(agg.metric == f"exposure_share@{d.k}") & agg.group.str.startswith("item_pop=")]
    if len(tiers):
        groups = list(dict.fromkeys(tiers.group))
        share = agg[(agg.metric == "interaction_share") & agg.group.isin(groups)]
        series: list[tuple[str, list[float], list[float], list[float]]] = []
        if len(share):
            ref = share.groupby("group")["mean"].mean()
            series.append(
                (
                    "training interactions",
                    [float(ref.get(g, np.nan)) for g in groups],
                    [np.nan] * len(groups),
                    [np.nan] * len(groups),
                )
            )
        for m in d.methods:
            s = tiers[tiers.method == m].set_index("group")
            if s.empty:
                continue
            series.append(_bar_series(m, s, groups))
        labels = [g.split("=", 1)[1] for g in groups]
        parts.append(
            _figure(
                svg.bars_ci(
                    labels,
                    series,
                    title="Exposure by item popularity tier",
                    ylabel=f"exposure share@{d.k}",
                ),
                "Share of recommendation slots going to head / mid / tail items, next to their "
                "share of training interactions (CIs over seeds when there are several).",
            )
        )
    if not parts:
        return '<p class="note">No recommendation lists in this result folder.</p>'
    return f'<div class="plots">{"".join(parts)}</div>'


def _calibration(d: ReportData) -> str:
    cal = d.calibration
    if cal is None or cal.empty:
        return (
            '<p class="note">No calibration sample (the items have no genres, or the '
            "folder was not written by debiasrec run).</p>"
        )
    users = list(dict.fromkeys(cal.user_id))[:3]
    methods = _calibration_methods(d, list(dict.fromkeys(cal.method)))
    figs = []
    for u in users:
        sub = cal[cal.user_id == u]
        cats = sub.groupby("category")["history"].max().sort_values(ascending=False)
        cats = cats.index[:10].tolist()
        hist = sub.groupby("category")["history"].max()
        series = [
            (
                "history",
                [float(hist.get(c, 0.0)) for c in cats],
                [np.nan] * len(cats),
                [np.nan] * len(cats),
            )
        ]
        for m in methods:
            s = sub[sub.method == m].set_index("category")["recommended"]
            series.append(
                (
                    m,
                    [float(s.get(c, 0.0)) for c in cats],
                    [np.nan] * len(cats),
                    [np.nan] * len(cats),
                )
            )
        figs.append(
            _figure(
                svg.bars_ci(cats, series, title=f"Genre mix of user {u}", ylabel="share"),
                f"User {u}: genre distribution of the training history and of the top-{d.k} list "
                "of each method (10 largest history genres).",
            )
        )
    return f'<div class="plots">{"".join(figs)}</div>'


def _calibration_methods(d: ReportData, available: list[str]) -> list[str]:
    """The first base model and the methods that post-process with calibration (at most 4)."""
    info = d.info
    chosen: list[str] = []
    for m in available:
        post = (info.get(m) or {}).get("post") or {}
        if post.get("method") == "calibrated":
            base = info[m].get("base")
            if base in available and base not in chosen:
                chosen.append(base)
            chosen.append(m)
    for m in available:
        if len(chosen) >= 4:
            break
        if m not in chosen:
            chosen.append(m)
    return chosen[:4]


def _llm(d: ReportData) -> str:
    cf = d.counterfactual()
    if cf.empty:
        return '<p class="note">No LLM audit in this run.</p>'
    cf = cf[cf.group.str.contains("=")]
    figs = []
    for m in dict.fromkeys(cf.method):
        sub = cf[cf.method == m].groupby(["group", "metric"])["value"].mean().unstack()
        figs.append(
            _figure(
                svg.heatmap(
                    list(sub.index),
                    list(sub.columns),
                    sub.to_numpy(),
                    title=f"Counterfactual metrics of {m}",
                ),
                f"{m}: counterfactual similarity of recommendations when the sensitive attribute in "
                "the prompt is changed (rows: attribute value, columns: metric; mean over seeds).",
            )
        )
    return f'<div class="plots">{"".join(figs)}</div>'


def _transparency(d: ReportData) -> str:
    ex = d.explanations
    if ex is None or ex.empty:
        return '<p class="note">No explanations in this result folder.</p>'
    src = ", ".join(sorted(ex.source.dropna().unique()))
    parts = [
        '<p class="note">For sample test users: each recommended item with the three training '
        f"items most similar to it (similarity from: {_e(src)}); items a debiasing method "
        '<span class="added">added</span> to or <span class="removed">removed</span> from its '
        "base model's list are marked.</p>"
    ]
    for u in dict.fromkeys(ex.user_id):
        sub = ex[ex.user_id == u]
        blocks = []
        for m in dict.fromkeys(sub.method):
            s = sub[sub.method == m]
            base = str(s.base.iloc[0])
            kept = s[s.status != "removed"].sort_values("rank")
            removed = s[s.status == "removed"]
            rows = "".join(
                f'<tr><td>{int(r.rank)}</td><td class="l{" added" if r.status == "added" else ""}">'
                f'{_e(r.title)}</td><td class="l">{_e(r.because)}</td>'
                f"<td>{r.similarity:.3f}</td></tr>"
                for r in kept.itertuples(index=False)
            )
            change = ""
            if base != m:
                n_add = int((kept.status == "added").sum())
                gone = ", ".join(_e(t) for t in removed.title)
                change = (
                    f'<p class="note">vs {_e(base)}: {n_add} added'
                    + (f'; removed: <span class="removed">{gone}</span>' if gone else "")
                    + "</p>"
                )
            blocks.append(
                f"<details><summary>{_e(m)}</summary>{change}<table><tr><th>rank</th>"
                '<th class="l">recommended</th><th class="l">because you interacted with</th>'
                f"<th>similarity</th></tr>{rows}</table></details>"
            )
        parts.append(f"<h3>User {_e(u)}</h3>{''.join(blocks)}")
    return "".join(parts)


def _tests(d: ReportData) -> str:
    parts = []
    if d.tests is not None and not d.tests.empty:
        t = d.tests.copy()
        for c in ("estimate", "ci_low", "ci_high"):
            t[c] = t[c].map(lambda v: f"{v:+.4f}")
        t["p_value"] = t["p_value"].map(lambda v: f"{v:.4f}")
        parts.append(
            _table(
                t,
                "Paired tests against the base model (mean: per-user difference "
                "of the metric, sign-flip permutation p; gap: difference of the "
                "group gap, paired stratified bootstrap p)",
            )
        )
    else:
        parts.append('<p class="note">No paired tests (no debiasing method in this run).</p>')
    cal_rows = []
    for m, meta in d.info.items():
        for seed, s in (meta.get("self_calibration") or {}).items():
            cal_rows.append(
                {
                    "method": m,
                    "seed": seed,
                    "target": s.get("target"),
                    "strength": f"{s.get('strength', float('nan')):.3f}",
                    "met on validation": s.get("met"),
                    "valid target (base -> chosen)": f"{s.get('valid_base_target', float('nan')):.4f} -> "
                    f"{s.get('valid_target', float('nan')):.4f}",
                    "valid ndcg (base -> chosen)": f"{s.get('valid_base_ndcg', float('nan')):.4f} -> "
                    f"{s.get('valid_ndcg', float('nan')):.4f}",
                }
            )
    if cal_rows:
        parts.append(
            _table(pd.DataFrame(cal_rows), "Self-calibration: strength chosen on validation data")
        )
    return "".join(parts)


def _metrics(d: ReportData) -> str:
    tab = metrics_table(d.aggregate, d.k, d.methods)
    if tab.empty:
        return "<p>No per-user metric in this run.</p>"
    return _table(
        tab,
        f"Every registered per-user metric at @{d.k}: overall mean over seeds per method "
        "(per-group values and CIs are in results.parquet)",
    )


def _details(d: ReportData) -> str:
    res = d.results
    parts = []
    gaps = res[res.metric.str.startswith(("gap_", "ratio_"))]
    if len(gaps):
        parts.append(_table(gaps.round(4), "Group gaps (max-min) and ratios (min/max)"))
    exp = res[res.group.str.startswith("item_pop=")]
    if len(exp):
        parts.append(
            _table(
                exp.drop(columns=["ci_low", "ci_high", "n"]).round(4),
                "Item exposure by popularity tier vs share of training interactions",
            )
        )
    return (
        "<details><summary>Show every gap and exposure row</summary>"
        + "".join(parts)
        + "</details>"
    )


def _config(d: ReportData) -> str:
    s = d.summary
    env = {k: s.get(k) for k in ("versions", "git_commit", "timings_s", "stage_totals", "cache")}
    parts = [
        "<details open><summary>Resolved config (re-runnable as is)</summary><pre>"
        + _e(d.config)
        + "</pre></details>",
        "<details><summary>Environment: versions, git commit, timings, stage cache</summary>"
        "<pre>" + _e(json.dumps(env, indent=2, default=str)) + "</pre></details>",
    ]
    if s.get("purification"):
        parts.append(
            "<details><summary>Purification</summary><pre>"
            + _e(json.dumps(s["purification"], indent=2, default=str))
            + "</pre></details>"
        )
    return "".join(parts)


def render_html(d: ReportData) -> str:
    """The report page for ``d`` (see the module docstring)."""
    name = str(d.summary.get("name", d.folder.name))
    builders = {
        "summary": _summary,
        "frontier": _frontier,
        "groups": _groups,
        "exposure": _exposure,
        "calibration": _calibration,
        "llm-audit": _llm,
        "transparency": _transparency,
        "tests": _tests,
        "metrics": _metrics,
        "details": _details,
        "config": _config,
    }
    nav = "<nav>" + "".join(f'<a href="#{sid}">{_e(t)}</a>' for sid, t in _SECTIONS) + "</nav>"
    body = "".join(_section(sid, title, builders[sid](d)) for sid, title in _SECTIONS)
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset='utf-8'>"
        f"<title>debiasrec report: {_e(name)}</title><style>{_CSS}</style></head><body>"
        f"<h1>debiasrec report: {_e(name)}</h1>{nav}{body}</body></html>"
    )


def write_report(folder: str | Path) -> Path:
    """Write ``folder/report.html`` (and ``folder/report.md``) from a result folder.

    Raises:
        DataError: ``folder`` has no ``results.parquet``.
    """
    from debiasrec.report.markdown import render_markdown

    d = load_report_data(folder)
    path = d.folder / "report.html"
    path.write_text(render_html(d), encoding="utf-8")
    (d.folder / "report.md").write_text(render_markdown(d), encoding="utf-8")
    return path


__all__ = ["render_html", "write_report"]
