"""torch.hub entry points of mcl-video.

    encoder = torch.hub.load(REPO_DIR, "encoder", source="local", checkpoint="runs/demo/ckpt-00000300.pt")
    features = encoder(clips)  # B x 3 x T x H x W (ImageNet-normalised) -> B x num_features

``checkpoint`` is any file :func:`mcl_video.load_encoder` reads: a checkpoint of ``mcl pretrain``, an
encoder file of ``mcl export --format mcl`` or a torchvision state dict. The weights are local files:
nothing is downloaded.
"""

import sys
from pathlib import Path

dependencies = ["torch", "torchvision", "numpy"]


def _load_encoder():
    try:
        from mcl_video.evaluation.encoder import load_encoder
    except ImportError:  # a source checkout that is not installed: its src/ holds the package
        sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))
        from mcl_video.evaluation.encoder import load_encoder
    return load_encoder


def encoder(checkpoint, backbone=None, map_location="cpu", **options):
    """The frozen-ready query encoder of ``checkpoint`` (eval mode): ``B x 3 x T x H x W`` clips ->
    ``B x num_features`` pooled features. ``backbone`` and ``options`` as for ``mcl_video.load_encoder``
    (by default the checkpoint's own)."""
    return _load_encoder()(checkpoint, backbone=backbone, map_location=map_location, **options)
