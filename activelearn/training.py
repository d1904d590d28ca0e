"""Fit the CNN and write model cards; activelearn.retrain decides what to train on.

The test set is used only to evaluate a finished model; early stopping looks
at the validation images the caller passes. Progress goes to a caller-supplied
function (tqdm on the command line, the jobs table for the UI).
This module imports TensorFlow: keep it out of commands that need no model.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from activelearn import model as cnn
from activelearn.evaluate import classification_metrics
from activelearn.retrain import ProgressFn, TrainConfig

keras = cnn.keras


class _Progress(keras.callbacks.Callback):
    """Forwards batch/epoch progress (throttled) and turns a True reply into stop_training."""

    def __init__(self, report: ProgressFn, epochs: int, batches: int, every_s: float = 0.5):
        super().__init__()
        self.report, self.epochs, self.batches, self.every_s = report, epochs, batches, every_s
        self.started = time.monotonic()
        self.last = 0.0
        self.epoch = 0

    def _send(self, payload: dict[str, Any]) -> None:
        if self.report(payload):
            self.model.stop_training = True

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        if now - self.last < self.every_s:
            return
        self.last = now
        done = self.epoch * self.batches + batch + 1
        total = self.epochs * self.batches
        eta = (now - self.started) / done * (total - done)
        logs = logs or {}
        self._send({"phase": "train", "epoch": self.epoch + 1, "epochs": self.epochs,
                    "batch": batch + 1, "batches": self.batches, "loss": _f(logs.get("loss")),
                    "accuracy": _f(logs.get("accuracy")), "eta_s": eta})

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        done = (epoch + 1) * self.batches
        eta = (time.monotonic() - self.started) / done * (self.epochs * self.batches - done)
        self._send({"phase": "epoch-end", "epoch": epoch + 1, "epochs": self.epochs,
                    "batch": self.batches, "batches": self.batches,
                    "loss": _f(logs.get("loss")), "accuracy": _f(logs.get("accuracy")),
                    "val_loss": _f(logs.get("val_loss")), "val_accuracy": _f(logs.get("val_accuracy")),
                    "eta_s": eta})


class _EpochTimer(keras.callbacks.Callback):
    """Adds each epoch's wall time to the logs, so cards show where training time went."""

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["time_s"] = time.monotonic() - self.started


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


def fit(model: keras.Model, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
        config: TrainConfig, *, num_classes: int, sample_weight: np.ndarray | None = None,
        progress: ProgressFn | None = None) -> list[dict[str, float]]:
    """Train with a cosine learning-rate decay; x holds uint8 images, y class indices.

    With validation images, keep the epoch best on them (stopping early after
    `config.patience` epochs without a better one, unless it is None). With
    none (the seed recipe trains on all 60,000), keep the last epoch: the
    cosine schedule's lowest rate, as the moving average of the last steps'
    weights when `config.ema_momentum` is set. Returns the per-epoch history.
    """
    keras.utils.set_random_seed(config.seed)
    batches = int(np.ceil(len(x) / config.batch_size))
    steps = max(1, config.epochs * batches)
    cnn.compile_model(model, learning_rate=config.learning_rate, decay_steps=steps,
                      label_smoothing=config.label_smoothing,
                      ema_momentum=None if len(x_val) else _average_momentum(config.ema_momentum, steps))
    callbacks: list[keras.callbacks.Callback] = [_EpochTimer()]
    validation = None
    if len(x_val):
        validation = cnn.evaluation_dataset(x_val, keras.utils.to_categorical(y_val, num_classes))
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_accuracy", patience=config.epochs if config.patience is None else config.patience,
            restore_best_weights=True))
    if progress is not None:
        callbacks.append(_Progress(progress, config.epochs, batches))
    data = cnn.training_dataset(x, keras.utils.to_categorical(y, num_classes), batch_size=config.batch_size,
                                seed=config.seed, sample_weight=sample_weight,
                                augment=not cnn.has_augmentation(model))
    history = model.fit(data, validation_data=validation, epochs=config.epochs, shuffle=False, verbose=0,
                        callbacks=callbacks)   # the dataset shuffles
    keys = list(history.history)
    return [{k: float(history.history[k][i]) for k in keys} for i in range(len(history.history[keys[0]]))]


def _average_momentum(momentum: float | None, steps: int) -> float | None:
    """The moving average's momentum, shortened so that it spans at most a tenth of the run.

    The average starts at the initial weights: at 0.999 over a one-epoch run
    (469 steps) they would still weigh 63% at the end (a 1-epoch seed model
    scored 0.22 instead of 0.8). The 24-epoch recipe (11,256 steps) keeps 0.999.
    """
    return None if momentum is None else min(momentum, max(0.0, 1 - 10 / steps))


def predict_probs(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return cnn.predict_with_embeddings(model, images)[0]


def make_card(*, parent: str | None, class_names: Sequence[str], config: Any,
              history: list[dict[str, float]], wall_time_s: float,
              training_data: dict[str, dict[str, int]], validation: dict[str, int],
              metrics: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The card.json content: everything needed to judge and reproduce a version.

    `config` is the dataclass of hyper-parameters (TrainConfig, or the photo head's HeadConfig).
    """
    import sklearn
    import tensorflow as tf

    from activelearn.store import now
    return {
        "version": None,
        "parent": parent,
        "created_at": now(),
        "class_names": list(class_names),
        "training_data": {
            "per_source": {src: sum(c.values()) for src, c in training_data.items()},
            "per_class": training_data,
            "validation": validation,
        },
        "hyperparameters": asdict(config),
        "seed": config.seed,
        "epochs_run": len(history),
        "history": history,
        "wall_time_s": round(wall_time_s, 1),
        "precision_policy": cnn.compute_policy(),
        "library_versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                             "keras": keras.__version__, "numpy": np.__version__,
                             "scikit-learn": sklearn.__version__},
        "metrics": metrics,
        **extra,
    }
