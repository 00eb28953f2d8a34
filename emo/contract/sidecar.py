"""The sidecar (``{stem}.json`` beside every artifact) as a typed object, with its one validator.

``read(artifact)`` and ``validate(data)`` return a ``Sidecar``; a file that fails the JSON Schema
(``schemas/sidecar.schema.json``) or one of its cross-field rules raises ``SidecarError`` naming the field, so
emo-verify, emo-predict, emo-eval and every emo-bench target give the same one line for the same broken file. The
writer (``emo.export.pipeline``) validates what it writes with the same function: we never write a sidecar our own
readers refuse.

What a reader needs to feed the graph is typed here (``InputContract``: size, layout, batch, normalisation, resize and
crop, int8 input/output scales); the rest of the document (parity, toolchain, backend_info, ...) stays in ``data``.
A path a sidecar names (the weights) resolves against the sidecar's own folder and must be a regular file.

No torch import here: emo-bench runs where only a runtime is installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from emo.contract import jsonio, schema, vocabulary
from emo.contract.jsonio import ContractError

SCHEMA = "emo-mobile/sidecar/1"
MAX_SIDECAR_BYTES = 16 << 20
MAX_WEIGHTS_BYTES = 8 << 30
MAX_INPUT_ELEMENTS = 1 << 28          # batch x 3 x H x W (1 GiB of float32): what a reader may allocate for one input
CROP_PCT = 0.875                      # the authors' eval transform: shorter side to size / 0.875, centre crop
FIX = "re-export the artifact with emo-export"


class SidecarError(ContractError):
    """A missing, unreadable or malformed sidecar; the message names the file and the field."""


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    in_graph: bool                    # the graph normalises; the app feeds RGB in [0, 1] (or pixels for "image")


@dataclass(frozen=True)
class Preprocessing:
    """How a photo becomes the input: resize the shorter side to int(max(H, W) / crop_pct) with ``interpolation``,
    then centre-crop H x W (``emo.data.to_unit_array``)."""

    crop_pct: float = CROP_PCT
    interpolation: str = "bicubic"
    resize: str = "shorter-side"


@dataclass(frozen=True)
class QuantizedIO:
    """A full-integer graph's input or output: real = scale * (q - zero_point)."""

    dtype: str
    scale: float
    zero_point: int


@dataclass(frozen=True)
class InputContract:
    name: str
    layout: vocabulary.Layout
    batch: int | None                 # None: a symbolic batch ("batch")
    height: int
    width: int
    normalization: Normalization
    preprocessing: Preprocessing

    @property
    def shape(self) -> list[int]:
        """The input tensor's shape with batch 1 for a symbolic batch, in the artifact's layout."""
        batch = self.batch or 1
        if self.layout == "NHWC":
            return [batch, self.height, self.width, 3]
        return [batch, 3, self.height, self.width]

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width


@dataclass(frozen=True)
class Sidecar:
    variant: str
    backend: str
    precision: vocabulary.Precision
    file: str
    sha256: str
    size_bytes: int | None
    num_classes: int
    input: InputContract
    output_name: str
    output_kind: vocabulary.OutputKind
    labels: tuple[str, ...] | None
    examples: str | None
    quantized_io: dict[str, QuantizedIO] | None   # {"input": ..., "output": ...} for a full-integer graph
    weights: dict
    data: dict = field(repr=False)                # the whole document

    @property
    def format(self) -> vocabulary.Format:
        return vocabulary.FORMATS[self.backend]

    @property
    def probabilities(self) -> bool:
        return self.output_kind == "probabilities"

    def label(self, index: int) -> str:
        """The name of class ``index``: its label, or "class N" for a model exported without labels (every reader
        in every language falls back the same way)."""
        return self.labels[index] if self.labels and 0 <= index < len(self.labels) else f"class {index}"

    @property
    def weights_id(self) -> str:
        return weights_id(self.weights)


def weights_id(weights: dict) -> str:
    """What an artifact was exported from, short: the checkpoint's file name and sha256 prefix, or
    "random-init (seed N)" (tables show it, so artifacts of different checkpoints never look alike)."""
    if not isinstance(weights, dict):
        return "?"
    if weights.get("random_init"):
        return f"random-init (seed {weights.get('seed', 0)})"
    return f"{Path(str(weights.get('path', '?'))).name}@{str(weights.get('sha256', ''))[:8]}"


def sidecar_path(artifact: Path) -> Path:
    """``DIR/emo_1m_onnx_fp32.onnx`` -> ``DIR/emo_1m_onnx_fp32.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.stem + vocabulary.SIDECAR_SUFFIX) if artifact.suffix else \
        artifact.with_name(artifact.name + vocabulary.SIDECAR_SUFFIX)


def _fail(where: str, field_name: str, reason: str, message: str) -> SidecarError:
    return SidecarError(f"sidecar {where}: field '{field_name}' {message}; {FIX}", field_name, reason)


def _rules(data: dict, where: str) -> None:
    """The cross-field rules of the schema's ``x-rules``, in its order."""
    contract = data["input"]
    shape = contract["shape"]
    layout = contract.get("layout", "NCHW")
    channels = shape[3] if layout == "NHWC" else shape[1]
    if channels != 3:
        raise _fail(where, "input.shape", "mismatch", f"must hold RGB (3 channels in {layout}), not {shape}")
    batch = 1 if shape[0] == "batch" else shape[0]
    if batch * shape[1] * shape[2] * shape[3] > MAX_INPUT_ELEMENTS:
        raise _fail(where, "input.shape", "range", f"must have at most {MAX_INPUT_ELEMENTS} elements, not {shape}")
    if layout == "image" and (data["backend"] != "coreml" or batch != 1):
        raise _fail(where, "input.layout", "mismatch", "'image' (a Core ML ImageType) needs backend coreml and "
                    "batch 1")
    fmt = vocabulary.FORMATS[data["backend"]]
    if data["precision"] not in fmt.precisions:
        raise _fail(where, "precision", "mismatch", f"must be one of {', '.join(fmt.precisions)} for "
                    f"{fmt.name}, not {data['precision']!r}")
    if not data["file"].lower().endswith(fmt.suffix):
        raise _fail(where, "file", "mismatch", f"must end with {fmt.suffix} for {fmt.name}, not {data['file']!r}")
    out_shape = (data.get("output") or {}).get("shape")
    if out_shape is not None and out_shape[-1] != data["num_classes"]:
        raise _fail(where, "output.shape", "mismatch", f"must end with num_classes {data['num_classes']}, "
                    f"not {out_shape}")
    labels = data.get("labels")
    if labels is not None and len(labels["names"]) != data["num_classes"]:
        raise _fail(where, "labels.names", "mismatch", f"must hold {data['num_classes']} names (num_classes), "
                    f"not {len(labels['names'])}")
    io = (data.get("quantization") or {}).get("io")
    for key in ("input", "output") if io else ():
        if io[key]["dtype"] != "float32" and io[key]["scale"] <= 0:
            raise _fail(where, f"quantization.io.{key}.scale", "range", "must be > 0 for an integer tensor")


def _integral(data: dict) -> None:
    """JSON has one number type: an integer field may hold 224.0 (JavaScript writes no difference). Such values
    passed the schema as integers; make them Python ints so no reader indexes or allocates with a float."""
    def whole(v):
        return int(v) if isinstance(v, float) else v

    data["num_classes"] = whole(data["num_classes"])
    data["input"]["shape"] = [whole(v) for v in data["input"]["shape"]]
    if isinstance(data.get("output"), dict) and "shape" in data["output"]:
        data["output"]["shape"] = [whole(v) for v in data["output"]["shape"]]
    if "size_bytes" in data:
        data["size_bytes"] = whole(data["size_bytes"])


def input_contract(contract: dict) -> InputContract:
    """The typed input contract of a sidecar's ``input`` (one that passed the schema; emo-export also calls it on
    the contract it is about to write, to feed the artifact before its sidecar exists)."""
    shape, layout = contract["shape"], contract.get("layout", "NCHW")
    h, w = (shape[1], shape[2]) if layout == "NHWC" else (shape[2], shape[3])
    norm = contract["normalization"]
    pre = contract.get("preprocessing") or {}
    return InputContract(
        name=contract.get("name", "image"), layout=layout, batch=None if shape[0] == "batch" else int(shape[0]),
        height=int(h), width=int(w),
        normalization=Normalization(tuple(norm["mean"]), tuple(norm["std"]), norm["in_graph"]),
        preprocessing=Preprocessing(float(pre.get("crop_pct", CROP_PCT)), pre.get("interpolation", "bicubic"),
                                    pre.get("resize", "shorter-side")))


def validate(data, where: str) -> Sidecar:
    """The ``Sidecar`` of a parsed document, or ``SidecarError`` naming the first wrong field."""
    with jsonio.reported_as(SidecarError):
        schema.check("sidecar", data, f"sidecar {where}", FIX)
    _rules(data, where)
    _integral(data)
    io = (data.get("quantization") or {}).get("io")
    output = data.get("output") or {}
    return Sidecar(
        variant=data["variant"], backend=data["backend"], precision=data["precision"], file=data["file"],
        sha256=data["sha256"], size_bytes=data.get("size_bytes"), num_classes=int(data["num_classes"]),
        input=input_contract(data["input"]),
        output_name=output.get("name", "logits"), output_kind=output.get("kind", "logits"),
        labels=tuple(data["labels"]["names"]) if data.get("labels") else None, examples=data.get("examples"),
        quantized_io={k: QuantizedIO(v["dtype"], float(v["scale"]), int(v["zero_point"])) for k, v in io.items()
                      if k in ("input", "output")} if io else None,
        weights=dict(data["weights"]), data=data)


def loads(text: str | bytes, where: str) -> Sidecar:
    """A sidecar from JSON text (the conformance vectors and the tests use this)."""
    with jsonio.reported_as(SidecarError):
        data = jsonio.loads(text, f"sidecar {where}")
    return validate(data, where)


def read(artifact: Path) -> Sidecar:
    """The validated sidecar of ``artifact`` (``SidecarError`` with a one-line reason otherwise)."""
    path = sidecar_path(artifact)
    if not path.exists():
        raise SidecarError(f"no sidecar {path.name} next to {Path(artifact).name}; {FIX}", "", "required")
    with jsonio.reported_as(SidecarError):
        data = jsonio.read_json(path, "sidecar", MAX_SIDECAR_BYTES)
    return validate(data, path.name)


def weights_path(side: Sidecar, artifact: Path) -> Path:
    """The checkpoint a sidecar names: relative paths against the sidecar's folder; a regular file or an error."""
    try:
        return jsonio.regular_file(side.weights["path"], "weights file named by the sidecar",
                                   base=Path(artifact).parent, limit=MAX_WEIGHTS_BYTES)
    except ContractError as e:
        raise SidecarError(str(e), "weights.path", e.reason) from None


def write(path: Path, data: dict) -> Sidecar:
    """Validate ``data`` as every reader will, then write it atomically (the writer's half of the contract)."""
    side = validate(data, path.name)
    try:
        jsonio.write_json_atomic(path, data, limit=MAX_SIDECAR_BYTES)
    except ContractError as e:
        raise SidecarError(f"{e}: shorten the labels", "labels.names", "size") from None
    return side
