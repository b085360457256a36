"""measure_step_rate: the engine's real training step on a synthetic batch (benchmarks/pretrain_gpu.py)."""

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mcl_video.training import load_config
from mcl_video.training.builders import feature_grid
from mcl_video.training.engine import train_step
from mcl_video.training.throughput import (
    bench_batches,
    bench_run,
    matmul_peak,
    measure_step_rate,
    step_flops,
    synthetic_batch,
)


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
    b = synthetic_batch(3, cfg.sampling.clip_len, cfg.sampling.size, grid, "cpu")
    for k in ("q", "k0", "k1", "k2"):
        assert b[k].shape == (3, 3, cfg.sampling.clip_len, 32, 32)
    assert b["target"].shape == (3, *grid) and b["order"].tolist() == [0, 1, 0]
    assert b["index"].tolist() == [0, 1, 2]


def _one_step(cfg, steps=2):
    run = bench_run(cfg, torch.device("cpu"), steps)
    batches = bench_batches(cfg, "cpu")
    losses = [train_step(run, batches)["loss"] for _ in range(steps)]
    return losses, {k: v.detach().clone() for k, v in run.model.state_dict().items()}


def test_channels_last_is_the_same_math():
    """channels_last=true changes the layout of weights and clips, not the step: losses and updated
    weights agree with the default layout (float32 rounding only). SGD: Adam's normalised update would
    turn rounding noise in near-zero gradients into full-size steps."""
    base = ["size=32", "batch_size=2", "device=cpu", "epochs=1", "queue_size=64", "optimizer=sgd", "lr=0.1",
            "warmup_steps=0"]
    loss_a, state_a = _one_step(load_config("demo_cpu", base), steps=1)  # later steps amplify rounding
    loss_b, state_b = _one_step(load_config("demo_cpu", base + ["channels_last=true"]), steps=1)
    assert loss_a == pytest.approx(loss_b, rel=1e-4)
    assert state_a.keys() == state_b.keys()
    for k in state_a:
        if state_a[k].is_floating_point():
            torch.testing.assert_close(state_b[k], state_a[k], rtol=1e-5, atol=1e-5, msg=k)
    assert any(v.dim() == 5 and v.is_contiguous(memory_format=torch.channels_last_3d)
               and not v.is_contiguous() for v in bench_run(load_config(
                   "demo_cpu", base + ["channels_last=true"]), torch.device("cpu"), 1).model.parameters())


def test_step_flops_scale_with_the_batch_and_cover_the_backward():
    """Every product in a step is per sample (the queue logits too), so the count doubles exactly with
    the batch; forward + backward is about 3x the forward's count."""
    base = ["size=32", "device=cpu", "epochs=1", "queue_size=64", "use_mal=false"]
    f2 = step_flops(load_config("demo_cpu", base + ["batch_size=2"]), torch.device("cpu"))
    f4 = step_flops(load_config("demo_cpu", base + ["batch_size=4"]), torch.device("cpu"))
    assert f2 > 0 and f4 == pytest.approx(2 * f2, rel=1e-9)
    cfg = load_config("demo_cpu", base + ["batch_size=2"])
    run = bench_run(cfg, torch.device("cpu"), 1)
    clip = torch.randn(2, 3, cfg.sampling.clip_len, cfg.sampling.size, cfg.sampling.size)
    with FlopCounterMode(display=False) as fc:
        run.model.encoder_q.backbone(clip)
    forward_q = fc.get_total_flops()  # the query encoder on one view
    # the query and three keys pass the backbone; the query's (and nothing else's) backward costs ~2x
    assert f2 > 4 * forward_q + 2 * forward_q * 0.9


def test_matmul_peak_is_a_rate():
    r = matmul_peak(torch.device("cpu"), n=256, repeats=2)
    assert math.isfinite(r) and r > 1e6  # any CPU does a 256^3 product in well under 30 s
