"""Transparency data for a sample of users: why each item was recommended, what debiasing changed.

For each sampled test user and each result method, every item of the top-``K`` list is explained
by the user's training items most similar to it (``because``): cosine of the model's item
embeddings when it has ``item_embeddings()`` (BPR), the model's item-item similarity when it has
``item_similarity()`` (ItemKNN), else the cosine of item co-occurrence columns in the training
matrix. Each list is compared with the list of the method's base model: ``status`` is ``kept``
or ``added``, and base-model items no longer recommended are rows with status ``removed``.

``calibration_sample`` gives, for the same users, the genre distribution of the history and of
each method's list (the distributions behind Steck's miscalibration).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from debiasrec.data.dataset import Dataset
from debiasrec.metrics.calibration import item_category_distribution, user_distribution
from debiasrec.models.base import Recommender

EXPLAIN_COLUMNS = [
    "method",
    "base",
    "user_id",
    "rank",
    "item_id",
    "title",
    "status",
    "because",
    "because_ids",
    "similarity",
    "source",
]


def sample_users(test: Dataset, n: int, seed: int) -> np.ndarray:
    """``n`` test users (codes, sorted), drawn with ``seed`` among users with test items."""
    users = np.flatnonzero(test.user_counts() > 0)
    if len(users) <= n:
        return users
    return np.sort(np.random.default_rng(seed).choice(users, size=n, replace=False))


class _Similarity:
    """Item-item similarity from a model (embeddings / neighbourhood) or from co-occurrence."""

    def __init__(self, model: Recommender | None, train: Dataset) -> None:
        self.source = "co-occurrence"
        self._emb: np.ndarray | None = None
        self._w: sp.csr_matrix | None = None
        if model is not None and hasattr(model, "item_embeddings"):
            try:
                e = np.asarray(model.item_embeddings(), dtype=np.float64)
                self._emb = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
                self.source = "item embeddings"
            except (NotImplementedError, AttributeError):
                self._emb = None
        if self._emb is None and model is not None and hasattr(model, "item_similarity"):
            w = sp.csr_matrix(model.item_similarity())
            self._w = (w + w.T).tocsr()
            self.source = "item-item similarity"
        if self._emb is None and self._w is None:
            x = sp.csc_matrix(train.csr(), dtype=np.float64)
            norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0))).ravel()
            self._x = x
            self._norms = np.maximum(norms, 1e-12)

    def between(self, items: np.ndarray, history: np.ndarray) -> np.ndarray:
        """``[len(items), len(history)]`` similarities."""
        if self._emb is not None:
            return self._emb[items] @ self._emb[history].T
        if self._w is not None:
            return self._w[items][:, history].toarray()
        co = (self._x[:, items].T @ self._x[:, history]).toarray()
        return co / (self._norms[items][:, None] * self._norms[history][None, :])


def explanations(
    lists: Mapping[str, tuple[np.ndarray, np.ndarray]],
    bases: Mapping[str, str],
    models: Mapping[str, Recommender | None],
    train: Dataset,
    users: np.ndarray,
    *,
    k: int,
    n_because: int = 3,
) -> pd.DataFrame:
    """Explanation rows (see the module docstring) for ``users``.

    Args:
        lists: ``{method: (user codes, top-k item codes)}`` (rows aligned).
        bases: ``{method: base method}`` (a method that is its own base has no removed rows).
        models: ``{method: model whose similarity explains the list}`` (None: co-occurrence).
        train: training split (histories).
        users: user codes to explain.
        k: list length shown.
        n_because: history items named per recommendation.
    """
    hist = train.csr()
    titles = _titles(train)
    sims: dict[int, _Similarity] = {}
    rows = []
    for method, (u_codes, topk) in lists.items():
        pos = pd.Index(u_codes)
        model = models.get(method)
        sim = sims.setdefault(id(model), _Similarity(model, train))
        base = bases.get(method, method)
        base_lists = lists.get(base)
        for u in users:
            r = pos.get_indexer([u])[0]
            if r < 0:
                continue
            items = topk[r, :k]
            items = items[items >= 0]
            h = hist[u].indices
            base_items: np.ndarray = np.array([], dtype=np.int64)
            if base_lists is not None and base != method:
                rb = pd.Index(base_lists[0]).get_indexer([u])[0]
                if rb >= 0:
                    base_items = base_lists[1][rb, :k]
                    base_items = base_items[base_items >= 0]
            s = sim.between(items, h) if len(h) and len(items) else np.zeros((len(items), 0))
            for rank, (item, srow) in enumerate(zip(items, s, strict=True), start=1):
                top = np.argsort(-srow, kind="stable")[:n_because]
                because = h[top]
                rows.append(
                    {
                        "method": method,
                        "base": base,
                        "user_id": str(train.user_vocab[u]),
                        "rank": rank,
                        "item_id": str(train.item_vocab[item]),
                        "title": titles[item],
                        "status": "added"
                        if base != method and len(base_items) and item not in base_items
                        else "kept",
                        "because": " | ".join(titles[j] for j in because),
                        "because_ids": " | ".join(str(train.item_vocab[j]) for j in because),
                        "similarity": float(srow[top[0]]) if len(top) else float("nan"),
                        "source": sim.source,
                    }
                )
            for item in base_items:
                if item not in items:
                    rows.append(
                        {
                            "method": method,
                            "base": base,
                            "user_id": str(train.user_vocab[u]),
                            "rank": 0,
                            "item_id": str(train.item_vocab[item]),
                            "title": titles[item],
                            "status": "removed",
                            "because": "",
                            "because_ids": "",
                            "similarity": float("nan"),
                            "source": sim.source,
                        }
                    )
    return pd.DataFrame(rows, columns=EXPLAIN_COLUMNS)


def calibration_sample(
    lists: Mapping[str, tuple[np.ndarray, np.ndarray]],
    train: Dataset,
    users: np.ndarray,
    *,
    k: int,
) -> pd.DataFrame:
    """``method, user_id, category, history, recommended`` shares for ``users``.

    Empty when the items have no category column (e.g. genres).
    """
    cols = ["method", "user_id", "category", "history", "recommended"]
    col = train.schema.item_categories[0] if train.schema.item_categories else None
    if col is None or col not in train.item_table.columns or not len(users):
        return pd.DataFrame(columns=cols)
    feats, names = train.item_category_matrix(col)
    dist = item_category_distribution(feats)
    p = user_distribution(train.csr()[users], dist)
    rows = []
    for method, (u_codes, topk) in lists.items():
        r = pd.Index(u_codes).get_indexer(users)
        ok = r >= 0
        top = topk[r[ok], :k]
        n_items = train.n_items
        valid = top >= 0
        rr = np.repeat(np.arange(len(top)), top.shape[1]).reshape(top.shape)[valid]
        mat = sp.csr_matrix(
            (np.ones(int(valid.sum())), (rr, top[valid])), shape=(len(top), n_items)
        )
        q = user_distribution(mat, dist)
        for i, u in enumerate(users[ok]):
            pi = p[np.flatnonzero(users == u)[0]]
            for c, name in enumerate(names):
                if pi[c] > 0 or q[i, c] > 0:
                    rows.append(
                        {
                            "method": method,
                            "user_id": str(train.user_vocab[u]),
                            "category": name,
                            "history": float(pi[c]),
                            "recommended": float(q[i, c]),
                        }
                    )
    return pd.DataFrame(rows, columns=cols)


def _titles(ds: Dataset) -> list[str]:
    if "title" in ds.item_table.columns:
        return [str(t) for t in ds.item_table["title"]]
    return [str(i) for i in ds.item_vocab]


__all__ = ["EXPLAIN_COLUMNS", "calibration_sample", "explanations", "sample_users"]
