"""Shared fixtures: the real Fashion-MNIST folder (skip when absent) and a home with a tiny model.

The tiny model has the production architecture but is trained for seconds on
a few thousand images: tests need a real Keras model, not a good one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]


def shared_fmnist_dir() -> Path | None:
    """ACTIVELEARN_FMNIST_DIR if set, else ../shared/fashion-mnist beside the repo."""
    candidates = [os.environ.get("ACTIVELEARN_FMNIST_DIR"), REPO.parent / "shared" / "fashion-mnist"]
    for c in candidates:
        if c and (Path(c) / "train-images-idx3-ubyte.gz").exists():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def fmnist_dir() -> Path:
    found = shared_fmnist_dir()
    if found is None:
        pytest.skip("real Fashion-MNIST files not found: set ACTIVELEARN_FMNIST_DIR or put them "
                    "in ../shared/fashion-mnist")
    return found


@pytest.fixture(scope="session")
def fmnist(fmnist_dir):
    from activelearn.fmnist import load_fashion_mnist
    return load_fashion_mnist(fmnist_dir, download=False, progress=False)


def train_tiny_model(fmnist, n: int = 3000, epochs: int = 2, seed: int = 0):
    """A real model of the production architecture, trained for a few seconds; returns (model, card)."""
    from activelearn.evaluate import classification_metrics
    from activelearn.model import build_model
    from activelearn.retrain import TrainConfig
    from activelearn.training import fit, make_card, predict_probs

    config = TrainConfig(epochs=epochs, seed=seed, patience=epochs)
    model = build_model(10, seed=seed)
    rng = np.random.default_rng(seed)
    idx = rng.choice(50000, n, replace=False)
    history = fit(model, fmnist.x_train[idx], fmnist.y_train[idx], fmnist.x_train[55000:56000],
                  fmnist.y_train[55000:56000], config, num_classes=10)
    metrics = {"fmnist_test": classification_metrics(
        fmnist.y_test[:2000], predict_probs(model, fmnist.x_test[:2000]), fmnist.class_names)}
    card = make_card(parent=None, class_names=fmnist.class_names, config=config, history=history,
                     wall_time_s=0.0, training_data={"fmnist": {"all": n}}, validation={"fmnist": 1000},
                     metrics=metrics)
    return model, card


@pytest.fixture(scope="session")
def tiny_model(fmnist):
    return train_tiny_model(fmnist)


@pytest.fixture
def seeded_home(tmp_path, fmnist_dir, tiny_model):
    """A fresh home folder whose active model is the tiny model (v1)."""
    from activelearn import registry
    from activelearn.config import resolve_paths

    paths = resolve_paths(tmp_path / "home", fmnist_dir)
    model, card = tiny_model
    registry.register(paths.models, model, card, activate_now=True)
    return paths


@pytest.fixture
def photo_folder(tmp_path, fmnist):
    """60 product-like photos made from Fashion-MNIST test images, in <class>/ folders."""
    from activelearn.synthetic import write_product_photos

    idx = np.arange(60)
    write_product_photos(tmp_path / "photos", fmnist.x_test[idx], fmnist.y_test[idx],
                         fmnist.class_names, label_folders=True, seed=1)
    return tmp_path / "photos"


# ---------------------------------------------------------------- photo model: weights and real photos

def shared_dir(name: str) -> Path | None:
    found = REPO.parent / "shared" / name
    return found if found.is_dir() else None


@pytest.fixture
def keras_home(tmp_path, monkeypatch) -> Path:
    """A temporary KERAS_HOME whose models/ holds the shared MobileNet 0.25 weights (as Keras would).

    Per test, so only tests that ask for it see weights (others start no embedding job).
    """
    from activelearn.backbones import DEFAULT_BACKBONE, get_spec
    weights = shared_dir("keras-weights")
    name = get_spec(DEFAULT_BACKBONE).weights_file
    if weights is None or not (weights / name).exists():
        pytest.skip(f"Keras ImageNet weights not found: put {name} in ../shared/keras-weights")
    home = tmp_path / "keras-home"
    (home / "models").mkdir(parents=True)
    shutil.copy(weights / name, home / "models" / name)
    monkeypatch.setenv("KERAS_HOME", str(home))   # job workers inherit it
    return home


@pytest.fixture(scope="session")
def clothing_photos() -> list[dict[str, str]]:
    """Rows of ../shared/clothing-photos/labels.csv (file, label, fashion_mnist_class, sender_id)."""
    import csv
    folder = shared_dir("clothing-photos")
    if folder is None or not (folder / "labels.csv").exists():
        pytest.skip("real photos not found: ../shared/clothing-photos (labels.csv) is absent")
    with open(folder / "labels.csv", newline="") as f:
        return [{**row, "path": str(folder / row["file"])} for row in csv.DictReader(f)]


# ---------------------------------------------------------------- browser tests
# `served` is the app the `page` fixture logs in to; a module may define its own `served`.

@pytest.fixture
def served(seeded_home, photo_folder):
    """A real server with 60 imported photos; a lead and an annotator may log in."""
    from activelearn import ingest
    from tests.helpers import ANNOTATOR, LEAD, serving

    ingest.import_paths(photo_folder, paths=seeded_home, holdout_fraction=0.1)
    with serving(seeded_home, [LEAD, ANNOTATOR]) as url:
        yield url, seeded_home


@pytest.fixture
def browser():
    from tests.helpers import chromium

    with chromium() as launched:
        yield launched


@pytest.fixture
def page(served):
    """A Chromium page logged in as the lead, on the Label tab's first item."""
    from tests.helpers import LEAD, chromium, logged_in

    url, _ = served
    with chromium() as launched:
        yield logged_in(launched, url, LEAD)


@pytest.fixture(scope="session")
def pg_server() -> str:
    """URL of a PostgreSQL server for this session (a throw-away cluster; skip when none can run)."""
    from tests.helpers import postgres_server
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: pip install -r requirements.txt")
    with postgres_server() as url:
        if url is None:
            pytest.skip("no PostgreSQL server: install Debian's postgresql (initdb, pg_ctl) "
                        "or set ACTIVELEARN_TEST_PG to a server's URL")
        yield url


@pytest.fixture
def pg_url(pg_server, request) -> str:
    """A database of this test's own on the session's PostgreSQL server (a fresh schema)."""
    import re
    import uuid

    from tests.helpers import pg_schema_url
    name = re.sub(r"\W", "_", request.node.name.lower())[:40]
    return pg_schema_url(pg_server, f"t_{name}_{uuid.uuid4().hex[:8]}")

