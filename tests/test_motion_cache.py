"""The motion cache: exactness of stored maps, round trip, atomic entries, alignment-target fidelity."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from mcl_video.data import read_frames
from mcl_video.errors import DataError
from mcl_video.motion import alignment_target, clip_score, compute_flow, window_map
from mcl_video.motion.cache import (
    VERSION,
    CacheSettings,
    MotionCache,
    VideoMotion,
    cache_stats,
    init_cache,
    num_starts,
    quantise,
    write_entry,
)
from mcl_video.motion.prepare import compute_video_motion


def write_moving_square(path, frames=40, hw=(48, 64), seed=0, speed=(1, 2)):
    """A textured background panning slowly with a square moving over it; mpeg4 in the given container."""
    rng = np.random.default_rng(seed)
    h, w = hw
    bg = (rng.random((h + 80, w + 80, 3)) * 255).astype(np.uint8)
    bg = np.repeat(np.repeat(bg[::4, ::4], 4, 0), 4, 1)[: h + 80, : w + 80]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"qscale": "2"}
        for t in range(frames):
            img = bg[t // 2 : t // 2 + h, 10 : 10 + w].copy()
            y, x = (5 + speed[0] * t) % (h - 14), (5 + speed[1] * t) % (w - 14)
            img[y : y + 14, x : x + 14] = (250, 30, 30)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


SETTINGS = CacheSettings(clip_len=4, stride=2, frame_window=8, border=2, resize_short=None, field_short=24)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = write_moving_square(tmp_path_factory.mktemp("vid") / "a.avi")
    arrays, info = compute_video_motion(path, SETTINGS)
    u, v = compute_flow(read_frames(path), "dis")
    return path, arrays, info, u, v


def test_stored_maps_are_exact(tiny):
    _, arrays, info, u, v = tiny
    n = info["num_frames"]
    assert n == 40 and info["frame_hw"] == [48, 64]
    assert arrays["frame_maps"].shape == (n, 7, 7) and arrays["frame_maps"].dtype == np.float32
    for t in (0, 3, 20, 38, 39):  # windows [t-4, t+4) truncated to the flow frames [0, 39)
        lo, hi = max(0, t - 4), min(n - 1, t + 4)
        exact = window_map(u[lo:hi], v[lo:hi], (7, 7), border=2)
        np.testing.assert_allclose(arrays["frame_maps"][t], exact, rtol=1e-4, atol=1e-5 * exact.max())
    assert arrays["clip_scores"].shape == (num_starts(n, 8),) == (33,)
    for s in (0, 17, 32):  # the last start's window [32, 40) is clamped to the 39 flow frames
        exact = clip_score(u[s : s + 8], v[s : s + 8], border=2)
        assert arrays["clip_scores"][s] == pytest.approx(exact, rel=1e-4)


def test_round_trip_and_alignment_target(tiny, tmp_path):
    _, arrays, info, u, v = tiny
    init_cache(tmp_path, SETTINGS)
    write_entry(tmp_path, "cls/a", arrays, info)
    cache = MotionCache(tmp_path)
    assert cache.video_ids() == ["cls/a"] and "cls/a" in cache and "b" not in cache
    assert (cache.clip_len, cache.stride) == (4, 2)
    assert cache.meta["settings"]["flow_backend"] == "dis" and "numpy" in cache.meta["versions"]
    vm = cache.get("cls/a")
    assert isinstance(vm, VideoMotion) and vm.num_frames == 40 and vm.frame_hw == (48, 64)
    np.testing.assert_array_equal(vm.frame_maps, arrays["frame_maps"])
    np.testing.assert_array_equal(vm.clip_scores, arrays["clip_scores"])
    idx = 6 + 2 * np.arange(8)
    crop = (4, 8, 40, 48)
    exact = alignment_target(u[idx, 4:44, 8:56], v[idx, 4:44, 8:56], (2, 4, 4))
    approx = vm.alignment_target(idx, crop, (2, 4, 4))
    assert approx.shape == (2, 4, 4) and approx.dtype == np.float32
    assert np.corrcoef(exact.ravel(), approx.ravel())[0, 1] > 0.9
    # indices past the last flow frame are clamped to it
    np.testing.assert_array_equal(vm.alignment_target([38, 39, 50, 60], crop, (1, 2, 2)),
                                  vm.alignment_target([38, 38, 38, 38], crop, (1, 2, 2)))
    with pytest.raises(KeyError, match="mcl prepare"):
        cache.get("missing")


def test_partial_write_is_not_an_entry(tiny, tmp_path):
    _, arrays, info, _, _ = tiny
    init_cache(tmp_path, SETTINGS)
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / ".b.npz.tmp-123").write_bytes(b"half an entry")  # a killed writer's leftover
    write_entry(tmp_path, "a", arrays, info)
    assert MotionCache(tmp_path).video_ids() == ["a"]


def test_settings_mismatch_and_bad_format(tmp_path):
    init_cache(tmp_path, SETTINGS)
    with pytest.raises(ValueError, match="other settings"):
        init_cache(tmp_path, CacheSettings())
    meta = json.loads((tmp_path / "meta.json").read_text())
    (tmp_path / "meta.json").write_text(json.dumps(dict(meta, version=99)))
    with pytest.raises(DataError, match="rebuild"):
        MotionCache(tmp_path)
    with pytest.raises(FileNotFoundError, match="mcl prepare"):
        MotionCache(tmp_path / "nothing")


def test_quantise_error_bound():
    x = np.random.default_rng(0).normal(size=(4, 10, 12)) * [[[1.0]], [[5.0]], [[0.0]], [[1e-3]]]
    q, scales = quantise(x)
    assert q.dtype == np.int8 and scales[2] == 0
    err = np.abs(q * scales[:, None, None] - x).reshape(4, -1).max(axis=1)
    assert np.all(err <= scales / 2 + 1e-12)


def test_real_clip_target_correlation(shared, tmp_path):
    """A real 340x256 clip at the default settings: cached targets vs exact full-resolution ones."""
    path = shared("data", "clips", "mmaction2_part_0.mp4")
    settings = CacheSettings(resize_short=None)
    arrays, info = compute_video_motion(path, settings)
    vm = VideoMotion(arrays, info)
    u, v = compute_flow(read_frames(path), "dis")
    h, w = info["frame_hw"]
    rng = np.random.default_rng(0)
    corr = []
    for _ in range(3):
        ch, cw = int(rng.integers(h // 2, h)), int(rng.integers(w // 2, w))
        top, left = int(rng.integers(0, h - ch)), int(rng.integers(0, w - cw))
        idx = np.minimum(2 * np.arange(16), len(u) - 1)
        exact = alignment_target(u[idx, top : top + ch, left : left + cw],
                                 v[idx, top : top + ch, left : left + cw], (4, 7, 7))
        approx = vm.alignment_target(idx, (top, left, ch, cw), (4, 7, 7))
        corr.append(np.corrcoef(exact.ravel(), approx.ravel())[0, 1])
    assert min(corr) > 0.8, corr


def test_cache_built_with_the_old_fixed_border_is_refused(tiny, tmp_path):
    _, arrays, info, _, _ = tiny
    init_cache(tmp_path, SETTINGS)
    write_entry(tmp_path, "a", arrays, info)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert VERSION == 2 and meta["version"] == 2 and "224" in meta["border_rule"]
    (tmp_path / "meta.json").write_text(json.dumps(dict(meta, version=1)))
    for call in (MotionCache, lambda p: init_cache(p, SETTINGS)):
        with pytest.raises(DataError) as err:
            call(tmp_path)
        message = str(err.value)
        assert "\n" not in message and "v1" in message
        assert f"mcl prepare VIDEO_ROOT --out {tmp_path}" in message


def test_auto_border_is_resolved_at_the_flow_resolution_and_recorded(tiny, tmp_path):
    path = tiny[0]  # 48 x 64 frames: round(8 * 48 / 224) = 2 px
    auto = CacheSettings(clip_len=4, stride=2, frame_window=8, resize_short=None, field_short=24)
    assert auto.border == "auto" and auto.to_json()["border"] == "auto"
    arrays, info = compute_video_motion(path, auto)
    assert info["border"] == 2
    np.testing.assert_array_equal(arrays["frame_maps"], tiny[1]["frame_maps"])  # == the explicit 2 px
    small = CacheSettings(clip_len=4, stride=2, resize_short=32, field_short=12)  # 32 x 43 flow: 1 px
    assert compute_video_motion(path, small)[1]["border"] == 1
    assert CacheSettings(border="8").border == 8
    init_cache(tmp_path, auto)
    write_entry(tmp_path, "a", arrays, info)
    assert cache_stats(MotionCache(tmp_path))["borders"] == [2]
    with pytest.raises(ValueError, match="border"):
        CacheSettings(border="wide")


def _corrupt_copies(tiny, root):
    """Entries ``good``, ``truncated`` (half a file), ``flipped`` (one data byte changed: zip CRC) and
    ``short`` (structurally wrong: clip scores one short)."""
    _, arrays, info, _, _ = tiny
    init_cache(root, SETTINGS)
    for vid in ("good", "truncated", "flipped"):
        write_entry(root, vid, arrays, info)
    write_entry(root, "short", dict(arrays, clip_scores=arrays["clip_scores"][:-1]), info)
    data = (root / "videos" / "truncated.npz").read_bytes()
    (root / "videos" / "truncated.npz").write_bytes(data[: len(data) // 2])
    raw = bytearray((root / "videos" / "flipped.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside the fields array
    (root / "videos" / "flipped.npz").write_bytes(bytes(raw))


def test_bad_entries_are_named_in_a_data_error(tiny, tmp_path):
    _corrupt_copies(tiny, tmp_path)
    cache = MotionCache(tmp_path)
    assert cache.get("good").num_frames == 40 and cache.check("good") is None
    for vid, why in (("truncated", "does not load"), ("flipped", "does not load"), ("short", "clip_scores")):
        with pytest.raises(DataError, match=why) as err:
            cache.get(vid)
        assert f"{vid}.npz" in str(err.value) and "mcl prepare" in str(err.value)
    assert sorted(cache.bad_entries()) == ["flipped", "short", "truncated"]
    assert cache.check("absent") == "missing"
