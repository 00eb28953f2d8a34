"""Quantization's shared half lives in ``emo.export.calibration`` (the calibration images every backend gets); this
module is the ONNX QDQ recipe the ONNX-based backends share (onnx, ort, qnn: ``quantize_onnx``, mixed precision by
tensor kind, GELU fusion for the HTP) and the per-layer error of a quantized graph against its float graph, which
every int8 export prints (``qdq_layer_errors``, ``layer_error_lines``; Core ML's comes from the MIL interpreter).

Precisions: ``int8`` (int8 weights, per output channel; 8-bit activations, per tensor) and ``w8a16`` (8-bit weights,
16-bit activations: Qualcomm's recipe for the HTP, where 8-bit activations cost accuracy in attention and
LayerNorm).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


# ------------------------------------------------------------------------------------------------------ ONNX QDQ
@dataclass(frozen=True)
class OnnxRecipe:
    """How ``quantize_onnx`` quantizes: weight and activation types, and the ops left in float."""

    weight_type: str              # "QInt8" | "QUInt8" (onnxruntime.quantization.QuantType names)
    activation_type: str          # "QUInt8" | "QUInt16"
    float_ops: tuple[str, ...]    # op types kept in float (mixed precision)
    description: str
    wide_tensors: tuple[str, ...] = ()  # QNN mixed precision: tensor kinds (see wide_tensors) kept at 16 bits


# ONNX Runtime's CPU EP runs U8S8 (uint8 activations, int8 weights) on VNNI/AVX2 and on Arm's sdot kernels. Softmax,
# LayerNorm's statistics (Pow/ReduceMean->Sqrt/Div) and GELU (Erf) are left in float: they have no int8 kernels on
# the CPU EP (each would be a DequantizeLinear -> float op -> QuantizeLinear detour) and 8-bit steps in a variance or
# an exponent are where int8 transformers lose accuracy.
ONNX_INT8 = OnnxRecipe("QInt8", "QUInt8", ("Softmax", "Erf", "Sqrt", "Reciprocal", "Pow", "Div"),
                       "QDQ; weights int8 symmetric per output channel; activations uint8 asymmetric per tensor; "
                       "MinMax calibration")


def is_channel_mean(weight, rtol: float = 1e-6) -> bool:
    """Whether a conv weight is the deploy form's channel mean (``LayerNorm2d.fuse``): 1x1, one output channel,
    every weight 1/C. ``rtol`` allows for fp16 weights."""
    return (isinstance(weight, np.ndarray) and weight.ndim == 4 and weight.shape[0] == 1
            and weight.shape[2:] == (1, 1)
            and np.allclose(weight.astype(np.float32), 1.0 / weight.shape[1], rtol=rtol, atol=0))


def layernorm_statistics(proto) -> list:
    """The deploy form's LayerNorm statistics convs (weights ``is_channel_mean``): the channel mean of x and the
    mean of the squared deviation (the variance)."""
    from onnx import numpy_helper

    weights = {init.name: init for init in proto.graph.initializer}
    return [node for node in proto.graph.node
            if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in weights
            and len(weights[node.input[1]].dims) == 4 and weights[node.input[1]].dims[0] == 1  # cheap before reading
            and is_channel_mean(numpy_helper.to_array(weights[node.input[1]]))]


def wide_tensors(proto, kinds: tuple[str, ...]) -> list[str]:
    """Names of the activations of ``kinds`` in a float graph: "layernorm_variance" (each LayerNorm's squared
    deviation and its mean: x - mean(x) is small next to its outliers, so 8-bit steps set most squares to 0, and
    1/sigma is then off by orders of magnitude) and "softmax" (attention probabilities: 8-bit steps of 1/255 are
    coarse next to most weights of a 49-token window)."""
    producers = {out: node for node in proto.graph.node for out in node.output}
    names: list[str] = []
    if "layernorm_variance" in kinds:
        for conv in layernorm_statistics(proto):
            square = producers.get(conv.input[0])
            if square is not None and square.op_type == "Mul" and square.input[0] == square.input[1]:
                names += [conv.input[0], conv.output[0]]
    if "softmax" in kinds:
        names += [node.output[0] for node in proto.graph.node if node.op_type == "Softmax"]
    return names


class _Reader:
    """onnxruntime.quantization's CalibrationDataReader over our images (one image per batch entry)."""

    def __init__(self, images: np.ndarray, input_name: str, batch: int) -> None:
        from emo.export.parity import batches

        self._batches = iter(batches(images, batch))
        self._name = input_name

    def get_next(self):
        chunk = next(self._batches, None)
        return None if chunk is None else {self._name: chunk}

    def rewind(self):  # pragma: no cover - only called by calibrators that make several passes
        raise RuntimeError("calibration reader is single-pass")


def quantize_onnx(proto, calibration: np.ndarray, recipe: OnnxRecipe, batch: int, work_dir: Path,
                  qnn: bool = False) -> tuple[object, dict]:
    """A QDQ ONNX model calibrated on ``calibration`` ([0, 1] images in the graph's input layout), and its per-layer
    error against ``proto`` (``qdq_layer_errors``). ``qnn`` uses onnxruntime's QNN config (which knows the HTP's
    constraints, e.g. 16-bit activations with 8-bit weights)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize, quantize_static

    float_path = work_dir / "float.onnx"
    quant_path = work_dir / "qdq.onnx"
    onnx.save(proto, str(float_path))
    input_name = proto.graph.input[0].name
    reader = _Reader(calibration, input_name, batch)
    if qnn:
        from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

        # mixed precision: onnxruntime inserts the 8 <-> 16-bit conversions the HTP runs between them
        overrides = {name: [{"quant_type": QuantType.QUInt16}] for name in wide_tensors(proto, recipe.wide_tensors)}
        config = get_qnn_qdq_config(str(float_path), reader, activation_type=getattr(QuantType, recipe.activation_type),
                                    weight_type=getattr(QuantType, recipe.weight_type), per_channel=True,
                                    calibrate_method=CalibrationMethod.MinMax, init_overrides=overrides or None)
        quantize(str(float_path), str(quant_path), config)
    else:
        float_nodes = [n.name for n in proto.graph.node if n.op_type in recipe.float_ops]
        quantize_static(str(float_path), str(quant_path), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=getattr(QuantType, recipe.activation_type),
                        weight_type=getattr(QuantType, recipe.weight_type), nodes_to_exclude=float_nodes,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
    quantized = onnx.load(str(quant_path))
    del quantized.metadata_props[:]
    for prop in proto.metadata_props:
        quantized.metadata_props.add(key=prop.key, value=prop.value)
    quantized.producer_name = "emo-mobile"
    return quantized, qdq_layer_errors(proto, float_path, quant_path, calibration, batch, work_dir)


LAYER_ERROR_IMAGES = 8  # calibration images the per-layer error of an int8 graph is measured on


def qdq_layer_errors(float_proto, float_path: Path, qdq_path: Path, images: np.ndarray, batch: int, work_dir: Path,
                     worst: int = 8) -> dict:
    """Per-tensor error of a QDQ graph (``qdq_path``) against its float graph (``float_proto``, saved at
    ``float_path``) on a few calibration images, through onnxruntime's
    ``qdq_loss_debug`` (both graphs on the CPU EP, every activation made a graph output): for each quantized
    activation the SQNR of its own quantization step (``qdq_err``, the layers to keep wider) and of the QDQ graph
    against the float one up to that tensor (``xmodel_err``). The worst go into the sidecar; emo-export prints
    them (``layer_error_lines``)."""
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    from emo.export.parity import batches

    paths = {}
    for tag, plain in (("float", float_path), ("qdq", qdq_path)):
        augmented = work_dir / f"debug_{tag}_all.onnx"
        modify_model_output_intermediate_tensors(str(plain), str(augmented))
        paths[tag] = str(augmented)
    name = float_proto.graph.input[0].name
    feeds = [{name: chunk} for chunk in batches(images[:LAYER_ERROR_IMAGES], batch)]
    matched = create_activation_matching(collect_activations(paths["qdq"], iter(feeds)),
                                         collect_activations(paths["float"], iter(feeds)))
    errors = compute_activation_error(matched)
    producers = {out: node.op_type for node in float_proto.graph.node for out in node.output}

    def db(value) -> float | None:  # an exact tensor has infinite SQNR: JSON has no Infinity, so None
        return round(float(value), 2) if value is not None and np.isfinite(value) else None

    rows = [{"tensor": tensor, "op": producers.get(tensor, "input"), "qdq_sqnr_db": db(e["qdq_err"]),
             "xmodel_sqnr_db": db(e.get("xmodel_err"))}
            for tensor, e in errors.items() if db(e.get("qdq_err")) is not None]
    output = float_proto.graph.output[0].name
    record = {"metric": f"SQNR in dB (higher is better) on {min(len(images), LAYER_ERROR_IMAGES)} calibration images, "
                        "onnxruntime qdq_loss_debug on the CPU EP",
              "output_sqnr_db": db(errors.get(output, {}).get("xmodel_err")),
              "activations_compared": len(rows),
              "worst_quantization_steps": sorted(rows, key=lambda r: r["qdq_sqnr_db"])[:worst]}
    return record


def layer_error_lines(artifact: str, record: dict) -> list[str]:
    """The per-layer error of a quantized artifact (its sidecar's ``quantization.layer_errors``, made by
    ``qdq_layer_errors`` or the Core ML backend) as the lines emo-export prints under its table."""
    if "worst_quantization_steps" in record:
        lines = [f"{artifact}: per-layer error ({record['metric']}): output {record['output_sqnr_db']} dB over "
                 f"{record['activations_compared']} quantized activations; lowest quantization SQNR:"]
        lines += [f"  {row['tensor']:<28} {row['op']:<10} step {row['qdq_sqnr_db']:6.2f} dB, "
                  f"graph so far {row['xmodel_sqnr_db']} dB" for row in record["worst_quantization_steps"]]
        return lines
    if "largest_additions" in record:
        lines = [f"{artifact}: per-layer error ({record['metric']}): output {record['output']}; largest additions:"]
        lines += [f"  {row['op']:<28} {row['type']:<10} +{row['added']:.4f} -> {row['error']:.4f}"
                  for row in record["largest_additions"]]
        return lines
    return [f"{artifact}: per-layer error {record.get('metric', 'not recorded')}"]


def _constant(proto, name: str) -> float | None:
    """The scalar value of an initializer or Constant node output, or None."""
    from onnx import numpy_helper

    for init in proto.graph.initializer:
        if init.name == name:
            value = numpy_helper.to_array(init)
            return float(value.reshape(-1)[0]) if value.size == 1 else None
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            value = numpy_helper.to_array(node.attribute[0].t)
            return float(value.reshape(-1)[0]) if value.size == 1 else None
    return None


def fuse_gelu(proto, opset: int = 21):
    """Rewrite the exporter's exact-GELU decomposition ``x * (0.5 * (erf(x / sqrt 2) + 1))`` into one ONNX ``Gelu``
    (opset 20+), raising the model to ``opset``. The QNN HTP has Gelu but no Erf; a fused Gelu is also one
    quantized op instead of four. Returns the number of GELUs fused."""
    import onnx
    from onnx import numpy_helper

    nodes = list(proto.graph.node)
    producer = {out: node for node in nodes for out in node.output}
    consumers: dict[str, list] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def other(node, name):
        return node.input[1] if node.input[0] == name else node.input[0]

    def only_consumer(name, op_type):
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op_type else None

    removed, added = set(), []
    for erf in (n for n in nodes if n.op_type == "Erf"):
        div = producer.get(erf.input[0])
        if div is None or div.op_type != "Div" or abs((_constant(proto, div.input[1]) or 0) - 2 ** 0.5) > 1e-4:
            continue
        x = div.input[0]
        add = only_consumer(erf.output[0], "Add")
        if add is None or _constant(proto, other(add, erf.output[0])) != 1.0:
            continue
        half = only_consumer(add.output[0], "Mul")
        if half is None:
            continue
        if _constant(proto, other(half, add.output[0])) == 0.5:      # (0.5 * (erf + 1)) * x
            last = only_consumer(half.output[0], "Mul")
            if last is None or other(last, half.output[0]) != x:
                continue
            chain = [div, erf, add, half, last]
        elif other(half, add.output[0]) == x:                        # (x * (erf + 1)) * 0.5
            last = only_consumer(half.output[0], "Mul")
            if last is None or _constant(proto, other(last, half.output[0])) != 0.5:
                # the exporter folded the 0.5 into the next layer's weights: x * (erf + 1) = 2 * Gelu(x)
                chain = [div, erf, add, half]
                removed.update(id(n) for n in chain)
                two = f"{erf.name}_two"
                proto.graph.initializer.append(numpy_helper.from_array(np.array(2.0, np.float32), two))
                gelu = f"{erf.name}_gelu"
                added.append((half, [onnx.helper.make_node("Gelu", [x], [gelu], name=gelu),
                                     onnx.helper.make_node("Mul", [gelu, two], [half.output[0]], name=f"{gelu}_x2")]))
                continue
            chain = [div, erf, add, half, last]
        else:
            continue
        removed.update(id(n) for n in chain)
        added.append((last, [onnx.helper.make_node("Gelu", [x], [last.output[0]], name=f"{erf.name}_gelu")]))
    if not added:
        return 0
    replacement = {id(last): gelu for last, gelu in added}
    kept = [new for n in nodes if id(n) not in removed or id(n) in replacement
            for new in replacement.get(id(n), [n])]
    del proto.graph.node[:]
    proto.graph.node.extend(kept)
    used = {name for node in kept for name in node.input}
    unused = [init for init in proto.graph.initializer if init.name not in used]
    for init in unused:
        proto.graph.initializer.remove(init)
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = max(entry.version, opset)
    return len(added)
