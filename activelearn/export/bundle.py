"""Atomic output: a folder or zip filled under a temporary name, then published by one rename.

Output is written under a temporary name and renamed at the end, so a failed export
leaves nothing behind, and an existing output is replaced only with ``overwrite=True``.
"""

from __future__ import annotations

import os
import shutil
import uuid
import zipfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from activelearn.errors import ActiveLearnError


class Bundle:
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

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.as_zip:
            self._zip.close()


def staging_name(out: Path) -> Path:
    return out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.part")


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def refuse_existing(targets: Sequence[Path], overwrite: bool) -> None:
    if overwrite:
        return
    for target in targets:
        if target.exists() or target.is_symlink():
            raise ActiveLearnError(f"{target} already exists; choose another output or pass "
                                   "--overwrite (overwrite=True) to replace it")


def publish(staging: Path, target: Path, overwrite: bool) -> None:
    """Move a finished staging file/folder to its final name; only now does the output appear.

    Without overwrite, files are linked (which fails if the name was taken meanwhile)
    and folders renamed (which fails onto a non-empty folder). With overwrite the old
    output is first moved aside, so readers see the old or the new, never a mix.
    """
    if target.exists() or target.is_symlink():
        refuse_existing([target], overwrite)
        aside = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
        os.rename(target, aside)
        os.rename(staging, target)
        remove(aside)
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
