"""Metrics declare themselves once; evaluation, the report and the stage cache read the registry.

A metric is a :class:`Metric`: a name, a function of a :class:`MetricInput` and a cut-off ``k``,
what it needs (``needs``: lists, held-out truth, item popularity, item features, training
history, group labels, user embeddings) and the :class:`Family` it belongs to. It registers
itself where it is defined::

    @register_metric(family="beyond", needs=("popularity",), higher_is_better=False)
    def arp(inp: MetricInput, k: int) -> np.ndarray:
        \"\"\"Average recommendation popularity (Abdollahpouri et al. 2019).\"\"\"
        return average_popularity(inp.topk, inp.item_pop, k)

and from then on it is computed by every evaluation whose inputs include what it needs
(:func:`compute_metrics`), aggregated overall and by group with bootstrap CIs (per-user
metrics, via :func:`debiasrec.metrics.by_group`), shown in the report (``higher_is_better`` says
which way is good) and part of the stage cache keys (through ``EvalConfig.metrics`` and the
code hash). Nothing else needs editing.

Families fix the order of computation, and so the random numbers each bootstrap draws: per-user
metrics of families with the same ``bootstrap`` group share one :func:`by_group` call (the
first group gets the evaluation's seed, each later group the next seed derived from it). A
family lists its metrics metric-major (``ndcg@10, ndcg@20, recall@10, ...``) or k-major
(``arp@10, aplt@10, arp@20, ...``), and at every cut-off or only the first.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from debiasrec.errors import ConfigError
from debiasrec.random import derive_seed, np_rng
from debiasrec.registry import Registry

#: What a metric may need; :meth:`MetricInput.has` says which are present.
NEEDS: tuple[str, ...] = (
    "truth",  # held-out items of each evaluated user
    "popularity",  # training interaction count per item
    "item_features",  # item x category indicator matrix (e.g. genres)
    "history",  # training items of each evaluated user
    "groups",  # sensitive group labels (evaluation only)
    "embeddings",  # the model's user embeddings
    "scores",  # the scores of the listed items
)

Row = dict[str, Any]


@dataclass
class MetricInput:
    """Everything a metric may read; rows of every per-user array align with ``users``.

    Attributes:
        topk: ``[n, K]`` ranked item codes (-1 = padding).
        users: ``[n]`` user codes of the rows.
        n_items: catalog size.
        ks: the evaluated cut-offs (``ks[0]`` is the headline one).
        truth: ``[n, n_items]`` held-out interactions of the rows.
        history: ``[n, n_items]`` training interactions of the rows.
        item_pop: training interaction count per item (original users only).
        n_pop_users: number of users behind ``item_pop``.
        item_features: ``[n_items, C]`` indicator matrix of ``feature_column``.
        feature_names: names of the ``C`` categories.
        feature_column: the item column the categories come from (e.g. ``"genres"``).
        groups: ``{attr or "a&b": labels of the rows}`` (sensitive attributes and intersections).
        attrs: the single attributes among ``groups`` (what leakage probes try to recover).
        user_groups: ``{attr: labels of every user code}`` (for probes on embeddings).
        embeddings: ``[n_users, d]`` user embeddings of the model, or None.
        scores: ``[n, K]`` scores of the listed items, or None.
        head_share: share of interactions defining the popular head (long-tail metrics).
        ci: confidence level of intervals.
        probe_seed: seed of the leakage probes' folds (the same for every method and seed).
        device: where torch-based metrics (the leakage probes) run: a ``torch.device`` or its
            name (``"cpu"``, ``"cuda:0"``), resolved by the caller.
    """

    topk: np.ndarray
    users: np.ndarray
    n_items: int
    ks: Sequence[int] = (10,)
    truth: sp.csr_matrix | None = None
    history: sp.csr_matrix | None = None
    item_pop: np.ndarray | None = None
    n_pop_users: int | None = None
    item_features: sp.csr_matrix | None = None
    feature_names: list[str] | None = None
    feature_column: str | None = None
    groups: Mapping[str, pd.Categorical] = field(default_factory=dict)
    attrs: Sequence[str] = ()
    user_groups: Mapping[str, pd.Categorical] = field(default_factory=dict)
    embeddings: np.ndarray | None = None
    scores: np.ndarray | None = None
    head_share: float = 0.2
    ci: float = 0.95
    probe_seed: int = 0
    device: Any = "cpu"
    _memo: dict[Any, Any] = field(default_factory=dict, repr=False)

    def has(self, need: str) -> bool:
        """Whether the input named ``need`` (one of :data:`NEEDS`) is present."""
        value = {
            "truth": self.truth,
            "popularity": self.item_pop,
            "item_features": self.item_features,
            "history": self.history,
            "groups": self.groups or None,
            "embeddings": self.embeddings,
            "scores": self.scores,
        }.get(need)
        return value is not None

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per input (intermediates shared by several metrics)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


@dataclass(frozen=True)
class Family:
    """A group of metrics computed together, in a fixed order (see the module docstring).

    Attributes:
        name: family name.
        kind: ``"per_user"`` (one value per user, aggregated with CIs) or ``"rows"`` (a metric
            function returns finished result rows: catalog-level numbers, probes).
        bootstrap: per-user families with the same name share one bootstrap.
        k_major: list ``m@k`` for each ``k`` then each metric (else each metric then each ``k``).
        first_k_only: compute at ``ks[0]`` only.
    """

    name: str
    kind: Literal["per_user", "rows"] = "per_user"
    bootstrap: str = "main"
    k_major: bool = False
    first_k_only: bool = False


@dataclass(frozen=True)
class Metric:
    """A registered metric (see :func:`register_metric`)."""

    name: str
    fn: Callable[[MetricInput, int], Any]
    family: str
    needs: tuple[str, ...] = ()
    default: bool = True
    higher_is_better: bool | None = None
    description: str = ""

    def available(self, inp: MetricInput) -> bool:
        return all(inp.has(n) for n in self.needs)


#: Families in computation order (a new family is appended with :func:`register_family`).
FAMILIES: dict[str, Family] = {}

#: Every metric by name.
METRICS: Registry[Metric] = Registry("metric", "debiasrec.metrics")


def register_family(family: Family) -> Family:
    """Add a family after the existing ones (a name already used raises ConfigError)."""
    if family.name in FAMILIES and FAMILIES[family.name] != family:
        raise ConfigError(f"metric family {family.name!r} is already registered")
    FAMILIES[family.name] = family
    return family


for _f in (
    Family("ranking"),
    Family("beyond", k_major=True),
    Family("catalog", kind="rows", k_major=True),
    Family("category_exposure", kind="rows", first_k_only=True),
    Family("calibration", bootstrap="calibration", first_k_only=True),
    Family("leakage", kind="rows", first_k_only=True),
):
    register_family(_f)


def register_metric(
    fn: Callable[[MetricInput, int], Any] | None = None,
    *,
    name: str | None = None,
    family: str = "beyond",
    needs: Iterable[str] = (),
    default: bool = True,
    higher_is_better: bool | None = None,
) -> Any:
    """Register a metric function (usable as a decorator, with or without arguments).

    Args:
        fn: ``fn(inp, k)``; a per-user family's metric returns ``[n]`` float64 values (NaN where
            undefined) or None when it is not defined at ``k``; a rows family's metric returns a
            list of result rows (``metric, group, value, ci_low, ci_high, n``).
        name: metric name (default: the function's name); per-user results are ``NAME@K``.
        family: a registered :class:`Family`.
        needs: inputs the metric reads (:data:`NEEDS`); it is computed only when all are there.
        default: computed when ``EvalConfig.metrics`` is not given.
        higher_is_better: which way is good (the report orders and colours by it).
    """

    def add(f: Callable[[MetricInput, int], Any]) -> Callable[[MetricInput, int], Any]:
        if family not in FAMILIES:
            raise ConfigError(f"unknown metric family {family!r}; available: {list(FAMILIES)}")
        bad = sorted(set(needs) - set(NEEDS))
        if bad:
            raise ConfigError(f"unknown metric needs {bad}; available: {list(NEEDS)}")
        doc = inspect.getdoc(f) or ""
        METRICS.register(
            Metric(
                name=name or f.__name__,
                fn=f,
                family=family,
                needs=tuple(needs),
                default=default,
                higher_is_better=higher_is_better,
                description=doc.splitlines()[0] if doc else "",
            )
        )
        return f

    return add if fn is None else add(fn)


def default_metrics() -> list[str]:
    """Names of the metrics computed when none are named."""
    return [m.name for m in METRICS.values() if m.default]


def check_metric_names(names: Sequence[str]) -> list[str]:
    """``names`` validated against the registry.

    Raises:
        ConfigError: an unknown name (the message lists the available ones).
    """
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; available: {sorted(METRICS)}")
    return list(dict.fromkeys(names))


def _selected(names: Sequence[str] | None) -> list[Metric]:
    chosen = set(default_metrics() if names is None else check_metric_names(names))
    return [m for m in METRICS.values() if m.name in chosen]


def compute_metrics(
    inp: MetricInput,
    names: Sequence[str] | None = None,
    *,
    n_boot: int = 1000,
    rng: int | np.random.Generator | None = 0,
) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Compute the selected metrics that ``inp`` can feed, family by family.

    Returns:
        ``(per_user, results)``: per-user arrays ``{"m@k": [n]}`` and the tidy result rows
        (``metric, group, value, ci_low, ci_high, n``): per-user metrics aggregated overall and by
        every group in ``inp.groups`` with bootstrap CIs, then the rows metrics.
    """
    from debiasrec.metrics.fairness import BY_GROUP_COLUMNS, by_group

    chosen = [m for m in _selected(names) if m.available(inp)]
    # Bootstrap seeds by the registered order of the groups, whatever is selected, so
    # choosing fewer metrics never changes the intervals of the others.
    gen = np_rng(rng)
    groups_in_order = list(
        dict.fromkeys(f.bootstrap for f in FAMILIES.values() if f.kind == "per_user")
    )
    seeds: dict[str, Any] = {
        g: (rng if i == 0 else derive_seed(gen)) for i, g in enumerate(groups_in_order)
    }
    per_user: dict[str, np.ndarray] = {}
    boot_values: dict[str, dict[str, np.ndarray]] = {}
    boot_order: list[str] = []
    rows: list[tuple[str, list[Row]]] = []  # (bootstrap group it follows, rows)
    for fam in FAMILIES.values():
        members = [m for m in chosen if m.family == fam.name]
        if not members:
            continue
        ks = list(inp.ks[:1] if fam.first_k_only else inp.ks)
        pairs = (
            [(m, k) for k in ks for m in members]
            if fam.k_major
            else [(m, k) for m in members for k in ks]
        )
        if fam.kind == "per_user":
            if fam.bootstrap not in boot_values:
                boot_values[fam.bootstrap] = {}
                boot_order.append(fam.bootstrap)
            for m, k in pairs:
                val = m.fn(inp, k)
                if val is None:
                    continue
                arr = np.asarray(val, dtype=np.float64)
                per_user[f"{m.name}@{k}"] = arr
                boot_values[fam.bootstrap][f"{m.name}@{k}"] = arr
        else:
            out: list[Row] = []
            for m, k in pairs:
                out.extend(m.fn(inp, k) or [])
            rows.append((boot_order[-1] if boot_order else "", out))
    frames: list[pd.DataFrame] = []
    done: set[str] = set()

    def flush(group: str) -> None:
        vals = boot_values.get(group)
        if group in done or not vals:
            return
        done.add(group)
        frames.append(by_group(vals, dict(inp.groups), n_boot=n_boot, ci=inp.ci, rng=seeds[group]))

    for group in boot_order:
        flush(group)
        for after, out in rows:
            if after == group and out:
                frames.append(_rows_frame(out, BY_GROUP_COLUMNS))
    for after, out in rows:
        if after == "" and out:
            frames.append(_rows_frame(out, BY_GROUP_COLUMNS))
    results = (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=BY_GROUP_COLUMNS)
    )
    return per_user, results


def _rows_frame(rows: list[Row], columns: Sequence[str]) -> pd.DataFrame:
    full = [{"ci_low": np.nan, "ci_high": np.nan, "n": np.nan, **r} for r in rows]
    return pd.DataFrame(full)[list(columns)]


def scalar_row(metric: str, value: float, group: str = "all") -> Row:
    """A result row without a confidence interval (catalog-level numbers)."""
    return {"metric": metric, "group": group, "value": float(value), "ci_low": np.nan,
            "ci_high": np.nan, "n": np.nan}  # fmt: skip


__all__ = [
    "FAMILIES",
    "METRICS",
    "NEEDS",
    "Family",
    "Metric",
    "MetricInput",
    "check_metric_names",
    "compute_metrics",
    "default_metrics",
    "register_family",
    "register_metric",
    "scalar_row",
]
