"""Motion-focused spatial cropping as strategy objects returning a :class:`CropBox`.

The plain and the motion-focused crop consume the random stream identically up to the first crop
position, so with the same generator state the motion-focused crop differs from the plain one exactly
when the motion constraint *binds* (the first position misses the required coverage).

Random draws of one size attempt (``RandomResizedCropBox`` and ``MotionFocusedCrop`` alike):
``a = rng.uniform(*scale)``, ``l = rng.uniform(log ratio[0], log ratio[1])``; the crop is
``w = round(sqrt(a * H * W * exp(l)))``, ``h = round(sqrt(a * H * W / exp(l)))``; if it fits the
frame, a position ``top = rng.integers(H - h + 1)``, ``left = rng.integers(W - w + 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mcl_video.motion import motion_box

# motion_box(window_map (7, 7), frame_hw) -> (rows (r0, r1), cols (c0, c1), required_coverage)
BoxFn = Callable[[np.ndarray, tuple[int, int]], tuple]


@dataclass(frozen=True)
class CropBox:
    """A crop in source pixels: rows ``[top, top + height)``, columns ``[left, left + width)``."""

    top: int
    left: int
    height: int
    width: int

    def as_tuple(self) -> tuple[int, int, int, int]:
        """``(top, left, height, width)``, the ``crop`` argument of ``VideoMotion.alignment_target``."""
        return (self.top, self.left, self.height, self.width)


@dataclass(frozen=True)
class CropInfo:
    """How a motion-focused crop was chosen (for tests, benchmarks and `mcl show-tubelets`).

    ``rows``/``cols``: pixel ranges of the motion box B (``None`` when unconstrained);
    ``required``: required coverage r (0 = none); ``coverage``: the crop's coverage of B;
    ``bound``: the constraint changed the crop (the first position tried missed r);
    ``fallback``: ``""``, ``"corner"`` (no size fitted; crop containing B) or ``"center"``.
    """

    rows: tuple[float, float] | None
    cols: tuple[float, float] | None
    required: float
    coverage: float
    bound: bool
    fallback: str


def box_coverage(top: int, left: int, height: int, width: int, rows, cols) -> float:
    """Fraction of B covered: overlap fraction along rows x overlap fraction along columns."""
    r0, r1 = rows
    c0, c1 = cols
    along_rows = max(0.0, min(top + height, r1) - max(top, r0)) / max(r1 - r0, 1e-9)
    along_cols = max(0.0, min(left + width, c1) - max(left, c0)) / max(c1 - c0, 1e-9)
    return along_rows * along_cols


def central_crop(frame_hw: tuple[int, int], ratio: tuple[float, float]) -> CropBox:
    """The largest centred crop whose aspect ratio (w / h) lies in ``ratio``."""
    H, W = frame_hw
    in_ratio = W / H
    if in_ratio < min(ratio):
        w, h = W, int(round(W / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = H, int(round(H * max(ratio)))
    else:
        h, w = H, W
    return CropBox((H - h) // 2, (W - w) // 2, h, w)


class RandomResizedCropBox:
    """Plain random resized crop box (area ``scale`` of the frame, aspect ``ratio``).

    Falls back to :func:`central_crop` when no size fits in ``size_draws`` draws.
    """

    def __init__(
        self,
        scale: tuple[float, float] = (0.2, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        size_draws: int = 20,
    ) -> None:
        if not 0.0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must satisfy 0 < min <= max, got {scale}")
        if not 0.0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio}")
        if size_draws < 1:
            raise ValueError(f"size_draws must be >= 1, got {size_draws}")
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.size_draws = size_draws

    def draw_size(self, frame_hw: tuple[int, int], rng: np.random.Generator) -> tuple[int, int]:
        """One size attempt: ``(h, w)``, which may not fit the frame."""
        H, W = frame_hw
        area = H * W * rng.uniform(self.scale[0], self.scale[1])
        aspect = math.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
        return int(round(math.sqrt(area / aspect))), int(round(math.sqrt(area * aspect)))

    @staticmethod
    def draw_position(
        frame_hw: tuple[int, int], h: int, w: int, rng: np.random.Generator
    ) -> tuple[int, int]:
        """A uniform position ``(top, left)`` for an ``h x w`` crop inside the frame."""
        return int(rng.integers(frame_hw[0] - h + 1)), int(rng.integers(frame_hw[1] - w + 1))

    def sample(
        self, frame_hw: tuple[int, int], motion_map_7x7: np.ndarray | None, rng: np.random.Generator
    ) -> CropBox:
        """A crop of a ``frame_hw = (H, W)`` frame; ``motion_map_7x7`` is ignored."""
        H, W = frame_hw
        for _ in range(self.size_draws):
            h, w = self.draw_size(frame_hw, rng)
            if 0 < h <= H and 0 < w <= W:
                top, left = self.draw_position(frame_hw, h, w, rng)
                return CropBox(top, left, h, w)
        return central_crop(frame_hw, self.ratio)


def _axis_candidates(size: int, crop: int, span: tuple[float, float], required: float) -> np.ndarray:
    """Crop offsets along one axis whose overlap fraction with ``span`` is >= ``required``.

    ``(k,)`` int offsets in ``[0, size - crop]``; all offsets when none qualifies.
    """
    offsets = np.arange(size - crop + 1)
    lo, hi = span
    overlap = np.clip(np.minimum(offsets + crop, hi) - np.maximum(offsets, lo), 0.0, None)
    good = offsets[overlap / max(hi - lo, 1e-9) >= required]
    return good if good.size else offsets


class MotionFocusedCrop(RandomResizedCropBox):
    """Random resized crop that covers the clip's motion box B (the top 10% cells) by the required r.

    ``sample(frame_hw, motion_map_7x7, rng)``: ``motion_map_7x7`` is the mean of the clip's frames'
    ``(7, 7)`` maps. B and the required coverage r come from ``box_fn`` (default
    ``mcl_video.motion.motion_box``: top ``top_fraction`` cells, r from B's area in cells). With r = 0
    the crop is a plain random resized crop. Otherwise each size draw tries up to ``tries`` positions
    and keeps the first whose coverage of B is >= r, else the best tried; if no size fits in
    ``size_draws`` draws, the crop is the smallest one that contains B anchored at a random frame
    corner.
    """

    def __init__(
        self,
        scale: tuple[float, float] = (0.2, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        tries: int = 40,
        size_draws: int = 20,
        top_fraction: float = 0.1,
        box_fn: BoxFn | None = None,
    ) -> None:
        super().__init__(scale, ratio, size_draws)
        if tries < 1:
            raise ValueError(f"tries must be >= 1, got {tries}")
        self.tries = tries
        self.top_fraction = top_fraction
        self.box_fn = box_fn

    def motion_box(self, frame_hw, motion_map_7x7) -> tuple:
        """``(rows, cols, r)`` of the map: B in source pixels and the required coverage."""
        m = np.asarray(motion_map_7x7, dtype=np.float64)
        if self.box_fn is None:
            rows, cols, required = motion_box(m, tuple(frame_hw), top_fraction=self.top_fraction)
        else:
            rows, cols, required = self.box_fn(m, tuple(frame_hw))
        return (float(rows[0]), float(rows[1])), (float(cols[0]), float(cols[1])), float(required or 0)

    def sample(
        self, frame_hw: tuple[int, int], motion_map_7x7: np.ndarray, rng: np.random.Generator
    ) -> CropBox:
        """The crop box for a ``frame_hw = (H, W)`` frame."""
        return self.sample_with_info(frame_hw, motion_map_7x7, rng)[0]

    def sample_with_info(
        self, frame_hw: tuple[int, int], motion_map_7x7: np.ndarray, rng: np.random.Generator
    ) -> tuple[CropBox, CropInfo]:
        """The crop box and a :class:`CropInfo` saying how it was chosen."""
        rows, cols, required = self.motion_box(frame_hw, motion_map_7x7)
        if required <= 0:
            box = RandomResizedCropBox.sample(self, frame_hw, None, rng)
            cov = box_coverage(*box.as_tuple(), rows, cols)
            return box, CropInfo(None, None, 0.0, cov, False, "")
        H, W = frame_hw
        for _ in range(self.size_draws):
            h, w = self.draw_size(frame_hw, rng)
            if not (0 < h <= H and 0 < w <= W):
                continue
            return self._place(frame_hw, h, w, rows, cols, required, rng)
        box = self.corner_crop(frame_hw, rows, cols, rng)
        cov = box_coverage(*box.as_tuple(), rows, cols)
        return box, CropInfo(rows, cols, required, cov, True, "corner")

    def _place(self, frame_hw, h, w, rows, cols, required, rng) -> tuple[CropBox, CropInfo]:
        """Up to ``tries`` positions for an ``h x w`` crop: the first that covers B by ``required``.

        The first position is the plain crop's (uniform over the frame). Later ones are drawn
        uniformly from the tops and lefts whose overlap fraction along their own axis is >= r (a
        necessary condition, since coverage is the product of the two fractions; all positions when
        none qualifies). Taking the first hit of a uniform proposal over a superset of the feasible
        positions gives the same distribution as the release's uniform tries, conditioned on
        success, and succeeds far more often when B sits near a frame edge.
        """
        tops = _axis_candidates(frame_hw[0], h, rows, required)
        lefts = _axis_candidates(frame_hw[1], w, cols, required)
        best, best_cov = None, -1.0
        for attempt in range(self.tries):
            if attempt == 0:
                top, left = self.draw_position(frame_hw, h, w, rng)
            else:
                top, left = int(tops[rng.integers(len(tops))]), int(lefts[rng.integers(len(lefts))])
            cov = box_coverage(top, left, h, w, rows, cols)
            if cov >= required:
                return CropBox(top, left, h, w), CropInfo(rows, cols, required, cov, attempt > 0, "")
            if cov > best_cov:
                best, best_cov = (top, left), cov
        # no position met r: the best one tried (the constraint bound: the first one missed r)
        return CropBox(best[0], best[1], h, w), CropInfo(rows, cols, required, best_cov, True, "")

    @staticmethod
    def corner_crop(frame_hw, rows, cols, rng: np.random.Generator) -> CropBox:
        """The smallest crop containing B that touches a random frame corner (``rng.integers(4)``).

        Corner 0 = top-left, 1 = top-right, 2 = bottom-left, 3 = bottom-right.
        """
        H, W = frame_hw
        r0, r1 = int(math.floor(rows[0])), int(math.ceil(rows[1]))
        c0, c1 = int(math.floor(cols[0])), int(math.ceil(cols[1]))
        corner = int(rng.integers(4))
        top, bottom = (0, min(r1, H)) if corner in (0, 1) else (max(r0, 0), H)
        left, right = (0, min(c1, W)) if corner in (0, 2) else (max(c0, 0), W)
        return CropBox(top, left, bottom - top, right - left)
