"""End to end through gradio_client against real servers on 127.0.0.1, checking labels.db after each step.

The main flow serves build_app in-process (the tiny model is already loaded);
the first-launch tests run `python app.py` as a subprocess, as a user would.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from activelearn import jobs, registry, store
from activelearn.config import resolve_paths
from activelearn.ui import build_app, launch_app
from activelearn.ui.auth import roles_of
from tests.helpers import LEAD, free_port, start_app, stop, wait_served

REPO = Path(__file__).resolve().parents[1]
TINY_RETRAIN = {"mode": "finetune", "epochs": 1, "fmnist_fraction": 0.02}


@pytest.fixture
def lead_client(seeded_home, tmp_path, monkeypatch):
    """A real server (login required) and a client logged in as a lead; the test's folders are import roots."""
    from gradio_client import Client

    from activelearn.ingest.sources import IMPORT_ROOTS_ENV
    monkeypatch.setenv(IMPORT_ROOTS_ENV, str(tmp_path))

    demo = build_app(seeded_home, roles_of([LEAD]))
    port = free_port()
    launch_app(demo, seeded_home, [LEAD], port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", auth=(LEAD.name, LEAD.password), verbose=False)
    finally:
        demo.close()


def decisions(db, annotator: str = LEAD.name) -> list[tuple]:
    return db.execute("SELECT item_id, action, class_id FROM labels WHERE annotator = ? ORDER BY id",
                      [annotator]).fetchall()


@pytest.mark.slow
def test_import_label_undo_retrain_review(lead_client, seeded_home, photo_folder):
    client, paths = lead_client, seeded_home
    db = store.open_db(paths.db)

    # 1. import through the Import tab's endpoint (a folder on the server)
    summary, _rejected, _preview = client.predict([], str(photo_folder), False, 0.1, api_name="/import_files")
    assert "Added 60" in summary
    assert db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 60
    undecided = len(store.unlabeled(db, "pool")) + len(store.unlabeled(db, "holdout"))

    # 2. label 20 items: confirms, digit-style corrections, a skip and a reject
    shown = client.predict(api_name="/label_load")
    names = store.class_names(db)
    for step in range(20):
        item_id = shown[0]
        action, cls = {5: ("skip", ""), 9: ("reject", ""), 13: ("correct", "Bag"), 17: ("confirm", "3")}.get(
            step, ("confirm", ""))
        shown = client.predict(item_id, action, cls, api_name="/decide")
        rows = decisions(db)
        assert len(rows) == step + 1 and rows[-1][0] == item_id, "each decision is in labels.db at once"
        assert shown[0] != item_id, "the next item is shown"
    rows = decisions(db)
    assert [r[1] for r in rows].count("skip") == 1 and [r[1] for r in rows].count("reject") == 1
    assert rows[13][2] == names.index("Bag") and rows[17][2] == 3
    assert "18 labeled · 1 skipped · 1 rejected" in shown[5]
    # a share of the queue is holdout items (served at random so the holdout gets labeled)
    assert len(store.unlabeled(db, "pool")) + len(store.unlabeled(db, "holdout")) == undecided - 20

    # 3. undo the last one: it comes back on screen and an undo event is appended
    last_item = rows[-1][0]
    shown = client.predict(api_name="/undo")
    assert shown[0] == last_item and "back on screen" in shown[6]
    undo = db.execute("SELECT action, item_id, annotator FROM labels ORDER BY id DESC LIMIT 1").fetchone()
    assert undo == ("undo", last_item, LEAD.name)
    assert len(store.labeled_items(db)) == 17, "18 labeled, the last one undone"
    assert last_item not in store.label_state(db)

    # 4. retrain through the Train tab and wait for the job row
    client.predict(TINY_RETRAIN["mode"], TINY_RETRAIN["epochs"], TINY_RETRAIN["fmnist_fraction"], False,
                   "mobilenet_v1_0.25", api_name="/start_training")
    job = jobs.list_jobs(db, limit=1)[0]
    assert job.params == TINY_RETRAIN
    job = jobs.wait(db, job.id, timeout_s=600)
    assert job.status == "succeeded", job.message
    assert job.version == "v2" and (paths.models / "v2" / "model.keras").exists()
    card = registry.read_card(paths.models, "v2")
    assert card["parent"] == "v1" and card["human_labels_used"]["train"] == len(store.labeled_items(db, "pool"))

    # 5. the new version is listed with its metrics (the versions table)
    table = client.predict(api_name="/versions")[0]
    assert [row[0] for row in table["data"]] == ["v1", "v2"]
    assert table["data"][1][table["headers"].index("parent")] == "v1"


@pytest.mark.slow
def test_first_launch_on_a_fresh_home_serves_the_page_and_starts_the_seed_job(tmp_path, fmnist_dir):
    from gradio_client import Client

    paths = resolve_paths(tmp_path / "fresh", fmnist_dir)
    port = free_port()
    proc = start_app(paths.home, fmnist_dir, port)
    db = None
    try:
        wait_served(f"http://127.0.0.1:{port}/", proc)
        db = store.open_db(paths.db)
        job = jobs.list_jobs(db, limit=1)[0]
        assert job.params == {"mode": "scratch"} and job.status in ("queued", "running")
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        assert "training the seed model" in client.predict(api_name="/header")
        shown = client.predict(api_name="/label_load")
        assert shown[0] is None and shown[6].startswith("Training the seed model")
        jobs.cancel(db, job.id)  # the seed training would take minutes of CPU
        assert jobs.wait(db, job.id, timeout_s=300).status in ("cancelled", "failed")
    finally:
        stop(proc)
        if db is not None:
            for job in jobs.list_jobs(db):
                if job.active and job.pid:
                    os.kill(job.pid, 15)


@pytest.mark.slow
def test_missing_fashion_mnist_without_internet_shows_the_loaders_message(tmp_path):
    from gradio_client import Client

    empty = tmp_path / "no-fmnist"
    empty.mkdir()
    paths = resolve_paths(tmp_path / "fresh", empty)
    port = free_port()
    offline = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
               "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
               "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
    proc = start_app(paths.home, empty, port, env=offline)
    try:
        wait_served(f"http://127.0.0.1:{port}/", proc)
        db = store.open_db(paths.db)
        job = jobs.wait(db, jobs.list_jobs(db, limit=1)[0].id, timeout_s=300)
        assert job.status == "failed" and "DatasetError" in job.message
        header = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(api_name="/header")
        assert "failed" in header and "train-images-idx3-ubyte.gz" in header and str(empty) in header
        shown = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(api_name="/label_load")
        assert "No model yet" in shown[6] and "Fashion-MNIST files" in shown[6]
    finally:
        stop(proc)
    assert json.loads(db.execute("SELECT params FROM jobs").fetchone()[0]) == {"mode": "scratch"}


@pytest.mark.slow
def test_real_photos_to_an_active_photo_model_through_the_ui(lead_client, seeded_home, keras_home,
                                                              clothing_photos, tmp_path):
    """Import real photos (a labeled holdout + a pool), embed them, label 100, and the photo model
    trained automatically replaces the seed CNN because it is better on the holdout; the queue is then
    ranked by it and Grad-CAM shows where it looked. Checked in labels.db and models/ at each step."""
    import shutil

    from activelearn import autotrain, scoring
    from activelearn.synthetic import safe_folder_name
    client, paths = lead_client, seeded_home
    db = store.open_db(paths.db)
    mapped = [r for r in clothing_photos if r["fashion_mnist_class"]]
    by_class: dict[str, list] = {}
    for row in mapped:
        by_class.setdefault(row["fashion_mnist_class"], []).append(row)
    holdout_dir, pool_dir = tmp_path / "holdout", tmp_path / "pool"
    truth = {}
    for name, rows in by_class.items():
        (holdout_dir / safe_folder_name(name)).mkdir(parents=True)
        for row in rows[:12]:
            shutil.copy(row["path"], holdout_dir / safe_folder_name(name) / Path(row["path"]).name)
        for row in rows[12:36]:
            pool_dir.mkdir(exist_ok=True)
            shutil.copy(row["path"], pool_dir / Path(row["path"]).name)
            truth[Path(row["path"]).name] = name

    # 1. a lead imports a labeled test set into the holdout, then the unlabeled pool; embedding starts
    summary, _, _ = client.predict([], str(holdout_dir), True, 1.0, api_name="/import_files")
    assert "Added 60" in summary and len(store.labeled_holdout(db)) == 60
    summary, _, _ = client.predict([], str(pool_dir), False, 0.0, api_name="/import_files")
    assert "Added 120" in summary and "embedding" in summary
    embedding = jobs.active_job(db, jobs.EMBED) or jobs.list_jobs(db, limit=1)[0]
    assert jobs.wait(db, embedding.id, timeout_s=300).status == "succeeded"
    assert store.embedded_backbones(db) == {"mobilenet_v1_0.25": 180}

    # 2. 100 decisions through the Label tab's endpoint; every 50 a photo model trains by itself
    shown = client.predict(api_name="/label_load")
    names_by_file = {Path(name).name: item for item, name in
                     db.execute("SELECT id, original_name FROM items WHERE split = 'pool'").fetchall()}
    file_of = {item: name for name, item in names_by_file.items()}
    for step in range(100):
        item_id = int(shown[0])
        shown = client.predict(item_id, "correct", truth[file_of[item_id]], api_name="/decide")
        stored = db.execute("SELECT item_id, class_id FROM labels ORDER BY id DESC LIMIT 1").fetchone()
        assert stored == (item_id, store.class_names(db).index(truth[file_of[item_id]]))
    assert store.count_labeled(db, "pool") == 100
    while (running := jobs.active_job(db)) is not None:
        jobs.wait(db, running.id, timeout_s=300)
    trained = [j for j in jobs.list_jobs(db) if j.kind == jobs.TRAIN]
    assert trained and all(j.params.get("trigger") == "auto" and j.status == "succeeded" for j in trained)

    # 3. the newest photo model is active: better than the seed CNN on the same holdout items
    version, card = autotrain.newest_photo_version(paths)
    assert registry.active_version(paths.models) == version, card["activation"]["reason"]
    assert card["activation"]["basis"] == "holdout_selection"
    assert card["activation"]["accuracy"] > card["activation"]["parent_accuracy"]
    side = client.predict(api_name="/versions_side_by_side")[0]
    assert any(h.startswith("v1 cnn") for h in side["headers"]) and any(" photo" in h for h in side["headers"])

    # 4. the queue is ranked by it, and the next decision records its prediction
    shown = client.predict(api_name="/label_load")
    assert scoring.score_items(paths).version == version
    client.predict(int(shown[0]), "confirm", "", api_name="/decide")
    assert db.execute("SELECT model_version FROM labels ORDER BY id DESC LIMIT 1").fetchone()[0] == version

    # 5. Grad-CAM of the photo model for the item on screen
    shown = client.predict(api_name="/label_load")
    image, caption = client.predict(int(shown[0]), True, api_name="/grad_cam")
    while isinstance(image, dict):            # an update {"value": ..., "visible": True} around the file
        image = image.get("value") or image.get("path")
    assert Path(image).exists() and "photo" in caption and version in caption
