"""The store's PostgreSQL backend: `--db postgresql://...` for several app servers on one database.

Why psycopg 3 with a thin dialect layer rather than SQLAlchemy Core: store.py's statements
are plain SQL that both engines run once a handful of SQLite spellings are rewritten here
(`?` placeholders, `json_each(?)` over an id list, LIKE's case, `lastrowid`). With SQLAlchemy
Core every statement would be rewritten as expression objects and a second dependency
stack would sit under the one backend that needs none; psycopg is the driver either way.
Where the engines differ in kind (identity columns, bytea, plpgsql triggers, the schema
version) this module holds the PostgreSQL text of each numbered migration.

Semantics kept from SQLite:
* one writer at a time: `store.transaction` takes a transaction-scoped advisory lock, so a
  read-then-write (choose items, lease them; the next class id) is as safe as under SQLite's
  `BEGIN IMMEDIATE`, across every app server and worker on the database;
* leases stay exclusive: the lease upsert only overwrites an expired or own lease, and
  PostgreSQL row-locks the conflicting row while it decides;
* the label events are append-only (triggers refuse UPDATE, DELETE and TRUNCATE), and
  `item_state` / `undecided_items` are kept by triggers in the event's transaction.

Connections are per thread and per URL (Gradio handlers run in a bounded thread pool), in
autocommit mode outside `store.transaction`. psycopg is imported only when a PostgreSQL URL is used.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from activelearn.errors import StoreError

URL_PREFIXES = ("postgresql://", "postgres://")
#: Tables with an identity `id`: an INSERT into one returns it, as sqlite's lastrowid does.
_ID_TABLES = ("items", "labels", "jobs", "label_issue_scans", "label_issues")
#: The advisory lock every write transaction takes (any constant; the same in every process).
WRITE_LOCK_KEY = 0x61637469   # "acti"


def is_url(path: Any) -> bool:
    return str(path).startswith(URL_PREFIXES)


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


class PgIntegrityError(sqlite3.IntegrityError):
    """A PostgreSQL constraint or append-only violation, raised as the sqlite error the store handles."""


# ---------------------------------------------------------------- dialect

_JSON_EACH = re.compile(r"json_each\(\?\)")
_INSERT_ID = re.compile(rf"^\s*INSERT INTO ({'|'.join(_ID_TABLES)})\b", re.IGNORECASE)


@lru_cache(maxsize=1024)
def translate(sql: str, with_params: bool) -> str:
    """store.py's SQLite spelling of a statement -> PostgreSQL's (cached: the statements are constants)."""
    if with_params:
        sql = sql.replace("%", "%%")
    sql = _JSON_EACH.sub("(SELECT CAST(value AS BIGINT) AS value FROM json_array_elements_text(CAST(? AS json))) AS j",
                         sql)
    sql = sql.replace("?", "%s").replace(" LIKE ", " ILIKE ")
    if _INSERT_ID.match(sql) and "RETURNING" not in sql.upper() and " SELECT " not in sql:
        sql += " RETURNING id"
    return sql


class PgCursor:
    """The slice of sqlite3.Cursor that store.py reads: rows, rowcount, description and lastrowid."""

    def __init__(self, cursor: Any, returns_id: bool):
        self._cursor = cursor
        self.lastrowid = cursor.fetchone()[0] if returns_id else None
        self.rowcount = cursor.rowcount
        self.description = cursor.description

    def fetchone(self) -> tuple | None:
        return self._cursor.fetchone() if self._cursor.description is not None else None

    def fetchall(self) -> list[tuple]:
        return self._cursor.fetchall() if self._cursor.description is not None else []

    def __iter__(self):
        return iter(self.fetchall())


class PgConnection:
    """A psycopg connection that takes store.py's SQL and raises the store's errors."""

    def __init__(self, url: str):
        self.url = url
        self.path = safe_url(url)   # what messages name, as sqlite's connection names its file
        self._raw = _connect(url)

    @property
    def in_transaction(self) -> bool:
        import psycopg
        return self._raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def execute(self, sql: str, parameters: Any = ()) -> PgCursor:
        params = list(parameters) if parameters else None
        statement = translate(sql, params is not None)
        return PgCursor(self._run(lambda cur: cur.execute(statement, params)),
                        statement.endswith(" RETURNING id"))

    def executemany(self, sql: str, parameters: Any) -> PgCursor:
        rows = [list(row) for row in parameters]
        statement = translate(sql, True).removesuffix(" RETURNING id")
        cursor = self._run(lambda cur: cur.executemany(statement, rows) if rows else None)
        return PgCursor(cursor, False)

    def executescript(self, script: str) -> None:
        self._run(lambda cur: cur.execute(script))

    def _run(self, action) -> Any:
        import psycopg
        cursor = self._raw.cursor()
        try:
            action(cursor)
        except psycopg.errors.IntegrityError as exc:
            raise PgIntegrityError(str(exc).splitlines()[0]) from exc
        except psycopg.errors.LockNotAvailable as exc:
            from activelearn.store import BUSY_TIMEOUT_MS, StoreBusy
            raise StoreBusy(f"the database is busy: another process has held its write lock for over "
                            f"{BUSY_TIMEOUT_MS / 1000:g} s, so nothing was recorded; try again in a moment") from exc
        except psycopg.OperationalError as exc:
            raise StoreError(f"cannot use the PostgreSQL database {self.path}: "
                             f"{str(exc).strip().splitlines()[0]}") from exc
        return cursor


class PgDatabase:
    """What store.py uses of sqlite_utils.Database: execute, and the connection as `.conn`."""

    def __init__(self, url: str):
        self.conn = PgConnection(url)

    def execute(self, sql: str, parameters: Any = ()) -> PgCursor:
        return self.conn.execute(sql, parameters)


_local = threading.local()


def _connect(url: str) -> Any:
    """This thread's connection to `url` (made on first use, remade if it broke).

    Every store handle a thread opens shares it, so a read through a second handle inside
    `store.transaction` sees that transaction's writes (SQLite would read through a second
    connection; the store never writes through one while another holds the write lock).
    """
    import psycopg
    _register_numpy()
    connections = _local.__dict__.setdefault("connections", {})
    raw = connections.get(url)
    if raw is None or raw.closed or raw.broken:
        try:
            raw = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the PostgreSQL database {safe_url(url)}: "
                             f"{str(exc).strip().splitlines()[0]}") from exc
        connections[url] = raw
    return raw


@lru_cache(maxsize=1)
def _register_numpy() -> None:
    """numpy scalars as parameters (ids, confidences from model outputs), as sqlite3 accepts them."""
    import numpy as np
    import psycopg
    from psycopg.types.numeric import FloatDumper, IntDumper
    for kind in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32):
        psycopg.adapters.register_dumper(kind, IntDumper)
    for kind in (np.float16, np.float32, np.float64):
        psycopg.adapters.register_dumper(kind, FloatDumper)


# ---------------------------------------------------------------- schema

def schema_version(db: PgDatabase) -> int:
    if db.execute("SELECT to_regclass('activelearn_schema')").fetchone()[0] is None:
        return 0
    return db.execute("SELECT COALESCE(MAX(version), 0) FROM activelearn_schema").fetchone()[0]


def begin_write(db: PgDatabase, timeout_ms: int) -> None:
    """BEGIN and take the store's write lock: writers queue as under SQLite, across servers."""
    db.execute("BEGIN")
    db.execute(f"SET LOCAL lock_timeout = {int(timeout_ms)}")
    db.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")


def apply_migration(db: PgDatabase, target: int) -> None:
    """Run one numbered migration's PostgreSQL text and record it (the caller holds the transaction)."""
    db.conn.executescript(MIGRATIONS[target])
    db.execute("INSERT INTO activelearn_schema (version) VALUES (?)", [target])


_APPEND_ONLY = """
CREATE FUNCTION labels_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'labels are append-only' USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER labels_no_update BEFORE UPDATE OR DELETE ON labels
    FOR EACH ROW EXECUTE FUNCTION labels_append_only();
CREATE TRIGGER labels_no_truncate BEFORE TRUNCATE ON labels
    FOR EACH STATEMENT EXECUTE FUNCTION labels_append_only();
"""

_EFFECTIVE_EVENTS = """
CREATE OR REPLACE VIEW effective_events AS
    SELECT * FROM labels l
    WHERE l.action != 'undo' AND NOT EXISTS (SELECT 1 FROM labels u WHERE u.undoes = l.id);
"""

#: The PostgreSQL text of store._MIGRATIONS, version for version (the same tables, columns and rules).
MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE activelearn_schema (version INTEGER PRIMARY KEY);
    CREATE TABLE classes (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        fmnist_index INTEGER,
        created_at TEXT NOT NULL
    );
    CREATE UNIQUE INDEX classes_name ON classes (lower(name));
    CREATE TABLE items (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        source TEXT NOT NULL CHECK (source IN ('folder','archive','upload','url','fmnist')),
        original_name TEXT NOT NULL,
        stored_path TEXT,
        width INTEGER, height INTEGER, format TEXT,
        split TEXT NOT NULL DEFAULT 'pool' CHECK (split IN ('pool','holdout')),
        pixels BYTEA NOT NULL CHECK (octet_length(pixels) = 784),
        dhash BIGINT,
        near_dup_of BIGINT REFERENCES items(id),
        flags TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL
    );
    CREATE INDEX items_split ON items(split);
    CREATE TABLE labels (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        item_id BIGINT NOT NULL REFERENCES items(id),
        class_id INTEGER REFERENCES classes(id),
        action TEXT NOT NULL CHECK (action IN ('confirm','correct','skip','reject','undo')),
        annotator TEXT NOT NULL,
        model_version TEXT,
        predicted_class_id INTEGER,
        confidence DOUBLE PRECISION,
        undoes BIGINT REFERENCES labels(id),
        created_at TEXT NOT NULL,
        CHECK ((action IN ('confirm','correct')) = (class_id IS NOT NULL)),
        CHECK ((action = 'undo') = (undoes IS NOT NULL))
    );
    CREATE INDEX labels_item ON labels(item_id, id);
    CREATE INDEX labels_undoes ON labels(undoes);
    CREATE INDEX labels_annotator ON labels(annotator, id);
    """ + _APPEND_ONLY + _EFFECTIVE_EVENTS + """
    CREATE TABLE jobs (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        kind TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('queued','running','succeeded','failed','cancelled')),
        params TEXT NOT NULL DEFAULT '{}',
        pid INTEGER,
        phase TEXT, epoch INTEGER, epochs INTEGER, batch INTEGER, batches INTEGER,
        loss DOUBLE PRECISION, accuracy DOUBLE PRECISION, eta_s DOUBLE PRECISION,
        history TEXT NOT NULL DEFAULT '[]',
        message TEXT,
        version TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, heartbeat_at TEXT
    );
    CREATE UNIQUE INDEX jobs_one_active ON jobs(kind) WHERE status IN ('queued','running');
    CREATE TABLE leases (
        item_id BIGINT PRIMARY KEY REFERENCES items(id),
        annotator TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    );
    """,
    2: """
    CREATE TABLE embeddings (
        backbone TEXT NOT NULL,
        item_id BIGINT NOT NULL REFERENCES items(id),
        vector BYTEA NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (backbone, item_id)
    );
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE label_issue_scans (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        created_at TEXT NOT NULL,
        settings TEXT NOT NULL,
        labeled INTEGER NOT NULL,
        flagged INTEGER NOT NULL
    );
    CREATE TABLE label_issues (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        scan_id BIGINT NOT NULL REFERENCES label_issue_scans(id),
        item_id BIGINT NOT NULL REFERENCES items(id),
        kind TEXT NOT NULL CHECK (kind IN ('confident-learning', 'near-duplicate-conflict')),
        given_class_id INTEGER NOT NULL,
        suggested_class_id INTEGER NOT NULL,
        self_confidence DOUBLE PRECISION,
        other_item_id BIGINT REFERENCES items(id),
        event_id BIGINT NOT NULL REFERENCES labels(id),
        resolved_event_id BIGINT REFERENCES labels(id)
    );
    CREATE INDEX label_issues_item ON label_issues(item_id);
    """,
    3: """
    CREATE TABLE item_state (
        item_id BIGINT PRIMARY KEY REFERENCES items(id),
        split TEXT NOT NULL,
        action TEXT NOT NULL,
        class_id INTEGER,
        annotator TEXT NOT NULL,
        created_at TEXT NOT NULL,
        event_id BIGINT NOT NULL REFERENCES labels(id)
    );
    CREATE TABLE undecided_items (
        item_id BIGINT PRIMARY KEY REFERENCES items(id),
        split TEXT NOT NULL
    );
    INSERT INTO undecided_items (item_id, split) SELECT id, split FROM items;
    CREATE INDEX undecided_split ON undecided_items(split, item_id);
    CREATE INDEX item_state_counts ON item_state(split, action, class_id);
    CREATE INDEX item_state_class ON item_state(class_id, item_id);
    CREATE INDEX item_state_annotator ON item_state(annotator, item_id);
    CREATE FUNCTION labels_keep_state() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.action != 'undo' THEN
            INSERT INTO item_state (item_id, split, action, class_id, annotator, created_at, event_id)
                SELECT NEW.item_id, split, NEW.action, NEW.class_id, NEW.annotator, NEW.created_at, NEW.id
                FROM items WHERE id = NEW.item_id
            ON CONFLICT (item_id) DO UPDATE SET split = EXCLUDED.split, action = EXCLUDED.action,
                class_id = EXCLUDED.class_id, annotator = EXCLUDED.annotator,
                created_at = EXCLUDED.created_at, event_id = EXCLUDED.event_id;
            DELETE FROM undecided_items WHERE item_id = NEW.item_id;
        ELSE
            DELETE FROM item_state WHERE item_id = NEW.item_id;
            INSERT INTO item_state (item_id, split, action, class_id, annotator, created_at, event_id)
                SELECT e.item_id, i.split, e.action, e.class_id, e.annotator, e.created_at, e.id
                FROM labels e JOIN items i ON i.id = e.item_id
                WHERE e.item_id = NEW.item_id AND e.action != 'undo'
                  AND NOT EXISTS (SELECT 1 FROM labels u WHERE u.undoes = e.id)
                ORDER BY e.id DESC LIMIT 1;
            INSERT INTO undecided_items (item_id, split)
                SELECT id, split FROM items
                WHERE id = NEW.item_id AND NOT EXISTS (SELECT 1 FROM item_state WHERE item_id = NEW.item_id)
            ON CONFLICT DO NOTHING;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER labels_state AFTER INSERT ON labels FOR EACH ROW EXECUTE FUNCTION labels_keep_state();
    CREATE FUNCTION items_keep_state() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO undecided_items (item_id, split) VALUES (NEW.id, NEW.split);
        ELSIF NEW.split IS DISTINCT FROM OLD.split THEN
            UPDATE item_state SET split = NEW.split WHERE item_id = NEW.id;
            UPDATE undecided_items SET split = NEW.split WHERE item_id = NEW.id;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER items_state AFTER INSERT OR UPDATE OF split ON items
        FOR EACH ROW EXECUTE FUNCTION items_keep_state();
    ALTER TABLE labels ADD COLUMN request_id TEXT;
    CREATE UNIQUE INDEX labels_request ON labels(request_id) WHERE request_id IS NOT NULL;
    CREATE INDEX labels_created ON labels(created_at);
    CREATE INDEX items_near_dup ON items(near_dup_of) WHERE near_dup_of IS NOT NULL;
    CREATE INDEX embeddings_backbone ON embeddings(backbone);
    """ + _EFFECTIVE_EVENTS,
    4: """
    ALTER TABLE labels ADD COLUMN via TEXT;
    """ + _EFFECTIVE_EVENTS,
}
