"""Motion-focused temporal sampling (METHOD §2) as strategy objects.

A sampler decides *which* clips of a video form one training sample, without decoding anything. It
returns a :class:`ClipDraw`: the start frames of the query clip ``c0`` and of the two other clips
``c1``, ``c2``, the order label ``o`` and whether the draw was motion-focused.

Conventions (shared with the motion cache):

* a clip of ``clip_len`` frames at ``stride`` covers ``span = clip_len * stride`` raw frames: start
  ``s`` reads frames ``s, s + stride, ..., s + (clip_len - 1) * stride``, and the flow of its last
  frame needs frame ``s + span - 1``. A video of ``N`` raw frames therefore has
  ``num_starts = N - span + 1`` possible starts (at least 1: a shorter video has the single start 0
  and the reader repeats its last frame, the release's padding);
* the starts are split into a first half ``[0, num_starts // 2)`` and a second half
  ``[num_starts // 2, num_starts)``;
* a video is **too short for two halves** when ``N < min_frames`` (default ``2 * span`` = 64 raw
  frames for 16 x 2, the length under which the release drops training videos). Such a video gets
  three sorted random starts over all its starts (see :meth:`MotionFocusedSampler.sample`).

Random draws, in this order, from a ``numpy.random.Generator`` (tests derive tables from it):

1. ``o = rng.integers(2)``;
2. ``u = rng.random()``; the draw is motion-focused when ``u < motion_prob`` (and the video has two
   halves);
3. two halves: ``i = rng.integers(len(A))`` for c0 from its half's candidates ``A``, then
   ``j = rng.integers(len(B), size=2)`` for c1, c2 from the other half's candidates ``B`` (sorted);
   too short: ``d = sort(rng.integers(num_starts, size=3))``; ``o = 1`` gives ``c0 = d[0]``,
   ``(c1, c2) = (d[1], d[2])``, ``o = 0`` gives ``c0 = d[2]``, ``(c1, c2) = (d[0], d[1])``, so the
   order label stays true.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mcl_video.motion.cache import num_starts


@dataclass(frozen=True)
class ClipDraw:
    """Where the three clips of one training sample start.

    ``starts = (c0, c1, c2)`` in raw frames; ``order = 1`` when c0 precedes c1 and c2, ``0`` when it
    follows them; ``motion_focused`` says whether the draw was restricted to high-motion starts.
    """

    starts: tuple[int, int, int]
    order: int
    motion_focused: bool


def clip_frame_indices(start: int, clip_len: int, stride: int) -> np.ndarray:
    """Raw frame indices of the clip starting at ``start``: ``(clip_len,)`` int64."""
    return start + stride * np.arange(clip_len, dtype=np.int64)


def top_starts(candidates: np.ndarray, scores: np.ndarray, fraction: float) -> np.ndarray:
    """The candidates scoring at least the ``k``-th highest score, ``k = ceil(fraction * n)``.

    Starts tied with the ``k``-th score are all kept (so a static video, whose scores are all equal,
    keeps every start instead of favouring the earliest ones); the result is in start order.
    ``candidates``: ``(n,)`` start indices into ``scores``.
    """
    keep = max(1, math.ceil(fraction * len(candidates)))
    values = scores[candidates]
    threshold = np.sort(values)[::-1][keep - 1]
    return candidates[values >= threshold]


class MotionFocusedSampler:
    """Three clips in the order structure of the release, motion-focused with ``motion_prob``.

    Args:
        clip_len: frames per clip (16).
        stride: raw-frame step between the frames of a clip (2).
        motion_prob: probability that a draw keeps only the top starts of each half (0.7).
        top_fraction: fraction of each half kept by clip score in a motion-focused draw (0.5).
        min_frames: raw frames a video needs for the two-halves structure (default ``2 * span``).
    """

    def __init__(
        self,
        clip_len: int = 16,
        stride: int = 2,
        motion_prob: float = 0.7,
        top_fraction: float = 0.5,
        min_frames: int | None = None,
    ) -> None:
        if clip_len < 1 or stride < 1:
            raise ValueError(f"clip_len and stride must be >= 1, got {clip_len}, {stride}")
        if not 0.0 <= motion_prob <= 1.0:
            raise ValueError(f"motion_prob must be in [0, 1], got {motion_prob}")
        if not 0.0 < top_fraction <= 1.0:
            raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
        self.clip_len = clip_len
        self.stride = stride
        self.motion_prob = motion_prob
        self.top_fraction = top_fraction
        self.span = clip_len * stride
        self.min_frames = 2 * self.span if min_frames is None else int(min_frames)
        if self.min_frames < self.span + 1:
            raise ValueError(f"min_frames must be >= span + 1 = {self.span + 1} (two starts)")

    def num_starts(self, num_frames: int) -> int:
        """Possible clip starts of a video with ``num_frames`` raw frames (at least 1), the same count
        as the motion cache's clip scores."""
        return num_starts(num_frames, self.span)

    def has_halves(self, num_frames: int) -> bool:
        """Whether the video is long enough for the first-half / second-half structure."""
        return num_frames >= self.min_frames

    def _scores(self, num_starts: int, clip_scores: np.ndarray | None) -> np.ndarray:
        """Clip scores aligned to ``num_starts``: ``(num_starts,)``.

        A cache may count starts one or two differently at the end (its own window convention);
        differences up to ``stride`` are absorbed by repeating / dropping the last scores. A larger
        mismatch means the cache was built for another clip length or stride and is an error.
        """
        if clip_scores is None:
            raise ValueError("MotionFocusedSampler needs clip_scores (from the motion cache)")
        scores = np.asarray(clip_scores, dtype=np.float64).reshape(-1)
        if scores.size == 0 or abs(scores.size - num_starts) > self.stride:
            raise ValueError(
                f"clip_scores has {scores.size} entries but a {self.clip_len}x{self.stride} clip has "
                f"{num_starts} starts: rebuild the cache with `mcl prepare --clip-len {self.clip_len} "
                f"--stride {self.stride}` or set the sampler to the cache's clip_len/stride"
            )
        if scores.size < num_starts:
            scores = np.pad(scores, (0, num_starts - scores.size), mode="edge")
        return scores[:num_starts]

    def sample(
        self, num_frames: int, clip_scores: np.ndarray | None, rng: np.random.Generator
    ) -> ClipDraw:
        """Draw the starts of c0, c1, c2 for a video of ``num_frames`` raw frames.

        ``clip_scores``: ``(num_starts,)`` motion score per start (needed when ``motion_prob > 0``).
        """
        order = int(rng.integers(2))
        focused = bool(rng.random() < self.motion_prob)
        n = self.num_starts(num_frames)
        if not self.has_halves(num_frames):
            d = np.sort(rng.integers(n, size=3))
            starts = (d[0], d[1], d[2]) if order == 1 else (d[2], d[0], d[1])
            return ClipDraw(tuple(int(s) for s in starts), order, False)
        first = np.arange(0, n // 2)
        second = np.arange(n // 2, n)
        if focused:
            scores = self._scores(n, clip_scores)
            first = top_starts(first, scores, self.top_fraction)
            second = top_starts(second, scores, self.top_fraction)
        own, other = (first, second) if order == 1 else (second, first)
        c0 = own[rng.integers(len(own))]
        c1, c2 = np.sort(other[rng.integers(len(other), size=2)])
        return ClipDraw((int(c0), int(c1), int(c2)), order, focused)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(clip_len={self.clip_len}, stride={self.stride}, "
            f"motion_prob={self.motion_prob}, top_fraction={self.top_fraction}, "
            f"min_frames={self.min_frames})"
        )


class UniformSampler(MotionFocusedSampler):
    """The same order structure with uniform draws: never motion-focused, ignores clip scores."""

    def __init__(self, clip_len: int = 16, stride: int = 2, min_frames: int | None = None) -> None:
        super().__init__(clip_len, stride, motion_prob=0.0, top_fraction=1.0, min_frames=min_frames)

    def sample(
        self, num_frames: int, clip_scores: np.ndarray | None, rng: np.random.Generator
    ) -> ClipDraw:
        """Draw the starts of c0, c1, c2 uniformly within the halves (``clip_scores`` is unused)."""
        return super().sample(num_frames, None, rng)
