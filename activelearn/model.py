"""The CNN: the seed paper's conv + max-pool blocks, dense head and softmax, made strong.

Batch normalisation and dropout in the network; the paper's augmentation (small
shifts, zoom, horizontal flip) runs in the input pipeline (`training_dataset`),
a tf.data map on its own thread, so it keeps the second core busy while the
first trains. The model takes raw 28x28 uint8-valued images (no caller-side
scaling) and names its penultimate layer ``embedding`` so that scoring can
read probabilities and embeddings in one pass.

This module imports TensorFlow/Keras: import it only in commands that need a model.
"""

from __future__ import annotations

import os
import weakref

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

EMBEDDING_LAYER = "embedding"
OUTPUT_LAYER = "probabilities"
PRECISION_ENV = "ACTIVELEARN_PRECISION"


def compute_policy() -> str:
    """bfloat16 compute where the CPU has native bf16 (AVX512-BF16/AMX), else float32.

    Measured on this project's 2-core Zen 4 machines: mixed bfloat16 cuts the
    CPU time of a training epoch by ~25% and of inference by ~40%. Without
    native support bf16 is emulated and slower, so it is never the default
    there. Override with ACTIVELEARN_PRECISION=float32 or mixed_bfloat16.
    """
    forced = os.environ.get(PRECISION_ENV)
    if forced:
        return forced
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return "float32"
    return "mixed_bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


def build_model(num_classes: int = 10, *, seed: int = 0, width: int = 32, deep_convs: int = 3,
                embedding_dim: int = 256, dropout: float = 0.3, policy: str | None = None) -> keras.Model:
    """conv(w)-pool, conv(2w)-pool, conv(2w)x3, dense embedding, softmax: ~10M multiply-adds per image.

    Sized for 2 CPU cores. Time goes where activations are large, so the
    28x28 and 14x14 convs are single and use a fused bias + ReLU (batch norm
    there costs ~30% of an epoch); the depth and batch norm sit at 7x7 and in
    the dense layer, where they are cheap. The network computes in `policy`
    (see compute_policy) with a float32 softmax.
    """
    dtype = policy or compute_policy()
    init = keras.initializers.HeNormal(seed=seed)
    inputs = keras.Input((28, 28), name="image")
    x = layers.Reshape((28, 28, 1))(inputs)
    x = layers.Rescaling(1.0 / 255)(x)
    for block, filters in enumerate((width, 2 * width)):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", kernel_initializer=init,
                          dtype=dtype)(x)
        x = layers.MaxPooling2D(dtype=dtype)(x)
        x = layers.Dropout(0.05 * (block + 1), seed=seed + 3 + block, dtype=dtype)(x)
    for _ in range(deep_convs):
        x = layers.Conv2D(2 * width, 3, padding="same", use_bias=False, kernel_initializer=init,
                          dtype=dtype)(x)
        x = layers.BatchNormalization(dtype=dtype)(x)
        x = layers.ReLU(dtype=dtype)(x)
    x = layers.Flatten(dtype=dtype)(x)
    x = layers.Dense(embedding_dim, use_bias=False, kernel_initializer=init, dtype=dtype)(x)
    x = layers.BatchNormalization(dtype=dtype)(x)
    x = layers.ReLU(name=EMBEDDING_LAYER, dtype=dtype)(x)
    x = layers.Dropout(dropout, seed=seed + 9, dtype=dtype)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name=OUTPUT_LAYER, dtype="float32",
                           kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(x)
    return keras.Model(inputs, outputs, name="activelearn_cnn")


AUGMENTATION_LAYERS = (layers.RandomTranslation, layers.RandomZoom, layers.RandomFlip)


def augmentation(seed: int = 0) -> keras.Sequential:
    """The seed paper's augmentation on (batch, 28, 28) float images: shift 6%, zoom 6%, horizontal flip."""
    return keras.Sequential([
        layers.Reshape((28, 28, 1)),
        layers.RandomTranslation(0.06, 0.06, fill_mode="constant", seed=seed),
        layers.RandomZoom(0.06, fill_mode="constant", seed=seed + 1),
        layers.RandomFlip("horizontal", seed=seed + 2),
        layers.Reshape((28, 28)),
    ], name="augmentation")


def has_augmentation(model: keras.Model) -> bool:
    """Models saved before augmentation moved to the pipeline carry it as layers: don't apply it twice."""
    return any(isinstance(layer, AUGMENTATION_LAYERS) for layer in model.layers)


def training_dataset(images: np.ndarray, targets: np.ndarray, *, batch_size: int, seed: int,
                     sample_weight: np.ndarray | None = None, augment: bool = True):
    """Shuffled batches, augmented in a tf.data map and prefetched, beside the training step.

    The map has one thread: with several, the random layers' draws interleave
    in any order and a run with the same seed no longer repeats itself (it
    still keeps up: ~25,000 images/s alone against ~4,500 trained per second).
    tf.data's autotuning is off (see `without_autotune`).
    """
    import tensorflow as tf

    columns = (images.astype(np.uint8), targets.astype(np.float32))
    if sample_weight is not None:
        columns += (sample_weight.astype(np.float32),)
    dataset = tf.data.Dataset.from_tensor_slices(columns).shuffle(
        len(images), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    augmenter = augmentation(seed) if augment else None

    def prepare(x, *rest):
        x = tf.cast(x, tf.float32)
        return (augmenter(x, training=True) if augmenter is not None else x, *rest)

    return without_autotune(dataset.map(prepare, num_parallel_calls=1).prefetch(2))


def evaluation_dataset(images: np.ndarray, targets: np.ndarray, *, batch_size: int = 1024):
    """Validation batches for `fit`, without the autotuning Keras would switch on for arrays."""
    import tensorflow as tf

    columns = (images.astype(np.float32), targets.astype(np.float32))
    return without_autotune(tf.data.Dataset.from_tensor_slices(columns).batch(batch_size))


def without_autotune(dataset):
    """The dataset with tf.data's autotuning switched off.

    Measured on a 2-core Intel Xeon (epochs of 12,800 images, bf16 and
    float32): with autotuning on, 24 of 45 epochs (batch 128-512) trained on
    one core instead of two (2,480 against 3,700-5,100 images/s, 1.0 against
    1.75 cores busy), at random; with it off, 28 of 28 (batch 128) ran on both. A fixed
    prefetch of two batches is all the one-thread map needs.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def compile_model(model: keras.Model, *, learning_rate: float = 2e-3,
                  decay_steps: int | None = None, label_smoothing: float = 0.0,
                  ema_momentum: float | None = None) -> keras.Model:
    """Adam with an optional cosine decay; categorical cross-entropy on one-hot targets.

    With `ema_momentum`, the weights `fit` leaves are the exponential moving
    average of the training steps' weights (Keras' optimizer EMA), which
    evens out where the last steps of one seed happen to land.
    """
    lr: float | keras.optimizers.schedules.LearningRateSchedule = learning_rate
    if decay_steps:
        lr = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps, alpha=0.02)
    ema = {"use_ema": True, "ema_momentum": ema_momentum} if ema_momentum is not None else {}
    model.compile(optimizer=keras.optimizers.Adam(lr, **ema),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
                  metrics=["accuracy"])
    return model


_forward_fns: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def mirrored_pairs(images):
    """(2n, 28, 28): the batch as it is, then each image mirrored left-right (the test-time views)."""
    import tensorflow as tf

    return tf.concat([images, tf.reverse(images, axis=[2])], axis=0)


def _forward(model: keras.Model):
    """A compiled inference function returning (probabilities, embedding), cached per model.

    Test-time augmentation: the probabilities are the mean of the image's and
    its mirror image's (one forward pass over both), the embedding is the
    image's own. Measured on the seed recipe (benchmarks/README.md, "Seed
    model"): +0.11 and +0.15 points of Fashion-MNIST test accuracy (seeds 1
    and 2) for 2x the inference work; six views (the pair, each also moved a
    pixel up and down) gave -0.01 to +0.32 more, but at 6x the work they would
    take pool scoring below 10,000 items/s.
    A direct tf.function call skips predict()'s per-call setup (~100 ms) and
    predict_on_batch's overhead, ~35% faster on small batches; building it
    once avoids re-tracing (~0.5 s) on every call.
    """
    fn = _forward_fns.get(model)
    if fn is None:
        import tensorflow as tf
        view = keras.Model(model.inputs, [model.get_layer(OUTPUT_LAYER).output,
                                          model.get_layer(EMBEDDING_LAYER).output])

        def forward(images):
            n = tf.shape(images)[0]
            probs, embeddings = view(mirrored_pairs(images), training=False)
            return (probs[:n] + probs[n:]) / 2, embeddings[:n]

        fn = tf.function(forward, reduce_retracing=True)
        _forward_fns[model] = fn
    return fn


def predict_with_embeddings(model: keras.Model, images: np.ndarray,
                            batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (n, classes; the mean over the image and its mirror image) and embeddings
    (n, d; the image's own) as float32, batch by batch (each pass holds 2 x batch_size images)."""
    forward = _forward(model)
    probs, embeddings = [], []
    for start in range(0, len(images), batch_size):
        p, e = forward(np.asarray(images[start:start + batch_size], dtype=np.float32))
        probs.append(np.asarray(p, np.float32))
        embeddings.append(np.asarray(e, np.float32))
    if not probs:
        n_classes = model.output_shape[-1]
        dim = model.get_layer(EMBEDDING_LAYER).output.shape[-1]
        return np.zeros((0, n_classes), np.float32), np.zeros((0, dim), np.float32)
    return np.concatenate(probs), np.concatenate(embeddings)


def grow_output(model: keras.Model, num_classes: int, *, seed: int = 0) -> keras.Model:
    """Widen the softmax layer to num_classes, keeping every learned weight.

    The old classes keep their kernels and biases; new units start small and
    with a low bias so the grown model predicts what the old one did until trained.
    """
    old = model.get_layer(OUTPUT_LAYER)
    kernel, bias = old.get_weights()
    if num_classes < kernel.shape[1]:
        raise ValueError(f"cannot shrink the output layer from {kernel.shape[1]} to {num_classes}")
    if num_classes == kernel.shape[1]:
        return model
    rng = np.random.default_rng(seed)
    extra = num_classes - kernel.shape[1]
    new_kernel = np.concatenate([kernel, rng.normal(0, 0.01, (kernel.shape[0], extra)).astype(kernel.dtype)], 1)
    new_bias = np.concatenate([bias, np.full(extra, bias.min() - 2.0, bias.dtype)])
    features = old.input
    # Rebuild the head on the same graph: every layer before the output is shared.
    outputs = layers.Dense(num_classes, activation="softmax", name=OUTPUT_LAYER, dtype="float32")(features)
    grown = keras.Model(model.inputs, outputs, name=model.name)
    grown.get_layer(OUTPUT_LAYER).set_weights([new_kernel, new_bias])
    return grown
