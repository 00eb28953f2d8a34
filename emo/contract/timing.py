"""How latency is measured, once for every tool: ``measure`` (raw per-iteration latencies of one callable),
``settled_turns`` (several callables timed side by side, round by round), and one ``summary`` for the host, the
browser and phones alike (the statistics of every result row).

Settled turns are what a 2-core host taught us (``python -m emo.export.bench_deploy``, README "One deploy graph per
runtime"): ONNX Runtime's intra-op threads spin-wait after a run, so a session run right after another one loses a
core for tens of milliseconds; each turn therefore starts with ``settle`` seconds of untimed runs of the callable
about to be timed (idling instead cools the CPU, which is no better). Interleaving the callables round by round makes
the load of a shared machine hit them alike, so their ratios mean something even when absolute times do not.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

TRIM = 0.1  # the trimmed mean drops the fastest and slowest 10%


def measure(fn: Callable[[], object], warmup: int = 5, iters: int | None = 50,
            min_seconds: float | None = None) -> tuple[float, list[float]]:
    """Run ``fn`` ``warmup`` times, then ``iters`` times (or at least ``min_seconds``, whichever is longer).

    Returns (first warm-up call in ms, raw latencies in ms). ``time.perf_counter_ns`` around each call.
    """
    first_ms = math.nan
    for i in range(max(warmup, 1)):
        start = time.perf_counter_ns()
        fn()
        if i == 0:
            first_ms = (time.perf_counter_ns() - start) / 1e6
    latencies: list[float] = []
    begin = time.perf_counter()
    while len(latencies) < (iters or 1) or (min_seconds and time.perf_counter() - begin < min_seconds):
        start = time.perf_counter_ns()
        fn()
        latencies.append((time.perf_counter_ns() - start) / 1e6)
    return first_ms, latencies


def settled_turns(runners: dict, rounds: int, warmup: int = 10, per_turn: int = 3,
                  settle: float = 0.05) -> dict[object, list[float]]:
    """Time several zero-argument callables side by side: ``warmup`` untimed calls each, then ``rounds`` rounds in
    which every callable takes one turn: untimed calls for ``settle`` seconds (at least one), then ``per_turn`` timed
    calls. Returns the raw latencies in ms per key (``rounds * per_turn`` each)."""
    times: dict[object, list[float]] = {key: [] for key in runners}
    for fn in runners.values():
        for _ in range(warmup):
            fn()
    for _ in range(rounds):
        for key, fn in runners.items():
            settled = time.perf_counter() + settle
            fn()
            while time.perf_counter() < settled:
                fn()
            for _ in range(per_turn):
                start = time.perf_counter_ns()
                fn()
                times[key].append((time.perf_counter_ns() - start) / 1e6)
    return times


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (NumPy's default), without NumPy."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summary(latencies_ms: list[float]) -> dict[str, float]:
    """count, median, p10, p90, min, max, trimmed mean (10% each side), std (population) in ms."""
    if not latencies_ms:
        return {}
    values = sorted(latencies_ms)
    n = len(values)
    cut = int(n * TRIM)
    trimmed = values[cut:n - cut] or values
    mean = sum(values) / n
    return {
        "count": n,
        "median": _percentile(values, 0.5),
        "p10": _percentile(values, 0.1),
        "p90": _percentile(values, 0.9),
        "min": values[0],
        "max": values[-1],
        "mean": mean,
        "trimmed_mean": sum(trimmed) / len(trimmed),
        "std": math.sqrt(sum((v - mean) ** 2 for v in values) / n),
    }
