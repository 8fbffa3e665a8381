"""Feedback stores: SQLite in WAL mode (durability settings), SQLAlchemy URLs, missing extra."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from debiasrec.errors import ConfigError, MissingDependencyError
from debiasrec.serve.store import (
    Adjustment,
    Event,
    EventConflict,
    Release,
    SQLAlchemyStore,
    SQLiteStore,
    open_store,
)


@pytest.mark.parametrize(("sync", "code"), [("FULL", 2), ("NORMAL", 1)])
def test_sqlite_is_wal_with_the_chosen_sync(tmp_path, sync, code) -> None:
    store = SQLiteStore(tmp_path / "sub" / "fb.sqlite", synchronous=sync)
    assert store.pragma("journal_mode") == "wal"
    assert store.pragma("synchronous") == code
    store.close()
    with pytest.raises(ConfigError, match="synchronous"):
        SQLiteStore(tmp_path / "x.sqlite", synchronous="OFF")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["sqlite", "sqlalchemy"])
def test_store_roundtrip_and_idempotency(tmp_path, kind) -> None:
    if kind == "sqlalchemy":
        pytest.importorskip("sqlalchemy")
        store = open_store(f"sqlite:///{tmp_path / 'sa.sqlite'}", tmp_path / "unused")
        assert isinstance(store, SQLAlchemyStore)
    else:
        store = open_store(None, tmp_path / "fb.sqlite")
    ev = [
        Event("u1", "i1", "impression", position=1, event_id="e1"),
        Event("u1", "i1", "rating", value=3.0),
        Event("u2", "i2", "click", event_id="e2"),
    ]
    seqs = store.add_events(ev)
    assert len(set(seqs)) == 3
    assert store.add_events([ev[2], Event("u3", "i3", "click", event_id="e3")])[0] == seqs[2]
    assert store.count() == 4
    frame = store.events()
    assert [None if pd.isna(x) else x for x in frame["event_id"]] == ["e1", None, "e2", "e3"]
    assert store.events(after_seq=seqs[1])["event_id"].tolist() == ["e2", "e3"]
    store.add_adjustment(Adjustment(1.0, "exposure", "exposure_share", 0.1, 0.05, 0.05, 100))
    assert store.adjustments()["strength"].tolist() == [0.1]
    store.close()


def test_url_without_sqlalchemy_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)  # import fails as if not installed
    with pytest.raises(MissingDependencyError, match=r"debiasrec\[sql\]"):
        open_store("postgresql://db.example/feedback", tmp_path / "unused")


@pytest.mark.parametrize("kind", ["sqlite", "sqlalchemy"])
def test_conflicts_roll_back_and_releases_round_trip(tmp_path, kind) -> None:
    if kind == "sqlalchemy":
        pytest.importorskip("sqlalchemy")
        store = open_store(f"sqlite:///{tmp_path / 'sa.sqlite'}", tmp_path / "unused")
    else:
        store = open_store(None, tmp_path / "fb.sqlite")
    e1 = Event("u1", "i1", "rating", value=4.0, position=2, request_id="r", event_id="e1")
    seqs, new = store.insert([e1, Event("u2", "i2", "click"), e1])
    assert new == [True, True, False] and seqs[2] == seqs[0]
    assert store.insert([e1]) == ([seqs[0]], [False])
    for changed in (
        Event("u1", "i1", "rating", value=4.5, position=2, request_id="r", event_id="e1"),
        Event("u1", "i1", "rating", value=4.0, position=2, request_id=None, event_id="e1"),
    ):
        with pytest.raises(EventConflict, match="event_id 'e1'") as err:
            store.insert([Event("u9", "i9", "click", event_id="fresh"), changed])
        assert err.value.index == 1 and "4.0" not in str(err.value)  # no stored values
    assert store.count() == 2 and store.last_seq() == seqs[1]  # the batches were rolled back
    rel = Release("s1", 0, 5, 1.5, {"events": 5, "tables": {"gender": [[1, 2], [3, 4]]}})
    store.add_release(rel)
    store.add_release(Release("s2", 0, 9, 2.0, {"tables": {}}))
    assert store.releases("s1") == [rel]
    assert store.get_meta("k") is None
    store.set_meta("k", "v1")
    store.set_meta("k", "v2")
    assert store.get_meta("k") == "v2"
    store.close()
