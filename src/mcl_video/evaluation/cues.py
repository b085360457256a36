"""What a frozen encoder encodes, on a built-in benchmark whose cues are known (``mcl synth``'s
``meta.json``): motion or the static shortcut?

- :func:`cue_probes`: linear-SVM probes of frozen features for the *motion class* (the benchmark's
  label) and for the *static cue*, the periphery's texture family of a positive control
  (``mcl synth --periphery-textures K``; ``texture_family`` per video), with their chance levels; the
  sprite's shape too when the benchmark draws it.
- :func:`saliency_in_motion`: the gradient saliency of the same-clip logit at the motion-alignment
  layer (``models/motion_alignment.py``, ``objective/saliency.py``) for a frozen encoder, and the share
  of its mass inside the actor's region (``motion_box``). The same-clip logit of a frozen backbone is
  the cosine similarity of a clip's pooled features with those of its horizontal flip (the key,
  detached): no projection head is needed. A flat saliency map scores the region's area share, reported
  beside it as ``region_area``.

:func:`benchmark_report` runs both for ``mcl evaluate --benchmark-meta``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mcl_video.data.discovery import video_id
from mcl_video.data.synth import motion_boxes
from mcl_video.data.video import read_video_info
from mcl_video.evaluation.probes import linear_probe_svm
from mcl_video.evaluation.protocols import chance_levels
from mcl_video.models.motion_alignment import MotionAlignment


def _meta(meta) -> dict:
    return meta if isinstance(meta, dict) else json.loads(Path(meta).read_text())


def benchmark_labels(meta, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-video labels of a built-in benchmark for the videos ``ids`` (paths or video ids):
    ``motion`` (class index), ``shape`` (index into the benchmark's shapes) and, for a positive control,
    ``static_cue`` (the periphery's texture family)."""
    meta = _meta(meta)
    by_id = {video_id(v["path"]): v for v in meta["videos"]}
    try:
        videos = [by_id[video_id(i)] for i in ids]
    except KeyError as err:
        raise ValueError(f"benchmark_labels: video {err.args[0]} is not in this meta.json; pass the "
                         "meta.json of the benchmark the features come from") from None
    labels = {"motion": np.array([v["label"] - 1 for v in videos]),
              "shape": np.array([meta["shapes"].index(v["shape"]) for v in videos])}
    if all("texture_family" in v for v in videos):
        labels["static_cue"] = np.array([v["texture_family"] for v in videos])
    return labels


def cue_probes(train: dict, test: dict, meta) -> dict:
    """Linear-SVM accuracy of each label of :func:`benchmark_labels` on ``extract_features`` outputs
    (``features``, ``ids``): ``{"<label>_acc", "<label>_chance"}``. A label with one value in the
    training set (the shortcut-removed control's single texture, the positive control's single shape)
    cannot be probed: its accuracy is NaN."""
    ytr, yte = benchmark_labels(meta, train["ids"]), benchmark_labels(meta, test["ids"])
    out = {}
    for name in ytr:
        out[f"{name}_chance"] = chance_levels(ytr[name], yte[name])["accuracy"]
        if len(np.unique(ytr[name])) < 2:
            out[f"{name}_acc"] = float("nan")
            continue
        out[f"{name}_acc"] = float(linear_probe_svm(train["features"], ytr[name], test["features"],
                                                    yte[name])["top1"])
    return out


def box_on_grid(box, frame_hw: tuple[int, int], size: int, grid_hw: tuple[int, int]) -> np.ndarray:
    """Share of each cell of an ``H' x W'`` grid inside ``box = (top, left, height, width)`` (source
    pixels), for the evaluation view: short side resized to ``size``, centre ``size`` crop. float32."""
    H, W = frame_hw
    s = size / min(H, W)
    off_y, off_x = (round(H * s) - size) // 2, (round(W * s) - size) // 2
    top, left, h, w = box
    y0, y1 = top * s - off_y, (top + h) * s - off_y
    x0, x1 = left * s - off_x, (left + w) * s - off_x

    def along(lo, hi, cells):
        edges = np.linspace(0, size, cells + 1)
        return np.clip(np.minimum(hi, edges[1:]) - np.maximum(lo, edges[:-1]), 0, None) / (size / cells)

    return (along(y0, y1, grid_hw[0])[:, None] * along(x0, x1, grid_hw[1])[None, :]).astype(np.float32)


def mass_share(saliency: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``sum(saliency * mask) / sum(saliency)`` per clip: ``saliency`` ``B x T' x H' x W'`` (>= 0),
    ``mask`` broadcastable to it (values in [0, 1]). NaN for a clip whose saliency is zero everywhere."""
    sal = saliency.flatten(1)
    inside = (saliency * mask).flatten(1).sum(1)
    total = sal.sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-30), torch.full_like(total, float("nan")))


def same_clip_saliency(backbone, clips: torch.Tensor, keys: torch.Tensor | None = None,
                       saliency: str = "gradient") -> torch.Tensor:
    """Saliency ``B x T' x H' x W'`` of the same-clip logit ``cos(f(clip), f(key))`` at the backbone's
    alignment layer; ``keys`` (default: the clips flipped horizontally) are detached. The backbone's
    weights are not touched (its mode and ``requires_grad`` stay as they are)."""
    mal = MotionAlignment(backbone, saliency)
    try:
        with torch.no_grad():
            k = F.normalize(backbone(clips.flip(-1) if keys is None else keys), dim=1)
        with torch.enable_grad():
            x = clips.detach().requires_grad_(True)  # so the captured map is in the graph
            with mal.capturing():
                q = F.normalize(backbone(x), dim=1)
            return mal.saliency_map((q * k).sum(dim=1), create_graph=False).detach()
    finally:
        mal.capture.remove()


def saliency_in_motion(backbone, dataset, boxes: dict, device="cpu", saliency: str = "gradient",
                       max_videos: int | None = None) -> dict:
    """Mean share of the same-clip saliency inside the actor's region over the clips of ``dataset``
    (an ``EvalClipDataset``: its clips, centre-cropped), ``boxes`` ``{video id: box}`` in source
    pixels (``mcl_video.data.synth.motion_boxes``). Returns ``share`` (mean over clips with saliency),
    ``region_area`` (mean region share of the grid: what a flat map scores), ``dead`` (share of clips
    whose saliency is zero everywhere) and ``clips``."""
    shares, areas, dead = [], [], 0
    count = len(dataset) if max_videos is None else min(len(dataset), max_videos)
    for i in range(count):
        item = dataset[i]
        if item is None:
            continue
        vid = video_id(item["video_id"])
        info = read_video_info(dataset.video_root / dataset.records[i].path)
        clips = item["clips"].to(device)
        sal = same_clip_saliency(backbone, clips, saliency=saliency).cpu()
        mask = torch.from_numpy(box_on_grid(boxes[vid], (info.height, info.width), dataset.size,
                                            tuple(sal.shape[-2:])))
        share = mass_share(sal, mask)
        dead += int(torch.isnan(share).sum())
        shares += [float(s) for s in share if not math.isnan(float(s))]
        areas.append(float(mask.mean()))
    n = len(shares) + dead
    return {"share": float(np.mean(shares)) if shares else float("nan"),
            "region_area": float(np.mean(areas)) if areas else float("nan"),
            "dead": dead / n if n else float("nan"), "clips": n}


def benchmark_report(backbone, train: dict, test: dict, meta, test_dataset, device="cpu",
                     saliency: str = "gradient", max_videos: int | None = None) -> dict:
    """:func:`cue_probes` of the features and :func:`saliency_in_motion` of the test clips."""
    meta = _meta(meta)
    report = cue_probes(train, test, meta)
    was_training = backbone.training
    backbone.eval()  # BN in inference mode, as for the features
    try:
        sal = saliency_in_motion(backbone, test_dataset, motion_boxes(meta), device, saliency, max_videos)
    finally:
        backbone.train(was_training)
    report.update({f"saliency_{k}": v for k, v in sal.items()})
    return report


def format_report(report: dict) -> str:
    """Plain-text lines of :func:`benchmark_report` (percent)."""
    lines = []
    for name in ("motion", "static_cue", "shape"):
        if f"{name}_acc" in report:
            lines.append(f"{name} probe: {100 * report[f'{name}_acc']:.1f} "
                         f"(chance {100 * report[f'{name}_chance']:.1f})")
    lines.append(f"saliency in the actor's region: {100 * report['saliency_share']:.1f} "
                 f"(region area {100 * report['saliency_region_area']:.1f}, "
                 f"dead clips {100 * report['saliency_dead']:.1f}, {report['saliency_clips']} clips)")
    return "\n".join(lines).replace("nan", "n/a")
