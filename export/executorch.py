"""ExecuTorch backends: ``torch.export`` -> edge dialect -> a delegate partitioner -> ``.pte``.

Recipe (ExecuTorch's aot_compiler):
1. ``torch.export.export`` of the deploy form (static shapes, rank <= 4).
2. ``to_edge_transform_and_lower`` with the XNNPACK partitioner (CPU, Android and iOS), or the Core ML
   partitioner (``--format executorch-coreml``: fp16, iOS 17+; Apple devices only).
3. ``to_executorch()`` and the program buffer is the artifact. What stayed outside the delegate is recorded.
int8 (``--precision int8``): before step 2 the program goes through the XNNPACK quantizer (PT2E), calibrated on the
pipeline's calibration images; the quantized program must still be one XNNPACK delegate.

The XNNPACK program runs here in ``executorch.runtime``. A Core ML-delegated program needs Apple's Core ML runtime,
so its parity is recorded as "skipped: needs Apple runtime" and the check is that lowering delegated everything.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

DELEGATE_CALL = "executorch_call_delegate"


def _partitioner(kind: str, precision: str):
    if kind == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        return XnnpackPartitioner()
    import coremltools as ct
    from executorch.backends.apple.coreml.compiler import CoreMLBackend
    from executorch.backends.apple.coreml.partition import CoreMLPartitioner

    specs = CoreMLBackend.generate_compile_specs(
        compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
        minimum_deployment_target=ct.target.iOS17)
    return CoreMLPartitioner(compile_specs=specs)


def lower(model: nn.Module, example: torch.Tensor, path: Path, kind: str, precision: str) -> dict:
    from executorch.exir import to_edge_transform_and_lower

    program = torch.export.export(model, (example,))
    # the operators handed to the partitioner (the delegate's own list is not readable from the program)
    graph_ops = Counter(n.target.__name__.split(".")[0] for n in program.graph.nodes if n.op == "call_function")
    edge = to_edge_transform_and_lower(program, partitioner=[_partitioner(kind, precision)])
    calls = Counter(str(getattr(n.target, "__name__", n.target)) for n in edge.exported_program().graph.nodes
                    if n.op == "call_function")
    delegated = calls.pop(DELEGATE_CALL, 0)
    calls.pop("getitem", None)
    path.write_bytes(edge.to_executorch().buffer)
    return {"delegate": kind, "graph_ops": dict(sorted(graph_ops.items())), "delegate_partitions": delegated,
            "ops_outside_delegate": dict(sorted(calls.items())),
            "whole_graph_delegated": delegated == 1 and not calls}


INT8_SCHEME = ("PT2E static quantization with ExecuTorch's XNNPACKQuantizer: weights int8 symmetric per output "
               "channel, activations int8 per tensor (MinMax observers), float graph input and output")


_PADS = (torch.ops.aten.pad.default, torch.ops.aten.constant_pad_nd.default)


def _xnnpack_quantizer():
    """ExecuTorch's XNNPACKQuantizer, plus: a zero pad shares its input's quantization parameters.

    The deploy form zero-pads maps that are not whole 7x7 windows (at 112x112 the 4x4 stage-4 maps). The stock
    quantizer leaves ``pad`` unannotated, so the pad sat between two different scales, and XNNPACK refuses a
    quantized constant pad whose input and output scales differ (``Failed to create StaticConstantPad node ...
    xnn_status_invalid_parameter`` when the program loads: error 0x1). Sharing the scale, as the quantizer already
    does for reshape, slice and max-pool, makes the pad exact in int8 (zero is representable in any affine scale)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    class Quantizer(XNNPACKQuantizer):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = super().annotate(model)
            for node in model.graph.nodes:
                source = node.args[0] if node.op == "call_function" and node.target in _PADS else None
                before = getattr(source, "meta", {}).get("quantization_annotation")
                if before is None or before.output_qspec is None:
                    continue
                shared = SharedQuantizationSpec(source)
                node.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map={source: shared}, output_qspec=shared, _annotated=True)
            return model

    return Quantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))


def quantize_for_xnnpack(model: nn.Module, example: torch.Tensor, calibration: np.ndarray) -> nn.Module:
    """int8 through the XNNPACK quantizer (PT2E): export, insert observers, run the calibration images, convert.
    The quantize/dequantize pairs around each op are what the XNNPACK partitioner lowers to int8 kernels."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from emo.export.parity import batches

    quantizer = _xnnpack_quantizer()
    prepared = prepare_pt2e(torch.export.export(model, (example,)).module(), quantizer)
    with torch.no_grad():
        for chunk in batches(calibration, example.shape[0]):
            prepared(torch.from_numpy(chunk))
    return convert_pt2e(prepared)


def export(model: nn.Module, example: torch.Tensor, path: Path, ctx) -> dict:
    if ctx.precision != "int8":
        return lower(model, example, path, "xnnpack", ctx.precision)
    quantized = quantize_for_xnnpack(model, example, ctx.calibration.images)
    facts = lower(quantized, example, path, "xnnpack", ctx.precision)
    facts["quantization"] = {"scheme": INT8_SCHEME}
    return facts

