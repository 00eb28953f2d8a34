"""``emo-bench --profile``: where the time goes, per operator type, in each runtime's own profiler.

- ONNX Runtime (``.onnx``, ``.ort``): the session's profiling JSON (``SessionOptions.enable_profiling``); every
  ``*_kernel_time`` event is one node's run, summed by its ``op_name`` (what ORT really ran after its fusions:
  ``FusedMatMul``, ``QuickGelu``, the NCHWc ``ReorderInput``...).
- ExecuTorch (``.pte``): an ETDump of the runs (``_load_for_executorch(enable_etdump=True)``) read by
  ``executorch.devtools.Inspector``; XNNPACK reports its own operators ("Fully Connected (NC, F32) GEMM #4"), summed
  by the part before ``#``.
- LiteRT (``.tflite``): the ``benchmark_model`` runner with ``--enable_op_profiling=true``, its "Summary by node
  type" table parsed (``parse_op_profile``): on a phone through adb, and on the host when ``--runner`` names a host
  build of ``benchmark_model`` (the Python interpreter has no per-operator profiler).

Every profile is a list of ``{"op", "nodes", "ms", "percent"}`` rows, ms per inference, largest first.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import defaultdict
from pathlib import Path

from emo.runtime_bench.parsers import _lines

# ExecuTorch's own bookkeeping events (not operators); their time includes the operators'.
_ET_NOT_OPS = re.compile(r"::|^DELEGATE_CALL$|^OPERATOR_CALL$|^Method::")


def _rows(total_ms: dict[str, float], nodes: dict[str, int]) -> list[dict]:
    grand = sum(total_ms.values()) or 1.0
    rows = [{"op": op, "nodes": nodes[op], "ms": round(ms, 4), "percent": round(100 * ms / grand, 2)}
            for op, ms in total_ms.items()]
    return sorted(rows, key=lambda r: -r["ms"])


def profile_onnxruntime(path: Path, threads: int, x, runs: int) -> list[dict]:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="emo-bench-ort-") as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for _ in range(runs):
            session.run(None, {name: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    total: dict[str, float] = defaultdict(float)
    names: dict[str, set] = defaultdict(set)
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event.get("args", {}).get("op_name", "?")
            total[op] += event["dur"] / 1e3 / runs  # microseconds over all runs -> ms per inference
            names[op].add(event["name"])
    return _rows(total, {op: len(n) for op, n in names.items()})


def profile_executorch(path: Path, threads: int, x, runs: int) -> list[dict]:
    import torch
    from executorch.devtools import Inspector
    from executorch.extension.pybindings.portable_lib import _load_for_executorch, _unsafe_reset_threadpool

    _unsafe_reset_threadpool(threads)
    module = _load_for_executorch(str(path), enable_etdump=True)
    for _ in range(runs):
        module.forward([torch.from_numpy(x)])
    with tempfile.TemporaryDirectory(prefix="emo-bench-et-") as tmp:
        etdump = Path(tmp) / "run.etdp"
        module.write_etdump_result_to_file(str(etdump))
        inspector = Inspector(etdump_path=str(etdump))
    total: dict[str, float] = defaultdict(float)
    nodes: dict[str, int] = defaultdict(int)
    for block in inspector.event_blocks:
        for event in block.events:
            if event.perf_data is None or _ET_NOT_OPS.search(event.name or ""):
                continue
            op = event.name.split(" #")[0]
            total[op] += sum(event.perf_data.raw) / len(event.perf_data.raw)  # ms, mean over the runs
            nodes[op] += 1
    return _rows(total, nodes)


_TABLE_START = re.compile(r"=+\s*Summary by node type\s*=+")


def parse_op_profile(text: str) -> list[dict]:
    """The "Summary by node type" table of ``benchmark_model --enable_op_profiling=true`` for the regular runs
    (the table after "Operator-wise Profiling Info for Regular Benchmark Runs"; the initialisation run has its own).
    Columns: [Node type] [count] [avg ms] [avg %] [cdf %] [mem KB] [times called]."""
    lines = _lines(text)
    start = next((i for i, line in enumerate(lines) if "Profiling Info for Regular Benchmark Runs" in line), None)
    if start is None:
        return []
    table = next((i for i in range(start, len(lines)) if _TABLE_START.search(lines[i])), None)
    if table is None:
        return []
    total: dict[str, float] = {}
    nodes: dict[str, int] = {}
    for line in lines[table + 2:]:  # skip the header line
        fields = line.split()
        if len(fields) < 4 or not fields[1].isdigit():
            break
        try:
            total[fields[0]] = float(fields[2])
            nodes[fields[0]] = int(fields[1])
        except ValueError:
            break
    return _rows(total, nodes)


def table(profile: list[dict], title: str, limit: int = 15) -> str:
    """A plain-text table, largest first; the rest folded into one line."""
    lines = [title, f"  {'operator':<40} {'nodes':>6} {'ms':>9} {'%':>7}"]
    for row in profile[:limit]:
        lines.append(f"  {row['op'][:40]:<40} {row['nodes']:>6} {row['ms']:>9.3f} {row['percent']:>6.1f}%")
    rest = profile[limit:]
    if rest:
        lines.append(f"  {f'({len(rest)} more operator types)':<40} {sum(r['nodes'] for r in rest):>6} "
                     f"{sum(r['ms'] for r in rest):>9.3f} {sum(r['percent'] for r in rest):>6.1f}%")
    lines.append(f"  {'total':<40} {sum(r['nodes'] for r in profile):>6} {sum(r['ms'] for r in profile):>9.3f}")
    return "\n".join(lines)
