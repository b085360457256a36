"""The optional torchcodec reader gives PyAV's frames on the shared clips (skipped without torchcodec)."""

from __future__ import annotations

import numpy as np
import pytest

from mcl_video.data import read_clip, read_video_info, torchcodec_reader

FILES = ["mmaction2_demo.mp4", "mmaction2_test.mp4", "v_CricketShot_g04_c01_rgb.gif",
         "v_ApplyEyeMakeup_g01_c01.avi", "v_BaseballPitch_g01_c01.avi"]


def test_unavailable_reason_is_one_line_or_none():
    reason = torchcodec_reader.unavailable_reason()
    assert reason is None or ("torchcodec" in reason and "\n" not in reason)


@pytest.mark.shared
@pytest.mark.parametrize("name", FILES)
def test_same_frames_as_pyav(shared, name):
    if not torchcodec_reader.available():
        pytest.skip(f"optional backend: {torchcodec_reader.unavailable_reason()}")
    path = shared("data", "clips", name)
    n = read_video_info(path).num_frames
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, n + 3, 16) for _ in range(3)] + [np.arange(0, n + 4, 5)]  # past the end too
    for idx in clips:
        want = read_clip(path, idx).numpy()
        got = torchcodec_reader.read_clip_torchcodec(path, idx).numpy()
        assert got.shape == want.shape and got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)
    resized = torchcodec_reader.read_clip_torchcodec(path, [0, 1], resize_short=64).numpy()
    pyav = read_clip(path, [0, 1], resize_short=64).numpy()
    assert resized.shape == pyav.shape
    assert np.abs(resized.astype(int) - pyav.astype(int)).mean() < 6  # two resize filters, same frames
