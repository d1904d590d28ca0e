"""Automatic retraining of the photo model every N decisions, like an online learner.

A photo-model head trains in about a second, so there is no reason to wait
for a lead to press a button: once N new human labels have arrived since the
newest photo version (or N labels exist and none does), a photo training job
starts in the background and the queue is ranked by the new version as soon
as it is activated. It only starts where the backbone has embedded items (the
photo path is available) and no training job is running. The setting lives in
labels.db (the Train tab's toggle), default on with N = 50.
"""

from __future__ import annotations

from typing import Any

from activelearn import jobs, registry, store
from activelearn.backbones import DEFAULT_BACKBONE
from activelearn.config import Paths
from activelearn.errors import ActiveLearnError
from activelearn.jobs import Job

SETTING = "auto_retrain"
#: The last automatic job and the labels counted when it started: a failure waits N more labels.
LAST_JOB = "auto_retrain_last_job"
DEFAULTS = {"enabled": True, "every": 50}


def settings(db) -> dict[str, Any]:
    return {**DEFAULTS, **(store.get_setting(db, SETTING) or {})}


def configure(db, *, enabled: bool, every: int) -> dict[str, Any]:
    if int(every) < 1:
        raise ActiveLearnError("retrain every N decisions needs N >= 1")
    value = {"enabled": bool(enabled), "every": int(every)}
    store.set_setting(db, SETTING, value)
    return value


def newest_photo_version(paths: Paths) -> tuple[str | None, dict[str, Any] | None]:
    """The newest registered photo version and its card (none: (None, None))."""
    for version in reversed(registry.list_versions(paths.models)):
        try:
            card = registry.read_card(paths.models, version)
        except ActiveLearnError:
            continue
        if registry.model_kind(card) == registry.PHOTO:
            return version, card
    return None, None


def labels_since_photo_model(paths: Paths, db) -> tuple[int, str]:
    """(new human labels since the newest photo version, its backbone or the default)."""
    _, card = newest_photo_version(paths)
    used = card["human_labels_used"]["train"] if card else 0
    backbone = card["backbone"]["name"] if card else DEFAULT_BACKBONE
    return store.count_labeled(db, "pool") - used, backbone


def maybe_retrain(paths: Paths, db) -> Job | None:
    """Start a photo training job when one is due; returns it, or None.

    A failed automatic job is not retried until N more labels have arrived, so a
    persistent problem (no weights, one class only) costs one job, not one per decision.
    """
    chosen = settings(db)
    if not chosen["enabled"]:
        return None
    new_labels, backbone = labels_since_photo_model(paths, db)   # cheap checks first: this runs per decision
    if new_labels < chosen["every"] or not store.has_embeddings(db, backbone) \
            or jobs.active_job(db, jobs.TRAIN) is not None:
        return None
    labeled = store.count_labeled(db, "pool")
    last = store.get_setting(db, LAST_JOB)
    if last is not None and labeled - last["labels"] < chosen["every"] and _failed(db, last["job"]):
        return None
    try:
        job = jobs.start_training(paths, {"mode": "photo", "backbone": backbone, "trigger": "auto",
                                          "labels": labeled})
    except ActiveLearnError:  # another annotator's decision started it a moment ago
        return None
    store.set_setting(db, LAST_JOB, {"job": job.id, "labels": labeled})
    return job


def _failed(db, job_id: int) -> bool:
    try:
        return jobs.get_job(db, job_id).status == "failed"
    except ActiveLearnError:   # the row is gone
        return False
