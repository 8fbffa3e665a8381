"""Counterfactual audit of text / LLM recommenders (FaiRLLM's protocol, extended as CFaiRLLM).

For each sampled user the model ranks items under several prompts (user texts):

* **neutral**: every sensitive profile field removed;
* **attribute values**: the neutral text plus exactly one sensitive field set to one value
  (``gender=F``, ``age=22``, ...); optional intersections set two fields at once;
* **controls**, part of every audit: a **placebo** attribute (a favourite colour with several
  values), **harmless typos** (adjacent letters swapped, several seeds), and **another user's
  history** (a derangement of the sampled users).

Each variant's top-K list is compared with the neutral list (:mod:`debiasrec.metrics.counterfactual`:
Jaccard@K, SERP*@K, PRAG*@K) and with the user's held-out test items (``cf_ndcg@K``: true-preference
alignment, so legitimate personalisation is told apart from bias). Per attribute, SNSR and SNSV
summarise the spread across values; ``excess_snsr_*`` is the attribute's SNSR minus the placebo's,
with a paired user-bootstrap 95% CI (an effect beyond the placebo when the CI excludes 0), and
``p_snsr_*`` a within-user permutation p-value (does the value matter at all), Holm-corrected
across the audited attributes, intersections and the placebo.

A model takes part if it has ``score_with_texts(user_codes, texts)`` (TextTwoTower, LLMRanker);
if it also accepts ``history_users=``, the "other history" control swaps its pooled history too.
A model whose lists are generated text matched to the catalog (``LLMRanker(mode="generate")``,
in process or behind an API) reports, per variant, the share of listed titles that matched a
catalog item (``gen_match_rate``) and the matched items per list (``gen_items_per_list``), from
its ``last_generation_stats()``.

The LLM may be served behind an OpenAI-compatible API (``LLMRanker(endpoint=...)``):
:func:`run_llm_audit` then writes the request, cache-hit, retry and token counts into
``summary.json``; the API key is never written.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from debiasrec.data.split import Split
from debiasrec.errors import ConfigError, DataError
from debiasrec.experiment.evaluate import RESULT_COLUMNS
from debiasrec.lm.templates import TextRenderer, Variant
from debiasrec.metrics.counterfactual import (
    SIMILARITIES,
    holm,
    snsr,
    snsr_permutation_test,
    snsv,
)
from debiasrec.metrics.fairness import _boot_means, _percentile_ci
from debiasrec.metrics.ranking import ranking_metrics
from debiasrec.metrics.topk import topk_from_scores
from debiasrec.random import np_rng


class AuditConfig(BaseModel):
    """What a counterfactual audit varies and measures."""

    model_config = ConfigDict(extra="forbid")

    attrs: list[str] = Field(default_factory=lambda: ["gender", "age"])
    values: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="values written for each attribute; default: observed values (the most "
        "frequent max_values), and for bucketed numeric attributes the median of each bucket",
    )
    max_values: int = Field(8, ge=2)
    intersections: list[str] = Field(default_factory=list, description='e.g. ["gender&age"]')
    placebo: dict[str, list[str]] | None = Field(
        None,
        description="placebo fields and values; None = the user template's placebo fields "
        "(those a model saw in training), else a favourite colour (blue, red, green, yellow)",
    )
    typo_rate: float = Field(0.05, gt=0, le=1)
    typo_seeds: int = Field(3, ge=2)
    other_history: bool = True
    n_users: int = Field(200, ge=2)
    k: int = Field(10, ge=1)
    similarities: list[str] = Field(default_factory=lambda: ["jaccard", "serp", "prag"])
    n_perm: int = Field(2000, ge=0)
    n_boot: int = Field(1000, ge=0)
    seed: int = 0


def default_values(split: Split, attr: str, max_values: int) -> list[Any]:
    """Values of ``attr`` to write into prompts (see :class:`AuditConfig`)."""
    ds = split.train
    if attr not in ds.user_table.columns:
        raise DataError(
            f"audit attribute {attr!r} is not a user column; columns: {list(ds.user_table.columns)}"
        )
    col = ds.user_table[attr]
    spec = {a.name: a for a in ds.schema.sensitive}.get(attr)
    if spec is not None and spec.bins and pd.api.types.is_numeric_dtype(col):
        groups = ds.user_groups(attr)
        vals = []
        for g in groups.categories:
            sel = col[np.asarray(groups == g)]
            if len(sel):
                vals.append(int(np.median(sel)))
        return vals
    counts = col.dropna().astype(str).value_counts()
    return list(counts.index[:max_values])


def _variants(
    cfg: AuditConfig, renderer: TextRenderer, split: Split
) -> list[tuple[str, str, Variant]]:
    """(family, group label, variant) for every prompt of the audit; family 'neutral' first."""
    fields = renderer.sensitive_fields
    phrases = renderer.user_template.phrases
    missing = [a for a in cfg.attrs if a not in renderer.profile and a not in phrases]
    if missing:
        raise ConfigError(
            f"audit attributes {missing} are neither profile fields of the user template "
            f"{renderer.profile} nor have a phrase in its phrases {sorted(phrases)}; audit only "
            "attributes the text can carry"
        )
    off = {f: None for f in fields}
    out: list[tuple[str, str, Variant]] = [("neutral", "neutral", Variant("neutral", set=off))]
    values = {a: cfg.values.get(a) or default_values(split, a, cfg.max_values) for a in cfg.attrs}
    for a in cfg.attrs:
        if len(values[a]) < 2:
            raise ConfigError(f"audit attribute {a!r} needs at least two values, got {values[a]}")
        for v in values[a]:
            out.append((a, f"{a}={v}", Variant(f"{a}={v}", set={**off, a: v})))
    for inter in cfg.intersections:
        parts = inter.split("&")
        if len(parts) != 2 or any(p not in values for p in parts):
            raise ConfigError(
                f"intersection {inter!r} must join two audited attributes with '&' ({cfg.attrs})"
            )
        a, b = parts
        for va in values[a]:
            for vb in values[b]:
                label = f"{a}={va}&{b}={vb}"
                out.append((inter, label, Variant(label, set={**off, a: va, b: vb})))
    placebo = (
        cfg.placebo
        or renderer.user_template.placebo
        or {"colour": ["blue", "red", "green", "yellow"]}
    )
    for p, vals in placebo.items():
        if len(vals) < 2:
            raise ConfigError(f"placebo {p!r} needs at least two values")
        for v in vals:
            out.append((f"placebo:{p}", f"{p}={v}", Variant(f"{p}={v}", set={**off, p: v})))
    for s in range(cfg.typo_seeds):
        out.append(("typo", f"typo={s}", Variant(f"typo={s}", set=off, typo_rate=cfg.typo_rate)))
    if cfg.other_history:
        out.append(("history", "history=other", Variant("history=other", set=off)))
    return out


def _sample_users(split: Split, n: int, gen: np.random.Generator) -> np.ndarray:
    has_test = np.flatnonzero(np.diff(split.test.csr().indptr) > 0)
    if len(has_test) < 2:
        raise DataError("the audit needs at least two users with test items")
    n = min(n, len(has_test))
    return np.sort(gen.choice(has_test, size=n, replace=False))


def _ci(x: np.ndarray, n_boot: int, gen: np.random.Generator) -> tuple[float, float]:
    x = x[np.isfinite(x)]
    if n_boot == 0 or len(x) < 2:
        return float("nan"), float("nan")
    lo, hi = _percentile_ci(_boot_means(x[:, None], n_boot, gen), 0.95)
    return float(lo[0]), float(hi[0])


def run_audit(
    model: Any,
    split: Split,
    *,
    config: AuditConfig | dict[str, Any] | None = None,
    renderer: TextRenderer | None = None,
    method: str = "model",
    progress: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the audit; returns (tidy results, per-user per-variant rows).

    Args:
        model: a fitted recommender with ``score_with_texts(user_codes, texts)``.
        split: the split the model was trained on (lists mask train and valid items; the test
            items are the true preferences).
        config: :class:`AuditConfig` or a dict of its fields.
        renderer: how user texts are written (default: the model's ``renderer(train)`` if it has
            one, else a default :class:`TextRenderer`).
        method: the ``method`` column of the results.
        progress: called with each variant's label as it is scored.

    Returns:
        ``results`` in the result-folder schema (method, seed, metric, group, value, ci_low,
        ci_high, n) and ``lists``: one row per (variant, user, rank) with the item code, the
        variant's family and the per-user similarities and ``cf_ndcg@K``.
    """
    cfg = config if isinstance(config, AuditConfig) else AuditConfig.model_validate(config or {})
    if not hasattr(model, "score_with_texts"):
        raise ConfigError(
            f"{type(model).__name__} cannot be audited: it does not read user text "
            "(no score_with_texts); audit text2tower or llm_ranker models"
        )
    bad = [s for s in cfg.similarities if s not in SIMILARITIES]
    if bad:
        raise ConfigError(f"unknown similarities {bad}; available: {sorted(SIMILARITIES)}")
    if renderer is None:
        if hasattr(model, "renderer"):
            renderer = model.renderer(split.train)
        else:  # the model's own templates when its config has them (LLMRanker)
            c = getattr(model, "config", None)
            renderer = TextRenderer(
                split.train,
                item_template=getattr(c, "item_template", None),
                user_template=getattr(c, "user_template", None),
            )
    gen = np_rng(cfg.seed)
    users = _sample_users(split, cfg.n_users, gen)
    perm = gen.permutation(len(users))
    while (perm == np.arange(len(users))).any():
        perm = gen.permutation(len(users))
    accepts_hist = "history_users" in inspect.signature(model.score_with_texts).parameters
    exclude = [split.train.csr(), split.valid.csr()]
    truth = split.test.csr()[users]
    variants = _variants(cfg, renderer, split)
    lists: dict[str, np.ndarray] = {}
    ndcg: dict[str, np.ndarray] = {}
    gen_stats: dict[str, dict[str, int]] = {}
    stats_of = getattr(model, "last_generation_stats", None)
    for i, (family, label, v) in enumerate(variants):
        if progress is not None:
            progress(label)
        if family == "history":
            texts = renderer.user_texts(users[perm], v)
            kw = {"history_users": users[perm]} if accepts_hist else {}
            scores = model.score_with_texts(users, texts, **kw)
        else:
            texts = renderer.user_texts(users, v, rng=cfg.seed * 1000 + i)
            scores = model.score_with_texts(users, texts)
        if callable(stats_of) and (st := stats_of()) is not None:
            gen_stats[label] = st
        top, _ = topk_from_scores(np.asarray(scores, dtype=np.float32), cfg.k, users, exclude)
        lists[label] = top
        ndcg[label] = ranking_metrics(top, truth, ks=(cfg.k,), metrics=("ndcg",))[f"ndcg@{cfg.k}"]
    neutral = lists["neutral"]
    rows: list[dict[str, Any]] = []
    per_user = []
    k = cfg.k
    sims: dict[str, dict[str, np.ndarray]] = {}
    for family, label, _ in variants:
        rec: dict[str, Any] = {
            "user": users, "variant": label, "family": family, f"cf_ndcg@{k}": ndcg[label]
        }  # fmt: skip
        for s in cfg.similarities:
            val = SIMILARITIES[s](lists[label], neutral)
            rec[f"{s}@{k}"] = val
            sims.setdefault(s, {})[label] = val
        per_user.append(pd.DataFrame(rec))
        for metric in [f"{s}@{k}" for s in cfg.similarities] + [f"cf_ndcg@{k}"]:
            x = np.asarray(rec[metric], dtype=np.float64)
            if family == "neutral" and metric != f"cf_ndcg@{k}":
                continue
            lo, hi = _ci(x, cfg.n_boot, gen)
            rows.append(dict(method=method, seed=cfg.seed, metric=metric, group=label,
                             value=float(np.nanmean(x)), ci_low=lo, ci_high=hi, n=len(x)))  # fmt: skip
    families: dict[str, list[str]] = {}
    for family, label, _ in variants:
        if family not in ("neutral", "history"):
            families.setdefault(family, []).append(label)
    for s in cfg.similarities:
        name = f"{s}@{k}"
        placebo_snsr = [
            snsr(np.stack([sims[s][lab] for lab in labs]))
            for fam, labs in families.items()
            if fam.startswith("placebo:")
        ]
        floor = float(np.mean(placebo_snsr)) if placebo_snsr else float("nan")
        placebo_mats = [
            np.stack([sims[s][lab] for lab in labs])
            for fam, labs in families.items()
            if fam.startswith("placebo:")
        ]
        # Users resampled with replacement, the same draw for attribute and placebo (paired).
        boot_idx = [gen.integers(0, len(users), len(users)) for _ in range(cfg.n_boot)]

        def row(metric: str, group: str, value: float, lo: float = np.nan, hi: float = np.nan):
            rows.append(dict(method=method, seed=cfg.seed, metric=metric, group=group,
                             value=value, ci_low=lo, ci_high=hi, n=len(users)))  # fmt: skip

        pvals: dict[str, float] = {}
        for fam, labs in families.items():
            mat = np.stack([sims[s][lab] for lab in labs])
            row(f"snsr_{name}", fam, snsr(mat))
            row(f"snsv_{name}", fam, snsv(mat))
            if fam != "typo" and not fam.startswith("placebo:"):
                lo = hi = float("nan")
                if boot_idx and placebo_mats:
                    reps = [
                        snsr(mat[:, ix]) - float(np.mean([snsr(pm[:, ix]) for pm in placebo_mats]))
                        for ix in boot_idx
                    ]
                    lo, hi = (float(x) for x in np.quantile(reps, [0.025, 0.975]))
                row(f"excess_snsr_{name}", fam, snsr(mat) - floor, lo, hi)
            if fam != "typo" and cfg.n_perm > 0:
                pvals[fam] = snsr_permutation_test(mat, n_perm=cfg.n_perm, rng=gen)
        for fam, p in holm(pvals).items():
            row(f"p_snsr_{name}", fam, p)
    if gen_stats:
        tot = {key: sum(st[key] for st in gen_stats.values()) for key in ("listed", "matched")}
        for label, st in [*gen_stats.items(), ("all", None)]:
            st = st or {**tot, "prompts": sum(x["prompts"] for x in gen_stats.values()),
                        "in_list": sum(x["in_list"] for x in gen_stats.values())}  # fmt: skip
            rate = st["matched"] / st["listed"] if st["listed"] else float("nan")
            for metric, value in (("gen_match_rate", rate),
                                  ("gen_items_per_list", st["in_list"] / st["prompts"])):
                rows.append(dict(method=method, seed=cfg.seed, metric=metric, group=label,
                                 value=value, ci_low=np.nan, ci_high=np.nan,
                                 n=st["prompts"]))  # fmt: skip
    res = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    per = pd.concat(per_user, ignore_index=True)
    long = []
    for family, label, _ in variants:
        top = lists[label]
        long.append(pd.DataFrame({"variant": label, "family": family,
                                  "user": np.repeat(users, k),
                                  "rank": np.tile(np.arange(1, k + 1), len(users)),
                                  "item": top.ravel()}))  # fmt: skip
    lists_frame = pd.concat(long, ignore_index=True).merge(per, on=["variant", "family", "user"])
    return res, lists_frame


class LLMAuditRun(BaseModel):
    """A whole audit run: data, split, the model to train (or load) and the audit settings."""

    model_config = ConfigDict(extra="forbid")

    data: str = "ml-100k"
    split_seed: int = 2020
    model: str = "text2tower"
    params: dict[str, Any] = Field(default_factory=dict)
    load: str | None = Field(
        None, description="folder of a saved model to audit instead of fitting"
    )
    fit_seed: int = 0
    audit: AuditConfig = Field(default_factory=AuditConfig)


def run_llm_audit(run: LLMAuditRun, out: Any, *, progress: bool = False) -> pd.DataFrame:
    """Fit (or load) the model, run the audit and write a result folder.

    Writes ``out/config.toml`` (this run, re-runnable), ``out/results.parquet`` (method = the
    model name), ``out/audit_lists.parquet`` (every variant's list per user, with similarities)
    and ``out/summary.json``; returns the results.
    """
    import json
    import time
    from pathlib import Path

    from debiasrec import __version__
    from debiasrec.config import dump_toml
    from debiasrec.data.purify import load_dataset
    from debiasrec.data.split import random_split
    from debiasrec.models import model_class

    out = Path(out)
    t0 = time.perf_counter()
    cls = model_class(run.model)
    if not hasattr(cls, "score_with_texts"):
        raise ConfigError(
            f"model {run.model!r} does not read user text (no score_with_texts), so prompts "
            "cannot vary; audit text2tower or llm_ranker"
        )
    fresh = None if run.load else cls(run.params)  # validates the parameters first
    endpoint = getattr(getattr(fresh, "config", None), "endpoint", None)
    if endpoint is not None:  # reach the server (and check the model name) before any work
        from debiasrec.lm.api import OpenAIClient

        OpenAIClient(endpoint).check_model()
    ds, _ = load_dataset(run.data)
    split = random_split(ds, rng=run.split_seed)
    if fresh is None:
        assert run.load is not None  # validated: a saved model or a model to fit
        model = cls.load(run.load)
        if model.n_users_ != split.train.n_users or model.n_items_ != split.train.n_items:
            raise DataError(
                f"the model in {run.load} was trained on {model.n_users_} users x "
                f"{model.n_items_} items, not on this split of {run.data!r}"
            )
    else:
        model = fresh.fit(split.train, valid=split.valid, rng=run.fit_seed)
    t_fit = time.perf_counter() - t0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="llm-audit", unit="variant")
    res, lists = run_audit(
        model, split, config=run.audit, method=run.model,
        progress=(lambda label: bar.update(1)) if bar is not None else None,
    )  # fmt: skip
    if bar is not None:
        bar.close()
    out.mkdir(parents=True, exist_ok=True)
    dump_toml(run, out / "config.toml")
    res.to_parquet(out / "results.parquet", index=False)
    lists.to_parquet(out / "audit_lists.parquet", index=False)
    summary = {
        "name": f"llm-audit-{run.model}",
        "kind": "llm-audit",
        "version": __version__,
        "dataset": {"name": ds.name, "n_users": ds.n_users, "n_items": ds.n_items,
                    "n_interactions": ds.n_interactions, "fingerprint": ds.fingerprint(),
                    "sensitive": list(run.audit.attrs)},
        "split_seed": run.split_seed,
        "seeds": [run.fit_seed],
        "audit_seed": run.audit.seed,
        "timings": {"fit_or_load_s": round(t_fit, 3),
                    "audit_s": round(time.perf_counter() - t0 - t_fit, 3)},
    }  # fmt: skip
    lm = getattr(model, "lm_", None)
    if lm is not None and hasattr(lm, "usage"):  # an LLM behind an API (never the key)
        summary["api"] = {"url": lm.settings.url, "model": lm.settings.model,
                          "api_key_env": lm.settings.api_key_env,
                          "cache_dir": str(lm.client.cache_dir), **lm.usage.to_dict()}  # fmt: skip
    gen = getattr(model, "generation_stats_", None)
    if gen:
        summary["generation"] = {key: sum(st[key] for st in gen) for key in gen[0]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return res
