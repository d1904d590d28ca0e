"""Retraining on Fashion-MNIST + the human labels, with holdout evaluation and the activation policy.

Training data = Fashion-MNIST train (55k; 5k kept for early stopping) + every
item outside the holdout whose current decision is confirm/correct, each
human label weighted `human_weight` times a Fashion-MNIST image so a few
hundred labels still move the model. The new version's card carries
Fashion-MNIST test metrics *and* in-domain holdout metrics; it becomes active
only if it is not worse than the active model on the same holdout (or when
the caller forces it), so the previous version stays one click away.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from activelearn import registry, store
from activelearn.config import Paths
from activelearn.errors import JobError
from activelearn.evaluate import classification_metrics
from activelearn.fmnist import load_fashion_mnist, validation_split
from activelearn.training import ProgressFn, TrainConfig, fit, make_card, predict_probs

#: Fine-tuning defaults: a gentler learning rate, fewer epochs, a third of Fashion-MNIST per epoch.
FINETUNE_DEFAULTS = {"epochs": 3, "learning_rate": 5e-4, "fmnist_fraction": 0.35, "patience": 2}


@dataclass(frozen=True)
class Outcome:
    version: str | None
    activated: bool
    cancelled: bool
    message: str


def config_from_params(params: dict[str, Any]) -> TrainConfig:
    """Job params (mode, epochs, ...) -> TrainConfig, with the fine-tune defaults applied."""
    mode = params.get("mode", "finetune")
    if mode not in ("finetune", "scratch"):
        raise JobError(f"unknown training mode {mode!r}: use finetune or scratch")
    base = dict(FINETUNE_DEFAULTS) if mode == "finetune" else {}
    known = {f.name for f in fields(TrainConfig)}
    base.update({k: v for k, v in params.items() if k in known and v is not None})
    base["mode"] = mode
    return TrainConfig(**base)


def holdout_set(db) -> tuple[np.ndarray, np.ndarray]:
    """Pixels and class ids of labeled holdout items (the in-domain test set)."""
    pairs = store.labeled_items(db, split="holdout")
    ids = [i for i, _ in pairs]
    return store.item_pixels(db, ids), np.array([c for _, c in pairs], dtype=np.int64)


def retrain_and_register(paths: Paths, params: dict[str, Any], *,
                         progress: ProgressFn | None = None) -> Outcome:
    """Train a new version from job params; register it and apply the activation policy."""
    started = time.monotonic()
    config = config_from_params(params)
    report = progress or (lambda update: None)
    stop = False

    def relay(update: dict[str, Any]) -> bool:
        nonlocal stop
        stop = bool(report(update)) or stop
        return stop

    relay({"phase": "load"})
    db = store.open_db(paths.db)
    class_names = store.class_names(db)
    human = store.labeled_items(db, split="pool")
    human_x = store.item_pixels(db, [i for i, _ in human])
    human_y = np.array([c for _, c in human], dtype=np.int64)
    holdout_x, holdout_y = holdout_set(db)
    data = load_fashion_mnist(paths.fmnist_dir, progress=False)

    train_idx, val_idx = validation_split(data.y_train, 5000, seed=config.seed)
    if config.fmnist_fraction < 1.0:
        rng = np.random.default_rng(config.seed)
        train_idx = np.sort(rng.choice(train_idx, int(len(train_idx) * config.fmnist_fraction), replace=False))
    x = np.concatenate([data.x_train[train_idx], human_x])
    y = np.concatenate([data.y_train[train_idx].astype(np.int64), human_y])
    weights = np.concatenate([np.ones(len(train_idx), np.float32),
                              np.full(len(human_y), config.human_weight, np.float32)])

    parent = registry.active_version(paths.models)
    from activelearn import model as cnn
    if config.mode == "finetune":
        if parent is None:
            raise JobError("fine-tuning needs an active model; train the seed model or use mode=scratch")
        model = cnn.grow_output(registry.load_model(paths.models, parent), len(class_names), seed=config.seed)
    else:
        model = cnn.build_model(len(class_names), seed=config.seed, width=config.width)

    relay({"phase": "train", "epoch": 0, "epochs": config.epochs})
    history = fit(model, x, y, data.x_train[val_idx], data.y_train[val_idx], config,
                  num_classes=len(class_names), sample_weight=weights, progress=relay)
    if stop:
        return Outcome(None, False, True, "cancelled")

    relay({"phase": "evaluate"})
    metrics = {"fmnist_test": classification_metrics(data.y_test, predict_probs(model, data.x_test), class_names)}
    if len(holdout_y):
        metrics["holdout"] = classification_metrics(holdout_y, predict_probs(model, holdout_x), class_names)
    decision = _activation_decision(paths, parent, metrics, holdout_x, holdout_y, class_names,
                                    force=bool(params.get("force_activate")))
    names = np.array(class_names)
    card = make_card(
        parent=parent, class_names=class_names, config=config, history=history,
        wall_time_s=time.monotonic() - started,
        training_data={"fmnist": dict(Counter(names[data.y_train[train_idx]].tolist())),
                       "human": dict(Counter(names[human_y].tolist()))},
        validation={"fmnist": int(len(val_idx))},
        metrics=metrics,
        human_labels_used={"train": int(len(human_y)), "holdout": int(len(holdout_y))},
        activation=decision)
    relay({"phase": "register"})
    version = registry.register(paths.models, model, card, activate_now=decision["activated"])
    verdict = "activated" if decision["activated"] else "kept inactive"
    return Outcome(version, decision["activated"], False, f"{version} {verdict}: {decision['reason']}")


def _activation_decision(paths: Paths, parent: str | None, metrics: dict[str, Any],
                         holdout_x: np.ndarray, holdout_y: np.ndarray, class_names: list[str],
                         *, force: bool) -> dict[str, Any]:
    """Not worse on the in-domain holdout -> activate; no labeled holdout -> compare Fashion-MNIST test."""
    if force:
        return {"activated": True, "reason": "activation forced by the user"}
    if parent is None:
        return {"activated": True, "reason": "no active model before"}
    if len(holdout_y):
        old = registry.load_model(paths.models, parent)
        old_probs = predict_probs(old, holdout_x)
        old_acc = float((old_probs.argmax(1) == holdout_y).mean())
        new_acc = metrics["holdout"]["accuracy"]
        ok = new_acc >= old_acc
        return {"activated": ok, "basis": "holdout", "parent_accuracy": old_acc, "accuracy": new_acc,
                "reason": f"holdout accuracy {new_acc:.3f} vs {old_acc:.3f} for {parent} "
                          f"on the same {len(holdout_y)} items"}
    old_acc = registry.read_card(paths.models, parent)["metrics"]["fmnist_test"]["accuracy"]
    new_acc = metrics["fmnist_test"]["accuracy"]
    ok = new_acc >= old_acc - 0.005
    return {"activated": ok, "basis": "fmnist_test", "parent_accuracy": old_acc, "accuracy": new_acc,
            "reason": f"no labeled holdout yet; Fashion-MNIST test accuracy {new_acc:.3f} vs "
                      f"{old_acc:.3f} (tolerance 0.5 points)"}
