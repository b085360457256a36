"""Temporal sampling (METHOD §2): exact tables, the short-video fall-back, statistics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from mcl_video.sampling.temporal import (
    ClipDraw,
    MotionFocusedSampler,
    UniformSampler,
    clip_frame_indices,
    top_starts,
)


def test_clip_frame_indices_and_num_starts():
    assert clip_frame_indices(5, 4, 3).tolist() == [5, 8, 11, 14]
    s = MotionFocusedSampler(clip_len=16, stride=2)
    assert s.span == 32 and s.min_frames == 64
    assert s.num_starts(64) == 33  # starts 0..32: the last clip reads frames 32..62, flow to 63
    assert s.num_starts(20) == 1  # shorter than one clip: start 0, the reader repeats frames
    assert s.has_halves(64) and not s.has_halves(63)


def test_top_starts_keeps_ceil_fraction_and_ties():
    scores = np.array([0.0, 5.0, 1.0, 5.0, 3.0, 9.0])
    assert top_starts(np.arange(0, 3), scores, 0.5).tolist() == [1, 2]  # ceil(1.5) = 2
    assert top_starts(np.arange(3, 6), scores, 0.5).tolist() == [3, 5]
    assert top_starts(np.array([0, 2]), scores, 0.01).tolist() == [2]
    assert top_starts(np.arange(1, 5), scores, 0.25).tolist() == [1, 3]  # tied with the best
    assert top_starts(np.arange(4), np.ones(4), 0.5).tolist() == [0, 1, 2, 3]  # static: all kept


def test_closed_form_single_candidate_per_half():
    # clip_len 2 x stride 1 -> span 2; 10 frames -> starts 0..8; halves [0..3] and [4..8].
    # top_fraction 0.2 keeps ceil(0.8) = 1 start in the first half and ceil(1.0) = 1 in the second:
    # the argmax of each half, whatever the random draws.
    scores = np.array([0.1, 0.2, 3.0, 0.4, 0.5, 0.6, 0.7, 9.0, 0.8])
    s = MotionFocusedSampler(clip_len=2, stride=1, motion_prob=1.0, top_fraction=0.2, min_frames=4)
    table = {1: (2, 7, 7), 0: (7, 2, 2)}
    seen = set()
    for seed in range(20):
        d = s.sample(10, scores, np.random.default_rng(seed))
        assert d.motion_focused
        assert d.starts == table[d.order]
        seen.add(d.order)
    assert seen == {0, 1}


def _expected_draw(seed, n, first, second, motion_prob, top_first, top_second):
    """Hand-derivation of the documented draw order (temporal.py docstring) for one seed."""
    rng = np.random.default_rng(seed)
    order = int(rng.integers(2))
    focused = bool(rng.random() < motion_prob)
    a, b = (top_first, top_second) if focused else (first, second)
    own, other = (a, b) if order == 1 else (b, a)
    c0 = own[rng.integers(len(own))]
    c1, c2 = sorted(other[k] for k in rng.integers(len(other), size=2))
    return ClipDraw((c0, c1, c2), order, focused)


def test_exact_table_for_seeded_generator():
    # clip_len 4 x stride 2 -> span 8; 20 frames -> 13 starts; halves 0..5 and 6..12
    scores = np.array([5, 1, 4, 0, 2, 6, 3, 3, 8, 0, 7, 1, 9], dtype=float)
    first, second = list(range(0, 6)), list(range(6, 13))
    top_first = [0, 2, 5]  # ceil(0.5 * 6) = 3 best of 5,1,4,0,2,6
    top_second = [6, 7, 8, 10, 12]  # ceil(0.5 * 7) = 4 best of 3,3,8,0,7,1,9, plus the tie at 3
    s = MotionFocusedSampler(clip_len=4, stride=2, motion_prob=0.7, top_fraction=0.5)
    assert s.min_frames == 16
    for seed in range(40):
        got = s.sample(20, scores, np.random.default_rng(seed))
        want = _expected_draw(seed, 13, first, second, 0.7, top_first, top_second)
        assert got == want, seed


def test_short_video_falls_back_to_three_sorted_random_starts():
    s = MotionFocusedSampler(clip_len=4, stride=2)  # min_frames 16, 15 frames -> 8 starts
    for seed in range(30):
        rng = np.random.default_rng(seed)
        order = int(rng.integers(2))
        rng.random()
        d = sorted(rng.integers(8, size=3).tolist())
        want = (d[0], d[1], d[2]) if order == 1 else (d[2], d[0], d[1])
        got = s.sample(15, None, np.random.default_rng(seed))  # scores not needed when too short
        assert got == ClipDraw(want, order, False)
    assert s.sample(3, None, np.random.default_rng(0)).starts == (0, 0, 0)


def test_order_label_is_true_and_halves_respected():
    s = MotionFocusedSampler(clip_len=4, stride=2, motion_prob=0.5)
    scores = np.random.default_rng(1).random(93)
    rng = np.random.default_rng(2)
    orders = []
    for _ in range(500):
        d = s.sample(100, scores, rng)
        c0, c1, c2 = d.starts
        assert c1 <= c2
        if d.order == 1:
            assert c0 < 46 <= c1
        else:
            assert c1 <= c2 < 46 <= c0
        orders.append(d.order)
    assert 0.4 < np.mean(orders) < 0.6


def test_motion_focused_draws_land_in_the_moving_stretch():
    # 160 frames at 16 x 2: 129 starts; motion only in frames 20..50 and 110..140
    n_frames = 160
    s = MotionFocusedSampler(clip_len=16, stride=2, motion_prob=1.0)
    n = s.num_starts(n_frames)
    motion = np.zeros(n_frames)
    motion[20:50] = 1.0
    motion[110:140] = 1.0
    scores = np.array([motion[t : t + 32].mean() for t in range(n)])
    halves = [np.arange(0, n // 2), np.arange(n // 2, n)]
    thresholds = [np.sort(scores[h])[::-1][int(np.ceil(0.5 * len(h))) - 1] for h in halves]
    rng = np.random.default_rng(0)
    hits = total = 0
    for _ in range(1000):
        for start in s.sample(n_frames, scores, rng).starts:
            half = 0 if start < n // 2 else 1
            hits += scores[start] >= thresholds[half]
            total += 1
    assert hits / total >= 0.95


def test_motion_prob_sets_the_focused_fraction():
    s = MotionFocusedSampler(clip_len=4, stride=2, motion_prob=0.7)
    rng = np.random.default_rng(3)
    focused = [s.sample(40, np.arange(33.0), rng).motion_focused for _ in range(2000)]
    assert abs(np.mean(focused) - 0.7) < 0.04  # 4 standard errors


def test_uniform_sampler_covers_the_starts_uniformly():
    s = UniformSampler(clip_len=4, stride=2)
    rng = np.random.default_rng(4)
    n = s.num_starts(27)  # 20 starts, halves of 10
    c0, rest = np.zeros(n), np.zeros(n)
    for _ in range(4000):
        d = s.sample(27, None, rng)
        assert not d.motion_focused
        c0[d.starts[0]] += 1
        np.add.at(rest, list(d.starts[1:]), 1)
    assert chisquare(c0).pvalue > 1e-3
    assert chisquare(rest).pvalue > 1e-3


def test_scores_length_mismatch_is_a_clear_error():
    s = MotionFocusedSampler(clip_len=4, stride=2, motion_prob=1.0)
    s.sample(20, np.ones(12), np.random.default_rng(0))  # one short of 13: tolerated
    with pytest.raises(ValueError, match="mcl prepare"):
        s.sample(20, np.ones(5), np.random.default_rng(0))
    with pytest.raises(ValueError, match="motion_prob"):
        MotionFocusedSampler(motion_prob=1.5)
