"""Training logs: a progress bar (plain periodic lines when the output is not a terminal, see
`mcl_video.progress`), TensorBoard scalars and a JSON-lines metrics log (`metrics.jsonl`).

Every `log_every` steps (and at the last step) the step's metrics are averaged over ranks (a collective:
every rank calls `step`), then the main rank writes one JSON line and one TensorBoard scalar per metric
(`train/<name>`): every metric the model's forward returned (for MCL: each loss term, pos_prob, the three
MAL cosines, mal_flat_loss = the loss a constant saliency map would get, mal_dead = share of clips whose
saliency is zero everywhere), the LR, the loss weights, steps/s and samples/s (a sample is one query clip
and its three key clips). No list of names is kept here: what the forward reports is what is logged.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from mcl_video.progress import progress as progress_bar
from mcl_video.training.distributed import all_reduce_mean

SHOWN = ("loss", "loss_inter", "loss_mal", "pos_prob")  # in the progress bar
DEAD_SALIENCY_WARNING = 0.1  # warn once when more than this share of clips has an all-zero saliency map

log = logging.getLogger(__name__)


def run_label(config) -> str:
    """The progress bar's label: ``finetune`` for a fine-tuning run's config, else ``pretrain``."""
    return "finetune" if "finetune" in type(config).__name__.lower() else "pretrain"


class MetricLogger:
    def __init__(self, run_dir: Path, is_main: bool, start_step: int, final_step: int, config,
                 samples_per_step: int, device: torch.device | str = "cpu", label: str | None = None):
        """``label``: the progress bar's name (default :func:`run_label` of ``config``)."""
        self.is_main, self.final_step, self.device = is_main, final_step, torch.device(device)
        self.log_every, self.samples_per_step = config.log_every, samples_per_step
        self.bar = self.writer = self.jsonl = None
        self._step_times: list[float] = []
        self._warned_dead = False
        if not is_main:
            return
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(run_dir / "metrics.jsonl", "a")  # appended to on resume
        if config.tensorboard:  # lazy: tensorboard is an optional, heavy import
            from torch.utils.tensorboard import SummaryWriter  # lazy: TensorBoard loads slowly, often off

            self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=start_step + 1)
        if config.progress:
            self.bar = progress_bar(total=final_step, initial=start_step, unit="step", dynamic_ncols=True,
                                desc=label or run_label(config))

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
        if not self.is_main:
            return
        if values.get("mal_dead", 0.0) > DEAD_SALIENCY_WARNING and not self._warned_dead:
            self._warned_dead = True
            log.warning("step %d: %.0f%% of the clips have an all-zero saliency map (mal_dead), which the "
                        "motion alignment loss cannot move (loss 3 each, no gradient through the ReLU); "
                        "in BENCHMARKS.md's ablation saliency=gradient (the release's) had none and "
                        "Grad-CAM about 20%%", step, 100 * values["mal_dead"])
        record = {"step": step, "epoch": epoch, "time": round(time.time(), 3), **values}
        self.jsonl.write(json.dumps(record) + "\n")
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
