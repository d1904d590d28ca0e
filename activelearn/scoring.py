"""Run a model version over the items: class probabilities + penultimate embeddings, cached.

The cache is one .npz per model version under data/cache/ (item ids, probs,
embeddings), plus an in-process copy, so a re-query after a label costs no
inference at all and newly imported items are the only ones scored. A version
is immutable, so its scores never go stale; a new version gets a new file.
The process keeps the scores and Keras models of the two most recently used
versions (the active one and the last compared), not of every version it saw.

Both model kinds score the same way for the callers: the seed CNN runs over
the 28x28 images and its embeddings are its penultimate layer; a photo model
runs its head over the stored backbone embeddings, which are also what
diversity strategies see. Items the backbone has not embedded yet are not
scored by a photo model (they join once embedded). With `--ray` the CNN's
chunks run on a Ray cluster (`distributed`), with the same chunks and results.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from activelearn import distributed, registry, store
from activelearn.config import Paths

SCORE_BATCH = 2048
#: Versions whose scores and models stay in memory (the active one and the last compared).
KEEP_VERSIONS = 2
_memo: OrderedDict[tuple[Path, str], PoolScores] = OrderedDict()
_models: OrderedDict[tuple[Path, str], object] = OrderedDict()
_lock = threading.Lock()


def _remember(cache: OrderedDict, key: tuple[Path, str], value: object) -> None:
    """Insert as most recent and drop the least recently used beyond KEEP_VERSIONS; holds _lock."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > KEEP_VERSIONS:
        cache.popitem(last=False)


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
        model = _models.get(key)
    if model is None:  # load outside the lock: scoring from the cache goes on meanwhile
        model = registry.load_model(paths.models, version)
    with _lock:
        model = _models.get(key) or model   # another thread may have loaded it meanwhile
        _remember(_models, key, model)
        return model


def score_items(paths: Paths, version: str | None = None, *,
                progress: Callable[[int, int], None] | None = None) -> PoolScores:
    """Scores of every scorable item under `version` (default: active), scoring only new items."""
    version = version or registry.require_active(paths.models)
    key = (paths.home.resolve(), version)
    with _lock:
        cached = _memo.get(key) or _load_cache(cache_path(paths, version), version)
    db = store.open_db(paths.db)
    card = registry.read_card(paths.models, version)
    if registry.model_kind(card) == registry.PHOTO:
        all_ids, backbone_embeddings = store.get_embeddings(db, card["backbone"]["name"])
    else:
        all_ids = store.item_ids(db)
    missing = all_ids if cached is None else np.setdiff1d(all_ids, cached.item_ids, assume_unique=True)
    if len(missing) == 0 and cached is not None:
        with _lock:
            _remember(_memo, key, cached)
        return cached

    ray_address = distributed.ray_address()
    if registry.model_kind(card) == registry.PHOTO:
        # a head over stored embeddings is one small matrix product: local even with --ray
        from activelearn.photo import predict_head
        rows = np.searchsorted(all_ids, missing)
        new = PoolScores(version, missing, predict_head(get_model(paths, version), backbone_embeddings[rows]),
                         backbone_embeddings[rows])
    elif ray_address and len(missing):
        ids, probs, embeddings = distributed.score_pixels(paths, version, missing, progress, address=ray_address)
        new = PoolScores(version, ids, probs, embeddings)
    else:
        new = _score_pixels(db, get_model(paths, version), version, missing, progress)
    merged = new if cached is None else _merge(cached, new)
    _save_cache(cache_path(paths, version), merged)
    with _lock:
        _remember(_memo, key, merged)
    return merged


def _score_pixels(db, model, version: str, item_ids: np.ndarray,
                  progress: Callable[[int, int], None] | None) -> PoolScores:
    """The seed CNN over the items' 28x28 images, batch by batch."""
    from activelearn.model import predict_with_embeddings
    probs, embeddings = [], []
    for start in range(0, len(item_ids), SCORE_BATCH):
        p, e = score_chunk(db, model, item_ids[start:start + SCORE_BATCH])
        probs.append(p)
        embeddings.append(e)
        if progress:
            progress(min(start + SCORE_BATCH, len(item_ids)), len(item_ids))
    if not probs:  # empty database
        p, e = predict_with_embeddings(model, np.zeros((0, 28, 28), np.uint8))
        probs, embeddings = [p], [e]
    return PoolScores(version, item_ids, np.concatenate(probs), np.concatenate(embeddings))


def score_chunk(db, model, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probs, embeddings) of at most SCORE_BATCH items in one forward pass; the unit Ray workers run too."""
    from activelearn.model import predict_with_embeddings
    return predict_with_embeddings(model, store.item_pixels(db, np.asarray(item_ids).tolist()),
                                   batch_size=SCORE_BATCH)


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
