"""Match free-text titles (e.g. an LLM's generated list) back to catalog items.

A generated answer is split into one title per line (list numbering, bullets, quotes and a
trailing year are stripped). Each title is matched to the catalog exactly after normalisation
(case, punctuation, a leading or trailing article, a year in parentheses), else to the most
similar normalised catalog title by :class:`difflib.SequenceMatcher` ratio when that ratio is at
least ``cutoff``; otherwise it is counted as unmatched (a hallucinated or misspelt title).
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from debiasrec.errors import ConfigError
from debiasrec.lm.templates import restore_article

_LIST_PREFIX = re.compile(r"^\s*(?:[-*\u2022]+|\(?\d{1,3}[.):\]]|#\d+)\s*")
_YEAR = re.compile(r"\s*\((?:\d{4}|[^()]*\d{4}[^()]*)\)\s*$")
_LEADING_ARTICLE = re.compile(r"^(the|a|an|la|le|les|il|el|der|die|das|los|las)\s+")

MatchKind = Literal["exact", "fuzzy", "unmatched"]


def normalise_title(title: str) -> str:
    """Case-, accent-, punctuation- and article-insensitive key of a title."""
    t = restore_article(title.strip())
    t = _YEAR.sub("", t)
    t = unicodedata.normalize("NFKD", t).encode("ascii", "ignore").decode()
    t = t.lower().replace("&", " and ")
    t = re.sub(r"[^a-z0-9 ]+", " ", t)
    t = re.sub(r"\s+", " ", t).strip()
    return _LEADING_ARTICLE.sub("", t)


def parse_list(text: str) -> list[str]:
    """Titles listed in a generated answer, one per non-empty line, in order."""
    out = []
    for line in text.splitlines():
        t = _LIST_PREFIX.sub("", line).strip().strip("\"'\u201c\u201d*").strip()
        if t:
            out.append(t)
    return out


@dataclass(frozen=True)
class Match:
    """One answer's match: catalog ``item`` (-1 when unmatched), ``kind`` and similarity."""

    answer: str
    item: int
    kind: MatchKind
    similarity: float


class TitleMatcher:
    """Exact-then-fuzzy matching of titles to a catalog.

    Args:
        titles: catalog titles in item-code order.
        cutoff: minimum :class:`difflib.SequenceMatcher` ratio of normalised titles for a fuzzy
            match (0..1).

    Where several items share a normalised title (remakes), the lowest item code wins.
    """

    def __init__(self, titles: Sequence[str], *, cutoff: float = 0.85) -> None:
        if not 0 < cutoff <= 1:
            raise ConfigError(f"cutoff must be in (0, 1], got {cutoff}")
        self.cutoff = cutoff
        self._keys: dict[str, int] = {}
        for code, t in enumerate(titles):
            self._keys.setdefault(normalise_title(str(t)), code)
        self._key_list = list(self._keys)

    def match(self, answer: str) -> Match:
        """Match one title."""
        key = normalise_title(answer)
        if not key:
            return Match(answer, -1, "unmatched", 0.0)
        if key in self._keys:
            return Match(answer, self._keys[key], "exact", 1.0)
        best = difflib.get_close_matches(key, self._key_list, n=1, cutoff=self.cutoff)
        if best:
            ratio = difflib.SequenceMatcher(None, key, best[0]).ratio()
            return Match(answer, self._keys[best[0]], "fuzzy", ratio)
        return Match(answer, -1, "unmatched", 0.0)

    def match_all(self, answers: Sequence[str]) -> list[Match]:
        """Match every title of ``answers``."""
        return [self.match(a) for a in answers]
