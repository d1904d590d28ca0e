"""Near-duplicates: a perceptual hash picks candidates, a thumbnail comparison confirms them.

A near-duplicate is the same photo saved again: recompressed, resized, cropped a little or
made brighter or darker. Two steps find one:

1. the photo's 64-bit pHash (DCT of the whole image) picks earlier items within
   ``NEAR_DUP_MAX_DISTANCE`` bits: one XOR + popcount over one uint64 array of every item,
   the only per-item state kept between files, so memory stays bounded at 100,000 items;
2. each candidate (the closest ``NEAR_DUP_MAX_CANDIDATES``) is confirmed by
   :func:`similarity` of small colour thumbnails, the candidate's read back from its stored
   original (recent ones stay in a small cache).

Measured with ``benchmarks/bench_near_dups.py`` on 3,068 distinct real phone photos
(../shared/clothing-photos) and 2,100 edited copies of 300 of them; see benchmarks/README.md,
"Near-duplicates". The hash alone cannot do it: within 12 bits 20% of the distinct photos had a
neighbour (photos of one sender share a floor or a door), and the share grows with the database.
The 28x28 conversions, which the previous rule compared, change with brightness (8% of the
+-10% copies were caught) and flip between object box and whole photo between a copy and its
original.

The ``dhash`` column of items holds this pHash (signed 64-bit); databases whose column still
holds the earlier object-box dHash are rehashed from their stored originals once
(:func:`upgrade_hashes`).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import sqlite_utils
from PIL import Image
from scipy.fft import dctn

from activelearn import store
from activelearn.convert import normalize_image, open_for_conversion

#: Candidates: pHashes at most this many bits (of 64) apart. Copies lie within 4 bits after a
#: re-save, resize or +-10% brightness, a 3% crop per side within 12 bits for 98% (16 for 99%),
#: a 6% crop at a median 18: 12 keeps the candidates to about 1 per photo at 3,000 real photos.
NEAR_DUP_MAX_DISTANCE = 12
#: A candidate is a near-duplicate when :func:`similarity` is at least this. Copies of the real
#: photos score 0.996-1.000 at their 1st percentile (50% size: 0.991); distinct real photos within
#: 12 hash bits at most 0.970 of 1,726 pairs, apart from one photo the set holds twice (1.000);
#: distinct synthetic photos on one backdrop reach 0.98 for 0.1%. Not 0.985: an uneven crop
#: (3% left, 2% right) scores 0.984.
NEAR_DUP_MIN_SIMILARITY = 0.98
#: Candidates verified per photo, closest hashes first: each may cost decoding a stored original.
NEAR_DUP_MAX_CANDIDATES = 16
#: A candidate whose stored original cannot be read is taken on its hash alone within this many bits.
NEAR_DUP_UNVERIFIED_MAX_DISTANCE = 2
#: The value of the ``near_dup_hash`` setting once every item's hash is the pHash.
HASH_KIND = "phash-64"
HASH_SETTING = "near_dup_hash"

_HASH_SIDE = 32
_THUMB_SIDE = 48
#: Centre crops compared, as a share of each side: a copy cropped by up to 6% a side matches one of them.
_CROP_SCALES = (1.0, 0.97, 0.94, 0.91, 0.88)
#: Contrast ratio (standard deviations) allowed between a photo and a copy: brightness edits change it a
#: little, the same garment in another colour on the same backdrop a lot.
_CONTRAST_RANGE = (0.8, 1.25)
_CACHED_THUMBNAILS = 1024


def perceptual_hash(image: Image.Image) -> int:
    """64-bit pHash: signs of the 8x8 lowest DCT frequencies of the 32x32 grey image against their median."""
    grey = np.asarray(image.convert("L").resize((_HASH_SIDE, _HASH_SIDE), Image.Resampling.LANCZOS), np.float32)
    low = dctn(grey, norm="ortho")[:8, :8].ravel()
    bits = low > np.median(low)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def thumbnail(image: Image.Image) -> np.ndarray:
    """Centre crops of the photo at each of _CROP_SCALES, squeezed to 48x48 RGB: (scales, 48, 48, 3) uint8.

    What :func:`similarity` compares; cut from the decoded photo rather than from a small
    thumbnail, so that a crop of a few percent lines up to within a fraction of a pixel.
    """
    rgb = image.convert("RGB")
    width, height = rgb.size
    crops = []
    for scale in _CROP_SCALES:
        dx, dy = width * (1 - scale) / 2, height * (1 - scale) / 2
        crops.append(np.asarray(rgb.resize((_THUMB_SIDE, _THUMB_SIDE), Image.Resampling.BILINEAR,
                                           box=(dx, dy, width - dx, height - dy))))
    return np.stack(crops)


_INNER = slice(1, _THUMB_SIDE - 1)
_INNER_SIDE = _THUMB_SIDE - 2


def _unit(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectors (last axis) less their mean, scaled to length 1; and their lengths before scaling."""
    centred = vectors - vectors.mean(axis=-1, keepdims=True)
    norms = np.sqrt((centred * centred).sum(axis=-1))
    return centred / np.maximum(norms, 1e-3)[..., None], norms


def shifted_views(thumb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A photo's side of :func:`similarity`: each crop's inner 46x46 windows at the 9 one-pixel shifts.

    (crops, 9, n) unit vectors and (crops, 9) lengths; computed once per photo, not per candidate.
    """
    channels_first = thumb.astype(np.float32).transpose(0, 3, 1, 2)            # (crops, rgb, 48, 48)
    windows = np.lib.stride_tricks.sliding_window_view(channels_first, (_INNER_SIDE, _INNER_SIDE), axis=(2, 3))
    windows = windows.transpose(0, 2, 3, 1, 4, 5).reshape(len(thumb), 9, -1)   # (crops, shift, rgb*h*w)
    return _unit(windows)


def centred_view(thumb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A candidate's side of :func:`similarity`: each crop's inner 46x46, unshifted: (crops, n), (crops,)."""
    inner = thumb[:, _INNER, _INNER].astype(np.float32).transpose(0, 3, 1, 2).reshape(len(thumb), -1)
    return _unit(inner)


def best_correlation(views: tuple[np.ndarray, np.ndarray], centre: tuple[np.ndarray, np.ndarray]) -> float:
    """:func:`similarity` from one photo's :func:`shifted_views` and another's :func:`centred_view`."""
    windows, window_norms = views
    inner, inner_norms = centre
    # each crop of the first against the second whole, then the first whole against each crop of the second
    correlations = np.concatenate([(windows @ inner[0]).ravel(), (windows[0] @ inner[1:].T).ravel()])
    contrast = np.concatenate([(inner_norms[0] / np.maximum(window_norms, 1e-3)).ravel(),
                               (inner_norms[None, 1:] / np.maximum(window_norms[0][:, None], 1e-3)).ravel()])
    allowed = (contrast >= _CONTRAST_RANGE[0]) & (contrast <= _CONTRAST_RANGE[1])
    return float(np.where(allowed, correlations, -1.0).max())


def similarity(first: np.ndarray, second: np.ndarray) -> float:
    """How alike two photos' thumbnails are: the best correlation over small crops and one-pixel shifts.

    The Pearson correlation of the RGB values (brightness and contrast edits leave it near 1;
    another colour lowers it), over the pairings of a centre crop of either photo with the
    other whole (a copy cropped by a few percent a side lines up with one of them), each
    shifted by up to one pixel (2%) either way. A pairing whose contrast ratio (standard
    deviations) is outside _CONTRAST_RANGE does not count.
    """
    return best_correlation(shifted_views(first), centred_view(second))


def read_thumbnail(path: Path) -> np.ndarray | None:
    """Thumbnail of a stored original, decoded at reduced size; None when it cannot be read."""
    try:
        with open_for_conversion(path) as opened:
            return thumbnail(normalize_image(opened))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def as_signed64(value: int) -> int:
    """SQLite integers are signed 64-bit; hashes are unsigned."""
    return value - (1 << 64) if value >= (1 << 63) else value


def upgrade_hashes(db: sqlite_utils.Database, home: Path, chunk: int = 500) -> int:
    """Replace earlier hashes (object-box dHashes) by pHashes of the stored originals, once per database.

    Returns how many items were rehashed. An item whose original cannot be read loses its hash
    (it is then never a candidate) rather than keep one that means something else.
    """
    if store.get_setting(db, HASH_SETTING) == HASH_KIND:
        return 0
    rows = store.hashed_item_paths(db)
    for start in range(0, len(rows), chunk):
        updates = []
        for item_id, stored_path in rows[start:start + chunk]:
            value = None
            if stored_path:
                try:
                    with open_for_conversion(home / stored_path) as opened:
                        value = as_signed64(perceptual_hash(normalize_image(opened)))
                except (OSError, ValueError, Image.DecompressionBombError):
                    value = None
            updates.append((item_id, value))
        store.set_dhashes(db, updates)  # one transaction per chunk, so interactive writers interleave
    with store.transaction(db):
        store.set_setting(db, HASH_SETTING, HASH_KIND)
    return len(rows)


class _HashIndex:
    """pHashes of all known items in one growing uint64 array, searched with one XOR + popcount.

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

    def candidates(self, value: int) -> tuple[np.ndarray, np.ndarray]:
        """(slots, bit distances) of up to NEAR_DUP_MAX_CANDIDATES within NEAR_DUP_MAX_DISTANCE, closest first."""
        distances = np.bitwise_count(self._hashes[:self._size] ^ np.uint64(value))
        slots = np.flatnonzero(distances <= NEAR_DUP_MAX_DISTANCE)
        order = np.argsort(distances[slots], kind="stable")[:NEAR_DUP_MAX_CANDIDATES]  # ties: earliest first
        return slots[order], distances[slots[order]]

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
    """Every known item's pHash, plus thumbnails of the most recent items and of the open batch.

    Items are addressed by slot, handed out by :meth:`add` before the item has an id;
    :meth:`set_item_id` fills the id in once its row is inserted.
    """

    def __init__(self, db: sqlite_utils.Database, home: Path):
        self.db, self.home = db, Path(home)
        self.rehashed = upgrade_hashes(db, self.home)
        self.hashes = _HashIndex(store.item_dhashes(db))
        self._thumbnails: OrderedDict[int, np.ndarray | None] = OrderedDict()  # slot -> thumbnail, LRU

    def find(self, image_hash: int, thumb: np.ndarray) -> int | None:
        """The closest-hashed candidate (earliest on ties) that :func:`similarity` confirms, or None."""
        slots, distances = self.hashes.candidates(image_hash)
        views = shifted_views(thumb) if len(slots) else None
        for slot, distance in zip(slots.tolist(), distances.tolist()):
            other = self._thumbnail(slot)
            if other is None:
                if distance <= NEAR_DUP_UNVERIFIED_MAX_DISTANCE:
                    return slot
            elif best_correlation(views, centred_view(other)) >= NEAR_DUP_MIN_SIMILARITY:
                return slot
        return None

    def add(self, image_hash: int, thumb: np.ndarray) -> int:
        """A slot for a new item; its thumbnail is kept (the next photos may be its copies)."""
        slot = self.hashes.add(image_hash)
        self._remember(slot, thumb)
        return slot

    def item_id(self, slot: int) -> int:
        """The item id in ``slot``, 0 while that item is not committed."""
        return self.hashes.item_id(slot)

    def set_item_id(self, slot: int, item_id: int) -> None:
        self.hashes.set_item_id(slot, item_id)

    def _remember(self, slot: int, thumb: np.ndarray | None) -> None:
        self._thumbnails[slot] = thumb
        self._thumbnails.move_to_end(slot)
        while len(self._thumbnails) > _CACHED_THUMBNAILS:
            self._thumbnails.popitem(last=False)

    def _thumbnail(self, slot: int) -> np.ndarray | None:
        """A candidate's thumbnail from the cache, else from its stored original (None: unreadable or deleted)."""
        if slot in self._thumbnails:
            self._thumbnails.move_to_end(slot)
            return self._thumbnails[slot]
        stored_path = store.item_stored_path(self.db, self.item_id(slot))
        thumb = read_thumbnail(self.home / stored_path) if stored_path else None
        self._remember(slot, thumb)
        return thumb
