"""``mcl pretrain --config NAME|FILE [key=value ...]``: MCL pretraining, one process or under torchrun.

    mcl pretrain --config demo_cpu data=bench/annotations cache=bench/motion out=runs/demo
    torchrun --nproc_per_node 4 -m mcl_video pretrain --config ucf101_p3d50 data=... cache=...
    mcl pretrain --config demo_cpu out=runs/demo resume=true      # continue exactly
"""

from __future__ import annotations

import argparse
import os

import yaml

from mcl_video.training import load_config, pretrain
from mcl_video.training.config import config_to_dict


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "pretrain",
        help="self-supervised MCL pretraining (one process, or many under torchrun)",
        description=(
            "Pretrain a video encoder with Motion-Focused Contrastive Learning. Settings come from a flat "
            "YAML (a shipped config by name, e.g. demo_cpu, or a path) and key=value overrides typed by "
            "PretrainConfig (e.g. data=DIR cache=DIR "
            "out=DIR seed=1 max_steps=100 resume=true); unknown keys are an error. Writes config.yaml, "
            "env.json, metrics.jsonl, tb/ (TensorBoard) and ckpt-<step>.pt into out. A non-empty out is "
            "refused unless resume=true (continue; settings that change the run's meaning are refused "
            "unless named in resume_override=key1,key2) or overwrite=true (start over). SIGTERM, SIGUSR1 "
            "and Ctrl-C stop after the current step with a checkpoint; the exit status is then 75 "
            "(130 for Ctrl-C), not 0. Under torchrun every process trains on its shard; batch_size is "
            "per process."
        ),
    )
    p.add_argument("--config", metavar="NAME|FILE",
                   help="a shipped config's name (e.g. demo_cpu, ucf101_p3d50) or a flat YAML file "
                        "(omit: the built-in defaults)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    return p


def run(args) -> int:
    config = load_config(args.config, args.overrides)
    if args.print_config:
        print(yaml.safe_dump(config_to_dict(config), sort_keys=False), end="")
        return 0
    run_dir = pretrain(config)
    if os.environ.get("RANK", "0") == "0":
        print(f"run folder: {run_dir}")
    return 0
