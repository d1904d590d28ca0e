"""Precision and recall of the importer's near-duplicate rule on real photos and edited copies of them.

Imports the distinct real photos of ../shared/clothing-photos (3,068 phone photos, labels.csv)
into a fresh home with `ingest.import_paths`, then, as a later scrape, edited copies of --copies
of them (quality-70 re-save, 50% and 75% size, 3% and 6% crop per side, brightness +10% / -10%).
Prints:

- the false-flag rate among the distinct photos as the database grows (a flag points only to an
  earlier item, so the first k imported photos behave as a database of k photos);
- recall per kind of copy: the copy's near-duplicate chain ends at its own original;
- precision over every flag raised (copies traced to their own original, plus flagged pairs of the
  set that are one photo saved twice, judged by their full-size pixels).

--synthetic N also imports N distinct product photos made from Fashion-MNIST training images
(off-white backdrop) into another home and prints their false-flag rate.

Run from the repo root: flock /tmp/cpu.lock .venv/bin/python -m benchmarks.bench_near_dups
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from activelearn import FMNIST_CLASSES, store
from activelearn.config import resolve_paths
from activelearn.ingest import import_paths

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "clothing-photos"
#: A flagged pair of the "distinct" set counts as one photo saved twice below this mean grey difference.
SAME_PHOTO_MEAN_DIFF = 3.0
CHECKPOINTS = (500, 1000, 2000, 3000)


def edits(photo: Image.Image) -> dict[str, tuple[Image.Image, int]]:
    """Kind -> (edited image, JPEG quality): the ways a scraped photo reappears."""
    width, height = photo.size

    def crop(share: float) -> Image.Image:
        dx, dy = round(width * share), round(height * share)
        return photo.crop((dx, dy, width - dx, height - dy))

    return {
        "re-save q70": (photo, 70),
        "resize 50%": (photo.resize((width // 2, height // 2), Image.Resampling.LANCZOS), 85),
        "resize 75%": (photo.resize((width * 3 // 4, height * 3 // 4), Image.Resampling.LANCZOS), 85),
        "crop 3%/side": (crop(0.03), 90),
        "crop 6%/side": (crop(0.06), 90),
        "brightness +10%": (ImageEnhance.Brightness(photo).enhance(1.10), 90),
        "brightness -10%": (ImageEnhance.Brightness(photo).enhance(0.90), 90),
    }


def write_copies(sources: list[Path], folder: Path) -> dict[str, Path]:
    """Write every edit of each source as <folder>/<kind index>/<n>.jpg; returns copy name -> source."""
    copy_of: dict[str, Path] = {}
    for n, source in enumerate(sources):
        with Image.open(source) as opened:
            photo = opened.convert("RGB")
        for k, (kind, (image, quality)) in enumerate(edits(photo).items()):
            name = f"{k}/{n:05d}.jpg"
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            image.save(folder / name, quality=quality)
            copy_of[name] = source
    return copy_of


def chain_root(parent: dict[int, int | None], item_id: int) -> int:
    while parent[item_id] is not None:
        item_id = parent[item_id]
    return item_id


def same_photo(a: Path, b: Path) -> bool:
    """Two files of the distinct set that are one photo: same size, nearly equal full-size pixels."""
    with Image.open(a) as first, Image.open(b) as second:
        if first.size != second.size:
            return False
        difference = np.abs(np.asarray(first.convert("L"), np.float32) - np.asarray(second.convert("L"), np.float32))
    return float(difference.mean()) < SAME_PHOTO_MEAN_DIFF


def timed_import(folder: Path, home: Path) -> tuple[str, int]:
    """Import a folder; returns (wall and CPU time as text, photos added)."""
    start, cpu = time.perf_counter(), time.process_time()
    report = import_paths([folder], paths=resolve_paths(home), holdout_fraction=0.0)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    return (f"{seconds:.1f} s ({report.added / seconds:.0f} photos/s; CPU {cpu_seconds:.1f} s, "
            f"{report.added / cpu_seconds:.0f} photos per CPU-second)"), report.added


def measure_real(photos: Path, n_copies: int, seed: int, work: Path) -> None:
    with open(photos / "labels.csv", newline="") as stream:
        files = sorted(photos / row["file"] for row in csv.DictReader(stream))
    home = work / "home-real"
    timing, added = timed_import(photos / "images", home)
    db = store.open_db(home / "labels.db")
    rows = db.execute("SELECT id, original_name, near_dup_of FROM items ORDER BY id").fetchall()
    path_of = {item_id: photos / "images" / name for item_id, name, _ in rows}
    flagged = [(item_id, of) for item_id, _, of in rows if of is not None]
    genuine = {item_id for item_id, of in flagged if same_photo(path_of[item_id], path_of[of])}
    print(f"{added:,} of {len(files):,} real photos imported in {timing}")
    print(f"flagged among the distinct photos: {len(flagged)} ({len(genuine)} of them the same photo saved "
          f"twice in the set, mean grey difference < {SAME_PHOTO_MEAN_DIFF:g}):")
    for item_id, of in flagged[:20]:
        mark = "same photo" if item_id in genuine else "FALSE"
        print(f"  {path_of[item_id].relative_to(photos)} -> {path_of[of].relative_to(photos)}  [{mark}]")
    print("false-flag rate as the database grows (first k photos imported):")
    ids = [item_id for item_id, _, _ in rows]
    false_ids = {item_id for item_id, _ in flagged} - genuine
    for k in [c for c in CHECKPOINTS if c < len(ids)] + [len(ids)]:
        false = sum(item_id in false_ids for item_id in ids[:k])
        print(f"  k = {k:>5,}: {false:>3} false flags = {false / k:.2%}")

    rng = np.random.default_rng(seed)
    sources = [files[i] for i in sorted(rng.choice(len(files), min(n_copies, len(files)), replace=False))]
    copies = work / "copies"
    copy_of = write_copies(sources, copies)
    timing, added = timed_import(copies, home)
    rows = db.execute("SELECT id, original_name, near_dup_of FROM items ORDER BY id").fetchall()
    parent = {item_id: of for item_id, _, of in rows}
    id_of_path = {path: item_id for item_id, path in path_of.items()}
    kinds = list(edits(Image.new("RGB", (8, 8))))
    found = {kind: [0, 0, 0] for kind in kinds}     # traced to own original, flagged at all, copies
    imported = {name: (item_id, of) for item_id, name, of in rows if item_id not in path_of}
    for name, source in copy_of.items():
        counts = found[kinds[int(name.split("/")[0])]]
        counts[2] += 1
        if name not in imported:  # byte-identical to its original: skipped as an exact duplicate
            counts[0] += 1
            counts[1] += 1
            continue
        item_id, of = imported[name]
        counts[1] += of is not None
        counts[0] += of is not None and chain_root(parent, item_id) == id_of_path[source]
    print(f"\n{added:,} copies of {len(sources)} photos imported in {timing}; "
          f"{len(copy_of) - added} were byte-identical to their original (skipped as exact duplicates: caught)")
    print(f"{'kind':<18}{'recall':>8}{'flagged':>9}{'copies':>8}")
    for kind, (right, any_flag, total) in found.items():
        print(f"{kind:<18}{right / total:>8.1%}{any_flag / total:>9.1%}{total:>8}")
    right = sum(c[0] for c in found.values())
    raised = sum(c[1] for c in found.values()) + len(flagged)
    total = sum(c[2] for c in found.values())
    print(f"{'all copies':<18}{right / total:>8.1%}{sum(c[1] for c in found.values()) / total:>9.1%}{total:>8}")
    print(f"precision over all {raised:,} flags: {(right + len(genuine)) / raised:.2%} "
          f"(correct: {right} copies traced to their original + {len(genuine)} same-photo pairs)")


def measure_synthetic(n: int, work: Path) -> None:
    from activelearn.fmnist import load_fashion_mnist
    from activelearn.synthetic import write_product_photos

    data = load_fashion_mnist(REPO.parent / "shared" / "fashion-mnist", download=False, progress=False)
    folder = work / "synthetic"
    write_product_photos(folder, data.x_train[:n], data.y_train[:n], FMNIST_CLASSES, label_folders=True, seed=0)
    home = work / "home-synthetic"
    timing, added = timed_import(folder, home)
    flagged = store.open_db(home / "labels.db").execute(
        "SELECT COUNT(*) FROM items WHERE near_dup_of IS NOT NULL").fetchone()[0]
    print(f"\n{added:,} distinct synthetic product photos (Fashion-MNIST training images 0-{n - 1}) imported in "
          f"{timing}: {flagged} flagged = {flagged / added:.2%} false flags")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="folder with labels.csv and images/")
    parser.add_argument("--copies", type=int, default=500, help="photos to make edited copies of (default 500)")
    parser.add_argument("--synthetic", type=int, default=0, help="also import N synthetic product photos")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (args.photos / "labels.csv").exists():
        raise SystemExit(f"no labels.csv in {args.photos}: pass --photos")
    work = Path(tempfile.mkdtemp(prefix="bench-near-dups-"))
    try:
        print(f"{os.cpu_count()} cores, 1-min load average {os.getloadavg()[0]:.1f}")
        measure_real(args.photos, args.copies, args.seed, work)
        if args.synthetic:
            measure_synthetic(args.synthetic, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
