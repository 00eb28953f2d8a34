"""Fashion-MNIST (Xiao et al., 2017) from its idx files to the ImageFolder layout that ``emo-train``/``emo-eval`` read.

The Debian package ``dataset-fashion-mnist`` installs the four official files under
``/usr/share/datasets/fashion-mnist``: 70,000 real 28x28 grayscale photos of 10 kinds of clothing, split
60,000 (train) / 10,000 (test) by the authors.

``python -m emo.fashion_mnist --out DIR`` writes ``DIR/train`` (the official training split minus ``--val`` images
held out, balanced over classes, for model selection), ``DIR/val`` and ``DIR/test`` (the official test split, for the
accuracy report only: no one tunes on it). Images are upscaled with bicubic interpolation to ``--size`` and stored as
8-bit grayscale PNGs (lossless); ``emo.data.load_image`` turns them into RGB (R = G = B) when they are read.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

from emo.errors import EMOError, first_line

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
# Folder names sort in label order (ImageFolder sorts class folders), so class index == official label.
CLASSES = ("0_t-shirt_top", "1_trouser", "2_pullover", "3_dress", "4_coat",
           "5_sandal", "6_shirt", "7_sneaker", "8_bag", "9_ankle_boot")
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
SIZES = {"train": 60000, "test": 10000}


def _read_idx(path: Path, kind: int) -> np.ndarray:
    """An idx file (magic 0x0000080N: unsigned bytes, N dimensions), gzip-compressed or not."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise EMOError(f"{path} not found; install Fashion-MNIST with `apt-get install dataset-fashion-mnist` "
                       "(or `make sysdeps`), or pass --root DIR holding the four idx files") from None
    except (OSError, EOFError) as e:
        raise EMOError(f"{path} is not a readable idx file: {first_line(e)}") from None
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or data[3] != kind:
        raise EMOError(f"{path} is not an idx file of unsigned bytes with {kind} dimensions")
    dims = struct.unpack(f">{kind}I", data[4:4 + 4 * kind])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * kind)
    if body.size != int(np.prod(dims)):
        raise EMOError(f"{path} is truncated: {body.size} bytes for a {'x'.join(map(str, dims))} array")
    return body.reshape(dims)


def load_split(split: str, root: str | Path = DEFAULT_ROOT) -> tuple[np.ndarray, np.ndarray]:
    """The official ``train`` or ``test`` split: uint8 images (N, 28, 28) and int64 labels (N,)."""
    if split not in FILES:
        raise EMOError(f"unknown split {split!r}; choose train or test")
    images_file, labels_file = FILES[split]
    images = _read_idx(Path(root) / images_file, 3)
    labels = _read_idx(Path(root) / labels_file, 1).astype(np.int64)
    if len(images) != len(labels) or images.shape[1:] != (28, 28) or labels.max(initial=0) >= len(CLASSES):
        raise EMOError(f"{root}: the {split} images and labels do not form a Fashion-MNIST split")
    return images, labels


def balanced_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` indices of every class, drawn without replacement with a fixed seed, in ascending order."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in range(len(CLASSES)):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise EMOError(f"class {CLASSES[c]} has only {len(members)} images, fewer than {per_class}")
        picked.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(picked))


def upscale(image: np.ndarray, size: int):
    """One 28x28 uint8 array -> a ``size`` x ``size`` grayscale PIL image (bicubic, as the eval transform)."""
    from PIL import Image

    return Image.fromarray(image, mode="L").resize((size, size), Image.BICUBIC)


def write_split(images: np.ndarray, labels: np.ndarray, indices: np.ndarray, out: Path, size: int) -> None:
    """PNG files ``out/<class>/<official index>.png`` (the index in the official split, so a file is traceable)."""
    for name in CLASSES:
        (out / name).mkdir(parents=True, exist_ok=True)
    for i in indices:
        upscale(images[i], size).save(out / CLASSES[labels[i]] / f"{int(i):05d}.png", optimize=True)


def split_indices(labels: np.ndarray, val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices of the official training split; ``val`` is balanced (``val / 10`` per class)."""
    held = balanced_indices(labels, val // len(CLASSES), seed) if val else np.array([], dtype=np.int64)
    train = np.setdiff1d(np.arange(len(labels)), held)
    return train, held


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emo.fashion_mnist", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="folder with the four idx .gz files")
    parser.add_argument("--out", required=True, help="output folder (gets train/, val/, test/)")
    parser.add_argument("--size", type=int, default=112, help="side of the written images (default 112)")
    parser.add_argument("--val", type=int, default=5000,
                        help="images of the training split held out for validation, balanced (default 5000; 0: none)")
    parser.add_argument("--test-per-class", type=int, default=None,
                        help="write only this many test images per class (a fixed, balanced subset)")
    parser.add_argument("--splits", default="train,val,test", help="which folders to write (default all three)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out and subset draws (default 0)")
    args = parser.parse_args(argv)
    try:
        splits = [s.strip() for s in args.splits.split(",") if s.strip()]
        if not splits or set(splits) - {"train", "val", "test"}:
            raise EMOError(f"--splits {args.splits!r}: choose from train, val, test")
        if not 28 <= args.size <= 1024:
            raise EMOError(f"--size {args.size} is out of range (28..1024)")
        if args.val < 0 or args.val % len(CLASSES) or args.val > 30000:
            raise EMOError(f"--val {args.val} must be a multiple of 10 in 0..30000 (balanced over the 10 classes)")
        if args.test_per_class is not None and not 1 <= args.test_per_class <= 1000:
            raise EMOError(f"--test-per-class {args.test_per_class} is out of range; use 1..1000 (the test split "
                           "has 1,000 images of each class)")
        if not 0 <= args.seed <= 2**63 - 1:
            raise EMOError(f"--seed {args.seed} is out of range; use 0..{2**63 - 1}")
        out = Path(args.out)
        busy = [s for s in splits if (out / s).exists()]
        if busy:
            raise EMOError(f"{out / busy[0]} already exists; remove it or choose another --out")
        for split in splits:
            if split == "val" and not args.val:
                continue
            official = "test" if split == "test" else "train"
            images, labels = load_split(official, args.root)
            if split == "test":
                indices = (np.arange(len(labels)) if args.test_per_class is None
                           else balanced_indices(labels, args.test_per_class, args.seed))
            else:
                indices = split_indices(labels, args.val, args.seed)[0 if split == "train" else 1]
            tmp = out / f".{split}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            write_split(images, labels, indices, tmp, args.size)
            os.replace(tmp, out / split)
            print(f"{out / split}: {len(indices)} images, {len(CLASSES)} classes, {args.size}x{args.size}")
    except EMOError as e:
        print(f"python -m emo.fashion_mnist: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
