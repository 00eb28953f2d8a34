"""Standard TFLite Model Metadata on NHWC artifacts: MediaPipe Tasks' ImageClassifier takes our file unchanged (reads
the input normalisation and the packed labels file) and ranks the classes as the LiteRT interpreter does."""

import zipfile

import numpy as np
from mobile_artifacts import sidecars

from emo.contract import examples


def _tflite(mobile_artifacts):
    return next(s.with_suffix(".tflite") for s in sidecars(mobile_artifacts) if s.with_suffix(".tflite").exists())


def test_mediapipe_image_classifier_reads_our_metadata(mobile_artifacts):
    import mediapipe as mp
    from ai_edge_litert.interpreter import Interpreter
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    path = _tflite(mobile_artifacts)  # NHWC, normalisation in the graph: the metadata says pixel / 255
    ex = examples.read(path)
    interpreter = Interpreter(str(path))
    interpreter.allocate_tensors()
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=5)
    labels = zipfile.ZipFile(path).read("labels.txt").decode().splitlines()
    assert len(labels) == 1000
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for example in ex["examples"]:
            # MediaPipe resizes the whole frame to 224x224; give it the centre crop so both see the same pixels
            pixels = np.ascontiguousarray(np.rint(example["input"][0] * 255).astype(np.uint8))
            result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=pixels))
            categories = result.classifications[0].categories
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], example["input"])
            interpreter.invoke()
            logits = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
            assert [c.index for c in categories] == examples.top_k(logits)
            assert [c.category_name for c in categories] == [labels[i] for i in examples.top_k(logits)]
            np.testing.assert_allclose([c.score for c in categories], logits[examples.top_k(logits)], atol=1e-5)


def test_metadata_says_what_the_graph_takes(mobile_artifacts, tmp_path):
    import json

    from emo.export.tflite import TFLITE_METADATA_NAME, add_classifier_metadata

    path = _tflite(mobile_artifacts)
    assert json.loads(path.with_suffix(".json").read_text())["backend_info"]["tflite_metadata"] == (
        "image classifier (TFLITE_METADATA + labels.txt)")
    # per-channel mean/std (a --no-normalize graph) is valid TFLite metadata (ML model binding reads it), but
    # MediaPipe refuses it: the README says to keep the normalisation in the graph for MediaPipe
    raw = add_classifier_metadata(path.read_bytes(), "m", "d", [123.675, 116.28, 103.53], [58.395, 57.12, 57.375],
                                  None)
    assert TFLITE_METADATA_NAME.encode() in raw and not zipfile.is_zipfile(__import__("io").BytesIO(raw))
