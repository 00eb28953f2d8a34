"""Paths and helpers shared by the tests (a plain module: `tests` is not a package here)."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO.parent / "shared" / "reference"
REF_CKPT = REFERENCE / "emo_1m_seed7.pth"
REF_IO = REFERENCE / "emo_1m_seed7_io.npz"


def need_reference() -> None:
    if not REF_CKPT.exists():
        pytest.skip(f"authors' reference data not found at {REFERENCE}")
