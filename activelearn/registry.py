"""Model versions under models/: one folder each (model.keras + card.json) and an ACTIVE pointer.

A version folder appears all at once: it is written under a temporary name,
checked by loading it back, then renamed. The ACTIVE pointer is replaced
atomically and only after the model it names has loaded, so a missing or
corrupt model can never become (or silently stay reachable as) the active one.
A process killed half-way leaves its staging folder (`.tmp-<pid>-<hex>`);
`sweep_staging` removes those whose writer is gone, at app start and before
each registration.

Reading cards and versions needs no TensorFlow; loading a model does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from activelearn.errors import ModelError

if TYPE_CHECKING:
    import keras

#: Model kinds: the 28x28 seed CNN, and a photo model (ImageNet backbone + head; the file is the head).
CNN = "cnn"
PHOTO = "photo"
MODEL_FILE = "model.keras"
CARD_FILE = "card.json"
ACTIVE_FILE = "ACTIVE"
_VERSION = re.compile(r"^v(\d+)$")
STAGING_PREFIX = ".tmp-"
#: Staging debris whose writer cannot be told (older names, a reused pid) is swept after this long;
#: writing a version takes seconds.
STALE_STAGING_S = 3600.0


def list_versions(models_dir: Path) -> list[str]:
    """Registered versions, oldest first."""
    if not models_dir.is_dir():
        return []
    found = [(int(m.group(1)), p.name) for p in models_dir.iterdir()
             if p.is_dir() and (m := _VERSION.match(p.name))]
    return [name for _, name in sorted(found)]


def active_version(models_dir: Path) -> str | None:
    pointer = models_dir / ACTIVE_FILE
    if not pointer.exists():
        return None
    version = pointer.read_text().strip()
    return version or None


def require_active(models_dir: Path) -> str:
    version = active_version(models_dir)
    if version is None:
        raise ModelError(f"no active model in {models_dir}: run `python -m activelearn train-seed` first")
    return version


def read_card(models_dir: Path, version: str) -> dict[str, Any]:
    path = models_dir / _checked(version) / CARD_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"model version {version!r} not found in {models_dir}") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"card of model version {version!r} is corrupt: {exc}") from exc


def model_kind(card: dict[str, Any]) -> str:
    """cnn or photo; cards written before photo models existed are CNN cards."""
    return card.get("kind", CNN)


def load_model(models_dir: Path, version: str | None = None) -> keras.Model:
    """Load a version (default: the active one); a clear ModelError if missing or corrupt."""
    version = version or require_active(models_dir)
    path = models_dir / _checked(version) / MODEL_FILE
    if not path.exists():
        raise ModelError(f"model file missing: {path}")
    import keras

    from activelearn import model as _registers_layers  # noqa: F401 - custom objects, TF setup
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - keras raises many kinds for a bad file
        raise ModelError(f"model file {path} is corrupt or unreadable: {exc}") from exc


def register(models_dir: Path, model: keras.Model, card: dict[str, Any], *,
             activate_now: bool = False) -> str:
    """Save model + card as the next version; returns its name (v1, v2, ...)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    sweep_staging(models_dir)
    staging = models_dir / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        model.save(staging / MODEL_FILE)
        while True:
            existing = list_versions(models_dir)
            number = int(existing[-1][1:]) + 1 if existing else 1
            version = f"v{number}"
            card = {**card, "version": version}
            (staging / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=False))
            try:
                os.rename(staging, models_dir / version)  # fails if another writer took the name
                break
            except OSError:
                if not (models_dir / version).exists():
                    raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if activate_now:
        activate(models_dir, version)
    return version


def sweep_staging(models_dir: Path, *, stale_after_s: float = STALE_STAGING_S) -> list[str]:
    """Remove staging folders (and ACTIVE temp files) left by killed writers; returns their names.

    One whose writer process is gone goes at once; one whose writer cannot be told, or that
    is older than `stale_after_s`, goes by age. A live writer's folder is left alone.
    """
    if not models_dir.is_dir():
        return []
    removed = []
    for path in models_dir.iterdir():
        if not (path.name.startswith(STAGING_PREFIX) or path.name.startswith(f".{ACTIVE_FILE}.")):
            continue
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:   # its writer finished a moment ago
            continue
        pid = _staging_pid(path.name)
        if age < stale_after_s and (pid is None or _alive(pid)):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed


def _staging_pid(name: str) -> int | None:
    """The writer's pid in `.tmp-<pid>-<hex>` (None for other names)."""
    match = re.match(rf"^{re.escape(STAGING_PREFIX)}(\d+)-[0-9a-f]+$", name)
    return int(match.group(1)) if match else None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's live process
        return True
    try:  # a killed writer not yet reaped (a zombie) answers kill(0) but writes nothing more
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def activate(models_dir: Path, version: str) -> None:
    """Point ACTIVE at a version after checking that its model loads."""
    load_model(models_dir, version)
    pointer = models_dir / ACTIVE_FILE
    tmp = pointer.with_name(f".{ACTIVE_FILE}.{uuid.uuid4().hex}")
    tmp.write_text(version + "\n")
    os.replace(tmp, pointer)


def version_summaries(models_dir: Path) -> list[dict[str, Any]]:
    """One row per version: kind, accuracy on the test sets in its card, label counts, active flag.

    A version whose card is unreadable or incomplete is listed with its error, never dropped.
    """
    active = active_version(models_dir)
    rows = []
    for version in list_versions(models_dir):
        try:
            rows.append(_summary(read_card(models_dir, version), version, active))
        except Exception as exc:  # noqa: BLE001 - list the broken version, don't hide it
            rows.append({"version": version, "error": f"unreadable card: {exc!r}", "active": version == active})
    return rows


def _summary(card: dict[str, Any], version: str, active: str | None) -> dict[str, Any]:
    metrics = card["metrics"]
    holdout = metrics.get("holdout") or {}
    fmnist = metrics.get("fmnist_test") or {}
    return {
        "version": version, "active": version == active, "kind": model_kind(card),
        "backbone": (card.get("backbone") or {}).get("name"), "parent": card.get("parent"),
        "created_at": card.get("created_at"), "mode": card["hyperparameters"].get("mode"),
        "fmnist_accuracy": fmnist.get("accuracy"),
        "holdout_accuracy": holdout.get("accuracy"), "holdout_n": holdout.get("n", 0),
        "human_labels": card.get("human_labels_used", {}).get("train", 0),
        "classes": len(card["class_names"]),
    }


def _checked(version: str) -> str:
    if not _VERSION.match(str(version)):
        raise ModelError(f"bad model version {version!r}: versions look like v1, v2, ...")
    return version
