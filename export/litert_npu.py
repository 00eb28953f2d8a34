"""LiteRT on the NPU: a .tflite compiled ahead of time for one phone SoC by ai-edge-litert's AOT compiler, for
LiteRT's ``CompiledModel`` with ``Accelerator.NPU``.

Recipe (one artifact per ``--soc``):
1. The .tflite of the TFLite backend (``emo.export.tflite.convert``: the same deploy form, int8 recipe and
   calibration), NHWC because Android camera frames arrive channel-last, converted once per run for every SoC;
   a PAD of the innermost axis's end becomes a concatenation (``pad_by_concatenation``: the HTP pads it wrongly).
   Its CPU reference: the LiteRT interpreter runs it against PyTorch at the precision's own tolerance (sidecar).
2. ``aot_compile`` for the SoC in a child process (``_compile_main``) whose library path holds the vendor's
   compiler libraries; nothing in this process changes. For Snapdragon those are the x86-64 QNN libraries that
   onnxruntime-qnn ships, plus an empty ``libQnnLpai.so`` (``tools/qnn_lpai_stub.c`` says why that is safe). Every
   op the NPU takes becomes part of a ``DISPATCH_OP`` whose bytecode (a QNN context binary) is appended to the file.
3. Coverage, from the files themselves: ops before compilation, ops left outside a ``DISPATCH_OP`` (they run on
   the phone's CPU), NPU partitions. Ops left on the CPU are a warning on the terminal and in the sidecar.
4. Parity: each context binary, wrapped in an ONNX ``EPContext`` node, runs on onnxruntime-qnn's HTP simulator
   with CPU fallback disabled (the contract's loader table, ``emo.contract.runtimes.litert_npu``), compared with
   PyTorch. The HTP has no fp32 arithmetic: the float graph computes in fp16 there and on the phone, so the float
   artifact's precision is ``fp16`` (its .tflite keeps fp32 weights, which the compiler turns into fp16).

MediaTek, Google Tensor and Samsung SoCs take the same path. Their compiler plugins load the vendor's SDK, which
the ``ai-edge-litert-sdk-*`` packages download from the vendor at install time; where it is missing, the SoC is
refused with the SDK's name before any work (``check_backend``). Their artifacts have no simulator here.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np

from emo.contract.runtimes.litert_npu import DISPATCH_OP, op_names, read_model, stamp
from emo.errors import EMOError

DEPLOY_TARGET = "channels_last"                          # as the TFLite backend (emo.export.tflite)
DEPLOY_TARGET_BY_PRECISION = {"int8": "channels_last_qkv"}
# the HTP computes a float graph in fp16 (QNN's HTP has no fp32 arithmetic): measured on emo_1m, max|diff| 2-3e-2
# on logits of magnitude ~1 against the fp32 interpreter, fp16 rounding. The fp16 artifact is the fp32 .tflite
# compiled for the HTP (the compiler makes it fp16), so the .tflite it starts from is converted at this precision.
SOURCE_PRECISION = {"fp16": "fp32", "int8": "int8"}
DEFAULT_SOCS = ("SM8650",)                               # as the QNN backend: Snapdragon 8 Gen 3
COMPILE_TIMEOUT_S = 1800
# where `make venv` builds the empty libQnnLpai.so (tools/qnn_lpai_stub.c)
LPAI_STUB = Path(sys.prefix) / "lib" / "emo-mobile" / "libQnnLpai.so"
LPAI_STUB_FIX = f"cc -shared -fPIC -x c /dev/null -o {LPAI_STUB}"


@dataclass(frozen=True)
class Vendor:
    """An NPU vendor as ai-edge-litert's AOT module knows it, and what its compiler and the phone need."""

    name: str                       # the SoC manufacturer as LiteRT spells it (LiteRtStamp, Target)
    aot: str                        # ai_edge_litert.aot.vendors.<aot>
    sdk: str                        # the SDK its compiler plugin loads, in words
    sdk_package: str                # the module that provides it (ai-edge-litert-sdk-*: downloads it at install)
    compiler_libraries: tuple[str, ...]  # the plugin dlopens these from the SDK
    dispatch_library: str           # what LiteRT loads on the phone to run a DISPATCH_OP


VENDORS = {
    "qualcomm": Vendor("Qualcomm", "qualcomm", "Qualcomm AI Runtime (QNN) SDK", "onnxruntime_qnn",
                       ("libQnnHtp.so", "libQnnSystem.so"), "libLiteRtDispatch_Qualcomm.so"),
    # litert/vendors/mediatek/neuron_adapter_api.cc (kLibNeuronAdapterLib)
    "mediatek": Vendor("MediaTek", "mediatek", "MediaTek NeuroPilot SDK (libneuron_adapter.so)",
                       "ai_edge_litert_sdk_mediatek", ("libneuron_adapter.so",), "libLiteRtDispatch_MediaTek.so"),
    # litert/vendors/google_tensor/adapter_aot.cc (kLibTensorTPUCompiler)
    "google_tensor": Vendor("Google", "google_tensor", "Google Tensor ML SDK (liblitert_plugin_compiler.so)",
                            "ai_edge_litert_sdk_google_tensor", ("liblitert_plugin_compiler.so",),
                            "libLiteRtDispatch_GoogleTensor.so"),
    # litert/vendors/samsung/samsung_build_defs.bzl (the x86-64 libraries the plugin links)
    "samsung": Vendor("Samsung", "samsung", "Samsung Exynos AI LiteCore SDK (libgraphgen.so)",
                      "ai_edge_litert_sdk_samsung", ("libgraphgen.so",), "libLiteRtDispatch_Samsung.so"),
}
SDK_PIP = {"ai_edge_litert_sdk_mediatek": "ai-edge-litert-sdk-mediatek",
           "ai_edge_litert_sdk_google_tensor": "ai-edge-litert-sdk-google-tensor",
           "ai_edge_litert_sdk_samsung": "ai-edge-litert-sdk-samsung"}

# Hexagon (HTP) architecture of each Snapdragon the AOT module compiles for: LiteRT's
# litert/vendors/qualcomm/supported_soc.csv ("runtime_library_version"). It names the QNN libraries the app ships
# (libQnnHtpV75Stub.so, libQnnHtpV75Skel.so) and LiteRT's Play feature module (qualcomm_runtime_v75).
HTP_ARCH = {"SA8255": "v73", "SA8295": "v68", "SM8350": "v68", "SM8450": "v69", "SM8475": "v69", "SM8550": "v73",
            "SM8650": "v75", "SM8750": "v79", "SM8845": "v81", "SM8850": "v81"}


# ------------------------------------------------------------------------------------------------------ targets
def _soc_models(vendor: Vendor) -> list[str]:
    """The SoC names ai-edge-litert's AOT module has for ``vendor`` (its ``SocModel`` enum, without ``ALL``)."""
    target = importlib.import_module(f"ai_edge_litert.aot.vendors.{vendor.aot}.target")
    return [m.value for m in target.SocModel if m.value != "ALL"]


def _key(name: str) -> str:
    return name.strip().upper().replace("-", "_").replace(" ", "_")


def known_socs() -> dict[str, tuple[Vendor, str]]:
    """Normalised name -> (vendor, the AOT module's spelling)."""
    return {_key(soc): (vendor, soc) for vendor in VENDORS.values() for soc in _soc_models(vendor)}


def parse_socs(text: str | None) -> list[str]:
    """``--soc SM8650,SM8750`` -> the AOT module's spellings (``DEFAULT_SOCS`` without ``--soc``); case and ``-``/``_``
    do not matter (``tensor-g4`` is ``Tensor_G4``). An unknown name lists every known one, by vendor."""
    if text is None:
        return list(DEFAULT_SOCS)
    names = [n for n in (part.strip() for part in text.split(",")) if n]
    if not names:
        raise EMOError("--soc is empty; name a SoC, e.g. --soc SM8650 (Snapdragon 8 Gen 3)")
    known = known_socs()
    for name in names:
        if _key(name) not in known:
            choices = "; ".join(f"{v.name}: {', '.join(_soc_models(v))}" for v in VENDORS.values())
            raise EMOError(f"unknown --soc {name!r}; choose from {choices}")
    return list(dict.fromkeys(known[_key(n)][1] for n in names))


def soc_tag(soc: str) -> str:
    """The SoC's part of the artifact name: ``SM8650`` -> ``sm8650``, ``Tensor_G4`` -> ``tensor-g4``."""
    return soc.lower().replace("_", "-")


def vendor_of(soc: str) -> Vendor:
    return known_socs()[_key(soc)][0]


def _qnn_library_dir() -> Path:
    import onnxruntime_qnn

    return Path(onnxruntime_qnn.LIB_DIR_FULL_PATH)


def _lpai_library() -> Path | None:
    """A libQnnLpai.so for the Qualcomm plugin to load: the QNN wheel's own if it ever ships one, else the stub."""
    for candidate in (_qnn_library_dir() / "libQnnLpai.so", LPAI_STUB):
        if candidate.is_file():
            return candidate
    return None


def _vendor_sdk_dir(vendor: Vendor, soc: str) -> Path | None:
    """The vendor SDK's library folder as its ai-edge-litert-sdk-* package reports it (None: not installed, or
    installed empty, as the MediaTek and Qualcomm packages are where the vendor's download fails)."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # the packages print a warning when their data is missing
            sdk = importlib.import_module(vendor.sdk_package)
            if vendor.aot == "mediatek":
                target = importlib.import_module("ai_edge_litert.aot.vendors.mediatek.target")
                folder = sdk.path_to_sdk_libs(target.map_soc_to_np_version(target.SocModel(soc)))
            else:
                folder = sdk.path_to_sdk_libs()
    except Exception:  # ImportError, or NotImplementedError off Linux x86-64: not usable here either way
        return None
    if folder is None or not Path(folder).is_dir():
        return None
    found = all(any(Path(folder).rglob(lib)) for lib in vendor.compiler_libraries)
    return Path(folder) if found else None


def check_backend(backend) -> None:
    """Refuse, in one line naming what is missing, a SoC whose compiler cannot run here (called by
    ``Backend.load_module``: before any work for a single format, as a failed row among several)."""
    soc = dict(backend.fixed_options).get("soc")
    if soc is None:  # the generic backend (verify, predict): the HTP simulator is all it needs
        return
    vendor = vendor_of(soc)
    if vendor.aot == "qualcomm":
        missing = [lib for lib in vendor.compiler_libraries if not (_qnn_library_dir() / lib).is_file()]
        if missing:
            raise EMOError(f"{soc}: onnxruntime-qnn has no {missing[0]} (the x86-64 QNN library the Qualcomm compiler "
                           f"plugin loads); reinstall it: pip install 'emo-mobile[litert-npu]'")
        if _lpai_library() is None:
            raise EMOError(f"{soc}: the Qualcomm compiler plugin of ai-edge-litert needs a libQnnLpai.so to load, "
                           f"which onnxruntime-qnn does not ship; build the empty stand-in with `make venv`, or: "
                           f"{LPAI_STUB_FIX}")
        return
    if _vendor_sdk_dir(vendor, soc) is None:
        raise EMOError(f"{soc}: the {vendor.name} NPU compiler needs the {vendor.sdk}, which is not installed here; "
                       f"pip install {SDK_PIP[vendor.sdk_package]} downloads it from {vendor.name} at install time "
                       f"(it installs empty where that download fails)")


# ------------------------------------------------------------------------------------------------- the .tflite
def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def coverage(source, compiled) -> dict:
    """Ops offloaded to the NPU: the compiler replaces the ops it takes by ``DISPATCH_OP`` s and leaves the others
    as they were, so the ops of the compiled file other than ``DISPATCH_OP`` are exactly those left on the CPU."""
    before, after = op_names(source), op_names(compiled)
    on_cpu = Counter(name for name in after if name != DISPATCH_OP)
    cpu_ops = sum(on_cpu.values())
    return {"ops": len(before), "ops_on_npu": len(before) - cpu_ops, "ops_on_cpu": cpu_ops,
            "npu_partitions": after.count(DISPATCH_OP), "cpu_op_types": dict(sorted(on_cpu.items())),
            "ops_before_compile": dict(sorted(Counter(before).items()))}


def pad_by_concatenation(model_bytes: bytes) -> tuple[bytes, int]:
    """Rewrite each ``PAD`` that pads the innermost axis at its end, (0, r), as that PAD without it followed by a
    CONCATENATION with a constant block of the pad value (zero, or the zero point of an integer tensor): the same
    values, and the HTP writes every padded element itself.

    Why: on the HTP (simulator, QNN 2.51 through ai-edge-litert 2.3.0's Qualcomm plugin) a PAD of the innermost axis
    at its end fills the padding with stale values instead of the pad value (a one-conv repro, float and int8;
    padding an outer axis comes out right). litert-torch's int8 graphs pad EMO's attention windows on NCHW tensors,
    (0, 3) on W for [1, C, 4, 4] -> [1, C, 7, 7] in stage 4 at 112x112: random-init emo_1m int8 at 112 ended at
    cosine 0.62 against PyTorch. Returns the model and how many PADs were rewritten."""
    import copy

    from ai_edge_litert.tools import flatbuffer_utils

    schema = _schema()
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    pad_codes = {i for i, c in enumerate(model.operatorCodes)
                 if max(c.builtinCode, c.deprecatedBuiltinCode) == schema.BuiltinOperator.PAD}
    numpy_type = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.INT8: np.int8,
                  schema.TensorType.UINT8: np.uint8, schema.TensorType.INT16: np.int16}

    def constant(subgraph, values: np.ndarray, like=None, name: bytes = b"") -> int:
        buffer = schema.BufferT()
        buffer.data = np.ascontiguousarray(values).view(np.uint8).ravel()
        model.buffers.append(buffer)
        tensor = copy.deepcopy(like) if like is not None else schema.TensorT()
        if like is None:
            tensor.type = schema.TensorType.INT32
        tensor.shape, tensor.buffer, tensor.name, tensor.shapeSignature = list(values.shape), \
            len(model.buffers) - 1, name, None
        subgraph.tensors.append(tensor)
        return len(subgraph.tensors) - 1

    concat_code = None
    rewritten = 0
    for subgraph in model.subgraphs:
        operators = []
        for op in subgraph.operators:
            data = (model.buffers[subgraph.tensors[op.inputs[1]].buffer].data
                    if op.opcodeIndex in pad_codes else None)
            paddings = None if data is None else np.frombuffer(bytes(data), dtype=np.int32).reshape(-1, 2).copy()
            out = subgraph.tensors[op.outputs[0]]
            if paddings is None or paddings[-1, 1] == 0 or out.type not in numpy_type:
                operators.append(op)
                continue
            if concat_code is None:
                code = schema.OperatorCodeT()
                code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CONCATENATION
                code.version = 1
                model.operatorCodes.append(code)
                concat_code = len(model.operatorCodes) - 1
            r = int(paddings[-1, 1])
            zero = int(out.quantization.zeroPoint[0]) if out.quantization is not None and \
                out.quantization.zeroPoint is not None and len(out.quantization.zeroPoint) else 0
            block = np.full([*(int(d) for d in out.shape[:-1]), r], zero, dtype=numpy_type[out.type])
            final = op.outputs[0]
            inputs = []
            if paddings.any() and (paddings[:-1].any() or paddings[-1, 0]):
                narrower = copy.deepcopy(out)
                narrower.shape = [*out.shape[:-1], int(out.shape[-1]) - r]
                narrower.name = (out.name or b"") + b"/before_end_pad"
                narrower.buffer, narrower.shapeSignature = 0, None
                subgraph.tensors.append(narrower)
                op.outputs = [len(subgraph.tensors) - 1]
                paddings[-1, 1] = 0
                op.inputs = [op.inputs[0], constant(subgraph, paddings, name=b"emo_pad_without_end"), *op.inputs[2:]]
                operators.append(op)
                inputs.append(op.outputs[0])
            else:  # the PAD only padded the end of the innermost axis: the concatenation replaces it
                inputs.append(op.inputs[0])
            joined = schema.OperatorT()
            joined.opcodeIndex = concat_code
            joined.inputs = [*inputs, constant(subgraph, block, like=out, name=(out.name or b"") + b"/end_pad")]
            joined.outputs = [final]
            joined.builtinOptionsType = schema.BuiltinOptions.ConcatenationOptions
            joined.builtinOptions = schema.ConcatenationOptionsT()
            joined.builtinOptions.axis = len(out.shape) - 1
            operators.append(joined)
            rewritten += 1
        subgraph.operators = operators
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), rewritten


def _source_ctx(ctx):
    """The context the .tflite is converted in: the fp16 artifact starts from the fp32 graph (the compiler makes it
    fp16 for the HTP), the int8 one from the int8 graph."""
    import dataclasses

    return dataclasses.replace(ctx, precision=SOURCE_PRECISION[ctx.precision])  # the same shared cache


def _convert(model, example, ctx) -> tuple[bytes, int]:
    """The .tflite bytes, once per run (every SoC compiles the same model), and how many end paddings became
    concatenations (``pad_by_concatenation``). The int8 graph is otherwise as the quantizer made it (no float
    islands: those are for XNNPACK, and the NPU runs int8 GELU)."""
    from emo.export import tflite

    key = ("litert-npu", ctx.precision, tuple(example.shape), ctx.options.normalize)
    if ctx.shared.get("litert_npu_key") != key:
        model_bytes, _ = tflite.convert(model, example, _source_ctx(ctx), xnnpack_float_islands=False)
        model_bytes, rewritten = pad_by_concatenation(model_bytes)
        ctx.shared.update(litert_npu_key=key, litert_npu_tflite=(model_bytes, rewritten), litert_npu_reference=None)
    return ctx.shared["litert_npu_tflite"]


def _cpu_reference(model, source: Path, ctx) -> dict:
    """The uncompiled .tflite in the LiteRT interpreter (XNNPACK) against PyTorch (the deploy form the .tflite was
    converted from), at the tolerance of the .tflite's own precision (fp32, or int8): whether the conversion is
    right, apart from the NPU."""
    import torch

    from emo.contract import runtimes
    from emo.data import normalize
    from emo.export.parity import compare, parity_inputs, run_batched
    from emo.export.pipeline import artifact_logits, input_contract

    if ctx.shared.get("litert_npu_reference") is None:
        h, w = ctx.options.input_size
        images = parity_inputs((h, w))
        inputs = images if ctx.options.normalize else normalize(images).astype(np.float32)
        with torch.no_grad():
            expected = run_batched(lambda x: model(torch.from_numpy(x)).numpy(), inputs, ctx.batch)
        session = runtimes.open_session(source, "tflite")
        actual = artifact_logits(session, images, ctx.batch, input_contract(ctx.options))
        parity = compare(expected, actual, SOURCE_PRECISION[ctx.precision],
                         "ai-edge-litert interpreter (XNNPACK): the .tflite before NPU compilation, against PyTorch's "
                         "deploy form")
        ctx.shared["litert_npu_reference"] = parity.to_dict()
    return ctx.shared["litert_npu_reference"]


# ---------------------------------------------------------------------------------------------------- compiling
def _compile(source: Path, vendor: Vendor, soc: str, work: Path) -> tuple[Path, dict]:
    """``aot_compile`` in a child process: the library path of the vendor's compiler and the temporary folder
    (where the AOT module writes its error logs) are the child's only; returns the compiled file and its report."""
    env = dict(os.environ, TMPDIR=str(work))
    if vendor.aot == "qualcomm":  # the x86-64 QNN libraries of onnxruntime-qnn, then the LPAI stand-in
        env["LD_LIBRARY_PATH"] = os.pathsep.join([str(_qnn_library_dir()), str(_lpai_library().parent)])
    result = work / "result.json"
    command = [sys.executable, "-m", "emo.export.litert_npu", vendor.aot, soc, str(source), str(work / "out"),
               str(result)]
    try:
        child = subprocess.run(command, env=env, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the {vendor.name} compiler did not finish {soc} in {COMPILE_TIMEOUT_S} s") from None
    logs = [child.stdout, child.stderr] + [p.read_text(errors="replace") for p in sorted(work.glob("*.error"))]
    print("\n".join(logs), file=sys.stderr)  # into the export log
    if child.returncode or not result.is_file():
        errors = [line.strip() for text in logs for line in text.splitlines()
                  if re.search(r"\bERROR\b|Error:", line)]
        why = errors[-1] if errors else f"exit code {child.returncode}"
        raise RuntimeError(f"the {vendor.name} compiler plugin failed for {soc}: {why[:300]}")
    report = json.loads(result.read_text())
    return Path(report.pop("compiled")), report


def _compile_main(argv: list[str]) -> int:
    """The child: ``aot_compile`` of one model for one SoC; writes the compiled path and the compiler's report."""
    from ai_edge_litert.aot import aot_compile

    vendor, soc, source, out, result = argv
    target_module = importlib.import_module(f"ai_edge_litert.aot.vendors.{vendor}.target")
    target = target_module.Target(target_module.SocModel(soc))
    start = time.perf_counter()
    compiled = aot_compile.aot_compile(source, output_dir=out, target=target, keep_going=False)
    seconds = time.perf_counter() - start
    [(_, model)] = compiled.models_with_backend
    stats = model.partition_stats.subgraph_stats if model.partition_stats else []
    Path(result).write_text(json.dumps({
        "compiled": str(model.path), "seconds": round(seconds, 3),
        "partition_stats": [{"subgraph": s.subgraph_index, "ops_offloaded": s.num_ops_offloaded,
                             "ops": s.num_total_ops, "partitions": s.num_partitions_offloaded} for s in stats]}))
    return 0


# ------------------------------------------------------------------------------------------------------- export
def _package_version(name: str) -> str | None:
    with contextlib.suppress(importlib_metadata.PackageNotFoundError):
        return importlib_metadata.version(name)
    return None


def phone_requirements(vendor: Vendor, soc: str) -> dict:
    """What an app needs on the phone to run the artifact on the NPU (the app reports whether it really did)."""
    needs = {"accelerator": "NPU", "api": "LiteRT CompiledModel (com.google.ai.edge.litert), Accelerator.NPU",
             "soc_manufacturer": vendor.name, "soc_model": soc, "dispatch_library": vendor.dispatch_library}
    if vendor.aot == "qualcomm":
        arch = HTP_ARCH.get(soc)
        needs.update(htp_arch=arch, qnn_sdk=_qnn_sdk_version(),
                     qnn_libraries=["libQnnHtp.so", "libQnnSystem.so"]
                     + ([f"libQnnHtp{arch.upper()}Stub.so", f"libQnnHtp{arch.upper()}Skel.so"] if arch else []),
                     play_feature_module=f"qualcomm_runtime_{arch}" if arch else None)
    return needs


def _qnn_sdk_version() -> str:
    import onnxruntime_qnn

    return getattr(onnxruntime_qnn.build_and_package_info, "qnn_version", "unknown")


def _compiler_facts(vendor: Vendor) -> dict:
    facts = {"ai-edge-litert": _package_version("ai-edge-litert"), "vendor": vendor.name}
    if vendor.aot == "qualcomm":
        lpai = _lpai_library()
        facts.update(qnn_libraries=f"onnxruntime-qnn {_package_version('onnxruntime-qnn')} (QNN {_qnn_sdk_version()})",
                     libQnnLpai=("empty stand-in (tools/qnn_lpai_stub.c): the plugin links it, an HTP compile never "
                                 "opens it") if lpai == LPAI_STUB else str(lpai))
    return facts


def _warnings(covered: dict, reference: dict, vendor: Vendor) -> list[str]:
    """What the user must see (printed by emo-export, kept in the sidecar): ops left on the CPU, a failed CPU
    reference."""
    warnings = []
    if covered["ops_on_cpu"]:
        types = ", ".join(f"{op} x{n}" for op, n in covered["cpu_op_types"].items())
        warnings.append(f"{covered['ops_on_cpu']} of {covered['ops']} ops stay on the CPU ({types}): the "
                        f"{vendor.name} NPU compiler did not take them; the phone runs them with LiteRT's CPU kernels "
                        f"between the {covered['npu_partitions']} NPU partition(s)")
    if reference["status"] != "passed":
        warnings.append(f"the .tflite before compilation fails its CPU reference check: {reference['status']}")
    return warnings


def export(model, example, path: Path, ctx) -> dict:
    soc = ctx.options.backend_options["soc"]
    vendor = vendor_of(soc)
    with tempfile.TemporaryDirectory(prefix=".emo-litert-npu-", dir=path.parent) as tmp:
        source = Path(tmp) / "model.tflite"
        model_bytes, end_pads = _convert(model, example, ctx)               # 1. the .tflite, its CPU reference
        source.write_bytes(model_bytes)
        reference = _cpu_reference(model, source, ctx)
        start = time.perf_counter()
        compiled, report = _compile(source, vendor, soc, Path(tmp))         # 2. compiled for the SoC's NPU
        compile_seconds = time.perf_counter() - start
        compiled_model = read_model(compiled)
        stamped = stamp(compiled_model).get("soc_model", soc)
        if stamped != soc:
            raise RuntimeError(f"the compiler stamped the artifact for {stamped}, not {soc}")
        covered = {**coverage(read_model(source), compiled_model),          # 3. coverage
                   "compiler_report": report["partition_stats"]}
        quantization = None
        if ctx.precision == "int8":
            from emo.export import tflite

            quantization = {"scheme": tflite.INT8_SCHEME, "io": tflite.io_quantization(source),
                            "int8_ops_run_in_float_for_xnnpack": 0}
        os.replace(compiled, path)
    facts = {"layout": "NHWC", "target": {"soc_manufacturer": vendor.name, "soc_model": soc},
             "coverage": covered, "compile_seconds": round(compile_seconds, 3),
             "aot_compile_seconds": report["seconds"],  # inside the child, without its start-up
             "compiler": _compiler_facts(vendor),
             "phone": phone_requirements(vendor, soc), "cpu_reference": reference,
             "graph_rewrites": {"end_pad_as_concatenation": end_pads},
             "warnings": _warnings(covered, reference, vendor)}
    if vendor.aot == "qualcomm":
        facts["target"]["htp_arch"] = HTP_ARCH.get(soc)
        facts["checked_on"] = "HTP simulator (libQnnHtp.so of onnxruntime-qnn on x86-64), not a phone"
    if ctx.precision == "fp16":                                             # 4. parity: by the pipeline
        facts["computes_in"] = ("fp16: the fp32 .tflite compiled for the NPU, which computes it in fp16 (the HTP has "
                                "no fp32 arithmetic); cpu_reference is the same graph in fp32 on the CPU")
    if quantization:
        facts["quantization"] = quantization
    return facts


if __name__ == "__main__":  # the compile child (``_compile``)
    sys.exit(_compile_main(sys.argv[1:]))
