"""Quantized exports: the calibration reader, ONNX QDQ int8, the QNN HTP format (on the HTP simulator), and the
refusals. Small exports (emo_1m at 64x64, a handful of calibration images) keep this file fast."""

import json
import shutil

import numpy as np
import onnx
import pytest

from emo.export import cli
from emo.export.backends import BACKENDS, parse_formats
from emo.export.calibration import calibration_images
from emo.export.parity import TOLERANCES, parity_inputs
from emo_testutil import need_reference

SIZE = "64"
CAL_COUNT = 6


def _calibration_folder(root):
    """Images that are not the parity images: seeded smooth colour fields, PNG and JPEG, in nested folders."""
    from PIL import Image

    rng = np.random.default_rng(7)
    for i in range(8):
        folder = root / ("a" if i % 2 else "b/c")
        folder.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((96, 80), Image.BILINEAR)
        image.save(folder / f"img{i}.{'png' if i % 3 else 'jpg'}")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def calibration_dir(tmp_path_factory):
    return _calibration_folder(tmp_path_factory.mktemp("calibration"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, calibration_dir):
    need_reference()
    from emo_testutil import REF_CKPT

    out = tmp_path_factory.mktemp("quant")
    code = cli.export_main(["--model", "emo_1m", "--weights", str(REF_CKPT), "--format", "onnx,ort,coreml",
                            "--precision", "int8",
                            "--input-size", SIZE, "--calibration", str(calibration_dir),
                            "--calibration-count", str(CAL_COUNT), "--out", str(out)])
    assert code == 0
    return out


def _side(out, stem):
    return json.loads((out / f"{stem}.json").read_text())


def test_onnx_int8_sidecar_and_parity(exported, calibration_dir):
    side = _side(exported, "emo_1m_onnx_int8")
    assert side["precision"] == "int8" and side["file"] == "emo_1m_onnx_int8.onnx"
    parity = side["parity"]
    assert parity["status"] == "passed" and parity["tolerance"] == TOLERANCES["int8"]
    assert parity["cosine"] >= TOLERANCES["int8"]["cosine"] and parity["top1_agreement"] >= 0.87
    assert 0 < parity["max_abs_diff"]  # int8 really is int8: not bit-identical to fp32
    quant = side["quantization"]
    assert quant["weight_type"] == "QInt8" and quant["activation_type"] == "QUInt8"
    assert quant["calibration"]["source"] == str(calibration_dir.resolve())
    assert quant["calibration"]["count"] == CAL_COUNT
    assert quant["quantized_ops"]["Conv"] > 50 and quant["quantized_ops"]["MatMul"] > 0
    errors = quant["layer_errors"]  # per-layer error against the float graph, also printed by emo-export
    assert errors["activations_compared"] > 100 and 10 < errors["output_sqnr_db"] < 80
    worst = errors["worst_quantization_steps"]
    assert len(worst) == 8 and worst == sorted(worst, key=lambda r: r["qdq_sqnr_db"])
    assert all(r["op"] in ("Conv", "Mul", "Add", "Sub", "MatMul", "Sigmoid", "Softmax", "Gemm", "Slice", "Reshape",
                           "Transpose", "Pad", "ReduceMean", "input") for r in worst)


def test_export_prints_the_per_layer_error(tmp_path, calibration_dir, capsys):
    assert cli.export_main(["--model", "emo_1m", "--format", "onnx", "--precision", "int8", "--input-size", SIZE,
                            "--calibration", str(calibration_dir), "--calibration-count", str(CAL_COUNT),
                            "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    head = next(i for i, line in enumerate(out) if "per-layer error" in line)
    assert out[head].startswith("emo_1m_onnx_int8.onnx: per-layer error (SQNR in dB") and "output" in out[head]
    assert len(out) == head + 9 and all(" dB, graph so far " in line for line in out[head + 1:])


def test_layer_error_lines_for_each_record_kind():
    from emo.export.quantize import layer_error_lines

    coreml = {"metric": "m", "output": 0.03, "largest_additions": [{"op": "conv_1", "type": "conv", "error": 0.2,
                                                                    "added": 0.05}]}
    assert layer_error_lines("a.mlpackage", coreml) == [
        "a.mlpackage: per-layer error (m): output 0.03; largest additions:",
        "  conv_1                       conv       +0.0500 -> 0.2000"]
    assert layer_error_lines("a.mlpackage", {"metric": "not computed: x"}) == ["a.mlpackage: per-layer error "
                                                                                "not computed: x"]
    onnx_record = {"metric": "m", "output_sqnr_db": 28.9, "activations_compared": 3, "worst_quantization_steps": [
        {"tensor": "mul_2", "op": "Mul", "qdq_sqnr_db": 24.76, "xmodel_sqnr_db": None}]}  # None: exact (infinite)
    assert layer_error_lines("a.onnx", onnx_record) == [
        "a.onnx: per-layer error (m): output 28.9 dB over 3 quantized activations; lowest quantization SQNR:",
        "  mul_2                        Mul        step  24.76 dB, graph so far None dB"]


def test_onnx_int8_graph_is_qdq_per_channel(exported):
    model = onnx.load(str(exported / "emo_1m_onnx_int8.onnx"))
    assert [i.name for i in model.graph.input] == ["image"] and [o.name for o in model.graph.output] == ["logits"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["emo.variant"] == "emo_1m"
    inits = {i.name: i for i in model.graph.initializer}
    conv_weight_dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                      and inits[n.input[0]].data_type == onnx.TensorProto.INT8 and len(inits[n.input[0]].dims) == 4]
    assert len(conv_weight_dq) > 50
    scales = [onnx.numpy_helper.to_array(inits[n.input[1]]) for n in conv_weight_dq]
    assert all(s.ndim == 1 and s.size > 1 for s in scales if s.size > 1) and sum(s.size > 1 for s in scales) > 50


def test_verify_catches_a_wrong_weight_scale(exported, tmp_path, capsys):
    """Negate the scales of the classifier head's quantized weights and bias: the int8 check must fail. (The seeded
    reference checkpoint's logits hardly depend on the image, so a broken stem would go unseen on it: see README.)"""
    assert cli.verify_main([str(exported / "emo_1m_onnx_int8.onnx")]) == 0
    model = onnx.load(str(exported / "emo_1m_onnx_int8.onnx"))
    inits = {i.name: i for i in model.graph.initializer}
    head = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith("model.head.")]
    assert len(head) == 2, [n.input[0] for n in head]
    for node in head:
        scale = inits[node.input[1]]
        scale.CopyFrom(onnx.numpy_helper.from_array(-onnx.numpy_helper.to_array(scale), scale.name))
    onnx.save(model, str(tmp_path / "emo_1m_onnx_int8.onnx"))
    shutil.copy(exported / "emo_1m_onnx_int8.json", tmp_path)
    capsys.readouterr()
    assert cli.verify_main([str(tmp_path / "emo_1m_onnx_int8.onnx")]) == 1
    assert "status: failed: top1_agreement 0 < 0.87; cosine -1 < 0.99" in capsys.readouterr().out


def test_calibration_reader(calibration_dir, capsys):
    cal = calibration_images(calibration_dir, 5, (32, 40))
    assert cal.images.shape == (5, 3, 32, 40) and cal.images.dtype == np.float32
    assert 0 <= cal.images.min() and cal.images.max() <= 1
    assert calibration_images(calibration_dir, 5, (32, 40)).sha256 == cal.sha256  # sorted order: deterministic
    default = calibration_images(None, 4, (64, 64))
    assert "poor calibration set" in capsys.readouterr().err
    parity = parity_inputs((64, 64))
    for image in default.images:  # random crops of the bundled photos, never the parity centre crops
        assert min(np.abs(image - p).max() for p in parity) > 0.05


@pytest.mark.parametrize("args, message", [
    (["--precision", "fp32", "--calibration", "{cal}"], "apply to --precision int8 or w8a16 only"),
    (["--precision", "int8", "--calibration", "{missing}"], "--calibration folder not found"),
    (["--precision", "int8", "--calibration", "{empty}"], "holds no images"),
    (["--precision", "int8", "--calibration-count", "0"], "--calibration-count 0 is out of range"),
    (["--precision", "w8a16"], "onnx has no precision 'w8a16'"),
])
def test_bad_quantization_options(args, message, tmp_path, calibration_dir, capsys):
    (tmp_path / "empty").mkdir()
    args = [a.format(cal=calibration_dir, missing=tmp_path / "nope", empty=tmp_path / "empty") for a in args]
    out = tmp_path / "out"
    assert cli.export_main(["--model", "emo_1m", "--format", "onnx", *args, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("copy", ["same file", "one byte longer", "re-encoded", "half size", "grey"])
def test_parity_images_are_refused_for_calibration(tmp_path, capsys, copy):
    """By the picture, not the bytes: a copy of a parity photo that is re-encoded, resized, grey or has one more
    byte is still refused."""
    from PIL import Image

    from emo.data import sample_images

    source = sample_images()[1]
    folder = tmp_path / "cal"
    folder.mkdir()
    photo = Image.open(source).convert("RGB")
    if copy == "same file":
        shutil.copy(source, folder / "photo.jpg")
    elif copy == "one byte longer":
        (folder / "photo.jpg").write_bytes(source.read_bytes() + b"\0")
    elif copy == "re-encoded":
        photo.save(folder / "photo.jpg", quality=40)
    elif copy == "half size":
        photo.resize((photo.width // 2, photo.height // 2)).save(folder / "photo.png")
    else:
        photo.convert("L").save(folder / "photo.png")
    out = tmp_path / "out"
    assert cli.export_main(["--model", "emo_1m", "--format", "onnx", "--precision", "int8", "--input-size", "32",
                            "--calibration", str(folder), "--out", str(out)]) == 2
    assert "is one of the parity images" in capsys.readouterr().err and not out.exists()


def test_format_all_follows_the_precision():
    assert "qnn" not in [b.name for b in parse_formats("all")]
    assert [b.name for b in parse_formats("all", "w8a16")] == ["qnn"]
    assert {"onnx", "ort", "coreml", "tflite", "qnn"} <= {b.name for b in parse_formats("all", "int8")}
    assert all("int8" in b.precisions for b in parse_formats("all", "int8"))


def test_fused_gelu_computes_the_same_function(exported):
    import onnxruntime as ort

    from emo.export.quantize import fuse_gelu

    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [64])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [64])
    consts = [onnx.numpy_helper.from_array(np.array(v, np.float32), n)
              for n, v in (("sqrt2", 2 ** 0.5), ("one", 1.0), ("half", 0.5))]
    nodes = [onnx.helper.make_node("Div", ["x", "sqrt2"], ["d"]), onnx.helper.make_node("Erf", ["d"], ["e"]),
             onnx.helper.make_node("Add", ["e", "one"], ["a"]), onnx.helper.make_node("Mul", ["half", "a"], ["m"]),
             onnx.helper.make_node("Mul", ["x", "m"], ["y"])]
    model = onnx.helper.make_model(onnx.helper.make_graph(nodes, "g", [x], [y], consts),
                                   opset_imports=[onnx.helper.make_opsetid("", 18)])
    fused = onnx.ModelProto()
    fused.CopyFrom(model)
    assert fuse_gelu(fused) == 1 and [n.op_type for n in fused.graph.node] == ["Gelu"]
    assert not fused.graph.initializer
    values = np.linspace(-6, 6, 64, dtype=np.float32)
    run = [ort.InferenceSession(m.SerializeToString()).run(None, {"x": values})[0] for m in (model, fused)]
    assert np.abs(run[0] - run[1]).max() < 1e-6


# ---------------------------------------------------------------------------------------------------------- QNN
@pytest.fixture(scope="module")
def qnn_exported(tmp_path_factory, calibration_dir):
    pytest.importorskip("onnxruntime_qnn", reason="the qnn extra (onnxruntime-qnn) is not installed")
    need_reference()
    from emo_testutil import REF_CKPT

    out = tmp_path_factory.mktemp("qnn")
    for precision in ("w8a16", "int8"):
        code = cli.export_main(["--model", "emo_1m", "--weights", str(REF_CKPT), "--format", "qnn", "--input-size",
                                SIZE, "--precision", precision, "--calibration", str(calibration_dir),
                                "--calibration-count", str(CAL_COUNT), "--out", str(out)])
        assert code == 0
    return out


def test_qnn_w8a16_on_the_htp_simulator(qnn_exported):
    side = _side(qnn_exported, "emo_1m_qnn_w8a16")
    assert side["backend"] == "qnn" and side["precision"] == "w8a16"
    parity = side["parity"]
    assert parity["status"] == "passed" and "simulator" in parity["checked_with"]
    assert parity["cosine"] >= TOLERANCES["w8a16"]["cosine"]
    info = side["backend_info"]
    assert info["target"] == {"soc_model": 57, "soc": "Snapdragon 8 Gen 3 (SM8650)", "htp_arch": "v75"}
    assert info["nodes_on_cpu"] == 0 and info["nodes_on_htp"] > 100 and info["embed_mode"] == 1
    assert "simulator" in info["checked_on"] and info["graph_rewrites"]["erf_gelu_fused"] == 11
    assert side["quantization"]["activation_type"] == "QUInt16"
    model = onnx.load(str(qnn_exported / "emo_1m_qnn_w8a16.onnx"))
    assert [n.op_type for n in model.graph.node] == ["EPContext"]  # the whole graph is one HTP context
    assert cli.verify_main([str(qnn_exported / "emo_1m_qnn_w8a16.onnx")]) == 0


def test_qnn_int8_is_mixed_precision_on_the_htp_simulator(qnn_exported):
    side = _side(qnn_exported, "emo_1m_qnn_int8")
    assert side["parity"]["status"] == "passed" and side["backend_info"]["nodes_on_cpu"] == 0
    quant = side["quantization"]
    assert quant["activation_type"] == "QUInt8" and quant["sixteen_bit_activations"] == ["layernorm_variance",
                                                                                          "softmax"]
    assert quant["layer_errors"]["output_sqnr_db"] > 10 and "before HTP compilation" in quant["layer_errors"]["note"]


def _layernorm_and_softmax_graph():
    """A float graph with the deploy form's LayerNorm (channel means as 1x1 convs of weights 1/C) and a softmax."""
    c = 4
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    mean = numpy_helper.from_array(np.full((1, c, 1, 1), 1.0 / c, np.float32), "mean_w")
    other = numpy_helper.from_array(np.full((1, c, 1, 1), 0.5, np.float32), "other_w")  # one output channel, not 1/C
    nodes = [helper.make_node("Conv", ["image", "mean_w"], ["mu"]), helper.make_node("Sub", ["image", "mu"], ["xc"]),
             helper.make_node("Mul", ["xc", "xc"], ["sq"]), helper.make_node("Conv", ["sq", "mean_w"], ["var"]),
             helper.make_node("Sqrt", ["var"], ["sigma"]), helper.make_node("Div", ["xc", "sigma"], ["normed"]),
             helper.make_node("Conv", ["normed", "other_w"], ["o"]), helper.make_node("Softmax", ["o"], ["logits"],
                                                                                        axis=-1)]
    for node in nodes:
        node.name = f"{node.op_type}_{node.output[0]}"
    x = helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, [1, c, 4, 4])
    y = helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 1, 4, 4])
    return helper.make_model(helper.make_graph(nodes, "ln", [x], [y], [mean, other]),
                             opset_imports=[helper.make_opsetid("", 18)])


def test_wide_tensors_are_the_layernorm_variance_and_the_softmax():
    from emo.export.quantize import layernorm_statistics, wide_tensors

    model = _layernorm_and_softmax_graph()
    assert [n.output[0] for n in layernorm_statistics(model)] == ["mu", "var"]  # not "o": its weights are not 1/C
    assert wide_tensors(model, ("layernorm_variance",)) == ["sq", "var"]
    assert wide_tensors(model, ("layernorm_variance", "softmax")) == ["sq", "var", "logits"]
    assert wide_tensors(model, ()) == []


def test_qnn_int8_quantizes_the_wide_tensors_to_16_bits(tmp_path):
    pytest.importorskip("onnxruntime_qnn", reason="the qnn extra (onnxruntime-qnn) is not installed")
    from emo.export import qnn
    from emo.export.quantize import quantize_onnx

    calibration = np.random.default_rng(0).normal(size=(6, 4, 4, 4)).astype(np.float32)
    quantized, _ = quantize_onnx(_layernorm_and_softmax_graph(), calibration, qnn.RECIPES["int8"], 1, tmp_path,
                                 qnn=True)
    inits = {i.name: i for i in quantized.graph.initializer}
    bits = {}
    for node in quantized.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[0] not in inits:
            bits.setdefault(node.input[0], set()).add(inits[node.input[2]].data_type)
    u8, u16 = onnx.TensorProto.UINT8, onnx.TensorProto.UINT16
    assert bits["sq"] == {u16} and bits["var"] == {u16} and bits["logits_QuantizeLinear_Input"] == {u16}
    assert bits["image"] == bits["mu"] == bits["xc"] == bits["normed"] == bits["o"] == {u8}
    assert bits["xc_convert_QuantizeLinear_Input"] == {u16}  # onnxruntime's 8 -> 16-bit conversion into the square


def test_qnn_names_a_node_the_htp_cannot_take(tmp_path):
    """A graph with a bare Erf (no GELU around it): the HTP has no Erf and nothing may fall back to the CPU."""
    pytest.importorskip("onnxruntime_qnn", reason="the qnn extra (onnxruntime-qnn) is not installed")
    from emo.export import qnn
    from emo.export.quantize import quantize_onnx

    x = onnx.helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, [1, 8])
    y = onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 8])
    model = onnx.helper.make_model(onnx.helper.make_graph([onnx.helper.make_node("Erf", ["image"], ["logits"],
                                                                                  name="lonely_erf")], "g", [x], [y]),
                                   opset_imports=[onnx.helper.make_opsetid("", 18)])
    calibration = np.random.default_rng(0).random((4, 1, 8), dtype=np.float32)
    quantized, _ = quantize_onnx(model, calibration[:, 0], qnn.RECIPES["w8a16"], 1, tmp_path, qnn=True)
    onnx.save(quantized, str(tmp_path / "q.onnx"))
    with pytest.raises(RuntimeError, match=r"the HTP cannot take node\(s\) lonely_erf \(Erf\)"):
        qnn.compile_for_htp(tmp_path / "q.onnx", tmp_path / "out.onnx")


def test_ort_int8_is_the_onnx_qdq_graph_stored_fused(exported):
    """One calibration for both; the .ort holds the QLinear kernels the CPU EP fuses the .onnx into at load time,
    so both compute bit-identical logits (a .ort stored unfused ran 5-6x slower)."""
    from emo.contract.runtimes import open_session

    def load(path):
        return open_session(path, path.suffix[1:]).run

    side = _side(exported, "emo_1m_ort_int8")
    assert side["parity"]["status"] == "passed" and side["parity"]["tolerance"] == TOLERANCES["int8"]
    assert side["backend_info"]["ort_optimization_level"].startswith("all but NchwcTransformer")
    assert side["quantization"]["calibration"] == _side(exported, "emo_1m_onnx_int8")["quantization"]["calibration"]
    x = parity_inputs((int(SIZE), int(SIZE)))[:1]
    np.testing.assert_array_equal(load(exported / "emo_1m_ort_int8.ort")(x),
                                  load(exported / "emo_1m_onnx_int8.onnx")(x))


def test_coreml_int8_w8a8_runs_in_the_mil_interpreter(exported):
    side = _side(exported, "emo_1m_coreml_int8")
    parity = side["parity"]
    assert parity["status"] == "passed" and parity["tolerance"] == TOLERANCES["int8"] and parity["max_abs_diff"] > 0
    info = side["backend_info"]
    ops = info["mil_ops"]
    assert info["opset"] == "CoreML7" and info["min_target"] == "iOS17"
    assert ops["quantize"] > 50 and ops["dequantize"] > 50 and ops["constexpr_affine_dequantize"] > 20
    quant = side["quantization"]
    assert quant["int8_weights"] == ops["constexpr_affine_dequantize"] and quant["quantize_ops"] == ops["quantize"]
    assert "MIL interpreter" in quant["calibration_statistics"] and quant["float_activation_ops"] == ["add"]
    assert quant["calibration"]["count"] == CAL_COUNT
    # mixed precision: the 12 LayerNorms' statistics convs (mean and variance) take fp16 inputs
    from emo.contract.runtimes.mil_interpreter import MILProgram
    from emo.export.coreml import _layernorm_statistics

    assert quant["float_activation_layers"] == {"layernorm_statistics": 24}
    program = MILProgram(exported / "emo_1m_coreml_int8.mlpackage")
    producer = {op.outputs[0].name: op.type for op in program.block.operations}
    convs = {op.outputs[0].name: op for op in program.block.operations if op.type == "conv"}
    statistics = _layernorm_statistics(program)
    assert len(statistics) == 24
    # the variances (every second statistics conv) read the squared deviations in fp16; a mean may read a tensor that
    # is int8 for its other consumers (a conv output before the first LayerNorm of a stage)
    assert [producer[convs[name].inputs["x"].arguments[0].name] for name in statistics[1::2]] == ["mul"] * 12
    assert sum(producer[op.inputs["x"].arguments[0].name] == "dequantize" for op in convs.values()) > 40
    errors = quant["layer_errors"]  # per-layer error against the fp16 program, also printed by emo-export
    assert 0 < errors["output"] < 0.3 and len(errors["largest_additions"]) == 8
    assert all(0 <= r["error"] <= 1 for r in errors["largest_additions"])


def test_layer_error_ignores_scales_folded_into_ops():
    from emo.export.coreml import _angle_error

    f = np.random.default_rng(0).normal(size=(2, 8, 5)).astype(np.float32)
    assert _angle_error(f, 23.08 * f) < 1e-6  # coremltools folds quantization scales into an add's inputs
    assert abs(_angle_error(np.array([1.0, 0.0]), np.array([0.0, 2.0])) - 1.0) < 1e-12
    assert abs(_angle_error(np.array([1.0, 0.0]), np.array([1.0, 1.0])) - 2 ** -0.5) < 1e-9
    assert _angle_error(np.zeros(3), np.zeros(3)) == 0.0 and _angle_error(np.zeros(3), np.ones(3)) == 1.0


def test_coreml_int8_activation_ranges_come_from_the_interpreter(exported, tmp_path):
    """The statistics handed to coremltools are min/max of real op outputs: the input's range is the images'."""
    from emo.contract.runtimes.mil_interpreter import MILProgram
    from emo.export.coreml import _activation_ranges

    fp16 = tmp_path / "fp16"
    assert cli.export_main(["--model", "emo_1m", "--format", "coreml", "--input-size", SIZE, "--out", str(fp16)]) == 0
    images = np.random.default_rng(0).random((2, 1, 3, int(SIZE), int(SIZE)), dtype=np.float32)
    ranges = _activation_ranges(MILProgram(fp16 / "emo_1m_coreml_fp16.mlpackage"), [{"image": x} for x in images])
    assert ranges["image"] == {"rmin": float(images.min()), "rmax": float(images.max())}
    assert len(ranges) > 200 and all(r["rmin"] <= r["rmax"] for r in ranges.values()) and "logits" not in ranges


@pytest.mark.parametrize("args, message", [
    (["--precision", "int8", "--min-target", "iOS16"], "needs iOS17/macOS14 or later; use --min-target iOS17"),
    (["--precision", "w8a16"], "coreml has no w8a16: Core ML has int8 (W8A8), not w8a16"),
])
def test_coreml_int8_refusals(args, message, tmp_path, capsys):
    assert cli.export_main(["--model", "emo_1m", "--format", "coreml", "--out", str(tmp_path / "o"), *args]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_qnn_refuses_float_precisions(tmp_path, capsys):
    assert BACKENDS["qnn"].precisions == ("w8a16", "int8")
    assert cli.export_main(["--model", "emo_1m", "--format", "qnn", "--precision", "fp32",
                            "--out", str(tmp_path / "o")]) == 2
    assert "qnn has no precision 'fp32'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- TFLite, ExecuTorch
@pytest.mark.slow
@pytest.mark.parametrize("fmt, stem", [("tflite", "emo_1m_tflite_int8")])
def test_tflite_int8(fmt, stem, tmp_path, calibration_dir):
    need_reference()
    from emo_testutil import REF_CKPT

    code = cli.export_main(["--model", "emo_1m", "--weights", str(REF_CKPT), "--format", fmt, "--precision", "int8",
                            "--input-size", SIZE, "--calibration", str(calibration_dir), "--calibration-count", "4",
                            "--out", str(tmp_path)])
    side = _side(tmp_path, stem)
    assert code == 0 and side["parity"]["status"] == "passed", side["parity"]
    assert side["quantization"]["calibration"]["count"] == 4 and "int8" in side["quantization"]["scheme"]
    info = side["backend_info"]
    assert info["ops"]["CONV_2D"] > 0 and side["quantization"]["io"]["input"]["dtype"] == "int8"
    # DEPLOY_TARGET_BY_PRECISION: q, k and the values from one conv (one quantization range), not concatenated
    assert info["deploy_target"] == "channels_last_qkv"
    # litert-torch makes an int8 GELU where a GELU feeds a quantized conv; XNNPACK has no int8 GELU, and each one
    # cut the graph (3 partitions). Run in float between dequantize and quantize, the graph is one partition.
    assert side["quantization"]["int8_ops_run_in_float_for_xnnpack"] >= 1
    assert info["xnnpack_partitions"] == 1 and info["xnnpack_whole_graph"]


@pytest.mark.slow
def test_executorch_int8_is_one_xnnpack_delegate_and_loads(tmp_path, calibration_dir):
    """At 64x64 the stage-3/4 maps are padded to whole windows: the stock XNNPACK quantizer left that pad between two
    scales and the program failed to load (0x1); the pad now shares its input's scale."""
    need_reference()
    from emo_testutil import REF_CKPT

    code = cli.export_main(["--model", "emo_1m", "--weights", str(REF_CKPT), "--format", "executorch",
                            "--precision", "int8", "--input-size", SIZE, "--calibration", str(calibration_dir),
                            "--calibration-count", "4", "--out", str(tmp_path)])
    side = _side(tmp_path, "emo_1m_xnnpack_int8")
    assert code == 0 and side["parity"]["status"] == "passed", side["parity"]
    info = side["backend_info"]
    assert info["whole_graph_delegated"] and info["delegate_partitions"] == 1
    assert info["graph_ops"]["pad"] > 0 and info["graph_ops"]["quantize_per_tensor"] > 100


# ---------------------------------------------------------------------------------------------------- bench_quant
def test_bench_quant_times_each_int8_artifact_against_its_fp32_twin(calibration_dir, capsys):
    from emo.export import bench_quant

    assert bench_quant.main(["--runtimes", "onnx,ort", "--size", SIZE, "--calibration", str(calibration_dir),
                             "--calibration-count", "4", "--rounds", "3", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ORT")]
    assert len(rows) == 2 and all(len(r.strip("|").split("|")) == 8 for r in rows)
    ratio = float(rows[0].split("|")[4])
    assert ratio > 0 and "integer operators" in out and "'Conv':" in out


def test_bench_quant_bad_arguments(capsys):
    from emo.export import bench_quant

    assert bench_quant.main(["--runtimes", "qnn"]) == 2
    assert "bench_quant: bad arguments" in capsys.readouterr().err
