"""Motion-boundary maps against the release's reference vectors and analytic cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mcl_video.motion import alignment_target, boundary_derivatives, clip_score, motion_box, window_map
from mcl_video.motion.maps import (
    WindowMapper,
    aligned_planes,
    area_weights,
    block_means,
    border_for,
    required_coverage,
    spatial_map,
)


@pytest.fixture
def golden(shared):
    return np.load(shared("reference", "motion_golden.npz"))


@pytest.mark.shared
def test_reference_alignment_target(golden):
    st = alignment_target(golden["flow_u"], golden["flow_v"], (4, 7, 7))
    assert st.shape == (4, 7, 7) and st.dtype == np.float32
    np.testing.assert_allclose(st, golden["st_target"], rtol=1e-4, atol=1e-4 * golden["st_target"].max())


@pytest.mark.shared
def test_reference_window_map_and_clip_score(golden):
    # border=8 on the 112 px reference field reproduces the release (it does not rescale the 8 px)
    wm = window_map(golden["flow_u"], golden["flow_v"], (7, 7), border=8)
    np.testing.assert_allclose(wm, golden["window_map"], rtol=1e-5, atol=1e-5 * golden["window_map"].max())
    score = clip_score(golden["flow_u"], golden["flow_v"], border=8)
    assert score == pytest.approx(float(golden["clip_score"]), rel=1e-5)
    # a scaled border (4 px at 112) does not match: the 8 px are literal
    assert clip_score(golden["flow_u"], golden["flow_v"], border=4) != pytest.approx(score, rel=1e-3)


@pytest.mark.shared
def test_reference_motion_box(golden):
    rows, cols, cov = motion_box(golden["window_map"], (112, 112))
    np.testing.assert_array_equal(rows, golden["motion_box_rows"])
    np.testing.assert_array_equal(cols, golden["motion_box_cols"])
    assert cov == float(golden["required_coverage"])


@pytest.mark.parametrize("hw", [(9, 11), (1, 1), (2, 5), (3, 1), (4, 2)])
def test_prewitt_matches_scipy_convolve(hw):
    # OpenCV's separable filter with BORDER_REFLECT == scipy convolve (flipped kernel, reflect border),
    # including the edges of fields only 1-2 px wide; float32 results, so compared at float32 precision
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(2, 3, *hw)).astype(np.float32)
    d = boundary_derivatives(u, v)
    assert d.dtype == np.float32 and d.shape == (4, 3, *hw)
    kx = np.array([[-1.0, 0, 1]] * 3)
    for t in range(3):
        for got, field, kernel in ((d[0, t], u[t], kx), (d[1, t], u[t], kx.T), (d[2, t], v[t], kx),
                                   (d[3, t], v[t], kx.T)):
            want = ndimage.convolve(field.astype(np.float64), kernel, mode="reflect")
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * (1 + np.abs(field).max()))


def test_uniform_flow_has_zero_boundary():
    u = np.full((6, 32, 32), 3.5, np.float32)
    v = np.full((6, 32, 32), -1.25, np.float32)
    assert np.all(alignment_target(u, v, (2, 4, 4)) == 0)
    assert np.all(window_map(u, v, border=2) == 0)
    assert clip_score(u, v) == 0.0


def test_linear_ramp_has_analytic_boundary():
    # u = a*x  ->  Kx*u = -6a everywhere inside (convolve flips the kernel), Ky*u = 0
    a = 0.5
    u = np.tile(a * np.arange(20.0), (2, 20, 1))
    v = np.zeros_like(u)
    st = alignment_target(u, v, (1, 2, 2))
    # two frames summed before the magnitude: 2 * 6a in the interior; the reflected edge columns differ
    inner = boundary_derivatives(u, v)[0, :, 5:-5, 5:-5]
    np.testing.assert_allclose(inner, -6 * a)
    assert st.shape == (1, 2, 2) and np.all(st > 0)


def test_derivatives_summed_before_magnitude():
    # a boundary that flips sign between two frames cancels in the sum (release semantics)
    u = np.zeros((2, 16, 16))
    u[0, :, 8:] = 1.0
    u[1, :, 8:] = -1.0
    assert np.all(alignment_target(u, np.zeros_like(u), (1, 2, 2)) == 0)
    assert np.all(alignment_target(u, np.zeros_like(u), (2, 2, 2)) > 0)


def test_block_means_area_weights():
    x = np.arange(12.0).reshape(3, 4)
    np.testing.assert_allclose(block_means(x, (1, 2)), [[4.5, 6.5]])
    w = area_weights(3, 2)  # cells of 1.5 px: [0, 1.5), [1.5, 3)
    np.testing.assert_allclose(w, [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])
    np.testing.assert_allclose(block_means(x, (1, 1), box=(1, 1, 2, 2)), [[7.5]])


@pytest.mark.parametrize("area,cov", [(1, 0.9), (4, 0.9), (5, 0.8), (8, 0.8), (12, 0.7), (13, 0.0)])
def test_required_coverage_table(area, cov):
    assert required_coverage(area) == cov


def test_motion_box_single_hot_cell_and_spread():
    m = np.zeros((7, 7))
    m[5:7, 0:2] = [[1.0, 2.0], [3.0, 4.0]]
    m[0, 6] = 0.5  # fifth-best cell: outside the top 4 of 49
    rows, cols, cov = motion_box(m, (240, 320))
    np.testing.assert_allclose(rows, [5 * 240 / 7, 240])
    np.testing.assert_allclose(cols, [0, 2 * 320 / 7])
    assert cov == 0.9
    # ties broken row-major: the first 4 zero cells of a zero map are in row 0 -> box 1 x 4 cells
    rows, cols, cov = motion_box(np.zeros((7, 7)), (70, 70))
    np.testing.assert_allclose(rows, [0, 10])
    np.testing.assert_allclose(cols, [0, 40])
    assert cov == 0.9


def test_results_do_not_depend_on_memory_alignment():
    # the same numbers at another address give bit-identical maps (cache entries must be reproducible)
    rng = np.random.default_rng(1)
    u, v = (rng.normal(size=(2, 3, 30, 44)) * 5).astype(np.float32)
    ref = (window_map(u, v, border=3), clip_score(u, v, border=3), alignment_target(u, v, (1, 3, 3)))
    for offset in range(1, 16):
        buf = np.empty(2 * u.size + 16, np.float32)[offset:offset + 2 * u.size].reshape(2, *u.shape)
        buf[0], buf[1] = u, v
        got = (window_map(buf[0], buf[1], border=3), clip_score(buf[0], buf[1], border=3),
               alignment_target(buf[0], buf[1], (1, 3, 3)))
        np.testing.assert_array_equal(got[0], ref[0])
        assert got[1] == ref[1]
        np.testing.assert_array_equal(got[2], ref[2])


def test_aligned_magnitude_is_reproducible_and_matches():
    # prepare's fast path (cv2.magnitude over 64-byte-aligned planes): the same bits from any aligned
    # allocation, and the elementwise path's values to float32 precision
    rng = np.random.default_rng(2)
    sums = (rng.normal(size=(4, 37, 51)) * 30).astype(np.float32)
    mapper = WindowMapper((37, 51), border=3)
    first = None
    for _ in range(8):
        _ = [np.empty(int(n), np.float32) for n in rng.integers(1, 5000, size=3)]  # shift the allocator
        planes = aligned_planes(4, (37, 51))
        assert all(p.ctypes.data % 64 == 0 for p in planes)
        planes[...] = sums
        got = mapper.magnitude_aligned(planes).copy()
        first = got if first is None else first
        np.testing.assert_array_equal(got, first)
    np.testing.assert_allclose(first, mapper.magnitude(sums), rtol=1e-6)


def _edge_blob_flow(side: int = 32, frames: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A disc of radius 3 moving right by 1 px/frame, touching the left edge of a ``side`` px field."""
    yy, xx = np.mgrid[0:side, 0:side]
    u = np.zeros((frames, side, side))
    for t in range(frames):
        u[t][(xx - (2 + t)) ** 2 + (yy - side // 2) ** 2 <= 9] = 1.0
    return u, np.zeros_like(u)


def test_default_border_scales_with_the_resolution():
    assert border_for((32, 32)) == 1 and border_for((112, 160)) == 4 and border_for((224, 224)) == 8
    assert border_for((240, 320)) == 9 and border_for((8, 8)) == 0
    u, v = _edge_blob_flow()
    auto = window_map(u, v, (7, 7))  # default: round(8 * 32 / 224) = 1 px
    np.testing.assert_array_equal(auto, window_map(u, v, (7, 7), border=1))
    assert auto[:, 0].max() > 0.5 * auto.max()  # the outer column of cells holds the motion
    old = window_map(u, v, (7, 7), border=8)  # the fixed 8 px: the outer cells are always zero
    assert old[:, 0].max() == 0 and old[0].max() == 0 and old[:, -1].max() == 0
    assert clip_score(u, v) > clip_score(u, v, border=8) > 0
    # the zeroed band of the spatial map is exactly one pixel at 32 px
    m = spatial_map(u, v)
    assert m[0].max() == m[-1].max() == m[:, 0].max() == m[:, -1].max() == 0 and m[1:-1, 1].max() > 0
