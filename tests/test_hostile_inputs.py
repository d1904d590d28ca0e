"""Hostile inputs: each is refused with one sentence, touches nothing it should not, and the rest goes on.

Corrupt, huge and bomb images; archives that try to escape, link or inflate; URLs that drip,
point into the server's own network or are not URLs at all; text files that are not URL lists;
class names that would read differently from how they are stored. Everything runs offline
against local servers started here.
"""

from __future__ import annotations

import http.server
import io
import struct
import tarfile
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activelearn import store
from activelearn.config import resolve_paths
from activelearn.errors import ActiveLearnError
from activelearn.ingest import ImportLimits, import_paths
from tests.helpers import free_port


def jpeg(seed: int = 0, size: tuple[int, int] = (120, 160)) -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, (245, 245, 245))
    image.paste(tuple(int(v) for v in rng.integers(0, 160, 3)), (20, 30, size[0] - 20, size[1] - 30))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height grey pixels, with a tiny compressed body of zeros."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = zlib.compress(b"\0" * (width + 1) * 64, 9)  # only the start of the image: the header is what counts
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


@pytest.fixture
def paths(tmp_path):
    return resolve_paths(tmp_path / "home")


def reasons(report) -> dict[str, str]:
    return {r.file.split(":")[-1].split("/")[-1]: r.reason for r in report.rejected}


def stored_names(paths) -> list[str]:
    db = store.open_db(paths.db)
    return [row[0] for row in db.execute("SELECT original_name FROM items ORDER BY id")]


# ---------------------------------------------------------------- images

def test_corrupt_huge_and_bomb_images_are_refused_one_by_one(paths, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good = jpeg(1)
    files = {
        "00_good.jpg": good,
        "01_empty.jpg": b"",
        "02_truncated.jpg": good[:200],
        "03_garbage.jpg": np.random.default_rng(0).bytes(5000),
        "04_html.png": b"<script>alert(1)</script>",
        "05_bomb.png": png_bomb(30_000, 30_000),          # 900 megapixels in a few hundred bytes
        "07_svg.jpg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "08_eps.jpg": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",
        "09_huge.jpg": good + b"\0" * 2_000_000,            # over the per-file cap below
        "10_also_good.jpg": jpeg(2),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)

    report = import_paths([folder], paths=paths, limits=ImportLimits(max_file_bytes=1_000_000))

    assert stored_names(paths) == ["00_good.jpg", "10_also_good.jpg"]
    why = reasons(report)
    assert set(why) == set(files) - {"00_good.jpg", "10_also_good.jpg"}
    assert why["05_bomb.png"].startswith("decompression bomb") and "900" in why["05_bomb.png"]
    assert why["09_huge.jpg"].startswith("file too large")
    for reason in why.values():
        assert "\n" not in reason and "Traceback" not in reason and len(reason) < 300


# ---------------------------------------------------------------- archives

def test_hostile_zip_members_are_refused_and_nothing_is_written_outside(paths, tmp_path):
    archive_path = tmp_path / "drop" / "evil.zip"
    archive_path.parent.mkdir()
    with zipfile.ZipFile(archive_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("../../escape.jpg", jpeg(1))
        archive.writestr("/etc/cron.d/job.jpg", jpeg(2))
        archive.writestr("C:/Windows/evil.jpg", jpeg(3))
        link = zipfile.ZipInfo("link.jpg")
        link.external_attr = 0o120777 << 16
        archive.writestr(link, "/etc/shadow")
        archive.writestr("bomb.jpg", b"\0" * (30 * 1024 * 1024))   # 30 MB that deflates to ~30 KB
        archive.writestr("inner.zip", b"PK\x03\x04 nested archives are files, not imported as archives")
        archive.writestr("ok/fine.jpg", jpeg(4))

    report = import_paths([archive_path], paths=paths)

    assert stored_names(paths) == ["ok/fine.jpg"]
    why = {r.file.split(":", 1)[1]: r.reason for r in report.rejected}
    assert why["../../escape.jpg"].startswith("unsafe archive member ('..' in path)")
    assert why["/etc/cron.d/job.jpg"].startswith("unsafe archive member (absolute path)")
    assert why["C:/Windows/evil.jpg"].startswith("unsafe archive member (absolute path)")
    assert why["link.jpg"] == "link member refused: link.jpg"
    assert why["bomb.jpg"].startswith("file too large: 30.0 MB")
    assert why["inner.zip"].startswith("not an image")
    assert sorted(p.name for p in archive_path.parent.iterdir()) == ["evil.zip"]
    assert not (tmp_path / "escape.jpg").exists()


def test_a_tar_whose_header_understates_a_member_is_cut_at_the_cap(paths, tmp_path):
    tar_path = tmp_path / "lies.tar"
    with tarfile.open(tar_path, "w") as archive:
        for name, data in (("first.jpg", jpeg(1)), ("link", b"")):
            info = tarfile.TarInfo(name)
            if name == "link":
                info.type, info.linkname = tarfile.SYMTYPE, "../../../../etc/passwd"
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    report = import_paths([tar_path], paths=paths)
    assert stored_names(paths) == ["first.jpg"]
    assert [r.reason for r in report.rejected] == ["link member refused: link -> ../../../../etc/passwd"]


# ---------------------------------------------------------------- URLs

class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture
def web() -> Iterator[tuple[str, list[str]]]:
    """A local server: /photo.jpg, /drip (one byte every 2 s), /to-file (redirect to file://); logs each path."""
    seen: list[str] = []
    photo = jpeg(7)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            seen.append(self.path)
            if self.path == "/photo.jpg":
                self.send_response(200)
                self.send_header("Content-Length", str(len(photo)))
                self.end_headers()
                self.wfile.write(photo)
            elif self.path == "/drip":
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                try:
                    for _ in range(1000):
                        self.wfile.write(b"\xff")
                        self.wfile.flush()
                        time.sleep(2)
                except OSError:
                    pass
            elif self.path == "/to-file":
                self.send_response(302)
                self.send_header("Location", "file:///etc/passwd")
                self.end_headers()
            else:
                self.send_error(404)

        def log_message(self, *args):
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_dripping_server_is_cut_at_the_total_deadline(paths, web):
    url, _ = web
    limits = ImportLimits(url_timeout_s=10, url_total_s=3, allow_private_urls=True)
    start = time.monotonic()
    report = import_paths([f"{url}/drip", f"{url}/photo.jpg"], paths=paths, limits=limits)
    elapsed = time.monotonic() - start
    assert 2.5 < elapsed < 5.5, elapsed   # one byte every 2 s never trips the 10 s read timeout
    assert reasons(report) == {"drip": "download took longer than 3 s"}
    assert stored_names(paths) == [f"{url}/photo.jpg"]


def test_private_and_loopback_addresses_are_refused_before_connecting(paths, web, monkeypatch):
    monkeypatch.delenv("ACTIVELEARN_ALLOW_PRIVATE_URLS", raising=False)
    url, seen = web
    port = url.rsplit(":", 1)[1]
    hostile = [f"{url}/photo.jpg", f"http://127.0.0.1:{free_port()}/x.jpg", f"http://localhost:{port}/photo.jpg",
               f"http://[::1]:{port}/x.jpg", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x.jpg",
               "http://192.168.1.1/x.jpg", f"http://2130706433:{port}/photo.jpg", "http://0.0.0.0/x.jpg",
               f"http://[::ffff:127.0.0.1]:{port}/photo.jpg"]
    report = import_paths(hostile, paths=paths)
    assert stored_names(paths) == [] and seen == []   # not one request reached the server
    by_url = {r.file: r.reason for r in report.rejected}
    assert len(by_url) == len(hostile)
    for target, reason in by_url.items():
        assert reason.endswith("is on a private, loopback or link-local network: such addresses are not "
                               "fetched unless ACTIVELEARN_ALLOW_PRIVATE_URLS=1 allows them"), (target, reason)
    # an open and a closed port read the same: the refusal comes before any connection
    assert by_url[hostile[0]] == by_url[hostile[1]] == ("127.0.0.1 is on a private, loopback or link-local network: "
                                                        "such addresses are not fetched unless "
                                                        "ACTIVELEARN_ALLOW_PRIVATE_URLS=1 allows them")

    monkeypatch.setenv("ACTIVELEARN_ALLOW_PRIVATE_URLS", "1")   # the setting, e.g. for an intranet server
    allowed = import_paths([f"{url}/photo.jpg"], paths=paths)
    assert allowed.added == 1 and seen == ["/photo.jpg"]


@pytest.mark.parametrize("bad, reason", [
    ("ftp://example.com/a.jpg", "only http and https URLs are fetched"),
    ("file:///etc/passwd", "only http and https URLs are fetched"),
    ("gopher://127.0.0.1:70/", "only http and https URLs are fetched"),
    ("http://:80/a.jpg", "download failed: the URL names no host"),
    ("http://127.0.0.1:99999/a.jpg", "download failed: malformed URL"),
    ("http://no-such-host.invalid/a.jpg", "download failed: cannot resolve no-such-host.invalid"),
])
def test_malformed_and_non_http_urls_get_one_sentence(paths, bad, reason):
    report = import_paths([bad], paths=paths, limits=ImportLimits(allow_private_urls=True))
    assert [(r.file, r.reason) for r in report.rejected] == [(bad, reason)]


def test_a_redirect_to_a_file_url_is_refused(paths, web):
    url, _ = web
    report = import_paths([f"{url}/to-file"], paths=paths, limits=ImportLimits(allow_private_urls=True))
    assert reasons(report) == {"to-file": "only http and https URLs are fetched"}


def test_a_closed_port_and_a_dead_address_read_alike_when_private_urls_are_allowed(paths):
    limits = ImportLimits(allow_private_urls=True, url_timeout_s=1)
    report = import_paths([f"http://127.0.0.1:{free_port()}/a.jpg"], paths=paths, limits=limits)
    assert [r.reason for r in report.rejected] == ["download failed: could not connect to 127.0.0.1"]


def test_a_text_file_is_a_url_list_only_when_asked(paths, tmp_path, web):
    url, seen = web
    listing = tmp_path / "upload" / "urls.txt"
    listing.parent.mkdir()
    listing.write_text(f"{url}/photo.jpg\n")
    report = import_paths([listing], paths=paths, limits=ImportLimits(allow_private_urls=True))
    assert [r.reason for r in report.rejected] == [
        "a .txt or .csv file is not a photo; it is read as a list of image URLs only in URL-list mode"]
    assert seen == [] and stored_names(paths) == []
    asked = import_paths([listing], paths=paths, limits=ImportLimits(allow_private_urls=True), url_lists=True)
    assert asked.added == 1 and seen == ["/photo.jpg"]


# ---------------------------------------------------------------- class names

@pytest.mark.parametrize("name", [
    "<img src=x onerror=alert(1)>", "Shirts & tops", "T-shirt/top", "../../etc", "a..b", "42",
    "\u202eenilno", "Hat\u2066x\u2069", "Bad\x00name", "Line\nbreak", "  ", "x" * 65,
])
def test_class_names_that_would_read_wrong_are_refused(tmp_path, name):
    db = store.open_db(resolve_paths(tmp_path / "home").db)
    before = store.class_names(db)
    with pytest.raises(ActiveLearnError):
        store.add_class(db, name)
    assert store.class_names(db) == before


@pytest.mark.parametrize(("name", "reason"), [
    ("Shirts\\tops", "folder names"),               # a folder separator on Windows exports
    ("Hat\u200f", "invisible formatting"),           # right-to-left mark
    ("Hat\u061c", "invisible formatting"),           # Arabic letter mark
    ("Ha\u200bt", "invisible formatting"),           # zero-width space: reads as "Hat"
])
def test_class_names_with_backslashes_marks_or_invisible_characters_are_refused(tmp_path, name, reason):
    db = store.open_db(resolve_paths(tmp_path / "home").db)
    before = store.class_names(db)
    with pytest.raises(ActiveLearnError, match=reason):
        store.add_class(db, name)
    assert store.class_names(db) == before


def test_a_hostile_class_name_in_an_old_store_is_shown_escaped(tmp_path):
    """Names from before validation may hold markup; the importer's folder matching still works by name."""
    from tests.helpers import legacy_class

    paths = resolve_paths(tmp_path / "home")
    db = store.open_db(paths.db)
    legacy_class(db, "<b>Hats</b>")
    folder = tmp_path / "in" / "<b>Hats<_b>"
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_bytes(jpeg(3))
    report = import_paths([tmp_path / "in"], paths=paths, label_from_folders=True)
    assert report.added == 1 and report.labeled == 1   # "<b>Hats<_b>" matches "<b>Hats</b>" ignoring punctuation
    assert Path(store.get_item(db, report.added_ids[0])["stored_path"]).parts[:2] == ("data", "images")
