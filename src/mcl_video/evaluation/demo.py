"""``run_demo``: the whole system end to end on the built-in motion benchmark (``mcl demo``).

Stages (each prints one line with the elapsed time; the stages draw their own tqdm bars):

1. data      ``make_benchmark`` into ``<work>/data`` (reused when its meta.json has the same options)
2. motion    ``prepare`` (DIS flow) into ``<work>/motion`` (resumable: finished videos are skipped)
3. pretrain  two arms through the project's ``pretrain(config)`` with the same backbone, schedule and
             budget: ``mcl`` (motion sampling, motion crop, MAL) and ``moco`` (all three off)
4. supervised the same backbone trained with labels from a random init (AdamW, ``supervised.py``)
5. features  frozen features of random-init, supervised, MoCo and MCL encoders in one decoding pass
6. probes    motion-class and sprite-shape linear SVMs and retrieval R@1 (binomial standard errors)
7. report    ``results.json``, ``report.html`` with ``curves.png`` and ``saliency.png``

The ``quick`` profile is a smoke run on a tiny benchmark and makes no claim. Shipped checkpoints
(``checkpoints/demo/<arm>/checkpoint.pt`` with a ``README.md`` beside it) are evaluated as extra rows
unless ``full=True``; the live rows are always trained.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from mcl_video.data.synth import SynthConfig

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "demo_cpu.yaml"
SHIPPED_DIR = REPO_ROOT / "checkpoints" / "demo"
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
    pretrain_overrides: list[str] = field(default_factory=list)  # extra key=value for demo_cpu.yaml
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


# ------------------------------------------------------------------------------------- data + motion
def ensure_benchmark(data_dir: Path, options: dict) -> tuple[Path, bool]:
    """Generate the benchmark into ``data_dir`` unless its meta.json records the same options.

    Returns ``(data_dir, reused)``. A folder with other options (or a half-written one) is replaced.
    """
    from mcl_video.data.synth import SynthConfig, make_benchmark

    wanted = SynthConfig(**options).recorded()
    meta = data_dir / "meta.json"
    if meta.is_file() and json.loads(meta.read_text()).get("config") == wanted:
        return data_dir, True
    if data_dir.exists() and any(data_dir.iterdir()):
        log.warning("%s holds another benchmark (or an unfinished one): regenerating it", data_dir)
    make_benchmark(data_dir, overwrite=True, progress=True, **options)
    return data_dir, False


def ensure_motion(data_dir: Path, cache_dir: Path, clip_len: int, stride: int):
    """DIS-flow motion cache of every train and test video (resumable); a cache built with other
    settings, or for a regenerated benchmark, is rebuilt."""
    from mcl_video.motion.cache import CacheSettings
    from mcl_video.motion.prepare import prepare

    settings = CacheSettings(flow_backend="dis", clip_len=clip_len, stride=stride, resize_short=None)
    stamp = cache_dir / "benchmark.json"
    bench = json.loads((data_dir / "meta.json").read_text())["config"]
    if cache_dir.exists() and (not stamp.is_file() or json.loads(stamp.read_text()) != bench):
        shutil.rmtree(cache_dir)
    try:
        summary = prepare(data_dir / "annotations", cache_dir, settings, workers=1, dataset="ucf101",
                          video_root=data_dir / "videos")
    except ValueError:  # other cache settings (e.g. clip_len changed): rebuild
        shutil.rmtree(cache_dir)
        summary = prepare(data_dir / "annotations", cache_dir, settings, workers=1, dataset="ucf101",
                          video_root=data_dir / "videos")
    stamp.write_text(json.dumps(bench))
    if not summary.ok:
        raise RuntimeError(f"demo: motion preparation failed for {len(summary.failed)} video(s), e.g. "
                           f"{next(iter(summary.failed.items()))}; see {cache_dir}/failed")
    return summary


# ------------------------------------------------------------------------------------------ training
def arm_config(arm: str, settings: DemoSettings, work: Path, seed: int, config_path: Path,
               arm_overrides: list[str] | None = None):
    """The ``PretrainConfig`` of one arm: ``configs/demo_cpu.yaml`` + the demo's and the arm's overrides.

    ``arm_overrides`` replaces ``ARMS[arm]`` (other arms, e.g. the ablation's); the run goes to
    ``<work>/runs/<arm>``."""
    from mcl_video.training import load_config

    data = work / "data"
    num_train = settings.benchmark["classes"] * settings.benchmark["train_per_class"]
    epochs = max(1, math.ceil(settings.steps * settings.batch_size / max(num_train, 1)))
    overrides = [
        f"data={data / 'annotations'}", f"video_root={data / 'videos'}", f"cache={work / 'motion'}",
        f"out={work / 'runs' / arm}", f"seed={seed}", f"batch_size={settings.batch_size}",
        f"epochs={epochs}", f"max_steps={settings.steps}", f"num_workers={settings.num_workers}",
        f"warmup_steps={max(1, settings.steps // 10)}", f"checkpoint_every={max(1, settings.steps // 2)}",
        f"log_every={max(1, min(5, settings.steps // 4))}", "tensorboard=false", "device=cpu",
        *settings.pretrain_overrides, *(ARMS[arm] if arm_overrides is None else arm_overrides),
    ]
    return load_config(config_path, overrides)


def _comparable(values: dict) -> dict:
    return {k: v for k, v in values.items() if k not in ("resume", "progress")}


def pretrain_arm(config) -> tuple[Path, Path, bool]:
    """Train (or reuse / resume) one arm -> ``(run_dir, final checkpoint, reused)``.

    A run folder whose config.yaml differs from ``config`` is deleted first (the demo owns it)."""
    from mcl_video.training import latest_checkpoint, load_checkpoint, pretrain
    from mcl_video.training.config import config_to_dict

    run_dir = Path(config.out)
    saved = run_dir / "config.yaml"
    wanted = _comparable(config_to_dict(config))
    if saved.is_file() and _comparable(yaml.safe_load(saved.read_text())) != wanted:
        log.warning("%s was trained with another config: retraining", run_dir)
        shutil.rmtree(run_dir)
    last = latest_checkpoint(run_dir) if run_dir.exists() else None
    if last is not None and int(load_checkpoint(last)["step"]) >= config.max_steps:
        return run_dir, last, True
    config = dataclasses.replace(config, resume=last is not None)
    pretrain(config)
    return run_dir, latest_checkpoint(run_dir), False


# ---------------------------------------------------------------------------------------- evaluation
class StackedEncoders(nn.Module):
    """Several backbones on one input: ``B x 3 x T x H x W`` -> ``B x sum(C_i)`` (columns in order),
    so the clips are decoded once for all encoders."""

    def __init__(self, encoders: dict[str, nn.Module]):
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.widths = {k: int(e.num_features) for k, e in encoders.items()}
        self.num_features = sum(self.widths.values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([e(x) for e in self.encoders.values()], dim=1)

    def split(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """``N x sum(C_i)`` -> ``{name: N x C_i}``."""
        out, start = {}, 0
        for name, width in self.widths.items():
            out[name] = features[:, start : start + width]
            start += width
        return out


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy ``p`` measured on ``n`` independent test items."""
    return math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))


def chance_levels(train_y: np.ndarray, test_y: np.ndarray) -> dict:
    """Accuracy of the best constant guess (most frequent test class) and the R@1 of a random gallery
    item: ``sum_c p_test(c) p_train(c)``."""
    classes = np.union1d(train_y, test_y)
    p_test = np.array([(test_y == c).mean() for c in classes])
    p_train = np.array([(train_y == c).mean() for c in classes])
    return {"accuracy": float(p_test.max()), "r1": float((p_test * p_train).sum())}


def probe_rows(features: dict, shapes: dict, train: dict, test: dict) -> dict:
    """Motion probe, shape probe and R@1 of each encoder's features.

    ``features``: ``{name: (train N x C, test M x C)}``; ``train``/``test``: ``extract_features``
    outputs (labels and ids); ``shapes``: video path -> shape index. Returns ``{name: metrics}``."""
    from mcl_video.evaluation.probes import linear_probe_svm
    from mcl_video.evaluation.retrieval import retrieval_recall

    shape_tr = np.array([shapes[i] for i in train["ids"]])
    shape_te = np.array([shapes[i] for i in test["ids"]])
    n = len(test["labels"])
    rows = {}
    for name, (xtr, xte) in features.items():
        motion = linear_probe_svm(xtr, train["labels"], xte, test["labels"])["top1"]
        shape = linear_probe_svm(xtr, shape_tr, xte, shape_te)["top1"]
        r1 = retrieval_recall(xte, test["labels"], xtr, train["labels"], ks=(1,))[1]
        rows[name] = {"motion_acc": motion, "motion_se": binomial_se(motion, n), "shape_acc": shape,
                      "shape_se": binomial_se(shape, n), "r1": r1, "r1_se": binomial_se(r1, n)}
    return rows


def find_shipped(arm: str, root: Path = SHIPPED_DIR) -> Path | None:
    """``<root>/<arm>/checkpoint.pt`` when a ``README.md`` (config, seed, command, time) is beside it."""
    ckpt = root / arm / "checkpoint.pt"
    if not ckpt.is_file():
        return None
    if not (ckpt.parent / "README.md").is_file():
        log.warning("%s has no README.md beside it (how it was made): not used", ckpt)
        return None
    return ckpt


# ---------------------------------------------------------------------------------------- the demo
def _records(work: Path) -> tuple[dict, list[str], dict]:
    """Train/test ``VideoRecord``s, class names, and video path -> shape index from meta.json."""
    from mcl_video.data import read_split

    data = work / "data"
    records = {s: read_split("ucf101", data / "annotations", 1, s, video_root=data / "videos")
               for s in ("train", "test")}
    meta = json.loads((data / "meta.json").read_text())
    shapes = {v["path"]: meta["shapes"].index(v["shape"]) for v in meta["videos"]}
    return records, meta["classes"], shapes


def _encoders(config, arms: dict, supervised: nn.Module, seed: int, full: bool) -> tuple[dict, dict]:
    """``{row key: backbone}`` and ``{row key: source}`` for every evaluated encoder."""
    from mcl_video.evaluation.encoder import load_encoder
    from mcl_video.models import build_backbone

    torch.manual_seed(seed)
    encoders = {"random": build_backbone(config.backbone, **config.backbone_options).eval(),
                "supervised": supervised}
    sources = {"random": "live", "supervised": "live"}
    for arm in ("moco", "mcl"):
        encoders[arm] = load_encoder(arms[arm]["checkpoint"])
        sources[arm] = "live"
        shipped = None if full else find_shipped(arm)
        if shipped is not None:
            encoders[f"{arm}_shipped"] = load_encoder(shipped)
            sources[f"{arm}_shipped"] = f"shipped ({shipped})"
    return encoders, sources


def extract_videos(stacked: StackedEncoders, config, video_root: Path, records, num_clips: int):
    """Frozen features of one set of videos for every stacked encoder, decoded once ->
    ``({name: N x C}, extract_features result)`` (centre crop at the config's clip and size)."""
    from mcl_video.evaluation.datasets import EvalClipDataset
    from mcl_video.evaluation.features import extract_features

    ds = EvalClipDataset(video_root, records, config.clip_len, config.stride, num_clips, config.size)
    res = extract_features(stacked, ds, batch_size=8)
    return stacked.split(res["features"]), res


def extract_all(encoders: dict, config, records: dict, work: Path, num_clips: int) -> tuple[dict, dict]:
    """One decoding pass per split for all encoders -> ``({name: (train, test)}, {split: meta})``."""
    stacked = StackedEncoders(encoders).eval()
    out, meta = {}, {}
    for split in ("train", "test"):
        out[split], meta[split] = extract_videos(stacked, config, work / "data" / "videos", records[split],
                                                 num_clips)
    return {k: (out["train"][k], out["test"][k]) for k in encoders}, meta


def _train_all(clock: _Clock, settings: DemoSettings, work: Path, seed: int, config_path: Path) -> dict:
    """Stages 1-4: benchmark, motion cache, the two pretraining arms, the supervised bound."""
    from mcl_video.evaluation.supervised import train_supervised

    clock.stage("data", f"built-in benchmark in {work / 'data'}")
    _, data_reused = ensure_benchmark(work / "data", settings.benchmark)
    configs = {arm: arm_config(arm, settings, work, seed, config_path) for arm in ARMS}
    base = configs["mcl"]
    clock.stage("motion", f"DIS flow -> motion cache in {work / 'motion'}")
    motion = ensure_motion(work / "data", work / "motion", base.clip_len, base.stride)
    records, classes, shapes = _records(work)
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


def _results(settings: DemoSettings, work: Path, seed: int, state: dict, meta: dict, rows: dict,
             sources: dict) -> dict:
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
        "rows": [{"key": k, "name": ROW_NAMES[k.split("_")[0]], "source": sources[k], **rows[k]}
                 for k in sources],
    }


def run_demo(work_dir: str | Path = "runs/demo", quick: bool = False, full: bool = False, seed: int = 0,
             config_path: str | Path = DEFAULT_CONFIG, settings: DemoSettings | None = None) -> dict:
    """Run the demo (see the module docstring) and return the results dict also saved as results.json.

    ``quick`` uses the tiny smoke profile in ``<work_dir>/quick``; ``settings`` replaces the profile
    (tests). ``full`` ignores shipped checkpoints."""
    from mcl_video.evaluation import report

    settings = settings or PROFILES["quick" if quick else "full"]
    work = Path(work_dir) / "quick" if quick else Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    clock = _Clock()
    if not settings.claim:
        print(NO_CLAIM, flush=True)
    state = _train_all(clock, settings, work, seed, Path(config_path))
    base, records, arms = state["configs"]["mcl"], state["records"], state["arms"]
    clock.stage("features", f"{settings.num_clips} centre clips per video, 4+ frozen encoders")
    encoders, sources = _encoders(base, arms, state["supervised"]["backbone"], seed, full)
    feats, meta = extract_all(encoders, base, records, work, settings.num_clips)
    clock.stage("probes", "linear SVM (motion class, sprite shape), retrieval R@1")
    rows = probe_rows(feats, state["shapes"], meta["train"], meta["test"])
    clock.stage("report", f"{work / 'report.html'}")
    saliency = report.saliency_figure(base, arms, records["test"], work, settings.saliency_videos)
    curves = report.training_curves({a: arms[a]["run_dir"] for a in ("mcl", "moco")},
                                    state["supervised"]["history"], work / "curves.png")
    clock.finish()
    results = _results(settings, work, seed, state, meta, rows, sources)
    results.update(saliency=saliency["cosines"], stages_s=clock.stages, wall_s=round(clock.elapsed(), 1),
                   cpu_s=round(clock.cpu(), 1))
    table = report.format_rows(results)
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    report.write_html(work / "report.html", results, table, curves, saliency["png"])
    print(table, flush=True)
    print(f"[demo +{clock.fmt(clock.elapsed())}] done: wall {results['wall_s']:.0f} s, CPU "
          f"{results['cpu_s']:.0f} s; {work / 'results.json'}, {work / 'report.html'}", flush=True)
    if not settings.claim:
        print(NO_CLAIM, flush=True)
    return results
