"""RAFT in bf16 against fp32 on a real Sintel pair (random weights: no trained ones offline), the
batch size that changes speed only, and the refusals of the precision option."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from mcl_video.motion.flow import FlowEstimator


@pytest.fixture(scope="module")
def random_raft(tmp_path_factory):
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("raft") / "raft_small.pth"
    torch.save(raft_small(weights=None).state_dict(), path)
    return path


def _pair(shared_path, size=(64, 32)):
    folder = shared_path("data", "flow-sintel", "clean", "alley_1")
    return [cv2.resize(cv2.cvtColor(cv2.imread(str(folder / f"frame_000{i}.png")), cv2.COLOR_BGR2RGB), size,
                       interpolation=cv2.INTER_AREA) for i in (1, 2, 3)]


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean end-point distance between two ``H x W x 2`` flows over the mean magnitude of ``b``."""
    return float(np.linalg.norm(a - b, axis=-1).mean() / np.linalg.norm(b, axis=-1).mean())


@pytest.mark.shared
def test_bf16_flow_is_close_to_fp32_and_the_batch_changes_nothing(random_raft, shared):
    frames = _pair(shared)
    flows = {}
    for precision, batch in (("fp32", 2), ("fp32", 1), ("bf16", 2)):
        est = FlowEstimator("raft", weights=random_raft, iters=2, device="cpu", threads=2, batch_size=batch,
                            precision=precision)
        flows[precision, batch] = [np.stack(uv, -1) for uv in est.stream(frames)]
    assert len(flows["fp32", 2]) == 2
    for a, b in zip(flows["fp32", 1], flows["fp32", 2], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    diffs = [relative_difference(h, f) for h, f in zip(flows["bf16", 2], flows["fp32", 2], strict=True)]
    assert np.linalg.norm(flows["fp32", 2][0], axis=-1).mean() > 0.1  # a real (non-zero) flow to compare
    assert all(0 < d < 0.05 for d in diffs), diffs  # bf16 rounds (d > 0) but stays within 5%


def test_precision_is_checked(random_raft):
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16"):
        FlowEstimator("raft", weights=random_raft, precision="int8", device="cpu")
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        FlowEstimator("raft", weights=random_raft, precision="fp16", device="cpu")
