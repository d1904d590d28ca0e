"""The format writers: ImageFolder, Fashion-MNIST files, CSV / JSONL manifests, Parquet.

* ``imagefolder``: the original photos as ``<split>/<class folder>/<sha256>.<ext>``
  (a folder, or a .zip when the output name ends with .zip): what
  ``keras.utils.image_dataset_from_directory`` and torchvision's ``ImageFolder`` read.
* ``fmnist``: the converted 28x28 images as the four gzip'd IDX files of
  Fashion-MNIST plus ``fashion-mnist.npz`` and ``classes.txt`` (folder or .zip), so
  code written for ``keras.datasets.fashion_mnist`` runs on the curated set.
* ``csv`` / ``jsonl``: a manifest, one row per item, with who decided what and when.
* ``parquet``: image bytes, label and the manifest columns, with the Hugging Face
  ``datasets`` features in the Arrow schema metadata.

Photos, image bytes and manifest rows are streamed in small chunks; only the 28x28
arrays of the ``fmnist`` format (784 bytes per item) are held whole, as that format
itself does.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlite_utils
from PIL import Image

from activelearn import fmnist, store
from activelearn.config import Paths
from activelearn.errors import ActiveLearnError
from activelearn.export.bundle import Bundle
from activelearn.export.selection import CHUNK, Record, Selected

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("imagefolder", "fmnist", "csv", "jsonl", "parquet")
CLASSES_FILE = "classes.txt"
NPZ_NAME = "fashion-mnist.npz"
#: Formats keras.utils.image_dataset_from_directory reads; it silently skips the rest.
KERAS_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "bmp", "gif"})
_WINDOWS_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                               *(f"LPT{i}" for i in range(1, 10))})


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


# ---------------------------------------------------------------- images

class Originals:
    """Reads exported photos: the stored original, or a PNG of the 28x28 image when none was kept."""

    def __init__(self, paths: Paths, db: sqlite_utils.Database):
        self.paths, self.db = paths, db
        self.fallbacks = 0
        self.extensions: Counter = Counter()

    def locate(self, record: Record) -> tuple[str, Path | None]:
        """(file name in the export, source path or None for a generated PNG)."""
        if record.stored_path is None:
            return f"{record.sha256}.png", None
        source = self.paths.home / record.stored_path
        if not source.is_file():
            raise ActiveLearnError(f"original photo of item {record.item_id} is missing: {source} "
                                   "(re-import the photo, or export the fmnist or csv format)")
        return f"{record.sha256}{source.suffix.lower()}", source

    def png(self, record: Record) -> bytes:
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


# ---------------------------------------------------------------- formats

def write_imagefolder(bundle: Bundle, records: Iterator[Record], folders: dict[int, str],
                       originals: Originals, tick: Callable[[], None]) -> None:
    for record in records:
        file_name, source = originals.locate(record)
        name = f"{record.split}/{folders[record.class_id]}/{file_name}"
        originals.count(file_name)
        if source is None:
            bundle.add_bytes(name, originals.png(record), compress=False)
        else:
            bundle.add_file(name, source, compress=False)  # photos are compressed already
        tick()


def write_fmnist(bundle: Bundle, db: sqlite_utils.Database, selected: Sequence[Selected],
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


def _manifest_row(record: Record, class_names: Sequence[str]) -> dict[str, Any]:
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


def write_csv(target: Path, records: Iterator[Record], class_names: Sequence[str],
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


def write_jsonl(target: Path, records: Iterator[Record], class_names: Sequence[str],
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


def write_parquet(target: Path, records: Iterator[Record], class_names: Sequence[str],
                   originals: Originals, tick: Callable[[], None]) -> None:
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
