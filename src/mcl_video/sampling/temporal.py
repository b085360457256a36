"""Motion-focused temporal sampling (with p = 0.7 the starts come from the top-scored ones of each half).

A sampler decides *which* clips of a video form one training sample, without decoding anything. It
returns a :class:`ClipDraw`: the start frames of the query clip ``c0`` and of the two other clips
``c1``, ``c2``, the order label ``o`` and whether the draw was motion-focused.

Conventions (shared with the motion cache):

* a clip of ``clip_len`` frames at ``stride`` covers ``span = L = clip_len * stride`` raw frames:
  start ``s`` (0-based) reads frames ``s, s + stride, ..., s + (clip_len - 1) * stride``, and the
  flow of its last frame needs frame ``s + L - 1``. The motion cache scores ``N - L + 1`` starts (at
  least 1); ``clip_scores[s]`` is the score of 0-based start ``s``.
* **halves over frames, as the authors' release** (``temporal_sampling_triplet`` and
  ``motion_focus_temporal_sampling``). The release numbers frames from 1 and start ``i`` reads frames
  ``i .. i + L - 1``; here frame ``i`` (1-based) is frame ``i - 1`` (0-based), so a release start ``i``
  is our start ``i - 1``. With ``h = N // 2``:

  ===================  =============================  ==============================
  draw                 first half (0-based starts)    second half (0-based starts)
  ===================  =============================  ==============================
  uniform              ``0 .. h - L``                 ``h - 1 .. N - L - 1``
  motion-focused pool  ``0 .. h - L - 1``             ``h - 1 .. N - L - 2``
  ===================  =============================  ==============================

  (release: ``randint(1, h - L + 1)`` / ``randint(h, N - L)`` for uniform draws, and
  ``range(1, h - L + 1)`` / ``range(h, N - L)``, one shorter at the top, for the motion-focused
  pools). A first-half clip therefore ends by frame ``h - 1`` and a second-half clip starts at
  ``h - 1`` or later: the query and k1/k2 share at most one raw frame.
* motion-focused draw: each pool keeps its ``int(top_fraction * n1) + 1`` best starts by clip score,
  ``n1`` = the size of the *first* pool, for both halves (release, ``top_fraction = 0.5``). Starts tied
  with the last kept score are all kept (the release breaks ties by ``argsort`` order; this only
  matters for exactly equal scores, e.g. a static stretch). When a pool is empty (``h - L < 1``) the
  release falls back to the single starts ``0`` (first half) and ``L - 1`` (second half).
* a video has two halves when ``N // L >= 2`` (the release). A shorter one gets three sorted random
  starts from ``0 .. max(1, N - L) - 1`` (release: ``randint(1, N - L)``; a video shorter than one clip
  has the single start 0 and the reader repeats its last frame, the release's padding).
  ``min_frames`` (default ``2 * L``) can only raise that length; the dataset drops training videos
  without two halves (the release drops UCF101 videos shorter than ``2 * L``).

Random draws, in this order, from a ``numpy.random.Generator`` (tests derive tables from it):

1. ``o = rng.integers(2)``;
2. ``u = rng.random()``; the draw is motion-focused when ``u < motion_prob`` (and the video has two
   halves);
3. two halves: ``i = rng.integers(len(A))`` for c0 from its half's candidates ``A``, then
   ``j = rng.integers(len(B), size=2)`` for c1, c2 from the other half's candidates ``B`` (sorted);
   too short: ``d = sort(rng.integers(max(1, N - L), size=3))``; ``o = 1`` gives ``c0 = d[0]``,
   ``(c1, c2) = (d[1], d[2])``, ``o = 0`` gives ``c0 = d[2]``, ``(c1, c2) = (d[0], d[1])``, so the
   order label stays true.
"""

from __future__ import annotations

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


def top_starts(candidates: np.ndarray, scores: np.ndarray, keep: int) -> np.ndarray:
    """The candidates scoring at least the ``keep``-th highest score (``keep`` capped to 1..n).

    Starts tied with the ``keep``-th score are all kept (so a static stretch, whose scores are all
    equal, keeps every start instead of favouring the earliest ones); the result is in start order.
    ``candidates``: ``(n,)`` start indices into ``scores``.
    """
    if len(candidates) == 0:
        return candidates
    keep = min(max(1, int(keep)), len(candidates))
    values = scores[candidates]
    threshold = np.sort(values)[::-1][keep - 1]
    return candidates[values >= threshold]


def top_count(first_pool_size: int, fraction: float) -> int:
    """Starts kept per half in a motion-focused draw: ``int(fraction * n1) + 1`` (the release)."""
    return int(fraction * first_pool_size) + 1


class MotionFocusedSampler:
    """Three clips in the order structure of the release, motion-focused with ``motion_prob``.

    Args:
        clip_len: frames per clip (16).
        stride: raw-frame step between the frames of a clip (2).
        motion_prob: probability that a draw keeps only the top starts of each half (0.7).
        top_fraction: the release's ``threshold``: a motion-focused draw keeps the
            ``int(top_fraction * n1) + 1`` best starts of each half (0.5).
        min_frames: raw frames a video needs for the two halves, and under which the dataset drops a
            training video (default ``2 * span``, the release's rule for UCF101); the halves also
            need ``N // span >= 2`` whatever this says.
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
        if not 0.0 <= top_fraction <= 1.0:
            raise ValueError(f"top_fraction must be in [0, 1], got {top_fraction}")
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
        """Whether the video is long enough for the first-half / second-half structure:
        ``N // L >= 2`` (the release) and ``N >= min_frames``."""
        return num_frames // self.span >= 2 and num_frames >= self.min_frames

    def halves(self, num_frames: int, clip_scores: np.ndarray | None = None,
               focused: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The candidate starts of each half (module docstring table) -> ``(first, second)``.

        ``focused``: the motion-focused pools reduced to their top starts by ``clip_scores``.
        Only for videos with two halves (:meth:`has_halves`).
        """
        n, span, h = int(num_frames), self.span, int(num_frames) // 2
        if not self.has_halves(n):
            raise ValueError(f"a video of {n} frames has no two halves of {span}-frame clips")
        if not focused:
            return np.arange(0, h - span + 1), np.arange(h - 1, n - span)
        first, second = np.arange(0, h - span), np.arange(h - 1, n - span - 1)
        if len(first) == 0 or len(second) == 0:  # the release's fall-back for 2L <= N < 2L + 2
            return np.array([0]), np.array([span - 1])
        scores = self._scores(self.num_starts(n), clip_scores)
        keep = top_count(len(first), self.top_fraction)
        return top_starts(first, scores, keep), top_starts(second, scores, keep)

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
        if not self.has_halves(num_frames):
            d = np.sort(rng.integers(max(1, num_frames - self.span), size=3))
            starts = (d[0], d[1], d[2]) if order == 1 else (d[2], d[0], d[1])
            return ClipDraw(tuple(int(s) for s in starts), order, False)
        first, second = self.halves(num_frames, clip_scores, focused)
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
