"""Time `export_dataset` in every format on a 10,000-item labeled set: fast, and memory-bounded?

Builds a home (under $TMPDIR, removed afterwards) with --n labeled items inserted directly:
real Fashion-MNIST test images as the 28x28 pixels and, as originals, 16 product-photo JPEGs
(240x320) reused with a unique byte suffix each (JPEG decoders ignore bytes after the
end-of-image marker), so every item has its own file and SHA-256. 10% of the items are
holdout, labels come from three annotators with a model prediction, and one item in
twenty is a near-duplicate of an earlier one. Each format is exported in a fresh process,
so its peak RSS (VmHWM) is the export's own; the table also shows the RSS of that process
after its imports, before exporting.

Run from the repo root: .venv/bin/python -m benchmarks.bench_export [--n 10000]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.memory import memory_kb

REPO = Path(__file__).resolve().parents[1]
#: (format, output name): the folder formats once as a folder and once as a zip.
RUNS = (("imagefolder", "imagefolder"), ("imagefolder", "imagefolder.zip"), ("fmnist", "fmnist"),
        ("fmnist", "fmnist.zip"), ("csv", "manifest.csv"), ("jsonl", "manifest.jsonl"),
        ("parquet", "dataset.parquet"))
ANNOTATORS = ("alice", "bob", "import")


def base_photos(fmnist_images: np.ndarray, count: int = 16) -> list[bytes]:
    from activelearn.synthetic import make_product_photo

    photos = []
    for i in range(count):
        buffer = io.BytesIO()
        make_product_photo(fmnist_images[i], size=(240, 320), rng=np.random.default_rng(i)).save(
            buffer, "JPEG", quality=85)
        photos.append(buffer.getvalue())
    return photos


def build_home(home: Path, fmnist_dir: Path, n: int) -> None:
    from activelearn import store
    from activelearn.config import resolve_paths
    from activelearn.fmnist import load_fashion_mnist

    data = load_fashion_mnist(fmnist_dir, download=False, progress=False)
    photos = base_photos(data.x_test)
    paths = resolve_paths(home)
    db = store.open_db(paths.db)
    rng = np.random.default_rng(0)
    ids: list[int] = []
    with store.transaction(db):
        for i in range(n):
            original = photos[i % len(photos)] + i.to_bytes(8, "big")
            sha = hashlib.sha256(original).hexdigest()
            target = paths.images / sha[:2] / f"{sha}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(original)
            item = store.insert_item(
                db, sha256=sha, source="folder", original_name=f"photos/p{i:05d}.jpg",
                stored_path=target.relative_to(paths.home).as_posix(), width=240, height=320,
                format="JPEG", split="holdout" if i % 10 == 0 else "pool",
                pixels=data.x_test[i % len(data.x_test)],
                near_dup_of=ids[i - 7] if i % 20 == 19 else None)
            ids.append(item)
            label = int(data.y_test[i % len(data.y_test)])
            predicted = label if rng.random() < 0.85 else int(rng.integers(0, 10))
            store.record_label(db, item, "confirm" if predicted == label else "correct", class_id=label,
                               annotator=ANNOTATORS[i % 3], model_version="v1",
                               predicted_class_id=predicted, confidence=float(rng.uniform(0.3, 1.0)))


def measure(home: Path, fmt: str, out: Path) -> dict:
    """Runs in a fresh process: one export, its wall time and memory."""
    from activelearn.config import resolve_paths
    from activelearn.export import export_dataset

    rss_before = memory_kb("VmRSS")
    start = time.perf_counter()
    result = export_dataset(resolve_paths(home), fmt, out)
    return {"seconds": time.perf_counter() - start, "items": result.total,
            "rss_before_kb": rss_before, "peak_rss_kb": memory_kb("VmHWM")}


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="labeled items (default 10000)")
    parser.add_argument("--fmnist-dir", type=Path, default=REPO.parent / "shared" / "fashion-mnist")
    parser.add_argument("--measure", nargs=3, metavar=("HOME", "FORMAT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        home, fmt, out = args.measure
        print(json.dumps(measure(Path(home), fmt, Path(out))))
        return

    work = Path(tempfile.mkdtemp(prefix="activelearn-bench-export-"))
    try:
        start = time.perf_counter()
        build_home(work / "home", args.fmnist_dir, args.n)
        originals = size_of(work / "home" / "data" / "images")
        print(f"built a home with {args.n} labeled items ({originals / 2**20:.0f} MB of JPEG originals) "
              f"in {time.perf_counter() - start:.0f} s; {os.cpu_count()} cores, "
              f"1-min load average {os.getloadavg()[0]:.1f}")
        print(f"{'format':<12} {'output':<17} {'seconds':>8} {'items/s':>8} {'RSS after imports':>18} "
              f"{'peak RSS':>9} {'output size':>12}")
        for fmt, name in RUNS:
            out = work / "exports" / name
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_export", "--measure", str(work / "home"), fmt, str(out)],
                cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                check=True)
            result = json.loads(child.stdout)
            print(f"{fmt:<12} {name:<17} {result['seconds']:>8.1f} {result['items'] / result['seconds']:>8.0f} "
                  f"{result['rss_before_kb'] / 1024:>15.0f} MB {result['peak_rss_kb'] / 1024:>6.0f} MB "
                  f"{size_of(out) / 2**20:>9.1f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
