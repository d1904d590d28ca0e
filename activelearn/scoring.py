"""Run a model version over the items: class probabilities + penultimate embeddings, cached.

The cache is one .npz per model version under data/cache/ (item ids, probs,
embeddings), plus an in-process copy, so a re-query after a label costs no
inference at all and newly imported items are the only ones scored. A version
is immutable, so its scores never go stale; a new version gets a new file.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from activelearn import registry, store
from activelearn.config import Paths

SCORE_BATCH = 2048
_memo: dict[tuple[Path, str], PoolScores] = {}
_models: dict[tuple[Path, str], object] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class PoolScores:
    """Scores of one model version; rows sorted by item id."""

    version: str
    item_ids: np.ndarray      # (n,) int64, ascending
    probs: np.ndarray         # (n, classes) float32
    embeddings: np.ndarray    # (n, d) float32

    def rows(self, item_ids: np.ndarray | list[int]) -> np.ndarray:
        """Row positions of the given item ids (all must be scored)."""
        ids = np.asarray(item_ids, dtype=np.int64)
        pos = np.searchsorted(self.item_ids, ids)
        if len(ids) and (pos.max(initial=0) >= len(self.item_ids) or not np.all(self.item_ids[pos] == ids)):
            raise KeyError("some items are not scored yet")
        return pos


def cache_path(paths: Paths, version: str) -> Path:
    return paths.cache / f"scores-{version}.npz"


def get_model(paths: Paths, version: str):
    """Load a version once per process (loading costs ~1 s, a forward pass milliseconds)."""
    key = (paths.models.resolve(), version)
    with _lock:
        if key not in _models:
            _models[key] = registry.load_model(paths.models, version)
        return _models[key]


def score_items(paths: Paths, version: str | None = None, *,
                progress: Callable[[int, int], None] | None = None) -> PoolScores:
    """Scores of every item in labels.db under `version` (default: active), scoring only new items."""
    version = version or registry.require_active(paths.models)
    key = (paths.home.resolve(), version)
    with _lock:
        cached = _memo.get(key) or _load_cache(cache_path(paths, version), version)
    db = store.open_db(paths.db)
    all_ids = np.array([r[0] for r in db.execute("SELECT id FROM items ORDER BY id").fetchall()], np.int64)
    if cached is not None:
        missing = np.setdiff1d(all_ids, cached.item_ids, assume_unique=True)
    else:
        missing = all_ids
    if len(missing) == 0 and cached is not None:
        with _lock:
            _memo[key] = cached
        return cached

    from activelearn.model import predict_with_embeddings
    model = get_model(paths, version)
    probs, embeddings = [], []
    for start in range(0, len(missing), SCORE_BATCH):
        chunk = missing[start:start + SCORE_BATCH]
        p, e = predict_with_embeddings(model, store.item_pixels(db, chunk.tolist()), batch_size=SCORE_BATCH)
        probs.append(p)
        embeddings.append(e)
        if progress:
            progress(min(start + SCORE_BATCH, len(missing)), len(missing))
    if not probs:  # empty database
        p, e = predict_with_embeddings(model, np.zeros((0, 28, 28), np.uint8))
        probs, embeddings = [p], [e]
    new = PoolScores(version, missing, np.concatenate(probs), np.concatenate(embeddings))
    merged = new if cached is None else _merge(cached, new)
    _save_cache(cache_path(paths, version), merged)
    with _lock:
        _memo[key] = merged
    return merged


def _merge(a: PoolScores, b: PoolScores) -> PoolScores:
    ids = np.concatenate([a.item_ids, b.item_ids])
    order = np.argsort(ids, kind="stable")
    return PoolScores(a.version, ids[order], np.concatenate([a.probs, b.probs])[order],
                      np.concatenate([a.embeddings, b.embeddings])[order])


def _load_cache(path: Path, version: str) -> PoolScores | None:
    if not path.exists():
        return None
    try:
        with np.load(path) as f:
            return PoolScores(version, f["item_ids"], f["probs"], f["embeddings"])
    except (OSError, ValueError, KeyError):
        return None  # a damaged cache is only a cache: rescore


def _save_cache(path: Path, scores: PoolScores) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.npz")
    np.savez(tmp, item_ids=scores.item_ids, probs=scores.probs, embeddings=scores.embeddings)
    os.replace(tmp, path)
