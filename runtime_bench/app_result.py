"""The demo apps' benchmark result (``emo-mobile/app-bench/1``) -> one emo-bench row, for Android and iOS alike.

Both apps write the same file (JSON Schema: ``emo/contract/schemas/app-bench.schema.json``; writers:
``org.emomobile.core.AppBenchResult`` and EMOCore's ``AppBenchResult``), so one mapper reads both and applies one
rule: a failed self-test (the bundled examples through the phone's runtime) fails the row, whatever the timing.
The checks here are the schema's, done by hand so that emo-bench needs no JSON Schema library on a machine that
only has ``adb`` or Xcode: a malformed file gives one line naming the field, never a traceback.
"""

from __future__ import annotations

import re

from emo.runtime_bench.results import Artifact, BenchError, BenchResult, base_row
from emo.runtime_bench.stats import summary

APP_RESULT_SCHEMA = "emo-mobile/app-bench/1"
# what the apps of earlier versions wrote: refused with the fix (install the app of this version)
OLD_SCHEMAS = {"emo-mobile/android-bench/1": "android_demo/", "emo-mobile/ios-bench/1": "ios_demo/"}
PLATFORMS = ("android", "ios")
RUNTIMES = ("litert", "onnxruntime", "coreml", "none")
DEVICE_FIELDS = ("model", "manufacturer", "soc", "os", "abi")
OS_PATTERN = re.compile(r"^(Android .+ \(API [0-9]+\)|iOS [0-9]+\.[0-9]+(\.[0-9]+)?)$")
PARITY_FIELDS = ("max_abs_diff", "cosine", "top1_agreement", "top5_agreement", "num_examples", "status")


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bad(field: str, expected: str, value) -> BenchError:
    shown = repr(value)[:60]
    return BenchError(f"the app's result is malformed: field '{field}' must be {expected}, not {shown}; "
                      "install the demo app of this emo-mobile version")


def _optional_number(data: dict, field: str) -> float | None:
    value = data.get(field)
    if value is not None and not (_number(value) and value >= 0):
        raise _bad(field, "a number >= 0 or null", value)
    return value


def check(data, platform: str) -> dict:
    """``data`` if it is an ``emo-mobile/app-bench/1`` result of ``platform``'s app, else a one-line BenchError."""
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema in OLD_SCHEMAS:
        raise BenchError(f"the installed demo app writes {schema} (an older app); emo-bench reads "
                         f"{APP_RESULT_SCHEMA}: build and install the app from this version's {OLD_SCHEMAS[schema]}")
    if schema != APP_RESULT_SCHEMA:
        raise BenchError(f"the app wrote a result of schema {schema!r}, expected {APP_RESULT_SCHEMA}; "
                         "install a matching demo app")
    app = data.get("app")
    if not isinstance(app, dict) or app.get("platform") not in PLATFORMS or not isinstance(app.get("version"), str):
        raise _bad("app", "{platform: android|ios, version}", app)
    if app["platform"] != platform:
        raise _bad("app.platform", f"'{platform}' (the {platform} target)", app["platform"])
    if data.get("runtime") not in RUNTIMES:
        raise _bad("runtime", f"one of {', '.join(RUNTIMES)}", data.get("runtime"))
    status = data.get("status")
    if not isinstance(status, str) or not (status == "ok" or status.startswith("failed: ")):
        raise _bad("status", "'ok' or 'failed: <reason>'", status)
    latencies = data.get("latencies_ms")
    if not isinstance(latencies, list) or not all(_number(v) and v >= 0 for v in latencies):
        raise _bad("latencies_ms", "a list of numbers >= 0", latencies)
    if status == "ok" and not latencies:
        raise _bad("latencies_ms", "non-empty when status is 'ok'", latencies)
    for field in ("load_ms", "first_inference_ms", "peak_memory_mb"):
        _optional_number(data, field)
    threads = data.get("threads")
    if threads is not None and not (isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1):
        raise _bad("threads", "a positive integer or null", threads)
    device = data.get("device")
    if not isinstance(device, dict) or not all(isinstance(device.get(k), str) for k in DEVICE_FIELDS):
        raise _bad("device", f"an object of strings {', '.join(DEVICE_FIELDS)}", device)
    if not OS_PATTERN.match(device["os"]):
        raise _bad("device.os", "'Android <release> (API <n>)' or 'iOS <major>.<minor>'", device["os"])
    accelerator = data.get("accelerator")
    if not (isinstance(accelerator, dict) and isinstance(accelerator.get("used"), list)
            and all(isinstance(a, str) for a in accelerator["used"]) and isinstance(accelerator.get("source"), str)):
        raise _bad("accelerator", "{requested, used: [names], source, nodes, detail}", accelerator)
    for field in ("request", "io"):
        if not isinstance(data.get(field), dict):
            raise _bad(field, "an object", data.get(field))
    parity = data.get("parity")
    if parity is not None:
        if not isinstance(parity, dict) or not all(k in parity for k in PARITY_FIELDS):
            raise _bad("parity", f"null or an object with {', '.join(PARITY_FIELDS)}", parity)
        if not isinstance(parity["status"], str) or not (parity["status"] == "passed"
                                                         or parity["status"].startswith("failed: ")):
            raise _bad("parity.status", "'passed' or 'failed: <reason>'", parity["status"])
    return data


def map_app_result(data, artifact: Artifact, device: dict, settings: dict, platform: str) -> BenchResult:
    """The app's result file -> a result row: raw latencies (summary computed here, as for every target), the app's
    device facts over the host's, requested vs used accelerator, and the self-test, which fails the row if it
    failed (``failed: parity on the phone: ...``) on both platforms."""
    data = check(data, platform)
    accelerator = data["accelerator"]
    row = base_row(artifact, {**device, **{k: data["device"][k] for k in DEVICE_FIELDS}},
                   {**settings, "runner": "app", "runtime": data["runtime"], "request": data["request"],
                    "accelerator": accelerator.get("requested"), "accelerator_used": accelerator["used"],
                    "accelerator_source": accelerator["source"], "accelerator_nodes": accelerator.get("nodes"),
                    "accelerator_detail": accelerator.get("detail"), "threads": data.get("threads"),
                    "io": data["io"]})
    row.status = data["status"]
    row.load_ms, row.first_inference_ms = data.get("load_ms"), data.get("first_inference_ms")
    row.latencies_ms = [float(v) for v in data["latencies_ms"]]
    row.peak_memory_mb = data.get("peak_memory_mb")
    row.summary = summary(row.latencies_ms) if row.latencies_ms else {}
    row.versions = {"app": data["app"]["version"], "runtime": data["runtime"],
                    "runtime_version": data.get("runtime_version"), "os": data["device"]["os"]}
    row.parity = data.get("parity")
    if row.ok and row.parity and row.parity["status"].startswith("failed"):
        row.status = f"failed: parity on the phone: {row.parity['status'].removeprefix('failed: ')}"
    return row
