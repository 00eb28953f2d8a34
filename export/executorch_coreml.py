"""ExecuTorch with the Core ML delegate (``{variant}_coreml-et_fp16.pte``), for iOS apps that embed ExecuTorch.

Lowering runs anywhere coremltools installs; executing needs Apple's Core ML runtime (iOS 17+ / macOS 14+), so
``load`` refuses on other hosts and the pipeline records parity as skipped, with the reason.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from emo.export.executorch import lower

CAN_RUN_HERE = sys.platform == "darwin"
SKIP_REASON = "needs Apple runtime (Core ML delegate runs on iOS/macOS only)"


def export(model: nn.Module, example: torch.Tensor, path: Path, ctx) -> dict:
    facts = lower(model, example, path, "coreml", ctx.precision)
    if not facts["whole_graph_delegated"]:
        raise RuntimeError(f"Core ML partitioner left ops outside the delegate: {facts['ops_outside_delegate']}")
    return facts


def load(path: Path, threads: int | None = None):
    if not CAN_RUN_HERE:
        raise NotImplementedError(SKIP_REASON)
    from emo.export.executorch import load as load_pte  # the runtime must be built with the Core ML backend

    return load_pte(path, threads)
