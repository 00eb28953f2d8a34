"""``emo-export``, ``emo-verify`` and ``emo-predict``.

Exit codes: 0 success; 1 an artifact failed its parity check or a converter failed (recorded, with a log);
2 bad input (one line on stderr, nothing written); 3 (emo-verify) the artifact's runtime cannot run on this host,
so nothing was checked (e.g. a Core ML-delegated .pte on Linux, or a .pte with --arm).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from emo.cli_common import (
    EXIT_FAILED,
    EXIT_NOT_CHECKED,
    Parser,
    format_table,
    one_line_errors,
    parse_input_size,
)
from emo.errors import EMOError, first_line


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def results_table(results) -> str:
    rows = []
    npu = any(r.coverage for r in results)  # an NPU compile: how much of the graph the NPU took
    for r in results:
        p = r.parity
        rows.append([r.backend, r.path.name if r.path else "-",
                     _fmt(r.size_bytes / 1e6 if r.size_bytes else None, ".2f"), _fmt(r.export_seconds, ".1f"),
                     _fmt(p.max_abs_diff if p else None, ".2e"), _fmt(p.cosine if p else None, ".6f"),
                     _fmt(p.top1_agreement if p else None, ".0%")]
                    + ([_coverage(r.coverage)] if npu else []) + [r.status])
    header = ["format", "file", "MB", "export s", "max|diff|", "cosine", "top-1"]
    return format_table(rows, header + (["NPU ops (partitions)"] if npu else []) + ["status"])


def _coverage(c: dict | None) -> str:
    return "-" if not c else f"{c['ops_on_npu']}/{c['ops']} ({c['npu_partitions']})"


# ----------------------------------------------------------------------------------------------------- emo-export
def _export_parser() -> argparse.ArgumentParser:
    from emo.export.backends import BACKENDS

    p = Parser(prog="emo-export", description="Export EMO to mobile formats; every artifact is checked against "
                "PyTorch in its own runtime and described by a sidecar JSON.")
    p.add_argument("--model", required=True, help="emo_1m | emo_2m | emo_5m | emo_6m")
    p.add_argument("--weights", help="checkpoint in any of the authors' forms (default: random init, loudly)")
    p.add_argument("--ema", action="store_true", help="load the EMA weights ('net_E')")
    p.add_argument("--format", required=True, help=f"comma-separated: {', '.join(BACKENDS)}; or all")
    p.add_argument("--precision", help="fp32, fp16, int8 or w8a16 (default: the format's default); int8/w8a16 "
                   "are calibrated on --calibration images")
    p.add_argument("--calibration", metavar="DIR", help="int8/w8a16: folder of calibration images (recursive; never "
                   "the parity images; default: crops of the 4 bundled photos, a poor set, with a warning)")
    p.add_argument("--calibration-count", type=int, metavar="N",
                   help="int8/w8a16: calibrate on the first N images of --calibration in sorted order (default 64)")
    p.add_argument("--input-size", help="N or HxW (default: the size an emo-train checkpoint was trained at, else 224)")
    p.add_argument("--batch", type=int, default=1, help="static batch size (default 1)")
    p.add_argument("--dynamic-batch", action="store_true", help="a symbolic batch dimension")
    p.add_argument("--no-normalize", action="store_true",
                   help="the graph takes already-normalised input (default: RGB in [0, 1], normalised in the graph)")
    p.add_argument("--nhwc", action="store_true", help="channel-last input (tflite), as Android camera frames arrive")
    p.add_argument("--soc", help="litert-npu: the phone SoC(s) to compile for, comma-separated, one artifact each "
                   "(default SM8650; e.g. SM8650,SM8750; MediaTek MT6989 and Google Tensor_G4 need their vendor SDK)")
    p.add_argument("--image-input", action="store_true",
                   help="coreml: take an RGB image (ImageType) so an app can pass a CVPixelBuffer")
    p.add_argument("--classifier", action="store_true",
                   help="coreml: classifier outputs (classLabel + probabilities) for VNCoreMLRequest")
    p.add_argument("--min-target", help="coreml: minimum deployment target, iOS15..iOS18 or macOS12..macOS15 "
                   "(default iOS17)")
    p.add_argument("--ort-style", choices=("cpu", "cpu-x86", "mobile-ep"),
                   help="ort: cpu (default) = the fused graph for the CPU EP on any CPU; cpu-x86 = plus the NCHWc "
                   "layout (x86-64 only); mobile-ep = plain ONNX ops for NNAPI/Core ML/XNNPACK EPs")
    p.add_argument("--labels", help="class names, one per line (default: ImageNet-1k for 1000 classes)")
    p.add_argument("--out", required=True, help="output folder")
    return p


@one_line_errors
def export_main(argv: list[str] | None = None) -> int:
    from emo.data import read_labels_file
    from emo.export.backends import QUANTIZED, check_options, expand_targets, parse_formats, precision_for
    from emo.export.pipeline import ExportOptions, export_all, prepare_run
    from emo.model import VARIANTS

    args = _export_parser().parse_args(argv)
    if args.model not in VARIANTS:
        raise EMOError(f"unknown model {args.model!r}; choose one of: {', '.join(VARIANTS)}")
    backends = parse_formats(args.format, args.precision)
    size = parse_input_size(args.input_size) if args.input_size else None
    if not 1 <= args.batch <= 1024:
        raise EMOError(f"--batch {args.batch} is out of range; use 1..1024")
    if args.dynamic_batch and args.batch != 1:
        raise EMOError("--batch and --dynamic-batch exclude each other: a dynamic batch takes any size; drop one")
    if not args.out.strip():
        raise EMOError("--out is empty; name an output folder")
    flags = [flag for flag, given in (("--dynamic-batch", args.dynamic_batch), ("--nhwc", args.nhwc),
                                      ("--image-input", args.image_input), ("--classifier", args.classifier),
                                      ("--min-target", args.min_target is not None),
                                      ("--ort-style", args.ort_style is not None), ("--soc", args.soc is not None))
             if given]
    check_options(backends, precision=args.precision, flags=flags)
    backends = expand_targets(backends, args.soc)  # litert-npu: one backend (one artifact) per --soc
    if args.min_target is not None:
        from emo.export.coreml import check_target
        check_target(args.min_target, args.precision)
    if args.image_input and (args.batch > 1 or args.dynamic_batch):
        raise EMOError("--image-input takes one image at a time (Core ML ImageType); drop --batch/--dynamic-batch")
    if args.image_input and args.no_normalize:
        raise EMOError("--image-input feeds raw pixels, so the normalisation must stay in the graph; "
                       "drop --no-normalize")
    if args.weights is not None and not Path(args.weights).is_file():  # files last: every option is checked first
        raise EMOError(f"checkpoint not found: {args.weights}")
    quantized = any(precision_for(b, args.precision) in QUANTIZED for b in backends)
    if (args.calibration is not None or args.calibration_count is not None) and not quantized:
        raise EMOError("--calibration and --calibration-count apply to --precision int8 or w8a16 only")
    if args.calibration is not None:
        from emo.export.calibration import check_calibration_folder
        check_calibration_folder(args.calibration)
    if args.calibration_count is not None and not 1 <= args.calibration_count <= 10_000:
        raise EMOError(f"--calibration-count {args.calibration_count} is out of range; use 1..10000")
    labels = read_labels_file(args.labels) if args.labels else None
    labels_source = str(Path(args.labels).resolve()) if args.labels else None
    if args.weights is not None:  # an emo-train checkpoint carries its class names and input size
        from emo.checkpoint import read_checkpoint, trained_metadata

        obj = read_checkpoint(args.weights)
        if isinstance(obj, dict):  # malformed metadata is refused with the field named, never ignored or trusted
            classes, trained_size = trained_metadata(obj, args.weights)
            if labels is None and classes is not None:
                labels, labels_source = tuple(classes), f"checkpoint {Path(args.weights).name} (emo-train classes)"
            size = size or trained_size
    size = size or (224, 224)
    options = ExportOptions(variant=args.model, weights=args.weights, ema=args.ema, input_size=size,
                            batch=args.batch, dynamic_batch=args.dynamic_batch, normalize=not args.no_normalize,
                            precision=args.precision, labels=labels,
                            labels_source=labels_source,
                            backend_options={"nhwc": args.nhwc, "image_input": args.image_input,
                                             "classifier": args.classifier, "min_target": args.min_target,
                                             "ort_style": args.ort_style},
                            calibration=args.calibration, calibration_count=args.calibration_count)
    if len(backends) == 1:  # a missing converter is bad input here; under several formats it is a recorded failure
        backends[0].load_module()
    shared: dict = {}
    model = prepare_run(options, Path(args.out), backends, shared)
    if args.weights is None:
        print("WARNING: no --weights given: exporting RANDOM-INIT weights (seed 0). The artifact is for testing "
              "the toolchain only; its predictions are meaningless.", file=sys.stderr)
    results = export_all(options, backends, Path(args.out), model, shared)
    print(results_table(results))
    for r in results:
        if r.sidecar:
            print(f"wrote {r.path} and {r.sidecar.name}")
    from emo.export.quantize import layer_error_lines

    for r in results:  # quantized artifacts: where int8 lost precision, layer by layer (also in the sidecar)
        quantization = json.loads(r.sidecar.read_text()).get("quantization") if r.sidecar else None
        errors = (quantization or {}).get("layer_errors")
        if errors:
            print("\n".join(layer_error_lines(r.path.name, errors)))
    for r in results:  # what a backend wants seen (litert-npu: ops the NPU left to the CPU), also in the sidecar
        info = json.loads(r.sidecar.read_text()).get("backend_info") if r.sidecar else None
        for warning in (info or {}).get("warnings", []):
            print(f"WARNING: {r.path.name}: {warning}", file=sys.stderr)
    return 0 if all(r.ok for r in results) else EXIT_FAILED


# ----------------------------------------------------------------------------------------------------- emo-verify
@one_line_errors
def verify_main(argv: list[str] | None = None) -> int:
    from emo.export.pipeline import verify

    p = Parser(prog="emo-verify", description="Re-check an artifact against the PyTorch model of its sidecar.")
    p.add_argument("artifact", help="an exported artifact with its sidecar JSON next to it")
    p.add_argument("--weights", help="checkpoint to compare with (default: the sidecar's path, sha256-checked)")
    p.add_argument("--arm", metavar="CPU[,CPU...]|all",
                   help="instead: the bundled examples in the aarch64 build of the artifact's runtime, under qemu on "
                   "these Arm CPU models (e.g. cortex-a53,cortex-a76,cortex-a710; needs root and `sudo make arm-root`)")
    args = p.parse_args(argv)
    if args.arm is not None:
        if args.weights is not None:
            raise EMOError("--weights does not apply to --arm: the bundled examples hold PyTorch's outputs; drop it")
        return _verify_arm(Path(args.artifact), args.arm)
    parity, side, notes = verify(Path(args.artifact), args.weights)
    for note in notes:
        print(f"note: {note}")
    print(f"{Path(args.artifact).name}: {side['variant']} {side['backend']} {side['precision']}, "
          f"checked with {parity.checked_with} on {parity.num_images} images")
    print(f"  max|diff| {_fmt(parity.max_abs_diff, '.3e')}  mean|diff| {_fmt(parity.mean_abs_diff, '.3e')}  "
          f"cosine {_fmt(parity.cosine, '.6f')}  top-1 {_fmt(parity.top1_agreement, '.0%')}  "
          f"top-5 {_fmt(parity.top5_agreement, '.0%')}  tolerance {parity.tolerance}")
    print(f"  status: {parity.status}")
    if parity.status.startswith("skipped"):
        return EXIT_NOT_CHECKED
    return 0 if parity.passed else EXIT_FAILED


def _verify_arm(artifact: Path, cpus_text: str) -> int:
    from emo.export import arm

    cpus = arm.parse_cpus(cpus_text)
    try:
        result = arm.check(artifact, cpus)
    except arm.NotOnArmError as e:
        print(f"emo-verify: {e}", file=sys.stderr)
        return EXIT_NOT_CHECKED
    side, emulator = result.side, result.rows[0]["emulator"]
    print(f"{artifact.name}: {side['variant']} {side['backend']} {side['precision']}, bundled examples vs PyTorch, "
          f"tolerance {result.tolerance}; Arm rows emulated by "
          f"{emulator}, {arm.THREADS} thread (no latency: emulated time says nothing about a phone)")
    print(format_table(arm.table_rows(result), arm.TABLE_HEADER))
    print(f"recorded in {artifact.with_suffix('.json').name} as arm_parity")
    return 0 if result.passed else EXIT_FAILED


# ---------------------------------------------------------------------------------------------------- emo-predict
def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


@one_line_errors
def predict_main(argv: list[str] | None = None) -> int:
    from emo.data import imagenet_labels, load_image, normalize, to_unit_array

    p = Parser(prog="emo-predict", description="Top-5 classes and latency, with an artifact's own runtime or "
                "with the PyTorch model.")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--artifact", help="an exported artifact (its sidecar gives size, normalisation, labels)")
    p.add_argument("--model", help="PyTorch instead: emo_1m | emo_2m | emo_5m | emo_6m")
    p.add_argument("--weights", help="checkpoint for --model")
    p.add_argument("--ema", action="store_true")
    p.add_argument("--top", type=int, default=5, help="classes to print (default 5)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per image after one warm-up (default 5)")
    args = p.parse_args(argv)
    if bool(args.artifact) == bool(args.model):
        raise EMOError("give either --artifact PATH or --model NAME [--weights PATH]")
    if args.top < 1:
        raise EMOError(f"--top {args.top} must be at least 1")
    if not 1 <= args.repeat <= 10_000:
        raise EMOError(f"--repeat {args.repeat} is out of range; use 1..10000")
    missing = [path for path in args.images if not Path(path).is_file()]
    if missing:  # checked up front; the images themselves are decoded one at a time below
        raise EMOError(f"image not found (or not a file): {missing[0]}")
    if args.artifact:
        from emo.contract import runtimes
        from emo.export.pipeline import contract_batch_and_size, read_sidecar, require_runtime, sidecar_backend

        artifact = Path(args.artifact)
        if not artifact.exists():
            raise EMOError(f"artifact not found: {artifact}")
        side = read_sidecar(artifact)
        backend = sidecar_backend(side)
        loaders, reason = runtimes.choose(artifact, backend.name)
        if reason:
            print(f"emo-predict: {artifact.name} cannot run on this host: {reason}", file=sys.stderr)
            return EXIT_NOT_CHECKED
        require_runtime(backend)
        try:
            session = loaders[0].open(artifact, None)
        except EMOError:
            raise
        except Exception as e:  # truncated or foreign file: the runtime's own parser error, on one line
            raise EMOError(f"{backend.runtime} cannot load {artifact.name} (truncated or not a {backend.name} "
                           f"artifact?): {first_line(e)}") from None
        contract = runtimes.input_contract(side["input"])

        def run(x: np.ndarray) -> np.ndarray:  # [0, 1] NCHW images -> the artifact's own input
            return session.run(runtimes.artifact_input(x, contract))

        batch, size = contract_batch_and_size(side["input"])
        batch = batch or 1
        in_graph = True  # run() prepares the input as the artifact takes it
        labels = (side.get("labels") or {}).get("names")
        runtime = session.runtime
        probabilities = side["output"].get("kind") == "probabilities"
    else:
        import torch

        from emo.export.pipeline import build_model

        model = build_model(args.model, args.weights, args.ema)
        if args.weights is None:
            print("WARNING: no --weights: random-init model, predictions are meaningless", file=sys.stderr)

        def run(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return model(torch.from_numpy(x)).numpy()

        batch, size, in_graph, runtime, probabilities = 1, (224, 224), False, "PyTorch (eager)", False
        labels = imagenet_labels() if model.head.out_features == 1000 else None
    for path in args.images:  # one image decoded at a time: 40 large photos never sit in memory together
        x = to_unit_array(load_image(path), size)
        if not in_graph:
            x = normalize(x)
        x = np.repeat(x[None].astype(np.float32), batch, axis=0)
        try:
            run(x)  # warm-up
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                logits = np.asarray(run(x))[0]
                times.append((time.perf_counter() - start) * 1e3)
        except EMOError:
            raise
        except Exception as e:  # e.g. an artifact whose graph does not match its sidecar's input contract
            raise EMOError(f"{runtime} failed on {path}: {first_line(e)} (does the sidecar match the artifact?)"
                           ) from None
        probs = logits.astype(np.float64) if probabilities else _softmax(logits.astype(np.float64))
        print(f"{path}  ({runtime}: {np.median(times):.2f} ms median of {len(times)})")
        for rank, idx in enumerate(np.argsort(-probs)[: args.top], 1):
            name = labels[idx] if labels and idx < len(labels) else f"class {idx}"
            print(f"  {rank}. {name:<32} {probs[idx]:7.2%}")
    return 0
