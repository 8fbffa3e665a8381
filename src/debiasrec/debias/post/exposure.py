"""Item-exposure fairness: minimum shares of protected item groups in every prefix of the list.

Two constraint families, both enforced greedily for all users at once:

- ``method="fair"`` (FA*IR; Zehlike et al., "FA*IR: A Fair Top-k Ranking Algorithm", CIKM 2017):
  a prefix of length ``t`` must hold at least ``m_g(t) = F^{-1}(alpha; t, p_g)`` items of protected
  group ``g``, with ``F^{-1}`` the inverse binomial CDF (``scipy.stats.binom.ppf``) and ``alpha``
  the significance of the ranked group fairness test (no multiple-testing adjustment; with several
  protected groups each gets its own binomial floor).
- ``method="det"`` (DetGreedy's minimum constraint; Geyik et al., "Fairness-Aware Ranking in
  Search & Recommendation Systems with Application to LinkedIn Talent Search", KDD 2019):
  ``m_g(t) = floor(p_g * t)``.

At each position ``t``: if some protected groups are below their floor, the user takes the
best-scored remaining candidate among those groups; otherwise the best-scored remaining candidate
overall (if a needed group has no candidate left, the constraint is dropped for that user).
The target proportions are ``p_g = strength * weight_g``; with the default ``long_tail`` grouping
(the non-head items of :func:`debiasrec.metrics.long_tail_share`, weight 1) ``strength`` is
FA*IR's ``p`` itself. Effects are measured with long-tail share (APLT), exposure Gini and per-group
exposure (:func:`debiasrec.metrics.item_group_exposure`).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field
from scipy import stats

from debiasrec.debias.post.base import RERANKERS, RerankConfig, RerankContext, Reranker, greedy_loop
from debiasrec.errors import ConfigError
from debiasrec.metrics.beyond import HEAD, TIER_NAMES, popularity_tiers


class ExposureConfig(RerankConfig):
    """Options of :class:`ExposureReranker`."""

    method: Literal["fair", "det"] = "fair"
    item_groups: Literal["long_tail", "tiers", "genre"] = "long_tail"
    weights: dict[str, float] | None = Field(
        None,
        description="protected group -> weight (target share at strength 1); default: long_tail "
        "-> 1; tiers -> mid 0.5, tail 0.5; genre -> 1/C for every genre",
    )
    alpha: float = Field(0.1, gt=0.0, lt=1.0, description="FA*IR significance level")
    head_share: float = Field(0.2, gt=0.0, lt=1.0, description="share of items in the short head")


def minimum_counts(
    k: int, p: np.ndarray, method: Literal["fair", "det"] = "fair", alpha: float = 0.1
) -> np.ndarray:
    """Floors ``m[t - 1, g]`` on the protected items of group ``g`` in a prefix of length ``t``.

    ``fair``: ``binom.ppf(alpha, t, p_g)`` (FA*IR); ``det``: ``floor(p_g * t)`` (DetGreedy).
    """
    t = np.arange(1, k + 1, dtype=np.float64)[:, None]
    pg = np.asarray(p, dtype=np.float64)[None, :]
    if method == "fair":
        m = stats.binom.ppf(alpha, t, pg)
        m = np.where(pg > 0, m, 0.0)
    elif method == "det":
        m = np.floor(pg * t + 1e-9)
    else:
        raise ConfigError(f"method must be 'fair' or 'det', got {method!r}")
    return np.nan_to_num(m).astype(np.int64)


def exposure_select(
    valid: np.ndarray, cand_group: np.ndarray, mins: np.ndarray, *, k: int
) -> np.ndarray:
    """Constrained greedy over score-sorted candidates for all users at once.

    Args:
        valid: ``[n, N]`` True for real candidates (sorted best first).
        cand_group: ``[n, N]`` protected-group index of each candidate, -1 = unprotected.
        mins: ``[k, G]`` minimum counts per prefix length (see :func:`minimum_counts`).
        k: list length.

    Returns:
        ``[n, k]`` chosen candidate columns (-1 when a user runs out).
    """
    n, n_cand = valid.shape
    n_groups = mins.shape[1]
    counts = np.zeros((n, n_groups), dtype=np.int64)
    order_obj = -np.broadcast_to(np.arange(n_cand, dtype=np.float64), (n, n_cand))
    gsafe = np.where(cand_group >= 0, cand_group, 0)
    rows_all = np.arange(n)[:, None]

    def objective(t: int, avail: np.ndarray) -> np.ndarray:
        below = counts < mins[t][None, :]  # [n, G]
        needed = np.where(cand_group >= 0, below[rows_all, gsafe], False) & avail
        any_needed = needed.any(axis=1, keepdims=True)
        allowed = np.where(any_needed, needed, avail)
        return np.where(allowed, order_obj, -1e18)

    def on_pick(rows: np.ndarray, cols: np.ndarray, has: np.ndarray) -> None:
        g = cand_group[rows, cols]
        ok = has & (g >= 0)
        np.add.at(counts, (rows[ok], g[ok]), 1)

    return greedy_loop(k, valid, objective, on_pick)


@RERANKERS.register
class ExposureReranker(Reranker[ExposureConfig]):
    """Proportional exposure of protected item groups (FA*IR or DetGreedy floors).

    ``strength`` scales the target shares: ``p_g = strength * weight_g``.

    Args:
        config: :class:`ExposureConfig` (or its fields as keywords).
        item_group_codes: optional ``[n_items]`` int array of item groups (e.g. providers),
            overriding ``item_groups``; then ``weights`` keys are the group codes as strings.
    """

    name = "exposure"
    Config = ExposureConfig

    def __init__(
        self,
        config: ExposureConfig | dict[str, Any] | None = None,
        *,
        item_group_codes: np.ndarray | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, **kwargs)
        self.item_group_codes = None if item_group_codes is None else np.asarray(item_group_codes)

    def item_groups(self, context: RerankContext) -> tuple[np.ndarray, list[str]]:
        """Group code of every item and the group names."""
        cfg = self.config
        if self.item_group_codes is not None:
            codes = self.item_group_codes.astype(np.int64)
            if codes.shape != (context.n_items,):
                raise ConfigError(
                    f"item_group_codes must have one code per item ({context.n_items}), "
                    f"got shape {codes.shape}"
                )
            return codes, [str(c) for c in range(int(codes.max()) + 1)]
        if cfg.item_groups == "long_tail":
            tiers = popularity_tiers(
                context.item_pop, cfg.head_share, 1 - cfg.head_share, by="items"
            )
            return (tiers != HEAD).astype(np.int64), ["head", "long_tail"]
        if cfg.item_groups == "tiers":
            return popularity_tiers(context.item_pop).astype(np.int64), list(TIER_NAMES)
        feats = context.require_features(self.name)
        dense = np.asarray(feats.todense())
        codes = np.where(dense.sum(axis=1) > 0, dense.argmax(axis=1), -1)
        names = context.feature_names or [str(j) for j in range(dense.shape[1])]
        return codes.astype(np.int64), list(names)

    def _weights(self, names: list[str]) -> dict[str, float]:
        w = self.config.weights
        if w is None:
            if self.item_group_codes is not None:
                raise ConfigError("give weights (group code -> target share) with item_group_codes")
            if self.config.item_groups == "long_tail":
                return {"long_tail": 1.0}
            if self.config.item_groups == "tiers":
                return {"mid": 0.5, "tail": 0.5}
            return {g: 1.0 / len(names) for g in names}
        unknown = set(w) - set(names)
        if unknown:
            raise ConfigError(
                f"unknown item group(s) {sorted(unknown)} in weights; groups: {names}"
            )
        if sum(w.values()) > 1.0 + 1e-9 or min(w.values()) < 0:
            raise ConfigError(f"weights must be >= 0 and sum to <= 1, got {w}")
        return dict(w)

    def _select(
        self,
        items: np.ndarray,
        rel: np.ndarray,
        valid: np.ndarray,
        users: np.ndarray,
        context: RerankContext,
    ) -> np.ndarray:
        cfg = self.config
        codes, names = self.item_groups(context)
        weights = self._weights(names)
        protected = [names.index(g) for g in weights]
        remap = np.full(len(names) + 1, -1, dtype=np.int64)
        remap[protected] = np.arange(len(protected))
        item_code = remap[np.where(codes >= 0, codes, len(names))]
        cand_group = np.where(valid, item_code[np.where(valid, items, 0)], -1)
        p = self.strength * np.array([weights[g] for g in weights])
        mins = minimum_counts(cfg.k, p, cfg.method, cfg.alpha)
        return exposure_select(valid, cand_group, mins, k=cfg.k)


__all__ = ["ExposureConfig", "ExposureReranker", "exposure_select", "minimum_counts"]
