"""Synthetic product photos: deterministic, photo-like, and converting back to their source."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activelearn import FMNIST_CLASSES
from activelearn.convert import to_fmnist
from activelearn.synthetic import make_product_photo, safe_folder_name, write_product_photos

FMNIST_TEST_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"


def tshirt() -> np.ndarray:
    """A Fashion-MNIST-like T-shirt: sleeves, neckline, shaded top to bottom, spanning 28 rows."""
    silhouette = np.zeros((28, 28), dtype=np.uint8)
    silhouette[0:28, 7:21] = 1
    silhouette[1:10, 1:27] = 1
    silhouette[0:3, 11:17] = 0
    shade = np.linspace(220, 140, 28).astype(np.uint8)[:, None]
    return silhouette * shade


def round_trip(source: np.ndarray, seed: int) -> np.ndarray:
    """Source -> photo -> JPEG bytes (as scraped) -> to_fmnist pixels."""
    buffer = io.BytesIO()
    make_product_photo(source, rng=np.random.default_rng(seed)).save(buffer, format="JPEG", quality=90)
    buffer.seek(0)
    result = to_fmnist(Image.open(buffer))
    assert result.flags == ()
    return result.pixels


def contrast_matched_error(converted: np.ndarray, source: np.ndarray) -> float:
    """Mean absolute difference after scaling ``converted`` by the least-squares gain onto ``source``.

    The photo's garment colour sets how much contrast survives (a mid-grey garment on
    off-white keeps about half), which says nothing about shape; the gain removes it.
    """
    converted = converted.astype(float)
    target = source.astype(float)
    gain = (converted * target).sum() / max((converted * converted).sum(), 1.0)
    return float(np.abs(gain * converted - target).mean())


def test_same_seed_same_photo_other_seed_other_photo() -> None:
    first = make_product_photo(tshirt(), rng=np.random.default_rng(7))
    again = make_product_photo(tshirt(), rng=np.random.default_rng(7))
    other = make_product_photo(tshirt(), rng=np.random.default_rng(8))

    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))


def test_photo_size_mode_and_backdrop() -> None:
    photo = make_product_photo(tshirt(), rng=np.random.default_rng(0))
    small = make_product_photo(tshirt(), size=(120, 90), rng=np.random.default_rng(0))
    pixels = np.asarray(photo).astype(int)

    assert photo.mode == "RGB" and photo.size == (400, 533)
    assert small.size == (120, 90)
    border = np.concatenate([pixels[:20].reshape(-1, 3), pixels[-20:].reshape(-1, 3)])
    assert border.min() >= 225, "the backdrop is off-white"
    assert np.ptp(border, axis=0).max() <= 20, "the backdrop is nearly uniform"
    garment_share = (pixels.max(axis=2) < border.min() - 40).mean()
    assert 0.1 < garment_share < 0.6, "a garment clearly darker than the backdrop fills much of the photo"


def test_rejects_images_that_are_not_28x28() -> None:
    with pytest.raises(ValueError, match="28, 28"):
        make_product_photo(np.zeros((32, 32), np.uint8), rng=np.random.default_rng(0))


def test_round_trip_of_a_synthetic_garment_stays_close() -> None:
    errors = [contrast_matched_error(round_trip(tshirt(), seed), tshirt()) for seed in range(10)]

    # Measured: mean 12.1, range 8-18 (the spread comes from garment colour: a light
    # garment keeps less contrast, so JPEG noise weighs more). The same conversion moved
    # by one pixel scores 19-24 on a photo that scores 8.7 in place.
    assert np.mean(errors) < 16


@pytest.mark.skipif(not FMNIST_TEST_IMAGES.exists(), reason=f"no Fashion-MNIST test images at {FMNIST_TEST_IMAGES}")
def test_round_trip_of_real_fashion_mnist_images_stays_close() -> None:
    with gzip.open(FMNIST_TEST_IMAGES) as stream:
        header_and_images = stream.read(16 + 20 * 28 * 28)
    sources = np.frombuffer(header_and_images, dtype=np.uint8, offset=16).reshape(20, 28, 28)

    errors = np.array([contrast_matched_error(round_trip(src, index), src) for index, src in enumerate(sources)])

    # Measured on these 20: mean 12.2, worst 28.7 (a light garment whose re-sharpened
    # outline dominates). Two *different* test images score 57 on average.
    assert errors.mean() < 20
    assert errors.max() < 40


def test_safe_folder_name() -> None:
    assert safe_folder_name("T-shirt/top") == "T-shirt_top"
    assert safe_folder_name("Ankle boot") == "Ankle_boot"
    assert safe_folder_name("../etc") == "etc"
    assert safe_folder_name("///") == "class"


def test_write_product_photos_into_sanitised_class_folders(tmp_path: Path) -> None:
    images = np.stack([tshirt()] * 3)
    paths = write_product_photos(tmp_path, images, [0, 9, 0], FMNIST_CLASSES, label_folders=True, seed=3)

    assert [path.parent.name for path in paths] == ["T-shirt_top", "Ankle_boot", "T-shirt_top"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Ankle_boot", "T-shirt_top"]
    assert len(set(paths)) == 3
    with Image.open(paths[1]) as photo:
        assert photo.format == "JPEG" and photo.size == (400, 533)


def test_write_product_photos_is_deterministic_per_seed(tmp_path: Path) -> None:
    images = np.stack([tshirt(), 255 - tshirt()])

    first = write_product_photos(tmp_path / "a", images, [1, 1], FMNIST_CLASSES, fmt="PNG", seed=5)
    again = write_product_photos(tmp_path / "b", images, [1, 1], FMNIST_CLASSES, fmt="PNG", seed=5)
    other = write_product_photos(tmp_path / "c", images, [1, 1], FMNIST_CLASSES, fmt="PNG", seed=6)

    assert [p.relative_to(tmp_path / "a") for p in first] == [Path("photo_00000.png"), Path("photo_00001.png")]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    assert first[0].read_bytes() != other[0].read_bytes()


def test_write_product_photos_rejects_mismatched_labels(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="labels"):
        write_product_photos(tmp_path, np.stack([tshirt()]), [0, 1], FMNIST_CLASSES)
