"""The Fashion-MNIST conversion on small synthetic photos drawn in each test."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from activelearn.convert import (
    WORK_SIDE,
    Conversion,
    dhash,
    hamming,
    normalize_image,
    open_for_conversion,
    to_fmnist,
)

CANVAS = (300, 400)
GARMENT_GREY = 60
#: A T-shirt, taller (200) than wide (160 with sleeves), symmetric about x=150.
TSHIRT = [
    (110, 100), (190, 100), (230, 150), (210, 170), (190, 145),
    (190, 300), (110, 300), (110, 145), (90, 170), (70, 150),
]


def draw(
    shape: list[tuple[int, int]], *, mode: str = "L", fill: object = GARMENT_GREY, background: object = 255
) -> Image.Image:
    img = Image.new(mode, CANVAS, background)
    ImageDraw.Draw(img).polygon(shape, fill=fill)
    return img


def tshirt_rgb() -> Image.Image:
    return draw(TSHIRT, mode="RGB", fill=(GARMENT_GREY,) * 3, background=(255, 255, 255))


def rect(left: int, top: int, right: int, bottom: int) -> list[tuple[int, int]]:
    return [(left, top), (right, top), (right, bottom), (left, bottom)]


def centroid(pixels: np.ndarray) -> tuple[float, float]:
    weights = pixels.astype(float)
    rows, cols = np.indices(pixels.shape)
    return float((rows * weights).sum() / weights.sum()), float((cols * weights).sum() / weights.sum())


def extent(pixels: np.ndarray, threshold: int = 30) -> tuple[int, int]:
    """Number of rows and of columns holding object pixels."""
    mask = pixels > threshold
    return int(mask.any(axis=1).sum()), int(mask.any(axis=0).sum())


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


def test_dark_garment_on_white_becomes_light_centred_28x28() -> None:
    result = to_fmnist(tshirt_rgb())

    assert isinstance(result, Conversion)
    assert result.pixels.shape == (28, 28) and result.pixels.dtype == np.uint8
    assert result.trimmed and result.flags == ()
    assert result.pixels[14, 14] > 150
    assert result.pixels[[0, 0, -1, -1], [0, -1, 0, -1]].max() == 0
    row, col = centroid(result.pixels)
    assert abs(row - 13.5) <= 2 and abs(col - 13.5) <= 2
    rows, cols = extent(result.pixels)
    assert rows >= 27, "the longest (vertical) side must span the 28 pixels"
    assert 18 <= cols <= 26, "the aspect ratio (160:200) must be kept"


def test_bbox_is_in_input_pixels() -> None:
    result = to_fmnist(tshirt_rgb())

    left, top, right, bottom = result.bbox
    assert abs(left - 70) <= 3 and abs(top - 100) <= 3 and abs(right - 231) <= 3 and abs(bottom - 301) <= 3


def test_wide_object_is_centred_vertically_between_black_bands() -> None:
    result = to_fmnist(draw(rect(30, 160, 270, 240)))

    rows_with_object = np.flatnonzero((result.pixels > 30).any(axis=1))
    assert extent(result.pixels)[1] >= 27
    assert 8 <= rows_with_object.size <= 11
    assert result.pixels[:8].max() == 0 and result.pixels[-8:].max() == 0
    assert abs(rows_with_object.mean() - 13.5) <= 1


def test_off_white_background_becomes_exact_black() -> None:
    photo = draw(TSHIRT, mode="RGB", fill=(40, 40, 90), background=(242, 238, 236))
    result = to_fmnist(photo)

    assert result.flags == ()
    backdrop_inside_bbox = result.pixels[20:, 3:6]  # beside the body, below the left sleeve
    assert backdrop_inside_bbox.max() == 0, "the off-white must map to exact black, not dark grey"
    assert result.pixels[14, 14] > 150


def to_bytes(img: Image.Image, fmt: str, **options: object) -> io.BytesIO:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    buffer.seek(0)
    return buffer


def cmyk() -> Image.Image:
    return tshirt_rgb().convert("CMYK")


def palette_with_transparency() -> Image.Image:
    # Index 0 is black *and* transparent: ignoring the transparency would give a black backdrop.
    img = draw(TSHIRT, mode="P", fill=1, background=0)
    img.putpalette([0, 0, 0, GARMENT_GREY, GARMENT_GREY, GARMENT_GREY])
    img.info["transparency"] = 0
    return Image.open(to_bytes(img, "PNG", transparency=0))


def rgba_transparent_black_backdrop() -> Image.Image:
    return draw(TSHIRT, mode="RGBA", fill=(GARMENT_GREY, GARMENT_GREY, GARMENT_GREY, 255), background=(0, 0, 0, 0))


def la_transparent_black_backdrop() -> Image.Image:
    return draw(TSHIRT, mode="LA", fill=(GARMENT_GREY, 255), background=(0, 0))


def grey_16_bit() -> Image.Image:
    img = Image.open(to_bytes(Image.fromarray(np.asarray(draw(TSHIRT)).astype(np.uint16) * 257), "PNG"))
    assert img.mode == "I;16"
    return img


def animated_gif_on_second_frame() -> Image.Image:
    first = draw(TSHIRT).convert("P")
    second = draw(rect(30, 160, 270, 240)).convert("P")
    img = Image.open(to_bytes(first, "GIF", save_all=True, append_images=[second], duration=100))
    assert img.n_frames == 2
    img.seek(1)
    return img


@pytest.mark.parametrize(
    "make",
    [
        cmyk,
        palette_with_transparency,
        rgba_transparent_black_backdrop,
        la_transparent_black_backdrop,
        grey_16_bit,
        animated_gif_on_second_frame,
    ],
)
def test_every_mode_converts_like_the_rgb_photo(make) -> None:
    reference = to_fmnist(tshirt_rgb()).pixels
    img = make()
    result = to_fmnist(img)

    assert normalize_image(img).mode == "RGB"
    assert result.flags == ()
    assert mean_abs_diff(result.pixels, reference) < 2


def test_16_bit_is_scaled_not_clipped() -> None:
    dark_16_bit = Image.fromarray(np.full((10, 10), 100 * 257, dtype=np.uint16))

    assert np.asarray(normalize_image(dark_16_bit)).max() == 100


def test_partly_transparent_pixels_are_blended_with_white() -> None:
    half_black = Image.new("RGBA", (4, 4), (0, 0, 0, 128))

    assert abs(int(np.asarray(normalize_image(half_black))[0, 0, 0]) - 127) <= 1


def test_exif_orientation_is_applied() -> None:
    wide = draw(rect(30, 160, 270, 240), mode="RGB", fill=(GARMENT_GREY,) * 3, background=(255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to display
    img = Image.open(to_bytes(wide, "JPEG", exif=exif, quality=95))
    rows, cols = extent(to_fmnist(img).pixels)

    assert rows >= 27 and cols <= 12, "displayed upright, the wide bar is tall"


def test_busy_image_converts_but_is_flagged() -> None:
    noise = np.random.default_rng(0).integers(0, 256, size=(CANVAS[1], CANVAS[0], 3), dtype=np.uint8)
    result = to_fmnist(Image.fromarray(noise, mode="RGB"))

    assert result.pixels.shape == (28, 28)
    assert not result.trimmed and result.bbox is None
    assert "no-plain-background" in result.flags


def test_object_touching_every_edge_is_flagged_untrimmed() -> None:
    cross = draw(rect(0, 180, 299, 220))
    ImageDraw.Draw(cross).polygon(rect(130, 0, 170, 399), fill=GARMENT_GREY)
    result = to_fmnist(cross)

    assert not result.trimmed and result.bbox is None
    assert result.flags == ("no-plain-background",)
    assert result.pixels[14, 14] > 150


def test_blank_images_are_black_and_flagged() -> None:
    noise = np.random.default_rng(1).normal(0, 1.5, (CANVAS[1], CANVAS[0], 3))
    noisy_grey = np.clip(240 + noise, 0, 255).astype(np.uint8)

    for blank in (Image.new("RGB", CANVAS, "white"), Image.fromarray(noisy_grey, mode="RGB")):
        result = to_fmnist(blank)
        assert result.flags == ("blank",)
        assert not result.trimmed and result.bbox is None
        assert result.pixels.shape == (28, 28) and result.pixels.max() == 0


def test_light_garment_on_dark_backdrop_is_flagged() -> None:
    result = to_fmnist(draw(TSHIRT, mode="RGB", fill=(230, 230, 230), background=(10, 10, 10)))

    assert "dark-background" in result.flags


def test_pixels_are_read_only() -> None:
    result = to_fmnist(tshirt_rgb())

    with pytest.raises(ValueError):
        result.pixels[0, 0] = 1


def test_open_for_conversion_lets_jpeg_decode_small_and_converts_the_same() -> None:
    photo = draw(TSHIRT, mode="RGB", fill=(40, 40, 90), background=(250, 250, 250)).resize((400, 533))
    data = to_bytes(photo, "JPEG", quality=90).getvalue()

    drafted = open_for_conversion(io.BytesIO(data))
    assert WORK_SIDE <= max(drafted.size) < 533
    full = Image.open(io.BytesIO(data))
    assert mean_abs_diff(to_fmnist(drafted).pixels, to_fmnist(full).pixels) < 4
    assert hamming(dhash(drafted), dhash(full)) <= 4
    assert open_for_conversion(to_bytes(photo, "PNG")).size == (400, 533)


def test_dhash_is_stable_under_recompression_and_brightness() -> None:
    photo = draw(TSHIRT, mode="RGB", fill=(40, 40, 90), background=(250, 250, 250))
    original = dhash(photo)
    recompressed = Image.open(to_bytes(photo, "JPEG", quality=60))
    brighter = Image.fromarray(np.clip(np.asarray(photo, dtype=int) + 8, 0, 255).astype(np.uint8))

    assert dhash(photo.copy()) == original
    assert hamming(original, dhash(recompressed)) <= 4
    assert hamming(original, dhash(brighter)) <= 4


def test_dhash_tells_different_images_apart() -> None:
    rng = np.random.default_rng(2)
    garment = dhash(draw(TSHIRT))
    others = [
        draw([(150, 60), (250, 340), (50, 340)]),  # a triangle: a different silhouette
        Image.fromarray(rng.integers(0, 256, (CANVAS[1], CANVAS[0]), dtype=np.uint8)),
    ]

    for other in others:
        assert hamming(garment, dhash(other)) > 10


def test_dhash_of_array_matches_image_and_fits_64_bits() -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (28, 28), dtype=np.uint8)

    assert dhash(pixels) == dhash(Image.fromarray(pixels))
    assert 0 <= dhash(pixels) < 2**64
    assert dhash(pixels, hash_size=16) < 2**256


def test_hamming_counts_differing_bits() -> None:
    assert hamming(0b1011, 0b0001) == 2
    assert hamming(2**63, 0) == 1
    assert hamming(12345, 12345) == 0
