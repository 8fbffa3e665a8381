"""Small hand-made re-ranking contexts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from debiasrec.debias.post import RerankContext
from debiasrec.models.base import Recs


def context(
    history: np.ndarray,
    genres: np.ndarray,
    *,
    item_pop: np.ndarray | None = None,
    groups: dict[str, list[str]] | None = None,
    valid: np.ndarray | None = None,
) -> RerankContext:
    hist = sp.csr_matrix(np.asarray(history, dtype=float))
    return RerankContext(
        history=hist,
        item_pop=np.asarray(hist.sum(axis=0)).ravel() if item_pop is None else item_pop,
        item_features=sp.csr_matrix(np.asarray(genres, dtype=float)),
        feature_names=[f"g{j}" for j in range(np.shape(genres)[1])],
        user_groups={a: pd.Categorical(v) for a, v in (groups or {}).items()},
        valid=None if valid is None else sp.csr_matrix(np.asarray(valid, dtype=float)),
    )


def recs(items: list[list[int]], scores: list[list[float]], users: list[int] | None = None) -> Recs:
    it = np.asarray(items, dtype=np.int64)
    return Recs(
        users=np.arange(len(it)) if users is None else np.asarray(users),
        items=it,
        scores=np.asarray(scores, dtype=np.float32),
    )
