"""ORT-format backend: the ONNX model saved by ONNX Runtime itself in its mobile format (``.ort``).

Recipe: build the ONNX model (shared with the ONNX backend in the same run), open it in an InferenceSession with
``session.save_model_format=ORT`` and basic graph optimisations, which writes the ``.ort`` file. Basic (not
extended) optimisations keep the graph free of CPU-only fused ops, so NNAPI, Core ML and XNNPACK EPs on the phone
can still take it. Runs in any onnxruntime, including the minimal mobile builds.

int8: the QDQ graph of the onnx backend (same calibration), saved in the "fixed" optimization style of ORT's
``convert_onnx_models_to_ort``: all optimisations but the x86-only NchwcTransformer, so DQ -> op -> Q is stored
already fused into QLinearConv/QLinearMatMul/... kernels, which the CPU EP of a mobile build runs. The "runtime"
style (basic level, fusions saved as records for a minimal build to replay) was tried: loaded here, its 659
DequantizeLinear and 364 QuantizeLinear nodes ran unfused (11 ms against 1.7 ms for the .onnx, measured once on a
busy host), so int8 with it would be slower than fp32. Its cost: NNAPI/Core ML EPs see fused QLinear ops instead of
QDQ groups.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import torch

from emo.export import onnx as onnx_backend

load = onnx_backend.load
DEPLOY_TARGET = onnx_backend.DEPLOY_TARGET


def export(model: torch.nn.Module, example: torch.Tensor, path: Path, ctx) -> dict:
    reused = ctx.shared.get("onnx_model") is not None
    proto = onnx_backend.to_onnx(model, example, ctx)
    fixed, facts = ctx.precision == "int8", None  # int8: the QDQ graph, stored in the "fixed" style (docstring)
    if fixed:
        proto, facts = onnx_backend.int8_graph(proto, path.parent, ctx)
    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if fixed
                                        else ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
    options.optimized_model_filepath = str(path)
    options.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"],
                         disabled_optimizers=["NchwcTransformer"] if fixed else None)
    if not path.exists():
        raise RuntimeError("onnxruntime did not write the ORT-format model")
    facts = facts or onnx_backend.graph_facts(proto)
    facts["ort_optimization_level"] = "all but NchwcTransformer (fixed style)" if fixed else "basic"
    facts["reused_onnx_graph_of_this_run"] = reused  # export_seconds then excludes the ONNX export itself
    return facts
