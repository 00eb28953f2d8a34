"""mac / ios / aihub targets: one clear line where they cannot run; command building and result mapping."""

import json
import sys
from pathlib import Path

import pytest
from app_bench import sample_result

from emo.runtime_bench import aihub, apple
from emo.runtime_bench.cli import main
from emo.runtime_bench.results import Artifact, BenchError
from emo.runtime_bench.targets import Run, Settings, execute

ARTIFACT = Artifact(Path("/art/emo_1m_coreml_fp16.mlpackage"),
                    {"variant": "emo_1m", "backend": "coreml", "precision": "fp16", "sha256": "cd" * 32,
                     "input": {"shape": [1, 3, 224, 224]}})
SETTINGS = Settings(threads=2, warmup=3, iters=20)


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS these targets run for real")
@pytest.mark.parametrize("target", ["mac", "ios", "ios:00008110-000A"])
def test_apple_targets_need_macos(tmp_path, capsys, target):
    (tmp_path / "emo_1m_coreml_fp16.mlpackage").mkdir()
    code = main([str(tmp_path), "--device", target, "--out", str(tmp_path / "r.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"the {target.split(':')[0]} target needs macOS with Xcode" in err


def test_ios_commands_copy_the_sidecar_and_the_examples(tmp_path):
    art = tmp_path / "emo_1m_coreml_fp16.mlpackage"
    art.mkdir()
    for name in ("emo_1m_coreml_fp16.json", "emo_1m_coreml_fp16.examples.json"):
        (tmp_path / name).write_text("{}")
    cmds = apple.ios_commands("UDID1", Artifact(art, ARTIFACT.sidecar), SETTINGS, "CPU_AND_NE", "t0k3n")
    container = ["--domain-type", "appDataContainer", "--domain-identifier", "org.emomobile.demo"]

    def copy(source, name):
        return ["xcrun", "devicectl", "device", "copy", "to", "--device", "UDID1", "--source", str(source),
                "--destination", f"Documents/emo-bench/{name}", *container]

    # names new for every run: a file of an earlier run (devicectl cannot delete it) never meets this artifact
    assert cmds["copy_in"] == [copy(art, "model-t0k3n.mlpackage"),
                               copy(tmp_path / "emo_1m_coreml_fp16.json", "model-t0k3n.json"),
                               copy(tmp_path / "emo_1m_coreml_fp16.examples.json", "model-t0k3n.examples.json")]
    assert cmds["launch"] == ["xcrun", "devicectl", "device", "process", "launch", "--device", "UDID1",
                              "--terminate-existing", "org.emomobile.demo", "-emoBenchmark", "model-t0k3n.mlpackage",
                              "-emoBenchIterations", "20", "-emoBenchWarmup", "3", "-emoBenchComputeUnits",
                              "CPU_AND_NE", "-emoBenchOutput", "result-t0k3n.json"]
    assert cmds["copy_out"] == ["xcrun", "devicectl", "device", "copy", "from", "--device", "UDID1", "--source",
                                "Documents/emo-bench/result-t0k3n.json", "--destination", "{local}", *container]
    (tmp_path / "emo_1m_coreml_fp16.examples.json").unlink()  # no examples file: nothing to copy, parity null
    assert len(apple.ios_commands("UDID1", Artifact(art, ARTIFACT.sidecar), SETTINGS, "ALL", "x")["copy_in"]) == 2


IOS_RESULT = sample_result("ios")


def fake_devicectl(results: list, issued: list, device_root: Path):
    """``xcrun devicectl`` for one app container: copies land in ``device_root``; the launch 'runs' the app, which
    writes the next of ``results`` (None: nothing) under the requested name after one failed poll."""
    def execute(cmd):
        issued.append(cmd)
        if cmd[3:5] == ["copy", "to"]:
            target = device_root / cmd[cmd.index("--destination") + 1]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(Path(cmd[cmd.index("--source") + 1]).read_bytes() if Path(
                cmd[cmd.index("--source") + 1]).is_file() else b"(a folder)")
        elif cmd[3:5] == ["process", "launch"]:
            args = cmd[cmd.index("org.emomobile.demo") + 1:]
            launch = dict(zip(args[::2], args[1::2], strict=True))
            folder = device_root / "Documents/emo-bench"
            stem = launch["-emoBenchmark"].removesuffix(".mlpackage")
            assert (folder / launch["-emoBenchmark"]).exists() and (folder / f"{stem}.json").exists()
            result = results.pop(0)
            if result is not None:  # the app pairs files by stem, as EMOCore's ModelCatalog does
                examples = (folder / f"{stem}.examples.json").exists()
                result = dict(result, parity=result.get("parity") if examples else None)
                issued.append(("will write", folder / launch["-emoBenchOutput"], result))
        elif cmd[3:5] == ["copy", "from"]:
            pending = [i for i in issued if i[0] == "will write"]
            polls = sum(c[3:5] == ["copy", "from"] for c in issued if isinstance(c, list))
            if not pending or polls < 2:
                raise BenchError("devicectl: the file does not exist")  # the app is still running: poll again
            _, remote, result = pending[-1]
            with open(cmd[cmd.index("--destination") + 1], "w") as f:
                json.dump(result, f)
        return ""

    return execute


def _coreml(tmp_path, examples=True):
    art = tmp_path / "emo_1m_coreml_fp16.mlpackage"
    art.mkdir(exist_ok=True)
    (tmp_path / "emo_1m_coreml_fp16.json").write_text(json.dumps(ARTIFACT.sidecar))
    if examples:
        (tmp_path / "emo_1m_coreml_fp16.examples.json").write_text("{}")
    return Artifact(art, ARTIFACT.sidecar)


def test_run_ios_with_a_fake_devicectl(tmp_path):
    issued = []
    execute = fake_devicectl([IOS_RESULT], issued, tmp_path / "phone")
    row = apple.run_ios(_coreml(tmp_path), "UDID1", SETTINGS, "ALL", execute=execute, poll_seconds=0)
    commands = [c[3:5] for c in issued if isinstance(c, list)]
    assert commands == [["copy", "to"]] * 3 + [["process", "launch"], ["copy", "from"], ["copy", "from"]]
    assert row.status == "ok" and row.latencies_ms == [2.5, 2.25, 2.75, 2.5]
    assert row.summary["median"] == pytest.approx(2.5) and row.load_ms == 120.5 and row.peak_memory_mb == 88.0
    assert row.device == {"target": "ios", "udid": "UDID1", "model": "iPhone15,2", "manufacturer": "Apple",
                          "soc": "A16", "os": "iOS 18.1", "abi": "arm64"}
    assert row.settings["compute_units"] == "ALL" and row.settings["runner"] == "app"
    assert row.parity["status"] == "passed"  # the examples went along, so the app's self-test ran


def test_ios_runs_never_meet_an_earlier_runs_files(tmp_path):
    """devicectl cannot delete files: an artifact without examples benchmarked after one with them is not
    self-tested against the earlier run's examples (every run copies to names of its own)."""
    issued, phone = [], tmp_path / "phone"
    execute = fake_devicectl([IOS_RESULT, IOS_RESULT], issued, phone)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    row = apple.run_ios(_coreml(tmp_path / "a"), "U", SETTINGS, "ALL", execute=execute, poll_seconds=0)
    assert row.parity["status"] == "passed"
    row = apple.run_ios(_coreml(tmp_path / "b", examples=False), "U", SETTINGS, "ALL", execute=execute, poll_seconds=0)
    assert row.ok and row.parity is None
    launches = [c[c.index("-emoBenchmark") + 1] for c in issued if isinstance(c, list) and "-emoBenchmark" in c]
    assert len(set(launches)) == 2, launches


def test_ios_parity_fails_the_row_as_on_android(tmp_path):
    parity = {**IOS_RESULT["parity"], "top1_agreement": 0.6667, "status": "failed: top1_agreement 0.667 < 1.0"}
    execute = fake_devicectl([dict(IOS_RESULT, parity=parity)], [], tmp_path / "phone")
    row = apple.run_ios(_coreml(tmp_path), "UDID1", SETTINGS, "CPU_AND_NE", execute=execute, poll_seconds=0)
    assert row.status == "failed: parity on the phone: top1_agreement 0.667 < 1.0"


def test_ios_refuses_old_apps_and_malformed_results_at_once(tmp_path):
    issued = []
    old = {"schema": "emo-mobile/ios-bench/1", "artifact": "x.mlpackage", "device": {"model": "iPhone15,2"}}
    execute = fake_devicectl([old], issued, tmp_path / "phone")
    row = apple.run_ios(_coreml(tmp_path), "U", SETTINGS, "ALL", execute=execute, poll_seconds=0, timeout_s=60)
    assert row.status == ("failed: app result result.json: field 'schema' says the installed demo app writes "
                          "emo-mobile/ios-bench/1 (an older app); emo-bench reads emo-mobile/app-bench/1: build and "
                          "install the app from this version's ios_demo/")
    bad_os = dict(IOS_RESULT, device={**IOS_RESULT["device"], "os": "Version 18.1 (Build 22B83)"})
    row = apple.run_ios(_coreml(tmp_path), "U", SETTINGS, "ALL", execute=fake_devicectl([bad_os], [], tmp_path / "p"),
                        poll_seconds=0)
    assert row.status.startswith("failed: app result result.json: field 'device.os'")
    android = sample_result("android")
    row = apple.run_ios(_coreml(tmp_path), "U", SETTINGS, "ALL", execute=fake_devicectl([android], [], tmp_path / "q"),
                        poll_seconds=0)
    assert row.status.startswith("failed: app result result.json: field 'app.platform' must be 'ios'")


def test_ios_timeout_and_missing_sidecar(tmp_path):
    execute = fake_devicectl([None], [], tmp_path / "phone")
    row = apple.run_ios(_coreml(tmp_path, examples=False), "U", SETTINGS, "ALL", execute=execute, poll_seconds=0,
                        timeout_s=0)
    assert row.status == "failed: no result from the app after 0 s"
    lone = tmp_path / "lone" / "m.mlpackage"
    lone.mkdir(parents=True)
    from emo.runtime_bench.targets import Run
    from emo.runtime_bench.targets import execute as execute_run

    target = apple.IosTarget.__new__(apple.IosTarget)  # no macOS here: the target's checks without its set-up
    target.settings, target.udid, target.units = SETTINGS, "U", ["ALL"]
    (row,) = execute_run(target, Run([Artifact(lone, None, "no sidecar m.json next to m.mlpackage")], "lone",
                                     lambda usable: [apple.run_ios(usable[0], "U", SETTINGS, "ALL", execute=execute)]))
    assert row.status == "failed: no sidecar m.json next to m.mlpackage" and row.device["target"] == "ios"


class FakeJob:
    job_id = "jq1"

    def __init__(self, log):
        self.log = log

    def get_target_model(self):
        return "compiled-target-model"

    def wait(self, timeout=None):
        self.log.append(("wait", {"timeout": timeout}))
        return type("JobStatus", (), {"success": True, "message": None})()

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
                                    "options": "--max_profiler_iterations 20"}), ("wait", {"timeout": 3600})]
    assert row.status == "ok" and row.latencies_ms == [2.0, 1.8, 2.2] and row.summary["median"] == 2.0
    assert row.load_ms == pytest.approx(277.823) and row.peak_memory_mb == 3.0
    assert row.device == {"target": "aihub", "model": "Samsung Galaxy S24", "job": "jq1"}


def test_aihub_compiles_onnx_first_and_refuses_others():
    hub = FakeHub()
    onnx = Artifact(Path("/a/m.onnx"), {"variant": "emo_1m", "backend": "onnx",
                                                              "precision": "fp32"})
    aihub.run_aihub(onnx, "Pixel 8", SETTINGS, hub)
    assert [kind for kind, _ in hub.log] == ["compile", "wait", "profile", "wait"]  # every job waited on, bounded
    assert hub.log[0][1]["options"] == "--target_runtime onnx" and hub.log[2][1]["model"] == "compiled-target-model"
    target = aihub.AiHubTarget.__new__(aihub.AiHubTarget)  # the target's check, without a token
    target.settings, target.hub, target.device_name = SETTINGS, hub, "Pixel 8"
    (row,) = execute(target, Run([ARTIFACT], "x", lambda usable: [target.run(usable[0])]))
    assert row.status == "failed: AI Hub profiles tflite and onnx artifacts here, not coreml"
    assert row.device == {"target": "aihub", "model": "Pixel 8"} and len(hub.log) == 4  # nothing more submitted


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


def test_aihub_jobs_are_waited_on_with_a_timeout_and_failures_fail_the_row(tmp_path):
    """A compile job AI Hub failed (or a wait that timed out) fails the row with the reason; the run goes on."""
    class FailedJob(FakeJob):
        def wait(self, timeout=None):
            return type("JobStatus", (), {"success": False, "message": "unsupported op Erf"})()

    class SlowJob(FakeJob):
        def wait(self, timeout=None):
            raise TimeoutError(f"job did not finish in {timeout} s")

    onnx = Artifact(Path("/a/m.onnx"), {"variant": "emo_1m", "backend": "onnx", "precision": "fp32"})
    for job, reason in ((FailedJob, "the AI Hub compile job jq1 failed: unsupported op Erf"),
                        (SlowJob, "job did not finish in 3600 s")):
        hub = FakeHub()
        hub.submit_compile_job = lambda job=job, hub=hub, **kw: job(hub.log)
        target = aihub.AiHubTarget.__new__(aihub.AiHubTarget)
        target.settings, target.hub, target.device_name = SETTINGS, hub, "Pixel 8"
        (row,) = execute(target, Run([onnx], "x", lambda usable, t=target: [t.run(usable[0])]))
        assert row.status == f"failed: {reason}"
