"""`python -m activelearn`: one thin command per package function.

Each submodule owns a group of commands and exposes ``register(subparsers)``;
every command sets ``func(args, paths) -> int``. Heavy imports (TensorFlow)
happen inside the handlers that need a model, so `status`, `label`, `import`
and `export` start fast.

Commands run at background priority (`config.yield_to_annotators`), so a
script of bulk commands never slows the annotators down on a small server.

Errors a user can act on print one line: exit code 1 when labels.db is busy
(another process held its write lock past the timeout) or read-only, 2 when the
command or its data is wrong.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from activelearn.config import RAY_ENV, resolve_paths, yield_to_annotators

# Command groups, in the order they appear in --help.
_GROUPS = ("models", "data", "engine", "simulate", "curate", "teams")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m activelearn",
        description="Label product images with a Fashion-MNIST model in the loop.",
    )
    parser.add_argument("--home", help="folder holding labels.db, models/ and data/ "
                        "(default: $ACTIVELEARN_HOME or the current folder)")
    parser.add_argument("--fmnist-dir", help="folder with the four Fashion-MNIST .gz files "
                        "(default: $ACTIVELEARN_FMNIST_DIR or <home>/data/fashion-mnist)")
    parser.add_argument("--db", metavar="URL", help="PostgreSQL URL to keep the labels in, e.g. postgresql://user@host/db, for several "
                        "app servers on one database (default: $ACTIVELEARN_DB or <home>/labels.db)")
    parser.add_argument("--ray", metavar="auto|ADDRESS", help="run pool embedding and scoring on Ray: 'auto' (a running cluster, else a local one) or "
                        "a cluster address (default: $ACTIVELEARN_RAY; unset = in this process)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    import importlib
    for name in _GROUPS:
        try:
            module = importlib.import_module(f"activelearn.cli.{name}")
        except ModuleNotFoundError as exc:  # a group not built yet
            if exc.name != f"activelearn.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    yield_to_annotators()
    if args.ray:
        os.environ[RAY_ENV] = args.ray   # read where the batch work runs, and by job workers
    try:
        paths = resolve_paths(args.home, args.fmnist_dir, args.db)
        return int(args.func(args, paths) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI turns known errors into one line
        from activelearn.errors import ActiveLearnError
        from activelearn.store import StoreBusy, StoreReadOnly
        if isinstance(exc, ActiveLearnError):
            print(f"error: {exc}", file=sys.stderr)
            # 1: the command was right but labels.db could not take it now; 2: the command or data is wrong
            return 1 if isinstance(exc, (StoreBusy, StoreReadOnly)) else 2
        raise
