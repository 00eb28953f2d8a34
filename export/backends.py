"""The table of export backends: how each format of the contract (``emo.contract.vocabulary.FORMATS``: name, artifact
tag, suffix, precisions) is exported here: its module, the extra that brings its converter, the flags it honours.

Each backend module exposes the same two functions:
``export(model, example, path, options) -> dict`` writes the artifact (returns facts for the sidecar, e.g. the
operator list), and ``load(path, threads=None) -> Callable[[np.ndarray], np.ndarray]`` runs it on this host.
Converter packages are imported inside the backend module; a missing one becomes an error naming the extra.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
from dataclasses import dataclass
from types import ModuleType

from emo.contract.output import captured_output
from emo.contract.vocabulary import FORMATS, QUANTIZED, Format
from emo.errors import EMOError


@dataclass(frozen=True)
class Backend:
    format: Format                # the contract's format: --format name, artifact tag, suffix, precisions
    extra: str                    # pip extra that brings the converter and runtime ("" = core dependencies)
    module: str                   # module under emo.export holding export() and load()
    runtime: str                  # what checks parity on this host ("checked_with")
    requires: tuple[str, ...]     # top-level packages the module imports
    flags: tuple[str, ...] = ()   # format-specific emo-export flags this backend honours
    # backend_options this backend always has, whatever the flags say (litert-npu: NHWC, and the SoC of each
    # artifact once ``expand_targets`` has made one backend per SoC)
    fixed_options: tuple[tuple[str, object], ...] = ()
    in_all: bool = True           # part of --format all (SoC-specific formats are asked for by name)
    target: str = ""              # the SoC's part of the artifact tag (litert-npu-sm8650), set by expand_targets

    @property
    def name(self) -> str:
        return self.format.name

    @property
    def tag(self) -> str:
        return f"{self.format.tag}-{self.target}" if self.target else self.format.tag

    @property
    def suffix(self) -> str:
        return self.format.suffix

    @property
    def precisions(self) -> tuple[str, ...]:
        return self.format.precisions

    @property
    def default_precision(self) -> str:
        return self.format.default_precision

    def filename(self, variant: str, precision: str) -> str:
        return f"{variant}_{self.tag}_{precision}{self.suffix}"

    def options_for(self, options):
        """``options`` (an ``ExportOptions``) with this backend's fixed backend options applied."""
        if not self.fixed_options:
            return options
        return dataclasses.replace(options, backend_options={**options.backend_options, **dict(self.fixed_options)})

    def load_module(self) -> ModuleType:
        """The backend module, or an EMOError naming the extra to install (or, through the module's
        ``check_backend``, the vendor toolchain this backend's target lacks). Imports quietly: converters print
        native-library chatter when they load."""
        with captured_output(io.StringIO()):
            for package in self.requires:
                try:
                    importlib.import_module(package)
                except ImportError as e:
                    spec = f"'emo-mobile[{self.extra}]'" if self.extra else "emo-mobile"
                    raise EMOError(f"the {self.name} backend needs '{package}' ({e.name or package} is not "
                                   f"importable); install it with: pip install {spec}") from None
            module = importlib.import_module(f"emo.export.{self.module}")
            if hasattr(module, "check_backend"):
                module.check_backend(self)
            return module


_ONNX = ("onnx", "onnxruntime", "onnxsim", "onnxscript")
BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend(FORMATS["onnx"], "onnx", "onnx", "onnxruntime (CPU EP)", _ONNX, flags=("--dynamic-batch",)),
    Backend(FORMATS["ort"], "onnx", "ort", "onnxruntime (CPU EP, ORT format)", _ONNX,
            flags=("--dynamic-batch", "--ort-style")),
    Backend(FORMATS["coreml"], "coreml", "coreml", "mil-interpreter (numpy)", ("coremltools",),
            flags=("--image-input", "--classifier", "--min-target")),
    Backend(FORMATS["tflite"], "tflite", "tflite", "ai-edge-litert interpreter (XNNPACK)",
            ("litert_torch", "ai_edge_litert", "ai_edge_quantizer"), flags=("--nhwc",)),
    Backend(FORMATS["executorch"], "executorch", "executorch", "executorch.runtime (XNNPACK)", ("executorch",)),
    Backend(FORMATS["qnn"], "qnn", "qnn", "onnxruntime QNN EP, HTP backend (x86-64 HTP simulator, not a phone)",
            (*_ONNX, "onnxruntime_qnn")),
    Backend(FORMATS["pt2"], "", "pt2", "PyTorch (torch.export program)", ("torch",), flags=("--dynamic-batch",)),
    Backend(FORMATS["executorch-coreml"], "executorch,coreml", "executorch_coreml",
            "executorch.runtime (Core ML delegate)", ("executorch", "coremltools")),
    # one artifact per --soc (expand_targets): emo_1m_litert-npu-sm8650_fp16.tflite
    Backend(FORMATS["litert-npu"], "litert-npu", "litert_npu",
            "onnxruntime QNN EP, HTP backend (x86-64 HTP simulator, not a phone), running the QNN context binary of "
            "the compiled .tflite", ("litert_torch", "ai_edge_litert", "ai_edge_quantizer", *_ONNX, "onnxruntime_qnn"),
            flags=("--soc", "--nhwc"), fixed_options=(("nhwc", True),), in_all=False),
)}
assert list(BACKENDS) == list(FORMATS), "every format of the contract has its backend, in the contract's order"
ALL = "all"


# why a format has no quantized precision (the refusal names it)
NOT_QUANTIZED = {"coreml": "Core ML has int8 (W8A8), not w8a16; use --precision int8 or fp16",
                 "executorch-coreml": "the Core ML delegate of ExecuTorch is exported in fp16 only; for int8 on Apple "
                                      "use --format coreml --precision int8"}


def parse_formats(text: str, precision: str | None = None) -> list[Backend]:
    """``onnx,ort`` (or ``all``) -> backends, in the order given; unknown names list the known ones. ``all`` with a
    quantized precision is every format that has it; otherwise every format whose default is a float precision."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if ALL in names:
        everything = [b for b in BACKENDS.values() if b.in_all]
        if precision in QUANTIZED:
            return [b for b in everything if precision in b.precisions]
        return [b for b in everything if b.default_precision not in QUANTIZED]
    if not names:
        raise EMOError(f"--format is empty; choose from: {', '.join(BACKENDS)}, {ALL}")
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise EMOError(f"unknown format {unknown[0]!r}; choose from: {', '.join(BACKENDS)}, {ALL}")
    return [BACKENDS[n] for n in dict.fromkeys(names)]


def check_options(backends: list[Backend], *, precision: str | None, flags: list[str]) -> None:
    """Reject a flag that a chosen format cannot honour, before any slow work.

    ``--precision`` applies to every chosen format that has it (the others keep their default); it is an error
    only when no chosen format has it.
    """
    for flag in flags:
        lacking = [b.name for b in backends if flag not in b.flags]
        if lacking:
            able = ", ".join(b.name for b in BACKENDS.values() if flag in b.flags)
            raise EMOError(f"{flag} is not available for {lacking[0]}; it applies to: {able}")
    if precision and not any(precision in b.precisions for b in backends):
        if precision in QUANTIZED and backends[0].name in NOT_QUANTIZED:
            raise EMOError(f"{backends[0].name} has no {precision}: {NOT_QUANTIZED[backends[0].name]}")
        raise EMOError(f"{backends[0].name} has no precision {precision!r}; "
                       f"choose from: {', '.join(backends[0].precisions)}")


def expand_targets(backends: list[Backend], socs: str | None) -> list[Backend]:
    """One backend per SoC for the formats that compile for one (``--soc SM8650,SM8750``; the module's
    ``DEFAULT_SOCS`` without it), tagged with the SoC (``litert-npu-sm8650``). A SoC name the compiler does not know
    is an error listing the known ones, before any slow work. Where the format's extra is missing the backend stays
    as it is: exporting it then reports the missing extra (an error, or a failed row among several formats)."""
    expanded = []
    for backend in backends:
        if "--soc" not in backend.flags:
            expanded.append(backend)
            continue
        try:
            module = backend.load_module()
        except EMOError:
            if len(backends) == 1:
                raise
            expanded.append(backend)
            continue
        for soc in module.parse_socs(socs):
            expanded.append(dataclasses.replace(backend, target=module.soc_tag(soc),
                                                fixed_options=(*backend.fixed_options, ("soc", soc))))
    return expanded


def precision_for(backend: Backend, requested: str | None) -> str:
    return requested if requested in backend.precisions else backend.default_precision
