"""Reports from model cards: the metrics CSV matches the card, the figures plot the card's numbers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from activelearn import FMNIST_CLASSES, reports
from activelearn.cli import main as cli_main
from activelearn.config import Paths, resolve_paths
from activelearn.errors import ModelError
from activelearn.evaluate import classification_metrics

CLASSES = [*FMNIST_CLASSES, "hat/cap"]


def metrics(accuracy: float, n: int, seed: int) -> dict:
    """classification_metrics of predictions right with probability `accuracy`; class 10 never seen."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 10, n)
    predicted = np.where(rng.random(n) < accuracy, truth, (truth + 1) % 10)
    return classification_metrics(truth, np.eye(len(CLASSES))[predicted], CLASSES)


def write_card(paths: Paths, version: str, parent: str | None, card_metrics: dict) -> dict:
    card = {"version": version, "parent": parent, "created_at": "2024-05-01T10:00:00.000+00:00",
            "class_names": CLASSES, "metrics": card_metrics}
    (paths.models / version).mkdir(parents=True)
    (paths.models / version / "card.json").write_text(json.dumps(card))
    return card


@pytest.fixture
def models(tmp_path: Path) -> tuple[Paths, list[dict]]:
    """v1 (seed, no holdout yet), v2 and v3 with holdout metrics."""
    paths = resolve_paths(tmp_path / "home", tmp_path / "unused")
    cards = [write_card(paths, "v1", None, {"fmnist_test": metrics(0.80, 400, 1), "holdout": None}),
             write_card(paths, "v2", "v1", {"fmnist_test": metrics(0.85, 400, 2), "holdout": metrics(0.6, 40, 3)}),
             write_card(paths, "v3", "v2", {"fmnist_test": metrics(0.90, 400, 4), "holdout": metrics(0.7, 60, 5)})]
    (paths.models / "ACTIVE").write_text("v3\n")
    return paths, cards


def test_write_report_writes_the_card_metrics_and_three_kinds_of_plot(models, tmp_path):
    paths, cards = models
    written = reports.write_report(paths, "v3", tmp_path / "report")
    assert [p.name for p in written] == ["v3-per-class.csv", "v3-confusion-fmnist_test.png",
                                         "v3-confusion-holdout.png", "v3-per-class-accuracy.png", "history.png"]
    for png in written[1:]:
        with Image.open(png) as image:
            assert image.format == "PNG" and image.size[0] > 300
    with open(written[0], newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 2 * (1 + len(CLASSES))
    card = cards[2]
    for row in rows:
        assert row["version"] == "v3"
        source = card["metrics"][row["split"]]
        if row["class"] == reports.OVERALL:
            assert float(row["accuracy"]) == pytest.approx(source["accuracy"])
            assert int(row["support"]) == source["n"]
            continue
        expected = source["per_class"][row["class"]]
        assert int(row["support"]) == expected["support"]
        assert float(row["f1"]) == pytest.approx(expected["f1"])
        assert row["accuracy"] == ("" if expected["accuracy"] is None else str(expected["accuracy"]))
    hat = next(r for r in rows if r["class"] == "hat/cap" and r["split"] == "holdout")
    assert (hat["support"], hat["accuracy"]) == ("0", "")


def test_a_version_without_holdout_metrics_gets_no_holdout_plot(models, tmp_path):
    paths, _ = models
    written = reports.write_report(paths, "v1", tmp_path / "report")
    assert [p.name for p in written] == ["v1-per-class.csv", "v1-confusion-fmnist_test.png",
                                         "v1-per-class-accuracy.png", "history.png"]
    with open(written[0], newline="") as stream:
        assert {row["split"] for row in csv.DictReader(stream)} == {"fmnist_test"}


def test_unknown_version_is_a_model_error(models, tmp_path):
    paths, _ = models
    with pytest.raises(ModelError, match="v9"):
        reports.write_report(paths, "v9", tmp_path / "report")
    assert not (tmp_path / "report").exists()


def test_confusion_matrix_figure_shows_counts_shaded_by_row_share():
    matrix = [[8, 2, 0], [0, 0, 0], [1, 1, 2]]
    figure = reports.confusion_matrix_figure(matrix, ["a", "b/c", "d"], "title")
    assert isinstance(figure, Figure)
    axes = figure.axes[0]
    np.testing.assert_allclose(axes.images[0].get_array(), [[0.8, 0.2, 0], [0, 0, 0], [0.25, 0.25, 0.5]])
    assert sorted(t.get_text() for t in axes.texts) == ["1", "1", "2", "2", "8"]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["a", "b/c", "d"]
    assert axes.get_title() == "title"
    with pytest.raises(ValueError, match="expected \\(2, 2\\)"):
        reports.confusion_matrix_figure(matrix, ["a", "b"], "wrong size")


def test_per_class_accuracy_figure_has_one_bar_per_class_and_split(models):
    _, cards = models
    by_split = reports.card_metrics(cards[2])
    figure = reports.per_class_accuracy_figure(by_split, CLASSES)
    axes = figure.axes[0]
    for container, split in zip(axes.containers, ("fmnist_test", "holdout")):
        widths = [bar.get_width() for bar in container]
        expected = [by_split[split]["per_class"][name]["accuracy"] for name in CLASSES]
        np.testing.assert_allclose(widths, [np.nan if v is None else v for v in expected])
    assert len(axes.containers) == 2


def test_history_figure_plots_each_versions_accuracy(models):
    _, cards = models
    figure = reports.history_figure(cards)
    lines = {line.get_gid(): line for line in figure.axes[0].lines}
    np.testing.assert_allclose(lines["fmnist_test"].get_ydata(),
                               [c["metrics"]["fmnist_test"]["accuracy"] for c in cards])
    holdout = lines["holdout"].get_ydata()
    assert np.isnan(holdout[0])
    np.testing.assert_allclose(holdout[1:], [c["metrics"]["holdout"]["accuracy"] for c in cards[1:]])
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["v1", "v2", "v3"]
    assert [t.get_text() for t in figure.axes[0].texts] == ["n=40", "n=60"]


def test_cli_report_defaults_to_the_active_version(models, tmp_path, capsys):
    paths, _ = models
    assert cli_main(["--home", str(paths.home), "report", "--out", str(tmp_path / "r")]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[0].endswith("v3-per-class.csv") and (tmp_path / "r" / "history.png").is_file()


def test_per_class_bars_tell_zero_accuracy_from_a_class_without_items():
    metrics = {"holdout": {"per_class": {"a": {"accuracy": 0.0, "n": 4}, "b": {"accuracy": 0.75, "n": 4}}}}
    figure = reports.per_class_accuracy_figure(metrics, ["a", "b", "c"])
    assert [t.get_text() for t in figure.axes[0].texts] == ["0%", "75%", "no items"]


@pytest.mark.parametrize(("points", "expected"), [
    ([0.93, 0.94, float("nan")], (0.8, 1.0)),   # a round tenth at least 0.05 below the worst point
    ([0.95, 0.99], (0.9, 1.0)),
    ([0.41, 0.8], (0.3, 1.0)),
    ([0.02], (0.0, 1.0)),
    ([float("nan")], (0.0, 1.0)),
])
def test_history_axis_starts_a_round_tenth_below_the_worst_version(points, expected):
    assert reports.history_ylim(points) == pytest.approx(expected)
