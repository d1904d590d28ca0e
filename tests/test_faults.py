"""Faults: kill -9 of the server and of a training worker, a locked, a read-only, a restored and a
foreign labels.db. After each, labels.db is intact, no acknowledged decision is lost, and every
refusal is one sentence (CLI exit 1 for busy/read-only, 2 for a wrong file), never a traceback.

Real processes throughout: `python app.py`, job workers, `python -m activelearn`, sqlite3.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from activelearn import FMNIST_CLASSES, ingest, jobs, labeling, registry, store
from activelearn.config import resolve_paths
from tests.helpers import add_items, free_port, poll, start_app, stop, wait_served

REPO = Path(__file__).resolve().parents[1]
BAG = FMNIST_CLASSES.index("Bag")


def cli(home: Path, *args: str, busy_ms: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "USER": "tester"}
    if busy_ms is not None:
        env["ACTIVELEARN_BUSY_TIMEOUT_MS"] = str(busy_ms)
    return subprocess.run([sys.executable, "-m", "activelearn", "--home", str(home), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def one_sentence(result: subprocess.CompletedProcess, start: str) -> None:
    text = (result.stderr or result.stdout).strip()
    assert "Traceback" not in text, text
    assert len(text.splitlines()) == 1 and text.startswith(start), text


def intact(db) -> None:
    """sqlite's own check, and the current-label table equal to the label history it summarises."""
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    window = db.execute(
        "SELECT item_id, event_id FROM (SELECT item_id, id AS event_id, ROW_NUMBER() OVER "
        "(PARTITION BY item_id ORDER BY id DESC) AS rn FROM labels e WHERE action != 'undo' "
        "AND NOT EXISTS (SELECT 1 FROM labels u WHERE u.undoes = e.id)) WHERE rn = 1 ORDER BY item_id").fetchall()
    assert db.execute("SELECT item_id, event_id FROM item_state ORDER BY item_id").fetchall() == window
    undecided = db.execute("SELECT id FROM items WHERE id NOT IN (SELECT item_id FROM item_state) ORDER BY id")
    assert db.execute("SELECT item_id FROM undecided_items ORDER BY item_id").fetchall() == undecided.fetchall()


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# ---------------------------------------------------------------- kill -9

@pytest.mark.slow
def test_kill_9_of_the_server_loses_no_acknowledged_decision_and_a_restart_frees_its_leases(
        seeded_home, photo_folder, fmnist_dir):
    from gradio_client import Client

    paths = seeded_home
    assert ingest.import_paths(photo_folder, paths=paths, holdout_fraction=0.0).added == 60
    port = free_port()
    proc = start_app(paths.home, fmnist_dir, port)
    acknowledged: list[int] = []
    try:
        wait_served(f"http://127.0.0.1:{port}/", proc)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        shown = client.predict(api_name="/label_load")

        def label() -> None:
            nonlocal shown
            while True:
                item = shown[0]
                try:
                    shown = client.predict(item, "skip" if item % 2 else "reject", "", api_name="/decide")
                except Exception:  # noqa: BLE001 - the server is gone: this decision was not acknowledged
                    return
                acknowledged.append(item)

        labeler = threading.Thread(target=label, daemon=True)
        labeler.start()
        poll(lambda: len(acknowledged) >= 8, 120, "eight decisions acknowledged")
        os.kill(proc.pid, signal.SIGKILL)        # in the middle of the stream of decisions
        proc.wait(timeout=30)
        labeler.join(timeout=60)
    finally:
        stop(proc)
    db = store.open_db(paths.db)
    intact(db)
    stored = db.execute("SELECT item_id, COUNT(*) FROM labels GROUP BY item_id").fetchall()
    assert set(acknowledged) <= {item for item, _ in stored}, "every acknowledged decision is in labels.db"
    assert all(count == 1 for _, count in stored), "and none twice"
    held = {item for (item,) in db.execute("SELECT item_id FROM leases WHERE expires_at > ?", [time.time()])}
    assert held, "the dead server's session still holds its prefetched items"

    staging = paths.models / f".tmp-{dead_pid()}-0123abcd"      # a version half-written when it was killed
    staging.mkdir()
    (staging / "model.keras").write_bytes(b"partial")
    port = free_port()
    proc = start_app(paths.home, fmnist_dir, port)
    try:
        wait_served(f"http://127.0.0.1:{port}/", proc)
        assert db.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0, "released at start"
        assert not staging.exists(), "the killed writer's staging folder is swept at start"
        Client(f"http://127.0.0.1:{port}/", verbose=False).predict(api_name="/label_load")
        again = {item for (item,) in db.execute("SELECT item_id FROM leases")}
        assert again & held, "items the dead session held are served again at once, not after 300 s"
    finally:
        stop(proc)
    intact(db)


@pytest.mark.slow
def test_kill_9_of_a_training_worker_leaves_labels_db_and_the_models_intact(seeded_home):
    paths = seeded_home
    ids = add_items(paths, 30)
    db = store.open_db(paths.db)
    for item in ids[:10]:
        store.record_label(db, item, "confirm", class_id=BAG, annotator="ann")
    before = db.execute("SELECT * FROM labels ORDER BY id").fetchall()
    job = jobs.start_training(paths, {"mode": "finetune", "epochs": 20, "fmnist_fraction": 0.05})
    poll(lambda: jobs.get_job(db, job.id).phase in ("train", "epoch-end"), 240, "the worker trains")
    os.kill(job.pid, signal.SIGKILL)
    failed = poll(lambda: (j := jobs.list_jobs(db)[0]).status == "failed" and j, 60, "the dead worker is reaped")
    assert "worker process died" in failed.message
    intact(db)
    assert db.execute("SELECT * FROM labels ORDER BY id").fetchall() == before
    assert registry.list_versions(paths.models) == ["v1"] and registry.active_version(paths.models) == "v1"
    assert jobs.active_job(db) is None, "the next training is not blocked"
    assert labeling.next_items(paths, annotator="ann", n=3, seed=0), "labeling goes on"


_SLOW_REGISTER = """
import sys, time
from pathlib import Path
from activelearn import registry

class SlowModel:
    def save(self, path):
        Path(path).write_bytes(b"half a model")
        print("saving", flush=True)
        time.sleep(600)

registry.register(Path(sys.argv[1]), SlowModel(), {"class_names": []})
"""


def test_kill_9_while_registering_leaves_a_staging_folder_that_the_next_start_sweeps(tmp_path):
    models = tmp_path / "models"
    writer = subprocess.Popen([sys.executable, "-c", _SLOW_REGISTER, str(models)], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "saving"
    live = [p.name for p in models.iterdir()]
    assert registry.sweep_staging(models) == [], "a live writer's folder is left alone"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    assert [p.name for p in models.iterdir()] == live and live[0].startswith(f".tmp-{writer.pid}-")
    older = models / ".tmp-0123456789abcdef"                   # a name without a pid: swept by age
    older.mkdir()
    fresh = models / ".tmp-89abcdef01234567"
    fresh.mkdir()
    os.utime(older, (time.time() - 2 * registry.STALE_STAGING_S,) * 2)
    assert sorted(registry.sweep_staging(models)) == sorted([live[0], older.name])
    assert [p.name for p in models.iterdir()] == [fresh.name]
    assert registry.list_versions(models) == []


# ---------------------------------------------------------------- locks

_HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO settings (key, value, updated_at) VALUES ('holder', '1', 'now')")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


@pytest.fixture
def locked_home(tmp_path):
    """A home whose labels.db write lock another process holds (as a long bulk write would)."""
    home = tmp_path / "home"
    paths = resolve_paths(home)
    add_items(paths, 3)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(paths.db), "120"], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "locked"
    yield home
    holder.kill()
    holder.wait()


def test_a_read_only_command_does_not_wait_behind_a_writer(locked_home):
    started = time.monotonic()
    result = cli(locked_home, "status", "--json")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 15, "status took no write lock"
    assert '"unlabeled_pool": 3' in result.stdout


def test_a_write_behind_a_long_lock_fails_with_one_sentence_and_exit_1(locked_home):
    for args in (("label", "1", "Bag"), ("classes", "add", "Hat"), ("undo",)):
        result = cli(locked_home, *args, busy_ms=1500)
        assert result.returncode == 1, (args, result.stderr)
        one_sentence(result, "error: labels.db is busy: another process has held its write lock")


def test_a_labeling_request_behind_a_long_lock_is_a_sentence_for_the_page(locked_home, monkeypatch):
    paths = resolve_paths(locked_home)
    monkeypatch.setattr(store, "BUSY_TIMEOUT_MS", 800)
    db = store.open_db(paths.db)
    with pytest.raises(store.StoreBusy, match="nothing was recorded"):
        labeling.decide(paths, annotator="ann", item_id=1, action="skip")
    with pytest.raises(store.StoreBusy):
        labeling.next_items(paths, annotator="ann", n=2)
    assert db.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 0
    assert not db.conn.in_transaction


def test_a_bulk_csv_lets_interactive_decisions_in_between_its_chunks(tmp_path, monkeypatch):
    """`label --csv` writes in chunks: an annotator's decision lands between them, not after all of them."""
    from activelearn.cli import main

    home = tmp_path / "home"
    paths = resolve_paths(home)
    ids = add_items(paths, 3100)
    csv_file = tmp_path / "bulk.csv"
    csv_file.write_text("item,class\n" + "".join(f"{i},Bag\n" for i in ids[:3000]))
    monkeypatch.setattr(store, "BULK_CHUNK", 200)
    bulk_done = threading.Event()
    interactive: list[int] = []

    def annotate() -> None:
        db = store.open_db(paths.db)
        for item in ids[3000:]:
            if bulk_done.is_set():
                return
            interactive.append(store.record_decision(db, item, "skip", annotator="ann").id)
            time.sleep(0.005)

    annotator = threading.Thread(target=annotate)
    annotator.start()
    try:
        assert main(["--home", str(home), "label", "--csv", str(csv_file), "--annotator", "bulk"]) == 0
    finally:
        bulk_done.set()
        annotator.join(timeout=60)
    db = store.open_db(paths.db)
    bulk_ids = [row[0] for row in db.execute("SELECT id FROM labels WHERE annotator = 'bulk' ORDER BY id")]
    assert len(bulk_ids) == 3000
    between = [i for i in interactive if bulk_ids[0] < i < bulk_ids[-1]]
    assert between, "no interactive decision got in while the CSV was being written"
    # running the same file again (say after a crash half-way) stores nothing twice
    assert main(["--home", str(home), "label", "--csv", str(csv_file), "--annotator", "bulk"]) == 0
    assert db.execute("SELECT COUNT(*) FROM labels WHERE annotator = 'bulk'").fetchone()[0] == 3000


# ---------------------------------------------------------------- read-only, restored and foreign files

@pytest.fixture
def read_only_home(tmp_path):
    """A home whose labels.db and folder are immutable (chattr +i: even root cannot write them)."""
    home = tmp_path / "home"
    paths = resolve_paths(home)
    add_items(paths, 2)
    store._migrated.discard(paths.db.resolve())
    if subprocess.run(["chattr", "+i", str(paths.db), str(home)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (needed to make a file read-only for root)")
    yield home
    subprocess.run(["chattr", "-i", str(paths.db), str(home)], check=True)


def test_a_read_only_database_reads_and_refuses_writes_with_one_sentence(read_only_home):
    result = cli(read_only_home, "status", "--json")
    assert result.returncode == 0, result.stderr
    assert '"unlabeled_pool": 2' in result.stdout
    for args in (("label", "1", "Bag"), ("classes", "add", "Hat")):
        refused = cli(read_only_home, *args)
        assert refused.returncode == 1, refused.stderr
        one_sentence(refused, f"error: {read_only_home / 'labels.db'} is read-only, so nothing was recorded")


def _v2_database(path: Path) -> None:
    """A labels.db as activelearn wrote it before the current-label table (schema version 2)."""
    raw = sqlite3.connect(path, isolation_level=None)
    for version in (1, 2):
        for statement in store._split_sql(store._MIGRATIONS[version]):
            raw.execute(statement)
    raw.executemany("INSERT INTO classes (id, name, fmnist_index, created_at) VALUES (?, ?, ?, 'x')",
                    [(i, name, i) for i, name in enumerate(FMNIST_CLASSES)])
    for n in range(1, 5):
        raw.execute("INSERT INTO items (id, sha256, source, original_name, pixels, created_at) "
                    "VALUES (?, ?, 'folder', 'p.jpg', zeroblob(784), 'x')", [n, f"{n:064x}"])
    for item, cls, action, undoes in [(1, BAG, "confirm", None), (2, None, "skip", None), (3, BAG, "confirm", None),
                                      (3, None, "undo", 3)]:
        raw.execute("INSERT INTO labels (item_id, class_id, action, annotator, undoes, created_at) "
                    "VALUES (?, ?, ?, 'ann', ?, 'x')", [item, cls, action, undoes])
    raw.execute("PRAGMA user_version = 2")
    raw.close()


def restore_from_dump(source: Path, target: Path) -> None:
    """What a user does: `sqlite3 labels.db .dump > dump.sql`, then `sqlite3 new.db < dump.sql`."""
    if shutil.which("sqlite3") is None:
        pytest.skip("the sqlite3 command-line tool is not installed")
    dump = subprocess.run(["sqlite3", str(source), ".dump"], capture_output=True, text=True, check=True).stdout
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["sqlite3", str(target)], input=dump, text=True, check=True)
    assert sqlite3.connect(target).execute("PRAGMA user_version").fetchone()[0] == 0, "a dump drops user_version"


@pytest.mark.parametrize("made_by", ["this version", "schema version 2"])
def test_a_database_restored_from_a_dump_is_detected_stamped_and_migrated(tmp_path, made_by):
    original = tmp_path / "original" / "labels.db"
    original.parent.mkdir()
    if made_by == "this version":
        paths = resolve_paths(original.parent)
        ids = add_items(paths, 4)
        db = store.open_db(original)
        store.record_label(db, ids[0], "confirm", class_id=BAG, annotator="ann")
        store.record_label(db, ids[1], "skip", annotator="ann")
        db.conn.close()
    else:
        _v2_database(original)
    home = tmp_path / "restored"
    restore_from_dump(original, home / "labels.db")
    result = cli(home, "status", "--json")
    assert result.returncode == 0, result.stderr
    assert '"labeled": 1' in result.stdout and '"skipped": 1' in result.stdout
    db = store.open_db(home / "labels.db")
    assert store.schema_version(db) == store.SCHEMA_VERSION
    assert cli(home, "label", "4", "Bag").returncode == 0, "and it takes new decisions"
    assert cli(home, "undo", "--item", "4").returncode == 0
    intact(db)
    assert store.status(db).as_dict()["labeled"] == 1


def test_a_foreign_file_and_a_newer_schema_are_one_sentence(tmp_path):
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "labels.db").write_bytes(np.random.default_rng(0).bytes(4096))
    result = cli(garbage, "status")
    assert result.returncode == 2
    one_sentence(result, f"error: {garbage / 'labels.db'} is not an SQLite database")

    other = tmp_path / "other-app"
    other.mkdir()
    sqlite3.connect(other / "labels.db").execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)").connection.commit()
    result = cli(other, "status")
    assert result.returncode == 2
    one_sentence(result, "error: ")
    assert "not an activelearn labels.db" in result.stderr

    newer = tmp_path / "newer"
    newer.mkdir()
    sqlite3.connect(newer / "labels.db").execute("PRAGMA user_version = 9")
    result = cli(newer, "status")
    assert result.returncode == 2
    one_sentence(result, "error: labels.db has schema version 9, newer than this activelearn")


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["not a database", "newer schema", "read-only"])
def test_the_app_refuses_a_bad_labels_db_with_one_sentence(tmp_path, fault):
    home = tmp_path / "home"
    home.mkdir()
    db_path = home / "labels.db"
    if fault == "not a database":
        db_path.write_bytes(b"GIF89a" + bytes(range(256)) * 8)
        expected = f"error: {db_path} is not an SQLite database"
    elif fault == "newer schema":
        sqlite3.connect(db_path).execute("PRAGMA user_version = 9")
        expected = "error: labels.db has schema version 9"
    else:
        store.open_db(db_path).conn.close()
        store._migrated.discard(db_path.resolve())
        if subprocess.run(["chattr", "+i", str(db_path), str(home)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here")
        expected = f"error: {db_path} is read-only"
    try:
        proc = start_app(home, tmp_path / "fmnist", free_port())
        output, _ = proc.communicate(timeout=120)
    finally:
        if fault == "read-only":
            subprocess.run(["chattr", "-i", str(db_path), str(home)], check=True)
    assert proc.returncode == 2
    assert "Traceback" not in output
    assert output.strip().splitlines()[-1].startswith(expected), output
