"""Backbones, embeddings of real photo files, and Grad-CAM."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from activelearn import backbones, registry, store
from activelearn.config import resolve_paths
from activelearn.errors import ModelError
from tests.conftest import REPO


@pytest.mark.parametrize("name", sorted(backbones.BACKBONES))
def test_every_backbone_builds_with_the_shapes_its_spec_promises(name):
    spec = backbones.get_spec(name)
    model = backbones.build_feature_model(name, weights=None)
    feature_map, pooled = model(np.zeros((1, 224, 224, 3), np.float32), training=False)
    assert feature_map.shape[0] == 1 and len(feature_map.shape) == 4
    assert pooled.shape == (1, spec.embedding_dim)


def test_missing_weights_offline_name_the_file_and_the_folder(tmp_path, monkeypatch):
    """No weights and no network: one sentence with the file and the folder, and nothing half-written."""
    from keras.src.utils import file_utils
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")
    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(ModelError) as caught:
        backbones.build_feature_model("mobilenet_v1_0.25")
    message = str(caught.value)
    assert "mobilenet_2_5_224_tf_no_top.h5" in message and str(tmp_path / "keras" / "models") in message
    assert not (tmp_path / "keras" / "models").exists() or not any((tmp_path / "keras" / "models").iterdir())


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(ModelError, match="mobilenet_v1_0.25"):
        backbones.get_spec("resnet9000")


def write_photo(path, size=(300, 400), colour=(200, 30, 30), mode="RGB", exif_rotate=False):
    img = Image.new("RGB", size, (240, 240, 240))
    img.paste(colour, (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4))
    if mode != "RGB":
        img = img.convert(mode)
    if exif_rotate:
        exif = Image.Exif()
        exif[0x0112] = 6          # rotate 90° on display
        img.save(path, exif=exif)
    else:
        img.save(path)
    return path


def test_photo_array_is_an_upright_centre_crop_for_every_mode(tmp_path):
    from activelearn.embeddings import photo_array, pixels_array
    wide = photo_array(write_photo(tmp_path / "a.jpg", size=(400, 300)), 224)
    assert wide.shape == (224, 224, 3) and wide.dtype == np.uint8
    rotated = photo_array(write_photo(tmp_path / "r.jpg", size=(400, 300), exif_rotate=True), 224)
    assert rotated.shape == (224, 224, 3)
    for mode, name in (("RGBA", "p.png"), ("P", "q.png"), ("L", "g.png"), ("CMYK", "c.jpg")):
        assert photo_array(write_photo(tmp_path / name, mode=mode), 224).shape == (224, 224, 3)
    # the 28x28 fallback: light object on black becomes a dark object on white
    pixels = np.zeros((28, 28), np.uint8)
    pixels[10:18, 10:18] = 255
    photo = pixels_array(pixels, 224)
    assert photo.shape == (224, 224, 3) and photo[0, 0, 0] == 255 and photo[112, 112, 0] == 0


def photo_home(tmp_path, n=12):
    """A home with n imported synthetic photos (two colours) and their classes."""
    from activelearn.ingest import import_paths
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(n):
        colour = (200, 30, 30) if i % 2 else (30, 30, 200)
        write_photo(folder / f"{i}.jpg", size=(300 + i, 400), colour=colour)
    paths = resolve_paths(tmp_path / "home", tmp_path / "no-fmnist")
    import_paths([str(folder)], paths=paths, holdout_fraction=0.0)
    return paths


def test_embed_items_embeds_new_items_once_and_cancel_keeps_what_was_done(tmp_path, keras_home):
    from activelearn.embeddings import embed_items
    from activelearn.ingest import import_paths
    paths = photo_home(tmp_path, n=12)
    db = store.open_db(paths.db)
    # an item whose original is gone falls back to its 28x28 image
    gone = db.execute("SELECT stored_path FROM items ORDER BY id LIMIT 1").fetchone()[0]
    (paths.home / gone).unlink()
    result = embed_items(paths)
    assert (result.embedded, result.total, result.from_28x28, result.cancelled) == (12, 12, 1, False)
    ids, vectors = store.get_embeddings(db, "mobilenet_v1_0.25")
    assert vectors.shape == (12, 256) and np.isfinite(vectors).all()
    assert embed_items(paths).embedded == 0                     # nothing new: no work
    extra = tmp_path / "more"
    extra.mkdir()
    for i in range(70):
        write_photo(extra / f"m{i}.png", size=(200 + i, 260), colour=(i, 100, 50))
    import_paths([str(extra)], paths=paths, holdout_fraction=0.0)
    cancelled = embed_items(paths, progress=lambda update: update.get("phase") == "embed")
    assert cancelled.cancelled and cancelled.embedded == 32     # one batch, then the cancel
    assert len(store.items_without_embedding(db, "mobilenet_v1_0.25")) == 70 - 32


def cli(paths, *args):
    return subprocess.run([sys.executable, "-m", "activelearn", "--home", str(paths.home),
                           "--fmnist-dir", str(paths.fmnist_dir), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_cli_embeds_trains_a_photo_model_and_explains_it(tmp_path, keras_home):
    """embed --wait (a job process), label, retrain --kind photo --wait, evaluate --json, explain."""
    paths = photo_home(tmp_path, n=24)
    out = cli(paths, "embed", "--wait", "--json")
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    assert job["status"] == "succeeded" and job["kind"] == "embed" and "24 of 24" in job["message"]
    db = store.open_db(paths.db)
    rows = db.execute("SELECT id, original_name FROM items").fetchall()
    for item, name in rows:
        store.record_label(db, item, "correct", class_id=int(name.split(".")[0]) % 2, annotator="t")
    out = cli(paths, "retrain", "--kind", "photo", "--wait", "--json")
    assert out.returncode == 0, out.stderr
    trained = json.loads(out.stdout)
    assert trained["status"] == "succeeded" and trained["version"] == "v1"
    report = json.loads(cli(paths, "evaluate", "--json").stdout)
    assert report["kind"] == "photo" and report["backbone"] == "mobilenet_v1_0.25"
    assert {"accuracy", "per_class", "n"} <= set(report["holdout"])
    card = registry.read_card(paths.models, "v1")
    assert card["backbone"]["weights_sha256"] == backbones.weights_sha256(backbones.get_spec("mobilenet_v1_0.25"))
    png = tmp_path / "cam.png"
    out = cli(paths, "explain", str(rows[1][0]), "--out", str(png), "--json")
    assert out.returncode == 0, out.stderr
    explained = json.loads(out.stdout)
    assert explained["kind"] == "photo" and explained["class"] in ("T-shirt/top", "Trouser")
    with Image.open(png) as img:
        assert max(img.size) == 448


def test_grad_cam_of_the_seed_cnn_on_the_28x28_image(seeded_home):
    from activelearn.explain import explain_item
    from tests.helpers import add_items
    item = add_items(seeded_home, 1)[0]
    explained = explain_item(seeded_home, item)
    assert explained.kind == "cnn" and explained.heatmap.shape == (7, 7)
    assert 0.0 <= explained.heatmap.min() and explained.heatmap.max() <= 1.0
    assert explained.overlay.size == (448, 448)
    chosen = explain_item(seeded_home, item, class_id=3)
    assert chosen.class_name == "Dress"
    with pytest.raises(Exception, match="class id 42"):
        explain_item(seeded_home, item, class_id=42)
