"""LiteRT on the NPU (``--format litert-npu``): emo_1m compiled for a Snapdragon (SM8650) by ai-edge-litert's AOT
compiler with onnxruntime-qnn's QNN libraries, fp16 (the float graph, which the HTP computes in fp16) and int8,
checked on the HTP simulator; coverage; the refusals (a vendor SDK that is missing, an unknown SoC, --soc for
another format). Small exports (64x64, 4 calibration images) keep this file to a few minutes on two shared cores."""

import json

import numpy as np
import pytest

from emo.export import cli
from emo.export.backends import BACKENDS, parse_formats
from emo.export.parity import TOLERANCES
from emo_testutil import REF_CKPT, assert_one_line_error, need_reference, run_tool

SIZE = "64"
FP16 = "emo_1m_litert-npu-sm8650_fp16"
INT8 = "emo_1m_litert-npu-sm8650_int8"


@pytest.fixture(scope="module")
def fp16(tmp_path_factory):
    """The console script, SM8650 and MT6989 in one run: the Snapdragon compiles, the MediaTek SoC (no NeuroPilot
    SDK here) is a failed row of the same run, with nothing written for it."""
    need_reference()
    out = tmp_path_factory.mktemp("npu_fp16")
    proc = run_tool("emo-export", "--model", "emo_1m", "--weights", REF_CKPT, "--format", "litert-npu",
                    "--soc", "sm8650,MT6989", "--input-size", SIZE, "--out", out, timeout=1800)
    return proc, out


@pytest.fixture(scope="module")
def int8(tmp_path_factory):
    need_reference()
    out = tmp_path_factory.mktemp("npu_int8")
    code = cli.export_main(["--model", "emo_1m", "--weights", str(REF_CKPT), "--format", "litert-npu",
                            "--precision", "int8", "--calibration-count", "4", "--input-size", SIZE,
                            "--out", str(out)])
    return code, out


def _side(out, stem):
    return json.loads((out / f"{stem}.json").read_text())


def _check_compiled(out, stem, precision):
    """What every SM8650 artifact must show: the whole graph in one NPU partition, stamped for SM8650, checked on
    the HTP simulator at the tolerance of the arithmetic it runs in, and what the phone needs."""
    from emo.contract.runtimes.litert_npu import read_model, stamp

    side = _side(out, stem)
    info = side["backend_info"]
    assert side["backend"] == "litert-npu" and side["precision"] == precision and side["file"] == f"{stem}.tflite"
    assert side["input"]["layout"] == "NHWC" and side["input"]["shape"] == [1, 64, 64, 3]
    coverage = info["coverage"]
    assert coverage["ops"] > 300 and coverage["ops_on_npu"] == coverage["ops"] and coverage["ops_on_cpu"] == 0
    assert coverage["npu_partitions"] == 1 and coverage["cpu_op_types"] == {}
    assert coverage["compiler_report"] == [{"subgraph": 0, "ops_offloaded": coverage["ops"], "ops": coverage["ops"],
                                            "partitions": 1}]  # the plugin's own count agrees with the file's
    assert info["warnings"] == [] and 0 < info["compile_seconds"] < side["export_seconds"] + 1
    assert info["target"] == {"soc_manufacturer": "Qualcomm", "soc_model": "SM8650", "htp_arch": "v75"}
    phone = info["phone"]
    assert phone["dispatch_library"] == "libLiteRtDispatch_Qualcomm.so" and phone["accelerator"] == "NPU"
    assert phone["qnn_libraries"] == ["libQnnHtp.so", "libQnnSystem.so", "libQnnHtpV75Stub.so", "libQnnHtpV75Skel.so"]
    assert phone["qnn_sdk"] and phone["play_feature_module"] == "qualcomm_runtime_v75"
    assert "empty stand-in" in info["compiler"]["libQnnLpai"]
    model = read_model(out / f"{stem}.tflite")  # one DISPATCH_OP holding the QNN context binary
    assert stamp(model) == {"soc_manufacturer": "Qualcomm", "soc_model": "SM8650"}
    assert len(model.subgraphs[0].operators) == 1
    parity = side["parity"]
    assert parity["status"] == "passed" and "HTP simulator" in parity["checked_with"]
    assert info["cpu_reference"]["status"] == "passed"
    # the .tflite before compilation, on the CPU at its own precision (the fp16 artifact starts from the fp32 graph)
    assert info["cpu_reference"]["tolerance"] == TOLERANCES["fp32" if precision == "fp16" else precision]
    examples = json.loads((out / f"{stem}.examples.json").read_text())
    assert examples["tolerance"] == parity["tolerance"]  # the apps' self-test judges as the export did
    return side


def test_fp16_compiles_whole_and_matches_pytorch_on_the_htp_simulator(fp16):
    proc, out = fp16
    assert proc.returncode == 1, proc.stderr[-2000:]  # the MediaTek row failed: recorded, not raised
    side = _check_compiled(out, FP16, "fp16")
    parity = side["parity"]
    # the HTP computes in fp16: the artifact is fp16, judged at the fp16 tolerance, and the sidecar says why
    assert parity["tolerance"] == TOLERANCES["fp16"] and side["backend_info"]["computes_in"].startswith("fp16")
    assert 0 < parity["max_abs_diff"] < 0.05 and parity["cosine"] > 0.9999 and parity["top1_agreement"] == 1.0
    assert side["backend_info"]["graph_rewrites"] == {"end_pad_as_concatenation": 0}  # the float graph pads NHWC
    reference = side["backend_info"]["cpu_reference"]  # the same graph before compilation, fp32 on the CPU
    assert reference["max_abs_diff"] < 1e-4 < parity["max_abs_diff"]
    row = next(line for line in proc.stdout.splitlines() if FP16 in line and line.startswith("litert-npu"))
    n = side["backend_info"]["coverage"]["ops"]
    assert f"{n}/{n} (1)" in row and row.endswith("passed")  # coverage in the table


def test_a_missing_vendor_sdk_is_a_failed_row_among_several(fp16):
    proc, out = fp16
    row = next(line for line in proc.stdout.splitlines() if line.startswith("litert-npu  -"))
    assert "error: MT6989: the MediaTek NPU compiler needs the MediaTek NeuroPilot SDK" in row
    assert "pip install ai-edge-litert-sdk-mediatek" in row
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"{FP16}.examples.json", f"{FP16}.json", f"{FP16}.tflite"]


def test_int8_compiles_whole_and_matches_pytorch_on_the_htp_simulator(int8):
    code, out = int8
    assert code == 0
    side = _check_compiled(out, INT8, "int8")
    parity = side["parity"]
    assert parity["tolerance"] == TOLERANCES["int8"] and parity["cosine"] > 0.999
    # at 64x64 stages 3 and 4 pad their 4x4 and 2x2 maps to 7x7 windows, on NCHW tensors in the int8 graph
    assert side["backend_info"]["graph_rewrites"]["end_pad_as_concatenation"] >= 2
    io = side["quantization"]["io"]
    assert io["input"]["dtype"] == "int8" and io["output"]["dtype"] == "int8"
    assert side["quantization"]["calibration"]["count"] == 4


def test_artifact_opens_in_the_loader_table_on_the_htp_simulator(fp16):
    """The contract's loader table opens the artifact on the HTP simulator (its NHWC input, the EPContext wrapping);
    an input the graph cannot take is the runtime's error, not a silent wrong answer; emo-verify checks it again."""
    from emo.contract import runtimes
    from emo.export.parity import parity_inputs

    _, out = fp16
    session = runtimes.open_session(out / f"{FP16}.tflite", "litert-npu")
    assert "HTP simulator" in session.runtime and session.info["cpu_fallback"] is False
    y = session.run(parity_inputs((64, 64))[:1].transpose(0, 2, 3, 1))
    assert y.shape == (1, 1000) and y.dtype == np.float32 and np.isfinite(y).all()
    with pytest.raises(Exception, match="(?i)shape|dimension|size"):
        session.run(np.zeros((1, 32, 32, 3), np.float32))
    assert cli.verify_main([str(out / f"{FP16}.tflite")]) == 0


@pytest.mark.parametrize(("soc", "sdk"), [("MT6989", "MediaTek NeuroPilot SDK (libneuron_adapter.so)"),
                                          ("tensor-g4", "Google Tensor ML SDK (liblitert_plugin_compiler.so)")])
def test_a_vendor_sdk_that_is_missing_is_refused_cleanly(tmp_path, soc, sdk):
    out = tmp_path / "out"
    proc = run_tool("emo-export", "--model", "emo_1m", "--format", "litert-npu", "--soc", soc, "--out", out)
    assert_one_line_error(proc, 2, f"the {sdk.split()[0]} NPU compiler needs the {sdk}, which is not installed")
    assert not out.exists()  # refused before anything was written


def test_unknown_soc_lists_the_known_ones(tmp_path, capsys):
    code = cli.export_main(["--model", "emo_1m", "--format", "litert-npu", "--soc", "SM8650,SD888",
                            "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "unknown --soc 'SD888'; choose from Qualcomm: " in err
    assert all(name in err for name in ("SM8650", "SM8750", "MediaTek: ", "MT6989", "Google: ", "Tensor_G4"))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("args", "pattern"), [
    (["--format", "onnx", "--soc", "SM8650"], "--soc is not available for onnx; it applies to: litert-npu"),
    (["--format", "tflite,litert-npu", "--soc", "SM8650"], "--soc is not available for tflite"),
    (["--format", "litert-npu", "--soc", " , "], "--soc is empty"),
    (["--format", "litert-npu", "--precision", "fp32"], "litert-npu has no precision 'fp32'; choose from: fp16, int8"),
    (["--format", "litert-npu", "--dynamic-batch"], "--dynamic-batch is not available for litert-npu"),
])
def test_soc_and_options_a_format_lacks(tmp_path, capsys, args, pattern):
    code = cli.export_main(["--model", "emo_1m", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert code == 2 and pattern in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_socs_parse_case_and_separators_and_name_the_artifact():
    from emo.export.backends import expand_targets
    from emo.export.litert_npu import DEFAULT_SOCS, parse_socs

    assert parse_socs("sm8650, SM8750,sm8650") == ["SM8650", "SM8750"]
    assert parse_socs("tensor-g4") == ["Tensor_G4"] and parse_socs(None) == list(DEFAULT_SOCS)
    backends = expand_targets(parse_formats("litert-npu"), "SM8750,Tensor_G4")
    assert [b.filename("emo_1m", "int8") for b in backends] == ["emo_1m_litert-npu-sm8750_int8.tflite",
                                                                "emo_1m_litert-npu-tensor-g4_int8.tflite"]
    assert [dict(b.fixed_options) for b in backends] == [{"nhwc": True, "soc": "SM8750"},
                                                         {"nhwc": True, "soc": "Tensor_G4"}]
    assert "litert-npu" not in [b.name for b in parse_formats("all")]  # SoC-specific: asked for by name
    assert "litert-npu" not in [b.name for b in parse_formats("all", "int8")]


def test_missing_lpai_stand_in_names_the_fix(monkeypatch, tmp_path):
    from emo.errors import EMOError
    from emo.export import litert_npu
    from emo.export.backends import expand_targets

    monkeypatch.setattr(litert_npu, "LPAI_STUB", tmp_path / "nowhere" / "libQnnLpai.so")
    (backend,) = expand_targets([BACKENDS["litert-npu"]], "SM8650")
    with pytest.raises(EMOError, match=r"needs a libQnnLpai.so to load.*`make venv`, or: cc -shared"):
        litert_npu.check_backend(backend)


def _with_atan2(tmp_path) -> bytes:
    """A tiny .tflite whose middle op (ATAN2) the Qualcomm compiler plugin does not take."""
    import litert_torch
    import torch

    class Partial(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x):
            y = self.a(x)
            return self.b(torch.atan2(y, y * 0.5 + 1.0))

    return bytes(litert_torch.convert(Partial().eval(), (torch.rand(1, 3, 16, 16),)).model_content())


def test_ops_left_on_the_cpu_are_counted_shown_and_warned(tmp_path, monkeypatch, capsys):
    """A real partial compile: ATAN2 stays on the CPU between two NPU partitions. emo-export says so in the table,
    on stderr and in the sidecar, and skips the HTP simulator (it runs NPU partitions only) with that reason."""
    from emo.export import litert_npu

    partial = _with_atan2(tmp_path)
    monkeypatch.setattr(litert_npu, "_convert", lambda model, example, ctx: (partial, 0))  # compile this instead
    monkeypatch.setattr(litert_npu, "_cpu_reference", lambda model, source, ctx: {"status": "passed"})
    code = cli.export_main(["--model", "emo_1m", "--format", "litert-npu", "--input-size", SIZE,
                            "--out", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert code == 0  # skipped is not a failure; the warning says what the NPU did not take
    stem = "emo_1m_litert-npu-sm8650_fp16"
    covered = _side(tmp_path / "o", stem)["backend_info"]["coverage"]
    assert covered["ops"] == 7 and covered["ops_on_npu"] == 6 and covered["ops_on_cpu"] == 1
    assert covered["npu_partitions"] == 2 and covered["cpu_op_types"] == {"ATAN2": 1}
    assert covered["compiler_report"] == [{"subgraph": 0, "ops_offloaded": 6, "ops": 7, "partitions": 2}]
    row = next(line for line in captured.out.splitlines() if stem in line)
    assert "6/7 (2)" in row and "skipped: 1 ops stay on the CPU (ATAN2)" in row
    warning = next(line for line in captured.err.splitlines() if line.startswith("WARNING: " + stem))
    assert "1 of 7 ops stay on the CPU (ATAN2 x1): the Qualcomm NPU compiler did not take them" in warning


def test_end_padding_of_the_innermost_axis_becomes_a_concatenation(tmp_path):
    """The HTP fills a PAD of the innermost axis's end with stale values (litert-torch's int8 graphs pad EMO's
    windows so, on NCHW tensors); the export writes those pads as concatenations of the pad value. Same values on
    the CPU, right values on the HTP simulator; and the raw PAD is still wrong there (when this assertion fails,
    the HTP was fixed and ``pad_by_concatenation`` can go)."""
    import litert_torch
    import torch
    import torch.nn.functional as F
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from emo.contract import runtimes
    from emo.contract.runtimes.litert_npu import op_names, read_model
    from emo.export import litert_npu

    class WindowPad(torch.nn.Module):  # EMO's stage-4 window pad at 112x112: 4x4 -> 7x7, at the end of H and W
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(8, 16, 1), torch.nn.Conv2d(16, 16, 1)

        def forward(self, x):
            return self.b(F.pad(self.a(x) + 0.3, (0, 3, 0, 3)))

    torch.manual_seed(0)
    example = torch.rand(1, 8, 4, 4)
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    prepared = prepare_pt2e(torch.export.export(WindowPad().eval(), (example,)).module(), quantizer)
    for _ in range(4):
        prepared(torch.rand(1, 8, 4, 4))
    converted = litert_torch.convert(convert_pt2e(prepared, fold_quantize=False), (example,),
                                     quant_config=QuantConfig(pt2e_quantizer=quantizer))
    raw = tmp_path / "raw.tflite"
    raw.write_bytes(converted.model_content())
    assert "PAD" in op_names(read_model(raw))
    rewritten_bytes, count = litert_npu.pad_by_concatenation(raw.read_bytes())
    rewritten = tmp_path / "rewritten.tflite"
    rewritten.write_bytes(rewritten_bytes)
    assert count == 1 and "CONCATENATION" in op_names(read_model(rewritten))
    x = np.random.default_rng(1).random((1, 8, 4, 4), dtype=np.float32)
    cpu = runtimes.open_session(raw, "tflite").run(x)
    assert np.array_equal(runtimes.open_session(rewritten, "tflite").run(x), cpu)  # an exact rewrite

    def on_htp(path):
        work = tmp_path / f"work_{path.stem}"
        work.mkdir()
        compiled, _ = litert_npu._compile(path, litert_npu.VENDORS["qualcomm"], "SM8650", work)
        return runtimes.open_session(compiled, "litert-npu").run(x)

    assert np.abs(on_htp(rewritten) - cpu).max() < 0.05  # int8 rounding of the HTP
    assert np.abs(on_htp(raw) - cpu).max() > 0.3  # the HTP's own PAD: stale values in the padding
