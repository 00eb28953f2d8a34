"""emo-bench --device adb with --parity (bundled examples through the phone's runner) and --runner app (the installed
demo app's headless benchmark mode), against a fake adb that emulates the phone. Shell commands are split with shlex,
as the device's sh splits them; the fake `benchmark_model` runs the real .tflite artifact with the LiteRT interpreter
on the pushed input file and writes its outputs as the real runner does (raw float32)."""

import json
import shlex
from pathlib import Path

import pytest
from app_bench import sample_result
from mobile_artifacts import sidecars

from emo.runtime_bench.cli import main
from emo_testutil import fake_adb_calls, fake_runners, install_fake_adb, set_fake_adb_state, write_sidecar

OUTPUTS = Path(__file__).resolve().parent.parent.parent / "shared" / "reference" / "runner_outputs"
APP_DIR = "/sdcard/Android/data/org.emomobile.demo/files/emo-bench"

FAKE_ADB = r'''
if args[0] == "devices":
    print("List of devices attached\nR5CT1234\tdevice")
    sys.exit(0)
if args[0] == "push":
    local(args[2]).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(args[1], local(args[2]))
    sys.exit(0)
if args[0] == "pull":
    if not local(args[1]).exists():
        print(f"adb: error: remote object '{args[1]}' does not exist", file=sys.stderr)
        sys.exit(1)
    shutil.copy(local(args[1]), args[2])
    sys.exit(0)
cmd = args[1]
if cmd == "getprop":
    print("[ro.product.manufacturer]: [Google]\n[ro.product.model]: [Pixel 7]\n[ro.product.cpu.abi]: [arm64-v8a]")
    sys.exit(0)
if cmd.startswith(("cat /sys/", "dumpsys", "command -v")):
    sys.exit(0)
runner = None
if cmd.startswith("cd "):  # cd DIR && WORDS > OUT 2>&1; echo EXIT=$?
    cmd, _, tail = cmd.partition("; echo EXIT=$?")
    cd, _, run = cmd.partition(" && ")
    words = shlex.split(run)
    out = local(words[words.index(">") + 1])
    words = words[:words.index(">")]
    name = words[0].removeprefix("./")
    flags = dict(w.lstrip("-").split("=", 1) for w in words[1:] if "=" in w)
    if "output_filepath" in flags:
        import numpy as np
        from ai_edge_litert.interpreter import Interpreter
        layer, path = flags["input_layer_value_files"].split(":", 1)
        interp = Interpreter(str(local(flags["graph"])))
        interp.allocate_tensors()
        detail = interp.get_input_details()[0]
        assert detail["name"] == layer, (detail["name"], layer)
        assert list(detail["shape"]) == [int(d) for d in flags["input_layer_shape"].split(",")]
        x = np.fromfile(local(path), dtype="<f4").reshape(detail["shape"])
        interp.set_tensor(detail["index"], x)
        interp.invoke()
        y = interp.get_tensor(interp.get_output_details()[0]["index"]).astype("<f4")
        y = np.tile(y, state.get("repeat", 1))  # a runner that dumps more values than the model has classes
        local(flags["output_filepath"]).write_bytes((y + np.float32(state["perturb"])).tobytes())
        out.write_text("")
    else:
        out.write_text(pathlib.Path(state["outputs"][name]).read_text())
    print("EXIT=0")
    sys.exit(0)
words = shlex.split(cmd)
if words[:2] == ["rm", "-rf"]:
    shutil.rmtree(local(words[2]), ignore_errors=True)
    if "&&" in words:
        local(words[words.index("&&") + 3]).mkdir(parents=True)
elif words[0] == "chmod":
    pass
elif words[0] == "pidof":  # cmd: pidof PACKAGE; echo EXIT=$?
    print("12345\nEXIT=0" if state.get("alive", True) else "EXIT=1")
elif words[:2] == ["pm", "path"]:
    if state["installed"]:
        print(f"package:/data/app/~~x==/{words[2]}-1/base.apk")
elif words[:2] == ["am", "start"]:
    extras = {words[i + 1]: words[i + 2] for i, w in enumerate(words) if w in ("--es", "--ei")}
    folder = local(state["app_dir"])
    model = folder / extras["model"]
    assert model.exists() and (folder / "model.json").exists(), "the app found no model/sidecar"
    if state["app_result"] is not None:  # None: the app crashes before writing anything
        result = dict(state["app_result"], artifact=extras["model"], threads=int(extras["threads"]))
        (folder / extras["output"]).write_text(json.dumps(result))
    print("Status: ok\nActivity: org.emomobile.demo/.BenchmarkActivity")
elif words[0] == "ls":
    if local(words[1]).exists():
        print(words[1])
    else:
        print(f"ls: {words[1]}: No such file or directory")
elif words[:2] == ["test", "-f"]:  # test -f FILE && echo present
    if local(words[2]).is_file():
        print("present")
else:
    print(f"fake adb: unknown shell command {cmd!r}", file=sys.stderr)
    sys.exit(1)
'''

APP_RESULT = sample_result("android")


@pytest.fixture
def phone(tmp_path, monkeypatch):
    bin_dir = install_fake_adb(tmp_path, monkeypatch, FAKE_ADB)
    runners = fake_runners(tmp_path, ("benchmark_model", "onnxruntime_perf_test"))

    def setup(installed=True, perturb=0.0, app_result=APP_RESULT, alive=True, repeat=1):
        state = {"device_root": str(tmp_path / "device"), "installed": installed, "perturb": perturb, "repeat": repeat,
                 "app_dir": APP_DIR, "app_result": app_result, "alive": alive,
                 "outputs": {"benchmark_model": str(OUTPUTS / "litert_benchmark_model_sample01.txt"),
                             "onnxruntime_perf_test": str(OUTPUTS / "onnxruntime_perf_test_sample01.txt")}}
        set_fake_adb_state(bin_dir, state)

    def calls():
        return fake_adb_calls(bin_dir)

    setup()
    return setup, calls, runners


@pytest.fixture
def tflite(mobile_artifacts):
    return next(s.with_suffix(".tflite") for s in sidecars(mobile_artifacts) if s.with_suffix(".tflite").exists())


def _bench(tmp_path, *args):
    out = tmp_path / f"rows{len(list(tmp_path.glob('rows*.jsonl')))}.jsonl"  # a fresh file per run
    code = main([*map(str, args), "--device", "adb", "--cooldown", "0", "--iters", "4", "--out", str(out)])
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return code, rows


def test_parity_runs_the_examples_through_the_runner(phone, tflite, tmp_path):
    _, calls, runners = phone
    code, [row] = _bench(tmp_path, tflite, "--runner", runners / "benchmark_model", "--parity")
    assert code == 0, row["status"]
    parity = row["parity"]
    assert parity["status"] == "passed" and parity["num_examples"] == 3
    assert parity["max_abs_diff"] < 1e-4 and parity["top5_agreement"] == 1.0 and parity["tolerance"]
    d = "/data/local/tmp/emo-bench"
    runs = [c[3] for c in calls() if c[2:3] == ["shell"] and "--output_filepath" in c[3]]
    assert runs[0] == (f"cd {d} && ./benchmark_model --graph={d}/model.tflite --input_layer=image "
                       f"--input_layer_shape=1,224,224,3 --input_layer_value_files=image:{d}/input0.bin "
                       f"--output_filepath={d}/output0-0.bin --num_runs=1 --warmup_runs=0 > {d}/parity.txt 2>&1; "
                       "echo EXIT=$?")
    assert len(runs) == 3 and not (tmp_path / "device" / d.lstrip("/")).exists()


def test_parity_off_by_a_little_fails_the_row(phone, tflite, tmp_path):
    setup, _, runners = phone
    setup(perturb=1e-3)  # ten times the fp32 tolerance, on every logit
    code, [row] = _bench(tmp_path, tflite, "--runner", runners / "benchmark_model", "--parity")
    assert code == 1
    assert row["status"].startswith("failed: parity on the phone: max_abs_diff 0.001")
    assert row["parity"]["top1_agreement"] == 1.0  # the ranking survives; the numbers do not


def test_parity_with_more_output_values_than_classes_fails_the_row(phone, tflite, tmp_path):
    """A dump of 2 x 1000 values for a 1 x 1000 output is not "the first 1000 matched": the row fails, naming both."""
    setup, _, runners = phone
    setup(repeat=2)
    code, [row] = _bench(tmp_path, tflite, "--runner", runners / "benchmark_model", "--parity")
    assert code == 1
    assert row["status"].startswith("failed: parity on the phone: benchmark_model wrote 2000 values for example 0, "
                                    "expected 1000"), row["status"]


@pytest.mark.parametrize("bound", ["NaN", "Infinity", "{}", "0.6"])
def test_an_examples_file_cannot_make_a_wrong_output_pass(phone, tflite, tmp_path, bound):
    """Outputs 0.57 off, and an examples file whose tolerance would pass them (NaN, inf, none, looser than the fp32
    policy): the row fails on the file, through the console's --parity path."""
    import shutil

    setup, _, runners = phone
    setup(perturb=0.57)
    folder = tmp_path / "copy"
    folder.mkdir()
    for source in (tflite, tflite.with_suffix(".json"), tflite.with_name(tflite.stem + ".examples.json")):
        shutil.copy(source, folder / source.name)
    examples = folder / (tflite.stem + ".examples.json")
    data = json.loads(examples.read_text())
    tolerance = "{}" if bound == "{}" else '{"max_abs_diff": ' + bound + "}"
    examples.write_text(json.dumps({**data, "tolerance": "TOLERANCE"}).replace('"TOLERANCE"', tolerance))
    code, [row] = _bench(tmp_path, folder / tflite.name, "--runner", runners / "benchmark_model", "--parity")
    assert code == 1 and row["status"].startswith("failed: parity on the phone: examples file"), row["status"]
    assert "tolerance" in row["status"] or "not JSON" in row["status"], row["status"]


def test_parity_without_examples_or_output_dump(phone, tmp_path):
    _, _, runners = phone
    folder = tmp_path / "a"
    folder.mkdir()
    onnx = folder / "emo_1m_onnx_fp32.onnx"
    onnx.write_bytes(b"model")
    write_sidecar(onnx, "onnx")
    code, [row] = _bench(tmp_path, onnx, "--runner", runners / "onnxruntime_perf_test", "--parity")
    assert code == 0 and row["parity"]["status"].startswith("skipped: onnxruntime_perf_test cannot write")
    tfl = folder / "emo_1m_tflite_fp32.tflite"
    tfl.write_bytes(b"model")
    write_sidecar(tfl, "tflite")
    code, [row] = _bench(tmp_path, tfl, "--runner", runners / "benchmark_model", "--parity")
    assert code == 1 and row["parity"]["status"] == ("failed: no examples file emo_1m_tflite_fp32.examples.json; "
                                                     "re-export the artifact with emo-export")


def test_app_runner_drives_the_installed_app(phone, tflite, tmp_path):
    _, calls, _ = phone
    code, [row] = _bench(tmp_path, tflite, "--runner", "app", "--delegate", "gpu", "--threads", "4")
    assert code == 0, row["status"]
    s = ["-s", "R5CT1234"]
    got = calls()
    pushes = [c[2:] for c in got if c[2:3] == ["push"]]
    assert pushes == [["push", str(tflite), f"{APP_DIR}/model.tflite"],
                      ["push", str(tflite.with_suffix(".json")), f"{APP_DIR}/model.json"],
                      ["push", str(tflite.with_name(tflite.stem + ".examples.json")), f"{APP_DIR}/model.examples.json"]]
    start = next(c[3] for c in got if c[3:4] and c[3].startswith("am start"))
    assert start == ("am start -W -S -n org.emomobile.demo/.BenchmarkActivity --es model model.tflite --es "
                     "accelerator gpu --ei threads 4 --ei warmup 5 --ei iters 4 --es output result.json")
    assert [*s, "shell", "pm path org.emomobile.demo"] in got and got[-1] == [*s, "shell", f"rm -rf {APP_DIR}"]
    assert row["latencies_ms"] == [2.5, 2.25, 2.75, 2.5] and row["summary"]["median"] == 2.5
    assert row["settings"]["runner"] == "app" and row["settings"]["accelerator_used"] == ["gpu"]
    assert row["settings"]["accelerator"] == "gpu" and row["settings"]["threads"] == 4
    assert row["parity"]["status"] == "passed"
    assert row["versions"] == {"app": "0.2.0", "runtime": "litert", "runtime_version": None,
                               "os": "Android 14 (API 34)"}
    # the app's own device facts (Build.SOC_MODEL...) over the host's getprop reading
    assert row["device"]["soc"] == "Tensor G2" and row["device"]["os"] == "Android 14 (API 34)"
    assert row["device"]["target"] == "adb" and row["device"]["serial"] == "R5CT1234"


def test_app_runner_refusals(phone, tflite, tmp_path):
    setup, calls, _ = phone
    code, [row] = _bench(tmp_path, tflite, "--runner", "app", "--delegate", "nnapi")
    assert code == 1 and row["status"] == ("failed: --delegate nnapi is not offered by the demo app for .tflite "
                                           "artifacts; choose from: cpu, gpu, npu")
    setup(installed=False)
    code, [row] = _bench(tmp_path, tflite, "--runner", "app")
    assert code == 1 and "org.emomobile.demo is not installed" in row["status"] and "installs nothing" in row["status"]
    # the hint installs the debug build, which Gradle signs with the debug key (a release APK is unsigned)
    assert "adb install -r android_demo/app/build/outputs/apk/debug/app-debug.apk" in row["status"]
    assert not any(c[2:3] == ["push"] for c in calls())
    bad = dict(APP_RESULT, status="failed: GPU delegate refused the model", latencies_ms=[])
    setup(app_result=bad)
    code, rows = _bench(tmp_path, tflite, "--runner", "app")
    assert code == 1 and rows[-1]["status"] == "failed: GPU delegate refused the model"
    setup(app_result=dict(APP_RESULT, schema="emo-mobile/android-bench/1"))  # the app of an earlier version
    code, rows = _bench(tmp_path, tflite, "--runner", "app")
    assert code == 1 and rows[-1]["status"] == (
        "failed: app result result.json: field 'schema' says the installed demo app writes "
        "emo-mobile/android-bench/1 (an older app); emo-bench reads "
        "emo-mobile/app-bench/1: build and install the app from this version's android_demo/")


def test_app_runner_refuses_qnn_with_the_way_to_the_npu(phone, tmp_path, mobile_artifacts):
    onnx = next(s.with_suffix(".onnx") for s in sidecars(mobile_artifacts) if s.with_suffix(".onnx").exists())
    code, [row] = _bench(tmp_path, onnx, "--runner", "app", "--delegate", "qnn")
    assert code == 1 and "onnxruntime-android) has no QNN execution provider" in row["status"]
    assert "--format litert-npu, --delegate npu" in row["status"]


def test_a_crashed_app_fails_the_row_at_once(phone, tflite, tmp_path):
    setup, calls, _ = phone
    setup(app_result=None, alive=False)  # the process died before writing its result
    code, [row] = _bench(tmp_path, tflite, "--runner", "app")
    assert code == 1 and row["status"].startswith("failed: the demo app stopped without writing a result")
    assert "adb logcat" in row["status"]
    assert calls()[-1][2:] == ["shell", f"rm -rf {APP_DIR}"]  # cleaned up all the same
    assert not any(c[2:3] == ["pull"] for c in calls())  # nothing to pull: the missing file is not taken as there


def test_a_failed_self_test_fails_the_row(phone, tflite, tmp_path):
    setup, _, _ = phone
    parity = {"max_abs_diff": 0.02, "cosine": 0.9999, "top1_agreement": 1.0, "top5_agreement": 1.0,
              "num_examples": 3, "status": "failed: max_abs_diff 0.02 > 0.0001"}
    setup(app_result=dict(APP_RESULT, parity=parity))
    code, [row] = _bench(tmp_path, tflite, "--runner", "app")  # no --parity: the rule holds on every app row
    assert code == 1 and row["status"] == "failed: parity on the phone: max_abs_diff 0.02 > 0.0001"
    assert row["latencies_ms"] == [2.5, 2.25, 2.75, 2.5]  # the timings are kept with the reason


def test_a_hostile_file_name_never_reaches_the_shell(phone, tflite, tmp_path):
    _, calls, _ = phone
    folder = tmp_path / "x"
    folder.mkdir()
    name = "a'$(touch pwned);b"
    for src in (tflite, tflite.with_suffix(".json"), tflite.with_name(tflite.stem + ".examples.json")):
        target = folder / src.name.replace(tflite.stem, name)
        target.write_bytes(src.read_bytes())
    code, [row] = _bench(tmp_path, folder / f"{name}.tflite", "--runner", "app")
    assert code == 0, row["status"]
    assert all(name not in c[3] for c in calls() if c[2:3] == ["shell"])
    assert all(shlex.split(c[3]) for c in calls() if c[2:3] == ["shell"])


@pytest.mark.parametrize("flags", [["--parity"], ["--runner", "app"]])
def test_adb_only_flags_are_refused_elsewhere(tmp_path, capsys, flags):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    write_sidecar(model, "onnx")
    assert main([str(model), "--device", "host", *flags, "--out", str(tmp_path / "r.jsonl")]) == 2
    assert "are for --device adb" in capsys.readouterr().err
