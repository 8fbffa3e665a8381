"""Schema and SensitiveAttr: bins/labels validation, bucketing, group labels, lookup."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from debiasrec.data.schema import ML1M_AGE_BINS, Schema, SensitiveAttr, bucket_labels
from debiasrec.errors import DataError

ML1M_LABELS = ["<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"]


# ---------------------------------------------------------------------------- bucket_labels


def test_bucket_labels_ml1m() -> None:
    assert bucket_labels(ML1M_AGE_BINS) == ML1M_LABELS


@pytest.mark.parametrize(
    ("bins", "labels"),
    [
        ((18, 25), ["<18", "18-24", "25+"]),
        ([18], ["<18", "18+"]),
        ((18, 19), ["<18", "18-18", "19+"]),
        ((0, 10.0, 100), ["<0", "0-9", "10-99", "100+"]),
        # Fractional edges: the upper bound is exclusive, not "hi - 1" (was "2.5-4").
        ((2.5, 5), ["<2.5", "2.5-<5", "5+"]),
        ((0.5, 1.5, 2.5), ["<0.5", "0.5-<1.5", "1.5-<2.5", "2.5+"]),
    ],
)
def test_bucket_labels(bins: tuple[float, ...], labels: list[str]) -> None:
    assert bucket_labels(bins) == labels


def test_bucket_labels_needs_an_edge() -> None:
    with pytest.raises(ValueError, match="at least one"):
        bucket_labels(())


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "categorical", "bins": (18, 25)}, "only valid for kind='ordinal'"),
        ({"kind": "binary", "bins": (18,)}, "only valid for kind='ordinal'"),
        ({"kind": "ordinal", "bins": (25, 18)}, "strictly increasing"),
        ({"kind": "ordinal", "bins": (18, 18, 25)}, "strictly increasing"),
        ({"kind": "ordinal", "bins": ()}, "at least one edge"),
        ({"kind": "ordinal", "bins": (18, float("inf"))}, "finite"),
        (
            {"kind": "ordinal", "bins": (18, 25), "labels": ("a", "b")},
            "2 bins need 3 labels, got 2",
        ),
        (
            {"kind": "ordinal", "bins": (18,), "labels": ("a", "b", "c")},
            "1 bins need 2 labels, got 3",
        ),
        ({"kind": "ordinal", "labels": ("a", "b", "a")}, "labels must be unique"),
        ({"kind": "binary", "labels": ("F", "M", "X")}, "at most two labels"),
        ({"kind": "nominal"}, "kind"),
        ({"kind": "binary", "extra": 1}, "extra"),
    ],
)
def test_sensitive_attr_rejects(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SensitiveAttr(name="age", **kwargs)


def test_sensitive_attr_name_may_not_contain_intersection_separator() -> None:
    with pytest.raises(ValidationError, match="may not contain '&'"):
        SensitiveAttr(name="gender&age")


def test_sensitive_attr_is_frozen_and_defaults_to_categorical() -> None:
    a = SensitiveAttr(name="occupation")
    assert a.kind == "categorical"
    assert a.bins is None and a.labels is None
    with pytest.raises(ValidationError):
        a.kind = "binary"  # type: ignore[misc]


def test_bins_are_coerced_to_float_tuple() -> None:
    a = SensitiveAttr(name="age", kind="ordinal", bins=[18, 25])  # type: ignore[arg-type]
    assert a.bins == (18.0, 25.0)
    assert isinstance(a.bins, tuple)


def test_group_labels() -> None:
    assert SensitiveAttr(name="age", kind="ordinal", bins=ML1M_AGE_BINS).group_labels() == (
        ML1M_LABELS
    )
    custom = SensitiveAttr(name="age", kind="ordinal", bins=(30,), labels=("young", "old"))
    assert custom.group_labels() == ["young", "old"]
    assert SensitiveAttr(name="x", labels=("b", "a")).group_labels() == ["b", "a"]
    assert SensitiveAttr(name="gender", kind="binary").group_labels() is None


# ---------------------------------------------------------------------------- groups


def test_groups_ml1m_age_bins() -> None:
    a = SensitiveAttr(name="age", kind="ordinal", bins=ML1M_AGE_BINS)
    # ML-1M stores age codes 1, 18, 25, 35, 45, 50, 56; raw ages work too.
    values = pd.Series([1, 17, 18, 24, 24.5, 25, 35, 45, 49, 50, 55, 56, 80, None])
    cat = a.groups(values)
    assert list(cat.categories) == ML1M_LABELS
    assert cat.ordered
    expected = ["<18", "<18", "18-24", "18-24", "18-24", "25-34", "35-44", "45-49", "45-49"]
    expected += ["50-55", "50-55", "56+", "56+"]
    assert [None if pd.isna(v) else v for v in cat] == [*expected, None]
    assert cat.codes.tolist() == [0, 0, 1, 1, 1, 2, 3, 4, 4, 5, 5, 6, 6, -1]


def test_groups_bins_accept_numeric_strings_and_custom_labels() -> None:
    a = SensitiveAttr(name="age", kind="ordinal", bins=(30,), labels=("young", "old"))
    cat = a.groups(pd.Series(["29", "30", "71"]))
    assert cat.tolist() == ["young", "old", "old"]
    assert cat.min() == "young" and cat.max() == "old"


def test_groups_bins_reject_non_numeric_values() -> None:
    a = SensitiveAttr(name="age", kind="ordinal", bins=ML1M_AGE_BINS)
    with pytest.raises(DataError, match=r"'age'.*non-numeric value 'forty'.*kind='categorical'"):
        a.groups(pd.Series([25, "forty", 30], dtype=object))


def test_binary_groups() -> None:
    cat = SensitiveAttr(name="gender", kind="binary").groups(pd.Series(["M", "F", None, "F"]))
    assert list(cat.categories) == ["F", "M"]
    assert not cat.ordered
    assert cat.codes.tolist() == [1, 0, -1, 0]


def test_binary_with_three_values_is_a_data_error() -> None:
    a = SensitiveAttr(name="gender", kind="binary")
    with pytest.raises(DataError, match=r"'gender' is declared binary but has 3 values") as exc:
        a.groups(pd.Series(["F", "M", "X", "F"]))
    assert "kind='categorical'" in str(exc.value)
    assert "['F', 'M', 'X']" in str(exc.value)


def test_binary_with_one_value_is_fine() -> None:
    cat = SensitiveAttr(name="gender", kind="binary").groups(pd.Series(["F", "F"]))
    assert list(cat.categories) == ["F"]


def test_categorical_numeric_codes_sort_numerically() -> None:
    cat = SensitiveAttr(name="occupation").groups(pd.Series([10, 5, 1, 5]))
    assert list(cat.categories) == ["1", "5", "10"]  # not text order "1" < "10" < "5"
    assert cat.tolist() == ["10", "5", "1", "5"]


def test_integer_codes_with_gaps_keep_integer_labels() -> None:
    # A code column with a missing value is float64 in pandas; labels must not become "1.0".
    values = pd.Series([1.0, np.nan, 10.0, 2.0])
    cat = SensitiveAttr(name="occupation").groups(values)
    assert list(cat.categories) == ["1", "2", "10"]
    assert cat.codes.tolist() == [0, -1, 2, 1]
    declared = SensitiveAttr(name="occupation", labels=("1", "2", "10"))
    assert declared.groups(values).codes.tolist() == [0, -1, 2, 1]


def test_fractional_float_values_keep_their_decimals() -> None:
    cat = SensitiveAttr(name="score").groups(pd.Series([1.5, 0.5]))
    assert list(cat.categories) == ["0.5", "1.5"]


def test_categorical_text_values_sort_as_text() -> None:
    cat = SensitiveAttr(name="occupation").groups(pd.Series(["writer", "artist", "10"]))
    assert list(cat.categories) == ["10", "artist", "writer"]


def test_ordinal_labels_give_an_ordered_categorical() -> None:
    a = SensitiveAttr(name="income", kind="ordinal", labels=("low", "mid", "high"))
    cat = a.groups(pd.Series(["high", "low", "mid"]))
    assert list(cat.categories) == ["low", "mid", "high"]
    assert cat.ordered
    assert cat.codes.tolist() == [2, 0, 1]


def test_values_outside_declared_labels_are_a_data_error() -> None:
    a = SensitiveAttr(name="income", kind="ordinal", labels=("low", "high"))
    with pytest.raises(DataError, match=r"'income' has values \['mid'\] not in its declared"):
        a.groups(pd.Series(["low", "mid"]))


# ---------------------------------------------------------------------------- Schema


def _schema() -> Schema:
    return Schema(
        sensitive=(
            SensitiveAttr(name="gender", kind="binary"),
            SensitiveAttr(name="age", kind="ordinal", bins=ML1M_AGE_BINS),
        ),
        item_text=("title",),
        item_categories=("genres",),
    )


def test_schema_attr_lookup() -> None:
    s = _schema()
    assert s.attr("age").bins == tuple(float(b) for b in ML1M_AGE_BINS)
    assert s.sensitive_names == ["gender", "age"]


def test_schema_unknown_attr_lists_the_available_ones() -> None:
    with pytest.raises(DataError, match=r"unknown sensitive attribute 'race'; available: "):
        _schema().attr("race")
    with pytest.raises(DataError) as exc:
        _schema().attr("race")
    assert "['gender', 'age']" in str(exc.value)
    with pytest.raises(DataError, match="none declared in the schema"):
        Schema().attr("gender")


def test_schema_rejects_duplicate_attribute_names() -> None:
    with pytest.raises(ValidationError, match=r"declared more than once: \['gender'\]"):
        Schema(sensitive=(SensitiveAttr(name="gender"), SensitiveAttr(name="gender")))


def test_schema_with_sensitive_returns_a_copy() -> None:
    s = _schema()
    t = s.with_sensitive([SensitiveAttr(name="occupation")])
    assert t.sensitive_names == ["occupation"]
    assert s.sensitive_names == ["gender", "age"]
    assert t.item_text == ("title",) and t.item_categories == ("genres",)


def test_schema_forbids_unknown_fields_and_is_frozen() -> None:
    with pytest.raises(ValidationError, match="item_txt"):
        Schema(item_txt=("title",))  # type: ignore[call-arg]
    s = Schema()
    with pytest.raises(ValidationError):
        s.item_provider = "studio"  # type: ignore[misc]


def test_schema_round_trips_through_json() -> None:
    s = _schema()
    assert Schema.model_validate_json(s.model_dump_json()) == s
