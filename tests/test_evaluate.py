import numpy as np
import pytest

from activelearn.evaluate import classification_metrics, compare_metrics

NAMES = ["a", "b", "c"]


def one_hot_probs(pred, n=3, p=0.8):
    probs = np.full((len(pred), n), (1 - p) / (n - 1))
    probs[np.arange(len(pred)), pred] = p
    return probs


def test_metrics_on_hand_made_predictions():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    m = classification_metrics(y, one_hot_probs(pred), NAMES)
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["a"]["accuracy"] == pytest.approx(0.5)
    assert m["per_class"]["a"]["precision"] == pytest.approx(0.5)   # predicted a twice, right once
    assert m["per_class"]["b"]["recall"] == pytest.approx(1.0)
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["c"]["support"] == 2
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["loss"] == pytest.approx(-np.mean(np.log([0.8, 0.1, 0.8, 0.8, 0.8, 0.1])), rel=1e-4)


def test_class_without_support_has_no_accuracy_and_empty_input_is_handled():
    m = classification_metrics(np.array([0, 1]), one_hot_probs(np.array([0, 1])), NAMES)
    assert m["per_class"]["c"]["support"] == 0 and m["per_class"]["c"]["accuracy"] is None
    empty = classification_metrics(np.array([], int), np.zeros((0, 3)), NAMES)
    assert empty["n"] == 0 and empty["accuracy"] is None


def test_compare_gives_per_class_deltas():
    y = np.array([0, 0, 1, 1])
    old = classification_metrics(y, one_hot_probs(np.array([0, 1, 0, 1])), NAMES)
    new = classification_metrics(y, one_hot_probs(np.array([0, 0, 1, 1])), NAMES)
    d = compare_metrics(old, new)
    assert d["accuracy"] == pytest.approx(0.5)
    assert d["per_class"]["a"]["accuracy"] == pytest.approx(0.5)
    assert d["per_class"]["b"]["accuracy"] == pytest.approx(0.5)
    assert d["per_class"]["c"]["accuracy"] is None
