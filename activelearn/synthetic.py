"""Product-like photos made from Fashion-MNIST images, so tests, benchmarks and the demo
have scraped-looking inputs whose true labels are known.

Each photo undoes the Fashion-MNIST conversion roughly: the 28x28 image is negated
(dark garment on light), upscaled smoothly, coloured and textured, and placed near the
centre of a light, nearly uniform backdrop with a little sensor-like noise. Running
:func:`activelearn.convert.to_fmnist` on it gives back an image close to the source.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

#: File extension per Pillow format name, for the formats worth writing here.
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}
_LOSSY_FORMATS = frozenset({"JPEG", "WEBP"})


def make_product_photo(
    fmnist_image: np.ndarray, *, size: tuple[int, int] = (400, 533), rng: np.random.Generator
) -> Image.Image:
    """Render one (28, 28) uint8 Fashion-MNIST image as an RGB product photo of ``size`` (width, height).

    The garment gets a random dark-to-mid colour (so it stays clearly darker than the
    backdrop, as in the Zalando shots), a soft fabric texture, and fills 60-80% of the
    shorter canvas side; the backdrop is a random off-white (235-255) with slight noise.
    """
    if fmnist_image.shape != (28, 28):
        raise ValueError(f"expected a (28, 28) image, got {fmnist_image.shape}")
    width, height = size
    side = int(round(rng.uniform(0.6, 0.8) * min(width, height)))
    coverage = (
        np.asarray(
            Image.fromarray(fmnist_image.astype(np.uint8), mode="L").resize((side, side), Image.Resampling.BICUBIC),
            dtype=np.float32,
        )
        / 255.0
    )
    coverage = np.clip(coverage, 0.0, 1.0)[..., None]

    backdrop_level = rng.uniform(235, 255)
    backdrop = np.clip(backdrop_level + rng.uniform(-3, 3, size=3), 0, 255).astype(np.float32)
    garment_colour = rng.uniform(10, 150, size=3).astype(np.float32)
    garment = garment_colour * _fabric_texture(side, rng)[..., None]

    canvas = np.empty((height, width, 3), dtype=np.float32)
    canvas[:] = backdrop
    max_dx, max_dy = (width - side) // 8, (height - side) // 8
    left = (width - side) // 2 + int(rng.integers(-max_dx, max_dx + 1))
    top = (height - side) // 2 + int(rng.integers(-max_dy, max_dy + 1))
    region = canvas[top : top + side, left : left + side]
    region[:] = region * (1.0 - coverage) + garment * coverage

    canvas += rng.normal(0.0, 1.5, size=canvas.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), mode="RGB")


def _fabric_texture(side: int, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative shading around 1.0: faint stripes plus a smooth light gradient."""
    coords = np.arange(side, dtype=np.float32)
    period = rng.uniform(6, 20)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    stripes = 0.06 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    gradient = 0.08 * (yy / side - 0.5)
    return (1.0 + stripes + gradient).astype(np.float32)


def safe_folder_name(class_name: str) -> str:
    """A folder name for a class: anything but letters, digits, '-', '_' and '.' becomes '_'.

    "T-shirt/top" would otherwise make a nested folder; "Ankle boot" becomes "Ankle_boot".
    """
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", class_name).strip("._")
    return name or "class"


def write_product_photos(
    folder: str | Path,
    images: np.ndarray | Sequence[np.ndarray],
    labels: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    *,
    fmt: str = "JPEG",
    label_folders: bool = False,
    seed: int = 0,
    quality: int = 90,
) -> list[Path]:
    """Write one product photo per image and return the paths, in input order.

    With ``label_folders`` each file goes under ``<folder>/<safe class name>/``, the layout
    an import-by-folder expects. Each photo's randomness comes from ``(seed, index)``, so a
    seed gives the same bytes whatever else is written alongside.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    fmt = fmt.upper()
    extension = _EXTENSIONS.get(fmt, "." + fmt.lower())
    save_options = {"quality": quality} if fmt in _LOSSY_FORMATS else {}
    root = Path(folder)
    digits = max(5, len(str(len(images) - 1)))
    paths: list[Path] = []
    for index, (image, label) in enumerate(zip(images, labels)):
        target = root / safe_folder_name(class_names[int(label)]) if label_folders else root
        target.mkdir(parents=True, exist_ok=True)
        path = target / f"photo_{index:0{digits}d}{extension}"
        photo = make_product_photo(np.asarray(image), rng=np.random.default_rng([seed, index]))
        photo.save(path, format=fmt, **save_options)
        paths.append(path)
    return paths
