"""labels.db: items, classes, append-only label events, jobs and leases; the project's one home of SQL.

Every table is created by a numbered migration here, and every statement the
other modules need is a function here (tests/test_store_owns_sql.py checks), so
another backend would change this module only.

Every human decision is an *event*; nothing is updated in place. An item's
current label is the newest event that no `undo` event has reverted; the
`item_state` table holds it, kept by triggers in the same transaction as each
event (undo included), so reading it costs the same at 1,000 or 1,000,000
events. Triggers also make the events table append-only at the SQL level, so
no code path (ours or a user's sqlite shell) can rewrite history by accident.

Connections are cheap and per caller (Gradio runs handlers in worker threads,
and a sqlite3 connection belongs to its thread): call `open_db` per request.
WAL mode plus a busy timeout lets several processes write at the same moment;
opening takes the write lock only when a migration is due, and busy, read-only
or foreign files surface as one-sentence `StoreError`s, never raw sqlite errors.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from activelearn import FMNIST_CLASSES, store_pg
from activelearn.errors import StoreError

SCHEMA_VERSION = 4
#: How long a write waits for another process's write lock before StoreBusy (tests shorten it).
BUSY_TIMEOUT_MS = int(os.environ.get("ACTIVELEARN_BUSY_TIMEOUT_MS", "30000"))
#: Rows per transaction of a bulk write (label --csv): short enough that annotators' decisions interleave.
BULK_CHUNK = 500
#: Pause between a bulk write's chunks: waiting writers poll the lock every few ms, so they get in.
BULK_PAUSE_S = 0.01
#: `record_decision(served_event_id=UNCHECKED)`: do not check what happened to the item since it was served.
UNCHECKED = -1

#: Decisions an annotator can record; "undo" reverts the newest effective one.
DECISIONS = ("confirm", "correct", "skip", "reject")
ACTIONS = DECISIONS + ("undo",)
SPLITS = ("pool", "holdout")
SOURCES = ("folder", "archive", "upload", "url", "fmnist")
#: The annotator of pre-labels an import takes from folder names: not a person's decision.
IMPORT_ANNOTATOR = "import"

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE classes (
        id INTEGER PRIMARY KEY,            -- = the model's output index
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        fmnist_index INTEGER,              -- NULL for classes users added
        created_at TEXT NOT NULL
    );
    CREATE TABLE items (
        id INTEGER PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        source TEXT NOT NULL CHECK (source IN ('folder','archive','upload','url','fmnist')),
        original_name TEXT NOT NULL,
        stored_path TEXT,                  -- relative to the home folder
        width INTEGER, height INTEGER, format TEXT,
        split TEXT NOT NULL DEFAULT 'pool' CHECK (split IN ('pool','holdout')),
        pixels BLOB NOT NULL CHECK (length(pixels) = 784),  -- 28x28 uint8, Fashion-MNIST form
        dhash INTEGER,                     -- perceptual hash, as signed 64-bit
        near_dup_of INTEGER REFERENCES items(id),
        flags TEXT NOT NULL DEFAULT '',    -- comma-separated, e.g. no-plain-background
        created_at TEXT NOT NULL
    );
    CREATE INDEX items_split ON items(split);
    CREATE TABLE labels (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        item_id INTEGER NOT NULL REFERENCES items(id),
        class_id INTEGER REFERENCES classes(id),
        action TEXT NOT NULL CHECK (action IN ('confirm','correct','skip','reject','undo')),
        annotator TEXT NOT NULL,
        model_version TEXT,
        predicted_class_id INTEGER,
        confidence REAL,
        undoes INTEGER REFERENCES labels(id),
        created_at TEXT NOT NULL,
        CHECK ((action IN ('confirm','correct')) = (class_id IS NOT NULL)),
        CHECK ((action = 'undo') = (undoes IS NOT NULL))
    );
    CREATE INDEX labels_item ON labels(item_id, id);
    CREATE INDEX labels_undoes ON labels(undoes);
    CREATE INDEX labels_annotator ON labels(annotator, id);
    CREATE TRIGGER labels_no_update BEFORE UPDATE ON labels
        BEGIN SELECT RAISE(ABORT, 'labels are append-only'); END;
    CREATE TRIGGER labels_no_delete BEFORE DELETE ON labels
        BEGIN SELECT RAISE(ABORT, 'labels are append-only'); END;
    CREATE VIEW effective_events AS
        SELECT * FROM labels
        WHERE action != 'undo'
          AND id NOT IN (SELECT undoes FROM labels WHERE undoes IS NOT NULL);
    CREATE VIEW item_state AS
        SELECT item_id, action, class_id, annotator, created_at, id AS event_id FROM (
            SELECT *, ROW_NUMBER() OVER (PARTITION BY item_id ORDER BY id DESC) AS rn
            FROM effective_events)
        WHERE rn = 1;
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('queued','running','succeeded','failed','cancelled')),
        params TEXT NOT NULL DEFAULT '{}',
        pid INTEGER,
        phase TEXT, epoch INTEGER, epochs INTEGER, batch INTEGER, batches INTEGER,
        loss REAL, accuracy REAL, eta_s REAL,
        history TEXT NOT NULL DEFAULT '[]',
        message TEXT,
        version TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, heartbeat_at TEXT
    );
    -- at most one queued/running training job, enforced by SQLite itself
    CREATE UNIQUE INDEX jobs_one_active ON jobs(kind) WHERE status IN ('queued','running');
    CREATE TABLE leases (
        item_id INTEGER PRIMARY KEY REFERENCES items(id),
        annotator TEXT NOT NULL,
        expires_at REAL NOT NULL
    );
    """,
    2: """
    -- one backbone embedding per item and backbone (float16 bytes): the photo model's input
    CREATE TABLE embeddings (
        backbone TEXT NOT NULL,
        item_id INTEGER NOT NULL REFERENCES items(id),
        vector BLOB NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (backbone, item_id)
    ) WITHOUT ROWID;
    -- project settings a lead changes in the UI (JSON values)
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    -- label-issue scans (activelearn.label_issues); IF NOT EXISTS: version 1 created them outside migrations
    CREATE TABLE IF NOT EXISTS label_issue_scans (
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL,
        settings TEXT NOT NULL,           -- JSON: k, seed, embedding, background size
        labeled INTEGER NOT NULL,
        flagged INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS label_issues (
        id INTEGER PRIMARY KEY,
        scan_id INTEGER NOT NULL REFERENCES label_issue_scans(id),
        item_id INTEGER NOT NULL REFERENCES items(id),
        kind TEXT NOT NULL CHECK (kind IN ('confident-learning', 'near-duplicate-conflict')),
        given_class_id INTEGER NOT NULL,
        suggested_class_id INTEGER NOT NULL,
        self_confidence REAL,
        other_item_id INTEGER REFERENCES items(id),
        event_id INTEGER NOT NULL REFERENCES labels(id),       -- the label event flagged
        resolved_event_id INTEGER REFERENCES labels(id)        -- the lead's decision
    );
    CREATE INDEX IF NOT EXISTS label_issues_item ON label_issues(item_id);
    """,
    3: """
    -- the current label of each decided item, kept by the triggers below in the event's transaction
    DROP VIEW item_state;
    CREATE TABLE item_state (
        item_id INTEGER PRIMARY KEY REFERENCES items(id),
        split TEXT NOT NULL,               -- a copy of items.split, so counts need no join
        action TEXT NOT NULL,
        class_id INTEGER,
        annotator TEXT NOT NULL,
        created_at TEXT NOT NULL,
        event_id INTEGER NOT NULL REFERENCES labels(id)
    );
    INSERT INTO item_state (item_id, split, action, class_id, annotator, created_at, event_id)
        SELECT e.item_id, i.split, e.action, e.class_id, e.annotator, e.created_at, e.id
        FROM labels e JOIN items i ON i.id = e.item_id
        WHERE e.id IN (SELECT MAX(l.id) FROM labels l
                       WHERE l.action != 'undo' AND NOT EXISTS (SELECT 1 FROM labels u WHERE u.undoes = l.id)
                       GROUP BY l.item_id);
    -- the complement: items with no current label, so the queue reads only those (not every item)
    CREATE TABLE undecided_items (
        item_id INTEGER PRIMARY KEY REFERENCES items(id),
        split TEXT NOT NULL
    );
    INSERT INTO undecided_items (item_id, split)
        SELECT id, split FROM items WHERE id NOT IN (SELECT item_id FROM item_state);
    CREATE INDEX undecided_split ON undecided_items(split, item_id);
    CREATE INDEX item_state_counts ON item_state(split, action, class_id);
    CREATE INDEX item_state_class ON item_state(class_id, item_id);
    CREATE INDEX item_state_annotator ON item_state(annotator, item_id);
    CREATE TRIGGER labels_state_decision AFTER INSERT ON labels WHEN NEW.action != 'undo'
    BEGIN
        INSERT OR REPLACE INTO item_state (item_id, split, action, class_id, annotator, created_at, event_id)
            SELECT NEW.item_id, split, NEW.action, NEW.class_id, NEW.annotator, NEW.created_at, NEW.id
            FROM items WHERE id = NEW.item_id;
        DELETE FROM undecided_items WHERE item_id = NEW.item_id;
    END;
    CREATE TRIGGER labels_state_undo AFTER INSERT ON labels WHEN NEW.action = 'undo'
    BEGIN
        DELETE FROM item_state WHERE item_id = NEW.item_id;
        INSERT INTO item_state (item_id, split, action, class_id, annotator, created_at, event_id)
            SELECT e.item_id, i.split, e.action, e.class_id, e.annotator, e.created_at, e.id
            FROM labels e JOIN items i ON i.id = e.item_id
            WHERE e.item_id = NEW.item_id AND e.action != 'undo'
              AND NOT EXISTS (SELECT 1 FROM labels u WHERE u.undoes = e.id)
            ORDER BY e.id DESC LIMIT 1;
        INSERT OR IGNORE INTO undecided_items (item_id, split)
            SELECT id, split FROM items
            WHERE id = NEW.item_id AND NOT EXISTS (SELECT 1 FROM item_state WHERE item_id = NEW.item_id);
    END;
    CREATE TRIGGER items_undecided AFTER INSERT ON items
    BEGIN
        INSERT INTO undecided_items (item_id, split) VALUES (NEW.id, NEW.split);
    END;
    CREATE TRIGGER items_split_state AFTER UPDATE OF split ON items
    BEGIN
        UPDATE item_state SET split = NEW.split WHERE item_id = NEW.id;
        UPDATE undecided_items SET split = NEW.split WHERE item_id = NEW.id;
    END;
    -- one stored decision per request id: a retried request returns the event it stored
    ALTER TABLE labels ADD COLUMN request_id TEXT;
    CREATE UNIQUE INDEX labels_request ON labels(request_id) WHERE request_id IS NOT NULL;
    CREATE INDEX labels_created ON labels(created_at);
    CREATE INDEX items_near_dup ON items(near_dup_of) WHERE near_dup_of IS NOT NULL;
    -- counts embedded items of a backbone without reading their vectors
    CREATE INDEX embeddings_backbone ON embeddings(backbone);
    """,
    4: """
    -- how a decision was reached: the queue strategy that served it, "audit", "overlap", or
    -- "resolve" (a lead settling a contested item, which outranks the team's majority)
    ALTER TABLE labels ADD COLUMN via TEXT;
    """,
}

_migrated: set[Path | str] = set()
_migrate_lock = threading.Lock()

#: Tables that tell the schema version of a database whose user_version was lost
#: (restored from `sqlite3 .dump`, which does not carry it): version -> tables it added.
_VERSION_TABLES = {1: {"classes", "items", "labels", "jobs", "leases"}, 2: {"embeddings", "settings"}}


class StoreBusy(StoreError):
    """Another process holds labels.db's write lock for longer than the busy timeout."""


class StoreReadOnly(StoreError):
    """labels.db (or its folder) cannot be written."""


class DecisionConflict(StoreError):
    """A decision on an item leased to, or decided since it was served by, another annotator."""


def now() -> str:
    """UTC timestamp with milliseconds; sorts correctly as text."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _translated(exc: sqlite3.DatabaseError, path: str) -> StoreError | None:
    """One sentence for the sqlite errors a user can act on; None for programming errors."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return StoreBusy(f"labels.db is busy: another process has held its write lock for over "
                         f"{BUSY_TIMEOUT_MS / 1000:g} s, so nothing was recorded; try again in a moment")
    if "readonly" in text or "read-only" in text:
        return StoreReadOnly(f"{path} is read-only, so nothing was recorded: make the file and its "
                             "folder writable (labels.db needs to write its -wal and -shm files beside it)")
    if "not a database" in text:
        return StoreError(f"{path} is not an SQLite database, so not an activelearn labels.db: "
                          "move it aside or choose another --home")
    if "unable to open database file" in text:
        if Path(path).is_file():   # there, but its -wal/-shm files cannot be created beside it
            return StoreReadOnly(f"{path} is read-only, so nothing was recorded: make the file and its folder "
                                 "writable (labels.db needs to write its -wal and -shm files beside it)")
        return StoreError(f"cannot open {path}: check that its folder exists and is readable and writable")
    if "malformed" in text or "disk i/o error" in text:
        return StoreError(f"{path} is damaged ({exc}): restore it from a backup")
    return None


class _Connection(sqlite3.Connection):
    """A connection whose busy, read-only and not-a-database errors are one-sentence StoreErrors."""

    path = ""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as exc:
            raise (_translated(exc, self.path) or exc) from exc

    def executemany(self, sql: str, parameters: Iterable, /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as exc:
            raise (_translated(exc, self.path) or exc) from exc


def open_db(path: str | Path) -> sqlite_utils.Database:
    """Open (and create or migrate) labels.db with WAL, foreign keys and a busy timeout.

    Only a database that needs a migration (or is new) is write-locked here, so a
    read-only command never waits behind a long writer. A ``postgresql://`` URL opens
    the PostgreSQL backend instead (activelearn.store_pg), behind the same functions.
    """
    if store_pg.is_url(path):
        return _open_pg(str(path))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, factory=_Connection)
    conn.path = str(path)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    db = sqlite_utils.Database(conn)
    _once_per_process(path.resolve(), _prepare, db)
    return db


def _open_pg(url: str) -> store_pg.PgDatabase:
    db = store_pg.PgDatabase(url)
    _once_per_process(url, migrate, db)
    return db


def _once_per_process(key: Path | str, prepare: Callable[[Any], Any], db: Any) -> None:
    """Check (and migrate) a database once per process, not on every open."""
    if key not in _migrated:
        with _migrate_lock:
            if key not in _migrated:
                prepare(db)
                _migrated.add(key)


def is_postgres(db: Any) -> bool:
    """Whether `db` is the PostgreSQL backend (where several app servers may share the database)."""
    return isinstance(db, store_pg.PgDatabase)


def _prepare(db: sqlite_utils.Database) -> None:
    """Refuse foreign or newer files, stamp a dump-restored database, migrate when due, switch to WAL."""
    version = schema_version(db)          # also the first read: a non-database file fails here
    if version > SCHEMA_VERSION:
        raise StoreError(f"labels.db has schema version {version}, newer than this "
                         f"activelearn ({SCHEMA_VERSION}); upgrade activelearn")
    if version == 0 and _user_tables(db):
        _stamp_restored(db)
    if schema_version(db) < SCHEMA_VERSION:
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode = WAL")
        migrate(db)
    elif db.execute("PRAGMA journal_mode").fetchone()[0] not in ("wal", "memory"):
        try:
            db.execute("PRAGMA journal_mode = WAL")
        except StoreReadOnly:   # a read-only copy still reads in its own journal mode
            pass


def _user_tables(db: sqlite_utils.Database) -> set[str]:
    return {row[0] for row in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").fetchall()}


def detect_version(db: sqlite_utils.Database) -> int:
    """The schema version a database's tables show, whatever its user_version says.

    A `sqlite3 .dump` restore keeps tables, views and triggers but not user_version.
    """
    tables = _user_tables(db)
    if not tables:
        return 0
    if not _VERSION_TABLES[1] <= tables:
        missing = ", ".join(sorted(_VERSION_TABLES[1] - tables))
        raise StoreError(f"{db.conn.path} holds tables that are not an activelearn labels.db "
                         f"(no {missing}): move it aside or choose another --home")
    if not _VERSION_TABLES[2] <= tables:
        return 1
    labels_columns = {row[1] for row in db.execute("PRAGMA table_info(labels)").fetchall()}
    if "via" in labels_columns:
        return 4
    return 3 if {"item_state", "undecided_items"} <= tables and "request_id" in labels_columns else 2


def _stamp_restored(db: sqlite_utils.Database) -> None:
    """Set user_version from the tables of a database that lost it; later migrations then apply."""
    with transaction(db):
        if schema_version(db) == 0:
            db.execute(f"PRAGMA user_version = {detect_version(db)}")


def schema_version(db: sqlite_utils.Database) -> int:
    if is_postgres(db):
        return store_pg.schema_version(db)
    return db.execute("PRAGMA user_version").fetchone()[0]


def migrate(db: sqlite_utils.Database) -> int:
    """Apply forward migrations in order; each runs in one transaction (none is due: no lock taken)."""
    version = schema_version(db)
    if version > SCHEMA_VERSION:
        raise StoreError(f"labels.db has schema version {version}, newer than this "
                         f"activelearn ({SCHEMA_VERSION}); upgrade activelearn")
    if version == SCHEMA_VERSION:
        return SCHEMA_VERSION
    with transaction(db):
        version = schema_version(db)       # another process may have migrated meanwhile
        for target in range(version + 1, SCHEMA_VERSION + 1):
            if is_postgres(db):
                store_pg.apply_migration(db, target)
            else:
                for statement in _split_sql(_MIGRATIONS[target]):
                    db.execute(statement)
            if target == 1:
                created = now()
                db.conn.executemany(
                    "INSERT INTO classes (id, name, fmnist_index, created_at) VALUES (?, ?, ?, ?)",
                    [(i, name, i, created) for i, name in enumerate(FMNIST_CLASSES)])
            if not is_postgres(db):
                db.execute(f"PRAGMA user_version = {target}")
    return SCHEMA_VERSION


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (triggers contain inner semicolons)."""
    statements, buffer = [], ""
    for line in script.splitlines():
        line = line.split("--", 1)[0].rstrip()
        if not line:
            continue
        buffer += line + "\n"
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    return statements


def _begin_immediate(db: sqlite_utils.Database) -> None:
    """BEGIN IMMEDIATE, waiting for the write lock by polling every few milliseconds.

    sqlite's own busy handler sleeps up to 100 ms between tries, so a waiting annotator
    would miss the short gaps a bulk writer leaves between its chunks; polling catches them.
    PostgreSQL queues the waiting writers on an advisory lock instead.
    """
    if is_postgres(db):
        store_pg.begin_write(db, BUSY_TIMEOUT_MS)
        return
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.001
    db.execute("PRAGMA busy_timeout = 0")
    try:
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                return
            except StoreBusy:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.005)
    finally:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """BEGIN IMMEDIATE ... COMMIT: takes the write lock up front so read-then-write is safe."""
    _begin_immediate(db)
    try:
        yield db
    except BaseException:
        if db.conn.in_transaction:    # sqlite may have rolled back already (busy, I/O errors)
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


# ---------------------------------------------------------------- classes

@dataclass(frozen=True)
class ClassInfo:
    id: int
    name: str
    fmnist_index: int | None


def list_classes(db: sqlite_utils.Database) -> list[ClassInfo]:
    """Classes in model-output order (ids are the output indices)."""
    return [ClassInfo(*row) for row in
            db.execute("SELECT id, name, fmnist_index FROM classes ORDER BY id").fetchall()]


def class_names(db: sqlite_utils.Database) -> list[str]:
    return [c.name for c in list_classes(db)]


def add_class(db: sqlite_utils.Database, name: str) -> ClassInfo:
    """Add a user class; it takes the next output index, so the model grows by one unit.

    Names that would be misread are refused: all digits (digits are class ids and the
    Label tab's class keys), HTML markup characters (names are shown in web pages), '/',
    '\\' and '..' (names become folder names in exports), control characters and invisible
    format characters such as direction marks and overrides or zero-width spaces (what is
    shown would differ from what is stored).
    """
    for char in name:
        category = unicodedata.category(char)
        if category == "Cc":
            raise StoreError(f"a class name cannot contain control characters "
                             f"(found U+{ord(char):04X} in {name!r})")
        if "\u202a" <= char <= "\u202e" or "\u2066" <= char <= "\u2069":
            raise StoreError(f"a class name cannot contain Unicode direction overrides (found "
                             f"U+{ord(char):04X} in {name!r}): it would not read as it is stored")
        if category == "Cf":
            raise StoreError(f"a class name cannot contain invisible formatting characters such as "
                             f"direction marks or zero-width spaces (found U+{ord(char):04X} in {name!r}): "
                             "it would not read as it is stored")
    name = " ".join(name.split())
    if not name:
        raise StoreError("a class name cannot be empty")
    if len(name) > 64:
        raise StoreError("a class name is at most 64 characters")
    if name.isdigit():
        raise StoreError(f"a class name cannot be only digits ({name!r}): digits are class ids and "
                         f"class keys; add a word, e.g. 'Size {name}'")
    markup = "".join(c for c in "<>&" if c in name)
    if markup:
        raise StoreError(f"a class name cannot contain HTML markup characters < > & "
                         f"(found {markup!r} in {name!r})")
    for part in ("/", "\\", ".."):
        if part in name:
            raise StoreError(f"a class name cannot contain {part!r} ({name!r}): "
                             "class names become folder names in exports")
    with transaction(db):
        if db.execute("SELECT 1 FROM classes WHERE lower(name) = lower(?)", [name]).fetchone():
            raise StoreError(f"class {name!r} already exists")
        next_id = db.execute("SELECT COALESCE(MAX(id), -1) + 1 FROM classes").fetchone()[0]
        db.execute("INSERT INTO classes (id, name, fmnist_index, created_at) VALUES (?, ?, NULL, ?)",
                   [next_id, name, now()])
    return ClassInfo(next_id, name, None)


def resolve_class(db: sqlite_utils.Database, name_or_id: str | int) -> ClassInfo:
    """Accept a class name (case-insensitive) or its numeric id."""
    row = db.execute("SELECT id, name, fmnist_index FROM classes WHERE lower(name) = lower(?)",
                     [str(name_or_id).strip()]).fetchone()
    if row is None and str(name_or_id).strip().isdigit():
        row = db.execute("SELECT id, name, fmnist_index FROM classes WHERE id = ?",
                         [int(name_or_id)]).fetchone()
    if row is None:
        known = ", ".join(class_names(db))
        raise StoreError(f"unknown class {name_or_id!r}; known classes: {known}")
    return ClassInfo(*row)


# ---------------------------------------------------------------- items

ITEM_COLUMNS = ("sha256", "source", "original_name", "stored_path", "width", "height",
                "format", "split", "pixels", "dhash", "near_dup_of", "flags")


def insert_item(db: sqlite_utils.Database, **fields) -> int:
    """Insert one item row; the caller holds the transaction. Returns the new id."""
    unknown = set(fields) - set(ITEM_COLUMNS)
    if unknown:
        raise StoreError(f"unknown item fields: {sorted(unknown)}")
    pixels = fields.get("pixels")
    if isinstance(pixels, np.ndarray):
        fields["pixels"] = pixels_to_blob(pixels)
    fields.setdefault("created_at", now())
    columns = ", ".join(fields)
    marks = ", ".join("?" for _ in fields)
    cursor = db.execute(f"INSERT INTO items ({columns}) VALUES ({marks})", list(fields.values()))
    return int(cursor.lastrowid)


def pixels_to_blob(pixels: np.ndarray) -> bytes:
    if pixels.shape != (28, 28) or pixels.dtype != np.uint8:
        raise StoreError(f"converted image must be 28x28 uint8, got {pixels.shape} {pixels.dtype}")
    return pixels.tobytes()


def item_pixels(db: sqlite_utils.Database, item_ids: Iterable[int]) -> np.ndarray:
    """The converted 28x28 images of the given items, in the given order."""
    ids = [int(i) for i in item_ids]
    if not ids:
        return np.zeros((0, 28, 28), np.uint8)
    blobs: dict[int, bytes] = {}
    for chunk in _chunks(ids, 900):
        marks = ",".join("?" * len(chunk))
        blobs.update(db.execute(f"SELECT id, pixels FROM items WHERE id IN ({marks})", chunk).fetchall())
    missing = [i for i in ids if i not in blobs]
    if missing:
        raise StoreError(f"unknown item ids: {missing[:10]}")
    return np.frombuffer(b"".join(blobs[i] for i in ids), np.uint8).reshape(len(ids), 28, 28)


def missing_items(db: sqlite_utils.Database, item_ids: Iterable[int]) -> list[int]:
    """The given ids that name no item, ascending (to refuse a bulk write before it starts)."""
    ids = sorted({int(i) for i in item_ids})
    return [row[0] for row in db.execute(
        "SELECT value FROM json_each(?) WHERE value NOT IN (SELECT id FROM items) ORDER BY value",
        [json.dumps(ids)])]


def get_item(db: sqlite_utils.Database, item_id: int) -> dict:
    row = db.execute("SELECT * FROM items WHERE id = ?", [int(item_id)]).fetchone()
    if row is None:
        raise StoreError(f"unknown item {item_id}")
    columns = [d[0] for d in db.execute("SELECT * FROM items LIMIT 0").description]
    return dict(zip(columns, row))


def _chunks(values: list, size: int) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


# ---------------------------------------------------------------- label events

@dataclass(frozen=True)
class LabelEvent:
    id: int
    item_id: int
    action: str
    class_id: int | None


def _stored_request(db: sqlite_utils.Database, request_id: str) -> LabelEvent | None:
    row = db.execute("SELECT id, item_id, action, class_id FROM labels WHERE request_id = ?",
                     [request_id]).fetchone()
    return LabelEvent(*row) if row else None


def record_label(db: sqlite_utils.Database, item_id: int, action: str, *,
                 class_id: int | None = None, annotator: str,
                 model_version: str | None = None, predicted_class_id: int | None = None,
                 confidence: float | None = None, request_id: str | None = None,
                 via: str | None = None) -> LabelEvent:
    """Append one decision (confirm / correct / skip / reject) for an item.

    With a `request_id` the decision is stored once: a retry with the same id returns
    the event the first attempt stored (the client may have missed the answer).
    """
    if action not in DECISIONS:
        raise StoreError(f"unknown action {action!r}; use one of {', '.join(DECISIONS)} (or undo)")
    if action in ("confirm", "correct") and class_id is None:
        raise StoreError(f"{action} needs a class")
    if action in ("skip", "reject"):
        class_id = None
    if not annotator:
        raise StoreError("every label event needs an annotator")
    if request_id is not None and (stored := _stored_request(db, request_id)) is not None:
        return stored
    try:
        cursor = db.execute(
            "INSERT INTO labels (item_id, class_id, action, annotator, model_version, "
            "predicted_class_id, confidence, created_at, request_id, via) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [int(item_id), class_id, action, annotator, model_version, predicted_class_id,
             None if confidence is None else float(confidence), now(), request_id, via])
    except sqlite3.IntegrityError as exc:
        raise StoreError(f"cannot label item {item_id}: unknown item or class ({exc})") from exc
    return LabelEvent(int(cursor.lastrowid), int(item_id), action, class_id)


def record_decision(db: sqlite_utils.Database, item_id: int, action: str, *, annotator: str,
                    class_id: int | None = None, model_version: str | None = None,
                    predicted_class_id: int | None = None, confidence: float | None = None,
                    request_id: str | None = None, served_event_id: int | None = UNCHECKED,
                    via: str | None = None) -> LabelEvent:
    """An annotator's decision, in one short transaction: checked, stored once, lease released.

    Refused (DecisionConflict, nothing stored) when the item is leased to another annotator,
    or when `served_event_id` (the item's current event when it was served to this annotator,
    None = it was undecided) is given and another annotator has decided the item since: the
    later decision must not silently overwrite a colleague's. A retried request id returns
    the stored event before any check.
    """
    with transaction(db):
        if request_id is not None and (stored := _stored_request(db, request_id)) is not None:
            return stored
        lease = db.execute("SELECT annotator, expires_at FROM leases WHERE item_id = ?", [int(item_id)]).fetchone()
        if lease is not None and lease[0] != annotator and lease[1] > time.time():
            raise DecisionConflict(f"item #{item_id} is being labeled by {lease[0]}, so your {action} "
                                   "was not recorded")
        if served_event_id != UNCHECKED:
            current = db.execute("SELECT event_id, annotator FROM item_state WHERE item_id = ?",
                                 [int(item_id)]).fetchone()
            if (current[0] if current else None) != served_event_id and current and current[1] != annotator:
                raise DecisionConflict(f"item #{item_id} was decided by {current[1]} after it was shown "
                                       f"to you, so your {action} was not recorded")
        event = record_label(db, item_id, action, class_id=class_id, annotator=annotator,
                             model_version=model_version, predicted_class_id=predicted_class_id,
                             confidence=confidence, request_id=request_id, via=via)
        db.execute("DELETE FROM leases WHERE item_id = ?", [int(item_id)])
    return event


def record_labels_in_chunks(db: sqlite_utils.Database, rows: Sequence[tuple[int, int | None]], action: str, *,
                            annotator: str, request_prefix: str | None = None,
                            chunk: int | None = None) -> tuple[int, int]:
    """Bulk decisions (item id, class id) in transactions of `chunk` rows, so interactive writes interleave.

    Items leased to someone else are refused before anything is written. With a
    `request_prefix`, row k gets request id f"{prefix}:{k}": running the same batch again
    (after a crash half-way) stores only the rows still missing. Returns (stored, already stored).
    """
    chunk = chunk or BULK_CHUNK
    leased = leased_to_others(db, annotator, [item for item, _ in rows])
    if len(leased):
        holders = db.execute(
            "SELECT item_id, annotator FROM leases WHERE item_id IN (SELECT value FROM json_each(?)) "
            "ORDER BY item_id LIMIT 3", [json.dumps(leased.tolist())]).fetchall()
        named = ", ".join(f"#{item} ({who})" for item, who in holders)
        raise DecisionConflict(f"{len(leased)} item(s) are being labeled by others right now ({named}"
                               f"{', ...' if len(leased) > 3 else ''}), so nothing was recorded: "
                               "try again later or leave them out")
    stored = repeated = 0
    for start in range(0, len(rows), chunk):
        with transaction(db):
            for k, (item, class_id) in enumerate(rows[start:start + chunk], start=start):
                request = None if request_prefix is None else f"{request_prefix}:{k}"
                before = _stored_request(db, request) if request else None
                record_label(db, item, action, class_id=class_id, annotator=annotator, request_id=request)
                if before is None:
                    stored += 1
                else:
                    repeated += 1
            db.conn.executemany("DELETE FROM leases WHERE item_id = ?",
                                [(item,) for item, _ in rows[start:start + chunk]])
        time.sleep(BULK_PAUSE_S)   # a gap in which waiting writers take the lock
    return stored, repeated


def _newest_effective(db: sqlite_utils.Database, column: str, value: Any) -> tuple | None:
    return db.execute(
        f"SELECT id, item_id, action, class_id FROM labels e WHERE {column} = ? AND action != 'undo' "
        "AND NOT EXISTS (SELECT 1 FROM labels u WHERE u.undoes = e.id) ORDER BY id DESC LIMIT 1",
        [value]).fetchone()


def undo(db: sqlite_utils.Database, *, annotator: str, item_id: int | None = None) -> LabelEvent | None:
    """Revert the newest effective decision (of this item, or else of this annotator).

    Returns the reverted event, or None when there is nothing to undo. The item's current
    label (item_state) falls back to its previous effective decision in the same transaction.
    """
    with transaction(db):
        row = (_newest_effective(db, "item_id", int(item_id)) if item_id is not None
               else _newest_effective(db, "annotator", annotator))
        if row is None:
            return None
        db.execute("INSERT INTO labels (item_id, action, annotator, undoes, created_at) "
                   "VALUES (?, 'undo', ?, ?, ?)", [row[1], annotator, row[0], now()])
    return LabelEvent(*row)


def current_event(db: sqlite_utils.Database, item_id: int) -> int | None:
    """The id of the event that is the item's current label (None: undecided)."""
    row = db.execute("SELECT event_id FROM item_state WHERE item_id = ?", [int(item_id)]).fetchone()
    return row[0] if row else None


def label_state(db: sqlite_utils.Database, split: str | None = None) -> dict[int, tuple[str, int | None]]:
    """item id -> (current action, class id) for every item with an effective decision."""
    sql, params = "SELECT item_id, action, class_id FROM item_state", []
    if split is not None:
        sql += " WHERE split = ?"
        params.append(split)
    return {item: (action, cls) for item, action, cls in db.execute(sql, params).fetchall()}


def last_event_id(db: sqlite_utils.Database) -> int:
    """The newest label event's id (0: none): a cheap stamp of how new a view of the labels is."""
    return db.execute("SELECT COALESCE(MAX(id), 0) FROM labels").fetchone()[0]


def annotator_votes(db: sqlite_utils.Database) -> list[tuple[int, str, int, str]]:
    """(item id, annotator, class id, time) of each annotator's latest decision per item, if it names a class.

    The input of agreement and consensus: one vote per person per item. An undone decision
    is no vote, and a person whose latest decision is a skip or reject has withdrawn theirs.
    """
    return [tuple(row) for row in db.execute(
        "SELECT item_id, annotator, class_id, created_at FROM ("
        "  SELECT *, ROW_NUMBER() OVER (PARTITION BY item_id, annotator ORDER BY id DESC) AS rn"
        "  FROM effective_events) AS latest"
        " WHERE rn = 1 AND action IN ('confirm', 'correct') ORDER BY item_id, annotator").fetchall()]


def labeled_items(db: sqlite_utils.Database, split: str | None = None) -> list[tuple[int, int]]:
    """(item id, class id) of items whose current decision is confirm/correct."""
    return [(item, cls) for item, (action, cls) in label_state(db, split).items()
            if action in ("confirm", "correct")]


def unlabeled_pool(db: sqlite_utils.Database) -> list[int]:
    """Pool items with no effective decision: the candidates for the queue."""
    return unlabeled(db, "pool")


def unlabeled(db: sqlite_utils.Database, split: str) -> list[int]:
    """Items of a split with no effective decision, by id."""
    return unlabeled_ids(db, split).tolist()


def unlabeled_ids(db: sqlite_utils.Database, split: str) -> np.ndarray:
    """Items of a split with no effective decision, ascending, as an int64 array (the queue's input).

    Read from `undecided_items` (kept by triggers), so the cost follows the items left, not all items.
    """
    cursor = db.execute("SELECT item_id FROM undecided_items WHERE split = ? ORDER BY item_id", [split])
    return np.fromiter((row[0] for row in cursor), np.int64)


def items_signature(db: sqlite_utils.Database, backbone: str | None = None) -> tuple[int, int]:
    """What a model scores, in two numbers: all items (never deleted, so the largest id says it), or
    (count, largest id) of those `backbone` embedded.

    Cheap (index reads): a cached score table is still complete while the signature is unchanged.
    """
    if backbone is None:
        return (0, db.execute("SELECT COALESCE(MAX(id), 0) FROM items").fetchone()[0])
    return tuple(db.execute("SELECT COUNT(*), COALESCE(MAX(item_id), 0) FROM embeddings WHERE backbone = ?",
                            [backbone]).fetchone())


def count_labeled(db: sqlite_utils.Database, split: str) -> int:
    """Items of a split whose current decision is confirm/correct."""
    return db.execute("SELECT COUNT(*) FROM item_state WHERE split = ? AND action IN ('confirm','correct')",
                      [split]).fetchone()[0]


def labeled_per_class(db: sqlite_utils.Database, split: str) -> dict[int, int]:
    """class id -> items of a split currently labeled with it (confirm/correct)."""
    return dict(db.execute("SELECT class_id, COUNT(*) FROM item_state WHERE split = ? "
                           "AND action IN ('confirm','correct') GROUP BY class_id", [split]).fetchall())


def has_embeddings(db: sqlite_utils.Database, backbone: str) -> bool:
    return db.execute("SELECT 1 FROM embeddings WHERE backbone = ? LIMIT 1", [backbone]).fetchone() is not None


@dataclass(frozen=True)
class StoreStatus:
    items_per_split: dict[str, int]
    labeled_per_class: dict[str, dict[str, int]]   # split -> class name -> count
    skipped: int
    rejected: int
    unlabeled_pool: int
    holdout_unlabeled: int

    def as_dict(self) -> dict:
        return {
            "items": self.items_per_split,
            "labeled_per_class": self.labeled_per_class,
            "labeled": sum(sum(c.values()) for c in self.labeled_per_class.values()),
            "skipped": self.skipped,
            "rejected": self.rejected,
            "unlabeled_pool": self.unlabeled_pool,
            "holdout_unlabeled": self.holdout_unlabeled,
        }


def status(db: sqlite_utils.Database) -> StoreStatus:
    """Counts for `status` and the UI header: two grouped reads of indexes, whatever the history's length."""
    names = {c.id: c.name for c in list_classes(db)}
    per_split = dict.fromkeys(SPLITS, 0)
    per_split.update(db.execute("SELECT split, COUNT(*) FROM items GROUP BY split").fetchall())
    labeled: dict[str, Counter] = {split: Counter() for split in SPLITS}
    actions: Counter = Counter()
    decided: Counter = Counter()
    for split, action, cls, count in db.execute(
            "SELECT split, action, class_id, COUNT(*) FROM item_state GROUP BY split, action, class_id"):
        actions[action] += count
        decided[split] += count
        if action in ("confirm", "correct"):
            labeled[split][names[cls]] += count
    return StoreStatus(
        items_per_split=per_split,
        labeled_per_class={split: dict(sorted(c.items())) for split, c in labeled.items()},
        skipped=actions["skip"],
        rejected=actions["reject"],
        unlabeled_pool=per_split["pool"] - decided["pool"],
        holdout_unlabeled=per_split["holdout"] - decided["holdout"],
    )


# ---------------------------------------------------------------- leases

def leased_to_others(db: sqlite_utils.Database, annotator: str | None,
                     item_ids: Sequence[int] | None = None) -> np.ndarray:
    """Items under a live lease of someone other than `annotator` (optionally among item_ids), ascending."""
    sql, params = "SELECT item_id FROM leases WHERE expires_at > ? AND annotator != ?", [time.time(), annotator or ""]
    if item_ids is not None:
        sql += " AND item_id IN (SELECT value FROM json_each(?))"
        params.append(json.dumps([int(i) for i in item_ids]))
    return np.fromiter((row[0] for row in db.execute(sql + " ORDER BY item_id", params)), np.int64)


def take_leases(db: sqlite_utils.Database, item_ids: Sequence[int], annotator: str, seconds: float) -> set[int]:
    """Lease items to `annotator` for `seconds`; returns those now leased to them.

    Only a free, expired or own lease is (re)written: a colleague's live lease is never
    taken over. Call it inside the transaction that chose the items, so the choice and the
    lease are one atomic step.
    """
    ids = [int(i) for i in item_ids]
    if not ids:
        return set()
    moment = time.time()
    db.conn.executemany(
        "INSERT INTO leases (item_id, annotator, expires_at) VALUES (?, ?, ?) "
        "ON CONFLICT(item_id) DO UPDATE SET annotator = excluded.annotator, expires_at = excluded.expires_at "
        "WHERE leases.expires_at <= ? OR leases.annotator = excluded.annotator",
        [(i, annotator, moment + seconds, moment) for i in ids])
    return {row[0] for row in db.execute(
        "SELECT item_id FROM leases WHERE annotator = ? AND item_id IN (SELECT value FROM json_each(?))",
        [annotator, json.dumps(ids)])}


def release_leases(db: sqlite_utils.Database, item_ids: Sequence[int], annotator: str) -> None:
    """Give back this annotator's leases on these items (others' leases are left alone)."""
    db.execute("DELETE FROM leases WHERE annotator = ? AND item_id IN (SELECT value FROM json_each(?))",
               [annotator, json.dumps([int(i) for i in item_ids])])


def release_all_leases(db: sqlite_utils.Database) -> int:
    """Drop every lease; returns how many. For app start: the sessions that held them died with the old server."""
    return db.execute("DELETE FROM leases").rowcount


# ---------------------------------------------------------------- browsing and history

_STATUS_SQL = {"unlabeled": "s.item_id IS NULL", "labeled": "s.action IN ('confirm','correct')",
               "skipped": "s.action = 'skip'", "rejected": "s.action = 'reject'"}
BROWSE_STATUSES = tuple(_STATUS_SQL)
#: Open issues: unresolved, the item's label unchanged since the scan flagged it, and for a
#: near-duplicate conflict the two labels still differ. Shared by the review queue and Browse's flag.
_OPEN_ISSUES = """FROM label_issues li JOIN item_state s ON s.item_id = li.item_id AND s.event_id = li.event_id
WHERE li.resolved_event_id IS NULL
  AND (li.kind != 'near-duplicate-conflict' OR EXISTS (
        SELECT 1 FROM item_state o WHERE o.item_id = li.other_item_id
          AND o.action IN ('confirm','correct') AND o.class_id != s.class_id))"""


#: An item is flagged when it is marked a near-duplicate or has an open label issue.
#: A set of ids, so a page seeks them by id instead of testing every item.
_FLAGGED_IDS = f"SELECT id FROM items WHERE near_dup_of IS NOT NULL UNION SELECT li.item_id {_OPEN_ISSUES}"


def _moment(value: str, *, end: bool) -> str:
    """An ISO date or time as stored timestamps are written; a bare date as `until` covers its whole day."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise StoreError(f"bad date {value!r}: use YYYY-MM-DD or an ISO date and time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    if end:
        moment += timedelta(days=1) if len(value.strip()) == 10 else timedelta(milliseconds=1)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def _browse_where(*, status: str | None, class_id: int | None, annotator: str | None,
                  name_contains: str | None, split: str | None, since: str | None, until: str | None,
                  flagged: bool | None, item_ids: Sequence[int] | None) -> tuple[str, str, list]:
    """(join, where, params) shared by browse_items and count_items."""
    where, params = [], []
    if status is not None:
        if status not in _STATUS_SQL:
            raise StoreError(f"unknown status {status!r}; use one of {', '.join(_STATUS_SQL)}")
        where.append(_STATUS_SQL[status])
    if class_id is not None:
        where.append("s.class_id = ?")
        params.append(int(class_id))
    if annotator is not None:
        where.append("s.annotator = ?")
        params.append(annotator)
    if name_contains:
        escaped = name_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append("i.original_name LIKE ? ESCAPE '\\'")
        params.append(f"%{escaped}%")
    if split is not None:
        if split not in SPLITS:
            raise StoreError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        where.append("i.split = ?")
        params.append(split)
    if since:
        where.append("s.created_at >= ?")
        params.append(_moment(since, end=False))
    if until:
        where.append("s.created_at < ?")
        params.append(_moment(until, end=True))
    if flagged is not None:
        where.append(f"i.id {'IN' if flagged else 'NOT IN'} ({_FLAGGED_IDS})")
    if item_ids is not None:
        where.append("i.id IN (SELECT value FROM json_each(?))")
        params.append(json.dumps([int(i) for i in item_ids]))
    # a filter on the current label excludes undecided items: an inner join lets sqlite start from item_state
    needs_label = (status not in (None, "unlabeled") or class_id is not None or annotator is not None
                   or bool(since) or bool(until))
    join = "JOIN" if needs_label else "LEFT JOIN"
    return join, " AND ".join(where) or "TRUE", params


def browse_items(db: sqlite_utils.Database, *, status: str | None = None, class_id: int | None = None,
                 annotator: str | None = None, name_contains: str | None = None, split: str | None = None,
                 since: str | None = None, until: str | None = None, flagged: bool | None = None,
                 item_ids: Sequence[int] | None = None, after_id: int | None = None,
                 limit: int = 48) -> list[dict]:
    """A page of items with their current label, by ascending id; pass the last id as `after_id` for the next.

    Keyset paging (id > after_id) keeps every page as fast as the first at 100,000 items.
    `status` is the item's current state (unlabeled, labeled, skipped, rejected); class_id,
    annotator and since/until (ISO dates or times, UTC; a bare `until` date covers the day)
    filter its current label; `flagged` = marked near-duplicate or with an open label issue;
    `item_ids` restricts to a set (any size).
    """
    join, where, params = _browse_where(status=status, class_id=class_id, annotator=annotator,
                                        name_contains=name_contains, split=split, since=since, until=until,
                                        flagged=flagged, item_ids=item_ids)
    rows = db.execute(
        "SELECT i.id, i.sha256, i.original_name, i.stored_path, i.split, i.source, i.created_at, "
        "s.action, s.class_id, c.name, s.annotator "
        f"FROM items i {join} item_state s ON s.item_id = i.id LEFT JOIN classes c ON c.id = s.class_id "
        f"WHERE i.id > ? AND {where} ORDER BY i.id LIMIT ?",
        [-1 if after_id is None else int(after_id), *params, int(limit)]).fetchall()
    keys = ("id", "sha256", "original_name", "stored_path", "split", "source", "created_at",
            "action", "class_id", "class_name", "annotator")
    return [dict(zip(keys, row)) for row in rows]


def count_items(db: sqlite_utils.Database, *, status: str | None = None, class_id: int | None = None,
                annotator: str | None = None, name_contains: str | None = None, split: str | None = None,
                since: str | None = None, until: str | None = None, flagged: bool | None = None,
                item_ids: Sequence[int] | None = None) -> int:
    """How many items browse_items would page through with these filters."""
    join, where, params = _browse_where(status=status, class_id=class_id, annotator=annotator,
                                        name_contains=name_contains, split=split, since=since, until=until,
                                        flagged=flagged, item_ids=item_ids)
    return db.execute(f"SELECT COUNT(*) FROM items i {join} item_state s ON s.item_id = i.id WHERE {where}",
                      params).fetchone()[0]


def recent_decisions(db: sqlite_utils.Database, *, annotator: str | None = None, limit: int = 20) -> list[dict]:
    """The newest effective decisions (undo events and undone decisions left out), newest first."""
    sql = ("SELECT e.id, e.item_id, e.action, e.class_id, c.name, e.annotator, e.created_at, "
           "i.stored_path, i.original_name, i.sha256 FROM labels e JOIN items i ON i.id = e.item_id "
           "LEFT JOIN classes c ON c.id = e.class_id WHERE e.action != 'undo' "
           "AND NOT EXISTS (SELECT 1 FROM labels u WHERE u.undoes = e.id)")
    params: list = []
    if annotator is not None:
        sql += " AND e.annotator = ?"
        params.append(annotator)
    keys = ("event_id", "item_id", "action", "class_id", "class_name", "annotator", "created_at",
            "stored_path", "original_name", "sha256")
    rows = db.execute(sql + " ORDER BY e.id DESC LIMIT ?", [*params, int(limit)]).fetchall()
    return [dict(zip(keys, row)) for row in rows]


def decision_times(db: sqlite_utils.Database, *, since: str | None = None) -> list[tuple[str, str]]:
    """(annotator, created_at) of every decision that is not an undo, oldest first: progress rates."""
    sql, params = "SELECT annotator, created_at FROM labels WHERE action != 'undo'", []
    if since:
        sql += " AND created_at >= ?"
        params.append(_moment(since, end=False))
    return db.execute(sql + " ORDER BY created_at, id", params).fetchall()   # the created_at index's order


# ---------------------------------------------------------------- holdout parts

#: The labeled holdout is split by content hash into a part that decisions may look at
#: (early stopping, head hyper-parameters, activation) and a part that only reports.
HOLDOUT_PARTS = ("selection", "report")


def holdout_part(sha256: str) -> str:
    """Which part of the holdout an item belongs to: stable as the holdout grows."""
    return HOLDOUT_PARTS[int(sha256[:8], 16) % 2]


def labeled_holdout(db: sqlite_utils.Database, part: str | None = None) -> list[tuple[int, int]]:
    """(item id, class id) of labeled holdout items, by item id; `part` picks selection or report."""
    if part is not None and part not in HOLDOUT_PARTS:
        raise StoreError(f"unknown holdout part {part!r}; use one of {', '.join(HOLDOUT_PARTS)}")
    rows = db.execute("SELECT s.item_id, s.class_id, i.sha256 FROM item_state s "
                      "JOIN items i ON i.id = s.item_id "
                      "WHERE i.split = 'holdout' AND s.action IN ('confirm','correct') "
                      "ORDER BY s.item_id").fetchall()
    return [(item, cls) for item, cls, sha in rows if part is None or holdout_part(sha) == part]


# ---------------------------------------------------------------- backbone embeddings

def items_without_embedding(db: sqlite_utils.Database, backbone: str) -> list[tuple[int, str | None]]:
    """(item id, stored original path) of items the backbone has not embedded yet, by id."""
    return db.execute("SELECT i.id, i.stored_path FROM items i WHERE NOT EXISTS "
                      "(SELECT 1 FROM embeddings e WHERE e.backbone = ? AND e.item_id = i.id) "
                      "ORDER BY i.id", [backbone]).fetchall()


def put_embeddings(db: sqlite_utils.Database, backbone: str, item_ids: Sequence[int],
                   vectors: np.ndarray) -> None:
    """Store (or replace) embeddings as float16 in one transaction: compact, and enough for a head."""
    if len(item_ids) != len(vectors):
        raise StoreError(f"{len(item_ids)} item ids but {len(vectors)} embeddings")
    half = np.asarray(vectors, np.float16)
    created = now()
    with transaction(db):
        db.conn.executemany(
            "INSERT INTO embeddings (backbone, item_id, vector, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(backbone, item_id) DO UPDATE SET vector = excluded.vector, created_at = excluded.created_at",
            [(backbone, int(i), half[k].tobytes(), created) for k, i in enumerate(item_ids)])


def get_embeddings(db: sqlite_utils.Database, backbone: str) -> tuple[np.ndarray, np.ndarray]:
    """(item ids ascending, (n, d) float32 embeddings) of every item the backbone has embedded."""
    rows = db.execute("SELECT item_id, vector FROM embeddings WHERE backbone = ? ORDER BY item_id",
                      [backbone]).fetchall()
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    flat = np.frombuffer(b"".join(r[1] for r in rows), np.float16)
    return ids, flat.reshape(len(rows), -1).astype(np.float32)


def embedded_backbones(db: sqlite_utils.Database) -> dict[str, int]:
    """backbone -> number of items it has embedded."""
    return dict(db.execute("SELECT backbone, COUNT(*) FROM embeddings GROUP BY backbone").fetchall())


# ---------------------------------------------------------------- settings

def get_setting(db: sqlite_utils.Database, key: str, default: Any = None) -> Any:
    row = db.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
    return default if row is None else json.loads(row[0])


def set_setting(db: sqlite_utils.Database, key: str, value: Any) -> None:
    db.execute("INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) "
               "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
               [key, json.dumps(value), now()])


# ---------------------------------------------------------------- overlap (items labeled by several people)

def voted_ids(db: sqlite_utils.Database, split: str = "pool") -> np.ndarray:
    """Items of a split whose current label is a person's class decision (not a folder pre-label), ascending."""
    cursor = db.execute("SELECT item_id FROM item_state WHERE split = ? AND action IN ('confirm', 'correct') "
                        "AND annotator != ? ORDER BY item_id", [split, IMPORT_ANNOTATOR])
    return np.fromiter((row[0] for row in cursor), np.int64)


def votes_per_item(db: sqlite_utils.Database) -> dict[int, int]:
    """item id -> number of people whose latest decision on it names a class (pre-labels not counted)."""
    counts: dict[int, int] = {}
    for item, who, _, _ in annotator_votes(db):
        if who != IMPORT_ANNOTATOR:
            counts[item] = counts.get(item, 0) + 1
    return counts


#: `via` of a lead's decision on a contested item: it outranks the majority of the votes.
RESOLVE = "resolve"


def resolved_labels(db: sqlite_utils.Database) -> dict[int, int]:
    """item id -> class of items whose current label is a lead's resolution of a disagreement."""
    return dict(db.execute("SELECT s.item_id, s.class_id FROM item_state s JOIN labels l ON l.id = s.event_id "
                           "WHERE l.via = ? AND s.class_id IS NOT NULL", [RESOLVE]).fetchall())


def overlap_candidates(db: sqlite_utils.Database, item_ids: Sequence[int], annotator: str,
                       k: int) -> list[tuple[int, int]]:
    """(item id, current event id) of those items that may go to `annotator` for one more vote.

    An item qualifies while fewer than `k` people voted on it, `annotator` never decided it
    (a second vote from the same person would agree with itself) and no one else holds a live lease.
    """
    ids = json.dumps([int(i) for i in item_ids])
    return [tuple(row) for row in db.execute(
        "SELECT s.item_id, s.event_id FROM item_state s"
        " WHERE s.item_id IN (SELECT value FROM json_each(?)) AND s.action IN ('confirm', 'correct')"
        "   AND NOT EXISTS (SELECT 1 FROM effective_events e WHERE e.item_id = s.item_id AND e.annotator = ?)"
        "   AND (SELECT COUNT(DISTINCT e.annotator) FROM effective_events e WHERE e.item_id = s.item_id"
        "        AND e.action IN ('confirm', 'correct') AND e.annotator != ?) < ?"
        "   AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.item_id = s.item_id AND l.expires_at > ?"
        "                   AND l.annotator != ?)"
        " ORDER BY s.item_id",
        [ids, annotator, IMPORT_ANNOTATOR, int(k), time.time(), annotator]).fetchall()]


# ---------------------------------------------------------------- jobs

#: Columns of a job row as `job_row` returns them; params and history are JSON in the table.
JOB_FIELDS = ("id", "kind", "status", "params", "pid", "phase", "epoch", "epochs", "batch", "batches", "loss",
              "accuracy", "eta_s", "history", "message", "version", "created_at", "started_at", "finished_at")
#: Columns `update_job` may write (id, kind and created_at never change).
_JOB_WRITABLE = {"status", "pid", "phase", "epoch", "epochs", "batch", "batches", "loss", "accuracy", "eta_s",
                 "history", "message", "version", "started_at", "finished_at", "heartbeat_at"}
_JOB_ACTIVE = "status IN ('queued','running')"


def _job_dict(row: Sequence) -> dict[str, Any]:
    job = dict(zip(JOB_FIELDS, row))
    job["params"] = json.loads(job["params"] or "{}")
    job["history"] = json.loads(job["history"] or "[]")
    return job


def create_job(db: sqlite_utils.Database, kind: str, params: dict[str, Any]) -> int | None:
    """Queue a job row; None when one of this kind is already queued or running (a unique index decides)."""
    created = now()
    try:
        cursor = db.execute("INSERT INTO jobs (kind, status, params, created_at, heartbeat_at) "
                            "VALUES (?, 'queued', ?, ?, ?)", [kind, json.dumps(params), created, created])
    except sqlite3.IntegrityError:
        return None
    return int(cursor.lastrowid)


def job_row(db: sqlite_utils.Database, job_id: int) -> dict[str, Any] | None:
    """One job's row (JOB_FIELDS, JSON decoded), or None: the worker and every progress poll read it."""
    row = db.execute(f"SELECT {', '.join(JOB_FIELDS)} FROM jobs WHERE id = ?", [int(job_id)]).fetchone()
    return None if row is None else _job_dict(row)


def job_rows(db: sqlite_utils.Database, limit: int = 20) -> list[dict[str, Any]]:
    """The newest jobs first, for `jobs` listings."""
    rows = db.execute(f"SELECT {', '.join(JOB_FIELDS)} FROM jobs ORDER BY id DESC LIMIT ?", [int(limit)])
    return [_job_dict(row) for row in rows.fetchall()]


def active_job_row(db: sqlite_utils.Database, kind: str) -> dict[str, Any] | None:
    """The queued or running job of `kind`, or None: what blocks starting another."""
    row = db.execute(f"SELECT {', '.join(JOB_FIELDS)} FROM jobs WHERE {_JOB_ACTIVE} AND kind = ? "
                     "ORDER BY id DESC LIMIT 1", [kind]).fetchone()
    return None if row is None else _job_dict(row)


def active_job_heartbeats(db: sqlite_utils.Database) -> list[tuple[int, int | None, str | None, str]]:
    """(id, pid, heartbeat_at, created_at) of every queued or running job: what reaping a dead worker needs."""
    return [tuple(row) for row in db.execute(
        f"SELECT id, pid, heartbeat_at, created_at FROM jobs WHERE {_JOB_ACTIVE}").fetchall()]


def active_job_ids_of(db: sqlite_utils.Database, pids: Sequence[int]) -> list[int]:
    """Queued or running jobs whose worker has one of these pids: those an exiting app must stop."""
    return [row[0] for row in db.execute(
        f"SELECT id FROM jobs WHERE {_JOB_ACTIVE} AND pid IN (SELECT value FROM json_each(?)) ORDER BY id",
        [json.dumps([int(p) for p in pids])]).fetchall()]


def update_job(db: sqlite_utils.Database, job_id: int, **fields: Any) -> None:
    """Write columns of one job row (history as a list): the worker's progress, pid and start."""
    unknown = set(fields) - _JOB_WRITABLE
    if unknown:
        raise StoreError(f"unknown job fields: {sorted(unknown)}")
    if not fields:
        return
    if "history" in fields:
        fields["history"] = json.dumps(fields["history"])
    sets = ", ".join(f"{column} = ?" for column in fields)
    db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", [*fields.values(), int(job_id)])


def request_job_cancel(db: sqlite_utils.Database, job_ids: Sequence[int]) -> None:
    """Raise the cancel flag the workers poll at each progress report."""
    db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id IN (SELECT value FROM json_each(?))",
               [json.dumps([int(i) for i in job_ids])])


def job_control(db: sqlite_utils.Database, job_id: int) -> tuple[bool, str] | None:
    """(cancel requested, status) of a job, or None if its row is gone: a worker asks whether to go on."""
    row = db.execute("SELECT cancel_requested, status FROM jobs WHERE id = ?", [int(job_id)]).fetchone()
    return None if row is None else (bool(row[0]), row[1])


def finish_job(db: sqlite_utils.Database, job_id: int, status: str, message: str,
               version: str | None = None) -> None:
    """Record a job's outcome (its phase becomes the status), only while it is still active.

    An active-only write, so a job another process already failed or cancelled keeps that outcome.
    """
    db.execute(f"UPDATE jobs SET status = ?, message = ?, version = ?, finished_at = ?, phase = ? "
               f"WHERE id = ? AND {_JOB_ACTIVE}", [status, message, version, now(), status, int(job_id)])


def fail_stale_job(db: sqlite_utils.Database, job_id: int, message: str) -> None:
    """Mark a job whose worker died or went silent failed, keeping its phase (where it stopped)."""
    db.execute(f"UPDATE jobs SET status = 'failed', message = ?, finished_at = ? WHERE id = ? AND {_JOB_ACTIVE}",
               [message, now(), int(job_id)])


# ---------------------------------------------------------------- label issues

def current_events(db: sqlite_utils.Database) -> dict[int, tuple[int, int | None]]:
    """item id -> (current event id, class id) of every decided item: what a scan's issues are pinned to."""
    return {item: (event, cls) for item, event, cls in db.execute(
        "SELECT item_id, event_id, class_id FROM item_state").fetchall()}


def reviewed_issue_items(db: sqlite_utils.Database) -> set[int]:
    """Items whose current label is a lead's resolution of an issue: a new scan does not flag them again."""
    return {row[0] for row in db.execute(
        "SELECT li.item_id FROM label_issues li JOIN item_state s "
        "ON s.item_id = li.item_id AND s.event_id = li.resolved_event_id").fetchall()}


def replace_open_issues(db: sqlite_utils.Database, issues: Sequence[dict[str, Any]], *,
                        settings: dict[str, Any], labeled: int) -> int:
    """Drop unresolved issues and record a scan with `issues` (dicts of label_issues columns); returns its id.

    Resolved issues are kept: they remember which labels a lead has reviewed. The caller holds
    the transaction that read the labels the issues are pinned to.
    """
    db.execute("DELETE FROM label_issues WHERE resolved_event_id IS NULL")
    scan_id = db.execute(
        "INSERT INTO label_issue_scans (created_at, settings, labeled, flagged) VALUES (?, ?, ?, ?)",
        [now(), json.dumps(settings), int(labeled), len({issue["item_id"] for issue in issues})]).lastrowid
    db.conn.executemany(
        "INSERT INTO label_issues (scan_id, item_id, kind, given_class_id, suggested_class_id, "
        "self_confidence, other_item_id, event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(scan_id, i["item_id"], i["kind"], i["given_class_id"], i["suggested_class_id"], i["self_confidence"],
          i["other_item_id"], i["event_id"]) for i in issues])
    return int(scan_id)


def last_issue_scan(db: sqlite_utils.Database) -> dict[str, Any] | None:
    """The newest scan (id, created_at, settings, labeled, flagged), or None if none ran."""
    row = db.execute("SELECT id, created_at, settings, labeled, flagged FROM label_issue_scans "
                     "ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return None
    return {"id": row[0], "created_at": row[1], "settings": json.loads(row[2]),
            "labeled": row[3], "flagged": row[4]}


def open_issue_rows(db: sqlite_utils.Database) -> list[tuple[int, int, int, float | None, str, int | None]]:
    """(item, given class, suggested class, self-confidence, kind, other item) of open issues, in review order."""
    return [tuple(row) for row in db.execute(
        "SELECT li.item_id, li.given_class_id, li.suggested_class_id, li.self_confidence, li.kind, "
        f"li.other_item_id {_OPEN_ISSUES} ORDER BY li.kind, li.self_confidence, li.item_id").fetchall()]


def resolve_issues(db: sqlite_utils.Database, item_id: int, event_id: int) -> None:
    """Close an item's unresolved issues with the lead's decision event."""
    db.execute("UPDATE label_issues SET resolved_event_id = ? WHERE item_id = ? AND resolved_event_id IS NULL",
               [int(event_id), int(item_id)])


def near_duplicate_label_conflicts(db: sqlite_utils.Database) -> list[tuple[int, int, int, int]]:
    """(item, its class, the item it nearly duplicates, that one's class) where the current labels differ."""
    return [tuple(row) for row in db.execute(
        "SELECT i.id, a.class_id, i.near_dup_of, b.class_id FROM items i "
        "JOIN item_state a ON a.item_id = i.id AND a.action IN ('confirm', 'correct') "
        "JOIN item_state b ON b.item_id = i.near_dup_of AND b.action IN ('confirm', 'correct') "
        "WHERE a.class_id != b.class_id ORDER BY i.id").fetchall()]


# ---------------------------------------------------------------- export selection

def export_rows(db: sqlite_utils.Database, *, class_ids: Sequence[int] | None = None,
                not_annotator: str | None = None, annotator: str | None = None,
                since: str | None = None, until: str | None = None,
                include_holdout: bool = True) -> list[tuple[int, str, int, str, str, int]]:
    """(item, split, class, source, annotator, event) of labeled items, pool before holdout, each by id.

    Filters look at the current decision; `since` (inclusive) and `until` (exclusive) are stored-time
    strings. The item_state read happens once here, so later chunks are keyed by event id.
    """
    sql = ["SELECT i.id, i.split, s.class_id, i.source, s.annotator, s.event_id FROM item_state s "
           "JOIN items i ON i.id = s.item_id WHERE s.action IN ('confirm', 'correct')"]
    params: list[Any] = []
    if class_ids is not None:
        sql.append("AND s.class_id IN (SELECT value FROM json_each(?))")
        params.append(json.dumps([int(c) for c in class_ids]))
    if not_annotator is not None:
        sql.append("AND s.annotator != ?")
        params.append(not_annotator)
    if annotator is not None:
        sql.append("AND s.annotator = ?")
        params.append(annotator)
    if since is not None:
        sql.append("AND s.created_at >= ?")
        params.append(since)
    if until is not None:
        sql.append("AND s.created_at < ?")
        params.append(until)
    if not include_holdout:
        sql.append("AND i.split = 'pool'")
    sql.append("ORDER BY i.split = 'holdout', i.id")
    return [tuple(row) for row in db.execute(" ".join(sql), params).fetchall()]


def near_dup_parents(db: sqlite_utils.Database) -> dict[int, int]:
    """item id -> the item it was flagged a near-duplicate of (only flagged items): export's groups."""
    return dict(db.execute("SELECT id, near_dup_of FROM items WHERE near_dup_of IS NOT NULL").fetchall())


def item_sha256s(db: sqlite_utils.Database, item_ids: Iterable[int]) -> dict[int, str]:
    """item id -> SHA-256 of the given items (unknown ids are left out)."""
    shas: dict[int, str] = {}
    for chunk in _chunks(sorted({int(i) for i in item_ids}), 900):
        marks = ",".join("?" * len(chunk))
        shas.update(db.execute(f"SELECT id, sha256 FROM items WHERE id IN ({marks})", chunk).fetchall())
    return shas


def export_records(db: sqlite_utils.Database, event_ids: Sequence[int]) -> dict[int, tuple]:
    """item id -> the manifest's columns of the item each decision event labels.

    A row is (item id, sha256, original name, source, stored path, format, width, height, flags,
    class id, action, annotator, decided at, model version, predicted class id, confidence).
    """
    rows: dict[int, tuple] = {}
    for chunk in _chunks([int(e) for e in event_ids], 900):
        marks = ",".join("?" * len(chunk))
        rows.update((row[0], tuple(row)) for row in db.execute(
            "SELECT i.id, i.sha256, i.original_name, i.source, i.stored_path, i.format, i.width, i.height, "
            "i.flags, e.class_id, e.action, e.annotator, e.created_at, "
            "e.model_version, e.predicted_class_id, e.confidence "
            f"FROM labels e JOIN items i ON i.id = e.item_id WHERE e.id IN ({marks})", chunk).fetchall())
    return rows


def effective_decisions_of(db: sqlite_utils.Database, item_ids: Sequence[int]) -> list[tuple[int, str, str]]:
    """(item, annotator, time) of every effective (not undone, not undo) decision on these items."""
    rows: list[tuple[int, str, str]] = []
    for chunk in _chunks([int(i) for i in item_ids], 900):
        marks = ",".join("?" * len(chunk))
        rows += [tuple(row) for row in db.execute(
            f"SELECT item_id, annotator, created_at FROM effective_events WHERE item_id IN ({marks})",
            chunk).fetchall()]
    return rows


# ---------------------------------------------------------------- near-duplicates and import

def item_ids(db: sqlite_utils.Database) -> np.ndarray:
    """Every item id, ascending, as int64: what the 28x28 model scores."""
    return np.fromiter((row[0] for row in db.execute("SELECT id FROM items ORDER BY id")), np.int64)


def known_sha256(db: sqlite_utils.Database) -> set[str]:
    """SHA-256 of every item: an import skips byte-identical files without a query per file."""
    return {row[0] for row in db.execute("SELECT sha256 FROM items")}


def item_id_by_sha256(db: sqlite_utils.Database, sha256: str) -> int | None:
    """The item with this content hash, or None."""
    row = db.execute("SELECT id FROM items WHERE sha256 = ?", [sha256]).fetchone()
    return None if row is None else row[0]


def item_stored_path(db: sqlite_utils.Database, item_id: int) -> str | None:
    """Where an item's original is stored (relative to the home folder); None if it has none or is unknown."""
    row = db.execute("SELECT stored_path FROM items WHERE id = ?", [int(item_id)]).fetchone()
    return None if row is None else row[0]


def item_dhashes(db: sqlite_utils.Database) -> list[tuple[int, int]]:
    """(item id, perceptual hash as signed 64-bit) of every hashed item, by id: the near-duplicate index."""
    return [tuple(row) for row in db.execute(
        "SELECT id, dhash FROM items WHERE dhash IS NOT NULL ORDER BY id").fetchall()]


def hashed_item_paths(db: sqlite_utils.Database) -> list[tuple[int, str | None]]:
    """(item id, stored path) of every hashed item, by id: the ones a hash upgrade recomputes."""
    return [tuple(row) for row in db.execute(
        "SELECT id, stored_path FROM items WHERE dhash IS NOT NULL ORDER BY id").fetchall()]


def set_dhashes(db: sqlite_utils.Database, updates: Sequence[tuple[int, int | None]]) -> None:
    """Write (item id, hash or None) pairs in one transaction: a hash upgrade goes in chunks like this."""
    with transaction(db):
        db.conn.executemany("UPDATE items SET dhash = ? WHERE id = ?",
                            [(value, int(item_id)) for item_id, value in updates])


@contextmanager
def savepoint(db: sqlite_utils.Database, name: str) -> Iterator[sqlite_utils.Database]:
    """A nested transaction inside the caller's: an exception undoes only what was written within it.

    The import writes each file's item and pre-label in one, so a refused row leaves its batch intact.
    """
    if not name.isidentifier():
        raise StoreError(f"a savepoint name must be an identifier, got {name!r}")
    db.execute(f"SAVEPOINT {name}")
    try:
        yield db
    except BaseException:
        if db.conn.in_transaction:
            db.execute(f"ROLLBACK TO {name}")
            db.execute(f"RELEASE {name}")
        raise
    db.execute(f"RELEASE {name}")
