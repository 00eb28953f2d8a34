"""The ``mac`` and ``ios[:UDID]`` targets. Both need macOS with Xcode; elsewhere they answer with one line.

``mac``: Core ML artifacts with coremltools on this Mac, once per compute-unit setting.

``ios``: the iOS demo app's headless benchmark mode, driven with ``xcrun devicectl`` (contract:
ios_demo/BENCHMARK_MODE.md). The artifact, its sidecar and its bundled examples are copied into the app's
``Documents/emo-bench/`` under names new for every run (``model-TOKEN.mlpackage``, ``model-TOKEN.json``,
``model-TOKEN.examples.json``), the app is launched with ``-emoBenchmark model-TOKEN.mlpackage -emoBenchIterations N
-emoBenchWarmup W -emoBenchComputeUnits U -emoBenchOutput result-TOKEN.json``, and the result file
(``emo-mobile/app-bench/1``, the same as Android's) is copied back and mapped by ``emo.runtime_bench.app_result``.
``devicectl`` cannot delete files, so fresh names are what keeps runs apart: an examples file or a package left by
an earlier run is never paired with this artifact, nor a directory copied onto an old one, nor an old result read;
the app deletes what earlier runs left before it reads the folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from emo.contract import examples as examples_format
from emo.contract.timing import measure, summary
from emo.runtime_bench import app_result
from emo.runtime_bench.results import Artifact, BenchError, BenchResult, base_row, package_versions
from emo.runtime_bench.targets import Run, Settings, Target

COMPUTE_UNITS = ("CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE", "ALL")
IOS_BUNDLE_ID = "org.emomobile.demo"
IOS_DIR = "Documents/emo-bench"
NEEDS_MAC = "the {target} target needs macOS with Xcode (Core ML and devicectl exist only there)"


def require_macos(target: str) -> None:
    if sys.platform != "darwin":
        raise BenchError(NEEDS_MAC.format(target=target))


# ------------------------------------------------------------------------------------------------------- mac
def run_mac(artifact: Artifact, settings: Settings, compute_units: str) -> BenchResult:
    """One Core ML artifact on this Mac with one compute-unit setting (CPU_ONLY, CPU_AND_GPU, CPU_AND_NE, ALL)."""
    import platform

    row = base_row(artifact, {"target": "mac", "model": platform.node(), "os": f"macOS {platform.mac_ver()[0]}",
                              "abi": platform.machine()}, settings.as_row(compute_units=compute_units))
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
    row.first_inference_ms, row.latencies_ms = measure(lambda: model.predict(feed), settings.warmup, settings.iters,
                                                       settings.min_seconds)
    row.summary, row.versions = summary(row.latencies_ms), package_versions("coremltools")
    return row


# ------------------------------------------------------------------------------------------------------- ios
def ios_commands(udid: str, artifact: Artifact, settings: Settings, compute_units: str, token: str) -> dict:
    """The ``xcrun devicectl`` invocations for one run: copy in (artifact, sidecar, examples when present), launch
    headless, copy the result out. Names inside ``Documents/emo-bench`` made of ``token`` (new for every run), never
    the artifact's own name."""
    if compute_units not in COMPUTE_UNITS:
        raise ValueError(f"compute units {compute_units} are not one of {', '.join(COMPUTE_UNITS)}")
    container = ["--domain-type", "appDataContainer", "--domain-identifier", IOS_BUNDLE_ID]
    stem = f"model-{token}"
    model = f"{stem}{artifact.path.suffix}"
    copies = [(artifact.path, model), (artifact.path.with_suffix(".json"), f"{stem}.json")]
    examples = examples_format.examples_path(artifact.path)
    if examples.is_file():
        copies.append((examples, f"{stem}.examples.json"))
    result = f"result-{token}.json"

    def copy_to(local: Path, name: str) -> list[str]:
        return ["xcrun", "devicectl", "device", "copy", "to", "--device", udid, "--source", str(local),
                "--destination", f"{IOS_DIR}/{name}", *container]

    return {
        "copy_in": [copy_to(local, name) for local, name in copies],
        "launch": ["xcrun", "devicectl", "device", "process", "launch", "--device", udid, "--terminate-existing",
                   IOS_BUNDLE_ID, "-emoBenchmark", model,
                   "-emoBenchIterations", str(settings.iters or 50), "-emoBenchWarmup", str(settings.warmup),
                   "-emoBenchComputeUnits", compute_units, "-emoBenchOutput", result],
        "copy_out": ["xcrun", "devicectl", "device", "copy", "from", "--device", udid, "--source",
                     f"{IOS_DIR}/{result}", "--destination", "{local}", *container],
    }


def map_ios_result(data: dict, artifact: Artifact, settings: dict, udid: str) -> BenchResult:
    """The demo app's result file (``emo-mobile/app-bench/1``, shared with Android) -> a result row."""
    return app_result.map_app_result(data, artifact, {"target": "ios", "udid": udid}, settings, "ios")


def run_ios(artifact: Artifact, udid: str, settings: Settings, compute_units: str,
            execute: Callable[[list[str]], str] | None = None, poll_seconds: float = 2.0,
            timeout_s: float = 600.0) -> BenchResult:
    """Copy the artifact with its sidecar and examples into the demo app, launch its headless benchmark, wait for
    its result file and map it. A copy or launch that fails, or a malformed result, fails the row with the reason."""
    execute = execute or _xcrun
    row = base_row(artifact, {"target": "ios", "udid": udid},
                   settings.as_row(runner="app", compute_units=compute_units))
    try:
        commands = ios_commands(udid, artifact, settings, compute_units, uuid.uuid4().hex[:12])
        for copy in commands["copy_in"]:
            execute(copy)
        execute(commands["launch"])
        deadline = time.monotonic() + timeout_s
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "result.json"
            while True:
                try:  # the file appears whole (the app writes it atomically): until then the copy fails
                    execute([local.as_posix() if part == "{local}" else part for part in commands["copy_out"]])
                    text = local.read_text(encoding="utf-8")
                    break
                except (BenchError, FileNotFoundError):
                    if time.monotonic() > deadline:
                        raise BenchError(f"no result from the app after {timeout_s:.0f} s") from None
                    time.sleep(poll_seconds)
        data = app_result.loads(text, "ios")
        return map_ios_result(data, artifact, settings.as_row(compute_units=compute_units), udid)
    except (BenchError, ValueError) as e:
        row.status = f"failed: {e}"
        return row


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


class MacTarget(Target):
    """``mac``: Core ML artifacts with coremltools on this Mac, one run per compute-unit setting."""

    kind = "mac"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        require_macos("mac")
        self.units = list(settings.compute_units) or list(COMPUTE_UNITS)

    def supports(self, artifact: Artifact) -> str | None:
        return None if artifact.backend == "coreml" else (
            "the mac target runs Core ML artifacts (.mlpackage); use --device host for the others")

    def describe(self) -> dict:
        import platform

        return {"target": "mac", "model": platform.node(), "os": f"macOS {platform.mac_ver()[0]}",
                "abi": platform.machine()}

    def runs(self, artifacts: list[Artifact]) -> list[Run]:
        return [Run([a], f"{a.path.name} {unit}", lambda usable, u=unit: [run_mac(usable[0], self.settings, u)],
                    self.settings.as_row(compute_units=unit)) for a in artifacts for unit in self.units]


class IosTarget(Target):
    """``ios[:UDID]``: the iOS demo app's headless benchmark mode through ``xcrun devicectl``."""

    kind = "ios"

    def __init__(self, settings: Settings, udid: str | None) -> None:
        super().__init__(settings)
        require_macos("ios")
        self.udid = udid or first_ios_device()
        self.units = list(settings.compute_units) or ["ALL"]

    def supports(self, artifact: Artifact) -> str | None:
        return None if artifact.backend == "coreml" else "the iOS demo app runs Core ML artifacts (.mlpackage)"

    def describe(self) -> dict:
        return {"target": "ios", "udid": self.udid}

    def runs(self, artifacts: list[Artifact]) -> list[Run]:
        return [Run([a], f"{a.path.name} {unit}",
                    lambda usable, u=unit: [run_ios(usable[0], self.udid, self.settings, u)],
                    self.settings.as_row(runner="app", compute_units=unit)) for a in artifacts for unit in self.units]
