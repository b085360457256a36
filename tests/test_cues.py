"""Probes of what an encoder encodes (mcl_video.evaluation.cues): static-cue and motion probes, the
saliency-in-motion share, and ``mcl evaluate --benchmark-meta``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mcl_video.cli import main
from mcl_video.data.synth import SynthConfig, draw_video, make_benchmark, motion_boxes
from mcl_video.evaluation.cues import (
    benchmark_labels,
    box_on_grid,
    cue_probes,
    mass_share,
    same_clip_saliency,
)
from mcl_video.models import build_backbone

PC = dict(classes=2, frames=16, size=32, seed=0, moving_region=0.4, pan_speed=0.0, distractors=(0, 0),
          periphery_textures=3)


def test_mass_share_is_the_saliency_mass_inside_the_mask():
    sal = torch.zeros(3, 2, 4, 4)
    mask = torch.zeros(4, 4)
    mask[:2, :2] = 1.0
    sal[0, :, :2, :2] = torch.rand(2, 2, 2) + 0.1  # all inside the mask
    sal[1, 0, 0, 0], sal[1, 1, 3, 3] = 1.0, 3.0  # a quarter inside
    share = mass_share(sal, mask)  # clip 2: zero everywhere
    assert share[0] == pytest.approx(1.0) and share[1] == pytest.approx(0.25) and math.isnan(share[2])
    soft = torch.full((4, 4), 0.5)
    assert mass_share(sal[:2], soft).tolist() == pytest.approx([0.5, 0.5])  # a flat mask: its value
    flat = torch.ones(1, 2, 4, 4)
    assert mass_share(flat, mask).item() == pytest.approx(mask.mean().item())  # flat map: the area


def test_box_on_grid_shares_of_cells():
    grid = box_on_grid((0, 0, 24, 24), (48, 48), 48, (4, 4))
    np.testing.assert_allclose(grid, np.pad(np.ones((2, 2)), ((0, 2), (0, 2))))
    grid = box_on_grid((0, 0, 18, 48), (48, 48), 48, (4, 4))
    np.testing.assert_allclose(grid[:, 0], [1.0, 0.5, 0.0, 0.0])
    # resized 96 -> 48: the same shares; a wider frame is centre-cropped (64 x 48 -> 48 x 48 from col 8)
    np.testing.assert_allclose(box_on_grid((0, 0, 48, 48), (96, 96), 48, (4, 4)), box_on_grid(
        (0, 0, 24, 24), (48, 48), 48, (4, 4)))
    np.testing.assert_allclose(box_on_grid((0, 8, 48, 12), (48, 64), 48, (4, 4))[0], [1.0, 0, 0, 0])


def test_same_clip_saliency_is_a_gradient_map_and_leaves_the_backbone_alone():
    torch.manual_seed(0)
    backbone = build_backbone("tiny_r2plus1d", widths=(4, 4, 8, 8)).eval()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    flags = [p.requires_grad for p in backbone.parameters()]
    clips = torch.randn(2, 3, 8, 32, 32)
    sal = same_clip_saliency(backbone, clips)
    assert sal.shape[0] == 2 and sal.dim() == 4 and torch.isfinite(sal).all() and (sal >= 0).all()
    assert sal.flatten(1).sum(1).gt(0).all()
    assert [p.requires_grad for p in backbone.parameters()] == flags
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    assert all(p.grad is None for p in backbone.parameters())
    # the key is the given one when passed: the same clip as its own key gives a zero gradient of the
    # cosine (d cos(q, q)/dq = 0 for a detached q), hence a dead map
    assert same_clip_saliency(backbone, clips, keys=clips).abs().max() < 1e-6
    assert len(backbone._forward_hooks) == 0 and all(len(m._forward_hooks) == 0 for m in backbone.modules())


def fake_meta(cfg: SynthConfig, n: int) -> dict:
    videos = [{"path": f"C/v{i}.mp4", **draw_video(cfg, i, i % cfg.classes)} for i in range(n)]
    return {"config": cfg.recorded(), "shapes": ["disc", "square"], "videos": videos}


def test_static_cue_probe_reads_the_family_and_the_control_has_none():
    cfg = SynthConfig(**PC)
    meta = fake_meta(cfg, 60)
    ids = [v["path"] for v in meta["videos"]]
    labels = benchmark_labels(meta, ids)
    assert set(labels) == {"motion", "shape", "static_cue"} and set(labels["static_cue"]) == {0, 1, 2}
    rng = np.random.default_rng(0)
    # features that carry the texture family and nothing of the motion
    x = np.eye(3)[labels["static_cue"]] * 3 + rng.normal(0, 0.1, (60, 3))
    train = {"features": x[:40], "ids": ids[:40]}
    test = {"features": x[40:], "ids": ids[40:]}
    got = cue_probes(train, test, meta)
    assert got["static_cue_acc"] == 1.0 and got["motion_acc"] <= 0.75
    assert math.isnan(got["shape_acc"])  # one actor shape in a positive control: nothing to probe
    shared = fake_meta(SynthConfig(**PC, shared_texture=True), 60)
    assert math.isnan(cue_probes(train, test, shared)["static_cue_acc"])
    with pytest.raises(ValueError, match="not in this meta.json"):
        benchmark_labels(meta, ["D/v0.mp4"])


def test_evaluate_benchmark_meta_reports_cues_and_saliency(tmp_path, capsys):
    root = make_benchmark(tmp_path / "pc", train_per_class=3, test_per_class=2, workers=1, **PC)
    out = tmp_path / "out"
    argv = ["evaluate", "--random-init", "--backbone", "tiny_r2plus1d", "--backbone-options",
            '{"widths": [4, 4, 8, 8]}', "--data", str(root / "videos"),
            "--annotations", str(root / "annotations"),
            "--protocol", "svm", "--clip-len", "4", "--size", "16", "--num-clips", "1", "--out", str(out),
            "--benchmark-meta", str(root / "meta.json"), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "static_cue probe" in printed and "saliency in the actor's region" in printed
    cues = json.loads((out / "results.json").read_text())["cues"]
    assert cues["saliency_clips"] == 4 and 0.0 <= cues["saliency_share"] <= 1.0
    box = next(iter(motion_boxes(root / "meta.json").values()))
    assert cues["saliency_region_area"] == pytest.approx(box[2] * box[3] / 32**2, abs=0.03)
    assert 0.0 <= cues["static_cue_acc"] <= 1.0 and 0.0 <= cues["motion_acc"] <= 1.0
