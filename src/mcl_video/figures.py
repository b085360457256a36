"""Every picture the package writes, in one module: confusion matrices, the tubelet sheet and query GIF of
`mcl show-tubelets`, the demo report's training curves and saliency grid, and the motion-focus study's
gain plot.

The functions take plain data (arrays, lists, dicts) prepared by the stage that owns it and only draw;
nothing here imports another part of the package, so any stage may call them. :func:`pyplot` selects the
non-interactive Agg backend first, so no display is ever needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (PNG files)."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # imported after the backend is chosen (pyplot binds it on import)

    return plt


# ---- confusion matrix -------------------------------------------------------------------------------


def plot_confusion(
    matrix: np.ndarray, class_names: list[str] | None, path: str | Path, title: str = ""
) -> Path:
    """Write the confusion matrix (rows true, columns predicted) as a PNG, rows normalised to 1."""
    plt = pyplot()
    matrix = np.asarray(matrix, dtype=np.float64)
    k = len(matrix)
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"plot_confusion: {len(names)} class names for a {k} x {k} confusion matrix")
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = min(4 + 0.25 * k, 30)
    fig, ax = plt.subplots(figsize=(side, side))
    im = ax.imshow(rows, vmin=0, vmax=1, cmap="Blues")
    if k <= 60:
        ax.set_xticks(range(k), names, rotation=90, fontsize=max(4, 10 - k // 10))
        ax.set_yticks(range(k), names, fontsize=max(4, 10 - k // 10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---- `mcl show-tubelets` ----------------------------------------------------------------------------

VIEW_COLOURS = {"q": "#00e5ff", "k0": "#ffd600", "k1": "#76ff03", "k2": "#ff4081"}
CLIP_COLOURS = ("#00b8d4", "#64dd17", "#f50057")


@dataclass
class TubeletRow:
    """One clip's row of the tubelet sheet.

    ``frames``: ``(image H x W x 3 uint8, motion map 7 x 7, caption)`` per shown frame, in source pixels;
    ``motion_box``: ``(rows, cols, required_coverage)`` of the motion box B, or ``None``; ``crops``:
    ``(view name, top, left, height, width)`` of the views cut from this clip; ``view``: the augmented
    view's frame (``H x W x 3``) and caption; ``side``: a 2-D map and its caption (last column).
    """

    frames: list[tuple[np.ndarray, np.ndarray, str]]
    motion_box: tuple | None
    crops: list[tuple[str, int, int, int, int]]
    view: tuple[np.ndarray, str]
    side: tuple[np.ndarray, str]


@dataclass
class ScoreCurve:
    """The clip-score panel: one score per clip start, the drawn starts of c0/c1/c2, the motion-focused
    pool of each half (``pools``, may be empty) and the last start of the first half (``None``: no halves)."""

    scores: np.ndarray
    starts: Sequence[int]
    pools: list[np.ndarray] = field(default_factory=list)
    half_end: int | None = None


def tubelet_sheet(path: Path, title: str, curve: ScoreCurve, rows: list[TubeletRow],
                  frame_hw: tuple[int, int]) -> Path:
    """``tubelets.png``: the clip-score curve on top, then one row per clip (its frames with the motion
    map, B dashed and the view crops; the augmented view; a side map)."""
    plt = pyplot()
    cols = len(rows[0].frames) + 2
    fig = plt.figure(figsize=(2.3 * cols, 2.1 * (len(rows) + 1) + 0.6), constrained_layout=True)
    grid = fig.add_gridspec(len(rows) + 1, cols, height_ratios=[1.1] + [1] * len(rows))
    _score_panel(fig.add_subplot(grid[0, :]), curve)
    for c, row in enumerate(rows):
        for j, (image, motion, caption) in enumerate(row.frames):
            ax = fig.add_subplot(grid[c + 1, j])
            _frame_panel(ax, image, motion, row, frame_hw)
            ax.set_title(caption, fontsize=8)
        for j, (image, caption, cmap) in enumerate(((*row.view, None), (*row.side, "magma"))):
            ax = fig.add_subplot(grid[c + 1, cols - 2 + j])
            ax.imshow(image, cmap=cmap)
            ax.set_title(caption, fontsize=8)
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _score_panel(ax, curve: ScoreCurve) -> None:
    scores = np.asarray(curve.scores, dtype=np.float64)
    n = len(scores)
    ax.plot(np.arange(n), scores, color="0.3", lw=1.2, label="clip score")
    for top in curve.pools:
        top = top[top < n]
        ax.scatter(top, scores[top], s=6, color="#ff9100", zorder=3)
    if curve.half_end is not None:
        ax.axvline(curve.half_end, color="0.6", ls=":", lw=1)
    for c, start in enumerate(curve.starts):
        ax.axvline(start, color=CLIP_COLOURS[c], lw=2, label=f"c{c} start {start}")
    ax.scatter([], [], s=6, color="#ff9100", label="motion-focused pool of its half")
    ax.set_xlabel("clip start (raw frame)")
    ax.set_ylabel("clip score")
    ax.legend(fontsize=7, loc="upper right", ncol=5)


def _frame_panel(ax, frame: np.ndarray, motion: np.ndarray, row: TubeletRow, frame_hw) -> None:
    from matplotlib.patches import Rectangle  # with pyplot: after the backend is chosen

    H, W = frame_hw
    ax.imshow(frame, extent=(0, W, H, 0))
    ax.imshow(motion, extent=(0, W, H, 0), cmap="inferno", alpha=0.45, interpolation="bilinear")
    if row.motion_box is not None:
        rows, cols, required = row.motion_box
        ax.add_patch(Rectangle((cols[0], rows[0]), cols[1] - cols[0], rows[1] - rows[0], fill=False,
                               ec="white", ls="--", lw=1.2))
        ax.text(2, H - 4, f"B, r={required:.1f}", color="white", fontsize=7)
    for name, top, left, height, width in row.crops:
        ax.add_patch(Rectangle((left, top), width, height, fill=False, ec=VIEW_COLOURS[name], lw=1.6))
        ax.text(left + 2, top + 10, name, color=VIEW_COLOURS[name], fontsize=8)
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    ax.axis("off")


def write_gif(frames: np.ndarray, path: Path, scale: int = 2, duration_ms: int = 120) -> Path:
    """uint8 ``T x H x W x 3`` frames as a looping GIF, each pixel repeated ``scale`` times."""
    from PIL import Image

    frames = np.asarray(frames).repeat(scale, axis=1).repeat(scale, axis=2)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return path


# ---- the demo report --------------------------------------------------------------------------------


def training_curves(logs: dict[str, list[dict]], panels: Sequence[tuple[str, tuple[str, ...]]],
                    supervised_history: list[dict], out: Path) -> Path:
    """One panel per ``(title, metrics keys)`` of ``panels`` over the arms' ``metrics.jsonl`` rows
    (``logs``: arm -> rows; MAL keys drawn for the ``mcl`` arm only), then the supervised loss -> PNG."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    styles = {"mcl": "-", "moco": "--"}
    for ax, (title, keys) in zip(axes.flat, panels):
        for arm, rows in logs.items():
            for key in keys:
                pts = [(r["step"], r[key]) for r in rows if key in r]
                if pts and not (arm != "mcl" and key.startswith("mal")) and any(v for _, v in pts):
                    x, y = zip(*pts)
                    style = ":" if key == "mal_flat_loss" else styles.get(arm, "-")
                    ax.plot(x, y, style, marker=".", label=f"{arm}: {key}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize=7)
    ax = axes.flat[len(panels)]
    if supervised_history:
        ax.plot([h["step"] for h in supervised_history], [h["loss"] for h in supervised_history], lw=0.8)
    ax.set_title("supervised upper bound: cross-entropy", fontsize=10)
    ax.set_xlabel("step")
    axes.flat[-1].axis("off")
    fig.suptitle("pretraining curves (metrics.jsonl); MoCo has no MAL terms", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def saliency_grid(rows: list[tuple[str, np.ndarray, list[tuple[str, np.ndarray | None]]]], title: str,
                  out: Path) -> Path:
    """One row per video: ``(label, frame H x W x 3 in [0, 1], [(caption, map or None), ...])``; each
    panel is the frame with the (low-resolution) map stretched over it -> PNG."""
    plt = pyplot()
    cols = max(len(panels) for _, _, panels in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.5 * cols, 2.6 * len(rows)), squeeze=False)
    for i, (label, frame, panels) in enumerate(rows):
        h, w = frame.shape[:2]
        for ax, (caption, m) in zip(axes[i], panels):
            ax.imshow(frame)
            if m is not None:
                ax.imshow(m, cmap="magma", alpha=0.65, extent=(0, w, h, 0), interpolation="bilinear")
            ax.set_title(caption, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i][0].set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


# ---- the motion-focus study -------------------------------------------------------------------------


def gain_plot(points: dict[str, list[tuple[float, float, float]]], path: str | Path) -> Path:
    """Each arm's gain (``arm -> [(moving-region fraction, mean gain, 95% half-width)]``) against the
    fraction on a log axis, with error bars; arms are nudged sideways a little so bars do not overlap."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    arms = sorted(points)
    for i, arm in enumerate(arms):
        pts = sorted(points[arm])
        x = np.array([p[0] for p in pts]) * (1 + 0.03 * (i - len(arms) / 2))
        ax.errorbar(x, [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3, label=arm)
    ax.axhline(0, color="0.5", lw=1, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("moving-region fraction of the frame area")
    ax.set_ylabel("motion-probe gain over baseline (points)")
    ax.set_title("paired by seed, 95% t-interval (regimes with >= 2 paired seeds)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
