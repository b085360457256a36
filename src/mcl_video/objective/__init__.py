"""mcl_video.objective: the MCL losses as pure functions (inter-video InfoNCE, intra, order, MAL).

``saliency`` is the submodule holding :func:`saliency_map`.
"""

from mcl_video.objective import saliency
from mcl_video.objective.alignment import (
    alignment_terms_from_saliency,
    loss_from_terms,
    motion_alignment_loss,
    motion_alignment_terms,
)
from mcl_video.objective.contrastive import (
    ORDER_HEADS,
    info_nce_multi_positive,
    inter_logits,
    intra_video_loss,
    nce_from_logits,
    order_head,
    order_loss,
)
from mcl_video.objective.saliency import SALIENCY_METHODS, saliency_map

__all__ = [
    "ORDER_HEADS",
    "SALIENCY_METHODS",
    "alignment_terms_from_saliency",
    "info_nce_multi_positive",
    "inter_logits",
    "intra_video_loss",
    "loss_from_terms",
    "motion_alignment_loss",
    "motion_alignment_terms",
    "nce_from_logits",
    "order_head",
    "order_loss",
    "saliency",
    "saliency_map",
]
