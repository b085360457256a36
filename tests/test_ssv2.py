"""Something-Something v2 (labels.json, train.json, validation.json, WebM videos) and the Kinetics-600/700
list names, on fixtures written here."""

import json

import av
import numpy as np
import pytest

from mcl_video.data import read_clip, read_split
from mcl_video.data.splits import AnnotationError, ssv2_class
from mcl_video.evaluation.finetune_config import load_finetune_config

LABELS = {"Putting something on a surface": "1", "Pushing something from left to right": "0",
          "Moving something up": "2"}
TRAIN = [
    {"id": "78687", "label": "pushing a cup from left to right",
     "template": "Pushing [something] from left to right", "placeholders": ["a cup"]},
    {"id": "42326", "label": "putting a book on a surface", "template": "Putting [something] on a surface",
     "placeholders": ["a book"]},
    {"id": "3", "label": "moving pen up", "template": "Moving [something] up", "placeholders": ["pen"]},
]
VALIDATION = [{"id": "74225", "label": "moving a phone up", "template": "Moving [something] up",
               "placeholders": ["a phone"]}]


def _webm(path, frames=6, h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=12)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for _ in range(frames):
            pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


@pytest.fixture
def ssv2(tmp_path):
    ann, videos = tmp_path / "annotations", tmp_path / "videos"
    ann.mkdir()
    videos.mkdir()
    (ann / "labels.json").write_text(json.dumps(LABELS))
    (ann / "train.json").write_text(json.dumps(TRAIN))
    (ann / "validation.json").write_text(json.dumps(VALIDATION))
    (ann / "test.json").write_text(json.dumps([{"id": "1"}]))  # unlabelled, not read
    for i, entry in enumerate(TRAIN + VALIDATION):
        if entry["id"] != "3":  # one listed video is missing on disk
            _webm(videos / f"{entry['id']}.webm", seed=i)
    return ann, videos


def test_template_to_class_text():
    assert ssv2_class("Putting [something] on [something]") == "Putting something on something"
    assert ssv2_class("Pushing [something] from  left to right") == "Pushing something from left to right"


def test_ssv2_records_labels_and_webm_clips(ssv2):
    ann, videos = ssv2
    train = read_split("ssv2", ann, subset="train")
    assert [(r.path, r.label, r.class_name) for r in train] == [
        ("78687.webm", 0, "Pushing something from left to right"),
        ("42326.webm", 1, "Putting something on a surface"),
        ("3.webm", 2, "Moving something up"),
    ]
    assert [r.path for r in read_split("ssv2", ann, subset="train", video_root=videos)] == ["78687.webm",
                                                                                             "42326.webm"]
    for subset in ("val", "test"):  # both read validation.json
        (rec,) = read_split("ssv2", ann, subset=subset, video_root=videos)
        assert (rec.path, rec.label, rec.subset) == ("74225.webm", 2, subset)
    clip = read_clip(videos / "78687.webm", [0, 2, 5])
    assert tuple(clip.shape) == (3, 24, 32, 3)


def test_ssv2_errors_name_the_file(ssv2):
    ann, _ = ssv2
    bad = [{"id": "9", "template": "Spinning [something]"}]
    (ann / "train.json").write_text(json.dumps(bad))
    with pytest.raises(AnnotationError, match=r"train.json, entry 0 \(id 9\): class 'Spinning something'"):
        read_split("ssv2", ann, subset="train")
    (ann / "labels.json").write_text("{not json")
    with pytest.raises(AnnotationError, match="labels.json: not valid JSON"):
        read_split("ssv2", ann, subset="train")
    (ann / "labels.json").unlink()
    with pytest.raises(FileNotFoundError, match="labels.json is missing; expected labels.json, train.json"):
        read_split("ssv2", ann, subset="train")


@pytest.mark.parametrize("classes", [600, 700])
def test_kinetics_600_and_700_list_names(tmp_path, classes):
    rows = "label,youtube_id,time_start,time_end,split\nabseiling,abc,4,14,train\nzumba,xyz,0,10,train\n"
    (tmp_path / f"kinetics-{classes}_train.csv").write_text(rows)
    records = read_split(f"kinetics{classes}", tmp_path, subset="train")
    assert [(r.path, r.label) for r in records] == [("abseiling/abc_000004_000014.mp4", 0),
                                                    ("zumba/xyz_000000_000010.mp4", 1)]
    with pytest.raises(FileNotFoundError, match=f"no Kinetics-{classes} val CSV"):
        read_split(f"kinetics{classes}", tmp_path, subset="val")


def test_the_ssv2_finetune_config_loads():
    config = load_finetune_config("finetune_ssv2_r2plus1d18")
    assert (config.dataset, config.backbone, config.clip_len, config.size) == ("ssv2", "r2plus1d_18", 16, 112)
