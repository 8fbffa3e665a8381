"""Text templates: items and users as natural language, with counterfactual variants.

Item text: the title with a trailing article restored (``"Usual Suspects, The"`` -> ``"The Usual
Suspects"``), the year and the genres. User text: declared profile fields a deployment might
include (age, gender, occupation), then the last ``history`` items of the training history in
time order. Templates are config (pydantic, unknown keys rejected); the sensitive fields are the
dataset schema's sensitive attributes that appear in the profile, so a :class:`Variant` swaps or
removes exactly those fields and nothing else.

Variants (the controls of a counterfactual audit, FaiRLLM / CFaiRLLM):

* ``Variant(set={"gender": "F"})`` - the field takes that value for every user;
* ``Variant(set={"gender": None})`` - the field is removed;
* ``Variant(set={"colour": "blue"})`` - a placebo field (a phrase declared in ``extra_phrases``);
* ``Variant(typo_rate=0.05)`` - harmless typos (adjacent letters swapped) in the user text;
* ``Variant(history_from="other")`` - another user's history (a random derangement).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from debiasrec.data.dataset import Dataset
from debiasrec.errors import ConfigError, DataError
from debiasrec.random import np_rng

_ARTICLES = (
    "The", "A", "An", "La", "Le", "Les", "L'", "Il", "Lo", "Der", "Die", "Das", "El", "Los", "Las",
    "Det", "Den",
)  # fmt: skip
_ARTICLE_RE = re.compile(
    r"^(?P<body>.+?), (?P<art>"
    + "|".join(re.escape(a) for a in _ARTICLES)
    + r")(?P<rest>(?: \(.*\))?)$"
)


def restore_article(title: str) -> str:
    """Move a trailing article to the front: ``"Godfather, The"`` -> ``"The Godfather"``.

    A parenthesised alternative title after the article is kept at the end
    (``"City of Lost Children, The (Cite des enfants perdus, La)"`` ->
    ``"The City of Lost Children (Cite des enfants perdus, La)"``).
    """
    m = _ARTICLE_RE.match(title.strip())
    if not m:
        return title.strip()
    art = m.group("art")
    sep = "" if art.endswith("'") else " "
    return f"{art}{sep}{m.group('body')}{m.group('rest')}"


def _value_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, (tuple, list, np.ndarray)):
        vals = [str(v) for v in value if v is not None and str(v) != ""]
        return ", ".join(vals) if vals else None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    s = str(value).strip()
    return s or None


class ItemTemplate(BaseModel):
    """How an item is written as text.

    ``parts`` are format strings over item-table columns; a part is left out when any column it
    names is missing for that item (so a missing year drops ``" ({year})"``, not the title).
    """

    model_config = ConfigDict(extra="forbid")

    parts: list[str] | None = Field(
        None,
        description="format strings over item columns; None = title, (year), genres - those "
        "of them the item table has (the title is required)",
    )
    restore_articles: bool = True

    def parts_for(self, items: pd.DataFrame) -> list[str]:
        """The parts used for this item table (defaults limited to its columns)."""
        if self.parts is not None:
            return list(self.parts)
        parts = ["{title}"]
        if "year" in items.columns:
            parts.append(" ({year})")
        if "genres" in items.columns:
            parts.append(". Genres: {genres}")
        return parts

    def render(self, items: pd.DataFrame) -> list[str]:
        """One text per row of an item table."""
        parts = self.parts_for(items)
        fields = {f for p in parts for f in re.findall(r"{(\w+)}", p)}
        missing = sorted(f for f in fields if f not in items.columns)
        if missing:
            raise ConfigError(
                f"item template names columns {missing} that the item table lacks; columns: "
                f"{list(items.columns)}"
            )
        out = []
        for row in items.itertuples(index=False):
            vals = {f: _value_text(getattr(row, f)) for f in fields}
            title = vals.get("title")
            if self.restore_articles and title:
                vals["title"] = restore_article(title)
            text = "".join(
                p.format(**vals)
                for p in parts
                if all(vals[f] is not None for f in re.findall(r"{(\w+)}", p))
            )
            out.append(text.strip())
        return out

    def title_texts(self, items: pd.DataFrame, column: str = "title") -> list[str]:
        """Titles only (article restored), e.g. for an LLM to score or generate."""
        if column not in items.columns:
            raise ConfigError(
                f"item table has no {column!r} column; columns: {list(items.columns)}"
            )
        return [
            restore_article(_value_text(t) or "")
            if self.restore_articles
            else (_value_text(t) or "")
            for t in items[column]
        ]


def _default_phrases() -> dict[str, str]:
    return {
        "age": "age {value}",
        "gender": "gender {value}",
        "occupation": "occupation {value}",
    }


class UserTemplate(BaseModel):
    """How a user is written as text: profile phrases, then recent history titles.

    ``profile`` lists the user-table columns to mention, in order (``None``: the attributes the
    dataset schema declares sensitive, e.g. age, gender, occupation for ML-100K); each is written with its phrase
    from ``phrases`` (``{value}`` is the value after ``value_map``). ``extra_phrases`` declares
    fields that are not in the data (placebos such as a favourite colour); they appear only when a
    :class:`Variant` sets them. ``history`` is the number of most recent training items listed
    (0: none), oldest first.
    """

    model_config = ConfigDict(extra="forbid")

    profile: list[str] | None = Field(
        None, description="profile fields in order; None = the schema's sensitive attributes"
    )
    phrases: dict[str, str] = Field(default_factory=_default_phrases)
    value_map: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {"gender": {"M": "male", "F": "female"}}
    )
    extra_phrases: dict[str, str] = Field(
        default_factory=lambda: {"colour": "favourite colour {value}"}
    )
    placebo: dict[str, list[str]] = Field(
        default_factory=dict,
        description="control fields written for every user with a value drawn per user at "
        "random (stable hash of the user id), unrelated to the data; e.g. {colour = [...]} so a "
        "model trained on such texts has seen the placebo an audit varies",
    )
    empty_profile: str = "no profile"
    history: int = Field(10, ge=0)
    prefix: str = "User: "
    history_intro: str = ". Recently watched: "
    suffix: str = "."
    history_sep: str = "; "

    def phrase(self, name: str) -> str:
        """The phrase of a profile or extra field (``{value}`` if none is declared)."""
        return self.phrases.get(name) or self.extra_phrases.get(name) or "{value}"


@dataclass(frozen=True)
class Variant:
    """One counterfactual version of the user text (see the module docstring)."""

    name: str = "neutral"
    set: Mapping[str, Any] = field(default_factory=dict)
    typo_rate: float = 0.0
    history_from: Literal["self", "other"] = "self"

    def __post_init__(self) -> None:
        if not 0 <= self.typo_rate <= 1:
            raise ConfigError(f"Variant {self.name!r}: typo_rate must be in [0, 1]")


def _typos(text: str, rate: float, rng: np.random.Generator) -> str:
    """Swap adjacent letters inside words at ``rate`` per letter pair (a harmless typo)."""
    chars = list(text)
    i = 0
    while i < len(chars) - 1:
        if chars[i].isalpha() and chars[i + 1].isalpha() and rng.random() < rate:
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
            i += 2
        else:
            i += 1
    return "".join(chars)


def recent_history(train: Dataset, users: np.ndarray, n: int) -> list[np.ndarray]:
    """The last ``n`` training items of each user, oldest first (by timestamp, else row order)."""
    if n <= 0:
        return [np.zeros(0, dtype=np.int64) for _ in users]
    ts = train.timestamps if train.timestamps is not None else np.arange(train.n_interactions)
    order = np.lexsort((ts, train.users))
    u_sorted = train.users[order]
    starts = np.searchsorted(u_sorted, users, side="left")
    ends = np.searchsorted(u_sorted, users, side="right")
    items = train.items[order]
    return [items[max(s, e - n) : e].astype(np.int64) for s, e in zip(starts, ends, strict=True)]


class TextRenderer:
    """Renders item texts and user texts (with variants) for one dataset.

    Args:
        train: the training data (its histories are what user texts list) and tables.
        item_template / user_template: the templates (defaults above).
    """

    def __init__(
        self,
        train: Dataset,
        *,
        item_template: ItemTemplate | None = None,
        user_template: UserTemplate | None = None,
    ) -> None:
        self.train = train
        self.item_template = item_template or ItemTemplate()
        ut = user_template or UserTemplate()
        if ut.profile is None:
            ut = ut.model_copy(update={"profile": [a.name for a in train.schema.sensitive]})
        self.user_template = ut
        for name, values in ut.placebo.items():
            if not values:
                raise ConfigError(f"user template placebo {name!r} lists no values")
            if name not in ut.extra_phrases and name not in ut.phrases:
                raise ConfigError(
                    f"user template placebo {name!r} has no phrase; add it to extra_phrases"
                )
        missing = [f for f in ut.profile or [] if f not in train.user_table.columns]
        if missing:
            raise ConfigError(
                f"user template profile names {missing}, which the user table lacks; columns: "
                f"{list(train.user_table.columns)}"
            )
        self._titles: list[str] | None = None
        self._item_texts: list[str] | None = None

    @property
    def sensitive_fields(self) -> list[str]:
        """Profile fields that the dataset declares sensitive (what variants swap or remove)."""
        names = {a.name for a in self.train.schema.sensitive}
        return [f for f in self.profile if f in names]

    @property
    def profile(self) -> list[str]:
        """The profile fields written into user texts, in order."""
        return list(self.user_template.profile or [])

    def item_texts(self) -> list[str]:
        """Text of every item, in item-code order."""
        if self._item_texts is None:
            self._item_texts = self.item_template.render(self.train.item_table)
        return self._item_texts

    def titles(self) -> list[str]:
        """Title of every item (article restored), in item-code order."""
        if self._titles is None:
            self._titles = self.item_template.title_texts(self.train.item_table)
        return self._titles

    def _placebo_value(self, name: str, user: int) -> str:
        """The per-user value of a placebo field: a stable hash of field and user id."""
        values = self.user_template.placebo[name]
        h = zlib.crc32(f"{name}|{self.train.user_vocab[user]}".encode())
        return values[h % len(values)]

    def profile_text(self, users: np.ndarray, variant: Variant | None = None) -> list[str]:
        """The profile part of each user's text (``empty_profile`` when no field is present)."""
        t = self.user_template
        v = variant or Variant()
        for f in v.set:
            if f not in self.profile and f not in t.extra_phrases and f not in t.phrases:
                raise ConfigError(
                    f"variant {v.name!r} sets {f!r}, which is neither a profile field "
                    f"{self.profile} nor has a phrase in phrases {sorted(t.phrases)} or "
                    f"extra_phrases {sorted(t.extra_phrases)}"
                )
        table = self.train.user_table
        placebo = t.placebo
        fields = self.profile + [f for f in placebo if f not in self.profile]
        fields += [f for f in v.set if f not in fields]
        out = []
        for u in np.asarray(users, dtype=np.int64):
            bits = []
            for f in fields:
                if f in v.set:
                    raw = v.set[f]
                elif f in placebo:
                    raw = self._placebo_value(f, int(u))
                else:
                    raw = table.at[int(u), f]
                val = _value_text(raw)
                if val is None:
                    continue
                val = t.value_map.get(f, {}).get(val, val)
                bits.append(t.phrase(f).format(value=val))
            out.append(", ".join(bits) if bits else t.empty_profile)
        return out

    def user_texts(
        self,
        users: Sequence[int] | np.ndarray,
        variant: Variant | None = None,
        *,
        rng: np.random.Generator | int | None = None,
        include_history: bool = True,
        overrides: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[str]:
        """Text of each user under ``variant`` (default: as in the data).

        ``rng`` drives typos and the choice of another user's history (same seed, same texts).
        ``overrides`` gives one field mapping per user, applied on top of ``variant.set`` (e.g. a
        different counterfactual value for every user), in one pass over the histories.
        """
        users = np.asarray(users, dtype=np.int64)
        if len(users) and (users.min() < 0 or users.max() >= self.train.n_users):
            raise DataError("user codes out of range of the training data")
        v = variant or Variant()
        gen = np_rng(rng)
        t = self.user_template
        if overrides is None:
            profiles = self.profile_text(users, v)
        else:
            if len(overrides) != len(users):
                raise DataError(f"{len(users)} users but {len(overrides)} overrides")
            profiles = [
                self.profile_text(np.array([u]), Variant(v.name, {**v.set, **o}))[0]
                for u, o in zip(users, overrides, strict=True)
            ]
        hist_users = users
        if v.history_from == "other" and len(users) > 1:
            perm = gen.permutation(len(users))
            fixed = perm == np.arange(len(users))
            while fixed.any():  # derangement: nobody keeps their own history
                perm = gen.permutation(len(users))
                fixed = perm == np.arange(len(users))
            hist_users = users[perm]
        texts = []
        hist = (
            recent_history(self.train, hist_users, t.history)
            if include_history
            else [np.zeros(0, np.int64)] * len(users)
        )
        titles = self.titles()
        for prof, h in zip(profiles, hist, strict=True):
            text = t.prefix + prof
            if len(h):
                text += t.history_intro + t.history_sep.join(titles[i] for i in h)
            text += t.suffix
            if v.typo_rate > 0:
                text = _typos(text, v.typo_rate, gen)
            texts.append(text)
        return texts
