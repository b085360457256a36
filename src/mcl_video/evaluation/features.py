"""Frozen-backbone feature extraction: pooled features averaged over each video's clips (the release: 20).

Under torchrun every rank extracts a strided share of the videos (rank r takes r, r + W, r + 2W, ...);
the shares are gathered to every rank and rank 0 writes the ``.npz``. Without a process group it is a
plain single-process loop. ``extract_stacked`` runs several encoders on one decoding pass.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from mcl_video.evaluation.datasets import EvalClipDataset, collate_videos
from mcl_video.models import dist as process_group

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureProtocol:
    """How frozen features are taken and fed to the SVM probe (clips, crop, resize, standardisation).

    ``release``: the authors' UCF101/HMDB51 linear-probe protocol: 20 uniformly spaced clips per video,
    a 224 x 224 centre crop of frames with short side 240-256 taken without resizing the crop
    (``short_side="native"``), raw features into the SVM (no standardisation).
    ``default``: ours: the short side resized to the crop side ``size``, centre crop, features
    standardised with the training set's statistics (see :func:`linear_probe_svm`).
    """

    name: str
    num_clips: int
    size: int
    short_side: int | str
    svm_preprocess: str

    def dataset(
        self, video_root: str | Path, records: Sequence, clip_len: int = 16, stride: int = 2
    ) -> EvalClipDataset:
        """The :class:`EvalClipDataset` (centre crop) this protocol extracts features from."""
        return EvalClipDataset(
            video_root, records, clip_len, stride, self.num_clips, self.size, "center", self.short_side
        )


FEATURE_PROTOCOLS = ("default", "release")
RELEASE_NUM_CLIPS = 20
RELEASE_CROP = 224


def feature_protocol(name: str = "default", size: int = 112, num_clips: int = 20) -> FeatureProtocol:
    """The named :class:`FeatureProtocol`; ``size`` and ``num_clips`` apply to ``default`` only
    (``release`` fixes them at 224 and 20)."""
    if name == "release":
        return FeatureProtocol("release", RELEASE_NUM_CLIPS, RELEASE_CROP, "native", "none")
    if name == "default":
        return FeatureProtocol("default", num_clips, size, size, "standardize")
    raise ValueError(f"protocol must be one of {FEATURE_PROTOCOLS}, got {name!r}")


def shard_indices(num_items: int, rank: int, world_size: int) -> list[int]:
    """The dataset indices rank ``rank`` of ``world_size`` extracts: ``rank, rank + W, ...``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"invalid rank {rank} for world size {world_size}")
    return list(range(rank, num_items, world_size))


def merge_shards(shards: list[dict]) -> dict:
    """Concatenate per-rank results and sort them by dataset index (the order of the records)."""
    shards = [s for s in shards if len(s["indices"])]
    if not shards:
        return _empty(0)
    cat = {k: np.concatenate([s[k] for s in shards]) for k in ("features", "labels", "ids", "indices")}
    order = np.argsort(cat["indices"], kind="stable")
    out = {k: v[order] for k, v in cat.items()}
    out["skipped"] = sorted({i for s in shards for i in s.get("skipped", [])})
    return out


def _empty(dim: int) -> dict:
    return {
        "features": np.zeros((0, dim), np.float32),
        "labels": np.zeros(0, np.int64),
        "ids": np.zeros(0, dtype=str),
        "indices": np.zeros(0, np.int64),
        "skipped": [],
    }


def _dist_rank_world() -> tuple[int, int]:
    return process_group.rank(), process_group.world_size()


@torch.no_grad()
def _pooled_video_features(backbone, clips: torch.Tensor, device, clip_chunk: int) -> torch.Tensor:
    """``B x V x 3 x T x H x W`` -> ``B x C``: pooled features averaged over the V views."""
    b, v = clips.shape[:2]
    flat = clips.flatten(0, 1)
    feats = [
        backbone(flat[i : i + clip_chunk].to(device)).float().cpu() for i in range(0, len(flat), clip_chunk)
    ]
    return torch.cat(feats).view(b, v, -1).mean(dim=1)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_unchanged(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    changed = [k for k, v in module.state_dict().items() if k not in before or not torch.equal(v, before[k])]
    if changed:
        raise RuntimeError(
            f"the frozen backbone changed during feature extraction ({len(changed)} tensors, "
            f"e.g. {changed[:5]}); it must run in eval mode without updates (check for BN in train mode "
            "or a forward hook that writes to the weights)"
        )


def extract_features(
    backbone: torch.nn.Module,
    dataset: torch.utils.data.Dataset,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    clip_chunk: int = 32,
    out_path: str | Path | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    progress: bool = False,
) -> dict:
    """Features of every video of ``dataset`` (items as :class:`EvalClipDataset` yields them).

    The backbone runs in eval mode under ``no_grad``; its parameters and buffers (BN statistics) are
    checked bit-for-bit unchanged afterwards. ``rank``/``world_size`` default to the initialised
    process group (or 0/1); with several ranks the shares are all-gathered.

    Returns:
        ``{"features": N x C float32, "labels": N int64, "ids": N str, "indices": N int64 (dataset
        index), "skipped": [dataset indices of unreadable videos]}``, in dataset order. When
        ``out_path`` is given, rank 0 also writes it with :func:`save_features`.
    """
    d_rank, d_world = _dist_rank_world()
    rank = d_rank if rank is None else rank
    world_size = d_world if world_size is None else world_size
    mine = shard_indices(len(dataset), rank, world_size)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, mine),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_videos,
    )
    was_training = backbone.training
    backbone.eval()
    before = _snapshot(backbone)
    feats, labels, ids, indices = [], [], [], []
    bar = tqdm(total=len(loader), unit="batch", desc="features", disable=not progress or rank != 0,
               dynamic_ncols=True)
    for batch in loader:
        bar.update(1)
        if batch is None:
            continue
        feats.append(_pooled_video_features(backbone, batch["clips"], device, clip_chunk))
        labels.append(batch["label"])
        indices.append(batch["index"])
        ids.extend(batch["video_id"])
    bar.close()
    _assert_unchanged(backbone, before)
    backbone.train(was_training)
    local = _empty(int(getattr(backbone, "num_features", 0)))
    if feats:
        local.update(
            features=torch.cat(feats).numpy().astype(np.float32),
            labels=torch.cat(labels).numpy(),
            ids=np.asarray(ids, dtype=str),
            indices=torch.cat(indices).numpy(),
        )
    local["skipped"] = sorted(set(mine) - set(local["indices"].tolist()))
    shards = [local]
    if world_size > 1 and process_group.is_initialized():
        shards = [None] * world_size
        dist.all_gather_object(shards, local)
    result = merge_shards(shards)
    if result["skipped"]:
        log.warning(
            "%d unreadable videos were skipped: indices %s", len(result["skipped"]), result["skipped"][:10]
        )
    if out_path is not None and rank == 0:
        save_features(out_path, result)
    return result


class StackedEncoders(torch.nn.Module):
    """Several backbones on one input: ``B x 3 x T x H x W`` -> ``B x sum(C_i)`` (columns in order),
    so the clips are decoded once for all encoders."""

    def __init__(self, encoders: dict[str, torch.nn.Module]):
        super().__init__()
        self.encoders = torch.nn.ModuleDict(encoders)
        self.widths = {k: int(e.num_features) for k, e in encoders.items()}
        self.num_features = sum(self.widths.values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([e(x) for e in self.encoders.values()], dim=1)  # B x sum(C_i)

    def split(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """``N x sum(C_i)`` -> ``{name: N x C_i}``."""
        out, start = {}, 0
        for name, width in self.widths.items():
            out[name] = features[:, start : start + width]
            start += width
        return out


def extract_stacked(encoders: dict[str, torch.nn.Module], dataset: torch.utils.data.Dataset,
                    **options) -> tuple[dict[str, np.ndarray], dict]:
    """Frozen features of every encoder from one decoding pass of ``dataset`` ->
    ``({name: N x C_name}, extract_features result)``; ``options`` go to :func:`extract_features`."""
    stacked = StackedEncoders(encoders).eval()
    result = extract_features(stacked, dataset, **options)
    return stacked.split(result["features"]), result


def save_features(path: str | Path, result: dict) -> Path:
    """Write ``features``, ``labels``, ``ids``, ``indices`` to an ``.npz`` (no pickles)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        features=result["features"],
        labels=result["labels"],
        ids=np.asarray(result["ids"], dtype=str),
        indices=result["indices"],
    )
    return path


def load_features(path: str | Path) -> dict:
    """Read an ``.npz`` written by :func:`save_features`."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in ("features", "labels", "ids", "indices")}
