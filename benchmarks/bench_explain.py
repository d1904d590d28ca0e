"""Grad-CAM latency: the first explanation (builds and traces the gradient graph) and the next ones.

    python benchmarks/bench_explain.py --photos ../shared/clothing-photos [--seed-home HOME] [--n 20]

Imports 60 real photos of the five mapped labels into a fresh home, embeds
them, labels them and trains a photo model (the production path), then times
`explain.explain_item` on n items: what the Label tab's Grad-CAM toggle waits
for. With --seed-home, the same for that home's seed CNN on the 28x28 images.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timings(paths, item_ids, version=None) -> dict:
    from activelearn.explain import explain_item
    started = time.perf_counter()
    explain_item(paths, item_ids[0], version=version)
    first = time.perf_counter() - started
    rest = []
    for item in item_ids[1:]:
        started = time.perf_counter()
        explain_item(paths, item, version=version)
        rest.append(time.perf_counter() - started)
    return {"first_ms": round(first * 1000), "median_ms": round(statistics.median(rest) * 1000),
            "max_ms": round(max(rest) * 1000), "n": len(rest)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=Path("../shared/clothing-photos"))
    parser.add_argument("--seed-home", type=Path)
    parser.add_argument("--n", type=int, default=20)
    args = parser.parse_args(argv)
    from activelearn import store
    from activelearn.config import resolve_paths
    from activelearn.embeddings import embed_items
    from activelearn.ingest import import_paths
    from activelearn.retrain import retrain_and_register
    with open(args.photos / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["fashion_mnist_class"]][::30][:60]   # every label
    with tempfile.TemporaryDirectory() as tmp:
        paths = resolve_paths(Path(tmp) / "home", Path(tmp) / "unused")
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for r in rows:
            shutil.copy(args.photos / r["file"], folder / Path(r["file"]).name)
        import_paths([str(folder)], paths=paths, holdout_fraction=0.0)
        embed_items(paths)
        db = store.open_db(paths.db)
        label = {Path(r["file"]).name: r["fashion_mnist_class"] for r in rows}
        names = store.class_names(db)
        items = db.execute("SELECT id, original_name FROM items ORDER BY id").fetchall()
        for item, name in items:
            store.record_label(db, item, "correct", class_id=names.index(label[Path(name).name]), annotator="b")
        retrain_and_register(paths, {"mode": "photo"})
        ids = [i for i, _ in items[: args.n + 1]]
        print("photo model:", timings(paths, ids), flush=True)
        if args.seed_home:
            seed = resolve_paths(args.seed_home)
            shutil.copytree(seed.models / "v1", paths.models / "v9")
            print("seed CNN:", timings(paths, ids, version="v9"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
