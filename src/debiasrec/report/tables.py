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


def _agg_lookup(aggregate: pd.DataFrame) -> dict[tuple[str, str, str], tuple[float, float, float]]:
    return {
        (str(r.method), str(r.metric), str(r.group)): (
            float(r.mean),
            float(r.ci_low),
            float(r.ci_high),
        )
        for r in aggregate.itertuples(index=False)
    }


def significance_marks(tests: pd.DataFrame | None) -> dict[tuple[str, str], str]:
    """``{(method, "all" | attribute): mark}`` from paired tests against the baseline.

    The mark is ``▲``/``▼`` for the direction of the mean estimate over seeds followed by ``*``
    when the test is significant in every seed (largest p-value below the level), else empty.
    """
    out: dict[tuple[str, str], str] = {}
    if tests is None or tests.empty:
        return out
    for (method, group), sub in tests.groupby(["method", "group"], sort=False):
        est = float(sub["estimate"].mean())
        if bool(sub["significant"].all()):
            out[(str(method), str(group))] = ("▲" if est > 0 else "▼") + "*"
    return out


def method_table(
    aggregate: pd.DataFrame,
    *,
    k: int,
    methods: list[str],
    info: dict[str, dict] | None = None,
    tests: pd.DataFrame | None = None,
    with_ci: bool = True,
) -> pd.DataFrame:
    """One row per method: accuracy, group gaps, leakage, calibration and exposure at ``k``.

    Values are means over seeds with their CI (t-interval over seeds, or the bootstrap CI of a
    single seed); accuracy and gap cells carry the paired-test mark of
    :func:`significance_marks` against the method's base model.
    """
    info = info or {}
    look = _agg_lookup(aggregate)
    marks = significance_marks(tests)
    attrs = sorted({g for (_, m, g) in look if m == f"gap_ndcg@{k}" and "&" not in g})
    leak_attrs = sorted({g for (_, m, g) in look if m == f"leakage_auc@{k}"})
    emb_attrs = sorted({g for (_, m, g) in look if m == "leakage_auc_emb"})
    cols: list[tuple[str, str, str, str | None]] = [
        (f"ndcg@{k}", f"ndcg@{k}", "all", "all"),
        (f"recall@{k}", f"recall@{k}", "all", None),
    ]
    cols += [(f"gap ndcg@{k} {a}", f"gap_ndcg@{k}", a, a) for a in attrs]
    cols += [(f"leakage auc (recs) {a}", f"leakage_auc@{k}", a, None) for a in leak_attrs]
    cols += [(f"leakage auc (emb) {a}", "leakage_auc_emb", a, None) for a in emb_attrs]
    cols += [
        (f"miscalibration@{k}", f"miscalibration@{k}", "all", None),
        (f"gini@{k}", f"gini@{k}", "all", None),
        (f"aplt@{k}", f"aplt@{k}", "all", None),
        (f"exposure tail@{k}", f"exposure_share@{k}", "item_pop=tail", None),
    ]
    present = {(m, g) for (_, m, g) in look}
    cols = [c for c in cols if (c[1], c[2]) in present]
    rows = []
    n_seeds = aggregate.groupby("method")["n_seeds"].max().to_dict() if len(aggregate) else {}
    for method in methods:
        meta = info.get(method, {})
        row: dict[str, str] = {
            "method": method,
            "base": str(meta.get("base", "")),
            "levels": "+".join(meta.get("levels", [])) or "-",
            "seeds": str(int(n_seeds.get(method, 1))),
        }
        for name, metric, group, mark_group in cols:
            v = look.get((method, metric, group))
            if v is None:
                row[name] = ""
                continue
            cell = _fmt(*v) if with_ci else _fmt(v[0], np.nan, np.nan)
            if mark_group is not None:
                cell += marks.get((method, mark_group), "")
            row[name] = cell
        rows.append(row)
    return pd.DataFrame(rows)


def metrics_table(aggregate: pd.DataFrame, k: int, methods: list[str]) -> pd.DataFrame:
    """Every registered per-user metric present in the results: its overall mean over seeds at
    ``k`` per method, which way is better and what it measures (from the metric registry, so a
    newly registered metric appears without edits here)."""
    from debiasrec.metrics.registry import FAMILIES, METRICS

    agg = aggregate[aggregate["group"] == "all"].set_index(["method", "metric"])["mean"]
    rows = []
    for m in METRICS.values():
        if FAMILIES[m.family].kind != "per_user":
            continue
        name = f"{m.name}@{k}"
        if name not in set(aggregate["metric"]):
            continue
        better = {True: "higher", False: "lower", None: ""}[m.higher_is_better]
        row = {"metric": name, "better": better}
        for method in methods:
            v = agg.get((method, name), np.nan)
            row[method] = "nan" if not np.isfinite(v) else f"{v:.4f}"
        row["what it measures"] = m.description
        rows.append(row)
    return pd.DataFrame(rows, columns=["metric", "better", *methods, "what it measures"])
