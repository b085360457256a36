"""Temporal sampling of clip starts: exact tables, the short-video fall-back, statistics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from mcl_video.sampling.temporal import (
    ClipDraw,
    MotionFocusedSampler,
    UniformSampler,
    clip_frame_indices,
    top_count,
    top_starts,
)


def test_clip_frame_indices_and_num_starts():
    assert clip_frame_indices(5, 4, 3).tolist() == [5, 8, 11, 14]
    s = MotionFocusedSampler(clip_len=16, stride=2)
    assert s.span == 32 and s.min_frames == 64
    assert s.num_starts(64) == 33  # starts 0..32: the last clip reads frames 32..62, flow to 63
    assert s.num_starts(20) == 1  # shorter than one clip: start 0, the reader repeats frames
    assert s.has_halves(64) and not s.has_halves(63)


def test_top_starts_keeps_count_and_ties():
    scores = np.array([0.0, 5.0, 1.0, 5.0, 3.0, 9.0])
    assert top_starts(np.arange(0, 3), scores, 2).tolist() == [1, 2]
    assert top_starts(np.arange(3, 6), scores, 2).tolist() == [3, 5]
    assert top_starts(np.array([0, 2]), scores, 1).tolist() == [2]
    assert top_starts(np.arange(1, 5), scores, 1).tolist() == [1, 3]  # tied with the best
    assert top_starts(np.arange(4), np.ones(4), 2).tolist() == [0, 1, 2, 3]  # static: all kept
    assert top_starts(np.arange(3), scores, 99).tolist() == [0, 1, 2]  # capped at n
    assert top_count(6, 0.5) == 4 and top_count(7, 0.5) == 4 and top_count(0, 0.5) == 1


def _release_pools(n: int, span: int) -> dict:
    """The release's candidate starts, 1-based, transcribed from video_dataset.py:
    uniform draws randint(1, n//2 - span + 1) and randint(n//2, n - span) (inclusive ends);
    motion-focused pools range(1, n//2 - span + 1) and range(n//2, n - span) (exclusive ends)."""
    h = n // 2
    return {"uniform": (list(range(1, h - span + 2)), list(range(h, n - span + 1))),
            "focused": (list(range(1, h - span + 1)), list(range(h, n - span)))}


def test_halves_table_from_the_release_indexing():
    # clip_len 2 x stride 2 -> span L = 4. Our start s (0-based) is the release's start s + 1.
    s = MotionFocusedSampler(clip_len=2, stride=2, top_fraction=1.0)
    # N = 20: h = 10. Release uniform 1..7 and 10..16 -> ours 0..6 and 9..15;
    # focused pools 1..6 and 10..15 -> ours 0..5 and 9..14.
    first, second = s.halves(20)
    assert first.tolist() == [0, 1, 2, 3, 4, 5, 6] and second.tolist() == [9, 10, 11, 12, 13, 14, 15]
    first, second = s.halves(20, np.zeros(17), focused=True)  # top_fraction 1: int(6) + 1 keeps all
    assert first.tolist() == [0, 1, 2, 3, 4, 5] and second.tolist() == [9, 10, 11, 12, 13, 14]
    # N = 21 (odd): h = 10, second half ends at N - L - 1 = 16 (release 17 = N - L)
    assert s.halves(21)[1].tolist() == list(range(9, 17))
    # every N: ours = release - 1, first-half clips end by frame h - 1, second-half ones start there
    for n in range(8, 70):
        for kind, (r1, r2) in _release_pools(n, 4).items():
            got1, got2 = s.halves(n, np.zeros(n - 3), focused=kind == "focused")
            if kind == "focused" and (not r1 or not r2):  # the release's fall-back: starts 1 and L
                r1, r2 = [1], [4]
            assert got1.tolist() == [i - 1 for i in r1] and got2.tolist() == [i - 1 for i in r2], (n, kind)
            assert got1.max() + 4 - 1 <= n // 2 - 1 <= got2.min()


def test_two_halves_need_two_spans_and_fall_back_at_the_edge():
    s = MotionFocusedSampler(clip_len=2, stride=2, motion_prob=1.0)  # L = 4
    assert s.has_halves(8) and not s.has_halves(7)
    # N = 8: uniform halves {0} and {3}; focused pools range(1, 1) is empty -> release's [1], [L]
    assert [h.tolist() for h in s.halves(8)] == [[0], [3]]
    assert [h.tolist() for h in s.halves(8, np.arange(5.0), focused=True)] == [[0], [3]]
    for seed in range(10):
        d = s.sample(8, np.arange(5.0), np.random.default_rng(seed))
        assert d.starts == ((0, 3, 3) if d.order == 1 else (3, 0, 0))


def test_top_rule_counts_the_first_pool_for_both_halves():
    # L = 4, N = 30: h = 15; focused pools 0..10 (11 starts) and 14..24 (11 starts);
    # keep int(0.5 * 11) + 1 = 6 of each by score
    scores = np.array([3, 9, 1, 8, 2, 7, 0, 6, 5, 4, 10, 0, 0, 0,
                       1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 50, 50], dtype=float)
    s = MotionFocusedSampler(clip_len=2, stride=2, motion_prob=1.0, top_fraction=0.5)
    first, second = s.halves(30, scores, focused=True)
    assert first.tolist() == [1, 3, 5, 7, 8, 10]  # scores 9, 8, 7, 6, 5, 10
    assert second.tolist() == [19, 20, 21, 22, 23, 24]  # 6..11; starts 25, 26 are outside the pool


def _expected_draw(seed, motion_prob, first, second, top_first, top_second):
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
    # clip_len 2 x stride 2 -> L = 4; 24 frames, h = 12; 21 scored starts.
    # uniform: release 1..9 and 12..20 -> ours 0..8 and 11..19;
    # focused pools: release 1..8 and 12..19 -> ours 0..7 and 11..18, keep int(0.5 * 8) + 1 = 5
    scores = np.array([5, 1, 4, 0, 2, 6, 3, 3, 8, 0, 7, 1, 9, 2, 2, 0, 6, 4, 5, 3, 99], dtype=float)
    first, second = list(range(0, 9)), list(range(11, 20))
    top_first = [0, 2, 5, 6, 7]  # 5, 4, 6 and the two 3s tied with the 5th best
    top_second = [12, 13, 14, 16, 17, 18]  # 9, 6, 4, 5 and the two 2s (starts 19, 20 are outside)
    s = MotionFocusedSampler(clip_len=2, stride=2, motion_prob=0.7, top_fraction=0.5)
    for seed in range(40):
        got = s.sample(24, scores, np.random.default_rng(seed))
        want = _expected_draw(seed, 0.7, first, second, top_first, top_second)
        assert got == want, seed


def test_short_video_falls_back_to_three_sorted_random_starts():
    s = MotionFocusedSampler(clip_len=4, stride=2)  # L = 8, 15 frames: 15 // 8 = 1, no halves
    for seed in range(30):
        rng = np.random.default_rng(seed)
        order = int(rng.integers(2))
        rng.random()
        d = sorted(rng.integers(7, size=3).tolist())  # release randint(1, N - L) -> ours 0..N - L - 1
        want = (d[0], d[1], d[2]) if order == 1 else (d[2], d[0], d[1])
        got = s.sample(15, None, np.random.default_rng(seed))  # scores not needed when too short
        assert got == ClipDraw(want, order, False)
    assert s.sample(3, None, np.random.default_rng(0)).starts == (0, 0, 0)


def test_query_and_keys_share_at_most_one_raw_frame():
    # any length with two halves, both kinds of draw: c0's raw frames [s, s + L) meet those of c1/c2
    # in at most one frame (the boundary frame N // 2 - 1)
    rng = np.random.default_rng(5)
    for clip_len, stride in ((8, 2), (16, 2), (4, 1)):
        s = MotionFocusedSampler(clip_len=clip_len, stride=stride, motion_prob=0.5)
        span, shared = s.span, []
        for _ in range(600):
            n = int(rng.integers(2 * span, 4 * span + 7))
            d = s.sample(n, rng.random(s.num_starts(n)), rng)
            q = set(range(d.starts[0], d.starts[0] + span))
            for k in d.starts[1:]:
                shared.append(len(q & set(range(k, k + span))))
        assert max(shared) <= 1, (clip_len, stride)
        assert np.mean(shared) < 0.2


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
    h = n_frames // 2  # motion-focused pools (release): 0..h-33 and h-1..N-34; keep int(0.5 n1) + 1
    halves = [np.arange(0, h - 32), np.arange(h - 1, n_frames - 33)]
    keep = int(0.5 * len(halves[0])) + 1
    thresholds = [np.sort(scores[p])[::-1][keep - 1] for p in halves]
    rng = np.random.default_rng(0)
    hits = total = 0
    for _ in range(1000):
        for start in s.sample(n_frames, scores, rng).starts:
            half = 0 if start < h - 1 else 1
            hits += scores[start] >= thresholds[half]
            total += 1
    assert hits / total >= 0.95


def test_motion_prob_sets_the_focused_fraction():
    s = MotionFocusedSampler(clip_len=4, stride=2, motion_prob=0.7)
    rng = np.random.default_rng(3)
    focused = [s.sample(40, np.arange(33.0), rng).motion_focused for _ in range(2000)]
    assert abs(np.mean(focused) - 0.7) < 0.04  # 4 standard errors


def test_uniform_sampler_covers_the_halves_uniformly():
    s = UniformSampler(clip_len=4, stride=2)  # L = 8
    rng = np.random.default_rng(4)
    first, second = s.halves(27)  # h = 13: release 1..6 and 13..19 -> ours 0..5 and 12..18
    assert first.tolist() == list(range(0, 6)) and second.tolist() == list(range(12, 19))
    c0, rest = np.zeros(20), np.zeros(20)
    for _ in range(4000):
        d = s.sample(27, None, rng)
        assert not d.motion_focused
        c0[d.starts[0]] += 1
        np.add.at(rest, list(d.starts[1:]), 1)
    inside = np.r_[first, second]
    assert c0.sum() == c0[inside].sum() and rest.sum() == rest[inside].sum()
    for counts, half in ((c0, first), (c0, second), (rest, first), (rest, second)):
        assert chisquare(counts[half]).pvalue > 1e-3


def test_scores_length_mismatch_is_a_clear_error():
    s = MotionFocusedSampler(clip_len=4, stride=2, motion_prob=1.0)
    s.sample(20, np.ones(12), np.random.default_rng(0))  # one short of 13: tolerated
    with pytest.raises(ValueError, match="mcl prepare"):
        s.sample(20, np.ones(5), np.random.default_rng(0))
    with pytest.raises(ValueError, match="motion_prob"):
        MotionFocusedSampler(motion_prob=1.5)
