"""QNN backend: the Qualcomm HTP (Hexagon NPU) through onnxruntime-qnn, checked on the HTP simulator.

Recipe:
1. The float ONNX graph of this run (shared with the onnx/ort backends), made HTP-friendly: the exporter's
   erf-decomposed GELU is fused into one ``Gelu`` (the HTP has no Erf), and ``Reciprocal`` becomes ``Div(1, x)``
   (the HTP's 16-bit Reciprocal returned LayerNorm's 1/sigma off by up to 9x on the simulator, measured
   per layer; Div is exact to the quantization step).
2. QDQ quantization with onnxruntime's QNN config (``emo.export.quantize``): ``w8a16`` (default: 8-bit
   per-channel weights, 16-bit activations, Qualcomm's recipe for attention and LayerNorm) or ``int8``.
3. Compiled ahead of time for ``SOC_MODEL``/``HTP_ARCH`` by the QNN execution provider with
   ``session.disable_cpu_ep_fallback=1``: every node must go to the HTP, and one the HTP cannot take is an error that
   names it. The result is an ONNX model whose graph is one ``EPContext`` node with the QNN context binary
   embedded: a phone's onnxruntime with the QNN EP loads it without compiling again.
4. Parity runs the compiled model with the QNN EP's HTP backend on this x86-64 host: ``libQnnHtp.so`` of the
   onnxruntime-qnn wheel is the HTP **simulator**, not a phone (the sidecar says so).

onnxruntime-qnn 2.x is a plugin EP for a stock onnxruntime (>= 1.24): it installs beside onnxruntime, registers
its library once per process (``register_execution_provider_library``), and is selected through
``add_provider_for_devices``.
"""

from __future__ import annotations

import copy
import io
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import onnxruntime_qnn
import torch

from emo.export import onnx as onnx_backend
from emo.export.output import captured_output
from emo.export.quantize import OnnxRecipe, fuse_gelu, quantize_onnx

EP_NAME = "QNNExecutionProvider"
SOC_MODEL = "57"          # Snapdragon 8 Gen 3 (SM8650)
SOC_NAME = "Snapdragon 8 Gen 3 (SM8650)"
HTP_ARCH = "75"           # Hexagon v75
RECIPES = {
    "w8a16": OnnxRecipe("QUInt8", "QUInt16", (), "QDQ for the QNN HTP; weights uint8 per output channel; "
                        "activations uint16 per tensor; MinMax calibration (onnxruntime get_qnn_qdq_config)"),
    # int8 with the LayerNorm variance and the attention softmax at 16 bits: on the fixture (10k test images,
    # onnxruntime CPU EP running the same QDQ graph) top-1 90.63 -> 90.84 % (fp32 91.29), cosine 0.9980 -> 0.9986;
    # the rest of each LayerNorm and the GELUs at 16 bits as well changed nothing (90.87, 90.85).
    "int8": OnnxRecipe("QUInt8", "QUInt8", (), "QDQ for the QNN HTP; weights uint8 per output channel; "
                       "activations uint8 per tensor, except LayerNorm variances and softmax outputs (uint16); "
                       "MinMax calibration (onnxruntime get_qnn_qdq_config)", ("layernorm_variance", "softmax")),
}
RUNTIME = "onnxruntime QNN EP, HTP backend (x86-64 HTP simulator, not a phone)"

_registered = False


def _register() -> None:
    """Register the plugin EP library with onnxruntime once per process."""
    global _registered
    if not _registered:
        if not any(d.ep_name == EP_NAME for d in ort.get_ep_devices()):
            ort.register_execution_provider_library(EP_NAME, onnxruntime_qnn.get_library_path())
        _registered = True


def _session_options(compile_for_soc: bool, threads: int | None = None) -> ort.SessionOptions:
    _register()
    devices = [d for d in ort.get_ep_devices() if d.ep_name == EP_NAME]
    if not devices:
        raise RuntimeError("onnxruntime-qnn registered no device for the QNN EP")
    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")  # every node on the HTP, or an error
    if threads:
        options.intra_op_num_threads = threads
    provider = {"backend_type": "htp"}
    if compile_for_soc:
        provider.update(soc_model=SOC_MODEL, htp_arch=HTP_ARCH)
    options.add_provider_for_devices(devices, provider)
    return options


def reciprocal_to_div(proto: onnx.ModelProto) -> int:
    """``Reciprocal(x)`` -> ``Div(1, x)`` (see the module docstring); returns how many were rewritten."""
    one = "emo_qnn_one"
    count = 0
    for index, node in enumerate(proto.graph.node):
        if node.op_type == "Reciprocal":
            proto.graph.node[index].CopyFrom(onnx.helper.make_node("Div", [one, node.input[0]], list(node.output),
                                                                   name=f"{node.name}_as_div"))
            count += 1
    if count:
        proto.graph.initializer.append(onnx.numpy_helper.from_array(np.array(1.0, dtype=np.float32), one))
    return count


def _unsupported(log: str) -> str | None:
    """The nodes the QNN EP refused, from its log line ``Unsupported nodes in QNN EP: { name: X, type: Y }...``."""
    match = re.search(r"Unsupported nodes in QNN EP: (.*)", log)
    if not match:
        return None
    nodes = re.findall(r"name: ([^,]+), type: ([^ }]+)", match.group(1))
    shown = ", ".join(f"{name} ({op})" for name, op in nodes[:5])
    return shown + (f" and {len(nodes) - 5} more" if len(nodes) > 5 else "")


def compile_for_htp(qdq_path: Path, path: Path) -> None:
    """Compile a QDQ model for ``SOC_MODEL`` into ``path`` (one EPContext node, context binary embedded). A node the
    HTP cannot take is an error that names it: CPU fallback is disabled."""
    log = io.StringIO()
    try:
        with captured_output(log):
            compiler = ort.ModelCompiler(_session_options(compile_for_soc=True), str(qdq_path),
                                         embed_compiled_data_into_model=True)
            compiler.compile_to_file(str(path))
    except Exception as e:
        print(log.getvalue(), file=sys.stderr)  # into the export log
        refused = _unsupported(log.getvalue())
        if refused:
            raise RuntimeError(f"the HTP cannot take node(s) {refused}; CPU fallback is disabled") from e
        raise
    print(log.getvalue(), file=sys.stderr)


def export(model: torch.nn.Module, example: torch.Tensor, path: Path, ctx) -> dict:
    if ctx.dynamic_batch:
        raise ValueError("the HTP takes static shapes; drop --dynamic-batch")  # rejected earlier by the CLI
    proto = copy.deepcopy(onnx_backend.to_onnx(model, example, ctx))
    gelus, reciprocals = fuse_gelu(proto), reciprocal_to_div(proto)
    recipe = RECIPES[ctx.precision]
    with tempfile.TemporaryDirectory(prefix=".emo-qnn-", dir=path.parent) as work:
        quantized, errors = quantize_onnx(proto, ctx.calibration.images, recipe, ctx.batch, Path(work), qnn=True)
        qdq_path = Path(work) / "qdq.onnx"
        onnx.save(quantized, str(qdq_path))
        compile_for_htp(qdq_path, path)
    compiled = onnx.load(str(path), load_external_data=False)
    ops = [n.op_type for n in compiled.graph.node]
    if not ops or set(ops) != {"EPContext"}:
        raise RuntimeError(f"the compiled model has nodes outside the HTP context: {sorted(set(ops) - {'EPContext'})}")
    embed = [a.i for n in compiled.graph.node for a in n.attribute if a.name == "embed_mode"]
    sdk = [a.s.decode() for n in compiled.graph.node for a in n.attribute if a.name == "ep_sdk_version"]
    qdq_ops = [n.op_type for n in quantized.graph.node]
    return {
        "target": {"soc_model": int(SOC_MODEL), "soc": SOC_NAME, "htp_arch": f"v{HTP_ARCH}"},
        "checked_on": "HTP simulator (libQnnHtp.so of onnxruntime-qnn on x86-64), not a phone",
        "qnn_sdk": getattr(onnxruntime_qnn.build_and_package_info, "qnn_version", sdk[0] if sdk else "unknown"),
        "epcontext_nodes": len(ops), "embed_mode": embed[0] if embed else None,
        "nodes_on_htp": len(qdq_ops), "nodes_on_cpu": 0,
        "qdq_nodes": {"total": len(qdq_ops), "quantize_dequantize": sum(op in ("QuantizeLinear", "DequantizeLinear")
                                                                          for op in qdq_ops)},
        "graph_rewrites": {"erf_gelu_fused": gelus, "reciprocal_as_div": reciprocals},
        "quantization": {**onnx_backend.quantization_facts(quantized, recipe),
                         "layer_errors": {**errors, "note": "the QDQ graph on the CPU EP, before HTP compilation"}},
    }


def epcontext_model(partitions: list[tuple[str, bytes, list[str], list[str]]],
                    inputs: list[tuple[str, int, list[int]]], outputs: list[tuple[str, int, list[int]]]
                    ) -> onnx.ModelProto:
    """An ONNX model of ``EPContext`` nodes, each holding a QNN context binary (embedded), as the QNN EP writes one
    when it compiles: this is how context binaries made elsewhere (LiteRT's Qualcomm compiler plugin) run on the HTP
    simulator here. ``partitions`` are (QNN graph name, context binary, input names, output names): the QNN EP finds
    the graph by the node's name and binds tensors by name, so the names are those inside the binary. ``inputs`` and
    ``outputs`` are the graph's, as (name, onnx.TensorProto dtype, shape)."""
    nodes = [onnx.helper.make_node("EPContext", list(ins), list(outs), name=name, domain="com.microsoft",
                                   main_context=1, embed_mode=1, ep_cache_context=binary, source="QNN",
                                   partition_name=name)
             for name, binary, ins, outs in partitions]
    values = [[onnx.helper.make_tensor_value_info(name, dtype, shape) for name, dtype, shape in group]
              for group in (inputs, outputs)]
    graph = onnx.helper.make_graph(nodes, "emo_epcontext", values[0], values[1])
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17),
                                                        onnx.helper.make_opsetid("com.microsoft", 1)])


def htp_session(model: Path | bytes, threads: int | None = None) -> ort.InferenceSession:
    """A session on the HTP (simulator on x86-64) for a compiled model (EPContext), CPU fallback disabled: a node
    the HTP does not run is an error, never a silent CPU run."""
    with captured_output(io.StringIO()):  # the EP's banner lines on load
        source = model if isinstance(model, bytes) else str(model)
        return ort.InferenceSession(source, _session_options(compile_for_soc=False, threads=threads))


def load(path: Path, threads: int | None = None):
    sess = htp_session(path, threads)
    name = sess.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    return run
