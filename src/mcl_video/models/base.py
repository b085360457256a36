"""The backbone interface the rest of the package relies on (every backbone, release or small).

Every backbone is a :class:`Backbone`:

- ``forward_features(x)``: ``B x 3 x T x H x W`` -> ``B x C x T' x H' x W'`` (before pooling);
- ``forward(x)``: ``B x C``, the global average pool of the features;
- ``num_features``: ``C``;
- ``alignment_layer``: dotted name of the convolution whose output the motion alignment loss reads
  (inside the last residual block, before its final BN, residual addition and ReLU: after them the
  gradient is the same at every position);
- ``feature_grid(clip_len, size)``: ``(T', H', W')`` for a ``clip_len x size x size`` input.

The backbones themselves live in ``backbones.py`` (torchvision's), ``p3d_resnet.py`` and ``tiny.py``;
``backbones.BACKBONES`` maps each name to its constructor.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_out(n: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution/pooling along one axis (floor mode)."""
    return (n + 2 * padding - kernel) // stride + 1


def check_clip(x: torch.Tensor, name: str) -> None:
    """Raise a clear error unless ``x`` is a ``B x 3 x T x H x W`` float tensor."""
    if x.dim() != 5 or x.shape[1] != 3:
        raise ValueError(
            f"{name}: expected a B x 3 x T x H x W clip batch, got shape {tuple(x.shape)} "
            "(datasets yield C x T x H x W; collate them into a batch)"
        )


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
