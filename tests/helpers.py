"""Helpers shared by test modules (imported as `tests.helpers`; fixtures live in conftest.py)."""

from __future__ import annotations

import socket

import numpy as np

from activelearn import store


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, for a test server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def add_items(paths, n: int, start: int = 0, split: str = "pool") -> list[int]:
    """n items with random 28x28 pixels (sha256 'sha<k>'); returns their ids."""
    db = store.open_db(paths.db)
    rng = np.random.default_rng(start)
    with store.transaction(db):
        return [store.insert_item(db, sha256=f"{start + i:08x}" + "0" * 56, source="upload",
                                  original_name=f"{i}.png", split=split,
                                  pixels=rng.integers(0, 255, (28, 28), dtype=np.uint8))
                for i in range(n)]


def legacy_class(db, name: str) -> int:
    """Insert a class the way an older activelearn could (no name validation): hostile names in old stores."""
    next_id = db.execute("SELECT COALESCE(MAX(id), -1) + 1 FROM classes").fetchone()[0]
    db.execute("INSERT INTO classes (id, name, fmnist_index, created_at) VALUES (?, ?, NULL, ?)",
               [next_id, name, store.now()])
    return next_id
