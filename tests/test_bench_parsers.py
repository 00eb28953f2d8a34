"""Runner output parsers against every real output in shared/reference/runner_outputs (units, prefixes, failures)."""

from pathlib import Path

import pytest

from emo.contract.timing import measure, summary
from emo.runtime_bench.parsers import parse_benchmark_model, parse_executor_runner, parse_onnxruntime_perf_test
from emo_testutil import REFERENCE

OUTPUTS = REFERENCE / "runner_outputs"


def _read(name: str) -> str:
    path = OUTPUTS / name
    if not path.exists():
        pytest.skip(f"runner outputs not found at {OUTPUTS}")
    return path.read_text()


@pytest.mark.parametrize(("name", "expected"), [
    # current summary line + stats line, older "Peak memory footprint"
    ("litert_benchmark_model_sample01.txt", {"count": 50, "avg_ms": 249.684, "min_ms": 247.067, "max_ms": 254.474,
                                             "std_ms": 1.442, "init_ms": 16.242, "first_ms": 360.262,
                                             "peak_memory_mb": 138.809}),
    ("litert_benchmark_model_sample02.txt", {"count": 50, "avg_ms": 92.5712, "init_ms": 365.972,
                                             "peak_memory_mb": 61.0547}),
    # scientific notation, warm-up "count=1 curr=..." line first, op profiling, "Memory footprint delta"
    ("litert_benchmark_model_sample06.txt", {"count": 50, "avg_ms": 2950.34, "min_ms": 2727.568,
                                             "max_ms": 3189.954, "first_ms": 3512.391, "warmup_avg_ms": 3512.39,
                                             "peak_memory_mb": 46.0859}),
    # logcat prefix, summary line only
    ("litert_benchmark_model_sample07.txt", {"avg_ms": 1.68792, "init_ms": 1007.529, "first_ms": 4.098}),
    # oldest generation: "Timings (microseconds): count=..." and "Average inference timings in us: Warmup: ..."
    ("litert_benchmark_model_sample08.txt", {"count": 50, "avg_ms": 79.7609, "min_ms": 77.385, "init_ms": 38.467,
                                             "warmup_avg_ms": 83.235}),
    # LiteRT CompiledModel block in milliseconds
    ("litert_benchmark_model_sample11.txt", {"count": 10, "avg_ms": 7430.2, "min_ms": 7416.4, "max_ms": 7448.86,
                                             "std_ms": 9.92, "init_ms": 23744.73, "first_ms": 7441.04,
                                             "peak_memory_mb": 6391.74}),
])
def test_benchmark_model(name, expected):
    report = parse_benchmark_model(_read(name))
    assert report.failed is None
    for key, value in expected.items():
        assert getattr(report, key) == pytest.approx(value, rel=1e-9), key


def test_benchmark_model_failure():
    report = parse_benchmark_model(_read("litert_benchmark_model_sample03.txt"))
    assert report.failed == ("Failed to apply NNAPI delegate.; NN API returned error ANEURALNETWORKS_OP_FAILED "
                             "at line 3779 while completing NNAPI compilation.")


def test_all_equal_stats_line():
    report = parse_benchmark_model("count=20 curr=1500\nInference timings in us: Init: 10, First inference: 2000, "
                                   "Warmup (avg): 1600, Inference (avg): 1500\n")
    assert (report.count, report.min_ms, report.max_ms, report.avg_ms) == (20, 1.5, 1.5, 1.5)


def test_newer_stats_with_median_and_info_prefix():
    text = ("INFO: count=100 first=900 curr=1000 min=800 max=1200 avg=1000 std=50 p5=850 median=990 p95=1150\n"
            "INFO: Inference timings in us: Init: 5, First inference: 900, Warmup (avg): 950, Inference (avg): 1000\n")
    report = parse_benchmark_model(text)
    assert report.median_ms == 0.99 and report.extra == {"p5_ms": 0.85, "p95_ms": 1.15} and report.count == 100


def test_no_summary_is_a_failure():
    assert parse_benchmark_model("Segmentation fault\n").failed == "no timing summary in the runner's output"


def test_onnxruntime_perf_test_units():
    report = parse_onnxruntime_perf_test(_read("onnxruntime_perf_test_sample01.txt"))
    assert report.avg_ms == pytest.approx(1.85739)          # printed in ms
    assert report.median_ms == pytest.approx(1.85674)       # printed in seconds
    assert report.p90_ms == pytest.approx(1.87215) and report.min_ms == pytest.approx(1.83404)
    assert report.init_ms == pytest.approx(10.2016)         # seconds -> ms
    assert report.count == 100 and report.first_ms == 2
    assert report.peak_memory_mb == pytest.approx(36696064 / 2**20)


def test_onnxruntime_perf_test_older_format():
    report = parse_onnxruntime_perf_test("Average time cost:3.5 ms\nP50 Latency is 0.0034sec\n")
    assert report.avg_ms == 3.5 and report.median_ms == pytest.approx(3.4)


def test_onnxruntime_perf_test_older_summary_has_count_min_max_percentiles():
    text = (Path(__file__).parent / "data" / "onnxruntime_perf_test_older_summary.txt").read_text()
    report = parse_onnxruntime_perf_test(text)
    assert report.failed is None and report.count == 1000 and report.avg_ms == pytest.approx(58.8027)
    assert report.min_ms == pytest.approx(55.9777) and report.max_ms == pytest.approx(71.2345)
    assert report.median_ms == pytest.approx(58.7611) and report.p90_ms == pytest.approx(60.1244)
    assert report.extra == pytest.approx({"p95_ms": 61.2034, "p99_ms": 65.4321, "p999_ms": 70.1234})
    assert report.init_ms == pytest.approx(32.3455)
    assert report.summary() == pytest.approx({"count": 1000, "median": 58.7611, "p90": 60.1244, "min": 55.9777,
                                              "max": 71.2345, "mean": 58.8027})


def test_executor_runner():
    text = ("I 00:00:01.234567 executorch:executor_runner.cpp:210] Model executed successfully 50 time(s) in "
            "612.500000 ms.\n")
    report = parse_executor_runner(text)
    assert report.count == 50 and report.avg_ms == pytest.approx(12.25)


def test_summary_and_measure():
    s = summary([5.0, 1.0, 2.0, 3.0, 4.0, 100.0, 6.0, 7.0, 8.0, 9.0])
    assert s["count"] == 10 and s["median"] == 5.5 and s["min"] == 1.0 and s["max"] == 100.0
    assert s["trimmed_mean"] == pytest.approx(5.5)          # 1 and 100 trimmed
    assert s["p90"] == pytest.approx(18.1) and s["p10"] == pytest.approx(1.9)
    calls = []
    first, latencies = measure(lambda: calls.append(1), warmup=3, iters=7)
    assert len(calls) == 10 and len(latencies) == 7 and first >= 0
    _, timed = measure(lambda: None, warmup=1, iters=1, min_seconds=0.05)
    assert len(timed) > 1


def test_fixture_folder_is_covered():
    """Every sample in runner_outputs is exercised above."""
    names = {p.name for p in Path(OUTPUTS).glob("*.txt")}
    tested = {f"litert_benchmark_model_sample{n}.txt" for n in ("01", "02", "03", "06", "07", "08", "11")}
    assert names == tested | {"onnxruntime_perf_test_sample01.txt"}
