"""Image import: every input kind, every refusal, dedupe, pre-labels, holdout, crash safety."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import signal
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from activelearn import store
from activelearn.config import Paths, resolve_paths
from activelearn.convert import hamming
from activelearn.errors import ActiveLearnError
from activelearn.ingest import (NEAR_DUP_MAX_DISTANCE, NEAR_DUP_MIN_SIMILARITY, ImportLimits, ImportReport,
                                import_paths, similarity, thumbnail)
from activelearn.synthetic import make_product_photo

REPO = Path(__file__).resolve().parents[1]
SHAPES = ("box", "ellipse", "triangle", "tee", "boot", "bar")
#: Near-duplicate tests use photos of a scraped product photo's size: in a 120x160 JPEG,
#: compression ringing moves the object box enough to hide a copy.
PRODUCT_SIZE = (400, 533)


def garment(shape: str, seed: int = 0) -> np.ndarray:
    """A 28x28 Fashion-MNIST-like image (light shape on black) of one of a few outlines."""
    rng = np.random.default_rng(seed)
    canvas = Image.new("L", (28, 28), 0)
    draw = ImageDraw.Draw(canvas)
    shade = int(rng.integers(150, 255))
    if shape == "box":
        draw.rectangle((5, 3, 22, 25), fill=shade)
    elif shape == "ellipse":
        draw.ellipse((2, 6, 25, 21), fill=shade)
    elif shape == "triangle":
        draw.polygon([(14, 2), (26, 25), (2, 25)], fill=shade)
    elif shape == "tee":
        draw.rectangle((2, 3, 25, 10), fill=shade)
        draw.rectangle((9, 3, 18, 26), fill=shade)
    elif shape == "boot":
        draw.rectangle((4, 2, 12, 24), fill=shade)
        draw.rectangle((4, 17, 26, 24), fill=shade)
    else:
        draw.rectangle((11, 1, 16, 27), fill=shade)
    return np.asarray(canvas)


def photo(shape: str = "box", seed: int = 0, size: tuple[int, int] = (120, 160)) -> Image.Image:
    return make_product_photo(garment(shape, seed), size=size, rng=np.random.default_rng(seed))


def copies(original: Image.Image) -> dict[str, bytes]:
    """The usual ways a scraped photo reappears: recompressed, brightened, downscaled, cropped."""
    width, height = original.size
    return {"q60.jpg": encode(original, quality=60),
            "brighter.jpg": encode(ImageEnhance.Brightness(original).enhance(1.05), quality=90),
            "smaller.png": encode(original.resize((width * 3 // 4, height * 3 // 4)), "PNG"),
            "cropped.jpg": encode(original.crop((12, 16, width - 8, height - 21)), quality=90)}


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def jpeg(shape: str = "box", seed: int = 0, quality: int = 90) -> bytes:
    return encode(photo(shape, seed), quality=quality)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return resolve_paths(tmp_path / "home")


def items(paths: Paths) -> list[dict]:
    db = store.open_db(paths.db)
    return [store.get_item(db, row[0]) for row in db.execute("SELECT id FROM items ORDER BY id")]


def reasons(report: ImportReport) -> dict[str, str]:
    return {Path(r.file.split(":")[-1]).name: r.reason for r in report.rejected}


def near_dup_root(row: dict, rows: dict[str, dict]) -> int:
    """The item at the end of a row's near_dup_of chain."""
    by_id = {r["id"]: r for r in rows.values()}
    while row["near_dup_of"] is not None:
        row = by_id[row["near_dup_of"]]
    return row["id"]


def assert_consistent(paths: Paths) -> None:
    """Every item row is whole: its stored copy exists with the recorded hash, its pixels are 28x28."""
    db = store.open_db(paths.db)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for item in items(paths):
        stored = paths.home / item["stored_path"]
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == item["sha256"]
        assert stored == paths.images / item["sha256"][:2] / stored.name
        assert len(item["pixels"]) == 784
    orphans = db.execute("SELECT COUNT(*) FROM labels WHERE item_id NOT IN (SELECT id FROM items)").fetchone()[0]
    assert orphans == 0


# ---------------------------------------------------------------- sources

def test_folder_import_is_recursive_and_copies_originals(paths, tmp_path):
    folder = tmp_path / "scrape"
    files = [write(folder / "a.jpg", jpeg("box", 1)),
             write(folder / "shoes" / "b.png", encode(photo("boot", 2), "PNG")),
             write(folder / "shoes" / "deep" / "c.webp", encode(photo("tee", 3), "WEBP"))]
    write(folder / ".DS_Store", b"\0\0\0\1Bud1")  # system clutter: skipped, not reported
    write(folder / "__MACOSX" / "._a.jpg", b"\0\5\26\7")

    seen: list[tuple[int, int | None]] = []
    report = import_paths([folder], paths=paths, holdout_fraction=0, progress=lambda d, t: seen.append((d, t)))

    assert (report.added, report.duplicates, report.rejected) == (3, 0, [])
    assert seen == [(1, 3), (2, 3), (3, 3)]
    rows = items(paths)
    assert [r["id"] for r in rows] == report.added_ids
    assert [r["original_name"] for r in rows] == ["a.jpg", "shoes/b.png", "shoes/deep/c.webp"]
    assert [r["format"] for r in rows] == ["JPEG", "PNG", "WEBP"]
    assert {r["source"] for r in rows} == {"folder"} and {r["split"] for r in rows} == {"pool"}
    assert (rows[0]["width"], rows[0]["height"]) == (120, 160)
    for row, original in zip(rows, files):
        stored = paths.home / row["stored_path"]
        assert stored.read_bytes() == original.read_bytes()
        assert stored.name == f"{row['sha256']}.{stored.suffix[1:]}" and stored.suffix in (".jpg", ".png", ".webp")
        pixels = np.frombuffer(row["pixels"], np.uint8).reshape(28, 28)
        assert pixels[0, 0] == 0 and pixels.max() > 100  # garment light on black, as in Fashion-MNIST
    assert_consistent(paths)


def test_zip_and_tar_gz_members_are_imported_as_streams(paths, tmp_path):
    zip_path = tmp_path / "batch.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("bags/one.jpg", jpeg("box", 1))
        archive.writestr("two.jpg", jpeg("ellipse", 2))
        archive.writestr("notes/", b"")
    tar_path = tmp_path / "batch.tar.gz"
    with tarfile.open(tar_path, "w:gz") as archive:
        for name, data in (("boots/three.jpg", jpeg("boot", 3)), ("four.png", encode(photo("bar", 4), "PNG"))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))

    report = import_paths([zip_path, tar_path], paths=paths)

    assert (report.added, report.rejected) == (4, [])
    rows = items(paths)
    assert [r["original_name"] for r in rows] == ["bags/one.jpg", "two.jpg", "boots/three.jpg", "four.png"]
    assert {r["source"] for r in rows} == {"archive"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch.tar.gz", "batch.zip", "home"]  # nothing extracted
    assert_consistent(paths)


def test_a_list_of_files_is_an_upload(paths, tmp_path):
    files = [write(tmp_path / "up" / f"{shape}.jpg", jpeg(shape, i)) for i, shape in enumerate(SHAPES[:3])]
    report = import_paths(files, paths=paths)
    assert report.added == 3
    assert {r["source"] for r in items(paths)} == {"upload"}
    assert [r["original_name"] for r in items(paths)] == ["box.jpg", "ellipse.jpg", "triangle.jpg"]

    overridden = import_paths(write(tmp_path / "more" / "bar.jpg", jpeg("bar", 9)), paths=paths, source="url")
    assert store.get_item(store.open_db(paths.db), overridden.added_ids[0])["source"] == "url"


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture
def web(tmp_path) -> Iterator[str]:
    """A local web server on an ephemeral port serving a folder of files."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            if self.path != "/no-length":
                return super().do_GET()
            self.send_response(200)  # HTTP/1.0, no Content-Length: only the streamed count can stop it
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"\xff" * 1000)

        def log_message(self, *args):  # keep pytest output clean
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_url_lists_are_downloaded_with_limits(paths, tmp_path, web):
    www = tmp_path / "www"
    write(www / "a.jpg", jpeg("box", 1))
    write(www / "b.png", encode(photo("tee", 2), "PNG"))
    write(www / "c.jpg", jpeg("boot", 3))
    write(www / "big.jpg", os.urandom(60_000))
    txt = write(tmp_path / "urls.txt",
                f"# scraped yesterday\n{web}/a.jpg\n\n{web}/missing.jpg\n{web}/big.jpg\n"
                f"{web}/no-length\nftp://example.com/x.jpg\n".encode())
    csv_file = write(tmp_path / "urls.csv", f"title,url\nshirt,{web}/b.png\n".encode())

    limits = ImportLimits(max_url_bytes=50_000, url_timeout_s=5, allow_private_urls=True)  # the server is local
    report = import_paths([txt, csv_file, f"{web}/c.jpg"], paths=paths, limits=limits, url_lists=True)

    assert report.added == 3
    assert [r["original_name"] for r in items(paths)] == [f"{web}/a.jpg", f"{web}/b.png", f"{web}/c.jpg"]
    assert {r["source"] for r in items(paths)} == {"url"}
    by_url = {r.file: r.reason for r in report.rejected}
    assert by_url[f"{web}/missing.jpg"] == "download failed: HTTP 404 File not found"
    assert by_url[f"{web}/big.jpg"] == "file too large: 60,000 bytes is over the 50,000 bytes limit"
    assert by_url[f"{web}/no-length"] == "download too large: over the 50,000 bytes limit"
    assert by_url["ftp://example.com/x.jpg"] == "only http and https URLs are fetched"
    assert len(report.rejected) == 4
    assert_consistent(paths)


# ---------------------------------------------------------------- refusals

def test_each_bad_file_is_rejected_with_its_reason_and_the_rest_imported(paths, tmp_path):
    folder = tmp_path / "mixed"
    good = jpeg("box", 1)
    write(folder / "01_good.jpg", good)
    write(folder / "02_truncated.jpg", good[: len(good) // 2])
    write(folder / "03_text.jpg", b"<html>this is a web page, not a photo</html>")
    write(folder / "04_bomb.png", encode(Image.new("L", (3000, 3000), 255), "PNG", optimize=True))
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    write(folder / "05_huge.png", encode(Image.fromarray(noise), "PNG"))
    write(folder / "06_also_good.jpg", jpeg("tee", 2))
    write(folder / "07_vector.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")  # never Ghostscript
    assert (folder / "04_bomb.png").stat().st_size < 20_000  # 9 megapixels, tiny on disk

    limits = ImportLimits(max_pixels=1_000_000, max_file_bytes=60_000)
    report = import_paths([folder], paths=paths, limits=limits)

    assert report.added == 2
    assert [r["original_name"] for r in items(paths)] == ["01_good.jpg", "06_also_good.jpg"]
    why = reasons(report)
    assert set(why) == {"02_truncated.jpg", "03_text.jpg", "04_bomb.png", "05_huge.png", "07_vector.eps"}
    assert why["07_vector.eps"] == why["03_text.jpg"]
    assert why["02_truncated.jpg"].startswith("corrupt image: image file is truncated")
    assert why["03_text.jpg"].startswith("not an image: not one of JPEG, PNG, WEBP, GIF")
    assert why["04_bomb.png"] == ("decompression bomb: 3000x3000 = 9,000,000 pixels is over the "
                                  "1,000,000 limit")
    assert why["05_huge.png"].startswith("file too large: ") and "60,000 bytes limit" in why["05_huge.png"]
    assert_consistent(paths)


def test_pillows_own_bomb_warning_becomes_a_rejection(paths, tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # Pillow warns above this, errors above 2x
    write(tmp_path / "in" / "warned.png", encode(Image.new("L", (1200, 1000), 255), "PNG"))
    write(tmp_path / "in" / "errored.png", encode(Image.new("L", (1500, 1500), 255), "PNG"))
    report = import_paths([tmp_path / "in"], paths=paths, limits=ImportLimits(max_pixels=10**9))
    assert report.added == 0
    why = reasons(report)
    assert why["warned.png"].startswith("decompression bomb: Image size (1200000 pixels) exceeds limit")
    assert why["errored.png"].startswith("decompression bomb: Image size (2250000 pixels) exceeds limit")


def test_unsafe_zip_members_are_refused_and_never_written(paths, tmp_path):
    zip_path = tmp_path / "inbox" / "evil.zip"
    zip_path.parent.mkdir()
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("../evil.jpg"), jpeg("box", 1))
        archive.writestr(zipfile.ZipInfo("/abs.jpg"), jpeg("box", 2))
        archive.writestr(zipfile.ZipInfo("ok/..\\..\\win.jpg"), jpeg("box", 3))
        link = zipfile.ZipInfo("link.jpg")
        link.external_attr = 0o120777 << 16  # a symlink, as Info-ZIP stores it
        archive.writestr(link, "/etc/passwd")
        fifo = zipfile.ZipInfo("pipe.jpg")
        fifo.external_attr = 0o010644 << 16
        archive.writestr(fifo, jpeg("box", 5))
        archive.writestr("fine/good.jpg", jpeg("tee", 4))

    report = import_paths([zip_path], paths=paths)

    assert report.added == 1
    assert {r.reason for r in report.rejected} == {
        "unsafe archive member ('..' in path): ../evil.jpg",
        "unsafe archive member (absolute path): /abs.jpg",
        "unsafe archive member ('..' in path): ok/..\\..\\win.jpg",
        "link member refused: link.jpg",
        "device or special file refused: pipe.jpg",
    }
    assert not (tmp_path / "evil.jpg").exists() and not Path("/abs.jpg").exists()
    assert sorted(p.name for p in zip_path.parent.iterdir()) == ["evil.zip"]


def test_tar_links_devices_and_escapes_are_refused(paths, tmp_path):
    tar_path = tmp_path / "evil.tar"
    with tarfile.open(tar_path, "w") as archive:
        def add(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", linkname: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.size, info.linkname = kind, len(data), linkname
            archive.addfile(info, io.BytesIO(data) if data else None)

        add("good.jpg", data=jpeg("box", 1))
        add("sym.jpg", tarfile.SYMTYPE, linkname="/etc/passwd")
        add("hard.jpg", tarfile.LNKTYPE, linkname="good.jpg")
        add("tty.jpg", tarfile.CHRTYPE)
        add("disk.jpg", tarfile.BLKTYPE)
        add("pipe.jpg", tarfile.FIFOTYPE)
        add("../up.jpg", data=jpeg("box", 2))
        add("/root.jpg", data=jpeg("box", 3))
        add("later.jpg", data=jpeg("tee", 4))

    report = import_paths([tar_path], paths=paths)

    assert report.added == 2
    assert [r["original_name"] for r in items(paths)] == ["good.jpg", "later.jpg"]
    assert [r.reason for r in report.rejected] == [
        "link member refused: sym.jpg -> /etc/passwd",
        "link member refused: hard.jpg -> good.jpg",
        "device or special file refused: tty.jpg",
        "device or special file refused: disk.jpg",
        "device or special file refused: pipe.jpg",
        "unsafe archive member ('..' in path): ../up.jpg",
        "unsafe archive member (absolute path): /root.jpg",
    ]
    assert not (tmp_path / "up.jpg").exists()


def test_damaged_archives_and_missing_inputs_are_reported(paths, tmp_path):
    good = write(tmp_path / "good.jpg", jpeg("box", 1))
    fake_zip = write(tmp_path / "fake.zip", b"PK but not really")
    data = tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w:gz") as archive:
        payload = jpeg("tee", 2)
        info = tarfile.TarInfo("x.jpg")
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    cut_tar = write(tmp_path / "cut.tar.gz", data.getvalue()[:200])
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)  # reading it would block the import for ever

    report = import_paths([tmp_path / "nope", fake_zip, cut_tar, fifo, good], paths=paths)

    assert report.added == 1
    why = {Path(r.file.split(":")[0]).name: r.reason for r in report.rejected}
    assert why["nope"] == "no such file or folder"
    assert why["fake.zip"].startswith("not a readable zip archive")
    assert why["cut.tar.gz"].startswith("archive damaged, later members not read") or \
        why["cut.tar.gz"].startswith("not a readable tar archive")
    assert why["pipe.jpg"] == "not a regular file"


def test_the_import_byte_cap_stops_the_import_with_one_line(paths, tmp_path):
    for i, shape in enumerate(SHAPES[:4]):
        write(tmp_path / "in" / f"{i}.jpg", jpeg(shape, i))
    sizes = [p.stat().st_size for p in sorted((tmp_path / "in").iterdir())]
    limits = ImportLimits(max_import_bytes=sizes[0] + sizes[1] + sizes[2] // 2)
    report = import_paths([tmp_path / "in"], paths=paths, limits=limits)
    assert report.added == 2
    assert len(report.rejected) == 1
    assert report.rejected[0].file.endswith("2.jpg")
    assert "import size limit" in report.rejected[0].reason and "later files were not imported" in \
        report.rejected[0].reason


# ---------------------------------------------------------------- dedupe

def test_exact_duplicates_are_counted_not_imported(paths, tmp_path):
    data = jpeg("box", 1)
    write(tmp_path / "in" / "a.jpg", data)
    write(tmp_path / "in" / "copy_of_a.jpg", data)
    write(tmp_path / "in" / "b.jpg", jpeg("tee", 2))
    first = import_paths([tmp_path / "in"], paths=paths)
    assert (first.added, first.duplicates) == (2, 1)

    again = import_paths([tmp_path / "in", tmp_path / "in" / "b.jpg"], paths=paths)
    assert (again.added, again.duplicates) == (0, 4)
    assert len(items(paths)) == 2


def test_near_duplicates_are_imported_but_flagged(paths, tmp_path):
    original = photo("boot", 7, PRODUCT_SIZE)
    write(tmp_path / "in" / "1_original.jpg", encode(original, quality=90))
    write(tmp_path / "in" / "2_other.jpg", encode(photo("triangle", 8, PRODUCT_SIZE), quality=90))
    for name, data in copies(original).items():
        write(tmp_path / "in" / f"3_{name}", data)

    report = import_paths([tmp_path / "in"], paths=paths)

    assert (report.added, report.duplicates, report.near_duplicates) == (6, 0, 4)
    rows = {r["original_name"]: r for r in items(paths)}
    first = rows["1_original.jpg"]["id"]
    assert rows["1_original.jpg"]["near_dup_of"] is None and rows["2_other.jpg"]["near_dup_of"] is None
    assert {name: rows[f"3_{name}"]["near_dup_of"] for name in copies(original)} \
        == dict.fromkeys(copies(original), first)
    assert all(-(2 ** 63) <= r["dhash"] < 2 ** 63 for r in rows.values())


def test_the_same_silhouette_in_another_colour_is_not_flagged(paths, tmp_path):
    """A brightness edit keeps a photo's thumbnail correlation near 1; another colour does not."""
    black, brown = photo("boot", 7, PRODUCT_SIZE), photo("boot", 8, PRODUCT_SIZE)
    brighter = ImageEnhance.Brightness(black).enhance(1.10)
    assert similarity(thumbnail(black), thumbnail(brighter)) >= NEAR_DUP_MIN_SIMILARITY
    assert similarity(thumbnail(black), thumbnail(brown)) < NEAR_DUP_MIN_SIMILARITY
    write(tmp_path / "in" / "black_boot.jpg", encode(black, quality=90))
    write(tmp_path / "in" / "brown_boot.jpg", encode(brown, quality=90))
    write(tmp_path / "in" / "c_brighter_black_boot.jpg", encode(brighter, quality=90))
    report = import_paths([tmp_path / "in"], paths=paths)
    rows = {r["original_name"]: r for r in items(paths)}
    assert (report.added, report.near_duplicates) == (3, 1)
    assert rows["brown_boot.jpg"]["near_dup_of"] is None
    assert rows["c_brighter_black_boot.jpg"]["near_dup_of"] == rows["black_boot.jpg"]["id"]


def test_similar_fashion_mnist_photos_are_told_apart_from_copies(paths, tmp_path, fmnist):
    """Ankle boots 450 and 867 of the training set make photos with equal pHashes."""
    def product(index: int) -> Image.Image:
        return make_product_photo(fmnist.x_train[index], rng=np.random.default_rng([0, index]))

    boot = product(450)
    write(tmp_path / "in" / "1_boot.jpg", encode(boot, quality=90))
    write(tmp_path / "in" / "2_another_boot.jpg", encode(product(867), quality=90))
    for name, data in copies(boot).items():
        write(tmp_path / "in" / f"3_{name}", data)

    report = import_paths([tmp_path / "in"], paths=paths)

    rows = {r["original_name"]: r for r in items(paths)}
    assert hamming(rows["1_boot.jpg"]["dhash"] % 2 ** 64, rows["2_another_boot.jpg"]["dhash"] % 2 ** 64) \
        <= NEAR_DUP_MAX_DISTANCE  # a candidate, refused by the thumbnails
    assert rows["2_another_boot.jpg"]["near_dup_of"] is None
    assert report.near_duplicates == 4
    # a copy points to the closest earlier item, which may be an earlier copy; every chain ends at the original
    assert {name: near_dup_root(rows[f"3_{name}"], rows) for name in copies(boot)} \
        == dict.fromkeys(copies(boot), rows["1_boot.jpg"]["id"])


def test_a_near_duplicate_points_to_the_earliest_of_equally_close_items(paths, tmp_path):
    original = photo("tee", 3, PRODUCT_SIZE)
    for name, fmt in (("a.png", "PNG"), ("b.bmp", "BMP"), ("c.tif", "TIFF")):  # lossless: identical pixels
        write(tmp_path / "in" / name, encode(original, fmt))
    import_paths([tmp_path / "in"], paths=paths)
    first, second, third = items(paths)
    assert (first["near_dup_of"], second["near_dup_of"], third["near_dup_of"]) == (None, first["id"], first["id"])


def test_distinct_garments_are_not_flagged(paths, tmp_path):
    for i, shape in enumerate(SHAPES):
        write(tmp_path / "in" / f"{shape}.jpg", jpeg(shape, 20 + i))
    report = import_paths([tmp_path / "in"], paths=paths)
    assert (report.added, report.near_duplicates) == (len(SHAPES), 0)


def test_near_duplicates_are_found_across_imports_and_batches(paths, tmp_path):
    original = photo("boot", 7, PRODUCT_SIZE)
    import_paths([write(tmp_path / "a" / "first.jpg", encode(original, quality=90))], paths=paths)
    write(tmp_path / "b" / "x.jpg", encode(photo("tee", 4, PRODUCT_SIZE), quality=90))
    write(tmp_path / "b" / "y.jpg", encode(original, quality=60))
    write(tmp_path / "b" / "z.jpg", encode(original.resize((300, 400)), quality=80))
    report = import_paths([tmp_path / "b"], paths=paths, commit_every=1)
    assert report.near_duplicates == 2
    rows = {r["original_name"]: r for r in items(paths)}
    assert rows["x.jpg"]["near_dup_of"] is None
    assert rows["y.jpg"]["near_dup_of"] == rows["z.jpg"]["near_dup_of"] == rows["first.jpg"]["id"]


def test_similarity_forgives_shifts_crops_and_brightness_but_not_other_content():
    tee = photo("tee", 3, PRODUCT_SIZE)
    width, height = tee.size
    same = thumbnail(tee)
    assert similarity(same, same) == pytest.approx(1.0, abs=1e-5)
    shifted = np.roll(same, 1, axis=2)  # one pixel to the right
    assert similarity(same, shifted) == pytest.approx(1.0, abs=1e-5)
    cropped = thumbnail(tee.crop((width * 5 // 100, height * 5 // 100, width * 95 // 100, height * 95 // 100)))
    darker = thumbnail(ImageEnhance.Brightness(tee).enhance(0.9))
    for copy in (cropped, darker):
        assert similarity(same, copy) >= NEAR_DUP_MIN_SIMILARITY
        assert similarity(copy, same) == pytest.approx(similarity(same, copy), abs=0.01)  # either may be the crop
    for other in (photo("box", 3, PRODUCT_SIZE), photo("tee", 4, PRODUCT_SIZE)):
        assert similarity(same, thumbnail(other)) < NEAR_DUP_MIN_SIMILARITY
    flat = np.full_like(same, 200)  # no contrast at all: nothing to correlate, never a match
    assert similarity(same, flat) < NEAR_DUP_MIN_SIMILARITY


def test_earlier_hashes_are_replaced_once_and_copies_are_still_found(paths, tmp_path):
    """A database from before the pHash holds object-box dHashes: they are recomputed from the originals."""
    from activelearn.ingest import near_dups

    original = photo("boot", 7, PRODUCT_SIZE)
    first = import_paths([write(tmp_path / "a" / "first.jpg", encode(original, quality=90))], paths=paths)
    db = store.open_db(paths.db)
    phash = db.execute("SELECT dhash FROM items").fetchone()[0]
    with store.transaction(db):
        db.execute("UPDATE items SET dhash = ?", [phash ^ 0x7FFF_FFFF])  # 31 bits off: what an old hash looks like
        db.execute("DELETE FROM settings WHERE key = ?", [near_dups.HASH_SETTING])

    report = import_paths([write(tmp_path / "b" / "again.jpg", encode(original, quality=70))], paths=paths)

    rows = items(paths)
    assert rows[0]["dhash"] == phash and rows[1]["near_dup_of"] == first.added_ids[0]
    assert report.near_duplicates == 1
    assert store.get_setting(db, near_dups.HASH_SETTING) == near_dups.HASH_KIND
    assert near_dups.upgrade_hashes(db, paths.home) == 0  # once


def test_a_candidate_whose_original_is_gone_is_judged_on_its_hash_alone(paths, tmp_path):
    original = photo("boot", 7, PRODUCT_SIZE)
    import_paths([write(tmp_path / "a" / "first.jpg", encode(original, quality=90))], paths=paths)
    (paths.home / items(paths)[0]["stored_path"]).unlink()
    write(tmp_path / "b" / "lossless.png", encode(original, "PNG"))            # same pHash: 0-2 bits
    cropped = original.crop((40, 50, original.width - 40, original.height - 50))
    write(tmp_path / "b" / "x_cropped.jpg", encode(cropped, quality=90))      # further than 2 bits
    import_paths([tmp_path / "b"], paths=paths)
    rows = {r["original_name"]: r for r in items(paths)}
    assert rows["lossless.png"]["near_dup_of"] == rows["first.jpg"]["id"]
    assert rows["x_cropped.jpg"]["near_dup_of"] in (None, rows["lossless.png"]["id"])  # never the unreadable one


def test_real_photos_and_their_resaves(clothing_photos, tmp_path):
    """60 distinct real photos (../shared/clothing-photos): none flagged; every quality-70 re-save flagged."""
    paths = resolve_paths(tmp_path / "home")
    chosen = clothing_photos[::50][:60]
    for k, row in enumerate(chosen):
        with Image.open(row["path"]) as opened:
            write(tmp_path / "resaved" / f"{k:02d}.jpg", encode(opened.convert("RGB"), quality=70))
        write(tmp_path / "real" / f"{k:02d}.jpg", Path(row["path"]).read_bytes())
    first = import_paths([tmp_path / "real"], paths=paths)
    again = import_paths([tmp_path / "resaved"], paths=paths)
    assert (first.added, first.near_duplicates) == (60, 0)
    original_of = dict(zip([f"{k:02d}.jpg" for k in range(60)], first.added_ids))  # the walk is sorted
    resaved = [r for r in items(paths) if r["id"] not in first.added_ids]
    assert again.duplicates + len(resaved) == 60
    assert {r["original_name"]: r["near_dup_of"] for r in resaved} == \
        {r["original_name"]: original_of[r["original_name"]] for r in resaved}


def test_label_from_folders_records_confirm_events_by_import(paths, tmp_path):
    root = tmp_path / "catalog"
    write(root / "Sneaker" / "s.jpg", jpeg("boot", 1))
    write(root / "T-shirt_top" / "t.jpg", jpeg("tee", 2))
    write(root / "ankle boot" / "a.jpg", jpeg("boot", 3))
    write(root / "BAG" / "b.jpg", jpeg("box", 4))
    write(root / "misc" / "m1.jpg", jpeg("bar", 5))
    write(root / "misc" / "m2.jpg", jpeg("ellipse", 6))

    report = import_paths([root], paths=paths, label_from_folders=True, holdout_fraction=0)

    assert (report.added, report.labeled) == (6, 4)
    assert report.warnings == ["2 file(s) imported unlabeled: folder 'misc' names no class"]
    db = store.open_db(paths.db)
    events = db.execute("SELECT i.original_name, c.name, l.action, l.annotator FROM labels l "
                        "JOIN items i ON i.id = l.item_id JOIN classes c ON c.id = l.class_id "
                        "ORDER BY i.original_name").fetchall()
    assert events == [("BAG/b.jpg", "Bag", "confirm", "import"),
                      ("Sneaker/s.jpg", "Sneaker", "confirm", "import"),
                      ("T-shirt_top/t.jpg", "T-shirt/top", "confirm", "import"),
                      ("ankle boot/a.jpg", "Ankle boot", "confirm", "import")]
    assert len(store.unlabeled_pool(db)) == 2
    assert report.as_dict()["labeled"] == 4


def test_without_the_flag_folder_names_are_ignored(paths, tmp_path):
    write(tmp_path / "Sneaker" / "s.jpg", jpeg("boot", 1))
    report = import_paths([tmp_path / "Sneaker"], paths=paths)
    assert (report.labeled, report.warnings) == (0, [])
    assert store.open_db(paths.db).execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 0


def test_holdout_share_is_about_right_and_stable_across_reimports(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "noise"
    for i in range(120):  # tiny distinct images: the split depends only on each file's hash
        write(folder / f"{i:03d}.png", encode(Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)), "PNG"))

    def splits(home: str, seed: int, fraction: float) -> dict[str, str]:
        paths = resolve_paths(tmp_path / home)
        import_paths([folder], paths=paths, holdout_fraction=fraction, seed=seed)
        return {r["sha256"]: r["split"] for r in items(paths)}

    first = splits("h1", seed=0, fraction=0.25)
    held = sum(split == "holdout" for split in first.values())
    assert 15 <= held <= 45  # binomial(120, 0.25): mean 30, sd 4.7
    assert splits("h2", seed=0, fraction=0.25) == first  # a fresh re-import agrees item by item
    assert splits("h3", seed=1, fraction=0.25) != first
    assert set(splits("h4", seed=0, fraction=0.0).values()) == {"pool"}
    assert set(splits("h5", seed=0, fraction=1.0).values()) == {"holdout"}  # a labeled test set


def busy_photo(seed: int) -> bytes:
    """A photo with no plain background: colour noise to the edges, as in a street shot."""
    noise = np.random.default_rng(seed).integers(0, 256, (80, 60, 3), dtype=np.uint8)
    return encode(Image.fromarray(noise), "PNG")


def test_mostly_busy_backgrounds_warn_that_the_28x28_form_is_poor(paths, tmp_path):
    for i in range(3):
        write(tmp_path / "busy" / f"busy{i}.png", busy_photo(i))
    write(tmp_path / "busy" / "plain.jpg", jpeg("box", 1))
    report = import_paths([tmp_path / "busy"], paths=paths)

    assert (report.added, report.no_plain_background) == (4, 3)
    assert [r["flags"] for r in items(paths)] == ["no-plain-background"] * 3 + [""]
    assert len(report.warnings) == 1
    warning = report.warnings[0]
    assert warning.startswith("3 of 4 added photos are flagged 'no-plain-background': their 28x28 "
                              "Fashion-MNIST conversion is poor")
    assert "photo model" in warning and "does not need a plain background" in warning
    assert report.as_dict()["warnings"] == report.warnings


def test_half_busy_backgrounds_do_not_warn(paths, tmp_path):
    for i in range(2):
        write(tmp_path / "half" / f"busy{i}.png", busy_photo(i))
        write(tmp_path / "half" / f"plain{i}.jpg", jpeg(SHAPES[i], i))
    report = import_paths([tmp_path / "half"], paths=paths)
    assert (report.added, report.no_plain_background, report.warnings) == (4, 2, [])

    again = import_paths([tmp_path / "half", write(tmp_path / "busy9.png", busy_photo(9))], paths=paths)
    assert (again.added, again.duplicates, again.no_plain_background) == (1, 4, 1)
    assert len(again.warnings) == 1 and again.warnings[0].startswith("1 of 1 added photos")  # per import


def test_the_import_tab_shows_the_report_warning_and_what_near_duplicates_became(paths, tmp_path):
    from activelearn.ui import import_tab
    from activelearn.ui.context import UIContext

    incoming = paths.data / "incoming" / "batch"   # the default import root
    original = photo("tee", 3, PRODUCT_SIZE)
    write(incoming / "a.png", encode(original, "PNG"))
    write(incoming / "b.bmp", encode(original, "BMP"))  # the same pixels: a near-duplicate of a.png
    write(incoming / "c.png", encode(original, "PNG"))  # the same bytes as a.png: a duplicate
    for i in range(3):
        write(incoming / f"busy{i}.png", busy_photo(i))
    write(incoming / "notes.txt", b"http://example.com/a.jpg\n")
    expected = import_paths([incoming], paths=resolve_paths(tmp_path / "other-home")).warnings

    summary, outcomes, gallery = import_tab.import_files(UIContext(paths), None, str(incoming), False, 0.0, None)

    lines = summary.splitlines()
    assert lines[0].startswith("**Added 5** · duplicates skipped 1 · near-duplicates imported and flagged 1")
    assert len(expected) == 1 and lines[1] == f"- warning: {expected[0]}"
    assert "A near-duplicate (the same photo re-saved" in lines[2] and "is imported and flagged" in lines[2]
    said = dict(zip(outcomes["file"].map(lambda f: Path(f).name), outcomes["outcome"]))
    assert said == {"b.bmp": "imported as #2 and flagged: near-duplicate of #1 (a.png)",
                    "c.png": "skipped: byte-identical to a photo already imported",
                    "notes.txt": "rejected: not an image: not one of JPEG, PNG, WEBP, GIF, BMP, TIFF, AVIF"}
    assert store.get_item(store.open_db(paths.db), 2)["near_dup_of"] == 1   # stored, not only shown
    captions = {caption.split()[1]: caption for _, caption in gallery}
    assert captions["b.bmp"].endswith("[near-duplicate of #1: imported, flagged]")
    assert "near-duplicate" not in captions["a.png"]


def test_the_server_folder_box_reads_only_under_the_import_roots(paths, tmp_path, monkeypatch):
    import gradio as gr

    from activelearn.ui import import_tab
    from activelearn.ui.context import UIContext

    outside = tmp_path / "elsewhere"
    write(outside / "a.jpg", jpeg("box", 1))
    root = paths.data / "incoming"
    write(root / "ok" / "b.jpg", jpeg("tee", 2))
    (root / "ok" / "sneaky.jpg").symlink_to(outside / "a.jpg")
    (root / "door").symlink_to(outside)
    ctx = UIContext(paths)
    for typed in (str(outside), "/etc", str(root / ".." / ".." / ".."), str(root / "door")):
        with pytest.raises(gr.Error, match=r"is not in an import folder: put the photos under .*incoming"):
            import_tab.import_files(ctx, None, typed, False, 0.0, None)
    assert items(paths) == []

    summary, outcomes, _ = import_tab.import_files(ctx, None, str(root / "ok"), False, 0.0, None)
    assert summary.startswith("**Added 1**") and [r["original_name"] for r in items(paths)] == ["b.jpg"]
    assert list(outcomes["outcome"]) == ["rejected: link to a file outside the import folders refused"]

    monkeypatch.setenv("ACTIVELEARN_IMPORT_ROOTS", f"{tmp_path / 'nowhere'}{os.pathsep}{outside}")
    summary, _, _ = import_tab.import_files(ctx, None, str(outside), False, 0.0, None)
    assert summary.startswith("**Added 1**")


# ---------------------------------------------------------------- crash safety

def test_an_exception_mid_batch_leaves_only_whole_items(paths, tmp_path, monkeypatch):
    for i, shape in enumerate(SHAPES[:5]):
        write(tmp_path / "in" / shape / f"{i}.jpg", jpeg(shape, i))
    inserts = {"n": 0}
    real_insert = store.insert_item

    def failing_insert(db, **fields):
        inserts["n"] += 1
        if inserts["n"] == 3:
            raise RuntimeError("disk on fire")
        return real_insert(db, **fields)

    monkeypatch.setattr(store, "insert_item", failing_insert)
    with pytest.raises(RuntimeError, match="disk on fire"):
        import_paths([tmp_path / "in"], paths=paths, commit_every=2)
    monkeypatch.undo()

    assert [r["original_name"] for r in items(paths)] == ["boot/4.jpg", "box/0.jpg"]  # first batch only
    assert_consistent(paths)
    report = import_paths([tmp_path / "in"], paths=paths, commit_every=2)
    assert (report.added, report.duplicates) == (3, 2)
    assert len(items(paths)) == 5
    assert_consistent(paths)


_KILLED_IMPORT = """
import os, signal, sys
from activelearn.config import resolve_paths
from activelearn.ingest import import_paths

def die_after_seven(done, total):
    if done == 7:
        os.kill(os.getpid(), signal.SIGKILL)

import_paths([sys.argv[1]], paths=resolve_paths(sys.argv[2]), label_from_folders=True,
             commit_every=3, progress=die_after_seven)
"""


def test_a_killed_import_leaves_a_consistent_database_and_reimport_completes(tmp_path):
    folder = tmp_path / "in"
    for i in range(10):
        write(folder / "Bag" / f"{i:02d}.jpg", jpeg(SHAPES[i % len(SHAPES)], i))
    home = tmp_path / "home"
    killed = subprocess.run([sys.executable, "-c", _KILLED_IMPORT, str(folder), str(home)],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()

    paths = resolve_paths(home)
    assert len(items(paths)) == 6  # two committed batches of 3; the 7th file's row never landed
    assert_consistent(paths)
    db = store.open_db(paths.db)
    assert db.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 6  # each row with its label
    copies = sorted(p.name for p in paths.images.rglob("*") if p.is_file())
    assert len(copies) == 7  # the 7th copy is an orphan, which re-import reuses

    report = import_paths([folder], paths=paths, label_from_folders=True)
    assert (report.added, report.duplicates, report.labeled) == (4, 6, 4)
    assert len(items(paths)) == 10
    assert len(store.labeled_items(db)) == 10
    assert_consistent(paths)


def test_bad_arguments_are_refused_before_anything_is_read(paths, tmp_path):
    for fraction in (-0.1, 1.01):
        with pytest.raises(ActiveLearnError, match="holdout fraction must be between 0 and 1"):
            import_paths([tmp_path], paths=paths, holdout_fraction=fraction)
    with pytest.raises(ActiveLearnError, match="unknown source"):
        import_paths([tmp_path], paths=paths, source="camera")
