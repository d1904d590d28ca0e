"""Tests for activelearn.simulate and the `simulate` command, on tiny synthetic pools.

The pool is three classes of easily told-apart 28x28 images (a bright block top-left, centre
or bottom-right) and the model is the project CNN at width 4, so a whole simulation takes
seconds.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest

from activelearn.cli import simulate as simulate_cli
from activelearn.config import resolve_paths
from activelearn.simulate import (
    Oracle,
    SimulationConfig,
    SimulationResult,
    initial_indices,
    label_schedule,
    labels_to_reach,
    reach_table,
    run_simulation,
    simulate_strategies,
    write_outputs,
)

REPO = Path(__file__).resolve().parents[1]
CLASSES = 3
TINY = SimulationConfig(initial=24, step=12, growth=1.0, rounds=2, seed=3, train_images=48,
                        min_epochs=1, max_epochs=2, batch_size=16, width=4, embedding_dim=8)


def block_images(labels: np.ndarray, seed: int) -> np.ndarray:
    """One image per label: an 8x8 bright block whose position gives the class, plus noise."""
    rng = np.random.default_rng(seed)
    corners = {0: (3, 3), 1: (10, 10), 2: (17, 17)}
    images = rng.integers(0, 40, size=(len(labels), 28, 28)).astype(np.uint8)
    for image, label in zip(images, labels):
        row, col = corners[int(label)] + rng.integers(-2, 3, size=2)
        image[row:row + 8, col:col + 8] = 230
    return images


def synthetic_split(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(size) % CLASSES
    np.random.default_rng(seed).shuffle(labels)
    return block_images(labels, seed), labels


@pytest.fixture(scope="module")
def pool() -> tuple[np.ndarray, np.ndarray]:
    return synthetic_split(150, seed=1)


@pytest.fixture(scope="module")
def test_set() -> tuple[np.ndarray, np.ndarray]:
    return synthetic_split(60, seed=2)


@pytest.fixture(scope="module")
def results(pool, test_set) -> list[SimulationResult]:
    """random and margin over the same pool, as the benchmark runs them."""
    return simulate_strategies(pool[0], pool[1], *test_set, ["random", "margin"], TINY,
                               num_classes=CLASSES)


# --- the oracle ----------------------------------------------------------------------------

def test_oracle_reveals_exactly_the_rows_asked_for() -> None:
    hidden = np.array([2, 0, 1, 1, 0, 2])
    oracle = Oracle(hidden)
    assert oracle.revealed_count == 0
    assert oracle.reveal(np.array([4, 0])).tolist() == [0, 2]
    assert oracle.revealed_mask().tolist() == [True, False, False, False, True, False]
    assert oracle.reveal(np.array([3])).tolist() == [1]
    assert oracle.revealed_count == 3


def test_oracle_refuses_a_second_reveal_and_rows_outside_the_pool() -> None:
    oracle = Oracle(np.array([0, 1, 2]))
    oracle.reveal(np.array([1]))
    with pytest.raises(ValueError, match="already revealed"):
        oracle.reveal(np.array([2, 1]))
    with pytest.raises(ValueError, match="twice"):
        oracle.reveal(np.array([0, 0]))
    with pytest.raises(IndexError):
        oracle.reveal(np.array([3]))
    assert oracle.revealed_count == 1  # refused queries reveal nothing


def test_oracle_keeps_its_own_copy_of_the_labels() -> None:
    hidden = np.array([0, 1, 2])
    oracle = Oracle(hidden)
    hidden[:] = 9
    oracle.revealed_mask()[:] = True  # a copy: cannot mark rows as paid for
    assert oracle.reveal(np.array([0, 1, 2])).tolist() == [0, 1, 2]


def test_simulation_learns_labels_only_through_the_oracle(results, pool) -> None:
    for result in results:
        revealed = np.concatenate(result.queried)
        assert len(np.unique(revealed)) == len(revealed) == result.curve[-1]["labels"]
        assert [len(np.concatenate(result.queried[:i + 1])) for i in range(len(result.queried))] \
            == [p["labels"] for p in result.curve]


def test_labels_the_oracle_never_revealed_cannot_change_the_run(results, pool, test_set) -> None:
    """Scramble every label margin never queried: the run must be identical."""
    margin_run = results[1]
    queried = np.concatenate(margin_run.queried)
    tampered = (pool[1] + 1) % CLASSES
    tampered[queried] = pool[1][queried]
    oracle = Oracle(tampered)
    again = run_simulation(pool[0], oracle, *test_set, "margin", TINY, num_classes=CLASSES)
    assert [q.tolist() for q in again.queried] == [q.tolist() for q in margin_run.queried]
    assert [p["accuracy"] for p in again.curve] == pytest.approx(
        [p["accuracy"] for p in margin_run.curve], abs=0.02)
    assert oracle.revealed_count == len(queried)


# --- the loop ------------------------------------------------------------------------------

def test_curve_has_a_point_per_round_plus_the_start(results) -> None:
    for result in results:
        assert [p["labels"] for p in result.curve] == TINY.schedule() == [24, 36, 48]
        assert all(0.0 <= p["accuracy"] <= 1.0 for p in result.curve)
        assert result.curve[-1]["elapsed_s"] == pytest.approx(result.wall_time_s, abs=0.1)
        assert 0 < result.curve[0]["elapsed_s"] < result.curve[-1]["elapsed_s"]


def test_every_strategy_starts_from_the_same_labels_and_weights(results) -> None:
    random_run, margin_run = results
    assert random_run.queried[0].tolist() == margin_run.queried[0].tolist()
    assert random_run.queried[0].tolist() == initial_indices(150, 24, seed=3).tolist()
    assert random_run.curve[0]["accuracy"] == pytest.approx(margin_run.curve[0]["accuracy"], abs=0.02)
    assert initial_indices(150, 24, seed=4).tolist() != random_run.queried[0].tolist()


def test_margin_queries_differ_from_random(results) -> None:
    random_run, margin_run = results
    assert margin_run.queried[1].tolist() != random_run.queried[1].tolist()


def test_a_schedule_larger_than_the_pool_is_refused(pool, test_set) -> None:
    config = SimulationConfig(initial=100, step=100, rounds=1, growth=1.0, width=4)
    with pytest.raises(ValueError, match="pool holds 150"):
        run_simulation(pool[0], Oracle(pool[1]), *test_set, "random", config, num_classes=CLASSES)


# --- schedule and epochs ------------------------------------------------------------------

def test_label_schedule_equal_and_growing_steps() -> None:
    assert label_schedule(500, 500, 3) == [500, 1000, 1500, 2000]
    assert label_schedule(500, 500, 4, growth=2.0) == [500, 1000, 2000, 4000, 8000]
    assert label_schedule(100, 10, 0) == [100]
    with pytest.raises(ValueError):
        label_schedule(0, 10, 2)
    with pytest.raises(ValueError):
        label_schedule(10, 10, 2, growth=0.5)


def test_epochs_scale_down_with_the_labeled_set_within_bounds() -> None:
    config = SimulationConfig(train_images=30_000, min_epochs=3, max_epochs=40)
    assert config.epochs_for(500) == 40
    assert config.epochs_for(3000) == 10
    assert config.epochs_for(7000) == 5
    assert config.epochs_for(50_000) == 3
    with pytest.raises(ValueError):
        SimulationConfig(min_epochs=5, max_epochs=2)


# --- labels_to_reach ----------------------------------------------------------------------

CURVE = [{"labels": 500, "accuracy": 0.80}, {"labels": 1000, "accuracy": 0.84},
         {"labels": 2000, "accuracy": 0.86}, {"labels": 4000, "accuracy": 0.85},
         {"labels": 8000, "accuracy": 0.90}]


def test_labels_to_reach_interpolates_between_the_bracketing_points() -> None:
    assert labels_to_reach(CURVE, 0.82) == pytest.approx(750)
    assert labels_to_reach(CURVE, 0.85) == pytest.approx(1500)
    assert labels_to_reach(CURVE, 0.88) == pytest.approx(6400)  # 4000 + 0.6 * 4000


def test_labels_to_reach_exact_hits_first_point_and_not_reached() -> None:
    assert labels_to_reach(CURVE, 0.86) == pytest.approx(2000)
    assert labels_to_reach(CURVE, 0.90) == pytest.approx(8000)
    assert labels_to_reach(CURVE, 0.70) == 500  # nothing measured below the first point
    assert labels_to_reach(CURVE, 0.91) is None
    assert labels_to_reach([], 0.5) is None


def test_reach_table_shows_ratios_to_random_and_not_reached() -> None:
    config = SimulationConfig()
    random_run = SimulationResult("random", config, 55_000, 10_000, curve=CURVE, wall_time_s=60)
    better = [{"labels": 500, "accuracy": 0.82}, {"labels": 1000, "accuracy": 0.88},
              {"labels": 2000, "accuracy": 0.89}]
    margin_run = SimulationResult("margin", config, 55_000, 10_000, curve=better, wall_time_s=50)
    table = reach_table([random_run, margin_run]).splitlines()
    random_row = next(line for line in table if line.startswith("random"))
    margin_row = next(line for line in table if line.startswith("margin"))
    assert "1,500" in random_row and "6,400" in random_row and "8,000" in random_row
    assert "750 (0.50x)" in margin_row  # 0.85 at 750 labels vs random's 1,500
    assert "1,000 (0.16x)" in margin_row  # 0.88: 1,000 vs 6,400
    assert "not reached" in margin_row


# --- outputs ------------------------------------------------------------------------------

def test_write_outputs_writes_a_curve_per_strategy_and_a_plot(results, tmp_path) -> None:
    written = write_outputs(results, tmp_path / "out")
    assert sorted(p.name for p in written) == ["curves.png", "margin.json", "random.json"]
    doc = json.loads((tmp_path / "out" / "margin.json").read_text())
    assert doc["strategy"] == "margin"
    assert [p["labels"] for p in doc["curve"]] == [24, 36, 48]
    assert doc["settings"]["initial"] == 24 and doc["settings"]["seed"] == 3
    assert doc["wall_time_s"] > 0 and doc["pool_size"] == 150 and doc["test_size"] == 60
    assert doc["model_parameters"] == results[1].model_parameters > 0
    assert set(doc["labels_to_reach"]) == {"0.85", "0.88", "0.90"}
    assert (tmp_path / "out" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_written_one_strategy_at_a_time_combine_into_the_same_table(results, tmp_path) -> None:
    for result in results:                       # as two separate runs would write them
        write_outputs([result], tmp_path)
    loaded = [SimulationResult.from_json(json.loads((tmp_path / f"{r.strategy}.json").read_text()))
              for r in results]
    assert reach_table(loaded) == reach_table(results)
    assert [r.config for r in loaded] == [r.config for r in results]


def test_a_single_strategy_gets_no_comparison_plot(results, tmp_path) -> None:
    written = write_outputs(results[:1], tmp_path)
    assert [p.name for p in written] == ["random.json"]


# --- the command --------------------------------------------------------------------------

def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    simulate_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["simulate", *argv])


def test_command_options_and_defaults() -> None:
    args = parse("--strategy", "margin", "--strategy", "diverse", "--initial", "100", "--json")
    assert args.strategy == ["margin", "diverse"]
    assert (args.initial, args.step, args.rounds, args.json) == (100, 500, 8, True)
    assert parse().strategy is None  # the handler falls back to random and margin
    with pytest.raises(SystemExit):
        parse("--strategy", "bogus")


def test_command_rejects_a_bad_schedule_before_loading_anything(tmp_path, capsys) -> None:
    args = parse("--initial", "0")
    assert args.func(args, resolve_paths(tmp_path, tmp_path / "missing")) == 2
    assert "initial" in capsys.readouterr().err


FMNIST_DIR = Path(os.environ.get("ACTIVELEARN_FMNIST_DIR", REPO.parent / "shared" / "fashion-mnist"))


@pytest.mark.skipif(not (FMNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
                    reason="real Fashion-MNIST files not available")
def test_command_end_to_end_on_a_small_slice_of_fashion_mnist(tmp_path, capsys) -> None:
    args = parse("--strategy", "random", "--strategy", "entropy", "--initial", "40", "--step", "20",
                 "--rounds", "1", "--train-images", "40", "--min-epochs", "1", "--max-epochs", "1",
                 "--pool-size", "200", "--test-size", "100", "--out", str(tmp_path), "--json")
    assert args.func(args, resolve_paths(tmp_path, FMNIST_DIR)) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert list(doc) == ["random", "entropy"]
    assert [p["labels"] for p in doc["entropy"]["curve"]] == [40, 60]
    assert "round" in captured.err and "labels=60" in captured.err
    assert {p.name for p in tmp_path.iterdir()} == {"random.json", "entropy.json", "curves.png"}
