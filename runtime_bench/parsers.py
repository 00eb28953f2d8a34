"""Parsers for what on-device benchmark runners print (shared/reference/runner_outputs/README.md).

Each returns a ``RunnerReport``: latencies in milliseconds whatever unit the runner used, memory in MB, and
``failed`` with the runner's own reason when it says the run failed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"  # C++ default stream format, scientific notation included
# logcat "MM-DD hh:mm:ss.mmm  pid  tid I tflite  : ", absl/LiteRT "INFO: [file:line] ", plain "INFO: "
_PREFIX = re.compile(r"^(?:\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+\S+\s*:\s?|\.\.\.\s*\S+\s*:\s?)")
_INFO = re.compile(r"^(?:INFO|WARNING|ERROR):\s*(?:\[[^\]]*\]\s*)?")


@dataclass
class RunnerReport:
    runner: str
    count: int | None = None
    avg_ms: float | None = None
    median_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    std_ms: float | None = None
    p90_ms: float | None = None
    init_ms: float | None = None
    first_ms: float | None = None
    warmup_avg_ms: float | None = None
    peak_memory_mb: float | None = None
    failed: str | None = None
    extra: dict = field(default_factory=dict)

    def bounded(self) -> RunnerReport:
        """Drop what no real run prints: a count beyond 1e9 or not whole, times and memory that are negative, not
        finite or beyond 1e9 (a device's output is input: a 5000-digit number must not become a row)."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "count" and value is not None:
                setattr(self, f.name, _count(value))
            elif isinstance(value, float) and not (math.isfinite(value) and 0 <= value <= 1e9):
                setattr(self, f.name, None)
        self.extra = {k: v for k, v in self.extra.items()
                      if not isinstance(v, float) or (math.isfinite(v) and 0 <= v <= 1e9)}
        if self.failed is not None:
            self.failed = self.failed[:300]
        return self

    def summary(self) -> dict:
        """The row's summary from what the runner printed (no raw latencies from phone runners)."""
        fields = {"count": self.count, "median": self.median_ms, "p90": self.p90_ms, "min": self.min_ms,
                  "max": self.max_ms, "mean": self.avg_ms, "std": self.std_ms}
        return {k: v for k, v in fields.items() if v is not None}


def _count(value) -> int | None:
    """A run count: a whole number in 0..1e9, else None."""
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return int(value) if math.isfinite(value) and 0 <= value <= 1e9 and value == int(value) else None


def _lines(text: str) -> list[str]:
    out = []
    for raw in text.splitlines():
        line = _PREFIX.sub("", raw.strip())
        out.append(_INFO.sub("", line).strip())
    return out


def _stats(line: str) -> dict[str, float]:
    """``count=50 first=.. curr=.. min=.. max=.. avg=.. std=.. [p5=.. median=.. p95=..]`` -> dict."""
    return {k: float(v) for k, v in re.findall(rf"(\w+)=({_NUM})", line)}


def _us(value: float | None) -> float | None:
    return None if value is None else value / 1000.0


def parse_benchmark_model(text: str) -> RunnerReport:
    """LiteRT / TFLite ``benchmark_model`` (three summary generations, stats lines, the CompiledModel block)."""
    report = RunnerReport("benchmark_model")
    lines = _lines(text)
    if "Benchmarking failed." in lines:
        # the runner's own summary (the line before) and the delegate's first ERROR line say why
        before = [x for x in lines[: lines.index("Benchmarking failed.")] if x]
        errors = [_PREFIX.sub("", r.strip())[len("ERROR:"):].strip() for r in text.splitlines()
                  if _PREFIX.sub("", r.strip()).startswith("ERROR:")]
        report.failed = "; ".join(dict.fromkeys([*before[-1:], *errors[:1]])) or "Benchmarking failed."
    # The regular run's stats line is the last "count=" line (warm-up stats come first; an all-equal run prints
    # only "count=N curr=X"). Builds with op profiling also print "Timings (microseconds): count=..."; older ones
    # print only that.
    plain = [x for x in lines if re.match(r"^count=\d+", x)]
    profiled = [x for x in lines if x.startswith("Timings (microseconds): count=")]
    if plain or profiled:
        regular = _stats((plain or profiled)[-1])
        curr = regular.get("curr")
        report.count = _count(regular["count"])
        report.avg_ms = _us(regular.get("avg", curr))
        report.min_ms, report.max_ms = _us(regular.get("min", curr)), _us(regular.get("max", curr))
        report.std_ms = _us(regular.get("std", 0.0))
        report.median_ms = _us(regular.get("median"))
        report.extra.update({f"{k}_ms": _us(v) for k, v in regular.items() if k in ("p5", "p95")})
    for line in lines:
        current = re.search(rf"Inference timings in us: Init: ({_NUM}), First inference: ({_NUM}), "
                            rf"Warmup \(avg\): ({_NUM}), Inference \(avg\): ({_NUM})", line)
        older = re.search(rf"Average inference timings in us: Warmup: ({_NUM}), Init: ({_NUM}), "
                          rf"(?:Inference|no stats): ({_NUM})", line)
        if current:
            init, first, warm, avg = (float(g) for g in current.groups())
            report.init_ms, report.first_ms, report.warmup_avg_ms = _us(init), _us(first), _us(warm)
            report.avg_ms = _us(avg)
        elif older:
            warm, init, avg = (float(g) for g in older.groups())
            report.init_ms, report.warmup_avg_ms, report.avg_ms = _us(init), _us(warm), _us(avg)
        memory = re.search(rf"(?:Peak memory footprint|Memory footprint delta from the start of the tool) "
                           rf"\(MB\): init=({_NUM}) overall=({_NUM})", line)
        if memory:
            report.peak_memory_mb = float(memory.group(2))
        periodic = re.search(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUM})", line)
        if periodic:
            report.peak_memory_mb = float(periodic.group(1))
    _parse_compiled_model_block(lines, report)
    if report.avg_ms is None and report.failed is None:
        report.failed = "no timing summary in the runner's output"
    return report


def _read_labelled(lines: list[str], table: list[tuple[str, str, float | None]], report: RunnerReport) -> None:
    """Set ``report`` fields from lines that match a (pattern, field, scale) table; scale None reads an int,
    a field named ``extra.x`` goes to ``report.extra``."""
    for line in lines:
        for pattern, name, scale in table:
            if m := re.match(pattern, line):
                value = _count(m.group(1)) if scale is None else float(m.group(1)) * scale
                if name.startswith("extra."):
                    report.extra[name[len("extra."):]] = value
                else:
                    setattr(report, name, value)


# The newer LiteRT CompiledModel tool: a labelled block in milliseconds.
_COMPILED_MODEL = [
    (rf"Model initialization:\s*({_NUM}) ms", "init_ms", 1.0),
    (rf"Warmup \(first\):\s*({_NUM}) ms", "first_ms", 1.0),
    (rf"Warmup \(avg\):\s*({_NUM}) ms", "warmup_avg_ms", 1.0),
    (rf"Inference \(avg\):\s*({_NUM}) ms", "avg_ms", 1.0),
    (r"Inference \(avg\):.*\((\d+) runs\)", "count", None),
    (rf"Inference \(min\):\s*({_NUM}) ms", "min_ms", 1.0),
    (rf"Inference \(max\):\s*({_NUM}) ms", "max_ms", 1.0),
    (rf"Inference \(std\):\s*({_NUM})", "std_ms", 1.0),
    (rf"Overall footprint:\s*({_NUM}) MB", "peak_memory_mb", 1.0),
]


def _parse_compiled_model_block(lines: list[str], report: RunnerReport) -> None:
    if any("BENCHMARK RESULTS" in x for x in lines):
        _read_labelled(lines, _COMPILED_MODEL, report)


# onnxruntime_perf_test: the average in ms, session creation and percentiles in SECONDS, memory in bytes.
_ORT_PERF_TEST = [
    (rf"Session creation time cost:\s*({_NUM}) s", "init_ms", 1e3),
    (rf"First inference time cost:\s*({_NUM}) ms", "first_ms", 1.0),
    (rf"Average (?:inference )?time cost:\s*({_NUM}) ms", "avg_ms", 1.0),
    (r"Total inference requests:\s*(\d+)", "count", None),
    (r"Runs:\s*(\d+)", "count", None),
    (rf"Peak working set size:\s*({_NUM})", "peak_memory_mb", 1 / 2**20),
    (r"Total iterations:\s*(\d+)", "count", None),  # older builds
    # percentiles, in seconds: "P90 Latency: 0.00187 s" (current) or "P90 Latency is 0.0599742sec" (older builds)
    *[(rf"{label} Latency(?::| is)\s*({_NUM})\s*s(?:ec)?$", field, 1e3) for label, field in (
        ("Min", "min_ms"), ("Max", "max_ms"), ("P50", "median_ms"), ("P90", "p90_ms"), ("P95", "extra.p95_ms"),
        ("P99", "extra.p99_ms"), ("P999", "extra.p999_ms"))],
]


def parse_onnxruntime_perf_test(text: str) -> RunnerReport:
    """``onnxruntime_perf_test``: average in ms, percentiles in **seconds**, working set in bytes."""
    report = RunnerReport("onnxruntime_perf_test")
    lines = _lines(text)
    _read_labelled(lines, _ORT_PERF_TEST, report)
    for line in lines:
        if "failed" in line.lower() and ("error" in line.lower() or line.lower().startswith("failed")):
            report.failed = report.failed or line
    if report.avg_ms is None and report.failed is None:
        report.failed = "no timing summary in the runner's output"
    return report


def parse_executor_runner(text: str) -> RunnerReport:
    """ExecuTorch ``executor_runner``: ``Model executed successfully N time(s) in X ms.`` (total over N)."""
    report = RunnerReport("executor_runner")
    for raw in text.splitlines():
        if m := re.search(rf"Model executed successfully (\d+) time\(s\) in ({_NUM}) ms", raw):
            report.count = _count(m.group(1))
            report.avg_ms = float(m.group(2)) / max(report.count or 1, 1)
        elif "failed with status" in raw or "Execution of method" in raw:
            report.failed = raw.strip()
    if report.avg_ms is None and report.failed is None:
        report.failed = "no timing summary in the runner's output"
    return report


def _bounded(parse):
    def parse_bounded(text: str) -> RunnerReport:
        report = parse(text).bounded()
        if report.avg_ms is None and report.failed is None:
            report.failed = "no usable timing summary in the runner's output"
        return report

    parse_bounded.__doc__ = parse.__doc__
    return parse_bounded


PARSERS = {"benchmark_model": _bounded(parse_benchmark_model),
           "onnxruntime_perf_test": _bounded(parse_onnxruntime_perf_test),
           "executor_runner": _bounded(parse_executor_runner)}
