"""SQLite checkpoints: incremental saves that add up to the whole state, applied
atomically, and a bad file never stops the processor."""

from __future__ import annotations

import sqlite3

import pytest

from otel_llmcost.processor.engine import Config, Engine
from otel_llmcost.processor.store import Store, read_checkpoint
from tests.test_engine import observable, run, workload

# Small caps: conversations and traces are evicted, customers folded into __other__, and
# closed trace ids fall off, so rows are deleted and row order decides what goes next.
SMALL = Config(trace_wait_s=30, conversation_idle_s=900, max_traces=20,
               max_conversations=12, max_customers=10)


def comparable(saved: tuple[dict, int] | None) -> tuple[dict, int]:
    """The windows in one order; each window's customers in their own (the one that
    matters), as lists, since a dict's order is not part of its equality."""
    assert saved is not None
    state, saved_ns = saved
    spend = sorted((label, index, list(customers.items()))
                   for label, index, customers in state["spend"])
    return {**state, "spend": spend}, saved_ns


def test_incremental_checkpoints_add_up_to_the_whole_state(tmp_path):
    engine, store = Engine(SMALL), Store(tmp_path / "state.db")
    assert store.load() is None
    saves = 0
    for i, (now, records) in enumerate(workload(seed=7, traces=600)):
        run(engine, [(now, records)])
        if i % 7 == 0:
            changes = engine.changes()
            saves += bool(changes["conversations_gone"] or changes["windows_gone"])
            store.save(changes, now)
            # Rows in order, none left over:
            assert comparable(store.load()) == comparable((engine.dump(), now))
    assert saves > 10  # closed conversations (and windows) were deleted
    counts = [store._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
              for table in ("conversations", "spend", "closed")]
    assert counts[0] == len(engine.conversations.open) <= SMALL.max_conversations
    assert counts[1] == sum(len(ws.open) for ws in engine.customers.windows)
    assert counts[2] < 20  # closed-id rows of old checkpoints are trimmed


def test_a_restore_from_incremental_checkpoints_continues_like_an_uninterrupted_run(
        tmp_path):
    steps = workload(seed=8, traces=600)
    uninterrupted = run(Engine(SMALL), steps)
    engine, path = Engine(SMALL), tmp_path / "state.db"
    for cut in (150, 300, 450):  # three restarts, each from the file alone
        store = Store(path)
        loaded = store.load()
        engine = Engine.restore(SMALL, loaded[0]) if loaded else engine
        start = cut - 150
        for at in range(start, cut, 9):
            run(engine, steps[at:min(at + 9, cut)])
            store.save(engine.changes(), steps[at][0])
        store.close()
    state, _ = Store(path).load()
    assert observable(run(Engine.restore(SMALL, state), steps[450:])) == \
        observable(uninterrupted)


def test_a_failed_checkpoint_leaves_the_previous_one_whole(tmp_path):
    engine = Engine(Config(trace_wait_s=86400, trace_idle_s=86400))  # the state grows
    store, steps = Store(tmp_path / "state.db"), workload(seed=9, traces=600)
    run(engine, steps[:50])
    store.save(engine.changes(), 1)
    before = store.load()
    run(engine, steps[50:])
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")  # as a full disk would
    with pytest.raises(sqlite3.OperationalError, match="full"):
        store.save(engine.changes(), 2)
    assert store.load() == before


def test_a_full_dump_replaces_every_row(tmp_path):
    engine, store = Engine(SMALL), Store(tmp_path / "state.db")
    steps = workload(seed=10, traces=200)
    run(engine, steps[:100])
    store.save(engine.changes(), 1)
    fresh = run(Engine(SMALL), steps[150:])
    store.save(fresh.dump(), 2)
    store.close()
    assert comparable(read_checkpoint(tmp_path / "state.db")) == comparable((fresh.dump(), 2))


def test_an_unreadable_file_is_moved_aside_and_the_store_starts_empty(tmp_path):
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database" * 100)
    store = Store(path)
    assert store.load() is None
    assert (tmp_path / "state.db.unreadable").read_bytes().startswith(b"this is not")
    state = Engine().dump()
    store.save(state, 1)
    assert store.load() == (state, 1)


def test_a_file_of_another_layout_is_moved_aside(tmp_path):
    """E.g. the single JSON row of version 2: refused as a whole, not half read."""
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE checkpoint (id INTEGER PRIMARY KEY, saved_ns INTEGER, "
                   "state TEXT)")
        db.execute("INSERT INTO checkpoint VALUES (1, 5, '{}')")
    db.close()
    store = Store(path)
    assert store.load() is None
    assert (tmp_path / "state.db.unreadable").exists()
    assert store.load() is None  # a new, empty file


def test_the_open_traces_file_beside_the_database_goes_with_its_checkpoint(tmp_path):
    """The open traces are written to a file beside the database before the transaction
    that names it commits: the last two are kept, and a checkpoint whose file is gone is
    refused whole (moved aside, with its files), not restored without its traces."""
    path = tmp_path / "state.db"
    engine, store = Engine(Config(trace_wait_s=86400)), Store(path)
    steps = workload(seed=11, traces=200)
    for at in range(0, 100, 10):
        run(engine, steps[at:at + 10])
        store.save(engine.changes(), at)
    assert sorted(f.name for f in tmp_path.glob("state.db-traces-*")) == [
        "state.db-traces-10", "state.db-traces-9"]
    state, _ = store.load()
    assert state["traces"] and state["traces"] == engine.dump()["traces"]
    store.close()
    (tmp_path / "state.db-traces-10").unlink()
    store = Store(path)
    assert store.load() is None
    assert (tmp_path / "state.db.unreadable-traces-9").exists()
    assert not list(tmp_path.glob("state.db-traces-*"))
