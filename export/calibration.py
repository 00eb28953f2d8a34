"""Calibration: one step of the export pipeline (prepare -> calibrate -> convert -> verify), shared by every
quantizing backend. ``calibration_images`` is the one reader: any image folder (recursive, sorted paths, the first N),
preprocessed as the parity and eval images are.

Calibration images are never the parity images: the parity check runs on the bundled photos' centre crops and
seeded noise (``emo.export.parity``); a ``--calibration`` folder holding a bundled photo, or a copy of one
(re-encoded, resized, grey: compared by picture, not by bytes), is refused, and the default set (no
``--calibration``) is random-resized crops and flips of the bundled photos — other pixels than the parity crops, but
only four scenes: a poor calibration set, and the export says so loudly.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emo.checkpoint import sha256_file
from emo.data import load_image, sample_images, to_unit_array
from emo.errors import EMOError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pgm")
DEFAULT_COUNT = 64              # images read from --calibration DIR (sorted paths, the first N)
DEFAULT_SET_COUNT = 32          # augmented crops of the bundled photos when no --calibration is given
DEFAULT_SET_SEED = 2024
MAX_COUNT = 10_000
DEFAULT_SET_WARNING = ("WARNING: no --calibration DIR given: calibrating quantization ranges on {n} random crops of "
                       "the 4 bundled sample photos. That is a poor calibration set (four scenes, none from your "
                       "data); pass --calibration DIR with a few hundred images like the ones the model will see.")


@dataclass
class Calibration:
    """Calibration images (N, 3, H, W) float32 RGB in [0, 1], and where they came from (for the sidecar)."""

    images: np.ndarray
    source: str
    sha256: str                   # over the image files' digests in order (or the default set's recipe)

    def record(self) -> dict:
        return {"source": self.source, "count": int(len(self.images)), "sha256": self.sha256}


def _augmented_crop(image, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random-resized crop (scale 0.25..0.8 of the area, aspect 3/4..4/3) with a random flip: never the centre
    crop that the parity check uses."""
    from PIL import Image

    w, h = image.size
    area = w * h * rng.uniform(0.25, 0.8)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw = int(min(w, round(np.sqrt(area * aspect))))
    ch = int(min(h, round(np.sqrt(area / aspect))))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    crop = image.crop((left, top, left + cw, top + ch)).resize((size[1], size[0]), Image.BICUBIC)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(crop, dtype=np.float32).transpose(2, 0, 1) / 255.0


def default_calibration(size: tuple[int, int], count: int = DEFAULT_SET_COUNT) -> Calibration:
    rng = np.random.default_rng(DEFAULT_SET_SEED)
    photos = [load_image(p) for p in sample_images()]
    images = np.stack([_augmented_crop(photos[i % len(photos)], size, rng) for i in range(count)])
    recipe = f"bundled photos, {count} random-resized crops, seed {DEFAULT_SET_SEED}"
    return Calibration(images.astype(np.float32), f"default: {recipe}", hashlib.sha256(recipe.encode()).hexdigest())


def find_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, hidden files skipped), in sorted order."""
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith("."))


def check_calibration_folder(folder: str | Path) -> Path:
    """Bad ``--calibration`` input is refused before any slow work."""
    path = Path(folder)
    if not path.exists():
        raise EMOError(f"--calibration folder not found: {path}")
    if not path.is_dir():
        raise EMOError(f"--calibration {path} is not a folder; pass a folder of images (searched recursively)")
    if not find_images(path):
        raise EMOError(f"--calibration {path} holds no images ({', '.join(IMAGE_SUFFIXES[:5])}, ...)")
    return path


def calibration_images(folder: str | Path | None, count: int | None, size: tuple[int, int]) -> Calibration:
    """The calibration set at the export size, preprocessed as the parity and eval images are (resize, centre
    crop, [0, 1]). From ``folder``: the first ``count`` images in sorted path order (deterministic); a bundled
    parity photo among them is an error. Without a folder: the documented default set, with a loud warning."""
    if count is not None and not 1 <= count <= MAX_COUNT:
        raise EMOError(f"--calibration-count {count} is out of range; use 1..{MAX_COUNT}")
    if folder is None:
        calibration = default_calibration(size, count or DEFAULT_SET_COUNT)
        print(DEFAULT_SET_WARNING.format(n=len(calibration.images)), file=sys.stderr)
        return calibration
    paths = find_images(check_calibration_folder(folder))[: count or DEFAULT_COUNT]
    parity_thumbnails = [thumbnail(load_image(p)) for p in sample_images()]
    digest = hashlib.sha256()
    images = []
    for path in paths:
        image = load_image(path)
        if any(same_picture(thumbnail(image), t) for t in parity_thumbnails):
            raise EMOError(f"--calibration {path} is one of the parity images (emo/assets/samples), or a copy of "
                           "one (re-encoded, resized or grey); calibration images must not be the images the int8 "
                           "artifact is checked on: remove it")
        digest.update(bytes.fromhex(sha256_file(path)))
        images.append(to_unit_array(image, size))
    return Calibration(np.stack(images).astype(np.float32), str(Path(folder).resolve()), digest.hexdigest())


THUMBNAIL = 32
SAME_PICTURE_LEVELS = 8.0  # mean |difference| of the grey thumbnails, in 8-bit levels


def thumbnail(image) -> np.ndarray:
    """A 32x32 grey thumbnail of the whole picture (aspect ignored): what stays when a photo is re-encoded, resized
    or turned grey."""
    from PIL import Image

    return np.asarray(image.convert("L").resize((THUMBNAIL, THUMBNAIL), Image.BICUBIC), dtype=np.float32)


def same_picture(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two thumbnails show the same picture. Measured on the bundled photos: a JPEG re-encode at quality 30
    differs by 0.5-0.7 levels, a copy at a third of the size by 0.2, a grey copy by 0; two different photos by 53-76,
    Fashion-MNIST images from every photo by more than 36."""
    return float(np.abs(a - b).mean()) < SAME_PICTURE_LEVELS


