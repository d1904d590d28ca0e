"""Time select_batch per strategy on a pool the size of a real scrape: is querying interactive?

Prints a table of milliseconds (median of --repeats runs) for 100,000 random rows, 10 classes
and 128-d embeddings, ~10% of rows ineligible. Run from the repo root:
    .venv/bin/python -m benchmarks.bench_query [--n 20 1000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from activelearn.query import STRATEGIES, select_batch


def random_pool(rows: int, classes: int, dims: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Softmax outputs of random logits (float32, like a Keras model) and random embeddings."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(rows, classes)).astype(np.float32)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    probas = exp / exp.sum(axis=1, keepdims=True)
    embeddings = rng.normal(size=(rows, dims)).astype(np.float32)
    return probas, embeddings


def median_ms(run: Callable[[], object], repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--dims", type=int, default=128)
    parser.add_argument("--n", type=int, nargs="+", default=[20])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    probas, embeddings = random_pool(args.rows, args.classes, args.dims, seed=0)
    eligible = np.random.default_rng(1).random(args.rows) > 0.1  # ~10% held out or labeled
    print(
        f"select_batch over {args.rows:,} rows x {args.classes} classes, "
        f"{args.dims}-d embeddings, audit 10%, median of {args.repeats} (ms)"
    )
    header = f"{'strategy':<18}" + "".join(f"{'n=' + str(n):>10}" for n in args.n)
    print(header)
    print("-" * len(header))
    for name in STRATEGIES:
        cells = []
        for n in args.n:
            ms = median_ms(
                lambda: select_batch(probas, n, name, embeddings=embeddings, eligible=eligible),
                args.repeats,
            )
            cells.append(f"{ms:>10.1f}")
        print(f"{name:<18}" + "".join(cells))


if __name__ == "__main__":
    main()
