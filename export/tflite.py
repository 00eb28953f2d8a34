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
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

METADATA_NAME = "emo_mobile"


class _Named(nn.Module):
    """litert-torch names signature outputs after dict keys."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.model(image)}


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


def read_metadata(path: Path) -> dict[str, str]:
    """The ``emo_mobile`` metadata of a .tflite written by this backend (what an app reads)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(Path(path).read_bytes()))
    for entry in model.metadata or []:
        if entry.name == METADATA_NAME.encode():
            return json.loads(bytes(model.buffers[entry.buffer].data).decode())
    raise KeyError(f"{path} has no {METADATA_NAME} metadata")


def export(model: nn.Module, example: torch.Tensor, path: Path, ctx) -> dict:
    import litert_torch

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
    if ctx.precision == "fp16":
        model_bytes = _to_fp16_weights(model_bytes)
    path.write_bytes(_rename_and_annotate(model_bytes, {**ctx.metadata, "emo.layout": "NHWC" if nhwc else "NCHW"}))
    facts = {"layout": "NHWC" if nhwc else "NCHW", **graph_facts(path)}
    if ctx.precision == "int8":
        facts["quantization"] = {"scheme": INT8_SCHEME, "io": io_quantization(path)}
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


def io_quantization(path: Path) -> dict:
    """dtype, scale and zero point of the graph's input and output (what an app must apply to an int8 model)."""
    interpreter = _interpreter(path, 1, xnnpack=False)
    out = {}
    for key, detail in (("input", interpreter.get_input_details()[0]), ("output", interpreter.get_output_details()[0])):
        scale, zero_point = detail["quantization"]
        out[key] = {"dtype": np.dtype(detail["dtype"]).name, "scale": float(scale), "zero_point": int(zero_point)}
    return out


def _interpreter(path: Path, threads: int | None, xnnpack: bool = True):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_path=str(path), num_threads=threads or 2, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    return interpreter


def graph_facts(path: Path) -> dict:
    """Operators of the model, and whether the default XNNPACK delegate took the whole graph: one DELEGATE node
    whose inputs and outputs are the graph's own."""
    plain = _interpreter(path, 1, xnnpack=False)
    ops = Counter(op["op_name"] for op in plain._get_ops_details())
    delegated = _interpreter(path, 1, xnnpack=True)
    delegates = [op for op in delegated._get_ops_details() if op["op_name"] == "DELEGATE"]
    graph_in = {d["index"] for d in delegated.get_input_details()}
    graph_out = {d["index"] for d in delegated.get_output_details()}
    whole = (len(delegates) == 1 and graph_in <= set(delegates[0]["inputs"].tolist())
             and graph_out <= set(delegates[0]["outputs"].tolist()))
    return {"ops": dict(sorted(ops.items())), "num_nodes": sum(ops.values()),
            "xnnpack_partitions": len(delegates), "xnnpack_whole_graph": bool(whole)}


def load(path: Path, threads: int | None = None):
    interpreter = _interpreter(path, threads)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    nhwc = int(inp["shape"][-1]) == 3 and int(inp["shape"][1]) != 3

    in_scale, in_zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]
    integer_in = np.dtype(inp["dtype"]).kind in "iu"
    integer_out = np.dtype(out["dtype"]).kind in "iu"

    def run(x: np.ndarray) -> np.ndarray:
        if nhwc:  # the pipeline hands NCHW; an NHWC artifact gets the same pixels channel-last
            x = x.transpose(0, 2, 3, 1)
        if integer_in:  # a full-integer model: quantize the [0, 1] image with the input's scale and zero point
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / in_scale) + in_zero, info.min, info.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], np.ascontiguousarray(x, dtype=inp["dtype"]))
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"]).copy()
        return (y.astype(np.float32) - out_zero) * out_scale if integer_out else y

    return run
