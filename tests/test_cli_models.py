"""The model commands end to end (`python -m activelearn train-seed|evaluate|models|activate|compare`).

Each runs as a user runs it, in a subprocess, and is checked against what the registry
stores and against predictions computed here from the same saved model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from activelearn import registry
from tests.conftest import train_tiny_model

REPO = Path(__file__).resolve().parents[1]


def run(paths, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "activelearn", "--home", str(paths.home),
                           "--fmnist-dir", str(paths.fmnist_dir), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_models_evaluate_activate_compare_agree_with_the_saved_models(seeded_home, fmnist):
    from activelearn.training import predict_probs

    paths = seeded_home
    model, card = train_tiny_model(fmnist, n=1500, epochs=1, seed=1)
    v2 = registry.register(paths.models, model, card, activate_now=False)
    # the tiny models' cards were measured on the first 2,000 test images (conftest.train_tiny_model)
    x_test, y_test = fmnist.x_test[:2000], fmnist.y_test[:2000]
    accuracy = {v: float((predict_probs(registry.load_model(paths.models, v), x_test).argmax(1)
                          == y_test).mean()) for v in ("v1", v2)}

    listed = json.loads(run(paths, "models", "--json").stdout)
    assert [(r["version"], r["active"]) for r in listed] == [("v1", True), (v2, False)]

    evaluated = run(paths, "evaluate", "--version", v2, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["version"] == v2 and report["fmnist_test"]["n"] == 2000
    assert report["fmnist_test"]["accuracy"] == pytest.approx(accuracy[v2], abs=1e-4)

    compared = json.loads(run(paths, "compare", "v1", v2, "--split", "fmnist_test", "--json").stdout)
    assert compared["accuracy"] == pytest.approx(accuracy[v2] - accuracy["v1"], abs=1e-4)

    activated = run(paths, "activate", v2)
    assert activated.returncode == 0 and registry.active_version(paths.models) == v2

    missing = run(paths, "activate", "v9")
    assert missing.returncode != 0 and "v9" in missing.stderr and "Traceback" not in missing.stderr
    assert registry.active_version(paths.models) == v2      # a failed activate changes nothing


def test_models_lists_the_good_versions_beside_a_malformed_card(seeded_home):
    paths = seeded_home
    broken = paths.models / "v2"
    broken.mkdir()
    (broken / "card.json").write_text("{not json")
    out = run(paths, "models")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("* v1") for line in lines)
    assert any("v2" in line and "ERROR" in line for line in lines)


@pytest.mark.slow
def test_train_seed_registers_and_activates_through_the_one_training_path(tmp_path, fmnist_dir):
    from activelearn.config import resolve_paths

    paths = resolve_paths(tmp_path / "home", fmnist_dir)
    out = run(paths, "train-seed", "--epochs", "1", "--seed", "3", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["version"] == "v1" and registry.active_version(paths.models) == "v1"
    card = registry.read_card(paths.models, "v1")
    assert card["hyperparameters"]["mode"] == "scratch" and card["hyperparameters"]["epochs"] == 1
    assert card["seed"] == 3 and card["training_data"]["per_source"]["fmnist"] == 60000
    assert card["training_data"]["validation"] == {"fmnist": 0, "early_stopping_on": "none: the last epoch is kept"}
    assert card["metrics"]["fmnist_test"]["accuracy"] == pytest.approx(result["fmnist_test"]["accuracy"])
    assert card["metrics"]["fmnist_test"]["accuracy"] > 0.75          # one real epoch, not a toy model
    assert np.isfinite(card["cpu_time_s"]) and "train-seed" in out.stderr   # the tqdm bar
