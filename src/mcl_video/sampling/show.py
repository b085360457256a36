"""What `mcl show-tubelets` shows of one training sample's tubelets (the drawing is in
``mcl_video.figures``).

``tubelets.png``: the clip-score curve with the three clip starts (and the top-50% starts of each half),
then one row per clip (c0, c1, c2) of a few frames with the cached motion map overlaid, the motion box B
(dashed) and the crop boxes of the views (q, k0 for c0; k1, k2), the augmented view's middle frame and,
for c0, the query's alignment target. ``query.gif``: the query tubelet as the network sees it
(de-normalised).
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from mcl_video.data import read_clip
from mcl_video.figures import ScoreCurve, TubeletRow, tubelet_sheet, write_gif
from mcl_video.sampling.augment import IMAGENET_MEAN, IMAGENET_STD
from mcl_video.sampling.dataset import VIEW_CLIP, VIEWS, MCLPretrainDataset, SamplePlan
from mcl_video.sampling.photometric import augment_item

log = logging.getLogger(__name__)


def resolve_video_id(video: str | Path, cache) -> tuple[Path, str]:
    """``(video_root, video_id)`` of a video file: the longest trailing path whose id is cached."""
    path = Path(video)
    parts = path.with_suffix("").parts
    for k in range(len(parts), 0, -1):
        vid = str(PurePosixPath(*parts[-k:]))
        if vid in cache:
            return Path(*path.parts[: len(path.parts) - k]) if len(path.parts) > k else Path("."), vid
    raise KeyError(f"sampling/show.py: no id ending {path.with_suffix('').name!r} in the motion cache "
                   f"{getattr(cache, 'path', cache)}; run `mcl prepare` on the folder of {path}")


def denormalise(view: torch.Tensor) -> np.ndarray:
    """``C x T x H x W`` normalised view -> uint8 ``T x H x W x 3``."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    x = (view * std + mean).clamp(0, 1).permute(1, 2, 3, 0)
    return (x.numpy() * 255).round().astype(np.uint8)


def show_tubelets(video: str | Path, cache, out_dir: str | Path, seed: int = 0, frames: int = 4,
                  config: dict | None = None) -> dict[str, Path]:
    """Write ``tubelets.png`` and ``query.gif`` for one sample of ``video``; returns their paths."""
    root, vid = resolve_video_id(video, cache)
    rel = str(Path(video).relative_to(root)) if str(root) != "." else str(video)
    options = {"clip_len": cache.clip_len, "stride": cache.stride, "drop_short": False, "seed": seed}
    options.update(config or {})
    ds = MCLPretrainDataset(root, [rel], cache, options, (4, 7, 7))
    plan = ds.plan(0)
    item = augment_item(ds.load(plan))
    raw = [read_clip(plan.path, idx).numpy() for idx in plan.indices]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = _sheet(ds, plan, item, raw, frames, out / "tubelets.png")
    gif = _gif(item["q"], out / "query.gif")
    log.info("wrote %s and %s", png, gif)
    return {"png": png, "gif": gif}


def _sheet(ds: MCLPretrainDataset, plan: SamplePlan, item: dict, raw: list[np.ndarray], frames: int,
            path: Path) -> Path:
    """The sheet's data: the score curve, and per clip the frames, motion maps, B and the view crops."""
    maps = np.asarray(plan.motion.frame_maps)
    rows = []
    for c in range(3):
        picks = np.linspace(0, len(plan.indices[c]) - 1, frames).round().astype(int)
        shown = [(raw[c][t], maps[min(int(plan.indices[c][t]), len(maps) - 1)],
                  f"c{c} frame {int(plan.indices[c][t])}") for t in picks]
        has_box = hasattr(ds.cropper, "motion_box")  # the motion-focused crop; a random crop has no B
        box = ds.cropper.motion_box(plan.frame_hw, plan.maps[c]) if has_box else None
        crops = [(name, crop.top, crop.left, crop.height, crop.width)
                 for name, vclip, crop in zip(VIEWS, VIEW_CLIP, plan.crops, strict=True) if vclip == c]
        view = "q" if c == 0 else f"k{c}"
        augmented = (denormalise(item[view])[item[view].shape[1] // 2], f"view {view} (augmented)")
        if c == 0:
            target = item["target"].numpy()
            side = (np.concatenate(list(target), axis=1), f"q target {tuple(target.shape)}")
        else:
            side = (plan.maps[c], f"c{c} mean 7x7 map")
        rows.append(TubeletRow(shown, box, crops, augmented, side))
    scores = np.asarray(plan.motion.clip_scores, dtype=np.float64)
    num_frames = plan.motion.num_frames
    halves = ds.sampler.has_halves(num_frames)
    curve = ScoreCurve(scores, plan.draw.starts,
                       list(ds.sampler.halves(num_frames, scores, focused=True)) if halves else [],
                       num_frames // 2 - 1 if halves else None)
    d = plan.draw
    title = (f"{plan.video_id}: order o={d.order}, motion-focused={d.motion_focused}, "
             f"starts c0/c1/c2 = {d.starts}")
    return tubelet_sheet(path, title, curve, rows, plan.frame_hw)


def _gif(view: torch.Tensor, path: Path, scale: int = 2) -> Path:
    return write_gif(denormalise(view), path, scale=scale)
