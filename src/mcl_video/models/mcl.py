"""MCL: Motion-Focused Contrastive Learning, the whole method in one module (METHOD §4).

A query encoder f_q and a momentum key encoder f_k (backbone -> global average pool -> 2-layer MLP
heads -> 128-d, L2-normalised; one head per term: inter, intra, order), a queue of keys with the
video id of each key, and the four terms:

    L = L_inter + L_intra + order_weight * L_order + mal_weight * L_MAL

No device is hard-coded: move the module with ``.to(device)``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mcl_video.models.backbones import build_backbone
from mcl_video.models.capture import FeatureCapture
from mcl_video.models.dist import batch_shuffle, batch_unshuffle, concat_all_gather
from mcl_video.objective.alignment import alignment_terms_from_saliency, loss_from_terms
from mcl_video.objective.contrastive import inter_logits, intra_video_loss, nce_from_logits, order_loss
from mcl_video.objective.saliency import SALIENCY_METHODS, saliency_map

BROKEN_KINDS = {False: (), True: ("shuffle", "repeat"), "both": ("shuffle", "repeat"),
                "shuffle": ("shuffle",), "repeat": ("repeat",)}  # fmt: skip
MAL_KEYS = ("loss_mal", "mal_spatiotemporal", "mal_temporal", "mal_spatial", "mal_flat_loss", "mal_dead")


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
    motion_broken_negatives: bool | str = False  # True/"both", "shuffle" or "repeat"
    shuffle_bn: bool = True
    sync_bn: bool = False

    def __post_init__(self):
        if self.saliency not in SALIENCY_METHODS:
            raise ValueError(f"MCLConfig.saliency must be one of {SALIENCY_METHODS}, got {self.saliency!r}")
        if self.motion_broken_negatives not in BROKEN_KINDS:
            raise ValueError(
                "MCLConfig.motion_broken_negatives must be False, True, 'both', 'shuffle' or 'repeat', "
                f"got {self.motion_broken_negatives!r}"
            )
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


class MCL(nn.Module):
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
        self.order_classifier = nn.Linear(3 * cfg.feat_dim, 2) if cfg.use_order else None
        self.register_buffer("queue", F.normalize(torch.randn(cfg.feat_dim, cfg.queue_size), dim=0))
        self.register_buffer("queue_ids", torch.full((cfg.queue_size,), -1, dtype=torch.long))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._capture = self._make_capture() if cfg.use_mal else None

    def _make_capture(self) -> FeatureCapture:
        backbone = self.encoder_q.backbone
        return FeatureCapture(backbone, backbone.alignment_layer)

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
    def _broken_negatives(self, clip: torch.Tensor) -> torch.Tensor:
        """Motion-broken copies of each query clip ``B x C x T x H x W`` (frames shuffled in time and/or
        one frame repeated), encoded by the key encoder -> ``B x N x D`` extra negatives."""
        b, t = clip.shape[0], clip.shape[2]
        copies = []
        for kind in BROKEN_KINDS[self.config.motion_broken_negatives]:
            if kind == "shuffle":
                perm = torch.stack([torch.randperm(t, device=clip.device) for _ in range(b)])
                ident = (perm == torch.arange(t, device=clip.device)).all(1)
                perm[ident] = perm[ident].roll(1, dims=1)  # never the original order (T >= 2)
                idx = perm
            else:
                idx = torch.randint(t, (b, 1), device=clip.device).expand(b, t)
            copies.append(torch.stack([clip[i][:, idx[i]] for i in range(b)]))
        emb = self._encode_keys(torch.cat(copies))["inter"]  # (N B) x D
        return emb.view(len(copies), b, -1).transpose(0, 1)

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

    def forward(
        self, batch: dict, order_weight: float = 1.0, mal_weight: float = 1.0
    ) -> dict[str, torch.Tensor]:
        cfg, b = self.config, batch["q"].shape[0]
        mal_on = cfg.use_mal and torch.is_grad_enabled()
        if mal_on:
            self._capture.enabled = True
        try:
            q = self.encoder_q(batch["q"])  # {head: B x D}
        finally:
            if self._capture is not None:
                self._capture.enabled = False
        k = self._encode_keys(torch.cat([batch["k0"], batch["k1"], batch["k2"]]))
        k = {h: v.view(3, b, -1) for h, v in k.items()}  # {head: 3 x B x D}: k0, k1, k2
        zero = q["inter"].new_zeros(())

        # inter-video InfoNCE: 3 positives against the queue (+ motion-broken copies of the query)
        index = batch["index"].to(self.queue_ids.device)
        mask = self.queue_ids[None, :] == index[:, None] if cfg.mask_same_video else None  # B x K
        broken = self._broken_negatives(batch["q"]) if cfg.motion_broken_negatives else None
        logits = inter_logits(
            q["inter"], k["inter"].transpose(0, 1), self.queue.clone().detach(), cfg.temperature, mask, broken
        )  # B x 3 x (1 + N + K)
        loss_inter = nce_from_logits(logits)
        pos_prob = torch.softmax(logits[:, 0].detach(), dim=1)[:, 0].mean()

        loss_intra = intra_video_loss(q["intra"], *k["intra"], cfg.temperature) if cfg.use_intra else zero
        loss_order = zero
        if cfg.use_order:
            order = batch["order"].to(logits.device)
            loss_order = order_loss(q["order"], k["order"][1], k["order"][2], order, self.order_classifier)

        mal = dict.fromkeys(MAL_KEYS, zero)
        if mal_on:
            l_pos = (q["inter"] * k["inter"][0]).sum(1) / cfg.temperature  # B: logit of q.k0
            mal = self._motion_alignment(self._capture.pop(), l_pos, batch["target"])

        loss = loss_inter + loss_intra + order_weight * loss_order + mal_weight * mal["loss_mal"]
        self._dequeue_and_enqueue(k["inter"].reshape(3 * b, -1), index.repeat(3))
        out = {"loss_inter": loss_inter, "loss_intra": loss_intra, "loss_order": loss_order, **mal}
        return {"loss": loss, "pos_prob": pos_prob, **{n: v.detach() for n, v in out.items()}}

    def _check_grid(self, x: torch.Tensor, target: torch.Tensor) -> None:
        if target.shape != (x.shape[0],) + tuple(x.shape[2:]):
            layer = self.encoder_q.backbone.alignment_layer
            raise ValueError(
                f"motion target has shape {tuple(target.shape)} but the alignment layer {layer!r} of "
                f"{self.config.backbone} gives a {tuple(x.shape[2:])} grid for this input; build the "
                "dataset's target_grid with backbone.feature_grid(clip_len, size)"
            )

    def _saliency(self, x: torch.Tensor, l_pos: torch.Tensor, create_graph: bool) -> torch.Tensor:
        """``G = d sum_b l_pos / d X`` -> saliency ``B x T' x H' x W'`` (METHOD §4)."""
        grad = torch.autograd.grad(l_pos.sum(), x, create_graph=create_graph)[0]
        return saliency_map(grad, x, self.config.saliency)

    def _motion_alignment(self, x: torch.Tensor, l_pos: torch.Tensor, target: torch.Tensor) -> dict:
        """MAL between the saliency of X (``B x C x T' x H' x W'``) and the motion target."""
        self._check_grid(x, target)
        sal = self._saliency(x, l_pos, create_graph=True)
        terms = alignment_terms_from_saliency(sal, target.to(sal.device))
        flat = alignment_terms_from_saliency(torch.ones_like(sal), target.to(sal.device))
        return {
            "loss_mal": loss_from_terms(terms),
            "mal_spatiotemporal": terms["spatiotemporal"].detach().mean(),
            "mal_temporal": terms["temporal"].detach().mean(),
            "mal_spatial": terms["spatial"].detach().mean(),
            "mal_flat_loss": loss_from_terms(flat).detach(),
            # share of clips whose saliency is zero everywhere (ReLU of an all-negative map): their
            # three cosines are 0 and the ReLU passes no gradient, so MAL cannot move them
            "mal_dead": (sal.detach().flatten(1).amax(dim=1) <= 0).float().mean(),
        }

    def saliency_maps(self, batch: dict) -> torch.Tensor:
        """Saliency ``B x T' x H' x W'`` of the query clips for their same-clip positive (no queue
        update, no graph kept): for visualisation and checks."""
        if self._capture is None:
            self._capture = self._make_capture()
        with torch.enable_grad():
            self._capture.enabled = True
            try:
                q = self.encoder_q(batch["q"])["inter"]
            finally:
                self._capture.enabled = False
            x = self._capture.pop()
            k0 = self._encode_keys(batch["k0"])["inter"]
            sal = self._saliency(x, (q * k0).sum(1) / self.config.temperature, create_graph=False)
        return sal.detach()
