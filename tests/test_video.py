"""mcl_video.data.video: frame counts, exact random access on every container, resizing, errors.

Synthetic videos encode their frame index in the grey level (level = 8 + 5 * i), so a decoded frame's
mean says which frame it is, whatever the codec's small losses.
"""

from __future__ import annotations

import csv
import shutil

import av
import numpy as np
import pytest

from mcl_video.data import (
    VIDEO_EXTENSIONS,
    VideoInfo,
    VideoReadError,
    find_videos,
    iter_frames,
    read_clip,
    read_frames,
    read_video_info,
)
from mcl_video.data import video as video_module
from mcl_video.data.writer import write_mp4, write_video

N_FRAMES = 48
H, W = 48, 64

# (file name, codec, pixel format, encoder options): one per container/codec family the reader supports
FORMATS = [
    ("h264_bframes.mp4", "libx264", "yuv420p", {"g": "8", "bf": "2", "crf": "10"}),
    ("h264_bframes.avi", "libx264", "yuv420p", {"g": "8", "bf": "2", "crf": "10"}),
    ("mpeg4_bframes.avi", "mpeg4", "yuv420p", {"g": "8", "bf": "2", "b": "4M"}),  # open-GOP keyframes in AVI
    ("mjpeg.avi", "mjpeg", "yuvj420p", {}),
    ("vp8.webm", "libvpx", "yuv420p", {"g": "8", "crf": "4", "b": "2M"}),
    ("vp9.webm", "libvpx-vp9", "yuv420p", {"g": "8", "deadline": "realtime", "cpu-used": "8"}),
    ("anim.gif", "gif", "rgb8", {}),
]


def level(i: int) -> int:
    return 8 + 5 * i


def grey_frames(n=N_FRAMES, h=H, w=W) -> np.ndarray:
    """Frame i is a flat grey image of level(i), with a white square marking the top-left corner."""
    frames = np.repeat(np.array([level(i) for i in range(n)], np.uint8), h * w * 3).reshape(n, h, w, 3)
    frames[:, :8, :8] = 255
    return frames


def frame_ids(frames: np.ndarray) -> list[int]:
    """Recover frame indices from the grey level of the bottom-right area."""
    grey = frames[:, -16:, -16:].reshape(len(frames), -1).astype(float).mean(1)
    return [int(round((g - 8) / 5)) for g in grey]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    frames = grey_frames()
    return {name: write_video(root / name, frames, 25, codec, fmt, opts)
            for name, codec, fmt, opts in FORMATS}


@pytest.mark.parametrize("name", [f[0] for f in FORMATS])
def test_info_and_sequential_frames(videos, name):
    info = read_video_info(videos[name])
    assert info == VideoInfo(num_frames=N_FRAMES, fps=25.0, height=H, width=W)
    frames = read_frames(videos[name])
    assert frames.shape == (N_FRAMES, H, W, 3) and frames.dtype == np.uint8
    assert frame_ids(frames) == list(range(N_FRAMES))
    assert frames[0, 2, 2].min() > 230  # RGB order and the marker survive
    assert sum(1 for _ in iter_frames(videos[name])) == N_FRAMES


@pytest.mark.parametrize("name", [f[0] for f in FORMATS])
def test_read_clip_exact_frames_any_order(videos, name):
    indices = [40, 3, 3, 17, 47, 0, 25, 8, 9, 100, 31]  # unsorted, repeated, past the end
    clip = read_clip(videos[name], indices)
    assert clip.shape == (len(indices), H, W, 3) and str(clip.dtype) == "torch.uint8"
    assert frame_ids(clip.numpy()) == [min(i, N_FRAMES - 1) for i in indices]
    # the seeking path returns the same pixels as the sequential decode
    full = read_frames(videos[name])
    np.testing.assert_array_equal(clip.numpy(), full[np.minimum(indices, N_FRAMES - 1)])


def test_clip_read_decodes_about_one_gop_not_the_video(videos):
    # keyframes every 8 frames: a 16-frame stride-2 clip from frame 20 needs frames 16..50 at most
    stats = video_module.DECODE_STATS
    for name in ("h264_bframes.mp4", "vp9.webm", "h264_bframes.avi"):
        read_video_info(videos[name])
        before = stats["clip_frames_decoded"]
        clip = read_clip(videos[name], list(range(20, 48, 2)))
        decoded = stats["clip_frames_decoded"] - before
        assert frame_ids(clip.numpy()) == list(range(20, 48, 2))
        assert decoded <= 48 - 16, f"{name}: decoded {decoded} frames, expected a seek to frame 16"


def test_counting_mode_seeks_only_to_closed_gop_keyframes():
    # (pts, dts, keyframe) in decode order. MPEG-4 ASP with B-frames in AVI: the keyframe at decode
    # position 10 has pts 13, and B-frames with pts 11, 12 follow it, so it is displayed at position 12.
    open_gop = [(1, 0, 1), (4, 1, 0), (2, 2, 0), (3, 3, 0), (7, 4, 0), (5, 5, 0), (6, 6, 0), (10, 7, 0),
                (8, 8, 0), (9, 9, 0), (13, 10, 1), (11, 11, 0), (12, 12, 0)]
    assert video_module._counting_seek_points(open_gop) == {0: 0}
    closed_gop = [(1, 0, 1), (3, 1, 0), (2, 2, 0), (4, 3, 0), (5, 4, 1), (7, 5, 0), (6, 6, 0)]
    assert video_module._counting_seek_points(closed_gop) == {0: 0, 4: 4}
    no_pts = [(None, 0, 1), (None, 1, 0), (None, 2, 1)]
    assert video_module._counting_seek_points(no_pts) == {0: 0, 2: 2}


def test_sequential_fallback_when_seeking_misses(videos, monkeypatch):
    # frames the seeking path does not deliver are read by one sequential pass
    monkeypatch.setattr(video_module, "_decode_wanted", lambda *args: {})
    indices = [30, 2, 2, 47, 60]
    clip = read_clip(videos["vp9.webm"], indices)
    assert frame_ids(clip.numpy()) == [30, 2, 2, 47, 47]
    np.testing.assert_array_equal(clip.numpy(), read_frames(videos["vp9.webm"])[[30, 2, 2, 47, 47]])


def test_resize_short_side_keeps_aspect(videos):
    clip = read_clip(videos["h264_bframes.mp4"], [5, 6], resize_short=24)
    assert tuple(clip.shape) == (2, 24, 32, 3)
    assert frame_ids(clip.numpy()) == [5, 6]
    frames = read_frames(videos["vp8.webm"], resize_short=36)
    assert frames.shape == (N_FRAMES, 36, 48, 3)
    assert video_module.resized_hw(256, 340, 128) == (128, 170)  # 340 * 128 / 256 = 170
    assert video_module.resized_hw(340, 256, 128) == (170, 128)
    with pytest.raises(ValueError, match="resize_short"):
        video_module.resized_hw(48, 64, 0)


def test_bad_indices_raise(videos):
    with pytest.raises(ValueError, match="negative"):
        read_clip(videos["mjpeg.avi"], [3, -1])
    with pytest.raises(ValueError, match="empty"):
        read_clip(videos["mjpeg.avi"], [])


def truncated_copy(src, dst, fraction=0.6):
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


@pytest.mark.parametrize("name", ["h264_bframes.avi", "mjpeg.avi", "vp9.webm", "anim.gif"])
def test_truncated_file_raises_once_with_reason(videos, tmp_path, name):
    bad = truncated_copy(videos[name], tmp_path / f"cut_{name}")
    for call in (read_video_info, read_frames, lambda p: read_clip(p, [0, 1])):
        with pytest.raises(VideoReadError, match="truncated") as err:
            call(bad)
        assert str(bad) in str(err.value)


def test_text_file_and_missing_file_raise(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is a text file, not a video\n" * 20)
    for call in (read_video_info, read_frames, lambda p: read_clip(p, [0])):
        with pytest.raises(VideoReadError, match="not a video") as err:
            call(fake)
        assert str(fake) in str(err.value)
    with pytest.raises(VideoReadError, match="no such file"):
        read_video_info(tmp_path / "absent.avi")


def test_writer_picks_the_container_by_extension_and_is_deterministic(tmp_path):
    frames = grey_frames(n=6)
    for name, codec in (("a.mkv", "h264"), ("a.avi", "mpeg4"), ("a.webm", "vp9")):
        path = write_video(tmp_path / name, frames)
        with av.open(str(path)) as container:
            assert container.streams.video[0].codec_context.name == codec, name
        assert read_video_info(path) == VideoInfo(num_frames=6, fps=25.0, height=H, width=W), name
    # one encoder thread: the same frames give the same bytes (write_mp4 to a name without .mp4 too)
    write_mp4(tmp_path / "x.tmp", frames)
    write_mp4(tmp_path / "y.tmp", frames)
    assert (tmp_path / "x.tmp").read_bytes() == (tmp_path / "y.tmp").read_bytes()
    assert read_video_info(tmp_path / "x.tmp").num_frames == 6
    with pytest.raises(ValueError, match="no default codec"):
        write_video(tmp_path / "a.xyz", frames)


def test_find_videos_recursive_sorted(tmp_path, videos):
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / "a").mkdir()
    for rel in ("b/deep/x.MP4", "a/z.avi", "a/y.webm", "b/c.gif"):
        shutil.copy(videos["mjpeg.avi"], tmp_path / rel)
    (tmp_path / "a" / "readme.txt").write_text("x")
    found = [p.relative_to(tmp_path).as_posix() for p in find_videos(tmp_path)]
    assert found == ["a/y.webm", "a/z.avi", "b/c.gif", "b/deep/x.MP4"]
    assert ".webm" in VIDEO_EXTENSIONS and ".gif" in VIDEO_EXTENSIONS
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_videos(tmp_path / "missing")


# ---- real clips from ../shared/data/clips ---------------------------------------------------------


@pytest.mark.shared
def test_real_clip_frame_counts_match_clips_csv(shared):
    clips = shared("data", "clips")
    with open(clips / "clips.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8
    for row in rows:
        info = read_video_info(clips / row["file"])
        assert (info.num_frames, info.width, info.height) == (
            int(row["frames"]), int(row["width"]), int(row["height"])), row["file"]
        assert info.fps == pytest.approx(float(row["fps"]), abs=0.01), row["file"]


@pytest.mark.parametrize(
    "name", ["v_BaseballPitch_g01_c01.avi", "v_ApplyEyeMakeup_g01_c01.avi", "mmaction2_demo.mp4",
             "v_CricketShot_g04_c01_flow.gif"])
@pytest.mark.shared
def test_real_clip_random_access_equals_sequential(shared, name):
    path = shared("data", "clips", name)
    full = read_frames(path, resize_short=64)
    rng = np.random.default_rng(0)
    for start in rng.integers(0, len(full) - 31, size=3):
        indices = list(range(int(start), int(start) + 32, 2))
        clip = read_clip(path, indices, resize_short=64).numpy()
        np.testing.assert_array_equal(clip, full[indices])
