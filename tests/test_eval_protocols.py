"""The release's linear-probe protocol against ours: they differ exactly in crop geometry and in
standardisation, and nowhere else."""

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest

from mcl_video.data import read_clip
from mcl_video.data.writer import write_video
from mcl_video.evaluation.datasets import clip_indices, native_resize, normalize_clip
from mcl_video.evaluation.features import feature_protocol
from mcl_video.evaluation.probes import linear_probe_svm


def write_noise_video(path, num_frames, h, w, seed=0):
    """Random-texture frames, so a crop taken at the wrong place or scale cannot match by chance."""
    rng = np.random.default_rng(seed)
    frames = [np.repeat(np.repeat(rng.integers(0, 256, (h // 8, w // 8, 3)), 8, 0), 8, 1).astype(np.uint8)
              for _ in range(num_frames)]
    return write_video(path, frames, fps=10, codec="mpeg4")


def test_presets_differ_exactly_in_crop_geometry_and_standardisation():
    release = feature_protocol("release", size=112, num_clips=20)
    default = feature_protocol("default", size=112, num_clips=20)
    assert (release.num_clips, release.size, release.short_side, release.svm_preprocess) == (
        20, 224, "native", "none")
    assert (default.num_clips, default.size, default.short_side, default.svm_preprocess) == (
        20, 112, 112, "standardize")
    names = [f.name for f in dataclasses.fields(release)]
    differ = {n for n in names if getattr(release, n) != getattr(default, n)}
    assert differ == {"name", "size", "short_side", "svm_preprocess"}
    # release ignores the user's size / clip count; default follows them
    assert feature_protocol("release", size=64, num_clips=3) == release
    assert (feature_protocol("default", 64, 3).size, feature_protocol("default", 64, 3).num_clips) == (64, 3)
    with pytest.raises(ValueError, match="protocol must be"):
        feature_protocol("paper")


def test_native_resize_rule():
    assert native_resize(240, 320) is None  # UCF101 / HMDB51 as distributed
    assert native_resize(256, 340) is None  # Kinetics stored at short side 256
    assert native_resize(320, 240) is None  # portrait: the short side counts
    assert native_resize(1080, 1920) == 256
    assert native_resize(128, 171) == 256


@pytest.mark.parametrize("hw", [(240, 320), (72, 96)])
def test_release_views_are_unresized_centre_crops(tmp_path, hw):
    h, w = hw
    path = write_noise_video(tmp_path / "v.mp4", 24, h, w)
    rec = [SimpleNamespace(path="v.mp4", label=0)]
    idx = clip_indices(24, 4, 2, 20)
    release = feature_protocol("release").dataset(tmp_path, rec, clip_len=4, stride=2)[0]["clips"]
    assert release.shape == (20, 3, 4, 224, 224)
    # 240 x 320 is used as decoded; 72 x 96 is outside 240-256 and goes to short side 256 first
    frames = read_clip(path, idx.reshape(-1), resize_short=None if h == 240 else 256)
    fh, fw = frames.shape[1:3]
    top, left = (fh - 224) // 2, (fw - 224) // 2
    if h == 240:
        assert (top, left) == (8, 48)
    frames = frames.view(20, 4, fh, fw, 3)
    for c in (0, 7, 19):
        np.testing.assert_array_equal(release[c].numpy(),
                                      normalize_clip(frames[c, :, top:top + 224, left:left + 224]).numpy())
    # ours: the short side goes to the crop side (112) first, then the centre crop
    default = feature_protocol("default", size=112).dataset(tmp_path, rec, clip_len=4, stride=2)[0]["clips"]
    small = read_clip(path, idx.reshape(-1), resize_short=112)
    sh, sw = small.shape[1:3]
    assert min(sh, sw) == 112
    t, lf = (sh - 112) // 2, (sw - 112) // 2
    expected = normalize_clip(small.view(20, 4, sh, sw, 3)[3, :, t:t + 112, lf:lf + 112])
    np.testing.assert_array_equal(default[3].numpy(), expected.numpy())


def test_raw_features_are_not_scale_invariant_standardised_are():
    """Standardisation makes the SVM blind to a per-dimension affine change of the features; the
    release's raw features are not (with C fixed at 1 the feature scale sets the margin trade-off)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = rng.normal(size=(3, 6))[y] + rng.normal(scale=1.0, size=(60, 6))
    tr, te = np.arange(60) % 3 != 0, np.arange(60) % 3 == 0
    scale = np.array([1000.0, 0.01, 1, 1, 5, 1])
    shift = np.array([50.0, -3, 0, 0, 0, 2])
    x2 = x * scale + shift

    def scores(feats, pre):
        return linear_probe_svm(feats[tr], y[tr], feats[te], y[te], preprocess=pre, max_iter=20000)["scores"]

    np.testing.assert_allclose(scores(x, "standardize"), scores(x2, "standardize"), atol=1e-4)
    assert np.abs(scores(x, "none") - scores(x2, "none")).max() > 0.1


def test_mcl_evaluate_preset_release(tmp_path, monkeypatch):
    """`mcl evaluate --preset release`: 20 clips of 224 x 224 from 240-px frames, raw features to the SVM."""
    from mcl_video.cli import main
    from mcl_video.evaluation import features, protocols

    root, ann = tmp_path / "videos", tmp_path / "ann"
    ann.mkdir()
    train, test = [], []
    for c, name in enumerate(["A", "B"]):
        (root / name).mkdir(parents=True)
        for g in range(3):
            rel = f"{name}/v_{name}_g0{g + 1}_c01.mp4"
            write_noise_video(root / rel, 6, 240, 320, seed=10 * c + g)
            (train if g < 2 else test).append((rel, c))
    (ann / "classInd.txt").write_text("1 A\n2 B\n")
    (ann / "trainlist01.txt").write_text("".join(f"{r} {c + 1}\n" for r, c in train))
    (ann / "testlist01.txt").write_text("".join(f"{r}\n" for r, _ in test))
    seen = {}
    real_svm = protocols.linear_probe_svm

    def spy(*args, **kwargs):
        seen["preprocess"] = kwargs["preprocess"]
        return real_svm(*args, **kwargs)

    real_extract = features.extract_features

    def spy_extract(encoder, ds, *args, **kwargs):
        seen.setdefault("views", []).append((ds.num_clips, ds.size, ds.short_side, ds[0]["clips"].shape))
        return real_extract(encoder, ds, *args, **kwargs)

    monkeypatch.setattr(protocols, "linear_probe_svm", spy)
    monkeypatch.setattr(features, "extract_features", spy_extract)
    out = tmp_path / "out"
    argv = ["evaluate", "--random-init", "--backbone", "tiny_r2plus1d", "--backbone-options",
            '{"widths": [2, 2, 2, 2]}', "--data", str(root), "--annotations", str(ann), "--protocol", "svm",
            "--clip-len", "2", "--preset", "release", "--size", "32", "--num-clips", "2", "--out", str(out)]
    assert main(argv) == 0
    assert seen["preprocess"] == "none"
    assert seen["views"] == [(20, 224, "native", (20, 3, 2, 224, 224))] * 2  # --size/--num-clips ignored
    res = json.loads((out / "results.json").read_text())
    assert res["svm"]["preprocess"] == "none" and res["num_train"] == 4 and res["num_test"] == 2
