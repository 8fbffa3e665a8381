"""Durable feedback store: SQLite (WAL) by default, any SQLAlchemy URL as an option.

Every acknowledged event is durable: :meth:`FeedbackStore.add_events` returns only after the
transaction holding the events has committed, and the HTTP service answers only after that.

SQLite runs in WAL mode with ``synchronous=FULL`` by default: each commit is fsynced, so an
acknowledged event survives a process crash *and* a power loss. ``synchronous="NORMAL"`` is
faster (in WAL mode the WAL is fsynced only at checkpoints); it still survives a crash or
``SIGKILL`` of the server, but the last commits before a power loss or OS crash may be lost.

Tables (created on first use):

- ``events``: one row per feedback event (``seq`` autoincrement, client ``event_id`` unique when
  given, so a retried request is not counted twice);
- ``adjustments``: one row per online-controller update (strength, measured value, step).
"""

from __future__ import annotations

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

    @abstractmethod
    def add_events(self, events: Sequence[Event]) -> list[int]:
        """Insert ``events`` in one committed transaction.

        Returns:
            The store sequence number of each event (an event whose ``event_id`` was already
            stored gets the earlier number and is not inserted again).
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

    def add_events(self, events: Sequence[Event]) -> list[int]:
        if not events:
            return []
        rows = _rows(events, time.time())
        with self._lock:
            cur = self._con.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                seqs: list[int] = []
                for row in rows:
                    cur.execute(
                        "INSERT OR IGNORE INTO events (event_id, received_at, user_id, item_id, "
                        "type, value, position, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        row,
                    )
                    if cur.rowcount == 1:
                        seqs.append(int(cur.lastrowid or 0))
                    else:  # duplicate event_id: already stored
                        seqs.append(
                            int(
                                cur.execute(
                                    "SELECT seq FROM events WHERE event_id = ?", (row[0],)
                                ).fetchone()[0]
                            )
                        )
                cur.execute("COMMIT")  # durable (fsync with synchronous=FULL) before we return
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return seqs

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
        try:
            md.create_all(self._engine)
        except Exception as exc:
            raise ConfigError(f"cannot open feedback store {url!r}: {exc}") from None
        self._lock = threading.Lock()  # keeps the duplicate check and insert atomic in-process

    def add_events(self, events: Sequence[Event]) -> list[int]:
        if not events:
            return []
        sa, t = self._sa, self._events
        now = time.time()
        with self._lock, self._engine.begin() as con:  # commits on exit, before we return
            ids = [e.event_id for e in events if e.event_id is not None]
            known: dict[str, int] = {}
            if ids:
                for eid, seq in con.execute(
                    sa.select(t.c.event_id, t.c.seq).where(t.c.event_id.in_(ids))
                ):
                    known[eid] = int(seq)
            seqs: list[int] = []
            for row in _rows(events, now):
                eid = row[0]
                if eid is not None and eid in known:
                    seqs.append(known[eid])
                    continue
                res = con.execute(t.insert().values(dict(zip(EVENT_COLUMNS, row, strict=True))))
                seq = int(res.inserted_primary_key[0])
                seqs.append(seq)
                if eid is not None:
                    known[eid] = seq
        return seqs

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
            return int(con.execute(sa.select(sa.func.count()).select_from(self._events)).scalar())

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
    "FeedbackStore",
    "SQLAlchemyStore",
    "SQLiteStore",
    "open_store",
]
