"""When does motion focus help? Arms x regimes x seeds on the built-in benchmark (BENCHMARKS.md
"Motion-focus study"), every run cached as one JSON file so the study resumes and can be continued.

Regimes are built-in benchmarks (``mcl_video.data.synth``) with a small moving actor (its region is a
fraction of the frame area), idle stretches (the sprite rests 40% of each video, so clips differ in
motion), static distractors and a slowly panning camera. Arms (the semantics of benchmarks/ablation.py;
every arm is ``configs/demo_cpu.yaml`` plus the budget below plus these overrides):

    baseline     motion sampling, motion crop, MAL and motion-broken negatives off (MoCo-style)
    mcl          full MCL: motion sampling + motion crop + MAL (gradient saliency)
    temporal     baseline + motion-focused temporal sampling (clip starts)
    crop         baseline + motion-focused spatial cropping
    mal          baseline + MAL, gradient saliency (the release's)
    mcl_mlp      full MCL with the MLP order head (needs the ``order_head`` config key)
    supervised   the same backbone trained with labels (calibration bound)
    random       the randomly initialised backbone (calibration floor)

Each run: pretrain (resumable from its checkpoints), then frozen features of ``--clips`` centre clips per
video, a linear-SVM probe of the motion class and of the sprite shape, and retrieval R@1 (test queries
the training set); then the real Weizmann clips with the protocol of benchmarks/ablation.py (``--weizmann``,
default ``$MCL_SHARED/data/actions-weizmann-mocogan``, converted once to grayscale MP4s under ``--work``;
``--weizmann-clips`` centre clips per video at the run's input size): leave-one-out 1-NN on cosine
similarity (``wz_1nn``) and leave-one-out linear SVM (``wz_svm``). They are left out, with a message,
when the folder is absent, and skipped with ``--no-weizmann``. Result:
``<results>/<regime>/<arm>/seed-<n>.json`` (metrics, design key, training time, loss summary).
``--resume`` reuses finished results whose design key matches and resumes unfinished runs; without it a
finished result is an error. A reused result without the Weizmann columns gets them from the run's final
checkpoint (the one whose step and settings match its design key; the supervised arm's saved backbone;
the random arm's seeded init) without retraining, and is kept as it is when that is gone. The Weizmann
settings are not part of the design key (results from before them still match); each result records
``wz_clips``. ``--report`` only summarises the results folder: per regime and arm, the mean over seeds
of every column ("—" where no result has it), the paired difference to the baseline by seed (mean, 95%
t-interval) of the motion probe and both Weizmann columns and, with ``--plot``, the motion gain vs
moving-region fraction.

    python benchmarks/motion_focus.py --arms baseline supervised random --seeds 0 1 --steps 400
    python benchmarks/motion_focus.py --arms baseline mcl --seeds 0 1 2 3 4 --resume
    python benchmarks/motion_focus.py --report --json study.json --plot gain.png
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import shutil
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from mcl_video.demo.ablation import prepare_weizmann, weizmann_rows
from mcl_video.demo.study import (
    ARMS,
    BASE,
    COMMON,
    REGIMES,
    add_weizmann,
    cached_result,
    format_seeds,
    format_summary,
    has_weizmann,
    load_results,
    plot_gain,
    summarise,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MCL_SHARED", REPO.parent / "shared"))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    p.add_argument("--arms", nargs="+", default=["baseline", "mcl"], choices=list(ARMS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--size", type=int, default=64, help="frame side of the benchmark and the input size")
    p.add_argument("--steps", type=int, default=600, help="optimizer steps per run")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--clips", type=int, default=4, help="centre clips per video for the frozen features")
    p.add_argument("--videos", type=int, nargs=2, default=[96, 64], metavar=("TRAIN", "TEST"),
                   help="training and test videos per class")
    p.add_argument("--crop-scale", type=float, nargs=2, default=[0.2, 1.0], metavar=("MIN", "MAX"),
                   help="area fraction range of the training crops (every arm; the release: 0.2 1.0)")
    p.add_argument("--work", default="runs/motion_focus", help="benchmarks, motion caches and run folders")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "motion_focus"),
                   help="one JSON per (regime, arm, seed)")
    p.add_argument("--resume", action="store_true",
                   help="reuse finished results (adding missing Weizmann columns), resume unfinished runs")
    p.add_argument("--weizmann", default=str(SHARED / "data" / "actions-weizmann-mocogan"),
                   help="folder of Weizmann JPEG strips (left out with a message when absent)")
    p.add_argument("--weizmann-clips", type=int, default=8, help="centre clips per Weizmann video")
    p.add_argument("--no-weizmann", action="store_true", help="skip the Weizmann columns")
    p.add_argument("--report", action="store_true", help="only summarise the results folder")
    p.add_argument("--config", default=None, help="base config (default: the demo's demo_cpu.yaml)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="pretraining device (not part of the design key; recorded with each result)")
    p.add_argument("--workers", type=int, default=1, help="loader and motion-preparation processes")
    p.add_argument("--json", default=None, help="write the summary (and every run) here")
    p.add_argument("--plot", default=None, help="PNG of the gain over the baseline vs region fraction")
    return p.parse_args(argv)


def base_config_path(arg: str | None) -> Path:
    """The demo config: ``configs/demo_cpu.yaml`` in the repository or inside the package."""
    if arg:
        return Path(arg)
    import mcl_video

    package = Path(mcl_video.__file__).parent
    for path in (REPO / "configs" / "demo_cpu.yaml", package / "configs" / "demo_cpu.yaml"):
        if path.is_file():
            return path
    raise SystemExit("motion_focus.py: demo_cpu.yaml not found; pass --config PATH")


def synth_options(args, regime: str) -> dict:
    return {**COMMON, "size": args.size, "moving_region": REGIMES[regime], "train_per_class": args.videos[0],
            "test_per_class": args.videos[1]}


def design_key(args, regime: str, arm: str, seed: int) -> dict:
    """Everything that determines a run's result; a cached result is reused only when it matches."""
    return json.loads(json.dumps({"regime": regime, "arm": arm, "seed": seed,
                                  "benchmark": synth_options(args, regime), "steps": args.steps,
                                  "batch": args.batch, "clips": args.clips, "crop_scale": args.crop_scale,
                                  "overrides": ARMS[arm], "config": base_config_path(args.config).name}))


# ------------------------------------------------------------------------------------ data + motion
def ensure_regime(args, work: Path, regime: str) -> Path:
    """Benchmark and motion cache of a regime under ``work/<regime>`` (reused when the options match)."""
    from mcl_video.data.synth import SynthConfig, make_benchmark
    from mcl_video.motion.cache import CacheSettings
    from mcl_video.motion.prepare import prepare

    root = work / regime
    options = synth_options(args, regime)
    meta = root / "data" / "meta.json"
    if not meta.is_file() or json.loads(meta.read_text()).get("config") != SynthConfig(**options).recorded():
        shutil.rmtree(root, ignore_errors=True)
        print(f"[motion_focus] {regime}: writing the benchmark {options}", flush=True)
        make_benchmark(root / "data", progress=False, **options)
    settings = CacheSettings(flow_backend="dis", clip_len=8, stride=2, resize_short=None)
    summary = prepare(root / "data" / "annotations", root / "motion", settings, dataset="ucf101",
                      video_root=root / "data" / "videos", progress=False, workers=args.workers)
    if not summary.ok:
        raise SystemExit(f"motion_focus.py: motion preparation failed for {len(summary.failed)} video(s); "
                         f"see `mcl inspect {root / 'motion'}`")
    return root


def seed_dir(root: Path, seed: int) -> Path:
    """``<regime>/seed-<n>`` with ``data`` and ``motion`` linked to the regime's."""
    work = root / f"seed-{seed}"
    work.mkdir(parents=True, exist_ok=True)
    for name in ("data", "motion"):
        if not (work / name).exists():
            (work / name).symlink_to(root / name, target_is_directory=True)
    return work


def records_of(work: Path) -> tuple[dict, dict]:
    from mcl_video.data import read_split

    data = work / "data"
    records = {s: read_split("ucf101", data / "annotations", 1, s, video_root=data / "videos")
               for s in ("train", "test")}
    meta = json.loads((data / "meta.json").read_text())
    shapes = {v["path"]: meta["shapes"].index(v["shape"]) for v in meta["videos"]}
    return records, shapes


# --------------------------------------------------------------------------------------- training
def arm_config(args, work: Path, arm: str, seed: int):
    """The pretraining config of one arm (the demo config + budget + the arm's overrides)."""
    from mcl_video.training import PretrainConfig, load_config

    overrides = ARMS[arm] or BASE
    if arm == "mcl_mlp" and "order_head" not in {f.name for f in dataclasses.fields(PretrainConfig)}:
        raise SystemExit("motion_focus.py: arm mcl_mlp needs the `order_head` config key, which this "
                         "version of mcl_video does not have; drop the arm or update mcl_video")
    data = work / "data"
    num_train = COMMON["classes"] * args.videos[0]
    lo, hi = args.crop_scale
    return load_config(base_config_path(args.config), [
        f"data={data / 'annotations'}", f"video_root={data / 'videos'}", f"cache={work / 'motion'}",
        f"out={work / 'runs' / arm}", f"seed={seed}", f"batch_size={args.batch}", f"size={args.size}",
        f"epochs={max(1, math.ceil(args.steps * args.batch / num_train))}", f"max_steps={args.steps}",
        f"warmup_steps={max(1, args.steps // 10)}", f"checkpoint_every={max(1, args.steps // 4)}",
        "log_every=5", "tensorboard=false", f"device={args.device}", f"num_workers={args.workers}",
        f"sampling_options={{colour: false, crop_scale: [{lo}, {hi}]}}", *overrides])


def pretrained_encoder(config) -> tuple[object, float, dict]:
    """Pretrain (or resume) -> (frozen backbone, seconds spent now, loss summary)."""
    from mcl_video.evaluation import load_encoder
    from mcl_video.training import latest_checkpoint, load_checkpoint, pretrain

    run_dir = Path(config.out)
    last = latest_checkpoint(run_dir) if run_dir.exists() else None
    start = time.perf_counter()
    if last is None or int(load_checkpoint(last)["step"]) < config.max_steps:
        pretrain(dataclasses.replace(config, resume=last is not None))
        last = latest_checkpoint(run_dir)
        if last is None or int(load_checkpoint(last)["step"]) < config.max_steps:  # stopped (signal)
            raise SystemExit(f"motion_focus.py: {run_dir} stopped before step {config.max_steps}; rerun "
                             "with --resume to continue it (no result is recorded for it)")
    return load_encoder(last), time.perf_counter() - start, loss_summary(run_dir / "metrics.jsonl")


def loss_summary(path: Path) -> dict:
    """Mean of each logged loss over the first and the last quarter of the logged steps."""
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    keys = sorted({k for r in rows for k in r if k.startswith("loss") or k == "pos_prob"})
    q = max(1, len(rows) // 4)
    out = {}
    for k in keys:
        for name, part in (("first", rows[:q]), ("last", rows[-q:])):
            values = [r[k] for r in part if isinstance(r.get(k), (int, float))]
            if values:
                out[f"{k}_{name}_quarter"] = round(statistics.fmean(values), 5)
    return out


def random_encoder(config, seed: int):
    import torch

    from mcl_video.models import build_backbone

    torch.manual_seed(seed)
    return build_backbone(config.backbone, **config.backbone_options).eval()


def supervised_settings(args) -> SimpleNamespace:
    return SimpleNamespace(supervised_steps=args.steps, supervised_batch_size=args.batch,
                           supervised_dropout=0.5, num_clips=args.clips, num_workers=args.workers)


def encoder_for(args, config, work: Path, arm: str, seed: int, records: dict) -> tuple[object, float, dict]:
    if arm == "random":
        return random_encoder(config, seed), 0.0, {}
    if arm == "supervised":
        from mcl_video.demo.supervised import train_supervised

        settings = supervised_settings(args)
        start = time.perf_counter()
        sup = train_supervised(config, settings, work, seed, records)
        return sup["backbone"], time.perf_counter() - start, {"finetune_test_top1": sup["test_top1"]}
    return pretrained_encoder(config)


# -------------------------------------------------------------------------------------- evaluation
def evaluate(encoder, config_size: int, work: Path, records: dict, shapes: dict, clips: int) -> dict:
    """Motion probe, shape probe and R@1 of one frozen encoder."""
    from mcl_video.evaluation import EvalClipDataset, extract_features, linear_probe_svm, retrieval_recall

    feats = {}
    for split in ("train", "test"):
        ds = EvalClipDataset(work / "data" / "videos", records[split], 8, 2, clips, config_size)
        feats[split] = extract_features(encoder, ds, batch_size=8)
    tr, te = feats["train"], feats["test"]
    shape_tr = np.array([shapes[i] for i in tr["ids"]])
    shape_te = np.array([shapes[i] for i in te["ids"]])
    n = len(te["labels"])
    motion = linear_probe_svm(tr["features"], tr["labels"], te["features"], te["labels"])["top1"]
    shape = linear_probe_svm(tr["features"], shape_tr, te["features"], shape_te)["top1"]
    r1 = retrieval_recall(te["features"], te["labels"], tr["features"], tr["labels"], ks=(1,))[1]
    return {"motion_acc": float(motion), "motion_se": math.sqrt(motion * (1 - motion) / n),
            "shape_acc": float(shape), "r1": float(r1), "n_test": n, "n_train": len(tr["labels"])}


def weizmann_columns(args, encoder, config, weizmann: tuple[Path, list]) -> dict:
    """``wz_1nn``, ``wz_svm``, ``wz_n`` and ``wz_clips`` of one frozen encoder (benchmarks/ablation.py's
    protocol, at the run's input size)."""
    columns = weizmann_rows({"run": encoder}, config, *weizmann, args.weizmann_clips)["run"]
    return {**{k: float(v) if k != "wz_n" else int(v) for k, v in columns.items()},
            "wz_clips": args.weizmann_clips}


def _design_fields(config, arm: str) -> set[str]:
    """The config keys a result's design key fixes: seed, batch, size, crops and the arm's overrides."""
    overrides = ARMS[arm] or BASE
    return {"seed", "batch_size", "size", "sampling_options", *(o.split("=", 1)[0] for o in overrides)}


def saved_supervised(args, config, work: Path, seed: int):
    """The supervised arm's saved backbone when its settings are this design's, else None."""
    import torch

    out = work / "runs" / "supervised"
    s = supervised_settings(args)
    want = {"steps": s.supervised_steps, "batch_size": s.supervised_batch_size, "seed": seed,
            "size": config.size, "num_clips": s.num_clips}
    if (out / "backbone.pt").is_file() and (out / "settings.json").is_file():
        key = json.loads((out / "settings.json").read_text())["key"]
        if all(key.get(k) == v for k, v in want.items()):
            encoder = random_encoder(config, seed)
            encoder.load_state_dict(torch.load(out / "backbone.pt", weights_only=True))
            return encoder.eval()
    print(f"[motion_focus] {out}: no saved backbone of this design", flush=True)
    return None


def final_encoder(args, config, work: Path, arm: str, seed: int):
    """The encoder a finished result was measured on, rebuilt without training; None (with a message)
    when its checkpoint is gone or is not the one of this design (another step count or settings)."""
    from mcl_video.evaluation import load_encoder
    from mcl_video.training import PretrainConfig, latest_checkpoint, load_checkpoint
    from mcl_video.training.config import config_to_dict

    if arm == "random":
        return random_encoder(config, seed)
    if arm == "supervised":
        return saved_supervised(args, config, work, seed)
    run_dir = Path(config.out)
    last = latest_checkpoint(run_dir) if run_dir.exists() else None
    if last is None:
        print(f"[motion_focus] {run_dir}: no checkpoint left", flush=True)
        return None
    state = load_checkpoint(last)
    saved = {**config_to_dict(PretrainConfig()), **state["config"]}
    current = config_to_dict(config)
    differ = sorted(k for k in _design_fields(config, arm) if saved.get(k) != current.get(k))
    if int(state["step"]) != config.max_steps or differ:
        print(f"[motion_focus] {last}: step {int(state['step'])} (result: {config.max_steps}), differing "
              f"settings {differ}: not this result's checkpoint", flush=True)
        return None
    return load_encoder(last)


def run_one(args, regime: str, arm: str, seed: int, root: Path, results: Path,
            weizmann: tuple[Path, list] | None = None) -> dict:
    out = results / regime / arm / f"seed-{seed}.json"
    key = design_key(args, regime, arm, seed)
    cached = cached_result(out, key, args.resume)
    if cached is not None:
        if weizmann is None or has_weizmann(cached):
            return cached
        work = seed_dir(root, seed)
        config = arm_config(args, work, arm, seed)

        def measure() -> dict | None:
            encoder = final_encoder(args, config, work, arm, seed)
            return None if encoder is None else weizmann_columns(args, encoder, config, weizmann)

        row = add_weizmann(out, cached, measure)
        state = "added" if has_weizmann(row) else "not added (kept as it is)"
        print(f"[motion_focus] {regime} {arm} seed {seed}: reused; Weizmann columns {state}", flush=True)
        return row
    work = seed_dir(root, seed)
    records, shapes = records_of(work)
    config = arm_config(args, work, arm, seed)
    start = time.perf_counter()
    encoder, train_s, losses = encoder_for(args, config, work, arm, seed, records)
    row = evaluate(encoder, args.size, work, records, shapes, args.clips)
    if weizmann is not None:
        row.update(weizmann_columns(args, encoder, config, weizmann))
    finished = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    row.update(key=key, train_s=round(train_s, 1), total_s=round(time.perf_counter() - start, 1),
               losses=losses, finished=finished, device=args.device)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(row, indent=1) + "\n")
    wz = f", Weizmann 1-NN {100 * row['wz_1nn']:.1f} SVM {100 * row['wz_svm']:.1f}" if weizmann else ""
    print(f"[motion_focus] {regime} {arm} seed {seed}: motion {100 * row['motion_acc']:.1f} "
          f"± {100 * row['motion_se']:.1f}, shape {100 * row['shape_acc']:.1f}, R@1 {100 * row['r1']:.1f}"
          f"{wz} ({row['train_s']:.0f} s training)", flush=True)
    return row


def main(argv=None) -> int:
    args = parse_args(argv)
    results = Path(args.results)
    if not args.report:
        work = Path(args.work).resolve()
        weizmann = None if args.no_weizmann else prepare_weizmann(Path(args.weizmann), work / "weizmann")
        for regime in args.regimes:
            root = ensure_regime(args, work, regime)
            for seed in args.seeds:
                for arm in args.arms:
                    run_one(args, regime, arm, seed, root, results, weizmann)
    rows = load_results(results)
    summary = summarise(rows)
    print(format_summary(summary))
    print()
    print(format_seeds(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "runs": rows}, indent=1) + "\n")
    if args.plot:
        plot_gain(summary, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
