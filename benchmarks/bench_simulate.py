"""Does active learning pay off? Labels each strategy needs to reach 85/88/90% test accuracy.

Runs the Fashion-MNIST simulation (activelearn.simulate, default SimulationConfig: the settings
in benchmarks/README.md) for each strategy, writes <strategy>.json and curves.png under --out,
and prints the labels-to-reach table, the wall times, and the best strategy's label ratio to
random at 90%. Run from the repo root, one heavy job at a time:
    flock /tmp/cpu.lock .venv/bin/python -m benchmarks.bench_simulate --fmnist-dir ../shared/fashion-mnist
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from activelearn.fmnist import load_fashion_mnist
from activelearn.query import STRATEGIES
from activelearn.simulate import (
    SimulationConfig,
    SimulationResult,
    fmnist_pool,
    format_progress,
    labels_to_reach,
    plot_curves,
    reach_table,
    simulate_strategies,
    write_outputs,
)

#: The label ratio the best strategy must achieve against random at 90% accuracy.
TARGET_RATIO = 0.5
RATIO_ACCURACY = 0.90


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fmnist-dir", type=Path, default=Path("../shared/fashion-mnist"))
    parser.add_argument("--strategies", nargs="+", choices=list(STRATEGIES),
                        default=["random", "margin", "diverse"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/simulate"))
    parser.add_argument("--pool-size", type=int, help="random subset of the pool (smoke runs)")
    parser.add_argument("--test-size", type=int, help="random subset of the test set (smoke runs)")
    parser.add_argument("--summarize", action="store_true",
                        help="train nothing: combine the <strategy>.json files already in --out into the "
                             "table and curves.png (for runs made one strategy per process)")
    args = parser.parse_args()
    if args.summarize:
        results = [SimulationResult.from_json(json.loads(p.read_text())) for p in sorted(args.out.glob("*.json"))]
        results.sort(key=lambda r: (r.strategy != "random", r.strategy))
        print(reach_table(results))
        print("wrote", plot_curves(results, args.out / "curves.png"))
        return

    config = SimulationConfig()
    schedule = config.schedule()
    print(f"settings: {config}")
    print(f"labels per round: {schedule}")
    print(f"epochs per round: {[config.epochs_for(n) for n in schedule]}")
    data = load_fashion_mnist(args.fmnist_dir, download=False, progress=False)
    pool, pool_labels, test_images, test_labels = fmnist_pool(
        data, pool_size=args.pool_size, test_size=args.test_size, seed=config.seed)
    print(f"pool {len(pool):,} images, test {len(test_images):,} images", flush=True)

    def progress(strategy: str, round_index: int, rounds: int, point: dict[str, float]) -> None:
        print(format_progress(strategy, round_index, rounds, point), file=sys.stderr, flush=True)

    started = time.monotonic()
    results = simulate_strategies(pool, pool_labels, test_images, test_labels, args.strategies,
                                  config, progress=progress)
    written = write_outputs(results, args.out)
    print()
    print(reach_table(results))
    print(f"\ntotal wall time {time.monotonic() - started:.0f} s; wrote "
          + ", ".join(str(p) for p in written))

    by_name = {r.strategy: r for r in results}
    if "random" in by_name and len(by_name) > 1:
        random_run = by_name.pop("random")
        baseline = labels_to_reach(random_run.curve, RATIO_ACCURACY)
        reached = {name: labels_to_reach(r.curve, RATIO_ACCURACY) for name, r in by_name.items()}
        reached = {name: n for name, n in reached.items() if n is not None}
        if baseline is None or not reached:
            print(f"\nratio at {RATIO_ACCURACY:.0%}: not measurable (random or every strategy "
                  "never reached it)")
            return
        best = min(reached, key=reached.get)
        ratio = reached[best] / baseline
        pair_s = random_run.wall_time_s + by_name[best].wall_time_s
        print(f"\nbest at {RATIO_ACCURACY:.0%}: {best}, {reached[best]:,.0f} labels vs random "
              f"{baseline:,.0f} = {ratio:.2f}x (target <= {TARGET_RATIO}x: "
              f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}); random + {best} took "
              f"{pair_s / 60:.1f} min")


if __name__ == "__main__":
    main()
