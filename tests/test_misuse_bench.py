"""emo-bench misused as a new or hostile user would: each case through the real console script, plus a bounded
property-style fuzz of emo-bench, emo-verify and emo-export over sidecar JSON and arguments (no traceback ever,
exit code in {0, 1, 2, 3})."""

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emo.export import cli as export_cli
from emo.runtime_bench.cli import main as bench_main
from emo_testutil import assert_one_line_error, run_tool, snapshot, write_sidecar


@pytest.fixture
def artifact(tmp_path) -> Path:
    path = tmp_path / "a" / "emo_1m_onnx_fp32.onnx"
    path.parent.mkdir()
    path.write_bytes(b"not measured: every case below must stop before measuring")
    write_sidecar(path, "onnx")
    return path


@pytest.mark.parametrize(("args", "pattern"), [
    (["--threads", "100000"], f"--threads 100000 is out of range: use 1..{os.cpu_count()}"),
    (["--threads", "0"], "--threads 0 is out of range"),
    (["--warmup", "-1"], "--warmup -1 is out of range"),
    (["--min-seconds", "-1"], "--min-seconds -1.0 must be a positive number"),
    (["--min-seconds", "nan"], "--min-seconds nan must be a positive number"),
    (["--iters", "0"], "--iters 0 is out of range"),
    (["--cooldown", "-5"], "--cooldown -5.0 must be 0..3600 seconds"),
    (["--out", "{tmp}/no/such/folder/r.jsonl"], "folder {tmp}/no/such/folder does not exist"),
    (["--out", "{tmp}"], "is not a file name"),
    (["--csv", "{tmp}/missing/r.csv"], "--csv {tmp}/missing/r.csv: folder"),
    (["--plot", "{tmp}/x.xyz"], "unsupported format; use one of .png, .pdf, .svg"),
    (["--device", "phone"], "unknown --device 'phone'"),
])
def test_bad_options_stop_before_measuring(artifact, tmp_path, args, pattern):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "rows.jsonl")]
    if "--device" not in args:
        args += ["--device", "host"]
    before = snapshot(tmp_path)
    proc = run_tool("emo-bench", artifact, *args, timeout=60)
    assert_one_line_error(proc, 2, pattern.replace("{tmp}", str(tmp_path)))
    assert snapshot(tmp_path) == before and proc.stdout == ""  # nothing measured, no rows written


def _row(median, **fields) -> dict:
    return {"artifact": "/x/emo_1m_onnx_fp32.onnx", "status": "ok", "device": {"target": "host", "model": "h"},
            "settings": {"threads": 2}, "summary": {"median": median}, **fields}


def test_compare_skips_rows_it_cannot_use(tmp_path):
    junk = [[1, 2, 3], {"status": "ok", "summary": {"median": 1.0}}, _row(None), _row(0), _row("fast"),
            _row(float("inf")), _row(True), "a string", None]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("\n".join(json.dumps(r) for r in [*junk, _row(2.0), _row(1.0, settings=None, device=None)]) + "\n")
    b.write_text("\n".join(json.dumps(r) for r in [*junk, _row(3.0), _row(4.0, settings=None, device=None)]) + "\n")
    proc = run_tool("emo-bench", "compare", a, b, timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "1.500x" in proc.stdout and "4.000x" in proc.stdout and "18 rows skipped" in proc.stderr
    b.write_text("\n".join(json.dumps(r) for r in junk) + "\n")
    assert_one_line_error(run_tool("emo-bench", "compare", a, b, timeout=60), 2, "no successful")


# ------------------------------------------------------------------------------------------------------ fuzzing
JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True)
                    | st.text(max_size=12), lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
SIDECAR_FIELDS = ["variant", "backend", "precision", "input", "output", "weights", "num_classes", "labels", "sha256",
                  "file"]
FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _mutated_sidecar(tmp_path: Path, backend: str, field: str, value) -> Path:
    artifact = tmp_path / f"emo_1m_{backend}_fp32.onnx"
    artifact.write_bytes(b"\x08\x07garbage")
    side = write_sidecar(artifact, backend)
    data = json.loads(side.read_text())
    if field.startswith("input."):
        data["input"][field.split(".", 1)[1]] = value
    else:
        data[field] = value
    side.write_text(json.dumps(data))
    return artifact


@settings(FUZZ, max_examples=25)
@given(field=st.sampled_from(SIDECAR_FIELDS + ["input.shape", "input.layout", "input.normalization"]), value=JSON)
def test_fuzz_sidecar_bench_and_verify(tmp_path, capsys, field, value):
    artifact = _mutated_sidecar(tmp_path, "onnx", field, value)
    assert bench_main([str(artifact), "--device", "host", "--iters", "1", "--warmup", "0",
                       "--out", str(tmp_path / "rows.jsonl")]) in (0, 1, 2)
    assert export_cli.verify_main([str(artifact)]) in (0, 1, 2, 3)
    assert "Traceback" not in capsys.readouterr().err


ARGS = st.lists(st.sampled_from(["--threads", "--warmup", "--iters", "--min-seconds", "--cooldown", "--device",
                                 "--plot", "--csv", "--delegate"]).flatmap(
    lambda flag: st.tuples(st.just(flag), st.one_of(st.integers(-5, 10**6).map(str), st.sampled_from(
        ["nan", "inf", "-0", "", "host", "adb:", "aihub:", "mac", "x.xyz", "/", "r.png", "1e309"])))), max_size=4)


@FUZZ
@given(pairs=ARGS)
def test_fuzz_bench_arguments(artifact, tmp_path, capsys, monkeypatch, pairs):
    monkeypatch.chdir(tmp_path)
    argv = [str(artifact), *[word for pair in pairs for word in pair]]
    if "--device" not in argv:
        argv += ["--device", "host"]
    code = bench_main([*argv, "--out", str(tmp_path / "rows.jsonl")])
    assert code in (0, 1, 2)
    assert "Traceback" not in capsys.readouterr().err


EXPORT_ARGS = st.lists(st.sampled_from(["--format", "--precision", "--input-size", "--batch", "--min-target",
                                        "--labels", "--model"]).flatmap(
    lambda flag: st.tuples(st.just(flag), st.one_of(st.text(max_size=10), st.sampled_from(
        ["onnx", "all", "coreml,tflite", "fp16", "int4", "224", "0x0", "99999", "-3", "7x", "iOS12", "iOS17",
         "emo_1m", "emo_9m", "/dev/zero", "."]), st.integers(-10, 5000).map(str)))), max_size=4)
EXPORT_FLAGS = st.lists(st.sampled_from(["--nhwc", "--image-input", "--classifier", "--dynamic-batch",
                                         "--no-normalize", "--ema"]), max_size=3, unique=True)


@FUZZ
@given(pairs=EXPORT_ARGS, flags=EXPORT_FLAGS)
def test_fuzz_export_arguments(tmp_path, capsys, pairs, flags):
    """Every option combination ends in a decision (here always "checkpoint not found", checked last)."""
    argv = ["--model", "emo_1m", "--format", "onnx", *[w for pair in pairs for w in pair], *flags,
            "--weights", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "out")]
    assert export_cli.export_main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
