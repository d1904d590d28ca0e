"""Export the curated dataset: labeled items in the formats other tools read.

Only items whose current decision is confirm/correct are exported; pool items form
the ``train`` split and holdout items the ``test`` split. Class indices are the
labels.db class ids everywhere (Fashion-MNIST 0-9, user classes 10, 11, ...), so a
model trained on an export agrees with the one the tool trains.

Formats:

* ``imagefolder``: the original photos as ``<split>/<class folder>/<sha256>.<ext>``
  (a folder, or a .zip when the output name ends with .zip): what
  ``keras.utils.image_dataset_from_directory`` and torchvision's ``ImageFolder`` read.
* ``fmnist``: the converted 28x28 images as the four gzip'd IDX files of
  Fashion-MNIST plus ``fashion-mnist.npz`` and ``classes.txt`` (folder or .zip), so
  code written for ``keras.datasets.fashion_mnist`` runs on the curated set.
* ``csv`` / ``jsonl``: a manifest, one row per item, with who decided what and when.
* ``parquet``: image bytes, label and the manifest columns, with the Hugging Face
  ``datasets`` features in the Arrow schema metadata.

Every export carries a dataset card (README.md inside a folder or zip, else
``<file name>.README.md`` beside the file). Output is written under a temporary
name and renamed at the end, so a failed export leaves nothing behind, and an
existing output is replaced only with ``overwrite=True``. Photos, image bytes and
manifest rows are streamed in small chunks; only the 28x28 arrays of the
``fmnist`` format (784 bytes per item) are held whole, as that format itself does.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import unicodedata
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlite_utils
from PIL import Image

from activelearn import __version__, fmnist, label_issues, registry, store
from activelearn.config import Paths
from activelearn.errors import ActiveLearnError

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("imagefolder", "fmnist", "csv", "jsonl", "parquet")
#: labels.db split -> exported split.
SPLIT_NAMES = {"pool": "train", "holdout": "test"}
#: The annotator ingest records for labels taken from folder names.
IMPORT_ANNOTATOR = "import"
CARD_NAME = "README.md"
CLASSES_FILE = "classes.txt"
NPZ_NAME = "fashion-mnist.npz"
#: Items whose metadata is fetched per query, and rows per Parquet row group.
CHUNK = 256
#: Formats keras.utils.image_dataset_from_directory reads; it silently skips the rest.
KERAS_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "bmp", "gif"})
_WINDOWS_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                               *(f"LPT{i}" for i in range(1, 10))})

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class ExportFilters:
    """Which labeled items to export; the defaults export every confirmed/corrected item.

    ``annotator`` and ``only_human_confirmed`` look at the item's *current* decision,
    the one that sets its exported label. ``since`` / ``until`` bound the time of that
    decision; a bare date (``2024-05-01``) means the whole day, UTC. With
    ``exclude_label_errors`` items with an open issue from the latest label-issue scan
    (`activelearn.label_issues`) are left out; a scan must have been run.
    """

    classes: tuple[str, ...] = ()
    only_human_confirmed: bool = False
    exclude_label_errors: bool = False
    annotator: str | None = None
    since: str | date | datetime | None = None
    until: str | date | datetime | None = None
    include_holdout: bool = True

    def describe(self) -> list[str]:
        """One line per active filter, for the dataset card."""
        lines = []
        if self.classes:
            lines.append("classes: " + ", ".join(self.classes))
        if self.only_human_confirmed:
            lines.append(f"only human decisions (pre-labels by {IMPORT_ANNOTATOR!r} left out)")
        if self.exclude_label_errors:
            lines.append("items with an open label issue left out")
        if self.annotator:
            lines.append(f"current decision by {self.annotator!r}")
        if self.since is not None:
            lines.append(f"decided at or after {self.since}")
        if self.until is not None:
            lines.append(f"decided at or before {self.until}")
        if not self.include_holdout:
            lines.append("holdout (test) items left out")
        return lines


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    ``counts``: split -> class name -> items; ``files``: folder (or top-level file) ->
    files written there; ``card``: the dataset card's path, or the zip that holds it.
    """

    path: Path
    fmt: str
    card: Path
    counts: dict[str, dict[str, int]]
    files: dict[str, int]
    warnings: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(sum(per_class.values()) for per_class in self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path), "card": str(self.card), "total": self.total}


@dataclass(frozen=True)
class _Selected:
    item_id: int
    split: str        # train / test
    class_id: int
    source: str
    labeled_by: str   # annotator of the current decision
    event_id: int     # the current decision


@dataclass(frozen=True)
class _Record:
    """One exported item with everything the manifest columns need."""

    item_id: int
    sha256: str
    original_name: str
    source: str
    split: str
    stored_path: str | None
    image_format: str | None
    width: int | None
    height: int | None
    flags: str
    class_id: int
    decision: str
    labeled_by: str
    last_decision_at: str
    first_decision_at: str
    decisions: int
    annotators: list[str]
    model_version: str | None
    predicted_class_id: int | None
    confidence: float | None
    near_dup_group: str


# ---------------------------------------------------------------- class folders

def class_folder_names(classes: Sequence[store.ClassInfo]) -> dict[int, str]:
    """A safe, unique folder name per class id.

    Accents are folded to ASCII, anything but letters, digits, '-', '_' and '.' becomes
    '_' ("T-shirt/top" -> "T-shirt_top", "../x" -> "x"), names Windows reserves get a
    trailing '_', and names that would still clash (also ignoring case, for macOS and
    Windows file systems) get their class id appended.
    """
    names: dict[int, str] = {}
    for info in classes:
        ascii_name = unicodedata.normalize("NFKD", info.name).encode("ascii", "ignore").decode()
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_name).strip("._-")[:64]
        if not name:
            name = f"class_{info.id}"
        if name.upper().split(".")[0] in _WINDOWS_RESERVED:
            name += "_"
        names[info.id] = name
    while len(clashes := Counter(name.casefold() for name in names.values())) < len(names):
        names = {class_id: f"{name}_{class_id}" if clashes[name.casefold()] > 1 else name
                 for class_id, name in names.items()}
    return names


# ---------------------------------------------------------------- selection

def _bound(value: str | date | datetime | None, *, end: bool) -> str | None:
    """A filter bound as labels.db stores times (UTC ISO with ms), for text comparison.

    A bare date covers the whole day: ``until`` becomes the start of the next day,
    compared with '<'; a datetime ``until`` is compared with '<=' (1 ms added here).
    """
    if value is None:
        return None
    try:
        if isinstance(value, datetime):
            moment, whole_day = value, False
        elif isinstance(value, date):
            moment, whole_day = datetime.combine(value, time()), True
        else:
            text = str(value).strip()
            whole_day = len(text) == 10
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise ActiveLearnError(f"bad date {value!r}: use YYYY-MM-DD or an ISO date and time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    if end:
        moment += timedelta(days=1) if whole_day else timedelta(milliseconds=1)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def _select(db: sqlite_utils.Database, filters: ExportFilters) -> list[_Selected]:
    """The items to export, train before test, each in item-id order."""
    sql = ["SELECT i.id, i.split, s.class_id, i.source, s.annotator, s.event_id FROM item_state s "
           "JOIN items i ON i.id = s.item_id "
           "WHERE s.action IN ('confirm', 'correct')"]
    params: list[Any] = []
    if filters.classes:
        ids = [store.resolve_class(db, name).id for name in filters.classes]
        sql.append(f"AND s.class_id IN ({','.join('?' * len(ids))})")
        params += ids
    if filters.only_human_confirmed:
        sql.append("AND s.annotator != ?")
        params.append(IMPORT_ANNOTATOR)
    if filters.annotator:
        sql.append("AND s.annotator = ?")
        params.append(filters.annotator)
    if (since := _bound(filters.since, end=False)) is not None:
        sql.append("AND s.created_at >= ?")
        params.append(since)
    if (until := _bound(filters.until, end=True)) is not None:
        sql.append("AND s.created_at < ?")
        params.append(until)
    if not filters.include_holdout:
        sql.append("AND i.split = 'pool'")
    sql.append("ORDER BY i.split = 'holdout', i.id")
    rows = db.execute(" ".join(sql), params).fetchall()
    if filters.exclude_label_errors:
        if label_issues.last_scan(db) is None:
            raise ActiveLearnError("no label-issue scan has been run: run `label-errors` first, "
                                   "or export without --exclude-label-errors")
        flagged = label_issues.open_issue_ids(db)
        rows = [row for row in rows if row[0] not in flagged]
    return [_Selected(item_id, SPLIT_NAMES[split], class_id, source, annotator, event_id)
            for item_id, split, class_id, source, annotator, event_id in rows]


def _near_dup_roots(db: sqlite_utils.Database) -> dict[int, str]:
    """item id -> sha256 of the first item of its near_dup_of chain (only items in a chain)."""
    parent = dict(db.execute("SELECT id, near_dup_of FROM items WHERE near_dup_of IS NOT NULL").fetchall())
    roots: dict[int, int] = {}
    for item_id in parent:
        seen, node = {item_id}, parent[item_id]
        while node in parent and node not in seen:  # chains point at older items; guard anyway
            seen.add(node)
            node = parent[node]
        roots[item_id] = node
    shas: dict[int, str] = {}
    wanted = sorted(set(roots.values()))
    for start in range(0, len(wanted), 900):
        chunk = wanted[start:start + 900]
        shas.update(db.execute(f"SELECT id, sha256 FROM items WHERE id IN ({','.join('?' * len(chunk))})",
                               chunk).fetchall())
    return {item_id: shas[root] for item_id, root in roots.items()}


# Keyed by the current event's id: the item_state view recomputes a window over every
# event, so it is read once (in _select), not once per chunk.
_RECORD_SQL = """
SELECT i.id, i.sha256, i.original_name, i.source, i.stored_path, i.format, i.width, i.height,
       i.flags, e.class_id, e.action, e.annotator, e.created_at,
       e.model_version, e.predicted_class_id, e.confidence
FROM labels e JOIN items i ON i.id = e.item_id
WHERE e.id IN ({marks})
"""


def _records(db: sqlite_utils.Database, selected: Sequence[_Selected]) -> Iterator[_Record]:
    """Full rows for the selected items, fetched CHUNK at a time, in selection order.

    Decision counts, first time and annotators cover effective decisions of any kind
    (an undone decision and the undo itself do not count).
    """
    roots = _near_dup_roots(db)
    for start in range(0, len(selected), CHUNK):
        chunk = selected[start:start + CHUNK]
        marks = ",".join("?" * len(chunk))
        rows = {row[0]: row for row in db.execute(_RECORD_SQL.format(marks=marks),
                                                  [s.event_id for s in chunk]).fetchall()}
        history: dict[int, list[tuple[str, str]]] = {}
        for item_id, annotator, created_at in db.execute(
                f"SELECT item_id, annotator, created_at FROM effective_events WHERE item_id IN ({marks})",
                [s.item_id for s in chunk]):
            history.setdefault(item_id, []).append((annotator, created_at))
        for sel in chunk:
            (item_id, sha, name, source, stored, fmt, width, height, flags, class_id, action,
             labeled_by, last_at, model_version, predicted, confidence) = rows[sel.item_id]
            decisions = history[item_id]
            yield _Record(
                item_id=item_id, sha256=sha, original_name=name, source=source, split=sel.split,
                stored_path=stored, image_format=fmt, width=width, height=height, flags=flags,
                class_id=class_id, decision=action, labeled_by=labeled_by, last_decision_at=last_at,
                first_decision_at=min(at for _, at in decisions), decisions=len(decisions),
                annotators=sorted({annotator for annotator, _ in decisions}),
                model_version=model_version, predicted_class_id=predicted, confidence=confidence,
                near_dup_group=roots.get(item_id, sha))


# ---------------------------------------------------------------- images

class _Originals:
    """Reads exported photos: the stored original, or a PNG of the 28x28 image when none was kept."""

    def __init__(self, paths: Paths, db: sqlite_utils.Database):
        self.paths, self.db = paths, db
        self.fallbacks = 0
        self.extensions: Counter = Counter()

    def locate(self, record: _Record) -> tuple[str, Path | None]:
        """(file name in the export, source path or None for a generated PNG)."""
        if record.stored_path is None:
            return f"{record.sha256}.png", None
        source = self.paths.home / record.stored_path
        if not source.is_file():
            raise ActiveLearnError(f"original photo of item {record.item_id} is missing: {source} "
                                   "(re-import the photo, or export the fmnist or csv format)")
        return f"{record.sha256}{source.suffix.lower()}", source

    def png(self, record: _Record) -> bytes:
        self.fallbacks += 1
        buffer = io.BytesIO()
        Image.fromarray(store.item_pixels(self.db, [record.item_id])[0], mode="L").save(buffer, "PNG")
        return buffer.getvalue()

    def count(self, file_name: str) -> None:
        self.extensions[file_name.rsplit(".", 1)[-1]] += 1

    def warnings(self) -> list[str]:
        notes = []
        if self.fallbacks:
            notes.append(f"{self.fallbacks} item(s) had no stored original; their 28x28 converted "
                         "image was exported as PNG")
        unreadable = {ext: n for ext, n in self.extensions.items() if ext not in KERAS_EXTENSIONS}
        if unreadable:
            listed = ", ".join(f"{n} .{ext}" for ext, n in sorted(unreadable.items()))
            notes.append(f"{listed} file(s) are skipped by keras.utils.image_dataset_from_directory "
                         "(torchvision's ImageFolder reads them)")
        return notes


# ---------------------------------------------------------------- output containers

class _Bundle:
    """A folder or a zip being filled; `files` counts the files put in each folder (or at the top)."""

    def __init__(self, staging: Path, as_zip: bool):
        self.as_zip = as_zip
        self.files: Counter = Counter()
        self._folders: set[Path] = set()
        if as_zip:
            self._zip = zipfile.ZipFile(staging, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        else:
            staging.mkdir()
            self._root = staging

    def _count(self, name: str) -> None:
        self.files[name.rsplit("/", 1)[0] if "/" in name else name] += 1

    def _target(self, name: str) -> Path:
        path = self._root / name
        if path.parent not in self._folders:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(path.parent)
        return path

    def add_file(self, name: str, source: Path, *, compress: bool = True) -> None:
        self._count(name)
        if self.as_zip:
            self._zip.write(source, name, compress_type=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED)
        else:
            shutil.copyfile(source, self._target(name))

    def add_bytes(self, name: str, data: bytes, *, compress: bool = True) -> None:
        self._count(name)
        if self.as_zip:
            self._zip.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED)
        else:
            self._target(name).write_bytes(data)

    def __enter__(self) -> _Bundle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.as_zip:
            self._zip.close()


def _staging_name(out: Path) -> Path:
    return out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.part")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _refuse_existing(targets: Sequence[Path], overwrite: bool) -> None:
    if overwrite:
        return
    for target in targets:
        if target.exists() or target.is_symlink():
            raise ActiveLearnError(f"{target} already exists; choose another output or pass "
                                   "--overwrite (overwrite=True) to replace it")


def _publish(staging: Path, target: Path, overwrite: bool) -> None:
    """Move a finished staging file/folder to its final name; only now does the output appear.

    Without overwrite, files are linked (which fails if the name was taken meanwhile)
    and folders renamed (which fails onto a non-empty folder). With overwrite the old
    output is first moved aside, so readers see the old or the new, never a mix.
    """
    if target.exists() or target.is_symlink():
        _refuse_existing([target], overwrite)
        aside = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
        os.rename(target, aside)
        os.rename(staging, target)
        _remove(aside)
        return
    try:
        if staging.is_dir():
            os.rename(staging, target)
            return
        try:
            os.link(staging, target)
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links
            os.rename(staging, target)
        else:
            staging.unlink()
    except OSError as exc:
        raise ActiveLearnError(f"cannot create {target}: {exc.strerror or exc}") from exc


# ---------------------------------------------------------------- formats

def _write_imagefolder(bundle: _Bundle, records: Iterator[_Record], folders: dict[int, str],
                       originals: _Originals, tick: Callable[[], None]) -> None:
    for record in records:
        file_name, source = originals.locate(record)
        name = f"{record.split}/{folders[record.class_id]}/{file_name}"
        originals.count(file_name)
        if source is None:
            bundle.add_bytes(name, originals.png(record), compress=False)
        else:
            bundle.add_file(name, source, compress=False)  # photos are compressed already
        tick()


def _write_fmnist(bundle: _Bundle, db: sqlite_utils.Database, selected: Sequence[_Selected],
                  class_names: Sequence[str], scratch: Path, tick: Callable[[], None]) -> None:
    """The four IDX files and an .npz with Fashion-MNIST's names, dtypes and shapes."""
    if len(class_names) > 256:
        raise ActiveLearnError("the fmnist format stores labels as bytes: at most 256 classes")
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        chosen = [s for s in selected if s.split == split]
        images = np.empty((len(chosen), 28, 28), np.uint8)
        for start in range(0, len(chosen), CHUNK):
            chunk = chosen[start:start + CHUNK]
            images[start:start + len(chunk)] = store.item_pixels(db, [s.item_id for s in chunk])
            for _ in chunk:
                tick()
        arrays[f"x_{split}"] = images
        arrays[f"y_{split}"] = np.array([s.class_id for s in chosen], np.uint8)
    idx_files = {fmnist.TRAIN_IMAGES: "x_train", fmnist.TRAIN_LABELS: "y_train",
                 fmnist.TEST_IMAGES: "x_test", fmnist.TEST_LABELS: "y_test"}
    for file_name, key in idx_files.items():
        fmnist.write_idx(scratch / file_name, arrays[key])
        bundle.add_file(file_name, scratch / file_name, compress=False)
    np.savez_compressed(scratch / NPZ_NAME, **arrays)
    bundle.add_file(NPZ_NAME, scratch / NPZ_NAME, compress=False)
    bundle.add_bytes(CLASSES_FILE, "".join(f"{name}\n" for name in class_names).encode())


def _manifest_row(record: _Record, class_names: Sequence[str]) -> dict[str, Any]:
    predicted = record.predicted_class_id
    return {
        "item_id": record.item_id, "sha256": record.sha256, "original_name": record.original_name,
        "source": record.source, "split": record.split,
        "label": class_names[record.class_id], "label_index": record.class_id,
        "decision": record.decision, "labeled_by": record.labeled_by, "annotators": record.annotators,
        "first_decision_at": record.first_decision_at, "last_decision_at": record.last_decision_at,
        "decisions": record.decisions, "model_version": record.model_version,
        "predicted_label": None if predicted is None or predicted >= len(class_names) else class_names[predicted],
        "predicted_index": predicted, "confidence": record.confidence,
        "near_dup_group": record.near_dup_group, "stored_path": record.stored_path,
        "width": record.width, "height": record.height, "format": record.image_format,
        "flags": record.flags,
    }


def _write_csv(target: Path, records: Iterator[_Record], class_names: Sequence[str],
               tick: Callable[[], None]) -> None:
    """UTF-8 CSV; annotators joined by ';', missing values empty."""
    with open(target, "w", newline="", encoding="utf-8") as stream:
        writer = None
        for record in records:
            row = _manifest_row(record, class_names)
            if writer is None:
                writer = csv.DictWriter(stream, fieldnames=list(row))
                writer.writeheader()
            writer.writerow({**row, "annotators": ";".join(row["annotators"])})
            tick()


def _write_jsonl(target: Path, records: Iterator[_Record], class_names: Sequence[str],
                 tick: Callable[[], None]) -> None:
    with open(target, "w", encoding="utf-8") as stream:
        for record in records:
            stream.write(json.dumps(_manifest_row(record, class_names), ensure_ascii=False) + "\n")
            tick()


def _parquet_columns() -> dict[str, tuple[Any, dict[str, Any]]]:
    """Arrow type and Hugging Face feature of each manifest column in the Parquet export."""
    import pyarrow as pa

    def value(dtype: str) -> dict[str, Any]:
        return {"dtype": dtype, "_type": "Value"}

    string, int64, float64 = (pa.string(), value("string")), (pa.int64(), value("int64")), \
        (pa.float64(), value("float64"))
    return {"item_id": int64, "sha256": string, "original_name": string, "source": string,
             "split": string, "label_name": string, "decision": string, "labeled_by": string,
             "annotators": (pa.list_(pa.string()), {"feature": value("string"), "_type": "Sequence"}),
             "first_decision_at": string, "last_decision_at": string, "decisions": int64,
             "model_version": string, "predicted_label": string, "predicted_index": int64,
             "confidence": float64, "near_dup_group": string, "stored_path": string,
             "width": int64, "height": int64, "format": string, "flags": string}


def parquet_schema(class_names: Sequence[str]) -> pa.Schema:
    """The Arrow schema, with the `datasets` features under the b"huggingface" metadata key.

    ``image`` is the struct {bytes, path} that `datasets.Image` stores and ``label`` a
    `ClassLabel` whose names are all classes in id order, so
    ``load_dataset("parquet", data_files=...)`` decodes both without extra arguments.
    """
    import pyarrow as pa

    columns = _parquet_columns()
    fields = [pa.field("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
              pa.field("label", pa.int64())]
    fields += [pa.field(name, arrow_type) for name, (arrow_type, _) in columns.items()]
    features = {"image": {"_type": "Image"},
                "label": {"names": list(class_names), "_type": "ClassLabel"},
                **{name: feature for name, (_, feature) in columns.items()}}
    return pa.schema(fields, metadata={"huggingface": json.dumps({"info": {"features": features}})})


def _write_parquet(target: Path, records: Iterator[_Record], class_names: Sequence[str],
                   originals: _Originals, tick: Callable[[], None]) -> None:
    """One row group per CHUNK items, so at most CHUNK photos are in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema(class_names)
    batch: list[dict[str, Any]] = []

    def flush(writer: pq.ParquetWriter) -> None:
        writer.write_table(pa.Table.from_pylist(batch, schema=schema))
        batch.clear()

    with pq.ParquetWriter(target, schema) as writer:
        for record in records:
            file_name, source = originals.locate(record)
            originals.count(file_name)
            data = originals.png(record) if source is None else source.read_bytes()
            row = _manifest_row(record, class_names)
            row["label_name"] = row.pop("label")
            row["label"] = row.pop("label_index")
            row["image"] = {"bytes": data, "path": file_name}
            batch.append(row)
            if len(batch) >= CHUNK:
                flush(writer)
            tick()
        if batch:
            flush(writer)


# ---------------------------------------------------------------- dataset card

_LOADING = {
    "imagefolder": (
        "Each split folder holds one folder per class it has items of (no empty folders:\n"
        "torchvision refuses them). Loaders number classes by sorted folder name within the\n"
        "folder they are given, not by the index above, so a split that lacks a class numbers\n"
        "the others differently: map labels through the loader's class names and the table above.\n\n"
        "```python\nimport keras\ntrain = keras.utils.image_dataset_from_directory(\"train\", image_size=(224, 224))\n"
        "train.class_names  # folder names; torchvision: datasets.ImageFolder(\"train\").classes\n```"),
    "fmnist": (
        "The files of Fashion-MNIST, with the same names, dtypes and shapes; labels are the\n"
        "indices above (one class name per line of `classes.txt`, in index order):\n\n"
        "```python\nimport numpy as np\nwith np.load(\"fashion-mnist.npz\") as data:\n"
        "    (x_train, y_train), (x_test, y_test) = (data[\"x_train\"], data[\"y_train\"]), "
        "(data[\"x_test\"], data[\"y_test\"])\n```"),
    "csv": "```python\nimport pandas as pd\nmanifest = pd.read_csv(\"{name}\")\n```\n\n"
           "`annotators` lists everyone whose decision still stands, separated by ';'.",
    "jsonl": "```python\nimport pandas as pd\nmanifest = pd.read_json(\"{name}\", lines=True)\n```",
    "parquet": "```python\nfrom datasets import load_dataset\n"
               "ds = load_dataset(\"parquet\", data_files=\"{name}\")[\"train\"]  # column `split`: train/test\n"
               "```\n\n`image` decodes to a PIL image and `label` is a ClassLabel with the names above.",
}


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _card(*, title: str, fmt: str, data_name: str, classes: Sequence[store.ClassInfo],
          folders: dict[int, str], counts: dict[str, Counter], sources: Counter, annotators: Counter,
          model_version: str | None, filters: ExportFilters, scan: dict | None,
          warnings: Sequence[str]) -> str:
    split_names = [split for split in ("train", "test") if counts.get(split)]
    total = sum(sum(c.values()) for c in counts.values())
    class_rows = [[info.id, info.name, folders[info.id],
                   *(counts[s].get(info.id, 0) for s in split_names),
                   sum(counts[s].get(info.id, 0) for s in split_names)]
                  for info in classes if any(counts[s].get(info.id) for s in split_names)]
    filter_lines = filters.describe() or ["none: every confirmed or corrected item"]
    if filters.exclude_label_errors and scan:
        filter_lines.append(f"label issues from scan {scan['id']} of {scan['created_at']}")
    parts = [
        f"# {title}", "",
        f"Exported {store.now()} by activelearn {__version__} in the `{fmt}` format.", "",
        f"- Items: {total} ({', '.join(f'{s} {sum(counts[s].values())}' for s in split_names)})",
        "- Labels: each item's current confirm/correct decision in labels.db; pool items are "
        "`train`, holdout items `test`",
        "- Class index = labels.db class id (Fashion-MNIST classes 0-9, added classes from 10)",
        f"- Model version active at export: {model_version or 'none'}",
        "- Filters: " + "; ".join(filter_lines), "",
        "## Items per class", "",
        _table(["index", "class", "folder", *split_names, "total"], class_rows), "",
        "## Sources", "", _table(["source", "items"], sorted(sources.items())), "",
        "## Annotators (current decision)", "", _table(["annotator", "items"], sorted(annotators.items())), "",
        "## Loading", "", _LOADING[fmt].replace("{name}", data_name), "",
    ]
    if warnings:
        parts += ["## Notes", "", *(f"- {w}" for w in warnings), ""]
    return "\n".join(parts)


# ---------------------------------------------------------------- entry point

def export_dataset(paths: Paths, fmt: str, out: str | os.PathLike, *,
                   filters: ExportFilters = ExportFilters(), overwrite: bool = False,
                   progress: ProgressFn | None = None) -> ExportResult:
    """Export the labeled items selected by ``filters`` to ``out`` in format ``fmt``.

    ``imagefolder`` and ``fmnist`` write a folder, or a zip when ``out`` ends with .zip;
    ``csv``, ``jsonl`` and ``parquet`` write one file plus ``<file name>.README.md``.
    ``progress(done, total)`` is called per item. Raises ActiveLearnError when the
    output exists (without overwrite), nothing matches, or an original is missing.
    """
    if fmt not in FORMATS:
        raise ActiveLearnError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    out = Path(out).expanduser().absolute()
    bundled = fmt in ("imagefolder", "fmnist")
    as_zip = bundled and out.suffix.lower() == ".zip"
    card_target = out / CARD_NAME if bundled else out.with_name(out.name + ".README.md")
    _refuse_existing([out] if bundled else [out, card_target], overwrite)

    db = store.open_db(paths.db)
    classes = store.list_classes(db)
    class_names = [c.name for c in classes]
    folders = class_folder_names(classes)
    selected = _select(db, filters)
    if not selected:
        raise ActiveLearnError("nothing to export: no confirmed or corrected item matches the filters")

    counts: dict[str, Counter] = {"train": Counter(), "test": Counter()}
    for sel in selected:
        counts[sel.split][sel.class_id] += 1
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, len(selected))

    originals = _Originals(paths, db)

    def card() -> bytes:
        scan = label_issues.last_scan(db) if filters.exclude_label_errors else None
        return _card(title=f"Curated dataset {out.name}", fmt=fmt, data_name=out.name, classes=classes,
                     folders=folders, counts=counts, sources=Counter(s.source for s in selected),
                     annotators=Counter(s.labeled_by for s in selected),
                     model_version=registry.active_version(paths.models), filters=filters, scan=scan,
                     warnings=originals.warnings()).encode()

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_name(out)
    card_staging = None if bundled else _staging_name(card_target)
    scratch = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.scratch"
    try:
        if bundled:
            with _Bundle(staging, as_zip) as bundle:
                if fmt == "imagefolder":
                    _write_imagefolder(bundle, _records(db, selected), folders, originals, tick)
                else:
                    scratch.mkdir()
                    _write_fmnist(bundle, db, selected, class_names, scratch, tick)
                bundle.add_bytes(CARD_NAME, card())
            files = dict(bundle.files)
        else:
            records = _records(db, selected)
            if fmt == "parquet":
                _write_parquet(staging, records, class_names, originals, tick)
            else:
                {"csv": _write_csv, "jsonl": _write_jsonl}[fmt](staging, records, class_names, tick)
            card_staging.write_bytes(card())
            files = {out.name: 1, card_target.name: 1}
        _publish(staging, out, overwrite)
        if card_staging is not None:
            _publish(card_staging, card_target, overwrite)
    except BaseException:
        _remove(staging)
        if card_staging is not None:
            _remove(card_staging)
        raise
    finally:
        _remove(scratch)

    return ExportResult(
        path=out, fmt=fmt, card=out if as_zip else card_target,
        counts={split: {class_names[c]: n for c, n in sorted(per_class.items())}
                for split, per_class in counts.items() if per_class},
        files=files, warnings=originals.warnings())
