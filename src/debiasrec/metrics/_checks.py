"""Input validation and small shared helpers for the metrics layer (private)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from debiasrec.errors import DataError

#: Upper bound on the number of elements of a temporary array built in one chunk.
MAX_CHUNK_ELEMS = 1 << 21


class DegenerateMetricWarning(UserWarning):
    """A metric is undefined for some users or groups (e.g. no relevant items); NaN is returned."""


def warn_degenerate(message: str, stacklevel: int = 3) -> None:
    """Emit a :class:`DegenerateMetricWarning` pointing at the caller of the public function."""
    warnings.warn(message, DegenerateMetricWarning, stacklevel=stacklevel)


def check_int(value: object, name: str, *, minimum: int = 0) -> int:
    """Return ``value`` as an ``int`` >= ``minimum`` or raise :class:`DataError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DataError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise DataError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_topk(
    topk: object, *, k: int | None = None, n_items: int | None = None, name: str = "topk"
) -> np.ndarray:
    """Validate a top-K matrix and return its first ``k`` columns as int64.

    Checks: 2-D integer array, entries >= -1 (-1 = padding), entries < ``n_items`` when given,
    ``1 <= k <= K_max`` when given, and no item repeated within a row.
    """
    arr = np.asarray(topk)
    if arr.ndim != 2:
        raise DataError(f"{name} must be a 2-D array [n_users, K], got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise DataError(
            f"{name} must hold integer item codes (-1 = padding), got dtype {arr.dtype}"
        )
    if k is not None:
        k = check_int(k, "k", minimum=1)
        if k > arr.shape[1]:
            raise DataError(
                f"k={k} is larger than the number of columns of {name} ({arr.shape[1]}); "
                f"recommend at least {k} items per user or lower k"
            )
        arr = arr[:, :k]
    arr = arr.astype(np.int64, copy=False)
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < -1:
            raise DataError(f"{name} contains {lo}; item codes must be >= 0 (or -1 for padding)")
        if n_items is not None and hi >= n_items:
            raise DataError(
                f"{name} contains item code {hi} but the catalogue has only {n_items} items "
                f"(codes 0..{n_items - 1})"
            )
        if arr.shape[1] > 1:
            srt = np.sort(arr, axis=1)
            dup = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
            if dup.any():
                row = int(np.flatnonzero(dup.any(axis=1))[0])
                raise DataError(
                    f"{name} row {row} recommends the same item more than once; "
                    "each item may appear at most once per list"
                )
    return arr


def check_vector(
    x: object, name: str, *, n: int | None = None, allow_nan: bool = True
) -> np.ndarray:
    """Return ``x`` as a 1-D float64 array of length ``n`` (when given) or raise ``DataError``."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be numeric: {exc}") from exc
    if arr.ndim != 1:
        raise DataError(f"{name} must be 1-D, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise DataError(f"{name} has length {arr.shape[0]}, expected {n}")
    if np.isinf(arr).any():
        raise DataError(f"{name} contains infinite values")
    if not allow_nan and np.isnan(arr).any():
        raise DataError(f"{name} contains NaN at position {int(np.flatnonzero(np.isnan(arr))[0])}")
    return arr


def check_item_pop(item_pop: object, name: str = "item_pop") -> np.ndarray:
    """Validate per-item popularity counts: 1-D, finite, non-negative."""
    pop = check_vector(item_pop, name, allow_nan=False)
    if pop.size and pop.min() < 0:
        raise DataError(f"{name} must be non-negative counts, found {pop.min()}")
    return pop


def check_share(value: float, name: str) -> float:
    """Return ``value`` as a float in [0, 1] or raise ``DataError``."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be a number in [0, 1], got {value!r}") from exc
    if not 0.0 <= v <= 1.0:
        raise DataError(f"{name} must be in [0, 1], got {v}")
    return v


def check_ks(ks: Sequence[int] | int, k_max: int | None = None) -> list[int]:
    """Validate the cut-offs ``ks`` (positive ints, each <= ``k_max`` when given)."""
    if isinstance(ks, (int, np.integer)):
        ks = [int(ks)]
    out = [check_int(k, "k", minimum=1) for k in ks]
    if not out:
        raise DataError("ks must contain at least one cut-off")
    if k_max is not None and max(out) > k_max:
        raise DataError(
            f"cut-off k={max(out)} is larger than the top-K list length {k_max}; "
            f"recommend at least {max(out)} items per user or lower k"
        )
    return list(dict.fromkeys(out))


def position_discount(k: int) -> np.ndarray:
    """Return ``1 / log2(r + 1)`` for ranks ``r = 1..k`` (the DCG discount)."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def as_csr(x: object, name: str) -> sp.csr_matrix:
    """Return ``x`` as a canonical CSR matrix (sorted indices, no duplicates, no explicit 0s)."""
    if sp.issparse(x):
        mat = sp.csr_matrix(x, copy=True)
    else:
        arr = np.asarray(x)
        if arr.ndim != 2:
            raise DataError(f"{name} must be a 2-D sparse matrix, got shape {arr.shape}")
        mat = sp.csr_matrix(arr)
    mat.sum_duplicates()
    mat.eliminate_zeros()
    return mat
