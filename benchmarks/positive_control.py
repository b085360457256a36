"""Positive control for motion focus: arms x regimes x seeds on a benchmark where a static shortcut
fools a plain contrastive learner by construction (BENCHMARKS.md "Positive control"), every run cached
as one JSON file so the study resumes and can be continued.

Regimes (``mcl_video.data.synth``; ``PC`` below: a unique high-contrast texture from one of 6 families
in the periphery of each video, a flat actor region with one fixed actor for all videos, the actor
resting 30% of each video with a video-specific mark shown only then, 64-frame videos):

    pc05       the positive control, training crops of area (0.2, 0.5): a crop alone can leave the
               periphery out
    pc10       the positive control, crops of area (0.2, 1.0): only MAL can move saliency off it
    shared     the shortcut-removed control: the same videos, one periphery texture for all; crops (0.2, 0.5)
    region50   the motion-focus study's region50 benchmark (benchmarks/motion_focus.py), crops (0.2, 1.0)

Arms (every arm is ``configs/demo_cpu.yaml`` plus the budget plus these overrides; the semantics of
benchmarks/study.py):

    baseline   motion sampling, motion crop, MAL and motion-broken negatives off (MoCo-style)
    temporal   baseline + motion-focused temporal sampling
    crop       baseline + motion-focused spatial cropping
    mal        baseline + MAL (gradient saliency)
    mcl        full MCL
    oracle     baseline with the crop = the actor's region (``sampling_options.crop_boxes``)

Each run: pretrain (resumable), then frozen features of ``--clips`` centre clips per video and
``mcl_video.evaluation.cues``: linear-SVM probes of the motion class, of the static cue (the periphery's
texture family; positive control only) and of the shape (region50 only), and the share of the same-clip
saliency inside the actor's region over the test clips. Result: ``<results>/<regime>/<arm>/seed-<n>.json``.
``--resume`` reuses finished results whose design key matches and resumes unfinished runs;
``--budget-hours`` starts no new run once that much wall-clock time has passed. ``--report`` only
summarises: per regime and arm the mean ± SD over seeds, the paired difference to the baseline by seed
(mean, 95% t-interval), the primary contrast first; ``--plot`` draws the static-cue probe against the
motion probe, one point per run. ``--mechanism`` prints the samplers' mechanism checks
(``mcl_video.sampling.mechanism``) of each regime, no training.

    python benchmarks/positive_control.py --mechanism
    python benchmarks/positive_control.py --regimes pc05 --arms baseline mcl --seeds 0 1 2 --resume
    python benchmarks/positive_control.py --report --json pc.json --plot pc.png
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np

from motion_focus import base_config_path, pretrained_encoder, seed_dir  # benchmarks/, beside this script
from study import BASE, COMMON, cached_result, t_interval  # benchmarks/study.py

REPO = Path(__file__).resolve().parents[1]
PC = dict(classes=5, frames=64, moving_region=0.36, pan_speed=0.0, distractors=(0, 0), idle_fraction=0.3,
          idle_segments=2, periphery_textures=6, rest_mark=True)
REGIMES = {  # name -> (benchmark options, training crop scale)
    "pc05": (PC, (0.2, 0.5)),
    "pc10": (PC, (0.2, 1.0)),
    "shared": ({**PC, "shared_texture": True}, (0.2, 0.5)),
    "region50": ({**COMMON, "moving_region": 0.5}, (0.2, 1.0)),
}
MCL = ["motion_sampling=true", "motion_crop=true", "use_mal=true", "saliency=gradient",
       "motion_broken_negatives=false"]
ARMS = {
    "baseline": BASE,
    "temporal": [*BASE, "motion_sampling=true"],
    "crop": [*BASE, "motion_crop=true"],
    "mal": [*BASE, "use_mal=true", "saliency=gradient"],
    "mcl": MCL,
    "oracle": BASE,  # + sampling_options.crop_boxes
}
PRIMARY = ("pc05", "mcl", "motion_acc")  # the pre-registered primary contrast: vs baseline, paired by seed
METRICS = ("motion_acc", "static_cue_acc", "shape_acc", "saliency_share")
MISSING = "—"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--size", type=int, default=64, help="frame side of the benchmark and the input size")
    p.add_argument("--steps", type=int, default=600, help="optimizer steps per run")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--clips", type=int, default=4, help="centre clips per video for the frozen features")
    p.add_argument("--saliency-videos", type=int, default=40, help="test videos for the saliency share")
    p.add_argument("--videos", type=int, nargs=2, default=[64, 32], metavar=("TRAIN", "TEST"),
                   help="training and test videos per class")
    p.add_argument("--work", default="runs/positive_control", help="benchmarks, motion caches and runs")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "positive_control"),
                   help="one JSON per (regime, arm, seed)")
    p.add_argument("--resume", action="store_true", help="reuse finished results, resume unfinished runs")
    p.add_argument("--budget-hours", type=float, default=None,
                   help="start no new run after this much wall-clock time (finished runs are kept)")
    p.add_argument("--report", action="store_true", help="only summarise the results folder")
    p.add_argument("--mechanism", action="store_true", help="only the samplers' mechanism checks")
    p.add_argument("--config", default=None, help="base config (default: the demo's demo_cpu.yaml)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--workers", type=int, default=1, help="loader and motion-preparation processes")
    p.add_argument("--json", default=None, help="write the summary (and every run) here")
    p.add_argument("--plot", default=None, help="PNG: static-cue probe vs motion probe, one point per run")
    return p.parse_args(argv)


def synth_options(args, regime: str) -> dict:
    options, _ = REGIMES[regime]
    return {**options, "size": args.size, "train_per_class": args.videos[0], "test_per_class": args.videos[1]}


def design_key(args, regime: str, arm: str, seed: int) -> dict:
    """Everything that determines a run's result; a cached result is reused only when it matches."""
    return json.loads(json.dumps({"regime": regime, "arm": arm, "seed": seed,
                                  "benchmark": synth_options(args, regime), "steps": args.steps,
                                  "batch": args.batch, "clips": args.clips, "crop_scale": REGIMES[regime][1],
                                  "saliency_videos": args.saliency_videos, "overrides": ARMS[arm],
                                  "config": base_config_path(args.config).name}))


def ensure_regime(args, work: Path, regime: str) -> Path:
    """Benchmark and motion cache of a regime under ``work/<benchmark>`` (pc05 and pc10 share one)."""
    from mcl_video.data.synth import SynthConfig, make_benchmark
    from mcl_video.motion.cache import CacheSettings
    from mcl_video.motion.prepare import prepare

    options = synth_options(args, regime)
    name = "pc" if regime in ("pc05", "pc10") else regime
    root = work / name
    meta = root / "data" / "meta.json"
    if not meta.is_file() or json.loads(meta.read_text()).get("config") != SynthConfig(**options).recorded():
        shutil.rmtree(root, ignore_errors=True)
        print(f"[positive_control] {name}: writing the benchmark {options}", flush=True)
        make_benchmark(root / "data", progress=False, **options)
    settings = CacheSettings(flow_backend="dis", clip_len=8, stride=2, resize_short=None)
    summary = prepare(root / "data" / "annotations", root / "motion", settings, dataset="ucf101",
                      video_root=root / "data" / "videos", progress=False, workers=args.workers)
    if not summary.ok:
        raise SystemExit(f"positive_control.py: motion preparation failed for {len(summary.failed)} video(s)")
    return root


def arm_config(args, work: Path, regime: str, arm: str, seed: int):
    from mcl_video.training import load_config

    data = work / "data"
    lo, hi = REGIMES[regime][1]
    num_train = synth_options(args, regime)["classes"] * args.videos[0]  # full batches per epoch: // batch
    boxes = f', crop_boxes: "{data / "meta.json"}"' if arm == "oracle" else ""
    return load_config(base_config_path(args.config), [
        f"data={data / 'annotations'}", f"video_root={data / 'videos'}", f"cache={work / 'motion'}",
        f"out={work / 'runs' / regime / arm}", f"seed={seed}", f"batch_size={args.batch}",
        f"size={args.size}",
        f"epochs={math.ceil(args.steps / max(1, num_train // args.batch))}", f"max_steps={args.steps}",
        f"warmup_steps={max(1, args.steps // 10)}", f"checkpoint_every={max(1, args.steps // 4)}",
        "log_every=5", "tensorboard=false", f"device={args.device}", f"num_workers={args.workers}",
        f"sampling_options={{colour: false, crop_scale: [{lo}, {hi}]{boxes}}}", *ARMS[arm]])


def evaluate(args, encoder, work: Path) -> dict:
    """Motion, static-cue and shape probes and the saliency-in-motion share of one frozen encoder."""
    from mcl_video.data import read_split
    from mcl_video.evaluation import EvalClipDataset, benchmark_report, extract_features

    data = work / "data"
    feats, sets = {}, {}
    for split in ("train", "test"):
        records = read_split("ucf101", data / "annotations", 1, split, video_root=data / "videos")
        sets[split] = EvalClipDataset(data / "videos", records, 8, 2, args.clips, args.size)
        feats[split] = extract_features(encoder, sets[split], batch_size=8)
    test = sets["test"].records
    every = test[:: max(1, len(test) // args.saliency_videos)][: args.saliency_videos]  # all classes
    saliency_set = EvalClipDataset(data / "videos", every, 8, 2, 1, args.size)
    report = benchmark_report(encoder, feats["train"], feats["test"], data / "meta.json", saliency_set)
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in report.items()}


def run_one(args, regime: str, arm: str, seed: int, root: Path, results: Path) -> dict:
    out = results / regime / arm / f"seed-{seed}.json"
    key = design_key(args, regime, arm, seed)
    cached = cached_result(out, key, args.resume)
    if cached is not None:
        return cached
    work = seed_dir(root, seed)
    config = arm_config(args, work, regime, arm, seed)
    start = time.perf_counter()
    encoder, train_s, losses = pretrained_encoder(config)
    row = evaluate(args, encoder, work)
    finished = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    row.update(key=key, train_s=round(train_s, 1), total_s=round(time.perf_counter() - start, 1),
               losses=losses, finished=finished, device=args.device)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(row, indent=1) + "\n")
    print(f"[positive_control] {regime} {arm} seed {seed}: " + ", ".join(
        f"{m} {_pct(row.get(m))}" for m in METRICS) + f" ({row['train_s']:.0f} s training)", flush=True)
    return row


# ------------------------------------------------------------------------------------------ report
def _pct(v) -> str:
    return f"{100 * v:.1f}" if isinstance(v, (int, float)) else MISSING


def load_results(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(results.glob("*/*/seed-*.json"))]


def summarise(rows: list[dict]) -> dict:
    """``{regime: {arm: {metric: {mean, sd, n}, metric_gain: {mean, sd, ci95, seeds}}}}``: levels over
    the seeds that have the metric, gains (points) paired by seed with the baseline."""
    by: dict = {}
    for r in rows:
        k = r["key"]
        by.setdefault(k["regime"], {}).setdefault(k["arm"], {})[k["seed"]] = r
    out: dict = {}
    for regime, arms in by.items():
        base = arms.get("baseline", {})
        out[regime] = {}
        for arm, seeds in arms.items():
            cell: dict = {"seeds": sorted(seeds)}
            for m in METRICS:
                have = [s for s in sorted(seeds) if isinstance(seeds[s].get(m), (int, float))]
                if not have:
                    continue
                mean, sd, _ = t_interval([seeds[s][m] for s in have])
                cell[m] = {"mean": mean, "sd": sd, "n": len(have)}
                paired = [s for s in have if isinstance(base.get(s, {}).get(m), (int, float))]
                if arm != "baseline" and paired:
                    mean, sd, half = t_interval([100 * (seeds[s][m] - base[s][m]) for s in paired])
                    cell[f"{m}_gain"] = {"mean": mean, "sd": sd, "ci95": half, "seeds": paired}
            out[regime][arm] = cell
    return out


def format_summary(summary: dict) -> str:
    regime, arm, metric = PRIMARY
    g = summary.get(regime, {}).get(arm, {}).get(f"{metric}_gain")
    head = (f"primary contrast ({arm} - baseline, {metric}, {regime}): "
            + (f"{g['mean']:+.1f} points, 95% CI {g['mean'] - g['ci95']:+.1f}..{g['mean'] + g['ci95']:+.1f} "
               f"(n={len(g['seeds'])})" if g else "no paired seeds yet"))
    lines = [head.replace("nan", "n/a"), "",
             "| regime | arm | seeds | motion | static cue | shape | saliency in region "
             "| motion gain (95% CI) | static-cue gain | saliency gain |", "| --- " * 10 + "|"]
    for regime in (r for r in REGIMES if r in summary):
        for arm in (a for a in ARMS if a in summary[regime]):
            c = summary[regime][arm]
            levels = [f"{100 * c[m]['mean']:.1f} ± {100 * c[m]['sd']:.1f}" if m in c else MISSING
                      for m in METRICS]
            gains = []
            for m in ("motion_acc", "static_cue_acc", "saliency_share"):
                gm = c.get(f"{m}_gain")
                gains.append("" if arm == "baseline" else MISSING if gm is None else
                             f"{gm['mean']:+.1f} ± {gm['ci95']:.1f} (n={len(gm['seeds'])})")
            lines.append(f"| {regime} | {arm} | {len(c['seeds'])} | " + " | ".join(levels + gains) + " |")
    return "\n".join(lines).replace("nan", "n/a")


def plot_cues(rows: list[dict], path: str) -> int:
    """PNG: static-cue probe (y) against motion probe (x), one point per run, one panel per regime with
    a static cue, one colour per arm. Returns the number of points drawn."""
    from mcl_video.figures import pyplot

    plt = pyplot()
    has_cue = [x for x in rows if isinstance(x.get("static_cue_acc"), float)]
    regimes = [r for r in REGIMES if any(x["key"]["regime"] == r for x in has_cue)]
    panels = max(1, len(regimes))
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.8), squeeze=False)
    drawn = 0
    for ax, regime in zip(axes[0], regimes):
        for i, arm in enumerate(ARMS):
            pts = [(x["motion_acc"], x["static_cue_acc"]) for x in rows if x["key"]["regime"] == regime
                   and x["key"]["arm"] == arm and isinstance(x.get("static_cue_acc"), float)]
            if pts:
                ax.scatter(*zip(*np.array(pts) * 100), label=arm, color=f"C{i}", s=22)
                drawn += len(pts)
        ax.set_title(regime, fontsize=9)
        ax.set_xlabel("motion probe (%)")
        ax.set_ylabel("static-cue probe (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def mechanism(args, work: Path) -> None:
    from mcl_video.data import read_split
    from mcl_video.motion.cache import MotionCache
    from mcl_video.sampling.mechanism import compare_samplers, format_shares

    for regime in args.regimes:
        root = ensure_regime(args, work, regime)
        data = root / "data"
        records = read_split("ucf101", data / "annotations", 1, "train", video_root=data / "videos")
        result = compare_samplers(data / "videos", records, MotionCache(root / "motion"), data / "meta.json",
                                  {"clip_len": 8, "stride": 2, "size": args.size,
                                   "crop_scale": REGIMES[regime][1]}, epochs=2)
        print(f"\n{regime} ({result['mcl']['videos']} videos x 2 epochs)", flush=True)
        print(format_shares(result), flush=True)


def run_all(args, work: Path, results: Path) -> None:
    """Every (regime, seed, arm) in that order; none started once ``--budget-hours`` is spent."""
    start = time.monotonic()
    for regime in args.regimes:
        root = ensure_regime(args, work, regime)
        for seed in args.seeds:
            for arm in args.arms:
                if args.budget_hours is not None and time.monotonic() - start > 3600 * args.budget_hours:
                    print(f"[positive_control] --budget-hours {args.budget_hours} spent: stopping (rerun "
                          "with --resume to continue)", flush=True)
                    return
                run_one(args, regime, arm, seed, root, results)


def main(argv=None) -> int:
    args = parse_args(argv)
    results = Path(args.results)
    work = Path(args.work).resolve()
    if args.mechanism:
        mechanism(args, work)
        return 0
    if not args.report:
        run_all(args, work, results)
    rows = load_results(results)
    summary = summarise(rows)
    print(format_summary(summary))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "runs": rows}, indent=1) + "\n")
    if args.plot:
        plot_cues(rows, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
