"""Motion alignment loss (MAL): saliency of a late conv vs. the optical-flow motion map.

With saliency ``P`` and target ``S`` (both ``B x T' x H' x W'``):

- spatio-temporal: per time step cosine(P_t, S_t) over positions, averaged over t with weights
  ``softmax_t(sum_hw S_t)`` (note: these weights depend on the scale of S, as in the release);
- temporal: cosine of ``(sum_hw P_t)_t`` and ``(sum_hw S_t)_t``;
- spatial: cosine of ``mean_t P`` and ``mean_t S`` over positions;
- ``L = mean_batch[(1 - cos_st) + (1 - cos_t) + (1 - cos_s)]``.

A cosine with an all-zero vector is 0 (norms are clamped at ``EPS``).
"""

from __future__ import annotations

import torch

from mcl_video.objective.saliency import saliency_map

EPS = 1e-12


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine along the last axis: ``... x N`` -> ``...``."""
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(EPS)


def alignment_terms_from_saliency(sal: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample cosines ``spatiotemporal``, ``temporal``, ``spatial`` (each ``B``) between saliency
    ``sal`` and motion ``target`` (both ``B x T' x H' x W'``)."""
    if sal.dim() != 4 or sal.shape != target.shape:
        raise ValueError(
            f"saliency {tuple(sal.shape)} and target {tuple(target.shape)} must both be B x T' x H' x W' "
            "with one grid; build the dataset's target on the backbone's feature_grid(clip_len, size)"
        )
    target = target.to(sal.dtype)
    b, t = sal.shape[:2]
    per_step = _cosine(sal.reshape(b, t, -1), target.reshape(b, t, -1))  # B x T'
    step_weights = torch.softmax(target.sum(dim=(2, 3)), dim=1)  # B x T'
    return {
        "spatiotemporal": (per_step * step_weights).sum(dim=1),
        "temporal": _cosine(sal.sum(dim=(2, 3)), target.sum(dim=(2, 3))),
        "spatial": _cosine(sal.mean(dim=1).reshape(b, -1), target.mean(dim=1).reshape(b, -1)),
    }


def loss_from_terms(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """``mean_batch[(1 - cos_st) + (1 - cos_t) + (1 - cos_s)]`` (scalar)."""
    return ((1 - terms["spatiotemporal"]) + (1 - terms["temporal"]) + (1 - terms["spatial"])).mean()


def motion_alignment_terms(
    grad: torch.Tensor,
    target: torch.Tensor,
    activation: torch.Tensor | None = None,
    saliency: str = "gradient",
) -> dict[str, torch.Tensor]:
    """Per-sample cosines from ``grad`` (``B x C x T' x H' x W'``) and ``target``
    (``B x T' x H' x W'``); ``saliency`` is ``gradient`` (release) or ``gradcam`` (needs
    ``activation``, the feature map itself)."""
    if grad.dim() != 5 or grad.shape[0] != target.shape[0] or grad.shape[2:] != target.shape[1:]:
        raise ValueError(
            f"grad {tuple(grad.shape)} must be B x C x T' x H' x W' and target {tuple(target.shape)} "
            "B x T' x H' x W' on the same grid; build the target on the backbone's feature_grid"
        )
    return alignment_terms_from_saliency(saliency_map(grad, activation, saliency), target)


def motion_alignment_loss(
    grad: torch.Tensor,
    target: torch.Tensor,
    activation: torch.Tensor | None = None,
    saliency: str = "gradient",
) -> torch.Tensor:
    """Scalar ``L_MAL`` (see module docstring); arguments as :func:`motion_alignment_terms`."""
    return loss_from_terms(motion_alignment_terms(grad, target, activation, saliency))
