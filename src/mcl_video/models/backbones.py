"""Video backbones behind one interface (METHOD §5).

Every backbone is a :class:`Backbone`:

- ``forward_features(x)``: ``B x 3 x T x H x W`` -> ``B x C x T' x H' x W'`` (before pooling);
- ``forward(x)``: ``B x C``, the global average pool of the features;
- ``num_features``: ``C``;
- ``alignment_layer``: dotted name of the convolution whose output the motion alignment loss reads
  (inside the last residual block, before its final BN, residual addition and ReLU, METHOD §4);
- ``feature_grid(clip_len, size)``: ``(T', H', W')`` for a ``clip_len x size x size`` input.

``build_backbone(name, **options)`` is the only constructor the rest of the package uses.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchvision.models import video as tv_video


def conv_out(n: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution/pooling along one axis (floor mode)."""
    return (n + 2 * padding - kernel) // stride + 1


class Backbone(nn.Module):
    """Base class: subclasses set ``num_features`` and ``alignment_layer`` and implement
    ``forward_features`` and ``_grid``."""

    num_features: int
    alignment_layer: str

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x 3 x T x H x W`` -> pooled ``B x C``."""
        return self.forward_features(x).mean(dim=(2, 3, 4))

    def _grid(self, clip_len: int, size: int) -> tuple[int, int, int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def feature_grid(self, clip_len: int, size: int | tuple[int, int]) -> tuple[int, int, int]:
        """``(T', H', W')`` of ``forward_features`` for a ``clip_len`` x ``size`` input."""
        h, w = (size, size) if isinstance(size, int) else size
        t_out, h_out, _ = self._grid(clip_len, h)
        _, w_out, _ = self._grid(clip_len, w)
        if min(t_out, h_out, w_out) < 1:
            raise ValueError(
                f"{type(self).__name__}: input {clip_len}x{h}x{w} is too small "
                f"(feature grid {t_out}x{h_out}x{w_out}); use more frames or a larger crop"
            )
        return t_out, h_out, w_out


def check_clip(x: torch.Tensor, name: str) -> None:
    """Raise a clear error unless ``x`` is a ``B x 3 x T x H x W`` float tensor."""
    if x.dim() != 5 or x.shape[1] != 3:
        raise ValueError(
            f"{name}: expected a B x 3 x T x H x W clip batch, got shape {tuple(x.shape)} "
            "(datasets yield C x T x H x W; collate them into a batch)"
        )


class TorchvisionVideoResNet(Backbone):
    """torchvision's R(2+1)D-18 / R3D-18 without the classifier; module names are torchvision's, so a
    torchvision state dict loads unchanged (only ``fc.*`` is left over)."""

    def __init__(self, arch: str, weights: str | Path | None = None, alignment_layer: str | None = None):
        super().__init__()
        builders: dict[str, Callable[..., nn.Module]] = {
            "r2plus1d_18": tv_video.r2plus1d_18,
            "r3d_18": tv_video.r3d_18,
        }
        net = builders[arch](weights=None)
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
        raise ValueError(
            f"{path}: not a torchvision state dict for this backbone; missing keys "
            f"{result.missing_keys[:8]}, unexpected keys {result.unexpected_keys[:8]}"
        )


def build_backbone(name: str, **options) -> Backbone:
    """Build a backbone by name: ``r2plus1d_18``, ``r3d_18`` (options: ``weights`` path,
    ``alignment_layer``), ``p3d_resnet50`` (options: ``weights`` path to 2D ResNet-50 / MoCo v2
    weights to inflate, ``alignment_layer``), ``tiny_r2plus1d`` (options: ``widths``,
    ``alignment_layer``)."""
    from mcl_video.models.p3d_resnet import P3DResNet50
    from mcl_video.models.tiny import TinyR2Plus1D

    if name in ("r2plus1d_18", "r3d_18"):
        return TorchvisionVideoResNet(name, **options)
    if name == "p3d_resnet50":
        return P3DResNet50(**options)
    if name == "tiny_r2plus1d":
        return TinyR2Plus1D(**options)
    raise ValueError(
        f"unknown backbone {name!r}; choose one of r2plus1d_18, r3d_18, p3d_resnet50, tiny_r2plus1d"
    )
