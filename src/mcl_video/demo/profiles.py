"""The demo's profiles (benchmark options, budgets, evaluation sizes) and its two pretraining arms."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from mcl_video.data.synth import SynthConfig

DEFAULT_CONFIG = "demo_cpu"  # the shipped config every arm overrides (mcl_video/configs/demo_cpu.yaml)
ARMS = {  # arm -> overrides of the demo config; everything else is shared
    "mcl": ["motion_sampling=true", "motion_crop=true", "use_mal=true"],
    "moco": ["motion_sampling=false", "motion_crop=false", "use_mal=false"],
}
ROW_NAMES = {"random": "random init", "supervised": "supervised", "moco": "MoCo baseline", "mcl": "MCL"}
NO_CLAIM = ("QUICK SMOKE RUN: a tiny benchmark and a few steps; these numbers make NO claim about the "
            "method, they only show that every stage runs.")


@dataclass
class DemoSettings:
    """One demo profile: benchmark options, pretraining overrides and evaluation sizes."""

    name: str
    benchmark: dict  # make_benchmark options
    steps: int  # optimizer steps per self-supervised arm
    batch_size: int
    supervised_steps: int  # AdamW steps of the supervised bound (one clip per video, 1 view)
    supervised_batch_size: int
    supervised_dropout: float = 0.5
    num_clips: int = 4  # uniformly spaced centre-cropped clips per video for the frozen features
    saliency_videos: int = 4
    num_workers: int = 1
    pretrain_overrides: list[str] = field(default_factory=list)  # extra key=value for the demo config
    claim: bool = True


_BENCHMARK_KEYS = ("classes", "train_per_class", "test_per_class", "frames", "size", "sprite_size",
                   "background_contrast", "distractors", "pan_speed", "period", "grayscale")
PROFILES = {
    "full": DemoSettings(  # the calibrated `mcl synth` defaults: benchmarks/calibrate.py, BENCHMARKS.md
        "full", {f.name: f.default for f in dataclasses.fields(SynthConfig) if f.name in _BENCHMARK_KEYS},
        steps=300, batch_size=32, supervised_steps=400, supervised_batch_size=32,
    ),
    "quick": DemoSettings(
        "quick", dict(classes=4, train_per_class=6, test_per_class=4, frames=32, size=32),
        steps=4, batch_size=8, supervised_steps=4, supervised_batch_size=8, num_clips=2,
        saliency_videos=2, claim=False,
    ),
}
