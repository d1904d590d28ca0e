"""Simulated active learning on Fashion-MNIST: does querying by uncertainty save labels?

The training images form an unlabeled pool whose labels sit behind an :class:`Oracle` that
reveals only the rows asked for, exactly as an annotator would. Each round the model scores the
unlabeled pool, the strategy picks rows, the oracle reveals their labels, the model is retrained
(warm-started from the previous round) and evaluated on the 10k test set. The test set only
measures the curve; nothing is selected or stopped on it. Every strategy starts from the same
random labels and the same initial weights at a given seed, so curves differ only by what the
strategy chose.

TensorFlow is imported only by the functions that train (:func:`run_simulation`), so the
schedule, the oracle, the curve analysis and the outputs load with numpy alone.
"""

from __future__ import annotations

import json
import math
import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from activelearn.fmnist import FashionMNIST, validation_split
from activelearn.query import QueryStrategy, get_strategy

#: Accuracy levels the benchmark reports labels-to-reach for.
DEFAULT_TARGETS: tuple[float, ...] = (0.85, 0.88, 0.90)


class Oracle:
    """The hidden labels of the pool; hands out a label only when its row is queried.

    The simulation loop receives this object instead of a label array, so no strategy or
    training step can see a label that was not paid for. Asking twice for the same row is an
    error: in a real labeling session it would be a wasted annotation.
    """

    def __init__(self, labels: np.ndarray) -> None:
        self._labels = np.array(labels, dtype=np.int64)  # a private copy: callers can't alter it
        if self._labels.ndim != 1:
            raise ValueError(f"labels must be 1-D, got shape {self._labels.shape}")
        self._revealed = np.zeros(len(self._labels), dtype=bool)

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def revealed_count(self) -> int:
        """How many labels have been paid for so far."""
        return int(self._revealed.sum())

    def revealed_mask(self) -> np.ndarray:
        """A copy of the rows whose labels have been revealed."""
        return self._revealed.copy()

    def reveal(self, indices: np.ndarray) -> np.ndarray:
        """Labels of the pool rows ``indices``; each row can be revealed once."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.ndim != 1:
            raise ValueError(f"indices must be 1-D, got shape {indices.shape}")
        if indices.size and (indices.min() < 0 or indices.max() >= len(self._labels)):
            raise IndexError(f"pool rows are 0..{len(self._labels) - 1}, asked for "
                             f"{indices.min()}..{indices.max()}")
        if len(np.unique(indices)) != len(indices):
            raise ValueError("the same row was asked for twice in one query")
        again = indices[self._revealed[indices]]
        if again.size:
            raise ValueError(f"rows already revealed were asked for again: {again[:5].tolist()}")
        self._revealed[indices] = True
        return self._labels[indices].copy()


@dataclass(frozen=True)
class SimulationConfig:
    """Label schedule and per-round training; recorded with every curve.

    The schedule is ``initial`` random labels, then ``rounds`` queries; the first query asks
    for ``step`` labels and each later one ``growth`` times the one before (1.0: equal steps),
    so a few rounds cover 500 to 20k+ labels. Each round trains
    ``clip(ceil(train_images / labeled), min_epochs, max_epochs)`` epochs: small labeled sets
    get many passes, large ones a few, which keeps the cost of a round roughly flat. The model
    is the project CNN; ``width``/``embedding_dim`` only shrink it for tests.
    """

    initial: int = 500
    step: int = 500
    growth: float = 1.5
    rounds: int = 8
    seed: int = 0
    train_images: int = 50_000
    min_epochs: int = 5
    max_epochs: int = 40
    batch_size: int = 128
    learning_rate: float = 2e-3
    width: int | None = None          # None: the project model's default
    embedding_dim: int | None = None  # None: the project model's default

    def __post_init__(self) -> None:
        self.schedule()  # raises ValueError for an impossible schedule
        if not 1 <= self.min_epochs <= self.max_epochs:
            raise ValueError(f"need 1 <= min_epochs <= max_epochs, got {self.min_epochs}, "
                             f"{self.max_epochs}")
        if self.train_images < 1 or self.batch_size < 1:
            raise ValueError("train_images and batch_size must be >= 1")

    def schedule(self) -> list[int]:
        return label_schedule(self.initial, self.step, self.rounds, self.growth)

    def epochs_for(self, labeled: int) -> int:
        return min(self.max_epochs, max(self.min_epochs, math.ceil(self.train_images / labeled)))


def label_schedule(initial: int, step: int, rounds: int, growth: float = 1.0) -> list[int]:
    """Labeled-set size after each round: ``rounds + 1`` strictly increasing counts."""
    initial, step, rounds = operator.index(initial), operator.index(step), operator.index(rounds)
    if initial < 1 or step < 1 or rounds < 0:
        raise ValueError(f"need initial >= 1, step >= 1, rounds >= 0; got {initial}, {step}, {rounds}")
    if growth < 1.0:
        raise ValueError(f"growth must be >= 1.0, got {growth}")
    sizes = [initial]
    for round_index in range(rounds):
        sizes.append(sizes[-1] + int(round(step * growth ** round_index)))
    return sizes


def initial_indices(pool_size: int, count: int, seed: int) -> np.ndarray:
    """The random starting labels: depends only on the pool size and seed, never on the strategy."""
    if not 0 < count <= pool_size:
        raise ValueError(f"cannot start with {count} labels from a pool of {pool_size}")
    return np.sort(np.random.default_rng(seed).choice(pool_size, count, replace=False))


@dataclass
class SimulationResult:
    """One strategy's learning curve and how it was made."""

    strategy: str
    config: SimulationConfig
    pool_size: int
    test_size: int
    curve: list[dict[str, float]] = field(default_factory=list)  # labels, accuracy, epochs, elapsed_s
    wall_time_s: float = 0.0
    queried: list[np.ndarray] = field(default_factory=list)  # pool rows revealed, per round
    model_parameters: int = 0  # identifies the architecture the curve was measured with

    def to_json(self, targets: Sequence[float] = DEFAULT_TARGETS) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "settings": asdict(self.config),
            "pool_size": self.pool_size,
            "test_size": self.test_size,
            "wall_time_s": round(self.wall_time_s, 1),
            "model_parameters": self.model_parameters,
            "labels_to_reach": {f"{t:.2f}": _round_or_none(labels_to_reach(self.curve, t))
                                for t in targets},
            "curve": self.curve,
        }


    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SimulationResult":
        """A result written by `to_json` (without the queried rows), to combine runs made one strategy at a time."""
        return cls(strategy=data["strategy"], config=SimulationConfig(**data["settings"]),
                   pool_size=data["pool_size"], test_size=data["test_size"], curve=data["curve"],
                   wall_time_s=data["wall_time_s"], model_parameters=data["model_parameters"])


def _round_or_none(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


#: Receives (strategy, round index, rounds, the new curve point) after every round.
RoundProgress = Callable[[str, int, int, dict[str, float]], None]


def run_simulation(pool: np.ndarray, oracle: Oracle, test_images: np.ndarray,
                   test_labels: np.ndarray, strategy: str, config: SimulationConfig, *,
                   num_classes: int = 10, progress: RoundProgress | None = None) -> SimulationResult:
    """Query -> reveal -> retrain -> evaluate, ``config.rounds`` times after the random start.

    ``pool`` holds uint8 images whose labels only ``oracle`` knows. Returns the curve, one
    point per round plus the start. Raises ValueError if the schedule outgrows the pool.
    """
    from activelearn import model as cnn  # TensorFlow: only when a simulation really runs

    chooser = get_strategy(strategy)
    schedule = config.schedule()
    if len(oracle) != len(pool):
        raise ValueError(f"the oracle knows {len(oracle)} labels for a pool of {len(pool)} images")
    if schedule[-1] > len(pool):
        raise ValueError(f"the schedule needs {schedule[-1]} labels but the pool holds {len(pool)}")
    started = time.monotonic()
    result = SimulationResult(strategy=chooser.name, config=config, pool_size=len(pool),
                              test_size=len(test_images))
    cnn.keras.utils.set_random_seed(config.seed)
    shape = {name: value for name, value in
             (("width", config.width), ("embedding_dim", config.embedding_dim)) if value is not None}
    model = cnn.build_model(num_classes, seed=config.seed, **shape)
    result.model_parameters = int(model.count_params())
    labeled = initial_indices(len(pool), schedule[0], config.seed)
    labels = oracle.reveal(labeled)
    result.queried.append(labeled)
    for round_index, target in enumerate(schedule):
        if round_index:
            unlabeled = np.flatnonzero(~oracle.revealed_mask())
            rng = np.random.default_rng([config.seed, round_index])
            picked = unlabeled[_query(chooser, model, pool[unlabeled], target - len(labeled),
                                      num_classes, rng=rng)]
            labels = np.concatenate([labels, oracle.reveal(picked)])
            labeled = np.concatenate([labeled, picked])
            result.queried.append(picked)
        epochs = config.epochs_for(len(labeled))
        _train(model, pool[labeled], labels, epochs, config, num_classes,
               seed=config.seed + round_index)
        probs, _ = cnn.predict_with_embeddings(model, test_images)
        point = {"labels": len(labeled),
                 "accuracy": round(float((probs.argmax(axis=1) == test_labels).mean()), 5),
                 "epochs": epochs, "elapsed_s": round(time.monotonic() - started, 1)}
        result.curve.append(point)
        if progress is not None:
            progress(chooser.name, round_index, len(schedule) - 1, point)
    result.wall_time_s = time.monotonic() - started
    return result


def _query(chooser: QueryStrategy, model: Any, unlabeled_images: np.ndarray, n: int,
           num_classes: int, *, rng: np.random.Generator) -> np.ndarray:
    """Positions in ``unlabeled_images`` of the n rows the strategy wants labeled next."""
    from activelearn import model as cnn

    if chooser.name == "random":
        # Random ignores the model's outputs; skipping the scoring pass saves ~15 s a round.
        probas = np.full((len(unlabeled_images), num_classes), 1.0 / num_classes)
        embeddings = None
    else:
        probas, embeddings = cnn.predict_with_embeddings(model, unlabeled_images)
        probas = probas / probas.sum(axis=1, keepdims=True)  # float32 softmax drifts from 1
    positions, _ = chooser.query(probas, n, embeddings=embeddings, rng=rng)
    return positions


def _train(model: Any, images: np.ndarray, labels: np.ndarray, epochs: int,
           config: SimulationConfig, num_classes: int, *, seed: int) -> None:
    """A fixed number of epochs with a fresh cosine decay, continuing from the current weights.

    No validation set and no early stopping: the only labels a real session would have are the
    revealed ones, and with the decay ending near zero the last epoch is the one to keep.
    """
    from activelearn import model as cnn

    keras = cnn.keras
    keras.utils.set_random_seed(seed)
    steps = epochs * math.ceil(len(images) / config.batch_size)
    cnn.compile_model(model, learning_rate=config.learning_rate, decay_steps=steps)
    data = cnn.training_dataset(images, keras.utils.to_categorical(labels, num_classes),
                                batch_size=config.batch_size, seed=seed, augment=not cnn.has_augmentation(model))
    model.fit(data, epochs=epochs, shuffle=False, verbose=0)   # the dataset shuffles


def fmnist_pool(data: FashionMNIST, *, pool_size: int | None = None, test_size: int | None = None,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(pool images, pool labels, test images, test labels) from Fashion-MNIST.

    The pool is the 55k training images outside the project's 5k validation split, the same
    images the seed model trains on, so the full-pool accuracy is the seed model's. The
    simulation never uses the 5k. ``pool_size`` / ``test_size`` take seeded random subsets for
    quick trials.
    """
    pool_idx, _ = validation_split(data.y_train, 5000, seed=0)
    rng = np.random.default_rng(seed)
    if pool_size is not None:
        pool_idx = np.sort(rng.permutation(pool_idx)[:pool_size])
    test_idx = np.arange(len(data.y_test))
    if test_size is not None:
        test_idx = np.sort(rng.permutation(test_idx)[:test_size])
    return (data.x_train[pool_idx], data.y_train[pool_idx],
            data.x_test[test_idx], data.y_test[test_idx])


def simulate_strategies(pool: np.ndarray, pool_labels: np.ndarray, test_images: np.ndarray,
                        test_labels: np.ndarray, strategies: Sequence[str],
                        config: SimulationConfig, *, num_classes: int = 10,
                        progress: RoundProgress | None = None) -> list[SimulationResult]:
    """One simulation per strategy, each with its own fresh oracle over the same pool."""
    return [run_simulation(pool, Oracle(pool_labels), test_images, test_labels, name, config,
                           num_classes=num_classes, progress=progress)
            for name in dict.fromkeys(strategies)]


def format_progress(strategy: str, round_index: int, rounds: int, point: dict[str, float]) -> str:
    """One tqdm-style line per round (a meter per strategy), readable in a log file too."""
    from tqdm import tqdm

    return tqdm.format_meter(
        round_index + 1, rounds + 1, point["elapsed_s"], prefix=f"{strategy:>16}", ncols=110,
        unit="round", postfix=f"labels={point['labels']:,}, acc={point['accuracy']:.4f}, "
                              f"epochs={point['epochs']}")


def labels_to_reach(curve: Sequence[dict[str, float]], target: float) -> float | None:
    """Labels needed to first reach ``target`` accuracy, interpolated linearly; None if never.

    The first measured point at or above the target and the one before it bound the crossing;
    if the very first point already reaches it, its label count is the answer (nothing was
    measured below it).
    """
    previous = None
    for point in curve:
        if point["accuracy"] >= target:
            if previous is None:
                return float(point["labels"])
            span = point["accuracy"] - previous["accuracy"]
            share = (target - previous["accuracy"]) / span
            return float(previous["labels"] + share * (point["labels"] - previous["labels"]))
        previous = point
    return None


def reach_table(results: Sequence[SimulationResult],
                targets: Sequence[float] = DEFAULT_TARGETS) -> str:
    """Labels to reach each target per strategy, with the ratio to random where both reach it."""
    random_curve = next((r.curve for r in results if r.strategy == "random"), None)
    header = (f"{'strategy':<18}" + "".join(f"{f'{t:.0%}':>16}" for t in targets)
              + f"{'final acc':>11}{'labels':>8}{'wall s':>8}")
    lines = [header, "-" * len(header)]
    for result in results:
        cells = []
        for target in targets:
            needed = labels_to_reach(result.curve, target)
            baseline = None if random_curve is None else labels_to_reach(random_curve, target)
            text = "not reached" if needed is None else f"{needed:,.0f}"
            if needed is not None and baseline and result.strategy != "random":
                text += f" ({needed / baseline:.2f}x)"
            cells.append(f"{text:>16}")
        last = result.curve[-1] if result.curve else {"accuracy": float("nan"), "labels": 0}
        lines.append(f"{result.strategy:<18}" + "".join(cells)
                     + f"{last['accuracy']:>11.4f}{last['labels']:>8,}{result.wall_time_s:>8.0f}")
    return "\n".join(lines)


def write_outputs(results: Sequence[SimulationResult], out_dir: str | Path,
                  targets: Sequence[float] = DEFAULT_TARGETS) -> list[Path]:
    """``<strategy>.json`` per result, and ``curves.png`` when there are several to compare.

    Returns the paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for result in results:
        path = out / f"{result.strategy}.json"
        path.write_text(json.dumps(result.to_json(targets), indent=2) + "\n")
        written.append(path)
    if len(results) > 1:
        written.append(plot_curves(results, out / "curves.png", targets))
    return written


def plot_curves(results: Sequence[SimulationResult], path: str | Path,
                targets: Sequence[float] = DEFAULT_TARGETS) -> Path:
    """Test accuracy against labels, one line per strategy, on a log label axis.

    Uses matplotlib's Figure directly (Agg canvas), so no GUI backend or global pyplot state.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    figure = Figure(figsize=(8, 5), dpi=120)
    axes = figure.add_subplot()
    for result in results:
        xs = [p["labels"] for p in result.curve]
        ys = [p["accuracy"] for p in result.curve]
        axes.plot(xs, ys, marker="o", markersize=4, label=result.strategy)
    for target in targets:
        axes.axhline(target, color="grey", linestyle=":", linewidth=1)
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    axes.set_xlabel("labels revealed (log scale)")
    axes.set_ylabel("test accuracy (10k Fashion-MNIST test images)")
    first = results[0]
    axes.set_title(f"Active learning on Fashion-MNIST: pool {first.pool_size:,}, seed {first.config.seed}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
    return Path(path)
