"""Near-duplicates: a cheap dHash filter, then a check on the 28x28 conversions.

Only hashes are kept between files (one uint64 array of dHashes), so memory stays
bounded for 100,000-file imports. A near-duplicate is found in two steps: the
object's dHash picks candidates cheaply, then their 28x28 conversions, read back
from the database, confirm or refuse them (see ``NEAR_DUP_MAX_PIXEL_DISTANCE``).
"""

from __future__ import annotations

import numpy as np
import sqlite_utils
from PIL import Image

from activelearn.convert import Conversion, dhash

#: Near-duplicate candidates: object dHashes at most this many bits (of 64) apart.
#: Only a cheap filter since :data:`NEAR_DUP_MAX_PIXEL_DISTANCE` decides; 6 rather than 4
#: because 97.8% of copies (see there) lie within 6 bits of their original, 92.9% within 4.
NEAR_DUP_MAX_DISTANCE = 6
#: A candidate is a near-duplicate when :func:`pixel_distance` between the conversions is at
#: most this. Measured on 5,000 synthetic photos (400x533) of distinct Fashion-MNIST training
#: images and on 4,000 copies of 800 of them (recompressed at quality 60, brightened 5%,
#: downscaled to 75%, downscaled to 50% at quality 75, cropped by 2-4% a side): copies lie at
#: a median 0.07 from their original, 95% below 0.47, 99% below 0.80; the 13,951 distinct pairs
#: within 6 dHash bits (86% of the same class) at a median 11.8, 99% above 0.96, 99.9% above
#: 0.52, the closest at 0.30, all of them plain trousers. At 0.5, 0.20% of the distinct photos
#: are flagged (dHash alone at 4 bits: 12.3%), all trousers (1.8% of them); 94.0% of copies are
#: flagged as near-duplicates of their own original (quality 60: 97.5%, brightened 90.2%, 75%
#: size 90.5%, cropped 98.6%; benchmarks/bench_import.py: 93% of its 800 copies, 79% with the
#: dHash alone). 0.4 would flag 0.08% and catch 91.5%, 0.6 0.46% and 95.7%. Small photos are
#: caught less often: compression ringing moves the object box of a 120x160 JPEG, so of its
#: copies at quality 60 only 75% stay within 6 hash bits and 70% within this distance (from
#: 300x400 up, 98-100% and 97-100%).
NEAR_DUP_MAX_PIXEL_DISTANCE = 0.5
#: Candidates verified per photo, closest hashes first: bounds the work where many items
#: share a silhouette (a copy's hash is almost always among the closest).
NEAR_DUP_MAX_CANDIDATES = 256


class _HashIndex:
    """dHashes of all known items in one growing uint64 array, searched with one XOR + popcount.

    Slots of items not yet committed hold id 0 until their batch is inserted; a
    near-duplicate only ever points to an earlier slot, which is inserted first.
    """

    def __init__(self, rows: list[tuple[int, int]]):
        capacity = max(1024, 2 * len(rows))
        self._hashes = np.zeros(capacity, np.uint64)
        self._ids = np.zeros(capacity, np.int64)
        self._size = len(rows)
        if rows:
            ids, hashes = zip(*rows)
            self._ids[:self._size] = ids
            self._hashes[:self._size] = np.array(hashes, np.int64).view(np.uint64)

    def candidates(self, value: int) -> np.ndarray:
        """Up to NEAR_DUP_MAX_CANDIDATES slots within NEAR_DUP_MAX_DISTANCE bits, closest first, earliest on ties."""
        distances = np.bitwise_count(self._hashes[:self._size] ^ np.uint64(value))
        slots = np.flatnonzero(distances <= NEAR_DUP_MAX_DISTANCE)
        order = np.argsort(distances[slots], kind="stable")  # slots ascend, so ties stay earliest first
        return slots[order[:NEAR_DUP_MAX_CANDIDATES]]

    def add(self, value: int) -> int:
        if self._size == len(self._hashes):
            self._hashes = np.concatenate([self._hashes, np.zeros_like(self._hashes)])
            self._ids = np.concatenate([self._ids, np.zeros_like(self._ids)])
        self._hashes[self._size] = value
        self._size += 1
        return self._size - 1

    def item_id(self, slot: int) -> int:
        return int(self._ids[slot])

    def set_item_id(self, slot: int, item_id: int) -> None:
        self._ids[slot] = item_id


class NearDuplicateIndex:
    """Every known item's dHash, plus the conversions of the batch not yet committed.

    Items are addressed by slot, handed out by :meth:`add` before the item has an id;
    :meth:`set_item_id` fills the id in once its row is inserted.
    """

    def __init__(self, db: sqlite_utils.Database):
        self.db = db
        self.hashes = _HashIndex(db.execute(
            "SELECT id, dhash FROM items WHERE dhash IS NOT NULL ORDER BY id").fetchall())
        self.pending_pixels: dict[int, np.ndarray] = {}  # slot -> conversion, until its row is committed

    def find(self, image_hash: int, pixels: np.ndarray) -> int | None:
        """The hash candidate whose conversion is closest to ``pixels``, if within NEAR_DUP_MAX_PIXEL_DISTANCE."""
        slots, stack = self._candidate_pixels(self.hashes.candidates(image_hash).tolist())
        if not slots:
            return None
        distances = pixel_distance(pixels, stack, limit=NEAR_DUP_MAX_PIXEL_DISTANCE)
        best = int(np.argmin(distances))  # first of equals: the closer hash, then the earlier item
        return slots[best] if distances[best] <= NEAR_DUP_MAX_PIXEL_DISTANCE else None

    def add(self, image_hash: int, pixels: np.ndarray) -> int:
        """A slot for a new item; its conversion is held until :meth:`committed`."""
        slot = self.hashes.add(image_hash)
        self.pending_pixels[slot] = pixels
        return slot

    def item_id(self, slot: int) -> int:
        """The item id in ``slot``, 0 while that item is not committed."""
        return self.hashes.item_id(slot)

    def set_item_id(self, slot: int, item_id: int) -> None:
        self.hashes.set_item_id(slot, item_id)

    def committed(self) -> None:
        """The batch is in the database: read its conversions back from there from now on."""
        self.pending_pixels.clear()

    def _candidate_pixels(self, slots: list[int]) -> tuple[list[int], np.ndarray]:
        """Conversions of the items in ``slots``, in order, from the batch or the database.

        Read back per candidate rather than held for every item (784 bytes each: 78 MB
        at 100,000 items). A slot whose row has been deleted since is left out.
        """
        found = {slot: self.pending_pixels[slot] for slot in slots if slot in self.pending_pixels}
        slot_of_id = {self.hashes.item_id(slot): slot for slot in slots if slot not in found}
        if slot_of_id:
            marks = ",".join("?" * len(slot_of_id))
            for item_id, blob in self.db.execute(f"SELECT id, pixels FROM items WHERE id IN ({marks})",
                                                 list(slot_of_id)):
                found[slot_of_id[item_id]] = np.frombuffer(blob, np.uint8).reshape(28, 28)
        ordered = [slot for slot in slots if slot in found]
        return ordered, np.array([found[slot] for slot in ordered], np.uint8).reshape(-1, 28, 28)


def _neighbourhood_range(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest value in each pixel's 3x3 neighbourhood, for (..., H, W) images.

    Beyond the frame counts as black background: the object spans the conversion's
    longest side, so its edge pixels there shift as much as any other edge.
    """
    height, width = pixels.shape[-2:]
    padded = np.pad(pixels, [(0, 0)] * (pixels.ndim - 2) + [(1, 1), (1, 1)])
    windows = [padded[..., dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3)]
    return np.minimum.reduce(windows), np.maximum.reduce(windows)


def _mean_outside(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Mean (over the last two axes) of how far each value lies outside its [low, high] range."""
    return (np.maximum(low - values, 0) + np.maximum(values - high, 0)).mean(axis=(-2, -1))


def pixel_distance(pixels: np.ndarray, others: np.ndarray, limit: float = np.inf) -> np.ndarray:
    """Shift-tolerant distance between one 28x28 conversion and each of a stack of them.

    How far, in grey levels averaged over the image, each pixel of one image lies outside
    the range of the other image's 3x3 neighbourhood around it; the larger of the two
    directions. A copy's conversion is the same picture misplaced by up to a pixel or
    rescaled by a few percent (its object box moved by a pixel or two), which a plain
    pixel difference punishes at every edge; this distance forgives exactly that, while
    different garments still differ in shading, texture and shape by more than a pixel.

    Distances found to exceed ``limit`` in the cheap direction come back as infinity
    without the costly one (ranges around every candidate's pixels): in a crowded hash
    neighbourhood nearly all candidates are refused that way.
    """
    query = np.asarray(pixels, np.int16)
    stack = np.asarray(others, np.int16).reshape(-1, *query.shape)
    query_low, query_high = _neighbourhood_range(query)
    distances = _mean_outside(stack, query_low, query_high)
    distances[distances > limit] = np.inf
    close = np.flatnonzero(np.isfinite(distances))
    stack_low, stack_high = _neighbourhood_range(stack[close])
    distances[close] = np.maximum(distances[close], _mean_outside(query, stack_low, stack_high))
    return distances


def object_dhash(image: Image.Image, conversion: Conversion) -> int:
    """dHash of the object's bounding box (the whole image when nothing could be trimmed).

    Hashing whole product photos makes almost everything look alike: the plain backdrop
    contributes the same zero bits to every hash and centred garments share a silhouette
    at 9x8. On 600 synthetic photos of distinct Fashion-MNIST images, whole-image hashes
    put 88% of them within 4 bits of another photo; object-box hashes 5% (12% of 5,000,
    hence the pixel check after it). The price is recall: a one-pixel shift of the box
    moves every cell, so the box hash of 2% of copies is more than 6 bits from the original's.
    """
    return dhash(image.crop(conversion.bbox) if conversion.bbox is not None else image)
