"""User groupings derived from the data itself (not declared attributes), for evaluation.

:func:`activity_groups` buckets users by their number of training interactions -- the "cold vs
active users" grouping of user-fairness studies (e.g. Li et al., "User-oriented Fairness in
Recommendation", WWW 2021, who split by activity into advantaged and disadvantaged users). The
result is a ``pd.Categorical`` over user codes, usable wherever a sensitive attribute's groups
are (``by_group(..., {"activity": activity_groups(train)[users]})``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from debiasrec.data.dataset import Dataset
from debiasrec.errors import DataError

#: Default labels of :func:`activity_groups` (bottom quartile, middle half, top quartile).
ACTIVITY_LABELS: tuple[str, str, str] = ("cold", "mid", "active")


def activity_groups(
    train: Dataset,
    *,
    quantiles: tuple[float, float] = (0.25, 0.75),
    labels: tuple[str, str, str] = ACTIVITY_LABELS,
) -> pd.Categorical:
    """Activity level of each user code from its training interactions.

    With ``c_u`` the number of training interactions of user ``u`` and ``q_lo``, ``q_hi`` the
    ``quantiles`` of ``c`` over all users: ``cold`` if ``c_u <= q_lo``, ``active`` if
    ``c_u > q_hi``, ``mid`` otherwise (ties at a cut go to the lower group, so the groups are
    as close to the requested shares as the ties allow).

    Args:
        train: the training split (the groups must not look at held-out data).
        quantiles: the two cut quantiles, ``0 < lo < hi < 1``.
        labels: names of the three groups, low to high.

    Returns:
        Ordered categorical of length ``train.n_users`` with categories ``labels``.

    Raises:
        DataError: bad quantiles or labels, or a dataset without users.
    """
    lo, hi = (float(q) for q in quantiles)
    if not 0.0 < lo < hi < 1.0:
        raise DataError(f"quantiles must satisfy 0 < lo < hi < 1, got {quantiles}")
    if len(labels) != 3 or len(set(labels)) != 3:
        raise DataError(f"labels must be three distinct names, got {labels}")
    if train.n_users == 0:
        raise DataError("activity_groups: the dataset has no users")
    counts = train.user_counts()
    q_lo, q_hi = np.quantile(counts, [lo, hi])
    codes = np.where(counts <= q_lo, 0, np.where(counts > q_hi, 2, 1)).astype(np.int8)
    return pd.Categorical.from_codes(codes, categories=list(labels), ordered=True)
