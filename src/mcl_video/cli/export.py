"""``mcl export CKPT --format torchvision|mmaction2|onnx|mcl --out FILE``: the query encoder of a checkpoint
for another toolkit, a runtime, or as a file of its own.

torchvision: load with ``torchvision.models.video.r2plus1d_18()`` (or ``r3d_18()``)
``.load_state_dict(torch.load(FILE), strict=False)``; only ``fc.*`` is missing.
mmaction2: ``{"state_dict", "meta"}`` for mmaction2's ``ResNet3d`` backbone; the config text printed
(also in the README) builds the same network in mmaction2 1.x (R(2+1)D-18 needs
``custom_imports`` of ``mcl_video.mmaction2_conv``).
onnx: the frozen encoder as a feature extractor, input ``clip`` (batch x 3 x T x H x W, batch dynamic;
T and H = W from --clip-len/--size, default the checkpoint's), output ``features``.
mcl: the encoder with its backbone name, options and clip settings, for ``mcl_video.load_encoder``,
``mcl evaluate --checkpoint`` and ``torch.hub.load(..., "encoder", checkpoint=FILE)``.
torchvision and mmaction2 take R(2+1)D-18 and R3D-18; onnx and mcl any backbone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mcl_video.cli import positive_int

FORMATS = ("torchvision", "mmaction2", "onnx", "mcl")  # as mcl_video.evaluation.export.FORMATS


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export",
        help="write a checkpoint's encoder for torchvision, mmaction2, ONNX or as an encoder file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", metavar="CKPT", type=Path, help="pretraining checkpoint or state dict")
    p.add_argument("--format", required=True, choices=FORMATS, dest="fmt",
                   help="torchvision: state dict for torchvision.models.video; mmaction2: checkpoint with "
                   "mmaction2 backbone key names; onnx: feature extractor graph; mcl: encoder file")
    p.add_argument("--out", required=True, type=Path, help="output file (.pth, or .onnx)")
    p.add_argument("--backbone", help="backbone name when CKPT is a plain state dict (default r2plus1d_18)")
    p.add_argument("--clip-len", type=positive_int,
                   help="onnx/mcl: frames per clip (default: the checkpoint's, else 16)")
    p.add_argument("--size", type=positive_int,
                   help="onnx/mcl: input height and width (default: the checkpoint's, else 112)")
    return p


def run(args) -> int:
    from mcl_video.evaluation.export import export_encoder, mmaction2_config

    result = export_encoder(args.checkpoint, args.fmt, args.out, backbone=args.backbone,
                            clip_len=args.clip_len, size=args.size)
    if result.format == "onnx":
        shape = " x ".join(str(d) for d in result.meta["input_shape"])
        print(f"wrote {result.path}: {result.arch} as ONNX, input clip {shape}, output features batch x "
              f"{result.meta['num_features']}")
        return 0
    if result.format == "mcl":
        print(f"wrote {result.path}: {result.arch} encoder file ({len(result.state)} tensors, its backbone "
              "options and clip settings)")
        return 0
    print(f"wrote {result.path}: {result.arch} in {result.format} names ({len(result.state)} tensors)")
    if result.not_exported:
        print(f"not exported ({len(result.not_exported)} tensors without a counterpart): "
              f"{', '.join(result.not_exported)}")
    if result.format == "mmaction2":
        print("mmaction2 config (builds the same network; adjust num_classes):")
        print(mmaction2_config(result.arch, result.path), end="")
    return 0
