"""Item and user text templates and their counterfactual variants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from debiasrec.data.dataset import Dataset
from debiasrec.data.schema import Schema, SensitiveAttr
from debiasrec.errors import ConfigError, DataError
from debiasrec.lm.templates import (
    ItemTemplate,
    TextRenderer,
    UserTemplate,
    Variant,
    recent_history,
    restore_article,
)


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("Usual Suspects, The", "The Usual Suspects"),
        ("Grand Day Out, A", "A Grand Day Out"),
        ("City of Lost Children, The (Cite des enfants perdus, La)",
         "The City of Lost Children (Cite des enfants perdus, La)"),
        ("Homme, L'", "L'Homme"),
        ("Toy Story", "Toy Story"),
        ("Crouching Tiger, Hidden Dragon", "Crouching Tiger, Hidden Dragon"),
    ],
)  # fmt: skip
def test_restore_article(raw: str, want: str) -> None:
    assert restore_article(raw) == want


FULL = UserTemplate(profile=["age", "gender", "occupation"])


@pytest.fixture
def tiny() -> Dataset:
    users = pd.DataFrame({"user_id": [1, 2, 3], "age": [24, 61, 35], "gender": ["M", "F", None],
                          "occupation": ["student", "writer", "artist"]})  # fmt: skip
    items = pd.DataFrame({"item_id": [10, 11, 12],
                          "title": ["Godfather, The", "Toy Story", "Heat"],
                          "year": [1972, None, 1995],
                          "genres": [("Crime", "Drama"), ("Animation",), ()]})  # fmt: skip
    inter = pd.DataFrame({"user_id": [1, 1, 1, 2, 3], "item_id": [12, 10, 11, 10, 11],
                          "timestamp": [30, 10, 20, 5, 7]})  # fmt: skip
    schema = Schema(sensitive=(SensitiveAttr(name="gender", kind="binary"),
                               SensitiveAttr(name="age", kind="ordinal", bins=(18.0, 35.0))))  # fmt: skip
    return Dataset.from_frames(inter, users=users, items=items, schema=schema, name="tiny")


def test_item_text_drops_parts_with_missing_fields(tiny: Dataset) -> None:
    r = TextRenderer(tiny, user_template=FULL)
    codes = {v: i for i, v in enumerate(tiny.item_vocab)}
    texts = r.item_texts()
    assert texts[codes[10]] == "The Godfather (1972). Genres: Crime, Drama"
    assert texts[codes[11]] == "Toy Story. Genres: Animation"  # no year
    assert texts[codes[12]] == "Heat (1995)"  # no genres
    with pytest.raises(ConfigError, match="plot"):
        ItemTemplate(parts=["{plot}"]).render(tiny.item_table)


def test_user_text_profile_and_history_in_time_order(tiny: Dataset) -> None:
    r = TextRenderer(tiny, user_template=FULL)
    u = {v: i for i, v in enumerate(tiny.user_vocab)}
    text = r.user_texts([u[1]])[0]
    assert text == ("User: age 24, gender male, occupation student. Recently watched: "
                    "The Godfather; Toy Story; Heat.")  # fmt: skip
    assert r.sensitive_fields == ["age", "gender"]
    assert TextRenderer(tiny, user_template=UserTemplate()).profile == ["gender", "age"]
    # A missing value is left out, not written as "nan".
    assert r.user_texts([u[3]])[0].startswith("User: age 35, occupation artist.")


def test_variants_change_exactly_the_declared_fields(tiny: Dataset) -> None:
    r = TextRenderer(tiny, user_template=UserTemplate(profile=FULL.profile, history=0))
    u = [0, 1, 2]
    base = r.user_texts(u)
    swapped = r.user_texts(u, Variant("F", set={"gender": "F"}))
    assert all("gender female" in t for t in swapped)
    for b, s in zip(base, swapped, strict=True):
        assert b.replace("gender male, ", "").replace("gender female, ", "") == s.replace(
            "gender female, ", "") or "gender" not in b  # fmt: skip
    removed = r.user_texts(u, Variant("none", set={"gender": None, "age": None}))
    assert all("gender" not in t and "age" not in t for t in removed)
    placebo = r.user_texts(u, Variant("blue", set={"colour": "blue"}))
    assert all(t.endswith("favourite colour blue.") for t in placebo)
    with pytest.raises(ConfigError, match="height"):
        r.user_texts(u, Variant("bad", set={"height": 180}))


def test_typos_and_other_history_are_seeded(tiny: Dataset) -> None:
    r = TextRenderer(tiny, user_template=FULL)
    v = Variant("typo", typo_rate=0.3)
    a, b = r.user_texts([0, 1, 2], v, rng=3), r.user_texts([0, 1, 2], v, rng=3)
    assert a == b and a != r.user_texts([0, 1, 2])
    assert [len(t) for t in a] == [len(t) for t in r.user_texts([0, 1, 2])]  # swaps keep length
    other = r.user_texts([0, 1, 2], Variant("other", history_from="other"), rng=0)
    own = r.user_texts([0, 1, 2])
    for o, s in zip(other, own, strict=True):
        assert o.split(". Recently")[0] == s.split(". Recently")[0]  # profile kept
        assert o != s  # history from someone else (derangement)


def test_recent_history_keeps_last_n_oldest_first(tiny: Dataset) -> None:
    h = recent_history(tiny, np.array([0]), 2)[0]
    titles = [tiny.item_table.title[i] for i in h]
    assert titles == ["Toy Story", "Heat"]


def test_placebo_fields_are_random_per_user_stable_and_overridable(tiny: Dataset) -> None:
    ut = UserTemplate(profile=["gender"], history=0, placebo={"colour": ["blue", "red", "green"]})
    r = TextRenderer(tiny, user_template=ut)
    texts = r.user_texts([0, 1, 2])
    assert all("favourite colour " in t for t in texts)
    assert texts == TextRenderer(tiny, user_template=ut).user_texts([0, 1, 2])  # stable
    blue = r.user_texts([0, 1, 2], Variant("blue", set={"colour": "blue"}))
    assert all(t.endswith("favourite colour blue.") for t in blue)
    gone = r.user_texts([0, 1, 2], Variant("none", set={"colour": None}))
    assert all("colour" not in t for t in gone)
    with pytest.raises(ConfigError, match="phrase"):
        TextRenderer(tiny, user_template=UserTemplate(placebo={"shoe": ["a"]}))


def test_per_user_overrides_equal_one_variant_per_user(tiny: Dataset) -> None:
    r = TextRenderer(tiny, user_template=FULL)
    overrides = [{"gender": "F"}, {"age": None}, {"gender": "M", "occupation": "nurse"}]
    together = r.user_texts([0, 1, 2], overrides=overrides)
    one_by_one = [r.user_texts([u], Variant("v", set=o))[0] for u, o in enumerate(overrides)]
    assert together == one_by_one
    assert together != r.user_texts([0, 1, 2])
    with pytest.raises(DataError, match="overrides"):
        r.user_texts([0, 1], overrides=overrides)
