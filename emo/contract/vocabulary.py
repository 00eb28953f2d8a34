"""The words of the artifact contract, in one table: formats (with their file suffix and artifact tag), precisions,
input layouts, output kinds, and the places an artifact runs (emo-bench targets).

Every other module reads these names from here (``emo.export.backends`` adds how to export each format;
``emo.runtime_bench`` how to run it). ``vocabulary.json`` beside this file is the same table for the readers in other
languages (the web page, the Kotlin and Swift cores): a test keeps it equal to this module, and those readers' tests
check their own constants against it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

Precision = Literal["fp32", "fp16", "int8", "w8a16"]
Layout = Literal["NCHW", "NHWC", "image"]
OutputKind = Literal["logits", "probabilities"]

PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "int8", "w8a16")
QUANTIZED: tuple[Precision, ...] = ("int8", "w8a16")   # calibrated precisions
LAYOUTS: tuple[Layout, ...] = ("NCHW", "NHWC", "image")  # "image": a Core ML ImageType (RGB pixels 0..255)
OUTPUT_KINDS: tuple[OutputKind, ...] = ("logits", "probabilities")
VARIANTS = ("emo_1m", "emo_2m", "emo_5m", "emo_6m")
INTERPOLATIONS = ("bicubic",)

# where emo-bench runs an artifact (``--device KIND[:ARG]``)
BENCH_TARGETS = ("host", "browser", "adb", "mac", "ios", "aihub")

# runtimes an artifact's format runs in (the families, not the versions)
ONNXRUNTIME, LITERT, EXECUTORCH, COREML, PYTORCH, QNN = (
    "onnxruntime", "litert", "executorch", "coreml", "pytorch", "qnn")


@dataclass(frozen=True)
class Format:
    """One artifact format: the name ``emo-export --format`` takes and the sidecar's ``backend`` holds."""

    name: str
    tag: str                          # the {backend} part of the artifact name {variant}_{tag}_{precision}{suffix}
    suffix: str                       # file extension with the dot (".mlpackage" is a folder)
    precisions: tuple[Precision, ...]  # the first is the default
    runtime: str                      # runtime family (see above)
    browser: bool = False             # the web page runs it (onnxruntime-web, LiteRT.js)
    android: bool = False             # the Android demo app loads it
    ios: bool = False                 # the iOS demo app loads it

    @property
    def default_precision(self) -> Precision:
        return self.precisions[0]

    def filename(self, variant: str, precision: str) -> str:
        return f"{variant}_{self.tag}_{precision}{self.suffix}"


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("onnx", "onnx", ".onnx", ("fp32", "int8"), ONNXRUNTIME, browser=True, android=True),
    Format("ort", "ort", ".ort", ("fp32", "int8"), ONNXRUNTIME, browser=True, android=True),
    Format("coreml", "coreml", ".mlpackage", ("fp16", "fp32", "int8"), COREML, ios=True),
    Format("tflite", "tflite", ".tflite", ("fp32", "fp16", "int8"), LITERT, browser=True, android=True),
    Format("executorch", "xnnpack", ".pte", ("fp32", "int8"), EXECUTORCH),
    Format("qnn", "qnn", ".onnx", ("w8a16", "int8"), QNN),
    Format("pt2", "pytorch", ".pt2", ("fp32",), PYTORCH),
    Format("executorch-coreml", "coreml-et", ".pte", ("fp16",), EXECUTORCH),
    # a .tflite compiled ahead of time for one phone SoC's NPU (emo-export --soc; the tag gains the SoC:
    # litert-npu-sm8650). fp16: the float graph, which the NPU computes in fp16 (Qualcomm's HTP has no fp32
    # arithmetic), so it is judged as fp16. Runs only through LiteRT's CompiledModel with Accelerator.NPU.
    Format("litert-npu", "litert-npu", ".tflite", ("fp16", "int8"), LITERT, android=True),
)}

# every file suffix an artifact can have (a folder of artifacts is scanned for these)
ARTIFACT_SUFFIXES: tuple[str, ...] = tuple(dict.fromkeys(f.suffix for f in FORMATS.values()))
BROWSER_SUFFIXES: tuple[str, ...] = tuple(dict.fromkeys(f.suffix for f in FORMATS.values() if f.browser))
SIDECAR_SUFFIX = ".json"
EXAMPLES_SUFFIX = ".examples.json"


def formats_with_suffix(suffix: str) -> list[Format]:
    """The formats whose artifacts end with ``suffix`` (``.onnx``: onnx and qnn; ``.pte``: two ExecuTorch ones)."""
    return [f for f in FORMATS.values() if f.suffix == suffix.lower()]


def guess_format(suffix: str) -> str:
    """The format a file suffix most likely is when there is no sidecar to say (``"?"`` when unknown)."""
    candidates = formats_with_suffix(suffix)
    return candidates[0].name if candidates else "?"


def as_json() -> dict:
    """The table for the readers in other languages (``vocabulary.json``)."""
    return {
        "precisions": list(PRECISIONS), "quantized": list(QUANTIZED), "layouts": list(LAYOUTS),
        "output_kinds": list(OUTPUT_KINDS), "variants": list(VARIANTS), "interpolations": list(INTERPOLATIONS),
        "bench_targets": list(BENCH_TARGETS),
        "formats": [{**asdict(f), "precisions": list(f.precisions)} for f in FORMATS.values()],
        "sidecar_suffix": SIDECAR_SUFFIX, "examples_suffix": EXAMPLES_SUFFIX,
    }


VOCABULARY_JSON = Path(__file__).with_name("vocabulary.json")


def write_json(path: Path = VOCABULARY_JSON) -> None:
    """Regenerate ``vocabulary.json`` (``python -m emo.contract.vocabulary``); a test fails while it is stale."""
    path.write_text(json.dumps(as_json(), indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_json()
