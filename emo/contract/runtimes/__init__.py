"""One loader table: any artifact, opened in every runtime that runs it on this host, as a session that runs and says
what ran (Ultralytics' AutoBackend, for our formats). emo-verify and emo-export's parity check, emo-predict, emo-eval
and emo-bench's host runner all open artifacts here, so the same file gets the same treatment everywhere (an NHWC
input, an int8 model's input and output scales, a Core ML ImageType's pixel values, a dynamic batch).

    sessions(path, fmt, threads) -> [Session]      every runtime of the artifact's format that runs here
    open_session(path, fmt, threads) -> Session    the first of them (emo-bench, emo-predict)
    artifact_input(images, contract) -> ndarray    photos as the eval transform gives them -> the artifact's input

A session's ``run`` takes the artifact's own input tensor (its layout; normalised or not as its graph expects; pixel
values 0..255 for a Core ML ImageType; float32, the static batch or any batch for a dynamic one) and returns float32
outputs (logits, or probabilities for a Core ML classifier), an integer graph's output already dequantized.

Runtimes are imported when a session is opened, never at import time: the contract stays torch-free, and a machine
with only onnxruntime installed opens ONNX files without LiteRT or ExecuTorch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from emo.contract.sidecar import InputContract, input_contract

__all__ = ["InputContract", "Loader", "LOADERS", "RuntimeMissingError", "Session", "artifact_input",
           "cannot_run_here", "choose", "here", "input_contract", "missing_package", "open_session", "sessions"]

PIXEL_SCALE = 1.0 / 255.0  # a Core ML ImageType takes pixel values: the program scales them by 1/255


class RuntimeMissingError(RuntimeError):
    """The runtime a format needs is not installed here (the message names the package)."""


@dataclass
class Session:
    """An artifact opened in one runtime."""

    runtime: str                                  # what ran, as parity rows name it ("checked_with")
    run: Callable[[np.ndarray], np.ndarray]       # the artifact's input tensor -> float32 outputs
    info: dict = field(default_factory=dict)      # runtime and version, provider/delegate, threads
    stacks_batches: bool = False                  # run() takes any whole number of batches in one call


@dataclass(frozen=True)
class Loader:
    """How one runtime opens one format: ``open(path, threads) -> Session``; ``requires`` names the Python packages it
    imports; ``only_on`` a ``sys.platform`` it needs (``None``: any)."""

    runtime: str
    open: Callable[[Path, int | None], Session]
    requires: tuple[str, ...] = ()
    only_on: str | None = None
    why_not_here: str = ""
    # why this runtime cannot run one artifact of its format (litert-npu: compiled for another vendor's NPU, or ops
    # left on the CPU that the HTP simulator does not run); None: it can
    refuses: Callable[[Path], str | None] | None = None

    def cannot_run_here(self) -> str | None:
        """Why this runtime cannot run here (another platform), or None."""
        if self.only_on and sys.platform != self.only_on:
            return self.why_not_here or f"needs {self.only_on}"
        return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _import(module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise RuntimeMissingError(f"{package} is not installed ({e.name}): pip install {package}") from None


# ------------------------------------------------------------------------------------------------- onnxruntime
def _onnxruntime_cpu(path: Path, threads: int | None) -> Session:
    ort = _import("onnxruntime", "onnxruntime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0], np.float32)

    return Session("onnxruntime (CPU EP)", run, {"runtime": "onnxruntime", "version": ort.__version__,
                                                 "providers": session.get_providers(), "threads": threads})


# ----------------------------------------------------------------------------------- the Qualcomm HTP (QNN EP)
QNN_EP = "QNNExecutionProvider"
QNN_HTP = "onnxruntime QNN EP, HTP backend (x86-64 HTP simulator, not a phone)"
LITERT_NPU_HTP = f"{QNN_HTP}, running the QNN context binary of the compiled .tflite"
_qnn_registered = False


def qnn_session_options(threads: int | None = None, compile_for: dict | None = None):
    """Session options with the QNN EP's HTP backend and CPU fallback disabled (a node the HTP does not take is an
    error, never a silent CPU run). onnxruntime-qnn 2.x is a plugin EP: its library is registered once per process.
    ``compile_for`` (``{"soc_model": ..., "htp_arch": ...}``): options for compiling ahead of time for that SoC."""
    global _qnn_registered
    ort = _import("onnxruntime", "onnxruntime")
    onnxruntime_qnn = _import("onnxruntime_qnn", "onnxruntime-qnn")
    if not _qnn_registered:
        if not any(d.ep_name == QNN_EP for d in ort.get_ep_devices()):
            ort.register_execution_provider_library(QNN_EP, onnxruntime_qnn.get_library_path())
        _qnn_registered = True
    devices = [d for d in ort.get_ep_devices() if d.ep_name == QNN_EP]
    if not devices:
        raise RuntimeError("onnxruntime-qnn registered no device for the QNN EP")
    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    if threads:
        options.intra_op_num_threads = threads
    options.add_provider_for_devices(devices, {"backend_type": "htp", **(compile_for or {})})
    return options


def htp_session(model: Path | bytes, threads: int | None = None):
    """An onnxruntime session on the HTP (the simulator of onnxruntime-qnn's x86-64 wheel) for a compiled model
    (one or more EPContext nodes)."""
    import io

    from emo.contract.output import captured_output

    ort = _import("onnxruntime", "onnxruntime")
    options = qnn_session_options(threads)
    with captured_output(io.StringIO()):  # the EP's banner lines on load (native code)
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options)


def _qnn_htp(path: Path, threads: int | None) -> Session:
    session = htp_session(path, threads)
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0], np.float32)

    return Session(QNN_HTP, run, {"runtime": "onnxruntime-qnn", "version": _version("onnxruntime-qnn"),
                                  "providers": session.get_providers(), "cpu_fallback": False, "threads": threads})


def _litert_npu_htp(path: Path, threads: int | None) -> Session:
    """An NPU-compiled .tflite (litert-npu): its QNN context binaries on the HTP simulator, as EPContext nodes."""
    from emo.contract.runtimes import litert_npu

    reason = litert_npu.why_not_here(path)
    if reason:
        raise RuntimeMissingError(f"{Path(path).name} cannot run on this host: {reason}")
    model, inp, out = litert_npu.htp_model(path)
    session = htp_session(model.SerializeToString(), threads)

    def invoke(x: np.ndarray) -> np.ndarray:
        return session.run([out["name"]], {inp["name"]: x})[0]

    return Session(LITERT_NPU_HTP, integer_io(invoke, inp, out),
                   {"runtime": "onnxruntime-qnn", "version": _version("onnxruntime-qnn"),
                    "providers": session.get_providers(), "cpu_fallback": False, "threads": threads,
                    "io": [str(inp["dtype"]), str(out["dtype"])]})


def _litert_npu_refuses(path: Path) -> str | None:
    from emo.contract.runtimes import litert_npu

    try:
        return litert_npu.why_not_here(path)
    except Exception:  # not a readable .tflite: opening it gives the runtime's own error, where callers expect one
        return None


# ------------------------------------------------------------------------------------------------------ LiteRT
def litert_interpreter(path: Path | bytes, threads: int | None, xnnpack: bool = True):
    """The LiteRT interpreter (tensors allocated), with XNNPACK unless ``xnnpack`` is False."""
    interpreter_module = _import("ai_edge_litert.interpreter", "ai-edge-litert")
    resolver = (interpreter_module.OpResolverType.AUTO if xnnpack
                else interpreter_module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    source = {"model_content": path} if isinstance(path, bytes) else {"model_path": str(path)}
    interpreter = interpreter_module.Interpreter(**source, num_threads=threads or 2,
                                                 experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    return interpreter


def integer_io(invoke: Callable[[np.ndarray], np.ndarray], inp: dict, out: dict) -> Callable[[np.ndarray], np.ndarray]:
    """``run(x)`` around ``invoke(raw) -> raw`` of a graph whose input and output may be integers: the float input is
    quantized with the input's scale and zero point (as an app does), the output dequantized (details as the LiteRT
    interpreter gives them). A float graph's tensors pass through."""
    in_scale, in_zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]
    in_dtype, out_dtype = np.dtype(inp["dtype"]), np.dtype(out["dtype"])

    def run(x: np.ndarray) -> np.ndarray:
        if in_dtype.kind in "iu":
            info = np.iinfo(in_dtype)
            x = np.clip(np.round(x / in_scale) + in_zero, info.min, info.max)
        y = invoke(np.ascontiguousarray(x, dtype=in_dtype))
        return ((y.astype(np.float32) - out_zero) * out_scale if out_dtype.kind in "iu" else y).astype(np.float32)

    return run


def _litert_xnnpack(path: Path, threads: int | None) -> Session:
    interpreter = litert_interpreter(path, threads)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def invoke(x: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"]).copy()

    return Session("ai-edge-litert interpreter (XNNPACK)", integer_io(invoke, inp, out),
                   {"runtime": "ai-edge-litert", "version": _version("ai-edge-litert"), "delegate": "XNNPACK",
                    "threads": threads or 2, "io": [str(np.dtype(inp["dtype"])), str(np.dtype(out["dtype"]))]})


# --------------------------------------------------------------------------------------------------- ExecuTorch
def _executorch_xnnpack(path: Path, threads: int | None) -> Session:
    runtime = _import("executorch.runtime", "executorch")
    torch = _import("torch", "torch")
    if threads:  # XNNPACK's thread pool (process-wide in the Python binding)
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

        _unsafe_reset_threadpool(threads)
    method = runtime.Runtime.get().load_program(Path(path)).load_method("forward")

    def run(x: np.ndarray) -> np.ndarray:
        return method.execute([torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))])[0].numpy()

    return Session("executorch.runtime (XNNPACK)", run, {"runtime": "executorch", "version": _version("executorch"),
                                                         "delegate": "XNNPACK", "threads": threads})


# ------------------------------------------------------------------------------------------------------ PyTorch
def _pytorch_program(path: Path, threads: int | None) -> Session:
    torch = _import("torch", "torch")
    from emo.contract.pt2 import load_program

    if threads:
        torch.set_num_threads(threads)
    module = load_program(path)  # refuses anything in the archive that loading would execute

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    return Session("PyTorch (torch.export program)", run, {"runtime": "torch", "version": torch.__version__,
                                                           "threads": threads})


# ------------------------------------------------------------------------------------------------------ Core ML
MIL_INTERPRETER = "mil-interpreter (numpy)"
COREML_RUNTIME = "Core ML runtime (MLModel.predict, macOS)"
STACK_BYTES = 256 << 20  # the interpreter runs this much of a stack of images at once (largest tensor x 8)


def _coreml_description(spec) -> tuple[bool, str, int]:
    """(ImageType input?, the classifier's probabilities output or "", the program's batch)."""
    kind = spec.description.input[0].type.WhichOneof("Type")
    batch = 1 if kind == "imageType" else int(spec.description.input[0].type.multiArrayType.shape[0])
    return kind == "imageType", spec.description.predictedProbabilitiesName, batch


def _mil_interpreter(path: Path, threads: int | None) -> Session:
    """The MIL interpreter (NumPy) on any host. Takes any whole number of the program's batches at once: they run as
    one stack through ``MILProgram.run_batch`` (each image gets exactly what a batch of its own gives it), in pieces
    of at most ``STACK_BYTES`` of largest tensor."""
    from emo.contract.runtimes.mil_interpreter import MILProgram

    program = MILProgram(path)
    _, probs_name, batch = _coreml_description(program.spec)
    output = program.spec.description.output[0].name
    stack = max(1, STACK_BYTES // (8 * 4 * max(1, program.largest_value_elements())))

    def run(x: np.ndarray) -> np.ndarray:
        if len(x) % batch:
            raise ValueError(f"{len(x)} images for a program of batch {batch}: give a multiple of {batch}")
        runs = np.reshape(x, (len(x) // batch, batch, *np.shape(x)[1:]))
        rows = []
        for i in range(0, len(runs), stack):
            out = program.run_batch({"image": runs[i:i + stack]})
            if probs_name:
                rows += [list(probabilities.values()) for probabilities in out[probs_name]]
            else:
                rows.append(np.asarray(out[output], np.float32).reshape(-1, *np.shape(out[output])[2:]))
        return np.asarray(rows, dtype=np.float32) if probs_name else np.concatenate(rows)

    return Session(MIL_INTERPRETER, run, {"runtime": "emo MIL interpreter (NumPy)", "version": _version("emo-mobile"),
                                          "threads": 1}, stacks_batches=True)


def _coreml_runtime(path: Path, threads: int | None) -> Session:
    """Apple's Core ML runtime (macOS only): ``MLModel.predict`` on the CPU and GPU/ANE as Core ML decides."""
    ct = _import("coremltools", "coremltools")
    from PIL import Image

    mlmodel = ct.models.MLModel(str(path))
    image_input, probs_name, _ = _coreml_description(mlmodel.get_spec())

    def run(x: np.ndarray) -> np.ndarray:
        rows = []
        for image in x:
            if image_input:  # Core ML takes a PIL image here: pixel values as a camera gives them
                feed = Image.fromarray(np.clip(np.rint(image.transpose(1, 2, 0)), 0, 255).astype(np.uint8))
            else:
                feed = image[None]
            out = mlmodel.predict({"image": feed})
            rows.append(list(out[probs_name].values()) if probs_name else np.asarray(out["logits"]).reshape(-1))
        return np.asarray(rows, dtype=np.float32)

    return Session(COREML_RUNTIME, run, {"runtime": "Core ML", "version": _version("coremltools")})


def _not_here(reason: str):
    def open_(path: Path, threads: int | None) -> Session:
        raise RuntimeMissingError(reason)
    return open_


# --------------------------------------------------------------------------------------------------- the table
APPLE_ONLY = "needs Apple runtime (Core ML delegate runs on iOS/macOS only)"
LOADERS: dict[str, tuple[Loader, ...]] = {
    "onnx": (Loader("onnxruntime (CPU EP)", _onnxruntime_cpu, ("onnxruntime",)),),
    "ort": (Loader("onnxruntime (CPU EP, ORT format)", _onnxruntime_cpu, ("onnxruntime",)),),
    "tflite": (Loader("ai-edge-litert interpreter (XNNPACK)", _litert_xnnpack, ("ai_edge_litert",)),),
    "executorch": (Loader("executorch.runtime (XNNPACK)", _executorch_xnnpack, ("executorch", "torch")),),
    "pt2": (Loader("PyTorch (torch.export program)", _pytorch_program, ("torch",)),),
    "qnn": (Loader(QNN_HTP, _qnn_htp, ("onnxruntime", "onnxruntime_qnn")),),
    "coreml": (Loader(MIL_INTERPRETER, _mil_interpreter, ("coremltools",)),
               Loader(COREML_RUNTIME, _coreml_runtime, ("coremltools",), only_on="darwin")),
    "executorch-coreml": (Loader("executorch.runtime (Core ML delegate)", _not_here(APPLE_ONLY), ("executorch",),
                                 only_on="darwin", why_not_here=APPLE_ONLY),),
    "litert-npu": (Loader(LITERT_NPU_HTP, _litert_npu_htp, ("ai_edge_litert", "onnx", "onnxruntime", "onnxruntime_qnn"),
                          refuses=_litert_npu_refuses),),
}


def here(fmt: str) -> list[Loader]:
    """The runtimes of format ``fmt`` that run on this host."""
    return [loader for loader in LOADERS.get(fmt, ()) if loader.cannot_run_here() is None]


def missing_package(fmt: str) -> str | None:
    """The first Python package the runtimes of format ``fmt`` that run here need and that is not installed."""
    import importlib.util

    for loader in here(fmt):
        for package in loader.requires:
            if importlib.util.find_spec(package) is None:
                return package
    return None


def cannot_run_here(fmt: str) -> str | None:
    """Why no runtime of format ``fmt`` runs on this host (None: at least one does)."""
    if fmt not in LOADERS:
        return f"no runtime for {fmt} artifacts"
    return None if here(fmt) else LOADERS[fmt][0].cannot_run_here()


def choose(path: Path, fmt: str) -> tuple[list[Loader], str | None]:
    """The runtimes here that run this artifact of format ``fmt``, and why none does when the list is empty (another
    platform, or every runtime refuses this file, e.g. an NPU artifact with ops left on the CPU). Each runtime's
    refusal check reads the file once."""
    reason = cannot_run_here(fmt)
    if reason:
        return [], reason
    chosen, reasons = [], []
    for loader in here(fmt):
        why = loader.refuses(Path(path)) if loader.refuses else None
        if why:
            reasons.append(why)
        else:
            chosen.append(loader)
    return chosen, None if chosen else reasons[0]


def sessions(path: Path, fmt: str, threads: int | None = None) -> list[Session]:
    """An artifact of format ``fmt`` opened in every runtime of its format that runs here (a Core ML program: the
    MIL interpreter, and Core ML itself on macOS)."""
    loaders, reason = choose(path, fmt)
    if reason:
        raise RuntimeMissingError(reason)
    return [loader.open(Path(path), threads) for loader in loaders]


def open_session(path: Path, fmt: str, threads: int | None = None) -> Session:
    """An artifact of format ``fmt`` in the first runtime of its format that runs here."""
    loaders, reason = choose(path, fmt)
    if reason:
        raise RuntimeMissingError(reason)
    return loaders[0].open(Path(path), threads)


def artifact_input(images: np.ndarray, contract: InputContract) -> np.ndarray:
    """(N, 3, H, W) float32 RGB in [0, 1] (what the eval transform gives) -> the artifact's own input: normalised
    with the contract's mean/std when the graph does not normalise, channel-last for an NHWC graph, pixel values
    0..255 for a Core ML ImageType."""
    x = np.asarray(images, dtype=np.float32)
    if contract.layout == "image":
        return (x / PIXEL_SCALE).astype(np.float32)
    if not contract.normalization.in_graph:
        mean = np.asarray(contract.normalization.mean, np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(contract.normalization.std, np.float32).reshape(1, 3, 1, 1)
        x = ((x - mean) / std).astype(np.float32)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if contract.layout == "NHWC" else x
