"""``mcl finetune --config FILE [key=value ...]``: fine-tune a pretrained encoder + FC on a labelled
split and test it with several clips x 3 crops per video (scores averaged); one process or under torchrun.

    mcl finetune --config finetune_ucf101_r2plus1d18 data=ucf101/lists \\
        checkpoint=runs/r21d/ckpt-00010000.pt split=2 out=runs/ft_ucf101_s2
    torchrun --nproc_per_node 4 -m mcl_video finetune --config finetune_hmdb51_p3d50 ...
    mcl finetune --config ... out=runs/ft_ucf101_s2 resume=true      # continue exactly
"""

from __future__ import annotations

import argparse
import os

import yaml


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune an encoder on UCF101/HMDB51-style labels and test it (multi-clip x 3-crop)",
        description=(
            "Fine-tune the whole encoder plus an FC layer (dropout, SGD, cosine, gradient clipping) and test "
            "with test_clips clips x 3 crops per video, softmax scores averaged. Settings come from a flat "
            "YAML file or shipped name (finetune_*) and key=value overrides (e.g. data=DIR video_root=DIR "
            "checkpoint=FILE split=2 out=DIR max_steps=100 resume=true); unknown keys are an error. Writes "
            "config.yaml, env.json, metrics.jsonl, tb/, ckpt-<step>.pt, results.json, confusion.csv/.png "
            "and predictions.npz into out. Under torchrun batch_size is per process."
        ),
    )
    p.add_argument("--config", metavar="FILE", help="flat YAML config (omit: the release's defaults)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    return p


def run(args) -> int:
    from mcl_video.evaluation.finetune_config import load_finetune_config
    from mcl_video.evaluation.finetune_engine import run_finetune
    from mcl_video.training.config import config_to_dict

    config = load_finetune_config(args.config, args.overrides)
    if args.print_config:
        print(yaml.safe_dump(config_to_dict(config), sort_keys=False), end="")
        return 0
    from mcl_video.training.preempt import EXIT_STOPPED

    result = run_finetune(config)
    if os.environ.get("RANK", "0") != "0":
        return EXIT_STOPPED if result.stopped else 0
    print(f"run folder: {result.run_dir}")
    if result.stopped:  # SIGTERM/SIGUSR1/Ctrl-C: not finished, so `finetune && ...` must not go on
        print(f"stopped after step {result.step}; continue with resume=true")
        return EXIT_STOPPED
    elif result.results is not None:
        r = result.results
        print(f"test: top-1 {100 * r['top1']:.2f}%  top-5 {100 * r['top5']:.2f}%  "
              f"({r['num_test']} videos x {r['views_per_video']} views)")
    return 0
