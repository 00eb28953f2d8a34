"""The one mapper of the demo apps' result (``emo-mobile/app-bench/1``) for Android and iOS, and its JSON Schema
(``emo/contract/schemas/app-bench.schema.json``): the same rules on both platforms, one-line refusals."""

from pathlib import Path

import pytest
from app_bench import sample_result

from emo.runtime_bench import app_result
from emo.runtime_bench.results import Artifact, BenchError

ART = Artifact(Path("/a/emo_1m_tflite_fp32.tflite"), {"variant": "emo_1m", "backend": "tflite", "precision": "fp32",
                                                      "sha256": "ab" * 32})


def _map(data, platform):
    return app_result.map_app_result(data, ART, {"target": "x"}, {"threads": 4, "warmup": 5}, platform)


@pytest.mark.parametrize("platform", ["android", "ios"])
def test_both_platforms_map_alike(platform):
    row = _map(sample_result(platform), platform)
    assert row.ok and row.latencies_ms == [2.5, 2.25, 2.75, 2.5] and row.summary["median"] == 2.5
    assert set(row.device) == {"target", "model", "manufacturer", "soc", "os", "abi"}
    assert row.settings["runner"] == "app" and row.parity["status"] == "passed"
    assert row.versions["app"] == "0.2.0" and row.versions["os"] == row.device["os"]


@pytest.mark.parametrize("platform", ["android", "ios"])
def test_a_failed_self_test_fails_the_row_on_both(platform):
    parity = {**sample_result(platform)["parity"], "status": "failed: max_abs_diff 0.003 > 0.002"}
    row = _map(sample_result(platform, parity=parity), platform)
    assert row.status == "failed: parity on the phone: max_abs_diff 0.003 > 0.002"
    failed = _map(sample_result(platform, status="failed: out of memory", latencies_ms=[], parity=parity), platform)
    assert failed.status == "failed: out of memory"  # the run's own reason comes first
    assert _map(sample_result(platform, parity=None), platform).ok  # no examples file: nothing to fail


@pytest.mark.parametrize(("change", "message"), [
    ({"schema": "emo-mobile/android-bench/1"}, "writes emo-mobile/android-bench/1 (an older app)"),
    ({"schema": "emo-mobile/ios-bench/1"}, "from this version's ios_demo/"),
    ({"schema": "something/else"}, "field 'schema' must be 'emo-mobile/app-bench/1'"),
    ({"app": {"platform": "ios", "version": "0.2.0"}}, "field 'app.platform' must be 'android'"),
    ({"status": "done"}, "field 'status' must be 'ok' or 'failed: <reason>'"),
    ({"latencies_ms": []}, "field 'latencies_ms' must be non-empty when status is 'ok'"),
    ({"latencies_ms": [1.0, "2"]}, "field 'latencies_ms[1]' must be a list of numbers >= 0"),
    ({"load_ms": -1}, "field 'load_ms' must be a number >= 0 or null"),
    ({"threads": 0}, "field 'threads' must be a positive integer or null"),
    ({"device": {"model": "Pixel 7"}}, "field 'device.manufacturer' is missing"),
    ({"runtime": "tflite"}, "field 'runtime' must be one of litert, onnxruntime, coreml, none"),
    ({"accelerator": "gpu"}, "field 'accelerator' must be {requested, used"),
    ({"parity": {"status": "passed"}}, "field 'parity.max_abs_diff' is missing"),
    ({"latencies_ms": [1e300]}, "field 'latencies_ms[0]' must be a list of numbers >= 0"),
])
def test_malformed_results_are_refused_in_one_line(change, message):
    with pytest.raises(BenchError, match=message.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{")
                       .replace("[", r"\[").replace("]", r"\]")) as e:
        _map(sample_result("android", **change), "android")
    assert "\n" not in str(e.value)
    with pytest.raises(BenchError):
        _map([1, 2], "android")
    with pytest.raises(BenchError, match="nests deeper than 32 levels"):
        app_result.loads("[" * 100_000 + "]" * 100_000, "android")


def test_the_samples_are_valid_documents():
    """Every sample the tests feed the mapper is valid against the schema (the contract's validator)."""
    from emo.contract import app_result as contract

    for platform in ("android", "ios"):
        contract.validate(sample_result(platform), "sample", platform)
