"""``MCLConv2plus1d``: the conv type under which mmaction2 builds our R(2+1)D-18 exactly.

mmaction2's ``ResNet3d`` with ``conv_cfg=dict(type="Conv2plus1d")`` is torchvision's R(2+1)D-18 except
for the shortcut projections: there a 1x1x1 kernel becomes a (2+1)D conv with fewer middle channels than
inputs and a ReLU inside, which no weights make equal to a 1x1x1 projection. ``MCLConv2plus1d`` is
mmaction2's ``Conv2plus1d`` for every other kernel and a plain ``Conv3d`` for a 1x1x1 one. Importing this
module registers it in mmaction2's model registry; an mmaction2 config brings it in with

    custom_imports = dict(imports=["mcl_video.mmaction2_conv"], allow_failed_imports=False)

This module imports only torch and mmaction2 (it is the one place mcl-video touches mmaction2); nothing
else in the package imports it.
"""

from __future__ import annotations

from mmaction.models.common import Conv2plus1d  # the optional toolkit this module extends
from mmaction.registry import MODELS
from torch import nn

NAME = "MCLConv2plus1d"


def _triple(value) -> tuple[int, int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value, value)


def mcl_conv2plus1d(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                    bias=True, **kwargs) -> nn.Module:
    """mmaction2's ``Conv2plus1d(...)``, or ``nn.Conv3d`` when ``kernel_size`` is 1 in all three axes."""
    if _triple(kernel_size) == (1, 1, 1):
        return nn.Conv3d(in_channels, out_channels, 1, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=bias)
    return Conv2plus1d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                       dilation=dilation, groups=groups, bias=bias, **kwargs)


if NAME not in MODELS.module_dict:
    MODELS.register_module(name=NAME, module=mcl_conv2plus1d)
