"""Per-iteration schedules, precomputed as arrays (one value per optimizer step).

- learning rate: linear warm-up from `lr * start_factor` (lr/100) at step 0 to `lr` at step `warmup`,
  then cosine from `lr` (first step after warm-up) to `final_lr` (last step; the config's `min_lr`, 1e-6 in
  the release presets as in the release), or constant `lr`;
- MAL weight lambda (of L_MAL): `mal_weight_warmup` (2) during the warm-up steps, `mal_weight` (1) after;
- order weight: linear 0 -> 1 over training (`step / total`), or constant 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def lr_schedule(base_lr: float, total_steps: int, warmup_steps: int, kind: str = "cosine",
                start_factor: float = 0.01, final_lr: float = 0.0) -> np.ndarray:
    """Float64 array `(total_steps,)` of learning rates.

    Warm-up step i (0 <= i < warmup): `lr * (f + (1 - f) * i / warmup)`.
    Cosine step j after warm-up (0 <= j < n = total - warmup):
    `final + (lr - final) * (1 + cos(pi * j / (n - 1))) / 2` (so j=0 gives lr and j=n-1 gives final).
    """
    if total_steps < 1:
        raise ValueError(f"lr_schedule: total_steps={total_steps} must be >= 1")
    if kind not in ("cosine", "constant"):
        raise ValueError(f"lr_schedule: unknown kind {kind!r} (cosine | constant)")
    warmup = max(0, min(int(warmup_steps), total_steps))
    i = np.arange(warmup, dtype=np.float64)
    warm = base_lr * (start_factor + (1.0 - start_factor) * i / max(warmup, 1))
    n = total_steps - warmup
    if kind == "constant" or n == 1:
        rest = np.full(n, base_lr, dtype=np.float64)
    else:
        j = np.arange(n, dtype=np.float64)
        rest = final_lr + (base_lr - final_lr) * 0.5 * (1.0 + np.cos(math.pi * j / (n - 1)))
    return np.concatenate([warm, rest])


def mal_weight_schedule(total_steps: int, warmup_steps: int, warmup_weight: float = 2.0,
                        weight: float = 1.0) -> np.ndarray:
    """`(total_steps,)`: the MAL weight lambda (2 during warm-up, 1 after)."""
    out = np.full(total_steps, weight, dtype=np.float64)
    out[: max(0, warmup_steps)] = warmup_weight
    return out


def order_weight_schedule(total_steps: int, ramp: bool = True) -> np.ndarray:
    """`(total_steps,)`: `step / total` (linear 0 -> 1 over training) or all ones."""
    if not ramp:
        return np.ones(total_steps, dtype=np.float64)
    return np.arange(total_steps, dtype=np.float64) / total_steps


@dataclass(frozen=True)
class TrainingSchedule:
    """All per-step values of one run; index with the optimizer step."""

    steps_per_epoch: int  # optimizer steps per epoch
    total_steps: int  # epochs * steps_per_epoch: what the schedules span
    warmup_steps: int
    lr: np.ndarray
    mal_weight: np.ndarray
    order_weight: np.ndarray


def build_schedule(config, steps_per_epoch: int) -> TrainingSchedule:
    """Schedules of a `PretrainConfig` for `steps_per_epoch` optimizer steps per epoch."""
    if steps_per_epoch < 1:
        raise ValueError(
            f"build_schedule: {steps_per_epoch} optimizer steps per epoch: the dataset is smaller than "
            "one global batch (batch_size x world size x grad_accum); lower batch_size or add videos")
    total = config.epochs * steps_per_epoch
    if config.warmup_steps >= 0:
        warmup = config.warmup_steps
    else:
        warmup = int(round(config.warmup_epochs * steps_per_epoch))
    warmup = min(warmup, total)
    return TrainingSchedule(
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        warmup_steps=warmup,
        lr=lr_schedule(config.lr, total, warmup, config.schedule, final_lr=config.min_lr),
        mal_weight=mal_weight_schedule(total, warmup, config.mal_weight_warmup, config.mal_weight),
        order_weight=order_weight_schedule(total, config.order_ramp),
    )
