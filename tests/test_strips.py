"""Frame strips -> MP4: exact strip decoding, conversion through the one reader, the Weizmann copy."""

import csv

import cv2
import numpy as np
import pytest

from mcl_video.data import VideoReadError, read_frames, read_split, read_video_info
from mcl_video.data.strips import convert_strips, read_strip


def _frames(n, size=16, seed=0):
    rng = np.random.default_rng(seed)
    # a bright square moving right on a smooth colour gradient (compresses well, easy to compare)
    ramp = np.linspace(0.0, 1.0, size)
    lo, hi = rng.integers(40, 90, size=3), rng.integers(120, 200, size=3)
    base = lo + (hi - lo) * (ramp[:, None, None] + ramp[None, :, None]) / 2
    frames = np.repeat(base[None], n, axis=0).round().astype(np.uint8)
    for t in range(n):
        frames[t, 4:8, t : t + 4] = 255
    return frames


def _write_strip(path, frames):
    strip = frames.transpose(1, 0, 2, 3).reshape(frames.shape[1], -1, 3)  # H x (T*W) x 3, RGB
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), strip[..., ::-1])


def test_read_strip_is_exact_on_png(tmp_path):
    frames = _frames(7)
    _write_strip(tmp_path / "a.png", frames)
    out = read_strip(tmp_path / "a.png")
    assert out.shape == (7, 16, 16, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, frames)
    # non-square frames: width 8 -> twice as many frames, each the left or right half
    halves = read_strip(tmp_path / "a.png", frame_width=8)
    np.testing.assert_array_equal(halves[1], frames[0][:, 8:])


def test_read_strip_names_the_file_on_bad_input(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(VideoReadError, match="broken.jpg"):
        read_strip(bad)
    _write_strip(tmp_path / "odd.png", _frames(3))
    with pytest.raises(VideoReadError, match="odd.png.*multiple"):
        read_strip(tmp_path / "odd.png", frame_width=10)


def test_convert_strips_labels_resume_and_corrupt_files(tmp_path):
    src = tmp_path / "src"
    clips = {"0/a.png": _frames(9, seed=1), "0/b.png": _frames(11, seed=2), "1/c.png": _frames(10, seed=3)}
    for rel, frames in clips.items():
        _write_strip(src / rel, frames)
    (src / "1" / "d.jpg").write_bytes(b"truncated")  # reported and skipped
    with (src / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "action"])
        w.writerows([["0/a.png", "wave"], ["0/b.png", "wave"], ["1/c.png", "jump"]])
    out = tmp_path / "videos"
    report = convert_strips(src, out)
    assert len(report.written) == 3 and not report.present
    assert list(report.skipped) == [str(src / "1" / "d.jpg")]
    records = read_split("folder", out, video_root=out)
    by_name = {r.path: r for r in records}
    assert set(by_name) == {"jump/1_c.mp4", "wave/0_a.mp4", "wave/0_b.mp4"}
    assert by_name["jump/1_c.mp4"].label == 0 and by_name["wave/0_a.mp4"].label == 1  # sorted class names
    for rel, name in (("0/a.png", "wave/0_a.mp4"), ("1/c.png", "jump/1_c.mp4")):
        decoded = read_frames(out / name)
        assert decoded.shape == clips[rel].shape
        assert np.abs(decoded.astype(int) - clips[rel].astype(int)).mean() < 4  # H.264 crf 18
    # a rerun converts nothing; a leftover partial file is never indexed as a video
    (out / "wave" / ".0_z.mp4.partial").write_bytes(b"half")
    again = convert_strips(src, out)
    assert not again.written and len(again.present) == 3
    assert len(read_split("folder", out, video_root=out)) == 3


def test_convert_strips_grayscale(tmp_path):
    _write_strip(tmp_path / "src" / "k" / "a.png", _frames(6, seed=4))
    convert_strips(tmp_path / "src", tmp_path / "out", grayscale=True)
    decoded = read_frames(tmp_path / "out" / "k" / "k_a.mp4").astype(int)
    assert np.abs(decoded[..., 0] - decoded[..., 1]).max() <= 2
    assert np.abs(decoded[..., 1] - decoded[..., 2]).max() <= 2


@pytest.mark.shared
def test_weizmann_strips_convert_with_true_frame_counts(shared, tmp_path):
    src = shared("data", "actions-weizmann-mocogan")
    report = convert_strips(src, tmp_path / "weizmann")
    assert len(report.videos) == 36 and not report.skipped
    records = read_split("folder", tmp_path / "weizmann", video_root=tmp_path / "weizmann")
    assert np.bincount([r.label for r in records]).tolist() == [9, 9, 9, 9]
    with (src / "labels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows[::7]:
        folder, stem = row["file"].split("/")
        path = tmp_path / "weizmann" / row["action"] / f"{folder}_{stem.rsplit('.', 1)[0]}.mp4"
        info = read_video_info(path)
        assert info.num_frames == int(row["n_frames"]) and (info.height, info.width) == (64, 64)
