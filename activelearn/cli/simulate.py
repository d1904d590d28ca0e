"""`simulate`: replay active learning on Fashion-MNIST to measure what each strategy saves.

Writes one JSON curve per strategy and, for several strategies, a comparison plot; prints
the labels each strategy needs to reach the target accuracies. TensorFlow loads only when
the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from activelearn.config import Paths
from activelearn.query import STRATEGIES
from activelearn.simulate import SimulationConfig

_DEFAULTS = SimulationConfig()


def register(subparsers: argparse._SubParsersAction) -> None:
    sim = subparsers.add_parser(
        "simulate", help="benchmark query strategies on Fashion-MNIST with a simulated annotator",
        description="Treat the 55k Fashion-MNIST training images as an unlabeled pool, reveal "
                    "labels only when a strategy queries them, retrain each round and measure "
                    "test accuracy against labels used.")
    sim.add_argument("--strategy", action="append", choices=list(STRATEGIES), metavar="NAME",
                     help=f"strategy to simulate, repeatable ({', '.join(STRATEGIES)}; "
                          "default: random and margin)")
    sim.add_argument("--initial", type=int, default=_DEFAULTS.initial, metavar="N",
                     help=f"random labels to start from (default {_DEFAULTS.initial})")
    sim.add_argument("--step", type=int, default=_DEFAULTS.step, metavar="N",
                     help=f"labels queried in the first round (default {_DEFAULTS.step})")
    sim.add_argument("--growth", type=float, default=_DEFAULTS.growth, metavar="F",
                     help="each round queries F times the labels of the round before; "
                          f"1 for equal steps (default {_DEFAULTS.growth})")
    sim.add_argument("--rounds", type=int, default=_DEFAULTS.rounds, metavar="R",
                     help=f"query rounds after the start (default {_DEFAULTS.rounds})")
    sim.add_argument("--seed", type=int, default=_DEFAULTS.seed, metavar="S",
                     help="seed of the starting labels, the weights and the shuffles (default 0)")
    sim.add_argument("--train-images", type=int, default=_DEFAULTS.train_images, metavar="N",
                     help="images trained on per round; epochs = N / labeled, clipped to "
                          f"[--min-epochs, --max-epochs] (default {_DEFAULTS.train_images})")
    sim.add_argument("--min-epochs", type=int, default=_DEFAULTS.min_epochs, metavar="E")
    sim.add_argument("--max-epochs", type=int, default=_DEFAULTS.max_epochs, metavar="E")
    sim.add_argument("--pool-size", type=int, metavar="N",
                     help="use a random N of the 55k pool images (quick trials; default all)")
    sim.add_argument("--test-size", type=int, metavar="N",
                     help="evaluate on a random N of the 10k test images (quick trials; default all)")
    sim.add_argument("--out", type=Path, metavar="DIR",
                     help="folder for <strategy>.json and curves.png (default <home>/data/simulate)")
    sim.add_argument("--json", action="store_true",
                     help="print the results as JSON on stdout (the table goes to stderr)")
    sim.set_defaults(func=cmd_simulate)


def cmd_simulate(args: argparse.Namespace, paths: Paths) -> int:
    from activelearn.fmnist import load_fashion_mnist
    from activelearn.simulate import (
        fmnist_pool,
        format_progress,
        reach_table,
        simulate_strategies,
        write_outputs,
    )

    try:
        config = SimulationConfig(initial=args.initial, step=args.step, growth=args.growth,
                                  rounds=args.rounds, seed=args.seed,
                                  train_images=args.train_images, min_epochs=args.min_epochs,
                                  max_epochs=args.max_epochs)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data = load_fashion_mnist(paths.fmnist_dir)
    pool, pool_labels, test_images, test_labels = fmnist_pool(
        data, pool_size=args.pool_size, test_size=args.test_size, seed=args.seed)
    if config.schedule()[-1] > len(pool):
        print(f"error: the schedule {config.schedule()} needs {config.schedule()[-1]:,} labels "
              f"but the pool holds {len(pool):,} images", file=sys.stderr)
        return 2

    def progress(strategy: str, round_index: int, rounds: int, point: dict[str, float]) -> None:
        print(format_progress(strategy, round_index, rounds, point), file=sys.stderr, flush=True)

    results = simulate_strategies(pool, pool_labels, test_images, test_labels,
                                  args.strategy or ["random", "margin"], config,
                                  num_classes=len(data.class_names), progress=progress)
    written = write_outputs(results, args.out or paths.data / "simulate")
    table = reach_table(results)
    if args.json:
        print(json.dumps({r.strategy: r.to_json() for r in results}, indent=2))
        print(table, file=sys.stderr)
    else:
        print(table)
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0
