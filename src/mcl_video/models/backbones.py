"""Video backbones by name: torchvision's R(2+1)D-18 / R3D-18 here, the release's P3D
ResNet-50 in ``p3d_resnet.py``, a CPU-sized (2+1)D ResNet in ``tiny.py``; all follow the interface of
``base.Backbone``.

``build_backbone(name, **options)`` is the only constructor the rest of the package uses; ``BACKBONES``
is the plain name -> constructor table behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torchvision.models import video as tv_video

from mcl_video.errors import DataError
from mcl_video.models.base import Backbone, check_clip, conv_out
from mcl_video.models.p3d_resnet import P3DResNet50
from mcl_video.models.tiny import TinyR2Plus1D


class TorchvisionVideoResNet(Backbone):
    """torchvision's R(2+1)D-18 / R3D-18 without the classifier; module names are torchvision's, so a
    torchvision state dict loads unchanged (only ``fc.*`` is left over)."""

    ARCHS: dict[str, Callable[..., nn.Module]] = {"r2plus1d_18": tv_video.r2plus1d_18,
                                                  "r3d_18": tv_video.r3d_18}

    def __init__(self, arch: str, weights: str | Path | None = None, alignment_layer: str | None = None):
        super().__init__()
        net = self.ARCHS[arch](weights=None)
        self.arch = arch
        self.stem, self.layer1, self.layer2 = net.stem, net.layer1, net.layer2
        self.layer3, self.layer4 = net.layer3, net.layer4
        self.num_features = 512
        # layer4.1.conv2 is Sequential(conv, BN): the conv itself is child 0
        self.alignment_layer = alignment_layer or "layer4.1.conv2.0"
        if weights is not None:
            load_torchvision_weights(self, weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_clip(x, self.arch)
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def _grid(self, clip_len: int, size: int) -> tuple[int, int, int]:
        h = conv_out(size, 7, 2, 3)  # both stems: 7-px spatial kernel, stride 2, no temporal stride
        t = clip_len
        for _ in range(3):  # layer2..4 halve every axis (kernel 3, stride 2, padding 1)
            t, h = conv_out(t, 3, 2, 1), conv_out(h, 3, 2, 1)
        return t, h, h


def load_torchvision_weights(model: nn.Module, path: str | Path) -> None:
    """Load a torchvision video-ResNet state dict (file) into ``model``, ignoring only ``fc.*``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise DataError(
            f"{path}: not a torchvision state dict for this backbone; missing keys "
            f"{result.missing_keys[:8]}, unexpected keys {result.unexpected_keys[:8]}"
        )


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "r2plus1d_18": partial(TorchvisionVideoResNet, "r2plus1d_18"),  # options: weights, alignment_layer
    "r3d_18": partial(TorchvisionVideoResNet, "r3d_18"),  # options: weights, alignment_layer
    "p3d_resnet50": P3DResNet50,  # options: weights (2D ResNet-50 / MoCo v2 to inflate), alignment_layer
    "tiny_r2plus1d": TinyR2Plus1D,  # options: widths, alignment_layer
}


def build_backbone(name: str, **options) -> Backbone:
    """Build a backbone by name (a key of ``BACKBONES``) with its constructor's ``options``."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name](**options)
