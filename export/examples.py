"""Write ``{stem}.examples.json`` next to an artifact: a few bundled photos, the exact input tensor the artifact
must see for each, PyTorch's output and top-5, and the tolerances of the artifact's precision.

The format (``emo-mobile/examples/1``) and its one Python reader live in ``emo.runtime_bench.examples``; the Kotlin
and Swift cores of the demo apps read the same file, so one file proves that every app computes what PyTorch
computes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from emo.data import CROP_PCT, load_image, normalize, sample_images, to_unit_array
from emo.export.parity import TOLERANCES, reference_logits
from emo.runtime_bench import examples as examples_format

# Three of the four bundled photos keep the file small (~150 KB per image at 224x224) while covering a portrait,
# a landscape and a square source (different resize/crop paths).
EXAMPLE_IMAGES = ("astronaut.jpg", "cat.jpg", "coffee.jpg")

PREPROCESSING = {
    "resize": f"shorter side to int(max(H, W) / {CROP_PCT}), the other side int(short * long / short_side); "
              "PIL bicubic (a = -0.5, support widened by the downscale factor: antialiased), 8-bit output, "
              "horizontal pass then vertical",
    "crop": "centre H x W at top = round((h - H) / 2), left = round((w - W) / 2) (round half to even)",
    "scale": "float32(pixel) / 255",
    "source_decoding": "Pillow (libjpeg-turbo) with EXIF orientation applied; another JPEG decoder may differ by "
                       "a few levels, so apps check preprocessing on the stored tensor, not on their own decoding",
}


def example_images() -> list:
    by_name = {p.name: p for p in sample_images()}
    return [by_name[name] for name in EXAMPLE_IMAGES]


def input_tensor(unit: np.ndarray, contract: dict) -> dict:
    """One image (3, H, W) in [0, 1] as the artifact takes it (batch 1), encoded for the examples file."""
    if contract.get("layout") == "image":  # Core ML ImageType: RGB pixel values 0..255
        return examples_format.encode_tensor(np.rint(unit * 255).astype(np.float32)[None], divisor=1)
    x = unit if contract["normalization"]["in_graph"] else normalize(unit).astype(np.float32)
    x = x.transpose(1, 2, 0) if contract.get("layout") == "NHWC" else x
    return examples_format.encode_tensor(x[None], divisor=255 if contract["normalization"]["in_graph"] else None)


def build(sidecar: dict, reference: nn.Module, size: tuple[int, int]) -> dict:
    """The examples document for the artifact described by ``sidecar``, from the original PyTorch model."""
    paths = example_images()
    units = np.stack([to_unit_array(load_image(p), size) for p in paths]).astype(np.float32)
    probabilities = sidecar["output"].get("kind") == "probabilities"
    with torch.no_grad():
        outputs = reference_logits(reference, units, probabilities)
    names = (sidecar.get("labels") or {}).get("names")
    examples = []
    for path, unit, output in zip(paths, units, outputs, strict=True):
        top5 = examples_format.top_k(output)
        examples.append({
            "source": path.name,
            "input": input_tensor(unit, sidecar["input"]),
            "output": examples_format.encode_tensor(output),
            "top5": [{"index": i, "label": names[i] if names else str(i), "score": float(output[i])} for i in top5],
        })
    return {
        "schema": examples_format.SCHEMA,
        "artifact": sidecar["file"],
        "artifact_sha256": sidecar["sha256"],
        "variant": sidecar["variant"],
        "precision": sidecar["precision"],
        "input": sidecar["input"],
        "output": sidecar["output"],
        "expected_from": "PyTorch fp32, original (not deployed) model, "
                         + ("softmax of the logits" if probabilities else "logits"),
        # the tolerance the artifact was checked at (an fp32 litert-npu artifact computes in fp16 on the NPU)
        "tolerance": dict((sidecar.get("parity") or {}).get("tolerance") or TOLERANCES[sidecar["precision"]]),
        "preprocessing": PREPROCESSING,
        "examples": examples,
    }
