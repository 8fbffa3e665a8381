"""Synthetic interaction data with a planted, known bias (for tests and scaling benchmarks).

Generative model (all parameters in :class:`SyntheticConfig`):

* Items have one primary genre (uniform) and a popularity weight ``w_i ∝ rank^-popularity_skew``
  (Zipf over a random permutation of items).
* Users belong to a binary ``gender`` group (``F`` with probability ``minority_share``) and an age
  (uniform over 15..64). Each group has its own favourite genres: the genre weights of a user are
  a Dirichlet draw multiplied by ``genre_bias`` on the group's favourite genres.
* Activity: the number of interactions of a user is geometric-like (log-normal) with mean
  ``mean_interactions`` for the majority and ``mean_interactions * activity_ratio`` for the
  minority (clipped to ``[min_interactions, n_items // 2]``).
* Choice: a user picks distinct items with probability ``∝ w_i * genre_weight[genre_i]``
  (Gumbel top-k sampling without replacement). A share ``noise_share[g]`` of each user's picks is
  replaced by uniformly random items, which plants a known quality gap: the noisier group's held-out
  items are less predictable.

The generator returns the dataset and a :class:`SyntheticTruth` with everything that was planted.
Generation is vectorised over user chunks, so ML-20M-sized data (138k users, 27k items) works.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from debiasrec.data.dataset import Dataset
from debiasrec.data.schema import ML1M_AGE_BINS, Schema, SensitiveAttr
from debiasrec.random import np_rng


class SyntheticConfig(BaseModel):
    """Parameters of the planted-bias generator (see module docstring)."""

    model_config = ConfigDict(extra="forbid")

    n_users: int = Field(1000, ge=2)
    n_items: int = Field(500, ge=10)
    n_genres: int = Field(8, ge=2)
    minority_share: float = Field(0.3, gt=0, lt=1)
    mean_interactions: float = Field(40.0, gt=0)
    activity_ratio: float = Field(1.0, gt=0)
    min_interactions: int = Field(5, ge=1)
    genre_bias: float = Field(4.0, ge=1.0)
    n_favourite_genres: int = Field(2, ge=1)
    popularity_skew: float = Field(0.8, ge=0.0)
    noise_share: tuple[float, float] = (0.0, 0.0)  # (majority M, minority F)
    chunk_users: int = Field(2048, ge=1)

    @model_validator(mode="after")
    def _check(self) -> SyntheticConfig:
        if 2 * self.n_favourite_genres > self.n_genres:
            raise ValueError(
                f"n_favourite_genres={self.n_favourite_genres} needs n_genres >= "
                f"{2 * self.n_favourite_genres} so that the two groups' favourites are disjoint "
                f"(got n_genres={self.n_genres})"
            )
        if not all(0.0 <= x <= 1.0 for x in self.noise_share):
            raise ValueError(f"noise_share values must lie in [0, 1], got {self.noise_share}")
        if self.min_interactions > self.n_items // 2:
            raise ValueError(
                f"min_interactions={self.min_interactions} exceeds the per-user cap "
                f"n_items // 2 = {self.n_items // 2}; lower it or raise n_items"
            )
        return self


@dataclass(frozen=True)
class SyntheticTruth:
    """What was planted: group of each user code (1 = minority ``F``), genre favourites, weights."""

    minority: np.ndarray
    favourite_genres: dict[str, list[int]]
    item_genre: np.ndarray
    item_weight: np.ndarray
    expected_activity: dict[str, float]
    noise_share: dict[str, float]


def generate(
    config: SyntheticConfig | None = None, *, rng: int | np.random.Generator | None = 0
) -> tuple[Dataset, SyntheticTruth]:
    """Generate a dataset with a planted bias; see the module docstring for the model."""
    cfg = config or SyntheticConfig()
    gen = np_rng(rng)
    n_u, n_i, n_g = cfg.n_users, cfg.n_items, cfg.n_genres

    item_genre = gen.integers(0, n_g, size=n_i)
    ranks = gen.permutation(n_i) + 1
    item_weight = ranks.astype(np.float64) ** (-cfg.popularity_skew)
    item_weight /= item_weight.sum()

    minority = gen.random(n_u) < cfg.minority_share
    genres = gen.permutation(n_g)
    fav_m = genres[: cfg.n_favourite_genres]
    fav_f = genres[cfg.n_favourite_genres : 2 * cfg.n_favourite_genres]
    boost = np.ones((2, n_g))
    boost[0, fav_m] = cfg.genre_bias
    boost[1, fav_f] = cfg.genre_bias

    mean_act = np.where(minority, cfg.mean_interactions * cfg.activity_ratio, cfg.mean_interactions)
    sigma = 0.5
    n_per_user = np.exp(np.log(mean_act) - sigma**2 / 2 + sigma * gen.standard_normal(n_u))
    n_per_user = np.clip(np.round(n_per_user), cfg.min_interactions, n_i // 2).astype(np.int64)
    noise = np.where(minority, cfg.noise_share[1], cfg.noise_share[0])

    log_w = np.log(item_weight)
    users_out, items_out = [], []
    for start in range(0, n_u, cfg.chunk_users):
        stop = min(start + cfg.chunk_users, n_u)
        m = stop - start
        pref = gen.dirichlet(np.ones(n_g), size=m) * boost[minority[start:stop].astype(int)]
        pref /= pref.sum(axis=1, keepdims=True)
        logits = log_w[None, :] + np.log(pref[:, item_genre])
        # Gumbel top-k = sampling without replacement proportional to exp(logits).
        keys = logits + gen.gumbel(size=(m, n_i))
        # Noisy picks: a share of each user's picks uses uniform keys instead.
        k = n_per_user[start:stop]
        kmax = int(k.max())
        top = np.argpartition(-keys, kmax - 1, axis=1)[:, :kmax]
        order = np.take_along_axis(keys, top, axis=1).argsort(axis=1)[:, ::-1]
        top = np.take_along_axis(top, order, axis=1)
        n_noise = np.floor(k * noise[start:stop] + gen.random(m)).astype(np.int64)
        n_noise = np.minimum(n_noise, k)
        if n_noise.any():
            ukeys = gen.random((m, n_i))
            # Exclude already chosen preference items from the uniform draw.
            chosen_mask = np.arange(kmax)[None, :] < (k - n_noise)[:, None]
            rows = np.repeat(np.arange(m), chosen_mask.sum(1))
            ukeys[rows, top[chosen_mask]] = -1.0
            utop = np.argsort(-ukeys, axis=1)[:, :kmax]
        else:
            utop = top
        pos = np.arange(kmax)[None, :]
        keep_pref = pos < (k - n_noise)[:, None]
        take_noise = (pos >= (k - n_noise)[:, None]) & (pos < k[:, None])
        noise_pos = pos - (k - n_noise)[:, None]
        noise_items = np.take_along_axis(utop, np.clip(noise_pos, 0, kmax - 1), axis=1)
        chosen = np.where(keep_pref, top, noise_items)
        valid = keep_pref | take_noise
        rows = np.repeat(np.arange(start, stop), valid.sum(1))
        users_out.append(rows)
        items_out.append(chosen[valid])
    users = np.concatenate(users_out).astype(np.int32)
    items = np.concatenate(items_out).astype(np.int32)
    n = len(users)
    ratings = np.clip(np.round(3.5 + gen.standard_normal(n)), 1, 5).astype(np.float32)
    timestamps = (
        1_000_000_000 + np.sort(gen.integers(0, 10**7, size=n))[gen.permutation(n)]
    ).astype(np.int64)

    user_table = pd.DataFrame(
        {
            "gender": np.where(minority, "F", "M"),
            "age": gen.integers(15, 65, size=n_u),
        }
    )
    genre_names = [f"genre{g}" for g in range(n_g)]
    item_table = pd.DataFrame(
        {
            "title": [f"Item {i}" for i in range(n_i)],
            "genres": [(genre_names[g],) for g in item_genre],
        }
    )
    schema = Schema(
        sensitive=(
            SensitiveAttr(name="gender", kind="binary"),
            SensitiveAttr(name="age", kind="ordinal", bins=ML1M_AGE_BINS),
        ),
        item_text=("title",),
        item_categories=("genres",),
    )
    ds = Dataset(
        users,
        items,
        user_vocab=pd.Index(np.arange(n_u), name="user_id"),
        item_vocab=pd.Index(np.arange(n_i), name="item_id"),
        ratings=ratings,
        timestamps=timestamps,
        user_table=user_table,
        item_table=item_table,
        schema=schema,
        name="synthetic",
    )
    truth = SyntheticTruth(
        minority=minority,
        favourite_genres={"M": fav_m.tolist(), "F": fav_f.tolist()},
        item_genre=item_genre,
        item_weight=item_weight,
        expected_activity={
            "M": cfg.mean_interactions,
            "F": cfg.mean_interactions * cfg.activity_ratio,
        },
        noise_share={"M": cfg.noise_share[0], "F": cfg.noise_share[1]},
    )
    return ds, truth
