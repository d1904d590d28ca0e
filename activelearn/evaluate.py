"""Metrics a lead reads: accuracy, per-class precision/recall/F1/accuracy, confusion matrix.

Pure functions over label arrays (scikit-learn does the counting), so they
serve the seed model, retraining, the simulation and version comparison alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def classification_metrics(y_true: np.ndarray, probs: np.ndarray,
                           class_names: Sequence[str]) -> dict[str, Any]:
    """Metrics of predicted probabilities against true class indices.

    Per-class "accuracy" is the share of that class's items predicted correctly
    (equal to recall); it is what a lead asks: how often is a Dress called a Dress.
    """
    # imported here: scikit-learn takes ~1.2 s to import, and the CLI's label and query commands
    # load this module (through retrain's table of training defaults) without computing metrics
    from sklearn.metrics import confusion_matrix, log_loss, precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.arange(len(class_names))
    if len(y_true) == 0:
        return {"n": 0, "accuracy": None, "loss": None, "per_class": {},
                "confusion_matrix": np.zeros((len(labels), len(labels)), int).tolist()}
    y_pred = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    clipped = np.clip(probs, 1e-7, 1.0)
    loss = log_loss(y_true, clipped / clipped.sum(axis=1, keepdims=True), labels=labels)
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()),
        "loss": float(loss),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]),
                   "f1": float(f1[i]), "accuracy": float(recall[i]) if support[i] else None,
                   "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def compare_metrics(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Per-class deltas (new - old) of two metric dicts from `classification_metrics`."""
    def delta(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else b - a

    per_class = {}
    for name in dict.fromkeys([*old.get("per_class", {}), *new.get("per_class", {})]):
        a = old.get("per_class", {}).get(name, {})
        b = new.get("per_class", {}).get(name, {})
        per_class[name] = {
            key: delta(a.get(key), b.get(key)) for key in ("accuracy", "precision", "recall", "f1")
        } | {"support_old": a.get("support", 0), "support_new": b.get("support", 0),
             "accuracy_old": a.get("accuracy"), "accuracy_new": b.get("accuracy")}
    return {"accuracy": delta(old.get("accuracy"), new.get("accuracy")),
            "accuracy_old": old.get("accuracy"), "accuracy_new": new.get("accuracy"),
            "per_class": per_class}
