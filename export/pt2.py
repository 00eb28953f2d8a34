"""PyTorch baseline backend: a ``torch.export`` program saved with ``torch.export.save`` (``.pt2``).

It is what ``emo-bench`` times as the PyTorch reference (torch is imported there lazily, only for this format).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch
from torch import nn


def export(model: nn.Module, example: torch.Tensor, path: Path, ctx) -> dict:
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=1024)},) if ctx.dynamic_batch else None
    program = torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes)
    torch.export.save(program, str(path))
    ops = Counter(str(n.target) for n in program.graph.nodes if n.op == "call_function")
    return {"num_nodes": sum(ops.values()), "aten_ops": len(ops)}

