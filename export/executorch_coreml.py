"""ExecuTorch with the Core ML delegate (``{variant}_coreml-et_fp16.pte``), for iOS apps that embed ExecuTorch.

Lowering runs anywhere coremltools installs; executing needs Apple's Core ML runtime (iOS 17+ / macOS 14+), so
``load`` refuses on other hosts and the pipeline records parity as skipped, with the reason.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from emo.export.executorch import lower


def export(model: nn.Module, example: torch.Tensor, path: Path, ctx) -> dict:
    facts = lower(model, example, path, "coreml", ctx.precision)
    if not facts["whole_graph_delegated"]:
        raise RuntimeError(f"Core ML partitioner left ops outside the delegate: {facts['ops_outside_delegate']}")
    return facts

