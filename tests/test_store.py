"""labels.db: migrations, append-only events, undo, derived label state, classes, concurrent writers."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from activelearn import FMNIST_CLASSES, store
from activelearn.errors import StoreError

SNEAKER, BAG, SHIRT = FMNIST_CLASSES.index("Sneaker"), FMNIST_CLASSES.index("Bag"), FMNIST_CLASSES.index("Shirt")


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path: Path) -> str:
    """A new database on each backend: a labels.db file, or a fresh schema on the session's PostgreSQL server
    (those cases skip, saying why, when no server can run)."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    return str(tmp_path / "labels.db")


@pytest.fixture
def db(location: str):
    """Every test of this module that takes `db` runs on both backends."""
    return store.open_db(location)


def add_item(db, n: int, split: str = "pool") -> int:
    return store.insert_item(db, sha256=f"{n:064x}", source="folder", original_name=f"photo{n}.jpg",
                             split=split, pixels=np.full((28, 28), n % 256, np.uint8))


# ---------------------------------------------------------------- migrations

def test_open_db_creates_the_schema_and_seeds_the_fashion_mnist_classes(tmp_path: Path):
    db = store.open_db(tmp_path / "new" / "labels.db")
    assert store.schema_version(db) == store.SCHEMA_VERSION == 4
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    classes = store.list_classes(db)
    assert [c.name for c in classes] == list(FMNIST_CLASSES)
    assert [c.id for c in classes] == [c.fmnist_index for c in classes] == list(range(10))
    assert store.migrate(db) == 4  # applying again changes nothing
    assert len(store.list_classes(db)) == 10
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}
    assert {"embeddings", "settings", "label_issues", "label_issue_scans"} <= tables


def test_a_version_1_database_upgrades_keeping_its_rows(tmp_path: Path):
    """Version 1 plus the label-issue tables that version created outside the migrations."""
    import sqlite3
    path = tmp_path / "labels.db"
    conn = sqlite3.connect(path)
    for statement in store._split_sql(store._MIGRATIONS[1]):
        conn.execute(statement)
    conn.execute("INSERT INTO classes (id, name, fmnist_index, created_at) VALUES (0, 'T-shirt/top', 0, 'x')")
    conn.execute("CREATE TABLE label_issue_scans (id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, "
                 "settings TEXT NOT NULL, labeled INTEGER NOT NULL, flagged INTEGER NOT NULL)")
    conn.execute("INSERT INTO label_issue_scans VALUES (1, 'x', '{}', 3, 1)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store._migrated.clear()
    db = store.open_db(path)
    assert store.schema_version(db) == 4
    assert db.execute("SELECT labeled FROM label_issue_scans").fetchall() == [(3,)]
    assert store.class_names(db) == ["T-shirt/top"]
    store.put_embeddings(db, "b", [], np.zeros((0, 4), np.float32))


def test_a_database_from_a_newer_activelearn_is_refused(tmp_path: Path):
    path = tmp_path / "future.db"
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 7")
    raw.close()
    with pytest.raises(StoreError, match="schema version 7, newer"):
        store.open_db(path)
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == []
    raw.close()


def test_a_postgres_database_from_a_newer_activelearn_is_refused(pg_url: str):
    db = store.open_db(pg_url)
    db.execute("INSERT INTO activelearn_schema (version) VALUES (?)", [store.SCHEMA_VERSION + 3])
    store._migrated.clear()   # as a new process would open it
    with pytest.raises(StoreError, match=f"schema version {store.SCHEMA_VERSION + 3}, newer"):
        store.open_db(pg_url)


def test_an_unreachable_postgres_server_is_one_sentence():
    from tests.helpers import free_port
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install -r requirements.txt")
    with pytest.raises(StoreError, match="cannot connect to the PostgreSQL database .*:\\*\\*\\*@"):
        store.open_db(f"postgresql://someone:secret@127.0.0.1:{free_port()}/labels")


def test_postgres_labels_cannot_be_truncated(pg_url: str):
    db = store.open_db(pg_url)
    store.record_label(db, add_item(db, 1), "confirm", class_id=BAG, annotator="a")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("TRUNCATE labels CASCADE")
    assert db.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 1


# ---------------------------------------------------------------- events

def test_label_events_cannot_be_updated_or_deleted(db):
    item = add_item(db, 1)
    event = store.record_label(db, item, "confirm", class_id=SNEAKER, annotator="ann")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE labels SET class_id = ? WHERE id = ?", [BAG, event.id])
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM labels WHERE id = ?", [event.id])
    assert db.execute("SELECT class_id FROM labels").fetchall() == [(SNEAKER,)]


def test_record_label_refuses_bad_events(db):
    item = add_item(db, 1)
    with pytest.raises(StoreError, match="needs a class"):
        store.record_label(db, item, "confirm", annotator="ann")
    with pytest.raises(StoreError, match="unknown action"):
        store.record_label(db, item, "approve", class_id=SNEAKER, annotator="ann")
    with pytest.raises(StoreError, match="unknown item or class"):
        store.record_label(db, 999, "confirm", class_id=SNEAKER, annotator="ann")
    with pytest.raises(StoreError, match="unknown item or class"):
        store.record_label(db, item, "confirm", class_id=42, annotator="ann")
    with pytest.raises(StoreError, match="annotator"):
        store.record_label(db, item, "skip", annotator="")
    skip = store.record_label(db, item, "skip", class_id=SNEAKER, annotator="ann")
    assert skip.class_id is None  # a skip carries no class even when one is passed
    assert db.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 1


def test_undo_walks_back_one_event_at_a_time(db):
    item = add_item(db, 1)
    first = store.record_label(db, item, "confirm", class_id=SHIRT, annotator="ann")
    second = store.record_label(db, item, "correct", class_id=BAG, annotator="ann")
    assert store.label_state(db) == {item: ("correct", BAG)}

    assert store.undo(db, annotator="ann") == second
    assert store.label_state(db) == {item: ("confirm", SHIRT)}
    assert store.undo(db, annotator="ann") == first
    assert store.label_state(db) == {}
    assert store.undo(db, annotator="ann") is None
    actions = [row[0] for row in db.execute("SELECT action FROM labels ORDER BY id")]
    assert actions == ["confirm", "correct", "undo", "undo"]  # history kept, nothing rewritten


def test_undo_is_scoped_to_an_annotator_or_an_item(db):
    a, b = add_item(db, 1), add_item(db, 2)
    alice = store.record_label(db, a, "confirm", class_id=SNEAKER, annotator="alice")
    store.record_label(db, b, "confirm", class_id=BAG, annotator="bob")
    assert store.undo(db, annotator="alice") == alice
    assert store.label_state(db) == {b: ("confirm", BAG)}
    assert store.undo(db, annotator="alice") is None  # bob's event is not alice's to undo
    assert store.undo(db, annotator="alice", item_id=b).item_id == b
    assert store.label_state(db) == {}
    reverting = db.execute("SELECT annotator FROM labels WHERE action = 'undo' ORDER BY id").fetchall()
    assert reverting == [("alice",), ("alice",)]


# ---------------------------------------------------------------- derived state

def test_labeled_set_unlabeled_pool_holdout_and_status(db):
    pool = [add_item(db, n) for n in range(1, 6)]
    holdout = [add_item(db, n, split="holdout") for n in range(6, 9)]
    store.record_label(db, pool[0], "confirm", class_id=SNEAKER, annotator="a")
    store.record_label(db, pool[1], "confirm", class_id=SHIRT, annotator="a")
    store.record_label(db, pool[1], "correct", class_id=BAG, annotator="b")  # newest decision wins
    store.record_label(db, pool[2], "skip", annotator="a")
    store.record_label(db, pool[3], "reject", annotator="a")
    store.record_label(db, holdout[0], "confirm", class_id=BAG, annotator="a")

    assert sorted(store.labeled_items(db)) == [(pool[0], SNEAKER), (pool[1], BAG), (holdout[0], BAG)]
    assert store.labeled_items(db, split="holdout") == [(holdout[0], BAG)]
    assert store.unlabeled_pool(db) == [pool[4]]  # skipped and rejected items leave the queue
    assert store.label_state(db, split="pool")[pool[2]] == ("skip", None)

    counts = store.status(db).as_dict()
    assert counts["items"] == {"pool": 5, "holdout": 3}
    assert counts["labeled_per_class"] == {"pool": {"Bag": 1, "Sneaker": 1}, "holdout": {"Bag": 1}}
    assert counts["labeled"] == 3
    assert (counts["skipped"], counts["rejected"]) == (1, 1)
    assert (counts["unlabeled_pool"], counts["holdout_unlabeled"]) == (1, 2)

    store.undo(db, annotator="a", item_id=pool[3])
    assert store.unlabeled_pool(db) == [pool[3], pool[4]]


def test_item_pixels_come_back_in_the_order_asked(db):
    ids = [add_item(db, n) for n in (3, 7, 9)]
    pixels = store.item_pixels(db, [ids[2], ids[0]])
    assert pixels.shape == (2, 28, 28)
    assert pixels[:, 0, 0].tolist() == [9, 3]
    with pytest.raises(StoreError, match="unknown item ids"):
        store.item_pixels(db, [ids[0], 12345])
    with pytest.raises(StoreError, match="28x28 uint8"):
        store.insert_item(db, sha256="f" * 64, source="folder", original_name="x",
                          pixels=np.zeros((28, 28), np.float32))


# ---------------------------------------------------------------- classes

def test_add_and_resolve_classes(db):
    hat = store.add_class(db, "  Bucket   hat ")
    assert (hat.id, hat.name, hat.fmnist_index) == (10, "Bucket hat", None)
    assert store.class_names(db)[-1] == "Bucket hat"
    with pytest.raises(StoreError, match="already exists"):
        store.add_class(db, "bucket HAT")
    with pytest.raises(StoreError, match="empty"):
        store.add_class(db, "   ")
    assert store.resolve_class(db, "sneaker").id == SNEAKER
    assert store.resolve_class(db, "t-shirt/top").name == "T-shirt/top"
    assert store.resolve_class(db, "10").name == "Bucket hat"
    assert store.resolve_class(db, 3).name == "Dress"
    with pytest.raises(StoreError, match="unknown class 'Scarf'; known classes: T-shirt/top"):
        store.resolve_class(db, "Scarf")


# ---------------------------------------------------------------- concurrency

def _write_labels(db_path: str, item_id: int, annotator: str, count: int, barrier) -> None:
    db = store.open_db(db_path)
    barrier.wait()
    for _ in range(count):
        store.record_label(db, item_id, "confirm", class_id=SNEAKER, annotator=annotator)


def test_two_processes_writing_at_the_same_moment_lose_nothing(location: str):
    path = location
    db = store.open_db(path)
    items = [add_item(db, 1), add_item(db, 2)]
    context = multiprocessing.get_context("spawn")  # no sqlite connection inherited across fork
    barrier = context.Barrier(2)
    writers = [context.Process(target=_write_labels, args=(str(path), item, f"writer{item}", 200, barrier))
               for item in items]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    assert [writer.exitcode for writer in writers] == [0, 0]

    rows = db.execute("SELECT annotator, item_id, created_at FROM labels ORDER BY id").fetchall()
    assert len(rows) == 400
    assert {annotator: sum(1 for row in rows if row[0] == annotator) for annotator in ("writer1", "writer2")} \
        == {"writer1": 200, "writer2": 200}
    # the two bursts really overlapped in time: each started before the other finished
    spans = {annotator: (min(r[2] for r in rows if r[0] == annotator), max(r[2] for r in rows if r[0] == annotator))
             for annotator in ("writer1", "writer2")}
    assert spans["writer1"][0] <= spans["writer2"][1] and spans["writer2"][0] <= spans["writer1"][1]


# ---------------------------------------------------------------- current-label table (migration 3)

_WINDOW_STATE = """
SELECT item_id, action, class_id, annotator, id FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY item_id ORDER BY id DESC) AS rn FROM labels e
    WHERE action != 'undo' AND NOT EXISTS (SELECT 1 FROM labels u WHERE u.undoes = e.id)) AS latest
WHERE rn = 1 ORDER BY item_id"""


def _table_state(db) -> list[tuple]:
    return db.execute("SELECT item_id, action, class_id, annotator, event_id FROM item_state "
                      "ORDER BY item_id").fetchall()


def test_item_state_is_a_table_kept_by_every_event_and_undo(db):
    """The current label is a table updated with each event (not a window over the whole history)."""
    if store.is_postgres(db):
        kind = db.execute("SELECT table_type FROM information_schema.tables WHERE table_name = 'item_state' "
                          "AND table_schema = current_schema()").fetchone()[0]
        assert kind == "BASE TABLE"
    else:
        assert db.execute("SELECT type FROM sqlite_master WHERE name = 'item_state'").fetchone()[0] == "table"
    items = [add_item(db, n) for n in range(1, 9)]
    rng = np.random.default_rng(0)
    for step in range(400):
        item = int(rng.choice(items))
        who = f"a{rng.integers(3)}"
        if rng.random() < 0.25:
            store.undo(db, annotator=who, item_id=item if rng.random() < 0.5 else None)
        else:
            action = str(rng.choice(store.DECISIONS))
            store.record_label(db, item, action, class_id=int(rng.integers(10)), annotator=who)
        assert _table_state(db) == db.execute(_WINDOW_STATE).fetchall(), f"step {step}"
        decided = {row[0] for row in _table_state(db)}
        assert store.unlabeled_ids(db, "pool").tolist() == sorted(set(items) - decided), f"step {step}"
    db.execute("UPDATE items SET split = 'holdout' WHERE id = ?", [items[0]])
    assert {row[0] for row in db.execute("SELECT split FROM item_state WHERE item_id = ?", [items[0]])} <= {"holdout"}
    assert items[0] not in store.unlabeled_ids(db, "pool").tolist()


def test_migration_3_back_fills_the_current_labels_of_a_version_2_database(tmp_path: Path):
    path = tmp_path / "labels.db"
    raw = sqlite3.connect(path, isolation_level=None)
    for version in (1, 2):
        for statement in store._split_sql(store._MIGRATIONS[version]):
            raw.execute(statement)
    raw.execute("INSERT INTO classes (id, name, created_at) VALUES (0, 'A', 'x'), (1, 'B', 'x')")
    for n in range(1, 4):
        raw.execute("INSERT INTO items (id, sha256, source, original_name, pixels, created_at) "
                    "VALUES (?, ?, 'folder', 'p', zeroblob(784), 'x')", [n, f"{n:064x}"])
    events = [(1, 0, "confirm", None), (1, 1, "correct", None), (2, None, "skip", None),
              (1, None, "undo", 2), (3, 0, "confirm", None), (3, None, "undo", 5)]
    for item, cls, action, undoes in events:
        raw.execute("INSERT INTO labels (item_id, class_id, action, annotator, undoes, created_at) "
                    "VALUES (?, ?, ?, 'ann', ?, 'x')", [item, cls, action, undoes])
    raw.execute("PRAGMA user_version = 2")
    raw.close()
    store._migrated.clear()
    db = store.open_db(path)
    assert store.schema_version(db) == 4
    assert _table_state(db) == [(1, "confirm", 0, "ann", 1), (2, "skip", None, "ann", 3)]
    assert store.unlabeled_ids(db, "pool").tolist() == [3]
    assert store.status(db).as_dict()["labeled"] == 1


# ---------------------------------------------------------------- browsing and history (for the UI's gallery)

@pytest.fixture
def browsed(db):
    """12 items: pool 1-8, holdout 9-12; decisions by ann and bob; item 5 a near-duplicate of 4."""
    ids = [add_item(db, n, split="pool" if n <= 8 else "holdout") for n in range(1, 13)]
    db.execute("UPDATE items SET original_name = 'red_dress_' || id || '.jpg' WHERE id IN (2, 3)")
    db.execute("UPDATE items SET original_name = '100%_cotton.jpg' WHERE id = 7")
    db.execute("UPDATE items SET near_dup_of = 4 WHERE id = 5")
    store.record_label(db, 1, "confirm", class_id=SNEAKER, annotator="ann")
    store.record_label(db, 2, "confirm", class_id=BAG, annotator="ann")
    store.record_label(db, 2, "correct", class_id=SHIRT, annotator="bob")        # current: bob's Shirt
    store.record_label(db, 3, "skip", annotator="bob")
    store.record_label(db, 4, "reject", annotator="ann")
    store.record_label(db, 9, "confirm", class_id=BAG, annotator="bob")
    store.record_label(db, 10, "confirm", class_id=BAG, annotator="ann")
    store.undo(db, annotator="ann", item_id=10)                                 # 10 is undecided again
    return ids


def ids_of(rows) -> list[int]:
    return [row["id"] for row in rows]


def test_browse_items_filters_by_the_current_label(db, browsed):
    assert ids_of(store.browse_items(db)) == list(range(1, 13))
    assert ids_of(store.browse_items(db, status="unlabeled")) == [5, 6, 7, 8, 10, 11, 12]
    assert ids_of(store.browse_items(db, status="labeled")) == [1, 2, 9]
    assert ids_of(store.browse_items(db, status="skipped")) == [3]
    assert ids_of(store.browse_items(db, status="rejected")) == [4]
    assert ids_of(store.browse_items(db, class_id=SHIRT)) == [2]
    assert ids_of(store.browse_items(db, class_id=BAG)) == [9], "an overwritten or undone label does not count"
    assert ids_of(store.browse_items(db, annotator="bob")) == [2, 3, 9]
    assert ids_of(store.browse_items(db, annotator="ann")) == [1, 4]
    assert ids_of(store.browse_items(db, name_contains="RED_dress")) == [2, 3]
    assert ids_of(store.browse_items(db, name_contains="%")) == [7], "LIKE wildcards are matched literally"
    assert ids_of(store.browse_items(db, split="holdout")) == [9, 10, 11, 12]
    assert ids_of(store.browse_items(db, split="holdout", status="unlabeled")) == [10, 11, 12]
    assert ids_of(store.browse_items(db, flagged=True)) == [5]
    assert 5 not in ids_of(store.browse_items(db, flagged=False))
    assert ids_of(store.browse_items(db, item_ids=[12, 3, 99, 1])) == [1, 3, 12]
    row = store.browse_items(db, item_ids=[2])[0]
    assert {k: row[k] for k in ("action", "class_id", "class_name", "annotator", "split", "source")} == \
        {"action": "correct", "class_id": SHIRT, "class_name": "Shirt", "annotator": "bob", "split": "pool",
         "source": "folder"}
    assert row["sha256"] == f"{2:064x}" and row["original_name"] == "red_dress_2.jpg" and row["created_at"]
    unlabeled = store.browse_items(db, item_ids=[6])[0]
    assert (unlabeled["action"], unlabeled["class_id"], unlabeled["class_name"], unlabeled["annotator"]) == \
        (None, None, None, None)
    with pytest.raises(StoreError, match="unknown status"):
        store.browse_items(db, status="done")


def test_browse_pages_by_id_and_counts_match(db, browsed):
    pages, after = [], None
    while page := store.browse_items(db, limit=5, after_id=after):
        pages.append(ids_of(page))
        after = page[-1]["id"]
    assert pages == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12]]
    for filters in ({}, {"status": "unlabeled"}, {"annotator": "bob"}, {"class_id": BAG}, {"flagged": True},
                    {"split": "holdout", "status": "labeled"}, {"item_ids": [1, 2, 3]}, {"name_contains": "dress"}):
        assert store.count_items(db, **filters) == len(store.browse_items(db, limit=100, **filters)), filters


def test_browse_by_decision_time(db, browsed):
    stamps = dict(db.execute("SELECT item_id, created_at FROM item_state").fetchall())
    day = stamps[1][:10]
    assert ids_of(store.browse_items(db, since=day, until=day)) == [1, 2, 3, 4, 9]
    # events within one millisecond share a timestamp: expect by the stored times
    assert ids_of(store.browse_items(db, since=stamps[3])) == sorted(i for i, at in stamps.items() if at >= stamps[3])
    assert ids_of(store.browse_items(db, until=stamps[1])) == sorted(i for i, at in stamps.items() if at <= stamps[1])
    assert 3 in ids_of(store.browse_items(db, since=stamps[3])) and 1 in ids_of(store.browse_items(db, until=stamps[1]))
    assert store.browse_items(db, until="2000-01-01") == []
    with pytest.raises(StoreError, match="bad date"):
        store.browse_items(db, since="yesterday")


def test_recent_decisions_newest_first_without_undone_ones(db, browsed):
    recent = store.recent_decisions(db)
    assert [(r["item_id"], r["action"], r["annotator"]) for r in recent] == [
        (9, "confirm", "bob"), (4, "reject", "ann"), (3, "skip", "bob"), (2, "correct", "bob"),
        (2, "confirm", "ann"), (1, "confirm", "ann")]
    assert recent[3]["class_name"] == "Shirt" and recent[2]["class_name"] is None
    assert recent[0]["original_name"] == "photo9.jpg" and "stored_path" in recent[0] and recent[0]["event_id"]
    assert recent[0]["sha256"] == store.get_item(db, 9)["sha256"]     # what a thumbnail needs, no query per row
    assert [r["item_id"] for r in store.recent_decisions(db, annotator="ann", limit=2)] == [4, 2]


def test_decision_times_cover_every_decision_but_undos(db, browsed):
    times = store.decision_times(db)
    assert [who for who, _ in times] == ["ann", "ann", "bob", "bob", "ann", "bob", "ann"]
    assert all(at[:4].isdigit() for _, at in times)
    # `since` is inclusive, and decisions made within one millisecond share a timestamp
    assert store.decision_times(db, since=times[-1][1]) == [t for t in times if t[1] >= times[-1][1]]
    assert store.decision_times(db, since="2999-01-01") == []


# ---------------------------------------------------------------- savepoints and job rows

def test_a_savepoint_undoes_only_what_was_written_inside_it(db):
    with store.transaction(db):
        kept = add_item(db, 1)
        with pytest.raises(sqlite3.IntegrityError):
            with store.savepoint(db, "one_item"):
                add_item(db, 2)
                add_item(db, 1)                       # same sha256: refused by the unique index
        with store.savepoint(db, "one_item"):
            second = add_item(db, 3)
    ids = store.item_ids(db)
    assert ids.dtype == np.int64 and ids.tolist() == [kept, second]
    assert store.known_sha256(db) == {f"{1:064x}", f"{3:064x}"}
    assert store.item_id_by_sha256(db, f"{2:064x}") is None
    with pytest.raises(StoreError, match="identifier"):
        with store.savepoint(db, "x; DROP TABLE items"):
            pass


def test_job_rows_round_trip_and_one_active_job_per_kind(db):
    job_id = store.create_job(db, "train", {"mode": "scratch", "epochs": 3})
    assert store.create_job(db, "train", {}) is None          # the unique index refuses a second one
    other = store.create_job(db, "embed", {"backbone": "b"})
    store.update_job(db, job_id, status="running", pid=4321, history=[{"epoch": 1, "loss": 0.5}])
    row = store.job_row(db, job_id)
    assert (row["status"], row["pid"], row["params"], row["history"]) == (
        "running", 4321, {"mode": "scratch", "epochs": 3}, [{"epoch": 1, "loss": 0.5}])
    assert store.active_job_ids_of(db, [4321, 99]) == [job_id]
    assert store.job_control(db, job_id) == (False, "running")
    store.request_job_cancel(db, [job_id])
    assert store.job_control(db, job_id) == (True, "running")
    store.finish_job(db, job_id, "succeeded", "done", version="v2")
    store.finish_job(db, job_id, "failed", "too late")           # an ended job keeps its outcome
    store.fail_stale_job(db, job_id, "too late")
    row = store.job_row(db, job_id)
    assert (row["status"], row["phase"], row["message"], row["version"]) == ("succeeded", "succeeded", "done", "v2")
    assert [r["id"] for r in store.job_rows(db)] == [other, job_id]
    assert store.active_job_row(db, "train") is None and store.active_job_row(db, "embed")["id"] == other
    assert store.job_control(db, 12345) is None and store.job_row(db, 12345) is None
    with pytest.raises(StoreError, match="unknown job fields"):
        store.update_job(db, job_id, **{"status = 'queued', kind": "x"})


def test_a_version_3_database_gains_the_via_column_and_keeps_its_events(tmp_path: Path):
    import sqlite3

    path = tmp_path / "v3" / "labels.db"
    db = store.open_db(path)
    item = store.insert_item(db, sha256="a" * 64, source="upload", original_name="x.png",
                             pixels=np.zeros((28, 28), np.uint8))
    store.record_label(db, item, "confirm", class_id=3, annotator="ann")
    raw = sqlite3.connect(path)
    raw.execute("ALTER TABLE labels DROP COLUMN via")
    raw.execute("PRAGMA user_version = 3")
    raw.commit()
    raw.close()
    store._migrated.clear()
    db = store.open_db(path)
    assert store.schema_version(db) == 4
    assert db.execute("SELECT item_id, class_id, annotator, via FROM labels").fetchall() == [(item, 3, "ann", None)]
    store.record_label(db, item, "confirm", class_id=4, annotator="lee", via=store.RESOLVE)
    assert store.resolved_labels(db) == {item: 4}


def test_both_backends_migrate_to_the_same_tables_and_columns(tmp_path: Path, pg_url: str):
    lite = store.open_db(tmp_path / "labels.db")
    tables = [row[0] for row in lite.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'")]
    lite_columns = {(table, row[1]) for table in tables for row in lite.execute(f"PRAGMA table_info({table})")}
    pg = store.open_db(pg_url)
    pg_columns = set(pg.execute("SELECT table_name, column_name FROM information_schema.columns "
                                "WHERE table_schema = current_schema()").fetchall())
    assert pg_columns - {("activelearn_schema", "version")} == lite_columns
    assert store.schema_version(pg) == store.schema_version(lite) == store.SCHEMA_VERSION
