"""Backbone embeddings of every item, computed once per backbone and kept in labels.db.

The photo model's head trains in seconds because the expensive part, a frozen
ImageNet backbone over each 224 px photo (~85 photos/s on 2 cores), runs only
once per item: new imports are the only items embedded later. Photos are read
from the stored original (not the 28x28 conversion), decoded in a thread pool
while the backbone runs on the previous batch; JPEGs are decoded at reduced
scale (DCT scaling) straight to about 224 px. Items without a readable original
(Fashion-MNIST items, a deleted copy) use their 28x28 image, un-negated and
upscaled, and are counted in the result.

Runs in a job process (`jobs.start_job(paths, "embed", ...)`) or in-process
before a photo-model training; progress and cancel use the training protocol.
With `--ray` the same batches run on a Ray cluster instead (`distributed`).
This module imports TensorFlow when it embeds: keep it out of fast commands.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from activelearn import backbones, distributed, store
from activelearn.config import Paths
from activelearn.convert import normalize_image, open_for_conversion
from activelearn.retrain import ProgressFn

BATCH = 32
#: Embeddings written per transaction: bounds the work a cancel or crash can lose.
COMMIT_EVERY = 256


@dataclass(frozen=True)
class EmbedResult:
    backbone: str
    embedded: int
    total: int
    from_28x28: int
    seconds: float
    cancelled: bool
    #: Where the backbone ran: "in this process" or "on Ray" (`--ray`).
    where: str = "in this process"

    @property
    def per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def message(self) -> str:
        note = f"; {self.from_28x28} had no readable original and used their 28x28 image" if self.from_28x28 else ""
        verb = "cancelled after" if self.cancelled else "embedded"
        return (f"{self.backbone}: {verb} {self.embedded} of {self.total} new item(s) {self.where} in "
                f"{self.seconds:.1f} s ({self.per_second:.0f}/s){note}")


def photo_array(path: Path, size: int) -> np.ndarray:
    """(size, size, 3) uint8 RGB of a photo file: upright, alpha on white, centre square crop.

    The centre crop is the ImageNet convention the backbone was trained with; on
    the real photos it beat squashing and padding to a square by 3 points at 100
    labels (benchmarks/README.md). The JPEG is decoded at the smallest scale
    whose short side still covers `size`.
    """
    with Image.open(path) as probe:
        width, height = probe.size
    work_side = math.ceil(size * max(width, height) / max(1, min(width, height)))
    with open_for_conversion(path, work_side=work_side) as img:
        rgb = normalize_image(img)
    return np.asarray(ImageOps.fit(rgb, (size, size), Image.Resampling.BILINEAR), np.uint8)


def pixels_array(pixels: np.ndarray, size: int) -> np.ndarray:
    """A 28x28 Fashion-MNIST image (light on black) as a (size, size, 3) photo (dark on white)."""
    img = Image.fromarray(255 - np.asarray(pixels, np.uint8), "L")
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR).convert("RGB"), np.uint8)


_feature_fns: dict[str, Any] = {}


def embedding_fn(backbone: str) -> Callable[[np.ndarray], np.ndarray]:
    """(n, 224, 224, 3) uint8 photos -> (n, d) float32 embeddings; built once per process."""
    fn = _feature_fns.get(backbone)
    if fn is None:
        import tensorflow as tf
        model = backbones.build_feature_model(backbone)
        compiled = tf.function(lambda x: model(x, training=False)[1], reduce_retracing=True)
        fn = _feature_fns[backbone] = lambda photos: np.asarray(compiled(np.asarray(photos, np.float32)),
                                                               np.float32)
    return fn


def embed_items(paths: Paths, backbone: str = backbones.DEFAULT_BACKBONE, *,
                progress: ProgressFn | None = None) -> EmbedResult:
    """Embed every item that `backbone` has not embedded yet; returns what was done.

    Items imported while it runs are picked up in a further round, so one running
    job covers every import made meanwhile.
    """
    spec = backbones.get_spec(backbone)
    started = time.monotonic()
    db = store.open_db(paths.db)
    todo = store.items_without_embedding(db, backbone)
    report = progress or (lambda update: None)
    if not todo:
        return EmbedResult(backbone, 0, 0, 0, 0.0, False)
    report({"phase": "load"})
    ray_address = distributed.ray_address()
    total = embedded = fallback = 0
    cancelled = False
    with ThreadPoolExecutor(max_workers=2) as pool:   # threads start only when the local path decodes
        if ray_address:
            def embed_round(todo):
                return distributed.embed_round(paths, backbone, todo, report, address=ray_address)
        else:
            embed = embedding_fn(backbone)   # raises ModelError (file + folder) when weights are missing
            load = partial(load_item_photo, paths, spec.input_size)

            def embed_round(todo):
                return _embed_round(db, backbone, todo, embed, load, pool, report)
        while todo and not cancelled:
            total += len(todo)
            done, used, cancelled = embed_round(todo)
            embedded, fallback = embedded + done, fallback + used
            todo = [] if cancelled else store.items_without_embedding(db, backbone)
    return EmbedResult(backbone, embedded, total, fallback, time.monotonic() - started, cancelled,
                       "on Ray" if ray_address else "in this process")


def load_item_photo(paths: Paths, size: int, item: tuple[int, str | None]) -> tuple[np.ndarray, bool]:
    """(photo, used the 28x28 image) of one (item id, stored path): the original, else its 28x28 image."""
    item_id, stored = item
    if stored:
        try:
            return photo_array(paths.home / stored, size), False
        except (OSError, ValueError):
            pass
    return pixels_array(store.item_pixels(store.open_db(paths.db), [item_id])[0], size), True


def _embed_round(db, backbone: str, todo: list[tuple[int, str | None]], embed, load, pool,
                 report: ProgressFn) -> tuple[int, int, bool]:
    """Embed `todo` batch by batch, decoding the next batch while the backbone runs on this one.

    Returns (embedded, from 28x28, cancelled); what was computed before a cancel is kept.
    """
    started = time.monotonic()
    batches = [todo[i:i + BATCH] for i in range(0, len(todo), BATCH)]
    done_ids: list[int] = []
    done_vectors: list[np.ndarray] = []
    embedded = fallback = 0
    cancelled = False
    pending = list(pool.map(load, batches[0]))
    for number, batch in enumerate(batches):
        upcoming = pool.map(load, batches[number + 1]) if number + 1 < len(batches) else iter(())
        photos = np.stack([photo for photo, _ in pending])
        fallback += sum(used for _, used in pending)
        done_vectors.append(embed(photos))
        done_ids.extend(item_id for item_id, _ in batch)
        if len(done_ids) >= COMMIT_EVERY or number + 1 == len(batches):
            store.put_embeddings(db, backbone, done_ids, np.concatenate(done_vectors))
            embedded += len(done_ids)
            done_ids, done_vectors = [], []
        elapsed = time.monotonic() - started
        stop = report({"phase": "embed", "epoch": 1, "epochs": 1, "batch": number + 1, "batches": len(batches),
                       "eta_s": elapsed / (number + 1) * (len(batches) - number - 1)})
        pending = list(upcoming)
        if stop:
            cancelled = True
            break
    if done_ids:  # cancelled between commits: keep what was computed
        store.put_embeddings(db, backbone, done_ids, np.concatenate(done_vectors))
        embedded += len(done_ids)
    return embedded, fallback, cancelled
