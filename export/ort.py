"""ORT-format backend: the ONNX model saved by ONNX Runtime itself in its mobile format (``.ort``).

Recipe: build the ONNX model (shared with the ONNX backend in the same run; int8: its QDQ graph, same calibration),
open it in an InferenceSession that optimises it and writes the ``.ort`` file (``session.save_model_format=ORT``).
An ORT-format model is not optimised again when it is loaded (only saved runtime optimisations are replayed), so
what the file holds is what runs. ``--ort-style`` picks the optimisations, after ORT's own converter
(``onnxruntime.tools.convert_onnx_models_to_ort``: "Fixed" style for the CPU EP, "Runtime" style for NNAPI/Core ML):

- ``cpu`` (default), ORT's "Fixed" style: every optimisation but the x86-only NchwcTransformer, so the file holds
  the fused graph (QuickGelu, LayerNormalization, FusedMatMul ...; int8: QLinearConv/QLinearMatMul ...) that ORT's
  CPU EP builds from the ``.onnx`` at load time on an ARM phone, and runs on any CPU. Measured here
  (``python -m emo.export.bench_ort``): as fast as the ``.onnx`` run without NCHWc (what a phone's CPU EP runs);
  on this x86 host the ``.onnx`` is faster still, by the NCHWc layout that only x86 has.
- ``cpu-x86``: "Fixed" with the NchwcTransformer (ORT's converter with ``--target_platform amd64``): the graph the
  ``.onnx`` gets on an x86-64 CPU, as fast as it there; ``com.microsoft.nchwc`` ops exist in x86 builds only, so
  the file does not load on ARM.
- ``mobile-ep``, ORT's "Runtime" style: basic optimisations (plain ONNX ops, which NNAPI, Core ML and XNNPACK EPs can
  take) with the further fusions saved as records that ORT replays at load on the nodes those EPs leave to the CPU
  EP. For int8 those records did not fuse the QDQ groups when loaded here (659 DequantizeLinear and 364
  QuantizeLinear nodes ran unfused, 11 ms against 1.7 ms for the ``.onnx``): the style for a compiling EP only.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnxruntime as ort
import torch

from emo.export import onnx as onnx_backend

DEPLOY_TARGET = onnx_backend.DEPLOY_TARGET


STYLES: dict[str, dict] = {
    "cpu": {"level": "ORT_ENABLE_ALL", "disabled": ["NchwcTransformer"], "save_runtime": False,
            "optimization": "all but NchwcTransformer (fixed style): every optimisation but the x86-only NCHWc "
                             "layout, applied before saving",
            "suits": ["CPUExecutionProvider (any CPU: ARM phones, x86)"]},
    "cpu-x86": {"level": "ORT_ENABLE_ALL", "disabled": None, "save_runtime": False,
                "optimization": "all (fixed style): every optimisation, the NCHWc layout included, applied before "
                                 "saving",
                "suits": ["CPUExecutionProvider on x86-64 only (com.microsoft.nchwc ops: does not load on ARM)"]},
    "mobile-ep": {"level": "ORT_ENABLE_BASIC", "disabled": None, "save_runtime": True,
                  "optimization": "basic (runtime style): basic optimisations applied (plain ONNX ops), extended ones "
                                  "saved as records that ORT replays at load on the nodes left to the CPU EP",
                  "suits": ["NnapiExecutionProvider", "CoreMLExecutionProvider", "XnnpackExecutionProvider",
                            "CPUExecutionProvider (slower: unfused where the records do not apply)"]},
}
DEFAULT_STYLE = "cpu"


def export(model: torch.nn.Module, example: torch.Tensor, path: Path, ctx) -> dict:
    reused = ctx.shared.get("onnx_model") is not None
    proto = onnx_backend.to_onnx(model, example, ctx)
    facts = None
    if ctx.precision == "int8":
        proto, facts = onnx_backend.int8_graph(proto, path.parent, ctx)
    name = ctx.options.backend_options.get("ort_style") or DEFAULT_STYLE
    style = STYLES[name]
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, style["level"])
    options.optimized_model_filepath = str(path)
    options.add_session_config_entry("session.save_model_format", "ORT")
    if style["save_runtime"]:
        options.add_session_config_entry("optimization.minimal_build_optimizations", "save")
    ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"],
                         disabled_optimizers=style["disabled"])
    if not path.exists():
        raise RuntimeError("onnxruntime did not write the ORT-format model")
    facts = facts or onnx_backend.graph_facts(proto)
    ops = ort_ops(path)
    facts.update({"ort_style": name, "ort_optimization_level": style["optimization"], "ort_suits": style["suits"],
                  "ort_ops": dict(sorted(ops.items())), "ort_nodes": sum(ops.values()),
                  "ort_nchwc_nodes": sum(n for op, n in ops.items() if op.startswith("com.microsoft.nchwc:"))})
    facts["reused_onnx_graph_of_this_run"] = reused  # export_seconds then excludes the ONNX export itself
    return facts


def ort_ops(path: Path) -> Counter:
    """Operators of the main graph of an ORT-format file, ``domain:op`` outside the ONNX domain (read with ORT's own
    flatbuffer bindings, shipped in the onnxruntime wheel)."""
    import onnxruntime.tools.ort_format_model  # noqa: F401 - puts ORT's flatbuffer bindings on the import path
    from ort_flatbuffers_py.fbs.InferenceSession import InferenceSession

    data = bytearray(path.read_bytes())
    if not InferenceSession.InferenceSessionBufferHasIdentifier(data, 0):
        raise RuntimeError(f"{path.name} is not an ORT-format model")
    graph = InferenceSession.GetRootAsInferenceSession(data, 0).Model().Graph()
    ops = Counter()
    for i in range(graph.NodesLength()):
        node = graph.Nodes(i)
        domain = (node.Domain() or b"").decode()
        ops[f"{domain}:{node.OpType().decode()}" if domain and domain != "ai.onnx" else node.OpType().decode()] += 1
    return ops
