"""``emo-eval`` of a Core ML artifact through the MIL interpreter: before (a git revision) vs now, side by side.

``python tools/bench_mil.py ARTIFACT.mlpackage --data DIR [--limit 100] [--rounds 2] [--before REV]
[--weights CKPT]``

The interpreter and the Core ML loader of revision ``--before`` (default: main before issue 24 made the interpreter
compile programs and run stacks of images) are read with ``git show`` into modules of their own; each round runs
``emo-eval`` on the same ``--limit`` images once with them and once with today's code, in alternating order, and
times it (wall clock and this process's CPU time, image decoding included), and once more with the old code
and NumPy's BLAS held to one thread, as today's interpreter holds it. Prints both top-1 results (they must
agree), the seconds per 10k images and the ratios; with ``--weights`` also the parity of both against the PyTorch
model on the export's parity images (what ``emo-verify`` checks). Needs the git repository of this checkout.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

from emo.errors import EMOError

BEFORE = "303dd35"  # main before issue 24: the op-by-op interpreter, one image per call
REPO = Path(__file__).resolve().parent.parent


def module_at(revision: str, path: str, name: str) -> types.ModuleType:
    """``path`` of this repository at ``revision``, imported as module ``name``."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{revision}:{path}"], capture_output=True, text=True)
    if source.returncode:
        raise EMOError(f"git show {revision}:{path} failed: {source.stderr.strip()}")
    module = types.ModuleType(name)
    module.__file__ = f"{revision}:{path}"
    sys.modules[name] = module
    exec(compile(source.stdout, module.__file__, "exec"), module.__dict__)  # noqa: S102 - our own source, from git
    return module


VERSIONS = ("before", "before, BLAS on 1 thread", "now")


@contextlib.contextmanager
def code_of(version: str, before: types.SimpleNamespace):
    """Today's interpreter and loader, or the old ones in their place while the block runs ("before"), also with
    NumPy's BLAS held to one thread as today's interpreter holds it (to tell its share of the gain apart)."""
    import emo.contract.runtimes.mil_interpreter as interpreter
    from emo.contract import runtimes

    saved = runtimes.LOADERS["coreml"]
    if version != "now":  # the old loader (NCHW in, its MILProgram imported when it runs) behind the loader table
        def old_session(path, threads):
            return runtimes.Session(runtimes.MIL_INTERPRETER, before.coreml.load(path, threads))

        runtimes.LOADERS["coreml"] = (runtimes.Loader(runtimes.MIL_INTERPRETER, old_session),)
        sys.modules["emo.export.mil_interpreter"] = before.mil  # where the old loader imports it from
    try:
        with interpreter._one_blas_thread() if version == "before, BLAS on 1 thread" else contextlib.nullcontext():
            yield
    finally:
        runtimes.LOADERS["coreml"] = saved
        sys.modules.pop("emo.export.mil_interpreter", None)


def run_eval(artifact: str, data: str, limit: int) -> tuple[float, float, dict]:
    from emo.evaluate import eval_main

    out = io.StringIO()
    wall, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = eval_main([artifact, "--data", data, "--limit", str(limit), "--json"])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if code:
        raise EMOError(f"emo-eval exited {code}")
    return wall, cpu, json.loads(out.getvalue())["rows"][0]


def parity(artifact: Path, weights: str) -> dict[str, float]:
    """max |diff| and min cosine of the artifact's logits against the PyTorch model, on the parity images."""
    import torch

    from emo.contract.runtimes import open_session
    from emo.export.parity import parity_inputs, reference_logits
    from emo.export.pipeline import build_model, contract_batch_and_size, read_sidecar

    side = read_sidecar(artifact)
    _, size = contract_batch_and_size(side["input"])
    model = build_model(side["variant"], weights, num_classes=side.get("num_classes"))
    images = parity_inputs(size)
    with torch.no_grad():
        expected = reference_logits(model, images).astype(np.float64)
    run = open_session(artifact, "coreml").run
    actual = np.concatenate([run(images[i:i + 1]) for i in range(len(images))]).astype(np.float64)
    cosine = (expected * actual).sum(1) / np.linalg.norm(expected, axis=1) / np.linalg.norm(actual, axis=1)
    return {"max_abs_diff": float(np.abs(actual - expected).max()), "cosine": float(cosine.min())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/bench_mil.py", description=__doc__.splitlines()[0])
    parser.add_argument("artifact", help="a Core ML .mlpackage with its sidecar")
    parser.add_argument("--data", required=True, help="ImageFolder, as emo-eval takes it")
    parser.add_argument("--limit", type=int, default=100, help="images per run (default 100)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each version, alternating (default 2)")
    parser.add_argument("--before", default=BEFORE, help=f"git revision of the old code (default {BEFORE})")
    parser.add_argument("--weights", help="the artifact's checkpoint: also compare both against PyTorch")
    args = parser.parse_args(argv)
    try:
        if args.limit < 1 or args.rounds < 1:
            raise EMOError("--limit and --rounds must be at least 1")
        before = types.SimpleNamespace(mil=module_at(args.before, "export/mil_interpreter.py", "emo_mil_before"))
        before.coreml = module_at(args.before, "export/coreml.py", "emo_coreml_before")
        return _run(args, before)
    except EMOError as e:
        print(f"bench_mil: {e}", file=sys.stderr)
        return 2


def _run(args, before: types.SimpleNamespace) -> int:
    times: dict[str, list[tuple[float, float]]] = {version: [] for version in VERSIONS}
    rows = {}
    for r in range(args.rounds):
        for version in VERSIONS if r % 2 == 0 else VERSIONS[::-1]:
            with code_of(version, before):
                wall, cpu, rows[version] = run_eval(args.artifact, args.data, args.limit)
            times[version].append((wall, cpu))
            print(f"  round {r + 1} {version:25s}: {wall:7.1f} s wall, {cpu:7.1f} s CPU, top-1 "
                  f"{rows[version]['top1']:.2f} %", flush=True)
    scale = 10_000 / args.limit
    median = {v: (statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)) for v, ts in times.items()}
    print(f"\nemo-eval {Path(args.artifact).name} on {args.limit} images of {args.data}, {args.rounds} rounds "
          f"(medians; before = {args.before})")
    print("| code | s per 10k images (wall) | s per 10k images (CPU) | top-1 |")
    print("|---|---|---|---|")
    for version in VERSIONS:
        print(f"| {version} | {median[version][0] * scale:.0f} | {median[version][1] * scale:.0f} | "
              f"{rows[version]['top1']:.2f} % |")
    for version in VERSIONS[:-1]:
        print(f"{version} / now: {median[version][0] / median['now'][0]:.2f}x wall, "
              f"{median[version][1] / median['now'][1]:.2f}x CPU")
    differ = sum(a != b for a, b in zip(rows["before"]["predictions"], rows["now"]["predictions"], strict=True))
    print(f"top-1 predictions that differ between the two: {differ} of {len(rows['now']['predictions'])}")
    if args.weights:
        for version in ("before", "now"):
            with code_of(version, before):
                p = parity(Path(args.artifact), args.weights)
            print(f"parity against PyTorch ({version}): max |diff| {p['max_abs_diff']:.2e}, cosine {p['cosine']:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
