import numpy as np
import pytest

from activelearn.fmnist import FashionMNIST


@pytest.fixture(scope="module")
def small_fmnist(fmnist):
    """6,000 real training and 1,000 real test images: enough for the 55k/5k split logic at small scale."""
    return FashionMNIST(fmnist.x_train[:6000], fmnist.y_train[:6000], fmnist.x_test[:1000],
                        fmnist.y_test[:1000], fmnist.class_names)


def test_fit_reports_progress_and_cancel_stops_training(small_fmnist):
    from activelearn.model import build_model
    from activelearn.training import TrainConfig, fit

    d = small_fmnist
    updates = []

    def progress(update):
        updates.append(update)
        return update.get("phase") == "epoch-end"      # cancel after the first epoch

    history = fit(build_model(10), d.x_train[:2000], d.y_train[:2000], d.x_train[5000:], d.y_train[5000:],
                  TrainConfig(epochs=5, batch_size=256), num_classes=10, progress=progress)
    assert len(history) == 1                            # stopped, not 5 epochs
    ends = [u for u in updates if u["phase"] == "epoch-end"]
    assert ends[0]["epochs"] == 5 and ends[0]["val_accuracy"] is not None
    assert ends[0]["batches"] == 8


def test_train_seed_card_holds_what_the_registry_promises(small_fmnist):
    from activelearn.training import TrainConfig, train_seed

    model, card = train_seed(small_fmnist, TrainConfig(epochs=2, batch_size=256), progress=None)
    for key in ("parent", "created_at", "class_names", "training_data", "hyperparameters", "seed",
                "wall_time_s", "library_versions", "metrics"):
        assert key in card
    # 6,000 images minus the 5,000 held out for early stopping
    assert sum(card["training_data"]["per_class"]["fmnist"].values()) == 1000
    assert card["training_data"]["validation"] == {"fmnist": 5000}
    test = card["metrics"]["fmnist_test"]
    assert test["n"] == 1000 and len(test["confusion_matrix"]) == 10
    assert set(test["per_class"]["Trouser"]) == {"precision", "recall", "f1", "accuracy", "support"}
    assert test["accuracy"] > 0.3          # two epochs on 1,000 images: well above chance (0.1)
    assert card["library_versions"]["keras"].startswith("3.")
