"""The data half of ``emo-train`` and ``emo-eval``: an ImageFolder decoded once into a uint8 tensor, the order in which
each process sees its images, and the augmentation (RandomResizedCrop and flip on a whole batch).

Images are decoded once: each training image is resized (bicubic, shorter side to ``size / 0.875``) and
center-cropped to a square, each validation image goes through the eval transform of ``emo.preprocess``
(``emo.data.to_unit_array``). Both are kept as uint8, one channel when every image is grayscale. A data set of
tens of thousands of images fits in memory this way and no data loader process is needed on any device. Under
``torchrun`` each process decodes its own shard (``shard``), dealt so that the first epoch is, batch for batch, one
process's first epoch at the global batch size.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from emo.data import IMAGENET_MEAN, IMAGENET_STD, MAX_CLASSES, check_class_name, load_image, to_unit_array
from emo.distributed import Group
from emo.errors import EMOError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def derived_seed(seed: int, factor: int, offset: int) -> int:
    """A per-epoch or per-step seed; modulo 2**63 so that any ``--seed`` fits a generator (small seeds unchanged)."""
    return (seed * factor + offset) % 2**63


# ------------------------------------------------------------------------------------------------------ the data
def scan_image_folder(root: str | Path, *, min_classes: int = 2) -> tuple[list[str], list[tuple[Path, int]]]:
    """An ImageFolder tree: one sub-folder per class (sorted names are the labels), image files inside."""
    root = Path(root)
    if not root.exists():
        raise EMOError(f"data folder not found: {root}")
    if not root.is_dir():
        raise EMOError(f"{root} is not a folder; pass an ImageFolder tree (one sub-folder of images per class)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) > MAX_CLASSES:
        raise EMOError(f"{root} has {len(classes):,} class folders; a model has at most {MAX_CLASSES:,} classes")
    for name in classes:  # a newline in a folder name would shift every later label of the exported metadata
        check_class_name(name, f"{root}: class folder")
    if not classes:
        raise EMOError(f"{root} has no class folders; put the images of each class in their own sub-folder "
                       "(ImageFolder layout: DIR/<class>/<image>)")
    if len(classes) < min_classes:
        raise EMOError(f"{root} has only one class folder ({classes[0]!r}); a classifier needs at least two classes")
    samples = []
    for index, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise EMOError(f"class folder {root / name} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        samples += [(path, index) for path in files]
    return classes, samples


def data_folders(data: str | Path, val: str | Path | None) -> tuple[Path, Path | None]:
    """``--data`` is either an ImageFolder or holds ``train/`` (and ``val/``); ``--val`` overrides the latter."""
    data = Path(data)
    if (data / "train").is_dir():
        return data / "train", Path(val) if val else ((data / "val") if (data / "val").is_dir() else None)
    return data, Path(val) if val else None


def train_view(image, side: int) -> np.ndarray:
    """Shorter side to ``side`` (bicubic), center square crop; uint8 HWC. The crops are drawn from this square."""
    from PIL import Image

    w, h = image.size
    scale = side / min(w, h)
    nw, nh = max(side, round(w * scale)), max(side, round(h * scale))
    image = image.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - side) // 2, (nh - side) // 2
    return np.asarray(image.crop((left, top, left + side, top + side)), dtype=np.uint8)


def eval_view(image, size: tuple[int, int]) -> np.ndarray:
    """The eval transform of ``emo.preprocess`` (before normalisation) as uint8 HWC: exact, pixels are k / 255."""
    return np.rint(to_unit_array(image, size) * 255.0).astype(np.uint8).transpose(1, 2, 0)


@dataclass
class ImageSet:
    """Decoded images (N, C, H, W) uint8 (C is 1 when every image is grayscale), labels, and what was skipped.

    ``index`` is each row's position in the list that was decoded (unreadable files leave gaps); a process's shard
    of an ImageFolder sets it to the file's index in the folder's sorted list and ``space`` to the number of files.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    skipped: list[str] = field(default_factory=list)
    index: torch.Tensor | None = None
    space: int | None = None                      # None: the rows are the whole set (one process)

    def __len__(self) -> int:
        return len(self.labels)


def decode(images, labels: list[int], classes: list[str], view, *, workers: int = 2,
           names: list[str] | None = None) -> ImageSet:
    """Apply ``view`` (PIL image -> uint8 HWC) to every image; ``images`` yields PIL images or paths.

    An unreadable file is skipped and counted (never a crash mid-epoch); the caller reports ``skipped``.
    """
    def one(item):
        try:
            image = load_image(item) if isinstance(item, str | Path) else item
            return view(image)
        except EMOError as e:
            return str(e)

    with ThreadPoolExecutor(max(1, workers)) as pool:  # PIL releases the GIL while it decodes and resizes
        results = list(pool.map(one, images, chunksize=64) if workers > 1 else map(one, images))
    kept = [i for i, r in enumerate(results) if isinstance(r, np.ndarray)]
    skipped = [r for r in results if not isinstance(r, np.ndarray)]
    if not kept:
        raise EMOError(f"none of the {len(results)} images could be read (first: {skipped[0]})")
    shapes = {results[i].shape for i in kept}
    if len(shapes) != 1:
        raise EMOError(f"decoded images differ in shape {sorted(shapes)}")  # views make one shape; a bug otherwise
    array = np.stack([results[i] for i in kept])                         # N, H, W, 3
    gray = bool((array[..., 0] == array[..., 1]).all() and (array[..., 0] == array[..., 2]).all())
    array = array[..., :1] if gray else array
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))
    return ImageSet(tensor, torch.tensor([labels[i] for i in kept], dtype=torch.int64), list(classes), skipped,
                    index=torch.tensor(kept, dtype=torch.int64))


def load_image_folder(root: str | Path, view, *, workers: int = 2, classes: list[str] | None = None,
                      min_classes: int = 2, part=None, group: Group | None = None) -> ImageSet:
    """Scan and decode an ImageFolder; ``classes`` (the training classes) must match the folder's.

    ``part(n_files)`` picks the files this process decodes (its shard under torchrun); ``group`` then checks that
    every class is readable in the union of the shards and gathers what was skipped."""
    found, samples = scan_image_folder(root, min_classes=min_classes)
    if classes is not None and found != list(classes):
        missing = sorted(set(found) - set(classes)) or sorted(set(classes) - set(found))
        raise EMOError(f"the class folders of {root} differ from the model's classes (e.g. {missing[0]!r}); "
                       "validation and test sets need the same class folders as the training set")
    rows = None if part is None else part(len(samples))
    picked = samples if rows is None else [samples[i] for i in rows.tolist()]
    images = decode([p for p, _ in picked], [c for _, c in picked], found, view, workers=workers)
    if rows is not None:
        images.index, images.space = rows[images.index], len(samples)
    group = group or Group()
    present = group.total(torch.bincount(images.labels, minlength=len(found)).tolist())
    images.skipped = group.gather_texts(images.skipped, limit=10_000)
    check_every_class_readable(images, samples, root, {c for c, n in enumerate(present) if n})
    return images


def check_every_class_readable(images: ImageSet, samples: list[tuple[Path, int]], root: Path,
                               present: set[int] | None = None) -> None:
    """A class whose every file was skipped as unreadable would train (or validate) on nothing: refuse it.
    ``present``: the classes with a readable image in any process's shard (default: in ``images``)."""
    present = set(images.labels.unique().tolist()) if present is None else present
    for index, name in enumerate(images.classes):
        if index not in present:
            first = next(str(path) for path, c in samples if c == index)
            reason = next((s for s in images.skipped if first in s), f"{first} is not a readable image")
            raise EMOError(f"class {name!r} of {root} has no readable image ({reason}); replace the file(s) or "
                           "remove the class folder")


# ------------------------------------------------------------------------------------------------------ the order
def shard(space: int, rank: int, world_size: int, batch_size: int, seed: int) -> torch.Tensor:
    """The files (indices into the sorted list of ``space`` files) that process ``rank`` decodes and trains on.

    Dealt from the first epoch's order: global batch i is positions ``i*G .. (i+1)*G`` of it (``G = world_size *
    batch_size``) and process r takes the r-th slice of ``batch_size``, so the first epoch is, batch for batch and
    crop for crop, one process's first epoch at batch size G. The tail (fewer than G files) is dealt round-robin:
    the shards are disjoint and their union is the data set. One process: every file."""
    perm = torch.randperm(space, generator=torch.Generator().manual_seed(derived_seed(seed, 1009, 0)))
    g = world_size * batch_size
    full = space // g * g
    position = torch.arange(space)
    owner = torch.where(position < full, position % g // batch_size, (position - full) % world_size)
    return perm[owner == rank].sort().values


def epoch_order(images: ImageSet, seed: int, epoch: int) -> torch.Tensor:
    """The rows of ``images`` in the order of this epoch: the epoch's seeded permutation of the whole set (the same
    on every process), restricted to the rows this process holds. One process: the permutation itself."""
    g = torch.Generator().manual_seed(derived_seed(seed, 1009, epoch))
    if images.space is None:
        return torch.randperm(len(images), generator=g)
    perm = torch.randperm(images.space, generator=g)
    row = torch.full((images.space,), -1, dtype=torch.int64)
    row[images.index] = torch.arange(len(images))
    order = row[perm]
    return order[order >= 0]


# ------------------------------------------------------------------------------------------------ augmentation
def to_model_input(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 1|3, H, W) -> normalised float32 (B, 3, H, W), as ``emo.data.normalize`` does."""
    x = batch.float().div_(255.0).expand(-1, 3, -1, -1)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def random_resized_crop(batch: torch.Tensor, size: tuple[int, int], generator: torch.Generator,
                        scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        flip: bool = True, part: tuple[int, int] = (0, 1)) -> torch.Tensor:
    """RandomResizedCrop (area fraction in ``scale``, aspect in ``ratio``) + horizontal flip, for a whole batch.

    The random numbers come from ``generator`` on the CPU, so a seed gives the same crops on every device; the
    crops are one ``grid_sample`` (bilinear) on the batch's device. ``part=(r, k)``: the batch is slice r of a
    global batch k times its size (process r of k): the numbers are drawn for the global batch and this slice takes
    its own, so each image gets the crop it would get in one process with the global batch.
    """
    n = batch.shape[0]
    r, k = part
    mine = slice(r * n, (r + 1) * n)
    area = torch.empty(n * k).uniform_(scale[0], scale[1], generator=generator)[mine]
    log_ratio = torch.empty(n * k).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)[mine]
    aspect = torch.exp(log_ratio)
    w = torch.sqrt(area * aspect).clamp(max=1.0)  # fractions of the source side
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (torch.rand(n * k, generator=generator)[mine] * 2 - 1) * (1 - w)
    cy = (torch.rand(n * k, generator=generator)[mine] * 2 - 1) * (1 - h)
    sign = torch.where(torch.rand(n * k, generator=generator)[mine] < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w * sign, cx, h, cy
    theta = theta.to(batch.device)
    grid = F.affine_grid(theta, [n, batch.shape[1], *size], align_corners=False)
    x = F.grid_sample(batch.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return to_model_input(x.clamp_(0, 255))
