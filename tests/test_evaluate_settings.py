"""Evaluation reads its checkpoint: clip length, stride, input size and backbone from the saved config
unless given; the kNN k capped by the training set with a note."""

import json

import numpy as np
import torch

from mcl_video.cli import main
from mcl_video.evaluation.encoder import DEFAULT_CLIP, EncoderSettings, clip_settings, encoder_settings
from mcl_video.evaluation.protocols import cap_knn_k, run_protocols
from mcl_video.models import build_backbone
from test_features import write_video  # tests/ is on sys.path (pytest rootdir)


def test_clip_settings_take_given_then_saved_then_default():
    saved = EncoderSettings("checkpoint", "tiny_r2plus1d", {}, {"clip_len": 8, "size": 32})
    values, note = clip_settings(saved, clip_len=None, stride=None, size=64)
    assert values == {"clip_len": 8, "stride": DEFAULT_CLIP["stride"], "size": 64}
    assert note == ("clip settings: clip_len 8 from the checkpoint's config; stride 2 (default); "
                    "size 64 (given)")
    assert clip_settings(None)[0] == DEFAULT_CLIP
    assert clip_settings(EncoderSettings("state dict"), stride=3)[0] == {**DEFAULT_CLIP, "stride": 3}


def test_cap_knn_k():
    assert cap_knn_k(5, 6) == (5, None)
    assert cap_knn_k(6, 6) == (6, None)
    assert cap_knn_k(20, 6) == (6, "kNN: k=20 is more than the 6 training videos; using k=6")
    rng = np.random.default_rng(0)
    train = {"features": rng.normal(size=(4, 3)), "labels": np.array([0, 0, 1, 1])}
    test = {"features": rng.normal(size=(2, 3)), "labels": np.array([0, 1])}
    res = run_protocols(train, test, ("knn",), knn_k=20)
    assert res["knn"]["k"] == 4 and "k=20" in res["knn"]["note"]


def test_evaluate_takes_clip_settings_and_backbone_from_the_checkpoint(tmp_path, capsys, monkeypatch):
    root, ann = tmp_path / "videos", tmp_path / "ann"
    ann.mkdir()
    classes = ["Dim", "Bright"]
    train, test = [], []
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for g in range(3):
            rel = f"{name}/v_{name}_g0{g + 1}_c01.mp4"
            write_video(root / rel, num_frames=8, h=32, w=40, seed=10 * c + g)
            (train if g < 2 else test).append((rel, c))
    (ann / "classInd.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(classes)))
    (ann / "trainlist01.txt").write_text("".join(f"{r} {c + 1}\n" for r, c in train))
    (ann / "testlist01.txt").write_text("".join(f"{r}\n" for r, _ in test))
    options = {"widths": [4, 8, 8, 6]}
    net = build_backbone("tiny_r2plus1d", **options)
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": {f"encoder_q.backbone.{k}": v for k, v in net.state_dict().items()},
                "config": {"backbone": "tiny_r2plus1d", "backbone_options": options,
                           "clip_len": 4, "stride": 1, "size": 24}}, ckpt)
    assert encoder_settings(ckpt).clip == {"clip_len": 4, "stride": 1, "size": 24}
    seen = []
    import mcl_video.evaluation.features as features

    original = features.extract_features

    def spy(encoder, ds, *args, **kwargs):
        item = ds[0]
        seen.append(tuple(item["clips"].shape) if isinstance(item, dict) else tuple(item[0].shape))
        return original(encoder, ds, *args, **kwargs)

    monkeypatch.setattr(features, "extract_features", spy)
    out = tmp_path / "out"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(root), "--annotations", str(ann),
                 "--protocol", "knn", "--num-clips", "1", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "clip settings: clip_len 4, stride 1, size 24 from the checkpoint's config" in printed
    assert "kNN: k=20 is more than the 4 training videos; using k=4" in printed
    assert seen and all(shape[-4:] == (3, 4, 24, 24) for shape in seen)  # C x T x H x W of each clip
    saved = np.load(out / "features_train.npz")
    assert saved["features"].shape == (4, 6)  # the checkpoint's backbone (last width 6)
    assert json.loads((out / "results.json").read_text())["knn"]["k"] == 4
