"""Architecture: activelearn/store.py is the one module that holds SQL and talks to sqlite.

A later PostgreSQL backend should change one file. Outside store.py no string
constant may read as SQL and no code may call `.execute` / `.executemany` /
`.executescript`; docstrings and comments that merely mention a word are fine.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "activelearn"
STORE = PACKAGE / "store.py"
STORE_MODULES = {STORE, PACKAGE / "store_pg.py"}   # the store and its PostgreSQL dialect
#: Case-sensitive, as this code base writes SQL; "SELECT" as a bare word (an HTML tag name) is not SQL.
SQL = re.compile(r"\b(SELECT\s|INSERT (OR \w+ )?INTO\b|UPDATE \w+ SET\b|DELETE FROM\b|"
                 r"CREATE (UNIQUE )?(TABLE|INDEX|VIEW|TRIGGER)\b|DROP (TABLE|INDEX|VIEW|TRIGGER)\b|"
                 r"ALTER TABLE\b|SAVEPOINT\b|ROLLBACK\b|RELEASE \w+|BEGIN( IMMEDIATE| EXCLUSIVE)?$|PRAGMA\s)")
DRIVER_CALLS = {"execute", "executemany", "executescript"}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the Constant nodes that are module, class or function docstrings."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                found.add(id(body[0].value))
    return found


def sql_outside_store(source: str, name: str) -> list[str]:
    """'file:line: why' for every SQL string constant and driver call in one module's source."""
    tree = ast.parse(source, name)
    docstrings = _docstrings(tree)
    problems: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                and (match := SQL.search(node.value))):
            problems.append((node.lineno, f"SQL in a string ({match.group(0).strip()!r}...)"))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in DRIVER_CALLS):
            problems.append((node.lineno, f"calls .{node.func.attr}(): only store.py talks to sqlite"))
    return [f"{name}:{line}: {why}" for line, why in sorted(problems)]


def test_no_sql_outside_store():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path not in STORE_MODULES:
            problems += sql_outside_store(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent)))
    assert not problems, "SQL belongs in activelearn/store.py:\n" + "\n".join(problems)


@pytest.mark.parametrize("snippet", [
    'db.execute("SELECT id FROM items")',
    'rows = conn.executemany("INSERT INTO jobs (kind) VALUES (?)", [])',
    'q = f"UPDATE jobs SET {sets} WHERE id = ?"',
    'q = "DELETE FROM leases"',
    'q = "SAVEPOINT import_item"',
    'q = "ROLLBACK TO import_item"',
    'q = "RELEASE import_item"',
    'q = """\n    CREATE TABLE t (id INTEGER)\n"""',
])
def test_the_check_catches_sql(snippet):
    assert sql_outside_store(snippet, "m.py"), snippet


@pytest.mark.parametrize("snippet", [
    '"""Module docstring: SELECT ... FROM items is how the store reads."""',
    'def f():\n    """Why: an UPDATE jobs SET ... here would race."""\n    return 1',
    '# SELECT id FROM items\nx = 1',
    'js = \'["TEXTAREA", "SELECT"].includes(el.tagName)\'',
    'msg = "select a class, then release the lease"',
])
def test_the_check_leaves_prose_alone(snippet):
    assert sql_outside_store(snippet, "m.py") == []


def test_every_table_the_store_names_is_created_by_a_numbered_migration(tmp_path):
    """A table made outside the migrations would make schema_version lie about what a database holds."""
    from activelearn import store

    db = store.open_db(tmp_path / "labels.db")
    created = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                                            "AND name NOT LIKE 'sqlite_%'")}
    migrated = set()
    for script in store._MIGRATIONS.values():
        migrated |= set(re.findall(r"CREATE (?:TABLE|VIEW) (?:IF NOT EXISTS )?(\w+)", script))
    named = set()
    for node in ast.walk(ast.parse(STORE.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            named |= set(re.findall(r"\b(?:FROM|JOIN|INTO|UPDATE) ([a-z_]\w*)", node.value))  # names: lower case
    named -= {"json_each", "sqlite_master"}
    assert {"label_issues", "label_issue_scans", "jobs", "leases", "item_state"} <= named
    assert named <= migrated, f"named in store.py but created by no migration: {sorted(named - migrated)}"
    assert created == migrated
