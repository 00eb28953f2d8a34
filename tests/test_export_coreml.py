"""Core ML: export, the MIL interpreter as the parity check on Linux, and proof that the check can fail."""

import json
import shutil
import sys

import numpy as np
import pytest

from emo.contract.runtimes.mil_interpreter import MILInterpreterError, MILProgram, _BlobFile
from emo.data import sample_images
from emo.export import backends as backends_mod
from emo.export import cli
from emo.export.backends import BACKENDS
from emo_testutil import need_reference


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    need_reference()
    from emo_testutil import REF_CKPT

    out = tmp_path_factory.mktemp("coreml")
    for precision in ("fp32", "fp16"):
        assert cli.export_main(["--model", "emo_1m", "--weights", str(REF_CKPT), "--format", "coreml",
                                "--precision", precision, "--out", str(out)]) == 0
    return out


def _side(out, stem):
    return json.loads((out / f"{stem}.json").read_text())


def test_fp32_parity_in_the_interpreter(exported):
    side = _side(exported, "emo_1m_coreml_fp32")
    parity = side["parity"]
    assert parity["checked_with"] == "mil-interpreter (numpy)"
    assert parity["status"] == "passed" and parity["max_abs_diff"] <= 1e-4 and parity["top1_agreement"] == 1.0


def test_fp16_parity_with_fp16_rounding(exported):
    parity = _side(exported, "emo_1m_coreml_fp16")["parity"]
    assert parity["status"] == "passed"
    assert parity["top1_agreement"] >= 0.99 and parity["cosine"] >= 0.999
    assert parity["max_abs_diff"] > 1e-5  # fp16 rounding at op boundaries really happened


def test_program_description_and_metadata(exported):
    from coremltools.proto import Model_pb2

    program = MILProgram(exported / "emo_1m_coreml_fp16.mlpackage")
    spec: Model_pb2.Model = program.spec
    meta = spec.description.metadata
    assert "EMO emo_1m" in meta.shortDescription and meta.author and meta.license and meta.versionString
    user = dict(meta.userDefined)
    assert user["emo.variant"] == "emo_1m" and user["emo.min_target"] == "iOS17"
    assert user["emo.weights_sha256"] == "c33b2c82313f1eaeca620a5fb3814c05ba62df0c288b992dbe7f8474ca08b2e7"
    assert [i.name for i in spec.description.input] == ["image"] and spec.description.input[0].shortDescription
    assert [o.name for o in spec.description.output] == ["logits"]
    info = _side(exported, "emo_1m_coreml_fp16")["backend_info"]
    assert {"conv", "matmul", "softmax", "gelu", "space_to_depth", "depth_to_space", "cast"} <= set(info["mil_ops"])
    assert "transpose" not in info["mil_ops"]  # windows as space_to_depth, k^T folded into matmul (issue 12)


def test_blob_reader_matches_coremltools(exported):
    from coremltools import libmilstoragepython

    path = exported / "emo_1m_coreml_fp32.mlpackage" / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    theirs = libmilstoragepython._BlobStorageReader(str(path))
    program = MILProgram(exported / "emo_1m_coreml_fp32.mlpackage")
    checked = 0
    for op in program.block.operations:
        value = op.attributes["val"] if op.type == "const" else None
        if value is not None and value.WhichOneof("value") == "blobFileValue":
            offset = value.blobFileValue.offset
            ours = _BlobFile(path).read(offset, np.float32, (-1,))
            np.testing.assert_array_equal(ours, np.asarray(theirs.read_float_data(offset)))
            checked += 1
    assert checked > 50


def _corrupt(src, dst, mutate):
    """Copy an .mlpackage and its sidecar, apply ``mutate`` to its Model spec, write it back."""
    from coremltools.proto import Model_pb2

    shutil.copytree(src, dst)
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    path = dst / "Data" / "com.apple.CoreML" / "model.mlmodel"
    spec = Model_pb2.Model()
    spec.ParseFromString(path.read_bytes())
    block = spec.mlProgram.functions["main"].block_specializations["CoreML7"]
    mutate(block, {op.outputs[0].name: op for op in block.operations})
    path.write_bytes(spec.SerializeToString())


def _verify_corrupted(exported, tmp_path, capsys, mutate) -> tuple[int, str, str]:
    """emo-verify on a corrupted copy of the fp32 program: (exit code, stdout, stderr)."""
    broken = tmp_path / "emo_1m_coreml_fp32.mlpackage"
    _corrupt(exported / "emo_1m_coreml_fp32.mlpackage", broken, mutate)
    code = cli.verify_main([str(broken)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_wrong_window_order_fails_parity(exported, tmp_path, capsys):
    """Put the windows back in PyTorch's pixel_shuffle channel order instead of MIL depth_to_space's (TensorFlow's)
    order: same shapes, runs, wrong pixels; also proves the interpreter tells the two orders apart."""
    def mutate(block, producers):
        op = next(op for op in block.operations if op.type == "depth_to_space")
        op.type = "pixel_shuffle"
        op.inputs["upscale_factor"].CopyFrom(op.inputs["block_size"])
        del op.inputs["block_size"]

    code, out, _ = _verify_corrupted(exported, tmp_path, capsys, mutate)
    assert code == 1 and "status: failed: max_abs_diff" in out


def test_swapped_q_and_k_fails_parity(exported, tmp_path, capsys):
    """Exchange the q and k halves of one attention's qk output (shapes unchanged): runs, computes k q^T."""
    def mutate(block, producers):
        slices = [op for op in block.operations if op.type == "slice_by_index"]
        first = slices[0]
        source = first.inputs["x"].arguments[0].name
        second = next(op for op in slices[1:] if op.inputs["x"].arguments[0].name == source)
        for key in sorted((set(first.inputs) & set(second.inputs)) - {"x"}):  # begin, end and their masks
            a = producers[first.inputs[key].arguments[0].name].attributes["val"]
            b = producers[second.inputs[key].arguments[0].name].attributes["val"]
            saved = type(a)()
            saved.CopyFrom(a)
            a.CopyFrom(b)
            b.CopyFrom(saved)

    code, out, _ = _verify_corrupted(exported, tmp_path, capsys, mutate)
    assert code == 1 and "status: failed: max_abs_diff" in out


def test_runtime_error_is_a_recorded_failure(exported, tmp_path, capsys):
    """A program the runtime cannot execute fails verification with one line, no traceback."""
    def mutate(block, producers):
        op = next(op for op in block.operations if op.type == "reshape")
        op.outputs[0].type.tensorType.dimensions[1].constant.size += 1  # declared shape no longer matches

    code, out, err = _verify_corrupted(exported, tmp_path, capsys, mutate)
    assert code == 1 and "status: failed: runtime error: reshape" in out and "Traceback" not in err


def test_unknown_op_is_named(exported, tmp_path):
    def mutate(block, producers):
        next(op for op in block.operations if op.type == "gelu").type = "frobnicate"

    broken = tmp_path / "x.mlpackage"
    _corrupt(exported / "emo_1m_coreml_fp16.mlpackage", broken, mutate)
    with pytest.raises(MILInterpreterError, match="does not implement: frobnicate"):
        MILProgram(broken)


def test_image_input_classifier(tmp_path, capsys):
    need_reference()
    from emo_testutil import REF_CKPT

    assert cli.export_main(["--model", "emo_1m", "--weights", str(REF_CKPT), "--format", "coreml", "--image-input",
                            "--classifier", "--min-target", "iOS16", "--input-size", "160", "--out",
                            str(tmp_path)]) == 0
    side = _side(tmp_path, "emo_1m_coreml_fp16")
    assert side["input"]["layout"] == "image" and side["input"]["range"] == [0, 255]
    assert side["output"]["kind"] == "probabilities" and side["parity"]["status"] == "passed"
    program = MILProgram(tmp_path / "emo_1m_coreml_fp16.mlpackage")
    assert program.spec.description.input[0].type.WhichOneof("Type") == "imageType"
    assert program.spec.description.predictedFeatureName == "classLabel"
    embedded = json.loads(dict(program.spec.description.metadata.userDefined)["emo.output"])
    assert embedded == side["output"] and embedded["kind"] == "probabilities"
    user = dict(program.spec.description.metadata.userDefined)
    assert user["com.apple.coreml.model.preview.type"] == "imageClassifier"  # Xcode's preview tab
    from emo.contract import examples
    ex = examples.read(tmp_path / "emo_1m_coreml_fp16.mlpackage")  # pixels 0..255 (u8, divisor 1), probabilities
    raw = json.loads((tmp_path / "emo_1m_coreml_fp16.examples.json").read_text())["examples"][0]["input"]
    assert raw["encoding"] == "u8" and raw["divisor"] == 1 and ex["examples"][0]["input"].shape == (1, 3, 160, 160)
    assert ex["examples"][0]["input"].max() > 1 and abs(ex["examples"][0]["output"].sum() - 1) < 1e-5
    out = program.run({"image": np.full((1, 3, 160, 160), 128.0, np.float32)})
    probs = out["classLabel_probs"]
    assert len(probs) == 1000 and abs(sum(probs.values()) - 1) < 1e-2 and out["classLabel"] in probs
    assert "missile (744)" in probs  # repeated ImageNet names made unique for Core ML's dictionary
    assert cli.predict_main([str(sample_images()[1]), "--artifact",
                             str(tmp_path / "emo_1m_coreml_fp16.mlpackage"), "--repeat", "1"]) == 0
    assert "mil-interpreter (numpy)" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "pattern"), [
    (["--min-target", "iOS14"], "--min-target iOS14 cannot hold an ML program"),
    (["--min-target", "iOS99"], "unknown --min-target 'iOS99'"),
    (["--image-input", "--batch", "2"], "--image-input takes one image at a time"),
    (["--image-input", "--no-normalize"], "the normalisation must stay in the graph"),
    (["--dynamic-batch"], "--dynamic-batch is not available for coreml"),
])
def test_bad_coreml_options(tmp_path, capsys, args, pattern):
    code = cli.export_main(["--model", "emo_1m", "--format", "coreml", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert code == 2 and pattern in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_classifier_of_a_finetune_needs_labels(tmp_path, capsys, ref_state):
    import torch

    state = dict(ref_state)
    state["head.weight"], state["head.bias"] = torch.randn(10, 168), torch.randn(10)
    torch.save({"net": state}, tmp_path / "ft.pth")
    code = cli.export_main(["--model", "emo_1m", "--weights", str(tmp_path / "ft.pth"), "--format", "coreml",
                            "--classifier", "--out", str(tmp_path / "o")])
    assert code == 2 and "--classifier needs the names of the head's 10 classes" in capsys.readouterr().err


def test_coremltools_missing_names_the_extra(tmp_path, monkeypatch, capsys):
    broken = backends_mod.Backend(**{**BACKENDS["coreml"].__dict__, "requires": ("coremltools_missing",)})
    monkeypatch.setitem(BACKENDS, "coreml", broken)
    code = cli.export_main(["--model", "emo_1m", "--format", "coreml", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'emo-mobile[coreml]'" in err and err.count("\n") == 1


@pytest.mark.macos
@pytest.mark.skipif(sys.platform != "darwin", reason="the Core ML runtime exists on macOS only")
def test_coreml_runtime_agrees_on_macos(exported):
    from emo.contract.runtimes import COREML_RUNTIME, here

    assert [loader.runtime for loader in here("coreml")][-1] == COREML_RUNTIME
    assert cli.verify_main([str(exported / "emo_1m_coreml_fp32.mlpackage")]) == 0
