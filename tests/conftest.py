from pathlib import Path

import pytest
import torch

from emo_testutil import REF_CKPT, need_reference


@pytest.fixture(scope="session")
def ref_ckpt() -> Path:
    need_reference()
    return REF_CKPT


@pytest.fixture(scope="session")
def ref_state(ref_ckpt) -> dict[str, torch.Tensor]:
    return torch.load(ref_ckpt, map_location="cpu", weights_only=True)["net"]


@pytest.fixture(scope="session")
def all_formats(tmp_path_factory):
    """(exit code, folder) of `emo-export --format all` for emo_1m: exported once per session, read by
    test_export_all.py and test_web_demo.py (the browser runs the same files)."""
    need_reference()
    from emo.export import cli

    out = tmp_path_factory.mktemp("all")
    code = cli.export_main(["--model", "emo_1m", "--weights", str(REF_CKPT), "--format", "all", "--out", str(out)])
    return code, out


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


def pytest_addoption(parser):
    parser.addoption("--coremltools-full-grid", action="store_true",
                     help="test_mil_coremltools_ops: run every case of coremltools' per-op grids, not a sample")


@pytest.fixture(scope="session")
def mobile_artifacts(tmp_path_factory) -> Path:
    """Real emo_1m artifacts (NCHW, NCHW normalised outside, NHWC) with their bundled examples; see
    ``mobile_artifacts.py``. Exported once per session for the examples, Android core and iOS core tests."""
    need_reference()
    from mobile_artifacts import export_mobile_artifacts

    return export_mobile_artifacts(tmp_path_factory.mktemp("mobile"))


@pytest.fixture(scope="session")
def sample_pixels(tmp_path_factory) -> Path:
    from mobile_artifacts import write_sample_pixels

    return write_sample_pixels(tmp_path_factory.mktemp("pixels"))
