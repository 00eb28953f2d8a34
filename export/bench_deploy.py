"""Today's deploy form vs the new one vs the naive model, side by side in ORT, LiteRT and ExecuTorch.

``python -m emo.export.bench_deploy [--variant emo_1m] [--sizes 224,448] [--threads 2] [--rounds 30] [--per-turn 3]``

Each runtime gets three graphs of the same weights, exported by the real backends (``emo.export.onnx``,
``tflite``, ``executorch``): ``legacy`` (``emo.deploy(model, target="legacy")``, the form before issue 12),
``new`` (the target that backend uses today: ``DEPLOY_TARGET`` of its module) and ``naive`` (the reference model,
not deployed). Every graph is checked against the PyTorch model before it is timed. Timing is interleaved: for each
runtime and size, each round gives its three graphs a turn each (``--settle`` seconds of untimed runs while the
previous graph's threads stop spinning, then ``--per-turn`` timed runs),
so that the load of a shared machine hits them alike (runtimes are not mixed: their thread pools spin after a run);
medians are reported with the ratios next to them, then the operator counts of every format (Core ML included,
which is counted but not timed: its runtime is macOS only). Nothing is written outside a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

import emo
from emo.contract.output import captured_output
from emo.contract.timing import settled_turns
from emo.errors import EMOError
from emo.export.backends import BACKENDS
from emo.export.pipeline import (
    ExportContext,
    ExportOptions,
    Normalized,
    artifact_metadata,
    deploy_target,
    weights_record,
)

FORMS = ("legacy", "new", "naive")
RUNTIMES = {"onnx": "ORT CPU EP", "tflite": "LiteRT + XNNPACK", "executorch": "ExecuTorch XNNPACK"}
PARITY = 1e-4  # the fp32 export tolerance (README, "Parity policy")
TRANSPOSES = {"onnx": "Transpose", "tflite": "TRANSPOSE", "coreml": "transpose", "executorch": "permute"}


def form_model(model: torch.nn.Module, form: str, target: str) -> torch.nn.Module:
    if form == "naive":
        return Normalized(model).eval()
    return Normalized(emo.deploy(model, target="legacy" if form == "legacy" else target)).eval()


def export_one(backend: str, model: torch.nn.Module, size: int, form: str, out: Path) -> tuple[Path, dict]:
    """Export with the backend's own ``export`` (same converter settings as ``emo-export``)."""
    spec = BACKENDS[backend]
    module = spec.load_module()
    options = ExportOptions(variant="bench", input_size=(size, size))
    options.labels = tuple(str(i) for i in range(model.head.out_features))
    ctx = ExportContext(spec.default_precision, 1, False, artifact_metadata(options, model.head.out_features,
                                                                             weights_record(None, False)), options)
    target = deploy_target(module, spec.default_precision)
    path = out / f"{backend}_{form}_{size}{spec.suffix}"
    example = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with captured_output(open(os.devnull, "w")):  # noqa: SIM115 - converters print to the native fds
        facts = module.export(form_model(model, form, target), example, path, ctx) or {}
    facts["deploy_target"] = "naive" if form == "naive" else ("legacy" if form == "legacy" else target)
    return path, facts


def executorch_ops(model: torch.nn.Module, size: int) -> dict:
    """ATen operators of the program ExecuTorch lowers (the XNNPACK delegate hides its own), core ATen names."""
    program = torch.export.export(model, (torch.rand(1, 3, size, size),)).run_decompositions()
    return dict(Counter(n.target.__name__.split(".")[0] for n in program.graph.nodes if n.op == "call_function"))


def op_counts(backend: str, facts: dict) -> dict:
    return facts.get("ops") or facts.get("mil_ops") or {}


def measure(runners: dict, x: dict, rounds: int, warmup: int, per_turn: int, settle: float) -> dict[tuple, list[float]]:
    """Per (runtime, size), its graphs timed side by side in settled turns (``emo.contract.timing.settled_turns``:
    each turn starts with ``settle`` seconds of untimed runs, because the previous graph's thread pool spin-waits;
    measured: ORT's new form at 224, 5.2 ms steady, ran its first 7 runs after a switch in 6-14 ms). An app runs one
    session; so does each timed run here. Runtimes are not interleaved with each other at all."""
    times: dict[tuple, list[float]] = {}
    for group in dict.fromkeys((backend, size) for backend, _, size in runners):
        keys = [key for key in runners if (key[0], key[2]) == group]
        calls = {key: (lambda run=runners[key], image=x[key[2]]: run(image)) for key in keys}
        times.update(settled_turns(calls, rounds, warmup, per_turn, settle))
    return times


def add_timing_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``measure`` (shared with ``bench_quant``)."""
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds (one turn of every graph each)")
    parser.add_argument("--per-turn", type=int, default=3, help="timed runs per turn, after the settling runs")
    parser.add_argument("--settle", type=float, default=0.05,
                        help="seconds of untimed runs at the start of each turn (the previous graph's threads spin)")
    parser.add_argument("--warmup", type=int, default=10)


def timing_arguments_ok(args: argparse.Namespace) -> bool:
    return min(args.threads, args.rounds, args.per_turn) >= 1 and args.settle >= 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emo.export.bench_deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="emo_1m", choices=emo.list_models())
    parser.add_argument("--weights", help="checkpoint (default: seeded random init; timing does not depend on it)")
    parser.add_argument("--sizes", default="224,448", help="square input sizes, comma-separated")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES), help=f"subset of {','.join(RUNTIMES)}")
    add_timing_arguments(parser)
    parser.add_argument("--no-coreml", action="store_true", help="skip the Core ML operator count")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
        runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
        unknown = [r for r in runtimes if r not in RUNTIMES]
        if unknown or not runtimes or not sizes or min(sizes) < 7 or not timing_arguments_ok(args):
            raise EMOError(f"bad arguments: runtimes {runtimes} (known: {', '.join(RUNTIMES)}), sizes {sizes} "
                           "(each >= 7), threads, rounds and per-turn >= 1, settle >= 0")
        for r in runtimes:
            BACKENDS[r].load_module()
        return _run(args, sizes, runtimes)
    except (EMOError, ValueError) as e:
        print(f"bench_deploy: {e}", file=sys.stderr)
        return 2


def _run(args, sizes: list[int], runtimes: list[str]) -> int:
    torch.manual_seed(0)
    model = emo.create_model(args.variant, args.weights)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="emo-bench-deploy-") as tmp:
        out = Path(tmp)
        runners, facts, x = {}, {}, {}
        for size in sizes:
            x[size] = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
            with torch.no_grad():  # every graph takes [0, 1] images (normalisation in the graph)
                ref_logits = Normalized(model).eval()(torch.from_numpy(x[size])).numpy()
            for backend in runtimes:
                for form in FORMS:
                    start = time.perf_counter()
                    try:
                        path, fact = export_one(backend, model, size, form, out)
                    except Exception as e:  # a converter that cannot take a form is a row, not a crash
                        print(f"  {backend} {form} {size}: export failed: {str(e).splitlines()[0][:200]}")
                        continue
                    run = runtimes.open_session(path, backend, args.threads).run
                    diff = float(np.abs(run(x[size]) - ref_logits).max())
                    fact["max_abs_diff"] = diff
                    if backend == "executorch":
                        fact["ops"] = executorch_ops(form_model(model, form, fact["deploy_target"]), size)
                    facts[(backend, form, size)] = fact
                    print(f"  exported {backend:10s} {form:6s} {size}: {time.perf_counter() - start:5.1f} s, "
                          f"max |diff| {diff:.1e}", flush=True)
                    if diff > PARITY:
                        print(f"bench_deploy: {backend} {form} {size} differs from PyTorch by {diff:.1e}",
                              file=sys.stderr)
                        return 1
                    runners[(backend, form, size)] = run
        times = measure(runners, x, args.rounds, args.warmup, args.per_turn, args.settle)
        coreml = {} if args.no_coreml else _coreml_counts(model, sizes[0], out)
    load_after = os.getloadavg()
    median = {key: statistics.median(v) for key, v in times.items()}
    print(f"\n{args.variant}, {args.threads} threads, {args.rounds} interleaved rounds, each a turn per graph of "
          f"{args.settle * 1e3:.0f} ms of untimed runs, then {args.per_turn} timed ones; medians in ms; "
          f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after, on {os.cpu_count()} CPUs")
    print("| runtime | size | today's deploy | new deploy | naive | new/today | new/naive | today/naive |")
    print("|---|---|---|---|---|---|---|---|")
    for backend in runtimes:
        for size in sizes:
            m = {f: median.get((backend, f, size)) for f in FORMS}
            cells = [f"{m[f]:.2f}" if m[f] else "n/a" for f in FORMS]
            ratios = [f"{m[a] / m[b]:.2f}" if m[a] and m[b] else "n/a"
                      for a, b in (("new", "legacy"), ("new", "naive"), ("legacy", "naive"))]
            print(f"| {RUNTIMES[backend]} | {size} | {' | '.join(cells)} | {' | '.join(ratios)} |")
    if len(sizes) > 1:
        print(f"\nlatency({sizes[-1]}) / latency({sizes[0]}):")
        for backend in runtimes:
            row = []
            for form in FORMS:
                a, b = median.get((backend, form, sizes[-1])), median.get((backend, form, sizes[0]))
                row.append(f"{form} {a / b:.2f}" if a and b else f"{form} n/a")
            print(f"  {RUNTIMES[backend]}: " + ", ".join(row))
    print(f"\noperator counts at {sizes[0]} (transposes / reshapes / all nodes):")
    for (backend, form, size), fact in sorted(facts.items()):
        if size == sizes[0]:
            print("  " + _count_line(backend, form, op_counts(backend, fact), fact))
    for form, ops in coreml.items():
        print("  " + _count_line("coreml", form, ops, {}))
    return 0


def _count_line(backend: str, form: str, ops: dict, fact: dict) -> str:
    reshape = {"onnx": "Reshape", "tflite": "RESHAPE", "coreml": "reshape"}.get(backend, "view")
    extra = ""
    if backend == "executorch":
        extra = (f", whole graph in XNNPACK: {fact.get('whole_graph_delegated')}, "
                 f"outside: {fact.get('ops_outside_delegate')}")
    if backend == "tflite":
        extra = f", XNNPACK whole graph: {fact.get('xnnpack_whole_graph')}"
    return (f"{backend:10s} {form:6s} ({fact.get('deploy_target', form)}): {ops.get(TRANSPOSES[backend], 0)} "
            f"transposes, {ops.get(reshape, 0)} reshapes, {sum(ops.values())} ops{extra}")


def _coreml_counts(model: torch.nn.Module, size: int, out: Path) -> dict:
    """MIL operators of the Core ML program of each form (the naive model does not convert: EMO_SPEC.md)."""
    try:
        BACKENDS["coreml"].load_module()
    except EMOError as e:
        print(f"  coreml: not counted ({e})")
        return {}
    counts = {}
    for form in ("legacy", "new"):
        try:
            _, fact = export_one("coreml", model, size, form, out)
            counts[form] = fact["mil_ops"]
        except Exception as e:
            print(f"  coreml {form}: export failed: {str(e).splitlines()[0][:200]}")
    return counts


if __name__ == "__main__":
    sys.exit(main())
