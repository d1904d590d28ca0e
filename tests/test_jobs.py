"""Job rows and worker processes: no row stuck queued, no reaped worker that lives on."""

import subprocess
import sys

import pytest

from activelearn import jobs, store
from activelearn.config import resolve_paths
from activelearn.errors import JobError


def test_a_worker_that_cannot_start_leaves_a_failed_row_not_a_queued_one(tmp_path, monkeypatch):
    paths = resolve_paths(tmp_path)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    with pytest.raises(JobError, match="could not start"):
        jobs.start_training(paths, {"mode": "photo"})
    db = store.open_db(paths.db)
    assert db.execute("SELECT status FROM jobs").fetchall() == [("failed",)]
    assert jobs.active_job(db) is None        # the next training is not blocked


def test_a_silent_worker_is_stopped_when_reaped_and_its_row_cannot_flip_back(tmp_path, monkeypatch):
    paths = resolve_paths(tmp_path)
    db = store.open_db(paths.db)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    db.execute("INSERT INTO jobs (kind, status, params, pid, created_at, heartbeat_at) "
               "VALUES ('train', 'running', '{}', ?, ?, ?)", [worker.pid, store.now(), store.now()])
    monkeypatch.setattr(jobs, "HEARTBEAT_TIMEOUT_S", -1)   # every heartbeat is now too old
    job = jobs.list_jobs(db)[0]
    assert job.status == "failed" and "no progress" in job.message
    assert worker.wait(timeout=10) != 0                     # killed, not left running on the cores
    # a late report from the (now dead) worker asks it to stop, and cannot mark the job succeeded
    assert jobs._Reporter(db, job.id)({"phase": "train"}) is True
    store.finish_job(db, job.id, "succeeded", "late", version="v9")
    assert jobs.get_job(db, job.id).status == "failed"


def test_one_job_of_each_kind_may_run_at_once(tmp_path):
    paths = resolve_paths(tmp_path)
    db = store.open_db(paths.db)
    for kind in ("train", "embed"):
        db.execute("INSERT INTO jobs (kind, status, params, created_at, heartbeat_at) "
                   "VALUES (?, 'queued', '{}', ?, ?)", [kind, store.now(), store.now()])
    assert jobs.active_job(db, "train").kind == "train" and jobs.active_job(db, "embed").kind == "embed"
    with pytest.raises(JobError, match="already queued"):
        jobs.start_job(paths, "embed", {})
    with pytest.raises(JobError, match="unknown job kind"):
        jobs.start_job(paths, "mine-bitcoin", {})
