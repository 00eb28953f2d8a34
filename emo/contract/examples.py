"""Bundled examples: the file ``emo-export`` writes next to each artifact so that any runtime can prove it computes
what PyTorch computes, on a phone as on the host. The codec, the one validator, the parity policy and the agreement
measure live here; ``emo.export.examples`` builds the file from the PyTorch model.

``DIR/{stem}.examples.json`` (``emo-mobile/examples/1``, ``schemas/examples.schema.json``) holds a few of the bundled
photos, each with the exact input tensor the artifact must be given (after the authors' eval transform, in the
artifact's layout, normalised or not as the graph expects), PyTorch's output for it and its top-5, and the tolerances
of the artifact's precision. Tensors are base64 strings:

- ``"encoding": "u8"``: one byte per element, value = float32(byte) / float32(``divisor``) (``divisor`` 255 for a
  graph that takes RGB in [0, 1]; 1 for a Core ML ``ImageType``, which takes pixel values). Exact: every parity
  image is 8-bit, and IEEE float32 division gives the same bits in NumPy, Kotlin, Swift and JavaScript.
- ``"encoding": "f32le"``: IEEE float32, little-endian (graphs that take normalised input, and every output).

Elements are in row-major order of ``shape``. Input tensors have batch 1; an artifact with a static batch N takes
the image repeated N times.

No ``emo`` model or torch import here: emo-bench runs where only a runtime is installed.
"""

from __future__ import annotations

import base64
import math
from pathlib import Path

import numpy as np

from emo.contract import jsonio, schema, vocabulary
from emo.contract.jsonio import ContractError

SCHEMA = "emo-mobile/examples/1"
SUFFIX = vocabulary.EXAMPLES_SUFFIX
MAX_EXAMPLES_BYTES = 256 << 20
MAX_TENSOR_ELEMENTS = 1 << 28
ENCODINGS = ("u8", "f32le")
FIX = "re-export the artifact with emo-export"

# The parity policy: what "computes the same function" means per precision. fp32: elementwise on logits. fp16:
# agreement, because fp16 rounding moves logits by ~1e-3 relative and that is expected, while a wrong op moves the
# ranking. int8/w8a16 (quantized against the fp32 model): 7 of the 8 parity images keep their arg-max and every logit
# vector keeps cosine >= 0.99 (0.995 with 16-bit activations); measured on emo_1m: 0.9997 (ORT int8), 0.99993 (HTP
# w8a16), so a wrong scale or op fails, rounding does not. An examples file may be stricter, never looser.
TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"max_abs_diff": 1e-4},
    "fp16": {"top1_agreement": 0.99, "cosine": 0.999},
    "int8": {"top1_agreement": 0.87, "cosine": 0.99},
    "w8a16": {"top1_agreement": 0.87, "cosine": 0.995},
}
UPPER_BOUNDS = ("max_abs_diff",)  # tolerance names that bound from above; the others from below


class ExamplesError(ContractError):
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


def _fail(where: str, field: str, reason: str, message: str) -> ExamplesError:
    return ExamplesError(f"examples file {where}: field '{field}' {message}; {FIX}", field, reason)


def decode_tensor(record: dict, field: str, where: str) -> np.ndarray:
    """The float32 array of a tensor record that passed the schema (sizes are checked here)."""
    shape = record["shape"] = [int(d) for d in record["shape"]]  # 3.0 passed the schema as the integer 3
    count = math.prod(shape)
    if count > MAX_TENSOR_ELEMENTS:
        raise _fail(where, f"{field}.shape", "range", f"must have at most {MAX_TENSOR_ELEMENTS} elements, not {shape}")
    width = 1 if record["encoding"] == "u8" else 4
    data = record["data"]
    if len(data) != 4 * math.ceil(count * width / 3):  # base64 length of count * width bytes, before decoding
        raise _fail(where, f"{field}.data", "length", f"must hold {count * width} bytes for shape {shape} in "
                    f"{record['encoding']}")
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        raise _fail(where, f"{field}.data", "format", "must be base64 text") from None
    if len(raw) != count * width:
        raise _fail(where, f"{field}.data", "length", f"must hold {count * width} bytes for shape {shape} in "
                    f"{record['encoding']}, not {len(raw)}")
    if record["encoding"] == "f32le":
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
    return (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) / np.float32(record["divisor"])).reshape(shape)


def _check_tolerance(data: dict, where: str) -> None:
    """Every name the precision's policy needs is there, and none is looser than the policy: a file cannot make a
    wrong output pass."""
    policy = TOLERANCES.get(data.get("precision", ""), {})
    for name, bound in policy.items():
        field = f"tolerance.{name}"
        if name not in data["tolerance"]:
            raise _fail(where, field, "required", f"is missing (the {data['precision']} policy needs it)")
        value = data["tolerance"][name]
        if (value > bound) if name in UPPER_BOUNDS else (value < bound):
            raise _fail(where, field, "range", f"must not be looser than the {data['precision']} policy "
                        f"({'<=' if name in UPPER_BOUNDS else '>='} {bound:g}), not {value:g}")


def validate(data, where: str) -> dict:
    """The examples document with every tensor decoded in place (``examples[i]["input"]``/``["output"]`` become
    float32 arrays), or ``ExamplesError`` naming the first wrong field."""
    if isinstance(data, dict) and data.get("schema") != SCHEMA:  # another file type or version: refused whole
        field_ok = "schema" in data
        raise ExamplesError(f"examples file {where}: field 'schema' must be {SCHEMA!r}, not "
                            f"{schema.shown(data.get('schema'))}; {FIX}" if field_ok else
                            f"examples file {where}: field 'schema' is missing; {FIX}", "schema", "schema")
    with jsonio.reported_as(ExamplesError):
        schema.check("examples", data, f"examples file {where}", FIX)
    _check_tolerance(data, where)
    size = None
    for i, example in enumerate(data["examples"]):
        example["input"] = decode_tensor(example["input"], f"examples[{i}].input", where)
        example["output"] = decode_tensor(example["output"], f"examples[{i}].output", where)
        if size is not None and example["output"].size != size:
            raise _fail(where, f"examples[{i}].output.shape", "mismatch", f"must have {size} elements like "
                        f"examples[0].output")
        size = example["output"].size
    return data


def loads(text: str | bytes, where: str) -> dict:
    with jsonio.reported_as(ExamplesError):
        data = jsonio.loads(text, f"examples file {where}")
    return validate(data, where)


def read(path: Path) -> dict:
    """The examples file at ``path`` (or next to an artifact), validated and decoded (see ``validate``)."""
    path = Path(path)
    if not path.name.endswith(SUFFIX):
        path = examples_path(path)
    if not path.exists():
        raise ExamplesError(f"no examples file {path.name}; {FIX}", "", "required")
    with jsonio.reported_as(ExamplesError):
        data = jsonio.read_json(path, "examples file", MAX_EXAMPLES_BYTES)
    return validate(data, path.name)


def write(path: Path, data: dict) -> None:
    """Write an examples document atomically, refusing one its own readers would refuse (too large)."""
    jsonio.write_json_atomic(path, data, indent=None, limit=MAX_EXAMPLES_BYTES)


def top_k(scores: np.ndarray, k: int = 5) -> list[int]:
    """Indices of the k largest scores, best first; ties broken by the lower index (as every core does)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    return [int(i) for i in np.lexsort((np.arange(scores.size), -scores))[:k]]


def agreement(examples: dict, outputs: list[np.ndarray]) -> dict:
    """Max |diff|, the smallest cosine, top-1 and top-5 agreement of ``outputs`` (one per example, the artifact's
    output in the examples' ``output`` kind) with the expected outputs, judged by the file's tolerance. An output
    with more or fewer values than expected fails: a runner that wrote extra values is not a pass."""
    expected = [np.asarray(e["output"], dtype=np.float64).ravel() for e in examples["examples"]]
    actual = [np.asarray(o, dtype=np.float64).ravel() for o in outputs]
    if len(actual) != len(expected) or any(a.shape != e.shape for a, e in zip(actual, expected, strict=False)):
        shapes = [a.size for a in actual]
        return {"status": f"failed: outputs of {shapes} values do not match the {len(expected)} expected outputs of "
                          f"{expected[0].size} values"}
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
        value, upper = result[name], name in UPPER_BOUNDS
        if (value > bound) if upper else (value < bound):
            failures.append(f"{name} {value:.3g} {'>' if upper else '<'} {bound:g}")
    result["tolerance"] = dict(examples["tolerance"])
    result["status"] = "failed: " + "; ".join(failures) if failures else "passed"
    return result
