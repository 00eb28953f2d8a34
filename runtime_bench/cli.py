"""``emo-bench``: latency of exported artifacts on the host, Android phones (adb), Macs, iPhones and AI Hub.

    emo-bench DIR_OR_ARTIFACTS... --device host|browser|adb[:SERIAL]|mac|ios[:UDID]|aihub:DEVICE [--threads N]
              [--warmup W] [--iters N | --min-seconds S] [--out results.jsonl] [--csv FILE] [--plot FILE.png]
    emo-bench compare A.jsonl B.jsonl

Exit codes: 0 every row ok; 1 some row failed (kept in the results with its reason); 2 bad input.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from pathlib import Path

from emo.contract.text import printable
from emo.runtime_bench.results import Artifact, BenchError, BenchResult, find_artifacts, read_rows
from emo.runtime_bench.targets import PAGE_BACKENDS, Settings, Target, execute

EXIT_FAILED, EXIT_BAD_INPUT = 1, 2
TARGETS = "host | browser | adb[:SERIAL] | mac | ios[:UDID] | aihub:DEVICE_NAME"
MAX_THREADS = 256       # no phone or Mac has more cores; the host is capped at its own count
MAX_ITERS = 1_000_000
PLOT_FORMATS = (".png", ".pdf", ".svg")


class Terminated(KeyboardInterrupt):  # noqa: N818 - named after the signal, like KeyboardInterrupt
    """SIGTERM, handled as Ctrl-C is (the rows so far are kept), exit code 143."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"emo-bench: error: {message} (see emo-bench --help)\n")


class Progress:
    """A one-line progress bar on stderr (a line per step when stderr is not a terminal)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.tty = total, 0, sys.stderr.isatty()

    def step(self, label: str) -> None:
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        text = f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {printable(label)}"
        print(f"\r{text[:110]:<110}" if self.tty else text, end="" if self.tty else "\n", file=sys.stderr,
              flush=True)
        self.done += 1

    def close(self) -> None:
        if self.tty:
            print("\r" + " " * 110 + "\r", end="", file=sys.stderr, flush=True)


def parse_target(text: str) -> tuple[str, str | None]:
    kind, _, arg = text.partition(":")
    if kind not in ("host", "browser", "adb", "mac", "ios", "aihub"):
        raise BenchError(f"unknown --device {text!r}; use {TARGETS}")
    if kind == "aihub" and not arg:
        raise BenchError("--device aihub needs a device name, e.g. --device 'aihub:Samsung Galaxy S24 (Family)'")
    if kind in ("host", "browser", "mac") and arg:
        raise BenchError(f"--device {kind} takes no ':' argument")
    return kind, arg or None


def open_target(kind: str, arg: str | None, settings: Settings) -> Target:
    """The target of ``--device KIND[:ARG]``, set up once (no device, no macOS, no token...: bad input, exit 2)."""
    if kind == "host":
        from emo.runtime_bench.host import HostTarget

        return HostTarget(settings)
    if kind == "browser":
        from emo.runtime_bench.browser import BrowserTarget

        return BrowserTarget(settings)
    if kind == "adb":
        from emo.runtime_bench.android import AdbTarget

        return AdbTarget(settings, arg)
    if kind == "mac":
        from emo.runtime_bench.apple import MacTarget

        return MacTarget(settings)
    if kind == "ios":
        from emo.runtime_bench.apple import IosTarget

        return IosTarget(settings, arg)
    from emo.runtime_bench.aihub import AiHubTarget

    return AiHubTarget(settings, arg)


def _bench(argv: list[str]) -> int:

    p = _Parser(prog="emo-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", help="artifacts, or folders of artifacts with their sidecars")
    p.add_argument("--device", required=True, help=TARGETS)
    p.add_argument("--threads", type=int, default=2, help="threads for every runtime (default 2)")
    p.add_argument("--warmup", type=int, default=5)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--iters", type=int, help="timed iterations (default 50)")
    group.add_argument("--min-seconds", type=float, help="time for at least this long instead")
    p.add_argument("--out", default="emo-bench.jsonl", help="JSON Lines, appended (default emo-bench.jsonl)")
    p.add_argument("--csv", help="also write a CSV summary")
    p.add_argument("--plot", help="also write a PNG: median with p10-p90 whiskers, grouped by device")
    p.add_argument("--runner", action="append", default=[], help="adb: a runner binary (benchmark_model, "
                   "onnxruntime_perf_test, executor_runner), repeatable; or 'app': drive the installed demo app "
                   "(android_demo/BENCHMARK_MODE.md)")
    p.add_argument("--parity", action="store_true", help="adb: also run the artifact's bundled examples on the phone "
                   "and compare with PyTorch's outputs (max |diff|, top-5 agreement in the row; a failure fails it)")
    p.add_argument("--delegate", help="adb: cpu | xnnpack | gpu | nnapi | qnn (what the runner supports)")
    p.add_argument("--backend", choices=PAGE_BACKENDS, help="browser: the page's runtime backend, wasm "
                   "(WebAssembly, the default) or webgpu (WebGPU; the row fails if the browser offers no adapter)")
    p.add_argument("--profile", nargs="?", type=int, const=20, default=0, metavar="RUNS",
                   help="also profile each artifact per operator type over RUNS inferences (default 20), after "
                        "timing: ORT profiling, ExecuTorch ETDump, LiteRT benchmark_model --enable_op_profiling")
    p.add_argument("--cooldown", type=float, default=10.0, help="adb: seconds of rest between runs (default 10)")
    p.add_argument("--compute-units", action="append", choices=("CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE", "ALL"),
                   help="mac/ios: repeatable (mac default: all four; ios default: ALL)")
    p.add_argument("--interleave", action="store_true", help="host: time the artifacts of each runtime side by side "
                   "in one process, round by round in settled turns (fair ratios on a busy machine; the peak memory "
                   "is then the process's)")
    p.add_argument("--settle", type=float, default=0.05, help="host --interleave: seconds of untimed runs at the "
                   "start of each turn, while the previous session's threads stop spinning (default 0.05)")
    p.add_argument("--per-turn", type=int, default=3, help="host --interleave: timed runs per turn (default 3)")
    args = p.parse_args(argv)
    kind, arg = parse_target(args.device)
    check_options(args, kind)
    artifacts = find_artifacts(args.paths)
    settings = Settings(threads=args.threads, warmup=args.warmup,
                        iters=args.iters or (None if args.min_seconds else 50), min_seconds=args.min_seconds,
                        delegate=args.delegate, runners=tuple(args.runner), profile=args.profile, parity=args.parity,
                        cooldown=args.cooldown, compute_units=tuple(args.compute_units or ()),
                        interleave=args.interleave, settle=args.settle, per_turn=args.per_turn,
                        backend=args.backend or ("wasm" if kind == "browser" else None))
    target = open_target(kind, arg, settings)
    try:
        return _measure(target, artifacts, args)
    finally:
        target.close()


def _measure(target: Target, artifacts: list[Artifact], args) -> int:
    from emo.runtime_bench import report

    out = Path(args.out)
    rows: list[BenchResult] = []
    runs = target.runs(artifacts)
    progress = Progress(len(runs))
    for run in runs:
        progress.step(run.label)
        for row in execute(target, run):
            rows.append(row)
            with open(out, "a", encoding="utf-8") as f:  # appended as it goes: an interrupted run keeps its rows
                f.write(row.to_json() + "\n")
            if not row.ok:
                print(f"\nemo-bench: {printable(Path(row.artifact).name)}: {printable(row.status, 400)}",
                      file=sys.stderr)
    progress.close()
    dicts = [r.to_dict() for r in rows]
    print(report.table(dicts))
    if args.profile:
        from emo.runtime_bench.profile import table

        for row in rows:
            title = f"\n{Path(row.artifact).name}: per-operator time"
            prof = row.profile or {"error": "not profiled"}
            print(f"{title}: {prof['error']}" if "error" in prof else
                  table(prof["ops"], f"{title} ({prof['source']}, ms per inference)"))
    print(f"{len(rows)} rows appended to {out}")
    if args.csv:
        report.write_csv(dicts, args.csv)
    if args.plot:
        report.plot(dicts, args.plot)
    return 0 if all(r.ok for r in rows) else EXIT_FAILED


def _writable(path: str, flag: str) -> None:
    """Fail before any measuring when an output file could not be written at the end."""
    target = Path(path)
    if not path.strip() or target.is_dir():
        raise BenchError(f"{flag} {path!r} is not a file name")
    folder = target.parent
    if not folder.is_dir():
        raise BenchError(f"{flag} {path}: folder {folder} does not exist")
    if (target.exists() and not os.access(target, os.W_OK)) or not os.access(folder, os.W_OK):
        raise BenchError(f"{flag} {path} is not writable")


def check_options(args, kind: str) -> None:
    """Every option checked before the first artifact is measured (numbers in range, outputs writable)."""
    local = kind in ("host", "browser")  # the browser runs on this machine too
    limit = (os.cpu_count() or 1) if local else MAX_THREADS
    if not 1 <= args.threads <= limit:
        where = f"this host has {limit} cores" if local else f"at most {MAX_THREADS}"
        raise BenchError(f"--threads {args.threads} is out of range: use 1..{limit} ({where})")
    if args.iters is not None and not 1 <= args.iters <= MAX_ITERS:
        raise BenchError(f"--iters {args.iters} is out of range: use 1..{MAX_ITERS}")
    if not 0 <= args.profile <= MAX_ITERS:
        raise BenchError(f"--profile {args.profile} is out of range: use 1..{MAX_ITERS} runs")
    if not 0 <= args.warmup <= MAX_ITERS:
        raise BenchError(f"--warmup {args.warmup} is out of range: use 0..{MAX_ITERS}")
    if args.min_seconds is not None and not (math.isfinite(args.min_seconds) and 0 < args.min_seconds <= 86400):
        raise BenchError(f"--min-seconds {args.min_seconds} must be a positive number of seconds (at most a day)")
    if not (math.isfinite(args.cooldown) and 0 <= args.cooldown <= 3600):
        raise BenchError(f"--cooldown {args.cooldown} must be 0..3600 seconds")
    if kind != "adb" and (args.parity or "app" in args.runner):
        raise BenchError("--parity and --runner app are for --device adb[:SERIAL]")
    if kind != "browser" and args.backend:
        raise BenchError("--backend is for --device browser (wasm or webgpu in the page); phones take --delegate")
    if kind != "host" and args.interleave:
        raise BenchError("--interleave is for --device host (one process times several artifacts side by side)")
    if not (math.isfinite(args.settle) and 0 <= args.settle <= 10):
        raise BenchError(f"--settle {args.settle} must be 0..10 seconds")
    if not 1 <= args.per_turn <= 1000:
        raise BenchError(f"--per-turn {args.per_turn} is out of range: use 1..1000")
    if "app" in args.runner and len(args.runner) > 1:
        raise BenchError("--runner app drives the demo app: give no runner binaries with it")
    _writable(args.out, "--out")
    if args.csv:
        _writable(args.csv, "--csv")
    if args.plot:
        if Path(args.plot).suffix.lower() not in PLOT_FORMATS:
            raise BenchError(f"--plot {args.plot}: unsupported format; use one of {', '.join(PLOT_FORMATS)}")
        _writable(args.plot, "--plot")
        from emo.runtime_bench import report

        report.require_matplotlib()


def _compare(argv: list[str]) -> int:
    from emo.runtime_bench import report

    p = _Parser(prog="emo-bench compare", description="Median ratio B/A per artifact, device and settings.")
    p.add_argument("a")
    p.add_argument("b")
    args = p.parse_args(argv)
    rows_a, rows_b = read_rows(args.a), read_rows(args.b)
    print(report.compare(rows_a, rows_b))
    skipped = sum(not report.comparable(r) for r in [*rows_a, *rows_b])
    if skipped:
        print(f"emo-bench compare: {skipped} rows skipped (failed, or not result rows with a positive median)",
              file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # console script: SIGTERM keeps the rows so far, as Ctrl-C does
        signal.signal(signal.SIGTERM, _raise_terminated)
    argv = sys.argv[1:] if argv is None else argv
    try:
        code = _compare(argv[1:]) if argv[:1] == ["compare"] else _bench(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else EXIT_BAD_INPUT
    except BenchError as e:
        print(f"emo-bench: error: {printable(e, 400)}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    except KeyboardInterrupt as e:
        print(f"emo-bench: {'terminated' if isinstance(e, Terminated) else 'interrupted'} (rows so far are in the "
              "results file)", file=sys.stderr)
        code = 143 if isinstance(e, Terminated) else 130
    return code
