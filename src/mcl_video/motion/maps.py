"""Motion-boundary maps (Prewitt derivatives of u and v summed over a window, then their magnitudes), the
motion box of the crop and the alignment target.

Motion boundaries remove camera motion: each flow component is differentiated with the 3x3 Prewitt
kernels ``Kx = [[-1, 0, 1]] * 3`` and ``Ky = Kx^T`` (``scipy.ndimage.convolve`` semantics: the kernel is
flipped, ``reflect`` border). Over a window of flow frames the derivatives are **summed before the
magnitude**, as the authors' release does::

    M_u = sqrt((sum_t Kx*u_t)^2 + (sum_t Ky*u_t)^2),   M_v likewise
    spatial map (crop, clip scores): (M_u + M_v) / 2 with a border zeroed
    alignment target:                 M_u + M_v         (no border)

Border: the release zeroes 8 px of a map whose side is about 224-240 px (about 3.6% of the side). The
default here (``border=None``) scales that to the map's own resolution, ``border_for(H, W) =
round(8 * min(H, W) / 224)`` px (1 px at 32, 4 px at 112); an explicit pixel count overrides it. The
reference vectors of the release (``motion_golden.npz``, a 112 px flow) were computed with the literal
8 px, so its tests pass ``border=8``.

Block means over a grid use exact area weights (:func:`area_weights`): for a size divisible by the grid
(112 px -> 7 cells of 16) they are plain block means; otherwise a pixel straddling two cells counts in
both in proportion to its overlap.

Everything is float32 (the reference vectors hold to ~1e-7 relative). The Prewitt filter is OpenCV's
separable filter with ``BORDER_REFLECT`` (``cba|abc|cba``, scipy's ``reflect``; OpenCV correlates, so
the difference kernel is given flipped); magnitudes are exactly rounded elementwise OpenCV operations;
block means are two small float32 matrix products with cached weights.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

# correlation kernels of Kx = [[-1, 0, 1]] * 3 under convolution (scipy.ndimage.convolve flips the kernel)
_SMOOTH = np.array([1.0, 1.0, 1.0], np.float32)
_DIFF = np.array([1.0, 0.0, -1.0], np.float32)


def _check_flow(flow_u: np.ndarray, flow_v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u = np.ascontiguousarray(flow_u, dtype=np.float32)
    v = np.ascontiguousarray(flow_v, dtype=np.float32)
    if u.shape != v.shape or u.ndim != 3 or u.shape[0] == 0:
        raise ValueError(f"flow_u and flow_v must both be N x H x W with N >= 1, "
                         f"got {np.shape(flow_u)} and {np.shape(flow_v)}")
    return u, v


def prewitt_into(image: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> None:
    """``Kx * image`` into ``dx`` and ``Ky * image`` into ``dy`` (float32 ``H x W``, reflect border)."""
    cv2.sepFilter2D(image, cv2.CV_32F, _DIFF, _SMOOTH, dst=dx, borderType=cv2.BORDER_REFLECT)
    cv2.sepFilter2D(image, cv2.CV_32F, _SMOOTH, _DIFF, dst=dy, borderType=cv2.BORDER_REFLECT)


def prewitt(field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Kx * f, Ky * f)`` of ``field`` (``... x H x W``), each over the last two axes, float32.

    Equal to ``ndimage.convolve(f_t, Kx)`` per frame (reflect border) up to float32 rounding.
    """
    f = np.ascontiguousarray(field, dtype=np.float32)
    h, w = f.shape[-2:]
    flat = f.reshape(-1, h, w)
    dx, dy = np.empty_like(flat), np.empty_like(flat)
    for i in range(flat.shape[0]):
        prewitt_into(flat[i], dx[i], dy[i])
    return dx.reshape(f.shape), dy.reshape(f.shape)


def boundary_derivatives(flow_u: np.ndarray, flow_v: np.ndarray) -> np.ndarray:
    """Prewitt derivatives of both flow components.

    Args:
        flow_u, flow_v: ``N x H x W`` flow in pixels.

    Returns:
        float32 ``4 x N x H x W``: ``[Kx*u, Ky*u, Kx*v, Ky*v]``.
    """
    u, v = _check_flow(flow_u, flow_v)
    out = np.empty((4, *u.shape), np.float32)
    for t in range(u.shape[0]):
        prewitt_into(u[t], out[0, t], out[1, t])
        prewitt_into(v[t], out[2, t], out[3, t])
    return out


def _magnitude_sum(ux: np.ndarray, uy: np.ndarray, vx: np.ndarray, vy: np.ndarray) -> np.ndarray:
    """``sqrt(ux^2 + uy^2) + sqrt(vx^2 + vy^2)`` of float32 ``h x w`` planes, a new array.

    Elementwise OpenCV multiply/add/sqrt (each exactly rounded), not ``cv2.magnitude``: that one's last
    bit depends on the memory alignment of its inputs (a vector path with fused multiply-add), and cache
    entries must not depend on where a process happened to allocate them.
    """
    mu = cv2.multiply(ux, ux)
    cv2.add(mu, cv2.multiply(uy, uy), dst=mu)
    cv2.sqrt(mu, dst=mu)
    mv = cv2.multiply(vx, vx)
    cv2.add(mv, cv2.multiply(vy, vy), dst=mv)
    cv2.sqrt(mv, dst=mv)
    return cv2.add(mu, mv, dst=mu)


def boundary_magnitude(derivatives: np.ndarray) -> np.ndarray:
    """``M_u + M_v`` from (summed) derivatives ``4 x ... `` -> ``...`` (float32)."""
    d = np.ascontiguousarray(derivatives, dtype=np.float32)
    shape = d.shape[1:]
    planes = d.reshape(4, -1, shape[-1] if shape else 1)
    return _magnitude_sum(*planes).reshape(shape)


def zero_border(field: np.ndarray, border: int) -> np.ndarray:
    """Copy of ``field`` (``... x H x W``) with ``border`` pixels on every side set to zero (float32)."""
    out = np.array(field, dtype=np.float32, copy=True)
    b = int(border)
    if b > 0:
        out[..., :b, :] = 0.0
        out[..., -b:, :] = 0.0
        out[..., :, :b] = 0.0
        out[..., :, -b:] = 0.0
    return out


def border_for(frame_hw: tuple[int, int], border_224: float = 8.0) -> int:
    """The border scaled to the frame: ``round(border_224 * min(H, W) / 224)`` pixels."""
    return int(round(border_224 * min(frame_hw) / 224.0))


def area_weights(n_in: int, n_out: int, start: float = 0.0, length: float | None = None) -> np.ndarray:
    """Area-averaging matrix ``n_out x n_in``: row i averages ``[start + i*step, start + (i+1)*step)``.

    ``step = length / n_out`` (``length`` defaults to ``n_in - start``); pixel j covers ``[j, j+1)``.
    Rows sum to 1. The interval is clamped to ``[0, n_in]``. float64.
    """
    length = float(n_in - start) if length is None else float(length)
    if n_in < 1 or n_out < 1 or length <= 0:
        raise ValueError(f"bad block-mean geometry n_in={n_in}, n_out={n_out}, "
                         f"length={length}")
    edges = np.clip(start + np.arange(n_out + 1) * (length / n_out), 0.0, float(n_in))
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    total = overlap.sum(axis=1, keepdims=True)
    if np.any(total <= 0):
        raise ValueError(f"a grid cell falls outside the field (n_in={n_in}, "
                         f"start={start}, length={length}); check the crop")
    return overlap / total


@lru_cache(maxsize=256)
def _weights32(n_in: int, n_out: int, start: float, length: float | None) -> np.ndarray:
    w = area_weights(n_in, n_out, start, length).astype(np.float32)
    w.flags.writeable = False
    return w


def block_means(field: np.ndarray, grid_hw: tuple[int, int],
                box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Area means of ``field`` (``... x H x W``) over a ``gh x gw`` grid -> float32 ``... x gh x gw``.

    ``box = (top, left, height, width)`` in the field's pixels restricts the grid to that region.
    """
    f = np.asarray(field, dtype=np.float32)
    h, w = f.shape[-2:]
    top, left, bh, bw = (0.0, 0.0, float(h), float(w)) if box is None else (float(x) for x in box)
    rows = _weights32(h, int(grid_hw[0]), top, bh)
    cols = _weights32(w, int(grid_hw[1]), left, bw)
    lead = f.shape[:-2]
    out = (f.reshape(-1, w) @ cols.T).reshape(-1, h, cols.shape[0])  # contract the long axis first
    return (rows @ out).reshape(*lead, rows.shape[0], cols.shape[0])


def interior(hw: tuple[int, int], border: int) -> tuple[slice, slice] | None:
    """Row and column slices of the pixels a ``border`` leaves, or None when it leaves none."""
    h, w = hw
    b = max(0, int(border))
    if 2 * b >= h or 2 * b >= w:
        return None
    return slice(b, h - b), slice(b, w - b)


def aligned_planes(n: int, hw: tuple[int, int]) -> np.ndarray:
    """Zeroed float32 ``n x H x W`` whose planes each start on a 64-byte boundary."""
    h, w = int(hw[0]), int(hw[1])
    stride = -(-h * w // 16) * 16  # floats per plane: a multiple of 64 bytes
    raw = np.zeros(n * stride + 16, np.float32)
    start = (-raw.ctypes.data % 64) // 4
    return np.lib.stride_tricks.as_strided(raw[start:], (n, h, w), (stride * 4, w * 4, 4))


class WindowMapper:
    """Zeroed spatial maps of summed derivatives (``4 x H x W``) of one frame size, reused per window.

    ``score`` is the clip score (mean of the zeroed map over the whole frame) and ``grid_map`` its block
    means; only the pixels inside the border count, the block-mean weights are cut to them.
    """

    def __init__(self, hw: tuple[int, int], border: int | str | None,
                 grid_hw: tuple[int, int] = (7, 7)) -> None:
        self.hw = (int(hw[0]), int(hw[1]))
        self.grid = (int(grid_hw[0]), int(grid_hw[1]))
        self.border = resolve_border(border, self.hw)  # None / "auto": 8 px at 224-px scale
        self.inner = interior(self.hw, self.border)
        if self.inner is not None:
            rows, cols = self.inner
            self.rows = np.ascontiguousarray(_weights32(self.hw[0], self.grid[0], 0.0, None)[:, rows] * 0.5)
            self.cols = np.ascontiguousarray(_weights32(self.hw[1], self.grid[1], 0.0, None)[:, cols].T)
        self._out: np.ndarray | None = None

    def magnitude(self, summed: np.ndarray) -> np.ndarray | None:
        """``M_u + M_v`` (not yet halved) inside the border; None when the border leaves nothing."""
        if self.inner is None:
            return None
        rows, cols = self.inner
        return _magnitude_sum(*(summed[k, rows, cols] for k in range(4)))

    def magnitude_aligned(self, summed: np.ndarray) -> np.ndarray | None:
        """:meth:`magnitude` of sums held in :func:`aligned_planes` (only those), about 2x faster.

        ``cv2.magnitude`` over whole 64-byte-aligned planes: its vector path then never depends on
        where the arrays were allocated, so the results are reproducible; they can differ from
        :meth:`magnitude` in the last bit. The returned view is overwritten by the next call.
        """
        if self.inner is None:
            return None
        if self._out is None:
            self._out = aligned_planes(2, self.hw)
        mu, mv = self._out
        cv2.magnitude(summed[0], summed[1], mu)
        cv2.magnitude(summed[2], summed[3], mv)
        cv2.add(mu, mv, mu)
        rows, cols = self.inner
        return mu[rows, cols]

    def score(self, magnitude: np.ndarray | None) -> float:
        if magnitude is None:
            return 0.0
        return float(magnitude.sum(dtype=np.float64)) / (2.0 * self.hw[0] * self.hw[1])

    def grid_map(self, magnitude: np.ndarray | None) -> np.ndarray:
        if magnitude is None:
            return np.zeros(self.grid, np.float32)
        return self.rows @ (magnitude @ self.cols)


def segment_bounds(n: int, segments: int) -> np.ndarray:
    """Boundaries of ``segments`` equal consecutive parts of ``n`` items: ``(segments + 1,)`` ints."""
    if segments < 1 or n < segments:
        raise ValueError(f"cannot split {n} flow frames into {segments} "
                         "segments; sample at least as many frames as the target has time steps")
    return (np.arange(segments + 1) * n) // segments


def segment_sums(derivatives: np.ndarray, segments: int) -> np.ndarray:
    """Sum ``4 x N x ...`` derivatives over ``segments`` consecutive parts -> ``4 x segments x ...``."""
    bounds = segment_bounds(derivatives.shape[1], segments)
    return np.add.reduceat(derivatives, bounds[:-1], axis=1)


def alignment_target(flow_u: np.ndarray, flow_v: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """The motion-alignment target (block means of ``M_u + M_v`` per segment) of a cropped flow clip.

    Args:
        flow_u, flow_v: ``N x H x W`` flow in pixels (N flow frames, one per sampled frame).
        grid: ``(T', H', W')`` feature grid.

    Returns:
        float32 ``T' x H' x W'``: per segment of N/T' flow frames, ``M_u + M_v`` of the summed
        derivatives, reduced by block means.
    """
    t, gh, gw = (int(g) for g in grid)
    sums = segment_sums(boundary_derivatives(flow_u, flow_v), t)
    return block_means(boundary_magnitude(sums), (gh, gw)).astype(np.float32)


def resolve_border(border: int | str | None, field_hw: tuple[int, int]) -> int:
    """Pixels to zero: an explicit count, or (``None`` / ``"auto"``) :func:`border_for` the field."""
    if border is None or border == "auto":
        return border_for(field_hw)
    return int(border)


def spatial_map(flow_u: np.ndarray, flow_v: np.ndarray, border: int | None = None) -> np.ndarray:
    """Zeroed spatial map ``(M_u + M_v) / 2`` of the whole window: ``H x W`` float32.

    ``border``: pixels zeroed on each side; ``None`` scales 8 px at 224 to the flow's size.
    """
    sums = boundary_derivatives(flow_u, flow_v).sum(axis=1)
    return zero_border(boundary_magnitude(sums) / 2.0, resolve_border(border, sums.shape[-2:]))


def _window_sum(flow_u: np.ndarray, flow_v: np.ndarray) -> np.ndarray:
    return boundary_derivatives(flow_u, flow_v).sum(axis=1)


def window_map(flow_u: np.ndarray, flow_v: np.ndarray, grid_hw: tuple[int, int] = (7, 7),
               border: int | None = None) -> np.ndarray:
    """The window's zeroed spatial map reduced by block means: float32 ``gh x gw`` (frame maps)."""
    sums = _window_sum(flow_u, flow_v)
    mapper = WindowMapper(sums.shape[-2:], border, grid_hw)
    return mapper.grid_map(mapper.magnitude(sums))


def clip_score(flow_u: np.ndarray, flow_v: np.ndarray, border: int | None = None) -> float:
    """Clip score of a window of flow frames: the mean of the zeroed map over the whole frame."""
    sums = _window_sum(flow_u, flow_v)
    mapper = WindowMapper(sums.shape[-2:], border)
    return float(mapper.score(mapper.magnitude(sums)))


_COVERAGE_BY_AREA = ((4, 0.9), (8, 0.8), (12, 0.7))


def required_coverage(area_cells: int) -> float:
    """Coverage a crop must reach for a box of ``area_cells`` cells (<= 4, 8, 12: 0.9, 0.8, 0.7), else 0."""
    for limit, coverage in _COVERAGE_BY_AREA:
        if area_cells <= limit:
            return coverage
    return 0.0


def motion_box(window_map: np.ndarray, frame_hw: tuple[int, int],
               top_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray, float]:
    """Bounding box of the top cells of a grid map and the crop coverage it requires.

    The top ``floor(top_fraction * cells)`` cells (at least 1; 4 of 49 for 7x7) by value are boxed;
    ties are broken by the first cell in row-major order.

    Returns:
        ``(rows, cols, required_coverage)``: ``rows = [y0, y1]``, ``cols = [x0, x1]`` float64 pixel
        ranges of the box (end exclusive: cell i spans ``[i*H/gh, (i+1)*H/gh)``), and the coverage.
    """
    m = np.asarray(window_map, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"motion_box needs a 2-D grid map, got shape {m.shape}")
    gh, gw = m.shape
    k = max(1, int(np.floor(top_fraction * m.size + 1e-9)))
    top = np.argsort(-m.ravel(), kind="stable")[:k]
    r, c = np.divmod(top, gw)
    r0, r1, c0, c1 = r.min(), r.max() + 1, c.min(), c.max() + 1
    h, w = frame_hw
    rows = np.array([r0 * h / gh, r1 * h / gh], dtype=np.float64)
    cols = np.array([c0 * w / gw, c1 * w / gw], dtype=np.float64)
    return rows, cols, required_coverage(int((r1 - r0) * (c1 - c0)))
