"""Checkpoints of the engine's state in an embedded SQLite database.

Incremental: each checkpoint (`Engine.changes`) writes only the conversations that
changed and the customer windows spent in (one row each, whole), and deletes those that
closed; closed trace ids are appended as one row per checkpoint and trimmed to what the
engine keeps; the open traces (short-lived, nearly all new each time: in a file beside the
database, see `Store`) and the metrics are replaced whole. All of it in one transaction
(which names the open traces' file, written first): a ``kill -9`` at any moment leaves
either the previous checkpoint or the new one, never a mix. Rewriting the whole state as
JSON every time cost about 3.5 µs per span in the benchmark's stream (bench_processor.py),
about half the cost of rolling up.

Row order is state: conversations close in order of last activity, so they are read
back in rowid order (a replaced conversation gets the next rowid); customers are folded
away in order of first spend, which each window's row keeps.

A file that cannot be read (corrupt, or from an incompatible version) is moved aside,
logged, and the processor starts empty rather than not at all.
"""

from __future__ import annotations

import glob
import logging
import os
import sqlite3
from collections import deque
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson

_LOG = logging.getLogger("otel_llmcost.processor")
SCHEMA_VERSION = 4  # PRAGMA user_version: the tables' layout
_SCHEMA = (
    # traces: the number of the side file holding the open traces (see `Store`).
    "CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 1), saved_ns INTEGER NOT NULL, "
    "meta BLOB NOT NULL, traces INTEGER NOT NULL, closed_count INTEGER NOT NULL)",
    "CREATE TABLE closed (seq INTEGER PRIMARY KEY, ids BLOB NOT NULL)",
    # Values as the JSON text they came in: read back by orjson, exactly.
    "CREATE TABLE conversations (id TEXT PRIMARY KEY, state TEXT NOT NULL)",
    # A customer window's spend, whole: a JSON object of customer → USD, in its order.
    "CREATE TABLE spend (label TEXT NOT NULL, idx INTEGER NOT NULL, customers BLOB NOT NULL, "
    "PRIMARY KEY (label, idx))",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
_ID = 16  # bytes of a closed trace id
# Rows go in as one JSON array per statement, unpacked by SQLite (json_each): a statement
# per row would release and retake the GIL per row, and wait for the receiver threads
# each time. json_each keeps the array's order, so rowids follow it.
_DELETE_CONVERSATIONS = ("DELETE FROM conversations WHERE id IN "
                         "(SELECT value FROM json_each(?))")
_UPSERT_CONVERSATIONS = ("INSERT OR REPLACE INTO conversations "
                         "SELECT value ->> 0, json_array(value -> 1, value -> 2, value -> 3) "
                         "FROM json_each(?) ORDER BY key")
_DELETE_WINDOWS = ("DELETE FROM spend WHERE (label, idx) IN "
                   "(SELECT value ->> 0, value ->> 1 FROM json_each(?))")

class Store:
    """The checkpoint file at ``path``, and its open traces beside it.

    The open traces (megabytes, rewritten at every checkpoint) go to a file of their own,
    ``<path>-traces-<n>``, written before the transaction that names it commits: in the
    database, the blob cost SQLite a copy into its pages, WAL checksums, the WAL write and
    a second copy at each WAL checkpoint. The previous file is kept until the next commit,
    so a reader of the last committed state always finds its file; older ones are deleted.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        # (seq, ids) of the closed-id rows, oldest first: what trimming them needs.
        self._chunks: deque[tuple[int, int]] = deque()
        self._traces = 0  # the number of the committed open-traces file
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as error:  # not a database at all
            self._move_aside(error)
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoint, fast commits
            if not db.execute("SELECT 1 FROM sqlite_master").fetchone():  # a new file
                db.execute("BEGIN")
                for statement in _SCHEMA:
                    db.execute(statement)
                db.execute("COMMIT")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            self._chunks, self._traces = deque(), 0
            if version == SCHEMA_VERSION:  # else: load() refuses it
                self._chunks = deque(db.execute(
                    "SELECT seq, length(ids) / ? FROM closed ORDER BY seq", (_ID,)))
                row = db.execute("SELECT traces FROM meta").fetchone()
                self._traces = row[0] if row else 0
        except sqlite3.DatabaseError:
            db.close()
            raise
        self._prune(keep=(self._traces - 1, self._traces))  # left by a crash, if any
        return db

    def _prune(self, keep: tuple[int, ...]) -> None:
        """Delete the open-traces files but those numbered ``keep``."""
        for number, file in _traces_files(self.path).items():
            if number not in keep:
                file.unlink(missing_ok=True)

    def save(self, state: dict[str, Any], now_ns: int) -> int:
        """Apply a checkpoint (`Engine.changes`, or a full `Engine.dump`); returns the
        bytes it wrote."""
        db, chunks = self._db, deque(self._chunks)
        meta = orjson.dumps(state["meta"])
        conversations, spend, closed = state["conversations"], state["spend"], state["closed"]
        written = len(meta) + len(state["traces"]) + len(closed)
        traces = self._traces + 1
        _traces_path(self.path, traces).write_bytes(state["traces"])
        with db:  # commits, or rolls back if anything fails
            db.execute("BEGIN")
            if state["full"]:
                for table in ("closed", "conversations", "spend"):
                    db.execute(f"DELETE FROM {table}")
                chunks.clear()
            for statement, rows in ((_DELETE_CONVERSATIONS, state["conversations_gone"]),
                                    (_UPSERT_CONVERSATIONS, conversations),
                                    (_DELETE_WINDOWS, state["windows_gone"])):
                if rows:
                    text = orjson.dumps(rows)
                    written += len(text)
                    db.execute(statement, (text,))
            for label, index, customers in spend:
                text = orjson.dumps(customers)
                written += len(text)
                db.execute("INSERT OR REPLACE INTO spend VALUES (?, ?, ?)",
                           (label, index, text))
            if closed:
                seq = chunks[-1][0] + 1 if chunks else 0
                db.execute("INSERT INTO closed VALUES (?, ?)", (seq, closed))
                chunks.append((seq, len(closed) // _ID))
            kept, total = state["closed_count"], sum(n for _, n in chunks)
            while chunks and total - chunks[0][1] >= kept:  # ids the engine no longer keeps
                total -= chunks[0][1]
                db.execute("DELETE FROM closed WHERE seq = ?", (chunks.popleft()[0],))
            db.execute("INSERT OR REPLACE INTO meta VALUES (1, ?, ?, ?, ?)",
                       (now_ns, meta, traces, kept))
        self._chunks, self._traces = chunks, traces
        self._prune(keep=(traces - 1, traces))
        return written

    def load(self) -> tuple[dict[str, Any], int] | None:
        """(full state, saved at) of the last checkpoint, or None if there is none or it is
        bad (then moved aside)."""
        try:
            return _read(self._db, self.path)
        except (sqlite3.DatabaseError, ValueError) as error:
            self.discard(error)
            return None

    def discard(self, error: Exception) -> None:
        """Move a checkpoint that cannot be used aside (logged) and start a new file."""
        self._db.close()
        self._move_aside(error)
        self._db = self._open()

    def _move_aside(self, error: Exception) -> None:
        aside = self.path.with_name(self.path.name + ".unreadable")
        for file in _traces_files(aside).values():  # an older one's: replaced
            file.unlink()
        suffixes = ["", "-wal", "-shm"] + [f"-traces-{n}" for n in _traces_files(self.path)]
        for suffix in suffixes:
            source = Path(str(self.path) + suffix)
            if source.exists():
                source.replace(Path(str(aside) + suffix))
        _LOG.error("otel-llmcost-processor: checkpoint %s unreadable (%s); moved to %s, "
                   "starting empty", self.path, error, aside)

    def close(self) -> None:
        self._db.close()


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], int] | None:
    """(full state, saved at) of the checkpoint file at ``path``, opened read-only (a live
    processor may be writing it; a file moved aside can be inspected)."""
    with closing(sqlite3.connect(f"{Path(path).as_uri()}?mode=ro", uri=True)) as db:
        return _read(db, Path(path))


def _traces_path(path: Path, number: int) -> Path:
    return path.with_name(f"{path.name}-traces-{number}")


def _traces_files(path: Path) -> dict[int, Path]:
    """The open-traces files of the checkpoint at ``path``, by number."""
    prefix = f"{path.name}-traces-"
    return {int(f.name[len(prefix):]): f for f in path.parent.glob(f"{glob.escape(prefix)}*")
            if f.name[len(prefix):].isdigit()}


def _read(db: sqlite3.Connection, path: Path) -> tuple[dict[str, Any], int] | None:
    """The state the checkpoints in ``db`` add up to, as one full `Engine.dump` would be."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version != SCHEMA_VERSION:
        raise ValueError(f"checkpoint file version {version}, expected {SCHEMA_VERSION}")
    with db:  # one read transaction: a consistent view while a processor writes
        db.execute("BEGIN")
        row = db.execute("SELECT saved_ns, meta, traces, closed_count FROM meta").fetchone()
        if row is None:
            return None
        closed = b"".join(ids for ids, in db.execute("SELECT ids FROM closed ORDER BY seq"))
        try:
            traces = _traces_path(path, row[2]).read_bytes()
        except OSError as error:
            raise ValueError(f"checkpoint: its open traces are missing ({error})") from None
        state = {
            "full": True, "meta": orjson.loads(row[1]), "traces": traces,
            "closed": closed[max(0, len(closed) - row[3] * _ID):] if row[3] else b"",
            "closed_count": row[3],
            "conversations": [(cid, *orjson.loads(values)) for cid, values in db.execute(
                "SELECT id, state FROM conversations ORDER BY rowid")],
            "conversations_gone": [],
            "spend": [(label, index, orjson.loads(customers)) for label, index, customers
                      in db.execute("SELECT label, idx, customers FROM spend")],
            "windows_gone": [],
        }
    return state, row[0]
