"""The motion cache: exactness of stored maps, round trip, atomic entries, alignment-target fidelity."""

from __future__ import annotations

import json
import zlib

import cv2
import numpy as np
import pytest

from mcl_video.data import read_frames
from mcl_video.errors import DataError
from mcl_video.motion import alignment_target, clip_score, compute_flow, window_map
from mcl_video.motion.cache import (
    FIELD_LEVELS,
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
from mcl_video.motion.fields import inflate_fields, pack_fields
from mcl_video.motion.maps import block_means, boundary_derivatives, boundary_magnitude, segment_sums
from mcl_video.motion.prepare import compute_video_motion

SETTINGS = CacheSettings(clip_len=4, stride=2, frame_window=8, border=2, resize_short=None, field_short=24)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, write_moving_square):
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
    assert vm.frame_maps.dtype == np.float32  # stored as float16: rounded to 11 significant bits
    np.testing.assert_array_equal(vm.frame_maps, arrays["frame_maps"].astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(vm.frame_maps, arrays["frame_maps"], rtol=2**-11, atol=1e-7)
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


@pytest.mark.parametrize("levels", [FIELD_LEVELS, 127, 7])
def test_quantise_error_bound(levels):
    x = np.random.default_rng(0).normal(size=(4, 10, 12)) * [[[1.0]], [[5.0]], [[0.0]], [[1e-3]]]
    q, scales = quantise(x, levels)
    assert q.dtype == np.int8 and scales[2] == 0 and np.abs(q).max() == levels
    np.testing.assert_allclose(scales, np.abs(x).reshape(4, -1).max(axis=1) / levels, rtol=1e-6)
    err = np.abs(q * scales[:, None, None] - x).reshape(4, -1).max(axis=1)
    assert np.all(err <= scales / 2 + 1e-7 * np.abs(x).reshape(4, -1).max(axis=1))


def test_packed_fields_round_trip_exactly_and_inflate_only_what_is_asked(tiny, tmp_path):
    _, arrays, info, _, _ = tiny
    fields = arrays["fields"]
    assert fields.dtype == np.int8 and np.abs(fields).max() <= FIELD_LEVELS == 31
    blob, offsets = pack_fields(fields)
    assert offsets.dtype == np.uint32 and offsets.shape == (fields.shape[1] + 1,) and offsets[-1] == blob.size
    assert blob.size < fields.size  # deflate pays off on 6-bit values
    idx = np.array([5, 0, 5, 38])
    got = inflate_fields(blob, offsets, idx, (fields.shape[0], *fields.shape[2:]), "x")
    np.testing.assert_array_equal(got, fields[:, idx])
    init_cache(tmp_path, SETTINGS)
    path = write_entry(tmp_path, "a", arrays, info)
    with np.load(path) as z:
        assert "fields" not in z.files and json.loads(str(z["info"]))["field_hw"] == list(fields.shape[2:])
    vm = MotionCache(tmp_path).get("a")
    np.testing.assert_array_equal(vm.fields, fields)
    np.testing.assert_array_equal(vm.scales, arrays["scales"])
    # a block that inflates to the wrong size (10 bytes) names the entry when it is read
    short = np.frombuffer(zlib.compress(bytes(10)), np.uint8)
    offs = (offsets.astype(np.int64) - int(offsets[1]) + short.size).clip(0).astype(np.uint32)
    with np.load(path) as z:
        bad = {k: z[k] for k in z.files if k != "info"}
    bad["fields_z"], bad["fields_offsets"] = np.concatenate([short, blob[offsets[1]:]]), offs
    broken = VideoMotion(bad, json.loads(str(np.load(path)["info"])), source=path)
    np.testing.assert_array_equal(broken.field_frames([1, 2]), fields[:, [1, 2]])
    with pytest.raises(DataError, match="a.npz.*flow frame 0"):
        broken.field_frames([0])


def test_six_bit_fields_keep_the_target_of_the_unrounded_fields(tiny):
    """Synthetic clip: targets read from the stored 6-bit fields vs the same area-averaged derivatives
    unrounded (float), and vs the exact full-resolution target; several crops and clip positions."""
    _, arrays, info, u, v = tiny
    vm = VideoMotion(arrays, info)
    fh, fw = vm.field_hw
    full = boundary_derivatives(u, v)  # 4 x F x H x W
    small = np.stack([[cv2.resize(d, (fw, fh), interpolation=cv2.INTER_AREA) for d in p] for p in full])
    rng = np.random.default_rng(1)
    for _ in range(6):
        idx = int(rng.integers(0, 39 - 16)) + 2 * np.arange(8)
        ch, cw = int(rng.integers(24, 49)), int(rng.integers(32, 65))
        top, left = int(rng.integers(0, 48 - ch + 1)), int(rng.integers(0, 64 - cw + 1))
        cached = vm.alignment_target(idx, (top, left, ch, cw), (2, 4, 4))
        box = (top * fh / 48, left * fw / 64, ch * fh / 48, cw * fw / 64)
        unrounded = block_means(boundary_magnitude(segment_sums(small[:, idx], 2)), (4, 4), box)
        exact = alignment_target(u[idx, top:top + ch, left:left + cw], v[idx, top:top + ch, left:left + cw],
                                 (2, 4, 4))
        assert np.corrcoef(unrounded.ravel(), cached.ravel())[0, 1] > 0.999
        assert np.abs(cached - unrounded).max() < 0.05 * unrounded.max()
        assert np.corrcoef(exact.ravel(), cached.ravel())[0, 1] > 0.95


@pytest.mark.shared
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


@pytest.mark.parametrize("old, why", [(1, "fixed 8 px border"), (2, "8-bit fields uncompressed")])
def test_caches_of_older_versions_are_refused_with_the_rebuild_command(tiny, tmp_path, old, why):
    _, arrays, info, _, _ = tiny
    init_cache(tmp_path, SETTINGS)
    write_entry(tmp_path, "a", arrays, info)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert VERSION == 3 and meta["version"] == 3 and "224" in meta["border_rule"]
    (tmp_path / "meta.json").write_text(json.dumps(dict(meta, version=old)))
    for call in (MotionCache, lambda p: init_cache(p, SETTINGS)):
        with pytest.raises(DataError) as err:
            call(tmp_path)
        message = str(err.value)
        assert "\n" not in message and f"v{old} " in message and why in message and "reads v3" in message
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
