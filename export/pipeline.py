"""Everything every backend shares: prepare the model, time the export, check parity, write the sidecar.

An artifact is written under a temporary name in the output folder and renamed into place only once it is
complete and its parity has been measured; a converter failure leaves no artifact, only a ``.log`` next to
where it would have been.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import torch
from torch import nn

import emo
from emo.checkpoint import sha256_file
from emo.cli_common import check_out_dir
from emo.contract import examples as examples_contract
from emo.contract import jsonio, runtimes
from emo.contract import sidecar as sidecar_contract
from emo.contract.examples import examples_path
from emo.contract.output import captured_output
from emo.contract.pt2 import UnsafeArchiveError
from emo.contract.sidecar import sidecar_path
from emo.contract.text import label_problem
from emo.contract.vocabulary import QUANTIZED as QUANTIZED_PRECISIONS
from emo.data import CROP_PCT, IMAGENET_MEAN, IMAGENET_STD, LABELS_SOURCE, imagenet_labels, normalize
from emo.errors import EMOError, first_line
from emo.export.backends import BACKENDS, Backend, precision_for
from emo.export.calibration import Calibration, calibration_images
from emo.export.examples import build as build_examples
from emo.export.parity import (
    Parity,
    combine,
    compare,
    failed,
    parity_inputs,
    reference_logits,
    run_batched,
    skipped,
)

SIDECAR_SCHEMA = "emo-mobile/sidecar/1"
RANDOM_INIT_SEED = 0
DYNAMIC_PARITY_BATCH = 3  # a dynamic-batch artifact is checked at a batch it was not traced with


@dataclass
class ExportOptions:
    """What the user asked for; shared by all backends of one ``emo-export`` run."""

    variant: str
    weights: str | None = None
    ema: bool = False
    input_size: tuple[int, int] = (224, 224)
    batch: int = 1
    dynamic_batch: bool = False
    normalize: bool = True
    precision: str | None = None        # None: the backend's default
    labels: tuple[str, ...] | None = None
    labels_source: str | None = None
    backend_options: dict = field(default_factory=dict)  # format-specific flags (later backends)
    calibration: str | None = None      # int8/w8a16: folder of calibration images (None: the default set)
    calibration_count: int | None = None


@dataclass
class ExportContext:
    """What a backend's ``export`` gets besides the model: precision, batch contract, metadata to embed."""

    precision: str
    batch: int
    dynamic_batch: bool
    metadata: dict[str, str]
    options: ExportOptions
    shared: dict = field(default_factory=dict)  # cache between backends of one run (e.g. the ONNX bytes for ORT)
    calibration: Calibration | None = None  # quantized precisions: the calibration images (never the parity ones)


@dataclass
class ExportResult:
    backend: str
    precision: str
    path: Path | None
    sidecar: Path | None
    status: str                   # "passed" | "failed: ..." | "error: ..."
    export_seconds: float | None = None
    size_bytes: int | None = None
    parity: Parity | None = None
    coverage: dict | None = None  # an NPU compile: ops on the NPU / in all, partitions (backend_info.coverage)

    @property
    def ok(self) -> bool:
        """Passed, or honestly skipped (a check that cannot run on this host is not a failure)."""
        return self.status == "passed" or self.status.startswith("skipped")


class Normalized(nn.Module):
    """Takes RGB in [0, 1] and applies the ImageNet normalisation inside the graph (one mul and one add)."""

    def __init__(self, model: nn.Module, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:
        super().__init__()
        self.model = model
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / std_t)
        self.register_buffer("shift", -torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) / std_t)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image * self.scale + self.shift)


# ---------------------------------------------------------------------------------------------------- the model
def build_model(variant: str, weights: str | None, ema: bool = False, num_classes: int | None = None) -> nn.Module:
    """The reference PyTorch model; random-init weights are seeded so ``emo-verify`` can rebuild them."""
    if weights is None:
        torch.manual_seed(RANDOM_INIT_SEED)
    return emo.create_model(variant, weights, ema=ema, num_classes=num_classes)


def weights_record(weights: str | None, ema: bool) -> dict:
    if weights is None:
        return {"random_init": True, "seed": RANDOM_INIT_SEED}
    return {"path": str(Path(weights).resolve()), "sha256": sha256_file(weights), "ema": ema}


def deploy_target(module, precision: str) -> str:
    """The deploy form a backend exports: its module's ``DEPLOY_TARGET``, unless ``DEPLOY_TARGET_BY_PRECISION``
    names another one for this precision."""
    by_precision = getattr(module, "DEPLOY_TARGET_BY_PRECISION", {})
    return by_precision.get(precision) or getattr(module, "DEPLOY_TARGET", "portable")


def prepare(model: nn.Module, normalize_in_graph: bool, target: str = "portable") -> nn.Module:
    """Deploy form (fused, rank <= 4) for the backend's target (its module's ``DEPLOY_TARGET``), optionally
    wrapped with the in-graph normalisation."""
    deployed = emo.deploy(model, target=target)
    return (Normalized(deployed) if normalize_in_graph else deployed).eval()


def input_contract(options: ExportOptions) -> dict:
    """The exported graph's input: name, shape (a symbolic batch is "batch"), dtype, layout, range, normalisation."""
    h, w = options.input_size
    batch = "batch" if options.dynamic_batch else options.batch
    normalization = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "in_graph": options.normalize}
    # how a photo becomes the input (emo.data.to_unit_array): every app reads this instead of hard-coding it
    preprocessing = {"resize": "shorter-side", "crop_pct": CROP_PCT, "interpolation": "bicubic"}
    if options.backend_options.get("image_input"):  # Core ML ImageType: the app passes pixels, not a tensor
        return {"name": "image", "shape": [1, 3, h, w], "dtype": "image (RGB, 8 bits per channel)",
                "layout": "image", "range": [0, 255], "pixel_scale": 1 / 255, "normalization": normalization,
                "preprocessing": preprocessing}
    nhwc = bool(options.backend_options.get("nhwc"))
    return {"name": "image", "shape": [batch, h, w, 3] if nhwc else [batch, 3, h, w], "dtype": "float32",
            "layout": "NHWC" if nhwc else "NCHW", "range": [0.0, 1.0], "normalization": normalization,
            "preprocessing": preprocessing}


def output_contract(options: ExportOptions, batch, num_classes: int) -> dict:
    if options.backend_options.get("classifier"):  # Core ML classifier: label + probability dictionary
        return {"name": "classLabel_probs", "kind": "probabilities", "label": "classLabel",
                "shape": [batch, num_classes]}
    return {"name": "logits", "kind": "logits", "shape": [batch, num_classes]}


def contract_batch_and_size(contract: dict) -> tuple[int | None, tuple[int, int]]:
    """(static batch or None for a symbolic one, (H, W)) of a sidecar's input contract, whatever its layout."""
    shape = contract["shape"]
    h, w = (shape[1], shape[2]) if contract.get("layout") == "NHWC" else (shape[2], shape[3])
    return (None if shape[0] == "batch" else int(shape[0])), (int(h), int(w))


def artifact_metadata(options: ExportOptions, num_classes: int, weights: dict) -> dict[str, str]:
    """Flat string metadata embedded in every artifact that can hold it (ONNX, Core ML, TFLite)."""
    contract = input_contract(options)
    meta = {
        "emo.variant": options.variant,
        "emo.input": json.dumps({k: v for k, v in contract.items() if k != "normalization"}),
        "emo.normalization": json.dumps(contract["normalization"]),
        "emo.output": json.dumps(output_contract(options, contract["shape"][0], num_classes)),
        "emo.weights_sha256": weights.get("sha256", f"random-init (seed {RANDOM_INIT_SEED})"),
        "emo.labels_source": options.labels_source or "none (class indices)",
        "emo.version": emo.__version__,
    }
    if options.labels:
        meta["emo.labels"] = "\n".join(options.labels)
    return meta


def resolve_labels(options: ExportOptions, num_classes: int) -> None:
    """ImageNet names for a 1000-class head; a labels file must match the head's size; a classifier needs names."""
    if options.labels is not None:
        for index, name in enumerate(options.labels):  # a newline in a name would shift every later label
            problem = label_problem(name)
            if problem:
                raise EMOError(f"label {index} ({name[:40]!r}) {problem}; class names must be one line of printable "
                               "text")
        if len(options.labels) != num_classes:
            raise EMOError(f"labels file has {len(options.labels)} names but the model's head has {num_classes} "
                           "classes; pass a labels file with one name per class")
    elif num_classes == 1000:
        options.labels, options.labels_source = imagenet_labels(), LABELS_SOURCE
    elif options.backend_options.get("classifier"):
        raise EMOError(f"--classifier needs the names of the head's {num_classes} classes; pass --labels FILE")


# ------------------------------------------------------------------------------------------------- file helpers
def artifact_digest(path: Path) -> tuple[str, int]:
    """sha256 and size of a file, or of a directory artifact (.mlpackage) over its sorted relative paths."""
    if path.is_file():
        return sha256_file(path), path.stat().st_size
    digest, size = hashlib.sha256(), 0
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(bytes.fromhex(sha256_file(file)))
        size += file.stat().st_size
    return digest.hexdigest(), size


def write_json_atomic(path: Path, data: dict, indent: int | None = 2) -> None:
    """``data`` as JSON at ``path``, written under a temporary name and renamed (``emo.contract.jsonio``)."""
    jsonio.write_json_atomic(path, data, indent)


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def sidecar_backend(side: dict) -> Backend:
    """The backend that wrote a sidecar's artifact (its runtime runs the artifact here)."""
    backend = BACKENDS.get(side["backend"])
    if backend is None:
        raise EMOError(f"sidecar names an unknown backend {side['backend']!r}; this emo-mobile knows: "
                       + ", ".join(BACKENDS))
    return backend


def read_sidecar(artifact: Path) -> dict:
    """The artifact's sidecar, checked against the one schema emo-verify, emo-predict and emo-bench share."""
    try:
        return sidecar_contract.read(artifact).data
    except sidecar_contract.SidecarError as e:
        raise EMOError(str(e)) from None


def toolchain_versions(backend: Backend) -> dict[str, str]:
    versions = {"python": ".".join(map(str, sys.version_info[:3])), "torch": torch.__version__,
                "emo-mobile": emo.__version__}
    for package in backend.requires:
        with contextlib.suppress(importlib_metadata.PackageNotFoundError):
            versions[package] = importlib_metadata.version(package)
    return versions


# ---------------------------------------------------------------------------------------------------- running it
def artifact_logits(session: runtimes.Session, images: np.ndarray, batch: int, contract: dict) -> np.ndarray:
    """An artifact's outputs for [0, 1] NCHW images: turned into its own input (``runtimes.artifact_input``:
    normalised when the graph does not, channel-last, pixel values for a Core ML ImageType), run in whole batches."""
    inputs = runtimes.artifact_input(images, input_contract_of(contract))
    return run_batched(session.run, inputs, batch, stacks=session.stacks_batches)


def input_contract_of(contract: dict) -> sidecar_contract.InputContract:
    return sidecar_contract.input_contract(contract)


def require_runtime(backend: Backend) -> None:
    """An EMOError naming the extra to install when a runtime this host could run the artifact in is missing."""
    package = runtimes.missing_package(backend.name)
    if package:
        spec = f"'emo-mobile[{backend.extra}]'" if backend.extra else "emo-mobile"
        raise EMOError(f"running {backend.name} artifacts needs '{package}', which is not installed: "
                       f"pip install {spec}")


def check_parity(backend: Backend, path: Path, reference: nn.Module, size: tuple[int, int], batch: int,
                 precision: str, contract: dict, probabilities: bool = False) -> Parity:
    """Run the artifact in every runtime that runs it on this host (the contract's loader table) and compare with
    the PyTorch model."""
    loaders, reason = runtimes.choose(path, backend.name)
    if reason:
        return skipped(backend.runtime, precision, reason)
    images = parity_inputs(size)
    expected = reference_logits(reference, images, probabilities)
    parities = []
    for loader in loaders:
        try:
            actual = artifact_logits(loader.open(path, None), images, batch, contract)
        except EMOError:  # the artifact is refused: bad input, not a failed check
            raise
        except UnsafeArchiveError as e:  # a .pt2 whose loading would run code: refused, bad input
            raise EMOError(str(e)) from None
        except Exception as e:  # the runtime cannot execute the artifact: that is a failed check, not a crash
            parities.append(failed(loader.runtime, precision, f"runtime error: {first_line(e, limit=300)}"))
            continue
        parities.append(compare(expected, actual, precision, loader.runtime))
    return combine(parities)


def export_artifact(options: ExportOptions, backend: Backend, out: Path, model: nn.Module,
                    shared: dict | None = None) -> ExportResult:
    """Export one artifact, check its parity in its runtime, write it and its sidecar. Never raises for a
    converter or runtime failure: that is recorded in the result (and a log next to the artifact)."""
    options = backend.options_for(options)
    precision = precision_for(backend, options.precision)
    module = backend.load_module()
    final = out / backend.filename(options.variant, precision)
    tmp = out / f".{final.stem}.tmp-{os.getpid()}{backend.suffix}"
    log_path = final.with_suffix(".log")
    remove(tmp)
    num_classes = model.head.out_features
    weights = weights_record(options.weights, options.ema)
    ctx = ExportContext(precision, options.batch, options.dynamic_batch,
                        artifact_metadata(options, num_classes, weights), options, shared if shared is not None else {})
    example_batch = max(2, options.batch) if options.dynamic_batch else options.batch  # torch.export specialises 1
    example = torch.rand(example_batch, 3, *options.input_size, generator=torch.Generator().manual_seed(0))
    log = io.StringIO()
    if precision in QUANTIZED_PRECISIONS:  # calibrate once per run: every quantizing backend sees the same images
        calibration = run_calibration(options, ctx.shared)
        if not options.normalize:  # the graph takes normalised input: calibrate on what it will see
            calibration = dataclasses.replace(calibration, images=normalize(calibration.images).astype(np.float32))
        ctx.calibration = calibration
    try:
        start = time.perf_counter()
        with captured_output(log):
            target = deploy_target(module, precision)
            facts = module.export(prepare(model, options.normalize, target), example, tmp, ctx) or {}
            facts.setdefault("deploy_target", target)
        seconds = time.perf_counter() - start
        parity_batch = DYNAMIC_PARITY_BATCH if options.dynamic_batch else options.batch
        with captured_output(log):
            parity = check_parity(backend, tmp, model, options.input_size, parity_batch, precision,
                                  input_contract(options),
                                  probabilities=bool(options.backend_options.get("classifier")))
    except EMOError:
        _remove_temporaries(out, final, tmp)
        raise
    except Exception as e:  # a converter's or runtime's own failure: one line here, the whole story in the log
        _remove_temporaries(out, final, tmp)
        log.write("\n" + traceback.format_exc())
        log_path.write_text(log.getvalue(), encoding="utf-8")
        return ExportResult(backend.name, precision, None, None,
                            f"error: {backend.name} failed: {first_line(e, limit=300)} (log: {log_path})")
    except BaseException:  # Ctrl-C or SIGTERM (emo.errors.Terminated): clean up, then let the CLI exit 130/143
        _remove_temporaries(out, final, tmp)
        raise
    remove(final)
    os.replace(tmp, final)
    if log_path.exists():
        log_path.unlink()
    digest, size = artifact_digest(final)
    contract = input_contract(options)
    quantization = facts.pop("quantization", {})
    if ctx.calibration is not None:
        quantization["calibration"] = ctx.calibration.record()
    sidecar = {
        "schema": SIDECAR_SCHEMA,
        "variant": options.variant,
        "backend": backend.name,
        "precision": precision,
        "file": final.name,
        "sha256": digest,
        "size_bytes": size,
        "weights": weights,
        "num_classes": num_classes,
        "input": contract,
        "output": output_contract(options, contract["shape"][0], num_classes),
        "labels": ({"source": options.labels_source, "names": list(options.labels)} if options.labels else None),
        "parity": parity.to_dict(),
        "export_seconds": round(seconds, 3),
        "toolchain": toolchain_versions(backend),
        "backend_info": facts,
        "quantization": quantization or None,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    # the bundled examples (inputs + PyTorch's outputs) that the apps' self-tests and emo-bench --parity replay
    examples = examples_path(final)
    document = build_examples(sidecar, model, options.input_size)
    if document is not None:
        sidecar["examples"] = examples.name
        examples_contract.write(examples, document)
    else:
        sidecar["examples_skipped"] = (f"the input tensors at {options.input_size[0]}x{options.input_size[1]} make "
                                       f"an examples file larger than its readers accept "
                                       f"({examples_contract.MAX_EXAMPLES_BYTES >> 20} MiB)")
    side = sidecar_path(final)
    try:
        sidecar_contract.write(side, sidecar)  # validated as every reader will read it, then written atomically
    except sidecar_contract.SidecarError as e:
        remove(final)
        remove(examples)
        raise EMOError(str(e)) from None
    return ExportResult(backend.name, precision, final, side, parity.status, seconds, size, parity,
                        facts.get("coverage"))


def _remove_temporaries(out: Path, final: Path, tmp: Path) -> None:
    """The temporary artifact and whatever a converter wrote beside it under the same temporary stem."""
    remove(tmp)
    for stray in out.glob(f".{final.stem}.tmp-{os.getpid()}*"):
        remove(stray)


def run_calibration(options: ExportOptions, shared: dict) -> Calibration:
    """The run's calibration images, read once and kept in ``shared`` for every quantizing backend."""
    key = ("calibration", options.input_size, options.calibration, options.calibration_count)
    if key not in shared:
        shared[key] = calibration_images(options.calibration, options.calibration_count, options.input_size)
    return shared[key]


def prepare_run(options: ExportOptions, out: Path, backends: list[Backend] = (),
                shared: dict | None = None) -> nn.Module:
    """Every check that can fail on bad input, before any slow work: checkpoint, labels, the calibration images
    (a parity photo among them is refused), then the output folder (created only once everything else is known to
    be valid). ``shared`` (handed to ``export_all``) keeps what was read for the export."""
    model = build_model(options.variant, options.weights, options.ema)
    resolve_labels(options, model.head.out_features)
    if any(precision_for(b, options.precision) in QUANTIZED_PRECISIONS for b in backends):
        run_calibration(options, shared if shared is not None else {})
    check_out_dir(out)
    removed = remove_stale_temporaries(out)
    if removed:
        print(f"note: removed {removed} temporary file(s) left in {out} by an export that was killed", file=sys.stderr)
    return model


_TEMPORARY = re.compile(r"^\..+\.tmp-(\d{1,10})(?:\.|$)")


def remove_stale_temporaries(out: Path) -> int:
    """Remove the ``.NAME.tmp-PID...`` files of exports whose process is gone (a ``kill -9`` leaves them: the
    atomic rename never happened). A live PID's temporaries are another export's work in progress: kept."""
    removed = 0
    for path in out.iterdir():
        match = _TEMPORARY.match(path.name)
        if match and not _process_alive(int(match.group(1))):
            remove(path)
            removed += 1
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process (or a number we cannot ask about): not ours to judge
    return True


def export_all(options: ExportOptions, backends: list[Backend], out: Path,
               model: nn.Module | None = None, shared: dict | None = None) -> list[ExportResult]:
    """Export several formats from one model; a failing backend does not stop the others."""
    shared = {} if shared is None else shared
    if model is None:
        model = prepare_run(options, out, backends, shared)
    results = []
    for backend in backends:
        try:
            results.append(export_artifact(options, backend, out, model, shared))
        except EMOError as e:
            if len(backends) == 1:
                raise
            results.append(ExportResult(backend.name, precision_for(backend, options.precision), None, None,
                                        f"error: {e}"))
    return results


# ------------------------------------------------------------------------------------------------------- verify
def verify(artifact: Path, weights: str | None = None) -> tuple[Parity, dict, list[str]]:
    """Re-run the parity check of an existing artifact against the PyTorch model named by its sidecar.

    Returns the parity, the sidecar, and notes (e.g. "artifact changed since export").
    """
    if not artifact.exists():
        raise EMOError(f"artifact not found: {artifact}")
    side = read_sidecar(artifact)
    backend = sidecar_backend(side)
    notes = []
    digest, _ = artifact_digest(artifact)
    if side.get("sha256") and digest != side["sha256"]:
        notes.append("artifact changed since export (sha256 differs from the sidecar)")
    recorded = side["weights"]
    if weights is None and not recorded.get("random_init"):
        try:  # a regular file only (never /dev/zero or a FIFO), relative paths from the sidecar's folder
            weights = str(sidecar_contract.weights_path(sidecar_contract.validate(side, artifact.name), artifact))
        except sidecar_contract.SidecarError as e:
            raise EMOError(f"{e}; pass --weights PATH") from None
        if sha256_file(weights) != recorded.get("sha256"):
            raise EMOError(f"{weights} changed since export (sha256 differs from the sidecar); pass --weights PATH")
    model = build_model(side["variant"], weights, bool(recorded.get("ema")), side.get("num_classes"))
    batch, size = contract_batch_and_size(side["input"])
    require_runtime(backend)
    with captured_output(io.StringIO()):
        parity = check_parity(backend, artifact, model, size, batch or DYNAMIC_PARITY_BATCH, side["precision"],
                              side["input"], probabilities=side["output"].get("kind") == "probabilities")
    return parity, side, notes
