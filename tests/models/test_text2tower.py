"""TextTwoTower: contract, text inputs, counterfactual scoring, tuning, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from debiasrec.data.split import random_split  # noqa: E402
from debiasrec.data.synthetic import SyntheticConfig, generate  # noqa: E402
from debiasrec.debias.inproc.adversarial import Adversarial  # noqa: E402
from debiasrec.errors import ConfigError  # noqa: E402
from debiasrec.models import TextTwoTower  # noqa: E402
from debiasrec.testing import RecommenderContract  # noqa: E402

#: Tests that encode text need the offline MiniLM package (skipped with the pip command without it).
needs_minilm = pytest.mark.offline_model("minilm")

_FAST = {"epochs": 4, "eval_every": 1, "patience": 2, "batch_size": 32, "lr": 0.01}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("t2t_cache"))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@needs_minilm
class TestTextTwoTower(RecommenderContract):
    component = TextTwoTower
    params = {"dim": 8, "hidden": 16, "train": _FAST}


@pytest.fixture(scope="module")
def split():
    ds, truth = generate(SyntheticConfig(n_users=120, n_items=60, mean_interactions=15), rng=1)
    return random_split(ds, rng=1)


@needs_minilm
def test_learns_beyond_popularity_and_text_only_mode_works(split, cache) -> None:
    from debiasrec.models import Pop
    from debiasrec.training.trainer import validation_score

    pop = validation_score(Pop().fit(split.train).score, split.train, split.test)
    m = TextTwoTower(cache_dir=cache, dim=16, hidden=32, train={**_FAST, "epochs": 30,
                                                                  "patience": 30})  # fmt: skip
    m.fit(split.train, valid=split.valid, rng=0)
    assert validation_score(m.score, split.train, split.test) > pop
    losses = [row.get("loss_softmax", row.get("loss_bpr")) for row in m.history_.epochs]
    assert losses[-1] < losses[0]
    text_only = TextTwoTower(cache_dir=cache, item_ids=False, dim=8, hidden=16, train=_FAST)
    text_only.fit(split.train, rng=0)
    assert text_only.module.item_id is None and np.isfinite(text_only.score([0, 1])).all()


@needs_minilm
def test_profile_fields_enter_only_through_the_user_text(split, cache) -> None:
    assert TextTwoTower().config.profile is False  # no sensitive input unless asked for
    with_p = TextTwoTower(cache_dir=cache, profile=True, dim=8, hidden=16, train=_FAST)
    without = TextTwoTower(cache_dir=cache, profile=False, dim=8, hidden=16, train=_FAST)
    t_with = with_p.user_texts(split.train, [0])[0]
    t_without = without.user_texts(split.train, [0])[0]
    assert "gender" in t_with and "age" in t_with
    assert "gender" not in t_without and "age" not in t_without
    without.fit(split.train, rng=0)
    # Without profile fields the stored user-text embeddings are those of the history-only text.
    from debiasrec.lm.encoder import SentenceEncoder

    ref = SentenceEncoder(cache_dir=cache).encode([t_without])[0]
    np.testing.assert_allclose(without.module.user_text[0].numpy(), ref, atol=1e-6)


@needs_minilm
def test_score_with_texts_matches_score_and_reacts_to_the_text(split, cache) -> None:
    m = TextTwoTower(cache_dir=cache, profile=True, dim=8, hidden=16, train=_FAST)
    m.fit(split.train, rng=0)
    users = np.arange(6)
    texts = m.user_texts(split.train, users)
    np.testing.assert_allclose(m.score_with_texts(users, texts), m.score(users), atol=1e-5)
    from debiasrec.lm.templates import Variant

    swapped = m.renderer(split.train).user_texts(users, Variant("F", set={"gender": "F"}))
    changed = m.score_with_texts(users, swapped)
    males = split.train.user_table.gender.to_numpy()[users] == "M"
    assert males.any()
    assert np.abs(changed - m.score(users))[males].max() > 1e-4  # text -> scores
    assert np.abs(changed - m.score(users))[~males].max(initial=0.0) < 1e-5  # unchanged texts
    other = m.score_with_texts(users, texts, history_users=users[::-1])
    assert np.abs(other - m.score(users)).max() > 1e-4
    with pytest.raises(Exception, match="texts"):
        m.score_with_texts(users, texts[:2])


@needs_minilm
def test_save_load_round_trip(split, cache, tmp_path) -> None:
    m = TextTwoTower(cache_dir=cache, dim=8, hidden=16, train=_FAST).fit(split.train, rng=0)
    m.save(tmp_path / "m")
    back = TextTwoTower.load(tmp_path / "m")
    np.testing.assert_allclose(back.score([0, 5, 9]), m.score([0, 5, 9]), atol=1e-6)
    texts = m.user_texts(split.train, [0, 1])
    np.testing.assert_allclose(
        back.score_with_texts([0, 1], texts), m.score_with_texts([0, 1], texts), atol=1e-5
    )


@needs_minilm
def test_last_layer_tuning_changes_item_text_embeddings(split, cache) -> None:
    frozen = TextTwoTower(cache_dir=cache, dim=8, hidden=16, train=_FAST).fit(split.train, rng=0)
    tuned = TextTwoTower(cache_dir=cache, dim=8, hidden=16, tune="last_layer",
                         train={**_FAST, "epochs": 2}).fit(split.train, rng=0)  # fmt: skip
    d = np.abs(tuned.item_text_embeddings() - frozen.item_text_embeddings()).max()
    assert d > 1e-4
    assert tuned.module.last_layer is None  # folded into the stored embeddings after fit
    assert np.isfinite(tuned.score([0, 1])).all()


@needs_minilm
def test_bpr_loss_and_sampled_softmax(split, cache) -> None:
    for kw in ({"loss": "bpr"}, {"full_softmax_max_items": 10, "n_negatives": 16}):
        m = TextTwoTower(cache_dir=cache, dim=8, hidden=16, train={**_FAST, "epochs": 6}, **kw)
        m.fit(split.train, rng=0)
        losses = [row.get("loss_softmax", row.get("loss_bpr")) for row in m.history_.epochs]
        assert losses[-1] < losses[0], kw


@needs_minilm
def test_adversary_sees_the_user_tower(split, cache) -> None:
    adv = Adversarial(attrs=["gender"], strength=0.5)
    m = TextTwoTower(cache_dir=cache, dim=8, hidden=16, train=_FAST, strategies=[adv])
    m.fit(split.train, valid=split.valid, rng=0)
    assert "leak_auc_gender" in m.history_.epochs[-1]


def test_bad_config(cache) -> None:
    with pytest.raises(ConfigError, match="history_dropout"):
        TextTwoTower(history_dropout=1.5)
    with pytest.raises(ConfigError, match="user_text and history"):
        from debiasrec.data.synthetic import SyntheticConfig as C

        ds, _ = generate(C(n_users=20, n_items=10), rng=0)
        TextTwoTower(cache_dir=cache, user_text=False, history=False).fit(ds)


@needs_minilm
def test_counterfactual_text_augmentation_weakens_the_reaction_to_gender(split, cache) -> None:
    from debiasrec.lm.templates import Variant

    def gender_effect(model) -> float:
        users = np.arange(split.train.n_users)
        r = model.renderer(split.train)
        f = model.score_with_texts(users, r.user_texts(users, Variant("F", set={"gender": "F"})))
        m = model.score_with_texts(users, r.user_texts(users, Variant("M", set={"gender": "M"})))
        return float(np.abs(f - m).mean() / np.abs(m).mean())

    kw = {"cache_dir": cache, "profile": True, "dim": 16, "hidden": 32,
          "train": {**_FAST, "epochs": 15, "patience": 15}}  # fmt: skip
    plain = TextTwoTower(**kw).fit(split.train, rng=0)
    aug = TextTwoTower(counterfactual_text=["swap", "remove"], **kw).fit(split.train, rng=0)
    assert aug._cf_text is None  # training-only
    assert gender_effect(aug) < 0.7 * gender_effect(plain)
    with pytest.raises(ConfigError, match="profile=True"):
        TextTwoTower(cache_dir=cache, counterfactual_text=["swap"], dim=8, hidden=16,
                     train=_FAST).fit(split.train, rng=0)  # fmt: skip


@needs_minilm
def test_multitask_heads_train_on_text_item_representations(split, cache) -> None:
    """text2tower + multitask (issue 18): the item tower's ``item_repr(items)`` feeds the genre
    head; the run trains the head (its loss is logged and falls) and the model still scores."""
    from debiasrec.debias.inproc.multitask import MultiTask

    mt = MultiTask(tasks=[{"kind": "genre"}])
    m = TextTwoTower(cache_dir=cache, dim=8, hidden=16, strategies=[mt],
                     train={**_FAST, "epochs": 6, "patience": 6})  # fmt: skip
    m.fit(split.train, valid=split.valid, rng=0)
    rows = [r["loss_mt_genre"] for r in m.history_.epochs]
    assert len(rows) == 6 and rows[-1] < rows[0]
    q = m.item_repr(torch.tensor([0, 3, 5]))
    assert q.shape == (3, 8)
    assert np.isfinite(m.score([0, 1])).all()
