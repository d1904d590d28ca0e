"""Curation commands: export the labeled set, find probable label errors, write a model report.

`export` needs no model and starts fast; `label-errors` loads the seed model
(TensorFlow) and `report` draws with matplotlib, both imported in their handlers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from activelearn.config import Paths


def register(subparsers: argparse._SubParsersAction) -> None:
    from activelearn.export import FORMATS

    exp = subparsers.add_parser("export", help="export the labeled items (photos, 28x28 arrays, manifest)")
    exp.add_argument("--format", required=True, choices=FORMATS, dest="fmt",
                     help="imagefolder and fmnist write a folder (a .zip if OUT ends with .zip); "
                          "csv, jsonl and parquet write one file")
    exp.add_argument("--out", required=True, type=Path, metavar="PATH", help="where to write the export")
    exp.add_argument("--class", dest="classes", action="append", default=[], metavar="NAME",
                     help="export only this class (repeatable)")
    exp.add_argument("--only-human", action="store_true",
                     help="leave out items whose label is an import pre-label no person has confirmed")
    exp.add_argument("--exclude-label-errors", action="store_true",
                     help="leave out items with an open issue from the latest `label-errors` scan")
    exp.add_argument("--annotator", metavar="A", help="only items whose current label A decided")
    exp.add_argument("--since", metavar="DATE", help="only labels decided at or after DATE (YYYY-MM-DD or ISO time, UTC)")
    exp.add_argument("--until", metavar="DATE", help="only labels decided at or before DATE (a date covers the whole day)")
    exp.add_argument("--no-holdout", action="store_true", help="leave out the holdout (test) items")
    exp.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    exp.add_argument("--json", action="store_true", help="print the result as JSON")
    exp.set_defaults(func=cmd_export)

    err = subparsers.add_parser("label-errors", help="flag labels that are probably wrong (confident "
                                "learning + near-duplicate conflicts)")
    err.add_argument("--k", type=int, default=5, help="cross-validation folds (default 5)")
    err.add_argument("--seed", type=int, default=0, help="seed of the folds and the Fashion-MNIST sample")
    err.add_argument("--json", action="store_true", help="print the issues as JSON")
    err.set_defaults(func=cmd_label_errors)

    rep = subparsers.add_parser("report", help="per-class metrics CSV, confusion matrices and the "
                                "learning history of a model version")
    rep.add_argument("--version", metavar="V", help="model version (default: the active one)")
    rep.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the report files")
    rep.set_defaults(func=cmd_report)


def cmd_export(args: argparse.Namespace, paths: Paths) -> int:
    from tqdm import tqdm

    from activelearn.export import ExportFilters, export_dataset

    filters = ExportFilters(classes=tuple(args.classes), only_human_confirmed=args.only_human,
                            exclude_label_errors=args.exclude_label_errors, annotator=args.annotator,
                            since=args.since, until=args.until, include_holdout=not args.no_holdout)
    with tqdm(unit="item", desc="export", file=sys.stderr, disable=None) as bar:
        def progress(done: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        result = export_dataset(paths, args.fmt, args.out, filters=filters, overwrite=args.overwrite,
                                progress=progress)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
        return 0
    splits = ", ".join(f"{split} {sum(c.values())}" for split, c in result.counts.items())
    print(f"exported {result.total} items ({splits}) to {result.path}")
    for split, per_class in result.counts.items():
        print(f"  {split}: " + ", ".join(f"{name} {n}" for name, n in per_class.items()))
    print(f"dataset card: {result.card}")
    for warning in result.warnings:
        print(f"warning: {warning}")
    return 0


def cmd_label_errors(args: argparse.Namespace, paths: Paths) -> int:
    from activelearn import store
    from activelearn.label_issues import find_issues

    issues = find_issues(paths, k=args.k, seed=args.seed)
    if args.json:
        print(json.dumps([issue.as_dict() for issue in issues], indent=2))
        return 0
    names = store.class_names(store.open_db(paths.db))
    print(f"{len({i.item_id for i in issues})} item(s) flagged; review them in the UI's "
          "'Label errors' queue")
    for issue in issues:
        detail = (f"self-confidence {issue.self_confidence:.2f}" if issue.self_confidence is not None
                  else f"near-duplicate item {issue.other_item_id}")
        print(f"  item {issue.item_id}: labeled {names[issue.given_class]!r}, "
              f"suggested {names[issue.suggested_class]!r} ({issue.kind}, {detail})")
    return 0


def cmd_report(args: argparse.Namespace, paths: Paths) -> int:
    from activelearn import registry
    from activelearn.reports import write_report

    version = args.version or registry.require_active(paths.models)
    for path in write_report(paths, version, args.out):
        print(path)
    return 0
