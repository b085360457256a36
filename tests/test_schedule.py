"""Per-step schedules against their closed forms (the release's lr, MAL and order weights)."""

import math

import numpy as np
import pytest

from mcl_video.training import PretrainConfig, build_schedule, lr_schedule
from mcl_video.training.schedule import mal_weight_schedule, order_weight_schedule


def test_warmup_then_cosine_analytic():
    lr = lr_schedule(0.01, total_steps=110, warmup_steps=10, kind="cosine")
    assert lr.shape == (110,)
    assert lr[0] == pytest.approx(0.01 / 100)  # warm-up starts at lr/100
    assert lr[5] == pytest.approx(0.01 * (0.01 + 0.99 * 5 / 10))
    assert np.all(np.diff(lr[:11]) > 0)
    assert lr[10] == pytest.approx(0.01)  # reaches lr right after warm-up
    assert lr[10 + 33] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 33 / 99)))
    assert lr[59] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 49 / 99)))
    assert lr[-1] == pytest.approx(0.0, abs=1e-15)  # cosine ends at min_lr
    assert np.all(np.diff(lr[10:]) < 0)


def test_cosine_final_lr_and_constant():
    lr = lr_schedule(2.0, 21, 0, "cosine", final_lr=0.5)
    assert lr[0] == 2.0 and lr[-1] == pytest.approx(0.5) and lr[10] == pytest.approx(1.25)
    const = lr_schedule(1e-3, 50, 5, "constant")
    assert const[0] == pytest.approx(1e-5) and np.all(const[5:] == 1e-3)


def test_mal_and_order_weights():
    assert mal_weight_schedule(6, 2).tolist() == [2, 2, 1, 1, 1, 1]
    assert order_weight_schedule(4).tolist() == [0, 0.25, 0.5, 0.75]
    assert order_weight_schedule(3, ramp=False).tolist() == [1, 1, 1]


def test_build_schedule_from_epochs():
    cfg = PretrainConfig(epochs=200, warmup_epochs=5, lr=0.01)
    s = build_schedule(cfg, steps_per_epoch=298)  # UCF101: 9537 videos // 32 per global batch
    assert s.total_steps == 200 * 298 and s.warmup_steps == 5 * 298
    assert s.lr[s.warmup_steps] == pytest.approx(0.01) and s.lr[0] == pytest.approx(1e-4)
    assert s.mal_weight[s.warmup_steps - 1] == 2 and s.mal_weight[s.warmup_steps] == 1
    assert build_schedule(PretrainConfig(epochs=3, warmup_steps=4), 10).warmup_steps == 4
    with pytest.raises(ValueError, match="smaller than one global batch"):
        build_schedule(cfg, 0)
