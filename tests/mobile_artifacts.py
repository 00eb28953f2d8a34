"""Real exported artifacts (with their bundled examples) and the bundled photos' decoded pixels, shared by the tests
of the Python examples reader, the Android core (Kotlin/JUnit) and the iOS core (Swift/XCTest)."""

from pathlib import Path

import numpy as np

from emo_testutil import REF_CKPT

# two exports cover both layouts and both tensor encodings the cores must read: NCHW normalised outside the graph
# (f32le) and NHWC in [0, 1] (u8, divisor 255; the form MediaPipe's ImageClassifier takes)
EXPORTS = [
    ("onnx", ["--no-normalize"]),
    ("tflite", ["--nhwc"]),
]


def export_mobile_artifacts(root: Path) -> Path:
    """Export every artifact of ``EXPORTS`` into its own folder under ``root/artifacts`` and return that root."""
    from emo.export import cli

    out = root / "artifacts"
    for i, (fmt, flags) in enumerate(EXPORTS):
        code = cli.export_main(["--model", "emo_1m", "--weights", str(REF_CKPT), "--format", fmt, *flags,
                                "--out", str(out / f"{i}-{fmt}{''.join(flags).replace('--', '-')}")])
        assert code == 0, (fmt, flags)
    return out


def sidecars(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*/*.json") if not p.name.endswith(".examples.json"))


def write_sample_pixels(folder: Path) -> Path:
    """Each bundled photo as decoded by ``emo.data.load_image`` (EXIF applied), as binary PPM (P6)."""
    from emo.data import load_image, sample_images

    folder.mkdir(parents=True, exist_ok=True)
    for path in sample_images():
        image = np.asarray(load_image(path), dtype=np.uint8)
        h, w, _ = image.shape
        (folder / (path.stem + ".ppm")).write_bytes(f"P6\n{w} {h}\n255\n".encode() + image.tobytes())
    return folder
