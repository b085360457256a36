"""Gradient-based saliency maps of a feature map (the release: ``ReLU(sum_c mean_hw(G) * G)``, G = d l / d X).

``grad`` is ``G = d l_pos / d X`` for the captured feature map ``X`` (``B x C x T' x H' x W'``).

- ``gradient`` (the release, default): channel weights per time step ``w = mean_{h,w} G``, then
  ``P = ReLU(sum_c w * G)``. Needs only the gradient.
- ``gradcam`` (classic Grad-CAM): channel weights ``a = mean_{t,h,w} G``, then
  ``P = ReLU(sum_c a * X)``. Needs the activation ``X`` too.

Both return ``B x T' x H' x W'``.
"""

from __future__ import annotations

import torch

SALIENCY_METHODS = ("gradient", "gradcam")


def _check_map(t: torch.Tensor, name: str) -> None:
    if t.dim() != 5:
        raise ValueError(f"{name} must be B x C x T' x H' x W', got shape {tuple(t.shape)}")


def saliency_map(
    grad: torch.Tensor, activation: torch.Tensor | None = None, method: str = "gradient"
) -> torch.Tensor:
    """Saliency ``B x T' x H' x W'`` from ``grad`` (and ``activation`` for ``gradcam``)."""
    _check_map(grad, "grad")
    if method == "gradient":
        weights = grad.mean(dim=(3, 4), keepdim=True)  # B x C x T' x 1 x 1
        return torch.relu((weights * grad).sum(dim=1))
    if method == "gradcam":
        if activation is None:
            raise ValueError("saliency 'gradcam' needs the activation X as well as its gradient")
        _check_map(activation, "activation")
        if activation.shape != grad.shape:
            raise ValueError(
                f"activation {tuple(activation.shape)} and grad {tuple(grad.shape)} must have one shape"
            )
        weights = grad.mean(dim=(2, 3, 4), keepdim=True)  # B x C x 1 x 1 x 1
        return torch.relu((weights * activation).sum(dim=1))
    raise ValueError(f"unknown saliency {method!r}; choose one of {SALIENCY_METHODS}")
