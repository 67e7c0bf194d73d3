"""Budgets shared by the processes of one host, in an SQLite file.

Each reservation and settlement is one ``BEGIN IMMEDIATE`` transaction, which takes the
file's write lock first, so check-then-reserve cannot interleave across processes. A
process waits at most the store's timeout for that lock (``busy_timeout``), then the
store counts as unavailable. Reservations are lease rows: the reserved total of a
budget is the sum of its live leases, so a process killed mid-call leaves nothing
reserved once its leases lapse.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Callable, Sequence, TypeVar

from otel_llmcost.budgets._store import Admission, Line, Settled, StoreUnavailable, admit, crossed

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS budget (key TEXT PRIMARY KEY, spent INTEGER NOT NULL, "
    "notified INTEGER NOT NULL, expires REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS lease (ticket TEXT NOT NULL, key TEXT NOT NULL, "
    "amount INTEGER NOT NULL, until REAL NOT NULL, PRIMARY KEY (ticket, key))",
    "CREATE INDEX IF NOT EXISTS lease_by_key ON lease (key, until)",
)
_SPENT = "SELECT spent, notified FROM budget WHERE key = ?"
_RESERVED = "SELECT COALESCE(SUM(amount), 0) FROM lease WHERE key = ? AND until > ?"
_SWEEP_EVERY = 4096
# Opening the file and creating its tables, once per process: workers that start together
# queue here for the write lock, longer than a call may wait. With the call's timeout
# (1 ms) for this too, 8 processes opening a new file at once left budgets OFF in some of
# them in 10 trials of 10.
_SETUP_TIMEOUT_S = 10.0
_T = TypeVar("_T")


def _until_done(step: Callable[[], object], deadline: float) -> None:
    """Retry ``step`` while the file is locked: switching a new file to WAL fails at once,
    without the busy wait, while other processes open it (1 opening in 16 here)."""
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


class SQLiteStore:
    """The budget tables in the SQLite file at ``path`` (created if missing)."""

    def __init__(self, path: str, timeout_s: float) -> None:
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, timeout=max(timeout_s, _SETUP_TIMEOUT_S),
                                       isolation_level=None, check_same_thread=False)
            _until_done(lambda: self._db.execute("PRAGMA journal_mode=WAL"),
                        time.monotonic() + _SETUP_TIMEOUT_S)
            self._db.execute("PRAGMA synchronous=NORMAL")
            # IMMEDIATE: the write lock first, waited for. Created in a read transaction,
            # a table needs the lock upgraded, which SQLite refuses at once when another
            # process waits for it too (it would deadlock), without waiting.
            self._db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                self._db.execute(statement)
            self._db.execute("COMMIT")
            self._db.execute(f"PRAGMA busy_timeout = {max(1, round(timeout_s * 1000))}")
        except sqlite3.Error as error:
            raise StoreUnavailable(f"sqlite {path}: {error}") from error
        self._until_sweep = _SWEEP_EVERY

    def reserve(self, ticket: str, lines: Sequence[Line], amount: int, now_s: float,
                lease_until: float) -> Admission:
        def step(db: sqlite3.Connection) -> Admission:
            totals = tuple((self._spent(db, line.key)[0],
                            db.execute(_RESERVED, (line.key, now_s)).fetchone()[0])
                           for line in lines)
            granted, over = admit(lines, totals, amount)
            if granted:
                db.executemany("INSERT INTO lease VALUES (?, ?, ?, ?)",
                               [(ticket, line.key, amount, lease_until) for line in lines])
                db.executemany("INSERT OR IGNORE INTO budget VALUES (?, 0, 0, ?)",
                               [(line.key, line.expires_s) for line in lines])
            self._until_sweep -= 1
            if self._until_sweep <= 0:
                self._until_sweep = _SWEEP_EVERY
                db.execute("DELETE FROM lease WHERE until <= ?", (now_s,))
                db.execute("DELETE FROM budget WHERE expires < ?", (now_s,))
            return Admission(granted, over, totals)
        return self._transaction(step)

    def settle(self, ticket: str, lines: Sequence[Line], amount: int, actual: int,
               now_s: float) -> Settled:
        def step(db: sqlite3.Connection) -> Settled:
            db.execute("DELETE FROM lease WHERE ticket = ?", (ticket,))
            totals, news = [], []
            for line in lines:
                db.execute("INSERT INTO budget VALUES (?, ?, 0, ?) ON CONFLICT (key) "
                           "DO UPDATE SET spent = spent + excluded.spent",
                           (line.key, actual, line.expires_s))
                spent, notified = self._spent(db, line.key)
                new = crossed(spent, line.soft, notified)
                if new:
                    db.execute("UPDATE budget SET notified = ? WHERE key = ?",
                               (notified | new, line.key))
                totals.append((spent, db.execute(_RESERVED, (line.key, now_s)).fetchone()[0]))
                news.append(new)
            return Settled(tuple(totals), tuple(news))
        return self._transaction(step)

    @staticmethod
    def _spent(db: sqlite3.Connection, key: str) -> tuple[int, int]:
        row = db.execute(_SPENT, (key,)).fetchone()
        return (row[0], row[1]) if row else (0, 0)

    def _transaction(self, step: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:  # locked past busy_timeout, or unusable
                raise StoreUnavailable(f"sqlite: {error}") from error
            try:
                result = step(db)
                db.execute("COMMIT")
            except BaseException as error:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if isinstance(error, sqlite3.Error):
                    raise StoreUnavailable(f"sqlite: {error}") from error
                raise
            return result

    def close(self) -> None:
        with self._lock:
            self._db.close()
