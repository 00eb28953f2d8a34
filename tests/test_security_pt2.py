"""A crafted .pt2 must not run code through emo-verify, emo-predict or emo-bench (issue: pickles in artifacts).

Each case rewrites one entry of a real exported archive the way an attacker would. The first test shows that
plain ``torch.export.load`` does run the payload (so the cases are real); the others show that our loader refuses
each archive before anything in it runs, through the real console scripts.
"""

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from emo.contract.pt2 import UnsafeArchiveError, check_archive, load_program

BIN = Path(sys.executable).parent


class _Payload:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def good_pt2(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pt2")
    subprocess.run([BIN / "emo-export", "--model", "emo_1m", "--format", "pt2", "--input-size", "64",
                    "--out", str(out)], check=True, capture_output=True)
    return out / "emo_1m_pytorch_fp32.pt2"


def _rewrite(src: Path, dst: Path, edit) -> Path:
    """Copy the archive at ``src`` to ``dst`` (with its sidecar), replacing entries as ``edit(rel, bytes)`` says."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/")[0]
        extra = edit("", b"") or {}
        for info in zin.infolist():
            rel = info.filename[len(root) + 1:]
            data = edit(rel, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)
        for rel, data in extra.items():
            zout.writestr(f"{root}/{rel}", data)
    side = json.loads(src.with_suffix(".json").read_text())
    digest = __import__("hashlib").sha256(dst.read_bytes()).hexdigest()  # a valid sidecar: the archive is the test
    dst.with_suffix(".json").write_text(json.dumps({**side, "file": dst.name, "sha256": digest,
                                                    "size_bytes": dst.stat().st_size}))
    return dst


def _pickled_weight(marker):
    def edit(rel, data):
        if rel == "data/weights/model_weights_config.json":
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        if rel == "data/weights/weight_0":
            return __import__("pickle").dumps(_Payload(marker))
        return data
    return edit


def _pickled_sample_inputs(marker):
    def edit(rel, data):
        if rel == "data/sample_inputs/model.pt":
            buffer = io.BytesIO()
            torch.save({"x": _Payload(marker)}, buffer)
            return buffer.getvalue()
        return data
    return edit


def _guards_code(marker):
    def edit(rel, data):
        if rel == "models/model.json":
            program = json.loads(data)
            program["guards_code"] = [f"__import__('os').system('touch {marker}')"]
            return json.dumps(program).encode()
        return data
    return edit


def _sympy_eval(marker):
    def edit(rel, data):
        if rel == "models/model.json":
            text = data.decode()
            return text.replace('"as_int": 1}', f'"as_expr": {{"expr_str": "__import__(\'os\').system(\'touch '
                                f'{marker}\')", "hint": null}}}}', 1).encode()
        return data
    return edit


def _aoti_library(marker):
    def edit(rel, data):
        if rel == "":
            return {"data/aotinductor/model/model.so": b"\x7fELF"}
        return data
    return edit


def _legacy_weights(marker):
    def edit(rel, data):
        if rel == "":
            return {"data/weights/model.pt": __import__("pickle").dumps(_Payload(marker))}
        return data
    return edit


CASES = {"pickled weight": _pickled_weight, "pickled sample inputs": _pickled_sample_inputs,
         "guards code": _guards_code, "sympy eval": _sympy_eval, "AOTInductor library": _aoti_library,
         "legacy pickled weights": _legacy_weights}


def test_plain_torch_export_load_runs_the_payload(good_pt2, tmp_path):
    """The hole is real: torch's own loader executes a pickled sample input (so the tests below mean something)."""
    marker = tmp_path / "pwned"
    bad = _rewrite(good_pt2, tmp_path / "emo_1m_pytorch_fp32.pt2", _pickled_sample_inputs(marker))
    try:
        torch.export.load(str(bad))
    except Exception:
        pass
    assert marker.exists()


@pytest.mark.parametrize("case", CASES)
def test_loader_refuses_before_running_anything(good_pt2, tmp_path, case):
    marker = tmp_path / "pwned"
    bad = _rewrite(good_pt2, tmp_path / "emo_1m_pytorch_fp32.pt2", CASES[case](marker))
    with pytest.raises(UnsafeArchiveError):
        load_program(bad)
    assert not marker.exists()


def test_a_clean_archive_loads_and_runs(good_pt2, tmp_path):
    copy = _rewrite(good_pt2, tmp_path / "emo_1m_pytorch_fp32.pt2", lambda rel, data: data or None)
    module = load_program(copy)
    assert module(torch.rand(1, 3, 64, 64)).shape == (1, 1000)


def test_not_an_archive(tmp_path):
    for data in (b"", b"PK\x03\x04garbage", os.urandom(300)):
        with pytest.raises(UnsafeArchiveError):
            check_archive(data)


def test_console_scripts_do_not_run_the_payload(good_pt2, tmp_path):
    """One case through every tool that opens artifacts (the loader tests above cover every case)."""
    marker = tmp_path / "pwned"
    bad = _rewrite(good_pt2, tmp_path / "emo_1m_pytorch_fp32.pt2", _pickled_sample_inputs(marker))
    sample = Path(__file__).resolve().parent.parent / "emo" / "assets" / "samples" / "cat.jpg"
    runs = {
        "emo-verify": ([str(bad)], 2),
        "emo-predict": ([str(sample), "--artifact", str(bad)], 2),
        "emo-bench": ([str(bad), "--device", "host", "--iters", "1", "--warmup", "0",
                       "--out", str(tmp_path / "rows.jsonl")], 1),
    }
    for tool, (args, expected) in runs.items():
        proc = subprocess.run([BIN / tool, *args], capture_output=True, text=True, timeout=300)
        assert proc.returncode == expected, (tool, proc.stderr)
        assert "Traceback" not in proc.stderr, (tool, proc.stderr)
        assert not marker.exists(), tool
    row = json.loads((tmp_path / "rows.jsonl").read_text())
    assert row["status"].startswith("failed: ") and "refused" in row["status"]
