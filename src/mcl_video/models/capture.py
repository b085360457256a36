"""Capture of the feature map ``X`` that the motion alignment loss differentiates (a convolution output).

``X`` must be the output of a *convolution* inside the last residual block, before the block's final
BN, residual addition and ReLU. Two pitfalls are guarded here:

1. Pointing at a block output / ReLU / BN / pooling: after the final ReLU and global average pooling
   ``d l_pos / d X`` is the same at every position, so the saliency carries no spatial information.
   Such layers are refused with an explanation.
2. In-place ops: torchvision blocks do ``out += residual`` and ``ReLU(inplace=True)``; if the stored
   tensor were later modified in place, ``autograd.grad`` would differentiate the wrong value. The
   hook therefore hands a *clone* to the rest of the network and keeps the original, which nothing
   else touches; its version counter is checked anyway.
"""

from __future__ import annotations

import torch
from torch import nn


def _last_leaf(module: nn.Module) -> nn.Module:
    children = list(module.children())
    return module if not children else _last_leaf(children[-1])


def check_alignment_layer(model: nn.Module, name: str) -> nn.Module:
    """Return ``model``'s submodule ``name`` if its output is a raw convolution output; raise otherwise."""
    try:
        module = model.get_submodule(name)
    except AttributeError as err:
        raise ValueError(f"alignment layer {name!r} does not exist in {type(model).__name__}") from err
    leaf = _last_leaf(module)
    if not isinstance(leaf, nn.Conv3d):
        raise ValueError(
            f"alignment layer {name!r} ({type(module).__name__}, last op {type(leaf).__name__}) is not a "
            "convolution output: the motion alignment loss needs a conv inside the last residual block, "
            "before its BN, residual addition and ReLU. After the ReLU/pooling the gradient "
            "is the same at every position, so the saliency map would be flat and teach nothing. "
            "Use the backbone's default, e.g. 'layer4.1.conv2.0' (R(2+1)D-18) or 'layer4.2.conv3' (P3D)."
        )
    return module


class FeatureCapture:
    """Forward hook storing the output of ``model.<name>`` (``B x C x T' x H' x W'``) as ``.output``."""

    def __init__(self, model: nn.Module, name: str):
        self.name = name
        self.module = check_alignment_layer(model, name)
        self.output: torch.Tensor | None = None
        self._version = -1
        self.enabled = False
        self._handle = self.module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if not self.enabled:
            return None
        self.output = output
        self._version = output._version
        return output.clone()  # the network continues on a copy; `output` is never modified in place

    def pop(self) -> torch.Tensor:
        """The captured map (and forget it). Raises if nothing was captured or it was modified."""
        out, self.output = self.output, None
        if out is None:
            raise RuntimeError(f"alignment layer {self.name!r} was not run in the last forward pass")
        if out._version != self._version:
            raise RuntimeError(f"the captured output of {self.name!r} was modified in place after capture")
        return out

    def remove(self) -> None:
        self._handle.remove()
