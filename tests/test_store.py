"""SQLite checkpoints: atomic replace, and a bad file never stops the processor."""

from __future__ import annotations

from otel_llmcost.processor.store import Store


def test_a_checkpoint_is_replaced_whole_and_read_back(tmp_path):
    store = Store(tmp_path / "state.db")
    assert store.load() is None
    store.save({"version": 1, "n": 1}, now_ns=10)
    store.save({"version": 1, "n": 2}, now_ns=20)
    store.close()
    assert Store(tmp_path / "state.db").load() == ({"version": 1, "n": 2}, 20)


def test_an_unreadable_file_is_moved_aside_and_the_store_starts_empty(tmp_path):
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database" * 100)
    store = Store(path)
    assert store.load() is None
    assert (tmp_path / "state.db.unreadable").read_bytes().startswith(b"this is not")
    store.save({"version": 1}, 1)
    assert store.load() == ({"version": 1}, 1)


def test_a_row_that_is_not_json_is_moved_aside(tmp_path):
    path = tmp_path / "state.db"
    store = Store(path)
    store._db.execute("INSERT INTO checkpoint VALUES (1, 5, '{not json')")
    assert store.load() is None
    assert (tmp_path / "state.db.unreadable").exists()
