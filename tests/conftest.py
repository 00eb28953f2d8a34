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


def pytest_addoption(parser):
    parser.addoption("--coremltools-full-grid", action="store_true",
                     help="test_mil_coremltools_ops: run every case of coremltools' per-op grids, not a sample")
