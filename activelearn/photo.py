"""The photo model: a frozen ImageNet backbone + a small Keras head trained on the human labels.

The head sees cached backbone embeddings (activelearn.embeddings), never
pixels, so training it takes well under a second and it can be retrained every
few dozen decisions. Two shapes, both Keras models saved as ``model.keras``:

* **linear** (the default): a softmax layer over the raw embedding. Its weights
  are the multinomial logistic regression that scikit-learn's L-BFGS solver
  fits (L2, class-balanced), which is the exact optimum of this convex problem:
  on the real photos it beat every Adam-trained variant tried, in a tenth of
  the time (benchmarks/README.md, photo model).
* **hidden**: Normalization -> Dense + ReLU -> dropout -> softmax, trained by
  Keras with class-balanced weights; tried only where the selection part of the
  labeled holdout has enough items to choose between the two.

A class without labels keeps a very low bias, so the head practically never predicts it.
A registered photo version stores only the head; its card names the backbone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from activelearn import model as cnn
from activelearn.errors import JobError
from activelearn.retrain import ProgressFn

keras = cnn.keras
layers = cnn.layers

#: Below this many selection-holdout items the head shape is not chosen but fixed (linear).
MIN_SELECTION = 20
#: Gradient steps per reported "epoch" of hidden-head training.
STEPS_PER_EPOCH = 50
#: Logit offset below the lowest seen class's bias for a class without labels: it is practically never
#: predicted (its kernel is zero, so only embeddings far outside the training data could get there).
UNSEEN_CLASS_OFFSET = 20.0


@dataclass(frozen=True)
class HeadConfig:
    """Hyper-parameters of the head, recorded in the card."""

    hidden: int = 0                 # 0 = linear softmax over the embedding
    l2_c: float = 1.0               # inverse L2 strength of the linear head (scikit-learn's C)
    dropout: float = 0.5            # hidden head only, from here on
    learning_rate: float = 2e-3
    batch_size: int = 64
    l2: float = 1e-4
    #: Training length in passes over the labels, clipped to [min_steps, max_steps] gradient steps.
    passes: int = 30
    min_steps: int = 1000
    max_steps: int = 3000
    patience: int = 4
    seed: int = 0

    def steps(self, n: int) -> int:
        return int(np.clip(self.passes * math.ceil(n / self.batch_size), self.min_steps, self.max_steps))


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """Per-sample weights n / (k * count(class)): each labeled class weighs the same in the loss."""
    classes, counts = np.unique(y, return_counts=True)
    per_class = dict(zip(classes.tolist(), (len(y) / (len(classes) * counts)).tolist()))
    return np.array([per_class[int(c)] for c in y], np.float32)


def train_head(x: np.ndarray, y: np.ndarray, num_classes: int, config: HeadConfig, *,
               x_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
               sample_weight: np.ndarray | None = None,
               progress: ProgressFn | None = None) -> tuple[keras.Model, list[dict[str, float]]]:
    """Fit a head on (embeddings, class ids[, weights]); returns it and its training history.

    Sample weights multiply the class balancing. (x_val, y_val) stop the hidden
    head early (on their loss); the linear head has no epochs to stop.
    """
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int64)
    if len(np.unique(y)) < 2:
        raise JobError("a photo-model head needs labels of at least 2 classes")
    weights = balanced_weights(y) * (1.0 if sample_weight is None else np.asarray(sample_weight, np.float32))
    if config.hidden:
        return _train_hidden(x, y, weights, num_classes, config, x_val, y_val, progress)
    return _fit_linear(x, y, weights, num_classes, config), []


def _fit_linear(x: np.ndarray, y: np.ndarray, weights: np.ndarray, num_classes: int,
                config: HeadConfig) -> keras.Model:
    from sklearn.linear_model import LogisticRegression
    fitted = LogisticRegression(C=config.l2_c, max_iter=5000).fit(x, y, sample_weight=weights)
    coef, intercept = fitted.coef_, fitted.intercept_
    if len(fitted.classes_) == 2:  # a binary fit gives one logit z: softmax(-z/2, z/2) = sigmoid(z)
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    kernel = np.zeros((x.shape[1], num_classes), np.float32)
    bias = np.full(num_classes, intercept.min() - UNSEEN_CLASS_OFFSET, np.float32)
    kernel[:, fitted.classes_] = coef.T
    bias[fitted.classes_] = intercept
    inputs = keras.Input((x.shape[1],), name="embedding_in")
    output = layers.Dense(num_classes, activation="softmax", name=cnn.OUTPUT_LAYER, dtype="float32")
    head = keras.Model(inputs, output(inputs), name="activelearn_photo_head")
    output.set_weights([kernel, bias])
    return head


def _train_hidden(x, y, weights, num_classes, config, x_val, y_val, progress):
    keras.utils.set_random_seed(config.seed)
    init = keras.initializers.GlorotUniform(seed=config.seed)
    inputs = keras.Input((x.shape[1],), name="embedding_in")
    norm = layers.Normalization(name="normalize")
    norm.adapt(x)
    h = layers.Dense(config.hidden, activation="relu", kernel_initializer=init,
                     kernel_regularizer=keras.regularizers.L2(config.l2), name="hidden")(norm(inputs))
    h = layers.Dropout(config.dropout, seed=config.seed)(h)
    outputs = layers.Dense(num_classes, activation="softmax", name=cnn.OUTPUT_LAYER, kernel_initializer=init,
                           kernel_regularizer=keras.regularizers.L2(config.l2))(h)
    model = keras.Model(inputs, outputs, name="activelearn_photo_head")
    epochs = max(1, math.ceil(config.steps(len(x)) / STEPS_PER_EPOCH))
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
                      config.learning_rate, epochs * STEPS_PER_EPOCH, alpha=0.05)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    import tensorflow as tf
    data = (tf.data.Dataset.from_tensor_slices((x, y, weights))
            .shuffle(len(x), seed=config.seed, reshuffle_each_iteration=True)
            .repeat().batch(config.batch_size))
    validation = None
    callbacks: list[keras.callbacks.Callback] = []
    if x_val is not None and y_val is not None and len(y_val):
        validation = (np.asarray(x_val, np.float32), np.asarray(y_val, np.int64))
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience,
                                                       restore_best_weights=True))
    if progress is not None:
        callbacks.append(_EpochProgress(progress, epochs))
    history = model.fit(data, steps_per_epoch=STEPS_PER_EPOCH, epochs=epochs, validation_data=validation, shuffle=False,
                        verbose=0, callbacks=callbacks)
    keys = list(history.history)
    return model, [{k: float(history.history[k][i]) for k in keys} for i in range(len(history.history[keys[0]]))]


class _EpochProgress(keras.callbacks.Callback):
    """Head epochs as job progress; a True reply stops training (cancel)."""

    def __init__(self, report: ProgressFn, epochs: int):
        super().__init__()
        self.report, self.epochs = report, epochs

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        update = {"phase": "epoch-end", "epoch": epoch + 1, "epochs": self.epochs, "batch": 1, "batches": 1,
                  **{k: float(v) for k, v in logs.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy")}}
        if self.report(update):
            self.model.stop_training = True


def head_candidates(config: HeadConfig, selection_size: int) -> list[HeadConfig]:
    """The head shapes to try: linear, and one hidden layer when the selection part can tell them apart."""
    if selection_size < MIN_SELECTION:
        return [config]
    return [replace(config, hidden=0), replace(config, hidden=256)]


def predict_head(head: keras.Model, embeddings: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """(n, d) embeddings -> (n, classes) float32 probabilities (a direct call: no per-head tracing)."""
    out = [np.asarray(head(np.asarray(embeddings[i:i + batch_size], np.float32), training=False), np.float32)
           for i in range(0, len(embeddings), batch_size)]
    if not out:
        return np.zeros((0, head.output_shape[-1]), np.float32)
    return np.concatenate(out)
