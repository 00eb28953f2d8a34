"""``emo-train``: fine-tune EMO on your own classes (or train it from scratch), the authors' recipe at small scale.

Read top to bottom (the data half, ``emo.dataset``, holds the ImageFolder decoded once into a uint8 tensor, the order
in which each process sees which images, and the augmentation: RandomResizedCrop and flip on the whole batch on the
training device): the schedule (AdamW, linear warm-up then cosine), the EMA of the weights, one epoch, the
checkpoints, and ``fit``, the loop that ties them together. ``main`` is the CLI.

Images are decoded once: each training image is resized (bicubic, shorter side to ``size / 0.875``) and
center-cropped to a square, each validation image goes through the eval transform of ``emo.preprocess``
(``emo.data.to_unit_array``). Both are kept as uint8, one channel when every image is grayscale. A data set of
tens of thousands of images fits in memory this way and no data loader process is needed on any device.

Checkpoints are in the authors' form, so that ``create_model(weights=...)``, ``emo-export`` and ``emo-eval`` read
them: ``last.pth`` is ``{'net', 'net_E', 'epoch', 'optimizer', ...}`` (resumable), ``best.pth`` is
``{'net', 'epoch', ...}`` holding the weights (EMA or raw) that scored best on validation. Both carry ``classes``
(the label names) and ``input`` (size, mean/std, crop fraction).

Never losing an epoch: a checkpoint is serialised in memory, written under a hidden temporary name, flushed to disk
and renamed, with SIGINT/SIGTERM held back until the rename is done; a write that fails (a full disk) removes the
temporary file and keeps the previous checkpoint. A non-finite loss stops the run before any checkpoint can hold
NaN weights. One run at a time per output folder (an exclusive lock on ``OUT/.lock``). A resume checkpoint is input
like any other file: every field is checked before it is used.

Under ``torchrun`` (``emo.distributed``) the same loop trains with DistributedDataParallel: each process decodes and
trains on its own shard, ``--batch-size`` is per process and a step is one update on the global batch (all
processes' batches), so the schedule, ``step`` in a checkpoint and ``--resume`` count global steps. Only rank 0
writes (checkpoints, log, plot) and holds the lock; validation is sharded and its counts summed.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from emo import distributed
from emo.cli_common import one_line_errors
from emo.data import CROP_PCT, IMAGENET_MEAN, IMAGENET_STD
from emo.dataset import (
    ImageSet,
    data_folders,
    derived_seed,
    epoch_order,
    eval_view,
    load_image_folder,
    random_resized_crop,
    scan_image_folder,
    shard,
    to_model_input,
    train_view,
)
from emo.distributed import Group, PeersLost
from emo.errors import EMOError, Terminated

EXIT_FAILED, EXIT_BAD_INPUT = 1, 2
MAX_EPOCHS = 10_000
MAX_SEED = 2**63 - 1
MAX_WORLD_SIZE = 65_536


class TrainingStopped(Exception):  # noqa: N818 - a state, like KeyboardInterrupt
    """The run cannot go on (a non-finite loss, a checkpoint that cannot be written): one line, exit code 1."""


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
    sync_bn: bool = False                # under torchrun: BatchNorm statistics of the global batch
    check_replicas: bool = False         # under torchrun: compare the processes' parameters after every step

    def input_contract(self) -> dict:
        return {"size": list(self.input_size), "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                "crop_pct": CROP_PCT, "interpolation": "bicubic", "channels": "RGB", "range": [0.0, 1.0]}


def build_model(config: TrainConfig, log=lambda s: None) -> nn.Module:
    """The variant, from the given checkpoint (any form ``create_model`` reads) or from scratch; the head is
    replaced for the new classes unless the checkpoint was trained on exactly these classes (``head_reuse``)."""
    from emo.model import create_model

    model = create_model(config.model, config.weights)
    n = len(config.classes)
    same, message = head_reuse(config.weights, config.classes, model.head.out_features)
    if message:
        log(message)
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


def head_reuse(weights: str | None, classes: list[str], outputs: int) -> tuple[bool, str]:
    """Whether the head of ``weights`` is kept, and the line that says so.

    Only a head trained on exactly these class names, in this order, is kept: the same number of classes under
    other names is a different task, and keeping its head would map the classes by position without a word.
    """
    if weights is None:
        return False, ""
    known = checkpoint_classes(weights)
    if known == list(classes):
        return True, f"keeping the head of {weights}: it was trained on these {len(classes)} classes"
    if known is None:
        why = f"its {outputs}-output head records no class names"
    elif len(known) == len(classes):
        odd = next(f"{a!r} vs {b!r}" for a, b in zip(known, classes, strict=True) if a != b)
        why = f"its head was trained on {len(known)} other class names ({odd}), so it is not reused"
    else:
        why = f"its head was trained on {len(known)} classes"
    return False, f"a new head for the {len(classes)} classes of the data replaces the head of {weights}: {why}"


def checkpoint_classes(path: str | Path) -> list[str] | None:
    """The class names stored by ``emo-train`` in a checkpoint, or None for other checkpoints (malformed: refused)."""
    from emo.checkpoint import read_checkpoint, trained_metadata

    obj = read_checkpoint(path)
    return trained_metadata(obj, path)[0] if isinstance(obj, Mapping) else None


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _arg(text: str) -> str:
    """An option's text as typed when it is a plain token, else quoted (it may hold control characters)."""
    return text if text.isprintable() and " " not in text and len(text) <= 40 else _short(text)


# -------------------------------------------------------------------------------------------------- checkpoints
@contextmanager
def _on_stop_signals(handler) -> Iterator[bool]:
    """``handler`` for SIGINT and SIGTERM during the block, the previous handlers after it. Only the main thread
    runs Python signal handlers, so elsewhere nothing is installed and the block gets False."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    wanted = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in wanted}
    for s in wanted:
        signal.signal(s, handler)
    try:
        yield True
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block, then deliver the first that came: a Ctrl-C (or three) while a
    checkpoint is written and renamed stops the run after the rename, never in the middle of it.

    Python-level handlers, so the deferral holds whichever thread the OS hands the signal to."""
    pending: list[int] = []
    with _on_stop_signals(lambda signum, frame: pending.append(signum)):
        yield
    if pending:
        signal.raise_signal(pending[0])  # to the handler the block found, now restored


@contextmanager
def recording_stops(group: Group) -> Iterator[None]:
    """Under torchrun, for ``fit``: SIGINT/SIGTERM are recorded in ``group.stops`` and the processes agree on them
    at the next step boundary (``Group.check_stop``), so that all stop after the same step. Raising at once would
    stop one process in the middle of a collective while the others wait in it."""
    with _on_stop_signals(lambda signum, frame: group.stops.append(signum)):
        yield


@contextmanager
def stop_on_first_signal() -> Iterator[None]:
    """For the CLI's run: the first SIGINT/SIGTERM stops training (KeyboardInterrupt / ``Terminated``); the ones
    after it (a user pressing Ctrl-C three times) are ignored while the interrupted state is saved and reported."""
    stopping = []

    def handler(signum, frame):
        if not stopping:
            stopping.append(signum)
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    try:
        with _on_stop_signals(handler):
            yield
    finally:
        if stopping and threading.current_thread() is threading.main_thread():
            # the process is on its way out with 130/143: a further Ctrl-C must not kill it before that exit code
            # (Python restores SIG_DFL for handled signals when it shuts down; an ignored one stays ignored)
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, signal.SIG_IGN)


def save_atomic(obj: dict, path: Path) -> None:
    """Serialise in memory, write to a hidden temporary name, flush to disk, rename: a crash, a full disk or Ctrl-C
    never leaves a half-written checkpoint or replaces a good one. ``TrainingStopped`` if the disk refuses it."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    tmp = path.with_name(f".{path.name}.partial")
    with deferred_signals():
        try:
            with open(tmp, "wb") as f:
                f.write(buffer.getbuffer())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            _fsync_folder(path.parent)
        except OSError as e:  # ENOSPC, EFBIG (a file size limit), EDQUOT, EIO: the same for the user
            tmp.unlink(missing_ok=True)
            raise TrainingStopped(f"cannot write {path}: {e.strerror or e}") from None


def _fsync_folder(folder: Path) -> None:
    """The rename itself reaches the disk (a power cut after it keeps the new checkpoint)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _append_line(path: Path, line: str) -> None:
    """One whole line of ``log.jsonl`` or nothing: a line that does not fit on the disk is cut off again."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            size = f.tell()
            try:
                f.write(line + "\n")
                f.flush()
            except OSError:
                f.truncate(size)
                raise
    except OSError as e:
        raise TrainingStopped(f"cannot write {path}: {e.strerror or e}") from None


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _meta(config: TrainConfig, epoch: int, step: int, world_size: int = 1) -> dict:
    """What every checkpoint records besides its tensors. ``step`` counts updates on the global batch of
    ``world_size`` processes x ``batch_size``, which ``--resume`` needs again (with any number of processes)."""
    meta = asdict(config)
    meta["input_size"], meta["crop_scale"] = list(config.input_size), list(config.crop_scale)
    return {"epoch": epoch, "step": step, "arch": config.model, "classes": list(config.classes),
            "input": config.input_contract(), "train_config": meta, "world_size": world_size,
            "global_batch": world_size * config.batch_size}


@contextmanager
def locked_out_dir(out: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``OUT/.lock`` for the whole run, so that a second emo-train into the same folder
    stops at once instead of interleaving its log and checkpoints. The kernel releases the lock when its process
    dies, so the ``.lock`` file of a killed run never blocks the next one."""
    import fcntl

    path = out / ".lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        raise EMOError(f"cannot lock --out {out}: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            raise EMOError(f"{out} is in use by another emo-train (pid {holder if holder.isdigit() else 'unknown'}); "
                           "wait for it to finish or choose another --out") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            raise EMOError(f"cannot lock --out {out}: {e.strerror or e}") from None
        yield
    finally:
        os.close(fd)  # releases the lock


# ------------------------------------------------------------------------------------------------- resume checks
def _fail(path, field: str, expected: str, value) -> EMOError:
    return EMOError(f"{path}: field {field!r} must be {expected}, not {_short(value)}; resume from the last.pth of "
                    "an emo-train run, or start a new run from it with --weights")


def _is_int(value, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _is_number(value, lo: float, hi: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and lo <= value <= hi


def read_resume_state(path: str | Path, config: TrainConfig, world_size: int = 1) -> dict:
    """A resumable ``last.pth``, read as data (``weights_only``) and checked by ``check_resume_state``."""
    from emo.checkpoint import read_checkpoint

    return check_resume_state(read_checkpoint(path), path, config, world_size)


def check_resume(path: str | Path, config: TrainConfig, world_size: int = 1) -> None:
    """Every check of a resume checkpoint that needs no data (``fit`` checks the position in the schedule), on a
    CPU copy of the model: a bad checkpoint fails before the images are decoded."""
    state = read_resume_state(path, config, world_size)
    model = build_model(config)
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr)
    check_resume_tensors(state, path, model, model, optimizer)


def check_resume_state(state, path: str | Path, config: TrainConfig, world_size: int = 1) -> dict:
    """Every field of a resume checkpoint checked as a sidecar is, before anything uses it: the types and ranges
    of ``step``/``epoch``/``best_top1``/``history``, and that it was made by this model, these classes, this input
    size and global batch (``world_size`` processes x ``--batch-size`` now). The tensors are checked against the
    model in ``check_resume_tensors``."""
    from emo.checkpoint import trained_metadata

    if not isinstance(state, Mapping) or not all(k in state for k in ("net", "net_E", "optimizer", "step")):
        raise EMOError(f"{path} is not a resumable emo-train checkpoint (needs net, net_E, optimizer, step); "
                       "resume from the last.pth of a run, or start from a checkpoint with --weights")
    if not isinstance(state.get("arch"), str) or state["arch"] != config.model:
        raise EMOError(f"{path} was trained as {_short(state.get('arch'))}, not {config.model}; resume it with the "
                       "same --model, or start from it with --weights")
    classes, size = trained_metadata(state, path)
    if classes != list(config.classes):
        raise EMOError(f"{path} was trained on other classes; resume it with the same data, or start from it with "
                       "--weights")
    if size is None or size != tuple(config.input_size):
        raise EMOError(f"{path} was trained at input size {list(size) if size else None}; resume with the same "
                       "--input-size")
    if not _is_int(state["step"], 0, 10**12):
        raise _fail(path, "step", "an integer >= 0", state["step"])
    if not _is_int(state.get("epoch"), 0, MAX_EPOCHS):
        raise _fail(path, "epoch", f"an integer in 0..{MAX_EPOCHS}", state.get("epoch"))
    if not _is_number(state.get("best_top1", -1.0), -1.0, MAX_EPOCHS):
        raise _fail(path, "best_top1", f"a number in -1..{MAX_EPOCHS}", state.get("best_top1"))
    if not isinstance(state.get("interrupted", False), bool):
        raise _fail(path, "interrupted", "true or false", state.get("interrupted"))
    history = state.get("history", [])
    if not isinstance(history, list) or len(history) > MAX_EPOCHS:
        raise _fail(path, "history", f"a list of at most {MAX_EPOCHS} rows", history)
    for i, row in enumerate(history):
        if not (isinstance(row, Mapping) and {"epoch", "train_loss"} <= set(row)
                and all(isinstance(k, str) and (isinstance(v, bool) or _is_number(v, -1e30, 1e30))
                        for k, v in row.items())):
            raise _fail(path, f"history[{i}]", "a row of numbers with 'epoch' and 'train_loss'", row)
    recorded = state.get("train_config", {})
    if not isinstance(recorded, Mapping):
        raise _fail(path, "train_config", "an object", recorded)
    if "batch_size" in recorded and not _is_int(recorded["batch_size"], 1, 4096):
        raise _fail(path, "train_config.batch_size", "an integer in 1..4096", recorded["batch_size"])
    processes = state.get("world_size", 1)  # checkpoints from before torchrun: one process
    if not _is_int(processes, 1, MAX_WORLD_SIZE):
        raise _fail(path, "world_size", f"an integer in 1..{MAX_WORLD_SIZE}", processes)
    batch = recorded.get("batch_size", config.batch_size)
    if processes == 1 and world_size == 1 and batch != config.batch_size:
        raise EMOError(f"{path} was trained with --batch-size {batch}; resume with the same --batch-size (its steps "
                       "count batches of that size)")
    global_batch = state.get("global_batch", processes * batch)
    if not (_is_int(global_batch, 1, 4096 * MAX_WORLD_SIZE) and global_batch == processes * batch):
        raise _fail(path, "global_batch", f"world_size x train_config.batch_size ({processes} x {batch})",
                    global_batch)
    if global_batch != world_size * config.batch_size:
        fix = (f"--batch-size {global_batch // world_size}" if global_batch % world_size == 0 else
               f"a number of processes that divides {global_batch}")
        raise EMOError(f"{path} was trained with a global batch of {global_batch} ({processes} process"
                       f"{'es' if processes > 1 else ''} x {batch}) and its steps count batches of that size; with "
                       f"{world_size} process{'es' if world_size > 1 else ''} resume with {fix}")
    return dict(state)


def check_resume_tensors(state: dict, path, model: nn.Module, ema: nn.Module, optimizer) -> None:
    """``net``/``net_E`` hold every tensor of the model in its shape, finite; ``optimizer`` is AdamW's own
    structure for these parameters (groups, hyper-parameters in range, moments shaped like their parameters)."""
    for key, target in (("net", model), ("net_E", ema)):
        _check_state_dict(state[key], target.state_dict(), path, key)
    saved, fresh = state["optimizer"], optimizer.state_dict()
    if not isinstance(saved, Mapping) or set(saved) != {"state", "param_groups"}:
        raise _fail(path, "optimizer", "an AdamW state dict {state, param_groups}", saved)
    groups = saved["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(fresh["param_groups"]):
        raise _fail(path, "optimizer.param_groups", f"a list of {len(fresh['param_groups'])} groups", groups)
    shapes = {}
    for i, (group, mine) in enumerate(zip(groups, fresh["param_groups"], strict=True)):
        _check_param_group(group, mine, path, f"optimizer.param_groups[{i}]")
        params = [p for p in optimizer.param_groups[i]["params"]]
        shapes.update({index: tuple(p.shape) for index, p in zip(mine["params"], params, strict=True)})
    moments = saved["state"]
    if not isinstance(moments, Mapping) or not all(_is_int(k, 0, len(shapes) - 1) for k in moments):
        raise _fail(path, "optimizer.state", f"an object keyed by parameter index 0..{len(shapes) - 1}", moments)
    for index, entry in moments.items():
        where = f"optimizer.state[{index}]"
        if not isinstance(entry, Mapping) or set(entry) != {"step", "exp_avg", "exp_avg_sq"}:
            raise _fail(path, where, "{step, exp_avg, exp_avg_sq}", entry)
        step = entry["step"]
        if not (isinstance(step, torch.Tensor) and step.numel() == 1 and step.is_floating_point()
                and _is_number(float(step), 0, 1e12)):
            raise _fail(path, f"{where}.step", "a count of steps", step)
        for name in ("exp_avg", "exp_avg_sq"):
            t = entry[name]
            if not (isinstance(t, torch.Tensor) and t.is_floating_point() and tuple(t.shape) == shapes[index]):
                raise _fail(path, f"{where}.{name}", f"a float tensor of shape {list(shapes[index])}", t)
            if not bool(torch.isfinite(t).all()) or (name == "exp_avg_sq" and bool((t < 0).any())):
                raise _fail(path, f"{where}.{name}", "finite" + (" and >= 0" if name == "exp_avg_sq" else ""),
                            "a tensor with other values")


def _check_state_dict(saved, expected: Mapping[str, torch.Tensor], path, key: str) -> None:
    if not isinstance(saved, Mapping):
        raise _fail(path, key, "a state dict of tensors", saved)
    missing = [k for k in expected if k not in saved]
    extra = [k for k in saved if k not in expected]
    if missing or extra:
        raise _fail(path, key, "the model's state dict", f"{len(missing)} missing, {len(extra)} unknown keys, e.g. "
                    f"{(missing or extra)[0]!r}")
    for name, want in expected.items():
        t = saved[name]
        if not (isinstance(t, torch.Tensor) and t.shape == want.shape
                and t.is_floating_point() == want.is_floating_point()):
            raise _fail(path, f"{key}.{name}", f"a tensor of shape {list(want.shape)} ({want.dtype})", t)
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise _fail(path, f"{key}.{name}", "finite", "a tensor holding NaN or inf")


_FLAGS_AS_WRITTEN = ("amsgrad", "maximize", "capturable", "differentiable", "decoupled_weight_decay")


def _check_param_group(group, mine: dict, path, where: str) -> None:
    """AdamW's hyper-parameters: numbers in range, flags as emo-train writes them (``fused``/``foreach`` depend on
    the device that wrote it: any bool or None)."""
    if not isinstance(group, Mapping):
        raise _fail(path, where, "an object", group)
    params = group.get("params")
    if not (isinstance(params, list) and all(_is_int(i, 0, 10**9) for i in params) and params == mine["params"]):
        raise _fail(path, f"{where}.params", f"the parameter indices {_short(mine['params'], 40)}", params)
    betas = group.get("betas")
    numbers = {"lr": (group.get("lr"), 0.0, 1.0), "eps": (group.get("eps"), 1e-30, 1.0),
               "weight_decay": (group.get("weight_decay"), 0.0, 10.0)}
    for name, (value, lo, hi) in numbers.items():
        if not _is_number(value, lo, hi):
            raise _fail(path, f"{where}.{name}", f"a number in {lo:g}..{hi:g}", value)
    if not (isinstance(betas, list | tuple) and len(betas) == 2 and all(_is_number(b, 0.0, 0.999999) for b in betas)):
        raise _fail(path, f"{where}.betas", "two numbers in 0..1", betas)
    for name, value in group.items():
        if name not in numbers and name not in ("params", "betas") and not isinstance(value, bool | None):
            raise _fail(path, f"{where}.{name}", "true, false or null", value)
    for name in _FLAGS_AS_WRITTEN:
        if name in group and name in mine and group[name] is not mine[name]:
            raise _fail(path, f"{where}.{name}", repr(mine[name]), group[name])


def check_resume_position(state: dict, path, steps_per_epoch: int, epochs: int) -> None:
    """``step`` and ``epoch`` agree with this data and batch size, and the schedule still has steps to go."""
    step, epoch, total = state["step"], state["epoch"], epochs * steps_per_epoch
    if step // steps_per_epoch != epoch:
        raise EMOError(f"{path}: step {step} is not in epoch {epoch} at {steps_per_epoch} steps per epoch; resume "
                       "with the same data and --batch-size as the run that wrote it")
    if step >= total:
        raise EMOError(f"{path} has finished all {step // steps_per_epoch} epochs ({step} steps) of the "
                       f"{epochs}-epoch schedule; raise --epochs to train on, or start a new run with --weights")


# --------------------------------------------------------------------------------------------------- the loop
class NonFiniteWatch:
    """The first step whose loss was NaN or inf, kept on the training device: ``check`` syncs, ``record`` does not
    (on a GPU the loop checks every 10 steps, on the CPU every step)."""

    def __init__(self, device: torch.device) -> None:
        self.first = torch.full((), -1, dtype=torch.int64, device=device)
        self.value = torch.zeros((), dtype=torch.float32, device=device)

    def record(self, loss: torch.Tensor, step: int) -> None:
        new = torch.logical_and(~torch.isfinite(loss.detach()), self.first < 0)
        self.first = torch.where(new, step, self.first)
        self.value = torch.where(new, loss.detach().float(), self.value)

    def first_bad_step(self) -> int | None:
        first = int(self.first)
        return None if first < 0 else first


def check_replicas(group: Group, model: nn.Module, step: int) -> int:
    """``--check-replicas``: every process's parameters are bit-identical to rank 0's after ``step`` (1), or the run
    stops naming the ranks that differ."""
    differ = group.replicas_differ(model)
    if differ:
        raise TrainingStopped(f"the parameters of rank(s) {differ} differ from rank 0's after step {step} "
                              "(--check-replicas)")
    return 1


def _all_finite(*models: nn.Module) -> bool:
    tensors = [v for m in models for v in m.state_dict().values() if v.is_floating_point()]
    return bool(torch.stack([t.isfinite().all() for t in tensors]).all())


def _progress(epoch: int, epochs: int, done: int, total: int, loss: float, rate: float, stream) -> None:
    if stream is None:
        return
    width = 24
    filled = int(width * done / max(1, total))
    stream.write(f"\repoch {epoch + 1}/{epochs} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                 f"loss {loss:.4f} {rate:,.0f} img/s")
    stream.flush()


def fit(config: TrainConfig, train: ImageSet, val: ImageSet | None, out: Path, device: torch.device, *,
        resume: str | None = None, progress=sys.stderr, log=print, group: Group | None = None) -> dict:
    """Train; returns the summary. Writes ``last.pth`` every epoch (and on Ctrl-C), ``best.pth`` when validation
    improves (the last epoch when there is no validation set), ``log.jsonl`` and ``curves.png``.

    Stops with ``TrainingStopped`` at a non-finite loss (no checkpoint is written after it) or when a checkpoint
    cannot be written; the message says which checkpoint is intact and how to go on.

    Under torchrun (``group``) every process runs this loop on its shard (``train``, ``val``) with the model in
    DistributedDataParallel: the loss is averaged over processes every step (the log and the NaN watch see the
    global batch's), a stop signal is agreed on at a step boundary, and rank 0 alone writes and logs."""
    group = group or Group()
    if not group.is_main:
        progress, log = None, lambda s: None
    else:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model = build_model(config, log).to(device)
    model = model.to(memory_format=MEMORY_FORMAT)
    if config.sync_bn and group.active:
        model = distributed.synchronise_batchnorm(model, device)
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.999),
                                  fused=device.type == "cuda")  # one kernel for the whole step on a GPU
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    ema = EMA(model, config.ema_decay)
    fewest = group.smallest(len(train))  # every process takes as many steps as the one with the fewest images
    steps_per_epoch = fewest // config.batch_size
    if steps_per_epoch < 1:
        raise EMOError(f"the training set has {len(train)} images, fewer than one batch of {config.batch_size}; "
                       "lower --batch-size" if not group.active else
                       f"a process holds {fewest} training images, fewer than one batch of {config.batch_size}; "
                       "lower --batch-size or start fewer processes")
    step, best, history = 0, -1.0, []
    log_path = out / "log.jsonl"
    saved = None  # (path, step) of the checkpoint a stopped run continues from
    if resume:
        state = read_resume_state(resume, config, group.world_size)
        check_resume_tensors(state, resume, model, ema.model, optimizer)
        check_resume_position(state, resume, steps_per_epoch, config.epochs)
        model.load_state_dict(state["net"])
        ema.model.load_state_dict(state["net_E"])
        optimizer.load_state_dict(state["optimizer"])
        optimizer.param_groups[0]["weight_decay"] = config.weight_decay  # the options rule, as --lr does each step
        step, best = state["step"], float(state.get("best_top1", -1.0))
        history = list(state.get("history", []))
        saved = (Path(resume), step)
        log(f"resumed from {resume} at step {step} (epoch {step // steps_per_epoch + 1}, "
            f"{step % steps_per_epoch}/{steps_per_epoch} steps into it)"
            + (f", written by {state['world_size']} processes" if state.get("world_size", 1) > 1 else ""))
    net = distributed.wrap(group, model, device)  # DistributedDataParallel under torchrun, else the model itself
    images = train.images.to(device)
    labels = train.labels.to(device)
    warmup = int(config.warmup_epochs * steps_per_epoch)
    watch, check_every = NonFiniteWatch(device), 1 if device.type == "cpu" else 10
    started, first_step = time.monotonic(), step

    def stop_if_not_finite() -> None:
        bad = watch.first_bad_step()
        if bad is None and _all_finite(model, ema.model):
            return
        what = (f"the training loss is {float(watch.value)} at step {bad + 1} (epoch {bad // steps_per_epoch + 1})"
                if bad is not None else f"the weights are not finite after step {step}")
        if bad == first_step:  # no update has happened yet: the schedule is not to blame
            start = f"--weights {config.weights}" if config.weights else f"--resume {resume}" if resume else None
            raise TrainingStopped(f"{what}, before any update: the starting weights"
                                  + (f" ({start})" if start else "") + " give non-finite outputs")
        raise TrainingStopped(f"{what}: lower --lr (now {config.lr:g}) or --weight-decay (now "
                              f"{config.weight_decay:g}); no checkpoint was written after it")

    def snapshot(epoch: int, interrupted: bool = False) -> None:
        nonlocal saved
        if group.is_main:
            save_atomic({"net": _cpu_state(model), "net_E": _cpu_state(ema.model),
                         "optimizer": optimizer.state_dict(), "best_top1": best, "history": history,
                         "interrupted": interrupted, **_meta(config, epoch, step, group.world_size)}, out / "last.pth")
        saved = (out / "last.pth", step)

    def going_on() -> str:
        if saved is None:
            return "no checkpoint has been saved yet"
        return f"{saved[0]} (step {saved[1]}) is intact: continue from it with --resume {saved[0]}"

    epoch, lr = step // steps_per_epoch, config.lr
    try:
        while epoch < config.epochs:
            net.train()
            if config.freeze_backbone:  # frozen BatchNorms keep their statistics
                for m in model.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()
            order = epoch_order(train, config.seed, epoch)
            first = step - epoch * steps_per_epoch
            t0, seen, loss_sum, loss_n, checked = time.monotonic(), 0, torch.zeros((), device=device), 0, 0
            for i in range(first, steps_per_epoch):
                g = torch.Generator().manual_seed(derived_seed(config.seed, 1_000_003, step))  # resumable at any step
                index = order[i * config.batch_size:(i + 1) * config.batch_size].to(device)
                x = random_resized_crop(images[index], config.input_size, g, config.crop_scale, flip=config.flip,
                                        part=(group.rank, group.world_size))
                x = x.contiguous(memory_format=MEMORY_FORMAT)
                lr = learning_rate(step, config.epochs * steps_per_epoch, warmup, config.lr, config.min_lr,
                                   config.warmup_lr)
                for param_group in optimizer.param_groups:
                    param_group["lr"] = lr
                with group.guard(), _autocast(device):  # under torchrun a lost process is one line, not a traceback
                    loss = criterion(net(x).float(), labels[index])
                    global_loss = group.average(loss)   # the global batch's loss, the same on every process
                watch.record(global_loss, step)
                with deferred_signals(), group.guard():  # a step is applied whole (weights, step count, EMA)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()                      # DistributedDataParallel averages the gradients here
                    optimizer.step()
                    step += 1
                    ema.update(model, step)
                loss_sum += global_loss.detach()
                loss_n += 1
                seen += len(index) * group.world_size
                if config.check_replicas and group.active:
                    checked += check_replicas(group, model, step)
                if i % check_every == 0:
                    group.check_stop()  # Ctrl-C on any process: all stop after this step
                    if watch.first_bad_step() is not None:
                        stop_if_not_finite()
                if progress is not None and (i % 10 == 0 or i == steps_per_epoch - 1):
                    _progress(epoch, config.epochs, i + 1, steps_per_epoch, float(loss_sum) / loss_n,
                              seen / max(1e-9, time.monotonic() - t0), progress)
            if progress is not None:
                progress.write("\n")
            stop_if_not_finite()  # before validation and before any checkpoint
            elapsed = time.monotonic() - t0
            row = {"epoch": epoch + 1, "step": step, "lr": lr, "train_loss": round(float(loss_sum) / max(1, loss_n), 5),
                   "img_per_s": round(seen / max(1e-9, elapsed), 1), "epoch_s": round(elapsed, 2),
                   "elapsed_s": round(time.monotonic() - started, 2)}
            digest = {}  # in log.jsonl, not in the checkpoint's history (numbers only)
            if group.active:
                row.update(world_size=group.world_size, global_batch=group.world_size * config.batch_size)
                if config.check_replicas:
                    row["replicas_identical_steps"] = checked
                    digest["params_sha256"] = distributed.parameter_digest(model).hex()
            group.broadcast_buffers(model, ema.model)  # the state validated and saved is rank 0's
            candidate = "ema"
            if val is not None:
                row["val_top1"] = accuracy(model, val, device, group)
                row["val_top1_ema"] = accuracy(ema.model, val, device, group)
                candidate = "ema" if row["val_top1_ema"] >= row["val_top1"] else "raw"
                score = max(row["val_top1_ema"], row["val_top1"])
            else:
                score = float(epoch)  # no validation: the latest EMA weights are the best we know
            epoch += 1
            if config.max_minutes and epoch == 1 and config.epochs > 1:
                # fit the schedule to the time budget once the first (warm-up) epoch has been timed
                budget = config.max_minutes * 60 - (time.monotonic() - started)
                fits = group.smallest(1 + int(budget // max(1e-9, time.monotonic() - started)))  # all agree
                if fits < config.epochs:
                    log(f"--max-minutes {config.max_minutes}: {fits} epochs fit, not {config.epochs}; "
                        f"the cosine schedule now ends at epoch {fits}")
                    config.epochs = fits
            row["best"] = score > best
            history.append(row)
            if score > best:
                best = score
                weights = ema.model if candidate == "ema" else model
                if group.is_main:
                    save_atomic({"net": _cpu_state(weights), "net_source": candidate, "best_top1": best,
                                 **_meta(config, epoch, step, group.world_size)}, out / "best.pth")
            snapshot(epoch)
            if group.is_main:
                _append_line(log_path, json.dumps({**row, **digest}))
            log(json.dumps({**row, **digest}))
        group.check_stop()  # a stop signal during the last epoch's validation or saves
    except KeyboardInterrupt:
        with deferred_signals():  # the state of the interruption is saved whole, whatever else arrives meanwhile
            if progress is not None:
                progress.write("\n")
            # the epoch the saved step is in: a stop after an epoch's last step is at the start of the next one
            _save_interrupted(snapshot, step // steps_per_epoch, step, watch, model, ema.model, out, log, going_on)
        raise
    except (TrainingStopped, PeersLost) as e:
        if progress is not None:
            progress.write("\n")
        raise TrainingStopped(f"{e}; {going_on()}") from None
    if group.is_main:
        plot_curves(history, out / "curves.png", log)
    return {"epochs": config.epochs, "steps": step, "best_val_top1": best if val is not None else None,
            "train_s": round(time.monotonic() - started, 1), "history": history}


def accuracy(model: nn.Module, images: ImageSet, device: torch.device, group: Group) -> float:
    """Validation top-1 (%), rounded as the log shows it; under torchrun over every process's shard (the correct
    answers are counted on each and summed)."""
    if not group.active:
        return round(top1(predict(model, images.images, device), images.labels), 3)
    correct = int((predict(model, images.images, device).argmax(1) == images.labels).sum())
    correct, total = group.total([correct, len(images)])
    return round(correct / total * 100, 3)


def _save_interrupted(snapshot, epoch: int, step: int, watch: NonFiniteWatch, model: nn.Module, ema: nn.Module,
                      out: Path, log, going_on) -> None:
    """Save the interrupted state unless its weights are no longer finite; say truthfully what is on disk."""
    if watch.first_bad_step() is not None or not _all_finite(model, ema):
        log(f"interrupted at step {step}: the weights are not finite, so they were not saved; {going_on()}")
        return
    try:
        snapshot(epoch, interrupted=True)
    except TrainingStopped as e:
        log(f"interrupted at step {step}: {e}; {going_on()}")
        return
    log(f"interrupted at step {step}: saved {out / 'last.pth'}; continue with --resume {out / 'last.pth'}")


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
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    except OSError as e:  # the checkpoints are saved already: a missing plot is not worth failing the run
        tmp.unlink(missing_ok=True)
        log(f"no plot: cannot write {path}: {e.strerror or e}")
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------------------------------------- CLI
def number_option(flag: str, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False):
    """An argparse type: a finite number in the range, or one line naming the option and the range."""
    interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{_arg(text)} is not a number; use one in {interval}") from None
        above = lo < value if lo_open else lo <= value
        below = value < hi if hi_open else value <= hi
        if not (math.isfinite(value) and above and below):
            raise argparse.ArgumentTypeError(f"{_arg(text)} is out of range; use a finite number in {interval}")
        return value

    parse.__name__ = flag  # argparse names the option in its message
    return parse


def integer_option(flag: str, lo: int, hi: int):
    """An argparse type: an integer (``1e23`` is not one) in ``lo..hi``."""
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{_arg(text)} is not an integer; use one in {lo}..{hi}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{_arg(text)} is out of range; use an integer in {lo}..{hi}")
        return value

    parse.__name__ = flag
    return parse


def _parser():
    from emo.cli_common import Parser

    p = Parser(
        prog="emo-train", description="Fine-tune EMO on your own classes (or train from scratch): AdamW, "
        "warm-up + cosine, label smoothing, EMA, RandomResizedCrop + flip; checkpoints in the authors' form "
        "with the class names and the input contract. Under torchrun: DistributedDataParallel over its processes.")
    p.add_argument("--model", default="emo_1m", help="emo_1m | emo_2m | emo_5m | emo_6m (default emo_1m)")
    p.add_argument("--weights", help="start from this checkpoint (any form create_model reads; the head is replaced "
                   "unless it was trained on exactly these class names); default: from scratch")
    p.add_argument("--data", required=True, help="ImageFolder (one sub-folder per class), or a folder with train/ "
                   "(and val/)")
    p.add_argument("--val", help="validation ImageFolder (default: DATA/val if present; without one the last epoch "
                   "is kept as best)")
    p.add_argument("--input-size", default="224", help="N or HxW (default 224)")
    p.add_argument("--epochs", type=integer_option("--epochs", 1, MAX_EPOCHS), default=30)
    p.add_argument("--batch-size", type=integer_option("--batch-size", 1, 4096), default=128,
                   help="images per step and process (under torchrun the global batch is this x the processes)")
    p.add_argument("--lr", type=number_option("--lr", 0, 1, lo_open=True, hi_open=True), default=1e-3,
                   help="peak learning rate, 0 < lr < 1 (default 1e-3)")
    p.add_argument("--min-lr", type=number_option("--min-lr", 0, 1, hi_open=True), default=1e-6,
                   help="final learning rate of the cosine, 0..--lr (default 1e-6)")
    p.add_argument("--warmup-epochs", type=number_option("--warmup-epochs", 0, MAX_EPOCHS), default=1.0,
                   help="linear warm-up, 0..--epochs (default 1)")
    p.add_argument("--weight-decay", type=number_option("--weight-decay", 0, 10), default=0.05,
                   help="AdamW's decoupled weight decay, 0..10 (default 0.05)")
    p.add_argument("--label-smoothing", type=number_option("--label-smoothing", 0, 1, hi_open=True), default=0.1,
                   help="0 <= s < 1 (default 0.1)")
    p.add_argument("--ema-decay", type=number_option("--ema-decay", 0, 1, lo_open=True, hi_open=True),
                   default=0.9995, help="EMA decay per step (0 < d < 1; default 0.9995)")
    p.add_argument("--crop-scale", default="0.08,1", help="RandomResizedCrop area range MIN,MAX (default 0.08,1)")
    p.add_argument("--no-flip", action="store_true", help="no horizontal flips (e.g. text, left/right classes)")
    p.add_argument("--freeze-backbone", action="store_true", help="train the new head only (linear probe)")
    p.add_argument("--resume", help="a last.pth to continue from (after Ctrl-C or a crash), at the step it stopped")
    p.add_argument("--max-minutes", type=number_option("--max-minutes", 0, 525_600, lo_open=True),
                   help="fit the epochs to this time budget after timing the first (at most a year: 525600)")
    p.add_argument("--seed", type=integer_option("--seed", 0, MAX_SEED), default=0, help=f"0..{MAX_SEED} (default 0)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda when available)")
    p.add_argument("--workers", type=integer_option("--workers", 1, 64), default=2,
                   help="image decoding threads (default 2)")
    p.add_argument("--out", required=True, help="output folder: best.pth, last.pth, log.jsonl, curves.png")
    ddp = p.add_argument_group("under torchrun (several processes; no effect in one)")
    ddp.add_argument("--sync-bn", action="store_true", help="BatchNorm statistics of the global batch (SyncBatchNorm) "
                     "instead of each process's own")
    ddp.add_argument("--dist-backend", choices=distributed.BACKENDS, default="auto",
                     help="collectives: nccl for CUDA, gloo for the CPU (default auto)")
    ddp.add_argument("--dist-timeout", type=number_option("--dist-timeout", 0, 86_400, lo_open=True), default=1800,
                     help="seconds a process waits for the others (a hung process); a process that dies stops the "
                     "run at once (default 1800)")
    ddp.add_argument("--check-replicas", action="store_true", help="after every step, compare a SHA-256 of every "
                     "process's parameters and stop if they differ (a check of the setup; costs a hash per step)")
    return p


def _config_from_args(args, classes: list[str]) -> TrainConfig:
    """The options that depend on each other; each option's own range is checked by argparse (``number_option``)."""
    from emo.cli_common import parse_input_size
    from emo.model import VARIANTS

    if args.model not in VARIANTS:
        raise EMOError(f"unknown model {args.model!r}; choose one of: {', '.join(VARIANTS)}")
    if args.min_lr > args.lr:
        raise EMOError(f"--min-lr {args.min_lr:g} is out of range; use 0..--lr ({args.lr:g})")
    if args.warmup_epochs > args.epochs:
        raise EMOError(f"--warmup-epochs {args.warmup_epochs:g} is out of range; use 0..--epochs ({args.epochs})")
    try:
        lo, hi = (float(v) for v in args.crop_scale.split(","))
    except ValueError:
        raise EMOError(f"--crop-scale {_short(args.crop_scale)} is not MIN,MAX (e.g. 0.08,1)") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi <= 1):
        raise EMOError(f"--crop-scale {_short(args.crop_scale)} is out of range; use 0 < MIN <= MAX <= 1")
    return TrainConfig(model=args.model, weights=args.weights, input_size=parse_input_size(args.input_size),
                       epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, min_lr=args.min_lr,
                       warmup_epochs=args.warmup_epochs, weight_decay=args.weight_decay,
                       label_smoothing=args.label_smoothing, ema_decay=args.ema_decay, crop_scale=(lo, hi),
                       flip=not args.no_flip, freeze_backbone=args.freeze_backbone, seed=args.seed,
                       max_minutes=args.max_minutes, classes=list(classes), sync_bn=args.sync_bn,
                       check_replicas=args.check_replicas)


def check_out_outside_data(out: Path, folders: list[tuple[str, Path]]) -> None:
    """Refuse an output folder inside a scanned ImageFolder before anything is created: it would be scanned as a
    class folder (by this run's validation or the next run) and its checkpoints read as images."""
    resolved = out.resolve()
    for flag, folder in folders:
        root = folder.resolve()
        if resolved == root or root in resolved.parents:
            raise EMOError(f"--out {out} must not be inside {flag} {folder} (the checkpoints would be read as "
                           "images); choose an output folder outside the data")


def train_main(argv: list[str] | None = None) -> int:
    args = distributed.quiet_unless_main(_parser()).parse_args(argv)
    return distributed.run("emo-train", lambda group, device: _train(args, device, group), device=args.device,
                           backend=args.dist_backend, timeout_s=args.dist_timeout)


def _train(args, device: torch.device, group: Group) -> int:
    """Check every input, lock ``--out`` (rank 0), then decode and train (``_run``)."""
    train_dir, val_dir = data_folders(args.data, args.val)
    out = Path(args.out)
    check_out_outside_data(out, [("--data", train_dir)] + ([("--val" if args.val else "--data", val_dir)]
                                                          if val_dir is not None else []))
    classes, _ = scan_image_folder(train_dir)               # bad data fails before anything slow
    config = _config_from_args(args, classes)
    if val_dir is not None:
        val_classes, _ = scan_image_folder(val_dir, min_classes=1)
        if val_classes != classes:
            odd = sorted(set(val_classes) ^ set(classes))
            raise EMOError(f"the class folders of {val_dir} differ from those of {train_dir} (e.g. {odd[0]!r}); "
                           "validation needs the same classes")
    for flag, path in (("--weights", args.weights), ("--resume", args.resume)):
        if path is not None and not Path(path).is_file():
            raise EMOError(f"{flag} {path}: checkpoint not found")
    if args.weights and args.resume:
        raise EMOError("--weights and --resume exclude each other: --resume continues a run, --weights starts one")
    if args.resume:
        check_resume(args.resume, config, group.world_size)  # a foreign checkpoint fails now, not after decoding
    if args.weights:
        from emo.model import create_model
        create_model(config.model, config.weights)            # a wrong checkpoint fails now, not after decoding
        checkpoint_classes(config.weights)                    # and so does malformed metadata
    if not group.is_main:  # only rank 0 creates, locks and writes --out
        group.barrier()    # rank 0 holds the lock (if it failed, this fails at once and rank 0 says why)
        return _run(args, config, train_dir, val_dir, device, out, group)
    from emo.cli_common import check_out_dir
    created = not out.exists()
    check_out_dir(out)
    try:
        with locked_out_dir(out):
            if (out / "last.pth").exists() and not args.resume:
                raise EMOError(f"{out} already holds a run (last.pth); continue it with --resume "
                               f"{out / 'last.pth'} or choose another --out")
            group.barrier()
            return _run(args, config, train_dir, val_dir, device, out, group)
    except (EMOError, KeyboardInterrupt, PeersLost):  # bad input while decoding, Ctrl-C: no empty folder left behind
        if created and [p.name for p in out.iterdir()] in ([], [".lock"]):
            (out / ".lock").unlink(missing_ok=True)
            out.rmdir()
        raise


def _run(args, config: TrainConfig, train_dir: Path, val_dir: Path | None, device: torch.device, out: Path,
         group: Group) -> int:
    """Decode (each process its shard), train, report; exit 1 when training had to stop, 130/143 after
    Ctrl-C/SIGTERM (state saved)."""
    say = print if group.is_main else (lambda *a, **k: None)
    t0 = time.monotonic()
    train_part = val_part = None
    if group.active:
        def train_part(n: int) -> torch.Tensor:
            if n < group.world_size * config.batch_size:
                raise EMOError(f"{train_dir} has {n} images, fewer than one global batch of "
                               f"{group.world_size * config.batch_size} ({group.world_size} processes x "
                               f"--batch-size {config.batch_size}); lower --batch-size or start fewer processes")
            return shard(n, group.rank, group.world_size, config.batch_size, config.seed)

        def val_part(n: int) -> torch.Tensor:
            if n < group.world_size:
                raise EMOError(f"{val_dir} has {n} images, fewer than the {group.world_size} processes; add images")
            return torch.arange(n)[group.rank::group.world_size]

    train = load_image_folder(train_dir, lambda im: train_view(im, round(max(config.input_size) / CROP_PCT)),
                              workers=args.workers, part=train_part, group=group)
    val = (load_image_folder(val_dir, lambda im: eval_view(im, config.input_size), workers=args.workers,
                             classes=config.classes, min_classes=1, part=val_part, group=group)
           if val_dir is not None else None)
    n_train, n_val = group.total([len(train), len(val) if val is not None else 0])
    say(f"{train_dir}: {n_train:.0f} images, {len(config.classes)} classes"
        + (f"; {val_dir}: {n_val:.0f} images" if val is not None else "; no validation set")
        + f" (decoded in {time.monotonic() - t0:.1f}s"
        + (f", each of {group.world_size} processes its shard)" if group.active else ")"))
    for name, images in (("training", train), ("validation", val)):
        if group.is_main and images is not None and images.skipped:
            print(f"warning: {len(images.skipped)} unreadable {name} images skipped, e.g. {images.skipped[0]}",
                  file=sys.stderr)
    steps = group.smallest(len(train)) // config.batch_size
    say(f"training {config.model} on {device} at {config.input_size[0]}x{config.input_size[1]}, "
        f"{config.epochs} epochs of {steps} steps"
        + (f", from {config.weights}" if config.weights else ", from scratch")
        + (f"; {group.world_size} processes ({group.backend}) x batch {config.batch_size} = global batch "
           f"{group.world_size * config.batch_size}" + (", SyncBatchNorm" if config.sync_bn else "")
           if group.active else ""))
    with recording_stops(group) if group.active else stop_on_first_signal():
        try:
            summary = fit(config, train, val, out, device, resume=args.resume, group=group)
        except TrainingStopped as e:
            group.speak(f"emo-train: error: {group.tag(str(e))}")
            return EXIT_FAILED
        except KeyboardInterrupt as e:  # fit has saved the state and said where; nothing half-written is left
            terminated = isinstance(e, Terminated)
            group.speak(f"emo-train: {'terminated' if terminated else 'interrupted'} (no half-written file was left)",
                        agreed=group.agreed_stop)
            return 143 if terminated else 130
    say(f"done in {summary['train_s']:.0f}s: best validation top-1 {summary['best_val_top1']}; wrote "
        f"{out / 'best.pth'}, {out / 'last.pth'}, {out / 'log.jsonl'}")
    return 0


main = one_line_errors(train_main)

if __name__ == "__main__":  # python -m emo.train, and torchrun ... -m emo.train
    sys.exit(main())
