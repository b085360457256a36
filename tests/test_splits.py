"""mcl_video.data.splits: exact counts on the official split files, and tiny synthetic annotation folders."""

from __future__ import annotations

import logging

import pytest

from mcl_video.data import VideoRecord, read_split

# ---- official files in ../shared/data/splits -----------------------------------------------------------


@pytest.mark.shared
def test_ucf101_official_split1_counts(shared):
    root = shared("data", "splits", "ucf101")
    train = read_split("ucf101", root, split=1, subset="train")
    test = read_split("ucf101", root, split=1, subset="test")
    assert (len(train), len(test)) == (9537, 3783)
    assert len({r.label for r in train}) == len({r.label for r in test}) == 101
    assert min(r.label for r in train) == 0 and max(r.label for r in train) == 100
    first = VideoRecord("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0, "ApplyEyeMakeup", 1, "train")
    assert train[0] == first
    # the official quirk: folder HandstandPushups, file names v_HandStandPushups_*; class id 37 -> label 36
    hsp = [r for r in test if "v_HandStandPushups_" in r.path]
    assert hsp and {(r.label, r.class_name) for r in hsp} == {(36, "HandstandPushups")}
    assert not {r.path for r in train} & {r.path for r in test}


@pytest.mark.shared
def test_hmdb51_official_three_splits(shared):
    root = shared("data", "splits", "hmdb51")
    for split in (1, 2, 3):
        train = read_split("hmdb51", root, split=split, subset="train")
        test = read_split("hmdb51", root, split=split, subset="test")
        assert (len(train), len(test)) == (3570, 1530), split
        assert len({r.class_name for r in train}) == 51
        assert {r.label for r in train} == set(range(51))
    # alphabetical labels: brush_hair first, wave last
    assert (train[0].class_name, train[0].label) == ("brush_hair", 0)
    assert (train[-1].class_name, train[-1].label) == ("wave", 50)
    assert train[0].path.startswith("brush_hair/") and train[0].path.endswith(".avi")


@pytest.mark.shared
def test_kinetics400_official_val_and_unlabelled_test(shared):
    root = shared("data", "splits", "kinetics400")
    val = read_split("kinetics400", root, subset="val")
    assert len(val) == 19906 and len({r.label for r in val}) == 400
    assert val[0] == VideoRecord("abseiling/0wR5jVB-WPk_000417_000427.mp4", 0, "abseiling", 1, "val")
    assert {r.label for r in val if r.class_name == "zumba"} == {399}
    test = read_split("kinetics400", root, subset="test")
    assert len(test) == 38685 and {r.label for r in test} == {-1}
    assert test[0].path == "test/--6bJUbfpnQ_000017_000027.mp4"
    with pytest.raises(FileNotFoundError, match="kinetics-400_train.csv"):
        read_split("kinetics400", root, subset="train")


# ---- synthetic annotation folders ----------------------------------------------------------------------


def write(path, lines, newline="\r\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(newline.join(lines).encode() + newline.encode())
    return path


@pytest.fixture
def ucf(tmp_path):
    ann = tmp_path / "ann"
    write(ann / "classInd.txt", ["1 Archery", "2 HandstandPushups", "3 YoYo"])
    write(ann / "trainlist01.txt", ["Archery/v_Archery_g08_c01.avi 1",
                                    "HandstandPushups/v_HandStandPushups_g08_c01.avi 2",
                                    "HandStandPushups/v_HandStandPushups_g09_c01.avi 2",
                                    "YoYo/v_YoYo_g08_c01.avi 3"])
    write(ann / "testlist01.txt", ["YoYo/v_YoYo_g01_c01.avi",
                                   "HandstandPushups/v_HandStandPushups_g01_c01.avi"])
    return ann


def test_ucf101_crlf_quirk_and_zero_based_labels(ucf):
    train = read_split("ucf101", ucf, 1, "train")
    assert [(r.label, r.class_name) for r in train] == [
        (0, "Archery"), (1, "HandstandPushups"), (1, "HandstandPushups"), (2, "YoYo")]
    assert all("\r" not in r.path for r in train)
    test = read_split("ucf101", ucf, 1, "test")
    assert [(r.path, r.label, r.subset) for r in test] == [
        ("YoYo/v_YoYo_g01_c01.avi", 2, "test"),
        ("HandstandPushups/v_HandStandPushups_g01_c01.avi", 1, "test")]


def test_missing_videos_are_counted_logged_and_left_out(ucf, tmp_path, caplog):
    videos = tmp_path / "videos"
    # on disk the quirky folder is spelt HandStandPushups: the case-insensitive lookup resolves it
    for rel in ("Archery/v_Archery_g08_c01.avi", "HandStandPushups/v_HandStandPushups_g08_c01.avi"):
        (videos / rel).parent.mkdir(parents=True, exist_ok=True)
        (videos / rel).write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="mcl_video.data.splits"):
        kept = read_split("ucf101", ucf, 1, "train", video_root=videos)
    assert [r.path for r in kept] == ["Archery/v_Archery_g08_c01.avi",
                                      "HandStandPushups/v_HandStandPushups_g08_c01.avi"]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "2 of 4 videos missing" in lines[0] and "v_YoYo_g08_c01.avi" in lines[0]


def test_ucf101_errors_name_the_file(ucf, tmp_path):
    with pytest.raises(FileNotFoundError, match="trainlist02.txt"):
        read_split("ucf101", ucf, 2, "train")
    with pytest.raises(FileNotFoundError, match="classInd.txt"):
        read_split("ucf101", tmp_path / "nowhere", 1, "train")
    write(ucf / "trainlist03.txt", ["Archery/v_Archery_g08_c01.avi 3"])
    with pytest.raises(ValueError, match=r"trainlist03.txt, line 1"):
        read_split("ucf101", ucf, 3, "train")
    write(ucf / "testlist03.txt", ["Bowling/v_Bowling_g01_c01.avi"])
    with pytest.raises(ValueError, match="classInd"):
        read_split("ucf101", ucf, 3, "test")
    with pytest.raises(ValueError, match="subset"):
        read_split("ucf101", ucf, 1, "val")
    with pytest.raises(ValueError, match="unknown dataset"):
        read_split("ucf202", ucf)


def test_hmdb51_ids_and_alphabetical_labels(tmp_path):
    ann = tmp_path / "hmdb"
    write(ann / "wave_test_split1.txt", ["w0.avi 1 ", "w1.avi 2 ", "w2.avi 0 "], newline="\n")
    write(ann / "brush_hair_test_split1.txt", ["b0.avi 2 ", "b1.avi 1 ", "b2.avi 1 "], newline="\n")
    write(ann / "brush_hair_test_split2.txt", ["b0.avi 1 "], newline="\n")
    train = read_split("hmdb51", ann, 1, "train")
    assert [(r.path, r.label) for r in train] == [("brush_hair/b1.avi", 0), ("brush_hair/b2.avi", 0),
                                                  ("wave/w0.avi", 1)]
    test = read_split("hmdb51", ann, 1, "test")
    assert [(r.path, r.label, r.class_name) for r in test] == [
        ("brush_hair/b0.avi", 0, "brush_hair"), ("wave/w1.avi", 1, "wave")]
    with pytest.raises(FileNotFoundError, match="_test_split3.txt"):
        read_split("hmdb51", ann, 3, "train")
    write(ann / "clap_test_split1.txt", ["c0.avi 7"], newline="\n")
    with pytest.raises(ValueError, match="clap_test_split1.txt, line 1"):
        read_split("hmdb51", ann, 1, "train")


def test_kinetics_csv_paths_and_label_sources(tmp_path):
    ann = tmp_path / "k400"
    write(ann / "kinetics-400_train.csv", ["label,youtube_id,time_start,time_end,split",
                                           "zumba,abc,5,15,train", "air drumming,xyz,117,127,train"], "\n")
    train = read_split("kinetics400", ann, subset="train")
    # no label map: sorted names of the CSV give the labels
    assert [(r.path, r.label) for r in train] == [("zumba/abc_000005_000015.mp4", 1),
                                                  ("air drumming/xyz_000117_000127.mp4", 0)]
    write(ann / "label_map.txt", ["zumba", "yoga", "air drumming"], "\n")
    assert [r.label for r in read_split("kinetics400", ann, subset="train")] == [0, 2]
    write(ann / "kinetics-400_test.csv", ["youtube_id,time_start,time_end,split", "q1,0,10,test"], "\n")
    assert read_split("kinetics400", ann, subset="test") == [
        VideoRecord("test/q1_000000_000010.mp4", -1, "", 1, "test")]
    # video folders spelt with underscores still resolve
    (ann / "videos" / "air_drumming").mkdir(parents=True)
    (ann / "videos" / "air_drumming" / "xyz_000117_000127.mp4").write_bytes(b"x")
    kept = read_split("kinetics400", ann, subset="train", video_root=ann / "videos")
    assert [r.path for r in kept] == ["air_drumming/xyz_000117_000127.mp4"]


def test_folder_dataset(tmp_path):
    for rel in ("walk/a.mp4", "walk/sub/b.avi", "run/c.webm", "run/notes.txt", "jump/.keep"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    records = read_split("folder", tmp_path, subset="all")
    assert [(r.path, r.label, r.class_name, r.subset) for r in records] == [
        ("run/c.webm", 1, "run", "all"), ("walk/a.mp4", 2, "walk", "all"),
        ("walk/sub/b.avi", 2, "walk", "all")]
    with pytest.raises(FileNotFoundError, match="class sub-folders"):
        read_split("folder", tmp_path / "walk" / "sub")
