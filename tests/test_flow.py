"""Optical-flow backends: known translations, clipping, shapes, streaming, RAFT loading, real GT."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from mcl_video.motion.flow import (
    FLOW_BACKENDS,
    FLOW_BOUND,
    FlowEstimator,
    compute_flow,
    endpoint_error,
    read_flo,
)


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random RGB texture (upsampled noise): H x W x 3 uint8, trackable at sub-pixel level."""
    rng = np.random.default_rng(seed)
    small = (rng.random((h // 2, w // 2, 3)) * 255).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def translated_pair(h: int, w: int, du: float, dv: float) -> np.ndarray:
    """2 x H x W x 3: a texture and the same texture moved by (du, dv) px (so flow = (du, dv))."""
    base = textured(h, w)
    shift = np.float32([[1, 0, du], [0, 1, dv]])
    moved = cv2.warpAffine(base, shift, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return np.stack([base, moved])


def interior(x: np.ndarray, border: int = 12) -> np.ndarray:
    return x[..., border:-border, border:-border]


@pytest.mark.parametrize(
    ("backend", "options", "size", "tol"),
    [
        ("dis", {"preset": "medium"}, (96, 128), 0.12),
        ("dis", {}, (96, 128), 0.4),  # the default preset, "fast"
        ("dis", {"preset": "ultrafast"}, (96, 128), 0.4),
        ("farneback", {}, (96, 128), 0.05),
        ("tvl1", {}, (64, 80), 0.1),
    ],
)
@pytest.mark.parametrize(("du", "dv"), [(3.0, -2.0), (2.5, -1.25)])
def test_recovers_translation(backend, options, size, tol, du, dv):
    frames = translated_pair(*size, du, dv)
    u, v = compute_flow(frames, backend, **options)
    assert u.shape == v.shape == (1, *size) and u.dtype == v.dtype == np.float32
    err_u, err_v = np.abs(interior(u) - du).mean(), np.abs(interior(v) - dv).mean()
    assert err_u < tol and err_v < tol, (backend, options, err_u, err_v)


def test_integer_shift_by_roll_farneback_exact_median():
    base = textured(96, 128, seed=3)
    frames = np.stack([base, np.roll(base, shift=(2, 4), axis=(0, 1))])  # content moves +4 x, +2 y
    u, v = compute_flow(frames, "farneback")
    assert np.median(interior(u)) == pytest.approx(4.0, abs=0.02)
    assert np.median(interior(v)) == pytest.approx(2.0, abs=0.02)


def test_clipped_to_bound():
    frames = translated_pair(96, 128, 3.0, -2.0)
    u, v = compute_flow(frames, "farneback", bound=1.0)
    assert u.max() <= 1.0 and v.min() >= -1.0
    assert np.all(interior(u) == np.float32(1.0)) and np.all(interior(v) == np.float32(-1.0))
    estimator = FlowEstimator("dis")
    big = np.stack([np.full((4, 5), 50.0), np.full((4, 5), -35.0)], axis=-1)
    cu, cv = estimator._clip(big)
    assert FLOW_BOUND == 20.0 and np.all(cu == 20.0) and np.all(cv == -20.0) and cu.dtype == np.float32


def test_shapes_stream_and_pair_agree():
    frames = np.stack([textured(48, 64, seed=s) for s in range(4)])
    u, v = compute_flow(frames, "dis", preset="ultrafast")
    assert u.shape == v.shape == (3, 48, 64) and u.dtype == np.float32
    u2, v2 = compute_flow(iter(list(frames)), "dis", preset="ultrafast")  # an iterable of frames
    np.testing.assert_array_equal(u, u2)
    estimator = FlowEstimator("dis", preset="ultrafast")
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    pu, pv = estimator.pair(gray[1], gray[2])
    np.testing.assert_array_equal(pu, u[1])
    np.testing.assert_array_equal(pv, v[1])
    streamed = list(estimator.stream(f for f in frames))
    assert len(streamed) == 3 and np.array_equal(streamed[2][1], v[2])
    torch_frames = torch.from_numpy(frames)  # read_clip returns a torch tensor
    np.testing.assert_array_equal(compute_flow(torch_frames, "dis", preset="ultrafast")[0], u)


def test_dis_default_preset_is_fast():
    frames = translated_pair(48, 64, 1.5, 0.5)
    default = compute_flow(frames, "dis")[0]
    np.testing.assert_array_equal(default, compute_flow(frames, "dis", preset="fast")[0])
    assert not np.array_equal(default, compute_flow(frames, "dis", preset="medium")[0])


def test_fewer_than_two_frames_give_empty_flow():
    u, v = compute_flow(np.zeros((1, 8, 10, 3), np.uint8), "dis")
    assert u.shape == v.shape == (0, 8, 10)


def test_threads_option_is_scoped():
    before = cv2.getNumThreads()
    compute_flow(translated_pair(48, 64, 1.0, 0.0), "farneback", threads=1)
    assert cv2.getNumThreads() == before


def test_bad_arguments_name_the_fix():
    frames = translated_pair(32, 32, 1.0, 0.0)
    with pytest.raises(ValueError, match="valid: tvl1, dis, farneback, raft"):
        compute_flow(frames, "lucas-kanade")
    assert FLOW_BACKENDS == ("tvl1", "dis", "farneback", "raft")
    with pytest.raises(ValueError, match="ultrafast, fast, medium"):
        compute_flow(frames, "dis", preset="slow")
    with pytest.raises(ValueError, match="unknown option 'bogus'.*InnerIterations"):
        FlowEstimator("tvl1", bogus=1)
    with pytest.raises(ValueError, match="N x H x W x 3"):
        compute_flow(frames[..., 0], "dis")
    with pytest.raises(TypeError, match="uint8"):
        compute_flow(frames.astype(np.float32), "dis")


def test_tvl1_options_reach_opencv():
    estimator = FlowEstimator("tvl1", lambda_=0.3, warpings_number=3)
    assert estimator._impl._algo.getLambda() == pytest.approx(0.3)
    assert estimator._impl._algo.getWarpingsNumber() == 3


def test_raft_refuses_without_weights(tmp_path):
    with pytest.raises(ValueError, match="weights=PATH"):
        FlowEstimator("raft")
    with pytest.raises(FileNotFoundError, match="not found"):
        FlowEstimator("raft", weights=tmp_path / "missing.pth")


def test_raft_random_weights_shapes_batching_and_key_check(tmp_path):
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    state = raft_small(weights=None).state_dict()
    good = tmp_path / "raft_small.pth"
    torch.save(state, good)
    frames = np.stack([textured(64, 64, seed=s) for s in range(3)])
    estimator = FlowEstimator("raft", weights=good, iters=1, batch_size=2, device="cpu", threads=2)
    flows = list(estimator.stream(frames))  # one batch of 2 pairs, padded 64 -> 128
    assert len(flows) == 2
    for u, v in flows:
        assert u.shape == v.shape == (64, 64) and u.dtype == np.float32
        assert np.isfinite(u).all() and np.isfinite(v).all() and np.abs(u).max() <= FLOW_BOUND
    pu, pv = estimator.pair(frames[1], frames[2])  # a batch of one gives the same flow
    np.testing.assert_allclose(pu, flows[1][0], atol=1e-4)

    renamed = {("x." + k if i == 0 else k): t for i, (k, t) in enumerate(state.items())}
    bad = tmp_path / "renamed.pth"
    torch.save(renamed, bad)
    with pytest.raises(ValueError, match=r"1 missing.*1 unexpected.*weights=PATH"):
        FlowEstimator("raft", weights=bad, model="raft_small")
    with pytest.raises(ValueError, match="raft_small: .*raft_large: "):
        FlowEstimator("raft", weights=bad)


def test_read_flo_and_endpoint_error(tmp_path):
    flow = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    path = tmp_path / "x.flo"
    header = np.float32(202021.25).tobytes() + np.int32(3).tobytes() + np.int32(2).tobytes()
    path.write_bytes(header + flow.tobytes())
    np.testing.assert_array_equal(read_flo(path), flow)
    path.write_bytes(header + flow.tobytes()[:-4])
    with pytest.raises(ValueError, match="truncated"):
        read_flo(path)
    path.write_bytes(b"HEIP" + b"\0" * 20)  # "PIEH" is the real magic
    with pytest.raises(ValueError, match="magic"):
        read_flo(path)
    gt = np.zeros((2, 3, 2))
    off = gt + np.array([3.0, 4.0])
    assert endpoint_error(off, gt) == pytest.approx(5.0)
    mask = np.zeros((2, 3), bool)
    mask[0, 0] = True
    off[0, 0] = (6.0, 8.0)
    assert endpoint_error(off, gt, mask) == pytest.approx(10.0)


@pytest.mark.shared
def test_dis_epe_on_flyingchairs(shared):
    root = shared("data", "flow-flyingchairs")
    img0 = cv2.cvtColor(cv2.imread(str(root / "0000001-img0.ppm")), cv2.COLOR_BGR2RGB)
    img1 = cv2.cvtColor(cv2.imread(str(root / "0000001-img1.ppm")), cv2.COLOR_BGR2RGB)
    gt = read_flo(root / "0000001-gt.flo")
    assert gt.shape == (*img0.shape[:2], 2)
    u, v = compute_flow(np.stack([img0, img1]), "dis", bound=1e6)
    epe = endpoint_error(np.stack([u[0], v[0]], axis=-1), gt)
    zero_epe = endpoint_error(np.zeros_like(gt), gt)
    assert epe < 3.0 and epe < 0.6 * zero_epe, (epe, zero_epe)
