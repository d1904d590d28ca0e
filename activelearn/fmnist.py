"""Fashion-MNIST: fetch the four official files, verify them, parse them.

The model is only as trustworthy as its training data, so every file is
MD5-verified against the published checksums before use, downloads never
leave a partial file under the final name, and every failure is a
`DatasetError` that tells the user which file is wrong and what to do.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from tqdm import tqdm

from activelearn import FMNIST_CLASSES
from activelearn.errors import DatasetError

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"

#: The four official files with the MD5s published by Zalando Research.
OFFICIAL_MD5: dict[str, str] = {
    TRAIN_IMAGES: "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    TRAIN_LABELS: "25c81989df183df01b3e8a0aad5dffbe",
    TEST_IMAGES: "bef4ecab320f06d8554ea6380940ec79",
    TEST_LABELS: "bb300cfdad3c16e7a12a480ee83cd310",
}
OFFICIAL_FILES: tuple[str, ...] = tuple(OFFICIAL_MD5)

#: Official mirrors, tried in order.
MIRRORS: tuple[str, ...] = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)

IMAGE_SHAPE = (28, 28)

_IDX_UINT8 = 0x08
_IDX_NDIMS = {1: "labels", 3: "images"}  # the only layouts Fashion-MNIST uses
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20

# (path, size, mtime_ns) -> MD5 hex: re-verifying 30 MB on every load of the
# same unchanged file within one process buys nothing.
_md5_cache: dict[tuple[str, int, int], str] = {}
_log = logging.getLogger(__name__)


# --------------------------------------------------------------------- IDX

def _open_idx(path: Path) -> BinaryIO:
    """Open plain or gzip'd IDX transparently, choosing by content, not name."""
    with open(path, "rb") as probe:
        is_gzip = probe.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if is_gzip else open(path, "rb")


def _read_into(stream: BinaryIO, buffer: memoryview) -> int:
    """Fill `buffer` from `stream`; gzip streams return short reads, so loop."""
    filled = 0
    while filled < len(buffer):
        got = stream.readinto(buffer[filled:])
        if not got:
            break
        filled += got
    return filled


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (labels: 1-D, images: 3-D).

    Reads straight into the result array so a 47 MB image file costs one
    buffer, and rejects anything that is not exactly header + declared data.
    """
    path = Path(path)
    try:
        with _open_idx(path) as stream:
            header = stream.read(4)
            if len(header) < 4:
                raise DatasetError(f"{path}: truncated IDX file (no complete header)")
            zero_a, zero_b, type_code, ndim = header
            if zero_a or zero_b or type_code != _IDX_UINT8 or ndim not in _IDX_NDIMS:
                raise DatasetError(
                    f"{path}: wrong magic number 0x{header.hex()} "
                    "(expected 0x00000801 for labels or 0x00000803 for images); "
                    "not a Fashion-MNIST IDX file")
            raw_dims = stream.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise DatasetError(f"{path}: truncated IDX file (header ends inside the dimensions)")
            dims = tuple(int(d) for d in np.frombuffer(raw_dims, dtype=">u4"))
            try:
                data = np.empty(dims, dtype=np.uint8)
            except (MemoryError, ValueError) as exc:
                raise DatasetError(f"{path}: header declares impossible dimensions {dims}; "
                                   "the file is corrupt") from exc
            filled = _read_into(stream, memoryview(data).cast("B"))
            if filled < data.size:
                raise DatasetError(f"{path}: truncated IDX file: header declares {dims} = "
                                   f"{data.size} bytes of data, found only {filled}")
            if stream.read(1):
                raise DatasetError(f"{path}: trailing garbage after the {data.size} bytes "
                                   f"of data declared by the header {dims}")
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: file not found") from exc
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: bad gzip stream ({exc or type(exc).__name__}); "
                           "the file is corrupt or incomplete") from exc
    return data


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array (1-D labels or 3-D images) as gzip'd IDX.

    Written through a temporary file and renamed, so readers never see half a
    file; gzip mtime is fixed so identical arrays give identical bytes (and MD5s).
    """
    path = Path(path)
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"write_idx needs a uint8 array, got {array.dtype}")
    if array.ndim not in _IDX_NDIMS:
        raise ValueError(f"write_idx writes 1-D labels or 3-D images, got {array.ndim}-D")
    header = bytes([0, 0, _IDX_UINT8, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
            gz.write(header)
            gz.write(np.ascontiguousarray(array).tobytes())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- download

def _md5_of(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _md5_cache:
        digest = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        _md5_cache[key] = digest.hexdigest()
    return _md5_cache[key]


def _manual_fix() -> str:
    """The fix, after a message that names the folder and the missing files."""
    return ("Put them there, or point --fmnist-dir / ACTIVELEARN_FMNIST_DIR at a folder that holds them "
            "(from https://github.com/zalandoresearch/fashion-mnist).")


def _download_once(url: str, target: Path, expected_md5: str, timeout: float,
                   progress: bool) -> None:
    """Fetch `url` into a temporary file next to `target`, verify, then rename.

    The rename is the only step that creates `target`, so an interrupted or
    corrupt download can never be mistaken for a good file later.
    """
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            with tqdm(total=int(length) if length and length.isdigit() else None,
                      unit="B", unit_scale=True, desc=target.name, leave=False,
                      disable=not progress) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != expected_md5:
            raise DatasetError(f"MD5 mismatch: got {actual}, expected {expected_md5}")
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _download(name: str, directory: Path, expected_md5: str, mirrors: Sequence[str],
              timeout: float, retries: int, progress: bool) -> None:
    """Try each mirror up to `retries` times; raise one short line, logging every failed URL.

    An offline user needs what is missing and where it goes, not a wall of
    repeated URLs; the attempts stay in the log (the job's log file) for debugging.
    """
    reasons: dict[str, None] = {}   # distinct reasons, in order
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        for attempt in range(1, retries + 1):
            try:
                _download_once(url, directory / name, expected_md5, timeout, progress)
                return
            except urllib.error.HTTPError as exc:
                reason = f"HTTP {exc.code} {exc.reason}"
                _log.warning("Fashion-MNIST download failed: %s: %s", url, reason)
                reasons[reason] = None
                if 400 <= exc.code < 500:
                    break  # the mirror does not have it; asking again will not help
            except (OSError, http.client.HTTPException, ValueError, DatasetError) as exc:
                reason = str(getattr(exc, "reason", None) or exc)
                _log.warning("Fashion-MNIST download failed: %s: %s", url, reason)
                reasons[reason] = None
            if attempt < retries:
                time.sleep(attempt)
    missing = [n for n in OFFICIAL_FILES if not (directory / n).is_file()]
    hosts = ", ".join(dict.fromkeys(urllib.parse.urlsplit(m).netloc for m in mirrors))
    why = f"download from {hosts} failed: {'; '.join(reasons)}" if mirrors else "no download mirrors given"
    raise DatasetError(f"Fashion-MNIST files missing from {directory}: {', '.join(missing)} ({why}). "
                       + _manual_fix())


def ensure_files(directory: str | os.PathLike, *, download: bool = True,
                 mirrors: Sequence[str] = MIRRORS, checksums: Mapping[str, str] = OFFICIAL_MD5,
                 timeout: float = 30, retries: int = 3, progress: bool = True) -> dict[str, Path]:
    """Make sure the four files are in `directory` and match `checksums`.

    Existing files are verified first, so a corrupt file is reported before
    any time is spent downloading; missing ones are fetched when `download`.
    `retries` is the number of attempts per mirror. Returns name -> path.
    """
    directory = Path(directory)
    absent = [name for name in OFFICIAL_FILES if name not in checksums]
    if absent:
        raise ValueError(f"checksums lacks an MD5 for {', '.join(absent)}")
    paths = {name: directory / name for name in OFFICIAL_FILES}
    missing = [name for name, path in paths.items() if not path.is_file()]
    for name, path in paths.items():
        if name in missing:
            continue
        actual = _md5_of(path)
        if actual != checksums[name]:
            raise DatasetError(
                f"{path} does not match the official file: MD5 is {actual}, expected "
                f"{checksums[name]}. Delete it (it will be downloaded again) or replace it "
                "with the official file.")
    if missing and not download:
        raise DatasetError(f"Fashion-MNIST files missing from {directory}: "
                           f"{', '.join(missing)}. " + _manual_fix())
    if missing:
        directory.mkdir(parents=True, exist_ok=True)
    for name in missing:
        _download(name, directory, checksums[name], mirrors, timeout, retries, progress)
    return paths


# ------------------------------------------------------------------ loading

@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays field-wise is ambiguous
class FashionMNIST:
    """The official train/test split as uint8 arrays, exactly as published."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...] = FMNIST_CLASSES


def _read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one split and check that images and labels belong together."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DatasetError(f"{images_path}: expected 28x28 images, got an array of shape "
                           f"{images.shape}")
    if labels.ndim != 1:
        raise DatasetError(f"{labels_path}: expected 1-D labels, got shape {labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(f"count mismatch: {images_path} holds {len(images)} images but "
                           f"{labels_path} holds {len(labels)} labels")
    if labels.size and labels.max() >= len(FMNIST_CLASSES):
        raise DatasetError(f"{labels_path}: label {int(labels.max())} out of range 0.."
                           f"{len(FMNIST_CLASSES) - 1}")
    return images, labels


def load_fashion_mnist(directory: str | os.PathLike, *, download: bool = True,
                       checksums: Mapping[str, str] = OFFICIAL_MD5,
                       progress: bool = True) -> FashionMNIST:
    """Verified Fashion-MNIST from `directory`, downloading missing files if allowed."""
    paths = ensure_files(directory, download=download, checksums=checksums, progress=progress)
    x_train, y_train = _read_pair(paths[TRAIN_IMAGES], paths[TRAIN_LABELS])
    x_test, y_test = _read_pair(paths[TEST_IMAGES], paths[TEST_LABELS])
    return FashionMNIST(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def validation_split(y: np.ndarray, n_val: int = 5000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded split of training indices into (train_idx, val_idx).

    Early stopping needs a validation set drawn from the training data (the
    test set is never used for selection); stratifying keeps every class's
    share equal in both parts, and the seed keeps runs comparable.
    Per-class sizes use largest remainders so they sum to exactly `n_val`.
    """
    y = np.asarray(y)
    if not 0 < n_val < len(y):
        raise ValueError(f"n_val must be between 1 and {len(y) - 1}, got {n_val}")
    classes, counts = np.unique(y, return_counts=True)
    quotas = counts * n_val / len(y)
    per_class = np.floor(quotas).astype(np.int64)
    shortfall = n_val - int(per_class.sum())
    per_class[np.argsort(-(quotas - per_class), kind="stable")[:shortfall]] += 1
    rng = np.random.default_rng(seed)
    val_parts = [rng.permutation(np.flatnonzero(y == cls))[:k] for cls, k in zip(classes, per_class)]
    val_idx = np.sort(np.concatenate(val_parts))
    train_mask = np.ones(len(y), dtype=bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask), val_idx
