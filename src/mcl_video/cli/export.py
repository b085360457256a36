"""``mcl export CKPT --format torchvision|mmaction2 --out FILE``: the query encoder of a checkpoint in
another toolkit's key names.

torchvision: load with ``torchvision.models.video.r2plus1d_18()`` (or ``r3d_18()``)
``.load_state_dict(torch.load(FILE), strict=False)``; only ``fc.*`` is missing.
mmaction2: ``{"state_dict", "meta"}`` for the ``ResNet2Plus1d`` / ``ResNet3d`` backbone; ``meta`` holds
the backbone settings that reproduce the network (see the README for a config snippet).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export",
        help="write a checkpoint's encoder for torchvision or mmaction2",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", metavar="CKPT", type=Path, help="pretraining checkpoint or state dict")
    p.add_argument("--format", required=True, choices=["torchvision", "mmaction2"], dest="fmt",
                   help="torchvision: state dict for torchvision.models.video; mmaction2: checkpoint with "
                   "mmaction2 backbone key names")
    p.add_argument("--out", required=True, type=Path, help="output file (.pth)")
    p.add_argument("--backbone", help="backbone name when CKPT is a plain state dict (default r2plus1d_18)")
    return p


def run(args) -> int:
    from mcl_video.evaluation.export import export_encoder

    result = export_encoder(args.checkpoint, args.fmt, args.out, backbone=args.backbone)
    print(f"wrote {result.path}: {result.arch} in {result.format} names ({len(result.state)} tensors)")
    if result.not_exported:
        print(f"not exported ({len(result.not_exported)} tensors without an exact counterpart in mmaction2; "
              f"it initialises them): {', '.join(result.not_exported)}")
    if result.format == "mmaction2":
        print("mmaction2 backbone settings: " + json.dumps(result.meta["mmaction2_backbone"]))
    return 0
