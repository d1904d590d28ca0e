"""The labeling queue: which items an annotator sees next, and recording what they decide.

Queue = unlabeled pool items (never already decided), ranked by a query
strategy over the active model's cached scores, minus items leased to someone
else. Items handed out are leased to that annotator for LEASE_S seconds, so
several annotators working at once get different items. Both the UI and the
CLI call these functions.

Serving is atomic: the eligibility read, the pick and the lease write are one
`BEGIN IMMEDIATE` transaction, a colleague's live lease is never taken over,
and only what was leased is returned, so two annotators fetching at the same
moment never share an item. A decision is refused (`store.DecisionConflict`)
when the item is leased to someone else or was decided by someone else since
it was served; each served entry carries a serve id, and its decision is
stored under a request id derived from it, so a retried request stores nothing twice.

Four things keep the loop honest and useful from the first label:

* **No model yet**: the queue serves unlabeled items in random order (holdout
  share and leases honoured), so annotators label from minute one; the
  uncertainty queue takes over as soon as a model is active.
* **The holdout gets labeled**: a steady share of each batch (HOLDOUT_SHARE) is
  drawn at random from unlabeled holdout items, never by uncertainty, and shown
  like the random audit slice, until every class has HOLDOUT_TARGET labeled
  holdout items. Without it, in-domain metrics and the activation rule have
  nothing to stand on.
* **Overlap for agreement** (off until a lead sets it): a random share of the
  items people decide (a fixed coin per item, never by uncertainty) goes back
  into other annotators' queues until k different people voted on it; nobody
  gets the same item twice. These are served first and look like any other item.
* **Diverse cold start**: while no photo model exists but the backbone has
  embedded the photos, the queue picks k-center over the backbone embeddings,
  so the first labels cover the pool instead of one class the seed CNN likes.

Each public function takes either the home's `Paths` or a `Workspace`: the
connection, active version and scores a request opens once and passes along.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import sqlite_utils

from activelearn import agreement, query, registry, scoring, store
from activelearn.config import Paths
from activelearn.errors import ActiveLearnError
from activelearn.store import DecisionConflict, LabelEvent

LEASE_S = 300.0
#: Share of each batch served from the unlabeled holdout, and the labels per class that end it.
HOLDOUT_SHARE = 0.1
HOLDOUT_TARGET = 30
COLD_START = "diverse (cold start)"
#: The strategy of entries served while no model is active: random order, no prediction.
NO_MODEL = "random (no model yet)"
#: The strategy of entries served for a second (or k-th) vote.
OVERLAP = "random (overlap)"
OVERLAP_SETTING = "overlap"


@dataclass(frozen=True)
class Overlap:
    """The project's overlap: `share` of decided items go to `k` different annotators (share 0 = off)."""

    share: float = 0.0
    k: int = agreement.DEFAULT_K
    seed: int = 0

    @property
    def on(self) -> bool:
        return self.share > 0


def overlap_setting(db: sqlite_utils.Database) -> Overlap:
    """The lead's overlap setting (off unless set)."""
    return Overlap(**(store.get_setting(db, OVERLAP_SETTING) or {}))


def set_overlap(db: sqlite_utils.Database, share: float, k: int = agreement.DEFAULT_K) -> Overlap:
    """Turn overlap on (share > 0) or off (0); refused in one sentence outside 0-1 or k outside 2-10."""
    if not 0.0 <= float(share) <= 1.0:
        raise ActiveLearnError(f"the overlap share must be between 0 and 1 (0 turns overlap off), got {share}")
    if not 2 <= int(k) <= 10:
        raise ActiveLearnError(f"overlapped items go to 2 to 10 annotators, got {k}")
    setting = Overlap(float(share), int(k), overlap_setting(db).seed)
    store.set_setting(db, OVERLAP_SETTING, {"share": setting.share, "k": setting.k, "seed": setting.seed})
    return setting


@dataclass(frozen=True)
class QueueEntry:
    """One item to show: why it was picked and what the model thinks (nothing, while no model exists)."""

    item_id: int
    score: float
    strategy: str
    is_audit: bool
    top3: tuple[tuple[str, float], ...]
    predicted_class_id: int | None
    confidence: float | None
    model_version: str | None
    #: One id per serving (None: not served under a lease); the decision's request id derives from it.
    serve_id: str | None = None
    #: The item's current label event when it was served (None: undecided then).
    served_event_id: int | None = None

    def as_dict(self) -> dict:
        return {"item_id": self.item_id, "score": self.score, "strategy": self.strategy,
                "is_audit": self.is_audit, "top3": [list(t) for t in self.top3],
                "predicted_class_id": self.predicted_class_id, "confidence": self.confidence,
                "model_version": self.model_version}


@dataclass
class Workspace:
    """What one request reads once: an open labels.db, the active version and its cached scores.

    Built per request (a sqlite connection belongs to its thread); the version is read
    once, so a model activated mid-request cannot mix two versions in one answer.
    """

    paths: Paths
    db: sqlite_utils.Database
    version: str | None
    _scores: scoring.PoolScores | None = field(default=None, repr=False)
    _names: list[str] | None = field(default=None, repr=False)

    def scores(self) -> scoring.PoolScores | None:
        """The active version's scores (None while no model is active).

        Kept between requests while the scored items are unchanged (two index reads say so),
        so a refill does not re-read every item id; new items (or embeddings) rescore.
        """
        if self.version is None or self._scores is not None:
            return self._scores
        key = (self.paths.home.resolve(), self.version)
        signature = store.items_signature(self.db, _backbone_of(self.paths, self.version))
        kept = _kept_scores.get(key)
        if kept is not None and kept[0] == signature:
            self._scores = kept[1]
        else:
            self._scores = scoring.score_items(self.paths, self.version)
            with _kept_lock:
                _kept_scores[key] = (signature, self._scores)
                _kept_scores.move_to_end(key)
                while len(_kept_scores) > scoring.KEEP_VERSIONS:
                    _kept_scores.popitem(last=False)
        return self._scores

    def names(self) -> list[str]:
        if self._names is None:
            self._names = store.class_names(self.db)
        return self._names


#: (home, version) -> (items signature, scores): the scores of the last versions asked for.
_kept_scores: OrderedDict[tuple[Path, str], tuple[tuple[int, int], scoring.PoolScores]] = OrderedDict()
_kept_lock = threading.Lock()


@functools.lru_cache(maxsize=64)
def _backbone_of(paths: Paths, version: str) -> str | None:
    """The backbone a photo version scores over (None for a CNN); versions never change."""
    card = registry.read_card(paths.models, version)
    return card["backbone"]["name"] if registry.model_kind(card) == registry.PHOTO else None


def workspace(paths: Paths) -> Workspace:
    """Open what a request needs: one connection and one read of the ACTIVE pointer."""
    return Workspace(paths, store.open_db(paths.db), registry.active_version(paths.models))


def as_workspace(source: Paths | Workspace) -> Workspace:
    return source if isinstance(source, Workspace) else workspace(source)


@contextmanager
def _serving(db, take_lease: bool) -> Iterator[None]:
    """The transaction that makes read, pick and lease one step (a preview takes no lock)."""
    if not take_lease:
        yield
        return
    with store.transaction(db):
        yield


def _served(db, entries: list[QueueEntry], annotator: str, take_lease: bool) -> list[QueueEntry]:
    """Lease the entries (inside `_serving`) and return only those leased, each with a serve id."""
    if not take_lease:
        return entries
    leased = store.take_leases(db, [e.item_id for e in entries], annotator, LEASE_S)
    return [replace(e, serve_id=uuid.uuid4().hex) for e in entries if e.item_id in leased]


def _eligible(db, scores: scoring.PoolScores, annotator: str | None) -> np.ndarray:
    """Mask over score rows: unlabeled pool items not leased to another annotator."""
    pool = store.unlabeled_ids(db, "pool")
    pool = pool[np.isin(pool, scores.item_ids, assume_unique=True)]
    pool = pool[~np.isin(pool, store.leased_to_others(db, annotator), assume_unique=True)]
    mask = np.zeros(len(scores.item_ids), bool)
    mask[scores.rows(pool)] = True
    return mask


def _entry(scores: scoring.PoolScores, row: int, names: list[str], *, score: float,
           strategy: str, is_audit: bool) -> QueueEntry:
    p = scores.probs[row]
    top = np.argsort(-p, kind="stable")[:3]
    return QueueEntry(int(scores.item_ids[row]), float(score), strategy, is_audit,
                      tuple((names[i], float(p[i])) for i in top), int(top[0]), float(p[top[0]]),
                      scores.version)


def consensus_labels(db: sqlite_utils.Database) -> dict[int, int]:
    """item id -> consensus class where two or more people voted (folder pre-labels are no vote),
    or the lead's class where a lead resolved the disagreement (Review > Team).

    Training and exports use it instead of whichever vote came last.
    """
    votes = [row for row in store.annotator_votes(db) if row[1] != store.IMPORT_ANNOTATOR]
    return {**agreement.majority_labels(votes), **store.resolved_labels(db)}   # a lead's resolution wins


def _overlap_picks(db, annotator: str, n: int, rng: np.random.Generator,
                   scored: np.ndarray | None = None) -> list[tuple[int, int]]:
    """Up to n (item id, current event id) for one more vote by `annotator`, in random order (inside `_serving`)."""
    overlap = overlap_setting(db)
    if not overlap.on or n <= 0:
        return []
    voted = store.voted_ids(db, "pool")
    drawn = voted[agreement.overlap_draw(voted, overlap.share, overlap.seed)]
    if scored is not None:
        drawn = drawn[np.isin(drawn, scored, assume_unique=True)]
    picks = store.overlap_candidates(db, drawn, annotator, overlap.k)
    order = rng.permutation(len(picks))[:n]
    return [picks[i] for i in order]


def next_items(source: Paths | Workspace, *, annotator: str, n: int = 10, strategy: str = "margin",
               class_filter: int | None = None, audit_fraction: float = 0.1,
               seed: int | None = None, take_lease: bool = True,
               holdout_share: float = HOLDOUT_SHARE) -> list[QueueEntry]:
    """The next n items for this annotator, leased to them (unless take_lease is False).

    May return fewer than n when colleagues hold the rest; never an item leased to someone else.
    """
    ws = as_workspace(source)
    rng = np.random.default_rng(seed if seed is not None else int(time.time() * 1000) % 2**31)
    scores = ws.scores()
    if scores is None:   # no model yet: random order, so labeling starts at once
        return [] if class_filter is not None else _random_items(ws.db, annotator, n, rng, take_lease,
                                                                 holdout_share)
    cold = _cold_start(ws, scores)
    if cold is not None:
        scores, strategy = cold, "diverse"
    names = ws.names()
    holdout_n = _share_of(n, holdout_share, rng)
    with _serving(ws.db, take_lease):
        overlap = [] if class_filter is not None else _overlap_picks(ws.db, annotator, n, rng, scores.item_ids)
        holdout_rows = _holdout_rows(ws.db, scores, annotator, min(holdout_n, n - len(overlap)), rng)
        mask = _eligible(ws.db, scores, annotator)
        if class_filter is not None:
            mask &= scores.probs.argmax(1) == class_filter
        picked, rows = [], np.flatnonzero(mask)
        wanted = n - len(holdout_rows) - len(overlap)
        if len(rows) and wanted > 0:   # only the eligible rows: the same batch, less to check
            picked = query.select_batch(scores.probs[rows], wanted, strategy,
                                        embeddings=scores.embeddings[rows], audit_fraction=audit_fraction,
                                        seed=int(rng.integers(2**31)))
        entries = [_entry(scores, int(rows[it.index]), names, score=it.score,
                          strategy=COLD_START if cold is not None and not it.is_audit else it.strategy,
                          is_audit=it.is_audit) for it in picked]
        for row in holdout_rows:   # shown like the random audit slice: the annotator cannot tell them apart
            entries.insert(int(rng.integers(len(entries) + 1)),
                           _entry(scores, row, names, score=float("nan"), strategy="random", is_audit=True))
        # another vote first, so overlapped items get their k votes while the item is fresh
        entries[:0] = [replace(_entry(scores, int(scores.rows([item])[0]), names, score=float("nan"),
                                      strategy=OVERLAP, is_audit=True), served_event_id=event)
                       for item, event in overlap]
        return _served(ws.db, entries, annotator, take_lease)


def _random_items(db, annotator: str, n: int, rng: np.random.Generator, take_lease: bool,
                  holdout_share: float) -> list[QueueEntry]:
    """n unlabeled items in random order (the holdout's share among them): the queue before any model."""
    holdout_n = _share_of(n, holdout_share, rng)
    with _serving(db, take_lease):
        overlap = _overlap_picks(db, annotator, n, rng)
        n -= len(overlap)
        holdout_n = min(holdout_n, n)
        leased = store.leased_to_others(db, annotator)
        chosen: list[int] = []
        if holdout_n and _holdout_short(db, len(store.class_names(db))).any():
            holdout = np.setdiff1d(store.unlabeled_ids(db, "holdout"), leased, assume_unique=True)
            chosen += rng.choice(holdout, min(holdout_n, len(holdout)), replace=False).tolist()
        pool = np.setdiff1d(store.unlabeled_ids(db, "pool"), leased, assume_unique=True)
        chosen += rng.choice(pool, min(n - len(chosen), len(pool)), replace=False).tolist()
        rng.shuffle(chosen)
        entries = [QueueEntry(int(i), float("nan"), OVERLAP, True, (), None, None, None, served_event_id=event)
                   for i, event in overlap]
        entries += [QueueEntry(int(i), float("nan"), NO_MODEL, False, (), None, None, None) for i in chosen]
        return _served(db, entries, annotator, take_lease)


def _share_of(n: int, share: float, rng: np.random.Generator) -> int:
    """share * n rounded at random, so one-item batches still carry the share on average."""
    whole, fraction = divmod(n * share, 1.0)
    return int(whole) + int(rng.random() < fraction)


def _holdout_short(db, n_classes: int) -> np.ndarray:
    """Per class: does the labeled holdout still have fewer than HOLDOUT_TARGET items of it?"""
    counts = store.labeled_per_class(db, "holdout")
    return np.array([counts.get(c, 0) < HOLDOUT_TARGET for c in range(n_classes)], bool)


def _holdout_rows(db, scores: scoring.PoolScores, annotator: str, k: int, rng: np.random.Generator) -> list[int]:
    """Score rows of k random unlabeled holdout items, from classes (as predicted) still short of the target.

    A class the active version does not know (added since) cannot be predicted: while one of those is
    short, any unlabeled holdout item may be drawn.
    """
    if k <= 0:
        return []
    known = scores.probs.shape[1]
    short = _holdout_short(db, len(store.class_names(db)))
    if not short.any():
        return []
    candidates = store.unlabeled_ids(db, "holdout")
    candidates = candidates[np.isin(candidates, scores.item_ids, assume_unique=True)]
    candidates = candidates[~np.isin(candidates, store.leased_to_others(db, annotator), assume_unique=True)]
    rows = scores.rows(candidates)
    if not short[known:].any():
        rows = rows[short[:known][scores.probs[rows].argmax(1)]]
    return [int(r) for r in rng.choice(rows, min(k, len(rows)), replace=False)] if len(rows) else []


def _cold_start(ws: Workspace, scores: scoring.PoolScores) -> scoring.PoolScores | None:
    """The active CNN's scores over the embedded items, with backbone embeddings, while no photo model exists."""
    from activelearn.autotrain import newest_photo_version
    from activelearn.backbones import DEFAULT_BACKBONE
    if newest_photo_version(ws.paths)[0] is not None or not store.has_embeddings(ws.db, DEFAULT_BACKBONE):
        return None
    ids, vectors = store.get_embeddings(ws.db, DEFAULT_BACKBONE)
    keep = np.isin(ids, scores.item_ids)
    ids, vectors = ids[keep], vectors[keep]
    rows = scores.rows(ids)
    return scoring.PoolScores(scores.version, ids, scores.probs[rows], vectors)


def grid_page(source: Paths | Workspace, *, annotator: str, class_id: int, n: int = 18) -> list[QueueEntry]:
    """Unlabeled items the model puts in one class, most confident first (the fast confirm path), leased."""
    ws = as_workspace(source)
    scores = ws.scores()
    if scores is None or class_id >= scores.probs.shape[1]:   # no model, or a class added after it
        return []
    names = ws.names()
    with _serving(ws.db, True):
        mask = _eligible(ws.db, scores, annotator) & (scores.probs.argmax(1) == class_id)
        rows = np.flatnonzero(mask)
        rows = rows[np.argsort(-scores.probs[rows, class_id], kind="stable")[:n]]
        entries = [_entry(scores, r, names, score=float(scores.probs[r, class_id]), strategy="grid",
                          is_audit=False) for r in rows]
        return _served(ws.db, entries, annotator, True)


def lease(db, item_ids: Sequence[int], annotator: str, seconds: float = LEASE_S) -> set[int]:
    """Lease items to an annotator (seconds <= 0: give their leases back); returns the items now theirs.

    A colleague's live lease is left alone, so the result may be smaller than item_ids.
    """
    if not item_ids:
        return set()
    if seconds <= 0:
        store.release_leases(db, item_ids, annotator)
        return set()
    with store.transaction(db):
        return store.take_leases(db, item_ids, annotator, seconds)


def decide(source: Paths | Workspace, *, annotator: str, item_id: int, action: str,
           class_id: int | None = None, entry: QueueEntry | None = None,
           request_id: str | None = None) -> LabelEvent:
    """Record one decision with the model's view at that moment, and release the lease.

    "confirm" without a class takes the model's top class; a class that differs
    from the prediction is recorded as a "correct". Refused with DecisionConflict
    (nothing stored) when the item is leased to someone else, or when `entry` was
    served under a lease and another annotator has decided the item since. The
    request id (default: one per served entry) makes a retry return the stored event.
    """
    ws = as_workspace(source)
    predicted = entry.predicted_class_id if entry else None
    if action == "confirm" and class_id is None:
        if predicted is None and entry is None:
            entry = lookup(ws, item_id)
            predicted = entry.predicted_class_id if entry else None
        if predicted is None:
            raise store.StoreError(f"no model has predicted item #{item_id} yet: choose its class")
        class_id = predicted
    if action in ("confirm", "correct") and predicted is not None and class_id is not None:
        action = "confirm" if class_id == predicted else "correct"
    served = entry is not None and entry.serve_id is not None
    event = store.record_decision(
        ws.db, item_id, action, class_id=class_id, annotator=annotator,
        model_version=entry.model_version if entry else None, predicted_class_id=predicted,
        confidence=entry.confidence if entry else None,
        request_id=request_id or (f"serve:{entry.serve_id}" if served else None),
        served_event_id=entry.served_event_id if served else store.UNCHECKED,
        via=_via(entry))
    if event.action in ("confirm", "correct"):
        from activelearn.autotrain import maybe_retrain
        maybe_retrain(ws.paths, ws.db)
    return event


def _via(entry: QueueEntry | None) -> str | None:
    """What labels.via records for a decision on `entry`: how the item reached the annotator."""
    if entry is None:
        return None
    if entry.strategy == OVERLAP:
        return "overlap"
    return "audit" if entry.is_audit and entry.strategy in ("random", "audit") else entry.strategy


def lookup(source: Paths | Workspace, item_id: int) -> QueueEntry | None:
    """The active model's view of one item (for decisions made without a queue entry)."""
    ws = as_workspace(source)
    try:
        scores = ws.scores()
        if scores is None:
            return None
        row = int(scores.rows([item_id])[0])
    except (KeyError, ActiveLearnError):  # no model or unscored: record without prediction
        return None
    return replace(_entry(scores, row, ws.names(), score=float("nan"), strategy="direct", is_audit=False),
                   served_event_id=store.current_event(ws.db, item_id))


def confirm_page(source: Paths | Workspace, *, annotator: str, entries: list[QueueEntry],
                 ticked: set[int]) -> tuple[list[LabelEvent], list[QueueEntry]]:
    """Grid mode: confirm the ticked items as their predicted class in one action.

    Returns the events written and the unticked entries, which the annotator corrects next.
    A ticked item a colleague decided meanwhile is left out of both (their label stands).
    """
    ws = as_workspace(source)
    events = []
    for e in entries:
        if e.item_id in ticked:
            try:
                events.append(decide(ws, annotator=annotator, item_id=e.item_id, action="confirm",
                                     class_id=e.predicted_class_id, entry=e))
            except DecisionConflict:
                continue
    return events, [e for e in entries if e.item_id not in ticked]
