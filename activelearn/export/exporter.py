"""The export entry point: select, write into staging, add the card, publish.

The dataset card is part of what is published, never an afterthought: inside the
staged folder or zip, or, beside a single-file format, published before the data,
so a crash can leave a card without data but never data without its card.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from activelearn import label_issues, registry, store
from activelearn.config import Paths
from activelearn.errors import ActiveLearnError
from activelearn.export.bundle import Bundle, publish, refuse_existing, remove, staging_name
from activelearn.export.card import CARD_NAME, dataset_card
from activelearn.export.formats import (FORMATS, Originals, class_folder_names, write_csv, write_fmnist,
                                        write_imagefolder, write_jsonl, write_parquet)
from activelearn.export.selection import ExportFilters, iter_records, select_items

ProgressFn = Callable[[int, int], None]


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
    refuse_existing([out] if bundled else [out, card_target], overwrite)

    db = store.open_db(paths.db)
    classes = store.list_classes(db)
    class_names = [c.name for c in classes]
    folders = class_folder_names(classes)
    selected = select_items(db, filters)
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

    originals = Originals(paths, db)

    def card() -> bytes:
        scan = label_issues.last_scan(db) if filters.exclude_label_errors else None
        return dataset_card(title=f"Curated dataset {out.name}", fmt=fmt, data_name=out.name, classes=classes,
                            folders=folders, counts=counts, sources=Counter(s.source for s in selected),
                            annotators=Counter(s.labeled_by for s in selected),
                            model_version=registry.active_version(paths.models), filters=filters, scan=scan,
                            warnings=originals.warnings()).encode()

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_name(out)
    card_staging = None if bundled else staging_name(card_target)
    scratch = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.scratch"
    card_published = False
    try:
        if bundled:
            with Bundle(staging, as_zip) as bundle:
                if fmt == "imagefolder":
                    write_imagefolder(bundle, iter_records(db, selected), folders, originals, tick)
                else:
                    scratch.mkdir()
                    write_fmnist(bundle, db, selected, class_names, scratch, tick)
                bundle.add_bytes(CARD_NAME, card())
            files = dict(bundle.files)
        else:
            records = iter_records(db, selected)
            if fmt == "parquet":
                write_parquet(staging, records, class_names, originals, tick)
            else:
                {"csv": write_csv, "jsonl": write_jsonl}[fmt](staging, records, class_names, tick)
            card_staging.write_bytes(card())
            files = {out.name: 1, card_target.name: 1}
        if card_staging is not None:  # the card first: the data must never be visible without it
            publish(card_staging, card_target, overwrite)
            card_published = True
        publish(staging, out, overwrite)
    except BaseException:
        remove(staging)
        if card_staging is not None:
            remove(card_staging)
        if card_published and not out.exists():  # the data never appeared: neither may its card
            remove(card_target)
        raise
    finally:
        remove(scratch)

    return ExportResult(
        path=out, fmt=fmt, card=out if as_zip else card_target,
        counts={split: {class_names[c]: n for c, n in sorted(per_class.items())}
                for split, per_class in counts.items() if per_class},
        files=files, warnings=originals.warnings())
