"""PyTorch baseline backend: a ``torch.export`` program saved with ``torch.export.save`` (``.pt2``).

It is what ``emo-bench`` times as the PyTorch reference (torch is imported there lazily, only for this format).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emo.contract.pt2 import UnsafeArchiveError, load_program
from emo.errors import EMOError


def export(model: nn.Module, example: torch.Tensor, path: Path, ctx) -> dict:
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=1024)},) if ctx.dynamic_batch else None
    program = torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes)
    torch.export.save(program, str(path))
    ops = Counter(str(n.target) for n in program.graph.nodes if n.op == "call_function")
    return {"num_nodes": sum(ops.values()), "aten_ops": len(ops)}


def load(path: Path, threads: int | None = None):
    if threads:
        torch.set_num_threads(threads)
    try:
        module = load_program(path)  # refuses anything in the archive that loading would execute
    except UnsafeArchiveError as e:
        raise EMOError(str(e)) from None

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    return run
