"""Adding a model, a metric or a re-ranker takes one source file and one test file.

Each throw-away component below is written the way docs/contributing.md shows, registered, and
then used by name from an experiment config with no edit anywhere else: the model trains and is
evaluated, the metric appears in the results (overall, per group, gaps, CIs), in the report and
in the cache keys, and the re-ranker runs as a post-processing method.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import Field

from debiasrec.data.dataset import Dataset
from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.debias.post.base import RERANKERS, RerankConfig, RerankContext, Reranker
from debiasrec.experiment.runner import ExperimentConfig, run_experiment
from debiasrec.metrics.registry import METRICS, MetricInput, register_metric
from debiasrec.models.base import MODELS, ModelConfig, Recommender
from debiasrec.models.capabilities import WeightedTraining
from debiasrec.report.html import write_report


# ---------------------------------------------------------------------------- a model (one file)
class NoisyPopConfig(ModelConfig):
    noise: float = Field(0.1, ge=0.0, description="std of the per-user noise added to popularity")


class NoisyPop(Recommender[NoisyPopConfig], WeightedTraining):
    """Weighted popularity plus per-user Gaussian noise (a throw-away example model)."""

    name = "test_noisy_pop"
    Config = NoisyPopConfig

    def _fit(self, train: Dataset, *, valid: Dataset | None, rng: Any) -> None:
        w = np.ones(len(train)) if train.weights is None else train.weights
        self.pop_ = np.bincount(train.items, weights=w, minlength=train.n_items).astype(np.float32)
        self.noise_ = (
            np.random.default_rng(rng)
            .normal(0.0, self.config.noise, (train.n_users, train.n_items))
            .astype(np.float32)
        )

    def _score(self, users: np.ndarray) -> np.ndarray:
        return self.pop_[None, :] + self.noise_[users]

    def _state(self) -> dict[str, np.ndarray]:  # saved as safetensors (no pickle)
        return {"pop": self.pop_, "noise": self.noise_}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.pop_, self.noise_ = state["pop"], state["noise"]


# ---------------------------------------------------------------------------- a metric (one file)
def _first_hit_rank(inp: MetricInput, k: int) -> np.ndarray:
    """Rank (1 = top) of the first held-out item in the top K; NaN when there is none."""
    assert inp.truth is not None
    top = inp.topk[:, :k]
    rows = np.repeat(np.arange(len(top)), k)
    hit = np.asarray(inp.truth[rows, np.maximum(top.ravel(), 0)]).reshape(top.shape) > 0
    hit &= top >= 0
    first = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1.0, np.nan)
    return first


# ---------------------------------------------------------------------------- a re-ranker
class ReverseConfig(RerankConfig):
    pass


class ReverseReranker(Reranker[ReverseConfig]):
    """At strength 1, lists the candidates from the lowest score up (a throw-away example)."""

    name = "test_reverse"
    Config = ReverseConfig

    def _select(self, items, rel, valid, users, context: RerankContext) -> np.ndarray:  # noqa: ANN001
        obj = np.where(valid, (1 - 2 * self.strength) * rel, -np.inf)
        order = np.argsort(-obj, axis=1, kind="stable")[:, : self.config.k]
        return np.where(np.take_along_axis(valid, order, 1), order, -1)


@pytest.fixture()
def registered() -> Iterator[None]:
    MODELS.register(NoisyPop)
    RERANKERS.register(ReverseReranker)
    register_metric(
        _first_hit_rank, name="test_first_hit", family="ranking", needs=("truth",),
        higher_is_better=False,
    )  # fmt: skip
    try:
        yield
    finally:
        MODELS.unregister("test_noisy_pop")
        RERANKERS.unregister("test_reverse")
        METRICS.unregister("test_first_hit")


def _data(tmp_path: Path) -> dict[str, str]:
    ds, _ = generate(SyntheticConfig(n_users=60, n_items=40, mean_interactions=10), rng=0)
    paths = {k: str(tmp_path / f"{k}.parquet") for k in ("source", "users", "items")}
    ds.interactions_frame().to_parquet(paths["source"], index=False)
    ds.users_frame().to_parquet(paths["users"], index=False)
    items = ds.items_frame()
    items["genres"] = items["genres"].map(list)
    items.to_parquet(paths["items"], index=False)
    return paths


def test_new_components_work_by_name_everywhere(registered, tmp_path: Path) -> None:
    cfg = ExperimentConfig.model_validate(
        {
            "data": {**_data(tmp_path), "sensitive": ["gender"]},
            "models": [{"kind": "test_noisy_pop", "params": {"noise": 0.5}}],
            "methods": [
                {"name": "rev", "model": "test_noisy_pop",
                 "post": [{"kind": "test_reverse", "strength": 1.0}]},
                {"name": "rw", "model": "test_noisy_pop",
                 "pre": [{"kind": "group_reweight", "attr": "gender"}]},
            ],
            "eval": {"ks": [5], "n_boot": 20},
        }
    )  # fmt: skip
    out = tmp_path / "run"
    result = run_experiment(cfg, out)
    res = result.results
    # The metric: per user, aggregated overall, by group, with a gap and CIs.
    first = res[res.metric == "test_first_hit@5"]
    assert set(first.method) == {"test_noisy_pop", "rev", "rw"}
    assert {"all", "gender=F", "gender=M"} <= set(first.group)
    assert (res.metric == "gap_test_first_hit@5").any()
    assert first[first.group == "all"].ci_low.notna().all()
    # By hand: the metric's per-user values equal the first hit in the saved lists.
    ev = result.evaluations[("test_noisy_pop", 0)]
    truth = result.split.test.csr()
    for row, user in enumerate(ev.users[:10]):
        ranks = [r + 1 for r, i in enumerate(ev.topk[row, :5]) if i >= 0 and truth[user, i]]
        want = ranks[0] if ranks else np.nan
        np.testing.assert_equal(ev.per_user["test_first_hit@5"].iloc[row], want)
    # The re-ranker ran as a post-processing method: at strength 1 it lists the lowest-scored
    # candidates, lowest first (the saved scores are the base model's).
    base = pd.read_parquet(out / "recs" / "test_noisy_pop.parquet")
    rev = pd.read_parquet(out / "recs" / "rev.parquet")
    assert len(rev) == len(base)
    for user, sub in rev.groupby("user_id"):
        scores = sub.sort_values("rank")["score"].to_numpy()
        assert (np.diff(scores) >= 0).all()
        assert scores.max() <= base[base.user_id == user]["score"].min()
    assert (res[res.method == "rev"].metric == "ndcg@5").any()
    # The model honours weights (it declares WeightedTraining, so group_reweight was accepted).
    assert "rw" in set(res.method)
    # The report shows the metric without any edit to the report code.
    write_report(out)
    assert "test_first_hit@5" in (out / "report.md").read_text()
    assert "test_first_hit@5" in (out / "report.html").read_text()
    # The stage cache: a re-run recomputes nothing.
    again = run_experiment(cfg, out)
    totals = again.stages.totals()
    assert totals["fit"]["computed"] == 0 and totals["eval"]["computed"] == 0


def test_unregistered_components_are_named_in_the_error(tmp_path: Path) -> None:
    from debiasrec.config import validate
    from debiasrec.errors import ConfigError

    with pytest.raises(ConfigError, match=r"models\[0\]\.kind: unknown model 'test_noisy_pop'"):
        validate(ExperimentConfig, {"models": [{"kind": "test_noisy_pop"}]})
