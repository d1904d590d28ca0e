"""Pool embedding and CNN pool scoring: local process vs Ray Data on this machine, plus the store's write ceiling.

Times, on the same data:
  * backbone embedding of N real photos (MobileNet 0.25 at 224 px): local (decode threads + TF on all
    cores) vs Ray (one actor per CPU, TF on one thread each), including the actors' start;
  * CNN scoring of M 28x28 items (production architecture): local vs Ray;
  * the driver's write ceiling: embeddings stored per second (it bounds what N machines can deliver).
Ray runs as a local instance started here (`--cpus`, no dashboard); its start-up is printed apart.
Each job's rate is printed twice: over the whole job, and between its first and last progress mark
(the actors' start, i.e. TensorFlow and the model loading in each, left out).

    python -m benchmarks.bench_ray --photos 1536 --items 100000
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from activelearn import distributed, scoring, store
from activelearn.config import RAY_ENV, resolve_paths
from activelearn.embeddings import BATCH
from benchmarks.bench_scoring import build_home

SHARED = REPO.parent / "shared"
BACKBONE = "mobilenet_v1_0.25"


def photo_home(tmp: Path, name: str, photos: int) -> Path:
    """A home with `photos` real phone photos imported (every k-th row of labels.csv)."""
    from activelearn.ingest import import_paths
    with open(SHARED / "clothing-photos" / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    folder = tmp / f"photos-{name}"
    folder.mkdir()
    for row in rows[::max(1, len(rows) // photos)][:photos]:
        shutil.copy(SHARED / "clothing-photos" / row["file"], folder)
    paths = resolve_paths(tmp / name, tmp / "no-fmnist")
    import_paths([str(folder)], paths=paths, holdout_fraction=0.0)
    return paths.home


def rate_between(marks: list[tuple[float, int]]) -> float:
    """Rows per second between the first and the last progress mark (the job's start left out)."""
    (t0, n0), (t1, n1) = marks[0], marks[-1]
    return (n1 - n0) / (t1 - t0) if t1 > t0 else float("nan")


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=512)
    parser.add_argument("--items", type=int, default=40_000)
    parser.add_argument("--cpus", type=int, default=os.cpu_count())
    parser.add_argument("--fmnist-dir", type=Path, default=SHARED / "fashion-mnist")
    args = parser.parse_args()
    from activelearn.embeddings import embed_items

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp_name:
        tmp = Path(tmp_name)
        keras_home = tmp / "keras"
        (keras_home / "models").mkdir(parents=True)
        shutil.copy(SHARED / "keras-weights" / "mobilenet_2_5_224_tf_no_top.h5", keras_home / "models")
        os.environ["KERAS_HOME"] = str(keras_home)

        local_home = photo_home(tmp, "local", args.photos)
        shutil.copytree(local_home, tmp / "ray")
        cnn = build_home(tmp / "cnn", args.fmnist_dir, args.items)

        def embed(home: Path) -> tuple[float, float]:
            """(whole job s, photos/s between the first and the last stored chunk)."""
            marks: list[tuple[float, int]] = []
            whole, _ = timed(lambda: embed_items(resolve_paths(home, tmp / "no-fmnist"), progress=lambda u: (
                marks.append((time.perf_counter(), u["batch"] * BATCH)) if u.get("phase") == "embed" else None)))
            return whole, rate_between(marks)

        def score(paths) -> tuple[float, float]:
            scoring._memo.clear()
            scoring.cache_path(paths, "v1").unlink(missing_ok=True)
            scoring.get_model(paths, "v1")   # the app keeps the model loaded; time the scoring only
            marks: list[tuple[float, int]] = []
            whole, _ = timed(lambda: scoring.score_items(
                paths, progress=lambda done, total: marks.append((time.perf_counter(), done))))
            return whole, rate_between(marks)

        local_embed_s, local_embed_rate = embed(local_home)
        local_score_s, local_score_rate = score(cnn)
        start_s, _ = timed(lambda: distributed.connect("auto", num_cpus=args.cpus))
        os.environ[RAY_ENV] = "auto"
        ray_embed_s, ray_embed_rate = embed(tmp / "ray")
        ray_score_s, ray_score_rate = score(cnn)

        db = store.open_db(tmp / "ceiling.db")
        vectors = np.random.default_rng(0).normal(size=(20_000, 256)).astype(np.float32)
        with store.transaction(db):
            for i in range(len(vectors)):
                store.insert_item(db, sha256=f"{i:064x}", source="upload", original_name=f"{i}.png",
                                  split="pool", pixels=np.zeros((28, 28), np.uint8))
        write_s, _ = timed(lambda: [store.put_embeddings(db, BACKBONE, list(range(i + 1, i + 257)), vectors[i:i + 256])
                                    for i in range(0, len(vectors) - 255, 256)])
        written = (len(vectors) // 256) * 256

    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, Ray local instance with {args.cpus} CPUs "
          f"(started in {start_s:.1f} s); load average {load:.2f} at the end")
    rows = [(f"embed {args.photos} photos, whole job (/s)", args.photos / local_embed_s, args.photos / ray_embed_s),
            ("  first to last stored chunk (/s)", local_embed_rate, ray_embed_rate),
            (f"score {args.items} items, whole job (/s)", args.items / local_score_s, args.items / ray_score_s),
            ("  first to last scored chunk (/s)", local_score_rate, ray_score_rate)]
    print(f"{'work':<40}{'local':>10}{'Ray':>10}{'Ray/local':>11}")
    for name, local, on_ray in rows:
        print(f"{name:<40}{local:>10.1f}{on_ray:>10.1f}{on_ray / local:>11.2f}")
    print(f"fixed cost of a Ray job (actors start, TensorFlow loads the model): embedding "
          f"{ray_embed_s - args.photos / ray_embed_rate:.1f} s, scoring {ray_score_s - args.items / ray_score_rate:.1f} s")
    ceiling = written / write_s
    print(f"store write ceiling: {ceiling:,.0f} embeddings/s ({BACKBONE}, float16, 256 per transaction)")
    per_cpu = ray_embed_rate / args.cpus
    print(f"paper estimate, embedding on N machines of c cores: {per_cpu:.1f} photos/s per CPU (Ray, actors "
          "started) x N x c, capped by the write ceiling, plus one actor start per job")
    for machines, cores in ((1, 8), (4, 8), (16, 8), (64, 8)):
        print(f"  {machines:>3} x {cores} cores: {min(per_cpu * machines * cores, ceiling):>9,.0f} photos/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
