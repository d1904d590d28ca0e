"""How good is a version in-domain: the labeled holdout, its two parts, metrics and the activation rule.

The holdout is the only honest measure of a model on the users' photos
(Fashion-MNIST test says little about them). It is split by content hash into
a *selection* part, which decisions may look at (early stopping, head shape,
activation), and a *report* part that no decision touches, so the figure a
lead reads was not picked on. Metrics are computed now from the version's
cached scores, so every version, old or new, CNN or photo, is measured on
the same items; the card keeps what they were at training time.

Retraining's activation decision, `evaluate`, `models`, `compare` and the
Review tab all call this module.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from activelearn import registry, scoring, store
from activelearn.config import Paths
from activelearn.evaluate import classification_metrics

#: A candidate is activated unless it is worse than the active model by more than this on the
#: selection part: a newer model has seen more labels, and a few items of noise must not stall the loop.
ACTIVATION_TOLERANCE = 0.01
#: Fewer selection items than this cannot tell two models apart.
MIN_SELECTION = 10

SPLITS = ("holdout", "holdout_selection", "fmnist_test")
#: The holdout splits and the part of the labeled holdout each one reads.
HOLDOUT_SPLITS = {"holdout": "report", "holdout_selection": "selection"}

_fmnist_test: dict[Path, tuple[np.ndarray, np.ndarray]] = {}
_fmnist_predictions: dict[tuple[Path, str], np.ndarray] = {}
_fmnist_lock = threading.Lock()


@dataclass(frozen=True)
class HoldoutSet:
    """Labeled holdout items of one part, by item id."""

    item_ids: np.ndarray   # (n,) int64
    labels: np.ndarray     # (n,) int64 class ids

    def __len__(self) -> int:
        return len(self.item_ids)


def holdout_set(db, part: str | None) -> HoldoutSet:
    """The labeled holdout (part 'selection', 'report', or None for both)."""
    pairs = store.labeled_holdout(db, part)
    return HoldoutSet(np.array([i for i, _ in pairs], np.int64), np.array([c for _, c in pairs], np.int64))


def version_probs(paths: Paths, version: str, item_ids: np.ndarray,
                  num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(mask of items the version can score, their probabilities padded to num_classes columns).

    A class added after the version was trained gets a zero column: the version
    is scored as never predicting it. A photo version cannot score items its
    backbone has not embedded yet; they are left out (the mask says which).
    """
    scores = scoring.score_items(paths, version)
    known = np.isin(item_ids, scores.item_ids)
    probs = np.zeros((int(known.sum()), num_classes), np.float32)
    scored = scores.probs[scores.rows(item_ids[known])]
    probs[:, :scored.shape[1]] = scored[:, :num_classes]
    return known, probs


def metrics(paths: Paths, version: str, split: str = "holdout") -> dict[str, Any]:
    """Metrics of a version on `split`: holdout (report part), holdout_selection, or fmnist_test.

    Fashion-MNIST test metrics come from the card (the test set never changes);
    a photo version has none. Holdout metrics are computed on today's holdout.
    """
    if split == "fmnist_test":
        return registry.read_card(paths.models, version)["metrics"].get("fmnist_test") or _empty(paths)
    db = store.open_db(paths.db)
    names = store.class_names(db)
    part = holdout_set(db, HOLDOUT_SPLITS[split])
    known, probs = version_probs(paths, version, part.item_ids, len(names))
    result = classification_metrics(part.labels[known], probs, names)
    result["not_scored"] = int((~known).sum())
    return result


def _empty(paths: Paths) -> dict[str, Any]:
    return classification_metrics(np.zeros(0, np.int64), np.zeros((0, 0)), store.class_names(store.open_db(paths.db)))


def report(paths: Paths, version: str) -> dict[str, Any]:
    """`evaluate --json`: the version's kind and its metrics on every split, computed now."""
    card = registry.read_card(paths.models, version)
    return {"version": version, "kind": registry.model_kind(card),
            "backbone": (card.get("backbone") or {}).get("name"),
            "active": version == registry.active_version(paths.models),
            **{split: metrics(paths, version, split) for split in SPLITS}}


def activation_decision(paths: Paths, parent: str | None, candidate: dict[str, Any], *,
                        force: bool = False) -> dict[str, Any]:
    """Activate the candidate unless it is worse than `parent` on the selection part (beyond the tolerance).

    `candidate` is the candidate's metrics dict, with "holdout_selection" computed on
    `holdout_set(db, "selection")` and, for a CNN, "fmnist_test". Without enough
    selection items a CNN falls back to Fashion-MNIST test (0.5-point tolerance);
    a photo candidate replaces a CNN only with holdout evidence.
    """
    if force:
        return {"activated": True, "reason": "activation forced by the user"}
    if parent is None:
        return {"activated": True, "reason": "no active model before"}
    selection = candidate.get("holdout_selection") or {}
    if selection.get("n", 0) >= MIN_SELECTION:
        old = metrics(paths, parent, "holdout_selection")
        new_acc, old_acc = selection["accuracy"], old["accuracy"]
        if old_acc is None:  # the parent scores none of these items (a photo model before embedding)
            return {"activated": True, "basis": "holdout_selection", "accuracy": new_acc,
                    "reason": f"{parent} cannot score the selection holdout; candidate {new_acc:.3f}"}
        ok = new_acc >= old_acc - ACTIVATION_TOLERANCE
        return {"activated": ok, "basis": "holdout_selection", "parent_accuracy": old_acc, "accuracy": new_acc,
                "tolerance": ACTIVATION_TOLERANCE,
                "reason": f"selection-holdout accuracy {new_acc:.3f} vs {old_acc:.3f} for {parent} on "
                          f"{selection['n']} items (tolerance {ACTIVATION_TOLERANCE:.2f})"}
    parent_card = registry.read_card(paths.models, parent)
    parent_fmnist = (parent_card["metrics"].get("fmnist_test") or {}).get("accuracy")
    new_fmnist = (candidate.get("fmnist_test") or {}).get("accuracy")
    if new_fmnist is not None and parent_fmnist is not None:
        ok = new_fmnist >= parent_fmnist - 0.005
        return {"activated": ok, "basis": "fmnist_test", "parent_accuracy": parent_fmnist, "accuracy": new_fmnist,
                "reason": f"fewer than {MIN_SELECTION} labeled selection-holdout items; Fashion-MNIST test "
                          f"accuracy {new_fmnist:.3f} vs {parent_fmnist:.3f} (tolerance 0.5 points)"}
    same_kind = registry.model_kind(parent_card) == (registry.PHOTO if new_fmnist is None else registry.CNN)
    return {"activated": same_kind, "basis": "none",
            "reason": (f"fewer than {MIN_SELECTION} labeled selection-holdout items; "
                       + ("a newer model of the same kind replaces the old one" if same_kind else
                          f"label at least {2 * MIN_SELECTION} holdout items before a photo model "
                          f"can replace {parent}"))}


def fmnist_test_predictions(paths: Paths, version: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(test images, true labels, predicted classes) of a CNN version, computed once per version per process.

    The 10,000-image inference runs outside the lock, so other handlers keep running meanwhile.
    """
    directory = paths.fmnist_dir.resolve()
    key = (paths.models.resolve(), version)
    with _fmnist_lock:
        test, predicted = _fmnist_test.get(directory), _fmnist_predictions.get(key)
    if test is None:
        from activelearn.fmnist import load_fashion_mnist
        data = load_fashion_mnist(directory, download=False, progress=False)
        test = (data.x_test, data.y_test.astype(np.int64))
        with _fmnist_lock:
            _fmnist_test[directory] = test
    if predicted is None:
        from activelearn.model import predict_with_embeddings
        probs, _ = predict_with_embeddings(scoring.get_model(paths, version), test[0])
        predicted = probs.argmax(axis=1)
        with _fmnist_lock:
            _fmnist_predictions[key] = predicted
    return test[0], test[1], predicted
