"""emo-verify --arm: the trained fixture's fp32 and int8 TFLite and ONNX artifacts run by the aarch64 runtimes under
qemu on Cortex-A53, Cortex-A76 and Cortex-A710 (the cached Arm root of `sudo make arm-root`), the guest script
natively on x86, bad input, and clean-up after Ctrl-C, SIGTERM and SIGKILL (nothing left mounted or running).

The emulated tests need root and the cached root; without them they skip with that reason. The fixture is exported
at its training size (112x112) and calibrated on Fashion-MNIST training images, never the parity photos."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from emo.contract import examples as examples_format
from emo.errors import EMOError
from emo.export import arm, cli
from emo_testutil import REPO, assert_one_line_error, run_tool, snapshot, write_sidecar

pytestmark = pytest.mark.arm

FIXTURE = REPO / "tests" / "fixtures" / "emo_1m_fashion_mnist.pth"
CPUS = ["cortex-a53", "cortex-a76", "cortex-a710"]
ARTIFACTS = ["fp32/emo_1m_onnx_fp32.onnx", "fp32/emo_1m_tflite_fp32.tflite", "int8/emo_1m_onnx_int8.onnx",
             "int8/emo_1m_tflite_int8.tflite"]


def arm_root() -> arm.ArmRoot:
    """The cached root, or a skip that says why (not root; no root cached: `sudo make arm-root`)."""
    try:
        return arm.find_root(arm.DEFAULT_ROOT)
    except EMOError as e:
        pytest.skip(str(e))


def _calibration(folder: Path) -> Path:
    """50 Fashion-MNIST *training* images (5 per class, upscaled to 112 as the fixture was trained)."""
    from emo import fashion_mnist as fm

    if not (fm.DEFAULT_ROOT / fm.FILES["train"][0]).exists():
        pytest.skip("dataset-fashion-mnist is not installed (make sysdeps): no training images to calibrate on")
    images, labels = fm.load_split("train")
    fm.write_split(images, labels, fm.balanced_indices(labels, 5, seed=0), folder, 112)
    return folder


def _export_fixture(out: Path) -> Path:
    """The fixture's fp32 and int8 ONNX and TFLite (``ARTIFACTS``), at its training size read from the checkpoint."""
    common = ["--model", "emo_1m", "--weights", str(FIXTURE), "--format", "onnx,tflite"]
    assert cli.export_main([*common, "--out", str(out / "fp32")]) == 0
    calibration = _calibration(out / "calibration")
    assert cli.export_main([*common, "--precision", "int8", "--calibration", str(calibration),
                            "--calibration-count", "50", "--out", str(out / "int8")]) == 0
    return out


@pytest.fixture(scope="module")
def fixture_artifacts(tmp_path_factory) -> Path:
    arm_root()  # skip before the exports when nothing can run them
    return _export_fixture(tmp_path_factory.mktemp("arm"))


def _no_leftovers(root: Path) -> None:
    mounts = Path("/proc/mounts").read_text()
    assert str(root) not in mounts, [line for line in mounts.splitlines() if str(root) in line]
    assert not list((root / "tmp").glob(f"{arm.WORK_PREFIX}*")), "a private work folder was left in the root"


def _processes_using(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{proc.name}: {cmdline[:200]}")
    return found


# ---------------------------------------------------------------------------------------------- no root needed
def test_cpu_models_parse_and_unknown_ones_are_listed():
    assert arm.parse_cpus("cortex-a76, cortex-a53,cortex-a76") == ["cortex-a76", "cortex-a53"]
    assert arm.parse_cpus("all") == ["cortex-a53", "cortex-a55", "cortex-a76", "cortex-a710", "max"]
    with pytest.raises(EMOError, match="unknown Arm CPU model cortex-a99, snapdragon; choose from: cortex-a35,"):
        arm.parse_cpus("cortex-a99,cortex-a53,snapdragon")
    with pytest.raises(EMOError, match="unknown Arm CPU model ','"):
        arm.parse_cpus(",")


def test_bad_cpu_model_is_one_line_exit_2(tmp_path):
    artifact = tmp_path / "emo_1m_onnx_fp32.onnx"
    artifact.write_bytes(b"stand-in")
    write_sidecar(artifact, "onnx")
    before = snapshot(tmp_path)
    proc = run_tool("emo-verify", artifact, "--arm", "cortex-a99", timeout=120)
    assert_one_line_error(proc, 2, "unknown Arm CPU model cortex-a99; choose from: cortex-a35, cortex-a53")
    proc = run_tool("emo-verify", artifact, "--arm", "cortex-a53", "--weights", "x.pth", timeout=120)
    assert_one_line_error(proc, 2, "--weights does not apply to --arm")
    assert snapshot(tmp_path) == before


def test_no_cached_root_names_make_arm_root(tmp_path, monkeypatch, capsys):
    artifact = tmp_path / "emo_1m_tflite_fp32.tflite"
    artifact.write_bytes(b"stand-in")
    write_sidecar(artifact, "tflite")
    before = snapshot(tmp_path)
    monkeypatch.setattr(arm, "DEFAULT_ROOT", tmp_path / "no-root")
    assert cli.verify_main([str(artifact), "--arm", "cortex-a53"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no Arm root at" in err[0] and "`sudo make arm-root`" in err[0], err
    assert snapshot(tmp_path) == before
    half = tmp_path / "half"  # a root without its stamp is half-made: refused the same way
    (half / "opt/emo/venv/bin").mkdir(parents=True)
    with pytest.raises(EMOError, match="half-made"):
        arm.find_root(half)


def test_not_root_is_refused_with_the_reason(tmp_path, monkeypatch):
    root = tmp_path / "root"
    for part in (arm.QEMU, arm.GUEST_PYTHON):
        (root / part).parent.mkdir(parents=True, exist_ok=True)
        (root / part).write_text("")
    (root / arm.STAMP).write_text("suite bookworm\nqemu 1:10.0.2\nnumpy==2.4.6\n")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(EMOError, match="needs root"):
        arm.find_root(root)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    found = arm.find_root(root)
    assert found.qemu_version == "1:10.0.2" and found.versions == {"numpy": "2.4.6"}


def test_executorch_pte_is_not_checked_exit_3(tmp_path, capsys):
    artifact = tmp_path / "emo_1m_xnnpack_fp32.pte"
    artifact.write_bytes(b"stand-in")
    write_sidecar(artifact, "executorch")
    assert cli.verify_main([str(artifact), "--arm", "cortex-a76"]) == 3
    assert "links libtorch" in capsys.readouterr().err


def test_arm_parity_rows_merge_into_the_sidecar(tmp_path):
    artifact = tmp_path / "emo_1m_onnx_fp32.onnx"
    artifact.write_bytes(b"stand-in")
    side = write_sidecar(artifact, "onnx")
    arm._record(artifact, [{"cpu": "max", "status": "passed"}, {"cpu": "cortex-a76", "status": "passed"}])
    arm._record(artifact, [{"cpu": "cortex-a53", "status": "failed: x"}, {"cpu": "max", "status": "failed: y"}])
    rows = json.loads(side.read_text())["arm_parity"]
    assert [(r["cpu"], r["status"]) for r in rows] == [("cortex-a53", "failed: x"), ("cortex-a76", "passed"),
                                                      ("max", "failed: y")]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([artifact.name, side.name])  # no temporary left


def test_guest_script_reports_a_runtime_failure(tmp_path):
    artifact = tmp_path / "broken.tflite"
    artifact.write_bytes(b"TFL3 not a model")
    run = arm.run_on_host(artifact, "tflite", [np.zeros((1, 3, 8, 8), np.float32)])
    assert run.outputs is None and run.error.startswith("ValueError"), run.error
    assert run.report["machine"] == "x86_64"


def _aarch64_program(path: Path, instruction: int) -> Path:
    """A static aarch64 ELF that executes one instruction and exits 0 (mov x0, 0; mov x8, 93; svc 0)."""
    import struct

    code = b"".join(struct.pack("<I", word) for word in (instruction, 0xD2800000, 0xD2800BA8, 0xD4000001))
    base, headers = 0x400000, 64 + 56
    elf = struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 2, 183, 1, base + headers, 64, 0, 0, 64,
                      56, 1, 0, 0, 0)
    segment = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, headers + len(code), headers + len(code), 0x1000)
    path.write_bytes(elf + segment + code)
    path.chmod(0o755)
    return path


SDOT, SMMLA = 0x4E829420, 0x4E82A420  # sdot v0.4s, v1.16b, v2.16b (Armv8.2 dot product); smmla (Armv8.6 i8mm)


@pytest.mark.parametrize("instruction, lacking, having", [(SDOT, "cortex-a53", "cortex-a76"),
                                                          (SMMLA, "cortex-a76", "cortex-a710")])
def test_emulated_cores_refuse_instructions_they_lack(tmp_path, instruction, lacking, having):
    """The premise of the Arm rows: a kernel the core cannot run raises SIGILL under its model, as on the phone."""
    qemu = arm.DEFAULT_ROOT / arm.QEMU
    if not qemu.exists():
        pytest.skip(f"no Arm root at {arm.DEFAULT_ROOT} (sudo make arm-root)")
    program = _aarch64_program(tmp_path / "one_instruction", instruction)
    # in tmp_path: where core dumps are enabled, qemu writes the refused program's core into its working folder
    refused = subprocess.run([str(qemu), "-cpu", lacking, str(program)], capture_output=True, text=True, timeout=60,
                             cwd=tmp_path)
    assert refused.returncode == -signal.SIGILL or "Illegal instruction" in refused.stderr, refused
    assert subprocess.run([str(qemu), "-cpu", having, str(program)], timeout=60, cwd=tmp_path).returncode == 0


# ------------------------------------------------------------------------------------------ emulated (root)
def test_guest_script_on_x86_matches_the_examples(fixture_artifacts):
    """The guest script itself (NumPy + runtime, int8 quantized I/O) natively: every artifact within tolerance (the
    x86 row beside the Arm ones)."""
    for name in ARTIFACTS:
        artifact = fixture_artifacts / name
        examples = examples_format.read(artifact)
        side = json.loads(artifact.with_suffix(".json").read_text())
        run = arm.run_on_host(artifact, side["backend"], arm.example_inputs(examples, side))
        result = arm.row("x86-64 (host)", False, None, run, examples)
        assert result["status"] == "passed", (name, result)
        if "tflite_int8" in name:
            assert run.report["runtime"]["input_dtype"] == "int8" and run.report["runtime"]["xnnpack_whole_graph"]


@pytest.mark.parametrize("name", ARTIFACTS)
def test_fixture_passes_on_arm_cores(fixture_artifacts, name, capsys):
    root = arm_root()
    artifact = fixture_artifacts / name
    side_before = json.loads(artifact.with_suffix(".json").read_text())
    assert cli.verify_main([str(artifact), "--arm", ",".join(CPUS)]) == 0
    out = capsys.readouterr().out
    assert "no latency" in out and " ms" not in out
    side = json.loads(artifact.with_suffix(".json").read_text())
    assert {k: v for k, v in side.items() if k != "arm_parity"} == side_before
    rows = side["arm_parity"]
    assert [r["cpu"] for r in rows] == CPUS
    for r in rows:
        assert r["emulated"] is True and r["emulator"].startswith("qemu-aarch64 1:10."), r
        assert r["status"] == "passed" and r["num_examples"] == 3, r
        assert r["guest_uid"] == arm.GUEST_UID  # the runtime parsed the artifact as nobody, not root
        assert r["tolerance"] == side["parity"]["tolerance"]
        assert not any("ms" in key or "latency" in key for key in r), r
    features = {r["cpu"]: set(r["cpu_features"]) for r in rows}
    # the guest saw each model's own features: NEON everywhere, fp16 and dot product from the A76, SVE2 and i8mm on
    # the Armv9 A710 (and the Arm CPU part numbers 0xd03, 0xd0b, 0xd47)
    assert "asimd" in features["cortex-a53"] and not features["cortex-a53"] & {"asimdhp", "asimddp", "sve"}
    assert {"asimdhp", "asimddp"} <= features["cortex-a76"] and "sve" not in features["cortex-a76"]
    assert {"sve2", "i8mm", "asimddp"} <= features["cortex-a710"] and "sme" not in features["cortex-a710"]
    assert [r["cpu_part"] for r in rows] == ["0xd03", "0xd0b", "0xd47"]
    runtime = rows[0]["runtime"]
    if name.endswith(".tflite"):
        assert runtime["name"] == "ai-edge-litert" and runtime["version"] == root.versions["ai-edge-litert"]
        assert runtime["xnnpack_whole_graph"], runtime  # XNNPACK took the graph on Arm, not the reference kernels
    else:
        assert runtime["name"] == "onnxruntime" and runtime["version"] == root.versions["onnxruntime"]
        assert all(r["runtime"]["ep_devices"][0]["vendor"] == "ARM" for r in rows)  # ORT saw an Arm CPU
    if "fp32" in name:  # fp32 Arm kernels stay within 1e-5 of the x86 ones on these logits
        assert all(r["vs_host_max_abs_diff"] < 1e-5 for r in rows), rows
    _no_leftovers(root.path)


def test_arm_check_fails_when_the_outputs_are_wrong(fixture_artifacts, tmp_path, capsys):
    """Not vacuous: the same artifact against examples whose expected logits are negated fails on Arm (exit 1)."""
    root = arm_root()
    source = fixture_artifacts / "fp32" / "emo_1m_tflite_fp32.tflite"
    artifact = tmp_path / source.name
    for path in (source, source.with_suffix(".json"), examples_format.examples_path(source)):
        shutil.copy(path, tmp_path / path.name)
    data = json.loads(examples_format.examples_path(artifact).read_text())
    for example in data["examples"]:
        logits = examples_format.decode_tensor(example["output"], "output", "test")
        example["output"] = examples_format.encode_tensor(-logits)
    examples_format.examples_path(artifact).write_text(json.dumps(data))
    assert cli.verify_main([str(artifact), "--arm", "cortex-a53"]) == 1
    rows = json.loads(artifact.with_suffix(".json").read_text())["arm_parity"]
    assert rows[0]["status"].startswith("failed: max_abs_diff") and rows[0]["cosine"] < -0.99
    assert "failed: max_abs_diff" in capsys.readouterr().out
    _no_leftovers(root.path)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGKILL, -9)])
def test_interrupted_run_leaves_nothing_mounted_or_running(fixture_artifacts, tmp_path, signum, code):
    root = arm_root()
    source = fixture_artifacts / "int8" / "emo_1m_tflite_int8.tflite"
    for path in (source, source.with_suffix(".json"), examples_format.examples_path(source)):
        shutil.copy(path, tmp_path / path.name)
    artifact = tmp_path / source.name
    before = snapshot(tmp_path)
    proc = subprocess.Popen([str(Path(sys.executable).parent / "emo-verify"), str(artifact), "--arm", "max"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marker = f"{arm.WORK_PREFIX}{proc.pid}-"
    deadline = time.monotonic() + 300
    while not any("qemu-aarch64" in p for p in _processes_using(marker)):  # the emulator is running
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    time.sleep(1)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    if signum != signal.SIGKILL:
        assert "nothing half-written was left behind" in err and "Traceback" not in err, err
    deadline = time.monotonic() + 30
    while _processes_using(marker) and time.monotonic() < deadline:  # SIGKILL: the emulator dies with its parent
        time.sleep(0.2)
    assert not _processes_using(marker)
    assert snapshot(tmp_path) == before  # the sidecar was not touched
    if signum == signal.SIGKILL:  # its finally never ran: the next run removes the dead run's folder
        assert list((root.path / "tmp").glob(f"{marker}*"))
        arm._remove_stale_work(root)
    _no_leftovers(root.path)
