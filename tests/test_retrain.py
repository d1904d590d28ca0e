"""The loop through the CLI: import, query, label, retrain in a background job, new version."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from activelearn import jobs, registry, store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--epochs", "1", "--fmnist-fraction", "0.02"]


def cli(paths, *args, check=True):
    result = subprocess.run([sys.executable, "-m", "activelearn", "--home", str(paths.home),
                             "--fmnist-dir", str(paths.fmnist_dir), *args],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def true_classes(photo_folder):
    """sha256 of each photo -> its class id, from the class folder it was written to."""
    from activelearn import FMNIST_CLASSES
    from activelearn.synthetic import safe_folder_name
    index = {safe_folder_name(name): i for i, name in enumerate(FMNIST_CLASSES)}
    return {hashlib.sha256(p.read_bytes()).hexdigest(): index[p.parent.name]
            for p in photo_folder.rglob("*.jpg")}


@pytest.mark.slow
def test_import_query_label_retrain_gives_version_with_holdout_metrics(seeded_home, photo_folder):
    paths = seeded_home
    report = json.loads(cli(paths, "import", str(photo_folder), "--holdout-fraction", "0.3", "--json").stdout)
    assert report["added"] == 60
    db = store.open_db(paths.db)
    truth = true_classes(photo_folder)
    items = db.execute("SELECT id, sha256, split FROM items").fetchall()
    holdout = [(i, truth[sha]) for i, sha, split in items if split == "holdout"]
    assert 8 <= len(holdout) <= 30

    queued = json.loads(cli(paths, "query", "--n", "15", "--json").stdout)
    assert len(queued) == 15
    holdout_ids = {i for i, _ in holdout}
    from_pool = [q for q in queued if q["item_id"] not in holdout_ids]
    assert len(queued) - len(from_pool) <= 2          # the holdout's random share: 10% of the batch
    by_id = {i: truth[sha] for i, sha, _ in items}
    rows = [(q["item_id"], by_id[q["item_id"]]) for q in from_pool] + holdout
    csv = paths.home / "labels.csv"
    csv.write_text("item,class\n" + "".join(f"{i},{c}\n" for i, c in rows))
    cli(paths, "label", "--csv", str(csv), "--annotator", "tester")
    assert len(store.labeled_items(db, split="pool")) == len(from_pool)
    assert len(store.labeled_items(db, split="holdout")) == len(holdout)

    out = json.loads(cli(paths, "retrain", "--wait", "--json", *TINY).stdout)
    assert out["status"] == "succeeded", out["message"]
    assert out["version"] == "v2"
    card = registry.read_card(paths.models, "v2")
    assert card["parent"] == "v1"
    assert card["training_data"]["validation"]["fmnist"] == 5000    # the fine-tune still holds out 5k
    parts = [card["metrics"][split] for split in ("holdout", "holdout_selection")]
    assert sum(m["n"] for m in parts) == len(holdout)          # report + selection parts = the holdout
    assert sum(m["support"] for m in parts for m in m["per_class"].values()) == len(holdout)
    assert card["human_labels_used"] == {"train": len(from_pool), "holdout": len(holdout)}
    assert sum(card["training_data"]["per_class"]["human"].values()) == len(from_pool)
    selection_n = card["metrics"]["holdout_selection"]["n"]
    assert card["activation"]["basis"] == ("holdout_selection" if selection_n >= 10 else "fmnist_test")
    assert (registry.active_version(paths.models) == "v2") == card["activation"]["activated"]
    listed = json.loads(cli(paths, "jobs", "--json").stdout)
    assert listed[0]["status"] == "succeeded" and listed[0]["history"]


def wait_for_training(db, job_id, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = jobs.get_job(db, job_id)
        if job.status == "running" and job.phase == "train" and job.batch:
            return job
        assert job.active, job.message
        time.sleep(0.2)
    raise AssertionError("training never started")


@pytest.mark.slow
def test_killed_training_is_marked_failed_and_active_model_unchanged(seeded_home):
    paths = seeded_home
    db = store.open_db(paths.db)
    job = jobs.start_training(paths, {"mode": "finetune", "epochs": 30, "fmnist_fraction": 0.2})
    with pytest.raises(Exception, match="already"):
        jobs.start_training(paths, {"mode": "finetune"})       # one training at a time
    running = wait_for_training(db, job.id)
    os.kill(running.pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while jobs.get_job(db, job.id).status == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    failed = jobs.get_job(db, job.id)
    assert failed.status == "failed" and "died" in failed.message
    assert registry.active_version(paths.models) == "v1"
    assert registry.list_versions(paths.models) == ["v1"]
    assert not list(paths.models.glob(".tmp-*"))
    # the store is intact and a new job can start
    assert store.schema_version(db) == store.SCHEMA_VERSION
    again = jobs.start_training(paths, {"mode": "finetune", "epochs": 30, "fmnist_fraction": 0.2})
    wait_for_training(db, again.id)
    jobs.cancel(db, again.id)
    ended = jobs.wait(db, again.id, timeout_s=60)
    assert ended.status == "cancelled"
    assert registry.list_versions(paths.models) == ["v1"]
