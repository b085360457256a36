"""The release's backbone: a P3D-A ResNet-50 inflated from 2D ImageNet / MoCo v2 weights.

Each bottleneck's 3x3 conv is factorised into ``conv2`` (1x3x3, spatial stride) followed directly by
``conv2_t`` (3x1x1, temporal padding 1) and then ``bn2`` and ReLU. There is deliberately NO BN or ReLU
between the two: ``conv2_t`` is initialised to the identity (centre tap = identity matrix, other taps
0), so right after inflation the pair computes exactly the 2D 3x3 conv, whatever the zero padding in
time. A BN in between would need the identity as its eval transform, which ``eps`` breaks.

The stem is a 4x7x7 conv with temporal stride 4 and no temporal padding: time step t reads frames
4t..4t+3; the inflated kernel is the 2D 7x7 kernel at temporal index 1 and zero elsewhere, so step t
sees exactly frame 4t+1. Consequently, in eval mode and for ANY clip, the inflated network's features
at time step t equal the 2D ResNet-50's features of frame 4t+1 (no condition on identical frames).
16 x 224 x 224 -> 4 x 7 x 7 at layer4.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from mcl_video.errors import DataError
from mcl_video.models.base import Backbone, check_clip, conv_out

STEM_T, STEM_T_STRIDE, STEM_T_INDEX = 4, 4, 1


class P3DBottleneck(nn.Module):
    """1x1x1 -> (1x3x3 -> 3x1x1) -> 1x1x1 bottleneck, expansion 4; names follow torchvision's 2D
    ``Bottleneck`` plus ``conv2_t``."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        c_out = planes * self.expansion
        self.conv1 = nn.Conv3d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(
            planes, planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False
        )
        self.conv2_t = nn.Conv3d(planes, planes, (3, 1, 1), padding=(1, 0, 0), bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv3d(c_in, c_out, 1, stride=(1, stride, stride), bias=False), nn.BatchNorm3d(c_out)
            )
        init_temporal_identity(self.conv2_t)

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2_t(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


def init_temporal_identity(conv: nn.Conv3d) -> None:
    """Set a C x C x k x 1 x 1 conv to the identity: centre tap = identity matrix, other taps 0."""
    with torch.no_grad():
        conv.weight.zero_()
        centre = conv.weight.shape[2] // 2
        conv.weight[:, :, centre, 0, 0] = torch.eye(conv.weight.shape[0], dtype=conv.weight.dtype)


class P3DResNet50(Backbone):
    """``B x 3 x T x H x W`` -> ``B x 2048 x T' x H' x W'`` with ``T' = (T - 4) // 4 + 1``."""

    LAYERS = (3, 4, 6, 3)

    def __init__(self, weights: str | Path | None = None, alignment_layer: str | None = None):
        super().__init__()
        self.conv1 = nn.Conv3d(
            3, 64, (STEM_T, 7, 7), stride=(STEM_T_STRIDE, 2, 2), padding=(0, 3, 3), bias=False
        )
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        c_in = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), self.LAYERS), start=1):
            stride = 1 if i == 1 else 2
            layer = []
            for b in range(blocks):
                layer.append(P3DBottleneck(c_in, planes, stride if b == 0 else 1))
                c_in = planes * P3DBottleneck.expansion
            setattr(self, f"layer{i}", nn.Sequential(*layer))
        self.num_features = 2048
        self.alignment_layer = alignment_layer or "layer4.2.conv3"
        for m in self.modules():
            if isinstance(m, nn.Conv3d) and m.kernel_size != (3, 1, 1):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if weights is not None:
            state_2d = load_2d_state_dict(weights)
            self.load_state_dict(inflate_2d_state_dict(state_2d, self.state_dict(), source=str(weights)))

    def forward_features(self, x):
        check_clip(x, "p3d_resnet50")
        if x.shape[2] < STEM_T:
            raise ValueError(f"p3d_resnet50: needs at least {STEM_T} frames, got {x.shape[2]}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def _grid(self, clip_len: int, size: int) -> tuple[int, int, int]:
        t = conv_out(clip_len, STEM_T, STEM_T_STRIDE, 0)
        h = conv_out(conv_out(size, 7, 2, 3), 3, 2, 1)
        for _ in range(3):
            h = conv_out(h, 3, 2, 1)
        return t, h, h


MOCO_PREFIX = "module.encoder_q."
INIT_HINT = (
    "expected 2D ImageNet ResNet-50 weights: a torchvision resnet50 state dict or a MoCo v2 checkpoint "
    "(state_dict with module.encoder_q.* keys)"
)


def load_2d_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read 2D ResNet-50 weights: a torchvision state dict or a MoCo v2 checkpoint
    (``state_dict`` with ``module.encoder_q.*``). Returns torchvision-named tensors without ``fc.*``;
    raises :class:`DataError` for a file that is neither."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise DataError(f"{path}: file not found; {INIT_HINT}") from err
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as err:
        raise DataError(f"{path}: not a PyTorch weights file ({type(err).__name__}); {INIT_HINT}") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise DataError(f"{path}: holds no state dict of tensors; {INIT_HINT}")
    if any(k.startswith(MOCO_PREFIX) for k in state):  # MoCo: the query encoder only, fc (MLP head) dropped
        state = {k[len(MOCO_PREFIX) :]: v for k, v in state.items() if k.startswith(MOCO_PREFIX)}
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def inflate_2d_state_dict(
    state_2d: dict[str, torch.Tensor], target: dict[str, torch.Tensor], source: str = "2D weights"
) -> dict[str, torch.Tensor]:
    """Map torchvision ResNet-50 tensors onto the P3D state dict ``target`` (3x3 -> 1x3x3; 3x1x1 = identity).

    3x3 kernels -> 1x3x3; 1x1 -> 1x1x1; the 7x7 stem -> temporal index 1 of 4; ``conv2_t`` keeps its
    identity initialisation; BN tensors copy. Raises :class:`DataError` naming missing/unexpected keys
    or a tensor of the wrong shape."""
    expected = {k for k in target if ".conv2_t." not in k}
    missing = sorted(expected - set(state_2d))
    unexpected = sorted(set(state_2d) - expected)
    if missing or unexpected:
        raise DataError(
            f"{source}: cannot inflate into p3d_resnet50; missing keys {missing[:10]} "
            f"({len(missing)} total), unexpected keys {unexpected[:10]} ({len(unexpected)} total); "
            f"{INIT_HINT}"
        )
    out = dict(target)
    for key, value in state_2d.items():
        shape = target[key].shape
        if key == "conv1.weight" and value.shape == shape[:2] + shape[3:]:
            kernel = torch.zeros(shape, dtype=value.dtype)
            kernel[:, :, STEM_T_INDEX] = value
            value = kernel
        elif value.dim() == 4:
            value = value.unsqueeze(2)
        if value.shape != shape:
            raise DataError(
                f"{source}: {key} has shape {tuple(value.shape)}, expected {tuple(shape)} after inflation; "
                f"{INIT_HINT}"
            )
        out[key] = value.to(target[key].dtype)
    return out
