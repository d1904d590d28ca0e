"""Scoring throughput and query latency on a realistic pool.

Builds a home with N items (Fashion-MNIST test images, repeated with a
pixel tweak so every item is distinct) and a model of the production
architecture, then times:
  * scoring all N items from scratch (items/s; target >= 10,000 on 2 cores),
  * a re-query after one label (cache hit: no inference),
  * `labeling.next_items` over the scored pool for each strategy (target < 1 s at 100,000).

    python benchmarks/bench_scoring.py --n 100000 --fmnist-dir ../shared/fashion-mnist
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from activelearn import labeling, registry, scoring, store  # noqa: E402
from activelearn.config import resolve_paths  # noqa: E402
from activelearn.fmnist import load_fashion_mnist  # noqa: E402
from activelearn.query import STRATEGIES  # noqa: E402


def build_home(home: Path, fmnist_dir: Path, n: int):
    paths = resolve_paths(home, fmnist_dir)
    data = load_fashion_mnist(fmnist_dir, download=False, progress=False)
    db = store.open_db(paths.db)
    rows = []
    for i in range(n):
        pixels = data.x_test[i % len(data.x_test)].copy()
        pixels[0, 0] = i % 251                 # distinct content per item
        rows.append((f"{i:064x}", "upload", f"{i}.png", "pool", pixels.tobytes(), store.now()))
    with store.transaction(db):
        db.conn.executemany("INSERT INTO items (sha256, source, original_name, split, pixels, created_at) "
                            "VALUES (?, ?, ?, ?, ?, ?)", rows)
    from activelearn.model import build_model
    registry.register(paths.models, build_model(10), {"metrics": {}}, activate_now=True)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--fmnist-dir", type=Path, default=REPO.parent / "shared" / "fashion-mnist")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        paths = build_home(Path(tmp), args.fmnist_dir, args.n)
        scoring.get_model(paths, "v1")                                  # load once, like the app
        started = time.perf_counter()
        scores = scoring.score_items(paths)
        elapsed = time.perf_counter() - started
        print(f"scoring: {len(scores.item_ids)} items in {elapsed:.1f} s = "
              f"{len(scores.item_ids) / elapsed:,.0f} items/s (probabilities + embeddings, "
              f"incl. reading pixels from SQLite and writing the cache)")

        db = store.open_db(paths.db)
        store.record_label(db, int(scores.item_ids[0]), "confirm", class_id=0, annotator="bench")
        started = time.perf_counter()
        scoring.score_items(paths)
        print(f"re-score after one label (cache hit): {1000 * (time.perf_counter() - started):.0f} ms")
        scoring._memo.clear()
        started = time.perf_counter()
        scoring.score_items(paths)
        print(f"re-score in a new process (cache file): {1000 * (time.perf_counter() - started):.0f} ms")

        print(f"query over {args.n:,} scored items, n=20, median of 5 (ms):")
        for name in STRATEGIES:
            times = []
            for seed in range(5):
                started = time.perf_counter()
                labeling.next_items(paths, annotator="bench", n=20, strategy=name, seed=seed,
                                    take_lease=False)
                times.append(1000 * (time.perf_counter() - started))
            print(f"  {name:<17}{statistics.median(times):7.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
