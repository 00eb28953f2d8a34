"""Every bad input: one clear line on stderr, exit code 2, no traceback, nothing written."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import emo
from emo.export import cli
from emo_testutil import REF_CKPT, need_reference

BIN = Path(sys.executable).parent


def _export(args, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.export_main(["--out", str(out), *args])
    err = capsys.readouterr().err
    return code, err, out


def _assert_bad_input(code, err, out, pattern):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1, err
    assert lines[0].startswith("emo-export: error: ")
    assert pattern in lines[0], lines[0]
    assert "Traceback" not in err
    assert not out.exists() or not any(p.suffix in {".onnx", ".ort", ".json"} for p in out.iterdir())


@pytest.fixture
def bad_files(tmp_path):
    need_reference()
    files = {"random": tmp_path / "random.pth", "truncated": tmp_path / "truncated.pth",
             "code": tmp_path / "code.pth", "emo_2m": tmp_path / "emo_2m.pth"}
    files["random"].write_bytes(os.urandom(4096))
    files["truncated"].write_bytes(REF_CKPT.read_bytes()[:200_000])

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"net": Evil()}, files["code"])
    torch.save({"net": emo.create_model("emo_2m").state_dict()}, files["emo_2m"])
    return files


@pytest.mark.parametrize(("case", "pattern"), [
    ("missing", "checkpoint not found"),
    ("random", "not a PyTorch checkpoint"),
    ("truncated", "truncated or corrupt"),
    ("code", "weights_only loading refuses"),
    ("emo_2m", "is a checkpoint of emo_2m, not emo_1m; use --model emo_2m"),
])
def test_bad_checkpoints(bad_files, tmp_path, capsys, case, pattern):
    weights = str(bad_files.get(case, tmp_path / "nope.pth"))
    code, err, out = _export(["--model", "emo_1m", "--weights", weights, "--format", "onnx"], tmp_path, capsys)
    _assert_bad_input(code, err, out, pattern)


@pytest.mark.parametrize(("args", "pattern"), [
    (["--model", "emo_3m", "--format", "onnx"], "unknown model 'emo_3m'; choose one of: emo_1m, emo_2m, emo_5m"),
    (["--model", "emo_1m", "--format", "onnx", "--input-size", "big"], "is not a size"),
    (["--model", "emo_1m", "--format", "onnx", "--input-size", "16"], "out of range"),
    (["--model", "emo_1m", "--format", "onnx", "--input-size", "224x0"], "out of range"),
    (["--model", "emo_1m", "--format", "tensorrt"], "unknown format 'tensorrt'; choose from: onnx"),
    (["--model", "emo_1m", "--format", "onnx", "--precision", "int4"], "no precision 'int4'"),
    (["--model", "emo_1m", "--format", "onnx", "--batch", "0"], "--batch 0 is out of range"),
    (["--model", "emo_1m"], "the following arguments are required: --format"),
])
def test_bad_options(tmp_path, capsys, args, pattern):
    code, err, out = _export(args, tmp_path, capsys)
    _assert_bad_input(code, err, out, pattern)


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = cli.export_main(["--model", "emo_1m", "--format", "onnx", "--out", str(blocker / "sub")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot write to --out" in err


def test_labels_file_of_wrong_length(tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    code, err, out = _export(["--model", "emo_1m", "--format", "onnx", "--labels", str(labels)], tmp_path, capsys)
    _assert_bad_input(code, err, out, "labels file has 2 names but the model's head has 1000 classes")


def test_verify_and_predict_bad_input(tmp_path, capsys):
    assert cli.verify_main([str(tmp_path / "x.onnx")]) == 2
    assert "artifact not found" in capsys.readouterr().err
    (tmp_path / "y.onnx").write_bytes(b"")
    (tmp_path / "y.json").write_text("{not json")
    assert cli.verify_main([str(tmp_path / "y.onnx")]) == 2
    assert "sidecar y.json is not JSON" in capsys.readouterr().err
    assert cli.predict_main([str(tmp_path / "none.jpg"), "--model", "emo_1m"]) == 2
    assert "image not found" in capsys.readouterr().err
    (tmp_path / "bad.jpg").write_bytes(b"GIF89a not really")
    assert cli.predict_main([str(tmp_path / "bad.jpg"), "--model", "emo_1m"]) == 2
    assert "not a readable image" in capsys.readouterr().err
    assert cli.predict_main([str(tmp_path / "bad.jpg")]) == 2
    assert "either --artifact PATH or --model NAME" in capsys.readouterr().err


def test_console_scripts_bad_input_one_line(tmp_path):
    """The installed entry points, as a user runs them."""
    need_reference()
    for argv in (["emo-export", "--model", "emo_1m", "--weights", str(tmp_path / "missing.pth"), "--format", "onnx",
                  "--out", str(tmp_path / "o")],
                 ["emo-export", "--model", "emo_1m", "--format", "onnx", "--out", str(tmp_path / "o"),
                  "--input-size", "7x7"],
                 ["emo-verify", str(tmp_path / "missing.onnx")]):
        proc = subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_random_init_is_loud(tmp_path, capsys):
    code = cli.export_main(["--model", "emo_1m", "--format", "onnx", "--input-size", "64", "--out", str(tmp_path)])
    assert code == 0
    assert "RANDOM-INIT" in capsys.readouterr().err
