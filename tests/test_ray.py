"""Ray for pool embedding and scoring: the same numbers as the local path, on a local Ray instance.

One Ray instance (2 CPUs, no dashboard, loopback only) serves the module; each
test compares Ray's output with the local path's on the same data, bit for bit.
"""

import shutil
import socket
import time

import numpy as np
import pytest

from activelearn import distributed, scoring, store
from activelearn.config import RAY_ENV, resolve_paths
from activelearn.errors import ActiveLearnError, ModelError
from tests.helpers import add_items

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -r requirements.txt)")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]   # a stalled cluster fails, not hangs


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance with 2 CPUs that `--ray auto` joins, shut down after the module."""
    distributed.connect("auto", num_cpus=2)
    yield
    ray.shutdown()


def test_an_unreachable_cluster_is_one_sentence_in_seconds():
    with socket.socket() as probe:              # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ActiveLearnError, match="cannot reach the Ray cluster") as failure:
        distributed.connect(f"127.0.0.1:{port}")
    assert "\n" not in str(failure.value) and time.monotonic() - started < 10


def forget_scores(paths, version="v1"):
    scoring._memo.clear()
    scoring._models.clear()
    scoring.cache_path(paths, version).unlink(missing_ok=True)


def test_cnn_pool_scores_on_ray_equal_the_local_ones(local_ray, seeded_home, monkeypatch):
    paths = seeded_home
    add_items(paths, 2 * scoring.SCORE_BATCH + 300)          # three chunks over two actors
    local = scoring.score_items(paths)
    forget_scores(paths)
    seen = []
    monkeypatch.setenv(RAY_ENV, "auto")
    on_ray = scoring.score_items(paths, progress=lambda done, total: seen.append((done, total)))
    np.testing.assert_array_equal(on_ray.item_ids, local.item_ids)
    np.testing.assert_array_equal(on_ray.probs, local.probs)
    np.testing.assert_array_equal(on_ray.embeddings, local.embeddings)
    assert seen[-1] == (len(local.item_ids), len(local.item_ids))
    # a new item is the only one scored again, and on Ray it joins the cache like a local one
    add_items(paths, 3, start=10_000)
    grown = scoring.score_items(paths)
    assert len(grown.item_ids) == len(local.item_ids) + 3
    np.testing.assert_array_equal(grown.probs[:len(local.item_ids)], local.probs)


def test_backbone_embeddings_on_ray_equal_the_local_ones(local_ray, keras_home, clothing_photos, tmp_path,
                                                        monkeypatch):
    from activelearn.embeddings import BATCH, embed_items
    from activelearn.ingest import import_paths
    photos = tmp_path / "photos"
    photos.mkdir()
    for row in clothing_photos[::40][:2 * BATCH + 6]:          # three batches of real phone photos
        shutil.copy(row["path"], photos)
    local_paths = resolve_paths(tmp_path / "local", tmp_path / "no-fmnist")
    import_paths([str(photos)], paths=local_paths, holdout_fraction=0.0)
    shutil.copytree(local_paths.home, tmp_path / "ray")
    ray_paths = resolve_paths(tmp_path / "ray", tmp_path / "no-fmnist")
    # one original gone in both homes: the 28x28 fallback runs on the workers too
    gone = store.open_db(local_paths.db).execute("SELECT stored_path FROM items ORDER BY id LIMIT 1").fetchone()[0]
    (local_paths.home / gone).unlink()
    (ray_paths.home / gone).unlink()

    local = embed_items(local_paths)
    monkeypatch.setenv(RAY_ENV, "auto")
    updates = []
    on_ray = embed_items(ray_paths, progress=updates.append)
    assert (on_ray.embedded, on_ray.total, on_ray.from_28x28) == (local.embedded, local.total, 1)
    local_ids, local_vectors = store.get_embeddings(store.open_db(local_paths.db), "mobilenet_v1_0.25")
    ray_ids, ray_vectors = store.get_embeddings(store.open_db(ray_paths.db), "mobilenet_v1_0.25")
    np.testing.assert_array_equal(ray_ids, local_ids)
    np.testing.assert_array_equal(ray_vectors, local_vectors)
    embed_updates = [u for u in updates if u.get("phase") == "embed"]
    assert embed_updates and embed_updates[-1]["batch"] == embed_updates[-1]["batches"] == 3


def test_a_worker_failure_is_one_sentence_and_stores_nothing_half_done(local_ray, seeded_home, monkeypatch):
    paths = seeded_home
    add_items(paths, 10)
    (paths.models / "v1" / "model.keras").write_bytes(b"not a model")   # every actor fails to load it
    forget_scores(paths)
    monkeypatch.setenv(RAY_ENV, "auto")
    with pytest.raises(ModelError, match="model file .* is corrupt or unreadable") as failure:
        scoring.score_items(paths)
    assert "\n" not in str(failure.value)
    assert not scoring.cache_path(paths, "v1").exists()


def test_the_cli_flag_runs_the_embedding_job_on_ray(local_ray, keras_home, clothing_photos, tmp_path):
    """`--ray auto embed --wait`: the job process joins the running instance and stores every embedding."""
    import json
    import subprocess
    import sys

    from activelearn.ingest import import_paths
    from tests.helpers import REPO
    photos = tmp_path / "photos"
    photos.mkdir()
    for row in clothing_photos[::100][:12]:
        shutil.copy(row["path"], photos)
    paths = resolve_paths(tmp_path / "home", tmp_path / "no-fmnist")
    import_paths([str(photos)], paths=paths, holdout_fraction=0.0)
    out = subprocess.run([sys.executable, "-m", "activelearn", "--home", str(paths.home), "--ray", "auto",
                          "embed", "--wait", "--json"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    assert job["status"] == "succeeded" and "12 of 12 new item(s) on Ray" in job["message"]
    ids, vectors = store.get_embeddings(store.open_db(paths.db), "mobilenet_v1_0.25")
    assert len(ids) == 12 and np.isfinite(vectors).all()
