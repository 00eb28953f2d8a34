"""ONNX / ORT export end to end: artifact, sidecar, metadata, parity, verify, predict."""

import json
import shutil

import numpy as np
import onnx
import pytest

from emo.export import cli
from emo.export.backends import BACKENDS
from emo.export.parity import TOLERANCES
from emo.export.pipeline import ExportOptions, export_all
from emo_testutil import need_reference

SIDECAR_KEYS = {"variant", "backend", "precision", "file", "sha256", "size_bytes", "weights", "input", "output",
                "labels", "parity", "export_seconds", "toolchain"}
PARITY_KEYS = {"checked_with", "max_abs_diff", "mean_abs_diff", "cosine", "top1_agreement", "top5_agreement",
               "tolerance", "status"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    need_reference()
    from emo_testutil import REF_CKPT

    out = tmp_path_factory.mktemp("onnx")
    code = cli.export_main(["--model", "emo_1m", "--weights", str(REF_CKPT), "--format", "onnx,ort",
                            "--out", str(out)])
    assert code == 0
    return out


def test_artifacts_and_nothing_else(exported):
    names = sorted(p.name for p in exported.iterdir())
    assert names == ["emo_1m_onnx_fp32.examples.json", "emo_1m_onnx_fp32.json", "emo_1m_onnx_fp32.onnx",
                     "emo_1m_ort_fp32.examples.json", "emo_1m_ort_fp32.json", "emo_1m_ort_fp32.ort"]


@pytest.mark.parametrize("stem", ["emo_1m_onnx_fp32", "emo_1m_ort_fp32"])
def test_sidecar(exported, stem):
    side = json.loads((exported / f"{stem}.json").read_text())
    assert SIDECAR_KEYS <= side.keys() and PARITY_KEYS <= side["parity"].keys()
    assert side["variant"] == "emo_1m" and side["precision"] == "fp32"
    assert side["input"] == {"name": "image", "shape": [1, 3, 224, 224], "dtype": "float32", "layout": "NCHW",
                             "range": [0.0, 1.0], "normalization": {"mean": [0.485, 0.456, 0.406],
                                                                     "std": [0.229, 0.224, 0.225], "in_graph": True},
                             "preprocessing": {"resize": "shorter-side", "crop_pct": 0.875,
                                               "interpolation": "bicubic"}}
    assert side["output"] == {"name": "logits", "kind": "logits", "shape": [1, 1000]}
    assert side["weights"]["sha256"] == "c33b2c82313f1eaeca620a5fb3814c05ba62df0c288b992dbe7f8474ca08b2e7"
    assert len(side["labels"]["names"]) == 1000
    parity = side["parity"]
    assert parity["status"] == "passed" and parity["max_abs_diff"] <= TOLERANCES["fp32"]["max_abs_diff"]
    assert parity["top1_agreement"] == 1.0 and parity["num_images"] == 8
    from emo.export.pipeline import artifact_digest
    assert artifact_digest(exported / side["file"]) == (side["sha256"], side["size_bytes"])


def test_onnx_graph_contract(exported):
    model = onnx.load(str(exported / "emo_1m_onnx_fp32.onnx"))
    assert [i.name for i in model.graph.input] == ["image"] and [o.name for o in model.graph.output] == ["logits"]
    assert model.opset_import[0].version >= 17
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["emo.variant"] == "emo_1m"
    assert json.loads(meta["emo.output"]) == {"name": "logits", "kind": "logits", "shape": [1, 1000]}
    assert json.loads(meta["emo.normalization"])["in_graph"] is True
    assert meta["emo.labels"].splitlines()[281] == "tabby cat"
    # NNAPI, the ANE and Hexagon want rank <= 4: every value in the exported graph
    inferred = onnx.shape_inference.infer_shapes(model)
    ranks = [len(v.type.tensor_type.shape.dim) for v in inferred.graph.value_info]
    assert ranks and max(ranks) <= 4
    assert json.loads((exported / "emo_1m_onnx_fp32.json").read_text())["backend_info"]["max_tensor_rank"] <= 4


def test_verify_passes(exported, capsys):
    assert cli.verify_main([str(exported / "emo_1m_ort_fp32.ort")]) == 0
    assert "status: passed" in capsys.readouterr().out


def test_window_partition_is_native_and_transpose_free(exported):
    """The strided-grid windows are one SpaceToDepth / DepthToSpace (DCR) per attention block that has several
    windows (7 at 224: stage 3); the only transposes left are the k^T operands that ORT folds into FusedMatMul."""
    model = onnx.load(str(exported / "emo_1m_onnx_fp32.onnx"))
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("SpaceToDepth") == 7 and ops.count("DepthToSpace") == 7
    assert ops.count("Transpose") == 9
    info = json.loads((exported / "emo_1m_onnx_fp32.json").read_text())["backend_info"]
    assert info["deploy_target"] == "native" and info["ops"]["SpaceToDepth"] == 7


def test_verify_catches_a_corrupted_graph(exported, tmp_path, capsys):
    """Put the windows back in PyTorch's pixel_shuffle channel order (DepthToSpace CRD instead of DCR): the graph
    still runs with the same shapes, the check must fail."""
    broken = tmp_path / "emo_1m_onnx_fp32.onnx"
    shutil.copy(exported / "emo_1m_onnx_fp32.json", tmp_path / "emo_1m_onnx_fp32.json")
    model = onnx.load(str(exported / "emo_1m_onnx_fp32.onnx"))
    node = next(node for node in model.graph.node if node.op_type == "DepthToSpace")
    mode = next(a for a in node.attribute if a.name == "mode")
    assert mode.s == b"DCR"
    mode.s = b"CRD"
    onnx.save(model, str(broken))
    assert cli.verify_main([str(broken)]) == 1
    out = capsys.readouterr().out
    assert "artifact changed since export" in out and "status: failed: max_abs_diff" in out


def test_predict_with_artifact_and_with_pytorch(exported, capsys):
    from emo.data import sample_images
    from emo_testutil import REF_CKPT

    cat = str(sample_images()[1])
    assert cli.predict_main([cat, "--artifact", str(exported / "emo_1m_onnx_fp32.onnx"), "--repeat", "2"]) == 0
    onnx_out = capsys.readouterr().out
    assert cli.predict_main([cat, "--model", "emo_1m", "--weights", str(REF_CKPT), "--repeat", "2"]) == 0
    torch_out = capsys.readouterr().out
    assert "ms median of 2" in onnx_out and "1. " in onnx_out
    # same top-5 classes in the same order from both runtimes
    classes = [[line.split(".", 1)[1].rsplit(None, 1)[0].strip() for line in text.splitlines() if ". " in line]
               for text in (onnx_out, torch_out)]
    assert classes[0] == classes[1] and len(classes[0]) == 5


def test_dynamic_batch_no_normalize_odd_size(tmp_path):
    options = ExportOptions(variant="emo_1m", input_size=(200, 264), dynamic_batch=True, normalize=False)
    (result,) = export_all(options, [BACKENDS["onnx"]], tmp_path)
    assert result.ok, result.status
    side = json.loads(result.sidecar.read_text())
    assert side["input"]["shape"] == ["batch", 3, 200, 264] and side["input"]["normalization"]["in_graph"] is False
    assert side["weights"] == {"random_init": True, "seed": 0}
    from emo.contract.runtimes import open_session
    run = open_session(result.path, "onnx").run
    assert run(np.zeros((5, 3, 200, 264), np.float32)).shape == (5, 1000)
    # random-init artifacts verify too: the seed rebuilds the same weights
    assert cli.verify_main([str(result.path)]) == 0


def test_static_batch(tmp_path):
    options = ExportOptions(variant="emo_1m", input_size=(64, 64), batch=3)
    (result,) = export_all(options, [BACKENDS["ort"]], tmp_path)
    assert result.ok, result.status
    assert json.loads(result.sidecar.read_text())["input"]["shape"] == [3, 3, 64, 64]


# ------------------------------------------------------------------------------------------------ ORT styles
def _ort_export(tmp_path, *extra) -> tuple[int, dict]:
    out = tmp_path / "out"
    code = cli.export_main(["--model", "emo_1m", "--format", "ort", "--input-size", "64", "--out", str(out), *extra])
    side = json.loads((out / "emo_1m_ort_fp32.json").read_text()) if code == 0 else {}
    return code, side


def _optimized_onnx_ops(onnx_path, tmp_path, disabled) -> dict:
    """The graph ORT's CPU EP builds from an .onnx at load (every optimisation, minus ``disabled``), by op."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
    model = onnx.load(str(tmp_path / "optimized.onnx"))
    ops: dict[str, int] = {}
    for node in model.graph.node:
        key = f"{node.domain}:{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
        ops[key] = ops.get(key, 0) + 1
    return ops


def test_default_ort_is_the_fused_cpu_graph_of_the_onnx(exported, tmp_path):
    """The default .ort holds the graph ORT's CPU EP builds from the .onnx on an ARM CPU (everything but the x86-only
    NCHWc layout), op for op, and computes the same logits bit for bit as that graph: no longer the basic graph
    (2x slower in the CPU EP, issue 24)."""
    import onnxruntime as ort

    from emo.export.ort import ort_ops

    side = json.loads((exported / "emo_1m_ort_fp32.json").read_text())
    info = side["backend_info"]
    assert info["ort_style"] == "cpu" and info["ort_nchwc_nodes"] == 0
    assert "NchwcTransformer" in info["ort_optimization_level"] and "ARM" in info["ort_suits"][0]
    ops = dict(ort_ops(exported / "emo_1m_ort_fp32.ort"))
    assert ops == info["ort_ops"]
    assert ops == _optimized_onnx_ops(exported / "emo_1m_onnx_fp32.onnx", tmp_path, ["NchwcTransformer"])
    assert ops["com.microsoft:QuickGelu"] > 0 and ops["com.microsoft:FusedMatMul"] > 0  # fused, not basic
    x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    onnx_session = ort.InferenceSession(str(exported / "emo_1m_onnx_fp32.onnx"), providers=["CPUExecutionProvider"],
                                        disabled_optimizers=["NchwcTransformer"])
    ort_session = ort.InferenceSession(str(exported / "emo_1m_ort_fp32.ort"), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(ort_session.run(None, {"image": x})[0], onnx_session.run(None, {"image": x})[0])


def test_mobile_ep_style_keeps_plain_onnx_ops(tmp_path):
    """--ort-style mobile-ep: ORT's "Runtime" style for NNAPI / Core ML / XNNPACK EPs, which take ONNX ops only: no
    com.microsoft fused op in the file, the style and the EPs it suits in the sidecar, parity checked as usual."""
    code, side = _ort_export(tmp_path, "--ort-style", "mobile-ep")
    assert code == 0 and side["parity"]["status"] == "passed"
    info = side["backend_info"]
    assert info["ort_style"] == "mobile-ep" and "NnapiExecutionProvider" in info["ort_suits"]
    assert not [op for op in info["ort_ops"] if ":" in op]
    assert info["ort_ops"]["Sigmoid"] > 0 and info["ort_ops"]["Transpose"] > 0  # unfused SiLU and k^T


@pytest.mark.skipif(__import__("platform").machine().lower() not in ("x86_64", "amd64"),
                    reason="ORT's NCHWc layout exists on x86-64 only")
def test_cpu_x86_style_is_the_onnx_graph_of_this_x86_host(tmp_path):
    """--ort-style cpu-x86 keeps the NCHWc layout: the graph this host's CPU EP builds from the .onnx at load, same
    logits bit for bit; the sidecar says it loads on x86-64 only."""
    from emo.contract.runtimes import open_session

    def load(path):
        return open_session(path, path.suffix[1:]).run

    code, side = _ort_export(tmp_path, "--ort-style", "cpu-x86")
    assert code == 0 and side["parity"]["status"] == "passed"
    info = side["backend_info"]
    assert info["ort_style"] == "cpu-x86" and info["ort_nchwc_nodes"] > 0 and "x86-64 only" in info["ort_suits"][0]
    out = tmp_path / "onnx"
    assert cli.export_main(["--model", "emo_1m", "--format", "onnx", "--input-size", "64", "--out", str(out)]) == 0
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    np.testing.assert_array_equal(load(tmp_path / "out" / "emo_1m_ort_fp32.ort")(x),
                                  load(out / "emo_1m_onnx_fp32.onnx")(x))


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "onnx", "--ort-style", "cpu"], "--ort-style is not available for onnx"),
    (["--format", "ort", "--ort-style", "nnapi"], "invalid choice: 'nnapi'"),
])
def test_bad_ort_style(tmp_path, capsys, args, message):
    code = cli.export_main(["--model", "emo_1m", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and not (tmp_path / "o").exists()


def test_ort_style_choices_are_the_backend_styles():
    from emo.export.ort import STYLES

    action = next(a for a in cli._export_parser()._actions if a.dest == "ort_style")
    assert tuple(action.choices) == tuple(STYLES)
