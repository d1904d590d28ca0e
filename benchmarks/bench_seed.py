"""Seed model benchmark: `train-seed` then `evaluate --json` on a fresh home, as a user runs them.

Prints test accuracy, wall time and peak memory per run, and the spread
between runs with the same seed. Usage (from the repo root):

    python benchmarks/bench_seed.py --fmnist-dir ../shared/fashion-mnist [--runs 2] [--epochs 20]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_once(fmnist_dir: Path, epochs: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-seed-") as home:
        base = [sys.executable, "-m", "activelearn", "--home", home, "--fmnist-dir", str(fmnist_dir)]
        started = time.monotonic()
        subprocess.run([*base, "train-seed", "--epochs", str(epochs), "--seed", str(seed)],
                       cwd=REPO, check=True)
        wall = time.monotonic() - started
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        out = subprocess.run([*base, "evaluate", "--json"], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout
        report = json.loads(out)
        card = json.loads((Path(home) / "models" / report["version"] / "card.json").read_text())
    return {"accuracy": report["fmnist_test"]["accuracy"], "wall_s": wall, "peak_rss_mib": peak_mib,
            "epochs_run": card["epochs_run"], "train_wall_s": card["wall_time_s"],
            "cpu_s": card["cpu_time_s"], "policy": card["precision_policy"],
            "epoch_s": sorted(h["time_s"] for h in card["history"])[len(card["history"]) // 2]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fmnist-dir", type=Path, default=REPO.parent / "shared" / "fashion-mnist")
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    results = []
    for i in range(args.runs):
        r = run_once(args.fmnist_dir.resolve(), args.epochs, args.seed)
        results.append(r)
        print(f"run {i + 1}: test accuracy {r['accuracy']:.4f}  wall {r['wall_s']:.0f} s "
              f"(training+eval inside: {r['train_wall_s']:.0f} s, {r['epochs_run']} epochs, "
              f"{r['cpu_s']:.0f} CPU-s, median epoch {r['epoch_s']:.1f} s, {r['policy']})  "
              f"peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
    accs = [r["accuracy"] for r in results]
    print(f"command: python -m activelearn train-seed --epochs {args.epochs} --seed {args.seed}")
    print(f"accuracy mean {sum(accs) / len(accs):.4f}  spread {100 * (max(accs) - min(accs)):.2f} points "
          f"over {len(accs)} run(s); target >= 0.935 in <= 600 s on 2 cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
