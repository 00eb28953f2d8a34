"""``.ort`` (each ``--ort-style``) vs ``.onnx`` in ONNX Runtime's CPU EP, side by side in one run on this host.

``python -m emo.export.bench_ort [--variant emo_1m] [--weights CKPT] [--size 224] [--precision fp32]
[--threads 2] [--rounds 30] [--per-turn 3] [--settle 0.05]``

Exports the ``.onnx`` and one ``.ort`` per style with ``emo-export``'s own pipeline (each checked against PyTorch
right after export), then times them interleaved with ``bench_deploy.measure``'s settled turns (untimed runs while
the previous session's threads stop spinning, then timed runs). Besides the ``.onnx`` as this host's CPU EP loads
it, the ``.onnx`` is also run with ORT's NchwcTransformer disabled: the graph a phone's CPU EP builds from it (NCHWc
exists on x86 only), which is what the default ``.ort`` is meant to match; fp32 also times the basic-level ``.ort``
every export wrote before issue 24. Prints medians, ratios, node counts and the largest logit difference between
the ``.ort`` files and the ``.onnx`` they come from. Nothing is written outside a temporary folder.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

import emo
from emo.contract import runtimes
from emo.contract.output import captured_output
from emo.errors import EMOError
from emo.export.backends import BACKENDS
from emo.export.bench_deploy import add_timing_arguments, measure, timing_arguments_ok
from emo.export.pipeline import ExportOptions, export_all, prepare_run

ONNX, ONNX_NO_NCHWC, BASIC = ".onnx", ".onnx, NCHWc off", ".ort basic (before issue 24)"


def onnx_session_without_nchwc(path: Path, threads: int):
    """The ``.onnx`` optimised at load as on an ARM CPU: every optimisation but the x86-only NCHWc layout."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                   disabled_optimizers=["NchwcTransformer"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def save_basic_ort(onnx_path: Path, path: Path) -> Path:
    """The ``.ort`` every fp32 export wrote before issue 24: basic optimisations only, nothing saved for runtime."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(path)
    options.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    return path


def main(argv: list[str] | None = None) -> int:
    from emo.export.ort import STYLES

    parser = argparse.ArgumentParser(prog="python -m emo.export.bench_ort", description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="emo_1m", choices=emo.list_models())
    parser.add_argument("--weights", help="checkpoint (default: seeded random init; timing does not depend on it)")
    parser.add_argument("--size", type=int, default=224, help="square input size (default 224)")
    parser.add_argument("--precision", default="fp32", choices=BACKENDS["ort"].precisions)
    parser.add_argument("--styles", default=",".join(STYLES), help=f"subset of {','.join(STYLES)}")
    add_timing_arguments(parser)
    args = parser.parse_args(argv)
    try:
        styles = [s.strip() for s in args.styles.split(",") if s.strip()]
        if not styles or any(s not in STYLES for s in styles) or args.size < 32 or not timing_arguments_ok(args):
            raise EMOError(f"bad arguments: styles {styles} (known: {', '.join(STYLES)}), size {args.size} (>= 32), "
                           "threads, rounds and per-turn >= 1, settle >= 0")
        return _run(args, styles)
    except EMOError as e:
        print(f"bench_ort: {e}", file=sys.stderr)
        return 2


def _run(args, styles: list[str]) -> int:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="emo-bench-ort-") as tmp:
        artifacts: dict[str, tuple[Path, dict]] = {}
        model = None
        for i, style in enumerate(styles):
            options = ExportOptions(variant=args.variant, weights=args.weights, input_size=(args.size, args.size),
                                    precision=args.precision, backend_options={"ort_style": style})
            out = Path(tmp) / style
            if model is None:
                model = prepare_run(options, out)
            out.mkdir(exist_ok=True)
            backends = [BACKENDS["onnx"], BACKENDS["ort"]] if i == 0 else [BACKENDS["ort"]]
            with captured_output(io.StringIO()):
                rows = export_all(options, backends, out, model)
            for row in rows:
                if row.status != "passed":
                    print(f"bench_ort: {row.backend} ({style}): {row.status}", file=sys.stderr)
                    return 1
                name = ONNX if row.backend == "onnx" else f".ort {style}"
                artifacts[name] = (row.path, json.loads(row.sidecar.read_text()))
                print(f"  exported {name:16s} max |diff| vs PyTorch {row.parity.max_abs_diff:.1e}", flush=True)
        runners = {("ort", ONNX, args.size): runtimes.open_session(artifacts[ONNX][0], "onnx", args.threads).run,
                   ("ort", ONNX_NO_NCHWC, args.size): onnx_session_without_nchwc(artifacts[ONNX][0], args.threads)}
        runners.update({("ort", f".ort {s}", args.size): runtimes.open_session(artifacts[f".ort {s}"][0], "ort",
                                                                               args.threads).run for s in styles})
        if args.precision == "fp32":
            from emo.export.ort import ort_ops

            basic = save_basic_ort(artifacts[ONNX][0], Path(tmp) / "basic.ort")
            runners[("ort", BASIC, args.size)] = runtimes.open_session(basic, "ort", args.threads).run
            artifacts[BASIC] = (basic, {"backend_info": {"ort_nodes": sum(ort_ops(basic).values()),
                                                         "ort_nchwc_nodes": 0}})
        x = {args.size: np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)}
        logits = {key[1]: run(x[args.size]) for key, run in runners.items()}
        times = measure(runners, x, args.rounds, args.warmup, args.per_turn, args.settle)
    load_after = os.getloadavg()
    median = {key[1]: statistics.median(v) for key, v in times.items()}
    p90 = {key[1]: float(np.percentile(v, 90)) for key, v in times.items()}
    print(f"\n{args.variant} {args.precision} at {args.size}x{args.size}, ORT CPU EP, {args.threads} threads, "
          f"{args.rounds} interleaved rounds ({args.settle * 1e3:.0f} ms untimed, then {args.per_turn} timed runs "
          f"per turn), ms; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after, on "
          f"{os.cpu_count()} CPUs")
    print("| artifact | median ms | p90 ms | vs .onnx | vs .onnx NCHWc off | nodes in the file | NCHWc nodes | "
          "max logit diff vs .onnx / NCHWc off |")
    print("|---|---|---|---|---|---|---|---|")
    for name in [key[1] for key in runners]:
        info = artifacts[name][1]["backend_info"] if name.startswith(".ort") else {}  # the .onnx: not counted
        diffs = [float(np.abs(logits[name] - logits[other]).max()) for other in (ONNX, ONNX_NO_NCHWC)]
        print(f"| {name} | {median[name]:.2f} | {p90[name]:.2f} | {median[name] / median[ONNX]:.2f} | "
              f"{median[name] / median[ONNX_NO_NCHWC]:.2f} | {info.get('ort_nodes', '-')} | "
              f"{info.get('ort_nchwc_nodes', '-')} | {diffs[0]:.1e} / {diffs[1]:.1e} |")
    for name, (_, side) in artifacts.items():
        if name.startswith(".ort") and name != BASIC:
            info = side["backend_info"]
            print(f"\n{name}: {info['ort_optimization_level']}; suits {', '.join(info['ort_suits'])}\n  ops: "
                  f"{info['ort_ops']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
