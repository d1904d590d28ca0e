"""labels.db: items, classes, append-only label events, jobs and leases.

Every human decision is an *event*; nothing is updated in place. An item's
current label is derived: the newest event that no `undo` event has reverted.
Triggers make the events table append-only at the SQL level, so no code path
(ours or a user's sqlite shell) can rewrite history by accident.

Connections are cheap and per caller (Gradio runs handlers in worker threads,
and a sqlite3 connection belongs to its thread): call `open_db` per request.
WAL mode plus a busy timeout lets several processes write at the same moment.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from activelearn import FMNIST_CLASSES
from activelearn.errors import StoreError

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 30_000

#: Decisions an annotator can record; "undo" reverts the newest effective one.
DECISIONS = ("confirm", "correct", "skip", "reject")
ACTIONS = DECISIONS + ("undo",)
SPLITS = ("pool", "holdout")
SOURCES = ("folder", "archive", "upload", "url", "fmnist")

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
}

_migrated: set[Path] = set()
_migrate_lock = threading.Lock()


def now() -> str:
    """UTC timestamp with milliseconds; sorts correctly as text."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def open_db(path: str | Path) -> sqlite_utils.Database:
    """Open (and create or migrate) labels.db with WAL, foreign keys and a busy timeout."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    db = sqlite_utils.Database(conn)
    key = path.resolve()
    if key not in _migrated:
        with _migrate_lock:
            if key not in _migrated:
                conn.execute("PRAGMA journal_mode = WAL")
                migrate(db)
                _migrated.add(key)
    return db


def schema_version(db: sqlite_utils.Database) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def migrate(db: sqlite_utils.Database) -> int:
    """Apply forward migrations in order; each runs in one transaction."""
    with transaction(db):
        version = schema_version(db)
        if version > SCHEMA_VERSION:
            raise StoreError(f"labels.db has schema version {version}, newer than this "
                             f"activelearn ({SCHEMA_VERSION}); upgrade activelearn")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _split_sql(_MIGRATIONS[target]):
                db.execute(statement)
            if target == 1:
                created = now()
                db.conn.executemany(
                    "INSERT INTO classes (id, name, fmnist_index, created_at) VALUES (?, ?, ?, ?)",
                    [(i, name, i, created) for i, name in enumerate(FMNIST_CLASSES)])
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


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """BEGIN IMMEDIATE ... COMMIT: takes the write lock up front so read-then-write is safe."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
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
    Label tab's class keys), HTML markup characters (names are shown in web pages), '/'
    and '..' (names become folder names in exports), control characters and Unicode
    direction overrides (what is shown would differ from what is stored).
    """
    for char in name:
        if ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0:
            raise StoreError(f"a class name cannot contain control characters "
                             f"(found U+{ord(char):04X} in {name!r})")
        if "\u202a" <= char <= "\u202e" or "\u2066" <= char <= "\u2069":
            raise StoreError(f"a class name cannot contain Unicode direction overrides (found "
                             f"U+{ord(char):04X} in {name!r}): it would not read as it is stored")
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
    for part in ("/", ".."):
        if part in name:
            raise StoreError(f"a class name cannot contain {part!r} ({name!r}): "
                             "class names become folder names in exports")
    with transaction(db):
        if db.execute("SELECT 1 FROM classes WHERE name = ?", [name]).fetchone():
            raise StoreError(f"class {name!r} already exists")
        next_id = db.execute("SELECT COALESCE(MAX(id), -1) + 1 FROM classes").fetchone()[0]
        db.execute("INSERT INTO classes (id, name, fmnist_index, created_at) VALUES (?, ?, NULL, ?)",
                   [next_id, name, now()])
    return ClassInfo(next_id, name, None)


def resolve_class(db: sqlite_utils.Database, name_or_id: str | int) -> ClassInfo:
    """Accept a class name (case-insensitive) or its numeric id."""
    row = db.execute("SELECT id, name, fmnist_index FROM classes WHERE name = ?",
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


def record_label(db: sqlite_utils.Database, item_id: int, action: str, *,
                 class_id: int | None = None, annotator: str,
                 model_version: str | None = None, predicted_class_id: int | None = None,
                 confidence: float | None = None) -> LabelEvent:
    """Append one decision (confirm / correct / skip / reject) for an item."""
    if action not in DECISIONS:
        raise StoreError(f"unknown action {action!r}; use one of {', '.join(DECISIONS)} (or undo)")
    if action in ("confirm", "correct") and class_id is None:
        raise StoreError(f"{action} needs a class")
    if action in ("skip", "reject"):
        class_id = None
    if not annotator:
        raise StoreError("every label event needs an annotator")
    try:
        cursor = db.execute(
            "INSERT INTO labels (item_id, class_id, action, annotator, model_version, "
            "predicted_class_id, confidence, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [int(item_id), class_id, action, annotator, model_version, predicted_class_id,
             None if confidence is None else float(confidence), now()])
    except sqlite3.IntegrityError as exc:
        raise StoreError(f"cannot label item {item_id}: unknown item or class ({exc})") from exc
    return LabelEvent(int(cursor.lastrowid), int(item_id), action, class_id)


def undo(db: sqlite_utils.Database, *, annotator: str, item_id: int | None = None) -> LabelEvent | None:
    """Revert the newest effective decision (of this item, or else of this annotator).

    Returns the reverted event, or None when there is nothing to undo.
    """
    with transaction(db):
        if item_id is not None:
            row = db.execute("SELECT id, item_id, action, class_id FROM effective_events "
                             "WHERE item_id = ? ORDER BY id DESC LIMIT 1", [int(item_id)]).fetchone()
        else:
            row = db.execute("SELECT id, item_id, action, class_id FROM effective_events "
                             "WHERE annotator = ? ORDER BY id DESC LIMIT 1", [annotator]).fetchone()
        if row is None:
            return None
        db.execute("INSERT INTO labels (item_id, action, annotator, undoes, created_at) "
                   "VALUES (?, 'undo', ?, ?, ?)", [row[1], annotator, row[0], now()])
    return LabelEvent(*row)


def label_state(db: sqlite_utils.Database, split: str | None = None) -> dict[int, tuple[str, int | None]]:
    """item id -> (current action, class id) for every item with an effective decision."""
    sql = "SELECT s.item_id, s.action, s.class_id FROM item_state s"
    params: list = []
    if split is not None:
        sql += " JOIN items i ON i.id = s.item_id WHERE i.split = ?"
        params.append(split)
    return {item: (action, cls) for item, action, cls in db.execute(sql, params).fetchall()}


def labeled_items(db: sqlite_utils.Database, split: str | None = None) -> list[tuple[int, int]]:
    """(item id, class id) of items whose current decision is confirm/correct."""
    return [(item, cls) for item, (action, cls) in label_state(db, split).items()
            if action in ("confirm", "correct")]


def unlabeled_pool(db: sqlite_utils.Database) -> list[int]:
    """Pool items with no effective decision: the candidates for the queue."""
    return unlabeled(db, "pool")


def unlabeled(db: sqlite_utils.Database, split: str) -> list[int]:
    """Items of a split with no effective decision, by id."""
    return [row[0] for row in db.execute(
        "SELECT id FROM items WHERE split = ? AND id NOT IN (SELECT item_id FROM item_state) "
        "ORDER BY id", [split]).fetchall()]


def count_labeled(db: sqlite_utils.Database, split: str) -> int:
    """Items of a split whose current decision is confirm/correct."""
    return db.execute("SELECT COUNT(*) FROM item_state s JOIN items i ON i.id = s.item_id "
                      "WHERE i.split = ? AND s.action IN ('confirm','correct')", [split]).fetchone()[0]


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
    """Counts for `status` and the UI header."""
    names = {c.id: c.name for c in list_classes(db)}
    per_split = dict.fromkeys(SPLITS, 0)
    per_split.update(db.execute("SELECT split, COUNT(*) FROM items GROUP BY split").fetchall())
    rows = db.execute("SELECT i.split, s.action, s.class_id FROM item_state s "
                      "JOIN items i ON i.id = s.item_id").fetchall()
    labeled: dict[str, Counter] = {split: Counter() for split in SPLITS}
    actions: Counter = Counter()
    decided: Counter = Counter()
    for split, action, cls in rows:
        actions[action] += 1
        decided[split] += 1
        if action in ("confirm", "correct"):
            labeled[split][names[cls]] += 1
    return StoreStatus(
        items_per_split=per_split,
        labeled_per_class={split: dict(sorted(c.items())) for split, c in labeled.items()},
        skipped=actions["skip"],
        rejected=actions["reject"],
        unlabeled_pool=per_split["pool"] - decided["pool"],
        holdout_unlabeled=per_split["holdout"] - decided["holdout"],
    )


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
            "INSERT OR REPLACE INTO embeddings (backbone, item_id, vector, created_at) VALUES (?, ?, ?, ?)",
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
