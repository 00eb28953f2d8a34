"""The bundled examples file: what emo-export writes next to each artifact, and its one Python reader."""

import base64
import json

import numpy as np
import pytest
from mobile_artifacts import sidecars

from emo.contract import examples
from emo.data import load_image, normalize, sample_images, to_unit_array


def _load(side):
    data = json.loads(side.read_text())
    return data, examples.read(side.with_name(data["examples"]))


def test_every_artifact_has_small_examples(mobile_artifacts):
    found = sidecars(mobile_artifacts)
    assert len(found) == 2
    for side in found:
        data = json.loads(side.read_text())
        path = side.with_name(data["examples"])
        assert path.name == side.stem + ".examples.json"
        assert path == examples.examples_path(side.with_name(data["file"]))
        limit = 1_000_000 if data["input"]["normalization"]["in_graph"] else 2_500_000  # u8 or f32le, 3 images
        assert path.stat().st_size < limit, path.stat().st_size


def test_inputs_are_the_exact_preprocessed_tensors(mobile_artifacts):
    by_name = {p.name: p for p in sample_images()}
    for side in sidecars(mobile_artifacts):
        data, ex = _load(side)
        contract = data["input"]
        assert ex["input"] == contract and ex["artifact"] == data["file"] and ex["artifact_sha256"] == data["sha256"]
        for example in ex["examples"]:
            unit = to_unit_array(load_image(by_name[example["source"]]), (224, 224))
            expected = unit if contract["normalization"]["in_graph"] else normalize(unit)
            if contract["layout"] == "NHWC":
                expected = expected.transpose(1, 2, 0)
            assert example["input"].shape == (1, *expected.shape)
            assert np.array_equal(example["input"][0], expected.astype(np.float32))  # bit for bit
            encoding = "u8" if contract["normalization"]["in_graph"] else "f32le"
            raw = json.loads(side.with_name(data["examples"]).read_text())
            assert {e["input"]["encoding"] for e in raw["examples"]} == {encoding}


def test_expected_outputs_are_pytorch_and_the_artifact_agrees(mobile_artifacts):
    import onnxruntime as ort

    for side in sidecars(mobile_artifacts):
        data, ex = _load(side)
        assert ex["tolerance"] == {"max_abs_diff": 1e-4}
        for example in ex["examples"]:
            names = [t["index"] for t in example["top5"]]
            assert names == examples.top_k(example["output"]) and len(names) == 5
            assert example["top5"][0]["label"] == data["labels"]["names"][names[0]]
        if data["backend"] != "onnx":
            continue
        session = ort.InferenceSession(str(side.with_name(data["file"])), providers=["CPUExecutionProvider"])
        outputs = [session.run(None, {"image": e["input"]})[0][0] for e in ex["examples"]]
        result = examples.agreement(ex, outputs)
        assert result["status"] == "passed" and result["max_abs_diff"] < 1e-4 and result["top5_agreement"] == 1.0
        outputs[1] = outputs[1] + np.float32(1e-3)  # every logit moved by 10x the fp32 tolerance
        moved = examples.agreement(ex, outputs)
        assert moved["status"].startswith("failed: max_abs_diff")
        assert examples.agreement(ex, outputs[:2])["status"].startswith("failed: outputs")


def test_encoding_round_trips_and_refuses_what_it_cannot_store():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (1, 3, 4, 5)).astype(np.float32) / np.float32(255)
    assert np.array_equal(examples.decode_tensor(examples.encode_tensor(pixels, divisor=255), "t", "x"), pixels)
    values = rng.standard_normal((2, 7)).astype(np.float32)
    record = examples.encode_tensor(values)
    assert record["encoding"] == "f32le" and np.array_equal(examples.decode_tensor(record, "t", "x"), values)
    with pytest.raises(ValueError, match="multiple of 1/255"):
        examples.encode_tensor(values * 0 + 0.5, divisor=255)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(schema="other/1"), "field 'schema' must be"),
    (lambda d: d.update(examples=[]), "field 'examples' must be a list of 1..16 examples"),
    (lambda d: d["examples"][0]["input"].update(encoding="png"), "field 'examples[0].input.encoding' must be one of"),
    (lambda d: d["examples"][0]["input"].update(data="@@@@"), "field 'examples[0].input.data' must be base64"),
    (lambda d: d["examples"][0]["output"].update(data=base64.b64encode(b"1234").decode()),
     "field 'examples[0].output.data' must hold 4000 bytes"),
    (lambda d: d["examples"][0]["input"].update(divisor=7), "field 'examples[0].input.divisor' must be 1 or 255"),
    (lambda d: d.update(tolerance={}), "field 'tolerance' must be one of the tolerance names"),
    (lambda d: d["tolerance"].update(max_abs_diff=0.6), "field 'tolerance.max_abs_diff' must not be looser"),
])
def test_malformed_examples_name_the_field(mobile_artifacts, tmp_path, change, message):
    def in_graph(side):
        return json.loads(side.read_text())["input"]["normalization"]["in_graph"]

    side = next(s for s in sidecars(mobile_artifacts) if in_graph(s))  # u8 inputs: the divisor case needs them
    raw = json.loads(side.with_name(json.loads(side.read_text())["examples"]).read_text())
    change(raw)
    path = tmp_path / "x.examples.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(examples.ExamplesError, match=message.replace("[", r"\[").replace("]", r"\]")):
        examples.read(path)


def test_missing_or_special_examples_file(tmp_path):
    with pytest.raises(examples.ExamplesError, match="no examples file m.examples.json"):
        examples.read(tmp_path / "m.onnx")
    (tmp_path / "d.examples.json").mkdir()
    with pytest.raises(examples.ExamplesError, match="not a regular file"):
        examples.read(tmp_path / "d.examples.json")
