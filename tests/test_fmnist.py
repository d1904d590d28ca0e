"""Fashion-MNIST loader: IDX parsing, verification, downloading, splitting."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from activelearn import FMNIST_CLASSES
from activelearn.errors import DatasetError
from activelearn.fmnist import (
    OFFICIAL_FILES,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    ensure_files,
    load_fashion_mnist,
    read_idx,
    validation_split,
    write_idx,
)
from tests.helpers import free_port

REAL_DIR = Path(os.environ.get("ACTIVELEARN_FMNIST_DIR")
                or Path(__file__).resolve().parents[2] / "shared" / "fashion-mnist")


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def idx_bytes(array: np.ndarray) -> bytes:
    """Hand-built IDX (uncompressed), independent of write_idx."""
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Four gzip'd IDX files: 20 train and 10 test 28x28 images with labels 0..9."""
    rng = np.random.default_rng(1)
    src = tmp_path_factory.mktemp("src")
    arrays = {
        TRAIN_IMAGES: rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        TRAIN_LABELS: (np.arange(20) % 10).astype(np.uint8),
        TEST_IMAGES: rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        TEST_LABELS: np.arange(10, dtype=np.uint8)[::-1].copy(),
    }
    for name, array in arrays.items():
        write_idx(src / name, array)
    return {name: (src / name).read_bytes() for name in OFFICIAL_FILES}


def checksums_of(files: dict[str, bytes]) -> dict[str, str]:
    return {name: md5(data) for name, data in files.items()}


def put(directory: Path, files: dict[str, bytes]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)


# ------------------------------------------------------------------- IDX

def test_write_idx_read_idx_round_trip(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3, 5, 1, 8], dtype=np.uint8)
    write_idx(tmp_path / "i.gz", images)
    write_idx(tmp_path / "l.gz", labels)
    np.testing.assert_array_equal(read_idx(tmp_path / "i.gz"), images)
    np.testing.assert_array_equal(read_idx(tmp_path / "l.gz"), labels)
    assert read_idx(tmp_path / "i.gz").dtype == np.uint8
    # gzip'd, with the standard IDX header inside
    raw = gzip.decompress((tmp_path / "i.gz").read_bytes())
    assert raw[:16] == bytes.fromhex("00000803") + struct.pack(">3I", 7, 28, 28)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.gz", "l.gz"]  # no temp leftovers


def test_write_idx_is_deterministic(tmp_path: Path) -> None:
    labels = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", labels)
    write_idx(tmp_path / "b.gz", labels)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_write_idx_rejects_non_uint8_and_2d(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        write_idx(tmp_path / "x.gz", np.arange(5, dtype=np.int64))
    with pytest.raises(ValueError, match="1-D labels or 3-D images"):
        write_idx(tmp_path / "x.gz", np.zeros((2, 2), dtype=np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_read_idx_reads_plain_hand_built_file(tmp_path: Path) -> None:
    labels = np.array([4, 2, 7], dtype=np.uint8)
    (tmp_path / "labels").write_bytes(idx_bytes(labels))
    np.testing.assert_array_equal(read_idx(tmp_path / "labels"), labels)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_read_idx_truncated(tmp_path: Path, compress: bool) -> None:
    data = idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8))[:-100]
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(DatasetError, match="truncated") as err:
        read_idx(path)
    assert "short.gz" in str(err.value) and "2352" in str(err.value)


def test_read_idx_truncated_header(tmp_path: Path) -> None:
    (tmp_path / "h").write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(tmp_path / "h")


@pytest.mark.parametrize("magic", ["00000802", "00000903", "12345678", "00000804"])
def test_read_idx_wrong_magic(tmp_path: Path, magic: str) -> None:
    path = tmp_path / "bad-magic"
    path.write_bytes(bytes.fromhex(magic) + struct.pack(">I", 1) + b"\x00" * 8)
    with pytest.raises(DatasetError, match="wrong magic number") as err:
        read_idx(path)
    assert "bad-magic" in str(err.value) and magic in str(err.value)


def test_read_idx_trailing_garbage(tmp_path: Path) -> None:
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(np.arange(5, dtype=np.uint8)) + b"junk")
    with pytest.raises(DatasetError, match="trailing garbage") as err:
        read_idx(path)
    assert "long" in str(err.value)


def test_read_idx_bad_gzip_stream(tmp_path: Path) -> None:
    good = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8)))
    (tmp_path / "garbled.gz").write_bytes(good[:10] + b"\xff" * 20 + good[30:])
    (tmp_path / "cut.gz").write_bytes(good[: len(good) // 2])
    for name in ("garbled.gz", "cut.gz"):
        with pytest.raises(DatasetError, match="gzip") as err:
            read_idx(tmp_path / name)
        assert name in str(err.value)


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        read_idx(tmp_path / "nope.gz")


# -------------------------------------------------------- loading, verifying

def test_load_tiny_complete_set(tmp_path: Path, tiny_set: dict[str, bytes]) -> None:
    put(tmp_path / "fm", tiny_set)
    data = load_fashion_mnist(tmp_path / "fm", download=False, checksums=checksums_of(tiny_set),
                              progress=False)
    assert data.x_train.shape == (20, 28, 28) and data.x_train.dtype == np.uint8
    assert data.y_train.shape == (20,) and data.y_train.dtype == np.uint8
    assert data.x_test.shape == (10, 28, 28) and data.y_test.shape == (10,)
    assert data.class_names == FMNIST_CLASSES and len(data.class_names) == 10
    np.testing.assert_array_equal(data.y_test, np.arange(10)[::-1])


def test_md5_mismatch_names_file_and_both_hashes(tmp_path: Path, tiny_set: dict[str, bytes]) -> None:
    put(tmp_path, tiny_set)
    sums = checksums_of(tiny_set)
    (tmp_path / TRAIN_LABELS).write_bytes(tiny_set[TRAIN_LABELS] + b"x")
    actual = md5(tiny_set[TRAIN_LABELS] + b"x")
    with pytest.raises(DatasetError) as err:
        load_fashion_mnist(tmp_path, download=False, checksums=sums, progress=False)
    message = str(err.value)
    assert TRAIN_LABELS in message and sums[TRAIN_LABELS] in message and actual in message
    assert "Delete" in message


def test_md5_mismatch_is_detected_after_file_changes(tmp_path: Path, tiny_set: dict[str, bytes]) -> None:
    put(tmp_path, tiny_set)
    sums = checksums_of(tiny_set)
    ensure_files(tmp_path, download=False, checksums=sums)
    bad = bytearray(tiny_set[TEST_LABELS])
    bad[-5] ^= 0xFF
    (tmp_path / TEST_LABELS).write_bytes(bytes(bad))
    with pytest.raises(DatasetError, match="MD5"):
        ensure_files(tmp_path, download=False, checksums=sums)


def test_count_mismatch(tmp_path: Path, tiny_set: dict[str, bytes]) -> None:
    files = dict(tiny_set)
    write_idx(tmp_path / "labels.gz", np.zeros(19, dtype=np.uint8))
    files[TRAIN_LABELS] = (tmp_path / "labels.gz").read_bytes()
    put(tmp_path / "fm", files)
    with pytest.raises(DatasetError, match="count mismatch") as err:
        load_fashion_mnist(tmp_path / "fm", download=False, checksums=checksums_of(files),
                           progress=False)
    assert "20 images" in str(err.value) and "19 labels" in str(err.value)


def test_label_out_of_range(tmp_path: Path, tiny_set: dict[str, bytes]) -> None:
    files = dict(tiny_set)
    write_idx(tmp_path / "labels.gz", np.full(10, 10, dtype=np.uint8))
    files[TEST_LABELS] = (tmp_path / "labels.gz").read_bytes()
    put(tmp_path / "fm", files)
    with pytest.raises(DatasetError, match="out of range"):
        load_fashion_mnist(tmp_path / "fm", download=False, checksums=checksums_of(files),
                           progress=False)


def test_wrong_image_size(tmp_path: Path, tiny_set: dict[str, bytes]) -> None:
    files = dict(tiny_set)
    write_idx(tmp_path / "images.gz", np.zeros((10, 32, 32), dtype=np.uint8))
    files[TEST_IMAGES] = (tmp_path / "images.gz").read_bytes()
    put(tmp_path / "fm", files)
    with pytest.raises(DatasetError, match="28x28"):
        load_fashion_mnist(tmp_path / "fm", download=False, checksums=checksums_of(files),
                           progress=False)


def test_missing_without_download_names_files_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        ensure_files(tmp_path / "empty", download=False)
    message = str(err.value)
    assert all(name in message for name in OFFICIAL_FILES)
    assert str(tmp_path / "empty") in message and "--fmnist-dir" in message
    assert not (tmp_path / "empty").exists()


# ----------------------------------------------------------------- download

class _Mirror:
    """Files served over HTTP from 127.0.0.1; corrupt=True flips bytes in flight."""

    def __init__(self, files: dict[str, bytes], corrupt: bool = False) -> None:
        self.files, self.corrupt, self.requests = files, corrupt, []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                mirror.requests.append(self.path)
                body = mirror.files.get(self.path.rsplit("/", 1)[-1])
                if body is None:
                    self.send_error(404)
                    return
                if mirror.corrupt:
                    body = bytes(b ^ 0x5A for b in body)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/data/"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator:
    mirrors: list[_Mirror] = []

    def start(files: dict[str, bytes], corrupt: bool = False) -> _Mirror:
        mirrors.append(_Mirror(files, corrupt))
        return mirrors[-1]

    yield start
    for mirror in mirrors:
        mirror.close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local mirrors must be reached directly, whatever proxy the machine sets."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/"  # nothing listens there


def test_download_from_local_mirror(tmp_path: Path, tiny_set: dict[str, bytes], serve) -> None:
    mirror = serve(tiny_set)
    target = tmp_path / "new" / "fm"
    paths = ensure_files(target, mirrors=[mirror.url], checksums=checksums_of(tiny_set),
                         timeout=5, retries=1, progress=False)
    assert set(paths) == set(OFFICIAL_FILES)
    for name, path in paths.items():
        assert path == target / name and path.read_bytes() == tiny_set[name]
    assert sorted(p.name for p in target.iterdir()) == sorted(OFFICIAL_FILES)
    # Second call finds verified files and does not download again.
    before = len(mirror.requests)
    data = load_fashion_mnist(target, checksums=checksums_of(tiny_set), progress=False)
    assert len(mirror.requests) == before and data.x_train.shape == (20, 28, 28)


def test_download_only_fetches_missing_files(tmp_path: Path, tiny_set: dict[str, bytes], serve) -> None:
    put(tmp_path, {n: d for n, d in tiny_set.items() if n != TEST_IMAGES})
    mirror = serve(tiny_set)
    ensure_files(tmp_path, mirrors=[mirror.url], checksums=checksums_of(tiny_set),
                 timeout=5, retries=1, progress=False)
    assert mirror.requests == [f"/data/{TEST_IMAGES}"]
    assert (tmp_path / TEST_IMAGES).read_bytes() == tiny_set[TEST_IMAGES]


def test_404_mirror_falls_through_to_second(tmp_path: Path, tiny_set: dict[str, bytes], serve) -> None:
    empty, full = serve({}), serve(tiny_set)
    ensure_files(tmp_path, mirrors=[empty.url, full.url], checksums=checksums_of(tiny_set),
                 timeout=5, retries=3, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(OFFICIAL_FILES)
    assert len(empty.requests) == 4  # a 404 is not retried
    assert len(full.requests) == 4


def test_corrupt_download_leaves_nothing(tmp_path: Path, tiny_set: dict[str, bytes], serve) -> None:
    mirror = serve(tiny_set, corrupt=True)
    with pytest.raises(DatasetError) as err:
        ensure_files(tmp_path, mirrors=[mirror.url], checksums=checksums_of(tiny_set),
                     timeout=5, retries=2, progress=False)
    assert "MD5 mismatch" in str(err.value)
    assert len(mirror.requests) == 2  # retried, then gave up on the first missing file
    assert list(tmp_path.iterdir()) == []  # no final file, no temporary leftovers


def test_unreachable_mirrors_name_files_and_folder(tmp_path: Path) -> None:
    target = tmp_path / "offline"
    with pytest.raises(DatasetError) as err:
        ensure_files(target, mirrors=[closed_port_url(), closed_port_url()],
                     timeout=2, retries=1, progress=False)
    message = str(err.value)
    assert all(name in message for name in OFFICIAL_FILES)
    assert str(target) in message
    assert "--fmnist-dir" in message and "ACTIVELEARN_FMNIST_DIR" in message
    assert list(target.iterdir()) == []


# ------------------------------------------------------------------ splitting

def test_validation_split_is_stratified_disjoint_and_seeded() -> None:
    y = np.repeat(np.arange(10), [100, 100, 100, 100, 100, 100, 100, 100, 100, 103])
    train_idx, val_idx = validation_split(y, n_val=50, seed=3)
    assert len(val_idx) == 50 and len(train_idx) == len(y) - 50
    assert np.intersect1d(train_idx, val_idx).size == 0
    assert np.union1d(train_idx, val_idx).size == len(y)
    assert np.bincount(y[val_idx], minlength=10).tolist() == [5] * 10
    again = validation_split(y, n_val=50, seed=3)
    other = validation_split(y, n_val=50, seed=4)
    np.testing.assert_array_equal(again[1], val_idx)
    assert not np.array_equal(other[1], val_idx)


def test_validation_split_uneven_classes_sums_exactly() -> None:
    y = np.repeat(np.arange(3), [7, 11, 13])
    _, val_idx = validation_split(y, n_val=10, seed=0)
    assert len(val_idx) == 10
    assert np.bincount(y[val_idx], minlength=3).tolist() == [2, 4, 4]


def test_validation_split_rejects_impossible_sizes() -> None:
    with pytest.raises(ValueError):
        validation_split(np.arange(10) % 2, n_val=10)
    with pytest.raises(ValueError):
        validation_split(np.arange(10) % 2, n_val=0)


# ------------------------------------------------------------------ real data

@pytest.mark.skipif(not REAL_DIR.is_dir(),
                    reason=f"real Fashion-MNIST folder {REAL_DIR} absent "
                           "(set ACTIVELEARN_FMNIST_DIR to a folder with the four .gz files)")
def test_real_fashion_mnist() -> None:
    data = load_fashion_mnist(REAL_DIR, download=False, progress=False)
    assert data.x_train.shape == (60000, 28, 28) and data.x_test.shape == (10000, 28, 28)
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.uint8
    assert np.bincount(data.y_train, minlength=10).tolist() == [6000] * 10
    assert np.bincount(data.y_test, minlength=10).tolist() == [1000] * 10
    train_idx, val_idx = validation_split(data.y_train)
    assert len(train_idx) == 55000 and len(val_idx) == 5000
    assert np.bincount(data.y_train[val_idx], minlength=10).tolist() == [500] * 10
