"""emo-bench on Android: a fake `adb` first on PATH emulates a phone; the runner answers with real outputs."""

import json
from pathlib import Path

import pytest

from emo.runtime_bench import android
from emo.runtime_bench.cli import main
from emo.runtime_bench.results import BenchError
from emo_testutil import fake_adb_calls, fake_runners, install_fake_adb, set_fake_adb_state, write_sidecar

OUTPUTS = Path(__file__).resolve().parent.parent.parent / "shared" / "reference" / "runner_outputs"

# a fake adb (after emo_testutil.FAKE_ADB_PROLOGUE): devices, getprop, sysfs, push/pull into a folder, and runner
# invocations
FAKE_ADB = r'''
if args[0] == "devices":
    print("List of devices attached")
    for s, st in state["devices"]:
        print(f"{s}\t{st}")
    sys.exit(0)
if args[0] == "push":
    local(args[2]).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(args[1], local(args[2]))
    print(f"{args[1]}: 1 file pushed, 0 skipped.")
    sys.exit(0)
if args[0] == "pull":
    if not local(args[1]).exists():
        print(f"adb: error: failed to stat remote object '{args[1]}': No such file or directory", file=sys.stderr)
        sys.exit(1)
    shutil.copy(local(args[1]), args[2])
    sys.exit(0)
cmd = " ".join(args[1:])
if cmd == "getprop":
    for k, v in state["props"].items():
        print(f"[{k}]: [{v}]")
elif cmd.startswith("cat /sys/devices/system/cpu/"):
    print("\n".join(str(f) for f in state["freqs"]))
elif cmd == "command -v taskset":
    print("/system/bin/taskset" if state["taskset"] else "")
elif cmd == "dumpsys thermalservice":
    print("IsStatusOverride: false\nThermal Status: 1")
elif cmd.startswith("rm -rf"):
    target = local(cmd.split()[2])
    shutil.rmtree(target, ignore_errors=True)
    if "&& mkdir -p" in cmd:
        target.mkdir(parents=True)
elif cmd.startswith("chmod"):
    pass
elif cmd.startswith("cd "):
    runner = re.search(r"\./(\w+)", cmd).group(1)
    out = re.search(r"> (\S+) 2>&1", cmd).group(1)
    assert local(f"/data/local/tmp/emo-bench/{runner}").exists(), "runner was not pushed"
    local(out).write_text(pathlib.Path(state["outputs"][runner]).read_text())
    print(f"EXIT={state['exit'].get(runner, 0)}")
else:
    print(f"fake adb: unknown shell command {cmd!r}", file=sys.stderr)
    sys.exit(1)
'''

PROPS = {"ro.product.manufacturer": "Google", "ro.product.model": "Pixel 7", "ro.soc.model": "Tensor G2",
         "ro.build.version.release": "14", "ro.build.version.sdk": "34", "ro.product.cpu.abi": "arm64-v8a"}
FREQS = [1803000, 1803000, 1803000, 1803000, 2348000, 2348000, 2850000, 2850000]


@pytest.fixture
def phone(tmp_path, monkeypatch):
    """Install the fake adb first on PATH; returns a function to set the device state and read the calls."""
    bin_dir = install_fake_adb(tmp_path, monkeypatch, FAKE_ADB)
    runners = fake_runners(tmp_path, ("benchmark_model", "onnxruntime_perf_test", "executor_runner"))

    def setup(devices=(("R5CT1234", "device"),), outputs=None, taskset=True, exit_codes=None, props=None, freqs=None):
        state = {"devices": [list(d) for d in devices], "device_root": str(tmp_path / "device"),
                 "props": props or PROPS, "freqs": freqs or FREQS, "taskset": taskset, "exit": exit_codes or {},
                 "outputs": {"benchmark_model": str(OUTPUTS / "litert_benchmark_model_sample01.txt"),
                             "onnxruntime_perf_test": str(OUTPUTS / "onnxruntime_perf_test_sample01.txt"),
                             **(outputs or {})}}
        set_fake_adb_state(bin_dir, state)

    def calls():
        return fake_adb_calls(bin_dir)

    setup()
    return setup, calls, runners


def _artifact(folder: Path, name: str, backend: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_bytes(b"model bytes")
    write_sidecar(path, backend)
    return path


def _runner_call(calls) -> str:
    return next(c[3] for c in calls if len(c) > 3 and c[2] == "shell" and c[3].startswith("cd "))


def test_tflite_run_exact_commands_and_numbers(phone, tmp_path, capsys):
    setup, calls, runners = phone
    model = _artifact(tmp_path / "a", "emo_1m_tflite_fp32.tflite", "tflite")
    out = tmp_path / "r.jsonl"
    code = main([str(model), "--device", "adb", "--threads", "4", "--warmup", "1", "--iters", "50", "--runner",
                 str(runners / "benchmark_model"), "--cooldown", "0", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    d = "/data/local/tmp/emo-bench"
    run = (f"cd {d} && taskset c0 ./benchmark_model --graph={d}/model.tflite --num_threads=4 "
           f"--warmup_runs=1 --num_runs=50 --use_xnnpack=true > {d}/output.txt 2>&1; echo EXIT=$?")
    s = ["-s", "R5CT1234"]
    expected = [
        ["devices"],
        [*s, "shell", "getprop"],
        [*s, "shell", "cat /sys/devices/system/cpu/cpu*/cpufreq/cpuinfo_max_freq"],
        [*s, "shell", "command -v taskset"],
        [*s, "shell", "dumpsys thermalservice"],
        [*s, "shell", "dumpsys thermalservice"],
        [*s, "shell", f"rm -rf {d} && mkdir -p {d}"],
        [*s, "push", str(runners / "benchmark_model"), f"{d}/benchmark_model"],
        [*s, "shell", f"chmod 755 {d}/benchmark_model"],
        [*s, "push", str(model), f"{d}/model.tflite"],  # a fixed name: the real one never reaches the shell
        [*s, "push", str(model.with_suffix(".json")), f"{d}/model.json"],
        [*s, "shell", run],
    ]
    got = calls()
    assert got[:len(expected)] == expected
    assert got[len(expected)][:3] == [*s, "pull"] and got[len(expected)][3] == f"{d}/output.txt"
    assert got[len(expected) + 1:] == [[*s, "shell", f"rm -rf {d}"], [*s, "shell", "dumpsys thermalservice"]]
    row = json.loads(out.read_text())
    assert row["status"] == "ok" and row["latencies_source"] == "runner summary"
    assert row["summary"] == {"count": 50, "min": 247.067, "max": 254.474, "mean": 249.684, "std": 1.442}
    assert row["load_ms"] == 16.242 and row["first_inference_ms"] == 360.262 and row["peak_memory_mb"] == 138.809
    device = row["device"]
    assert device["model"] == "Google Pixel 7" and device["soc"] == "Tensor G2" and device["abi"] == "arm64-v8a"
    assert device["os"] == "Android 14 (API 34)" and device["pinned_cores"] == [6, 7]
    assert device["cpu_max_freq_khz"] == FREQS and device["thermal_status_before"] == 1
    assert not (tmp_path / "device" / "data" / "local" / "tmp" / "emo-bench").exists()  # cleaned up


def test_onnx_runner_and_delegate(phone, tmp_path, capsys):
    setup, calls, runners = phone
    model = _artifact(tmp_path / "a", "emo_1m_onnx_fp32.onnx", "onnx")
    out = tmp_path / "r.jsonl"
    assert main([str(model), "--device", "adb:R5CT1234", "--delegate", "nnapi", "--iters", "100", "--runner",
                 str(runners / "onnxruntime_perf_test"), "--cooldown", "0", "--out", str(out)]) == 0
    run = _runner_call(calls())
    assert "./onnxruntime_perf_test -e nnapi -x 2 -r 100 -m times -s -I /data/local/tmp/emo-bench/model.onnx" in run
    row = json.loads(out.read_text())
    assert row["summary"]["median"] == pytest.approx(1.85674) and row["summary"]["p90"] == pytest.approx(1.87215)
    assert row["summary"]["count"] == 100 and row["peak_memory_mb"] == pytest.approx(36696064 / 2**20)


def test_runner_failure_is_kept_and_the_run_continues(phone, tmp_path, capsys):
    setup, calls, runners = phone
    setup(outputs={"benchmark_model": str(OUTPUTS / "litert_benchmark_model_sample03.txt")},
          exit_codes={"benchmark_model": 1})
    folder = tmp_path / "a"
    _artifact(folder, "emo_1m_tflite_fp32.tflite", "tflite")
    _artifact(folder, "emo_1m_onnx_fp32.onnx", "onnx")
    _artifact(folder, "emo_1m_xnnpack_fp32.pte", "executorch")
    out = tmp_path / "r.jsonl"
    code = main([str(folder), "--device", "adb", "--runner", str(runners / "benchmark_model"), "--runner",
                 str(runners / "onnxruntime_perf_test"), "--cooldown", "0", "--out", str(out)])
    err = capsys.readouterr().err
    rows = {Path(r["artifact"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert code == 1
    assert rows["emo_1m_tflite_fp32.tflite"]["status"] == (
        "failed: benchmark_model: Failed to apply NNAPI delegate.; NN API returned error "
        "ANEURALNETWORKS_OP_FAILED at line 3779 while completing NNAPI compilation.")
    assert rows["emo_1m_onnx_fp32.onnx"]["status"] == "ok"
    missing = rows["emo_1m_xnnpack_fp32.pte"]["status"]
    assert missing.startswith("failed: executor_runner not found (--runner PATH, or ")
    assert "EXECUTORCH_BUILD_XNNPACK=ON" in missing  # says how to build it
    assert err.count("emo-bench: emo_1m_") == 2


@pytest.mark.parametrize(("devices", "serial", "message"), [
    ((), None, "no Android device attached"),
    ((("A1", "device"), ("B2", "device")), None,
     "several devices attached (A1, B2): pick one with --device adb:SERIAL"),
    ((("A1", "unauthorized"),), None, "device A1 is unauthorized: unlock it and accept the USB debugging prompt"),
    ((("A1", "offline"),), None, "device A1 is offline"),
    ((("A1", "device"),), "Z9", "device Z9 is not attached (adb devices lists: A1)"),
])
def test_device_selection_errors(phone, tmp_path, capsys, devices, serial, message):
    setup, calls, _ = phone
    setup(devices=devices)
    model = _artifact(tmp_path / "a", "emo_1m_tflite_fp32.tflite", "tflite")
    target = f"adb:{serial}" if serial else "adb"
    code = main([str(model), "--device", target, "--out", str(tmp_path / "r.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert all(c[:1] == ["devices"] for c in calls())  # nothing was pushed or run


def test_no_adb_anywhere(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("ANDROID_HOME", raising=False)
    monkeypatch.delenv("ANDROID_SDK_ROOT", raising=False)
    with pytest.raises(BenchError, match="adb not found: install Android platform-tools"):
        android.find_adb()


def test_no_taskset_means_no_pinning(phone, tmp_path):
    setup, calls, runners = phone
    setup(taskset=False)
    model = _artifact(tmp_path / "a", "emo_1m_tflite_fp32.tflite", "tflite")
    out = tmp_path / "r.jsonl"
    main([str(model), "--device", "adb", "--runner", str(runners / "benchmark_model"), "--cooldown", "0",
          "--out", str(out)])
    run = _runner_call(calls())
    assert "taskset" not in run and json.loads(out.read_text())["device"]["pinned_cores"] is None


def test_runner_cache_folder(phone, tmp_path, monkeypatch):
    setup, calls, runners = phone
    monkeypatch.setattr(android, "runner_cache", lambda: tmp_path / "cache")
    (tmp_path / "cache" / "arm64-v8a").mkdir(parents=True)
    (tmp_path / "cache" / "arm64-v8a" / "benchmark_model").write_bytes(b"runner")
    model = _artifact(tmp_path / "a", "emo_1m_tflite_fp32.tflite", "tflite")
    assert main([str(model), "--device", "adb", "--cooldown", "0", "--out", str(tmp_path / "r.jsonl")]) == 0
    assert any(c[2] == "push" and c[3] == str(tmp_path / "cache" / "arm64-v8a" / "benchmark_model")
               for c in calls() if len(c) > 3)


@pytest.mark.parametrize("abi", ["../../..", "arm64-v8a/../../../../tmp", "", "arm64-v8a\nx86"])
def test_a_device_never_chooses_a_host_path(phone, tmp_path, monkeypatch, abi):
    """The ABI a device reports becomes part of the runner's cache path only when it is one Android defines: a device
    answering ``../../..`` gets a failed row naming --runner, and nothing is pushed (security hole 5 of issue 20)."""
    setup, calls, runners = phone
    cache = tmp_path / "cache"
    monkeypatch.setattr(android, "runner_cache", lambda: cache)
    (cache / "arm64-v8a").mkdir(parents=True)
    (cache / "arm64-v8a" / "benchmark_model").write_bytes(b"runner")
    (tmp_path / "benchmark_model").write_bytes(b"a host file the device would like us to run")
    setup(props={**PROPS, "ro.product.cpu.abi": abi})
    model = _artifact(tmp_path / "a", "emo_1m_tflite_fp32.tflite", "tflite")
    out = tmp_path / "r.jsonl"
    assert main([str(model), "--device", "adb", "--cooldown", "0", "--out", str(out)]) == 1
    row = json.loads(out.read_text())
    assert row["status"] == ("failed: benchmark_model: the device reports no ABI Android defines (arm64-v8a, "
                             "armeabi-v7a, x86_64, x86, riscv64), so no cached runner is chosen for it; pass --runner "
                             "PATH/benchmark_model")
    assert row["device"]["abi"] is None and "push" not in [c[2] for c in calls() if len(c) > 2]


def test_device_text_and_numbers_are_bounded_and_inert(phone, tmp_path):
    """What a device prints is data: escape sequences and control characters are dropped from its texts (a terminal
    shows the table), a 5000-digit or absurd frequency is no frequency (never a crash or a huge int)."""
    setup, calls, runners = phone
    setup(props={**PROPS, "ro.product.model": "Pixel\x1b[31m 7\x07", "ro.soc.model": "Tensor\x1b[1m\x9b2J G2",
                 "ro.build.version.sdk": "9" * 40},
          freqs=["9" * 5000, 1803000, -5, "2.5e9", 99_000_000, 2850000])
    model = _artifact(tmp_path / "a", "emo_1m_tflite_fp32.tflite", "tflite")
    out = tmp_path / "r.jsonl"
    assert main([str(model), "--device", "adb", "--runner", str(runners / "benchmark_model"), "--cooldown", "0",
                 "--out", str(out)]) == 0
    device = json.loads(out.read_text())["device"]
    assert device["model"] == "Google Pixel 7" and device["soc"] == "Tensor G2"
    assert device["os"] == "Android 14 (API ?)"
    assert device["cpu_max_freq_khz"] == [1803000, 2850000] and device["big_cores"] == [1]
    long = "x" * 5000
    assert android.clean_text(f"\x1b[2J{long}") == "x" * (android.MAX_DEVICE_TEXT - 1) + "…"
    assert android.parse_frequencies("9" * 5000 + " 1803000") == [1803000]


def test_parse_op_profile_summary_by_node_type():
    """The regular runs' "Summary by node type" table (not the initialisation's), with any line prefix."""
    from emo.runtime_bench.profile import parse_op_profile

    text = (OUTPUTS / "litert_benchmark_model_sample06.txt").read_text()
    expected = [("CONV_2D", 15, 2651.853), ("DEPTHWISE_CONV_2D", 13, 296.919), ("AVERAGE_POOL_2D", 1, 0.869),
                ("SOFTMAX", 1, 0.232), ("SQUEEZE", 1, 0.016)]
    for variant in (text, "\n".join(f"INFO: {line}" for line in text.splitlines()),
                    "\n".join(f"11-28 04:40:01.123  4242  4242 I tflite  : {line}" for line in text.splitlines())):
        ops = parse_op_profile(variant)
        assert [(r["op"], r["nodes"], r["ms"]) for r in ops] == expected
        assert abs(sum(r["percent"] for r in ops) - 100) < 0.05  # each rounded to 0.01
    assert parse_op_profile((OUTPUTS / "litert_benchmark_model_sample01.txt").read_text()) == []  # not profiled


def test_profile_on_a_phone(phone, tmp_path, capsys):
    setup, calls, runners = phone
    setup(outputs={"benchmark_model": str(OUTPUTS / "litert_benchmark_model_sample06.txt")})
    tflite = _artifact(tmp_path / "a", "emo_1m_tflite_fp32.tflite", "tflite")
    onnx_model = _artifact(tmp_path / "a", "emo_1m_onnx_fp32.onnx", "onnx")
    out = tmp_path / "r.jsonl"
    code = main([str(tflite), str(onnx_model), "--device", "adb", "--profile", "--runner",
                 str(runners / "benchmark_model"), "--runner", str(runners / "onnxruntime_perf_test"), "--cooldown",
                 "0", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert "--use_xnnpack=true" in _runner_call(calls()) and "--enable_op_profiling=true" in _runner_call(calls())
    rows = {r["backend"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["tflite"]["profile"]["source"] == "benchmark_model --enable_op_profiling"
    assert rows["tflite"]["profile"]["ops"][0]["op"] == "CONV_2D"
    assert rows["onnx"]["status"] == "ok" and "only LiteRT's benchmark_model" in rows["onnx"]["profile"]["error"]
    printed = capsys.readouterr().out
    assert "emo_1m_tflite_fp32.tflite: per-operator time (benchmark_model --enable_op_profiling" in printed
