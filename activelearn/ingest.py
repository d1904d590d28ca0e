"""Import scraped photos into labels.db without trusting them.

Inputs are folders (walked recursively), .zip / .tar(.gz|.bz2|.xz) archives, loose
files (what the UI uploads), .txt / .csv lists of image URLs, and bare http(s) URLs.
Every file is treated as hostile until proven an image: sizes are capped before
reading, archive members are read as streams and never extracted (so `../evil.jpg`,
absolute names, links and device files cannot touch the disk), only common photo
formats are decoded, Pillow verifies the file and a per-call pixel limit stops
decompression bombs. One bad file becomes one
line in the report; the rest of the import goes on.

Each accepted file is copied, by content hash, under ``<home>/data/images`` and its
row (plus a pre-label from its folder, if asked) is written inside a savepoint, so a
crash can leave an orphan image file but never a half-written item. Rows are
committed in batches because one SQLite commit per photo would halve throughput;
the write lock is held only while a prepared batch is inserted, not while decoding.

Only hashes are kept between files (a set of SHA-256 strings and one uint64 array of
dHashes), so memory stays bounded for 100,000-file imports. A near-duplicate is found in
two steps: the object's dHash picks candidates cheaply, then their 28x28 conversions, read
back from the database, confirm or refuse them (see ``NEAR_DUP_MAX_PIXEL_DISTANCE``).

Image copies are not fsync'ed (that costs ~2.5 ms per photo here, more than decoding):
a process crash is safe, but after an OS crash or power loss an item committed just
before may point at an empty copy. Its 28x28 pixels, which the model uses, live in the
database; re-importing the source rewrites the copy.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import socket
import sqlite3
import stat
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import sqlite_utils
from PIL import Image, UnidentifiedImageError

from activelearn import __version__, store
from activelearn.config import Paths
from activelearn.convert import Conversion, dhash, normalize_image, open_for_conversion, to_fmnist
from activelearn.errors import ActiveLearnError, ImportRejected

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
#: Rows inserted per commit.
COMMIT_EVERY = 200

_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_URL_LIST_SUFFIXES = (".txt", ".csv")
_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "TIFF": "tif"}
Image.init()
#: Photo formats accepted. Pillow would also open EPS (by running Ghostscript on the
#: file) and dozens of legacy formats; none is a product photo, all widen the attack surface.
IMAGE_FORMATS = tuple(f for f in ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO", "AVIF") if f in Image.OPEN)
_MB = 1024 * 1024


@dataclass(frozen=True)
class ImportLimits:
    """Resource caps for one import; a file over a cap is rejected, not truncated."""

    max_file_bytes: int = 25 * _MB
    max_import_bytes: int = 2 * 1024 * _MB
    #: Decompression-bomb limit, applied per call rather than via Pillow's global.
    max_pixels: int = 40_000_000
    #: Seconds allowed for connecting and for each read of a URL download.
    url_timeout_s: float = 10.0
    #: Seconds allowed for a whole URL download, so a server dripping bytes cannot stall the import.
    url_total_s: float = 60.0
    max_url_bytes: int = 25 * _MB


@dataclass(frozen=True)
class Rejected:
    file: str
    reason: str


@dataclass
class ImportReport:
    """What an import did; `as_dict` is what `import --json` prints."""

    added: int = 0
    duplicates: int = 0
    near_duplicates: int = 0
    labeled: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    added_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "added": self.added,
            "duplicates": self.duplicates,
            "near_duplicates": self.near_duplicates,
            "labeled": self.labeled,
            "rejected": [{"file": r.file, "reason": r.reason} for r in self.rejected],
            "warnings": list(self.warnings),
        }


ProgressCallback = Callable[[int, int | None], None]


def import_paths(
    inputs: Sequence[str | os.PathLike] | str | os.PathLike,
    *,
    paths: Paths,
    label_from_folders: bool = False,
    holdout_fraction: float = 0.1,
    seed: int = 0,
    source: str | None = None,
    annotator: str = "import",
    limits: ImportLimits = ImportLimits(),
    progress: ProgressCallback | None = None,
    commit_every: int = COMMIT_EVERY,
) -> ImportReport:
    """Import images from folders, archives, files, URL lists or URLs into ``paths.db``.

    ``source`` overrides the recorded source of every item (the UI passes "upload");
    by default it follows the input: folder, archive, url, or upload for loose files.
    With ``label_from_folders`` the parent folder of each new file names its class
    (case-insensitive; "T-shirt_top" matches "T-shirt/top") and a ``confirm`` event by
    ``annotator`` is recorded. A folder that names no class does not block the file:
    it is imported unlabeled and the report carries one warning per such folder.
    A deterministic share ``holdout_fraction`` of new items (decided by ``seed`` and
    the file's SHA-256, so re-imports agree) goes to the holdout split.
    ``progress(done, total)`` is called after each file; total is None when unknown.
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise ActiveLearnError(f"holdout fraction must be at least 0 and below 1, got {holdout_fraction}")
    if source is not None and source not in store.SOURCES:
        raise ActiveLearnError(f"unknown source {source!r}; use one of {', '.join(store.SOURCES)}")
    if commit_every < 1:
        raise ActiveLearnError("commit_every must be at least 1")

    if isinstance(inputs, (str, os.PathLike)):  # one path, not a sequence of characters
        inputs = [inputs]
    db = store.open_db(paths.db)
    report = ImportReport()
    importer = _Importer(db, paths, report, label_from_folders=label_from_folders,
                         holdout_fraction=holdout_fraction, seed=seed, annotator=annotator,
                         limits=limits)
    total = _count_inputs(inputs) if progress is not None else None
    done = 0
    for entry in _iter_inputs(inputs, source, limits):
        if isinstance(entry, Rejected):
            report.rejected.append(entry)
        else:
            importer.process(entry)
        if len(importer.pending) >= commit_every:
            importer.flush()
        done += 1
        if progress is not None:
            progress(done, total)
    importer.flush()
    report.warnings.extend(importer.folder_warnings())
    return report


# ---------------------------------------------------------------- reading inputs

@dataclass(frozen=True)
class _Candidate:
    """One file's bytes and where they came from."""

    display_name: str          # shown in the report
    original_name: str         # stored with the item
    source: str
    folder: str | None         # parent folder name: the class hint
    data: bytes


class _ImportBudgetSpent(Exception):
    """Raised inside the input walk when the per-import byte cap is reached."""

    def __init__(self, display_name: str):
        super().__init__(display_name)
        self.display_name = display_name


class _Budget:
    def __init__(self, limit: int):
        self.limit, self.used = limit, 0

    def charge(self, display_name: str, size: int) -> None:
        if self.used + size > self.limit:
            raise _ImportBudgetSpent(display_name)
        self.used += size


def _iter_inputs(inputs: Sequence[str | os.PathLike], source: str | None,
                 limits: ImportLimits) -> Iterator[_Candidate | Rejected]:
    """Every file of every input, lazily, as a candidate or a rejection."""
    budget = _Budget(limits.max_import_bytes)
    try:
        for item in inputs:
            text = os.fspath(item)
            if _is_url(text):
                yield from _iter_urls([text], source or "url", limits, budget)
                continue
            path = Path(text)
            if path.is_dir():
                yield from _iter_folder(path, source or "folder", limits, budget)
            elif not path.exists():
                yield Rejected(text, "no such file or folder")
            elif _has_suffix(path, _ARCHIVE_SUFFIXES):
                archive = _iter_zip if path.name.lower().endswith(".zip") else _iter_tar
                yield from archive(path, source or "archive", limits, budget)
            elif _has_suffix(path, _URL_LIST_SUFFIXES):
                yield from _iter_url_list(path, source or "url", limits, budget)
            else:
                yield _read_local_file(path, text, path.name, source or "upload", limits, budget)
    except _ImportBudgetSpent as spent:
        yield Rejected(spent.display_name, f"import size limit of {_size(limits.max_import_bytes)} "
                       "reached: this and later files were not imported")


def _has_suffix(path: Path, suffixes: Sequence[str]) -> bool:
    return path.name.lower().endswith(tuple(suffixes))


def _is_url(text: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text) is not None


def _size(n: int) -> str:
    return f"{n / _MB:.1f} MB" if n >= _MB else f"{n:,} bytes"


def _too_large(size: int, limit: int) -> str:
    return f"file too large: {_size(size)} is over the {_size(limit)} limit"


def _skipped_name(name: str) -> bool:
    """System clutter (.DS_Store, AppleDouble ._files, __MACOSX/) is skipped without a report line."""
    return any((part.startswith(".") and part not in (".", "..")) or part == "__MACOSX"
               for part in re.split(r"[\\/]", name))


def _iter_folder(root: Path, source: str, limits: ImportLimits,
                 budget: _Budget) -> Iterator[_Candidate | Rejected]:
    """Walk in sorted order (stable reports); symlinked folders are not followed (no loops)."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _skipped_name(d))
        for name in sorted(files):
            if _skipped_name(name):
                continue
            path = Path(folder) / name
            yield _read_local_file(path, str(path), path.relative_to(root).as_posix(), source,
                                   limits, budget)


def _read_local_file(path: Path, display_name: str, original_name: str, source: str,
                     limits: ImportLimits, budget: _Budget) -> _Candidate | Rejected:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block the read for ever
            return Rejected(display_name, "not a regular file")
        if info.st_size > limits.max_file_bytes:
            return Rejected(display_name, _too_large(info.st_size, limits.max_file_bytes))
        budget.charge(display_name, info.st_size)
        with open(path, "rb") as stream:
            data = stream.read(limits.max_file_bytes + 1)
    except OSError as exc:
        return Rejected(display_name, f"cannot read: {exc.strerror or exc}")
    if len(data) > limits.max_file_bytes:  # grew since stat
        return Rejected(display_name, _too_large(len(data), limits.max_file_bytes))
    return _Candidate(display_name, original_name, source, path.parent.name or None, data)


def _unsafe_member_name(name: str) -> str | None:
    """Why an archive member name could escape an extraction folder (zip-slip), or None."""
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return f"unsafe archive member (absolute path): {name}"
    if ".." in re.split(r"[\\/]", name):
        return f"unsafe archive member ('..' in path): {name}"
    return None


def _member_folder(name: str) -> str | None:
    parent = PurePosixPath(name.replace("\\", "/")).parent.name
    return parent or None


def _iter_zip(path: Path, source: str, limits: ImportLimits,
              budget: _Budget) -> Iterator[_Candidate | Rejected]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        yield Rejected(str(path), f"not a readable zip archive: {exc}")
        return
    with archive:
        for info in archive.infolist():
            name = info.filename
            display = f"{path}:{name}"
            mode = info.external_attr >> 16
            refusal = _unsafe_member_name(name)
            if refusal is None and (info.is_dir() or _skipped_name(name)):
                continue
            if refusal is None and stat.S_ISLNK(mode):
                refusal = f"link member refused: {name}"
            elif refusal is None and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                                      or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
                refusal = f"device or special file refused: {name}"
            elif refusal is None and info.flag_bits & 0x1:
                refusal = "encrypted archive member"
            elif refusal is None and info.file_size > limits.max_file_bytes:
                refusal = _too_large(info.file_size, limits.max_file_bytes)
            if refusal is not None:
                yield Rejected(display, refusal)
                continue
            budget.charge(display, info.file_size)
            try:
                with archive.open(info) as stream:
                    data = stream.read(limits.max_file_bytes + 1)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError) as exc:
                yield Rejected(display, f"unreadable archive member: {exc}")
                continue
            if len(data) > limits.max_file_bytes:  # the header understated the size
                yield Rejected(display, _too_large(len(data), limits.max_file_bytes))
                continue
            yield _Candidate(display, name, source, _member_folder(name), data)


def _iter_tar(path: Path, source: str, limits: ImportLimits,
              budget: _Budget) -> Iterator[_Candidate | Rejected]:
    """Stream the archive once, member by member (a .tar.gz cannot be seeked cheaply)."""
    try:
        archive = tarfile.open(path, mode="r|*")
    except (tarfile.TarError, OSError) as exc:
        yield Rejected(str(path), f"not a readable tar archive: {exc}")
        return
    with archive:
        while True:
            try:
                member = archive.next()
            except (tarfile.TarError, OSError, EOFError) as exc:
                yield Rejected(str(path), f"archive damaged, later members not read: {exc}")
                return
            if member is None:
                return
            archive.members.clear()  # TarFile keeps every header otherwise: unbounded memory
            name = member.name
            display = f"{path}:{name}"
            refusal = _unsafe_member_name(name)
            if refusal is None and (member.isdir() or _skipped_name(name)):
                continue
            if refusal is None and (member.issym() or member.islnk()):
                refusal = f"link member refused: {name} -> {member.linkname}"
            elif refusal is None and (member.ischr() or member.isblk() or member.isfifo()):
                refusal = f"device or special file refused: {name}"
            elif refusal is None and not member.isreg():
                refusal = f"not a regular file: {name}"
            elif refusal is None and member.size > limits.max_file_bytes:
                refusal = _too_large(member.size, limits.max_file_bytes)
            if refusal is not None:
                yield Rejected(display, refusal)
                continue
            budget.charge(display, member.size)
            try:
                stream = archive.extractfile(member)
                data = stream.read(limits.max_file_bytes + 1) if stream is not None else b""
            except (tarfile.TarError, OSError, EOFError) as exc:
                yield Rejected(display, f"archive damaged, later members not read: {exc}")
                return
            yield _Candidate(display, name, source, _member_folder(name), data)


def _iter_url_list(path: Path, source: str, limits: ImportLimits,
                   budget: _Budget) -> Iterator[_Candidate | Rejected]:
    try:
        urls = list(_read_url_list(path)) if path.stat().st_size <= limits.max_file_bytes else None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        yield Rejected(str(path), f"cannot read URL list: {exc}")
        return
    if urls is None:
        yield Rejected(str(path), _too_large(path.stat().st_size, limits.max_file_bytes))
        return
    yield from _iter_urls(urls, source, limits, budget)


def _read_url_list(path: Path) -> Iterator[str]:
    """URLs from a .txt (one per line, # comments) or a .csv (a `url` column, else the first)."""
    with open(path, newline="", encoding="utf-8-sig") as stream:
        if path.name.lower().endswith(".txt"):
            for line in stream:
                line = line.strip()
                if line and not line.startswith("#"):
                    yield line
            return
        rows = csv.reader(stream)
        header = next(rows, None)
        if header is None:
            return
        lowered = [cell.strip().lower() for cell in header]
        column = lowered.index("url") if "url" in lowered else 0
        if "url" not in lowered and header and header[0].strip():
            yield header[0].strip()
        for row in rows:
            if len(row) > column and row[column].strip():
                yield row[column].strip()


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s): a list of URLs must not reach file:// or ftp://."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - urllib's signature
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise urllib.error.HTTPError(newurl, code, f"redirect to a non-http URL refused: {newurl}",
                                         headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_opener = urllib.request.build_opener(_HttpOnlyRedirects)


def _iter_urls(urls: Sequence[str], source: str, limits: ImportLimits,
               budget: _Budget) -> Iterator[_Candidate | Rejected]:
    for url in urls:
        try:
            data = _fetch(url, limits)
        except ImportRejected as exc:
            yield Rejected(url, str(exc))
            continue
        budget.charge(url, len(data))
        yield _Candidate(url, url, source, None, data)


def _fetch(url: str, limits: ImportLimits) -> bytes:
    """Download one URL into memory, enforcing the scheme, timeouts and a byte cap while streaming."""
    if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
        raise ImportRejected("only http and https URLs are fetched")
    request = urllib.request.Request(url, headers={"User-Agent": f"activelearn/{__version__}"})
    deadline = time.monotonic() + limits.url_total_s
    try:
        with _opener.open(request, timeout=limits.url_timeout_s) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limits.max_url_bytes:
                raise ImportRejected(_too_large(int(declared), limits.max_url_bytes))
            chunks, received = [], 0
            while chunk := response.read(64 * 1024):
                received += len(chunk)
                if received > limits.max_url_bytes:
                    raise ImportRejected(f"download too large: over the {_size(limits.max_url_bytes)} limit")
                if time.monotonic() > deadline:
                    raise ImportRejected(f"download took longer than {limits.url_total_s:g} s")
                chunks.append(chunk)
    except urllib.error.HTTPError as exc:
        raise ImportRejected(f"download failed: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise ImportRejected(f"download failed: {exc.reason}") from exc
    except (TimeoutError, socket.timeout) as exc:
        raise ImportRejected(f"download timed out after {limits.url_timeout_s:g} s") from exc
    except (OSError, ValueError) as exc:  # connection reset, malformed URL or response
        raise ImportRejected(f"download failed: {exc}") from exc
    return b"".join(chunks)


def _count_inputs(inputs: Sequence[str | os.PathLike]) -> int | None:
    """How many files the walk will visit, when that is cheap to know (not for tar streams)."""
    total = 0
    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        if _is_url(text) or not path.exists():
            total += 1
        elif path.is_dir():
            total += sum(1 for folder, dirs, files in os.walk(path)
                         if not _skipped_name(os.path.relpath(folder, path).replace(os.sep, "/"))
                         for name in files if not _skipped_name(name))
        elif path.name.lower().endswith(".zip"):
            try:
                with zipfile.ZipFile(path) as archive:
                    total += sum(1 for info in archive.infolist()
                                 if not info.is_dir() and not _skipped_name(info.filename))
            except (zipfile.BadZipFile, OSError):
                total += 1
        elif _has_suffix(path, _ARCHIVE_SUFFIXES):
            return None
        elif _has_suffix(path, _URL_LIST_SUFFIXES):
            try:
                total += sum(1 for _ in _read_url_list(path))
            except (OSError, UnicodeDecodeError, csv.Error):
                total += 1
        else:
            total += 1
    return total


# ---------------------------------------------------------------- decoding

@dataclass(frozen=True)
class _Decoded:
    image: Image.Image     # normalised RGB, possibly reduced by the JPEG decoder
    width: int             # of the original
    height: int
    format: str


def _decode(data: bytes, limits: ImportLimits) -> _Decoded:
    """Verify and decode untrusted bytes; every Pillow failure becomes an ImportRejected.

    ``verify`` leaves the image unusable, so the file is opened twice; the first open
    only parses headers (about 0.02 ms for a JPEG), the second decodes at reduced size.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as probe:
                width, height = probe.size
                image_format = probe.format or "unknown"
                if width * height > limits.max_pixels:
                    raise ImportRejected(f"decompression bomb: {width}x{height} = {width * height:,} "
                                         f"pixels is over the {limits.max_pixels:,} limit")
                probe.verify()
            image = normalize_image(open_for_conversion(io.BytesIO(data)))
        except ImportRejected:
            raise
        except UnidentifiedImageError as exc:
            raise ImportRejected(f"not an image: not one of {', '.join(IMAGE_FORMATS)}") from exc
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImportRejected(f"decompression bomb: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - any decoder failure on untrusted bytes means a bad file
            raise ImportRejected(f"corrupt image: {exc or type(exc).__name__}") from exc
    return _Decoded(image, width, height, image_format)


# ---------------------------------------------------------------- near duplicates

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


def _object_dhash(image: Image.Image, conversion: Conversion) -> int:
    """dHash of the object's bounding box (the whole image when nothing could be trimmed).

    Hashing whole product photos makes almost everything look alike: the plain backdrop
    contributes the same zero bits to every hash and centred garments share a silhouette
    at 9x8. On 600 synthetic photos of distinct Fashion-MNIST images, whole-image hashes
    put 88% of them within 4 bits of another photo; object-box hashes 5% (12% of 5,000,
    hence the pixel check after it). The price is recall: a one-pixel shift of the box
    moves every cell, so the box hash of 2% of copies is more than 6 bits from the original's.
    """
    return dhash(image.crop(conversion.bbox) if conversion.bbox is not None else image)


def _signed64(value: int) -> int:
    """SQLite integers are signed 64-bit; dHashes are unsigned."""
    return value - (1 << 64) if value >= (1 << 63) else value


# ---------------------------------------------------------------- importing

@dataclass(frozen=True)
class _PendingItem:
    sha256: str
    slot: int
    near_dup_slot: int | None
    class_id: int | None
    fields: dict


def _folder_key(name: str) -> str:
    """Compare folder and class names ignoring case and punctuation: "T-shirt_top" ~ "T-shirt/top"."""
    return re.sub(r"[^0-9a-z]+", "", name.casefold())


def _class_lookup(db: sqlite_utils.Database) -> dict[str, int]:
    """Folder-name keys -> class id; a loose key two classes share is dropped (exact names still match)."""
    lookup: dict[str, int] = {}
    loose = Counter(_folder_key(c.name) for c in store.list_classes(db))
    for info in store.list_classes(db):
        lookup[info.name.casefold()] = info.id
        key = _folder_key(info.name)
        if loose[key] == 1:
            lookup.setdefault(key, info.id)
    return lookup


def _in_holdout(sha256: str, seed: int, fraction: float) -> bool:
    digest = hashlib.sha256(f"{seed}:{sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2.0 ** 64


def _store_original(paths: Paths, sha256: str, image_format: str, data: bytes) -> Path:
    """Copy bytes to images/<sha[:2]>/<sha>.<ext> via a temp file and an atomic rename."""
    extension = _EXTENSIONS.get(image_format, image_format.lower())
    target = paths.images / sha256[:2] / f"{sha256}.{extension}"
    if target.is_file() and target.stat().st_size == len(data):
        return target  # left by an earlier, interrupted import; content-addressed, so identical
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(temp, "wb") as stream:
            stream.write(data)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target


class _Importer:
    """State of one import: the known hashes, the batch waiting for its commit, the report."""

    def __init__(self, db: sqlite_utils.Database, paths: Paths, report: ImportReport, *,
                 label_from_folders: bool, holdout_fraction: float, seed: int, annotator: str,
                 limits: ImportLimits):
        self.db, self.paths, self.report = db, paths, report
        self.label_from_folders, self.holdout_fraction, self.seed = label_from_folders, holdout_fraction, seed
        self.annotator, self.limits = annotator, limits
        self.classes = _class_lookup(db) if label_from_folders else {}
        self.known_sha = {row[0] for row in db.execute("SELECT sha256 FROM items")}
        self.hashes = _HashIndex(db.execute(
            "SELECT id, dhash FROM items WHERE dhash IS NOT NULL ORDER BY id").fetchall())
        self.pending: list[_PendingItem] = []
        self.pending_pixels: dict[int, np.ndarray] = {}  # slot -> conversion, until its row is committed
        self.unlabeled_folders: Counter = Counter()

    def process(self, candidate: _Candidate) -> None:
        """Hash, verify, convert and copy one file, then queue its row; bad files go to the report."""
        sha256 = hashlib.sha256(candidate.data).hexdigest()
        if sha256 in self.known_sha:
            self.report.duplicates += 1
            return
        try:
            decoded = _decode(candidate.data, self.limits)
        except ImportRejected as exc:
            self.report.rejected.append(Rejected(candidate.display_name, str(exc)))
            return
        conversion = to_fmnist(decoded.image)
        image_hash = _object_dhash(decoded.image, conversion)
        near_dup_slot = self._near_duplicate_slot(image_hash, conversion.pixels)
        stored = _store_original(self.paths, sha256, decoded.format, candidate.data)
        self.known_sha.add(sha256)
        split = "holdout" if _in_holdout(sha256, self.seed, self.holdout_fraction) else "pool"
        slot = self.hashes.add(image_hash)
        self.pending_pixels[slot] = conversion.pixels
        self.pending.append(_PendingItem(
            sha256=sha256,
            slot=slot,
            near_dup_slot=near_dup_slot,
            class_id=self._class_of(candidate.folder),
            fields=dict(
                sha256=sha256, source=candidate.source, original_name=candidate.original_name,
                stored_path=stored.relative_to(self.paths.home).as_posix(),
                width=decoded.width, height=decoded.height, format=decoded.format, split=split,
                pixels=np.ascontiguousarray(conversion.pixels), dhash=_signed64(image_hash),
                flags=",".join(conversion.flags)),
        ))

    def _near_duplicate_slot(self, image_hash: int, pixels: np.ndarray) -> int | None:
        """The hash candidate whose conversion is closest to ``pixels``, if within NEAR_DUP_MAX_PIXEL_DISTANCE."""
        slots, stack = self._candidate_pixels(self.hashes.candidates(image_hash).tolist())
        if not slots:
            return None
        distances = pixel_distance(pixels, stack, limit=NEAR_DUP_MAX_PIXEL_DISTANCE)
        best = int(np.argmin(distances))  # first of equals: the closer hash, then the earlier item
        return slots[best] if distances[best] <= NEAR_DUP_MAX_PIXEL_DISTANCE else None

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

    def _class_of(self, folder: str | None) -> int | None:
        if not self.label_from_folders:
            return None
        class_id = None
        if folder is not None:
            class_id = self.classes.get(folder.casefold(), self.classes.get(_folder_key(folder)))
        if class_id is None:
            self.unlabeled_folders[folder] += 1
        return class_id

    def flush(self) -> None:
        """Insert the queued rows in one transaction, each inside its own savepoint."""
        if not self.pending:
            return
        added: list[tuple[int, bool, bool]] = []
        with store.transaction(self.db):
            for item in self.pending:
                near_dup_of = None if item.near_dup_slot is None else self.hashes.item_id(item.near_dup_slot) or None
                self.db.execute("SAVEPOINT import_item")
                try:
                    item_id = store.insert_item(self.db, near_dup_of=near_dup_of, **item.fields)
                except sqlite3.IntegrityError:
                    self.db.execute("ROLLBACK TO import_item")
                    self.db.execute("RELEASE import_item")
                    existing = self.db.execute("SELECT id FROM items WHERE sha256 = ?", [item.sha256]).fetchone()
                    if existing is None:
                        raise
                    # another import added the same file since this one started
                    self.hashes.set_item_id(item.slot, existing[0])
                    self.report.duplicates += 1
                    continue
                if item.class_id is not None:
                    store.record_label(self.db, item_id, "confirm", class_id=item.class_id,
                                       annotator=self.annotator)
                self.db.execute("RELEASE import_item")
                self.hashes.set_item_id(item.slot, item_id)
                added.append((item_id, near_dup_of is not None, item.class_id is not None))
        self.pending.clear()
        self.pending_pixels.clear()
        for item_id, near_dup, labeled in added:  # counted only once committed
            self.report.added += 1
            self.report.added_ids.append(item_id)
            self.report.near_duplicates += near_dup
            self.report.labeled += labeled

    def folder_warnings(self) -> list[str]:
        return [f"{count} file(s) imported unlabeled: "
                + (f"folder {folder!r} names no class" if folder else "no class folder")
                for folder, count in sorted(self.unlabeled_folders.items(), key=lambda kv: str(kv[0]))]
