"""Group bookkeeping shared by the pre-processing transforms (group codes, balancing plans)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from debiasrec.data.dataset import Dataset
from debiasrec.errors import ConfigError


def group_codes(train: Dataset, attr: str) -> tuple[np.ndarray, list[str]]:
    """Group code of every user code (``-1``: missing attribute) and the group labels.

    Raises:
        DataError: ``attr`` is not a declared sensitive attribute (lists the available ones).
    """
    cat = train.user_groups(attr)
    return np.asarray(cat.codes, dtype=np.int64), [str(c) for c in cat.categories]


def active_users_per_group(train: Dataset, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Number of users with at least one interaction in each group."""
    active = train.user_counts() > 0
    return np.bincount(codes[active & (codes >= 0)], minlength=n_groups)


def resolve_groups(names: Sequence[str] | None, labels: list[str], field: str) -> list[int]:
    """Codes of the configured group ``names`` (all groups when ``None``).

    Raises:
        ConfigError: a name is not a group of the attribute (the message names ``field``).
    """
    if names is None:
        return list(range(len(labels)))
    out = []
    for n in names:
        if str(n) not in labels:
            raise ConfigError(f"{field}: unknown group {n!r}; groups of the attribute: {labels}")
        out.append(labels.index(str(n)))
    return out


def balance_plan(sizes: np.ndarray, eligible: list[int], ratio: float) -> np.ndarray:
    """New users per group so that each eligible group reaches ``ratio`` x the largest group.

    ``sizes`` are the current users per group; groups with no users get none (nothing to learn
    from or copy), groups already at or above the target get none.
    """
    target = int(round(ratio * int(sizes.max(initial=0))))
    add = np.zeros(len(sizes), dtype=np.int64)
    for g in eligible:
        if sizes[g] > 0:
            add[g] = max(target - int(sizes[g]), 0)
    return add


def top_up_plan(
    train: Dataset, attr: str, groups: Sequence[str] | None, ratio: float
) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """What a balancing transform adds: ``(codes, labels, sizes, add)``.

    ``codes``/``labels`` are the users' group codes and the group names of ``attr``, ``sizes`` the
    active users per group and ``add`` the users to add per group (:func:`balance_plan` over the
    groups named in ``groups``, default all).
    """
    codes, labels = group_codes(train, attr)
    eligible = resolve_groups(groups, labels, "groups")
    sizes = active_users_per_group(train, codes, len(labels))
    return codes, labels, sizes, balance_plan(sizes, eligible, ratio)


def profiles(train: Dataset, user_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interaction rows of ``user_codes`` as ``(row, item)`` pairs, ``row`` indexing them."""
    csr = train.csr()
    starts, ends = csr.indptr[user_codes], csr.indptr[user_codes + 1]
    lens = ends - starts
    rows = np.repeat(np.arange(len(user_codes)), lens)
    offs = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    return rows, csr.indices[np.repeat(starts, lens) + offs].astype(np.int64)


def new_user_ids(train: Dataset, prefix: str, n: int) -> list[str]:
    """``n`` user ids ``f"{prefix}:{k}"`` absent from ``train``'s vocabulary (k counts up)."""
    taken = set(train.user_vocab.astype(str))
    out: list[str] = []
    k = 0
    while len(out) < n:
        cand = f"{prefix}:{k}"
        if cand not in taken:
            out.append(cand)
        k += 1
    return out


def new_users_table(
    train: Dataset, ids: list[str], sources: np.ndarray, attr: str, group_labels: list[str]
) -> pd.DataFrame:
    """User-table rows of new users: copies of the ``sources`` users' rows, ``attr`` overridden.

    ``group_labels[r]`` is the group label of new user ``r`` for ``attr`` (a sensitive column; for
    a bucketed attribute, a representative raw value of the bucket is written, see
    :func:`group_values`).
    """
    table = train.user_table.iloc[sources].reset_index(drop=True).copy()
    for name in attr.split("&"):
        name = name.strip()
        spec = train.schema.attr(name)
        parts = [lab.split("&")[attr.split("&").index(name)] for lab in group_labels]
        table[spec.name] = group_values(train, spec.name, parts)
    table.insert(0, "user_id", pd.Index(ids, dtype=object))
    return table


def group_values(train: Dataset, col: str, labels: list[str]) -> list[object]:
    """A raw ``col`` value for each group label: the most common raw value among its users.

    For a binary/categorical attribute the label is the value itself; for an ordinal bucketed
    one (e.g. age buckets) it is the most frequent raw value within the bucket, so that
    ``Dataset.user_groups`` maps the new user back to that bucket.
    """
    cat = train.user_groups(col)
    raw = train.user_table[col]
    rep: dict[str, object] = {}
    for k, lab in enumerate(cat.categories):
        vals = raw[np.asarray(cat.codes) == k]
        rep[str(lab)] = vals.mode().iloc[0] if len(vals) else lab
    return [rep[lab] for lab in labels]
