"""``mcl evaluate``: frozen-feature evaluation of an encoder on a dataset split (linear probes, retrieval).

Extracts train/test features (N uniformly spaced centre-cropped clips per video, averaged), runs the
linear SVM / FC probes, kNN and retrieval, prints a table and writes ``results.json``,
``confusion_*.png`` and the features (``features_train.npz``, ``features_test.npz``) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from mcl_video.cli import non_negative_int, positive_int, writable_folder
from mcl_video.errors import DataError, UsageError

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
    p.add_argument("--dataset", default="ucf101", help="ucf101, hmdb51, kinetics400, folder, "
                   "mmaction2_rawframes or mmaction2_videos (read_split's dataset kinds)")
    p.add_argument("--split", type=int, default=1, help="split number of the annotation lists (1-3)")
    p.add_argument("--protocol", default="all", choices=["svm", "fc", "knn", "retrieval", "all"],
                   help="which evaluation(s) to run")
    p.add_argument(
        "--preset",
        default="default",
        choices=["default", "release"],
        help="release: the authors' SVM-probe protocol (20 clips, 224 centre crop of frames with short side "
        "240-256 without resizing, raw features; ignores --size/--num-clips); default: --size crop of "
        "frames resized to it, standardised features",
    )
    p.add_argument("--num-clips", type=positive_int, default=20, help="uniformly spaced clips per video")
    p.add_argument("--clip-len", type=positive_int, default=16, help="frames per clip")
    p.add_argument("--stride", type=positive_int, default=2, help="frame stride within a clip")
    p.add_argument("--size", type=positive_int, default=112,
                   help="centre crop side (short side resized to it)")
    p.add_argument("--batch-size", type=positive_int, default=4, help="videos per batch")
    p.add_argument("--workers", type=non_negative_int, default=0, help="data-loading worker processes")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: CUDA when available (as pretrain)")
    p.add_argument("--fc-epochs", type=positive_int, default=100, help="epochs of the FC probe")
    p.add_argument("--fc-lr", type=float, default=16.0, help="learning rate of the FC probe")
    p.add_argument("--knn-k", type=positive_int, default=20, help="neighbours of the kNN classifier")
    p.add_argument("--seed", type=int, default=0, help="seed of a --random-init backbone")
    p.add_argument("--out", type=Path, default=Path("eval_out"),
                   help="folder for results.json, confusion_*.png and features_*.npz")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _build_encoder(args):
    import torch

    from mcl_video.evaluation.encoder import load_encoder
    from mcl_video.models import build_backbone

    try:
        options = json.loads(args.backbone_options)
    except json.JSONDecodeError as err:
        raise UsageError(f"--backbone-options is not valid JSON ({err}); "
                         "e.g. '{\"widths\": [8, 16, 32, 64]}'") from None
    if not isinstance(options, dict):
        raise UsageError(f"--backbone-options must be a JSON dict, got {args.backbone_options}")
    if args.random_init:
        if not args.backbone:
            raise UsageError("--random-init needs --backbone NAME (e.g. r2plus1d_18)")
        torch.manual_seed(args.seed)
        try:
            return build_backbone(args.backbone, **options).eval()
        except (ValueError, TypeError) as err:  # unknown name or option
            raise UsageError(f"--backbone {args.backbone} --backbone-options {args.backbone_options}: "
                             f"{err}") from None
    return load_encoder(args.checkpoint, backbone=args.backbone, **options)


def _class_names(records) -> list[str]:
    names: dict[int, str] = {}
    for r in records:
        names.setdefault(int(r.label), str(r.class_name))
    return [names.get(i, str(i)) for i in range(max(names) + 1)]


def run(args) -> int:
    from mcl_video.data import read_split
    from mcl_video.evaluation.features import extract_features, feature_protocol
    from mcl_video.evaluation.protocols import PROTOCOLS, format_table, run_protocols
    from mcl_video.training.distributed import select_device

    protocols = PROTOCOLS if args.protocol == "all" else (args.protocol,)
    device = select_device(args.device)
    writable_folder(args.out, "--out")
    preset = feature_protocol(args.preset, args.size, args.num_clips)
    encoder = _build_encoder(args).to(device)
    features, all_records = {}, []
    for subset in ("train", "test"):
        records = read_split(args.dataset, args.annotations, args.split, subset, video_root=args.data)
        if not records:
            raise DataError(f"--data {args.data}: none of the {subset} videos of {args.dataset} split "
                            f"{args.split} (listed in {args.annotations}) is there; check --data and --split")
        all_records += records
        ds = preset.dataset(args.data, records, args.clip_len, args.stride)
        log.info("extracting %s features: %d videos x %d clips", subset, len(ds), preset.num_clips)
        features[subset] = extract_features(
            encoder,
            ds,
            args.batch_size,
            device,
            args.workers,
            out_path=args.out / f"features_{subset}.npz",
            progress=not args.no_progress,
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
