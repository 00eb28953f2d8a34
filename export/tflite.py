"""TFLite / LiteRT backend: litert-torch (the renamed ai-edge-torch) straight from PyTorch, no ONNX detour.

Recipe:
1. Optionally wrap for NHWC input (``--nhwc``: camera frames on Android arrive channel-last).
2. ``litert_torch.convert`` of the deploy form, with the input passed as ``image`` and a ``logits`` output.
3. fp16: ``ai_edge_quantizer`` float casting of the weights (fp16 storage, DEQUANTIZE to fp32 on the CPU;
   GPU delegates compute in fp16) — LiteRT's replacement for TFLite's float16 post-training quantization.
   int8: full-integer through litert-torch's PT2E quantizer (``_to_int8``), calibrated on the pipeline's calibration
   images; the graph's input and output are int8 (scale and zero point in the sidecar; ``load`` applies them).
4. Rename the signature's tensors to ``image`` / ``logits`` and embed the run's metadata (variant, input
   contract, normalisation, labels) as a ``emo_mobile`` metadata buffer, so an app needs no side file.
5. NHWC artifacts also get the standard TFLite Model Metadata of an image classifier (``TFLITE_METADATA``: RGB
   image input, its normalisation, the labels file packed into the model's zip tail), which MediaPipe Tasks'
   ``ImageClassifier`` and Android Studio's ML model binding read; they take only channel-last images.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emo.contract.runtimes import litert_interpreter
from emo.data import IMAGENET_MEAN, IMAGENET_STD

METADATA_NAME = "emo_mobile"
# litert-torch runs convolutions NHWC and puts a TRANSPOSE on each side of every reshape of an NCHW tensor (74 in
# emo_1m at 224 with the "portable" form); the channel-last attention leaves 2 per attention block (19 in all).
DEPLOY_TARGET = "channels_last"
# int8: litert-torch's PT2E quantizer gives a concatenation the range of its first input (q and k), and the values
# were clipped (parity cosine 0.89 at 224, random weights); with q, k and the values out of one conv, 0.9994 (as
# the plain form), 20 TRANSPOSEs instead of 75, 3% faster in XNNPACK here.
DEPLOY_TARGET_BY_PRECISION = {"int8": "channels_last_qkv"}


class _Named(nn.Module):
    """litert-torch names signature outputs after dict keys."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.model(image)}


def _register_window_lowerings() -> None:
    """Lower the "channels_last" target's ``emo::space_to_depth_nhwc`` / ``depth_to_space_nhwc`` (square blocks) to
    TFLite's SPACE_TO_DEPTH / DEPTH_TO_SPACE, which XNNPACK runs; litert-torch lowers only aten ops by itself, and
    takes a ``tfl.*`` op as a StableHLO custom call (as its own ``torch_tfl`` ops do). Idempotent."""
    from litert_converter.mlir import ir
    from litert_converter.mlir.dialects import stablehlo
    from litert_torch.backend.lowerings import registry
    from litert_torch.backend.lowerings import utils as lowering_utils

    def lowering(name: str):
        def lower(lctx, x, block_h: int, block_w: int):
            if block_h != block_w:  # the model only emits square blocks (rectangular ones use the reference ops)
                raise ValueError(f"{name} takes a square block, not {block_h}x{block_w}")
            attributes = ir.DictAttr.get({"block_size": ir.IntegerAttr.get(ir.IntegerType.get_signless(32),
                                                                             block_h)})
            return stablehlo.custom_call(result=lowering_utils.node_meta_to_ir_types(lctx.node), inputs=[x],
                                         call_target_name=ir.StringAttr.get(name),
                                         has_side_effect=ir.BoolAttr.get(False),
                                         backend_config=ir.StringAttr.get(str(attributes)))
        return lower

    registry.global_registry.register(torch.ops.emo.space_to_depth_nhwc.default, lowering("tfl.space_to_depth"))
    registry.global_registry.register(torch.ops.emo.depth_to_space_nhwc.default, lowering("tfl.depth_to_space"))


def _to_fp16_weights(model_bytes: bytes) -> bytes:
    from ai_edge_quantizer import qtyping, quantizer

    qt = quantizer.Quantizer(bytearray(model_bytes))
    qt.update_quantization_recipe(
        regex=".*", operation_name="*", algorithm_key="float_casting",
        op_config=qtyping.OpQuantizationConfig(
            weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
            compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True))
    return bytes(qt.quantize().quantized_model)


def _rename_and_annotate(model_bytes: bytes, metadata: dict[str, str]) -> bytes:
    """Signature tensors become ``image`` / ``logits``; the metadata goes in as one JSON buffer."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    subgraph = model.subgraphs[0]
    for signature in model.signatureDefs or []:
        for tensor_map, name in ((signature.inputs, "image"), (signature.outputs, "logits")):
            if len(tensor_map) != 1:
                raise RuntimeError(f"expected one signature tensor, got {len(tensor_map)}")
            tensor_map[0].name = name.encode()
            subgraph.tensors[tensor_map[0].tensorIndex].name = name.encode()
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME.encode()
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME.encode()] + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


# TFLite Model Metadata (tensorflow/tflite-support metadata_schema.fbs, "M001"): the slots of the tables we write
_MD_IMAGE_PROPERTIES, _MD_FEATURE_PROPERTIES, _MD_NORMALIZATION, _MD_RGB, _MD_AXIS_LABELS = 2, 1, 1, 1, 2
TFLITE_METADATA_NAME = "TFLITE_METADATA"
LABELS_FILE = "labels.txt"


def _classifier_metadata(name: str, description: str, mean: list[float], std: list[float],
                         labels: bool) -> bytes:
    """A ModelMetadata flatbuffer: one subgraph, an RGB image input with its normalisation (applied to pixel values
    0..255), a class-score output with the labels file as its axis labels. Written with the flatbuffers builder
    from the schema's field order (min parser 1.0.0: nothing newer is used)."""
    import flatbuffers

    b = flatbuffers.Builder(1024)

    def table(fields: list[tuple[str, int, object]]) -> int:  # (kind, slot, value) after the children are built
        b.StartObject(max(slot for _, slot, _ in fields) + 1)
        for kind, slot, value in fields:
            if kind == "offset":
                b.PrependUOffsetTRelativeSlot(slot, value, 0)
            else:  # a byte-sized enum or union type
                b.PrependUint8Slot(slot, value, 0)
        return b.EndObject()

    def vector(offsets: list[int]) -> int:
        b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    def floats(values: list[float]) -> int:
        b.StartVector(4, len(values), 4)
        for v in reversed(values):
            b.PrependFloat32(v)
        return b.EndVector()

    image_props = table([("byte", 0, _MD_RGB)])
    image_content = table([("byte", 0, _MD_IMAGE_PROPERTIES), ("offset", 1, image_props)])
    norm = table([("offset", 0, floats(mean)), ("offset", 1, floats(std))])
    unit = table([("byte", 0, _MD_NORMALIZATION), ("offset", 1, norm)])
    input_md = table([("offset", 0, b.CreateString("image")),
                      ("offset", 1, b.CreateString("RGB image, pixel values 0..255 normalised as the process unit "
                                                   "says; resize the shorter side to size/0.875 and centre-crop")),
                      ("offset", 3, image_content), ("offset", 4, vector([unit]))])
    feature_content = table([("byte", 0, _MD_FEATURE_PROPERTIES), ("offset", 1, table([("byte", 0, 0)]))])
    output_fields = [("offset", 0, b.CreateString("logits")),
                     ("offset", 1, b.CreateString("class logits (softmax for probabilities)")),
                     ("offset", 3, feature_content)]
    if labels:
        label_file = table([("offset", 0, b.CreateString(LABELS_FILE)),
                            ("offset", 1, b.CreateString("class names, one per line, in index order")),
                            ("byte", 2, _MD_AXIS_LABELS)])
        output_fields.append(("offset", 6, vector([label_file])))
    output_md = table(output_fields)
    subgraph = table([("offset", 2, vector([input_md])), ("offset", 3, vector([output_md]))])
    root = table([("offset", 0, b.CreateString(name)), ("offset", 1, b.CreateString(description)),
                  ("offset", 3, vector([subgraph])), ("offset", 4, b.CreateString("emo-mobile")),
                  ("offset", 7, b.CreateString("1.0.0"))])
    b.Finish(root, file_identifier=b"M001")
    return bytes(b.Output())


def add_classifier_metadata(model_bytes: bytes, name: str, description: str, mean: list[float], std: list[float],
                            labels: tuple[str, ...] | None) -> bytes:
    """The model with a ``TFLITE_METADATA`` buffer and, when there are labels, ``labels.txt`` in a zip appended to
    the flatbuffer (how TFLite packs associated files; the interpreter ignores the tail)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(_classifier_metadata(name, description, mean, std, bool(labels)), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = TFLITE_METADATA_NAME.encode()
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != entry.name] + [entry]
    out = io.BytesIO(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    if labels:
        with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(LABELS_FILE, "\n".join(labels) + "\n")
    return out.getvalue()


def read_metadata(path: Path) -> dict[str, str]:
    """The ``emo_mobile`` metadata of a .tflite written by this backend (what an app reads)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(Path(path).read_bytes()))
    for entry in model.metadata or []:
        if entry.name == METADATA_NAME.encode():
            return json.loads(bytes(model.buffers[entry.buffer].data).decode())
    raise KeyError(f"{path} has no {METADATA_NAME} metadata")


def convert(model: nn.Module, example: torch.Tensor, ctx, xnnpack_float_islands: bool = True) -> tuple[bytes, int]:
    """Steps 1-4 of the recipe: the annotated .tflite bytes, before any TFLite Model Metadata, and how many int8
    ops were made float islands for XNNPACK (``float_islands``; ``xnnpack_float_islands=False`` keeps the graph as
    the quantizer made it, for a runtime other than XNNPACK)."""
    import litert_torch

    _register_window_lowerings()
    if ctx.dynamic_batch:
        raise ValueError("TFLite export takes a static batch here; drop --dynamic-batch")  # rejected earlier by CLI
    nhwc = bool(ctx.options.backend_options.get("nhwc"))
    if nhwc:
        model = litert_torch.to_channel_last_io(model, args=[0]).eval()
        example = example.permute(0, 2, 3, 1).contiguous()
    if ctx.precision == "int8":
        converted = _to_int8(_Named(model).eval(), example, ctx, nhwc)
    else:
        converted = litert_torch.convert(_Named(model).eval(), sample_kwargs={"image": example})
    model_bytes = bytes(converted.model_content())
    unfused = 0
    if ctx.precision == "int8" and xnnpack_float_islands:
        model_bytes, unfused = float_islands(model_bytes)
    if ctx.precision == "fp16":
        model_bytes = _to_fp16_weights(model_bytes)
    model_bytes = _rename_and_annotate(model_bytes, {**ctx.metadata, "emo.layout": "NHWC" if nhwc else "NCHW"})
    return model_bytes, unfused


def export(model: nn.Module, example: torch.Tensor, path: Path, ctx) -> dict:
    model_bytes, unfused = convert(model, example, ctx)
    nhwc = bool(ctx.options.backend_options.get("nhwc"))
    facts = {"tflite_metadata": "none: MediaPipe and ML model binding take NHWC images (export with --nhwc)"}
    if ctx.precision == "int8":
        facts["tflite_metadata"] = "none: the int8 input takes quantized values, not an image the metadata describes"
    elif nhwc:
        opts = ctx.options
        in_graph = opts.normalize
        mean = [0.0, 0.0, 0.0] if in_graph else [255 * m for m in IMAGENET_MEAN]
        std = [255.0, 255.0, 255.0] if in_graph else [255 * s for s in IMAGENET_STD]
        model_bytes = add_classifier_metadata(
            model_bytes, f"EMO {opts.variant}", f"EMO {opts.variant} image classifier (Zhang et al., ICCV 2023), "
            f"{ctx.precision}, exported by emo-mobile", mean, std, opts.labels)
        facts["tflite_metadata"] = "image classifier (TFLITE_METADATA" + (" + labels.txt)" if opts.labels else ")")
    path.write_bytes(model_bytes)
    facts = {"layout": "NHWC" if nhwc else "NCHW", **facts, **graph_facts(path)}
    if ctx.precision == "int8":
        facts["quantization"] = {"scheme": INT8_SCHEME, "io": io_quantization(path),
                                 "int8_ops_run_in_float_for_xnnpack": unfused}
    return facts


INT8_SCHEME = ("litert-torch PT2E static quantization: weights int8 symmetric per output channel, activations int8 "
               "per tensor (MinMax observers), int8 graph input and output")


def _to_int8(named: nn.Module, example: torch.Tensor, ctx, nhwc: bool):
    """Full-integer int8 through litert-torch's PT2E quantizer: export, insert observers, run the calibration
    images (``ctx.calibration``, in the graph's layout), convert, and lower with the quantizer's config."""
    import litert_torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from emo.export.parity import batches

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    prepared = prepare_pt2e(torch.export.export(named, (), {"image": example}).module(), quantizer)
    images = ctx.calibration.images.transpose(0, 2, 3, 1) if nhwc else ctx.calibration.images
    with torch.no_grad():
        for chunk in batches(np.ascontiguousarray(images), example.shape[0]):
            prepared(image=torch.from_numpy(chunk))
    converted = convert_pt2e(prepared, fold_quantize=False)
    return litert_torch.convert(converted, sample_kwargs={"image": example},
                                quant_config=QuantConfig(pt2e_quantizer=quantizer))


# Integer ops the XNNPACK delegate has no kernel for: each one cut the graph into another partition (measured: the
# two int8 GELUs that litert-torch makes where a GELU feeds a quantized conv split emo_1m into 3 XNNPACK partitions).
# They become DEQUANTIZE -> float op -> QUANTIZE, which XNNPACK runs, as it runs the float GELUs of the same graph.
_FLOAT_IN_XNNPACK = ("GELU",)


def float_islands(model_bytes: bytes) -> tuple[bytes, int]:
    """Rewrite int8 ops of ``_FLOAT_IN_XNNPACK`` as dequantize -> float op -> quantize (same scales, so the same
    function up to the op's own rounding). Returns the model and how many ops were rewritten."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    codes = {}
    for index, code in enumerate(model.operatorCodes):
        codes[max(code.builtinCode, code.deprecatedBuiltinCode)] = index
    names = {getattr(schema.BuiltinOperator, n): n for n in _FLOAT_IN_XNNPACK}

    def opcode(builtin: int) -> int:
        if builtin not in codes:
            code = schema.OperatorCodeT()
            code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
            model.operatorCodes.append(code)
            codes[builtin] = len(model.operatorCodes) - 1
        return codes[builtin]

    def float_twin(tensor, suffix: bytes) -> int:
        twin = schema.TensorT()
        twin.shape, twin.type, twin.buffer = tensor.shape, schema.TensorType.FLOAT32, 0
        twin.name = (tensor.name or b"") + suffix
        subgraph.tensors.append(twin)
        return len(subgraph.tensors) - 1

    rewritten = 0
    for subgraph in model.subgraphs:
        operators = []
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            source = subgraph.tensors[op.inputs[0]]
            if builtin not in names or source.type != schema.TensorType.INT8:
                operators.append(op)
                continue
            x, y = float_twin(source, b"/dequantized"), float_twin(subgraph.tensors[op.outputs[0]], b"/float")
            dequantize, quantize = schema.OperatorT(), schema.OperatorT()
            dequantize.opcodeIndex = opcode(schema.BuiltinOperator.DEQUANTIZE)
            dequantize.inputs, dequantize.outputs = [op.inputs[0]], [x]
            quantize.opcodeIndex = opcode(schema.BuiltinOperator.QUANTIZE)
            quantize.inputs, quantize.outputs = [y], [op.outputs[0]]
            op.inputs, op.outputs = [x, *op.inputs[1:]], [y]
            operators += [dequantize, op, quantize]
            rewritten += 1
        subgraph.operators = operators
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), rewritten


def io_quantization(path: Path) -> dict:
    """dtype, scale and zero point of the graph's input and output (what an app must apply to an int8 model)."""
    interpreter = litert_interpreter(path, 1, xnnpack=False)
    out = {}
    for key, detail in (("input", interpreter.get_input_details()[0]), ("output", interpreter.get_output_details()[0])):
        scale, zero_point = detail["quantization"]
        out[key] = {"dtype": np.dtype(detail["dtype"]).name, "scale": float(scale), "zero_point": int(zero_point)}
    return out


def graph_facts(path: Path) -> dict:
    """Operators of the model, and whether the default XNNPACK delegate took the whole graph: one DELEGATE node
    whose inputs and outputs are the graph's own."""
    plain = litert_interpreter(path, 1, xnnpack=False)
    ops = Counter(op["op_name"] for op in plain._get_ops_details())
    delegated = litert_interpreter(path, 1, xnnpack=True)
    delegates = [op for op in delegated._get_ops_details() if op["op_name"] == "DELEGATE"]
    graph_in = {d["index"] for d in delegated.get_input_details()}
    graph_out = {d["index"] for d in delegated.get_output_details()}
    whole = (len(delegates) == 1 and graph_in <= set(delegates[0]["inputs"].tolist())
             and graph_out <= set(delegates[0]["outputs"].tolist()))
    return {"ops": dict(sorted(ops.items())), "num_nodes": sum(ops.values()),
            "xnnpack_partitions": len(delegates), "xnnpack_whole_graph": bool(whole)}

