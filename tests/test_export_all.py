"""TFLite, ExecuTorch (XNNPACK and Core ML delegate) and `--format all` in one run, with failure isolation."""

import json

import numpy as np
import pytest

from emo.export import backends as backends_mod
from emo.export import cli
from emo.export.backends import BACKENDS
from emo.export.pipeline import ExportOptions, export_all


def _side(out, stem):
    return json.loads((out / f"{stem}.json").read_text())


def test_all_formats_exported_and_checked(all_formats, capsys):
    code, out = all_formats
    assert code == 0
    stems = {p.stem for p in out.glob("*.json") if not p.name.endswith(".examples.json")}
    assert {p.name for p in out.glob("*.examples.json")} == {f"{stem}.examples.json" for stem in stems}
    assert stems == {"emo_1m_onnx_fp32", "emo_1m_ort_fp32", "emo_1m_coreml_fp16", "emo_1m_tflite_fp32",
                     "emo_1m_xnnpack_fp32", "emo_1m_pytorch_fp32", "emo_1m_coreml-et_fp16"}
    assert not list(out.glob(".*")) and not list(out.glob("*.log"))  # no temporaries, no failure logs
    for stem in stems - {"emo_1m_coreml-et_fp16", "emo_1m_coreml_fp16"}:
        parity = _side(out, stem)["parity"]
        assert parity["status"] == "passed" and parity["max_abs_diff"] <= 1e-4, stem
    assert _side(out, "emo_1m_coreml_fp16")["parity"]["status"] == "passed"


def test_tflite_sidecar_metadata_and_xnnpack(all_formats):
    from emo.export.tflite import read_metadata

    _, out = all_formats
    side = _side(out, "emo_1m_tflite_fp32")
    assert side["parity"]["checked_with"] == "ai-edge-litert interpreter (XNNPACK)"
    info = side["backend_info"]
    assert info["xnnpack_whole_graph"] is True and info["ops"]["CONV_2D"] > 0
    # channel-last attention: the 7 stage-3 partitions are SPACE_TO_DEPTH, and the TRANSPOSEs left are the graph's
    # NCHW input and 2 per attention block (groups in and out) -- 74 with the plain-op ("portable") form
    assert info["deploy_target"] == "channels_last"
    assert info["ops"]["SPACE_TO_DEPTH"] == info["ops"]["DEPTH_TO_SPACE"] == 7 and info["ops"]["TRANSPOSE"] == 19
    meta = read_metadata(out / "emo_1m_tflite_fp32.tflite")
    assert meta["emo.variant"] == "emo_1m" and meta["emo.layout"] == "NCHW"
    assert meta["emo.labels"].splitlines()[0] == "tench"
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(out / "emo_1m_tflite_fp32.tflite"))
    runner = interpreter.get_signature_runner()
    result = runner(image=np.zeros((1, 3, 224, 224), np.float32))
    assert list(result) == ["logits"] and result["logits"].shape == (1, 1000)


def test_executorch_sidecars(all_formats):
    _, out = all_formats
    xnn = _side(out, "emo_1m_xnnpack_fp32")
    assert xnn["backend_info"]["whole_graph_delegated"] is True
    assert xnn["parity"]["checked_with"] == "executorch.runtime (XNNPACK)"
    coreml = _side(out, "emo_1m_coreml-et_fp16")
    assert coreml["backend_info"]["whole_graph_delegated"] is True
    assert coreml["parity"]["status"] == "skipped: needs Apple runtime (Core ML delegate runs on iOS/macOS only)"
    assert coreml["parity"]["max_abs_diff"] is None


def test_verify_every_format(all_formats, capsys):
    _, out = all_formats
    for artifact in ("emo_1m_tflite_fp32.tflite", "emo_1m_xnnpack_fp32.pte"):
        assert cli.verify_main([str(out / artifact)]) == 0, artifact
    assert cli.verify_main([str(out / "emo_1m_coreml-et_fp16.pte")]) == 3  # not checkable here, and says so
    assert "skipped: needs Apple runtime" in capsys.readouterr().out


def test_tflite_fp16_nhwc(tmp_path):
    code = cli.export_main(["--model", "emo_1m", "--format", "tflite", "--precision", "fp16", "--nhwc",
                            "--input-size", "96x128", "--out", str(tmp_path)])
    assert code == 0
    side = _side(tmp_path, "emo_1m_tflite_fp16")
    assert side["input"]["layout"] == "NHWC" and side["input"]["shape"] == [1, 96, 128, 3]
    parity = side["parity"]
    assert parity["status"] == "passed" and parity["tolerance"] == {"top1_agreement": 0.99, "cosine": 0.999}
    assert parity["max_abs_diff"] > 0  # fp16 weights really are fp16
    fp16_size = (tmp_path / "emo_1m_tflite_fp16.tflite").stat().st_size
    assert fp16_size < 3.5e6  # about half of the 5.6 MB fp32 file
    from ai_edge_litert.interpreter import Interpreter

    assert list(Interpreter(model_path=str(tmp_path / "emo_1m_tflite_fp16.tflite")).get_input_details()[0]["shape"]) \
        == [1, 96, 128, 3]


def test_missing_backend_package_names_the_extra_and_others_continue(tmp_path, monkeypatch):
    broken = backends_mod.Backend(**{**BACKENDS["tflite"].__dict__, "requires": ("litert_torch_not_installed",)})
    monkeypatch.setitem(BACKENDS, "tflite", broken)
    options = ExportOptions(variant="emo_1m", input_size=(64, 64))
    results = export_all(options, [BACKENDS["tflite"], BACKENDS["onnx"]], tmp_path)
    assert results[0].status.startswith("error: the tflite backend needs 'litert_torch_not_installed'")
    assert "pip install 'emo-mobile[tflite]'" in results[0].status
    assert results[1].ok


def test_converter_failure_is_one_line_with_log(tmp_path, monkeypatch, capsys):
    from emo.export import onnx as onnx_backend

    def explode(*args, **kwargs):
        raise RuntimeError("Unsupported op aten::frobnicate\nsecond line of the converter's story")

    monkeypatch.setattr(onnx_backend, "export", explode)
    code = cli.export_main(["--model", "emo_1m", "--format", "onnx,ort", "--input-size", "64", "--out",
                            str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    line = next(line for line in out.splitlines() if line.startswith("onnx "))
    assert "error: onnx failed: Unsupported op aten::frobnicate (log: " in line
    log = (tmp_path / "emo_1m_onnx_fp32.log").read_text()
    assert "second line of the converter's story" in log and "Traceback" in log
    assert not (tmp_path / "emo_1m_onnx_fp32.onnx").exists()
    assert (tmp_path / "emo_1m_ort_fp32.ort").exists()  # the next backend still ran


@pytest.mark.parametrize(("args", "pattern"), [
    (["--format", "onnx", "--nhwc"], "--nhwc is not available for onnx; it applies to: tflite"),
    (["--format", "all", "--nhwc"], "--nhwc is not available for onnx"),
    (["--format", "tflite", "--dynamic-batch"],
     "--dynamic-batch is not available for tflite; it applies to: onnx, ort"),
])
def test_options_a_format_lacks(tmp_path, capsys, args, pattern):
    code = cli.export_main(["--model", "emo_1m", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert code == 2 and pattern in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_parity_batches_pad_a_batch_larger_than_all_images():
    """A static batch of 50 (e.g. a Core ML export for fast evaluation) checked on 16 parity images: the one batch
    is padded to 50 by cycling through the images, and run_batched drops the padding again."""
    from emo.export.parity import batches, run_batched

    images = np.arange(16, dtype=np.float32).reshape(16, 1, 1, 1)
    (chunk,) = batches(images, 50)
    assert chunk.shape == (50, 1, 1, 1) and list(chunk[16:20, 0, 0, 0]) == [0, 1, 2, 3]
    assert run_batched(lambda x: x.reshape(len(x), 1) * 2, images, 50).shape == (16, 1)
