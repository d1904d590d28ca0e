"""Seed model benchmark: `train-seed` then `evaluate --json` on a fresh home, as a user runs them.

One run per (seed, precision): `ACTIVELEARN_PRECISION` selects the mixed-bfloat16 or the
float32 path. Prints a table of test accuracy, wall and CPU time and peak memory per run,
then the worst case of each precision against the target (>= 0.935 in <= 600 s on 2 cores).
Usage (from the repo root; each run is a separate process, so runs do not share state):

    python benchmarks/bench_seed.py --fmnist-dir ../shared/fashion-mnist \\
        --seeds 0 1 2 --precisions mixed_bfloat16 float32 [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_ACCURACY, TARGET_WALL_S = 0.935, 600


def run_once(fmnist_dir: Path, seed: int, precision: str, epochs: int | None) -> dict:
    env = {**os.environ, "ACTIVELEARN_PRECISION": precision}
    with tempfile.TemporaryDirectory(prefix="bench-seed-") as home:
        base = [sys.executable, "-m", "activelearn", "--home", home, "--fmnist-dir", str(fmnist_dir)]
        extra = ["--epochs", str(epochs)] if epochs else []
        started = time.monotonic()
        subprocess.run([*base, "train-seed", "--seed", str(seed), *extra], cwd=REPO, env=env, check=True)
        wall = time.monotonic() - started
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        out = subprocess.run([*base, "evaluate", "--json"], cwd=REPO, env=env, check=True,
                             capture_output=True, text=True).stdout
        report = json.loads(out)
        card = json.loads((Path(home) / "models" / report["version"] / "card.json").read_text())
    epoch_times = sorted(h["time_s"] for h in card["history"])
    return {"seed": seed, "precision": card["precision_policy"], "accuracy": report["fmnist_test"]["accuracy"],
            "wall_s": wall, "cpu_s": card["cpu_time_s"], "epochs_run": card["epochs_run"],
            "epochs": card["hyperparameters"]["epochs"], "epoch_s": epoch_times[len(epoch_times) // 2],
            "peak_rss_mib": peak_mib, "load_1m": os.getloadavg()[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fmnist-dir", type=Path, default=REPO.parent / "shared" / "fashion-mnist")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs (default: the recipe's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--precisions", nargs="+", default=["mixed_bfloat16", "float32"])
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    print("| seed | precision | test accuracy | wall | CPU-s | epochs run | median epoch | peak RSS | load (1 min) |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
    rows = []
    for precision in args.precisions:
        for seed in args.seeds:
            r = run_once(args.fmnist_dir.resolve(), seed, precision, args.epochs)
            rows.append(r)
            print(f"| {r['seed']} | {r['precision']} | {r['accuracy']:.4f} | {r['wall_s']:.0f} s | {r['cpu_s']:.0f} | "
                  f"{r['epochs_run']}/{r['epochs']} | {r['epoch_s']:.1f} s | {r['peak_rss_mib']:.0f} MiB | "
                  f"{r['load_1m']:.1f} |", flush=True)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=2))
    for precision in args.precisions:
        mine = [r for r in rows if r["precision"] == precision]
        if not mine:
            continue
        worst_acc, worst_wall = min(r["accuracy"] for r in mine), max(r["wall_s"] for r in mine)
        verdict = "met" if worst_acc >= TARGET_ACCURACY and worst_wall <= TARGET_WALL_S else "NOT met"
        print(f"{precision}: accuracy min {worst_acc:.4f} mean {sum(r['accuracy'] for r in mine) / len(mine):.4f}, "
              f"wall max {worst_wall:.0f} s over {len(mine)} seed(s): target >= {TARGET_ACCURACY} in "
              f"<= {TARGET_WALL_S} s {verdict}")
    print("command per run: ACTIVELEARN_PRECISION=<p> python -m activelearn train-seed --seed <s>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
