"""Paths and helpers shared by the tests (a plain module: `tests` is not a package here)."""

import hashlib
import json
import os
import stat
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO.parent / "shared" / "reference"
REF_CKPT = REFERENCE / "emo_1m_seed7.pth"
REF_IO = REFERENCE / "emo_1m_seed7_io.npz"


def need_reference() -> None:
    if not REF_CKPT.exists():
        pytest.skip(f"authors' reference data not found at {REFERENCE}")


def need_browser_tools() -> None:
    """Skip unless the web demo's npm packages, node and Chromium are installed (``make test`` installs them)."""
    import shutil

    from emo.runtime_bench.webserver import WebDemoError, check_web_demo

    try:
        check_web_demo()
    except WebDemoError as e:
        pytest.skip(str(e))
    for tool in ("node", "chromium"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (make test installs it)")


def write_sidecar(artifact: Path, backend: str, precision: str = "fp32", **fields) -> Path:
    """A complete, valid sidecar for a stand-in artifact (the bench and CLI tests need no real export)."""
    side = {"schema": "emo-mobile/sidecar/1", "variant": "emo_1m", "backend": backend, "precision": precision,
            "file": artifact.name, "sha256": "ab" * 32, "weights": {"random_init": True, "seed": 0},
            "num_classes": 1000,
            "input": {"name": "image", "shape": [1, 3, 224, 224], "dtype": "float32", "layout": "NCHW",
                      "range": [0.0, 1.0], "normalization": {"mean": [0.485, 0.456, 0.406],
                                                             "std": [0.229, 0.224, 0.225], "in_graph": True}},
            "output": {"name": "logits", "kind": "logits", "shape": [1, 1000]}, "labels": None, **fields}
    path = artifact.with_suffix(".json")
    path.write_text(json.dumps(side))
    return path


# ------------------------------------------------------------------ tiny real models for the web page's tests
LABELS = ["alpha", "beta", "gamma"]


def tiny_onnx(path: Path, loop_steps: int | None = None, labels: list[str] = LABELS, size: int = 32, **side) -> Path:
    """A real ONNX classifier of the sidecar contract: image [1, 3, size, size] -> mean per channel = logits [1, 3].

    With ``loop_steps``, the image first goes through an ONNX Loop of that many identity steps (2^50: never ends).
    """
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])
    nodes, initializers, source = [], [], "image"
    if loop_steps:
        identities = [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
                      helper.make_node("Identity", ["v_in"], ["v_out"])]
        body = helper.make_graph(
            identities, "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                     helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                     helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1, 3, size, size])],
            [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
             helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1, 3, size, size])])
        initializers = [helper.make_tensor("steps", TensorProto.INT64, [], [loop_steps]),
                        helper.make_tensor("go", TensorProto.BOOL, [], [True])]
        nodes.append(helper.make_node("Loop", ["steps", "go", "image"], ["looped"], body=body))
        source = "looped"
    nodes.append(helper.make_node("ReduceMean", [source], ["logits"], axes=[2, 3], keepdims=0))
    graph = helper.make_graph(nodes, "tiny", [image], [logits], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    write_tiny_sidecar(path, labels=labels, size=size, **side)
    return path


def write_tiny_sidecar(path: Path, labels: list[str] = LABELS, size: int = 32, **fields) -> dict:
    data = path.read_bytes()
    side = {"schema": "emo-mobile/sidecar/1", "variant": "emo_1m", "backend": "onnx", "precision": "fp32",
            "file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data),
            "weights": {"random_init": True, "seed": 0}, "num_classes": len(labels),
            "input": {"name": "image", "shape": [1, 3, size, size], "dtype": "float32", "layout": "NCHW",
                      "range": [0.0, 1.0], "normalization": {"mean": [0.485, 0.456, 0.406],
                                                             "std": [0.229, 0.224, 0.225], "in_graph": True}},
            "output": {"name": "logits", "kind": "logits", "shape": [1, len(labels)]},
            "labels": {"names": labels}, **fields}
    path.with_suffix(".json").write_text(json.dumps(side))
    return side


def run_tool(tool: str, *args, timeout: float = 300, **kwargs):
    """Run one of our console scripts as a user does (a subprocess of this venv's bin folder)."""
    import subprocess
    import sys

    return subprocess.run([str(Path(sys.executable).parent / tool), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def assert_one_line_error(proc, code: int, pattern: str) -> None:
    """The documented exit code, exactly one line on stderr naming the problem, and no traceback."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert pattern in lines[0], lines[0]


def snapshot(folder: Path) -> dict[str, bytes] | None:
    """Every file under ``folder`` with its bytes (None if the folder does not exist)."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# What every fake adb starts with: its state (set_fake_adb_state), the call log (fake_adb_calls), ``-s SERIAL``
# split off, and the fake device's filesystem under ``state["device_root"]`` (``local(remote path)``).
FAKE_ADB_PROLOGUE = r'''#!{python}
import json, pathlib, re, shlex, shutil, subprocess, sys
here = pathlib.Path(__file__).parent
state = json.loads((here / "state.json").read_text())
args = sys.argv[1:]
with open(here / "calls.log", "a") as log:
    log.write(json.dumps(args) + "\n")
serial = None
if args[:1] == ["-s"]:
    serial, args = args[1], args[2:]
root = pathlib.Path(state["device_root"])
local = lambda remote: root / remote.lstrip("/")
'''


def install_fake_adb(tmp_path: Path, monkeypatch, body: str) -> Path:
    """Write ``FAKE_ADB_PROLOGUE`` + ``body`` as an executable ``adb`` first on PATH; returns its folder."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    adb = bin_dir / "adb"
    adb.write_text((FAKE_ADB_PROLOGUE + body).replace("{python}", sys.executable))
    adb.chmod(adb.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def fake_runners(tmp_path: Path, names) -> Path:
    """A folder of stand-in runner binaries (pushed to the fake phone, never executed here)."""
    runners = tmp_path / "runners"
    runners.mkdir()
    for name in names:
        (runners / name).write_bytes(b"\x7fELF fake runner")
    return runners


def set_fake_adb_state(bin_dir: Path, state: dict) -> None:
    """The fake adb reads ``state.json`` beside it on every call; the call log starts empty."""
    (bin_dir / "state.json").write_text(json.dumps(state))
    (bin_dir / "calls.log").write_text("")


def fake_adb_calls(bin_dir: Path) -> list:
    """Every call the fake adb logged since the last ``set_fake_adb_state``, one JSON line each."""
    return [json.loads(line) for line in (bin_dir / "calls.log").read_text().splitlines()]
