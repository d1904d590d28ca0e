"""The labeling queue: which items an annotator sees next, and recording what they decide.

Queue = unlabeled pool items (never already decided), ranked by a query
strategy over the active model's cached scores, minus items leased to someone
else. Items handed out are leased to that annotator for LEASE_S seconds, so
several annotators working at once get different items. Both the UI and the
CLI call these functions.

Two things keep the loop honest and useful from the first label:

* **The holdout gets labeled**: a steady share of each batch (HOLDOUT_SHARE) is
  drawn at random from unlabeled holdout items, never by uncertainty, and shown
  like the random audit slice, until every class has HOLDOUT_TARGET labeled
  holdout items. Without it, in-domain metrics and the activation rule have
  nothing to stand on.
* **Diverse cold start**: while no photo model exists but the backbone has
  embedded the photos, the queue picks k-center over the backbone embeddings,
  so the first labels cover the pool instead of one class the seed CNN likes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from activelearn import query, scoring, store
from activelearn.config import Paths
from activelearn.errors import ActiveLearnError
from activelearn.store import LabelEvent

LEASE_S = 300.0
#: Share of each batch served from the unlabeled holdout, and the labels per class that end it.
HOLDOUT_SHARE = 0.1
HOLDOUT_TARGET = 30
COLD_START = "diverse (cold start)"


@dataclass(frozen=True)
class QueueEntry:
    """One item to show: why it was picked and what the model thinks."""

    item_id: int
    score: float
    strategy: str
    is_audit: bool
    top3: tuple[tuple[str, float], ...]
    predicted_class_id: int
    confidence: float
    model_version: str

    def as_dict(self) -> dict:
        return {"item_id": self.item_id, "score": self.score, "strategy": self.strategy,
                "is_audit": self.is_audit, "top3": [list(t) for t in self.top3],
                "predicted_class_id": self.predicted_class_id, "confidence": self.confidence,
                "model_version": self.model_version}


def _eligible(db, scores: scoring.PoolScores, annotator: str | None) -> np.ndarray:
    """Mask over score rows: unlabeled pool items not leased to another annotator."""
    pool = np.array(store.unlabeled_pool(db), dtype=np.int64)
    mask = np.zeros(len(scores.item_ids), bool)
    pool = pool[np.isin(pool, scores.item_ids)]
    mask[scores.rows(pool)] = True
    leased = _leased_to_others(db, annotator)
    leased = leased[np.isin(leased, scores.item_ids)]
    mask[scores.rows(leased)] = False
    return mask


def _entry(scores: scoring.PoolScores, row: int, names: list[str], *, score: float,
           strategy: str, is_audit: bool) -> QueueEntry:
    p = scores.probs[row]
    top = np.argsort(-p, kind="stable")[:3]
    return QueueEntry(int(scores.item_ids[row]), float(score), strategy, is_audit,
                      tuple((names[i], float(p[i])) for i in top), int(top[0]), float(p[top[0]]),
                      scores.version)


def next_items(paths: Paths, *, annotator: str, n: int = 10, strategy: str = "margin",
               class_filter: int | None = None, audit_fraction: float = 0.1,
               seed: int | None = None, take_lease: bool = True,
               holdout_share: float = HOLDOUT_SHARE) -> list[QueueEntry]:
    """The next n items for this annotator, leased to them (unless take_lease is False)."""
    scores = scoring.score_items(paths)
    db = store.open_db(paths.db)
    names = store.class_names(db)
    rng = np.random.default_rng(seed if seed is not None else int(time.time() * 1000) % 2**31)
    cold = _cold_start(paths, db, scores)
    if cold is not None:
        scores, strategy = cold, "diverse"
    holdout_rows = _holdout_rows(db, scores, annotator, _share_of(n, holdout_share, rng), rng)
    mask = _eligible(db, scores, annotator)
    if class_filter is not None:
        mask &= scores.probs.argmax(1) == class_filter
    picked = []
    if mask.any() and n > len(holdout_rows):
        picked = query.select_batch(scores.probs, n - len(holdout_rows), strategy, embeddings=scores.embeddings,
                                    eligible=mask, audit_fraction=audit_fraction,
                                    seed=int(rng.integers(2**31)))
    entries = [_entry(scores, it.index, names, score=it.score,
                      strategy=COLD_START if cold is not None and not it.is_audit else it.strategy,
                      is_audit=it.is_audit) for it in picked]
    for row in holdout_rows:   # shown like the random audit slice: the annotator cannot tell them apart
        entries.insert(int(rng.integers(len(entries) + 1)),
                       _entry(scores, row, names, score=float("nan"), strategy="random", is_audit=True))
    if take_lease:
        lease(db, [e.item_id for e in entries], annotator)
    return entries


def _share_of(n: int, share: float, rng: np.random.Generator) -> int:
    """share * n rounded at random, so one-item batches still carry the share on average."""
    whole, fraction = divmod(n * share, 1.0)
    return int(whole) + int(rng.random() < fraction)


def _holdout_rows(db, scores: scoring.PoolScores, annotator: str, k: int, rng: np.random.Generator) -> list[int]:
    """Score rows of k random unlabeled holdout items, from classes (as predicted) still short of the target.

    A class the active version does not know (added since) cannot be predicted: while one of those is
    short, any unlabeled holdout item may be drawn.
    """
    if k <= 0:
        return []
    known = scores.probs.shape[1]
    counts = np.bincount([c for _, c in store.labeled_holdout(db)], minlength=len(store.class_names(db)))
    short = counts < HOLDOUT_TARGET
    if not short.any():
        return []
    candidates = np.array(store.unlabeled(db, "holdout"), np.int64)
    candidates = candidates[np.isin(candidates, scores.item_ids)]
    candidates = candidates[~np.isin(candidates, _leased_to_others(db, annotator))]
    rows = scores.rows(candidates)
    if not short[known:].any():
        rows = rows[short[:known][scores.probs[rows].argmax(1)]]
    return [int(r) for r in rng.choice(rows, min(k, len(rows)), replace=False)] if len(rows) else []


def _cold_start(paths: Paths, db, scores: scoring.PoolScores) -> scoring.PoolScores | None:
    """The active CNN's scores over the embedded items, with backbone embeddings, while no photo model exists."""
    from activelearn.autotrain import newest_photo_version
    from activelearn.backbones import DEFAULT_BACKBONE
    if newest_photo_version(paths)[0] is not None or not store.has_embeddings(db, DEFAULT_BACKBONE):
        return None
    ids, vectors = store.get_embeddings(db, DEFAULT_BACKBONE)
    keep = np.isin(ids, scores.item_ids)
    ids, vectors = ids[keep], vectors[keep]
    rows = scores.rows(ids)
    return scoring.PoolScores(scores.version, ids, scores.probs[rows], vectors)


def _leased_to_others(db, annotator: str | None) -> np.ndarray:
    return np.array([r[0] for r in db.execute(
        "SELECT item_id FROM leases WHERE expires_at > ? AND annotator != ?",
        [time.time(), annotator or ""]).fetchall()], dtype=np.int64)


def grid_page(paths: Paths, *, annotator: str, class_id: int, n: int = 18) -> list[QueueEntry]:
    """Unlabeled items the model puts in one class, most confident first (the fast confirm path)."""
    scores = scoring.score_items(paths)
    if class_id >= scores.probs.shape[1]:   # a class added after the active version: it predicts none
        return []
    db = store.open_db(paths.db)
    names = store.class_names(db)
    mask = _eligible(db, scores, annotator) & (scores.probs.argmax(1) == class_id)
    rows = np.flatnonzero(mask)
    rows = rows[np.argsort(-scores.probs[rows, class_id], kind="stable")[:n]]
    entries = [_entry(scores, r, names, score=float(scores.probs[r, class_id]), strategy="grid",
                      is_audit=False) for r in rows]
    lease(db, [e.item_id for e in entries], annotator)
    return entries


def lease(db, item_ids: list[int], annotator: str, seconds: float = LEASE_S) -> None:
    if not item_ids:
        return
    expires = time.time() + seconds
    db.conn.executemany(
        "INSERT INTO leases (item_id, annotator, expires_at) VALUES (?, ?, ?) "
        "ON CONFLICT(item_id) DO UPDATE SET annotator = excluded.annotator, expires_at = excluded.expires_at",
        [(i, annotator, expires) for i in item_ids])


def decide(paths: Paths, *, annotator: str, item_id: int, action: str,
           class_id: int | None = None, entry: QueueEntry | None = None) -> LabelEvent:
    """Record one decision with the model's view at that moment, and release the lease.

    "confirm" without a class takes the model's top class; a class that differs
    from the prediction is recorded as a "correct".
    """
    db = store.open_db(paths.db)
    predicted = entry.predicted_class_id if entry else None
    if action == "confirm" and class_id is None:
        if predicted is None:
            entry = lookup(paths, item_id)
            predicted = entry.predicted_class_id if entry else None
        class_id = predicted
    if action in ("confirm", "correct") and predicted is not None and class_id is not None:
        action = "confirm" if class_id == predicted else "correct"
    event = store.record_label(
        db, item_id, action, class_id=class_id, annotator=annotator,
        model_version=entry.model_version if entry else None, predicted_class_id=predicted,
        confidence=entry.confidence if entry else None)
    db.execute("DELETE FROM leases WHERE item_id = ?", [item_id])
    if action in ("confirm", "correct"):
        from activelearn.autotrain import maybe_retrain
        maybe_retrain(paths, db)
    return event


def lookup(paths: Paths, item_id: int) -> QueueEntry | None:
    """The active model's view of one item (for decisions made without a queue entry)."""
    try:
        scores = scoring.score_items(paths)
        row = int(scores.rows([item_id])[0])
    except (KeyError, ActiveLearnError):  # no model or unscored: record without prediction
        return None
    names = store.class_names(store.open_db(paths.db))
    return _entry(scores, row, names, score=float("nan"), strategy="direct", is_audit=False)


def confirm_page(paths: Paths, *, annotator: str, entries: list[QueueEntry],
                 ticked: set[int]) -> tuple[list[LabelEvent], list[QueueEntry]]:
    """Grid mode: confirm the ticked items as their predicted class in one action.

    Returns the events written and the unticked entries, which the annotator corrects next.
    """
    events = [decide(paths, annotator=annotator, item_id=e.item_id, action="confirm",
                     class_id=e.predicted_class_id, entry=e) for e in entries if e.item_id in ticked]
    return events, [e for e in entries if e.item_id not in ticked]
