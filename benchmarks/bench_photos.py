"""Real photos: seed CNN vs photo model, Fashion-MNIST in the head, and simulated active learning.

    python benchmarks/bench_photos.py --photos ../shared/clothing-photos \
        --fmnist-dir ../shared/fashion-mnist [--seed-home HOME] [--folds 5]

On ../shared/clothing-photos (3,068 CC0 phone photos, 10 labels), with folds
grouped by photographer (sender_id) so no background is in both train and test:

1. Embeds every photo once with the backbone (photos/s, decode included).
2. Photo model (activelearn.photo, the production head) at 100 / 400 / all
   random human labels: accuracy on the five labels that map to Fashion-MNIST
   classes and on all 10 (five of them new classes), for the linear head and
   the one-hidden-layer head; wall and CPU seconds per training; the head's
   training time at 5,000 labels.
3. Fashion-MNIST in the head: a head on Fashion-MNIST embeddings alone, and
   mixed in at equal and at shrinking weight, at 100 and 400 labels.
4. Seed CNN (with --seed-home, a home whose active version is the seed CNN):
   its accuracy on the 28x28 conversions at 0 labels, and after the production
   fine-tune (`retrain --mode finetune`) on 100 and 400 labels of fold 0.
5. Simulated active learning with the photo model, 20 -> 800 labels:
   random vs margin vs diverse, mean over folds; labels to reach 80% / 82%.

Prints Markdown tables and writes benchmarks/out/photos.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activelearn import FMNIST_CLASSES  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
#: The photo labels that map to a Fashion-MNIST class (labels.csv's fashion_mnist_class).
MAPPED = ("t-shirt", "pants", "dress", "outwear", "shirt")
SIMULATION_STEPS = (20, 40, 60, 80, 100, 140, 180, 240, 300, 400, 500, 600, 800)


def load_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "labels.csv", newline="") as f:
        return list(csv.DictReader(f))


def embed_photos(folder: Path, rows: list[dict[str, str]], backbone: str,
                 reembed: bool) -> tuple[np.ndarray, dict]:
    """(n, d) embeddings of every photo and the throughput, cached in benchmarks/out (unless reembed)."""
    from tqdm import tqdm

    from activelearn import backbones
    from activelearn.embeddings import embedding_fn, photo_array
    cache = OUT / f"photo-embeddings-{backbone}.npz"
    if cache.exists() and not reembed:
        with np.load(cache) as f:
            return f["embeddings"], json.loads(str(f["info"]))
    spec = backbones.get_spec(backbone)
    started, cpu = time.perf_counter(), time.process_time()
    embed = embedding_fn(backbone)
    built = time.perf_counter() - started
    vectors = []
    t0 = time.perf_counter()
    for start in tqdm(range(0, len(rows), 32), desc=f"embed {backbone}", unit="batch", file=sys.stderr):
        batch = rows[start:start + 32]
        vectors.append(embed(np.stack([photo_array(folder / r["file"], spec.input_size) for r in batch])))
    seconds = time.perf_counter() - t0
    result = np.concatenate(vectors)
    info = {"photos": len(rows), "seconds": round(seconds, 1), "photos_per_s": round(len(rows) / seconds, 1),
            "model_build_s": round(built, 1), "cpu_s": round(time.process_time() - cpu, 1)}
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(cache, embeddings=result, info=json.dumps(info))
    return result, info


def accuracy(head, x: np.ndarray, y: np.ndarray) -> float:
    from activelearn.photo import predict_head
    return float((predict_head(head, x).argmax(1) == y).mean())


def train(x, y, classes: int, hidden: int = 0, seed: int = 0, weights=None):
    """The production head; returns (head, wall s, cpu s)."""
    from activelearn.photo import HeadConfig, train_head
    started, cpu = time.perf_counter(), time.process_time()
    head, _ = train_head(x, y, classes, HeadConfig(hidden=hidden, seed=seed), sample_weight=weights)
    return head, time.perf_counter() - started, time.process_time() - cpu


def folds(groups: np.ndarray, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import GroupKFold
    return list(GroupKFold(n_splits=n).split(np.zeros(len(groups)), groups=groups))


def label_curve(x, y, classes, splits, sizes, hidden: int) -> dict:
    """Mean/std test accuracy over folds at each number of random labels, and seconds per training."""
    accs, walls, cpus = {s: [] for s in sizes}, [], []
    for fold, (train_idx, test_idx) in enumerate(splits):
        rng = np.random.default_rng(fold)
        order = rng.permutation(train_idx)
        for size in sizes:
            chosen = order[: min(size, len(order))]
            head, wall, cpu = train(x[chosen], y[chosen], classes, hidden, seed=fold)
            accs[size].append(accuracy(head, x[test_idx], y[test_idx]))
            walls.append(wall)
            cpus.append(cpu)
    return {"accuracy": {str(s) if s < len(x) else "all": [round(float(np.mean(v)), 4), round(float(np.std(v)), 4)]
                         for s, v in accs.items()},
            "wall_s": round(float(np.mean(walls)), 2), "cpu_s": round(float(np.mean(cpus)), 2)}


def simulate(x, y, classes, splits, strategy: str) -> dict:
    """Active learning from 20 random labels to 800, one strategy; mean curve over folds."""
    from activelearn.photo import predict_head
    from activelearn.query import select_batch
    curves, seconds = [], []
    for fold, (train_idx, test_idx) in enumerate(splits):
        rng = np.random.default_rng(fold)
        labeled = list(rng.choice(train_idx, SIMULATION_STEPS[0], replace=False))
        curve = []
        for step, size in enumerate(SIMULATION_STEPS):
            head, wall, cpu = train(x[labeled], y[labeled], classes, seed=fold)
            seconds.append((wall, cpu))
            curve.append(accuracy(head, x[test_idx], y[test_idx]))
            if step + 1 == len(SIMULATION_STEPS):
                break
            pool = np.setdiff1d(train_idx, labeled)
            probs = predict_head(head, x[pool])
            picked = select_batch(probs, SIMULATION_STEPS[step + 1] - size, strategy, embeddings=x[pool],
                                  audit_fraction=0.0, seed=fold * 100 + step)
            labeled += [int(pool[item.index]) for item in picked]
        curves.append(curve)
    mean = np.mean(curves, axis=0)
    return {"labels": list(SIMULATION_STEPS), "accuracy": [round(float(a), 4) for a in mean],
            "std": [round(float(s), 4) for s in np.std(curves, axis=0)],
            "to_80": labels_to_reach(mean, 0.80), "to_82": labels_to_reach(mean, 0.82),
            "wall_s_per_round": round(float(np.mean([w for w, _ in seconds])), 2),
            "cpu_s_per_round": round(float(np.mean([c for _, c in seconds])), 2)}


def labels_to_reach(curve: np.ndarray, target: float) -> float | None:
    """Labels at which the mean curve first reaches target, interpolated between steps."""
    for i, value in enumerate(curve):
        if value >= target:
            if i == 0:
                return float(SIMULATION_STEPS[0])
            a, b = curve[i - 1], value
            s0, s1 = SIMULATION_STEPS[i - 1], SIMULATION_STEPS[i]
            return round(s0 + (target - a) / (b - a) * (s1 - s0), 1)
    return None


def fmnist_embeddings(fmnist_dir: Path, backbone: str, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Backbone embeddings of Fashion-MNIST training images (un-negated, upscaled like the product does)."""
    from activelearn import backbones
    from activelearn.embeddings import embedding_fn, pixels_array
    from activelearn.fmnist import load_fashion_mnist
    data = load_fashion_mnist(fmnist_dir, download=False, progress=False)
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.choice(np.flatnonzero(data.y_train == c), per_class, replace=False) for c in range(10)])
    size = backbones.get_spec(backbone).input_size
    embed = embedding_fn(backbone)
    vectors = [embed(np.stack([pixels_array(p, size) for p in data.x_train[idx[i:i + 64]]]))
               for i in range(0, len(idx), 64)]
    return np.concatenate(vectors), data.y_train[idx].astype(np.int64)


def fmnist_mixing(x5, y5, fm_x, fm_y, splits, sizes) -> dict:
    """Accuracy on the five mapped classes: human labels alone vs Fashion-MNIST mixed in."""
    results = {"fmnist_only": [], **{f"{mode}@{s}": [] for s in sizes for mode in ("human", "equal", "shrinking")}}
    classes = len(FMNIST_CLASSES)
    for fold, (train_idx, test_idx) in enumerate(splits):
        head, _, _ = train(fm_x, fm_y, classes, seed=fold)
        results["fmnist_only"].append(accuracy(head, x5[test_idx], y5[test_idx]))
        order = np.random.default_rng(fold).permutation(train_idx)
        for size in sizes:
            chosen = order[:size]
            for mode in ("human", "equal", "shrinking"):
                if mode == "human":
                    head, _, _ = train(x5[chosen], y5[chosen], classes, seed=fold)
                else:
                    w = 1.0 if mode == "equal" else 100.0 / (100.0 + size)
                    weights = np.concatenate([np.ones(size, np.float32), np.full(len(fm_y), w, np.float32)])
                    head, _, _ = train(np.concatenate([x5[chosen], fm_x]), np.concatenate([y5[chosen], fm_y]),
                                       classes, seed=fold, weights=weights)
                results[f"{mode}@{size}"].append(accuracy(head, x5[test_idx], y5[test_idx]))
    return {k: [round(float(np.mean(v)), 4), round(float(np.std(v)), 4)] for k, v in results.items()}


def head_time_at(x: np.ndarray, y: np.ndarray, n: int, classes: int) -> dict:
    """Wall/CPU seconds of one head training on n labels: real photos' embeddings and labels, resampled
    with a little noise (the folder has 3,068)."""
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(x), n)
    xs = x[idx] + rng.normal(0, 0.05, (n, x.shape[1])).astype(np.float32)
    _, wall, cpu = train(xs, y[idx], classes)
    return {"labels": n, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def seed_cnn(seed_home: Path, fmnist_dir: Path, folder: Path, rows, y5, mapped_idx, splits, sizes) -> dict:
    """The seed CNN on the 28x28 conversions (0 labels) and after the production fine-tune on fold 0."""
    from activelearn import holdout, registry, store
    from activelearn.config import resolve_paths
    from activelearn.convert import normalize_image, open_for_conversion, to_fmnist
    from activelearn.model import predict_with_embeddings
    seed_paths = resolve_paths(seed_home, fmnist_dir)
    version = registry.require_active(seed_paths.models)
    model = registry.load_model(seed_paths.models, version)
    pixels = []
    for r in (rows[i] for i in mapped_idx):
        with open_for_conversion(folder / r["file"]) as img:
            pixels.append(to_fmnist(normalize_image(img)).pixels)
    pixels = np.stack(pixels)
    probs, _ = predict_with_embeddings(model, pixels)
    zero = float((probs.argmax(1) == y5).mean())
    out = {"version": version, "0": zero, "per_fold_0": [round(float((probs[t].argmax(1) == y5[t]).mean()), 4)
                                                          for _, t in splits]}
    from activelearn.ingest import import_paths
    from activelearn.retrain import retrain_and_register
    train_idx, test_idx = splits[0]
    order = np.random.default_rng(0).permutation(train_idx)
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            paths = resolve_paths(Path(tmp) / "home", seed_paths.fmnist_dir)
            shutil.copytree(seed_paths.models / version, paths.models / "v1")
            registry.activate(paths.models, "v1")
            for part, chosen in (("train", order[:size]), ("test", test_idx)):
                target = Path(tmp) / part
                target.mkdir()
                for i in chosen:
                    shutil.copy(folder / rows[mapped_idx[i]]["file"], target / f"{i}.jpg")
                import_paths([str(target)], paths=paths, holdout_fraction=1.0 if part == "test" else 0.0)
            db = store.open_db(paths.db)
            truth = {f"{i}.jpg": int(y5[i]) for i in np.concatenate([order[:size], test_idx])}
            for item_id, name in db.execute("SELECT id, original_name FROM items").fetchall():
                store.record_label(db, item_id, "correct", class_id=truth[Path(name).name], annotator="bench")
            started, cpu = time.perf_counter(), time.process_time()
            outcome = retrain_and_register(paths, {"mode": "finetune", "force_activate": True})
            wall = time.perf_counter() - started
            both = [holdout.metrics(paths, outcome.version, s) for s in ("holdout", "holdout_selection")]
            correct = sum(m["accuracy"] * m["n"] for m in both)
            out[str(size)] = {"accuracy_fold0": round(correct / sum(m["n"] for m in both), 4),
                              "wall_s": round(wall, 1), "cpu_s": round(time.process_time() - cpu, 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=Path("../shared/clothing-photos"))
    parser.add_argument("--fmnist-dir", type=Path, default=Path("../shared/fashion-mnist"))
    parser.add_argument("--backbone", default="mobilenet_v1_0.25")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed-home", type=Path, help="home whose active version is the seed CNN")
    parser.add_argument("--skip-simulation", action="store_true")
    parser.add_argument("--reembed", action="store_true", help="ignore the cached photo embeddings")
    args = parser.parse_args(argv)
    if not (args.photos / "labels.csv").exists():
        print(f"no photos at {args.photos} (labels.csv missing)", file=sys.stderr)
        return 2
    rows = load_rows(args.photos)
    x, embed_info = embed_photos(args.photos, rows, args.backbone, args.reembed)
    labels10 = sorted({r["label"] for r in rows})
    y10 = np.array([labels10.index(r["label"]) for r in rows], np.int64)
    groups = np.array([int(r["sender_id"]) for r in rows])
    mapped_idx = np.array([i for i, r in enumerate(rows) if r["label"] in MAPPED])
    y5 = np.array([FMNIST_CLASSES.index(rows[i]["fashion_mnist_class"]) for i in mapped_idx], np.int64)
    x5, g5 = x[mapped_idx], groups[mapped_idx]
    splits5, splits10 = folds(g5, args.folds), folds(groups, args.folds)
    results: dict = {"backbone": args.backbone, "embedding": embed_info, "folds": args.folds,
                     "photos_mapped": int(len(mapped_idx)), "photos_all": len(rows)}
    print(f"embedding: {embed_info}", flush=True)

    sizes = (100, 400, 10**9)
    results["photo_model"] = {}
    for name, (xs, ys, classes, splits) in {"mapped5": (x5, y5, len(FMNIST_CLASSES), splits5),
                                            "all10": (x, y10, len(labels10), splits10)}.items():
        for hidden in (0, 256):
            key = f"{name}/hidden{hidden}"
            results["photo_model"][key] = label_curve(xs, ys, classes, splits, sizes, hidden)
            print(key, results["photo_model"][key], flush=True)
    results["head_time_5000"] = head_time_at(x, y10, 5000, len(labels10))
    print("head at 5,000 labels:", results["head_time_5000"], flush=True)

    fm_x, fm_y = fmnist_embeddings(args.fmnist_dir, args.backbone, per_class=200)
    results["fmnist_in_head"] = fmnist_mixing(x5, y5, fm_x, fm_y, splits5, (100, 400))
    print("fmnist in head:", results["fmnist_in_head"], flush=True)

    if args.seed_home:
        results["seed_cnn"] = seed_cnn(args.seed_home, args.fmnist_dir, args.photos, rows, y5, mapped_idx, splits5, (100, 400))
        print("seed cnn:", results["seed_cnn"], flush=True)

    if not args.skip_simulation:
        results["simulation"] = {}
        for name, (xs, ys, classes, splits) in {"mapped5": (x5, y5, len(FMNIST_CLASSES), splits5),
                                                "all10": (x, y10, len(labels10), splits10)}.items():
            for strategy in ("random", "margin", "diverse"):
                results["simulation"][f"{name}/{strategy}"] = simulate(xs, ys, classes, splits, strategy)
                print(f"simulation {name}/{strategy}:", results["simulation"][f"{name}/{strategy}"], flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "photos.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
