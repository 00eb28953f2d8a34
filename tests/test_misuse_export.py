"""emo-export misused as a new or hostile user would: each case through the real console script.

Every case: the documented exit code, one line on stderr, no traceback, and the output folder exactly as it was.
"""

import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from emo_testutil import REF_CKPT, assert_one_line_error, need_reference, run_tool, snapshot


@pytest.fixture
def out(tmp_path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "keep.txt").write_text("a file the user had here")
    return folder


def _crc_broken_checkpoint(tmp_path: Path) -> Path:
    """The reference checkpoint with one byte flipped inside a tensor's data (the zip stays readable)."""
    need_reference()
    data = bytearray(REF_CKPT.read_bytes())
    with zipfile.ZipFile(REF_CKPT) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)  # the largest tensor storage
    offset = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.file_size // 2
    data[offset] ^= 0xFF
    path = tmp_path / "crc.pth"
    path.write_bytes(bytes(data))
    return path


def test_checkpoint_with_a_corrupt_tensor_is_refused(tmp_path, out):
    before = snapshot(out)
    proc = run_tool("emo-export", "--model", "emo_1m", "--weights", _crc_broken_checkpoint(tmp_path),
                    "--format", "onnx", "--out", out)
    assert_one_line_error(proc, 2, "does not match (damaged in copy or download?)")
    assert snapshot(out) == before


@pytest.mark.parametrize(("args", "pattern"), [
    (["--out", ""], "--out is empty"),
    (["--out", "   "], "--out is empty"),
    (["--batch", "4", "--dynamic-batch", "--out", "{new}"], "--batch and --dynamic-batch exclude each other"),
    (["--weights", "{tmp}/missing.pth", "--out", "{new}"], "checkpoint not found"),
    (["--weights", "{random}", "--out", "{new}"], "is not a plain checkpoint"),
    (["--labels", "{blank}", "--out", "{new}"], "has a blank line at line 2"),
    (["--out", "{file}"], "is a file, not a folder"),
])
def test_bad_input_writes_nothing_and_creates_no_folder(tmp_path, args, pattern):
    (tmp_path / "random.pth").write_bytes(b"\x80\x04garbage" * 100)
    (tmp_path / "blank.txt").write_text("cat\n\ndog\n")
    (tmp_path / "a_file").write_text("x")
    fill = {"{new}": tmp_path / "new", "{tmp}": tmp_path, "{random}": tmp_path / "random.pth",
            "{blank}": tmp_path / "blank.txt", "{file}": tmp_path / "a_file"}
    argv = []
    for a in args:
        for key, value in fill.items():
            a = a.replace(key, str(value))
        argv.append(a)
    before = snapshot(tmp_path)
    proc = run_tool("emo-export", "--model", "emo_1m", "--format", "onnx", *argv, cwd=tmp_path)
    assert_one_line_error(proc, 2, pattern)
    assert snapshot(tmp_path) == before  # no empty --out folder, nothing written into the current folder


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                    (signal.SIGTERM, 143, "terminated")])
def test_interrupted_export_leaves_nothing_half_written(out, sig, code, word):
    before = snapshot(out)
    bin_dir = Path(sys.executable).parent
    # SIGINT restored in the child: a shell that runs pytest in the background (`make test &`) hands its children
    # SIGINT ignored, and Python then never raises KeyboardInterrupt (the export would just finish)
    proc = subprocess.Popen([str(bin_dir / "emo-export"), "--model", "emo_1m", "--format", "onnx",
                             "--input-size", "64", "--out", str(out)], stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while not any(p.name.startswith(".emo_1m_onnx_fp32.tmp-") for p in out.iterdir()):
        assert proc.poll() is None, "the export finished before the test could interrupt it"
        assert time.monotonic() < deadline, "no temporary artifact appeared"
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err and word in err.strip().splitlines()[-1]
    assert snapshot(out) == before  # the temporary artifact (and anything beside it) was removed


def test_a_killed_exports_temporaries_are_removed_and_a_live_ones_kept(out):
    """A ``kill -9`` of emo-export leaves its ``.NAME.tmp-PID`` file (the rename never happened): the next export into
    the folder removes the temporaries of processes that are gone, says so, and keeps a running export's."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process that has ended: its pid names nobody now
    out.mkdir(exist_ok=True)
    stale = [out / f".emo_1m_onnx_fp32.tmp-{dead.pid}.onnx", out / f".emo_1m_tflite_fp32.tmp-{dead.pid}.tflite"]
    for path in stale:
        path.write_bytes(b"half an artifact")
    live = out / f".emo_1m_coreml_fp16.tmp-{os.getpid()}.mlpackage"  # this test's own process: alive
    live.mkdir()
    proc = run_tool("emo-export", "--model", "emo_1m", "--format", "pt2", "--input-size", "32", "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"note: removed 2 temporary file(s) left in {out} by an export that was killed" in proc.stderr
    assert not any(p.exists() for p in stale) and live.is_dir()
    assert (out / "emo_1m_pytorch_fp32.pt2").is_file()


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c["classes"].__setitem__(3, "dress\nshirt"), "field 'classes'"),   # would shift labels.txt
    (lambda c: c["classes"].__setitem__(0, "\x1b[31mred"), "field 'classes'"),     # a terminal escape
    (lambda c: c.update(classes=list(range(10))), "field 'classes'"),               # not names
    (lambda c: c["input"].update(size=[10**6, 10**6]), "field 'input.size'"),        # a million pixels a side
])
def test_checkpoint_metadata_is_checked_like_a_sidecar(tmp_path, out, change, message):
    """An emo-train checkpoint's class names and input size become the artifact's labels and shape: malformed ones
    are refused with the field named, never used or silently ignored."""
    import torch

    fixture = Path(__file__).resolve().parent / "fixtures" / "emo_1m_fashion_mnist.pth"
    checkpoint = torch.load(fixture, weights_only=True)
    change(checkpoint)
    bad = tmp_path / "bad.pth"
    torch.save(checkpoint, bad)
    before = snapshot(out)
    proc = run_tool("emo-export", "--model", "emo_1m", "--weights", bad, "--format", "onnx", "--out", out)
    assert_one_line_error(proc, 2, message)
    assert snapshot(out) == before
