"""``mcl pretrain --config NAME|FILE [key=value ...]``: MCL pretraining, one process or under torchrun.

    mcl pretrain --config demo_cpu data.annotations=bench/annotations data.cache=bench/motion \\
        run.out=runs/demo
    torchrun --nproc_per_node 4 -m mcl_video pretrain --config ucf101_p3d50 data.annotations=... ...
    mcl pretrain --config demo_cpu run.out=runs/demo resume=true      # continue exactly
"""

from __future__ import annotations

import argparse
import os

from mcl_video.cli.options import add_config_arguments, print_config


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "pretrain",
        help="self-supervised MCL pretraining (one process, or many under torchrun)",
        description=(
            "Pretrain a video encoder with Motion-Focused Contrastive Learning. Settings come from a YAML "
            "config (a shipped one by name, e.g. demo_cpu, or a path) and key=value overrides. Writes "
            "config.yaml, env.json, metrics.jsonl, tb/ (TensorBoard) and ckpt-<step>.pt into run.out. A used "
            "run.out is refused unless run.resume=true (continue; keys that change the run's meaning are "
            "refused unless named in run.resume_override=key1,key2) or run.overwrite=true (start over). "
            "SIGTERM, SIGUSR1 and Ctrl-C stop after the current step with a checkpoint; the exit status is "
            "then 75 (130 for Ctrl-C), not 0. Under torchrun every process trains on its shard; "
            "optim.batch_size is per process."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    add_config_arguments(p, "mcl_video.training.config:PretrainConfig", "demo_cpu, ucf101_p3d50")
    return p


def run(args) -> int:
    from mcl_video.training import load_config, pretrain

    config = load_config(args.config, args.overrides)
    if args.print_config:
        return print_config(config)
    run_dir = pretrain(config)
    if os.environ.get("RANK", "0") == "0":
        print(f"run folder: {run_dir}")
    return 0
