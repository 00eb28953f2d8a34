"""ONNX backend: torch.export -> ONNX (dynamo exporter) -> onnxsim -> fixed names and metadata_props.

Recipe:
1. ``torch.onnx.export(dynamo=True)`` of the deploy form (needs onnxscript), opset ``OPSET``.
2. onnxsim folds what the exporter left (shape arithmetic, constant subgraphs) and checks the result.
3. Input ``image`` and output ``logits`` names are asserted; the run's metadata goes to ``metadata_props``.
4. ``onnx.checker`` and a shape-inference pass, whose largest tensor rank goes to the sidecar (must be <= 4).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path

import onnx
import onnxsim
import torch

OPSET = 18
DEPLOY_TARGET = "native"  # the window partition as one SpaceToDepth / DepthToSpace (translated below)


def _window_translations() -> dict:
    """``emo::space_to_depth`` / ``emo::depth_to_space`` are ONNX SpaceToDepth / DepthToSpace (mode DCR): the same
    window-major channel order. The native form only uses them with a square block (ONNX's blocksize is one int)."""
    from onnxscript import opset18 as op

    import emo.model  # noqa: F401 - registers torch.ops.emo

    def space_to_depth(x, block_h: int, block_w: int):
        assert block_h == block_w, "SpaceToDepth needs a square block"
        return op.SpaceToDepth(x, blocksize=block_h)

    def depth_to_space(x, block_h: int, block_w: int):
        assert block_h == block_w, "DepthToSpace needs a square block"
        return op.DepthToSpace(x, blocksize=block_h, mode="DCR")

    def gelu(x, approximate: str = "none"):
        # exact GELU written as x * (1 + erf(x / sqrt 2)) * 0.5: the order ORT's GeluFusion matches (the exporter's
        # 0.5 * (1 + erf) * x is left as five ops); opset 20 has Gelu itself, opset 18 does not
        if approximate != "none":
            raise ValueError(f"gelu approximate={approximate!r}: EMO uses the exact (erf) GELU")
        inner = op.Add(op.Erf(op.Div(x, op.CastLike(math.sqrt(2.0), x))), op.CastLike(1.0, x))
        return op.Mul(op.Mul(x, inner), op.CastLike(0.5, x))

    return {torch.ops.emo.space_to_depth.default: space_to_depth, torch.ops.emo.depth_to_space.default: depth_to_space,
            torch.ops.aten.gelu.default: gelu}


def to_onnx(model: torch.nn.Module, example: torch.Tensor, ctx) -> onnx.ModelProto:
    """The simplified, named, annotated ONNX model (kept in memory so the ORT backend can reuse it)."""
    # one run exports one model: the graph only depends on the input contract
    key = (tuple(example.shape), ctx.dynamic_batch, ctx.options.normalize)
    if ctx.shared.get("onnx_key") == key:
        return ctx.shared["onnx_model"]
    # the exporter warns on stderr for every torchvision op it cannot register; we use none of them
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=1024)},) if ctx.dynamic_batch else None
    program = torch.onnx.export(model, (example,), dynamo=True, input_names=["image"], output_names=["logits"],
                                opset_version=OPSET, dynamic_shapes=dynamic_shapes, verbose=False,
                                custom_translation_table=_window_translations())
    proto = program.model_proto
    simplified, ok = onnxsim.simplify(proto)
    if not ok:
        raise RuntimeError("onnxsim could not validate the simplified model")
    inputs, outputs = [i.name for i in simplified.graph.input], [o.name for o in simplified.graph.output]
    if inputs != ["image"] or outputs != ["logits"]:
        raise RuntimeError(f"unexpected graph I/O names {inputs} -> {outputs}")
    if ctx.dynamic_batch:
        for value in (*simplified.graph.input, *simplified.graph.output):
            value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del simplified.metadata_props[:]
    for key_, value in ctx.metadata.items():
        simplified.metadata_props.add(key=key_, value=value)
    simplified.producer_name = "emo-mobile"
    onnx.checker.check_model(simplified)
    ctx.shared.update(onnx_key=key, onnx_model=simplified)
    return simplified


def graph_facts(proto: onnx.ModelProto) -> dict:
    """Operator counts and the largest tensor rank of every value in the graph (after shape inference)."""
    inferred = onnx.shape_inference.infer_shapes(proto)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    ranks = [len(v.type.tensor_type.shape.dim) for v in values if v.type.tensor_type.HasField("shape")]
    ranks += [len(t.dims) for t in inferred.graph.initializer]
    ops = Counter(node.op_type for node in inferred.graph.node)
    return {"opset": OPSET, "ops": dict(sorted(ops.items())), "num_nodes": len(inferred.graph.node),
            "max_tensor_rank": max(ranks) if ranks else 0}


def export(model: torch.nn.Module, example: torch.Tensor, path: Path, ctx) -> dict:
    proto = to_onnx(model, example, ctx)
    if ctx.precision == "int8":
        proto, facts = int8_graph(proto, path.parent, ctx)
        onnx.save(proto, str(path))
        return facts
    onnx.save(proto, str(path))
    return graph_facts(proto)


def int8_graph(proto: onnx.ModelProto, folder: Path, ctx) -> tuple[onnx.ModelProto, dict]:
    """QDQ int8 (``emo.export.quantize``): the float graph with QuantizeLinear/DequantizeLinear pairs around what
    runs in int8, calibrated on ``ctx.calibration``. Runtimes fuse DQ -> op -> Q into integer kernels. Made once per
    run and shared by the onnx and ort backends (same calibration, same graph)."""
    import tempfile

    from emo.export.quantize import ONNX_INT8, quantize_onnx

    if ctx.shared.get("onnx_int8") is None:
        with tempfile.TemporaryDirectory(prefix=".emo-quant-", dir=folder) as work:
            quantized, errors = quantize_onnx(proto, ctx.calibration.images, ONNX_INT8, ctx.batch, Path(work))
        onnx.checker.check_model(quantized)
        ctx.shared["onnx_int8"] = quantized, errors
    quantized, errors = ctx.shared["onnx_int8"]
    facts = graph_facts(quantized)
    facts["quantization"] = {**quantization_facts(quantized, ONNX_INT8), "layer_errors": errors}
    return quantized, facts


def quantization_facts(proto: onnx.ModelProto, recipe) -> dict:
    """What the sidecar says about a QDQ graph: the recipe, and which compute ops run quantized (every input from a
    DequantizeLinear, every output into a QuantizeLinear: a runtime can fuse them into one integer kernel) and which
    stay in float between a DequantizeLinear and a QuantizeLinear."""
    producers = {out: node.op_type for node in proto.graph.node for out in node.output}
    consumers: dict[str, list[str]] = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    quantized, floating = Counter(), Counter()
    for node in proto.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        inputs = [producers[name] for name in node.input if name in producers]
        outputs = [op for name in node.output for op in consumers.get(name, [])]
        fused = (inputs and all(op == "DequantizeLinear" for op in inputs)
                 and outputs and all(op == "QuantizeLinear" for op in outputs))
        (quantized if fused else floating)[node.op_type] += 1
    return {"scheme": recipe.description, "weight_type": recipe.weight_type,
            "activation_type": recipe.activation_type, "float_op_types": list(recipe.float_ops),
            "sixteen_bit_activations": list(recipe.wide_tensors),
            "quantized_ops": dict(sorted(quantized.items())), "float_ops": dict(sorted(floating.items()))}


def session(path_or_bytes, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes,
                                options, providers=["CPUExecutionProvider"])

