"""Calibrate the built-in motion benchmark (issue 7 item 7): supervised, random-init and MoCo-baseline rows.

One trial = one benchmark setting (``mcl synth`` options) + one training budget. It runs the demo's own
stages (``mcl_video.demo``): generate the benchmark, prepare the DIS motion cache, pretrain the
MoCo baseline arm through ``pretrain``, train the supervised bound, extract frozen features of the
random-init, supervised and baseline encoders (``--clips`` centre clips per video) and probe them with the
demo's linear SVMs. MCL is never run here (the calibration must not be tuned toward it).

Prints one table row per trial: motion and shape probe accuracy ± binomial SE, the baseline's distance
from chance in standard errors (``z = (acc - chance) / SE(acc)``), the baseline's last logged InfoNCE
and pos_prob, and the wall time. ``--json FILE`` appends the row as one JSON line.

    python benchmarks/calibrate.py --name after       # the calibrated defaults (mcl synth, demo profile)
    python benchmarks/calibrate.py --name bigger --size 48 --classes 8 --steps 400
    python benchmarks/calibrate.py --quick          # a ~1 minute smoke run (no claim)

Benchmark data and motion caches are shared between trials with the same benchmark options
(``<work>/bench-<hash>``); each trial's runs go to ``<work>/bench-<hash>/trials/<name>``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mcl_video.data.synth import SynthConfig
from mcl_video.demo import (
    DEFAULT_CONFIG,
    PROFILES,
    DemoSettings,
    arm_config,
    ensure_benchmark,
    ensure_motion,
    extract_all,
    load_records,
    pretrain_arm,
    probe_rows,
    train_supervised,
)
from mcl_video.evaluation import chance_levels, load_encoder
from mcl_video.models import build_backbone


def parse_args(argv=None) -> argparse.Namespace:
    """Command line; unset benchmark options keep the ``SynthConfig`` defaults (``mcl synth``'s)."""
    full = PROFILES["full"]
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", default="trial", help="row name (and trial folder)")
    p.add_argument("--work", default="/tmp/mcl-calibrate", help="root folder of benchmarks and runs")
    p.add_argument("--seed", type=int, default=0)
    b = p.add_argument_group("benchmark (mcl synth options)")
    b.add_argument("--classes", type=int, default=None)
    b.add_argument("--train-per-class", type=int, default=None)
    b.add_argument("--test-per-class", type=int, default=None)
    b.add_argument("--frames", type=int, default=None)
    b.add_argument("--size", type=int, default=None)
    b.add_argument("--sprite-size", type=float, nargs=2, default=None, metavar=("MIN", "MAX"))
    b.add_argument("--background-contrast", type=float, default=None)
    b.add_argument("--distractors", type=int, nargs=2, default=None, metavar=("MIN", "MAX"))
    b.add_argument("--pan-speed", type=float, default=None)
    b.add_argument("--period", type=float, nargs=2, default=None, metavar=("MIN", "MAX"))
    b.add_argument("--grayscale", action=argparse.BooleanOptionalAction, default=None)
    t = p.add_argument_group("training budget (defaults: the demo's full profile)")
    t.add_argument("--steps", type=int, default=full.steps, help="baseline pretraining steps")
    t.add_argument("--batch", type=int, default=full.batch_size, help="baseline batch size")
    t.add_argument("--sup-steps", type=int, default=full.supervised_steps, help="supervised AdamW steps")
    t.add_argument("--sup-batch", type=int, default=full.supervised_batch_size)
    t.add_argument("--clips", type=int, default=4, help="centre clips per video for frozen features")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra override of the demo config for the baseline (repeatable), e.g. "
                        "queue_size=256 or 'sampling_options={colour: false}'")
    t.add_argument("--config", default=DEFAULT_CONFIG, help="a shipped config's name or a YAML path")
    p.add_argument("--quick", action="store_true", help="tiny smoke run: makes no claim")
    p.add_argument("--json", default=None, help="append the result row to this JSON-lines file")
    return p.parse_args(argv)


def benchmark_options(args) -> dict:
    """``make_benchmark`` options from the command line (unset knobs keep the SynthConfig default)."""
    opts = dict(seed=args.seed)
    for key in ("classes", "train_per_class", "test_per_class", "frames", "size", "sprite_size",
                "background_contrast", "distractors", "pan_speed", "period", "grayscale"):
        value = getattr(args, key)
        if value is not None:
            opts[key] = tuple(value) if isinstance(value, list) else value
    if args.quick:
        opts.update(classes=3, train_per_class=4, test_per_class=4, frames=32, size=32)
    return SynthConfig(**opts).recorded()


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=list).encode()).hexdigest()[:10]


def prepare_trial(args, bench: dict) -> tuple[Path, object]:
    """Shared data + motion cache for ``bench``; returns ``(trial work dir, DemoSettings)``."""
    shared = Path(args.work) / f"bench-{_digest(SynthConfig(**bench).recorded())}"
    ensure_benchmark(shared / "data", bench)
    ensure_motion(shared / "data", shared / "motion", 8, 2)
    work = shared / "trials" / args.name
    work.mkdir(parents=True, exist_ok=True)
    (work / "runs").mkdir(exist_ok=True)
    (shared / "supervised").mkdir(exist_ok=True)  # reused by train_supervised when its settings match
    for name, target in (("data", "data"), ("motion", "motion"), ("runs/supervised", "supervised")):
        link = work / name
        if not link.exists():
            link.symlink_to(shared / target, target_is_directory=True)
    steps, sup_steps, batch = (4, 4, 4) if args.quick else (args.steps, args.sup_steps, args.batch)
    sup_batch, clips = (4, 2) if args.quick else (args.sup_batch, args.clips)
    settings = DemoSettings(args.name, bench, steps=steps, batch_size=batch, supervised_steps=sup_steps,
                            supervised_batch_size=sup_batch, num_clips=clips,
                            pretrain_overrides=[f"size={bench['size']}", *args.set], claim=not args.quick)
    return work, settings


def last_metrics(run_dir: Path) -> dict:
    """The last line of the run's metrics.jsonl (loss terms, pos_prob), or ``{}``."""
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return json.loads(lines[-1]) if lines else {}


def run_trial(args) -> dict:
    """Benchmark -> motion -> baseline pretraining -> supervised -> features -> probes; the result row."""
    start = time.perf_counter()
    bench = benchmark_options(args)
    work, settings = prepare_trial(args, bench)
    config = arm_config("moco", settings, work, args.seed, args.config)
    t0 = time.perf_counter()
    run_dir, ckpt, _ = pretrain_arm(config)
    t_pretrain = time.perf_counter() - t0
    records, _, shapes = load_records(work)
    t0 = time.perf_counter()
    sup = train_supervised(config, settings, work, args.seed, records)
    t_sup = time.perf_counter() - t0
    torch.manual_seed(args.seed)
    encoders = {"random": build_backbone(config.model.backbone, **config.model.backbone_options).eval(),
                "supervised": sup["backbone"], "baseline": load_encoder(ckpt)}
    feats, meta = extract_all(encoders, config, records, work, settings.num_clips)
    rows = probe_rows(feats, shapes, meta["train"], meta["test"])
    chance = chance_levels(meta["train"]["labels"], meta["test"]["labels"])["accuracy"]
    base = rows["baseline"]
    logged = last_metrics(run_dir)
    return {"name": args.name, "argv": sys.argv[1:], "benchmark": bench, "steps": settings.steps,
            "batch": settings.batch_size, "sup_steps": settings.supervised_steps, "overrides": args.set,
            "n_test": int(len(meta["test"]["labels"])), "chance": chance, "rows": rows,
            "baseline_z": (base["motion_acc"] - chance) / max(base["motion_se"], 1e-9),
            "baseline_loss_inter": logged.get("loss_inter"), "baseline_pos_prob": logged.get("pos_prob"),
            "supervised_own_top1": sup["test_top1"], "pretrain_s": round(t_pretrain, 1),
            "supervised_s": round(t_sup, 1), "wall_s": round(time.perf_counter() - start, 1)}


def _pm(row: dict, key: str) -> str:
    return f"{100 * row[f'{key}_acc']:.1f} ± {100 * row[f'{key}_se']:.1f}"


HEADER = ("| trial | n test | chance | supervised motion | random motion | baseline motion | baseline z "
          "| shape (sup / rand / base) | InfoNCE, pos_prob | wall |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def format_row(r: dict) -> str:
    rows = r["rows"]
    shape = " / ".join(f"{100 * rows[k]['shape_acc']:.1f}" for k in ("supervised", "random", "baseline"))
    loss = r["baseline_loss_inter"]
    loss_txt = "-" if loss is None else f"{loss:.2f}, {r['baseline_pos_prob']:.3f}"
    return (f"| {r['name']} | {r['n_test']} | {100 * r['chance']:.1f} | {_pm(rows['supervised'], 'motion')} "
            f"| {_pm(rows['random'], 'motion')} | {_pm(rows['baseline'], 'motion')} | {r['baseline_z']:.1f} "
            f"| {shape} | {loss_txt} | {r['wall_s']:.0f} s |")


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    result = run_trial(args)
    if args.quick:
        print("QUICK SMOKE RUN: no claim.")
    print(HEADER)
    print(format_row(result))
    ok = (result["rows"]["supervised"]["motion_acc"] >= 0.9, result["baseline_z"] >= 3.0,
          bench_ok := result["n_test"] >= 32 * result["benchmark"]["classes"])
    print(f"conditions: supervised >= 90%: {ok[0]}; baseline >= chance + 3 SE: {ok[1]}; "
          f">= 32 test videos per class: {bench_ok}; pretrain {result['pretrain_s']:.0f} s, "
          f"supervised {result['supervised_s']:.0f} s (own classifier "
          f"{100 * result['supervised_own_top1']:.1f}%)")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result, default=lambda o: o.tolist() if isinstance(o, np.ndarray)
                               else float(o) if math.isfinite(float(o)) else None) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
