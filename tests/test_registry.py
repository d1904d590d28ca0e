import json
import os

import numpy as np
import pytest

from activelearn import registry
from activelearn.errors import ModelError


@pytest.fixture(scope="module")
def untrained():
    from activelearn.model import build_model
    return build_model(10)


def card(accuracy=0.5):
    return {"parent": None, "class_names": ["c"] * 10, "hyperparameters": {"mode": "scratch"},
            "metrics": {"fmnist_test": {"accuracy": accuracy, "n": 1, "per_class": {}}}}


def test_register_load_activate(tmp_path, untrained):
    models = tmp_path / "models"
    assert registry.active_version(models) is None
    v1 = registry.register(models, untrained, card(0.5), activate_now=True)
    v2 = registry.register(models, untrained, card(0.6))
    assert (v1, v2) == ("v1", "v2")
    assert registry.list_versions(models) == ["v1", "v2"]
    assert registry.active_version(models) == "v1"
    assert json.loads((models / "v2" / "card.json").read_text())["version"] == "v2"
    loaded = registry.load_model(models)
    x = np.random.default_rng(0).integers(0, 255, (4, 28, 28)).astype("float32")
    np.testing.assert_allclose(loaded.predict_on_batch(x), untrained.predict_on_batch(x), atol=1e-5)
    registry.activate(models, "v2")
    rows = registry.version_summaries(models)
    assert [r["active"] for r in rows] == [False, True]
    assert rows[1]["fmnist_accuracy"] == 0.6
    assert not list(models.glob(".tmp-*"))


def test_corrupt_or_missing_model_never_becomes_active(tmp_path, untrained):
    models = tmp_path / "models"
    registry.register(models, untrained, card(), activate_now=True)
    registry.register(models, untrained, card())
    (models / "v2" / "model.keras").write_bytes(b"not a keras file")
    with pytest.raises(ModelError, match="corrupt or unreadable"):
        registry.activate(models, "v2")
    assert registry.active_version(models) == "v1"
    (models / "v2" / "model.keras").unlink()
    with pytest.raises(ModelError, match="missing"):
        registry.activate(models, "v2")
    with pytest.raises(ModelError, match="not found"):
        registry.read_card(models, "v9")
    with pytest.raises(ModelError, match="bad model version"):
        registry.read_card(models, "../etc")
    assert registry.active_version(models) == "v1"


def test_failed_save_leaves_no_partial_version(tmp_path):
    class Broken:
        def save(self, path):
            path.write_bytes(b"half")
            raise OSError("disk full")

    with pytest.raises(OSError):
        registry.register(tmp_path / "models", Broken(), card())
    assert registry.list_versions(tmp_path / "models") == []
    assert list((tmp_path / "models").iterdir()) == []


def test_no_active_model_message(tmp_path):
    with pytest.raises(ModelError, match="train-seed"):
        registry.require_active(tmp_path / "models")


def test_registering_sweeps_staging_folders_of_dead_writers_only(tmp_path, untrained):
    import subprocess
    import sys
    models = tmp_path / "models"
    models.mkdir()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()                                                   # a writer killed before it finished
    dead = models / f"{registry.STAGING_PREFIX}{child.pid}-abc123"
    dead.mkdir()
    (dead / registry.MODEL_FILE).write_bytes(b"half")
    alive = models / f"{registry.STAGING_PREFIX}{os.getpid()}-def456"   # this process, still writing
    alive.mkdir()
    assert registry.register(models, untrained, card()) == "v1"
    assert not dead.exists() and alive.exists()
    assert sorted(p.name for p in models.iterdir()) == [alive.name, "v1"], "the new version left no staging"
