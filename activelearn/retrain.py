"""The one training path: train a version, evaluate it, register it, apply the activation policy.

Three modes, each with its defaults in :data:`TRAINING_DEFAULTS` (which the CLI
and the Train tab both read):

* ``scratch``: the seed CNN on all 60k Fashion-MNIST training images plus the
  human labels, keeping the last epoch (the cosine schedule's lowest rate,
  averaged over its last steps); what `train-seed` and the app's first launch run.
* ``finetune``: the active CNN trained on, with a third of Fashion-MNIST per
  epoch plus the human labels (each weighted `human_weight` times a
  Fashion-MNIST image so a few hundred labels still move the model). It stops
  on the selection part of the labeled holdout once that part has items enough.
* ``photo``: a head over frozen ImageNet-backbone embeddings of the original
  photos, trained on the human labels alone in seconds (items not yet embedded
  are embedded first). Fashion-MNIST images are not mixed in: on real photos
  they lowered accuracy at 100 and 400 labels (benchmarks/README.md).

Human labels are every pool item whose current decision is confirm/correct.
The holdout's report part is only measured, never used to decide (holdout.py).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from activelearn import backbones, holdout, registry, store
from activelearn.config import Paths
from activelearn.errors import JobError
from activelearn.evaluate import classification_metrics


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of the CNN, recorded in every CNN model card; the defaults are the seed recipe."""

    epochs: int = 24
    batch_size: int = 128
    learning_rate: float = 3e-3
    label_smoothing: float = 0.1
    seed: int = 0
    #: Epochs without a better validation accuracy before training stops; None = never stop early
    #: (the best epoch's weights are still kept). From scratch the cosine schedule gains most in its
    #: last, low-rate epochs: patience 6 stopped seed 0 / float32 at epoch 16 of 24 with 0.9201.
    patience: int | None = None
    width: int = 32
    #: Fashion-MNIST training images held out to pick the best epoch (and to stop early); 0 = train
    #: on all 60,000 and keep the last epoch, which the cosine schedule makes the best one.
    fmnist_validation: int = 0
    #: Momentum of the weights' moving average that training ends with when there is no validation
    #: set to pick an epoch (at most a tenth of the run; training.fit); None = the last step's weights.
    ema_momentum: float | None = 0.999
    mode: str = "scratch"            # "scratch" or "finetune"
    human_weight: float = 5.0        # sample weight of a human label vs one Fashion-MNIST image
    fmnist_fraction: float = 1.0     # share of the Fashion-MNIST training images seen per epoch


SCRATCH, FINETUNE, PHOTO = "scratch", "finetune", "photo"
#: Defaults of each mode; a job's params override them. Read by the CLI and the Train tab.
TRAINING_DEFAULTS: dict[str, dict[str, Any]] = {
    SCRATCH: {"epochs": TrainConfig.epochs, "learning_rate": TrainConfig.learning_rate,
              "fmnist_fraction": TrainConfig.fmnist_fraction, "patience": TrainConfig.patience},
    FINETUNE: {"epochs": 3, "learning_rate": 5e-4, "fmnist_fraction": 0.35, "patience": 2,
               "fmnist_validation": 5000},
    PHOTO: {"backbone": backbones.DEFAULT_BACKBONE},
}
MODES = tuple(TRAINING_DEFAULTS)
#: Selection-holdout items needed before the CNN fine-tune stops on them instead of Fashion-MNIST.
MIN_SELECTION_FOR_STOPPING = 20

#: Receives dicts with some of: phase, epoch, epochs, batch, batches, loss, accuracy,
#: val_accuracy, eta_s. Returns True to ask training to stop (cancel).
ProgressFn = Callable[[dict[str, Any]], bool | None]


@dataclass(frozen=True)
class Outcome:
    version: str | None
    activated: bool
    cancelled: bool
    message: str


@dataclass
class _Candidate:
    """A trained, not yet registered model and everything its card needs."""

    model: Any
    card: dict[str, Any]
    metrics: dict[str, Any]


def mode_of(params: dict[str, Any]) -> str:
    mode = params.get("mode", FINETUNE)
    if mode not in TRAINING_DEFAULTS:
        raise JobError(f"unknown training mode {mode!r}: use one of {', '.join(MODES)}")
    return mode


def settings(params: dict[str, Any]) -> dict[str, Any]:
    """The mode's defaults with the job's own values on top (None means: the default)."""
    mode = mode_of(params)
    return {**TRAINING_DEFAULTS[mode], **{k: v for k, v in params.items() if v is not None}, "mode": mode}


def retrain_and_register(paths: Paths, params: dict[str, Any], *,
                         progress: ProgressFn | None = None) -> Outcome:
    """Train a version from job params; register it and apply the activation policy."""
    started = time.monotonic()
    chosen = settings(params)
    report = progress or (lambda update: None)
    stop = False

    def relay(update: dict[str, Any]) -> bool:
        nonlocal stop
        stop = bool(report(update)) or stop
        return stop

    relay({"phase": "load"})
    db = store.open_db(paths.db)
    parent = registry.active_version(paths.models)
    train = _train_photo if chosen["mode"] == PHOTO else _train_cnn
    candidate = train(paths, db, chosen, parent, relay)
    if stop or candidate is None:
        return Outcome(None, False, True, "cancelled")

    relay({"phase": "register"})
    decision = holdout.activation_decision(paths, parent, candidate.metrics,
                                           force=bool(chosen.get("force_activate")))
    card = {**candidate.card, "metrics": candidate.metrics, "activation": decision,
            "wall_time_s": round(time.monotonic() - started, 1)}
    version = registry.register(paths.models, candidate.model, card, activate_now=decision["activated"])
    verdict = "activated" if decision["activated"] else "kept inactive"
    return Outcome(version, decision["activated"], False, f"{version} {verdict}: {decision['reason']}")


def _human_labels(db) -> tuple[np.ndarray, np.ndarray]:
    """(item ids, classes) of the labeled pool: the consensus where several people voted, else the label."""
    from activelearn.labeling import consensus_labels

    consensus = consensus_labels(db)
    pairs = store.labeled_items(db, split="pool")
    return (np.array([i for i, _ in pairs], np.int64),
            np.array([consensus.get(i, c) for i, c in pairs], np.int64))


def _holdout_metrics(db, predict, class_names: list[str]) -> dict[str, Any]:
    """Candidate metrics on both holdout parts; `predict(item_ids) -> (mask scored, probs)`."""
    out = {}
    for split, part in (("holdout", "report"), ("holdout_selection", "selection")):
        items = holdout.holdout_set(db, part)
        known, probs = predict(items.item_ids)
        out[split] = classification_metrics(items.labels[known], probs, class_names)
    return out


def _train_cnn(paths: Paths, db, chosen: dict[str, Any], parent: str | None, relay) -> _Candidate | None:
    from activelearn import model as cnn
    from activelearn.fmnist import load_fashion_mnist, validation_split
    from activelearn.training import fit, make_card, predict_probs

    known = {f.name for f in fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in chosen.items() if k in known})
    class_names = store.class_names(db)
    human_ids, human_y = _human_labels(db)
    human_x = store.item_pixels(db, human_ids.tolist())
    data = load_fashion_mnist(paths.fmnist_dir, progress=False)

    if config.fmnist_validation:
        train_idx, val_idx = validation_split(data.y_train, config.fmnist_validation, seed=config.seed)
    else:
        train_idx, val_idx = np.arange(len(data.y_train)), np.arange(0)
    if config.fmnist_fraction < 1.0:
        rng = np.random.default_rng(config.seed)
        train_idx = np.sort(rng.choice(train_idx, int(len(train_idx) * config.fmnist_fraction), replace=False))
    x = np.concatenate([data.x_train[train_idx], human_x])
    y = np.concatenate([data.y_train[train_idx].astype(np.int64), human_y])
    weights = np.concatenate([np.ones(len(train_idx), np.float32),
                              np.full(len(human_y), config.human_weight, np.float32)])

    selection = holdout.holdout_set(db, "selection")
    if config.mode == FINETUNE:
        if parent is None:
            raise JobError("fine-tuning needs an active model; train the seed model or use mode=scratch")
        if registry.model_kind(registry.read_card(paths.models, parent)) != registry.CNN:
            raise JobError(f"the active model {parent} is a photo model; fine-tuning continues a CNN: "
                           "use mode=scratch for a new CNN or mode=photo")
        model = cnn.grow_output(registry.load_model(paths.models, parent), len(class_names), seed=config.seed)
    else:
        model = cnn.build_model(len(class_names), seed=config.seed, width=config.width)
    if config.mode == FINETUNE and len(selection) >= MIN_SELECTION_FOR_STOPPING:
        val_x, val_y, stopping = store.item_pixels(db, selection.item_ids.tolist()), selection.labels, "holdout_selection"
    else:
        val_x, val_y = data.x_train[val_idx], data.y_train[val_idx]
        stopping = "fmnist_validation" if len(val_idx) else "none: the last epoch is kept"

    relay({"phase": "train", "epoch": 0, "epochs": config.epochs})
    cpu_started = time.process_time()
    history = fit(model, x, y, val_x, val_y, config, num_classes=len(class_names),
                  sample_weight=weights, progress=relay)
    if relay({"phase": "evaluate"}):
        return None

    def predict(item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.ones(len(item_ids), bool), predict_probs(model, store.item_pixels(db, item_ids.tolist()))

    metrics = {"fmnist_test": classification_metrics(data.y_test, predict_probs(model, data.x_test), class_names),
               **_holdout_metrics(db, predict, class_names)}
    names = np.array(class_names)
    card = make_card(
        parent=parent if config.mode == FINETUNE else None, class_names=class_names, config=config,
        history=history, wall_time_s=0.0, cpu_time_s=round(time.process_time() - cpu_started, 1),
        training_data={"fmnist": dict(Counter(names[data.y_train[train_idx]].tolist())),
                       "human": dict(Counter(names[human_y].tolist()))},
        validation={"fmnist": int(len(val_idx)), "early_stopping_on": stopping},
        metrics={}, kind=registry.CNN, test_time_augmentation="mean of the image and its mirror image",
        human_labels_used={"train": int(len(human_y)), "holdout": int(len(store.labeled_holdout(db)))})
    return _Candidate(model, card, metrics)


def _train_photo(paths: Paths, db, chosen: dict[str, Any], parent: str | None, relay) -> _Candidate | None:
    from activelearn import embeddings, photo
    from activelearn.training import make_card

    backbone = backbones.get_spec(chosen["backbone"]).name
    embeddings.embed_items(paths, backbone, progress=relay)   # new items only; usually none
    class_names = store.class_names(db)
    ids, vectors = store.get_embeddings(db, backbone)
    human_ids, human_y = _human_labels(db)
    embedded = np.isin(human_ids, ids)
    human_ids, human_y = human_ids[embedded], human_y[embedded]
    if len(human_y) < 2 or len(np.unique(human_y)) < 2:
        raise JobError(f"a photo model needs labeled photos of at least 2 classes; "
                       f"{len(human_y)} labeled pool item(s) so far")

    def rows(item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        known = np.isin(item_ids, ids)
        return known, np.searchsorted(ids, item_ids[known])

    x = vectors[rows(human_ids)[1]]
    selection = holdout.holdout_set(db, "selection")
    sel_known, sel_rows = rows(selection.item_ids)
    x_sel, y_sel = vectors[sel_rows], selection.labels[sel_known]
    base = photo.HeadConfig(seed=int(chosen.get("seed", 0)))
    tried = []
    best = None
    relay({"phase": "train", "epoch": 0, "epochs": 1})
    cpu_started = time.process_time()
    for config in photo.head_candidates(base, len(y_sel)):
        head, history = photo.train_head(x, human_y, len(class_names), config,
                                         x_val=x_sel if len(y_sel) >= photo.MIN_SELECTION else None,
                                         y_val=y_sel, progress=relay)
        if relay({"phase": "evaluate"}):
            return None
        accuracy = (float((photo.predict_head(head, x_sel).argmax(1) == y_sel).mean()) if len(y_sel) else None)
        tried.append({"hidden": config.hidden, "selection_accuracy": accuracy, "epochs_run": len(history)})
        if best is None or (accuracy is not None and accuracy > best[3]):
            best = (head, history, config, -1.0 if accuracy is None else accuracy)
    head, history, config, _ = best

    def predict(item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        known, found = rows(item_ids)
        return known, photo.predict_head(head, vectors[found])

    names = np.array(class_names)
    card = make_card(
        parent=parent, class_names=class_names, config=config, history=history, wall_time_s=0.0,
        cpu_time_s=round(time.process_time() - cpu_started, 1),
        training_data={"human": dict(Counter(names[human_y].tolist()))},
        validation={"early_stopping_on": "holdout_selection" if len(y_sel) >= photo.MIN_SELECTION else "none",
                    "head_candidates": tried},
        metrics={}, kind=registry.PHOTO, precision_policy="float32", backbone=backbones.describe(backbones.get_spec(backbone)),
        fmnist_in_head={"used": False, "why": "measured to lower accuracy on real photos at 100 and 400 "
                                              "labels (benchmarks/README.md)"},
        human_labels_used={"train": int(len(human_y)), "holdout": int(len(store.labeled_holdout(db)))})
    card["hyperparameters"]["mode"] = PHOTO
    return _Candidate(head, card, _holdout_metrics(db, predict, class_names))
