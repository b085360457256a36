"""benchmarks/throughput.py: the engine's real training step on a synthetic batch, its FLOP count and
the matrix-product rate the benchmarks compare it with."""

import math
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mcl_video.training import load_config
from mcl_video.training.builders import feature_grid
from mcl_video.training.loop import train_step

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from throughput import (  # noqa: E402 - benchmarks/ is a folder of scripts, not a package
    bench_batches,
    bench_run,
    count_flops,
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
    b = synthetic_batch(3, cfg.clip_len, cfg.size, grid, "cpu")
    for k in ("q", "k0", "k1", "k2"):
        assert b[k].shape == (3, 3, cfg.clip_len, 32, 32)
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
    clip = torch.randn(2, 3, cfg.clip_len, cfg.size, cfg.size)
    with FlopCounterMode(display=False) as fc:
        run.model.encoder_q.backbone(clip)
    forward_q = fc.get_total_flops()  # the query encoder on one view
    # the query and three keys pass the backbone; the query's (and nothing else's) backward costs ~2x
    assert f2 > 4 * forward_q + 2 * forward_q * 0.9


def test_conv_flops_are_counted_analytically():
    """A 3x3x3 conv, 2 -> 5 channels, on 1 x 2 x 4 x 6 x 6 with padding 1 (output 5 x 4 x 6 x 6):
    forward 2 * (5 * 4 * 6 * 6) outputs * (2 * 27) multiply-adds; the backward twice that (the input's
    and the weight's gradient)."""
    conv = torch.nn.Conv3d(2, 5, 3, padding=1, bias=False)
    x = torch.randn(1, 2, 4, 6, 6, requires_grad=True)
    forward = 2 * (5 * 4 * 6 * 6) * (2 * 27)
    assert count_flops(conv, x) == forward
    assert count_flops(lambda: conv(x).sum().backward()) == 3 * forward
    assert count_flops(lambda: torch.mm(torch.ones(3, 4), torch.ones(4, 7))) == 2 * 3 * 4 * 7


def test_matmul_peak_is_flops_over_the_median_time(monkeypatch):
    """A clock whose k-th reading adds k seconds (readings 0, 1, 3, 6, 10, 15, 21): the warm-up reads it
    once (0), then product i is timed from reading 2i - 1 to 2i: 2, 4, 6 s; the median is 4 s."""
    ticks = iter(range(100))
    clock = {"t": 0.0}

    def fake_clock():
        clock["t"] += next(ticks)
        return clock["t"]

    monkeypatch.setattr("throughput.clock", fake_clock)
    n = 16
    assert matmul_peak(torch.device("cpu"), n=n, repeats=3) == 2 * n**3 / 4
