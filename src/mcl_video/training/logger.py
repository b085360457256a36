"""Training logs: a tqdm bar, TensorBoard scalars and a JSON-lines metrics log (`metrics.jsonl`).

Every `log_every` steps (and at the last step) the step's metrics are averaged over ranks (a collective:
every rank calls `step`), then the main rank writes one JSON line and one TensorBoard scalar per metric
(`train/<name>`): every metric the model's forward returned (for MCL: each loss term, pos_prob, the three
MAL cosines, mal_flat_loss = the loss a constant saliency map would get, mal_dead = share of clips whose
saliency is zero everywhere), the LR, the loss weights, steps/s and samples/s (a sample is one query clip
and its three key clips). No list of names is kept here: what the forward reports is what is logged.

On resume from step N the lines of later steps (logged by the interrupted run after its last
checkpoint) and a torn last line are dropped first, so every step is logged once.

``metrics.jsonl`` stays valid JSON: a step whose averaged metrics hold NaN or inf (a diverged run, an
infinite learning rate) is not logged; every rank raises :class:`NonFiniteMetricError` naming them.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from mcl_video.atomic import atomic_path
from mcl_video.errors import RunFailedError
from mcl_video.training.distributed import all_reduce_mean

SHOWN = ("loss", "loss_inter", "loss_mal", "pos_prob")  # in the progress bar
DEAD_SALIENCY_WARNING = 0.1  # warn once when more than this share of clips has an all-zero saliency map

log = logging.getLogger(__name__)


class NonFiniteMetricError(RunFailedError, FloatingPointError):
    """A step's metrics hold NaN/inf: the line is not written (JSON has no NaN/inf)."""


def finite_record(record: dict, step: int) -> str:
    """``record`` as one strict JSON line; NaN/inf values raise :class:`NonFiniteMetricError`."""
    bad = [f"{k}={v}" for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise NonFiniteMetricError(
            f"step {step}: metric(s) {', '.join(bad)} are not finite; nothing was logged for this step "
            "(metrics.jsonl stays valid JSON): check lr and the loss weights, then resume from the last "
            "checkpoint (resume=true)")
    return json.dumps(record, allow_nan=False)


def trim_metrics(path: Path, last_step: int) -> int:
    """Keep the lines of ``path`` with ``step <= last_step`` (and whole JSON); -> lines dropped."""
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:  # torn by a kill mid-write
            continue
        if isinstance(record, dict) and int(record.get("step", 0)) <= last_step:
            kept.append(line)
    if len(kept) != len(lines):
        with atomic_path(path, "free space, then continue with resume=true") as tmp:
            tmp.write_text("".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


class MetricLogger:
    def __init__(self, run_dir: Path, is_main: bool, start_step: int, final_step: int, config,
                 samples_per_step: int, device: torch.device | str = "cpu", desc: str = "pretrain"):
        self.is_main, self.final_step, self.device = is_main, final_step, torch.device(device)
        self.log_every, self.samples_per_step = config.run.log_every, samples_per_step
        self.bar = self.writer = self.jsonl = None
        self._step_times: list[float] = []
        self._warned_dead = False
        if not is_main:
            return
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        dropped = trim_metrics(run_dir / "metrics.jsonl", start_step)
        if dropped:
            log.info("metrics.jsonl: dropped %d line(s) after step %d (logged after the last checkpoint)",
                     dropped, start_step)
        self.jsonl = open(run_dir / "metrics.jsonl", "a")  # appended to on resume
        if config.run.tensorboard:  # lazy: tensorboard is an optional, heavy import
            from torch.utils.tensorboard import SummaryWriter  # lazy: TensorBoard loads slowly, often off

            self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=start_step + 1)
        if config.run.progress:
            self.bar = tqdm(total=final_step, initial=start_step, unit="step", dynamic_ncols=True,
                            desc=desc)

    def step(self, step: int, epoch: int, metrics: dict[str, float], seconds: float) -> None:
        """Record optimizer step `step` (1-based: steps done); collective every `log_every` steps."""
        self._step_times.append(seconds)
        if self.bar is not None:
            self.bar.update(1)
        if step % self.log_every and step != self.final_step:
            return
        names = sorted(metrics)
        # on the training device: NCCL reduces CUDA tensors only
        local = torch.tensor([metrics[k] for k in names], dtype=torch.float64, device=self.device)
        mean = all_reduce_mean(local).cpu()
        values = dict(zip(names, mean.tolist()))
        per_step = sum(self._step_times) / len(self._step_times)
        self._step_times.clear()
        values["steps_per_s"] = 1.0 / max(per_step, 1e-12)
        values["samples_per_s"] = values["steps_per_s"] * self.samples_per_step
        finite_record(values, step)  # raises on every rank alike (the values are the ranks' mean)
        if not self.is_main:
            return
        if values.get("mal_dead", 0.0) > DEAD_SALIENCY_WARNING and not self._warned_dead:
            self._warned_dead = True
            log.warning("step %d: %.0f%% of the clips have an all-zero saliency map (mal_dead), which the "
                        "motion alignment loss cannot move (loss 3 each, no gradient through the ReLU); "
                        "in BENCHMARKS.md's ablation saliency=gradient (the release's) had none and "
                        "Grad-CAM about 20%%", step, 100 * values["mal_dead"])
        record = {"step": step, "epoch": epoch, "time": round(time.time(), 3), **values}
        self.jsonl.write(finite_record(record, step) + "\n")
        self.jsonl.flush()
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"train/{k}", v, step)
        if self.bar is not None:
            self.bar.set_postfix({k: f"{values[k]:.3g}" for k in SHOWN if k in values}, refresh=False)

    def close(self) -> None:
        for thing in (self.bar, self.writer, self.jsonl):
            if thing is not None:
                thing.close()
