"""The import itself: hash, dedupe, convert, copy and insert each accepted file.

Each accepted file is copied, by content hash, under ``<home>/data/images`` and its
row (plus a pre-label from its folder, if asked) is written inside a savepoint, so a
crash can leave an orphan image file but never a half-written item. Rows are
committed in batches because one SQLite commit per photo would halve throughput;
the write lock is held only while a prepared batch is inserted, not while decoding.
Between files only hashes are kept (a set of SHA-256 strings, the pHash index and a
bounded cache of thumbnails),
so memory stays bounded for 100,000-file imports.

Image copies are not fsync'ed (that costs ~2.5 ms per photo here, more than decoding):
a process crash is safe, but after an OS crash or power loss an item committed just
before may point at an empty copy. Its 28x28 pixels, which the model uses, live in the
database; re-importing the source rewrites the copy.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sqlite_utils

from activelearn import store
from activelearn.config import Paths
from activelearn.convert import FLAG_NO_PLAIN_BACKGROUND, to_fmnist
from activelearn.errors import ActiveLearnError, ImportRejected
from activelearn.ingest.near_dups import NearDuplicateIndex, as_signed64, perceptual_hash, thumbnail
from activelearn.ingest.sources import (Candidate, ImportLimits, Rejected, count_inputs, decode,
                                        iter_inputs)

#: Rows inserted per commit.
COMMIT_EVERY = 200

_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "TIFF": "tif"}


@dataclass
class ImportReport:
    """What an import did; `as_dict` is what `import --json` prints.

    ``near_duplicates`` counts added items flagged as near-duplicates of an earlier one
    (they are imported; exact copies are skipped and counted in ``duplicates``).
    ``no_plain_background`` counts added items whose conversion carries that flag.
    """

    added: int = 0
    duplicates: int = 0
    near_duplicates: int = 0
    labeled: int = 0
    no_plain_background: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    added_ids: list[int] = field(default_factory=list)
    #: added item id -> the earlier item it is a near-duplicate of
    near_duplicate_of: dict[int, int] = field(default_factory=dict)
    #: files skipped as byte-identical to an item already imported
    duplicate_files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "added": self.added,
            "duplicates": self.duplicates,
            "near_duplicates": self.near_duplicates,
            "labeled": self.labeled,
            "no_plain_background": self.no_plain_background,
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
    annotator: str = store.IMPORT_ANNOTATOR,
    limits: ImportLimits = ImportLimits(),
    progress: ProgressCallback | None = None,
    commit_every: int = COMMIT_EVERY,
    url_lists: bool = False,
    confine_to: Sequence[Path] | None = None,
) -> ImportReport:
    """Import images from folders, archives, files, URL lists or URLs into ``paths.db``.

    ``source`` overrides the recorded source of every item (the UI passes "upload");
    by default it follows the input: folder, archive, url, or upload for loose files.
    With ``label_from_folders`` the parent folder of each new file names its class
    (case-insensitive; "T-shirt_top" matches "T-shirt/top") and a ``confirm`` event by
    ``annotator`` is recorded. A folder that names no class does not block the file:
    it is imported unlabeled and the report carries one warning per such folder.
    A deterministic share ``holdout_fraction`` (0 to 1, both included: 1 sends every
    new item to the holdout, as for a labeled test set) of new items, decided by ``seed``
    and the file's SHA-256 so re-imports agree, goes to the holdout split.
    ``progress(done, total)`` is called after each file; total is None when unknown.
    A .txt / .csv input is a list of image URLs only with ``url_lists`` (else it is rejected);
    URLs whose host resolves to a private or loopback address are refused unless
    ``limits.allow_private_urls``. With ``confine_to``, folder walks do not follow links out
    of those folders (the UI passes its import roots).
    """
    if not 0.0 <= holdout_fraction <= 1.0:
        raise ActiveLearnError(f"holdout fraction must be between 0 and 1 (both included), "
                               f"got {holdout_fraction}")
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
    total = count_inputs(inputs, url_lists) if progress is not None else None
    done = 0
    for entry in iter_inputs(inputs, source, limits, url_lists=url_lists, confine_to=confine_to):
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
    if importer.near_dups.rehashed:
        report.warnings.append(f"recomputed the near-duplicate hashes of {importer.near_dups.rehashed} earlier "
                               "photos from their stored originals (once, after an upgrade)")
    report.warnings.extend(importer.folder_warnings())
    report.warnings.extend(_background_warning(report))
    return report


def _background_warning(report: ImportReport) -> list[str]:
    """One warning when most added photos have no plain background, which the 28x28 form needs."""
    if 2 * report.no_plain_background <= report.added:
        return []
    return [f"{report.no_plain_background} of {report.added} added photos are flagged "
            f"'{FLAG_NO_PLAIN_BACKGROUND}': their 28x28 Fashion-MNIST conversion is poor (the garment "
            "cannot be cut out of a busy background), while the photo model (a pretrained backbone "
            "on the original photo) does not need a plain background."]


@dataclass(frozen=True)
class _PendingItem:
    sha256: str
    display_name: str
    slot: int
    near_dup_slot: int | None
    class_id: int | None
    no_plain_background: bool
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
        self.known_sha = store.known_sha256(db)
        self.near_dups = NearDuplicateIndex(db, paths.home)
        self.pending: list[_PendingItem] = []
        self.unlabeled_folders: Counter = Counter()

    def process(self, candidate: Candidate) -> None:
        """Hash, verify, convert and copy one file, then queue its row; bad files go to the report."""
        sha256 = hashlib.sha256(candidate.data).hexdigest()
        if sha256 in self.known_sha:
            self.report.duplicates += 1
            self.report.duplicate_files.append(candidate.display_name)
            return
        try:
            decoded = decode(candidate.data, self.limits)
        except ImportRejected as exc:
            self.report.rejected.append(Rejected(candidate.display_name, str(exc)))
            return
        conversion = to_fmnist(decoded.image)
        image_hash, thumb = perceptual_hash(decoded.image), thumbnail(decoded.image)
        near_dup_slot = self.near_dups.find(image_hash, thumb)
        stored = _store_original(self.paths, sha256, decoded.format, candidate.data)
        self.known_sha.add(sha256)
        split = "holdout" if _in_holdout(sha256, self.seed, self.holdout_fraction) else "pool"
        slot = self.near_dups.add(image_hash, thumb)
        self.pending.append(_PendingItem(
            sha256=sha256,
            display_name=candidate.display_name,
            slot=slot,
            near_dup_slot=near_dup_slot,
            class_id=self._class_of(candidate.folder),
            no_plain_background=FLAG_NO_PLAIN_BACKGROUND in conversion.flags,
            fields=dict(
                sha256=sha256, source=candidate.source, original_name=candidate.original_name,
                stored_path=stored.relative_to(self.paths.home).as_posix(),
                width=decoded.width, height=decoded.height, format=decoded.format, split=split,
                pixels=np.ascontiguousarray(conversion.pixels), dhash=as_signed64(image_hash),
                flags=",".join(conversion.flags)),
        ))

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
        added: list[tuple[int, _PendingItem, bool]] = []
        with store.transaction(self.db):
            for item in self.pending:
                near_dup_of = (None if item.near_dup_slot is None
                               else self.near_dups.item_id(item.near_dup_slot) or None)
                try:
                    with store.savepoint(self.db, "import_item"):
                        item_id = store.insert_item(self.db, near_dup_of=near_dup_of, **item.fields)
                        if item.class_id is not None:
                            store.record_label(self.db, item_id, "confirm", class_id=item.class_id,
                                               annotator=self.annotator)
                except sqlite3.IntegrityError:   # record_label raises StoreError, so this is the insert
                    existing = store.item_id_by_sha256(self.db, item.sha256)
                    if existing is None:
                        raise
                    # another import added the same file since this one started
                    self.near_dups.set_item_id(item.slot, existing)
                    self.report.duplicates += 1
                    self.report.duplicate_files.append(item.display_name)
                    continue
                self.near_dups.set_item_id(item.slot, item_id)
                added.append((item_id, item, near_dup_of))
        self.pending.clear()
        for item_id, item, near_dup_of in added:  # counted only once committed
            self.report.added += 1
            self.report.added_ids.append(item_id)
            if near_dup_of is not None:
                self.report.near_duplicates += 1
                self.report.near_duplicate_of[item_id] = near_dup_of
            self.report.labeled += item.class_id is not None
            self.report.no_plain_background += item.no_plain_background

    def folder_warnings(self) -> list[str]:
        return [f"{count} file(s) imported unlabeled: "
                + (f"folder {folder!r} names no class" if folder else "no class folder")
                for folder, count in sorted(self.unlabeled_folders.items(), key=lambda kv: str(kv[0]))]
