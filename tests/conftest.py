"""Shared fixtures. Tests that need ../shared skip with a clear reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MCL_SHARED", REPO.parent / "shared"))

# keep the 2-core CI machine responsive and results repeatable
torch.set_num_threads(min(2, os.cpu_count() or 1))


def shared_path(*parts: str) -> Path:
    """Path inside ../shared, or skip the calling test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        reason = "the project's ../shared data folder: present in CI, absent in a user's clone"
        if os.environ.get("MCL_REQUIRE_SHARED") == "1":  # set by .ci/run when ../shared is there
            pytest.fail(f"needs {path} ({reason}), and MCL_REQUIRE_SHARED=1 forbids skipping")
        pytest.skip(f"needs {path} ({reason})")
    return path


@pytest.fixture
def shared():
    return shared_path
