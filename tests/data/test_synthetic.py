"""Synthetic generator: determinism, validity, and that every planted effect is really there."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from debiasrec.data.dataset import Dataset
from debiasrec.data.describe import gini
from debiasrec.data.synthetic import SyntheticConfig, SyntheticTruth, generate

SMALL = SyntheticConfig(n_users=300, n_items=120, mean_interactions=15, chunk_users=64)


@pytest.fixture(scope="module")
def biased() -> tuple[Dataset, SyntheticTruth]:
    cfg = SyntheticConfig(
        n_users=2000,
        n_items=300,
        mean_interactions=20,
        minority_share=0.3,
        activity_ratio=0.5,
        genre_bias=4.0,
    )
    return generate(cfg, rng=11)


def _pairs(ds: Dataset) -> np.ndarray:
    return ds.users.astype(np.int64) * ds.n_items + ds.items


def _genre_shares(ds: Dataset, truth: SyntheticTruth, mask_users: np.ndarray) -> np.ndarray:
    rows = mask_users[ds.users]
    counts = np.bincount(truth.item_genre[ds.items[rows]], minlength=len(set(truth.item_genre)))
    return counts / counts.sum()


# ---------------------------------------------------------------------------- basics


def test_deterministic_for_a_seed() -> None:
    a, ta = generate(SMALL, rng=5)
    b, tb = generate(SMALL, rng=5)
    for x, y in ((a.users, b.users), (a.items, b.items), (a.ratings, b.ratings)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    pd.testing.assert_frame_equal(a.user_table, b.user_table)
    np.testing.assert_array_equal(ta.minority, tb.minority)
    assert ta.favourite_genres == tb.favourite_genres
    assert a.fingerprint() == b.fingerprint()
    gen_a, _ = generate(SMALL, rng=np.random.default_rng(5))
    assert gen_a.fingerprint() == a.fingerprint()  # a seed and a Generator from it agree
    c, _ = generate(SMALL, rng=6)
    assert c.fingerprint() != a.fingerprint()
    assert not np.array_equal(_pairs(a)[:100], _pairs(c)[:100])


def test_default_config_and_default_seed() -> None:
    cfg = SyntheticConfig()
    assert (cfg.n_users, cfg.n_items, cfg.n_genres, cfg.minority_share) == (1000, 500, 8, 0.3)
    a, _ = generate(SMALL)
    b, _ = generate(SMALL, rng=0)
    assert a.fingerprint() == b.fingerprint()


@pytest.mark.parametrize(
    "cfg",
    [
        SMALL,
        SMALL.model_copy(update={"noise_share": (0.3, 0.7)}),
        SMALL.model_copy(update={"noise_share": (1.0, 1.0), "chunk_users": 7}),
        SyntheticConfig(n_users=50, n_items=20, mean_interactions=30, min_interactions=3),
    ],
    ids=["plain", "noisy", "all-noise", "dense"],
)
def test_valid_interactions(cfg: SyntheticConfig) -> None:
    ds, _ = generate(cfg, rng=1)
    assert (ds.n_users, ds.n_items) == (cfg.n_users, cfg.n_items)
    pairs = _pairs(ds)
    assert len(np.unique(pairs)) == len(pairs)  # no duplicate (user, item)
    counts = ds.user_counts()
    assert counts.min() >= cfg.min_interactions
    assert counts.max() <= cfg.n_items // 2
    assert ds.ratings.min() >= 1 and ds.ratings.max() <= 5
    assert set(np.unique(ds.ratings).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert len(ds.timestamps) == len(ds) and ds.timestamps.min() >= 1_000_000_000


def test_dataset_shape_schema_and_tables() -> None:
    ds, truth = generate(SMALL, rng=2)
    assert ds.name == "synthetic"
    assert ds.user_vocab.tolist() == list(range(300))
    assert ds.item_vocab.tolist() == list(range(120))
    assert list(ds.user_table.columns) == ["gender", "age"]
    assert list(ds.item_table.columns) == ["title", "genres"]
    assert ds.item_table["title"].iloc[7] == "Item 7"
    assert ds.schema.sensitive_names == ["gender", "age"]
    assert ds.schema.item_categories == ("genres",) and ds.schema.item_text == ("title",)
    ages = ds.user_table["age"]
    assert ages.min() >= 15 and ages.max() <= 64
    assert set(ds.user_groups("age").categories) == {
        "<18",
        "18-24",
        "25-34",
        "35-44",
        "45-49",
        "50-55",
        "56+",
    }
    assert ds.user_groups("gender&age").categories[0] == "F&<18"
    m, genres = ds.item_category_matrix("genres")
    assert genres == [f"genre{g}" for g in range(8)]
    assert m.sum(axis=1).A1.tolist() == [1.0] * 120  # one genre per item
    np.testing.assert_array_equal(m.toarray().argmax(axis=1), truth.item_genre)


def test_truth_is_consistent_with_the_dataset() -> None:
    cfg = SMALL.model_copy(update={"activity_ratio": 0.5, "noise_share": (0.1, 0.4)})
    ds, truth = generate(cfg, rng=3)
    np.testing.assert_array_equal(truth.minority, ds.user_table["gender"].to_numpy() == "F")
    np.testing.assert_array_equal(truth.minority, ds.user_groups("gender").codes == 0)
    fav_m, fav_f = truth.favourite_genres["M"], truth.favourite_genres["F"]
    assert len(fav_m) == len(fav_f) == cfg.n_favourite_genres
    assert not set(fav_m) & set(fav_f)
    assert set(fav_m) | set(fav_f) <= set(range(cfg.n_genres))
    assert truth.item_genre.shape == (cfg.n_items,)
    assert ds.item_table["genres"].tolist() == [(f"genre{g}",) for g in truth.item_genre]
    assert truth.item_weight.shape == (cfg.n_items,)
    assert truth.item_weight.sum() == pytest.approx(1.0)
    assert truth.expected_activity == {"M": 15.0, "F": 7.5}
    assert truth.noise_share == {"M": 0.1, "F": 0.4}


def test_item_weights_follow_zipf_over_ranks() -> None:
    cfg = SMALL.model_copy(update={"popularity_skew": 1.3})
    _, truth = generate(cfg, rng=4)
    w = np.sort(truth.item_weight)[::-1]
    ranks = np.arange(1, cfg.n_items + 1)
    np.testing.assert_allclose(w, ranks**-1.3 / np.sum(ranks**-1.3), rtol=1e-12)


# ---------------------------------------------------------------------------- planted effects


def test_minority_share_planted(biased: tuple[Dataset, SyntheticTruth]) -> None:
    _, truth = biased
    assert truth.minority.mean() == pytest.approx(0.3, abs=0.04)


def test_activity_ratio_planted(biased: tuple[Dataset, SyntheticTruth]) -> None:
    ds, truth = biased
    counts = ds.user_counts()
    ratio = counts[truth.minority].mean() / counts[~truth.minority].mean()
    assert ratio == pytest.approx(0.5, rel=0.15)
    assert counts[~truth.minority].mean() == pytest.approx(20, rel=0.15)


def test_equal_activity_when_ratio_is_one() -> None:
    ds, truth = generate(SyntheticConfig(n_users=2000, n_items=300, mean_interactions=20), rng=12)
    counts = ds.user_counts()
    ratio = counts[truth.minority].mean() / counts[~truth.minority].mean()
    assert ratio == pytest.approx(1.0, rel=0.1)


def test_genre_bias_planted(biased: tuple[Dataset, SyntheticTruth]) -> None:
    ds, truth = biased
    for group, is_group in (("F", truth.minority), ("M", ~truth.minority)):
        fav = truth.favourite_genres[group]
        own = _genre_shares(ds, truth, is_group)[fav].sum()
        other = _genre_shares(ds, truth, ~is_group)[fav].sum()
        assert own > other + 0.15, (group, own, other)


def test_no_genre_bias_without_boost() -> None:
    cfg = SyntheticConfig(n_users=2000, n_items=300, mean_interactions=20, genre_bias=1.0)
    ds, truth = generate(cfg, rng=11)
    fav = truth.favourite_genres["F"]
    own = _genre_shares(ds, truth, truth.minority)[fav].sum()
    other = _genre_shares(ds, truth, ~truth.minority)[fav].sum()
    assert own == pytest.approx(other, abs=0.05)


def test_noise_share_planted() -> None:
    cfg = SyntheticConfig(n_users=800, n_items=300, mean_interactions=20, noise_share=(0.0, 1.0))
    ds, truth = generate(cfg, rng=13)
    catalogue = np.bincount(truth.item_genre, minlength=cfg.n_genres) / cfg.n_items
    noisy = _genre_shares(ds, truth, truth.minority)
    clean = _genre_shares(ds, truth, ~truth.minority)
    # All minority picks are uniform over items: genres follow the catalogue (total variation).
    assert np.abs(noisy - catalogue).sum() < 0.08
    # The noiseless majority's picks follow its preferences, far from uniform.
    assert np.abs(clean - catalogue).sum() > 0.3
    # Uniform picks also ignore popularity: the minority's items are far less concentrated.
    pop_min = np.bincount(ds.items[truth.minority[ds.users]], minlength=cfg.n_items)
    pop_maj = np.bincount(ds.items[~truth.minority[ds.users]], minlength=cfg.n_items)
    assert gini(pop_min) < gini(pop_maj) - 0.2


def test_popularity_skew_raises_concentration() -> None:
    ginis = []
    for skew in (0.0, 0.8, 1.5):
        cfg = SyntheticConfig(n_users=500, n_items=300, mean_interactions=20, popularity_skew=skew)
        ds, truth = generate(cfg, rng=14)
        ginis.append(gini(ds.item_counts()))
        if skew == 0.0:
            np.testing.assert_allclose(truth.item_weight, 1 / 300)
    assert ginis[0] < ginis[1] - 0.1 < ginis[2] - 0.2


def test_chunking_keeps_every_user() -> None:
    ds, truth = generate(SMALL.model_copy(update={"chunk_users": 7}), rng=1)
    assert (ds.user_counts() >= SMALL.min_interactions).all()
    assert np.unique(ds.users).tolist() == list(range(300))
    assert len(truth.minority) == 300


# ---------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"n_genres": 3, "n_favourite_genres": 2}, "needs n_genres >= 4"),
        ({"noise_share": (0.0, 1.5)}, r"noise_share values must lie in \[0, 1\]"),
        ({"noise_share": (-0.1, 0.0)}, r"noise_share values must lie in \[0, 1\]"),
        ({"n_items": 10, "min_interactions": 6}, "exceeds the per-user cap"),
        ({"minority_share": 1.0}, "minority_share"),
        ({"activity_ratio": 0.0}, "activity_ratio"),
        ({"genre_bias": 0.5}, "genre_bias"),
        ({"n_users": 1}, "n_users"),
        ({"n_itmes": 10}, "n_itmes"),
    ],
)
def test_config_rejects(update: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SyntheticConfig(**update)


def test_config_accepts_the_edges() -> None:
    cfg = SyntheticConfig(n_genres=4, n_favourite_genres=2, noise_share=(0.0, 1.0))
    assert cfg.n_favourite_genres == 2
    assert SyntheticConfig(n_items=10, min_interactions=5).min_interactions == 5
