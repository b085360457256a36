"""benchmarks/positive_control.py: design keys, arm configs (the oracle's crop_boxes), the paired
analysis with its primary contrast, and the cue figure (the runs themselves are the benchmark)."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import positive_control as pc  # noqa: E402  (benchmarks/positive_control.py)


def args(**kw):
    base = dict(size=64, videos=[16, 8], steps=40, batch=32, clips=2, saliency_videos=10, config=None,
                device="cpu", workers=1)
    return SimpleNamespace(**{**base, **kw})


def test_design_key_and_arm_configs(tmp_path):
    a = args()
    k05, k10 = pc.design_key(a, "pc05", "mcl", 0), pc.design_key(a, "pc10", "mcl", 0)
    assert k05["benchmark"] == k10["benchmark"] and k05["crop_scale"] != k10["crop_scale"]
    assert pc.design_key(a, "shared", "baseline", 1)["benchmark"]["shared_texture"] is True
    oracle = pc.arm_config(a, tmp_path, "pc05", "oracle", 0)
    s = oracle.sampling
    assert (s.colour, s.crop_scale, s.crop_boxes) == (False, (0.2, 0.5), str(tmp_path / "data" / "meta.json"))
    assert not s.motion_crop and not s.motion_sampling and not oracle.model.use_mal
    full = pc.arm_config(a, tmp_path, "pc10", "mcl", 0)
    assert full.sampling.crop_boxes is None and full.sampling.motion_crop and full.model.use_mal
    assert full.optim.epochs * (5 * 16 // 32) >= 40  # enough full batches for max_steps


def rows():
    out = []
    for seed, (b, m) in enumerate([(0.30, 0.40), (0.32, 0.38), (0.28, 0.40)]):
        out.append({"key": {"regime": "pc05", "arm": "baseline", "seed": seed}, "motion_acc": b,
                    "static_cue_acc": 0.9, "saliency_share": 0.3})
        out.append({"key": {"regime": "pc05", "arm": "mcl", "seed": seed}, "motion_acc": m,
                    "static_cue_acc": 0.5, "saliency_share": 0.6})
    out.append({"key": {"regime": "shared", "arm": "baseline", "seed": 0}, "motion_acc": 0.5,
                "static_cue_acc": None, "saliency_share": 0.4})
    return out


def test_summary_pairs_by_seed_and_leads_with_the_primary_contrast(tmp_path):
    s = pc.summarise(rows())
    gain = s["pc05"]["mcl"]["motion_acc_gain"]
    # differences 10, 6, 12 points: mean 9.333, SD 3.055, half-width t(0.975, 2) * SD / sqrt(3)
    assert gain["mean"] == pytest.approx(28 / 3) and gain["sd"] == pytest.approx(3.0550505)
    assert gain["ci95"] == pytest.approx(4.302653 * 3.0550505 / 3**0.5, rel=1e-5)
    assert s["pc05"]["mcl"]["static_cue_acc_gain"]["mean"] == pytest.approx(-40.0)
    assert "static_cue_acc" not in s["shared"]["baseline"]  # None: not probed
    text = pc.format_summary(s)
    assert text.startswith("primary contrast (mcl - baseline, motion_acc, pc05): "
                           "+9.3 points, 95% CI +1.7..+16.9")
    assert "| shared | baseline | 1 | 50.0 ± n/a | — |" in text
    assert pc.plot_cues(rows(), str(tmp_path / "cues.png")) == 6
    assert (tmp_path / "cues.png").stat().st_size > 0
