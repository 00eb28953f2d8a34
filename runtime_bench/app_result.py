"""The demo apps' benchmark result (``emo-mobile/app-bench/1``) -> one emo-bench row, for Android and iOS alike.

Both apps write the same file (JSON Schema: ``emo/contract/schemas/app-bench.schema.json``; writers:
``org.emomobile.core.AppBenchResult`` and EMOCore's ``AppBenchResult``), so one mapper reads both and applies one
rule: a failed self-test (the bundled examples through the phone's runtime) fails the row, whatever the timing.
The checks are the schema's (``emo.contract.app_result``): a malformed file gives one line naming the field, never
a traceback.
"""

from __future__ import annotations

from emo.contract import app_result as result_contract
from emo.contract.text import printable
from emo.runtime_bench.results import Artifact, BenchError, BenchResult, base_row
from emo.runtime_bench.stats import summary

APP_RESULT_SCHEMA = result_contract.SCHEMA


def check(data, platform: str) -> dict:
    """``data`` if it is an ``emo-mobile/app-bench/1`` result of ``platform``'s app, else a one-line BenchError
    (the contract's validator: ``emo.contract.app_result``)."""
    try:
        return result_contract.validate(data, "result.json", platform)
    except result_contract.ResultError as e:
        raise BenchError(str(e)) from None


def loads(text: str | bytes, platform: str) -> dict:
    """The app's result file as pulled from the device: bounded JSON (no RecursionError, no NaN), then ``check``."""
    try:
        return result_contract.loads(text, "result.json", platform)
    except result_contract.ResultError as e:
        raise BenchError(str(e)) from None


def map_app_result(data, artifact: Artifact, device: dict, settings: dict, platform: str) -> BenchResult:
    """The app's result file -> a result row: raw latencies (summary computed here, as for every target), the app's
    device facts over the host's, requested vs used accelerator, and the self-test, which fails the row if it
    failed (``failed: parity on the phone: ...``) on both platforms."""
    data = check(data, platform)
    accelerator = data["accelerator"]
    row = base_row(artifact, {**device, **{k: printable(v) for k, v in data["device"].items()}},
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
