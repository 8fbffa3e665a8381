"""Schema: which user columns are sensitive and how they form groups; which item columns are text.

Sensitive attributes come in three kinds:

* ``binary``: exactly two values (e.g. gender ``F``/``M``).
* ``categorical``: any number of unordered values (e.g. occupation).
* ``ordinal``: a numeric column bucketed into ordered groups by ``bins`` (e.g. age into
  ML-1M's ``<18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+``), or an already-bucketed column whose
  order is given by ``labels``.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from debiasrec.errors import DataError

#: Age buckets used by ML-1M (lower edges): <18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+.
ML1M_AGE_BINS: tuple[float, ...] = (18, 25, 35, 45, 50, 56)

#: Joins attribute names (``"gender&age"``) and group labels (``"F&18-24"``) of intersections.
INTERSECTION_SEP = "&"


def bucket_labels(bins: tuple[float, ...] | list[float]) -> list[str]:
    """Human labels for bucket edges: ``(18, 25)`` -> ``["<18", "18-24", "25+"]``.

    Integer edges describe integer values (ages), so the bucket ``[18, 25)`` reads ``18-24``;
    when any edge is fractional the upper bound is shown as exclusive: ``(2.5, 5)`` ->
    ``["<2.5", "2.5-<5", "5+"]``.

    Raises:
        ValueError: no edges.
    """
    edges = [float(b) for b in bins]
    if not edges:
        raise ValueError("bucket_labels needs at least one bin edge")
    integer = all(e.is_integer() for e in edges)
    labels = [f"<{_fmt(edges[0])}"]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        upper = _fmt(hi - 1) if integer else f"<{_fmt(hi)}"
        labels.append(f"{_fmt(lo)}-{upper}")
    labels.append(f"{_fmt(edges[-1])}+")
    return labels


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _as_text(values: pd.Series) -> pd.Series:
    """Values as strings; whole floats print as integers (a code column with gaps is float)."""
    if pd.api.types.is_float_dtype(values.dtype):
        present = values.dropna().to_numpy(dtype=np.float64)
        if np.isfinite(present).all() and (present == np.floor(present)).all():
            values = values.astype("Int64")
    return values.astype("string")


def _sorted_labels(labels: list[str]) -> list[str]:
    """Numeric order when every label is a number (``"5" < "10"``), else text order."""
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


class SensitiveAttr(BaseModel):
    """One sensitive user attribute.

    Attributes:
        name: column name in the user table.
        kind: ``binary``, ``categorical`` or ``ordinal``.
        bins: for numeric ordinal columns, increasing bucket edges (lower edges of each bucket
            after the first), e.g. ``[18, 25, 35, 45, 50, 56]``.
        labels: optional group labels (ordered for ordinal attributes).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: Literal["binary", "categorical", "ordinal"] = "categorical"
    bins: tuple[float, ...] | None = None
    labels: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> SensitiveAttr:
        if INTERSECTION_SEP in self.name:
            raise ValueError(
                f"attribute {self.name!r}: names may not contain {INTERSECTION_SEP!r} "
                "(it joins the names of an intersection, e.g. 'gender&age')"
            )
        if self.labels is not None:
            if len(set(self.labels)) != len(self.labels):
                raise ValueError(f"attribute {self.name!r}: labels must be unique: {self.labels}")
            if self.kind == "binary" and self.bins is None and len(self.labels) > 2:
                raise ValueError(
                    f"attribute {self.name!r}: a binary attribute has at most two labels, "
                    f"got {len(self.labels)}; declare kind='categorical'"
                )
        if self.bins is not None:
            if not self.bins:
                raise ValueError(f"attribute {self.name!r}: bins need at least one edge")
            if not all(math.isfinite(b) for b in self.bins):
                raise ValueError(f"attribute {self.name!r}: bins must be finite: {self.bins}")
            if self.kind != "ordinal":
                raise ValueError(f"attribute {self.name!r}: bins are only valid for kind='ordinal'")
            if list(self.bins) != sorted(set(self.bins)):
                raise ValueError(f"attribute {self.name!r}: bins must be strictly increasing")
            if self.labels is not None and len(self.labels) != len(self.bins) + 1:
                raise ValueError(
                    f"attribute {self.name!r}: {len(self.bins)} bins need "
                    f"{len(self.bins) + 1} labels, got {len(self.labels)}"
                )
        return self

    def group_labels(self) -> list[str] | None:
        """Ordered group labels, if known before seeing data."""
        if self.labels is not None:
            return list(self.labels)
        if self.bins is not None:
            return bucket_labels(self.bins)
        return None

    def groups(self, values: pd.Series) -> pd.Categorical:
        """Map raw column values to group labels (missing values stay missing).

        Raises:
            DataError: numeric bucketing of non-numeric values, or a binary attribute with more
                than two values.
        """
        if self.bins is not None:
            num = pd.to_numeric(values, errors="coerce")
            bad = num.isna() & values.notna()
            if bad.any():
                first = values[bad].iloc[0]
                raise DataError(
                    f"sensitive attribute {self.name!r} is bucketed by bins but has non-numeric "
                    f"value {first!r}; fix the user table or declare it kind='categorical'"
                )
            labels = self.group_labels()
            assert labels is not None
            codes = np.searchsorted(
                np.asarray(self.bins, dtype=float), num.to_numpy(float), "right"
            )
            cat = pd.Categorical.from_codes(
                np.where(num.isna().to_numpy(), -1, codes), categories=labels, ordered=True
            )
            return cat
        as_str = _as_text(values)
        if self.labels is not None:
            unknown = set(as_str.dropna().unique()) - set(self.labels)
            if unknown:
                raise DataError(
                    f"sensitive attribute {self.name!r} has values {sorted(unknown)[:5]} not in its "
                    f"declared labels {list(self.labels)}"
                )
            cats = list(self.labels)
        else:
            cats = _sorted_labels(list(as_str.dropna().unique()))
        if self.kind == "binary" and len(cats) > 2:
            raise DataError(
                f"sensitive attribute {self.name!r} is declared binary but has {len(cats)} values "
                f"{cats[:6]}; declare kind='categorical'"
            )
        return pd.Categorical(as_str, categories=cats, ordered=self.kind == "ordinal")


class Schema(BaseModel):
    """Declares the roles of user and item columns.

    Attributes:
        sensitive: sensitive user attributes (used for debiasing and evaluation only).
        item_text: item columns holding text (e.g. ``title``).
        item_categories: multi-valued item category columns (e.g. ``genres``), stored as tuples.
        item_provider: optional item column naming the provider (for exposure fairness).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sensitive: tuple[SensitiveAttr, ...] = Field(default_factory=tuple)
    item_text: tuple[str, ...] = ()
    item_categories: tuple[str, ...] = ()
    item_provider: str | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> Schema:
        names = [a.name for a in self.sensitive]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"sensitive attributes declared more than once: {dup}")
        return self

    def attr(self, name: str) -> SensitiveAttr:
        """The declared sensitive attribute ``name``.

        Raises:
            DataError: the name is not declared; the message lists the available ones.
        """
        for a in self.sensitive:
            if a.name == name:
                return a
        raise DataError(
            f"unknown sensitive attribute {name!r}; available: "
            f"{[a.name for a in self.sensitive] or 'none declared in the schema'}"
        )

    @property
    def sensitive_names(self) -> list[str]:
        return [a.name for a in self.sensitive]

    def with_sensitive(self, attrs: list[SensitiveAttr]) -> Schema:
        """A copy with ``attrs`` as the sensitive attributes."""
        return self.model_copy(update={"sensitive": tuple(attrs)})
