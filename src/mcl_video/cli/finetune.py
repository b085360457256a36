"""``mcl finetune --config NAME|FILE [key=value ...]``: fine-tune a pretrained encoder + FC on a labelled
split and test it with several clips x 3 crops per video; one process or under torchrun.

    mcl finetune --config finetune_ucf101_r2plus1d18 data.annotations=ucf101/lists \\
        model.checkpoint=runs/r21d/ckpt-00010000.pt data.split=2 run.out=runs/ft_ucf101_s2
    torchrun --nproc_per_node 4 -m mcl_video finetune --config finetune_hmdb51_p3d50 ...
    mcl finetune --config ... run.out=runs/ft_ucf101_s2 resume=true      # continue exactly
"""

from __future__ import annotations

import argparse
import os

from mcl_video.cli.options import add_config_arguments, print_config


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune an encoder on UCF101/HMDB51-style labels and test it (multi-clip x 3-crop)",
        description=(
            "Fine-tune the whole encoder plus an FC layer (dropout, SGD, cosine, gradient clipping) and test "
            "with test.clips clips x 3 crops per video, softmax scores averaged. Settings come from a YAML "
            "file or shipped name (finetune_*) and key=value overrides. Writes config.yaml, env.json, "
            "metrics.jsonl, tb/, ckpt-<step>.pt, results.json, confusion.csv/.png and predictions.npz into "
            "run.out. Resume, stop signals (exit status 75) and torchrun work as for pretraining; "
            "optim.batch_size is per process."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    add_config_arguments(p, "mcl_video.evaluation.finetune_config:FinetuneConfig",
                         "finetune_synth_tiny, finetune_ucf101_r2plus1d18")
    return p


def run(args) -> int:
    from mcl_video.evaluation.finetune import load_finetune_config, run_finetune

    config = load_finetune_config(args.config, args.overrides)
    if args.print_config:
        return print_config(config)
    result = run_finetune(config)  # a stop signal raises RunStopped (exit status 75)
    if os.environ.get("RANK", "0") != "0":
        return 0
    print(f"run folder: {result.run_dir}")
    if result.results is not None:
        r = result.results
        print(f"test: top-1 {100 * r['top1']:.2f}%  top-5 {100 * r['top5']:.2f}%  "
              f"({r['num_test']} videos x {r['views_per_video']} views)")
    return 0
