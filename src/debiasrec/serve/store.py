"""Durable feedback store: SQLite (WAL) by default, any SQLAlchemy URL as an option.

Every acknowledged event is durable: :meth:`FeedbackStore.add_events` returns only after the
transaction holding the events has committed, and the HTTP service answers only after that.

SQLite runs in WAL mode with ``synchronous=FULL`` by default: each commit is fsynced, so an
acknowledged event survives a process crash *and* a power loss. ``synchronous="NORMAL"`` is
faster (in WAL mode the WAL is fsynced only at checkpoints); it still survives a crash or
``SIGKILL`` of the server, but the last commits before a power loss or OS crash may be lost.

Tables (created on first use):

- ``events``: one row per feedback event (``seq`` autoincrement, client ``event_id`` unique when
  given, so a retried request is not counted twice; an ``event_id`` sent again with a different
  payload is refused with :class:`EventConflict` and nothing of that request is stored);
- ``adjustments``: one row per online-controller update (strength, measured value, step);
- ``releases``: the fairness monitor's published noisy releases (so that a restart publishes
  the same numbers instead of drawing fresh noise);
- ``meta``: small key/value settings (the monitor's release series).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from debiasrec.errors import ConfigError, DataError, MissingDependencyError

EVENT_COLUMNS = (
    "event_id",
    "received_at",
    "user_id",
    "item_id",
    "type",
    "value",
    "position",
    "request_id",
)
ADJUSTMENT_COLUMNS = ("at", "post", "kind", "strength", "value", "delta", "n_events")
PAYLOAD_FIELDS = ("user_id", "item_id", "type", "value", "position", "request_id")

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT UNIQUE,
    received_at REAL NOT NULL,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    type TEXT NOT NULL,
    value REAL,
    position INTEGER,
    request_id TEXT
);
CREATE TABLE IF NOT EXISTS adjustments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    post TEXT NOT NULL,
    kind TEXT NOT NULL,
    strength REAL NOT NULL,
    value REAL,
    delta REAL NOT NULL,
    n_events INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS releases (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    series TEXT NOT NULL,
    release INTEGER NOT NULL,
    end_seq INTEGER NOT NULL,
    at REAL NOT NULL,
    payload TEXT NOT NULL,
    UNIQUE (series, release)
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Event:
    """One feedback event as stored (ids are the original ids, as text)."""

    user_id: str
    item_id: str
    type: Literal["impression", "click", "rating"]
    value: float | None = None
    position: int | None = None
    request_id: str | None = None
    event_id: str | None = None


class EventConflict(DataError):
    """An ``event_id`` that is already stored (or repeated in the batch) with another payload."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class Release:
    """One published release of the fairness monitor (see :mod:`debiasrec.serve.monitor`)."""

    series: str
    release: int
    end_seq: int
    at: float
    payload: dict[str, Any]


def _payload(e: Event) -> tuple[Any, ...]:
    return (
        e.user_id,
        e.item_id,
        e.type,
        None if e.value is None else float(e.value),
        None if e.position is None else int(e.position),
        e.request_id,
    )


def _conflict(n: int, e: Event, stored: tuple[Any, ...]) -> EventConflict:
    # name the fields that differ, never the stored values (they may be another client's)
    diff = [f for f, a, b in zip(PAYLOAD_FIELDS, stored, _payload(e), strict=True) if a != b]
    return EventConflict(
        f"events[{n}]: event_id {e.event_id!r} was already used for a different event "
        f"(differs in: {', '.join(diff)}); an event_id identifies one event: retry with the "
        "same payload or use a new id",
        n,
    )


@dataclass(frozen=True)
class Adjustment:
    """One logged online-controller update."""

    at: float
    post: str
    kind: str
    strength: float
    value: float | None
    delta: float
    n_events: int


class FeedbackStore(ABC):
    """Where feedback events and controller adjustments are kept."""

    kind: str = "store"

    def add_events(self, events: Sequence[Event]) -> list[int]:
        """Insert ``events`` in one committed transaction (see :meth:`insert`).

        Returns:
            The store sequence number of each event (an event whose ``event_id`` was already
            stored gets the earlier number and is not inserted again).
        """
        return self.insert(events)[0]

    @abstractmethod
    def insert(self, events: Sequence[Event]) -> tuple[list[int], list[bool]]:
        """Insert ``events`` in one committed transaction, all or nothing.

        Returns:
            ``(seqs, new)``: the sequence number of each event and whether it was inserted now
            (False: its ``event_id`` was already stored with the same payload).

        Raises:
            EventConflict: an ``event_id`` already stored (or earlier in ``events``) with a
                different payload; nothing is stored.
        """

    @abstractmethod
    def add_adjustment(self, adj: Adjustment) -> None:
        """Log one controller update (committed)."""

    @abstractmethod
    def events(self, after_seq: int = 0) -> pd.DataFrame:
        """Stored events with ``seq > after_seq`` (columns ``seq`` + :data:`EVENT_COLUMNS`)."""

    @abstractmethod
    def adjustments(self, last: int | None = None) -> pd.DataFrame:
        """Logged adjustments, oldest first (only the ``last`` ones if given)."""

    @abstractmethod
    def count(self) -> int:
        """Number of stored events."""

    @abstractmethod
    def last_seq(self) -> int:
        """The largest event sequence number (0 when empty)."""

    @abstractmethod
    def add_release(self, release: Release) -> None:
        """Store one monitor release (committed)."""

    @abstractmethod
    def releases(self, series: str) -> list[Release]:
        """The stored releases of ``series``, in release order."""

    @abstractmethod
    def get_meta(self, key: str) -> str | None:
        """A stored setting (None if absent)."""

    @abstractmethod
    def set_meta(self, key: str, value: str) -> None:
        """Store a setting (committed)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def _rows(events: Sequence[Event], now: float) -> list[tuple[Any, ...]]:
    return [
        (e.event_id, now, e.user_id, e.item_id, e.type, e.value, e.position, e.request_id)
        for e in events
    ]


class SQLiteStore(FeedbackStore):
    """SQLite file in WAL mode; one connection guarded by a lock (writes are serialised anyway).

    Args:
        path: database file (created with its folder).
        synchronous: ``"FULL"`` (default: fsync on every commit) or ``"NORMAL"`` (see module
            docstring for what it risks).
    """

    kind = "sqlite"

    def __init__(self, path: str | Path, *, synchronous: Literal["FULL", "NORMAL"] = "FULL"):
        if synchronous not in ("FULL", "NORMAL"):
            raise ConfigError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._con = sqlite3.connect(
                str(self.path), check_same_thread=False, isolation_level=None, timeout=30.0
            )
            mode = self._con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise DataError(f"cannot open feedback store {self.path}: {exc}") from None
        if str(mode).lower() != "wal":
            raise DataError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
        self._con.execute(f"PRAGMA synchronous={synchronous}")
        self._con.executescript(_SQLITE_SCHEMA)
        self.synchronous = synchronous

    def pragma(self, name: str) -> Any:
        """Current value of a PRAGMA (e.g. ``journal_mode``, ``synchronous``)."""
        with self._lock:
            return self._con.execute(f"PRAGMA {name}").fetchone()[0]

    def insert(self, events: Sequence[Event]) -> tuple[list[int], list[bool]]:
        if not events:
            return [], []
        rows = _rows(events, time.time())
        with self._lock:
            cur = self._con.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                seqs: list[int] = []
                new: list[bool] = []
                for n, (e, row) in enumerate(zip(events, rows, strict=True)):
                    cur.execute(
                        "INSERT OR IGNORE INTO events (event_id, received_at, user_id, item_id, "
                        "type, value, position, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        row,
                    )
                    if cur.rowcount == 1:
                        seqs.append(int(cur.lastrowid or 0))
                        new.append(True)
                        continue
                    # duplicate event_id: already stored; the same event, or a conflict
                    got = cur.execute(
                        "SELECT seq, " + ", ".join(PAYLOAD_FIELDS) + " FROM events "
                        "WHERE event_id = ?",
                        (row[0],),
                    ).fetchone()
                    if tuple(got[1:]) != _payload(e):
                        raise _conflict(n, e, tuple(got[1:]))
                    seqs.append(int(got[0]))
                    new.append(False)
                cur.execute("COMMIT")  # durable (fsync with synchronous=FULL) before we return
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return seqs, new

    def add_adjustment(self, adj: Adjustment) -> None:
        with self._lock:
            self._con.execute(
                "INSERT INTO adjustments (at, post, kind, strength, value, delta, n_events) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (adj.at, adj.post, adj.kind, adj.strength, adj.value, adj.delta, adj.n_events),
            )

    def events(self, after_seq: int = 0) -> pd.DataFrame:
        with self._lock:
            cur = self._con.execute(
                "SELECT seq, " + ", ".join(EVENT_COLUMNS) + " FROM events WHERE seq > ? "
                "ORDER BY seq",
                (int(after_seq),),
            )
            data = cur.fetchall()
        return pd.DataFrame(data, columns=["seq", *EVENT_COLUMNS])

    def adjustments(self, last: int | None = None) -> pd.DataFrame:
        sql = "SELECT " + ", ".join(ADJUSTMENT_COLUMNS) + " FROM adjustments ORDER BY seq"
        with self._lock:
            data = self._con.execute(sql).fetchall()
        frame = pd.DataFrame(data, columns=list(ADJUSTMENT_COLUMNS))
        return frame if last is None else frame.tail(last).reset_index(drop=True)

    def count(self) -> int:
        with self._lock:
            return int(self._con.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def last_seq(self) -> int:
        with self._lock:
            got = self._con.execute("SELECT MAX(seq) FROM events").fetchone()[0]
        return int(got or 0)

    def add_release(self, release: Release) -> None:
        with self._lock:
            self._con.execute(
                "INSERT INTO releases (series, release, end_seq, at, payload) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    release.series,
                    release.release,
                    release.end_seq,
                    release.at,
                    json.dumps(release.payload),
                ),
            )

    def releases(self, series: str) -> list[Release]:
        with self._lock:
            rows = self._con.execute(
                "SELECT series, release, end_seq, at, payload FROM releases WHERE series = ? "
                "ORDER BY release",
                (series,),
            ).fetchall()
        return [Release(r[0], int(r[1]), int(r[2]), float(r[3]), json.loads(r[4])) for r in rows]

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            got = self._con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if got is None else str(got[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._con.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def close(self) -> None:
        with self._lock:
            self._con.close()


class SQLAlchemyStore(FeedbackStore):
    """Any database SQLAlchemy can reach (e.g. ``postgresql+psycopg://user@host/db``).

    Needs ``sqlalchemy`` (``pip install 'debiasrec[serve]' sqlalchemy`` plus the database's
    driver); without it :class:`~debiasrec.errors.MissingDependencyError` is raised.
    """

    kind = "sqlalchemy"

    def __init__(self, url: str):
        try:
            import sqlalchemy as sa
        except ImportError:
            raise MissingDependencyError(
                f"a feedback store URL ({url.split(':', 1)[0]}://...) needs SQLAlchemy; install "
                "it with: pip install 'debiasrec[sql]' (plus the database driver), or leave "
                "--store out to use the embedded SQLite file"
            ) from None
        self._sa = sa
        try:
            self._engine = sa.create_engine(url)
        except Exception as exc:  # bad URL or missing driver
            raise ConfigError(f"cannot use feedback store URL {url!r}: {exc}") from None
        md = sa.MetaData()
        self._events = sa.Table(
            "events",
            md,
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("event_id", sa.String(128), unique=True, nullable=True),
            sa.Column("received_at", sa.Float, nullable=False),
            sa.Column("user_id", sa.String(128), nullable=False),
            sa.Column("item_id", sa.String(128), nullable=False),
            sa.Column("type", sa.String(16), nullable=False),
            sa.Column("value", sa.Float, nullable=True),
            sa.Column("position", sa.Integer, nullable=True),
            sa.Column("request_id", sa.String(128), nullable=True),
        )
        self._adj = sa.Table(
            "adjustments",
            md,
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("at", sa.Float, nullable=False),
            sa.Column("post", sa.String(64), nullable=False),
            sa.Column("kind", sa.String(32), nullable=False),
            sa.Column("strength", sa.Float, nullable=False),
            sa.Column("value", sa.Float, nullable=True),
            sa.Column("delta", sa.Float, nullable=False),
            sa.Column("n_events", sa.Integer, nullable=False),
        )
        self._rel = sa.Table(
            "releases",
            md,
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("series", sa.String(64), nullable=False),
            sa.Column("release", sa.Integer, nullable=False),
            sa.Column("end_seq", sa.Integer, nullable=False),
            sa.Column("at", sa.Float, nullable=False),
            sa.Column("payload", sa.Text, nullable=False),
            sa.UniqueConstraint("series", "release"),
        )
        self._meta = sa.Table(
            "meta",
            md,
            sa.Column("key", sa.String(128), primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
        )
        try:
            md.create_all(self._engine)
        except Exception as exc:
            raise ConfigError(f"cannot open feedback store {url!r}: {exc}") from None
        self._lock = threading.Lock()  # keeps the duplicate check and insert atomic in-process

    def insert(self, events: Sequence[Event]) -> tuple[list[int], list[bool]]:
        if not events:
            return [], []
        sa, t = self._sa, self._events
        now = time.time()
        # commits on exit, before we return; an EventConflict rolls the whole batch back
        with self._lock, self._engine.begin() as con:
            ids = [e.event_id for e in events if e.event_id is not None]
            known: dict[str, tuple[int, tuple[Any, ...]]] = {}
            if ids:
                cols = [t.c.event_id, t.c.seq, *(t.c[f] for f in PAYLOAD_FIELDS)]
                for r in con.execute(sa.select(*cols).where(t.c.event_id.in_(ids))):
                    known[r[0]] = (int(r[1]), tuple(r[2:]))
            seqs: list[int] = []
            new: list[bool] = []
            for n, (e, row) in enumerate(zip(events, _rows(events, now), strict=True)):
                eid = row[0]
                if eid is not None and eid in known:
                    seq, stored = known[eid]
                    if stored != _payload(e):
                        raise _conflict(n, e, stored)
                    seqs.append(seq)
                    new.append(False)
                    continue
                res = con.execute(t.insert().values(dict(zip(EVENT_COLUMNS, row, strict=True))))
                key = res.inserted_primary_key
                assert key is not None  # an insert into a table with an integer primary key
                seq = int(key[0])
                seqs.append(seq)
                new.append(True)
                if eid is not None:
                    known[eid] = (seq, _payload(e))
        return seqs, new

    def add_adjustment(self, adj: Adjustment) -> None:
        with self._engine.begin() as con:
            con.execute(
                self._adj.insert().values(
                    at=adj.at,
                    post=adj.post,
                    kind=adj.kind,
                    strength=adj.strength,
                    value=adj.value,
                    delta=adj.delta,
                    n_events=adj.n_events,
                )
            )

    def events(self, after_seq: int = 0) -> pd.DataFrame:
        sa, t = self._sa, self._events
        cols = [t.c.seq, *(t.c[c] for c in EVENT_COLUMNS)]
        with self._engine.connect() as con:
            data = con.execute(sa.select(*cols).where(t.c.seq > after_seq).order_by(t.c.seq))
            rows = [tuple(r) for r in data]
        return pd.DataFrame(rows, columns=["seq", *EVENT_COLUMNS])

    def adjustments(self, last: int | None = None) -> pd.DataFrame:
        sa, t = self._sa, self._adj
        with self._engine.connect() as con:
            rows = [
                tuple(r)
                for r in con.execute(
                    sa.select(*(t.c[c] for c in ADJUSTMENT_COLUMNS)).order_by(t.c.seq)
                )
            ]
        frame = pd.DataFrame(rows, columns=list(ADJUSTMENT_COLUMNS))
        return frame if last is None else frame.tail(last).reset_index(drop=True)

    def count(self) -> int:
        sa = self._sa
        with self._engine.connect() as con:
            n = con.execute(sa.select(sa.func.count()).select_from(self._events)).scalar()
            return int(n or 0)

    def last_seq(self) -> int:
        sa = self._sa
        with self._engine.connect() as con:
            return int(con.execute(sa.select(sa.func.max(self._events.c.seq))).scalar() or 0)

    def add_release(self, release: Release) -> None:
        with self._engine.begin() as con:
            con.execute(
                self._rel.insert().values(
                    series=release.series,
                    release=release.release,
                    end_seq=release.end_seq,
                    at=release.at,
                    payload=json.dumps(release.payload),
                )
            )

    def releases(self, series: str) -> list[Release]:
        sa, t = self._sa, self._rel
        q = sa.select(t.c.series, t.c.release, t.c.end_seq, t.c.at, t.c.payload)
        with self._engine.connect() as con:
            rows = list(con.execute(q.where(t.c.series == series).order_by(t.c.release)))
        return [Release(r[0], int(r[1]), int(r[2]), float(r[3]), json.loads(r[4])) for r in rows]

    def get_meta(self, key: str) -> str | None:
        sa, t = self._sa, self._meta
        with self._engine.connect() as con:
            got = con.execute(sa.select(t.c.value).where(t.c.key == key)).scalar()
        return None if got is None else str(got)

    def set_meta(self, key: str, value: str) -> None:
        sa, t = self._sa, self._meta
        with self._lock, self._engine.begin() as con:
            if con.execute(sa.select(t.c.key).where(t.c.key == key)).first() is None:
                con.execute(t.insert().values(key=key, value=value))
            else:
                con.execute(t.update().where(t.c.key == key).values(value=value))

    def close(self) -> None:
        self._engine.dispose()


def open_store(
    url: str | None,
    default_path: str | Path,
    *,
    synchronous: Literal["FULL", "NORMAL"] = "FULL",
) -> FeedbackStore:
    """The store for ``url``: None or a path -> :class:`SQLiteStore`; ``scheme://...`` ->
    :class:`SQLAlchemyStore` (``sqlite:///file`` too, through SQLAlchemy)."""
    if url is None:
        return SQLiteStore(default_path, synchronous=synchronous)
    if "://" in url:
        return SQLAlchemyStore(url)
    return SQLiteStore(url, synchronous=synchronous)


__all__ = [
    "ADJUSTMENT_COLUMNS",
    "EVENT_COLUMNS",
    "Adjustment",
    "Event",
    "EventConflict",
    "FeedbackStore",
    "Release",
    "SQLAlchemyStore",
    "SQLiteStore",
    "open_store",
]
