"""Time `import_paths` on product-like photos: is importing a scrape fast enough and memory-bounded?

Writes (once, cached under $TMPDIR/activelearn-benchmark) --n 400x533 JPEG product photos made
from real Fashion-MNIST training images, sorted into class folders; imports them with
--label-from-folders into a fresh home in a fresh process (so generation memory does not count),
and prints photos/s, CPU use, peak RSS and the share of these distinct photos flagged as
near-duplicates (all false). Then imports copies of 200 of them (recompressed at quality 60,
brightened 5%, downscaled to 75%, cropped by 2-4% a side) and prints the share of each kind
flagged as a near-duplicate of its original. Saves benchmarks/out/contact_sheet.png: per class,
original photos beside their 28x28 conversions beside the Fashion-MNIST images they came from
and another real image of that class.

Run from the repo root: .venv/bin/python -m benchmarks.bench_import [--n 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

from activelearn import FMNIST_CLASSES, store
from activelearn.config import resolve_paths
from activelearn.fmnist import load_fashion_mnist
from activelearn.synthetic import safe_folder_name, write_product_photos
from benchmarks.memory import memory_kb

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
CACHE = Path(tempfile.gettempdir()) / "activelearn-benchmark"
COPY_KINDS = ("recompressed-q60", "brightened-5pct", "downscaled-75pct", "cropped")


def ensure_photos(fmnist_dir: Path, n: int) -> Path:
    """The first n training images as product photos, written once per n."""
    folder = CACHE / f"photos-{n}"
    done_marker = folder / ".complete"
    if done_marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    data = load_fashion_mnist(fmnist_dir, download=False, progress=False)
    start = time.perf_counter()
    write_product_photos(folder, data.x_train[:n], data.y_train[:n], FMNIST_CLASSES, label_folders=True, seed=0)
    done_marker.touch()
    print(f"generated {n} photos in {time.perf_counter() - start:.0f} s under {folder}")
    return folder


def copy_variants(photo: Image.Image) -> dict[str, tuple[Image.Image, dict]]:
    """Kind (one of COPY_KINDS) -> (image, save options) for the ways a scraped photo reappears."""
    width, height = photo.size
    variants = (
        (photo, {"format": "JPEG", "quality": 60}),
        (ImageEnhance.Brightness(photo).enhance(1.05), {"format": "JPEG", "quality": 90}),
        (photo.resize((width * 3 // 4, height * 3 // 4), Image.Resampling.LANCZOS), {"format": "JPEG", "quality": 90}),
        (photo.crop((round(width * 0.03), round(height * 0.03), width - round(width * 0.02),
                     height - round(height * 0.04))), {"format": "JPEG", "quality": 90}),
    )
    return dict(zip(COPY_KINDS, variants))


def ensure_copies(photos: Path, n: int, count: int = 200) -> Path:
    """Copies of `count` photos spread over all classes, as <kind>/<class>__<file>, written once per n."""
    folder = CACHE / f"copies-{n}"
    done_marker = folder / ".complete"
    if done_marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    sources = sorted(photos.rglob("*.jpg"))
    for source in sources[::max(1, len(sources) // count)][:count]:
        with Image.open(source) as opened:
            photo = opened.convert("RGB")
        for kind, (image, options) in copy_variants(photo).items():
            target = folder / kind / f"{source.parent.name}__{source.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            image.save(target, **options)
    done_marker.touch()
    return folder


def copy_recall(home: Path, copies: Path) -> dict[str, tuple[int, int]]:
    """Import the copies into `home`; kind -> (copies whose near-duplicate chain ends at their original, copies).

    A copy may point to an earlier copy of the same photo (the closest match); the chain's end is what counts.
    """
    from activelearn.ingest import import_paths

    paths = resolve_paths(home)
    import_paths([copies], paths=paths, holdout_fraction=0.0)
    db = store.open_db(paths.db)
    rows = db.execute("SELECT id, original_name, near_dup_of FROM items").fetchall()
    id_of_name = {name: item_id for item_id, name, _ in rows}
    parent = {item_id: near_dup_of for item_id, _, near_dup_of in rows}
    found = dict.fromkeys(COPY_KINDS, (0, 0))
    for item_id, name, _ in rows:
        kind, _, file_name = name.partition("/")
        if kind not in found:
            continue
        original = id_of_name.get(file_name.replace("__", "/", 1))
        root = item_id
        while parent[root] is not None:
            root = parent[root]
        hits, total = found[kind]
        found[kind] = (hits + (root == original and root != item_id), total + 1)
    return found


def measure_import(photos: Path, home: Path) -> dict:
    """Runs in a fresh process: only the import's memory is in its peak RSS."""
    from activelearn.ingest import import_paths

    paths = resolve_paths(home)
    rss_before_kb = memory_kb("VmRSS")
    cpu_before = os.times()
    start = time.perf_counter()
    report = import_paths([photos], paths=paths, label_from_folders=True)
    seconds = time.perf_counter() - start
    cpu_after = os.times()
    return {
        "seconds": seconds,
        "cpu_seconds": (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system),
        "rss_before_kb": rss_before_kb,
        "peak_rss_kb": memory_kb("VmHWM"),
        "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        **report.as_dict(),
    }


def contact_sheet(home: Path, fmnist_dir: Path, target: Path, per_class: int = 2, seed: int = 0) -> None:
    """Per class row: [photo | conversion | its source image | another real image] x per_class."""
    data = load_fashion_mnist(fmnist_dir, download=False, progress=False)
    db = store.open_db(home / "labels.db")
    rows = db.execute("SELECT id, original_name, stored_path FROM items ORDER BY id").fetchall()
    by_class: dict[str, list[tuple[int, int, str]]] = {}
    for item_id, name, stored in rows:
        folder, file_name = name.split("/")
        by_class.setdefault(folder, []).append((item_id, int(file_name.split("_")[1].split(".")[0]), stored))

    rng = np.random.default_rng(seed)
    photo_w, photo_h, small, gap, label_w = 84, 112, 112, 6, 110
    cell_w = photo_w + 3 * small + 4 * gap
    sheet = Image.new("RGB", (label_w + per_class * cell_w, 24 + len(FMNIST_CLASSES) * (photo_h + gap)), "white")
    draw = ImageDraw.Draw(sheet)
    for col in range(per_class):
        x0 = label_w + col * cell_w
        for offset, title in ((0, "photo"), (photo_w + gap, "converted"), (photo_w + small + 2 * gap, "source"),
                              (photo_w + 2 * small + 3 * gap, "other real")):
            draw.text((x0 + offset, 6), title, fill="black")
    for row, class_name in enumerate(FMNIST_CLASSES):
        y0 = 24 + row * (photo_h + gap)
        draw.text((4, y0 + photo_h // 2 - 6), class_name, fill="black")
        members = by_class.get(safe_folder_name(class_name), [])
        same_class = np.flatnonzero(data.y_train == row)
        for col, (item_id, source_index, stored) in enumerate(members[:per_class]):
            x0 = label_w + col * cell_w
            with Image.open(home / stored) as original:
                sheet.paste(original.convert("RGB").resize((photo_w, photo_h)), (x0, y0))
            tiles = (store.item_pixels(db, [item_id])[0], data.x_train[source_index],
                     data.x_train[rng.choice(same_class)])
            for k, tile in enumerate(tiles):
                sheet.paste(Image.fromarray(tile).resize((small, small), Image.Resampling.NEAREST),
                            (x0 + photo_w + gap + k * (small + gap), y0))
    target.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="photos to import (default 5000)")
    parser.add_argument("--fmnist-dir", type=Path, default=REPO.parent / "shared" / "fashion-mnist")
    parser.add_argument("--measure", nargs=2, type=Path, metavar=("PHOTOS", "HOME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure_import(*args.measure)))
        return

    photos = ensure_photos(args.fmnist_dir, args.n)
    home = CACHE / f"home-{args.n}"
    shutil.rmtree(home, ignore_errors=True)
    load_before = os.getloadavg()[0]
    child = subprocess.run([sys.executable, "-m", "benchmarks.bench_import", "--measure", str(photos), str(home)],
                           cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                           check=True)
    result = json.loads(child.stdout)
    rate = result["added"] / result["seconds"]
    print(f"import of {args.n} photos 400x533 JPEG (--label-from-folders) on {os.cpu_count()} cores, "
          f"1-min load average before: {load_before:.1f}")
    print(f"  wall           {result['seconds']:.1f} s -> {rate:.0f} photos/s")
    print(f"  CPU            {result['cpu_seconds']:.1f} s -> {result['added'] / result['cpu_seconds']:.0f} "
          f"photos per CPU-second")
    print(f"  peak RSS       {result['peak_rss_kb'] / 1024:.0f} MB (VmHWM; modules alone, before the first "
          f"photo: {result['rss_before_kb'] / 1024:.0f} MB; ru_maxrss {result['ru_maxrss_kb'] / 1024:.0f} MB)")
    print(f"  added {result['added']}, duplicates {result['duplicates']}, labeled {result['labeled']}, "
          f"rejected {len(result['rejected'])}")
    print(f"  false near-duplicates {result['near_duplicates']} "
          f"({result['near_duplicates'] / max(1, result['added']):.2%} of distinct source images)")
    sheet = OUT / "contact_sheet.png"
    contact_sheet(home, args.fmnist_dir, sheet)
    print(f"contact sheet: {sheet.relative_to(REPO)}")
    recall = copy_recall(home, ensure_copies(photos, args.n))  # after the sheet: it expects <class>/<file> names
    print("copies flagged as near-duplicates of their original (imported after the distinct photos):")
    for kind, (hits, total) in recall.items():
        print(f"  {kind:18s} {hits}/{total} = {hits / max(1, total):.1%}")
    all_hits, all_total = (sum(values) for values in zip(*recall.values()))
    print(f"  {'all':18s} {all_hits}/{all_total} = {all_hits / max(1, all_total):.1%}")


if __name__ == "__main__":
    main()
