"""Rawframes (frame folders) through the video readers, and mmaction2 list files through ``read_split``."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mcl_video.data import VideoReadError, find_videos, iter_frames, read_clip, read_split, read_video_info
from mcl_video.data.discovery import VideoIdCollisionError
from mcl_video.data.splits import AnnotationError
from mcl_video.data.video import resized_hw


def _close(a: np.ndarray, b: np.ndarray, mean: float = 1.5, peak: int = 12) -> None:
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert diff.mean() < mean and diff.max() <= peak, (diff.mean(), diff.max())


def test_frame_folder_reads_the_frames_written(tmp_path, make_frames, write_rawframes):
    frames = make_frames(9)
    folder = write_rawframes(tmp_path / "v_a", frames)
    info = read_video_info(folder)
    assert (info.num_frames, info.height, info.width, info.fps) == (9, 36, 48, 0.0)
    clip = read_clip(folder, [4, 0, 4, 8, 30])  # repeats, unsorted, past the end -> clamped to 8
    assert clip.dtype.is_floating_point is False and tuple(clip.shape) == (5, 36, 48, 3)
    for got, want in zip(clip.numpy(), frames[[4, 0, 4, 8, 8]]):
        _close(got, want)
    seq = np.stack(list(iter_frames(folder)))
    assert seq.shape == frames.shape
    _close(seq, frames)
    np.testing.assert_array_equal(seq[[4, 0, 4, 8, 8]], clip.numpy())  # one reader, one answer


def test_frame_folder_resize_short_keeps_aspect_and_area_averages(tmp_path, make_frames, write_rawframes):
    frames = make_frames(3, h=40, w=60)
    folder = write_rawframes(tmp_path / "v", frames, start=0)  # numbering from 0 is accepted too
    clip = read_clip(folder, [1], resize_short=20).numpy()
    assert clip.shape[1:3] == resized_hw(40, 60, 20) == (20, 30)
    stored = next(iter(iter_frames(folder)))
    assert stored.shape == (40, 60, 3)
    want = cv2.resize(np.stack(list(iter_frames(folder)))[1], (30, 20), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(clip[0], want)
    _close(clip[0], cv2.resize(frames[1], (30, 20), interpolation=cv2.INTER_AREA))


def test_frame_folder_errors_name_the_folder(tmp_path, make_frames, write_rawframes):
    frames = make_frames(5)
    gap = write_rawframes(tmp_path / "gap", frames)
    (gap / "img_00003.jpg").unlink()
    with pytest.raises(VideoReadError, match=r"gap: img_<n>.jpg frames number 3 is missing"):
        read_video_info(gap)
    bad = write_rawframes(tmp_path / "bad", frames)
    (bad / "img_00004.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    assert read_video_info(bad).num_frames == 5  # only the listing and the first frame are read
    read_clip(bad, [0, 1, 2])
    with pytest.raises(VideoReadError, match=r"bad: img_00004.jpg cannot be read"):
        read_clip(bad, [2, 3])
    with pytest.raises(VideoReadError, match=r"bad: img_00004.jpg cannot be read"):
        list(iter_frames(bad))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoReadError, match=r"empty: no img_<n>.jpg frames"):
        read_clip(empty, [0])
    odd = write_rawframes(tmp_path / "odd", frames[:2])
    cv2.imwrite(str(odd / "img_00003.jpg"), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(VideoReadError, match=r"odd: frame img_00003.jpg is 10x10 but the first frame is 48x"):
        read_clip(odd, [2])


def test_find_videos_counts_a_frame_folder_as_one_video(tmp_path, make_frames, write_rawframes):
    write_rawframes(tmp_path / "Run" / "v_run_1", make_frames(2))
    (tmp_path / "Run" / "clip.mp4").write_bytes(b"x")
    (tmp_path / "Run" / "notes").mkdir()
    (tmp_path / "Run" / "notes" / "readme.txt").write_text("no frames here")
    assert [p.relative_to(tmp_path).as_posix() for p in find_videos(tmp_path)] == \
        ["Run/clip.mp4", "Run/v_run_1"]
    write_rawframes(tmp_path / "Run" / "clip", make_frames(2))  # same id as clip.mp4
    with pytest.raises(VideoIdCollisionError, match=r"Run/clip and .*Run/clip.mp4"):
        find_videos(tmp_path)


# ---- mmaction2 lists ----------------------------------------------------------------------------------


@pytest.fixture
def rawframes_dataset(tmp_path, make_frames, write_rawframes):
    root = tmp_path / "rawframes"
    for rel in ("Jump/v_Jump_g01_c01", "Jump/v_Jump_g02_c01", "Wave/v_Wave_g01_c01"):
        write_rawframes(root / rel, make_frames(3))
    ann = tmp_path / "annotations"
    ann.mkdir()
    (ann / "ucf101_train_split_1_rawframes.txt").write_text(
        "Jump/v_Jump_g01_c01 3 0\nWave/v_Wave_g01_c01 3 1\nWave/v_Wave_g09_c01 3 1\n")
    (ann / "ucf101_val_split_1_rawframes.txt").write_text("Jump/v_Jump_g02_c01 3 0\r\n")
    (ann / "ucf101_train_split_1_videos.txt").write_text(
        "Jump/v_Jump_g01_c01.avi 0\nWave/v_Wave_g01_c01.avi 1\n")
    return root, ann


def test_mmaction2_rawframe_and_video_lists_parse(rawframes_dataset):
    root, ann = rawframes_dataset
    train = read_split("mmaction2_rawframes", ann, 1, "train")
    assert [(r.path, r.label, r.class_name, r.subset) for r in train] == [
        ("Jump/v_Jump_g01_c01", 0, "Jump", "train"), ("Wave/v_Wave_g01_c01", 1, "Wave", "train"),
        ("Wave/v_Wave_g09_c01", 1, "Wave", "train")]
    kept = read_split("mmaction2_rawframes", ann, 1, "train", video_root=root)  # g09 is not extracted
    assert [r.path for r in kept] == ["Jump/v_Jump_g01_c01", "Wave/v_Wave_g01_c01"]
    test = read_split("mmaction2_rawframes", ann, 1, "test", video_root=root)  # test -> the val list
    assert [(r.path, r.label) for r in test] == [("Jump/v_Jump_g02_c01", 0)]
    videos = read_split("mmaction2_videos", ann, 1, "train")
    assert [(r.path, r.label) for r in videos] == [("Jump/v_Jump_g01_c01.avi", 0),
                                                   ("Wave/v_Wave_g01_c01.avi", 1)]
    # a video list (or the official UCF101 list) over extracted rawframes: x.avi is found as folder x
    found = read_split("mmaction2_videos", ann, 1, "train", video_root=root)
    assert [r.path for r in found] == ["Jump/v_Jump_g01_c01", "Wave/v_Wave_g01_c01"]
    clip = read_clip(root / found[0].path, [0, 2])
    assert tuple(clip.shape) == (2, 36, 48, 3)


def test_mmaction2_lists_refuse_bad_lines_and_say_which_file_is_missing(rawframes_dataset, tmp_path):
    _, ann = rawframes_dataset
    (ann / "ucf101_train_split_2_rawframes.txt").write_text("Jump/v_Jump_g01_c01 3 0\nJump/v 3 0 4\n")
    with pytest.raises(AnnotationError, match=r"ucf101_train_split_2_rawframes.txt, line 2: 'Jump/v 3 0 4'"):
        read_split("mmaction2_rawframes", ann, 2, "train")
    (ann / "k_train_list_videos.txt").write_text("a.mp4 zero\n")
    with pytest.raises(AnnotationError, match=r"k_train_list_videos.txt, line 1"):
        read_split("mmaction2_videos", ann, 3, "train")
    with pytest.raises(FileNotFoundError, match=r"no mmaction2 train list .*_train_split_3_rawframes.txt"):
        read_split("mmaction2_rawframes", ann, 3, "train")
