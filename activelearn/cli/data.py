"""Data commands: import photos, show counts, record and undo labels, manage classes.

None of these needs a model, so none imports TensorFlow: they start in well under a second.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
from pathlib import Path

from activelearn import store
from activelearn.config import Paths
from activelearn.errors import StoreError

_REPORT_LINES = 20


def default_annotator() -> str:
    return os.environ.get("USER") or "cli"


def register(subparsers: argparse._SubParsersAction) -> None:
    imp = subparsers.add_parser("import", help="import photos from folders, archives, files or URL lists")
    imp.add_argument("inputs", nargs="+", metavar="PATH",
                     help="folder, .zip/.tar(.gz) archive, image file, .txt/.csv list of URLs, or URL")
    imp.add_argument("--label-from-folders", action="store_true",
                     help="record each file's parent folder name as its class (a confirm by 'import')")
    imp.add_argument("--holdout-fraction", type=float, default=0.1, metavar="F",
                     help="share of new items kept aside in the holdout split to measure models, "
                          "from 0 to 1 inclusive (default 0.1); 1.0 puts every new item in the "
                          "holdout, e.g. to import a labeled test set")
    imp.add_argument("--seed", type=int, default=0, help="seed of the holdout draw (default 0)")
    imp.add_argument("--url-list", action="store_true",
                     help="read .txt/.csv inputs as lists of image URLs, one per line (without it they are "
                          "refused: a text file is not a photo)")
    imp.add_argument("--allow-private-urls", action="store_true",
                     help="also fetch URLs whose host is on a loopback, private or link-local network "
                          "(refused by default so an import cannot probe the server's own network)")
    imp.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    imp.set_defaults(func=cmd_import)

    st = subparsers.add_parser("status", help="items per split, labels per class, unlabeled count")
    st.add_argument("--json", action="store_true", help="print the counts as JSON")
    st.set_defaults(func=cmd_status)

    lab = subparsers.add_parser("label", help="record a decision for an item (or many, from a CSV)")
    lab.add_argument("item", nargs="?", type=int, metavar="ITEM", help="item id")
    lab.add_argument("cls", nargs="?", metavar="CLASS", help="class name or id")
    lab.add_argument("--csv", type=Path, metavar="FILE",
                     help="bulk labels: rows of item,class (header optional, UTF-8); every row is checked "
                          f"before any is written, then they are written {store.BULK_CHUNK} per transaction so "
                          "annotators' decisions go on meanwhile; running the same file again (e.g. after an "
                          "interruption) stores only the rows still missing")
    lab.add_argument("--action", choices=store.DECISIONS, default="confirm")
    lab.add_argument("--annotator", default=default_annotator(),
                     help="who decided (default: $USER or 'cli')")
    lab.add_argument("--request-id", metavar="ID",
                     help="store this decision once: a retry with the same ID records nothing new")
    lab.set_defaults(func=cmd_label)

    und = subparsers.add_parser("undo", help="revert the newest decision (of an item, or of an annotator)")
    und.add_argument("--item", type=int, metavar="ID", help="undo this item's newest decision")
    und.add_argument("--annotator", default=default_annotator(),
                     help="whose newest decision to undo (default: $USER or 'cli')")
    und.set_defaults(func=cmd_undo)

    ov = subparsers.add_parser("overlap", help="show or set the share of items labeled by several annotators")
    ov.add_argument("--share", type=float, metavar="F",
                    help="share of labeled items (0-1) that go to --k different annotators; 0 turns overlap off")
    ov.add_argument("--k", type=int, default=None, metavar="K", help="annotators per overlapped item (2-10)")
    ov.set_defaults(func=cmd_overlap)

    cls = subparsers.add_parser("classes", help="list or add classes")
    cls_sub = cls.add_subparsers(dest="classes_command", metavar="ACTION", required=True)
    cls_sub.add_parser("list", help="list classes in model-output order").set_defaults(func=cmd_classes_list)
    add = cls_sub.add_parser("add", help="add a class (the next model gets one more output)")
    add.add_argument("name", metavar="NAME")
    add.set_defaults(func=cmd_classes_add)


def cmd_import(args: argparse.Namespace, paths: Paths) -> int:
    from tqdm import tqdm

    from activelearn.ingest import ImportLimits, import_paths

    with tqdm(unit="file", desc="import", file=sys.stderr, disable=None) as bar:
        def progress(done: int, total: int | None) -> None:
            if total != bar.total:
                bar.total = total
                bar.refresh()
            bar.update(done - bar.n)

        report = import_paths(args.inputs, paths=paths, label_from_folders=args.label_from_folders,
                              holdout_fraction=args.holdout_fraction, seed=args.seed, progress=progress,
                              url_lists=args.url_list,
                              limits=ImportLimits(allow_private_urls=args.allow_private_urls))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    print(f"added {report.added}, duplicates {report.duplicates}, near-duplicates "
          f"{report.near_duplicates}, labeled {report.labeled}, rejected {len(report.rejected)}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    for rejected in report.rejected[:_REPORT_LINES]:
        print(f"rejected {rejected.file}: {rejected.reason}")
    if len(report.rejected) > _REPORT_LINES:
        print(f"... and {len(report.rejected) - _REPORT_LINES} more rejected (see --json)")
    return 0


def cmd_overlap(args: argparse.Namespace, paths: Paths) -> int:
    from activelearn import labeling

    db = store.open_db(paths.db)
    overlap = labeling.overlap_setting(db)
    if args.share is not None or args.k is not None:
        overlap = labeling.set_overlap(db, overlap.share if args.share is None else args.share,
                                       overlap.k if args.k is None else args.k)
    multi = sum(n >= 2 for n in store.votes_per_item(db).values())
    state = f"on: {overlap.share:.0%} of labeled items go to {overlap.k} annotators" if overlap.on else "off"
    print(f"overlap {state}; {multi} item(s) have votes from two or more people")
    return 0


def cmd_status(args: argparse.Namespace, paths: Paths) -> int:
    counts = store.status(store.open_db(paths.db)).as_dict()
    if args.json:
        print(json.dumps(counts, indent=2))
        return 0
    items = counts["items"]
    print(f"items: {sum(items.values())} ({', '.join(f'{split} {n}' for split, n in items.items())})")
    for split, per_class in counts["labeled_per_class"].items():
        listed = ", ".join(f"{name} {n}" for name, n in per_class.items()) or "none"
        print(f"labeled in {split}: {sum(per_class.values())} ({listed})")
    print(f"skipped {counts['skipped']}, rejected {counts['rejected']}")
    print(f"unlabeled: pool {counts['unlabeled_pool']}, holdout {counts['holdout_unlabeled']}")
    return 0


def cmd_label(args: argparse.Namespace, paths: Paths) -> int:
    """One decision (refused while the item is leased to someone else), or a checked, chunked CSV."""
    db = store.open_db(paths.db)
    if args.csv is not None:
        if args.item is not None:
            raise StoreError("give either ITEM CLASS or --csv FILE, not both")
        return _label_csv(db, args)
    if args.item is None:
        raise StoreError("give ITEM CLASS (or ITEM --action skip|reject), or --csv FILE")
    needs_class = args.action in ("confirm", "correct")
    if needs_class and args.cls is None:
        raise StoreError(f"{args.action} needs a CLASS")
    if not needs_class and args.cls is not None:
        raise StoreError(f"{args.action} takes no CLASS")
    class_info = store.resolve_class(db, args.cls) if needs_class else None
    event = store.record_decision(db, args.item, args.action, class_id=class_info.id if class_info else None,
                                  annotator=args.annotator, request_id=args.request_id)
    target = f" as {class_info.name}" if class_info else ""
    print(f"item {event.item_id}: {event.action}{target} (event {event.id})")
    return 0


def _label_csv(db, args: argparse.Namespace) -> int:
    rows, digest = _read_label_csv(args.csv)
    if args.action in ("skip", "reject"):
        resolved = [(item, None) for item, _ in rows]
    else:
        resolved = [(item, store.resolve_class(db, name).id) for item, name in rows]
    missing = store.missing_items(db, [item for item, _ in resolved])
    if missing:
        raise StoreError(f"{args.csv}: {len(missing)} unknown item id(s) ({', '.join(map(str, missing[:5]))}"
                         f"{', ...' if len(missing) > 5 else ''}), so nothing was recorded")
    stored, repeated = store.record_labels_in_chunks(
        db, resolved, args.action, annotator=args.annotator,
        request_prefix=f"csv:{digest}:{args.action}:{args.annotator}")
    again = f" ({repeated} already recorded by an earlier run of this file)" if repeated else ""
    print(f"recorded {stored} {args.action} event(s) from {args.csv}{again}")
    return 0


def _read_label_csv(path: Path) -> tuple[list[tuple[int, str]], str]:
    """(rows of item,class, sha256 of the file); a first row whose item is not a number is taken as a header."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise StoreError(f"{path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}): "
                         "save it as UTF-8 CSV and try again; nothing was recorded") from None
    rows = [row for row in csv.reader(text.splitlines()) if any(cell.strip() for cell in row)]
    if rows and not rows[0][0].strip().isdigit():
        rows = rows[1:]
    parsed = []
    for number, row in enumerate(rows, start=1):
        if len(row) < 2 or not row[0].strip().isdigit() or not row[1].strip():
            raise StoreError(f"{path}: row {number} is not 'item,class': {','.join(row)!r}")
        parsed.append((int(row[0]), row[1].strip()))
    return parsed, hashlib.sha256(raw).hexdigest()[:16]


def cmd_undo(args: argparse.Namespace, paths: Paths) -> int:
    event = store.undo(store.open_db(paths.db), annotator=args.annotator, item_id=args.item)
    if event is None:
        scope = f"item {args.item}" if args.item is not None else f"annotator {args.annotator}"
        print(f"nothing to undo for {scope}")
        return 0
    print(f"undid event {event.id}: item {event.item_id} {event.action}")
    return 0


def cmd_classes_list(args: argparse.Namespace, paths: Paths) -> int:
    for info in store.list_classes(store.open_db(paths.db)):
        origin = "Fashion-MNIST" if info.fmnist_index is not None else "added"
        print(f"{info.id:>3}  {info.name}  ({origin})")
    return 0


def cmd_classes_add(args: argparse.Namespace, paths: Paths) -> int:
    info = store.add_class(store.open_db(paths.db), args.name)
    print(f"added class {info.name!r} with id {info.id}")
    return 0
