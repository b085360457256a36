"""MCL: Motion-Focused Contrastive Learning, the whole method in one module.

A query encoder f_q and a momentum key encoder f_k (backbone -> global average pool -> 2-layer MLP
heads -> 128-d, L2-normalised; one head per term: inter, intra, order), a queue of keys with the
video id of each key, and the four terms:

    L = L_inter + L_intra + order_weight * L_order + mal_weight * L_MAL

``forward(batch)`` returns ``(loss, metrics)``: the loss to back-propagate and a dict of detached scalars
(every term, ``pos_prob`` and the MAL monitors) that the training loop logs as it is.
No device is hard-coded: move the module with ``.to(device)``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mcl_video.models.backbones import build_backbone
from mcl_video.models.dist import batch_shuffle, batch_unshuffle, concat_all_gather
from mcl_video.models.motion_alignment import MotionAlignment
from mcl_video.objective.contrastive import (
    ORDER_HEADS,
    inter_logits,
    intra_video_loss,
    nce_from_logits,
    order_head,
    order_loss,
)
from mcl_video.objective.saliency import SALIENCY_METHODS

BROKEN_KINDS = ("shuffle", "repeat")  # motion-broken negatives (an ablation, not the release)


@dataclass
class MCLConfig:
    backbone: str
    backbone_options: dict = field(default_factory=dict)
    feat_dim: int = 128
    queue_size: int = 131072
    temperature: float = 0.1
    momentum: float = 0.999
    mask_same_video: bool = True
    use_intra: bool = True
    use_order: bool = True
    use_mal: bool = True
    saliency: str = "gradient"  # or "gradcam"
    order_head: str = "linear"  # the release's; or "mlp"
    motion_broken_negatives: tuple[str, ...] = ()  # kinds from BROKEN_KINDS; () = none (the release)
    shuffle_bn: bool = True
    sync_bn: bool = False

    def __post_init__(self):
        self.motion_broken_negatives = tuple(self.motion_broken_negatives)
        if self.saliency not in SALIENCY_METHODS:
            raise ValueError(f"MCLConfig.saliency must be one of {SALIENCY_METHODS}, got {self.saliency!r}")
        if self.order_head not in ORDER_HEADS:
            raise ValueError(f"MCLConfig.order_head must be one of {ORDER_HEADS}, got {self.order_head!r}")
        if not set(self.motion_broken_negatives) <= set(BROKEN_KINDS):
            raise ValueError(f"MCLConfig.motion_broken_negatives: kinds must be from {BROKEN_KINDS}, "
                             f"got {self.motion_broken_negatives!r}")
        if self.queue_size < 1 or self.feat_dim < 1 or not self.temperature > 0:
            raise ValueError("MCLConfig: queue_size and feat_dim must be >= 1 and temperature > 0")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"MCLConfig.momentum must be in [0, 1), got {self.momentum}")


class Encoder(nn.Module):
    """Backbone + one MLP head per term: ``B x 3 x T x H x W`` -> {head: ``B x feat_dim``}, unit norm."""

    def __init__(self, backbone: nn.Module, heads: tuple[str, ...], feat_dim: int):
        super().__init__()
        self.backbone = backbone
        c = backbone.num_features
        self.heads = nn.ModuleDict(
            {h: nn.Sequential(nn.Linear(c, c), nn.ReLU(inplace=True), nn.Linear(c, feat_dim)) for h in heads}
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = self.backbone(x)  # B x C
        return {h: F.normalize(head(pooled), dim=1) for h, head in self.heads.items()}


def motion_broken_clips(clips: torch.Tensor, kinds: tuple[str, ...]) -> torch.Tensor:
    """Copies of each clip of ``B x C x T x H x W`` whose motion is broken, ``(len(kinds) B) x C x T x H x W``
    (kind-major): ``shuffle`` permutes the frames (never in the original order, T >= 2), ``repeat``
    shows one random frame T times."""
    b, t = clips.shape[0], clips.shape[2]
    copies = []
    for kind in kinds:
        if kind == "shuffle":
            order = torch.stack([torch.randperm(t, device=clips.device) for _ in range(b)])  # B x T
            same = (order == torch.arange(t, device=clips.device)).all(1)
            order[same] = order[same].roll(1, dims=1)
        elif kind == "repeat":
            order = torch.randint(t, (b, 1), device=clips.device).expand(b, t)  # B x T
        else:
            raise ValueError(f"unknown motion-broken kind {kind!r}; choose from {BROKEN_KINDS}")
        copies.append(clips.gather(2, order[:, None, :, None, None].expand_as(clips)))
    return torch.cat(copies)


class MCL(nn.Module):
    """Query encoder, momentum key encoder, queue of keys (with video ids) and the four terms."""

    def __init__(self, config: MCLConfig):
        super().__init__()
        self.config = cfg = config
        heads = ("inter",) + ("intra",) * cfg.use_intra + ("order",) * cfg.use_order
        self.encoder_q = Encoder(build_backbone(cfg.backbone, **cfg.backbone_options), heads, cfg.feat_dim)
        if cfg.sync_bn:
            self.encoder_q = nn.SyncBatchNorm.convert_sync_batchnorm(self.encoder_q)
        self.encoder_k = copy.deepcopy(self.encoder_q)  # before any hook is registered on encoder_q
        for p in self.encoder_k.parameters():
            p.requires_grad = False
        self.order_classifier = order_head(cfg.order_head, cfg.feat_dim) if cfg.use_order else None
        self.register_buffer("queue", F.normalize(torch.randn(cfg.feat_dim, cfg.queue_size), dim=0))
        self.register_buffer("queue_ids", torch.full((cfg.queue_size,), -1, dtype=torch.long))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.alignment = MotionAlignment(self.encoder_q.backbone, cfg.saliency)

    def forward(self, batch: dict, order_weight: float = 1.0, mal_weight: float = 1.0):
        """Clips ``q, k0, k1, k2``: ``B x 3 x T x H x W``; ``target``: ``B x T' x H' x W'`` motion map of q;
        ``order``: ``B`` (1: the query clip precedes k1 and k2); ``index``: ``B`` video ids.
        Returns ``(loss, metrics)``: the scalar loss and {name: detached scalar}."""
        cfg, b = self.config, batch["q"].shape[0]
        mal_on = cfg.use_mal and torch.is_grad_enabled()
        with self.alignment.capturing(mal_on):  # keeps X (B x C x T' x H' x W') for MAL
            q = self.encoder_q(batch["q"])  # {head: B x D}
        k = self._encode_keys(torch.cat([batch["k0"], batch["k1"], batch["k2"]]))  # {head: 3B x D}
        k = {h: v.view(3, b, -1) for h, v in k.items()}  # {head: 3 x B x D}: k0, k1, k2
        index = batch["index"].to(self.queue_ids.device)  # B: video ids
        zero = q["inter"].new_zeros(())

        # inter-video InfoNCE: 3 positives against the queue (+ motion-broken copies of the query)
        mask = self.queue_ids[None, :] == index[:, None] if cfg.mask_same_video else None  # B x K
        broken = self._broken_negatives(batch["q"])  # B x N x D, or None
        queue = self.queue.clone().detach()  # D x K
        logits = inter_logits(q["inter"], k["inter"].transpose(0, 1), queue, cfg.temperature, mask, broken)
        loss_inter = nce_from_logits(logits)  # logits: B x 3 x (1 + N + K), positive at 0
        # intra-video: the same clip must beat the video's other two clips
        loss_intra = intra_video_loss(q["intra"], *k["intra"], cfg.temperature) if cfg.use_intra else zero
        loss_order = zero
        if cfg.use_order:  # does q come before k1, k2? from cat[q, k1, k2] (B x 3D)
            order = batch["order"].to(zero.device)  # B
            loss_order = order_loss(q["order"], k["order"][1], k["order"][2], order, self.order_classifier)
        # motion alignment: saliency of the same-clip logit vs. the motion target
        l_pos = (q["inter"] * k["inter"][0]).sum(1) / cfg.temperature  # B
        loss_mal, mal = self.alignment(l_pos, batch["target"]) if mal_on else MotionAlignment.off(zero)

        loss = loss_inter + loss_intra + order_weight * loss_order + mal_weight * loss_mal
        self._dequeue_and_enqueue(k["inter"].reshape(3 * b, -1), index.repeat(3))
        pos_prob = torch.softmax(logits[:, 0].detach(), dim=1)[:, 0].mean()  # of k0 among its row
        terms = {"loss": loss, "loss_inter": loss_inter, "loss_intra": loss_intra, "loss_order": loss_order}
        return loss, {**{n: v.detach() for n, v in terms.items()}, **mal, "pos_prob": pos_prob}

    @torch.no_grad()
    def momentum_update(self) -> None:
        """f_k <- m f_k + (1 - m) f_q (parameters only; BN statistics are the key encoder's own)."""
        m = self.config.momentum
        for p_q, p_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            p_k.mul_(m).add_(p_q.detach(), alpha=1 - m)

    @torch.no_grad()
    def _encode_keys(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        """Key encoder (no grad, BN in the module's mode) with shuffle-BN across ranks."""
        idx = None
        if self.config.shuffle_bn:
            clips, idx = batch_shuffle(clips)
        return {h: batch_unshuffle(v, idx) for h, v in self.encoder_k(clips).items()}

    @torch.no_grad()
    def _broken_negatives(self, clips: torch.Tensor) -> torch.Tensor | None:
        """Key embeddings ``B x N x D`` of N motion-broken copies of each query clip (None when off)."""
        kinds = self.config.motion_broken_negatives
        if not kinds:
            return None
        emb = self._encode_keys(motion_broken_clips(clips, kinds))["inter"]  # (N B) x D
        return emb.view(len(kinds), clips.shape[0], -1).transpose(0, 1)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys: torch.Tensor, ids: torch.Tensor) -> None:
        """Write keys ``n x D`` (all ranks) and their video ids at the pointer, wrapping around."""
        keys, ids = concat_all_gather(keys), concat_all_gather(ids)
        size = self.config.queue_size
        if keys.shape[0] > size:
            keys, ids = keys[-size:], ids[-size:]
        slots = (self.queue_ptr + torch.arange(keys.shape[0], device=keys.device)) % size
        self.queue[:, slots] = keys.T.to(self.queue.dtype)
        self.queue_ids[slots] = ids
        self.queue_ptr.fill_((int(self.queue_ptr) + keys.shape[0]) % size)

    def saliency_maps(self, batch: dict) -> torch.Tensor:
        """Saliency ``B x T' x H' x W'`` of the query clips for their same-clip positive (no queue
        update, no graph kept): for visualisation and checks."""
        with torch.enable_grad():
            with self.alignment.capturing():
                q = self.encoder_q(batch["q"])["inter"]  # B x D
            k0 = self._encode_keys(batch["k0"])["inter"]  # B x D
            sal = self.alignment.saliency_map((q * k0).sum(1) / self.config.temperature, create_graph=False)
        return sal.detach()
