"""Find labels that are probably wrong, so a lead can review them before they train a model.

Two detectors:

* **Confident learning** (cleanlab's ``find_label_issues``) over *out-of-sample*
  predicted probabilities: every labeled item is embedded once by a model that never
  saw a human label (the seed version at the root of the active version's parent
  chain), then for each of k folds a logistic regression is fit on a Fashion-MNIST
  subsample plus the other folds' labeled items and predicts the held-out fold.
  A probability for an item never comes from a model that was fit on its own label,
  which is what lets a wrong label stand out. Classes users added are learned from
  their human labels only. The embedding function is a parameter, so tests and
  experiments can use any features.
* **Near-duplicate conflicts**: an item and the one it was flagged a near-duplicate
  of (``items.near_dup_of``) carry different labels; both are flagged.

Each scan replaces the open issues in the ``label_issues`` table (part of the store's
schema, migration 2). An issue stays *open* while the item's label is the one
that was flagged, nobody resolved it, and (for a near-duplicate conflict) the two
labels still differ. A lead resolves an issue with :func:`resolve_issue`, which
appends an ordinary confirm/correct event; an item whose current label a lead has
reviewed is not flagged again until its label changes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from activelearn import registry, store
from activelearn.config import Paths
from activelearn.errors import ActiveLearnError, ModelError, StoreError

CONFIDENT_LEARNING = "confident-learning"
NEAR_DUPLICATE = "near-duplicate-conflict"
KINDS = (CONFIDENT_LEARNING, NEAR_DUPLICATE)
#: Fashion-MNIST training images per class added to every fold's training set.
BACKGROUND_PER_CLASS = 300

#: (n, 28, 28) uint8 images -> (n, d) float features.
EmbedFn = Callable[[np.ndarray], np.ndarray]

@dataclass(frozen=True)
class LabelIssue:
    """A label to review: ``given_class`` is the current label, ``suggested_class`` the
    model's most probable class (confident learning) or the near-duplicate's label."""

    item_id: int
    given_class: int
    suggested_class: int
    self_confidence: float | None
    kind: str
    other_item_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- detectors

def out_of_sample_probs(features: np.ndarray, labels: np.ndarray, n_classes: int, *,
                        k: int = 5, seed: int = 0,
                        background_features: np.ndarray | None = None,
                        background_labels: np.ndarray | None = None) -> np.ndarray:
    """(n, n_classes) probabilities; row i from a model fit without item i's label.

    Stratified k folds over the labeled items; every fold's model also sees the whole
    background (labels never judged here). A class absent from a fold's training data
    gets probability 0 in that fold.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    features = np.asarray(features, np.float64)
    labels = np.asarray(labels, np.int64)
    if background_features is None:
        background_features = np.zeros((0, features.shape[1]))
        background_labels = np.zeros(0, np.int64)
    background_features = np.asarray(background_features, np.float64)
    background_labels = np.asarray(background_labels, np.int64)
    if k < 2:
        raise ActiveLearnError(f"k must be at least 2 folds, got {k}")
    if len(labels) < 2 * k:
        raise ActiveLearnError(f"label-issue detection needs at least {2 * k} labeled items "
                               f"for {k} folds, found {len(labels)}")
    # Scaling is unsupervised, so fitting it on every item leaks no label.
    scaler = StandardScaler().fit(np.vstack([background_features, features]))
    x = scaler.transform(features)
    x_background = scaler.transform(background_features) if len(background_features) else background_features
    probs = np.zeros((len(labels), n_classes))
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        splits = list(folds.split(x, labels))
    for train, held_out in splits:
        y_train = np.concatenate([background_labels, labels[train]])
        if len(np.unique(y_train)) == 1:  # nothing to tell apart: the one class seen gets it all
            probs[held_out, y_train[0]] = 1.0
            continue
        model = LogisticRegression(max_iter=500, C=0.5)
        model.fit(np.vstack([x_background, x[train]]), y_train)
        probs[np.ix_(held_out, model.classes_)] = model.predict_proba(x[held_out])
    return probs


def confident_learning_issues(item_ids: Sequence[int], labels: np.ndarray,
                              probs: np.ndarray) -> list[LabelIssue]:
    """cleanlab's label issues, least self-confident first.

    Only classes that occur (in the labels or as a probability column with mass) are
    passed to cleanlab, so a class nobody labeled does not distort its thresholds.
    """
    from cleanlab.filter import find_label_issues

    labels = np.asarray(labels, np.int64)
    used = np.union1d(np.unique(labels), np.flatnonzero(probs.sum(axis=0) > 0))
    if len(used) < 2:
        return []
    column = {int(c): i for i, c in enumerate(used)}
    compact = probs[:, used]
    compact = compact / compact.sum(axis=1, keepdims=True)
    compact_labels = np.array([column[int(c)] for c in labels])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="cleanlab")
        ranked = find_label_issues(compact_labels, compact, return_indices_ranked_by="self_confidence")
    return [LabelIssue(item_id=int(item_ids[i]), given_class=int(labels[i]),
                       suggested_class=int(used[compact[i].argmax()]),
                       self_confidence=float(compact[i, compact_labels[i]]), kind=CONFIDENT_LEARNING)
            for i in ranked]


def near_duplicate_conflicts(db: sqlite_utils.Database) -> list[LabelIssue]:
    """Both sides of every near-duplicate pair whose current labels differ."""
    issues = []
    for item, item_class, other, other_class in store.near_duplicate_label_conflicts(db):
        issues.append(LabelIssue(item, item_class, other_class, None, NEAR_DUPLICATE, other))
        issues.append(LabelIssue(other, other_class, item_class, None, NEAR_DUPLICATE, item))
    return issues


# ---------------------------------------------------------------- embeddings

def seed_version(models_dir: Path) -> str:
    """The root of the active version's parent chain: a model trained before any human label."""
    version = registry.require_active(models_dir)
    seen = {version}
    while (parent := registry.read_card(models_dir, version).get("parent")) is not None:
        if parent in seen:
            raise ModelError(f"model cards form a loop through {parent!r}")
        seen.add(parent)
        version = parent
    return version


def model_embedder(models_dir: Path, version: str) -> EmbedFn:
    """The penultimate-layer embedding of a registered model (loads TensorFlow)."""
    from activelearn.model import predict_with_embeddings

    model = registry.load_model(models_dir, version)
    return lambda images: predict_with_embeddings(model, images)[1]


def fmnist_background(fmnist_dir: Path, per_class: int = BACKGROUND_PER_CLASS,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded, class-balanced subsample of the Fashion-MNIST training images."""
    from activelearn.fmnist import load_fashion_mnist

    data = load_fashion_mnist(fmnist_dir, download=False, progress=False)
    rng = np.random.default_rng(seed)
    chosen = np.sort(np.concatenate([
        rng.choice(np.flatnonzero(data.y_train == c), per_class, replace=False)
        for c in np.unique(data.y_train)]))
    return data.x_train[chosen], data.y_train[chosen]


# ---------------------------------------------------------------- persistence

def save_scan(db: sqlite_utils.Database, issues: Sequence[LabelIssue], *,
              settings: dict[str, Any], labeled: int) -> list[LabelIssue]:
    """Replace the open issues with ``issues``; returns those recorded.

    An issue is skipped when a lead already resolved an issue of that item at its
    current label (the lead has seen this exact label and kept or set it), or when
    the item's label changed since the scan read it.
    """
    with store.transaction(db):
        current = store.current_events(db)
        reviewed = store.reviewed_issue_items(db)
        kept = [issue for issue in issues if issue.item_id not in reviewed
                and current.get(issue.item_id, (None, None))[1] == issue.given_class]
        store.replace_open_issues(db, [
            {"item_id": i.item_id, "kind": i.kind, "given_class_id": i.given_class,
             "suggested_class_id": i.suggested_class, "self_confidence": i.self_confidence,
             "other_item_id": i.other_item_id, "event_id": current[i.item_id][0]} for i in kept],
            settings=settings, labeled=labeled)
    return kept


def last_scan(db: sqlite_utils.Database) -> dict[str, Any] | None:
    """The newest scan (id, created_at, settings, labeled, flagged), or None if none ran."""
    return store.last_issue_scan(db)


def open_issues(db: sqlite_utils.Database) -> list[LabelIssue]:
    """The review queue: confident-learning issues (least self-confident first), then conflicts."""
    return [LabelIssue(*row) for row in store.open_issue_rows(db)]


def open_issue_ids(db: sqlite_utils.Database) -> set[int]:
    """Items with at least one open issue (what an export with exclude_label_errors leaves out)."""
    return {issue.item_id for issue in open_issues(db)}


def resolve_issue(db: sqlite_utils.Database, item_id: int, class_id: int | None,
                  annotator: str) -> store.LabelEvent:
    """A lead's verdict on a flagged item: keep its label (``class_id`` None or equal to it:
    a ``confirm``) or fix it (another class: a ``correct``). Closes the item's open issues."""
    with store.transaction(db):
        issues = [issue for issue in open_issues(db) if issue.item_id == int(item_id)]
        if not issues:
            raise StoreError(f"item {item_id} has no open label issue")
        given = issues[0].given_class
        chosen = given if class_id is None else int(class_id)
        action = "confirm" if chosen == given else "correct"
        event = store.record_label(db, item_id, action, class_id=chosen, annotator=annotator)
        store.resolve_issues(db, item_id, event.id)
    return event


# ---------------------------------------------------------------- the scan

def find_issues(paths: Paths, *, k: int = 5, seed: int = 0, embed: EmbedFn | None = None,
                background: tuple[np.ndarray, np.ndarray] | None = None,
                background_per_class: int = BACKGROUND_PER_CLASS,
                persist: bool = True) -> list[LabelIssue]:
    """Scan every labeled item (pool and holdout) and record the issues found.

    ``embed`` defaults to the seed model's embedding and ``background`` (images, labels)
    to ``background_per_class`` Fashion-MNIST training images per class; pass either to
    use other features or data. Returns confident-learning issues (least
    self-confident first), then near-duplicate conflicts.
    """
    db = store.open_db(paths.db)
    labeled = sorted(store.labeled_items(db))
    if not labeled:
        raise ActiveLearnError("no labeled items to check")
    item_ids = np.array([item for item, _ in labeled])
    labels = np.array([cls for _, cls in labeled])
    embedding_name = "custom"
    if embed is None:
        embedding_name = seed_version(paths.models)
        embed = model_embedder(paths.models, embedding_name)
    if background is None:
        background = fmnist_background(paths.fmnist_dir, background_per_class, seed)
    background_images, background_labels = background
    features = np.asarray(embed(store.item_pixels(db, item_ids)))
    background_features = (np.asarray(embed(background_images)) if len(background_images)
                           else np.zeros((0, features.shape[1])))
    n_classes = len(store.list_classes(db))
    probs = out_of_sample_probs(features, labels, n_classes, k=k, seed=seed,
                                background_features=background_features,
                                background_labels=np.asarray(background_labels))
    issues = confident_learning_issues(item_ids, labels, probs) + near_duplicate_conflicts(db)
    if not persist:
        return issues
    return save_scan(db, issues, labeled=len(labeled),
                     settings={"k": k, "seed": seed, "embedding": embedding_name,
                               "background": int(len(background_labels))})
