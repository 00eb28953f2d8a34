"""emo-verify and emo-predict misused as a new or hostile user would: each case through the real console script."""

import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emo_testutil import REF_CKPT, assert_one_line_error, need_reference, run_tool, snapshot, write_sidecar

SAMPLE = Path(__file__).resolve().parent.parent / "emo" / "assets" / "samples" / "cat.jpg"


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory) -> Path:
    """A small real ONNX export whose sidecar names a checkpoint (copied beside it)."""
    need_reference()
    folder = tmp_path_factory.mktemp("artifacts")
    shutil.copy(REF_CKPT, folder / "weights.pth")
    subprocess.run([str(Path(sys.executable).parent / "emo-export"), "--model", "emo_1m", "--weights",
                    str(folder / "weights.pth"), "--format", "onnx", "--input-size", "64", "--out", str(folder)],
                   check=True, capture_output=True)
    return folder


def _copy_with_sidecar(onnx_dir: Path, dest: Path, edit=None) -> Path:
    dest.mkdir(exist_ok=True)
    artifact = dest / "emo_1m_onnx_fp32.onnx"
    shutil.copy(onnx_dir / artifact.name, artifact)
    side = json.loads((onnx_dir / "emo_1m_onnx_fp32.json").read_text())
    if edit:
        side = edit(side)
    artifact.with_suffix(".json").write_text(json.dumps(side))
    return artifact


def test_sidecar_weights_on_a_device_file_is_refused_at_once(onnx_dir, tmp_path):
    def edit(side):
        side["weights"]["path"] = "/dev/zero"
        return side

    artifact = _copy_with_sidecar(onnx_dir, tmp_path / "a", edit)
    before = snapshot(tmp_path)
    proc = run_tool("emo-verify", artifact, timeout=120)  # hashing /dev/zero would never end
    assert_one_line_error(proc, 2, "/dev/zero is not a regular file; pass --weights PATH")
    assert snapshot(tmp_path) == before


def test_relative_weights_path_resolves_against_the_sidecar_folder(onnx_dir, tmp_path):
    def edit(side):
        side["weights"]["path"] = "weights.pth"
        return side

    artifact = _copy_with_sidecar(onnx_dir, tmp_path / "a", edit)
    shutil.copy(onnx_dir / "weights.pth", tmp_path / "a" / "weights.pth")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run_tool("emo-verify", artifact, cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert "status: passed" in proc.stdout


def _set(path: str, value):
    def edit(side):
        node = side
        *parents, last = path.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
        return side
    return edit


SIDECAR_CASES = {
    "weights a string": (_set("weights", "emo_1m.pth"), "field 'weights' must be an object"),
    "input.shape a number": (_set("input.shape", 224), "field 'input.shape' must be [batch, ...]"),
    "unknown precision": (_set("precision", "fp64"), "field 'precision' must be one of fp32, fp16"),
    "layout unknown": (_set("input.layout", "CHWN"), "field 'input.layout'"),
    "in_graph missing": (_set("input.normalization", {"mean": [0, 0, 0]}),
                         "field 'input.normalization.in_graph' is missing"),
    "labels of the wrong length": (_set("labels", {"names": ["a", "b"]}),
                                   "field 'labels.names' must hold 1000 names"),
    "a JSON list": (lambda side: [side], "field '(top level)' must be a JSON object"),
    "backend unknown": (_set("backend", "tensorrt"), "field 'backend' must be a format emo-export writes"),
    "a label with a newline": (lambda side: side["labels"]["names"].__setitem__(5, "goldfish\nshark") or side,
                               "field 'labels.names[5]' must be class names of 1..256 characters"),
    "a batch of 1e12": (_set("input.shape", [10**12, 3, 224, 224]), "field 'input.shape[0]' must be a batch"),
    "16384 x 16384": (_set("input.shape", [1, 3, 16384, 16384]), "field 'input.shape[2]' must be a size in 1..4096"),
    "num_classes 1e8": (_set("num_classes", 10**8), "field 'num_classes' must be an integer in 1..100000"),
    "nested 500 deep": (lambda side: {**side, "backend_info": json.loads("[" * 500 + "]" * 500)},
                          "nests deeper than 32 levels"),
    "NaN in the normalisation": (_set("input.normalization.mean", [float("nan"), 0, 0]), "is not JSON"),
}


@pytest.mark.parametrize("case", SIDECAR_CASES)
def test_malformed_sidecar_names_the_field(onnx_dir, tmp_path, case):
    edit, pattern = SIDECAR_CASES[case]
    artifact = _copy_with_sidecar(onnx_dir, tmp_path / "a", edit)
    before = snapshot(tmp_path)
    assert_one_line_error(run_tool("emo-verify", artifact), 2, pattern)
    if case in ("weights a string", "a JSON list"):  # the same reader serves emo-predict and emo-bench
        assert_one_line_error(run_tool("emo-predict", SAMPLE, "--artifact", artifact), 2, pattern)
        rows = tmp_path / "rows.jsonl"
        proc = run_tool("emo-bench", artifact, "--device", "host", "--out", rows)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert pattern in json.loads(rows.read_text())["status"]
        rows.unlink()
    assert snapshot(tmp_path) == before


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that claims width x height pixels: PIL's bomb check reads only this header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))
    return path


def test_predict_bad_inputs(onnx_dir, tmp_path):
    artifact = onnx_dir / "emo_1m_onnx_fp32.onnx"
    bomb = _png_header_only(tmp_path / "bomb.png", 40000, 40000)
    truncated = _copy_with_sidecar(onnx_dir, tmp_path / "t")
    truncated.write_bytes(truncated.read_bytes()[:5000])
    apple = tmp_path / "apple" / "emo_1m_coreml-et_fp16.pte"
    apple.parent.mkdir()
    apple.write_bytes(b"not run here")
    write_sidecar(apple, "executorch-coreml", "fp16")
    before = snapshot(tmp_path)
    cases = [
        ([bomb, "--artifact", artifact], 2, "refused as a decompression bomb"),
        ([SAMPLE, "--artifact", truncated], 2, "cannot load emo_1m_onnx_fp32.onnx (truncated or not a onnx"),
        ([SAMPLE, "--artifact", apple], 3, "cannot run on this host: needs Apple runtime"),
        ([SAMPLE, "--artifact", artifact, "--top", "-3"], 2, "--top -3 must be at least 1"),
        ([SAMPLE, tmp_path / "missing.jpg", "--artifact", artifact], 2, "image not found"),
        ([tmp_path, "--artifact", artifact], 2, "image not found (or not a file)"),
    ]
    for args, code, pattern in cases:
        assert_one_line_error(run_tool("emo-predict", *args), code, pattern)
    assert snapshot(tmp_path) == before


PEAK_RSS = """import resource, subprocess, sys
subprocess.run(sys.argv[1:], capture_output=True, check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"""


def test_predict_decodes_one_image_at_a_time(onnx_dir, tmp_path):
    """16 photos of 12 megapixels (36 MB each once decoded): memory must not grow with the number of images."""
    photo = tmp_path / "big.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8)).save(photo, quality=30)
    predict = [str(Path(sys.executable).parent / "emo-predict"), "--artifact", str(onnx_dir / "emo_1m_onnx_fp32.onnx"),
               "--repeat", "1"]

    def peak_kib(count: int) -> int:
        proc = subprocess.run([sys.executable, "-c", PEAK_RSS, *predict, *[str(photo)] * count],
                              capture_output=True, text=True, check=True, timeout=600)
        return int(proc.stdout)

    growth_mb = (peak_kib(16) - peak_kib(1)) / 1024
    assert growth_mb < 3 * 36, f"peak memory grew by {growth_mb:.0f} MB for 15 more images"
