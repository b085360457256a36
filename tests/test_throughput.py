"""measure_step_rate: the engine's real training step on a synthetic batch (benchmarks/pretrain_gpu.py)."""

import math

import pytest
import torch

from mcl_video.training import load_config
from mcl_video.training.builders import feature_grid
from mcl_video.training.throughput import measure_step_rate, synthetic_batch


@pytest.mark.parametrize("mal", [True, False])
def test_step_rate_row_on_cpu(mal):
    cfg = load_config("demo_cpu", ["size=32", "batch_size=2", "device=cpu", "epochs=1", f"use_mal={mal}"])
    r = measure_step_rate(cfg, steps=1, warmup=0, device=torch.device("cpu"))
    assert r["use_mal"] is mal and r["clip"] == "8x32x32" and r["precision"] == "fp32"
    assert math.isfinite(r["loss"]) and math.isnan(r["peak_gib"])  # no CUDA memory on a CPU
    assert r["clips_per_s"] == pytest.approx(4 * r["samples_per_s"])
    assert r["samples_per_s"] == pytest.approx(2 / (r["ms_per_step"] / 1000))


def test_synthetic_batch_shapes_match_the_dataset_contract():
    cfg = load_config("demo_cpu", ["size=32"])
    grid = feature_grid(cfg)
    b = synthetic_batch(3, cfg.clip_len, cfg.size, grid, "cpu")
    for k in ("q", "k0", "k1", "k2"):
        assert b[k].shape == (3, 3, cfg.clip_len, 32, 32)
    assert b["target"].shape == (3, *grid) and b["order"].tolist() == [0, 1, 0]
    assert b["index"].tolist() == [0, 1, 2]
