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
  (successive sampling without replacement). A share ``noise_share[g]`` of each user's picks is
  replaced by uniformly random items (distinct from the user's other picks), which plants a known
  quality gap: the noisier group's held-out items are less predictable.

The generator returns the dataset and a :class:`SyntheticTruth` with everything that was planted.

Cost: sampling without replacement is done as successive sampling -- draw i.i.d. items with
replacement and keep the first ``k`` distinct ones per user, which has exactly the distribution of
drawing, removing and renormalising -- and each draw is two binary searches (genre from the user's
genre mixture, then item within the genre by popularity). Work and memory are therefore
proportional to the number of *interactions*, never ``users x items``: ML-20M-sized data (138k
users, 27k items, 20M interactions) takes seconds and a few hundred MiB beyond the output arrays.
Everything is vectorised over blocks of ``chunk_users`` users (no per-user Python).
"""

from __future__ import annotations

from collections.abc import Callable
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


_SEQ_BITS = 24  # draws per user in one block stay below 2**24


def _first_distinct(
    k: np.ndarray,
    draw: Callable[[np.ndarray], np.ndarray],
    n_items: int,
    *,
    prefix: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k[r]`` distinct items of an i.i.d. sequence of draws, for each row ``r``.

    ``draw(rows)`` returns one item per entry of ``rows`` (row indices, repeated). Each row's
    sequence may start with a fixed ``prefix`` of distinct items (``(rows, items)``, grouped by
    row). Rows are oversampled in rounds until each has ``k[r]`` distinct items. Returns flat
    ``(rows, items)``, grouped by row in sequence order. Duplicates are found with one sort of
    ``(row, item, position)`` keys packed in an int64 (no ``rows x items`` array).
    """
    m = len(k)
    k = np.asarray(k, dtype=np.int64)
    if m * n_items >= 1 << (63 - _SEQ_BITS):
        raise ValueError("block too large for packed keys; lower chunk_users")
    acc_r: list[np.ndarray] = []
    acc_i: list[np.ndarray] = []
    acc_s: list[np.ndarray] = []
    drawn = np.zeros(m, dtype=np.int64)
    if prefix is not None:
        pr, pi = (np.asarray(a, dtype=np.int64) for a in prefix)
        cnt = np.bincount(pr, minlength=m)
        acc_r.append(pr)
        acc_i.append(pi)
        acc_s.append(np.arange(len(pr)) - np.repeat(np.cumsum(cnt) - cnt, cnt))
        drawn += cnt
    have = drawn.copy()
    out_r: list[np.ndarray] = []
    out_i: list[np.ndarray] = []
    todo = np.arange(m)
    while len(todo):
        short = k[todo] - have[todo]
        d = np.where(short > 0, np.ceil(short * 1.25).astype(np.int64) + 4, 0)
        r = np.repeat(todo, d)
        seq = drawn[r] + np.arange(len(r)) - np.repeat(np.cumsum(d) - d, d)
        drawn[todo] += d
        if int(drawn.max(initial=0)) >= 1 << _SEQ_BITS:
            raise ValueError("could not draw enough distinct items (a user wants nearly all)")
        acc_r.append(r)
        acc_i.append(draw(r).astype(np.int64))
        acc_s.append(seq)
        rr, ii, ss = (np.concatenate(a) for a in (acc_r, acc_i, acc_s))
        packed = ((rr * n_items + ii) << _SEQ_BITS) | ss
        packed.sort()
        key = packed >> _SEQ_BITS
        first = np.ones(len(packed), dtype=bool)
        first[1:] = key[1:] != key[:-1]
        packed = packed[first]  # first occurrence of each (row, item)
        key = packed >> _SEQ_BITS
        rows, items = key // n_items, key % n_items
        order = np.argsort((rows << _SEQ_BITS) | (packed & ((1 << _SEQ_BITS) - 1)))
        rows, items = rows[order], items[order]
        have = np.bincount(rows, minlength=m)
        rank = np.arange(len(rows)) - np.repeat(np.cumsum(have) - have, have)
        done = have >= k
        take = done[rows] & (rank < k[rows])
        out_r.append(rows[take])
        out_i.append(items[take])
        done_now = done[todo]
        todo = todo[~done_now]
        keep = ~done[rr]
        acc_r, acc_i, acc_s = [rr[keep]], [ii[keep]], [ss[keep]]
    rows = np.concatenate(out_r) if out_r else np.zeros(0, np.int64)
    items = np.concatenate(out_i) if out_i else np.zeros(0, np.int64)
    order = np.argsort(rows, kind="stable")
    return rows[order], items[order]


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

    # Items grouped by genre; icdf[j] in (g, g + 1] is the within-genre cumulative popularity
    # of the j-th item of that grouping, offset by its genre g (one searchsorted draws an item).
    by_genre = np.argsort(item_genre, kind="stable")
    g_sorted = item_genre[by_genre]
    w_sorted = item_weight[by_genre]
    genre_w = np.bincount(item_genre, weights=item_weight, minlength=n_g)
    icdf = np.cumsum(w_sorted)
    starts = np.searchsorted(g_sorted, np.arange(n_g))
    before = np.concatenate([[0.0], icdf])[starts]  # weight of the genres before g
    icdf = g_sorted + (icdf - before[g_sorted]) / np.maximum(genre_w[g_sorted], 1e-300)
    ends = np.searchsorted(g_sorted, np.arange(n_g), side="right") - 1
    nonempty = ends >= starts
    icdf[ends[nonempty]] = np.arange(n_g)[nonempty] + 1.0  # exact upper ends: no spill-over

    users_out, items_out = [], []
    for start in range(0, n_u, cfg.chunk_users):
        stop = min(start + cfg.chunk_users, n_u)
        m = stop - start
        pref = gen.dirichlet(np.ones(n_g), size=m) * boost[minority[start:stop].astype(int)]
        mix = pref * genre_w[None, :]  # P(genre) of a draw, up to normalisation
        gcdf = np.cumsum(mix, axis=1)
        gcdf /= gcdf[:, -1:]
        gcdf[:, -1] = 1.0
        flat_gcdf = (gcdf + np.arange(m)[:, None]).ravel()

        def draw_pref(rows: np.ndarray, flat_gcdf: np.ndarray = flat_gcdf) -> np.ndarray:
            u = gen.random(len(rows)) + rows
            g = np.searchsorted(flat_gcdf, u, side="right") - rows * n_g
            g = np.minimum(g, n_g - 1)
            idx = np.searchsorted(icdf, g + gen.random(len(rows)), side="right")
            return by_genre[np.minimum(idx, n_i - 1)]

        def draw_uniform(rows: np.ndarray) -> np.ndarray:
            return gen.integers(0, n_i, size=len(rows))

        k = n_per_user[start:stop]
        n_noise = np.floor(k * noise[start:stop] + gen.random(m)).astype(np.int64)
        n_noise = np.minimum(n_noise, k)
        rows, items = _first_distinct(k - n_noise, draw_pref, n_i)
        if n_noise.any():
            # Noise picks continue each user's sequence with uniform draws, so they are distinct
            # from the preference picks and from each other.
            rows, items = _first_distinct(k, draw_uniform, n_i, prefix=(rows, items))
        users_out.append((rows + start).astype(np.int32))
        items_out.append(items.astype(np.int32))
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
