"""Wide summary tables from the tidy results (for the terminal, Markdown and HTML)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _fmt(v: float, lo: float, hi: float) -> str:
    if not np.isfinite(v):
        return "nan"
    if np.isfinite(lo) and np.isfinite(hi):
        return f"{v:.4f} [{lo:.3f}, {hi:.3f}]"
    return f"{v:.4f}"


def default_k(results: pd.DataFrame) -> int:
    """The cut-off shown by default: 10 when evaluated, else the smallest evaluated K."""
    found = results["metric"].astype(str).str.extract(r"^(?:ndcg|recall)@(\d+)$")[0].dropna()
    ks = sorted({int(k) for k in found})
    return 10 if not ks or 10 in ks else ks[0]


def summary_table(
    results: pd.DataFrame,
    metrics: tuple[str, ...] | None = None,
    attrs: tuple[str, ...] | None = None,
    extra: tuple[str, ...] | None = None,
    *,
    with_ci: bool = True,
) -> pd.DataFrame:
    """One row per method: each metric overall and per group of ``attrs`` (mean over seeds),
    with the 95% bootstrap CI of the first seed when there is one seed, ``gap_`` columns, and
    catalog-level ``extra`` metrics.

    ``metrics`` defaults to ``ndcg@K, recall@K`` and ``extra`` to ``coverage@K, gini@K, exposure_share@K`` (head and tail tiers) with
    ``K = default_k(results)`` (10, or the smallest evaluated cut-off when 10 was not evaluated).
    """
    res = results
    k = default_k(res)
    if metrics is None:
        metrics = (f"ndcg@{k}", f"recall@{k}")
    if extra is None:
        extra = (f"coverage@{k}", f"gini@{k}", f"exposure_share@{k}")
    if attrs is None:
        gaps = res[res.metric.str.startswith("gap_")]["group"].unique().tolist()
        attrs = tuple(g for g in gaps if "&" not in g)
    rows = []
    for method, sub in res.groupby("method", sort=False):
        n_seeds = sub["seed"].nunique()
        row: dict[str, str] = {"method": str(method), "seeds": str(n_seeds)}
        agg = sub.groupby(["metric", "group"], sort=False)[["value", "ci_low", "ci_high"]].mean()
        for m in metrics:
            groups = (
                ["all"] + [g for g in agg.loc[m].index if any(g.startswith(f"{a}=") for a in attrs)]
                if m in agg.index.get_level_values(0)
                else []
            )
            for g in groups:
                v, lo, hi = agg.loc[(m, g)]
                col = m if g == "all" else f"{m} {g}"
                row[col] = _fmt(v, lo, hi) if with_ci and n_seeds == 1 else _fmt(v, np.nan, np.nan)
            for a in attrs:
                key = (f"gap_{m}", a)
                if key in agg.index:
                    v, lo, hi = agg.loc[key]
                    row[f"gap {m} {a}"] = (
                        _fmt(v, lo, hi) if with_ci and n_seeds == 1 else _fmt(v, np.nan, np.nan)
                    )
        for m in extra:
            if (m, "all") in agg.index:
                row[m] = f"{agg.loc[(m, 'all')]['value']:.4f}"
            for tier in ("head", "tail"):
                if (m, f"item_pop={tier}") in agg.index:
                    row[f"{m} item_pop={tier}"] = f"{agg.loc[(m, f'item_pop={tier}')]['value']:.4f}"
        rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def to_text(df: pd.DataFrame, *, transpose: bool = True) -> str:
    """Plain-text table for the terminal (methods as columns when ``transpose``)."""
    t = df.set_index("method").T if transpose else df
    with pd.option_context(
        "display.max_rows",
        500,
        "display.max_columns",
        50,
        "display.width",
        200,
        "display.max_colwidth",
        40,
    ):
        return t.to_string()
