"""What a lead reads about a model version: per-class metrics, confusion matrices, learning history.

Everything comes from the model cards (no TensorFlow). The figure functions return
matplotlib Figures drawn on the Agg canvas without pyplot, so the UI's Review tab
can show the same plots from worker threads, and nothing accumulates in pyplot's
global figure list.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from activelearn import registry
from activelearn.config import Paths

#: Evaluation splits a card may hold, in display order.
SPLITS = ("fmnist_test", "holdout")
SPLIT_LABELS = {"fmnist_test": "Fashion-MNIST test", "holdout": "holdout (product photos)"}
CSV_COLUMNS = ("version", "split", "class", "precision", "recall", "f1", "accuracy", "support")
OVERALL = "(overall)"


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def card_metrics(card: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """split -> metrics for the splits the card evaluated (holdout only once it had items)."""
    metrics = card.get("metrics") or {}
    return {split: metrics[split] for split in SPLITS if metrics.get(split) and metrics[split].get("n")}


def card_class_names(card: Mapping[str, Any]) -> list[str]:
    if card.get("class_names"):
        return list(card["class_names"])
    return list(card.get("metrics", {}).get("fmnist_test", {}).get("per_class", {}))


def per_class_rows(card: Mapping[str, Any]) -> list[dict[str, Any]]:
    """CSV rows: one per split and class, plus the split's overall accuracy (support = n)."""
    rows = []
    for split, metrics in card_metrics(card).items():
        rows.append({"version": card.get("version"), "split": split, "class": OVERALL,
                     "precision": None, "recall": None, "f1": None,
                     "accuracy": metrics.get("accuracy"), "support": metrics.get("n")})
        for name, values in metrics.get("per_class", {}).items():
            rows.append({"version": card.get("version"), "split": split, "class": name,
                         **{key: values.get(key) for key in CSV_COLUMNS[3:]}})
    return rows


def confusion_matrix_figure(matrix: Sequence[Sequence[int]] | np.ndarray, class_names: Sequence[str],
                            title: str) -> Figure:
    """Counts in each cell, shaded by the share of the true class (row), so small classes show too."""
    counts = np.asarray(matrix, dtype=np.int64)
    n = len(class_names)
    if counts.shape != (n, n):
        raise ValueError(f"confusion matrix is {counts.shape}, expected ({n}, {n}) for {n} classes")
    row_totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, row_totals, out=np.zeros(counts.shape), where=row_totals > 0)
    side = max(4.5, 0.55 * n + 2.5)
    figure = _figure(side + 1, side)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="share of the true class", shrink=0.8)
    for (row, col), count in np.ndenumerate(counts):
        if count:
            axes.text(col, row, str(count), ha="center", va="center", fontsize=8,
                      color="white" if shares[row, col] > 0.5 else "black")
    axes.set_xticks(range(n), class_names, rotation=45, ha="right")
    axes.set_yticks(range(n), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    return figure


def per_class_accuracy_figure(metrics_by_split: Mapping[str, Mapping[str, Any]],
                              class_names: Sequence[str]) -> Figure:
    """Horizontal bars: each class's accuracy (recall) per evaluation split; no bar without support."""
    figure = _figure(7, max(3.0, 0.45 * len(class_names) + 1.5))
    axes = figure.add_subplot()
    splits = list(metrics_by_split)
    height = 0.8 / max(1, len(splits))
    positions = np.arange(len(class_names))
    for i, split in enumerate(splits):
        per_class = metrics_by_split[split].get("per_class", {})
        values = [per_class.get(name, {}).get("accuracy") for name in class_names]
        offsets = positions + (i - (len(splits) - 1) / 2) * height
        axes.barh(offsets, [np.nan if v is None else v for v in values], height,
                         label=SPLIT_LABELS.get(split, split))
        # say which empty bar is 0% and which class has no items in this split: they look alike
        for y, value in zip(offsets, values):
            axes.text(0.01 if value is None else value + 0.01, y, "no items" if value is None else f"{value:.0%}",
                      va="center", fontsize=7, color="0.35")
    axes.set_yticks(positions, class_names)
    axes.invert_yaxis()
    axes.set_xlim(0, 1.12)    # room for the value labels right of a 100% bar
    axes.set_xticks(np.linspace(0, 1, 6))
    axes.set_xlabel("accuracy (share of the class predicted correctly)")
    axes.set_title("Per-class accuracy")
    if splits:
        figure.legend(loc="outside lower center", ncol=len(splits), fontsize=8)
    return figure


def history_ylim(accuracies: Sequence[float]) -> tuple[float, float]:
    """Accuracy axis from a round tenth below the worst point to 1: differences between versions of a
    few points stay visible, and the axis never starts at an arbitrary 0.93 that exaggerates them."""
    finite = [a for a in accuracies if np.isfinite(a)]
    if not finite:
        return 0.0, 1.0
    return max(0.0, np.floor(min(finite) * 10 - 0.5) / 10), 1.0


def history_figure(cards: Sequence[Mapping[str, Any]]) -> Figure:
    """Accuracy of every version, oldest first, on Fashion-MNIST test and on the holdout.

    The holdout grows as items are labeled, so its points compare versions on
    slightly different sets; each point is annotated with its n.
    """
    figure = _figure(max(5.0, 0.6 * len(cards) + 3), 4)
    axes = figure.add_subplot()
    versions = [str(card.get("version")) for card in cards]
    for split in SPLITS:
        metrics = [card_metrics(card).get(split) for card in cards]
        accuracy = [np.nan if m is None else m["accuracy"] for m in metrics]
        if all(np.isnan(accuracy)):
            continue
        (line,) = axes.plot(range(len(cards)), accuracy, marker="o", label=SPLIT_LABELS[split])
        line.set_gid(split)
        if split == "holdout":
            for x, m in enumerate(metrics):
                if m is not None:
                    axes.annotate(f"n={m['n']}", (x, m["accuracy"]), textcoords="offset points",
                                  xytext=(0, 6), ha="center", fontsize=7)
    axes.set_xticks(range(len(cards)), versions)
    axes.set_ylim(*history_ylim([y for line in axes.lines for y in line.get_ydata()]))
    axes.set_xlabel("model version")
    axes.set_ylabel("accuracy")
    axes.set_title("Learning history")
    axes.grid(alpha=0.3)
    if axes.lines:
        axes.legend(fontsize=8)
    return figure


def write_report(paths: Paths, version: str, out_dir: str | Path) -> list[Path]:
    """Write the report files of ``version`` into ``out_dir``; returns their paths.

    ``<version>-per-class.csv``, ``<version>-confusion-<split>.png`` per evaluated
    split, ``<version>-per-class-accuracy.png`` and ``history.png`` (all versions).
    Files of the same name are replaced: a report is derived from the cards.
    """
    card = registry.read_card(paths.models, version)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    table = out / f"{version}-per-class.csv"
    with open(table, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(per_class_rows(card))
    written.append(table)

    names = card_class_names(card)
    by_split = card_metrics(card)
    for split, metrics in by_split.items():
        title = f"{version} on {SPLIT_LABELS[split]}: accuracy {metrics['accuracy']:.3f} (n={metrics['n']})"
        written.append(_save(confusion_matrix_figure(metrics["confusion_matrix"], names, title),
                             out / f"{version}-confusion-{split}.png"))
    written.append(_save(per_class_accuracy_figure(by_split, names), out / f"{version}-per-class-accuracy.png"))
    cards = [registry.read_card(paths.models, v) for v in registry.list_versions(paths.models)]
    written.append(_save(history_figure(cards), out / "history.png"))
    return written


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path)
    return path
