"""Contrastive terms of MCL (InfoNCE with three positives, the intra-video and order terms) as pure functions.

Shapes: ``B`` batch, ``D`` embedding size, ``P`` positives per query, ``K`` queue length, ``N`` extra
per-query negatives. Embeddings are expected L2-normalised (not enforced: the math holds anyway).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def inter_logits(
    q: torch.Tensor,
    keys: torch.Tensor,
    queue: torch.Tensor,
    temperature: float,
    queue_mask: torch.Tensor | None = None,
    extra_negatives: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits ``B x P x (1 + N + K)``: row p is ``[q.k_p, q.extra_1..N, q.queue_1..K] / temperature``.

    q: ``B x D``; keys: ``B x P x D`` (the positives); queue: ``D x K``; queue_mask: ``B x K`` bool,
    True = not a negative for that query (logit set to -inf); extra_negatives: ``B x N x D``, each
    query's own extra negatives (e.g. motion-broken copies of its clip)."""
    _check_temperature(temperature)
    if q.dim() != 2 or keys.dim() != 3 or keys.shape[0] != q.shape[0] or keys.shape[2] != q.shape[1]:
        raise ValueError(f"q must be B x D and keys B x P x D, got {tuple(q.shape)}, {tuple(keys.shape)}")
    if queue.dim() != 2 or queue.shape[0] != q.shape[1]:
        raise ValueError(f"queue must be D x K with D={q.shape[1]}, got {tuple(queue.shape)}")
    b, p = keys.shape[:2]
    pos = torch.einsum("bd,bpd->bp", q, keys).unsqueeze(-1)  # B x P x 1
    neg = q @ queue  # B x K
    if queue_mask is not None:
        if queue_mask.shape != neg.shape:
            raise ValueError(f"queue_mask must be B x K = {tuple(neg.shape)}, got {tuple(queue_mask.shape)}")
        neg = neg.masked_fill(queue_mask, float("-inf"))
    parts = [pos]
    if extra_negatives is not None:
        if extra_negatives.dim() != 3 or extra_negatives.shape[0] != b:
            raise ValueError(f"extra_negatives must be B x N x D, got {tuple(extra_negatives.shape)}")
        parts.append(torch.einsum("bd,bnd->bn", q, extra_negatives).unsqueeze(1).expand(b, p, -1))
    parts.append(neg.unsqueeze(1).expand(b, p, -1))
    return torch.cat(parts, dim=2) / temperature


def nce_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy with target index 0 over all rows of ``... x L`` logits."""
    flat = logits.reshape(-1, logits.shape[-1])
    return F.cross_entropy(flat, torch.zeros(flat.shape[0], dtype=torch.long, device=flat.device))


def info_nce_multi_positive(
    q: torch.Tensor,
    keys: torch.Tensor,
    queue: torch.Tensor,
    temperature: float,
    queue_mask: torch.Tensor | None = None,
    extra_negatives: torch.Tensor | None = None,
) -> torch.Tensor:
    """Inter-video InfoNCE with ``P`` positives per query, each against the same negatives: the mean
    over the ``B x P`` rows of :func:`inter_logits` of the cross-entropy with target 0. Uniform logits
    give ``log(1 + N + K)``."""
    return nce_from_logits(inter_logits(q, keys, queue, temperature, queue_mask, extra_negatives))


def intra_video_loss(
    q: torch.Tensor, k0: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """Intra-video term (release): rows ``[q.k0, q.k1]`` and ``[q.k0, q.k2]`` over ``temperature``,
    target 0, mean over the ``2B`` rows. All inputs ``B x D``: the same clip must beat other clips of
    the video."""
    _check_temperature(temperature)
    if not (q.shape == k0.shape == k1.shape == k2.shape) or q.dim() != 2:
        raise ValueError(
            f"q, k0, k1, k2 must all be B x D, got {[tuple(t.shape) for t in (q, k0, k1, k2)]}"
        )
    l0, l1, l2 = ((q * k).sum(1) for k in (k0, k1, k2))
    logits = torch.stack([torch.stack([l0, l1], 1), torch.stack([l0, l2], 1)], 1)  # B x 2 x 2
    return nce_from_logits(logits / temperature)


ORDER_HEADS = ("linear", "mlp")


def order_head(kind: str, feat_dim: int) -> nn.Module:
    """The order term's classifier on ``cat[q, k1, k2]`` (``B x 3D`` -> ``B x 2``): ``linear`` (the
    release; it can only read each clip's absolute position, so on content that does not drift in time it
    stays at ln 2) or ``mlp`` (one hidden ReLU layer of ``D`` units, which can read the clips' relation)."""
    if kind == "linear":
        return nn.Linear(3 * feat_dim, 2)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(3 * feat_dim, feat_dim), nn.ReLU(inplace=True), nn.Linear(feat_dim, 2))
    raise ValueError(f"unknown order head {kind!r}; choose one of {', '.join(ORDER_HEADS)}")


def order_loss(
    q: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, order: torch.Tensor, classifier: nn.Module
) -> torch.Tensor:
    """Order term (release): ``classifier(cat[q, k1, k2])`` (``B x 3D`` -> ``B x 2``) against the
    order label ``order`` (``B`` long in {0, 1}); mean cross-entropy."""
    if not (q.shape == k1.shape == k2.shape) or q.dim() != 2:
        raise ValueError(f"q, k1, k2 must all be B x D, got {[tuple(t.shape) for t in (q, k1, k2)]}")
    if order.shape != (q.shape[0],):
        raise ValueError(f"order must have shape ({q.shape[0]},), got {tuple(order.shape)}")
    logits = classifier(torch.cat([q, k1, k2], dim=1))
    if logits.shape != (q.shape[0], 2):
        raise ValueError(f"order classifier must map B x 3D to B x 2, got {tuple(logits.shape)}")
    return F.cross_entropy(logits, order.long())
