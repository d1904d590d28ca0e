"""Pretrained ImageNet backbones (Keras Applications) used as frozen feature extractors on photos.

The 28x28 grayscale seed CNN is right on about 4 in 10 real phone photos; the
same labels on a frozen ImageNet backbone's features on about 8 in 10, so the
photo model is a small head over these features. Each backbone takes RGB photos
at its native 224 px, as float pixel values in [0, 255] (preprocessing is part of
the model), and returns its last convolutional feature map and the global
average of it (the embedding). Grad-CAM reads the feature map.

Weights come the way Keras users expect: the file Keras downloads for
``weights="imagenet"`` into ``$KERAS_HOME/models`` (default ``~/.keras/models``).
When it is missing and cannot be downloaded, the error names the file and the
folder. Reading specs needs no TensorFlow; building a backbone does.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from activelearn.errors import ModelError

if TYPE_CHECKING:
    import keras

#: Measured best on this project's machines (benchmarks/README.md, photo model) and the
#: only backbone whose weights these machines have; the others are for users with more CPU.
DEFAULT_BACKBONE = "mobilenet_v1_0.25"


@dataclass(frozen=True)
class BackboneSpec:
    """What the card records about a backbone, and how to build it."""

    name: str
    application: str          # keras.applications attribute
    kwargs: tuple[tuple[str, object], ...]
    weights_file: str         # the no-top file Keras downloads for weights="imagenet"
    embedding_dim: int
    input_size: int = 224
    #: Pixels in [0, 255] -> the backbone's input range, when the application does not do it.
    rescale: tuple[float, float] | None = None


BACKBONES: dict[str, BackboneSpec] = {spec.name: spec for spec in (
    BackboneSpec("mobilenet_v1_0.25", "MobileNet", (("alpha", 0.25),),
                 "mobilenet_2_5_224_tf_no_top.h5", 256, rescale=(1 / 127.5, -1.0)),
    BackboneSpec("mobilenet_v3_small", "MobileNetV3Small", (("include_preprocessing", True),),
                 "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5", 576),
    BackboneSpec("mobilenet_v3_large", "MobileNetV3Large", (("include_preprocessing", True),),
                 "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5", 960),
    BackboneSpec("efficientnet_v2_b0", "EfficientNetV2B0", (("include_preprocessing", True),),
                 "efficientnetv2-b0_notop.h5", 1280),
)}


def get_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ModelError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}") from None


def weights_dir() -> Path:
    """Where Keras keeps downloaded weights: $KERAS_HOME/models, default ~/.keras/models."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser() / "models"


def weights_path(spec: BackboneSpec) -> Path:
    return weights_dir() / spec.weights_file


def weights_sha256(spec: BackboneSpec) -> str | None:
    """The weight file's sha256 (for the model card), or None when the backbone has no file yet."""
    path = weights_path(spec)
    if not path.exists():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe(spec: BackboneSpec) -> dict[str, object]:
    """The card's backbone entry."""
    return {"name": spec.name, "application": spec.application, "weights_file": spec.weights_file,
            "weights_sha256": weights_sha256(spec), "input_size": spec.input_size,
            "embedding_dim": spec.embedding_dim}


def build_feature_model(name: str, *, weights: str | None = "imagenet") -> keras.Model:
    """RGB photos (n, 224, 224, 3) in [0, 255] -> (last conv feature map, pooled embedding).

    `weights="imagenet"` loads the Keras ImageNet file (downloading it once when
    online); `weights=None` builds random weights, for shape tests.
    """
    spec = get_spec(name)
    from activelearn import model as _tf_setup  # noqa: F401 - TF logging and precision setup
    import keras
    from keras import layers

    constructor = getattr(keras.applications, spec.application)
    size = spec.input_size
    if weights == "imagenet":
        path = weights_path(spec)
        weights = str(path) if path.exists() else "imagenet"
    try:
        backbone = constructor(input_shape=(size, size, 3), include_top=False, weights=weights,
                               **dict(spec.kwargs))
    except Exception as exc:  # noqa: BLE001 - Keras raises URL, OS and h5 errors alike
        if weights is None:
            raise
        raise ModelError(
            f"ImageNet weights for backbone {name} are missing and could not be downloaded "
            f"({type(exc).__name__}). Put the Keras file {spec.weights_file} in {weights_dir()} "
            f"(or set KERAS_HOME to a folder whose models/ holds it) and try again.") from exc
    backbone.trainable = False
    inputs = keras.Input((size, size, 3), name="photo")
    x = inputs if spec.rescale is None else layers.Rescaling(*spec.rescale)(inputs)
    feature_map = backbone(x, training=False)
    pooled = layers.GlobalAveragePooling2D(name="embedding")(feature_map)
    return keras.Model(inputs, [feature_map, pooled], name=f"features_{spec.name.replace('.', '_')}")
