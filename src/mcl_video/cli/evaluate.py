"""``mcl evaluate``: frozen-feature evaluation of an encoder on a dataset split (METHOD §6).

Extracts train/test features (N uniformly spaced centre-cropped clips per video, averaged), runs the
linear SVM / FC probes, kNN and retrieval, prints a table and writes ``results.json``,
``confusion_*.png`` and the features (``features_train.npz``, ``features_test.npz``) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="linear probes, kNN and retrieval on frozen features of a checkpoint",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="pretraining checkpoint or torchvision state dict")
    src.add_argument("--random-init", action="store_true", help="a randomly initialised --backbone")
    p.add_argument(
        "--backbone", help="backbone name (default: from the checkpoint; r2plus1d_18 for a state dict)"
    )
    p.add_argument(
        "--backbone-options",
        default="{}",
        help="JSON dict of build options, e.g. '{\"widths\": [8, 16, 32, 64]}'",
    )
    p.add_argument("--data", type=Path, required=True, help="video root")
    p.add_argument("--annotations", type=Path, required=True, help="split files folder")
    p.add_argument("--dataset", default="ucf101", help="ucf101, hmdb51, kinetics400 or folder")
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--protocol", default="all", choices=["svm", "fc", "knn", "retrieval", "all"])
    p.add_argument(
        "--preset",
        default="default",
        choices=["default", "release"],
        help="release: the authors' SVM-probe protocol (20 clips, 224 centre crop of frames with short side "
        "240-256 without resizing, raw features; ignores --size/--num-clips); default: --size crop of "
        "frames resized to it, standardised features",
    )
    p.add_argument("--num-clips", type=int, default=20, help="uniformly spaced clips per video")
    p.add_argument("--clip-len", type=int, default=16)
    p.add_argument("--stride", type=int, default=2)
    p.add_argument("--size", type=int, default=112, help="centre crop side (short side resized to it)")
    p.add_argument("--batch-size", type=int, default=4, help="videos per batch")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--fc-epochs", type=int, default=100)
    p.add_argument("--fc-lr", type=float, default=16.0)
    p.add_argument("--knn-k", type=int, default=20)
    p.add_argument("--seed", type=int, default=0, help="seed of a --random-init backbone")
    p.add_argument("--out", type=Path, default=Path("eval_out"))
    return p


def _build_encoder(args):
    import torch

    from mcl_video.evaluation.encoder import load_encoder
    from mcl_video.models import build_backbone

    try:
        options = json.loads(args.backbone_options)
    except json.JSONDecodeError as err:
        raise SystemExit(f"mcl evaluate: --backbone-options is not valid JSON ({err})") from err
    if args.random_init:
        if not args.backbone:
            raise SystemExit("mcl evaluate: --random-init needs --backbone NAME")
        torch.manual_seed(args.seed)
        return build_backbone(args.backbone, **options).eval()
    return load_encoder(args.checkpoint, backbone=args.backbone, **options)


def _class_names(records) -> list[str]:
    names: dict[int, str] = {}
    for r in records:
        names.setdefault(int(r.label), str(r.class_name))
    return [names.get(i, str(i)) for i in range(max(names) + 1)]


def run(args) -> int:
    import torch

    from mcl_video.data import read_split
    from mcl_video.evaluation.features import extract_features, feature_protocol
    from mcl_video.evaluation.protocols import PROTOCOLS, format_table, run_protocols

    protocols = PROTOCOLS if args.protocol == "all" else (args.protocol,)
    preset = feature_protocol(args.preset, args.size, args.num_clips)
    encoder = _build_encoder(args).to(args.device)
    features, all_records = {}, []
    for subset in ("train", "test"):
        records = read_split(args.dataset, args.annotations, args.split, subset, video_root=args.data)
        if not records:
            raise SystemExit(
                f"mcl evaluate: no {subset} videos of {args.dataset} split {args.split} in {args.data}"
            )
        all_records += records
        ds = preset.dataset(args.data, records, args.clip_len, args.stride)
        log.info("extracting %s features: %d videos x %d clips", subset, len(ds), preset.num_clips)
        features[subset] = extract_features(
            encoder,
            ds,
            args.batch_size,
            torch.device(args.device),
            args.workers,
            out_path=args.out / f"features_{subset}.npz",
        )
    results = run_protocols(
        features["train"],
        features["test"],
        protocols,
        class_names=_class_names(all_records),
        out_dir=args.out,
        fc_epochs=args.fc_epochs,
        fc_lr=args.fc_lr,
        knn_k=args.knn_k,
        svm_preprocess=preset.svm_preprocess,
    )
    print(format_table(results))
    print(f"results: {args.out / 'results.json'}")
    return 0
