"""Several processes, one run: emo-train and emo-eval under ``torchrun`` (DistributedDataParallel, gloo or NCCL).

torchrun starts one process per GPU (or per CPU slot) on each machine and tells each one its place in the run through
the environment it starts it with (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): that
is how torch.distributed processes find each other, so ``launched`` reads it. Without torchrun (or with one process)
``Group()`` stands for the single process and every method below is a no-op, so the tools run exactly as before.

What the processes agree on, and how:

- tensors: ``average``, ``total``, ``smallest``, ``gather_rows``, ``gather_texts``, ``broadcast_buffers``. A collective
  whose peer died or went silent raises ``PeersLost`` (one line) at once when the peer's socket closes (torchrun also
  stops every process of a run when one exits non-zero), or after ``--dist-timeout`` when the peer hangs;
- stopping: Ctrl-C/SIGTERM during training are recorded and agreed on at a step boundary (``check_stop``), so every
  process stops after the same step and rank 0 saves that state;
- one message per run: the process that fails claims the run's report in torchrun's key-value store before it says
  anything (``speak``); the others, whose collectives fail as a consequence, stay quiet.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import torch
from torch import nn

from emo.errors import EMOError, Terminated, first_line

REPORT_KEY = "emo-mobile/report"   # in torchrun's store: "rank<TAB>line" of the one process that speaks for the run
BACKENDS = ("auto", "gloo", "nccl")


class PeersLost(Exception):  # noqa: N818 - a state of the run, like KeyboardInterrupt
    """A collective failed: another process died or stopped answering (torchrun's report names it)."""


def _is_collective_failure(error: RuntimeError) -> bool:
    """NCCL raises DistBackendError; gloo a plain RuntimeError that names its transport (or a timeout)."""
    import torch.distributed as dist

    text = str(error)
    return isinstance(error, dist.DistError) or any(
        words in text for words in ("gloo", "NCCL", "Connection reset", "Connection closed", "Timed out", "timed out"))


def _backend_words(error: BaseException) -> str:
    """gloo's and NCCL's message without its source location and its advice ("Read error [10.0.0.2]:58569:
    Connection reset by peer")."""
    text = first_line(error, 1000)
    text = re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", text)
    return text.split(". This is typically")[0][:200]


def launched() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` when torchrun (or another launcher that sets torch.distributed's
    variables) started this process as one of several; None for a single process."""
    env = os.environ
    if "WORLD_SIZE" not in env:
        return None
    try:
        rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", env["RANK"]))
    except (KeyError, ValueError):
        raise EMOError("WORLD_SIZE is set but RANK/LOCAL_RANK are missing or not integers; start the processes "
                       "with torchrun (it sets them)") from None
    if world <= 1:
        return None
    if not 0 <= rank < world:
        raise EMOError(f"RANK {rank} is not in 0..{world - 1} (WORLD_SIZE {world}); start the processes with torchrun")
    if "MASTER_ADDR" not in env or "MASTER_PORT" not in env:
        raise EMOError("WORLD_SIZE is set but MASTER_ADDR/MASTER_PORT are not; start the processes with torchrun")
    return rank, world, local


def launched_rank() -> int:
    """This process's rank before the group is joined (0 for a single process): only rank 0 reports errors that
    every process finds alike (a bad option), so that a run of 8 processes does not print it 8 times."""
    try:
        place = launched()
    except EMOError:
        return 0
    return place[0] if place else 0


@dataclass
class Group:
    """This process's place in the run and the collectives the tools use; ``Group()`` is the single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where collectives' tensors live
    timeout_s: float = 0.0
    store: object = None
    stops: list[int] = field(default_factory=list)  # stop signals recorded by the handler, read by check_stop
    agreed_stop: bool = False                        # every process raised the same stop at the same step

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def tag(self, text: str) -> str:
        """A message as this process says it: with its rank when there are several."""
        return f"rank {self.rank} of {self.world_size}: {text}" if self.active else text

    # ------------------------------------------------------------------------------------------ collectives
    @contextmanager
    def guard(self):
        """Collectives inside (our own, DDP's gradient all-reduce, SyncBatchNorm's) fail as ``PeersLost`` in one line:
        gloo and NCCL raise a RuntimeError when a peer's connection closes or a wait passes ``--dist-timeout``."""
        if not self.active:
            yield
            return
        try:
            yield
        except RuntimeError as e:
            if not _is_collective_failure(e):  # a CUDA out-of-memory, a bug: not the peers' doing
                raise
            text = _backend_words(e)
            if "timed out" in text.lower() or "timeout" in text.lower():
                raise PeersLost(f"no answer from the other processes within --dist-timeout {self.timeout_s:g} s "
                                f"({text}): one of them hangs; the run stops") from None
            raise PeersLost(f"lost contact with the other processes ({text}); torchrun's report names the process "
                            "that failed") from None

    def _reduce(self, values: torch.Tensor, op) -> torch.Tensor:
        import torch.distributed as dist

        t = values.to(self.device, copy=True)
        with self.guard():
            dist.all_reduce(t, op=op)
        return t

    def barrier(self) -> None:
        """Every process got here (a lost one raises ``PeersLost``); an all-reduce, so it works on any backend."""
        if self.active:
            import torch.distributed as dist
            self._reduce(torch.zeros(1), dist.ReduceOp.SUM)

    def average(self, value: torch.Tensor) -> torch.Tensor:
        """The mean over processes of a tensor on the training device (asynchronous on a GPU: no host sync)."""
        if not self.active:
            return value
        import torch.distributed as dist

        t = value.detach().clone()
        with self.guard():
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t / self.world_size

    def total(self, values: list[float]) -> list[float]:
        """Element-wise sums over processes (float64: counts stay exact)."""
        if not self.active:
            return list(values)
        import torch.distributed as dist
        return self._reduce(torch.tensor(values, dtype=torch.float64), dist.ReduceOp.SUM).cpu().tolist()

    def smallest(self, value: int) -> int:
        if not self.active:
            return value
        import torch.distributed as dist
        return int(self._reduce(torch.tensor([value], dtype=torch.int64), dist.ReduceOp.MIN).item())

    def largest(self, value: float) -> float:
        if not self.active:
            return value
        import torch.distributed as dist
        return float(self._reduce(torch.tensor([value], dtype=torch.float64), dist.ReduceOp.MAX).item())

    def gather_parts(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """Every process's ``rows`` (first dimensions may differ), in rank order, on every process (CPU)."""
        if not self.active:
            return [rows]
        import torch.distributed as dist

        sizes = [torch.zeros(1, dtype=torch.int64, device=self.device) for _ in range(self.world_size)]
        with self.guard():
            dist.all_gather(sizes, torch.tensor([len(rows)], dtype=torch.int64, device=self.device))
            n = [int(s.item()) for s in sizes]
            mine = torch.zeros((max(n), *rows.shape[1:]), dtype=rows.dtype, device=self.device)
            mine[:len(rows)] = rows.to(self.device)
            padded = [torch.empty_like(mine) for _ in range(self.world_size)]
            dist.all_gather(padded, mine)
        return [p[:k].cpu() for p, k in zip(padded, n, strict=True)]

    def gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Every process's rows concatenated in rank order: a contiguous split of a list, put back together."""
        return torch.cat(self.gather_parts(rows)) if self.active else rows

    def gather_texts(self, texts: list[str], limit: int = 200) -> list[str]:
        """Every process's texts (the first ``limit`` of each), in rank order."""
        if not self.active:
            return list(texts)
        blob = "\0".join(t.replace("\0", " ") for t in texts[:limit]).encode("utf-8", "replace")
        parts = self.gather_parts(torch.frombuffer(bytearray(blob), dtype=torch.uint8) if blob
                                  else torch.zeros(0, dtype=torch.uint8))
        return [t for p in parts if len(p) for t in bytes(p.tolist()).decode("utf-8", "replace").split("\0")]

    def broadcast_buffers(self, *modules: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm statistics) everywhere: without ``--sync-bn`` each process updates them from
        its own batches, and the state that is validated and saved is rank 0's."""
        if not self.active:
            return
        import torch.distributed as dist

        with self.guard():
            for module in modules:
                for buffer in module.buffers():
                    dist.broadcast(buffer, 0)

    def check_stop(self) -> None:
        """Raise KeyboardInterrupt (or ``Terminated`` for SIGTERM) on every process at once when any process has
        recorded a stop signal: all stop after the same step, so rank 0 saves the state that every process holds."""
        if not self.active:
            return
        import signal

        import torch.distributed as dist

        flags = torch.tensor([signal.SIGINT in self.stops, signal.SIGTERM in self.stops], dtype=torch.int64)
        sigint, sigterm = self._reduce(flags, dist.ReduceOp.MAX).cpu().tolist()
        if sigint or sigterm:
            self.agreed_stop = True
            raise Terminated() if sigterm else KeyboardInterrupt()

    def replicas_differ(self, model: nn.Module) -> list[int]:
        """The ranks whose parameters are not bit-identical to rank 0's (``--check-replicas``): a SHA-256 of every
        parameter, gathered. DDP keeps replicas identical by averaging gradients; this proves it step by step."""
        digest = torch.frombuffer(bytearray(parameter_digest(model)), dtype=torch.uint8)
        parts = self.gather_parts(digest)
        return [r for r, p in enumerate(parts) if not torch.equal(p, parts[0])]

    # ----------------------------------------------------------------------------------------------- one message
    def speak(self, line: str, *, agreed: bool = False, before: str = "") -> bool:
        """Print ``line`` on stderr if this process speaks for the run, and say whether it did. One process always
        speaks. Under torchrun the first process to claim the report in the store speaks; the others stay quiet,
        because their own failure (a lost peer) is a consequence of that one. A stop every process agreed on is
        reported by rank 0. ``before``: printed ahead of the line (a traceback) when this process speaks."""
        if self.active and not self._claim(line, agreed):
            return False
        print(before + line, file=sys.stderr, flush=True)
        return True

    def _claim(self, line: str, agreed: bool) -> bool:
        mine = f"{self.rank}\t{line}"
        try:
            self.store.set_timeout(timedelta(seconds=10))  # the store lives in torchrun's agent: quick or gone
            claimed = self.store.compare_set(REPORT_KEY, "", mine) == mine.encode()
        except Exception:  # noqa: BLE001 - the store went down with its host: say it rather than stay silent
            claimed = True
        return self.is_main if agreed else claimed

    def close(self) -> None:
        if self.active:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()


def quiet_unless_main(parser):
    """Only rank 0 prints a usage error: every process has the same command line (exit code 2 everywhere)."""
    if launched_rank() != 0:
        parser.error = lambda message: parser.exit(2)
    return parser


def run(prog: str, body, *, device: str = "cpu", backend: str = "auto", timeout_s: float = 1800.0) -> int:
    """A tool's work, ``body(group, device) -> exit code``, as one process or as one of torchrun's.

    Under torchrun every failure becomes one message for the whole run (``Group.speak``): bad input exits 2, a lost
    peer 1, Ctrl-C/SIGTERM 130/143, on every process; afterwards this process ignores the stop signals that
    torchrun sends while it tears the run down. One process: ``body`` runs as before, its errors are the caller's."""
    rank = launched_rank()
    try:
        place = launched()
        where = process_device(device, place)
        group = join(place, backend, where, timeout_s)
    except EMOError:
        if rank != 0:  # the same command line fails alike everywhere: rank 0 says it
            return 2
        raise
    if not group.active:
        return body(group, where)
    try:
        code = body(group, where)
    except EMOError as e:
        code = 2
        group.speak(f"{prog}: error: {group.tag(str(e))}")
    except PeersLost as e:
        code = 1
        group.speak(f"{prog}: error: {group.tag(str(e))}")
    except KeyboardInterrupt as e:
        code = 143 if isinstance(e, Terminated) else 130
        group.speak(f"{prog}: {'terminated' if code == 143 else 'interrupted'} (nothing half-written was left "
                    "behind)", agreed=group.agreed_stop)
    except Exception as e:  # noqa: BLE001 - a bug or a runtime's failure (CUDA out of memory): once, with its traceback
        code = 1
        group.speak(f"{prog}: error: {group.tag(f'{type(e).__name__}: {first_line(e, 300)}')}",
                    before=traceback.format_exc())
    finally:
        _ignore_stop_signals()
    if code == 0:  # after a failure a peer may be gone: leave the sockets to the exit (no teardown that may block)
        group.close()
    return code


def _ignore_stop_signals() -> None:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)


def parameter_digest(model: nn.Module) -> bytes:
    """SHA-256 of every parameter's float32 bytes in ``named_parameters`` order (logical layout, any device)."""
    h = hashlib.sha256()
    for _, p in model.named_parameters():
        h.update(p.detach().float().contiguous().cpu().numpy().tobytes())
    return h.digest()


def join(place: tuple[int, int, int] | None, backend: str, device: torch.device, timeout_s: float) -> Group:
    """Meet the other processes (torchrun's store at ``MASTER_ADDR:MASTER_PORT``) and start the process group:
    ``gloo`` for the CPU, ``nccl`` for CUDA unless ``backend`` says otherwise. ``Group()`` for a single process."""
    if place is None:
        return Group()
    import torch.distributed as dist

    rank, world, local = place
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise EMOError("--dist-backend nccl needs CUDA GPUs (--device cuda); use gloo on the CPU")
    available = {"gloo": dist.is_gloo_available(), "nccl": dist.is_nccl_available()}
    if not available.get(backend):
        raise EMOError(f"--dist-backend {backend} is not available in this torch ({torch.__version__}); use "
                       + " or ".join(b for b, ok in available.items() if ok))
    timeout = timedelta(seconds=timeout_s)
    where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    try:
        store, _, _ = next(dist.rendezvous("env://", rank, world, timeout=timeout))
        dist.init_process_group(backend, store=dist.PrefixStore("default_pg", store), rank=rank, world_size=world,
                                timeout=timeout, device_id=device if device.type == "cuda" else None)
    except (RuntimeError, ValueError) as e:  # DistStoreError, DistNetworkError are RuntimeErrors
        raise EMOError(f"rank {rank} of {world} cannot join the run at {where} ({first_line(e, 200)}); start every "
                       "process with the same torchrun --rdzv-endpoint (or --master-addr/--master-port)") from None
    return Group(rank, world, local, backend, device if backend == "nccl" else torch.device("cpu"), timeout_s, store)


def process_device(name: str, place: tuple[int, int, int] | None) -> torch.device:
    """``--device`` for this process: under torchrun ``cuda`` (or ``auto`` with a GPU) is the GPU of its local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EMOError(f"--device {name!r} is not a device; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EMOError(f"--device {name}: no CUDA GPU is visible to this torch ({torch.__version__}); use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise EMOError(f"--device {name!r}: emo-train runs on cpu or cuda")
    if device.type == "cuda" and place is not None:
        if device.index is not None:
            raise EMOError(f"--device {name}: under torchrun each process uses the GPU of its local rank; pass "
                           "--device cuda (choose GPUs with CUDA_VISIBLE_DEVICES)")
        count = torch.cuda.device_count()
        if place[2] >= count:
            raise EMOError(f"local rank {place[2]} has no GPU ({count} visible); start at most {count} processes "
                           "per machine (--nproc_per_node)")
        device = torch.device("cuda", place[2])
        torch.cuda.set_device(device)
    return device


# ------------------------------------------------------------------------------------------- synchronised BatchNorm
class _SumOverProcesses(torch.autograd.Function):
    """``all_reduce(SUM)`` with its gradient: every process's input contributed to the sum on every process, so
    the gradient of each input is the sum of the gradients that reach the sum on all processes."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        total = x.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        total = grad.clone()
        dist.all_reduce(total)
        return total


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch (every process's images), for
    ``--sync-bn`` on the CPU, where ``torch.nn.SyncBatchNorm`` refuses CPU tensors. Two differentiable all-reduces
    (the sum, then the squared deviations from the global mean) give the same mean, biased variance and running
    statistics as one BatchNorm2d over the whole global batch; the backward pass all-reduces their gradients."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        count = x.numel() // x.shape[1] * dist.get_world_size()  # every process trains on the same batch size
        mean = _SumOverProcesses.apply(x.sum((0, 2, 3))) / count
        centred = x - mean.view(1, -1, 1, 1)
        var = _SumOverProcesses.apply(centred.square().sum((0, 2, 3))) / count
        y = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean, factor)
                self.running_var.lerp_(var * (count / max(1, count - 1)), factor)  # unbiased, as BatchNorm2d
        return y


def synchronise_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """``--sync-bn``: every BatchNorm2d normalises with the global batch's statistics. ``torch.nn.SyncBatchNorm`` on
    CUDA (its fused kernels); ``GlobalBatchNorm2d`` on the CPU. Parameters and buffers are the same objects, so the
    state dict (and every checkpoint) keeps its keys and the optimizer can be built before or after."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            sync = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                     child.track_running_stats)
            sync.weight, sync.bias = child.weight, child.bias
            sync.running_mean, sync.running_var = child.running_mean, child.running_var
            sync.num_batches_tracked = child.num_batches_tracked
            sync.train(child.training)
            setattr(model, name, sync)
        else:
            synchronise_batchnorm(child, device)
    return model


def wrap(group: Group, model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel (gradients averaged over processes in buckets during the backward pass;
    rank 0's buffers broadcast before each forward); the model itself for a single process."""
    if not group.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    with group.guard():  # the constructor checks the replicas' shapes and broadcasts rank 0's weights
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
