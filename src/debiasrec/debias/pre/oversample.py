"""Random oversampling of under-represented groups with synthetic copies of real users.

The plain baseline every generator must beat (SMOTE's "random oversampling" control, Chawla et
al., JAIR 2002; for recommendation e.g. Rahmani et al., "Experiments on Generalizability of
User-Oriented Fairness in Recommender Systems", SIGIR 2022). For each eligible group ``g`` of the
attribute, ``round(ratio * U_max) - U_g`` new users are added, where ``U_g`` is the number of
training users of the group with at least one interaction; each new user is a copy (profile,
ratings, timestamps, weights and user-table row) of a real user of the group drawn uniformly
with replacement.

New users get fresh ids ``over:0, over:1, ...`` appended after the existing user codes
(:meth:`debiasrec.data.Dataset.append_users`): the original users keep their codes, so the
validation and test splits are unaffected, and the copies exist in training only.

Why new users and not duplicated rows: a model sees each (user, item) pair once (duplicate rows
are merged into one pair), so duplicating a user's rows changes nothing. Giving each of the
user's pairs the weight ``k`` is the duplicate-row equivalent and is what
:class:`~debiasrec.debias.pre.reweight.GroupReweight` with ``balance="users"`` does in
expectation.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from debiasrec.data.dataset import Dataset
from debiasrec.debias.pre._groups import (
    new_user_ids,
    new_users_table,
    top_up_plan,
)
from debiasrec.debias.pre.base import PreConfig, PreTransform, register
from debiasrec.random import np_rng


class OversampleConfig(PreConfig):
    """Settings of :class:`Oversample`."""

    attr: str = Field("gender", description="sensitive attribute (or intersection 'a&b')")
    groups: list[str] | None = Field(
        None, description="groups to top up (default: every group below the target)"
    )
    ratio: float = Field(
        1.0, gt=0.0, le=10.0, description="target users per group, as a multiple of the largest"
    )
    prefix: str = Field("over", min_length=1, description="prefix of the new user ids")


@register
class Oversample(PreTransform[OversampleConfig]):
    """Add copies of randomly drawn real users of under-represented groups (module docstring)."""

    name = "oversample"
    Config = OversampleConfig
    sweep_key = "ratio"

    def apply(self, train: Dataset, *, rng: np.random.Generator | int | None = None) -> Dataset:
        """Return ``train`` with the new users appended; ``report_`` gives the counts."""
        cfg = self.config
        gen = np_rng(rng)
        codes, labels, sizes, add = top_up_plan(train, cfg.attr, cfg.groups, cfg.ratio)
        active = train.user_counts() > 0
        sources = np.concatenate(
            [
                gen.choice(np.flatnonzero(active & (codes == g)), size=int(add[g]), replace=True)
                for g in range(len(labels))
                if add[g] > 0
            ]
            or [np.zeros(0, dtype=np.int64)]
        ).astype(np.int64)
        src_group = codes[sources]
        self.report_ = {
            "method": self.name,
            "attr": cfg.attr,
            "users_before": {g: int(sizes[k]) for k, g in enumerate(labels)},
            "users_added": {g: int(add[k]) for k, g in enumerate(labels)},
            "interactions_added": 0,
        }
        if len(sources) == 0:
            return train
        ids = new_user_ids(train, cfg.prefix, len(sources))
        table = new_users_table(train, ids, sources, cfg.attr, [labels[g] for g in src_group])
        rows, items = _copy_rows(train, sources)
        self.report_["interactions_added"] = int(len(rows))
        idx = _row_index(train, sources)
        return train.append_users(
            table,
            rows,
            items,
            ratings=None if train.ratings is None else train.ratings[idx],
            timestamps=None if train.timestamps is None else train.timestamps[idx],
            weights=None if train.weights is None else train.weights[idx],
            name=f"{train.name}+{self.name}",
        )


def _row_index(train: Dataset, sources: np.ndarray) -> np.ndarray:
    """Interaction rows of each source user, concatenated in ``sources`` order."""
    order = np.argsort(train.users, kind="stable")
    counts = train.user_counts()
    starts = np.concatenate([[0], np.cumsum(counts)])[:-1]
    lens = counts[sources]
    offs = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    return order[np.repeat(starts[sources], lens) + offs]


def _copy_rows(train: Dataset, sources: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(new-user row, item)`` of the copied interactions (all rows, duplicates kept)."""
    idx = _row_index(train, sources)
    lens = train.user_counts()[sources]
    return np.repeat(np.arange(len(sources)), lens), train.items[idx].astype(np.int64)


__all__ = ["Oversample", "OversampleConfig"]
