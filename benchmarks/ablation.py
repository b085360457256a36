"""The MCL ablation on the built-in motion benchmark (issue 7 item 8): arms x seeds, mean ± std.

The arms (``mcl_video.demo.ABLATION_ARMS``: the baseline, each component added alone, both saliency
options, motion-broken negatives) are described in ``mcl_video/demo/ablation.py``.

For every seed, each arm is pretrained through the project's ``pretrain`` (finished runs are reused, so
an interrupted ablation resumes), then the frozen features of all the seed's arms, plus a random-init
encoder of the same backbone (row ``random``, the floor), are extracted in one decoding pass and probed
with the demo's linear SVMs (motion class, sprite shape) and retrieval R@1 (test queries the training
set). The same encoders are then evaluated on the real Weizmann clips (``--weizmann``, default
``../shared/data/actions-weizmann-mocogan``: 4 actions x 9 clips of 64 x 64 frames, stored as JPEG
strips), converted once to grayscale H.264 MP4s (the pretraining data is grayscale) and read through
the same reader at the pretraining size: leave-one-out 1-NN on cosine similarity (``wz_1nn``) and a
leave-one-out linear SVM (``wz_svm``), ``--weizmann-clips`` centre clips per video (default 8).
Weizmann has one clip per actor and action and the actor is not labelled, so a 1-NN that matches the
actor (appearance) is wrong by construction: the two columns reward motion, not identity.
The table gives mean ± sample std over seeds; ``--json`` keeps every per-seed number.

    python benchmarks/ablation.py --seeds 0 1 2                       # all arms, the demo budget
    python benchmarks/ablation.py --arms baseline mcl --seeds 0 1 2 --steps 300
    python benchmarks/ablation.py --arms baseline mcl --size 64 --work runs/ablation64  # 4x4 MAL grid
    python benchmarks/ablation.py --quick                             # smoke run, no claim

Not covered here: the GPU-scale run (R(2+1)D-18 at 112 px; see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from mcl_video.demo import (
    ABLATION_ARMS,
    DEFAULT_CONFIG,
    NO_CLAIM,
    PROFILES,
    arm_config,
    ensure_benchmark,
    ensure_motion,
    extract_all,
    format_summary,
    load_records,
    mal_diagnostics,
    pretrain_arm,
    probe_rows,
    summarise,
)
from mcl_video.demo.ablation import prepare_weizmann, weizmann_rows
from mcl_video.evaluation import load_encoder
from mcl_video.models import build_backbone

DEFAULT_WEIZMANN = Path(__file__).resolve().parents[2] / "shared" / "data" / "actions-weizmann-mocogan"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arms", nargs="+", default=list(ABLATION_ARMS), choices=list(ABLATION_ARMS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                   help="training seeds (>= 3 for a claim)")
    p.add_argument("--work", default="runs/ablation", help="benchmark, motion cache and runs go here")
    p.add_argument("--steps", type=int, default=None, help="steps per arm (default: the demo profile's)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: the demo profile's)")
    p.add_argument("--clips", type=int, default=None, help="centre clips per video for the features")
    p.add_argument("--size", type=int, default=None,
                   help="frame side of the built-in benchmark and the training/evaluation crop (default: "
                        "the demo's 32; 64 gives the tiny backbone a 4x4 alignment grid instead of 2x2)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra override of the demo config for every arm (repeatable)")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="a shipped config's name or a YAML path")
    p.add_argument("--quick", action="store_true", help="the demo's quick profile: a smoke run, no claim")
    p.add_argument("--weizmann", default=str(DEFAULT_WEIZMANN),
                   help="folder of Weizmann JPEG strips (skipped with a message when absent)")
    p.add_argument("--weizmann-clips", type=int, default=8, help="centre clips per Weizmann video")
    p.add_argument("--json", default=None, help="write every per-seed row and the summary here")
    return p.parse_args(argv)


def settings_from(args):
    """The demo profile (``full`` or ``quick``) with the command line's budget changes."""
    s = PROFILES["quick" if args.quick else "full"]
    changes = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch),
                                 ("num_clips", args.clips)) if v is not None}
    if args.size is not None:
        changes["benchmark"] = {**s.benchmark, "size": args.size}
    size = changes.get("benchmark", s.benchmark)["size"]
    extra = [f"size={size}", *args.set]
    return dataclasses.replace(s, name=f"ablation-{s.name}", pretrain_overrides=[*s.pretrain_overrides,
                                                                                 *extra], **changes)


def run_seed(args, settings, seed: int, shared: Path, weizmann: list | None) -> dict:
    """Pretrain every arm for ``seed`` and probe them together -> ``{arm: metrics}`` (plus ``random``)."""
    work = shared / f"seed-{seed}"
    work.mkdir(parents=True, exist_ok=True)
    for name in ("data", "motion"):
        if not (work / name).exists():
            (work / name).symlink_to(shared / name, target_is_directory=True)
    encoders, times, diagnostics, config = {}, {}, {}, None
    for arm in args.arms:
        config = arm_config(arm, settings, work, seed, args.config, ABLATION_ARMS[arm])
        start = time.perf_counter()
        run_dir, ckpt, reused = pretrain_arm(config)
        times[arm] = None if reused else round(time.perf_counter() - start, 1)
        diagnostics[arm] = mal_diagnostics(run_dir / "metrics.jsonl")
        encoders[arm] = load_encoder(ckpt)
        print(f"[ablation] seed {seed} arm {arm}: {ckpt} ({'reused' if reused else f'{times[arm]} s'})",
              flush=True)
    torch.manual_seed(seed)
    m = config.model
    encoders = {"random": build_backbone(m.backbone, **m.backbone_options).eval(), **encoders}
    times["random"], diagnostics["random"] = 0.0, {}
    records, _, shapes = load_records(work)
    feats, meta = extract_all(encoders, config, records, work, settings.num_clips)
    rows = probe_rows(feats, shapes, meta["train"], meta["test"])
    if weizmann is not None:
        for arm, metrics in weizmann_rows(encoders, config, *weizmann, args.weizmann_clips).items():
            rows[arm].update(metrics)
    for arm in encoders:
        r = rows[arm]
        wz = (f", Weizmann 1-NN {100 * r['wz_1nn']:.1f} SVM {100 * r['wz_svm']:.1f}"
              if "wz_1nn" in r else "")
        print(f"[ablation] seed {seed} {arm}: motion {100 * r['motion_acc']:.1f} ± {100 * r['motion_se']:.1f}"
              f", shape {100 * r['shape_acc']:.1f}, R@1 {100 * r['r1']:.1f}{wz}", flush=True)
    for arm, d in diagnostics.items():
        if d:
            print(f"[ablation] seed {seed} {arm}: last-quarter loss_mal {d['loss_mal']:.4f} vs flat-map "
                  f"{d['mal_flat_loss']:.4f} (ratio {d['mal_vs_flat']:.3f}), "
                  f"loss_order {d['loss_order']:.4f}, dead saliency maps "
                  f"{d.get('mal_dead', float('nan')):.3f}", flush=True)
    return {arm: {**rows[arm], **diagnostics[arm], "pretrain_s": times[arm]} for arm in encoders}


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    profile = "quick" if args.quick else "full"
    default_size = PROFILES[profile].benchmark["size"]
    size = settings.benchmark["size"]  # another size gets its own folder: never regenerates the others
    shared = Path(args.work) / (profile if size == default_size else f"{profile}-{size}px")
    start = time.perf_counter()
    ensure_benchmark(shared / "data", settings.benchmark)
    ensure_motion(shared / "data", shared / "motion", 8, 2)
    weizmann = prepare_weizmann(Path(args.weizmann), shared / "weizmann")
    per_seed = {seed: run_seed(args, settings, seed, shared, weizmann) for seed in args.seeds}
    summary = summarise(per_seed, ["random", *args.arms])
    table = format_summary(summary, args.seeds)
    wall = time.perf_counter() - start
    if args.quick:
        print(NO_CLAIM)
    print(table)
    print(f"[ablation] {len(args.arms)} arms x {len(args.seeds)} seeds, {settings.steps} steps x batch "
          f"{settings.batch_size} per arm; wall {wall:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": dataclasses.asdict(settings), "arms": args.arms,
                                               "per_seed": per_seed, "summary": summary,
                                               "wall_s": round(wall, 1)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
