"""The counterfactual audit on a model whose dependence on the user text is known."""

from __future__ import annotations

import numpy as np
import pytest

from debiasrec.data.split import random_split
from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.errors import ConfigError, DataError
from debiasrec.experiment.llm_audit import AuditConfig, run_audit
from debiasrec.models import Pop


class TextSensitive:
    """Popularity, except that a text saying 'gender female' promotes the least popular items."""

    def __init__(self, train, shift: float) -> None:
        self.pop = np.asarray(train.csr().sum(0)).ravel().astype(np.float32)
        self.shift = shift

    def score_with_texts(self, users, texts):
        base = np.tile(self.pop, (len(users), 1))
        female = np.array(["gender female" in t for t in texts])
        base[female] -= self.shift * self.pop  # reverses the order when shift > 1
        return base


@pytest.fixture(scope="module")
def split():
    ds, _ = generate(SyntheticConfig(n_users=150, n_items=80, mean_interactions=12), rng=0)
    return random_split(ds, rng=0)


CFG = {"n_users": 100, "n_perm": 300, "n_boot": 50, "typo_seeds": 2, "attrs": ["gender", "age"]}


def _value(res, metric, group):
    return float(res[(res.metric == metric) & (res.group == group)].value.iloc[0])


def test_gender_effect_is_found_beyond_placebo_and_age_is_not(split) -> None:
    res, lists = run_audit(TextSensitive(split.train, 2.0), split, config=CFG, method="m")
    assert _value(res, "jaccard@10", "gender=M") == pytest.approx(1.0)
    assert _value(res, "jaccard@10", "gender=F") < 0.5
    assert _value(res, "snsr_jaccard@10", "gender") > 0.5
    assert _value(res, "snsr_jaccard@10", "age") == pytest.approx(0.0)
    assert _value(res, "snsr_jaccard@10", "placebo:colour") == pytest.approx(0.0)
    assert _value(res, "excess_snsr_jaccard@10", "gender") > 0.5
    ex = res[(res.metric == "excess_snsr_jaccard@10") & (res.group == "gender")].iloc[0]
    assert 0.5 < ex.ci_low <= ex.value <= ex.ci_high  # the CI excludes 0
    assert _value(res, "p_snsr_jaccard@10", "gender") < 0.05
    assert _value(res, "p_snsr_jaccard@10", "age") > 0.5
    assert set(res.columns) == {"method", "seed", "metric", "group", "value", "ci_low",
                                "ci_high", "n"}  # fmt: skip
    assert (res.method == "m").all()
    # Lists never contain training or validation items.
    tr = split.train.csr() + split.valid.csr()
    rows = lists[lists.item >= 0]
    assert tr[rows.user.to_numpy(), rows.item.to_numpy()].sum() == 0
    # True-preference alignment is reported per variant.
    assert {"neutral", "gender=F", "history=other"} <= set(
        res[res.metric == "cf_ndcg@10"].group)  # fmt: skip


def test_no_effect_model_gives_zero_ranges(split) -> None:
    res, _ = run_audit(TextSensitive(split.train, 0.0), split, config=CFG)
    snsr_rows = res[res.metric.str.startswith("snsr_")]
    assert np.allclose(snsr_rows.value, 0.0)


def test_models_without_text_and_bad_configs_are_refused(split) -> None:
    with pytest.raises(ConfigError, match="score_with_texts"):
        run_audit(Pop().fit(split.train), split, config=CFG)
    with pytest.raises(DataError, match="occupation"):  # has a phrase, but no such column
        run_audit(TextSensitive(split.train, 1.0), split, config={**CFG, "attrs": ["occupation"]})
    with pytest.raises(ConfigError, match="height"):
        run_audit(TextSensitive(split.train, 1.0), split, config={**CFG, "attrs": ["height"]})
    with pytest.raises(Exception, match="typo_seeds"):
        AuditConfig(typo_seeds=1)
