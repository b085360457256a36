"""The motion alignment part of MCL: capture, saliency and the three cosine terms.

    mal = MotionAlignment(encoder_q.backbone, saliency="gradient")
    with mal.capturing():                       # the query forward keeps X of the alignment layer
        q = encoder_q(clips)
    loss_mal, metrics = mal(l_pos, target)     # saliency of d l_pos / d X vs. the motion target

``X`` (``B x C x T' x H' x W'``) is the output of the backbone's ``alignment_layer``, a convolution inside
the last residual block (``capture.py`` explains the two pitfalls it guards against).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from mcl_video.models.base import Backbone
from mcl_video.models.capture import FeatureCapture
from mcl_video.objective.alignment import alignment_terms_from_saliency, loss_from_terms
from mcl_video.objective.saliency import saliency_map

# what MotionAlignment reports: the loss, its three cosines, the loss of a flat (constant) saliency
# map, and the share of clips whose saliency is zero everywhere ("dead")
MAL_METRICS = ("loss_mal", "mal_spatiotemporal", "mal_temporal", "mal_spatial", "mal_flat_loss", "mal_dead")


class MotionAlignment:
    """Owns the capture of ``backbone.alignment_layer`` and turns ``d l_pos / d X`` into ``L_MAL``."""

    def __init__(self, backbone: Backbone, saliency: str = "gradient"):
        self.capture = FeatureCapture(backbone, backbone.alignment_layer)
        self.saliency = saliency

    @contextlib.contextmanager
    def capturing(self, enabled: bool = True) -> Iterator[None]:
        """Keep X of the alignment layer during the forward passes inside the block (when ``enabled``)."""
        self.capture.enabled = enabled
        try:
            yield
        finally:
            self.capture.enabled = False

    def saliency_map(self, l_pos: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
        """``G = d sum_b l_pos / d X`` of the captured X -> saliency ``B x T' x H' x W'``."""
        x = self.capture.pop()  # B x C x T' x H' x W'
        grad = torch.autograd.grad(l_pos.sum(), x, create_graph=create_graph)[0]  # B x C x T' x H' x W'
        return saliency_map(grad, x, self.saliency)

    def __call__(self, l_pos: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """``L_MAL`` (scalar, differentiable) for the same-clip logits ``l_pos`` (``B``) and the motion
        target (``B x T' x H' x W'``, on the alignment layer's grid), and its metrics (detached)."""
        sal = self.saliency_map(l_pos)  # B x T' x H' x W'
        target = target.to(sal.device)
        terms = alignment_terms_from_saliency(sal, target)  # {spatiotemporal, temporal, spatial}: B each
        loss = loss_from_terms(terms)
        flat = loss_from_terms(alignment_terms_from_saliency(torch.ones_like(sal), target))
        metrics = {
            "loss_mal": loss,
            "mal_spatiotemporal": terms["spatiotemporal"].mean(),
            "mal_temporal": terms["temporal"].mean(),
            "mal_spatial": terms["spatial"].mean(),
            "mal_flat_loss": flat,
            # a clip whose saliency is zero everywhere (ReLU of an all-negative map) has cosines 0 and
            # passes no gradient through the ReLU: MAL cannot move it
            "mal_dead": (sal.detach().flatten(1).amax(dim=1) <= 0).float().mean(),
        }
        return loss, {name: value.detach() for name, value in metrics.items()}

    @staticmethod
    def off(zero: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The loss and metrics when MAL is switched off or not computed (no gradient): all zero."""
        return zero, dict.fromkeys(MAL_METRICS, zero)
