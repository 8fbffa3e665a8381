"""Markdown summary of a result folder (``report.md``), for terminals and pull requests."""

from __future__ import annotations

import pandas as pd

from debiasrec.report.data import ReportData
from debiasrec.report.tables import method_table, metrics_table, to_markdown


def render_markdown(d: ReportData) -> str:
    """Methods table, Pareto-optimal methods per fairness metric, significant changes."""
    name = str(d.summary.get("name", d.folder.name))
    ds = d.summary.get("dataset") or {}
    lines = [f"# debiasrec report: {name}", ""]
    if ds:
        lines += [
            f"Dataset {ds.get('name')}: {ds.get('n_users')} users, {ds.get('n_items')} items, "
            f"{ds.get('n_interactions')} interactions; seeds {d.summary.get('seeds')}.",
            "",
        ]
    tab = method_table(d.aggregate, k=d.k, methods=d.methods, info=d.info, tests=d.tests)
    lines += [
        "## Methods",
        "",
        to_markdown(tab),
        "",
        "Mean over seeds [95% CI]. ▲*/▼*: paired test against the base model significant "
        "(p < 0.05) in every seed.",
        "",
    ]
    if not d.frontier.empty:
        lines += ["## Pareto-optimal methods (accuracy vs fairness)", ""]
        for (metric, group), sub in d.frontier.groupby(["fairness_metric", "group"], sort=False):
            best = sub[sub.on_frontier].sort_values("fairness")
            axis = metric if group == "all" else f"{metric} ({group})"
            pts = ", ".join(
                f"{r.method} ({r.fairness:.4f}, ndcg {r.accuracy:.4f})"
                for r in best.itertuples(index=False)
            )
            lines.append(f"- {axis}: {pts}")
        lines.append("")
    if d.tests is not None and not d.tests.empty:
        sig = (
            d.tests.groupby(["method", "baseline", "group", "statistic"], sort=False)
            .agg(
                estimate=("estimate", "mean"),
                p_max=("p_value", "max"),
                significant=("significant", "all"),
            )
            .reset_index()
        )
        sig = sig[sig.significant]
        if len(sig):
            lines += ["## Significant changes vs the base model", ""]
            show = pd.DataFrame(
                {
                    "method": sig.method,
                    "baseline": sig.baseline,
                    "test": [f"{s} ({g})" for s, g in zip(sig.statistic, sig.group, strict=True)],
                    "estimate": sig.estimate.map(lambda v: f"{v:+.4f}"),
                    "max p over seeds": sig.p_max.map(lambda v: f"{v:.4f}"),
                }
            )
            lines += [to_markdown(show), ""]
    if d.levelling is not None and not d.levelling.empty:
        lev = d.levelling
        lines += [
            "## Who paid for a smaller gap (levelling down)",
            "",
            "Change of the base model's worse-off and better-off groups, paired over each "
            "group's users (mean over seeds) [95% CI]; `levelling down` = the gap shrank because "
            "the better-off group lost while the worse-off group did not gain.",
            "",
        ]

        def cell(r: object, side: str) -> str:
            g = getattr(r, f"{side}_group")
            ch = getattr(r, f"{side}_change")
            lo, hi = getattr(r, f"{side}_ci_low"), getattr(r, f"{side}_ci_high")
            return f"{g}: {ch:+.4f} [{lo:+.4f}, {hi:+.4f}] {getattr(r, f'{side}_status')}"

        show = pd.DataFrame(
            {
                "method": lev.method,
                "attr": lev.attr,
                "worse-off group": [cell(r, "worse") for r in lev.itertuples(index=False)],
                "better-off group": [cell(r, "better") for r in lev.itertuples(index=False)],
                "gap change": lev.gap_change.map(lambda v: f"{v:+.4f}"),
                "verdict": [f"**{v}**" if v == "levelling down" else str(v) for v in lev.verdict],
            }
        )
        lines += [to_markdown(show), ""]
    every = metrics_table(d.aggregate, d.k, d.methods)
    if not every.empty:
        lines += ["## Every metric", "", to_markdown(every), ""]
    cf = d.counterfactual()
    lines += [
        "## LLM counterfactual audit",
        "",
        "No LLM audit in this run."
        if cf.empty
        else f"{cf.metric.nunique()} counterfactual metrics; see report.html.",
        "",
    ]
    lines.append("Plots, explanations and the full config: report.html in this folder.")
    return "\n".join(lines) + "\n"


__all__ = ["render_markdown"]
