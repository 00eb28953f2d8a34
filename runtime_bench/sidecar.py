"""The sidecar JSON that ``emo-export`` writes next to every artifact: one reader and one schema check.

``emo-verify``, ``emo-predict`` and ``emo-bench`` all read sidecars through ``read`` so that a hand-edited or
hostile sidecar gives the same one-line error everywhere, naming the field that is wrong, instead of a traceback
deep inside whichever tool touched the field first. Paths in a sidecar are resolved against the sidecar's own
folder and must be regular files (``regular_file``): a sidecar cannot make a tool read ``/dev/zero`` forever.

No ``emo`` or torch import here: ``emo-bench`` runs where only a runtime is installed.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

MAX_SIDECAR_BYTES = 16 << 20
MAX_WEIGHTS_BYTES = 8 << 30
PRECISIONS = ("fp32", "fp16", "int8", "w8a16")
LAYOUTS = ("NCHW", "NHWC", "image")
OUTPUT_KINDS = ("logits", "probabilities")


class SidecarError(ValueError):
    """A missing, unreadable or malformed sidecar; the message names the file and the field."""


def sidecar_path(artifact: Path) -> Path:
    return artifact.with_suffix(".json")


def regular_file(path: str | Path, what: str, base: Path | None = None, limit: int = MAX_WEIGHTS_BYTES) -> Path:
    """``path`` (relative ones against ``base``) if it is a regular file of at most ``limit`` bytes."""
    path = Path(path)
    if base is not None and not path.is_absolute():
        path = base / path
    try:
        info = path.stat()
    except OSError:
        raise SidecarError(f"{what} {path} does not exist") from None
    if not stat.S_ISREG(info.st_mode):
        raise SidecarError(f"{what} {path} is not a regular file")
    if info.st_size > limit:
        raise SidecarError(f"{what} {path} is larger than {limit >> 20} MiB")
    return path


def _fail(where: str, field: str, expected: str, value) -> SidecarError:
    shown = json.dumps(value)[:60] if not isinstance(value, str | int | float | type(None)) else repr(value)[:60]
    return SidecarError(f"sidecar {where}: field '{field}' must be {expected}, not {shown}; re-export the artifact")


def _is_int(value, minimum: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate(data, where: str) -> dict:
    """``data`` if it is a sidecar this version can use, else ``SidecarError`` naming the first wrong field."""
    if not isinstance(data, dict):
        raise _fail(where, "(top level)", "a JSON object", data)
    for field in ("variant", "backend"):
        if not isinstance(data.get(field), str) or not data[field]:
            raise _fail(where, field, "a non-empty string", data.get(field))
    if data.get("precision") not in PRECISIONS:
        raise _fail(where, "precision", f"one of {', '.join(PRECISIONS)}", data.get("precision"))
    contract = data.get("input")
    if not isinstance(contract, dict):
        raise _fail(where, "input", "an object", contract)
    shape = contract.get("shape")
    if not (isinstance(shape, list) and len(shape) == 4 and (shape[0] == "batch" or _is_int(shape[0]))
            and all(_is_int(d) and d <= 16384 for d in shape[1:])):
        raise _fail(where, "input.shape", "[batch, ...] with 4 positive sizes", shape)
    layout = contract.get("layout", "NCHW")
    if layout not in LAYOUTS:
        raise _fail(where, "input.layout", f"one of {', '.join(LAYOUTS)}", layout)
    channels = shape[3] if layout == "NHWC" else shape[1]
    if channels != 3:
        raise _fail(where, "input.shape", f"RGB (3 channels in {layout})", shape)
    norm = contract.get("normalization")
    if not isinstance(norm, dict) or not isinstance(norm.get("in_graph"), bool):
        raise _fail(where, "input.normalization", "an object with a boolean 'in_graph'", norm)
    for key in ("mean", "std"):
        values = norm.get(key)
        if not (isinstance(values, list) and len(values) == 3 and all(map(_is_number, values))
                and (key == "mean" or all(v > 0 for v in values))):
            raise _fail(where, f"input.normalization.{key}", "3 numbers (std > 0)", values)
    output = data.get("output")
    if not isinstance(output, dict) or output.get("kind", "logits") not in OUTPUT_KINDS:
        raise _fail(where, "output", f"an object whose 'kind' is one of {', '.join(OUTPUT_KINDS)}", output)
    weights = data.get("weights")
    if not isinstance(weights, dict):
        raise _fail(where, "weights", "an object", weights)
    if not weights.get("random_init"):
        if not isinstance(weights.get("path"), str) or not weights["path"]:
            raise _fail(where, "weights.path", "a file path (or 'random_init': true)", weights.get("path"))
        if not isinstance(weights.get("sha256"), str):
            raise _fail(where, "weights.sha256", "a hex digest", weights.get("sha256"))
    elif not _is_int(weights.get("seed", 0), minimum=0):
        raise _fail(where, "weights.seed", "a non-negative integer", weights.get("seed"))
    if "num_classes" in data and not _is_int(data["num_classes"]):
        raise _fail(where, "num_classes", "a positive integer", data["num_classes"])
    labels = data.get("labels")
    if labels is not None:
        names = labels.get("names") if isinstance(labels, dict) else None
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise _fail(where, "labels.names", "a list of strings", names)
        if "num_classes" in data and len(names) != data["num_classes"]:
            raise _fail(where, "labels.names", f"{data['num_classes']} names (num_classes)", len(names))
    for field in ("sha256", "file"):
        if data.get(field) is not None and not isinstance(data[field], str):
            raise _fail(where, field, "a string", data[field])
    return data


def read(artifact: Path) -> dict:
    """The validated sidecar of ``artifact`` (``SidecarError`` with a one-line reason otherwise)."""
    path = sidecar_path(artifact)
    if not path.exists():
        raise SidecarError(f"no sidecar {path.name} next to {artifact.name}; re-export it with emo-export")
    try:
        path = regular_file(path, "sidecar", limit=MAX_SIDECAR_BYTES)
        with open(path, "rb") as f:
            data = json.loads(f.read(MAX_SIDECAR_BYTES + 1).decode("utf-8"))
    except SidecarError:
        raise
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise SidecarError(f"unreadable sidecar {path.name}: {str(e).splitlines()[0][:120]}") from None
    return validate(data, path.name)


def weights_path(side: dict, artifact: Path) -> Path:
    """The checkpoint a sidecar names: relative paths against the sidecar's folder; a regular file or an error."""
    return regular_file(side["weights"]["path"], "weights file named by the sidecar", base=artifact.parent)

