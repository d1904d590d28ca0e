"""The labeling queue: which items an annotator sees next, and recording what they decide.

Queue = unlabeled pool items (never holdout, never already decided), ranked by
a query strategy over the active model's cached scores, minus items leased to
someone else. Items handed out are leased to that annotator for LEASE_S
seconds, so several annotators working at once get different items. Both the
UI and the CLI call these functions.
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
    leased = [r[0] for r in db.execute(
        "SELECT item_id FROM leases WHERE expires_at > ? AND annotator != ?",
        [time.time(), annotator or ""]).fetchall()]
    leased = np.array(leased, dtype=np.int64)
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
               seed: int | None = None, take_lease: bool = True) -> list[QueueEntry]:
    """The next n items for this annotator, leased to them (unless take_lease is False)."""
    scores = scoring.score_items(paths)
    db = store.open_db(paths.db)
    names = store.class_names(db)
    mask = _eligible(db, scores, annotator)
    if class_filter is not None:
        mask &= scores.probs.argmax(1) == class_filter
    if not mask.any():
        return []
    picked = query.select_batch(scores.probs, n, strategy, embeddings=scores.embeddings,
                                eligible=mask, audit_fraction=audit_fraction,
                                seed=seed if seed is not None else int(time.time() * 1000) % 2**31)
    entries = [_entry(scores, it.index, names, score=it.score, strategy=it.strategy,
                      is_audit=it.is_audit) for it in picked]
    if take_lease:
        lease(db, [e.item_id for e in entries], annotator)
    return entries


def grid_page(paths: Paths, *, annotator: str, class_id: int, n: int = 18) -> list[QueueEntry]:
    """Unlabeled items the model puts in one class, most confident first (the fast confirm path)."""
    scores = scoring.score_items(paths)
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
