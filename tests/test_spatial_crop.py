"""Spatial cropping: coverage, every fall-back, the plain crop's draws, statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mcl_video.sampling.spatial import (
    CropBox,
    MotionFocusedCrop,
    RandomResizedCropBox,
    box_coverage,
    central_crop,
)


def reference_box(window_map, frame_hw):
    """Hand-written motion box: top 10% cells (int(4.9) = 4), bounding box, r from its area."""
    flat = np.argsort(-np.asarray(window_map).ravel(), kind="stable")[:4]
    rr, cc = np.unravel_index(flat, (7, 7))
    r0, r1, c0, c1 = rr.min(), rr.max() + 1, cc.min(), cc.max() + 1
    area = (r1 - r0) * (c1 - c0)
    required = 0.9 if area <= 4 else 0.8 if area <= 8 else 0.7 if area <= 12 else 0.0
    ch, cw = frame_hw[0] / 7, frame_hw[1] / 7
    return (r0 * ch, r1 * ch), (c0 * cw, c1 * cw), required


def blob_map(r, c, h=2, w=2):
    """Motion in cells ``[r, r + h) x [c, c + w)`` (at least 4 cells: the top 10% is 4 cells)."""
    m = np.random.default_rng(0).uniform(0.0, 0.1, (7, 7))
    m[r : r + h, c : c + w] = 5.0
    m[r, c] = 6.0
    return m


def test_box_coverage_is_product_of_overlaps():
    rows, cols = (32, 80), (48, 80)
    assert box_coverage(32, 48, 48, 32, rows, cols) == 1.0
    assert box_coverage(0, 0, 56, 64, rows, cols) == pytest.approx((24 / 48) * (16 / 32))
    assert box_coverage(90, 0, 10, 10, rows, cols) == 0.0


def test_central_crop_clamps_the_aspect_ratio():
    assert central_crop((100, 100), (3 / 4, 4 / 3)) == CropBox(0, 0, 100, 100)
    assert central_crop((100, 400), (3 / 4, 4 / 3)) == CropBox(0, 133, 100, 133)
    assert central_crop((400, 100), (3 / 4, 4 / 3)) == CropBox(133, 0, 133, 100)


def test_plain_crop_follows_documented_draws():
    crop = RandomResizedCropBox(scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3))
    for seed in range(20):
        rng = np.random.default_rng(seed)
        a = rng.uniform(0.2, 1.0)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        area = 120 * 160 * a
        h, w = round(math.sqrt(area / aspect)), round(math.sqrt(area * aspect))
        if h <= 120 and w <= 160:
            want = CropBox(int(rng.integers(120 - h + 1)), int(rng.integers(160 - w + 1)), h, w)
            assert crop.sample((120, 160), None, np.random.default_rng(seed)) == want


def test_motion_crop_equals_plain_crop_when_the_first_position_covers():
    plain = RandomResizedCropBox()
    motion = MotionFocusedCrop(box_fn=reference_box)
    same = bound = 0
    for seed in range(300):
        box, info = motion.sample_with_info((112, 112), blob_map(3, 3), np.random.default_rng(seed))
        base = plain.sample((112, 112), None, np.random.default_rng(seed))
        if not info.bound:
            assert box == base
            same += 1
        else:
            assert box_coverage(*base.as_tuple(), info.rows, info.cols) < info.required
            bound += 1
    assert same > 0 and bound > 0


def test_unconstrained_map_gives_the_plain_crop():
    spread = np.ones((7, 7))
    spread[0, 0] = spread[6, 6] = spread[0, 6] = spread[6, 0] = 2.0  # top 4 span the whole frame
    motion = MotionFocusedCrop(box_fn=reference_box)
    for seed in range(10):
        box, info = motion.sample_with_info((112, 112), spread, np.random.default_rng(seed))
        assert info.required == 0 and not info.bound
        assert box == RandomResizedCropBox().sample((112, 112), None, np.random.default_rng(seed))


def best_possible(frame_hw, h, w, rows, cols):
    return max(
        box_coverage(t, left, h, w, rows, cols)
        for t in range(frame_hw[0] - h + 1)
        for left in range(frame_hw[1] - w + 1)
    )


@pytest.mark.parametrize("blob", [(0, 0, 2, 2), (2, 4, 2, 2), (5, 1, 2, 3), (1, 1, 3, 4), (5, 3, 2, 4)])
def test_required_coverage_met_whenever_feasible(blob):
    frame_hw = (56, 70)  # small frame so the exhaustive feasibility check is cheap
    motion = MotionFocusedCrop(box_fn=reference_box)
    m = blob_map(*blob)
    rng = np.random.default_rng(7)
    feasible = met = 0
    for _ in range(200):
        box, info = motion.sample_with_info(frame_hw, m, rng)
        assert info.required > 0 and info.fallback == ""
        if best_possible(frame_hw, box.height, box.width, info.rows, info.cols) >= info.required:
            feasible += 1
            met += info.coverage >= info.required
    assert feasible >= 50
    assert met / feasible >= 0.95


def test_required_coverage_table_from_box_area():
    motion = MotionFocusedCrop(box_fn=reference_box)
    cases = {(1, 1): 0.9, (2, 2): 0.9, (2, 4): 0.8, (3, 4): 0.7, (4, 4): 0.0}
    for (h, w), r in cases.items():
        m = np.zeros((7, 7))
        m[0, 0] = m[h - 1, w - 1] = 3.0
        m[0, w - 1] = m[h - 1, 0] = 2.0
        _, _, required = motion.motion_box((112, 112), m)
        assert required == r, (h, w)


def test_corner_fallback_contains_the_box_when_no_size_fits():
    # a 20 x 400 strip with crops of >= 90% area and aspect near 1: no size ever fits
    motion = MotionFocusedCrop(scale=(0.9, 1.0), box_fn=reference_box)
    frame_hw = (20, 400)
    corners = set()
    for seed in range(40):
        box, info = motion.sample_with_info(frame_hw, blob_map(3, 2), np.random.default_rng(seed))
        assert info.fallback == "corner" and info.coverage == pytest.approx(1.0)
        r0, r1 = info.rows
        c0, c1 = info.cols
        assert box.top <= r0 and box.top + box.height >= r1
        assert box.left <= c0 and box.left + box.width >= c1
        at_top, at_left = box.top == 0, box.left == 0
        at_bottom, at_right = box.top + box.height == 20, box.left + box.width == 400
        assert (at_top or at_bottom) and (at_left or at_right)
        corners.add((at_top, at_left))
    assert len(corners) == 4


def test_center_fallback_without_constraint():
    spread = np.ones((7, 7))
    spread[0, 0] = spread[6, 6] = spread[0, 6] = spread[6, 0] = 2.0
    motion = MotionFocusedCrop(scale=(0.9, 1.0), box_fn=reference_box)
    box = motion.sample((20, 400), spread, np.random.default_rng(0))
    assert box == central_crop((20, 400), (3 / 4, 4 / 3))


@pytest.mark.shared
def test_default_box_matches_motion_golden(shared):
    golden = np.load(shared("reference", "motion_golden.npz"))
    rows, cols, r = MotionFocusedCrop().motion_box((112, 112), golden["window_map"])
    assert rows == tuple(golden["motion_box_rows"])
    assert cols == tuple(golden["motion_box_cols"])
    assert r == pytest.approx(float(golden["required_coverage"]))
    assert reference_box(golden["window_map"], (112, 112)) == (rows, cols, r)


def test_default_box_agrees_with_hand_written_reference():
    rng = np.random.default_rng(11)
    crop = MotionFocusedCrop()
    for _ in range(50):
        m = rng.random((7, 7)) ** 4
        assert crop.motion_box((120, 160), m) == reference_box(m, (120, 160))
