"""Grad-CAM: where in the photo the model looked for the class it predicts.

Grad-CAM (Selvaraju et al. 2017) weights each channel of the last
convolutional feature map by the mean gradient of the class probability with
respect to it; the positive part of the weighted sum, upscaled, is the heatmap.
For a photo model that is the backbone's last conv block, followed through the
pooled embedding and the head; for the seed CNN, its last conv on the 28x28
image. The gradient function is traced once per model per process, so an
explanation after the first costs one forward and backward pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from activelearn import registry, scoring, store
from activelearn.config import Paths
from activelearn.errors import StoreError

#: Longest side of the overlay image.
OVERLAY_SIDE = 448
#: Opacity of the heatmap over the photo.
ALPHA = 0.45


@dataclass(frozen=True, eq=False)
class Explanation:
    version: str
    kind: str
    class_id: int
    class_name: str
    probability: float
    layer: str
    heatmap: np.ndarray      # (h, w) float32 in [0, 1], the feature map's resolution
    overlay: Image.Image     # the photo (or 28x28 image) with the heatmap on top
    seconds: float


_gradient_fns: dict[tuple[str, str], tuple[Any, str]] = {}


def _photo_gradients(paths: Paths, version: str, card: dict[str, Any]):
    """(fn(photos, class) -> (probs, cam), layer name) joining the backbone and the version's head."""
    import tensorflow as tf

    from activelearn import backbones
    features = backbones.build_feature_model(card["backbone"]["name"])
    head = scoring.get_model(paths, version)

    @tf.function(reduce_retracing=True)
    def fn(photos, class_id):
        with tf.GradientTape() as tape:
            feature_map, pooled = features(photos, training=False)
            probs = head(pooled, training=False)
            target = _target(probs, class_id)
        return probs, _cam(tape.gradient(target, feature_map), feature_map)
    return fn, f"{card['backbone']['name']} last conv block"


def _cnn_gradients(paths: Paths, version: str):
    """(fn(images, class) -> (probs, cam), layer name) over the CNN's last 4-D activation."""
    import keras
    import tensorflow as tf
    model = scoring.get_model(paths, version)
    last_conv = [layer for layer in model.layers if len(layer.output.shape) == 4][-1]
    view = keras.Model(model.inputs, [last_conv.output, model.output])

    @tf.function(reduce_retracing=True)
    def fn(images, class_id):
        with tf.GradientTape() as tape:
            feature_map, probs = view(images, training=False)
            target = _target(probs, class_id)
        return probs, _cam(tape.gradient(target, feature_map), feature_map)
    return fn, last_conv.name


def _target(probs, class_id):
    """The probability to explain: class_id, or the predicted class when class_id is -1."""
    import tensorflow as tf
    chosen = tf.where(class_id < 0, tf.argmax(probs[0], output_type=tf.int32), class_id)
    return probs[:, chosen]


def _cam(gradients, feature_map):
    import tensorflow as tf
    gradients = tf.cast(gradients, tf.float32)
    feature_map = tf.cast(feature_map, tf.float32)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * feature_map, axis=-1))[0]


def explain_item(paths: Paths, item_id: int, *, version: str | None = None,
                 class_id: int | None = None) -> Explanation:
    """Grad-CAM of `version` (default: active) for one item, for `class_id` (default: the predicted class)."""
    from activelearn.embeddings import pixels_array

    started = time.perf_counter()
    version = version or registry.require_active(paths.models)
    card = registry.read_card(paths.models, version)
    kind = registry.model_kind(card)
    db = store.open_db(paths.db)
    item = store.get_item(db, item_id)
    pixels = store.item_pixels(db, [item_id])[0]
    key = (str(paths.models.resolve()), version)
    if key not in _gradient_fns:
        _gradient_fns[key] = (_photo_gradients(paths, version, card) if kind == registry.PHOTO
                              else _cnn_gradients(paths, version))
    fn, layer = _gradient_fns[key]

    if kind == registry.PHOTO:
        size = card["backbone"]["input_size"]
        photo = _original(paths, item, size)
        photo = pixels_array(pixels, size) if photo is None else photo
        model_input = photo[None].astype(np.float32)
        background = Image.fromarray(photo)
    else:
        model_input = pixels[None].astype(np.float32)
        background = Image.fromarray(pixels_array(pixels, 28))
    names = card["class_names"]
    if class_id is not None and not 0 <= class_id < len(names):
        raise StoreError(f"{version} knows {len(names)} classes; class id {class_id} is not one of them")
    probs, cam = fn(model_input, np.int32(-1 if class_id is None else class_id))
    probs = np.asarray(probs)[0]
    chosen = int(probs.argmax()) if class_id is None else int(class_id)
    heatmap = np.asarray(cam, np.float32)
    heatmap = heatmap / heatmap.max() if heatmap.max() > 0 else heatmap
    return Explanation(version, kind, chosen, names[chosen], float(probs[chosen]), layer, heatmap,
                       overlay(background, heatmap), time.perf_counter() - started)


def _original(paths: Paths, item: dict[str, Any], size: int) -> np.ndarray | None:
    from activelearn.embeddings import photo_array
    if not item.get("stored_path"):
        return None
    try:
        return photo_array(paths.home / item["stored_path"], size)
    except (OSError, ValueError):
        return None


def overlay(background: Image.Image, heatmap: np.ndarray) -> Image.Image:
    """The heatmap in the 'jet' colours, upscaled smoothly and blended over the background."""
    from matplotlib import colormaps
    scale = OVERLAY_SIDE / max(background.size)
    size = (max(1, round(background.width * scale)), max(1, round(background.height * scale)))
    base = background.convert("RGB").resize(size, Image.Resampling.BILINEAR)
    heat = Image.fromarray(np.uint8(255 * heatmap)).resize(size, Image.Resampling.BICUBIC)
    colours = colormaps["jet"](np.asarray(heat, np.float32) / 255.0)[..., :3]
    blended = (1 - ALPHA) * np.asarray(base, np.float32) + ALPHA * 255 * colours
    return Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8))
