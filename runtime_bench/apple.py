"""The ``mac`` and ``ios[:UDID]`` targets. Both need macOS with Xcode; elsewhere they answer with one line.

``mac``: Core ML artifacts with coremltools on this Mac, once per compute-unit setting.

``ios``: the iOS demo app's headless benchmark mode, driven with ``xcrun devicectl``. The contract the app
implements (ios_demo/README.md):

- launch arguments: ``-emoBenchmark <path in Documents> -emoBenchIterations N -emoBenchWarmup W
  -emoBenchComputeUnits CPU_ONLY|CPU_AND_GPU|CPU_AND_NE|ALL -emoBenchOutput <path in Documents>``
- result file: one JSON object, ``IOS_RESULT_SCHEMA``: ``artifact``, ``compute_units``, ``load_ms``,
  ``first_inference_ms``, ``latencies_ms`` (raw, per iteration), ``peak_memory_mb``, ``device``
  {``model``, ``os``, ``soc``}, ``status`` ("ok" or "failed: reason"), ``app_version``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from emo.runtime_bench.results import Artifact, BenchError, BenchResult, base_row, package_versions
from emo.runtime_bench.stats import measure, summary

COMPUTE_UNITS = ("CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE", "ALL")
IOS_BUNDLE_ID = "org.emomobile.demo"
IOS_RESULT_SCHEMA = "emo-mobile/ios-bench/1"
IOS_DIR = "Documents/emo-bench"
NEEDS_MAC = "the {target} target needs macOS with Xcode (Core ML and devicectl exist only there)"


def require_macos(target: str) -> None:
    if sys.platform != "darwin":
        raise BenchError(NEEDS_MAC.format(target=target))


# ------------------------------------------------------------------------------------------------------- mac
def run_mac(artifact: Artifact, settings: dict, compute_units: str) -> BenchResult:
    """One Core ML artifact on this Mac with one compute-unit setting (CPU_ONLY, CPU_AND_GPU, CPU_AND_NE, ALL)."""
    import platform

    row = base_row(artifact, {"target": "mac", "model": platform.node(), "os": f"macOS {platform.mac_ver()[0]}",
                              "abi": platform.machine()}, {**settings, "compute_units": compute_units})
    if artifact.backend != "coreml":
        row.status = "failed: the mac target runs Core ML artifacts (.mlpackage); use --device host for the others"
        return row
    import coremltools as ct
    import numpy as np

    start = time.perf_counter()
    model = ct.models.MLModel(str(artifact.path), compute_units=getattr(ct.ComputeUnit, compute_units))
    row.load_ms = (time.perf_counter() - start) * 1e3
    description = model.get_spec().description
    if description.input[0].type.WhichOneof("Type") == "imageType":
        from PIL import Image

        _, _, h, w = artifact.input_shape
        feed = {"image": Image.new("RGB", (w, h), (128, 128, 128))}
    else:
        feed = {"image": np.random.default_rng(0).random(artifact.input_shape, dtype=np.float32)}
    row.first_inference_ms, row.latencies_ms = measure(lambda: model.predict(feed), settings["warmup"],
                                                       settings.get("iters"), settings.get("min_seconds"))
    row.summary, row.versions = summary(row.latencies_ms), package_versions("coremltools")
    return row


# ------------------------------------------------------------------------------------------------------- ios
def ios_commands(udid: str, artifact: Path, settings: dict, compute_units: str) -> dict[str, list[str]]:
    """The ``xcrun devicectl`` invocations for one run: copy in, launch headless, copy the result out."""
    remote = f"{IOS_DIR}/{artifact.name}"
    result = f"{IOS_DIR}/result-{artifact.stem}-{compute_units}.json"
    container = ["--domain-type", "appDataContainer", "--domain-identifier", IOS_BUNDLE_ID]
    return {
        "copy_in": ["xcrun", "devicectl", "device", "copy", "to", "--device", udid, "--source", str(artifact),
                    "--destination", remote, *container],
        "launch": ["xcrun", "devicectl", "device", "process", "launch", "--device", udid, "--terminate-existing",
                   IOS_BUNDLE_ID, "-emoBenchmark", remote, "-emoBenchIterations", str(settings.get("iters") or 50),
                   "-emoBenchWarmup", str(settings["warmup"]), "-emoBenchComputeUnits", compute_units,
                   "-emoBenchOutput", result],
        "copy_out": ["xcrun", "devicectl", "device", "copy", "from", "--device", udid, "--source", result,
                     "--destination", "{local}", *container],
    }


def map_ios_result(data: dict, artifact: Artifact, settings: dict, udid: str) -> BenchResult:
    """The demo app's result file -> a result row (raw latencies included)."""
    if data.get("schema") != IOS_RESULT_SCHEMA:
        raise BenchError(f"the app wrote a result of schema {data.get('schema')!r}, expected {IOS_RESULT_SCHEMA}")
    device = {"target": "ios", "udid": udid, **data.get("device", {})}
    row = base_row(artifact, device, {**settings, "compute_units": data.get("compute_units")})
    row.status = data.get("status", "failed: no status in the app's result")
    row.load_ms, row.first_inference_ms = data.get("load_ms"), data.get("first_inference_ms")
    row.latencies_ms = [float(v) for v in data.get("latencies_ms", [])]
    row.peak_memory_mb = data.get("peak_memory_mb")
    row.summary = summary(row.latencies_ms)
    row.versions = {"app": data.get("app_version"), "os": device.get("os")}
    row.parity = data.get("parity") if isinstance(data.get("parity"), dict) else None  # the app's self-test
    return row


def run_ios(artifact: Artifact, udid: str, settings: dict, compute_units: str,
            execute: Callable[[list[str]], str] | None = None, poll_seconds: float = 2.0,
            timeout_s: float = 600.0) -> BenchResult:
    """Copy the artifact into the demo app, launch its headless benchmark, wait for and map its result file."""
    execute = execute or _xcrun
    commands = ios_commands(udid, artifact.path, settings, compute_units)
    execute(commands["copy_in"])
    execute(commands["launch"])
    deadline = time.monotonic() + timeout_s
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "result.json"
        while True:
            try:
                execute([local.as_posix() if part == "{local}" else part for part in commands["copy_out"]])
                return map_ios_result(json.loads(local.read_text()), artifact, settings, udid)
            except (BenchError, FileNotFoundError, json.JSONDecodeError):
                if time.monotonic() > deadline:
                    row = base_row(artifact, {"target": "ios", "udid": udid}, settings)
                    row.status = f"failed: no result from the app after {timeout_s:.0f} s"
                    return row
                time.sleep(poll_seconds)


def _xcrun(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd[:4])} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return proc.stdout


def first_ios_device(execute: Callable[[list[str]], str] | None = None) -> str:
    """The UDID of the only connected iOS device (``xcrun devicectl list devices``)."""
    execute = execute or _xcrun
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "devices.json"
        execute(["xcrun", "devicectl", "list", "devices", "--json-output", str(out)])
        devices = json.loads(out.read_text()).get("result", {}).get("devices", [])
    connected = [d for d in devices if d.get("connectionProperties", {}).get("tunnelState") == "connected"]
    if not connected:
        raise BenchError("no iOS device connected (xcrun devicectl list devices); connect and trust one")
    if len(connected) > 1:
        raise BenchError("several iOS devices connected; pick one with --device ios:UDID")
    return connected[0]["hardwareProperties"]["udid"]
