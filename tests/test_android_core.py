"""android_demo/core (pure Kotlin) compiled with Debian's kotlinc 1.3 and its JUnit suite run on the JVM against real
exported artifacts and their bundled examples (preprocessing bit-exact with emo.preprocess, top-5, agreement,
sidecar errors, the benchmark result file)."""

import json
import re

import jvm
import pytest


@pytest.fixture(scope="module")
def junit(mobile_artifacts, sample_pixels, tmp_path_factory):
    why = jvm.missing_tools()
    if why:
        pytest.fail(why)  # CI installs them (make sysdeps): a missing toolchain is a failure, not a skip
    out = tmp_path_factory.mktemp("junit-out")
    proc = jvm.run_junit(jvm.compiled_core(), "org.emomobile.core.CoreTest",
                         {"emo.artifacts": mobile_artifacts, "emo.pixels": sample_pixels, "emo.out": out})
    return proc, out


def test_junit_suite_passes(junit):
    proc, _ = junit
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    ran = re.search(r"OK \((\d+) tests\)", proc.stdout)
    assert ran and int(ran.group(1)) >= 9, proc.stdout[-2000:]


def test_kotlin_bench_result_is_the_documented_schema(junit):
    _, out = junit
    data = json.loads((out / "android-bench-result.json").read_text())
    assert data["schema"] == "emo-mobile/android-bench/1"
    assert data["latencies_ms"] == [1.5, 1.25, 1.75] and data["parity"]["max_abs_diff"] == 0.0
