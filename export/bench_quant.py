"""int8 vs fp32, per runtime, side by side in one run on this host.

``python -m emo.export.bench_quant [--variant emo_1m] [--weights CKPT] [--size 224] [--calibration DIR]
[--runtimes onnx,ort,tflite,executorch] [--threads 2] [--rounds 30] [--per-turn 3] [--settle 0.05]``

Exports the fp32 and the int8 artifact of each runtime with ``emo-export``'s own pipeline (same converters, same
calibration, each artifact checked against PyTorch right after export), then times every pair interleaved: for each
runtime, each round gives its fp32 and its int8 artifact a turn (``bench_deploy.measure``: untimed runs while the
other one's threads stop spinning, then timed ones), so that the load of a shared machine hits both alike. Prints
medians, the int8/fp32 latency ratio, sizes, whether the graph stayed in one delegate, and which operators are
integer in the artifact (what XNNPACK or MLAS run with int8 dot-product kernels — sdot/i8mm on an Arm phone,
AVX2/AVX-512 VNNI here: x86 is not the target CPU). The QNN artifact runs on an HTP simulator, whose
timing says nothing about a phone: it is not timed here. Nothing is written outside a temporary folder.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

import emo
from emo.contract.output import captured_output
from emo.contract.runtimes import open_session
from emo.errors import EMOError
from emo.export.backends import BACKENDS
from emo.export.bench_deploy import add_timing_arguments, measure, timing_arguments_ok
from emo.export.pipeline import ExportOptions, export_all, prepare_run

RUNTIMES = {"onnx": "ORT CPU EP (.onnx QDQ)", "ort": "ORT CPU EP (.ort)", "tflite": "LiteRT + XNNPACK",
            "executorch": "ExecuTorch XNNPACK"}
PRECISIONS = ("fp32", "int8")
CONVERSIONS = ("QUANTIZE", "DEQUANTIZE")  # TFLite ops that convert between float and int8 (no integer compute)


def integer_ops(backend: str, path: Path, side: dict) -> dict[str, int]:
    """Operators that compute on integers in the artifact, by type."""
    info, quant = side.get("backend_info") or {}, side.get("quantization") or {}
    if backend in ("onnx", "ort"):  # DQ -> op -> Q groups, which ORT fuses into QLinear* kernels
        return quant.get("quantized_ops", {})
    if backend == "executorch":  # quantize/dequantize pairs that the XNNPACK delegate lowers to qs8 operators
        ops = info.get("graph_ops", {})
        return {k: v for k, v in ops.items() if k not in ("quantize_per_tensor", "dequantize_per_tensor",
                                                           "dequantize_per_channel", "_assert_tensor_metadata")}
    if backend == "tflite":
        return tflite_integer_ops(path)
    return {}


def tflite_integer_ops(path: Path) -> dict[str, int]:
    """TFLite operators whose first input is an int8/int16/int32 tensor (integer kernels)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(path),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in interpreter.get_tensor_details()}
    counts: Counter = Counter()
    for op in interpreter._get_ops_details():
        inputs = [i for i in op["inputs"].tolist() if i >= 0]
        if inputs and dtypes.get(inputs[0], np.dtype(np.float32)).kind in "iu" and op["op_name"] not in CONVERSIONS:
            counts[op["op_name"]] += 1
    return dict(sorted(counts.items()))


def delegation(backend: str, side: dict) -> str:
    info = side.get("backend_info") or {}
    if backend == "tflite":
        return f"{info.get('xnnpack_partitions')} XNNPACK partition(s)"
    if backend == "executorch":
        return f"{info.get('delegate_partitions')} XNNPACK delegate(s), outside: {info.get('ops_outside_delegate')}"
    return "CPU EP"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emo.export.bench_quant", description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="emo_1m", choices=emo.list_models())
    parser.add_argument("--weights", help="checkpoint (default: seeded random init)")
    parser.add_argument("--size", type=int, default=224, help="square input size (default 224)")
    parser.add_argument("--calibration", metavar="DIR", help="calibration images (default: the bundled set)")
    parser.add_argument("--calibration-count", type=int, default=None)
    parser.add_argument("--runtimes", default=",".join(RUNTIMES), help=f"subset of {','.join(RUNTIMES)}")
    add_timing_arguments(parser)
    args = parser.parse_args(argv)
    try:
        runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
        unknown = [r for r in runtimes if r not in RUNTIMES]
        if unknown or not runtimes or args.size < 7 or not timing_arguments_ok(args):
            raise EMOError(f"bad arguments: runtimes {runtimes} (known: {', '.join(RUNTIMES)}), size {args.size} "
                           "(>= 7), threads, rounds and per-turn >= 1, settle >= 0")
        for r in runtimes:
            BACKENDS[r].load_module()
        return _run(args, runtimes)
    except EMOError as e:
        print(f"bench_quant: {e}", file=sys.stderr)
        return 2


def _run(args, runtimes: list[str]) -> int:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="emo-bench-quant-") as tmp:
        out = Path(tmp) / "out"
        results = {}
        model = None
        for precision in PRECISIONS:
            options = ExportOptions(variant=args.variant, weights=args.weights, input_size=(args.size, args.size),
                                    precision=precision, calibration=args.calibration,
                                    calibration_count=args.calibration_count)
            if model is None:
                model = prepare_run(options, out)
            with captured_output(io.StringIO()):
                rows = export_all(options, [BACKENDS[r] for r in runtimes], out, model)
            for r, row in zip(runtimes, rows, strict=True):
                if row.status != "passed":
                    print(f"bench_quant: {r} {precision}: {row.status}", file=sys.stderr)
                    return 1
                results[(r, precision)] = (row.path, json.loads(row.sidecar.read_text()))
                print(f"  exported {r:10s} {precision}: {row.export_seconds:5.1f} s, cosine {row.parity.cosine:.5f}",
                      flush=True)
        x = {args.size: np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)}
        times = {}
        for r in runtimes:  # one runtime's sessions at a time: idle sessions' spinning thread pools steal the CPU
            runners = {(r, p, args.size): open_session(results[(r, p)][0], r, args.threads).run
                       for p in PRECISIONS}
            times.update(measure(runners, x, args.rounds, args.warmup, args.per_turn, args.settle))
            del runners
            gc.collect()
        load_after = os.getloadavg()
        median = {key[:2]: statistics.median(v) for key, v in times.items()}
        print(f"\n{args.variant} at {args.size}x{args.size}, {args.threads} threads, {args.rounds} interleaved "
              f"rounds ({args.settle * 1e3:.0f} ms untimed, then {args.per_turn} timed runs per turn), medians in ms; "
              f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after, on "
              f"{os.cpu_count()} CPUs")
        print("| runtime | fp32 ms | int8 ms | int8/fp32 | fp32 MB | int8 MB | int8 cosine | int8 graph |")
        print("|---|---|---|---|---|---|---|---|")
        for r in runtimes:
            f32, i8 = median[(r, "fp32")], median[(r, "int8")]
            s32, s8 = results[(r, "fp32")][1], results[(r, "int8")][1]
            print(f"| {RUNTIMES[r]} | {f32:.2f} | {i8:.2f} | {i8 / f32:.2f} | {s32['size_bytes'] / 1e6:.2f} | "
                  f"{s8['size_bytes'] / 1e6:.2f} | {s8['parity']['cosine']:.5f} | {delegation(r, s8)} |")
        print("\ninteger operators in each int8 artifact (int8 dot-product kernels on an Arm phone):")
        for r in runtimes:
            path, side = results[(r, "int8")]
            print(f"  {r:10s} {integer_ops(r, path, side)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
