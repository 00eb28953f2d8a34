"""The one mapper of the demo apps' result (``emo-mobile/app-bench/1``) for Android and iOS, and its JSON Schema
(``emo/contract/schemas/app-bench.schema.json``): the same rules on both platforms, one-line refusals."""

import json
from pathlib import Path

import pytest
from app_bench import sample_result

from emo.runtime_bench import app_result
from emo.runtime_bench.results import Artifact, BenchError

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "emo" / "contract" / "schemas" / "app-bench.schema.json"
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
    ({"schema": "something/else"}, "expected emo-mobile/app-bench/1; install a matching demo app"),
    ({"app": {"platform": "ios", "version": "0.2.0"}}, "field 'app.platform' must be 'android'"),
    ({"status": "done"}, "field 'status' must be 'ok' or 'failed: <reason>'"),
    ({"latencies_ms": []}, "field 'latencies_ms' must be non-empty when status is 'ok'"),
    ({"latencies_ms": [1.0, "2"]}, "field 'latencies_ms' must be a list of numbers >= 0"),
    ({"load_ms": -1}, "field 'load_ms' must be a number >= 0 or null"),
    ({"threads": 0}, "field 'threads' must be a positive integer or null"),
    ({"device": {"model": "Pixel 7"}}, "field 'device' must be an object of strings"),
    ({"runtime": "tflite"}, "field 'runtime' must be one of litert, onnxruntime, coreml, none"),
    ({"accelerator": "gpu"}, "field 'accelerator' must be {requested, used"),
    ({"parity": {"status": "passed"}}, "field 'parity' must be null or an object with max_abs_diff"),
])
def test_malformed_results_are_refused_in_one_line(change, message):
    with pytest.raises(BenchError, match=message.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{")) as e:
        _map(sample_result("android", **change), "android")
    assert "\n" not in str(e.value)
    with pytest.raises(BenchError):
        _map([1, 2], "android")


def test_the_schema_file_and_the_mapper_agree():
    schema = json.loads(SCHEMA_FILE.read_text())
    props = schema["properties"]
    assert props["schema"]["const"] == app_result.APP_RESULT_SCHEMA == schema["$id"]
    assert tuple(props["device"]["required"]) == app_result.DEVICE_FIELDS
    assert tuple(props["parity"]["oneOf"][1]["required"]) == app_result.PARITY_FIELDS
    assert tuple(props["runtime"]["enum"]) == app_result.RUNTIMES
    assert tuple(props["app"]["properties"]["platform"]["enum"]) == app_result.PLATFORMS
    assert props["device"]["properties"]["os"]["pattern"] == app_result.OS_PATTERN.pattern
    for platform in ("android", "ios"):  # every sample the tests feed the mapper is a valid document
        validate(sample_result(platform), schema)


def validate(document, schema: dict) -> None:
    """The JSON Schema keywords this schema uses (type, const, enum, required, properties, additionalProperties,
    items, minimum, maximum, minLength, pattern, oneOf): enough to check the cores' files without a schema library."""
    import re

    def check(value, rule, where):
        if "oneOf" in rule:
            passed = 0
            for option in rule["oneOf"]:
                try:
                    check(value, option, where)
                    passed += 1
                except AssertionError:
                    pass
            assert passed == 1, f"{where}: matches {passed} of oneOf"
            return
        types = rule.get("type")
        if types is not None:
            names = [types] if isinstance(types, str) else types
            kinds = {"object": dict, "array": list, "string": str, "null": type(None), "boolean": bool}
            ok = any((name == "integer" and isinstance(value, int) and not isinstance(value, bool))
                     or (name == "number" and isinstance(value, int | float) and not isinstance(value, bool))
                     or (name in kinds and isinstance(value, kinds[name])) for name in names)
            assert ok, f"{where}: {value!r} is not {types}"
        if "const" in rule:
            assert value == rule["const"], f"{where}: {value!r} != {rule['const']!r}"
        if "enum" in rule:
            assert value in rule["enum"], f"{where}: {value!r} not in {rule['enum']}"
        if isinstance(value, int | float) and not isinstance(value, bool):
            assert value >= rule.get("minimum", value) and value <= rule.get("maximum", value), f"{where}: {value}"
        if isinstance(value, str):
            assert len(value) >= rule.get("minLength", 0), where
            assert "pattern" not in rule or re.search(rule["pattern"], value), f"{where}: {value!r}"
        if isinstance(value, dict):
            for key in rule.get("required", []):
                assert key in value, f"{where}: '{key}' is missing"
            props = rule.get("properties", {})
            extra = rule.get("additionalProperties", True)
            for key, item in value.items():
                if key in props:
                    check(item, props[key], f"{where}.{key}")
                elif extra is False:
                    raise AssertionError(f"{where}: unexpected '{key}'")
                elif isinstance(extra, dict):
                    check(item, extra, f"{where}.{key}")
        if isinstance(value, list) and "items" in rule:
            for i, item in enumerate(value):
                check(item, rule["items"], f"{where}[{i}]")

    check(document, schema, "result")
