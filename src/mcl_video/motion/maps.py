"""Motion-boundary maps (METHOD §1), the motion box of the crop (§3) and the alignment target (§4).

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
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_SMOOTH = np.array([1.0, 1.0, 1.0])
_DIFF = np.array([1.0, 0.0, -1.0])  # [-1, 0, 1] flipped: convolve == correlate with the flipped kernel


def _check_flow(flow_u: np.ndarray, flow_v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u = np.asarray(flow_u, dtype=np.float64)
    v = np.asarray(flow_v, dtype=np.float64)
    if u.shape != v.shape or u.ndim != 3 or u.shape[0] == 0:
        raise ValueError(f"mcl_video/motion/maps.py: flow_u and flow_v must both be N x H x W with N >= 1, "
                         f"got {np.shape(flow_u)} and {np.shape(flow_v)}")
    return u, v


def prewitt(field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Kx * f, Ky * f)`` of ``field`` (``... x H x W``), each over the last two axes.

    Equal to ``ndimage.convolve(f_t, Kx)`` per frame (reflect border), done as two separable passes
    vectorised over the leading axes.
    """
    f = np.asarray(field, dtype=np.float64)
    dx = ndimage.correlate1d(ndimage.correlate1d(f, _SMOOTH, axis=-2, mode="reflect"), _DIFF, axis=-1,
                             mode="reflect")
    dy = ndimage.correlate1d(ndimage.correlate1d(f, _SMOOTH, axis=-1, mode="reflect"), _DIFF, axis=-2,
                             mode="reflect")
    return dx, dy


def boundary_derivatives(flow_u: np.ndarray, flow_v: np.ndarray) -> np.ndarray:
    """Prewitt derivatives of both flow components.

    Args:
        flow_u, flow_v: ``N x H x W`` flow in pixels.

    Returns:
        float64 ``4 x N x H x W``: ``[Kx*u, Ky*u, Kx*v, Ky*v]``.
    """
    u, v = _check_flow(flow_u, flow_v)
    ux, uy = prewitt(u)
    vx, vy = prewitt(v)
    return np.stack([ux, uy, vx, vy])


def boundary_magnitude(derivatives: np.ndarray) -> np.ndarray:
    """``M_u + M_v`` from (summed) derivatives ``4 x ... `` -> ``...``."""
    d = np.asarray(derivatives)
    return np.sqrt(d[0] * d[0] + d[1] * d[1]) + np.sqrt(d[2] * d[2] + d[3] * d[3])


def zero_border(field: np.ndarray, border: int) -> np.ndarray:
    """Copy of ``field`` (``... x H x W``) with ``border`` pixels on every side set to zero."""
    out = np.array(field, dtype=np.float64, copy=True)
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
    Rows sum to 1. The interval is clamped to ``[0, n_in]``.
    """
    length = float(n_in - start) if length is None else float(length)
    if n_in < 1 or n_out < 1 or length <= 0:
        raise ValueError(f"mcl_video/motion/maps.py: bad block-mean geometry n_in={n_in}, n_out={n_out}, "
                         f"length={length}")
    edges = np.clip(start + np.arange(n_out + 1) * (length / n_out), 0.0, float(n_in))
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    total = overlap.sum(axis=1, keepdims=True)
    if np.any(total <= 0):
        raise ValueError(f"mcl_video/motion/maps.py: a grid cell falls outside the field (n_in={n_in}, "
                         f"start={start}, length={length}); check the crop")
    return overlap / total


def block_means(field: np.ndarray, grid_hw: tuple[int, int],
                box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Area means of ``field`` (``... x H x W``) over a ``gh x gw`` grid -> ``... x gh x gw``.

    ``box = (top, left, height, width)`` in the field's pixels restricts the grid to that region.
    """
    f = np.asarray(field, dtype=np.float64)
    h, w = f.shape[-2:]
    top, left, bh, bw = (0.0, 0.0, float(h), float(w)) if box is None else box
    rows = area_weights(h, int(grid_hw[0]), top, bh)
    cols = area_weights(w, int(grid_hw[1]), left, bw)
    lead = f.shape[:-2]
    out = (f.reshape(-1, w) @ cols.T).reshape(-1, h, cols.shape[0])  # contract the long axis first
    return (rows @ out).reshape(*lead, rows.shape[0], cols.shape[0])


def segment_bounds(n: int, segments: int) -> np.ndarray:
    """Boundaries of ``segments`` equal consecutive parts of ``n`` items: ``(segments + 1,)`` ints."""
    if segments < 1 or n < segments:
        raise ValueError(f"mcl_video/motion/maps.py: cannot split {n} flow frames into {segments} "
                         "segments; sample at least as many frames as the target has time steps")
    return (np.arange(segments + 1) * n) // segments


def segment_sums(derivatives: np.ndarray, segments: int) -> np.ndarray:
    """Sum ``4 x N x ...`` derivatives over ``segments`` consecutive parts -> ``4 x segments x ...``."""
    bounds = segment_bounds(derivatives.shape[1], segments)
    return np.add.reduceat(derivatives, bounds[:-1], axis=1)


def alignment_target(flow_u: np.ndarray, flow_v: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """The motion-alignment target of METHOD §4 for a (cropped, resized) flow clip.

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
    """Zeroed spatial map ``(M_u + M_v) / 2`` of the whole window: ``H x W`` float64.

    ``border``: pixels zeroed on each side; ``None`` scales 8 px at 224 to the flow's size.
    """
    sums = boundary_derivatives(flow_u, flow_v).sum(axis=1)
    return zero_border(boundary_magnitude(sums) / 2.0, resolve_border(border, sums.shape[-2:]))


def window_map(flow_u: np.ndarray, flow_v: np.ndarray, grid_hw: tuple[int, int] = (7, 7),
               border: int | None = None) -> np.ndarray:
    """The window's zeroed spatial map reduced by block means: float64 ``gh x gw`` (frame maps, §1)."""
    return block_means(spatial_map(flow_u, flow_v, border), grid_hw)


def clip_score(flow_u: np.ndarray, flow_v: np.ndarray, border: int | None = None) -> float:
    """Clip score of a window of flow frames: the mean of the zeroed map over the whole frame (§1)."""
    return float(spatial_map(flow_u, flow_v, border).mean())


_COVERAGE_BY_AREA = ((4, 0.9), (8, 0.8), (12, 0.7))


def required_coverage(area_cells: int) -> float:
    """Coverage the crop must reach for a motion box of ``area_cells`` grid cells (§3); 0 = none."""
    for limit, coverage in _COVERAGE_BY_AREA:
        if area_cells <= limit:
            return coverage
    return 0.0


def motion_box(window_map: np.ndarray, frame_hw: tuple[int, int],
               top_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray, float]:
    """Bounding box of the top cells of a grid map and the crop coverage it requires (METHOD §3).

    The top ``floor(top_fraction * cells)`` cells (at least 1; 4 of 49 for 7x7) by value are boxed;
    ties are broken by the first cell in row-major order.

    Returns:
        ``(rows, cols, required_coverage)``: ``rows = [y0, y1]``, ``cols = [x0, x1]`` float64 pixel
        ranges of the box (end exclusive: cell i spans ``[i*H/gh, (i+1)*H/gh)``), and the coverage.
    """
    m = np.asarray(window_map, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"mcl_video/motion/maps.py: motion_box needs a 2-D grid map, got shape {m.shape}")
    gh, gw = m.shape
    k = max(1, int(np.floor(top_fraction * m.size + 1e-9)))
    top = np.argsort(-m.ravel(), kind="stable")[:k]
    r, c = np.divmod(top, gw)
    r0, r1, c0, c1 = r.min(), r.max() + 1, c.min(), c.max() + 1
    h, w = frame_hw
    rows = np.array([r0 * h / gh, r1 * h / gh], dtype=np.float64)
    cols = np.array([c0 * w / gw, c1 * w / gw], dtype=np.float64)
    return rows, cols, required_coverage(int((r1 - r0) * (c1 - c0)))
