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


@dataclass(frozen=True)
class Paths:
    """Resolved locations of the runtime state."""

    home: Path
    fmnist_dir: Path

    @property
    def db(self) -> Path:
        return self.home / "labels.db"

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
                  fmnist_dir: str | os.PathLike | None = None) -> Paths:
    """Apply the precedence: explicit argument, then environment, then default.

    The home defaults to the current directory; the Fashion-MNIST folder to
    ``<home>/data/fashion-mnist``.
    """
    home_path = Path(home or os.environ.get(HOME_ENV) or ".").expanduser().resolve()
    fm = fmnist_dir or os.environ.get(FMNIST_ENV)
    fm_path = Path(fm).expanduser().resolve() if fm else home_path / "data" / "fashion-mnist"
    return Paths(home=home_path, fmnist_dir=fm_path)
