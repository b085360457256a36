"""`mcl transcode`: short-GOP copies keep every frame, respect size and GOP, resume, skip bad files."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from mcl_video.cli import main as mcl
from mcl_video.data import read_frames, read_video_info
from mcl_video.data.transcode import TranscodeSettings, output_size, transcode
from mcl_video.data.writer import write_video


def write_long_gop(path, frames=40, hw=(96, 128), seed=0):
    """mpeg4 AVI with a single keyframe: a textured background panning under a moving square."""
    rng = np.random.default_rng(seed)
    h, w = hw
    bg = (rng.random((h // 4 + 30, w // 4 + 30, 3)) * 255).astype(np.uint8).repeat(4, 0).repeat(4, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    video = []
    for t in range(frames):
        img = bg[t : t + h, 2 * t : 2 * t + w].copy()
        img[10 + t : 30 + t, 5 + 2 * t : 25 + 2 * t] = (240, 20, 20)
        video.append(img)
    return write_video(path, video, codec="mpeg4", options={"qscale": "2"}, gop=1000)


def keyframes(path):
    """Frame positions (presentation order) of the keyframes of the first video stream."""
    with av.open(str(path)) as c:
        packets = sorted((p.pts, p.is_keyframe) for p in c.demux(c.streams.video[0]) if p.size)
    return [i for i, (_, key) in enumerate(packets) if key]


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    root = tmp_path_factory.mktemp("src")
    write_long_gop(root / "cls" / "a.avi")
    write_long_gop(root / "b.avi", frames=23, hw=(50, 70), seed=1)  # smaller than --short-side: kept
    return root


def test_output_size():
    assert output_size(1080, 1920, 256) == (256, 454)
    assert output_size(1920, 1080, 256) == (454, 256)
    assert output_size(240, 320, 256) == (240, 320)  # never upscaled
    assert output_size(255, 341, None) == (254, 340)  # even sides for yuv420p
    assert output_size(96, 128, 64) == (64, 84)  # 85.3 -> 85 -> even
    with pytest.raises(ValueError, match="gop"):
        TranscodeSettings(gop=0)


def test_copies_keep_every_frame_at_the_short_side_and_gop(src, tmp_path):
    assert keyframes(src / "cls" / "a.avi") == [0]  # the source: one keyframe for 40 frames
    summary = transcode(src, tmp_path / "out", TranscodeSettings(short_side=64, gop=8), progress=False)
    assert summary.ok and (summary.total, summary.written, summary.frames) == (2, 2, 63)
    a, b = tmp_path / "out" / "cls" / "a.mp4", tmp_path / "out" / "b.mp4"
    info = read_video_info(a)
    assert (info.num_frames, info.height, info.width) == (40, 64, 84) and info.fps == pytest.approx(25)
    assert keyframes(a) == [0, 8, 16, 24, 32]
    info = read_video_info(b)
    assert (info.num_frames, info.height, info.width) == (23, 50, 70)
    assert keyframes(b) == [0, 8, 16]
    # the same pictures: each copied frame is the area-resized source frame up to the encoding loss (luma)
    def luma(frames):
        return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]).astype(np.float32)

    copy = luma(read_frames(a))
    source = read_frames(src / "cls" / "a.avi")
    ref = luma([cv2.resize(f, (84, 64), interpolation=cv2.INTER_AREA) for f in source])
    assert 20 * np.log10(255 / np.sqrt(np.mean((copy - ref) ** 2))) > 27  # PSNR in dB
    shifted = min(np.abs(copy[1:] - ref[:-1]).mean(), np.abs(copy[:-1] - ref[1:]).mean())
    assert shifted > 3 * np.abs(copy - ref).mean()  # no frame dropped or repeated
    assert not [p for p in (tmp_path / "out").rglob(".*")]  # no temporary files left


def test_rerun_skips_finished_copies_and_bad_inputs_are_reported(src, tmp_path):
    root = tmp_path / "src"
    write_long_gop(root / "good.avi", frames=20)
    (root / "bad.mp4").write_bytes(b"not a video at all" * 100)
    data = (src / "cls" / "a.avi").read_bytes()
    (root / "cut.avi").write_bytes(data[: len(data) // 2])  # truncated
    out = tmp_path / "out"
    out.mkdir()
    (out / ".good.mp4.tmp-999").write_bytes(b"half a copy left by a killed run")
    settings = TranscodeSettings(short_side=64, gop=8)
    first = transcode(root, out, settings, progress=False)
    assert (first.written, first.skipped) == (1, 0)
    assert sorted(first.failed) == [str(root / "bad.mp4"), str(root / "cut.avi")]
    assert all(str(root) in why for why in first.failed.values())
    assert sorted(p.name for p in out.rglob("*")) == ["good.mp4"]  # the stale temporary file is gone
    stamp = (out / "good.mp4").stat().st_mtime_ns
    second = transcode(root, out, settings, workers=2, progress=False)  # bad files again fail, good skipped
    assert (second.written, second.skipped, len(second.failed)) == (0, 1, 2)
    assert (out / "good.mp4").stat().st_mtime_ns == stamp


def test_cli(src, tmp_path, capsys):
    assert mcl(["transcode", str(src), str(tmp_path / "o"), "--short-side", "64", "--gop", "4",
                "--no-progress"]) == 0
    assert "2 transcoded" in capsys.readouterr().out
    assert keyframes(tmp_path / "o" / "b.mp4") == [0, 4, 8, 12, 16, 20]
    assert mcl(["transcode", str(src), str(tmp_path / "o"), "--no-progress"]) == 0
    assert "2 already done" in capsys.readouterr().out
    assert mcl(["transcode", str(src), str(src / "copies"), "--no-progress"]) == 2
    assert "inside the source folder" in capsys.readouterr().err
    assert mcl(["transcode", str(tmp_path / "nothing"), str(tmp_path / "o2")]) == 2
