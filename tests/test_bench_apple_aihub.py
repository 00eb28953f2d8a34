"""mac / ios / aihub targets: one clear line where they cannot run; command building and result mapping."""

import json
import sys
from pathlib import Path

import pytest

from emo.runtime_bench import aihub, apple
from emo.runtime_bench.cli import main
from emo.runtime_bench.results import Artifact, BenchError

ARTIFACT = Artifact(Path("/art/emo_1m_coreml_fp16.mlpackage"),
                    {"variant": "emo_1m", "backend": "coreml", "precision": "fp16", "sha256": "cd" * 32,
                     "input": {"shape": [1, 3, 224, 224]}})
SETTINGS = {"threads": 2, "warmup": 3, "iters": 20, "min_seconds": None}


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS these targets run for real")
@pytest.mark.parametrize("target", ["mac", "ios", "ios:00008110-000A"])
def test_apple_targets_need_macos(tmp_path, capsys, target):
    (tmp_path / "emo_1m_coreml_fp16.mlpackage").mkdir()
    code = main([str(tmp_path), "--device", target, "--out", str(tmp_path / "r.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"the {target.split(':')[0]} target needs macOS with Xcode" in err


def test_ios_commands():
    cmds = apple.ios_commands("UDID1", ARTIFACT.path, SETTINGS, "CPU_AND_NE")
    container = ["--domain-type", "appDataContainer", "--domain-identifier", "org.emomobile.demo"]
    assert cmds["copy_in"] == ["xcrun", "devicectl", "device", "copy", "to", "--device", "UDID1", "--source",
                               "/art/emo_1m_coreml_fp16.mlpackage", "--destination",
                               "Documents/emo-bench/emo_1m_coreml_fp16.mlpackage", *container]
    assert cmds["launch"] == ["xcrun", "devicectl", "device", "process", "launch", "--device", "UDID1",
                              "--terminate-existing", "org.emomobile.demo",
                              "-emoBenchmark", "Documents/emo-bench/emo_1m_coreml_fp16.mlpackage",
                              "-emoBenchIterations", "20", "-emoBenchWarmup", "3", "-emoBenchComputeUnits",
                              "CPU_AND_NE", "-emoBenchOutput",
                              "Documents/emo-bench/result-emo_1m_coreml_fp16-CPU_AND_NE.json"]
    assert cmds["copy_out"][:10] == ["xcrun", "devicectl", "device", "copy", "from", "--device", "UDID1",
                                     "--source", "Documents/emo-bench/result-emo_1m_coreml_fp16-CPU_AND_NE.json",
                                     "--destination"]


IOS_RESULT = {"schema": "emo-mobile/ios-bench/1", "artifact": "emo_1m_coreml_fp16.mlpackage",
              "compute_units": "ALL", "load_ms": 41.2, "first_inference_ms": 9.8,
              "latencies_ms": [1.2, 1.0, 1.4, 1.1], "peak_memory_mb": 38.5,
              "device": {"model": "iPhone15,2", "os": "iOS 18.1", "soc": "A16"}, "status": "ok",
              "app_version": "0.1.0"}


def test_run_ios_with_a_fake_devicectl():
    issued = []

    def execute(cmd):
        issued.append(cmd)
        if cmd[3:5] == ["copy", "from"]:
            if sum(c[3:5] == ["copy", "from"] for c in issued) < 2:
                raise BenchError("result not written yet")  # the app is still running: poll again
            dest = cmd[cmd.index("--destination") + 1]
            with open(dest, "w") as f:
                json.dump(IOS_RESULT, f)
        return ""

    row = apple.run_ios(ARTIFACT, "UDID1", SETTINGS, "ALL", execute=execute, poll_seconds=0)
    assert [c[3:5] for c in issued] == [["copy", "to"], ["process", "launch"], ["copy", "from"], ["copy", "from"]]
    assert row.status == "ok" and row.latencies_ms == [1.2, 1.0, 1.4, 1.1]
    assert row.summary["median"] == pytest.approx(1.15) and row.load_ms == 41.2 and row.peak_memory_mb == 38.5
    assert row.device == {"target": "ios", "udid": "UDID1", "model": "iPhone15,2", "os": "iOS 18.1", "soc": "A16"}
    assert row.settings["compute_units"] == "ALL"


def test_ios_result_of_another_schema_is_refused():
    with pytest.raises(BenchError, match="expected emo-mobile/ios-bench/1"):
        apple.map_ios_result({**IOS_RESULT, "schema": "x"}, ARTIFACT, SETTINGS, "U")


class FakeJob:
    job_id = "jq1"

    def __init__(self, log):
        self.log = log

    def get_target_model(self):
        return "compiled-target-model"

    def download_profile(self):
        return {"execution_summary": {"estimated_inference_time": 1800, "all_inference_times": [2000, 1800, 2200],
                                      "first_load_time": 1_374_293, "warm_load_time": 277_823,
                                      "estimated_inference_peak_memory": 3 * 2**20}}


class FakeHub:
    def __init__(self):
        self.log = []

    def Device(self, name):  # noqa: N802 - qai_hub's API
        return f"device<{name}>"

    def submit_compile_job(self, **kwargs):
        self.log.append(("compile", kwargs))
        return FakeJob(self.log)

    def submit_profile_job(self, **kwargs):
        self.log.append(("profile", kwargs))
        return FakeJob(self.log)


def test_aihub_profile_mapping():
    hub = FakeHub()
    tflite = Artifact(Path("/a/emo_1m_tflite_fp32.tflite"),
                      {"variant": "emo_1m", "backend": "tflite", "precision": "fp32", "sha256": "ef" * 32})
    row = aihub.run_aihub(tflite, "Samsung Galaxy S24", SETTINGS, hub)
    assert hub.log == [("profile", {"model": "/a/emo_1m_tflite_fp32.tflite", "device": "device<Samsung Galaxy S24>",
                                    "options": "--max_profiler_iterations 20"})]
    assert row.status == "ok" and row.latencies_ms == [2.0, 1.8, 2.2] and row.summary["median"] == 2.0
    assert row.load_ms == pytest.approx(277.823) and row.peak_memory_mb == 3.0
    assert row.device == {"target": "aihub", "model": "Samsung Galaxy S24", "job": "jq1"}


def test_aihub_compiles_onnx_first_and_refuses_others():
    hub = FakeHub()
    onnx = Artifact(Path("/a/m.onnx"), {"variant": "emo_1m", "backend": "onnx",
                                                              "precision": "fp32"})
    aihub.run_aihub(onnx, "Pixel 8", SETTINGS, hub)
    assert [kind for kind, _ in hub.log] == ["compile", "profile"]
    assert hub.log[0][1]["options"] == "--target_runtime onnx" and hub.log[1][1]["model"] == "compiled-target-model"
    row = aihub.run_aihub(ARTIFACT, "Pixel 8", SETTINGS, hub)
    assert row.status == "failed: AI Hub profiles tflite and onnx artifacts here, not coreml"


def test_aihub_without_client_or_token(tmp_path, capsys, monkeypatch):
    (tmp_path / "m.tflite").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "qai_hub", None)
    assert main([str(tmp_path), "--device", "aihub:Pixel 8", "--out", str(tmp_path / "r.jsonl")]) == 2
    assert "pip install qai-hub" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "qai_hub", object())
    monkeypatch.setattr(aihub, "CONFIG", tmp_path / "no-client.ini")
    assert main([str(tmp_path), "--device", "aihub:Pixel 8", "--out", str(tmp_path / "r.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "needs your API token: run `qai-hub configure --api_token TOKEN`" in err and err.count("\n") == 1
