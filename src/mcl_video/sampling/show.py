"""Pictures of one training sample's tubelets: what `mcl show-tubelets` writes.

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
from matplotlib.patches import Rectangle
from PIL import Image

from mcl_video.data import read_clip
from mcl_video.figures import pyplot
from mcl_video.sampling.augment import IMAGENET_MEAN, IMAGENET_STD
from mcl_video.sampling.dataset import VIEW_CLIP, VIEWS, MCLPretrainDataset, SamplePlan
from mcl_video.sampling.photometric import augment_item

log = logging.getLogger(__name__)
VIEW_COLOURS = {"q": "#00e5ff", "k0": "#ffd600", "k1": "#76ff03", "k2": "#ff4081"}
CLIP_COLOURS = ("#00b8d4", "#64dd17", "#f50057")


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
    png = _figure(ds, plan, item, raw, frames, out / "tubelets.png")
    gif = _gif(item["q"], out / "query.gif")
    log.info("wrote %s and %s", png, gif)
    return {"png": png, "gif": gif}


def _figure(ds: MCLPretrainDataset, plan: SamplePlan, item: dict, raw: list[np.ndarray], frames: int,
            path: Path) -> Path:
    plt = pyplot()
    cols = frames + 2
    fig = plt.figure(figsize=(2.3 * cols, 2.1 * 4 + 0.6), constrained_layout=True)
    grid = fig.add_gridspec(4, cols, height_ratios=[1.1, 1, 1, 1])
    _score_panel(fig.add_subplot(grid[0, :]), ds, plan)
    for c in range(3):
        picks = np.linspace(0, len(plan.indices[c]) - 1, frames).round().astype(int)
        for j, t in enumerate(picks):
            ax = fig.add_subplot(grid[c + 1, j])
            _frame_panel(ax, ds, plan, raw[c][t], int(plan.indices[c][t]), c)
            ax.set_title(f"c{c} frame {int(plan.indices[c][t])}", fontsize=8)
        view = "q" if c == 0 else f"k{c}"
        ax = fig.add_subplot(grid[c + 1, frames])
        ax.imshow(denormalise(item[view])[item[view].shape[1] // 2])
        ax.set_title(f"view {view} (augmented)", fontsize=8)
        ax.axis("off")
        ax = fig.add_subplot(grid[c + 1, frames + 1])
        if c == 0:
            target = item["target"].numpy()
            ax.imshow(np.concatenate(list(target), axis=1), cmap="magma")
            ax.set_title(f"q target {tuple(target.shape)}", fontsize=8)
        else:
            ax.imshow(plan.maps[c], cmap="magma")
            ax.set_title(f"c{c} mean 7x7 map", fontsize=8)
        ax.axis("off")
    d = plan.draw
    fig.suptitle(f"{plan.video_id}: order o={d.order}, motion-focused={d.motion_focused}, "
                 f"starts c0/c1/c2 = {d.starts}", fontsize=10)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _score_panel(ax, ds: MCLPretrainDataset, plan: SamplePlan) -> None:
    scores = np.asarray(plan.motion.clip_scores, dtype=np.float64)
    n = len(scores)
    ax.plot(np.arange(n), scores, color="0.3", lw=1.2, label="clip score")
    num_frames = plan.motion.num_frames
    if ds.sampler.has_halves(num_frames):
        for top in ds.sampler.halves(num_frames, scores, focused=True):
            top = top[top < n]
            ax.scatter(top, scores[top], s=6, color="#ff9100", zorder=3)
        ax.axvline(num_frames // 2 - 1, color="0.6", ls=":", lw=1)
    for c, start in enumerate(plan.draw.starts):
        ax.axvline(start, color=CLIP_COLOURS[c], lw=2, label=f"c{c} start {start}")
    ax.scatter([], [], s=6, color="#ff9100", label="motion-focused pool of its half")
    ax.set_xlabel("clip start (raw frame)")
    ax.set_ylabel("clip score")
    ax.legend(fontsize=7, loc="upper right", ncol=5)


def _frame_panel(ax, ds: MCLPretrainDataset, plan: SamplePlan, frame: np.ndarray, index: int,
                 clip: int) -> None:
    H, W = plan.frame_hw
    ax.imshow(frame, extent=(0, W, H, 0))
    maps = np.asarray(plan.motion.frame_maps)
    m = maps[min(index, len(maps) - 1)]
    ax.imshow(m, extent=(0, W, H, 0), cmap="inferno", alpha=0.45, interpolation="bilinear")
    if hasattr(ds.cropper, "motion_box"):
        rows, cols, required = ds.cropper.motion_box(plan.frame_hw, plan.maps[clip])
        ax.add_patch(Rectangle((cols[0], rows[0]), cols[1] - cols[0], rows[1] - rows[0], fill=False,
                               ec="white", ls="--", lw=1.2))
        ax.text(2, H - 4, f"B, r={required:.1f}", color="white", fontsize=7)
    for name, vclip, crop in zip(VIEWS, VIEW_CLIP, plan.crops, strict=True):
        if vclip == clip:
            ax.add_patch(Rectangle((crop.left, crop.top), crop.width, crop.height, fill=False,
                                   ec=VIEW_COLOURS[name], lw=1.6))
            ax.text(crop.left + 2, crop.top + 10, name, color=VIEW_COLOURS[name], fontsize=8)
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    ax.axis("off")


def _gif(view: torch.Tensor, path: Path, scale: int = 2) -> Path:
    frames = denormalise(view).repeat(scale, axis=1).repeat(scale, axis=2)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=120, loop=0)
    return path
