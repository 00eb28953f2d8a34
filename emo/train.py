"""``emo-train``: fine-tune EMO on your own classes (or train it from scratch), the authors' recipe at small scale.

Read top to bottom: the data (an ImageFolder decoded once into a uint8 tensor), the augmentation (RandomResizedCrop
and flip, done on the whole batch on the training device), the schedule (AdamW, linear warm-up then cosine), the
EMA of the weights, one epoch, the checkpoints, and ``fit``, the loop that ties them together. ``main`` is the CLI.

Images are decoded once: each training image is resized (bicubic, shorter side to ``size / 0.875``) and
center-cropped to a square, each validation image goes through the eval transform of ``emo.preprocess``
(``emo.data.to_unit_array``). Both are kept as uint8, one channel when every image is grayscale. A data set of
tens of thousands of images fits in memory this way and no data loader process is needed on any device.

Checkpoints are in the authors' form, so that ``create_model(weights=...)``, ``emo-export`` and ``emo-eval`` read
them: ``last.pth`` is ``{'net', 'net_E', 'epoch', 'optimizer', ...}`` (resumable), ``best.pth`` is
``{'net', 'epoch', ...}`` holding the weights (EMA or raw) that scored best on validation. Both carry ``classes``
(the label names) and ``input`` (size, mean/std, crop fraction).
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emo.cli_common import one_line_errors
from emo.data import CROP_PCT, IMAGENET_MEAN, IMAGENET_STD, load_image, to_unit_array
from emo.errors import EMOError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
EXIT_BAD_INPUT = 2


# ------------------------------------------------------------------------------------------------------ the data
def scan_image_folder(root: str | Path, *, min_classes: int = 2) -> tuple[list[str], list[tuple[Path, int]]]:
    """An ImageFolder tree: one sub-folder per class (sorted names are the labels), image files inside."""
    root = Path(root)
    if not root.exists():
        raise EMOError(f"data folder not found: {root}")
    if not root.is_dir():
        raise EMOError(f"{root} is not a folder; pass an ImageFolder tree (one sub-folder of images per class)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
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
    """Decoded images (N, C, H, W) uint8 (C is 1 when every image is grayscale), labels, and what was skipped."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    skipped: list[str] = field(default_factory=list)

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
    return ImageSet(tensor, torch.tensor([labels[i] for i in kept], dtype=torch.int64), list(classes), skipped)


def load_image_folder(root: str | Path, view, *, workers: int = 2, classes: list[str] | None = None,
                      min_classes: int = 2) -> ImageSet:
    """Scan and decode an ImageFolder; ``classes`` (the training classes) must match the folder's."""
    found, samples = scan_image_folder(root, min_classes=min_classes)
    if classes is not None and found != list(classes):
        missing = sorted(set(found) - set(classes)) or sorted(set(classes) - set(found))
        raise EMOError(f"the class folders of {root} differ from the model's classes (e.g. {missing[0]!r}); "
                       "validation and test sets need the same class folders as the training set")
    return decode([p for p, _ in samples], [c for _, c in samples], found, view, workers=workers)


# ------------------------------------------------------------------------------------------------ augmentation
def to_model_input(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 1|3, H, W) -> normalised float32 (B, 3, H, W), as ``emo.data.normalize`` does."""
    x = batch.float().div_(255.0).expand(-1, 3, -1, -1)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def random_resized_crop(batch: torch.Tensor, size: tuple[int, int], generator: torch.Generator,
                        scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        flip: bool = True) -> torch.Tensor:
    """RandomResizedCrop (area fraction in ``scale``, aspect in ``ratio``) + horizontal flip, for a whole batch.

    The random numbers come from ``generator`` on the CPU, so a seed gives the same crops on every device; the
    crops are one ``grid_sample`` (bilinear) on the batch's device.
    """
    n = batch.shape[0]
    area = torch.empty(n).uniform_(scale[0], scale[1], generator=generator)
    log_ratio = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = torch.exp(log_ratio)
    w = torch.sqrt(area * aspect).clamp(max=1.0)  # fractions of the source side
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, generator=generator) * 2 - 1) * (1 - h)
    sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w * sign, cx, h, cy
    theta = theta.to(batch.device)
    grid = F.affine_grid(theta, [n, batch.shape[1], *size], align_corners=False)
    x = F.grid_sample(batch.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return to_model_input(x.clamp_(0, 255))


# -------------------------------------------------------------------------------------------------- the schedule
def learning_rate(step: int, total: int, warmup: int, lr: float, min_lr: float, warmup_lr: float) -> float:
    """Linear warm-up from ``warmup_lr`` to ``lr`` over ``warmup`` steps, then cosine down to ``min_lr``."""
    if step < warmup:
        return warmup_lr + (lr - warmup_lr) * step / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and norm weights (1-d tensors), as the authors (timm) do."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class EMA:
    """Exponential moving average of every float tensor of the state dict (weights and BatchNorm statistics).

    The decay warms up as ``min(decay, (1 + step) / (10 + step))`` so that short runs are not dominated by the
    random initial weights.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(model).eval()
        self.decay = decay
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        mine, theirs = self.model.state_dict(), model.state_dict()
        floats = [k for k, v in mine.items() if v.is_floating_point()]
        torch._foreach_lerp_([mine[k] for k in floats], [theirs[k] for k in floats], 1.0 - d)
        for k, v in mine.items():
            if not v.is_floating_point():
                v.copy_(theirs[k], non_blocking=True)


# ---------------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """Logits (float32, CPU) for uint8 eval views, in batches on ``device``."""
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = to_model_input(images[i:i + batch_size].to(device, non_blocking=True))
        with _autocast(device):
            out.append(model(x.contiguous(memory_format=MEMORY_FORMAT)).float().cpu())
    return torch.cat(out)


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean() * 100)


def _autocast(device: torch.device):
    # bfloat16 on GPUs (no loss scaling needed); float32 on the CPU, where bfloat16 is slower and less exact
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu",
                                                                                                     enabled=False)


# channels-last on every device: on a GPU for cuDNN, and on the CPU too (emo_1m at 112x112 trains at ~150 img/s
# instead of ~110 on 2 cores, float32)
MEMORY_FORMAT = torch.channels_last


# ----------------------------------------------------------------------------------------------------- the config
@dataclass
class TrainConfig:
    model: str = "emo_1m"
    weights: str | None = None
    input_size: tuple[int, int] = (224, 224)
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    min_lr: float = 1e-6
    warmup_lr: float = 1e-6
    warmup_epochs: float = 1.0
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    ema_decay: float = 0.9995
    crop_scale: tuple[float, float] = (0.08, 1.0)
    flip: bool = True
    freeze_backbone: bool = False
    seed: int = 0
    max_minutes: float | None = None
    classes: list[str] = field(default_factory=list)

    def input_contract(self) -> dict:
        return {"size": list(self.input_size), "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                "crop_pct": CROP_PCT, "interpolation": "bicubic", "channels": "RGB", "range": [0.0, 1.0]}


def build_model(config: TrainConfig) -> nn.Module:
    """The variant, from the given checkpoint (any form ``create_model`` reads) or from scratch; the head is
    replaced for the new classes unless the checkpoint was trained on exactly these classes."""
    from emo.model import create_model

    model = create_model(config.model, config.weights)
    n = len(config.classes)
    same = config.weights is not None and checkpoint_classes(config.weights) == list(config.classes)
    if not same:
        torch.manual_seed(config.seed)
        model.head = nn.Linear(model.num_features, n)
        nn.init.trunc_normal_(model.head.weight, std=0.02)
        nn.init.zeros_(model.head.bias)
        model.num_classes = n
    if config.freeze_backbone:
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("head."))
    return model


def checkpoint_classes(path: str | Path) -> list[str] | None:
    """The class names stored by ``emo-train`` in a checkpoint, or None for other checkpoints."""
    from emo.checkpoint import read_checkpoint

    obj = read_checkpoint(path)
    classes = obj.get("classes") if isinstance(obj, dict) else None
    return list(classes) if isinstance(classes, list | tuple) and all(isinstance(c, str) for c in classes) else None


# -------------------------------------------------------------------------------------------------- checkpoints
def save_atomic(obj: dict, path: Path) -> None:
    """torch.save to a temporary name, then rename: an interruption never leaves a half-written checkpoint."""
    tmp = path.with_name(f".{path.name}.partial")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _meta(config: TrainConfig, epoch: int, step: int) -> dict:
    meta = asdict(config)
    meta["input_size"], meta["crop_scale"] = list(config.input_size), list(config.crop_scale)
    return {"epoch": epoch, "step": step, "arch": config.model, "classes": list(config.classes),
            "input": config.input_contract(), "train_config": meta}


# --------------------------------------------------------------------------------------------------- the loop
def _progress(epoch: int, epochs: int, done: int, total: int, loss: float, rate: float, stream) -> None:
    if stream is None:
        return
    width = 24
    filled = int(width * done / max(1, total))
    stream.write(f"\repoch {epoch + 1}/{epochs} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                 f"loss {loss:.4f} {rate:,.0f} img/s")
    stream.flush()


def fit(config: TrainConfig, train: ImageSet, val: ImageSet | None, out: Path, device: torch.device, *,
        resume: str | None = None, progress=sys.stderr, log=print) -> dict:
    """Train; returns the summary. Writes ``last.pth`` every epoch (and on Ctrl-C), ``best.pth`` when validation
    improves (the last epoch when there is no validation set), ``log.jsonl`` and ``curves.png``."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model = build_model(config).to(device)
    model = model.to(memory_format=MEMORY_FORMAT)
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.999),
                                  fused=device.type == "cuda")  # one kernel for the whole step on a GPU
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    ema = EMA(model, config.ema_decay)
    steps_per_epoch = len(train) // config.batch_size
    if steps_per_epoch < 1:
        raise EMOError(f"the training set has {len(train)} images, fewer than one batch of {config.batch_size}; "
                       "lower --batch-size")
    step, best, history = 0, -1.0, []
    log_path = out / "log.jsonl"
    if resume:
        state = _load_resume(resume, config)
        model.load_state_dict(state["net"])
        ema.model.load_state_dict(state["net_E"])
        optimizer.load_state_dict(state["optimizer"])
        step, best = int(state["step"]), float(state.get("best_top1", -1.0))
        history = list(state.get("history", []))
        log(f"resumed from {resume} at step {step} (epoch {step // steps_per_epoch + 1}, "
            f"{step % steps_per_epoch}/{steps_per_epoch} steps into it)")
    images = train.images.to(device)
    labels = train.labels.to(device)
    warmup = int(config.warmup_epochs * steps_per_epoch)
    started = time.monotonic()

    def snapshot(epoch: int, interrupted: bool = False) -> None:
        save_atomic({"net": _cpu_state(model), "net_E": _cpu_state(ema.model), "optimizer": optimizer.state_dict(),
                     "best_top1": best, "history": history, "interrupted": interrupted,
                     **_meta(config, epoch, step)}, out / "last.pth")

    epoch, lr = step // steps_per_epoch, config.lr
    try:
        while epoch < config.epochs:
            model.train()
            if config.freeze_backbone:  # frozen BatchNorms keep their statistics
                for m in model.modules():
                    if isinstance(m, nn.BatchNorm2d):
                        m.eval()
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.seed * 1009 + epoch))
            first = step - epoch * steps_per_epoch
            t0, seen, loss_sum, loss_n = time.monotonic(), 0, torch.zeros((), device=device), 0
            for i in range(first, steps_per_epoch):
                g = torch.Generator().manual_seed(config.seed * 1_000_003 + step)  # resumable at any step
                index = order[i * config.batch_size:(i + 1) * config.batch_size].to(device)
                x = random_resized_crop(images[index], config.input_size, g, config.crop_scale, flip=config.flip)
                x = x.contiguous(memory_format=MEMORY_FORMAT)
                lr = learning_rate(step, config.epochs * steps_per_epoch, warmup, config.lr, config.min_lr,
                                   config.warmup_lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with _autocast(device):
                    loss = criterion(model(x).float(), labels[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                ema.update(model, step)
                loss_sum += loss.detach()
                loss_n += 1
                seen += len(index)
                if progress is not None and (i % 10 == 0 or i == steps_per_epoch - 1):
                    _progress(epoch, config.epochs, i + 1, steps_per_epoch, float(loss_sum) / loss_n,
                              seen / max(1e-9, time.monotonic() - t0), progress)
            if progress is not None:
                progress.write("\n")
            elapsed = time.monotonic() - t0
            row = {"epoch": epoch + 1, "step": step, "lr": lr, "train_loss": round(float(loss_sum) / max(1, loss_n), 5),
                   "img_per_s": round(seen / max(1e-9, elapsed), 1), "epoch_s": round(elapsed, 2),
                   "elapsed_s": round(time.monotonic() - started, 2)}
            candidate = "ema"
            if val is not None:
                row["val_top1"] = round(top1(predict(model, val.images, device), val.labels), 3)
                row["val_top1_ema"] = round(top1(predict(ema.model, val.images, device), val.labels), 3)
                candidate = "ema" if row["val_top1_ema"] >= row["val_top1"] else "raw"
                score = max(row["val_top1_ema"], row["val_top1"])
            else:
                score = float(epoch)  # no validation: the latest EMA weights are the best we know
            epoch += 1
            if config.max_minutes and epoch == 1 and config.epochs > 1:
                # fit the schedule to the time budget once the first (warm-up) epoch has been timed
                budget = config.max_minutes * 60 - (time.monotonic() - started)
                fits = 1 + int(budget // max(1e-9, time.monotonic() - started))
                if fits < config.epochs:
                    log(f"--max-minutes {config.max_minutes}: {fits} epochs fit, not {config.epochs}; "
                        f"the cosine schedule now ends at epoch {fits}")
                    config.epochs = fits
            row["best"] = score > best
            history.append(row)
            if score > best:
                best = score
                weights = ema.model if candidate == "ema" else model
                save_atomic({"net": _cpu_state(weights), "net_source": candidate, "best_top1": best,
                             **_meta(config, epoch, step)}, out / "best.pth")
            snapshot(epoch)
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            log(json.dumps(row))
    except KeyboardInterrupt:
        if progress is not None:
            progress.write("\n")
        snapshot(epoch, interrupted=True)
        log(f"interrupted at step {step}; resume with --resume {out / 'last.pth'}")
        raise
    plot_curves(history, out / "curves.png", log)
    return {"epochs": config.epochs, "steps": step, "best_val_top1": best if val is not None else None,
            "train_s": round(time.monotonic() - started, 1), "history": history}


def _load_resume(path: str, config: TrainConfig) -> dict:
    from emo.checkpoint import read_checkpoint

    state = read_checkpoint(path)
    if not isinstance(state, dict) or not all(k in state for k in ("net", "net_E", "optimizer", "step")):
        raise EMOError(f"{path} is not a resumable emo-train checkpoint (needs net, net_E, optimizer, step); "
                       "resume from the last.pth of a run, or start from a checkpoint with --weights")
    if state.get("arch") != config.model or list(state.get("classes", [])) != list(config.classes):
        raise EMOError(f"{path} was trained as {state.get('arch')} on other classes; resume it with the same "
                       "--model and data, or start from it with --weights")
    if list(state.get("input", {}).get("size", [])) != list(config.input_size):
        raise EMOError(f"{path} was trained at input size {state['input']['size']}; resume with the same --input-size")
    return state


def plot_curves(history: list[dict], path: Path, log=print) -> None:
    """Loss and validation top-1 per epoch as a PNG (needs matplotlib, the [bench] extra)."""
    if not history:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("no plot: matplotlib is missing (pip install 'emo-mobile[bench]'); the curves are in log.jsonl")
        return
    epochs = [r["epoch"] for r in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(epochs, [r["train_loss"] for r in history], marker="o")
    a.set(xlabel="epoch", ylabel="training loss (label-smoothed)", title="loss")
    for key, name in (("val_top1", "weights"), ("val_top1_ema", "EMA weights")):
        if any(key in r for r in history):
            b.plot(epochs, [r.get(key) for r in history], marker="o", label=name)
    b.set(xlabel="epoch", ylabel="validation top-1 (%)", title="validation")
    if b.lines:
        b.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.partial.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------------- CLI
def _parser():
    from emo.cli_common import Parser

    p = Parser(prog="emo-train", description="Fine-tune EMO on your own classes (or train from scratch): AdamW, "
                "warm-up + cosine, label smoothing, EMA, RandomResizedCrop + flip; checkpoints in the authors' form "
                "with the class names and the input contract.")
    p.add_argument("--model", default="emo_1m", help="emo_1m | emo_2m | emo_5m | emo_6m (default emo_1m)")
    p.add_argument("--weights", help="start from this checkpoint (any form create_model reads; the head is replaced "
                   "for the new classes); default: from scratch")
    p.add_argument("--data", required=True, help="ImageFolder (one sub-folder per class), or a folder with train/ "
                   "(and val/)")
    p.add_argument("--val", help="validation ImageFolder (default: DATA/val if present; without one the last epoch "
                   "is kept as best)")
    p.add_argument("--input-size", default="224", help="N or HxW (default 224)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    p.add_argument("--min-lr", type=float, default=1e-6)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--ema-decay", type=float, default=0.9995, help="EMA decay per step (0 < d < 1; default 0.9995)")
    p.add_argument("--crop-scale", default="0.08,1", help="RandomResizedCrop area range MIN,MAX (default 0.08,1)")
    p.add_argument("--no-flip", action="store_true", help="no horizontal flips (e.g. text, left/right classes)")
    p.add_argument("--freeze-backbone", action="store_true", help="train the new head only (linear probe)")
    p.add_argument("--resume", help="a last.pth to continue from (after Ctrl-C or a crash), at the step it stopped")
    p.add_argument("--max-minutes", type=float, help="fit the epochs to this time budget after timing the first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda when available)")
    p.add_argument("--workers", type=int, default=2, help="image decoding threads (default 2)")
    p.add_argument("--out", required=True, help="output folder: best.pth, last.pth, log.jsonl, curves.png")
    return p


def _config_from_args(args, classes: list[str]) -> TrainConfig:
    from emo.cli_common import parse_input_size
    from emo.model import VARIANTS

    if args.model not in VARIANTS:
        raise EMOError(f"unknown model {args.model!r}; choose one of: {', '.join(VARIANTS)}")
    checks = [(args.epochs >= 1, f"--epochs {args.epochs} must be at least 1"),
              (1 <= args.batch_size <= 4096, f"--batch-size {args.batch_size} is out of range; use 1..4096"),
              (0 < args.lr < 1, f"--lr {args.lr} is out of range; use 0 < lr < 1"),
              (0 <= args.min_lr <= args.lr, f"--min-lr {args.min_lr} must be in 0..--lr"),
              (args.warmup_epochs >= 0, f"--warmup-epochs {args.warmup_epochs} must not be negative"),
              (args.weight_decay >= 0, f"--weight-decay {args.weight_decay} must not be negative"),
              (0 <= args.label_smoothing < 1, f"--label-smoothing {args.label_smoothing} must be in 0..1"),
              (0 < args.ema_decay < 1, f"--ema-decay {args.ema_decay} must be between 0 and 1"),
              (args.max_minutes is None or args.max_minutes > 0, "--max-minutes must be positive"),
              (1 <= args.workers <= 64, f"--workers {args.workers} is out of range; use 1..64")]
    for ok, message in checks:
        if not ok:
            raise EMOError(message)
    try:
        lo, hi = (float(v) for v in args.crop_scale.split(","))
    except ValueError:
        raise EMOError(f"--crop-scale {args.crop_scale!r} is not MIN,MAX (e.g. 0.08,1)") from None
    if not 0 < lo <= hi <= 1:
        raise EMOError(f"--crop-scale {args.crop_scale!r} must satisfy 0 < MIN <= MAX <= 1")
    return TrainConfig(model=args.model, weights=args.weights, input_size=parse_input_size(args.input_size),
                       epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, min_lr=args.min_lr,
                       warmup_epochs=args.warmup_epochs, weight_decay=args.weight_decay,
                       label_smoothing=args.label_smoothing, ema_decay=args.ema_decay, crop_scale=(lo, hi),
                       flip=not args.no_flip, freeze_backbone=args.freeze_backbone, seed=args.seed,
                       max_minutes=args.max_minutes, classes=list(classes))


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EMOError(f"--device {name!r} is not a device; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EMOError(f"--device {name}: no CUDA GPU is visible to this torch ({torch.__version__}); use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise EMOError(f"--device {name!r}: emo-train runs on cpu or cuda")
    return device


def train_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    train_dir, val_dir = data_folders(args.data, args.val)
    classes, _ = scan_image_folder(train_dir)               # bad data fails before anything slow
    config = _config_from_args(args, classes)
    if val_dir is not None:
        val_classes, _ = scan_image_folder(val_dir, min_classes=1)
        if val_classes != classes:
            odd = sorted(set(val_classes) ^ set(classes))
            raise EMOError(f"the class folders of {val_dir} differ from those of {train_dir} (e.g. {odd[0]!r}); "
                           "validation needs the same classes")
    device = _device(args.device)
    for flag, path in (("--weights", args.weights), ("--resume", args.resume)):
        if path is not None and not Path(path).is_file():
            raise EMOError(f"{flag} {path}: checkpoint not found")
    if args.weights and args.resume:
        raise EMOError("--weights and --resume exclude each other: --resume continues a run, --weights starts one")
    out = Path(args.out)
    if (out / "last.pth").exists() and not args.resume:
        raise EMOError(f"{out} already holds a run (last.pth); continue it with --resume {out / 'last.pth'} "
                       "or choose another --out")
    if args.resume:
        _load_resume(args.resume, config)                     # a foreign checkpoint fails now, not after decoding
    from emo.cli_common import check_out_dir
    check_out_dir(out)
    if args.weights:
        from emo.model import create_model
        create_model(config.model, config.weights)            # a wrong checkpoint fails now, not after decoding
    t0 = time.monotonic()
    train = load_image_folder(train_dir, lambda im: train_view(im, round(max(config.input_size) / CROP_PCT)),
                              workers=args.workers)
    val = (load_image_folder(val_dir, lambda im: eval_view(im, config.input_size), workers=args.workers,
                             classes=classes, min_classes=1) if val_dir is not None else None)
    print(f"{train_dir}: {len(train)} images, {len(classes)} classes"
          + (f"; {val_dir}: {len(val)} images" if val is not None else "; no validation set")
          + f" (decoded in {time.monotonic() - t0:.1f}s)")
    for name, images in (("training", train), ("validation", val)):
        if images is not None and images.skipped:
            print(f"warning: {len(images.skipped)} unreadable {name} images skipped, e.g. {images.skipped[0]}",
                  file=sys.stderr)
    print(f"training {config.model} on {device} at {config.input_size[0]}x{config.input_size[1]}, "
          f"{config.epochs} epochs of {len(train) // config.batch_size} steps"
          + (f", from {config.weights}" if config.weights else ", from scratch"))
    summary = fit(config, train, val, out, device, resume=args.resume)
    print(f"done in {summary['train_s']:.0f}s: best validation top-1 {summary['best_val_top1']}; wrote "
          f"{out / 'best.pth'}, {out / 'last.pth'}, {out / 'log.jsonl'}")
    return 0


main = one_line_errors(train_main)
