"""Start the activelearn web app: `python app.py [--home DIR] [--auth user:password[:role]] ...`.

A thin shell: it reads the options, starts the seed training when the home
has no model yet, builds the page (activelearn.ui) and serves it on the
local machine. Stopping it (Ctrl-C or SIGTERM) cancels the jobs it started,
such as the seed training. All behaviour lives in the activelearn package.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no calls home

from activelearn.config import RAY_ENV, resolve_paths  # noqa: E402
from activelearn.errors import ActiveLearnError  # noqa: E402

USERS_HELP = ("CSV file of users, one per line after the header `user,password,role` "
              "(role: annotator or lead; empty = annotator; lines starting with # are ignored)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description="Serve the labeling app. Without --auth/--users it is a single-user app "
                    "whose user is a lead; with them, everyone logs in and roles are enforced.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--home", help="folder holding labels.db, models/ and data/ "
                        "(default: $ACTIVELEARN_HOME or the current folder)")
    parser.add_argument("--fmnist-dir", help="folder with the four Fashion-MNIST .gz files "
                        "(default: $ACTIVELEARN_FMNIST_DIR or <home>/data/fashion-mnist)")
    parser.add_argument("--auth", action="append", default=[], metavar="USER:PASSWORD[:ROLE]",
                        help="add a user (repeatable); ROLE is annotator (default) or lead")
    parser.add_argument("--users", metavar="FILE", help=USERS_HELP)
    parser.add_argument("--db", metavar="URL", help="PostgreSQL URL to keep the labels in, e.g. "
                        "postgresql://user@host/db, so several app servers share one database "
                        "(default: $ACTIVELEARN_DB or <home>/labels.db)")
    parser.add_argument("--ray", metavar="auto|ADDRESS", help="run pool embedding and scoring on Ray: 'auto' "
                        "or a cluster address (default: $ACTIVELEARN_RAY; unset = in this process)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from activelearn import jobs, registry, store
    from activelearn.ui import build_app, launch_app, start_seed_if_needed
    from activelearn.ui.auth import collect_users, roles_of

    try:
        users = collect_users(args.auth, args.users)
    except ActiveLearnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.ray:
        os.environ[RAY_ENV] = args.ray   # read where the batch work runs, and by job workers
    try:  # what a killed previous server left: its sessions' leases (items hidden 300 s), staging folders
        paths = resolve_paths(args.home, args.fmnist_dir, args.db)
        db = store.open_db(paths.db)
        if not store.is_postgres(db):   # on PostgreSQL other servers' annotators hold live leases: they expire
            store.release_all_leases(db)
        registry.sweep_staging(paths.models)
    except ActiveLearnError as exc:   # not a labels.db, a newer schema, read-only: one sentence
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # SIGTERM (a service manager, `kill`) must stop the app as Ctrl-C does, so the cleanup below runs
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        seed = start_seed_if_needed(paths)
        if seed is not None:
            print(f"no active model in {paths.models}: training the seed model (job {seed.id}); "
                  "the page shows its progress", flush=True)
        app = build_app(paths, roles_of(users))
        launch_app(app, paths, users, host=args.host, port=args.port)
    except KeyboardInterrupt:  # stopped before the server ran (Gradio handles it once serving)
        pass
    finally:
        stopped = jobs.stop_children(store.open_db(paths.db))
        if stopped:
            print(f"cancelled job(s) {', '.join(map(str, stopped))} started by this app", flush=True)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    """Turn SIGTERM into KeyboardInterrupt: Gradio then closes the server and main() cleans up."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
