"""``mcl demo``: the whole system end to end on the built-in benchmark (see ``mcl_video/demo/``).

Generates the benchmark and the motion cache when absent (reused on a rerun), pretrains MCL and the
MoCo-style baseline with the same budget, trains a supervised upper bound, and evaluates them and a
random-init encoder: motion-class probe, sprite-shape probe and retrieval R@1, with a report.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo",
        help="end-to-end demo on the built-in benchmark: MCL vs MoCo vs random vs supervised",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--work-dir", type=Path, default=Path("runs/demo"),
                   help="folder for data, motion cache, runs, results.json and report.html")
    p.add_argument("--quick", action="store_true",
                   help="smoke run on a tiny benchmark with a few steps (makes no claim; <work-dir>/quick)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training runs and the random init")
    p.add_argument("--config", default="demo_cpu",
                   help="pretraining config the demo overrides: a shipped config's name or a YAML path")
    return p


def run(args) -> int:
    from mcl_video.demo import run_demo  # lazy: `mcl --help` does not import torch

    run_demo(args.work_dir, quick=args.quick, seed=args.seed, config=args.config)
    return 0
