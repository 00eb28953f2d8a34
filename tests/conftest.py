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


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


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
