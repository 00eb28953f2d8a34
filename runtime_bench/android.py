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

import numpy as np

from emo.contract import examples as examples_format
from emo.contract import vocabulary
from emo.contract.text import printable
from emo.runtime_bench import app_result
from emo.runtime_bench.parsers import PARSERS
from emo.runtime_bench.results import Artifact, BenchError, BenchResult, base_row

DEVICE_DIR = "/data/local/tmp/emo-bench"
SAFE_SUFFIXES = tuple(s for s in vocabulary.ARTIFACT_SUFFIXES if s != ".mlpackage")
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


# what a device may answer: every value read from a phone is checked against this before it reaches a path, a
# command or a table (a device is input too: a hostile one answering ``../../..`` as its ABI must not pick a host file)
ANDROID_ABIS = ("arm64-v8a", "armeabi-v7a", "x86_64", "x86", "riscv64")
MAX_CPUS = 256
MAX_FREQ_KHZ = 20_000_000          # 20 GHz
MAX_DEVICE_TEXT = 120


def clean_text(value: object) -> str:
    """Text a device reported, safe to print and store (escape sequences and control characters removed)."""
    return printable(value, MAX_DEVICE_TEXT).strip()


def checked_abi(value: str) -> str | None:
    """The device's ABI if it is one Android defines, else None (never used in a path then)."""
    return value if value in ANDROID_ABIS else None


def parse_frequencies(text: str) -> list[int]:
    """CPU max frequencies in kHz, one per CPU: each a plain number of at most 8 digits within 20 GHz (a device
    printing a 5000-digit number gives no frequencies, not a crash)."""
    freqs = [int(f) for f in text.split() if re.fullmatch(r"\d{1,8}", f)]
    return [f for f in freqs if 0 < f <= MAX_FREQ_KHZ][:MAX_CPUS]


def describe_device(adb: Adb) -> dict:
    """Model, SoC, Android version, ABI, CPU max frequencies, big cores, thermal status (when readable)."""
    props = dict(re.findall(r"^\[([^\]]+)\]: \[([^\]]*)\]", adb.shell("getprop"), flags=re.M))
    freqs = parse_frequencies(adb.shell("cat /sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq", check=False))
    big = [i for i, f in enumerate(freqs) if f == max(freqs)] if freqs else []
    reported_abi = clean_text(props.get("ro.product.cpu.abi", "?"))
    sdk = props.get("ro.build.version.sdk", "?")
    api = sdk if re.fullmatch(r"\d{1,3}", sdk) else "?"
    device = {
        "target": "adb", "serial": clean_text(adb.serial or ""),
        "model": clean_text(f"{props.get('ro.product.manufacturer', '')} {props.get('ro.product.model', '?')}"),
        "soc": clean_text(props.get("ro.soc.model") or props.get("ro.board.platform") or props.get("ro.hardware", "?")),
        "os": clean_text(f"Android {props.get('ro.build.version.release', '?')} (API {api})"),
        "abi": checked_abi(reported_abi),
        "cpu_max_freq_khz": freqs, "big_cores": big,
        "taskset": bool(adb.shell("command -v taskset", check=False).strip()),
        "thermal_status": thermal_status(adb),
    }
    if device["abi"] is None:
        device["abi_reported"] = reported_abi
    return device


def thermal_status(adb: Adb) -> int | None:
    """Android's thermal status (0 none .. 6 shutdown) from ``dumpsys thermalservice``, if readable."""
    match = re.search(r"Thermal Status:\s*(\d)\b", adb.shell("dumpsys thermalservice", check=False))
    return int(match.group(1)) if match and int(match.group(1)) <= 6 else None


def find_runner(name: str, abi: str | None, given: list[str]) -> Path:
    """The runner binary: one given with --runner, else ``runner_cache()/{abi}/{name}`` for an ABI Android defines
    (``abi`` comes from the device: it is checked against ``ANDROID_ABIS`` before it becomes part of a path)."""
    for path in map(Path, given):
        if path.name.startswith(name):
            if not path.is_file():
                raise FileNotFoundError(f"--runner {path} does not exist")
            return path
    if checked_abi(abi or "") is None:
        raise FileNotFoundError(f"{name}: the device reports no ABI Android defines ({', '.join(ANDROID_ABIS)}), so "
                                f"no cached runner is chosen for it; pass --runner PATH/{name}")
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


def parity_command(name: str, artifact: str, sidecar: dict, input_file: str, output_file: str) -> list[str] | None:
    """The runner invocation that reads one input tensor from a raw file and writes the outputs to another
    (``None`` for a runner that cannot write its outputs)."""
    if name == "benchmark_model":  # raw float32 in; every output tensor's bytes, in order, out
        layer = sidecar["input"].get("name", "image")
        shape = ",".join(str(1 if d == "batch" else d) for d in sidecar["input"]["shape"])
        return [f"./{name}", f"--graph={artifact}", f"--input_layer={layer}", f"--input_layer_shape={shape}",
                f"--input_layer_value_files={layer}:{input_file}", f"--output_filepath={output_file}",
                "--num_runs=1", "--warmup_runs=0"]
    if name == "executor_runner":  # --inputs raw files; --output_file BASE writes BASE-0.bin
        return [f"./{name}", f"--model_path={artifact}", f"--inputs={input_file}",
                f"--output_file={output_file.removesuffix('-0.bin')}", "--num_executions=1", "--print_output=none"]
    return None


NO_OUTPUT_DUMP = {"onnxruntime_perf_test": "onnxruntime_perf_test cannot write its outputs (ONNX Runtime's "
                                           "onnx_test_runner compares on the phone instead; use --runner app, whose "
                                           "self-test runs the examples through ONNX Runtime Android)"}


def check_parity(artifact: Artifact, adb: Adb, name: str, remote_model: str, pin: list[str]) -> dict:
    """Push each bundled example's input tensor, run the runner on it, pull its output, compare with PyTorch's."""
    if name in NO_OUTPUT_DUMP:
        return {"status": f"skipped: {NO_OUTPUT_DUMP[name]}"}
    try:
        examples = examples_format.read(examples_format.examples_path(artifact.path))
    except examples_format.ExamplesError as e:
        return {"status": f"failed: {e}"}
    batch = artifact.input_shape[0]
    classes = examples["examples"][0]["output"].size
    outputs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, example in enumerate(examples["examples"]):
            local_in, local_out = Path(tmp, f"input{i}.bin"), Path(tmp, f"output{i}.bin")
            # a static batch N takes the image N times; little-endian float32, as the runners read it
            local_in.write_bytes(np.repeat(example["input"], batch, axis=0).astype("<f4").tobytes())
            remote_in, remote_out = f"{DEVICE_DIR}/input{i}.bin", f"{DEVICE_DIR}/output{i}-0.bin"
            adb("push", str(local_in), remote_in)
            command = parity_command(name, remote_model, artifact.sidecar, remote_in, remote_out)
            code = adb.shell(f"cd {quote(DEVICE_DIR)} && {quote(*pin, *command)} > {quote(f'{DEVICE_DIR}/parity.txt')}"
                             " 2>&1; echo EXIT=$?", timeout=RUN_TIMEOUT_S, check=False)
            if "EXIT=0" not in code:
                return {"status": f"failed: {name} exited with {code.strip().split('=')[-1]} on example {i}"}
            adb("pull", remote_out, str(local_out))
            raw = np.frombuffer(local_out.read_bytes(), dtype="<f4")
            if raw.size != batch * classes:  # one output tensor of the static batch: anything else is not a pass
                return {"status": f"failed: {name} wrote {raw.size} values for example {i}, expected "
                                  f"{batch * classes} ({batch} x {classes} classes)"}
            outputs.append(raw[:classes])
    return examples_format.agreement(examples, outputs)


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
        runner = find_runner(name, device.get("abi"), settings.get("runners", []))
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
        if settings.get("parity"):
            row.parity = check_parity(artifact, adb, name, remote_model, pin)
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
    elif row.parity and row.parity["status"].startswith("failed"):
        row.status = f"failed: parity on the phone: {row.parity['status'].removeprefix('failed: ')}"
    return row


# ------------------------------------------------------------------------------- the demo app (--runner app)
APP_PACKAGE = "org.emomobile.demo"
APP_ACTIVITY = f"{APP_PACKAGE}/.BenchmarkActivity"
APP_DIR = f"/sdcard/Android/data/{APP_PACKAGE}/files/emo-bench"
APP_INSTALL_HINT = ("build android_demo/ (Android Studio, or ./gradlew :app:assembleDebug) and install the debug "
                    "build (adb install -r android_demo/app/build/outputs/apk/debug/app-debug.apk); "
                    "emo-bench installs nothing")
# by the artifact's suffix, as the app chooses its runtime: LiteRT's CompiledModel for .tflite (an AOT-compiled NPU
# .tflite included), ONNX Runtime Android for .onnx/.ort (onnxruntime-android has no QNN execution provider)
APP_ACCELERATORS = {".tflite": ("cpu", "gpu", "npu"), ".onnx": ("cpu", "xnnpack", "nnapi"),
                    ".ort": ("cpu", "xnnpack", "nnapi")}
APP_REFUSED = {"qnn": "the demo app's ONNX Runtime (onnxruntime-android) has no QNN execution provider; run the "
                      "Qualcomm NPU through LiteRT (--format litert-npu, --delegate npu) or onnxruntime_perf_test "
                      "built with QNN (--runner PATH)"}


def app_commands(artifact: Artifact, settings: dict) -> dict:
    """What is pushed where, and the ``am start`` words (contract: android_demo/BENCHMARK_MODE.md)."""
    suffix = artifact.path.suffix
    allowed = APP_ACCELERATORS.get(suffix)
    if allowed is None:
        raise ValueError(f"the demo app runs .tflite, .onnx and .ort artifacts, not {artifact.path.name}")
    accelerator = settings.get("delegate") or "cpu"
    if accelerator not in allowed:
        why = APP_REFUSED.get(accelerator, f"choose from: {', '.join(allowed)}")
        raise ValueError(f"--delegate {accelerator} is not offered by the demo app for {suffix} artifacts; {why}")
    pushes = [(artifact.path, f"{APP_DIR}/model{suffix}"),
              (artifact.path.with_suffix(".json"), f"{APP_DIR}/model.json")]
    local_examples = examples_format.examples_path(artifact.path)
    if local_examples.is_file():
        pushes.append((local_examples, f"{APP_DIR}/model.examples.json"))
    start = ["am", "start", "-W", "-S", "-n", APP_ACTIVITY, "--es", "model", f"model{suffix}",
             "--es", "accelerator", accelerator, "--ei", "threads", settings["threads"],
             "--ei", "warmup", settings["warmup"], "--ei", "iters", settings.get("iters") or 50,
             "--es", "output", "result.json"]
    return {"pushes": pushes, "start": start, "result": f"{APP_DIR}/result.json", "accelerator": accelerator}


def map_app_result(data: dict, artifact: Artifact, device: dict, settings: dict) -> BenchResult:
    """The demo app's result file (``emo-mobile/app-bench/1``, shared with iOS) -> a result row."""
    return app_result.map_app_result(data, artifact, device, settings, "android")


def app_running(adb: Adb) -> bool:
    """Whether the app's process is alive (``pidof`` exits 1 when it is not; any other answer counts as alive, so a
    device without ``pidof`` only waits for the timeout)."""
    return "EXIT=1" not in adb.shell(f"pidof {quote(APP_PACKAGE)}; echo EXIT=$?", check=False)


def run_app(artifact: Artifact, adb: Adb, device: dict, settings: dict, poll_seconds: float = 1.0,
            timeout_s: float = RUN_TIMEOUT_S) -> BenchResult:
    """One artifact through the installed demo app's headless benchmark mode; the app folder is always cleaned.
    A process that dies without a result (a crash) fails the row at once, pointing at logcat."""
    row = base_row(artifact, dict(device), {**settings, "runner": "app"})
    if artifact.sidecar is None:
        row.status = f"failed: {artifact.sidecar_error}"
        return row
    try:
        commands = app_commands(artifact, settings)
    except ValueError as e:
        row.status = f"failed: {e}"
        return row
    if "package:" not in adb.shell(f"pm path {quote(APP_PACKAGE)}", check=False):
        row.status = f"failed: the demo app {APP_PACKAGE} is not installed: {APP_INSTALL_HINT}"
        return row
    try:
        adb.shell(f"rm -rf {quote(APP_DIR)} && mkdir -p {quote(APP_DIR)}")
        for local, remote in commands["pushes"]:  # fixed names: the artifact's own name never reaches the shell
            adb("push", str(local), remote)
        adb.shell(quote(*commands["start"]), timeout=ADB_TIMEOUT_S)
        deadline = time.monotonic() + timeout_s
        with tempfile.TemporaryDirectory() as tmp:
            def written() -> bool:  # not `ls`: its "No such file" message names the file too
                return "present" in adb.shell(f"test -f {quote(commands['result'])} && echo present", check=False)

            while not written():
                if not app_running(adb) and not written():
                    raise BenchError("the demo app stopped without writing a result (a crash?): see "
                                     "`adb logcat -d -s AndroidRuntime EMOBenchmark`")
                if time.monotonic() > deadline:
                    raise BenchError(f"no result from the app after {timeout_s:.0f} s")
                time.sleep(poll_seconds)
            adb("pull", commands["result"], f"{tmp}/result.json")
            data = app_result.loads(Path(tmp, "result.json").read_bytes(), "android")
        return map_app_result(data, artifact, device, settings)
    except BenchError as e:
        row.status = f"failed: {e}"
        return row
    finally:
        adb.shell(f"rm -rf {quote(APP_DIR)}", check=False)


def cooldown(seconds: float) -> None:
    """Rest between runs so one run's heat does not slow the next (thermal status is recorded either way)."""
    if seconds > 0:
        time.sleep(seconds)
