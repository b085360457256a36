"""A small (2+1)D ResNet that trains on a CPU (demo and tests).

Widths 16-32-64-128 by default, one basic block per stage. Strides: the stem halves space; layer2
halves space; layer3 and layer4 halve time and space. So 16 x 112 x 112 -> 4 x 7 x 7 (the release's
grid) and 16 x 64 x 64 -> 4 x 4 x 4.
"""

from __future__ import annotations

from torch import nn

from mcl_video.models.base import Backbone, check_clip, conv_out


def conv2plus1d(c_in: int, c_out: int, t_stride: int = 1, s_stride: int = 1) -> nn.Sequential:
    """1x3x3 spatial conv -> BN -> ReLU -> 3x1x1 temporal conv (output is the raw temporal conv)."""
    mid = max(c_out, c_in)
    return nn.Sequential(
        nn.Conv3d(c_in, mid, (1, 3, 3), stride=(1, s_stride, s_stride), padding=(0, 1, 1), bias=False),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid, c_out, (3, 1, 1), stride=(t_stride, 1, 1), padding=(1, 0, 0), bias=False),
    )


class TinyBlock(nn.Module):
    """Basic residual block; names follow torchvision (``conv1``, ``conv2`` = Sequential(conv, BN))."""

    def __init__(self, c_in: int, c_out: int, t_stride: int, s_stride: int):
        super().__init__()
        self.conv1 = nn.Sequential(
            conv2plus1d(c_in, c_out, t_stride, s_stride), nn.BatchNorm3d(c_out), nn.ReLU(inplace=True)
        )
        self.conv2 = nn.Sequential(conv2plus1d(c_out, c_out), nn.BatchNorm3d(c_out))
        self.downsample = None
        if c_in != c_out or t_stride != 1 or s_stride != 1:
            self.downsample = nn.Sequential(
                nn.Conv3d(c_in, c_out, 1, stride=(t_stride, s_stride, s_stride), bias=False),
                nn.BatchNorm3d(c_out),
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + residual)


class TinyR2Plus1D(Backbone):
    """``B x 3 x T x H x W`` -> ``B x widths[-1] x T/4 x H/16 x W/16`` (ceil at each stride)."""

    STRIDES = ((1, 1), (1, 2), (2, 2), (2, 2))  # (temporal, spatial) per stage

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), alignment_layer: str | None = None):
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"tiny_r2plus1d: widths must have 4 entries, got {widths}")
        w0 = widths[0]
        self.stem = nn.Sequential(
            nn.Conv3d(3, w0, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(w0),
            nn.ReLU(inplace=True),
            nn.Conv3d(w0, w0, (3, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(w0),
            nn.ReLU(inplace=True),
        )
        c_in = w0
        for i, (c_out, (ts, ss)) in enumerate(zip(widths, self.STRIDES), start=1):
            setattr(self, f"layer{i}", TinyBlock(c_in, c_out, ts, ss))
            c_in = c_out
        self.num_features = widths[-1]
        self.alignment_layer = alignment_layer or "layer4.conv2.0"
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x):
        check_clip(x, "tiny_r2plus1d")
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def _grid(self, clip_len: int, size: int) -> tuple[int, int, int]:
        t, h = clip_len, conv_out(size, 7, 2, 3)
        for ts, ss in self.STRIDES:
            t, h = conv_out(t, 3, ts, 1), conv_out(h, 3, ss, 1)
        return t, h, h
