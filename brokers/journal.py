"""A persistent journal of every live order intent and outcome, so a crash or restart neither duplicates nor loses
an order (SQLite from the standard library, one file per account and symbol).

An intent is written (and committed) *before* its request leaves the process; its outcome when it is known. After
a crash, an intent still ``sent`` or ``unknown`` is resolved against the terminal's deals (matched by our client
order id, sent as the order comment) before anything new is sent: that is the only way a timed-out order that did
execute is not sent twice. The journal also keeps named state (the drawdown guard's day anchor and halt, the
account's initial balance) so that it survives a restart.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Status = Literal["sent", "filled", "partial", "rejected", "unknown", "not_executed"]
OPEN: tuple[Status, ...] = ("sent", "unknown")
"""statuses whose outcome is not known yet"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS intents (
    cid TEXT PRIMARY KEY,
    run INTEGER NOT NULL,
    created REAL NOT NULL,
    bar_minute INTEGER NOT NULL,
    symbol TEXT NOT NULL,
    units INTEGER NOT NULL,
    target_units INTEGER NOT NULL,
    status TEXT NOT NULL,
    retcode INTEGER,
    executed_units INTEGER NOT NULL DEFAULT 0,
    price REAL,
    deals TEXT NOT NULL DEFAULT '[]',
    detail TEXT NOT NULL DEFAULT '',
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    ts REAL NOT NULL,
    run INTEGER NOT NULL,
    cid TEXT,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Intent:
    """One order as the journal holds it; sizes in whole units of the base currency (signed)."""

    cid: str
    run: int
    created: float
    bar_minute: int
    symbol: str
    units: int
    target_units: int
    status: Status
    retcode: int | None
    executed_units: int
    price: float | None
    deals: tuple[int, ...]
    detail: str


class Journal:
    """:param path: the SQLite file (created with its folder)"""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), isolation_level=None)  # autocommit: every write is durable
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: every committed write survives a crash of this process (kill -9); a power cut may
        # lose the last ones, and an order whose intent was lost is still found at start as an orphan deal of ours
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self.run = int(self.get("runs", 0)) + 1
        self.put("runs", self.run)
        self._seq = 0

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ intents
    def new_cid(self) -> str:
        """A client order id unique over every run of this journal, at most 31 characters (MT5 keeps comments
        that long)."""
        self._seq += 1
        return f"mtf-{self.run:05d}-{self._seq:07d}"

    def intend(self, cid: str, created: float, bar_minute: int, symbol: str, units: int, target_units: int) -> None:
        """Record an order before it is sent (committed when this returns); ``created`` is the terminal's clock
        (UTC seconds), so its deals can be looked up around it."""
        self._db.execute("INSERT INTO intents (cid, run, created, bar_minute, symbol, units, target_units, status, "
                         "updated) VALUES (?, ?, ?, ?, ?, ?, ?, 'sent', ?)",
                         (cid, self.run, created, bar_minute, symbol, units, target_units, time.time()))

    def resolve(self, cid: str, status: Status, retcode: int | None = None, executed_units: int = 0,
                price: float | None = None, deals: tuple[int, ...] = (), detail: str = "") -> None:
        self._db.execute("UPDATE intents SET status = ?, retcode = ?, executed_units = ?, price = ?, deals = ?, "
                         "detail = ?, updated = ? WHERE cid = ?",
                         (status, retcode, executed_units, price, json.dumps(list(deals)), detail[:500], time.time(),
                          cid))

    def open_intents(self) -> list[Intent]:
        """Intents whose outcome is not known (a crash between sending and hearing back, or a timeout)."""
        return self._intents(f"status IN ({', '.join('?' * len(OPEN))})", OPEN)

    def intents(self) -> list[Intent]:
        return self._intents("1", ())

    def _intents(self, where: str, args: tuple) -> list[Intent]:
        rows = self._db.execute(f"SELECT cid, run, created, bar_minute, symbol, units, target_units, status, retcode, "
                                f"executed_units, price, deals, detail FROM intents WHERE {where} ORDER BY created",
                                args).fetchall()
        return [Intent(*r[:11], tuple(json.loads(r[11])), r[12]) for r in rows]

    # ------------------------------------------------------------------ events and state
    def event(self, kind: str, detail: str | dict, cid: str | None = None) -> None:
        text = detail if isinstance(detail, str) else json.dumps(detail, default=str)
        self._db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?)", (time.time(), self.run, cid, kind, text))

    def put(self, key: str, value: object) -> None:
        self._db.execute("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                         "value = excluded.value", (key, json.dumps(value, default=str)))

    def get(self, key: str, default: object = None) -> object:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])
