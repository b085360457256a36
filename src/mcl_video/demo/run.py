"""``run_demo``: the whole system end to end on the built-in motion benchmark (``mcl demo``).

Stages (each prints one line with the elapsed time; the stages draw their own progress bars):

1. data      ``make_benchmark`` into ``<work>/data`` (reused when its meta.json has the same options)
2. motion    ``prepare`` (DIS flow) into ``<work>/motion`` (resumable: finished videos are skipped)
3. pretrain  two arms through the project's ``pretrain(config)`` with the same backbone, schedule and
             budget: ``mcl`` (motion sampling, motion crop, MAL) and ``moco`` (all three off)
4. supervised the same backbone trained with labels from a random init (AdamW, ``supervised.py``)
5. features  frozen features of random-init, supervised, MoCo and MCL encoders in one decoding pass
6. probes    motion-class and sprite-shape linear SVMs and retrieval R@1 (binomial standard errors)
7. report    ``results.json``, ``report.html`` with ``curves.png`` and ``saliency.png``

The ``quick`` profile is a smoke run on a tiny benchmark and makes no claim. Every row is trained by
the run itself (finished runs in the work folder are reused).
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mcl_video.demo import report
from mcl_video.demo.profiles import ARMS, DEFAULT_CONFIG, NO_CLAIM, PROFILES, ROW_NAMES, DemoSettings
from mcl_video.demo.stages import (
    arm_config,
    ensure_benchmark,
    ensure_motion,
    extract_all,
    load_records,
    pretrain_arm,
)
from mcl_video.demo.supervised import train_supervised
from mcl_video.evaluation.encoder import load_encoder
from mcl_video.evaluation.protocols import chance_levels, probe_table
from mcl_video.models import build_backbone


class _Clock:
    """Prints ``[demo +MM:SS] stage ...`` lines and records each stage's wall time."""

    def __init__(self):
        self.start = time.perf_counter()
        self.cpu0 = _cpu_seconds()
        self.stages: dict[str, float] = {}
        self._name, self._t = None, self.start

    def stage(self, name: str, what: str) -> None:
        self.finish()
        self._name, self._t = name, time.perf_counter()
        print(f"[demo +{self.fmt(self._t - self.start)}] {name}: {what}", flush=True)

    def finish(self) -> None:
        if self._name is not None:
            self.stages[self._name] = round(time.perf_counter() - self._t, 2)
            self._name = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def cpu(self) -> float:
        return _cpu_seconds() - self.cpu0

    @staticmethod
    def fmt(s: float) -> str:
        return f"{int(s // 60):02d}:{int(s % 60):02d}"


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (synth/prepare/DataLoader workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def probe_rows(features: dict, shapes: dict, train: dict, test: dict) -> dict:
    """Motion probe, shape probe and R@1 (on motion labels) of each encoder's features.

    ``features``: ``{name: (train N x C, test M x C)}``; ``train``/``test``: ``extract_features``
    outputs (labels and ids); ``shapes``: video path -> shape index. Returns ``{name: metrics}``."""
    labels = {"motion": (train["labels"], test["labels"]),
              "shape": (np.array([shapes[i] for i in train["ids"]]),
                        np.array([shapes[i] for i in test["ids"]]))}
    return probe_table(features, labels, retrieval="motion")


def _encoders(config, arms: dict, supervised: nn.Module, seed: int) -> dict:
    """``{row key: backbone}`` for every evaluated encoder, in table order."""
    torch.manual_seed(seed)
    encoders = {"random": build_backbone(config.backbone, **config.backbone_options).eval(),
                "supervised": supervised}
    for arm in ("moco", "mcl"):
        encoders[arm] = load_encoder(arms[arm]["checkpoint"])
    return encoders


def _train_all(clock: _Clock, settings: DemoSettings, work: Path, seed: int, config: str | Path) -> dict:
    """Stages 1-4: benchmark, motion cache, the two pretraining arms, the supervised bound."""
    clock.stage("data", f"built-in benchmark in {work / 'data'}")
    _, data_reused = ensure_benchmark(work / "data", settings.benchmark)
    configs = {arm: arm_config(arm, settings, work, seed, config) for arm in ARMS}
    base = configs["mcl"]
    clock.stage("motion", f"DIS flow -> motion cache in {work / 'motion'}")
    motion = ensure_motion(work / "data", work / "motion", base.clip_len, base.stride)
    records, classes, shapes = load_records(work)
    arms = {}
    for arm in ("mcl", "moco"):
        clock.stage(f"pretrain-{arm}",
                    f"{settings.steps} steps x batch {settings.batch_size} -> {configs[arm].out}")
        run_dir, ckpt, reused = pretrain_arm(configs[arm])
        arms[arm] = {"run_dir": run_dir, "checkpoint": ckpt, "reused": reused}
    clock.stage("supervised", f"{settings.supervised_steps} labelled steps from a random init")
    sup = train_supervised(base, settings, work, seed, records)
    reused = {"data": data_reused, "motion_prepared": motion.prepared, "motion_skipped": motion.skipped,
              **{arm: arms[arm]["reused"] for arm in arms}, "supervised": sup["reused"]}
    return {"configs": configs, "records": records, "classes": classes, "shapes": shapes, "arms": arms,
            "supervised": sup, "reused": reused}


def _results(settings: DemoSettings, work: Path, seed: int, state: dict, meta: dict, rows: dict) -> dict:
    """The results dict (results.json) without timings and saliency."""
    shapes, arms = state["shapes"], state["arms"]
    shape_chance = chance_levels(np.array([shapes[i] for i in meta["train"]["ids"]]),
                                 np.array([shapes[i] for i in meta["test"]["ids"]]))
    motion_chance = chance_levels(meta["train"]["labels"], meta["test"]["labels"])
    return {
        "profile": settings.name, "claim": settings.claim, "seed": seed, "work_dir": str(work),
        "benchmark": settings.benchmark, "classes": state["classes"],
        "num_train": int(len(meta["train"]["labels"])), "num_test": int(len(meta["test"]["labels"])),
        "reused": state["reused"],
        "pretrain": {"steps": settings.steps, "batch_size": settings.batch_size,
                     "runs": {a: str(arms[a]["run_dir"]) for a in arms}},
        "supervised": {"steps": settings.supervised_steps,
                       "finetune_test_top1": state["supervised"]["test_top1"]},
        "chance": {"motion": motion_chance["accuracy"], "shape": shape_chance["accuracy"],
                   "r1": motion_chance["r1"]},
        "rows": [{"key": k, "name": ROW_NAMES[k], **rows[k]} for k in rows],
    }


def run_demo(work_dir: str | Path = "runs/demo", quick: bool = False, seed: int = 0,
             config: str | Path = DEFAULT_CONFIG, settings: DemoSettings | None = None) -> dict:
    """Run the demo (see the module docstring) and return the results dict also saved as results.json.

    ``quick`` uses the tiny smoke profile in ``<work_dir>/quick``; ``settings`` replaces the profile
    (tests). ``config``: the pretraining config every arm overrides, a shipped config's name or a path."""
    settings = settings or PROFILES["quick" if quick else "full"]
    work = Path(work_dir) / "quick" if quick else Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    clock = _Clock()
    if not settings.claim:
        print(NO_CLAIM, flush=True)
    state = _train_all(clock, settings, work, seed, config)
    base, records, arms = state["configs"]["mcl"], state["records"], state["arms"]
    clock.stage("features", f"{settings.num_clips} centre clips per video, 4 frozen encoders")
    encoders = _encoders(base, arms, state["supervised"]["backbone"], seed)
    feats, meta = extract_all(encoders, base, records, work, settings.num_clips)
    clock.stage("probes", "linear SVM (motion class, sprite shape), retrieval R@1")
    rows = probe_rows(feats, state["shapes"], meta["train"], meta["test"])
    clock.stage("report", f"{work / 'report.html'}")
    saliency = report.saliency_figure(base, arms, records["test"], work, settings.saliency_videos)
    curves = report.training_curves({a: arms[a]["run_dir"] for a in ("mcl", "moco")},
                                    state["supervised"]["history"], work / "curves.png")
    clock.finish()
    results = _results(settings, work, seed, state, meta, rows)
    results.update(saliency=saliency["cosines"], stages_s=clock.stages, wall_s=round(clock.elapsed(), 1),
                   cpu_s=round(clock.cpu(), 1))
    table = report.format_rows(results)
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    report.write_html(work / "report.html", results, curves, saliency["png"])
    print(table, flush=True)
    print(f"[demo +{clock.fmt(clock.elapsed())}] done: wall {results['wall_s']:.0f} s, CPU "
          f"{results['cpu_s']:.0f} s; {work / 'results.json'}, {work / 'report.html'}", flush=True)
    if not settings.claim:
        print(NO_CLAIM, flush=True)
    return results
