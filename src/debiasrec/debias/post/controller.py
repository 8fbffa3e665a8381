"""Self-calibration: pick a re-ranker's strength to meet a target at the least accuracy cost.

Given a target such as ``gap_ndcg:gender <= 0.01``, ``miscalibration <= 0.5x`` (half the base
value) or ``long_tail_share >= 0.2``, the controller estimates on *validation data only* (candidates
from the base scores with training items masked, utility against validation interactions):

1. the target metric ``m(lambda)`` and NDCG@k ``a(lambda)`` on a grid ``lambda_0 = lo < ... <
   lambda_G = hi``;
2. bisection (``refine`` halvings) between the last grid point that misses the target and the
   first that meets it, assuming ``m`` is roughly monotone in ``lambda``;
3. the chosen strength is the evaluated ``lambda`` that meets the target with the highest
   validation NDCG@k (ties: the smaller ``lambda``). If no evaluated point meets it, the one
   closest to the target is chosen, ``met_`` is False and ``frontier_`` holds the whole trade-off.

:meth:`SelfCalibrator.evaluate` measures the same quantities on other held-out data (the test
split, *after* fitting) so that the validation estimate can be compared with the outcome.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from debiasrec.config import build_config
from debiasrec.data.dataset import Dataset
from debiasrec.data.split import Split
from debiasrec.debias.post.base import RERANKERS, RerankContext, ScoresLike, candidates
from debiasrec.debias.post.popularity import popularity_tier_features
from debiasrec.errors import ConfigError, DataError, NotFittedError
from debiasrec.metrics import DegenerateMetricWarning
from debiasrec.metrics.beyond import exposure_gini, intra_list_diversity, long_tail_share
from debiasrec.metrics.calibration import miscalibration
from debiasrec.metrics.ranking import ranking_metrics
from debiasrec.models.base import Recs

TargetMetric = Literal[
    "miscalibration",
    "pop_miscalibration",
    "gap_ndcg",
    "long_tail_share",
    "exposure_gini",
    "ild",
    "ndcg",
]
_DEFAULT_OP = {
    "miscalibration": "<=",
    "pop_miscalibration": "<=",
    "gap_ndcg": "<=",
    "long_tail_share": ">=",
    "exposure_gini": "<=",
    "ild": ">=",
    "ndcg": ">=",
}
_TARGET_RE = re.compile(
    r"^\s*(?P<metric>[a-z_]+)(?::(?P<attr>[^\s<>=]+))?\s*(?P<op><=|>=)\s*"
    r"(?P<value>[-+0-9.eE]+)\s*(?P<rel>x?)\s*$"
)


class Target(BaseModel):
    """A validation target: ``metric[:attr] op value[x]``.

    ``relative=True`` (a trailing ``x`` in the string form) multiplies ``value`` by the metric's
    validation value at strength 0: ``miscalibration <= 0.5x`` asks for half the base
    miscalibration. ``gap_ndcg`` (max minus min group mean NDCG@k) needs ``attr``.
    """

    model_config = ConfigDict(extra="forbid")

    metric: TargetMetric
    op: Literal["<=", ">="] | None = None
    value: float
    relative: bool = False
    attr: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Target:
        if self.op is None:
            self.op = "<=" if _DEFAULT_OP[self.metric] == "<=" else ">="
        if self.metric == "gap_ndcg" and not self.attr:
            raise ValueError("gap_ndcg needs attr (e.g. 'gap_ndcg:gender <= 0.01')")
        return self

    @classmethod
    def parse(cls, text: str) -> Target:
        """Parse ``"gap_ndcg:gender <= 0.01"``, ``"miscalibration <= 0.5x"``, ..."""
        m = _TARGET_RE.match(text)
        if not m:
            raise ConfigError(
                f"cannot parse target {text!r}; write METRIC[:ATTR] <=|>= VALUE[x], e.g. "
                "'gap_ndcg:gender <= 0.01' or 'miscalibration <= 0.5x'"
            )
        try:
            return cls(
                metric=m["metric"],
                attr=m["attr"],
                op=m["op"],
                value=float(m["value"]),
                relative=bool(m["rel"]),
            )
        except ValidationError as exc:
            raise ConfigError(f"invalid target {text!r}: {exc}") from None

    def __str__(self) -> str:
        attr = f":{self.attr}" if self.attr else ""
        return f"{self.metric}{attr} {self.op} {self.value:g}{'x' if self.relative else ''}"


class SelfCalibrationConfig(BaseModel):
    """What to tune and how; unknown keys fail at construction."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field(description="a registered re-ranker (debiasrec.debias.post.RERANKERS)")
    target: Target
    params: dict[str, Any] = Field(default_factory=dict, description="re-ranker options")
    k: int = Field(10, ge=1)
    n_candidates: int = Field(100, ge=1)
    lo: float = Field(0.0, ge=0.0, le=1.0)
    hi: float = Field(1.0, ge=0.0, le=1.0)
    grid: int = Field(11, ge=2, description="grid points in [lo, hi]")
    refine: int = Field(6, ge=0, description="bisection steps after the grid")

    @field_validator("target", mode="before")
    @classmethod
    def _parse_target(cls, v: Any) -> Any:
        return Target.parse(v) if isinstance(v, str) else v

    @field_validator("method")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in RERANKERS:
            raise ValueError(f"unknown re-ranker {v!r}; available: {sorted(RERANKERS)}")
        return v

    @model_validator(mode="after")
    def _check(self) -> SelfCalibrationConfig:
        if self.lo >= self.hi:
            raise ValueError(f"lo must be < hi, got [{self.lo}, {self.hi}]")
        bad = {"strength", "k", "n_candidates"} & set(self.params)
        if bad:
            raise ValueError(f"params may not set {sorted(bad)}: the controller owns them")
        RERANKERS[self.method].Config(**self.params)  # typos fail here
        return self


def measure(
    metric: str,
    recs: Recs,
    context: RerankContext,
    *,
    k: int,
    truth: sp.csr_matrix | None = None,
    attr: str | None = None,
    head_share: float = 0.2,
) -> float:
    """Value of a target metric (see :class:`Target`) for ``recs``, averaged over users.

    ``truth`` (held-out interactions, rows aligned with ``recs.users``) is needed for ``ndcg``
    and ``gap_ndcg``; the others need no labels.
    """
    top = np.asarray(recs.items)[:, :k]
    users = np.asarray(recs.users, dtype=np.int64)
    with warnings.catch_warnings():
        # The controller measures many candidate strengths on validation users; per-user NaNs
        # (no validation hit, no category mass) are expected there and averaged out with nanmean.
        warnings.filterwarnings("ignore", category=DegenerateMetricWarning)
        if metric in ("ndcg", "gap_ndcg"):
            if truth is None:
                raise DataError(f"{metric} needs held-out interactions")
            nd = ranking_metrics(top, truth, ks=[k], metrics=["ndcg"])[f"ndcg@{k}"]
            if metric == "ndcg":
                return float(np.nanmean(nd))
            return group_gap(nd, context.groups(attr or "", users))
        if metric == "miscalibration":
            feats = context.require_features("miscalibration")
            return float(np.nanmean(miscalibration(top, context.history[users], feats, k)))
        if metric == "pop_miscalibration":
            feats = popularity_tier_features(context.item_pop)
            return float(
                np.nanmean(miscalibration(top, context.history[users], feats, k, kind="js"))
            )
        if metric == "long_tail_share":
            return float(np.nanmean(long_tail_share(top, context.item_pop, k, head_share)))
        if metric == "exposure_gini":
            return exposure_gini(top, context.n_items, k)
        if metric == "ild":
            feats = context.require_features("ild")
            return float(np.nanmean(intra_list_diversity(top, feats, k)))
    raise ConfigError(f"unknown target metric {metric!r}; available: {sorted(_DEFAULT_OP)}")


def group_gap(values: np.ndarray, groups: pd.Categorical) -> float:
    """``max_g mean_g - min_g mean_g`` over groups with a finite value (NaN if fewer than 2)."""
    codes = np.asarray(groups.codes)
    ok = np.isfinite(values) & (codes >= 0)
    sums = np.bincount(codes[ok], weights=values[ok], minlength=len(groups.categories))
    cnt = np.bincount(codes[ok], minlength=len(groups.categories))
    means = sums[cnt > 0] / cnt[cnt > 0]
    return float(means.max() - means.min()) if len(means) >= 2 else float("nan")


class SelfCalibrator:
    """Tune one re-ranker's strength on validation data to meet a target.

    Example:
        >>> cal = SelfCalibrator(method="calibrated", target="miscalibration <= 0.5x")  # doctest: +SKIP
        >>> cal.fit(model.score, split)          # reads split.train and split.valid only  # doctest: +SKIP
        >>> recs = cal.rerank(model.score, users=test_users, exclude=[train.csr(), valid.csr()])  # doctest: +SKIP

    Attributes (after fit):
        strength_: the chosen strength.
        met_: whether the validation estimate meets the target.
        threshold_: the absolute target value (relative targets resolved).
        frontier_: ``DataFrame(strength, target, ndcg, meets)`` of every evaluated strength.
        validation_: ``{"target", "ndcg", "base_target", "base_ndcg"}`` on validation.
        reranker_: the fitted re-ranker at ``strength_``; context_: the context used.
    """

    def __init__(self, config: SelfCalibrationConfig | dict[str, Any] | None = None, **kwargs: Any):
        self.config = build_config(SelfCalibrationConfig, config, kwargs, what="the self-calibration controller")
        config = self.config

    def fit(
        self,
        scores: ScoresLike,
        data: Split | Dataset,
        valid: Dataset | None = None,
        *,
        context: RerankContext | None = None,
    ) -> SelfCalibrator:
        """Tune on validation data.

        Args:
            scores: base scores for all users (``[n_users, n_items]``) or ``score_fn(users)``.
            data: a ``Split`` (only its ``train`` and ``valid`` are read) or the training set.
            valid: the validation set when ``data`` is the training set.
            context: a ready context (default: built from train and valid).
        """
        cfg = self.config
        if isinstance(data, Split):
            train, valid = data.train, data.valid
        else:
            train = data
        if valid is None:
            raise DataError("self-calibration needs validation data (pass a Split or valid=)")
        if context is None:
            attrs = list(train.schema.sensitive_names)
            for a in (cfg.target.attr, cfg.params.get("attr")):
                if a and a not in attrs:
                    attrs.append(a)
            context = RerankContext.from_datasets(train, valid, sensitive=attrs)
        if context.valid is None:
            raise DataError("the context has no validation interactions")
        vcsr = context.valid
        users = np.flatnonzero(np.diff(vcsr.indptr) > 0)
        cand = candidates(scores, users, n=cfg.n_candidates, exclude=[context.history])
        truth = vcsr[users]
        reranker = RERANKERS[cfg.method](
            {**cfg.params, "k": cfg.k, "n_candidates": cfg.n_candidates}
        ).fit(context, cand)
        tgt = cfg.target

        cache: dict[float, tuple[float, float]] = {}

        def at(lam: float) -> tuple[float, float]:
            lam = float(round(lam, 12))
            if lam not in cache:
                recs = reranker.with_strength(lam).rerank(cand, context)
                cache[lam] = (
                    measure(tgt.metric, recs, context, k=cfg.k, truth=truth, attr=tgt.attr),
                    measure("ndcg", recs, context, k=cfg.k, truth=truth),
                )
            return cache[lam]

        base_t, base_a = at(0.0)
        threshold = tgt.value * base_t if tgt.relative else tgt.value

        def meets(v: float) -> bool:
            return bool(np.isfinite(v) and (v <= threshold if tgt.op == "<=" else v >= threshold))

        grid = np.linspace(cfg.lo, cfg.hi, cfg.grid)
        ok = [meets(at(x)[0]) for x in grid]
        if any(ok):
            first = int(np.argmax(ok))
            if first > 0:
                a, b = float(grid[first - 1]), float(grid[first])
                for _ in range(cfg.refine):
                    mid = 0.5 * (a + b)
                    if meets(at(mid)[0]):
                        b = mid
                    else:
                        a = mid
        rows = sorted((lam, t, acc) for lam, (t, acc) in cache.items())
        frontier = pd.DataFrame(rows, columns=["strength", "target", "ndcg"])
        frontier["meets"] = [meets(v) for v in frontier["target"]]
        inside = frontier[(frontier["strength"] >= cfg.lo) & (frontier["strength"] <= cfg.hi)]
        feas = inside[inside["meets"]]
        if len(feas):
            best = feas.sort_values(["ndcg", "strength"], ascending=[False, True]).iloc[0]
            self.met_ = True
        else:
            sign = 1.0 if tgt.op == "<=" else -1.0
            miss = sign * (inside["target"] - threshold)
            best = inside.loc[miss.fillna(np.inf).idxmin()]
            self.met_ = False
            warnings.warn(
                f"self-calibration: no strength in [{cfg.lo}, {cfg.hi}] meets {tgt} on validation "
                f"(threshold {threshold:.4g}); chose the closest, see frontier_",
                stacklevel=2,
            )
        self.strength_ = float(best["strength"])
        self.threshold_ = float(threshold)
        self.frontier_ = frontier.reset_index(drop=True)
        self.validation_ = {
            "target": float(best["target"]),
            "ndcg": float(best["ndcg"]),
            "base_target": float(base_t),
            "base_ndcg": float(base_a),
        }
        self.reranker_ = reranker.with_strength(self.strength_)
        self.context_ = context
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "reranker_"):
            raise NotFittedError("SelfCalibrator is not fitted; call fit(scores, split) first")

    def rerank(
        self,
        x: Recs | ScoresLike,
        *,
        users: np.ndarray | None = None,
        exclude: Sequence[sp.csr_matrix] = (),
        context: RerankContext | None = None,
    ) -> Recs:
        """Re-rank with the chosen strength (see :meth:`Reranker.rerank`)."""
        self._check_fitted()
        return self.reranker_.rerank(x, context or self.context_, users=users, exclude=exclude)

    def evaluate(self, recs: Recs, held_out: Dataset | sp.csr_matrix) -> dict[str, float]:
        """Target metric and NDCG@k of ``recs`` against ``held_out`` (e.g. the test split).

        Call it only after fitting: it is how the validation estimate is checked, never an input.
        """
        self._check_fitted()
        csr = held_out.csr() if isinstance(held_out, Dataset) else sp.csr_matrix(held_out)
        truth = csr[np.asarray(recs.users, dtype=np.int64)]
        tgt, k = self.config.target, self.config.k
        return {
            "target": measure(tgt.metric, recs, self.context_, k=k, truth=truth, attr=tgt.attr),
            "ndcg": measure("ndcg", recs, self.context_, k=k, truth=truth),
        }

    def summary(self) -> dict[str, Any]:
        """Chosen strength, target and validation estimates (JSON-friendly)."""
        self._check_fitted()
        return {
            "method": self.config.method,
            "target": str(self.config.target),
            "threshold": self.threshold_,
            "strength": self.strength_,
            "met": self.met_,
            **{f"valid_{k}": v for k, v in self.validation_.items()},
        }


__all__ = [
    "RERANKERS",
    "SelfCalibrationConfig",
    "SelfCalibrator",
    "Target",
    "group_gap",
    "measure",
]
