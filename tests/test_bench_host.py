"""emo-bench on the host: real runs of tiny artifacts in their own runtimes, rows, table, CSV, plot, compare."""

import json
import subprocess
import sys

import pytest

from emo.export import cli as export_cli
from emo.runtime_bench import host
from emo.runtime_bench.cli import main
from emo_testutil import write_sidecar

ROW_KEYS = {"artifact", "artifact_sha256", "variant", "backend", "precision", "device", "settings", "status",
            "load_ms", "first_inference_ms", "latencies_ms", "summary", "peak_memory_mb", "versions",
            "git_revision", "timestamp_utc", "schema"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    assert export_cli.export_main(["--model", "emo_1m", "--format", "onnx,tflite,executorch,pt2", "--input-size",
                                   "64", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def bench_rows(tiny, tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    out, csv, png = results / "r.jsonl", results / "r.csv", results / "r.png"
    code = main([str(tiny), "--device", "host", "--threads", "2", "--warmup", "2", "--iters", "4",
                 "--out", str(out), "--csv", str(csv), "--plot", str(png)])
    return code, [json.loads(line) for line in out.read_text().splitlines()], csv, png, out


def test_every_runtime_runs(bench_rows):
    code, rows, *_ = bench_rows
    assert code == 0
    assert sorted(r["backend"] for r in rows) == ["executorch", "onnx", "pt2", "tflite"]
    for row in rows:
        assert ROW_KEYS <= row.keys()
        assert row["status"] == "ok", row["status"]
        assert len(row["latencies_ms"]) == 4 and row["summary"]["count"] == 4
        assert row["summary"]["min"] <= row["summary"]["median"] <= row["summary"]["max"]
        assert row["load_ms"] > 0 and row["peak_memory_mb"] > 10 and row["first_inference_ms"] > 0
        assert row["settings"]["threads"] == 2 and row["device"]["target"] == "host"
        assert len(row["artifact_sha256"]) == 64


def test_interleaved_turns(tiny, tmp_path):
    """--interleave: the ONNX artifacts share one worker and are timed side by side in settled turns (each turn
    starts with untimed runs while the other session's threads stop spinning); the others get a worker each."""
    ort_copy = tmp_path / "emo_1m_ort_fp32.onnx"  # a second ONNX Runtime artifact: the same graph under another name
    ort_copy.write_bytes((tiny / "emo_1m_onnx_fp32.onnx").read_bytes())
    side = json.loads((tiny / "emo_1m_onnx_fp32.json").read_text())
    (tmp_path / "emo_1m_ort_fp32.json").write_text(json.dumps({**side, "file": ort_copy.name}))
    out = tmp_path / "r.jsonl"
    code = main([str(tiny / "emo_1m_onnx_fp32.onnx"), str(ort_copy), str(tiny / "emo_1m_tflite_fp32.tflite"),
                 "--device", "host", "--warmup", "1", "--iters", "5", "--per-turn", "2", "--settle", "0.01",
                 "--interleave", "--out", str(out)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert code == 0 and [r["status"] for r in rows] == ["ok"] * 3
    onnx_rows = [r for r in rows if r["backend"] == "onnx"]
    assert len(onnx_rows) == 2 and all(r["settings"]["interleaved"] == {"artifacts": 2, "rounds": 3, "per_turn": 2,
                                                                        "settle_s": 0.01} for r in onnx_rows)
    assert all(len(r["latencies_ms"]) == 6 for r in rows)  # 3 rounds x 2 timed runs per turn
    tflite = next(r for r in rows if r["backend"] == "tflite")
    assert tflite["settings"]["interleaved"]["artifacts"] == 1


def test_csv_plot_and_compare(bench_rows, capsys):
    _, rows, csv, png, out = bench_rows
    assert csv.read_text().splitlines()[0].startswith("artifact,variant,backend,precision,device")
    assert len(csv.read_text().splitlines()) == 1 + len(rows)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["compare", str(out), str(out)]) == 0
    assert capsys.readouterr().out.count("1.000x") == len(rows)


def test_table_shows_precision():
    from emo.runtime_bench.report import table

    rows = [{"artifact": f"/x/emo_1m_onnx_{p}.onnx", "precision": p, "device": {"target": "host", "model": "vm"},
             "settings": {"threads": 2}, "summary": {"median": m, "p90": m, "min": m, "count": 4}, "status": "ok"}
            for p, m in (("int8", 2.0), ("fp32", 3.0))]
    lines = table(rows).splitlines()
    assert lines[0].split()[:4] == ["artifact", "model", "precision", "device"]
    assert [line.split()[:3] for line in lines[2:]] == [["emo_1m_onnx_int8.onnx", "?", "int8"],
                                                       ["emo_1m_onnx_fp32.onnx", "?", "fp32"]]


def test_table_tells_checkpoints_apart():
    """Two emo_1m ONNX fp32 artifacts of different checkpoints are two models in the table, not one."""
    from emo.runtime_bench.report import table

    rows = [{"artifact": f"/{d}/emo_1m_onnx_fp32.onnx", "variant": "emo_1m", "weights": w, "precision": "fp32",
             "device": {"target": "host", "model": "vm"}, "settings": {"threads": 2},
             "summary": {"median": 1.0, "count": 4}, "status": "ok"}
            for d, w in (("a", "best.pth@1a2b3c4d"), ("b", "random-init (seed 0)"))]
    text = table(rows)
    assert "emo_1m best.pth@1a2b3c4d" in text and "emo_1m random-init (seed 0)" in text


def test_failed_rows_are_kept(tiny, tmp_path, capsys):
    (tmp_path / "emo_1m_onnx_fp32.onnx").write_bytes((tiny / "emo_1m_onnx_fp32.onnx").read_bytes())
    (tmp_path / "emo_1m_onnx_fp32.json").write_text("{broken")
    (tmp_path / "emo_1m_tflite_fp32.tflite").write_bytes(b"no sidecar")
    coreml = tmp_path / "emo_1m_coreml_fp16.mlpackage"
    coreml.mkdir()
    write_sidecar(coreml, "coreml", "fp16")
    out = tmp_path / "r.jsonl"
    code = main([str(tmp_path), "--device", "host", "--iters", "2", "--out", str(out)])
    rows = {r["artifact"].rsplit("/", 1)[-1]: r["status"] for r in map(json.loads, out.read_text().splitlines())}
    assert code == 1
    assert rows["emo_1m_onnx_fp32.onnx"].startswith("failed: sidecar emo_1m_onnx_fp32.json is not JSON")
    assert rows["emo_1m_tflite_fp32.tflite"].startswith("failed: no sidecar emo_1m_tflite_fp32.json next to ")
    assert rows["emo_1m_coreml_fp16.mlpackage"] == "failed: Core ML artifacts run with --device mac (macOS) or ios"
    assert capsys.readouterr().err.count("emo-bench: emo_1m_") == 3


def test_missing_runtime_names_the_package(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(host.RuntimeMissingError, match="ai-edge-litert is not installed.*pip install ai-edge-litert"):
        host._load(tiny / "emo_1m_tflite_fp32.tflite", "tflite", 1)


@pytest.mark.parametrize(("args", "message"), [
    (["--device", "host"], "holds no artifacts"),
    (["--device", "phone"],
     "unknown --device 'phone'; use host | browser | adb[:SERIAL] | mac | ios[:UDID] | aihub:DEVICE_NAME"),
    (["--device", "aihub"], "--device aihub needs a device name"),
    (["--device", "host", "--threads", "0"], "--threads 0 is out of range"),
])
def test_bad_input_one_line(tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    code = main([str(tmp_path / "empty"), *args, "--out", str(tmp_path / "r.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_compare_bad_files(tmp_path, capsys):
    (tmp_path / "bad.jsonl").write_text("{}\nnot json\n")
    assert main(["compare", str(tmp_path / "missing.jsonl"), str(tmp_path / "bad.jsonl")]) == 2
    assert "no such results file" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "bad.jsonl"), str(tmp_path / "bad.jsonl")]) == 2
    assert "bad.jsonl:2 is not JSON" in capsys.readouterr().err
    (tmp_path / "deep.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")  # no RecursionError traceback
    assert main(["compare", str(tmp_path / "deep.jsonl"), str(tmp_path / "deep.jsonl")]) == 2
    assert "deep.jsonl:1 nests deeper than 32 levels" in capsys.readouterr().err


def test_bench_never_imports_torch_or_the_model():
    code = ("import sys, emo.runtime_bench.cli, emo.runtime_bench.host, emo.runtime_bench.android, "
            "emo.runtime_bench.apple, emo.runtime_bench.aihub, emo.runtime_bench.report; "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('emo.model', 'emo.export'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


FAKE_HOST_BENCHMARK_MODEL = """#!/bin/sh
# a host build of LiteRT's benchmark_model, answering with a real --enable_op_profiling output
echo "$@" > "$(dirname "$0")/args.txt"
cat {sample}
"""


def test_profile_per_operator_type(tiny, tmp_path, capsys):
    """--profile: real ORT profiling and a real ExecuTorch ETDump, summed by operator type; LiteRT through a host
    benchmark_model (here a stand-in printing a real profiling output), or a note saying how to get one."""
    from test_bench_android import OUTPUTS

    runner = tmp_path / "benchmark_model"
    runner.write_text(FAKE_HOST_BENCHMARK_MODEL.format(sample=OUTPUTS / "litert_benchmark_model_sample06.txt"))
    runner.chmod(0o755)
    artifacts = [str(tiny / f"emo_1m_{tag}_fp32{suffix}") for tag, suffix in
                 (("onnx", ".onnx"), ("xnnpack", ".pte"), ("tflite", ".tflite"))]
    out = tmp_path / "r.jsonl"
    assert main([*artifacts, "--device", "host", "--iters", "2", "--warmup", "1", "--profile", "3", "--runner",
                 str(runner), "--out", str(out)]) == 0
    rows = {r["backend"]: r for r in map(json.loads, out.read_text().splitlines())}
    onnx_ops = {r["op"]: r for r in rows["onnx"]["profile"]["ops"]}
    assert rows["onnx"]["profile"]["source"] == "onnxruntime profiling JSON"
    assert {"Conv", "Softmax", "FusedMatMul"} <= onnx_ops.keys()  # what ORT ran after its fusions
    assert onnx_ops["Conv"]["nodes"] >= 60 and onnx_ops["Conv"]["ms"] > 0
    assert abs(sum(r["percent"] for r in onnx_ops.values()) - 100) < 0.1
    et_ops = {r["op"] for r in rows["executorch"]["profile"]["ops"]}
    assert any(op.startswith("Convolution (NHWC, F32)") for op in et_ops), et_ops
    assert not any("::" in op for op in et_ops)  # the runtime's bookkeeping events are not operators
    lite = rows["tflite"]["profile"]
    assert lite["source"] == "benchmark_model --enable_op_profiling (host)"
    assert lite["ops"][0] == {"op": "CONV_2D", "nodes": 15, "ms": 2651.853, "percent": 89.9}
    assert "--enable_op_profiling=true" in (tmp_path / "args.txt").read_text()
    printed = capsys.readouterr().out
    assert "emo_1m_onnx_fp32.onnx: per-operator time (onnxruntime profiling JSON" in printed
    assert "CONV_2D" in printed and "total" in printed
    # without a host benchmark_model the LiteRT row says how to profile it, and the latencies stand
    assert main([artifacts[2], "--device", "host", "--iters", "2", "--warmup", "0", "--profile", "--out",
                 str(out)]) == 0
    row = json.loads(out.read_text().splitlines()[-1])
    assert row["status"] == "ok" and "pass --runner PATH/benchmark_model" in row["profile"]["error"]
