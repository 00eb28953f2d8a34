"""Hostile artifact names must not run commands on the phone (issue: words reach `adb shell` unquoted).

The fake adb here behaves as a real device does: `adb shell` joins its arguments into one string and the device
runs it with `sh -c`. The device's /data/local/tmp is a folder of the test; the runners are shell scripts that
print a real runner output. A name such as `x$(touch pwned)y.tflite` must leave no `pwned` file anywhere.
"""

import json
from pathlib import Path

import pytest

from emo.runtime_bench import android
from emo.runtime_bench.cli import main
from emo_testutil import install_fake_adb, set_fake_adb_state, write_sidecar

OUTPUTS = Path(__file__).resolve().parent.parent.parent / "shared" / "reference" / "runner_outputs"

# a fake adb (after emo_testutil.FAKE_ADB_PROLOGUE) whose `shell` runs the joined command string through `sh -c`,
# as a device does
SH_ADB = r'''
if args[0] == "devices":
    sys.stdout.buffer.write(b"* daemon not running; starting now at tcp:5037\n* daemon started successfully\n"
                            b"List of devices attached\nR5CT1234\tdevice\n")
    sys.exit(0)
if args[0] == "push":
    local(args[2]).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(args[1], local(args[2]))
    sys.exit(0)
if args[0] == "pull":
    shutil.copy(local(args[1]), args[2])
    sys.exit(0)
command = " ".join(args[1:])
if command == "getprop":
    sys.stdout.buffer.write(b"[ro.product.model]: [Pixel \xff\xfe 7]\n[ro.product.cpu.abi]: [arm64-v8a]\n")
    sys.exit(0)
if command.startswith(("cat /sys/", "dumpsys", "command -v")):
    sys.exit(0)
# the device's /data lives under the test's folder; everything else is the command exactly as adb received it
command = command.replace("/data/local/tmp", str(root / "data" / "local" / "tmp"))
proc = subprocess.run(["sh", "-c", command], cwd=state["cwd"], capture_output=True)
sys.stdout.buffer.write(proc.stdout)
sys.stderr.buffer.write(proc.stderr)
sys.exit(proc.returncode)
'''

HOSTILE_NAMES = ["x$(touch pwned)y.tflite", "x`touch pwned`y.tflite", "x;touch pwned;y.tflite",
                 "x && touch pwned && y.tflite", "x'$(touch pwned)'y.tflite", 'x"$(touch pwned)"y.tflite',
                 "x|touch pwned|y.tflite", "-rf $(touch pwned).tflite", "x\ntouch pwned\n.tflite"]


@pytest.fixture
def sh_phone(tmp_path, monkeypatch):
    bin_dir = install_fake_adb(tmp_path, monkeypatch, SH_ADB)
    cwd = tmp_path / "device-cwd"
    cwd.mkdir()
    set_fake_adb_state(bin_dir, {"device_root": str(tmp_path / "device"), "cwd": str(cwd)})
    runner = tmp_path / "runners" / "benchmark_model"
    runner.parent.mkdir()
    runner.write_text(f"#!/bin/sh\ncat {OUTPUTS / 'litert_benchmark_model_sample01.txt'}\n")
    return runner


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_artifact_names_run_nothing_on_the_device(sh_phone, tmp_path, name):
    folder = tmp_path / "artifacts"
    folder.mkdir()
    model = folder / name
    model.write_bytes(b"model bytes")
    write_sidecar(model, "tflite", file="emo_1m_tflite_fp32.tflite")  # the user renamed the exported file
    out = tmp_path / "rows.jsonl"
    code = main([str(model), "--device", "adb", "--runner", str(sh_phone), "--cooldown", "0", "--out", str(out)])
    assert not list(tmp_path.rglob("pwned")), "a command in the artifact's name ran on the device"
    row = json.loads(out.read_text())
    assert code == 0, row["status"]
    assert row["artifact"] == str(model) and row["summary"]["count"] == 50  # the run itself worked
    assert row["device"]["model"] == "Pixel \ufffd\ufffd 7"  # non-UTF-8 bytes from the device do not break parsing


def test_quote_makes_each_word_inert():
    assert android.quote("a b", "$(x)", "it's") == "'a b' '$(x)' 'it'\"'\"'s'"
