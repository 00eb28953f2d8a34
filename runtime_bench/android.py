"""The ``adb[:SERIAL]`` target: Android phones through the real ``adb`` binary and the runtimes' own runners.

Per artifact: push runner + artifact + sidecar to ``/data/local/tmp/emo-bench/``, run the runner (pinned to the
big cores with ``taskset`` when the device has it), write its output to a file on the device, pull that file
back, parse it, and clean up. Runner binaries cannot be downloaded by this tool: pass ``--runner PATH`` or put
them in ``runner_cache()/{abi}/``; a missing one fails the row with instructions to obtain it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from emo.runtime_bench.parsers import PARSERS
from emo.runtime_bench.results import Artifact, BenchError, BenchResult, base_row

DEVICE_DIR = "/data/local/tmp/emo-bench"
SAFE_SUFFIXES = (".tflite", ".onnx", ".ort", ".pte")
ADB_TIMEOUT_S = 60
RUN_TIMEOUT_S = 1800

RUNNER_FOR_BACKEND = {"tflite": "benchmark_model", "onnx": "onnxruntime_perf_test", "ort": "onnxruntime_perf_test",
                      "executorch": "executor_runner"}
HOW_TO_GET = {
    "benchmark_model": "LiteRT's benchmark_model: the prebuilt 'android_aarch64_benchmark_model' of the LiteRT/"
                       "TensorFlow Lite releases, or `bazel build -c opt --config=android_arm64 "
                       "//tensorflow/lite/tools/benchmark:benchmark_model`",
    "onnxruntime_perf_test": "ONNX Runtime's onnxruntime_perf_test: build ONNX Runtime for Android "
                             "(`./build.sh --android --android_abi arm64-v8a --android_api 29 --android_sdk_path SDK "
                             "--android_ndk_path NDK --config Release --use_nnapi --use_xnnpack`); the binary is "
                             "build/Android/Release/onnxruntime_perf_test",
    "executor_runner": "ExecuTorch's executor_runner with XNNPACK: cmake with the NDK toolchain "
                       "(-DANDROID_ABI=arm64-v8a -DEXECUTORCH_BUILD_XNNPACK=ON "
                       "-DEXECUTORCH_BUILD_EXECUTOR_RUNNER=ON), target executor_runner",
}
DELEGATE_FLAGS = {  # --delegate -> runner flags
    "benchmark_model": {"cpu": ["--use_xnnpack=false"], "xnnpack": ["--use_xnnpack=true"],
                        "gpu": ["--use_gpu=true"], "nnapi": ["--use_nnapi=true"]},
    "onnxruntime_perf_test": {"cpu": ["-e", "cpu"], "xnnpack": ["-e", "xnnpack"], "nnapi": ["-e", "nnapi"],
                              "qnn": ["-e", "qnn"]},
    "executor_runner": {"xnnpack": [], "cpu": []},  # the delegate is inside the .pte
}


def runner_cache() -> Path:
    """Where runner binaries are looked for: ``~/.cache/emo-bench/runners`` (``{abi}/{runner name}``)."""
    return Path.home() / ".cache" / "emo-bench" / "runners"


def find_adb() -> str:
    """``adb`` on PATH, else ``$ANDROID_HOME/platform-tools/adb`` (the SDK's own location)."""
    found = shutil.which("adb")
    if found:
        return found
    home = os.environ.get("ANDROID_HOME") or os.environ.get("ANDROID_SDK_ROOT")
    if home and (Path(home) / "platform-tools" / "adb").exists():
        return str(Path(home) / "platform-tools" / "adb")
    raise BenchError("adb not found: install Android platform-tools (Debian/Ubuntu: apt-get install adb) or put "
                     "$ANDROID_HOME/platform-tools on PATH")


@dataclass
class Adb:
    binary: str
    serial: str | None = None

    def __call__(self, *args: str, timeout: float = ADB_TIMEOUT_S, check: bool = True) -> str:
        cmd = [self.binary, *(["-s", self.serial] if self.serial else []), *args]
        try:  # adb and device tools may print any bytes: decode leniently rather than fail on them
            proc = subprocess.run(cmd, capture_output=True, encoding="utf-8", errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"adb {' '.join(args[:2])} timed out after {timeout:.0f} s") from None
        if check and proc.returncode != 0:
            reason = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
            raise BenchError(f"adb {' '.join(args[:2])} failed: {reason[-1] if reason else proc.returncode}")
        return proc.stdout

    def shell(self, command: str, timeout: float = ADB_TIMEOUT_S, check: bool = True) -> str:
        """Run ``command`` in the device's shell. ``adb shell`` joins its words into one string that the device's
        ``sh`` parses, so every word that is not a literal of this module must come through ``quote``."""
        return self("shell", command, timeout=timeout, check=check)


def quote(*words: object) -> str:
    """Words for the device shell, each quoted: a file name like ``x$(reboot).tflite`` stays one inert word."""
    return " ".join(shlex.quote(str(w)) for w in words)


def list_devices(adb: Adb) -> list[tuple[str, str]]:
    """(serial, state) from ``adb devices``: state is device, unauthorized, offline, ..."""
    devices = []
    for line in adb("devices").splitlines():
        parts = line.split()
        # skip the header and the daemon's own start-up lines ("* daemon started successfully")
        if len(parts) >= 2 and not line.startswith(("*", "List of devices")):
            devices.append((parts[0], parts[1]))
    return devices


def select_device(adb_binary: str, serial: str | None) -> Adb:
    devices = list_devices(Adb(adb_binary))
    if serial:
        states = dict(devices)
        if serial not in states:
            listed = ", ".join(s for s, _ in devices) or "none"
            raise BenchError(f"device {serial} is not attached (adb devices lists: {listed})")
        chosen = [(serial, states[serial])]
    else:
        chosen = devices
    if not chosen:
        raise BenchError("no Android device attached (adb devices lists none): connect a phone with USB debugging on")
    if len(chosen) > 1:
        raise BenchError(f"several devices attached ({', '.join(s for s, _ in chosen)}): "
                         f"pick one with --device adb:SERIAL")
    serial, state = chosen[0]
    if state == "unauthorized":
        raise BenchError(f"device {serial} is unauthorized: unlock it and accept the USB debugging prompt")
    if state != "device":
        raise BenchError(f"device {serial} is {state}: reconnect it (or run `adb kill-server`) and try again")
    return Adb(adb_binary, serial)


def describe_device(adb: Adb) -> dict:
    """Model, SoC, Android version, ABI, CPU max frequencies, big cores, thermal status (when readable)."""
    props = dict(re.findall(r"^\[([^\]]+)\]: \[([^\]]*)\]", adb.shell("getprop"), flags=re.M))
    freqs_out = adb.shell("cat /sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq", check=False)
    freqs = [int(f) for f in freqs_out.split() if f.isdigit()]
    big = [i for i, f in enumerate(freqs) if freqs and f == max(freqs)]
    return {
        "target": "adb", "serial": adb.serial,
        "model": f"{props.get('ro.product.manufacturer', '')} {props.get('ro.product.model', '?')}".strip(),
        "soc": props.get("ro.soc.model") or props.get("ro.board.platform") or props.get("ro.hardware", "?"),
        "os": f"Android {props.get('ro.build.version.release', '?')} (API {props.get('ro.build.version.sdk', '?')})",
        "abi": props.get("ro.product.cpu.abi", "?"),
        "cpu_max_freq_khz": freqs, "big_cores": big,
        "taskset": bool(adb.shell("command -v taskset", check=False).strip()),
        "thermal_status": thermal_status(adb),
    }


def thermal_status(adb: Adb) -> int | None:
    """Android's thermal status (0 none .. 6 shutdown) from ``dumpsys thermalservice``, if readable."""
    match = re.search(r"Thermal Status:\s*(\d+)", adb.shell("dumpsys thermalservice", check=False))
    return int(match.group(1)) if match else None


def find_runner(name: str, abi: str, given: list[str]) -> Path:
    for path in map(Path, given):
        if path.name.startswith(name):
            if not path.is_file():
                raise FileNotFoundError(f"--runner {path} does not exist")
            return path
    cached = runner_cache() / abi / name
    if cached.is_file():
        return cached
    raise FileNotFoundError(f"{name} not found (--runner PATH, or {cached}); get it from {HOW_TO_GET[name]}")


def runner_command(name: str, artifact: str, settings: dict) -> list[str]:
    delegate = settings.get("delegate") or ("xnnpack" if name != "onnxruntime_perf_test" else "cpu")
    flags = DELEGATE_FLAGS[name].get(delegate)
    if flags is None:
        raise ValueError(f"--delegate {delegate} is not available for {name}; "
                         f"choose from: {', '.join(DELEGATE_FLAGS[name])}")
    threads, warmup, iters = settings["threads"], settings["warmup"], settings.get("iters") or 50
    if name == "benchmark_model":
        cmd = [f"--graph={artifact}", f"--num_threads={threads}", f"--warmup_runs={warmup}", f"--num_runs={iters}"]
        if settings.get("min_seconds"):
            cmd.append(f"--min_secs={settings['min_seconds']}")
        if settings.get("profile"):
            cmd.append("--enable_op_profiling=true")
        return [f"./{name}", *cmd, *flags]
    if name == "onnxruntime_perf_test":
        return [f"./{name}", *flags, "-x", str(threads), "-r", str(iters), "-m", "times", "-s", "-I", artifact]
    return [f"./{name}", f"--model_path={artifact}", f"--num_executions={iters}", f"--cpu_threads={threads}"]


def run_adb(artifact: Artifact, adb: Adb, device: dict, settings: dict) -> BenchResult:
    """One artifact on the phone; any failure becomes the row's reason, the device folder is always cleaned."""
    row = base_row(artifact, dict(device), settings)
    name = RUNNER_FOR_BACKEND.get(artifact.backend)
    if artifact.sidecar is None:
        row.status = f"failed: {artifact.sidecar_error}"
        return row
    if name is None:
        row.status = f"failed: no Android runner for {artifact.backend} artifacts"
        return row
    try:
        runner = find_runner(name, device.get("abi", "arm64-v8a"), settings.get("runners", []))
        # pushed under a fixed name: the real file name (any characters) never reaches the device's shell
        remote_model = f"{DEVICE_DIR}/model{artifact.path.suffix if artifact.path.suffix in SAFE_SUFFIXES else ''}"
        command = runner_command(name, remote_model, settings)
    except (FileNotFoundError, ValueError) as e:
        row.status = f"failed: {e}"
        return row
    pin: list[str] = []
    if device.get("taskset") and device.get("big_cores") and len(device["big_cores"]) < len(
            device.get("cpu_max_freq_khz", [])):
        pin = ["taskset", f"{sum(1 << c for c in device['big_cores']):x}"]
    row.device["pinned_cores"] = device.get("big_cores") if pin else None
    row.device["thermal_status_before"] = thermal_status(adb)
    output_file = f"{DEVICE_DIR}/output.txt"
    try:
        adb.shell(f"rm -rf {quote(DEVICE_DIR)} && mkdir -p {quote(DEVICE_DIR)}")
        adb("push", str(runner), f"{DEVICE_DIR}/{name}")
        adb.shell(f"chmod 755 {quote(f'{DEVICE_DIR}/{name}')}")
        adb("push", str(artifact.path), remote_model)
        adb("push", str(artifact.path.with_suffix(".json")), f"{DEVICE_DIR}/model.json")
        code = adb.shell(f"cd {quote(DEVICE_DIR)} && {quote(*pin, *command)} > {quote(output_file)} 2>&1; "
                         "echo EXIT=$?", timeout=RUN_TIMEOUT_S, check=False)
        with tempfile.TemporaryDirectory() as tmp:
            adb("pull", output_file, f"{tmp}/output.txt")
            output = Path(tmp, "output.txt").read_text(errors="replace")
    except BenchError as e:
        row.status = f"failed: {e}"
        return row
    finally:
        adb.shell(f"rm -rf {quote(DEVICE_DIR)}", check=False)
    row.device["thermal_status_after"] = thermal_status(adb)
    report = PARSERS[name](output)
    exit_code = re.search(r"EXIT=(\d+)", code)
    row.settings = {**settings, "runner": name, "command": quote(*pin, *command)}
    row.latencies_source = "runner summary"
    row.load_ms, row.first_inference_ms, row.peak_memory_mb = report.init_ms, report.first_ms, report.peak_memory_mb
    row.summary = report.summary()
    row.versions = {"runner": name}
    if settings.get("profile"):
        from emo.runtime_bench.profile import parse_op_profile

        ops = parse_op_profile(output) if name == "benchmark_model" else []
        row.profile = ({"source": "benchmark_model --enable_op_profiling", "ops": ops} if ops else
                       {"error": f"no operator profile in the output of {name}" + (
                           "" if name == "benchmark_model" else " (only LiteRT's benchmark_model profiles by op)")})
    if report.failed or (exit_code and exit_code.group(1) != "0"):
        reason = report.failed or f"exit code {exit_code.group(1)}"
        row.status = f"failed: {name}: {reason}"
    return row


def cooldown(seconds: float) -> None:
    """Rest between runs so one run's heat does not slow the next (thermal status is recorded either way)."""
    if seconds > 0:
        time.sleep(seconds)
