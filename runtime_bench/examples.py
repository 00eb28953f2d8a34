"""Bundled examples: the file ``emo-export`` writes next to each artifact so that any runtime can prove it computes
what PyTorch computes, on a phone as on the host.

``DIR/{stem}.examples.json`` (``emo-mobile/examples/1``) holds a few of the bundled photos, each with the exact input
tensor the artifact must be given (after the authors' eval transform, in the artifact's layout, normalised or not as
the graph expects), PyTorch's output for it and its top-5, and the tolerances of the artifact's precision. The same
format is read by this module (``emo-bench --parity``), the Android core (``android_demo/core``), the Swift core
(``ios_demo/EMOCore``) and the apps' self-test screens. Tensors are base64 strings:

- ``"encoding": "u8"``: one byte per element, value = float32(byte) / float32(``divisor``) (``divisor`` 255 for a
  graph that takes RGB in [0, 1]; 1 for a Core ML ``ImageType``, which takes pixel values). Exact: every parity
  image is 8-bit, and IEEE float32 division gives the same bits in NumPy, Kotlin and Swift.
- ``"encoding": "f32le"``: IEEE float32, little-endian (graphs that take normalised input, and every output).

Elements are in row-major order of ``shape``. Input tensors have batch 1; an artifact with a static batch N takes
the image repeated N times.

No ``emo`` or torch import here: ``emo-bench`` runs where only a runtime is installed.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

from emo.runtime_bench.sidecar import regular_file

SCHEMA = "emo-mobile/examples/1"
SUFFIX = ".examples.json"
MAX_EXAMPLES_BYTES = 64 << 20
ENCODINGS = ("u8", "f32le")


class ExamplesError(ValueError):
    """A missing, unreadable or malformed examples file; the message names the file and the field."""


def examples_path(artifact: Path) -> Path:
    """``DIR/emo_1m_onnx_fp32.onnx`` -> ``DIR/emo_1m_onnx_fp32.examples.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.stem + SUFFIX)


def encode_tensor(array: np.ndarray, divisor: int | None = None) -> dict:
    """A tensor record; ``divisor`` set: stored as bytes, and it must round-trip exactly (else ``ValueError``)."""
    array = np.asarray(array, dtype=np.float32)
    record = {"shape": list(array.shape), "dtype": "float32"}
    if divisor is not None:
        raw = np.rint(array * divisor)
        if raw.min() < 0 or raw.max() > 255:
            raise ValueError(f"tensor is not in [0, {255 / divisor:g}]; store it as f32le")
        raw = raw.astype(np.uint8)
        if not np.array_equal(raw.astype(np.float32) / np.float32(divisor), array):
            raise ValueError(f"tensor is not a multiple of 1/{divisor}; store it as f32le")
        return {**record, "encoding": "u8", "divisor": divisor, "data": base64.b64encode(raw.tobytes()).decode()}
    data = base64.b64encode(array.astype("<f4").tobytes()).decode()
    return {**record, "encoding": "f32le", "data": data}


def decode_tensor(record, where: str) -> np.ndarray:
    """The float32 array of a tensor record (``ExamplesError`` naming ``where`` if it is malformed)."""
    if not isinstance(record, dict):
        raise ExamplesError(f"{where} must be an object")
    shape, encoding = record.get("shape"), record.get("encoding")
    if not (isinstance(shape, list) and shape and all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                                      for d in shape)):
        raise ExamplesError(f"{where}.shape must be a list of positive integers, not {shape!r:.60}")
    if encoding not in ENCODINGS:
        raise ExamplesError(f"{where}.encoding must be one of {', '.join(ENCODINGS)}, not {encoding!r:.40}")
    try:
        raw = base64.b64decode(record.get("data", ""), validate=True)
    except (TypeError, ValueError):
        raise ExamplesError(f"{where}.data is not base64") from None
    count = int(np.prod(shape))
    width = 1 if encoding == "u8" else 4
    if len(raw) != count * width:
        raise ExamplesError(f"{where}.data holds {len(raw)} bytes; shape {shape} in {encoding} needs {count * width}")
    if encoding == "f32le":
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
    divisor = record.get("divisor")
    if divisor not in (1, 255):
        raise ExamplesError(f"{where}.divisor must be 1 or 255, not {divisor!r:.20}")
    return (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) / np.float32(divisor)).reshape(shape)


def read(path: Path) -> dict:
    """The examples file at ``path`` (or next to an artifact), validated, with every tensor decoded in place:
    ``examples[i]["input"]`` and ``["output"]`` become float32 arrays."""
    path = Path(path)
    if not path.name.endswith(SUFFIX):
        path = examples_path(path)
    if not path.exists():
        raise ExamplesError(f"no examples file {path.name}; re-export the artifact with emo-export")
    try:
        path = regular_file(path, "examples file", limit=MAX_EXAMPLES_BYTES)
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as e:  # SidecarError, JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ExamplesError(f"unreadable examples file {path.name}: {str(e).splitlines()[0][:120]}") from None
    where = path.name
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ExamplesError(f"{where}: 'schema' must be {SCHEMA!r}; re-export the artifact")
    if not isinstance(data.get("tolerance"), dict):
        raise ExamplesError(f"{where}: 'tolerance' must be an object")
    examples = data.get("examples")
    if not isinstance(examples, list) or not examples:
        raise ExamplesError(f"{where}: 'examples' must be a non-empty list")
    for i, example in enumerate(examples):
        if not isinstance(example, dict):
            raise ExamplesError(f"{where}: examples[{i}] must be an object")
        example["input"] = decode_tensor(example.get("input"), f"{where}: examples[{i}].input")
        example["output"] = decode_tensor(example.get("output"), f"{where}: examples[{i}].output")
        top5 = example.get("top5")
        if not (isinstance(top5, list) and all(isinstance(t, dict) and isinstance(t.get("index"), int)
                                               for t in top5)):
            raise ExamplesError(f"{where}: examples[{i}].top5 must be a list of {{'index': int, ...}}")
    return data


def top_k(scores: np.ndarray, k: int = 5) -> list[int]:
    """Indices of the k largest scores, best first; ties broken by the lower index (as every core does)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    return [int(i) for i in np.lexsort((np.arange(scores.size), -scores))[:k]]


def agreement(examples: dict, outputs: list[np.ndarray]) -> dict:
    """Max |diff|, the smallest cosine, top-1 and top-5 agreement of ``outputs`` (one per example, the artifact's
    output in the examples' ``output`` kind) with the expected outputs, judged by the file's tolerance."""
    expected = [np.asarray(e["output"], dtype=np.float64).ravel() for e in examples["examples"]]
    actual = [np.asarray(o, dtype=np.float64).ravel() for o in outputs]
    if len(actual) != len(expected) or any(a.shape != e.shape for a, e in zip(actual, expected, strict=True)):
        shapes = [a.shape for a in actual]
        return {"status": f"failed: outputs {shapes} do not match the {len(expected)} expected outputs"}
    if not all(np.isfinite(a).all() for a in actual):
        return {"status": "failed: non-finite outputs"}
    diffs = [float(np.abs(a - e).max()) for a, e in zip(actual, expected, strict=True)]
    cosines = [float(a @ e / max(np.linalg.norm(a) * np.linalg.norm(e), 1e-300))
               for a, e in zip(actual, expected, strict=True)]
    top1 = [int(np.argmax(a)) == int(np.argmax(e)) for a, e in zip(actual, expected, strict=True)]
    top5 = [sorted(top_k(a)) == sorted(top_k(e)) for a, e in zip(actual, expected, strict=True)]
    result = {"max_abs_diff": max(diffs), "cosine": min(cosines), "top1_agreement": sum(top1) / len(top1),
              "top5_agreement": sum(top5) / len(top5), "num_examples": len(expected)}
    failures = []
    for name, bound in examples["tolerance"].items():
        if name not in result:
            continue
        value, upper = result[name], name == "max_abs_diff"
        if (value > bound) if upper else (value < bound):
            failures.append(f"{name} {value:.3g} {'>' if upper else '<'} {bound:g}")
    result["tolerance"] = dict(examples["tolerance"])
    result["status"] = "failed: " + "; ".join(failures) if failures else "passed"
    return result
