"""Background jobs (training, embedding): run in a separate process, report through the `jobs` table.

The UI and the CLI only insert a job row and start `python -m activelearn.jobs
JOB_ID`; the worker writes phase / epoch / batch / loss / accuracy / ETA into
the row and polls its `cancel_requested` flag. A crash (or kill -9) of the
worker cannot corrupt labels.db: it only ever writes its own job row (and, for
an embedding job, embeddings in short transactions), and the model registry
writes versions atomically. A job whose process has died or gone silent is
marked failed by the next reader (`reap_stale`), and a silent worker is
stopped so it cannot register a version later. A unique partial index lets
only one job of each kind be queued or running at a time: a photo-model
training may run while the backbone embeds new imports.

Workers are children of the process that started them: the next reader of
the table reaps finished ones (no zombies), and an app that shuts down
cancels the jobs it started (`stop_children`) instead of leaving them running.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from activelearn.backbones import DEFAULT_BACKBONE
from activelearn.config import Paths, resolve_paths, yield_to_annotators
from activelearn.errors import JobError
from activelearn import store
from activelearn.store import now, open_db

TRAIN = "train"
EMBED = "embed"
KINDS = (TRAIN, EMBED)
ACTIVE_STATES = ("queued", "running")
#: A running job that has not written progress for this long is presumed dead.
HEARTBEAT_TIMEOUT_S = 600
_children: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    status: str
    params: dict[str, Any]
    pid: int | None
    phase: str | None
    epoch: int | None
    epochs: int | None
    batch: int | None
    batches: int | None
    loss: float | None
    accuracy: float | None
    eta_s: float | None
    history: list[dict[str, Any]]
    message: str | None
    version: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATES

    @property
    def fraction_done(self) -> float:
        """0..1 over all epochs, for progress bars."""
        if self.status == "succeeded":
            return 1.0
        if not self.epochs or not self.epoch:
            return 0.0
        within = (self.batch or 0) / self.batches if self.batches else 0.0
        return min(1.0, ((self.epoch - 1) + within) / self.epochs)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "fraction_done": self.fraction_done}


def get_job(db: sqlite_utils.Database, job_id: int) -> Job:
    reap_children()
    reap_stale(db)
    row = store.job_row(db, job_id)
    if row is None:
        raise JobError(f"no job {job_id}")
    return Job(**row)


def list_jobs(db: sqlite_utils.Database, limit: int = 20) -> list[Job]:
    reap_children()
    reap_stale(db)
    return [Job(**row) for row in store.job_rows(db, limit)]


def active_job(db: sqlite_utils.Database, kind: str = TRAIN) -> Job | None:
    reap_children()
    reap_stale(db)
    row = store.active_job_row(db, kind)
    return Job(**row) if row else None


def _process_alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie answers kill(0) but is dead
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def reap_stale(db: sqlite_utils.Database) -> None:
    """Mark queued/running jobs whose worker is gone (or silent for too long) as failed."""
    for job_id, pid, heartbeat, created in store.active_job_heartbeats(db):
        dead = pid is not None and not _process_alive(pid)
        silent = time.time() - _parse_ts(heartbeat or created) > HEARTBEAT_TIMEOUT_S
        if dead or silent:
            reason = "worker process died" if dead else f"no progress for {HEARTBEAT_TIMEOUT_S} s"
            if silent and not dead and pid is not None:
                _stop_worker(pid)  # a hung worker must not register a version after being failed
            store.fail_stale_job(db, job_id, f"{reason} (pid {pid}); the active model is unchanged")


def _stop_worker(pid: int) -> None:
    """SIGKILL a worker's process group (it runs in its own session) and reap it if it is our child."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
    child = _children.pop(pid, None)
    if child is not None:
        child.wait(timeout=10)


def reap_children() -> None:
    """Collect the exit status of finished workers this process started, so none lingers as a zombie.

    A worker that finished writes its own row, so nothing else would ever wait for it;
    every reader of the jobs table (the UI polls every few seconds) calls this.
    """
    for pid, child in list(_children.items()):
        if child.poll() is not None:
            _children.pop(pid, None)


def stop_children(db: sqlite_utils.Database, grace_s: float = 5.0) -> list[int]:
    """Cancel the jobs whose workers this process started and make sure the workers are gone; returns their ids.

    For an app that shuts down: its workers would otherwise train on unwatched.
    First the cancel flag (a clean stop at the next progress report), after
    `grace_s` SIGTERM (the worker records 'cancelled' itself), after another
    `grace_s` SIGKILL of the process group; a row still active is then marked
    cancelled here, so none stays 'running' for a worker that no longer exists.
    """
    reap_children()
    pids = list(_children)
    if not pids:
        return []
    job_ids = store.active_job_ids_of(db, pids)
    store.request_job_cancel(db, job_ids)
    _wait_children(grace_s)
    for pid in list(_children):
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    _wait_children(grace_s)
    for pid in list(_children):
        _stop_worker(pid)
    for job_id in job_ids:   # a no-op for those whose worker recorded its own end
        store.finish_job(db, job_id, "cancelled",
                         "stopped because the app shut down; the active model is unchanged")
    return job_ids


def _wait_children(timeout_s: float) -> None:
    """Wait until every child worker has exited or `timeout_s` has passed, reaping those that exit."""
    deadline = time.monotonic() + timeout_s
    for pid, child in list(_children.items()):
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            continue
        _children.pop(pid, None)


def _parse_ts(text: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(text).timestamp()


def start_training(paths: Paths, params: dict[str, Any]) -> Job:
    """Queue a training job and start its worker process; refuses if one is active."""
    return start_job(paths, TRAIN, params)


def start_job(paths: Paths, kind: str, params: dict[str, Any]) -> Job:
    """Queue a job of `kind` and start its worker; refuses while one of that kind is active."""
    if kind not in KINDS:
        raise JobError(f"unknown job kind {kind!r}: use one of {', '.join(KINDS)}")
    db = open_db(paths.db)
    reap_stale(db)
    job_id = store.create_job(db, kind, params)
    if job_id is None:
        running = active_job(db, kind)
        raise JobError(f"a {kind} job is already {running.status if running else 'active'} "
                       f"(job {running.id if running else '?'}); wait for it or cancel it")
    log_dir = paths.data / "jobs"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / f"{job_id}.log", "ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "activelearn.jobs", "--home", str(paths.home),
                 "--fmnist-dir", str(paths.fmnist_dir), *(["--db", paths.database] if paths.database else []),
                 str(job_id)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    except OSError as exc:  # no row may stay queued without a worker: it would block every job of its kind
        store.finish_job(db, job_id, "failed", f"could not start the worker process: {exc}")
        raise JobError(f"could not start the {kind} worker process: {exc}") from exc
    _children[child.pid] = child
    store.update_job(db, job_id, pid=child.pid)
    return get_job(db, job_id)


def embed_new_items(paths: Paths, backbone: str = DEFAULT_BACKBONE) -> Job | None:
    """Start embedding items the backbone has not embedded yet (after an import); None if none or one runs."""
    db = open_db(paths.db)
    if not store.items_without_embedding(db, backbone)[:1] or active_job(db, EMBED) is not None:
        return None
    try:
        return start_job(paths, EMBED, {"backbone": backbone})
    except JobError:  # another import started it a moment ago
        return None


def cancel(db: sqlite_utils.Database, job_id: int) -> Job:
    """Ask a job to stop; the worker stops at its next progress report (within ~1 s)."""
    job = get_job(db, job_id)
    if not job.active:
        raise JobError(f"job {job_id} is {job.status}; only queued or running jobs can be cancelled")
    store.request_job_cancel(db, [job_id])
    return get_job(db, job_id)


def wait(db: sqlite_utils.Database, job_id: int, *, poll_s: float = 0.5,
         timeout_s: float | None = None, on_update=None) -> Job:
    """Poll a job until it ends (for `retrain --wait` and tests)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        job = get_job(db, job_id)
        if on_update:
            on_update(job)
        if not job.active:
            return job
        if deadline is not None and time.monotonic() > deadline:
            raise JobError(f"job {job_id} still {job.status} after {timeout_s} s")
        time.sleep(poll_s)


# ---------------------------------------------------------------- the worker side

class _Reporter:
    """Writes progress into the job row; answers True when a cancel was requested."""

    def __init__(self, db: sqlite_utils.Database, job_id: int):
        self.db, self.job_id = db, job_id
        self.history: list[dict[str, Any]] = []

    def __call__(self, update: dict[str, Any]) -> bool:
        fields = {k: update[k] for k in ("phase", "epoch", "epochs", "batch", "batches",
                                         "loss", "accuracy", "eta_s") if k in update}
        if update.get("phase") == "epoch-end":
            self.history.append({k: v for k, v in update.items() if k != "phase"})
            fields["history"] = self.history
        store.update_job(self.db, self.job_id, **fields, heartbeat_at=now())
        control = store.job_control(self.db, self.job_id)
        # a job another process marked failed (reaped as silent) must stop and register nothing
        return control is None or control[0] or control[1] not in ACTIVE_STATES


def run_job(paths: Paths, job_id: int) -> int:
    """Worker entry point: embed, or train + register + apply the activation policy; record the outcome."""
    db = open_db(paths.db)
    job = get_job(db, job_id)
    started = now()
    store.update_job(db, job_id, status="running", pid=os.getpid(), started_at=started, heartbeat_at=started,
                     phase="load")
    report = _Reporter(db, job_id)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        if job.kind == EMBED:
            from activelearn.embeddings import embed_items
            result = embed_items(paths, job.params.get("backbone", DEFAULT_BACKBONE), progress=report)
            outcome_status = "cancelled" if result.cancelled else "succeeded"
            store.finish_job(db, job_id, outcome_status, result.message())
            return 0
        from activelearn.retrain import retrain_and_register
        outcome = retrain_and_register(paths, job.params, progress=report)
    except KeyboardInterrupt:
        store.finish_job(db, job_id, "cancelled", "stopped by signal; the active model is unchanged")
        return 1
    except Exception as exc:  # noqa: BLE001 - every failure must land in the job row
        traceback.print_exc()
        store.finish_job(db, job_id, "failed", f"{type(exc).__name__}: {exc}")
        return 1
    if outcome.cancelled:
        store.finish_job(db, job_id, "cancelled", "cancelled by user; no version registered")
        return 0
    store.finish_job(db, job_id, "succeeded", outcome.message, version=outcome.version)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m activelearn.jobs",
                                     description="Run one queued job (started by the app/CLI).")
    parser.add_argument("--home")
    parser.add_argument("--fmnist-dir")
    parser.add_argument("--db")
    parser.add_argument("job_id", type=int)
    args = parser.parse_args(argv)
    yield_to_annotators()
    return run_job(resolve_paths(args.home, args.fmnist_dir, args.db), args.job_id)


if __name__ == "__main__":
    sys.exit(main())
