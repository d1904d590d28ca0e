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
    from activelearn.retrain import TrainConfig
    from activelearn.training import fit

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


@pytest.mark.parametrize(("patience", "epochs_run"), [(1, 2), (None, 3)])
def test_from_scratch_never_stops_early_on_a_plateau_unless_asked(small_fmnist, patience, epochs_run):
    """The seed recipe's cosine schedule must reach its last epochs: a plateau stops it only with a patience."""
    import numpy as np

    from activelearn.model import build_model
    from activelearn.retrain import TrainConfig
    from activelearn.training import fit

    d = small_fmnist
    train = d.y_train[:512] != 9
    x_val, y_val = d.x_train[5000:5100], np.full(100, 9)   # a class never trained on: accuracy stays 0
    history = fit(build_model(10), d.x_train[:512][train], d.y_train[:512][train], x_val, y_val,
                  TrainConfig(epochs=3, batch_size=128, patience=patience), num_classes=10)
    assert [round(h["val_accuracy"], 3) for h in history] == [0.0] * epochs_run
    assert TrainConfig().patience is None


def test_the_input_pipelines_run_without_tf_data_autotuning(small_fmnist):
    """Autotuning left a training run on one of the two cores in ~4 of 10 runs (model.without_autotune)."""
    from activelearn import model as cnn

    d = small_fmnist
    targets = np.eye(10, dtype=np.float32)[d.y_train[:256]]
    for dataset in (cnn.training_dataset(d.x_train[:256], targets, batch_size=128, seed=0),
                    cnn.evaluation_dataset(d.x_train[:256], targets)):
        assert dataset.options().autotune.enabled is False


def test_without_validation_images_training_keeps_the_last_epochs_moving_average(small_fmnist):
    """The seed recipe trains on all 60k: no validation, no early stop, and the weights fit leaves
    are the optimizer's moving average (ema_momentum), not the last step's."""
    import keras

    from activelearn.model import build_model
    from activelearn.retrain import TrainConfig
    from activelearn.training import fit

    d = small_fmnist
    model = build_model(10)
    config = TrainConfig(epochs=4, batch_size=32, ema_momentum=0.9)   # 4 x 32 steps: 0.9 spans < 1/10 of them
    history = fit(model, d.x_train[:1024], d.y_train[:1024], d.x_train[:0], d.y_train[:0], config, num_classes=10)
    assert len(history) == 4 and not any(k.startswith("val_") for k in history[0])
    assert model.optimizer.ema_momentum == pytest.approx(0.9)
    averages = model.optimizer._model_variables_moving_average
    assert len(averages) == len(model.trainable_weights)
    for weight, average in zip(model.trainable_weights, averages):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), keras.ops.convert_to_numpy(average))
    assert TrainConfig().fmnist_validation == 0 and TrainConfig().ema_momentum is not None


def test_the_moving_average_never_spans_more_than_a_tenth_of_the_run():
    """It starts at the initial weights: a 1-epoch run at 0.999 kept 63% of them (0.22 test accuracy)."""
    from activelearn.training import _average_momentum

    assert _average_momentum(0.999, 24 * 469) == 0.999          # the seed recipe keeps its momentum
    assert _average_momentum(0.999, 469) == pytest.approx(1 - 10 / 469)
    assert 0.999 ** 469 > 0.6 > (1 - 10 / 469) ** 469
    assert _average_momentum(0.999, 5) == 0.0 and _average_momentum(None, 469) is None


def test_with_validation_images_the_best_epoch_is_kept_without_a_moving_average(small_fmnist):
    from activelearn.model import build_model
    from activelearn.retrain import TrainConfig
    from activelearn.training import fit

    d = small_fmnist
    model = build_model(10)
    fit(model, d.x_train[:512], d.y_train[:512], d.x_train[5000:5200], d.y_train[5000:5200],
        TrainConfig(epochs=2, batch_size=128, ema_momentum=0.9), num_classes=10)
    assert not model.optimizer.use_ema
