"""Reading an NPU-compiled .tflite (``litert-npu``) and running it on the host's HTP simulator.

A .tflite compiled ahead of time by ai-edge-litert holds each NPU partition as a ``DISPATCH_OP`` whose options point at
bytecode appended to the file (for Snapdragon, a QNN context binary for the SoC's HTP), and a ``LiteRtStamp`` naming the
SoC. Here each context binary, wrapped in an ONNX ``EPContext`` node, runs on onnxruntime-qnn's HTP simulator with CPU
fallback disabled: the same route as the ``qnn`` format's compiled models. A file with ops left outside the NPU
partitions, or compiled for another vendor's NPU, has no runtime here (``why_not_here``); it runs on a phone.

Torch-free: ``emo.export.litert_npu`` writes these files, ``emo.contract.runtimes`` opens them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DISPATCH_OP = "DISPATCH_OP"
QUALCOMM = "Qualcomm"  # the SoC manufacturer as LiteRT stamps it

# TFLite TensorType -> onnx.TensorProto data type and NumPy dtype (float32, int8, uint8, int16, int32)
_ONNX_TYPES = {0: 1, 9: 3, 3: 2, 7: 5, 2: 6}
_NUMPY_TYPES = {0: np.float32, 9: np.int8, 3: np.uint8, 7: np.int16, 2: np.int32}


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def read_model(path: Path | bytes):
    """The flatbuffer of a .tflite (compiled or not) as the object API gives it."""
    from ai_edge_litert.tools import flatbuffer_utils

    data = path if isinstance(path, bytes) else Path(path).read_bytes()
    return flatbuffer_utils.read_model_from_bytearray(bytearray(data))


def op_names(model) -> list[str]:
    """Every operator of every subgraph by name (``DISPATCH_OP`` for a compiled NPU partition)."""
    schema = _schema()
    builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    names = []
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            number = max(code.builtinCode, code.deprecatedBuiltinCode)
            custom = code.customCode.decode(errors="replace") if code.customCode else None
            names.append(custom if number == schema.BuiltinOperator.CUSTOM else builtin.get(number, str(number)))
    return names


def stamp(model) -> dict[str, str]:
    """The ``LiteRtStamp`` the compiler writes: the SoC manufacturer and model the artifact was compiled for."""
    for entry in model.metadata or []:
        if entry.name == b"LiteRtStamp":
            fields = [f.decode(errors="replace") for f in bytes(model.buffers[entry.buffer].data).split(b"\0") if f]
            return {"soc_manufacturer": fields[0] if fields else "", "soc_model": fields[1] if len(fields) > 1 else ""}
    return {}


def why_not_here(path: Path) -> str | None:
    """Why this host cannot run the artifact: not compiled for an NPU, compiled for an NPU without a simulator here,
    or ops left on the CPU (the HTP simulator runs only NPU partitions; the whole graph runs on a phone)."""
    model = read_model(path)
    names = op_names(model)
    if DISPATCH_OP not in names:
        return "no NPU partition (DISPATCH_OP) in the file: not a compiled litert-npu artifact"
    manufacturer = stamp(model).get("soc_manufacturer", "")
    if manufacturer != QUALCOMM:
        return f"a {manufacturer or 'non-Qualcomm'} NPU artifact: this host has no simulator for that NPU"
    left = [name for name in names if name != DISPATCH_OP]
    if left:
        return (f"{len(left)} ops stay on the CPU ({', '.join(sorted(set(left)))}): the HTP simulator runs only "
                "the NPU partitions; the whole graph runs on a phone")
    return None


def epcontext_model(partitions: list[tuple[str, bytes, list[str], list[str]]],
                    inputs: list[tuple[str, int, list[int]]], outputs: list[tuple[str, int, list[int]]]):
    """An ONNX model of ``EPContext`` nodes, each holding a QNN context binary (embedded), as the QNN EP writes one
    when it compiles: how context binaries made elsewhere (LiteRT's Qualcomm compiler plugin) run on the HTP simulator.
    ``partitions`` are (QNN graph name, context binary, input names, output names): the QNN EP finds the graph by the
    node's name and binds tensors by name, so the names are those inside the binary. ``inputs`` and ``outputs`` are
    the graph's, as (name, onnx.TensorProto dtype, shape)."""
    import onnx

    nodes = [onnx.helper.make_node("EPContext", list(ins), list(outs), name=name, domain="com.microsoft",
                                   main_context=1, embed_mode=1, ep_cache_context=binary, source="QNN",
                                   partition_name=name)
             for name, binary, ins, outs in partitions]
    values = [[onnx.helper.make_tensor_value_info(name, dtype, shape) for name, dtype, shape in group]
              for group in (inputs, outputs)]
    graph = onnx.helper.make_graph(nodes, "emo_epcontext", values[0], values[1])
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17),
                                                        onnx.helper.make_opsetid("com.microsoft", 1)])


def _detail(tensor) -> dict:
    """A tensor as LiteRT's interpreter describes it (what ``integer_io`` takes)."""
    q = tensor.quantization
    scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else 0.0
    zero = int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None and len(q.zeroPoint) else 0
    return {"name": tensor.name.decode(), "dtype": np.dtype(_NUMPY_TYPES[tensor.type]),
            "shape": np.asarray(tensor.shape), "quantization": (scale, zero)}


def htp_model(path: Path):
    """The compiled .tflite as an ONNX model of ``EPContext`` nodes, one per ``DISPATCH_OP``, each holding that
    partition's QNN context binary (the bytes its ``bytecode_offset`` / ``bytecode_size`` point at in the file); and
    the details of the graph's input and output."""
    from flatbuffers import flexbuffers

    data = Path(path).read_bytes()
    model = read_model(data)
    subgraph = model.subgraphs[0]

    def names(indices) -> list[str]:
        return [subgraph.tensors[i].name.decode() for i in indices]

    def spec(index: int) -> tuple[str, int, list[int]]:
        tensor = subgraph.tensors[index]
        if tensor.type not in _ONNX_TYPES:
            raise ValueError(f"{Path(path).name}: graph tensor {tensor.name!r} has TFLite type {tensor.type}, which "
                             "the HTP route does not take")
        return tensor.name.decode(), _ONNX_TYPES[tensor.type], [int(d) for d in tensor.shape]

    partitions = []
    for op in subgraph.operators:
        options = flexbuffers.Loads(bytes(op.customOptions))
        offset, size = int(options["bytecode_offset"]), int(options["bytecode_size"])
        if offset < 0 or size <= 0 or offset + size > len(data):
            raise ValueError(f"{Path(path).name}: the NPU bytecode lies outside the file (truncated?)")
        partitions.append((str(options["name"]), data[offset:offset + size], names(op.inputs), names(op.outputs)))
    onnx_model = epcontext_model(partitions, [spec(i) for i in subgraph.inputs], [spec(i) for i in subgraph.outputs])
    return onnx_model, _detail(subgraph.tensors[subgraph.inputs[0]]), _detail(subgraph.tensors[subgraph.outputs[0]])
