"""Where runtime state lives: one home folder holding labels.db, models/ and data/.

Everything the tool writes goes under the home folder so that a user can move,
back up or delete a whole project by handling one directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "ACTIVELEARN_HOME"
FMNIST_ENV = "ACTIVELEARN_FMNIST_DIR"
#: A PostgreSQL URL to keep the labels in instead of <home>/labels.db (several app servers, one database).
DB_ENV = "ACTIVELEARN_DB"
RAY_ENV = "ACTIVELEARN_RAY"
#: Niceness of CLI commands and job workers (default 10; 0 = the same priority as the app).
BACKGROUND_NICE_ENV = "ACTIVELEARN_BACKGROUND_NICE"
BACKGROUND_NICE = 10


def yield_to_annotators() -> int:
    """Run this process at background priority, so the app's annotators go first; returns the niceness.

    CLI commands (bulk `label --csv`, imports, exports) and job workers
    (training, embedding) call it at start. On a 2-core server two CLI
    labelers looping at the app's priority took 5 annotators from 23.5 to
    15.4 decisions/s and their p95 from 295 to 477 ms; on a faster machine
    background priority gave the annotators +11% (benchmarks/README.md,
    "Load and faults"). Niceness only matters when the cores are contended:
    on an idle machine a niced command runs as fast. Sets the niceness, does
    not add to it, so a worker started by a CLI command ends up at the same level.
    """
    try:
        wanted = int(os.environ.get(BACKGROUND_NICE_ENV, BACKGROUND_NICE))
    except ValueError:
        wanted = BACKGROUND_NICE
    if not hasattr(os, "nice"):   # Windows
        return 0
    current = os.nice(0)
    return os.nice(wanted - current) if wanted > current else current


@dataclass(frozen=True)
class Paths:
    """Resolved locations of the runtime state."""

    home: Path
    fmnist_dir: Path
    #: A postgresql:// URL, or None for the home's labels.db file.
    database: str | None = None

    @property
    def db(self) -> Path | str:
        """What store.open_db opens: the home's labels.db, or the PostgreSQL URL given."""
        return self.database or self.home / "labels.db"

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def images(self) -> Path:
        """Imported originals, stored by content hash."""
        return self.data / "images"

    @property
    def cache(self) -> Path:
        """Per-model-version score caches and other derived files."""
        return self.data / "cache"


def resolve_paths(home: str | os.PathLike | None = None,
                  fmnist_dir: str | os.PathLike | None = None, database: str | None = None) -> Paths:
    """Apply the precedence: explicit argument, then environment, then default.

    The home defaults to the current directory; the Fashion-MNIST folder to
    ``<home>/data/fashion-mnist``; the database to ``<home>/labels.db`` (models, images and
    caches stay in the home either way: on several servers it is a shared folder).
    """
    database = database or os.environ.get(DB_ENV) or None
    if database is not None and not database.startswith(("postgresql://", "postgres://")):
        from activelearn.errors import ActiveLearnError
        raise ActiveLearnError(f"--db takes a postgresql:// URL (got {database!r}); "
                               "without it the labels live in <home>/labels.db")
    home_path = Path(home or os.environ.get(HOME_ENV) or ".").expanduser().resolve()
    fm = fmnist_dir or os.environ.get(FMNIST_ENV)
    fm_path = Path(fm).expanduser().resolve() if fm else home_path / "data" / "fashion-mnist"
    return Paths(home=home_path, fmnist_dir=fm_path, database=database)
