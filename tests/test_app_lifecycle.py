"""The app's own jobs over its lifetime: stopping the app stops them, finished workers are reaped,
and an offline first launch says in one line what to do and offers a Retry.

Checked in the jobs table of labels.db and in /proc, not only in page text. Nothing here
reaches the internet: downloads go to closed ports on 127.0.0.1.
"""

from __future__ import annotations

import html
import json
import signal
from pathlib import Path

import gradio as gr
import pytest

from activelearn import jobs, store
from activelearn.backbones import DEFAULT_BACKBONE
from activelearn.config import resolve_paths
from activelearn.errors import DatasetError
from activelearn.fmnist import OFFICIAL_FILES, ensure_files
from activelearn.ui import header_html, retry_seed, seed_retry_visible
from activelearn.ui.context import UIContext
from tests.helpers import free_port, poll, start_app, stop, wait_served

OFFLINE = {name: "http://127.0.0.1:9" for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}


def process_state(pid: int) -> str | None:
    """The state letter in /proc/<pid>/stat ('Z' for a zombie), or None when the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


@pytest.mark.slow
def test_stopping_the_app_cancels_its_seed_job_and_stops_the_worker(tmp_path, fmnist_dir):
    paths = resolve_paths(tmp_path / "fresh", fmnist_dir)
    port = free_port()
    proc = start_app(paths.home, fmnist_dir, port)
    try:
        wait_served(f"http://127.0.0.1:{port}/", proc)
        db = store.open_db(paths.db)
        job_id, pid = poll(lambda: db.execute("SELECT id, pid FROM jobs WHERE status = 'running' "
                                              "AND pid IS NOT NULL").fetchone(),
                           60, "the seed job runs with a pid")
        assert process_state(pid) not in (None, "Z")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert process_state(pid) is None, "the worker is gone, not orphaned and not a zombie"
        status, message = db.execute("SELECT status, message FROM jobs WHERE id = ?", [job_id]).fetchone()
        assert status == "cancelled", message
        assert f"cancelled job(s) {job_id}" in proc.stdout.read()
    finally:
        stop(proc)
        for (pid,) in store.open_db(paths.db).execute(
                "SELECT pid FROM jobs WHERE status IN ('queued','running') AND pid IS NOT NULL").fetchall():
            jobs._stop_worker(pid)


def test_a_finished_worker_is_reaped_not_left_a_zombie(tmp_path):
    paths = resolve_paths(tmp_path / "home", tmp_path / "fmnist")
    db = store.open_db(paths.db)
    job = jobs.start_job(paths, jobs.EMBED, {"backbone": DEFAULT_BACKBONE})  # no items: ends at once
    assert jobs.wait(db, job.id, timeout_s=120).status == "succeeded"

    def reaped() -> bool:
        jobs.list_jobs(db)   # what every reader (the UI's header poll) does
        return process_state(job.pid) is None

    poll(reaped, 30, f"worker {job.pid} reaped, not left a zombie")


def offline_message(directory: Path) -> tuple[str, list[str]]:
    """The DatasetError text of a download from two closed ports, and those mirrors."""
    mirrors = [f"http://127.0.0.1:{free_port()}/fashion/", f"http://127.0.0.1:{free_port()}/mirror/"]
    with pytest.raises(DatasetError) as err:
        ensure_files(directory, mirrors=mirrors, timeout=2, retries=2, progress=False)
    return str(err.value), mirrors


def test_offline_message_is_one_short_line_naming_files_and_folder(tmp_path, caplog):
    empty = tmp_path / "no-fmnist"
    message, mirrors = offline_message(empty)
    assert "\n" not in message and len(message.replace(str(empty), "")) < 400, message
    assert all(name in message for name in OFFICIAL_FILES) and str(empty) in message
    assert "--fmnist-dir" in message and "ACTIVELEARN_FMNIST_DIR" in message
    assert not any(mirror in message for mirror in mirrors), "the tried URLs stay out of the message"
    for mirror in mirrors:  # each host once, each URL in the log
        assert message.count(mirror.split("/")[2]) == 1
        assert f"{mirror}{OFFICIAL_FILES[0]}" in caplog.text
    assert list(empty.iterdir()) == []


def test_retry_restarts_the_failed_seed_job_for_a_lead_only(tmp_path, monkeypatch):
    for name, value in OFFLINE.items():  # the restarted worker must not reach the internet
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    empty = tmp_path / "no-fmnist"
    paths = resolve_paths(tmp_path / "fresh", empty)
    db = store.open_db(paths.db)
    message = "DatasetError: " + offline_message(empty)[0]
    db.execute("INSERT INTO jobs (kind, status, params, message, created_at, heartbeat_at, finished_at) "
               "VALUES ('train', 'failed', ?, ?, ?, ?, ?)",
               [json.dumps({"mode": "scratch"}), message, store.now(), store.now(), store.now()])
    lead, annotators = UIContext(paths), UIContext(paths, {"ann": "annotator"})
    annotator = gr.Request(username="ann")

    assert html.escape(message) in header_html(lead, None), "the whole short message, not cut"
    assert seed_retry_visible(lead, None) and not seed_retry_visible(annotators, annotator)
    with pytest.raises(gr.Error):
        retry_seed(annotators, annotator)
    assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 1

    try:
        _header, button = retry_seed(lead, None)
        rows = db.execute("SELECT id, status, params, pid FROM jobs ORDER BY id").fetchall()
        assert len(rows) == 2
        new_id, status, params, pid = rows[1]
        assert status in ("queued", "running") and json.loads(params) == {"mode": "scratch"} and pid
        assert button["visible"] is False, "no Retry while the seed job is active"
    finally:
        stopped = jobs.stop_children(db, grace_s=2)
    assert db.execute("SELECT status FROM jobs WHERE id = ?", [new_id]).fetchone()[0] in ("cancelled", "failed")
    assert process_state(pid) is None and stopped in ([], [new_id])
