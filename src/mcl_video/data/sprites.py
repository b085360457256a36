"""The built-in benchmark's moving sprites: the motion classes' kinematics (positions, angle and scale
over time) and anti-aliased rasterising of the sprite shapes. :mod:`mcl_video.data.synth` composes
them into videos."""

from __future__ import annotations

import math

import numpy as np

MOTION_CLASSES: tuple[str, ...] = (
    "HorizontalOscillation", "VerticalOscillation", "CircularOrbit", "Spin",
    "ScalePulse", "Bounce", "ZigZag", "StraightLine",
)
SHAPES: tuple[str, ...] = ("disc", "square", "triangle", "cross", "ring", "star")
_SUPERSAMPLE = 3   # sub-samples per pixel side for anti-aliased sprite edges
_MARK_FROM = 0.35  # the part of a sprite with local u >= this is shaded, so spinning discs show rotation


# ---------------------------------------------------------------------------------------- kinematics
def draw_motion(name: str, rng: np.random.Generator, cfg) -> dict:  # cfg: a synth.SynthConfig
    """Draw the speed/phase/direction parameters of one motion class (amplitudes in pixels)."""
    s, lo_p, hi_p = cfg.region_side, cfg.period[0], cfg.period[1]
    m: dict = {"class": name, "period": float(rng.uniform(lo_p, hi_p)),
               "phase": float(rng.uniform(0, 2 * math.pi)), "angle0": float(rng.uniform(0, 2 * math.pi))}
    if name in ("HorizontalOscillation", "VerticalOscillation", "CircularOrbit"):
        m["amplitude"] = float(rng.uniform(0.12, 0.25) * s)
    elif name == "ScalePulse":
        m["amplitude"] = float(rng.uniform(0.25, 0.45))  # relative scale change
    elif name == "Bounce":
        m["amplitude"] = float(rng.uniform(0.2, 0.35) * s)  # jump height
    elif name == "ZigZag":
        m["amplitude"] = float(rng.uniform(0.08, 0.15) * s)
        m["speed"] = float(rng.uniform(0.3, 0.5) * s / (cfg.frames - 1))
    elif name == "StraightLine":
        m["speed"] = float(rng.uniform(0.3, 0.5) * s / (cfg.frames - 1))
        m["heading"] = float(rng.uniform(0, 2 * math.pi))
    elif name != "Spin":
        raise ValueError(f"mcl_video.data.synth: unknown motion class {name!r}; use one of {MOTION_CLASSES}")
    if name in ("CircularOrbit", "Spin", "ZigZag"):
        m["direction"] = int(rng.choice([-1, 1]))  # both senses, so a flipped video stays in its class
    if cfg.damping > 0:  # recorded only when on, so default draws stay as they were
        m["damping"] = float(cfg.damping)
    return m


def damping_envelope(m: dict, t: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Energy loss over the video (the benchmark's arrow of time): ``(envelope, travelled)`` at motion
    times ``t``. The envelope ``(1 - d) ** (t / (frames - 1))`` scales amplitudes (1 at the start,
    ``1 - d`` at the end); ``travelled`` is its integral from 0, the distance covered by a motion whose
    speed decays with it (``t`` itself without damping)."""
    d = float(m.get("damping", 0.0))
    if d <= 0:
        return np.ones_like(t), t
    span = max(frames - 1, 1)
    rate = math.log1p(-d) / span  # envelope = exp(rate * t)
    return np.exp(rate * t), np.expm1(rate * t) / rate


def motion_offsets(m: dict, frames: int, clock: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Sprite pose relative to its anchor: ``dx, dy`` (px), ``angle`` (rad), ``scale``; each (T,).

    ``clock``: the motion's time at each frame (default ``0, 1, ..., T-1``); a clock that stands
    still over some frames makes the sprite rest there (see :func:`idle_clock`).
    """
    t = np.arange(frames, dtype=np.float64) if clock is None else np.asarray(clock, np.float64)
    name, p, ph = m["class"], m["period"], m["phase"]
    env, travelled = damping_envelope(m, t, frames)
    w = 2 * math.pi * t / p + ph
    zero = np.zeros(frames)
    dx, dy, angle, scale = zero.copy(), zero.copy(), zero + m["angle0"], zero + 1.0
    if name == "HorizontalOscillation":
        dx = m["amplitude"] * env * np.sin(w)
    elif name == "VerticalOscillation":
        dy = m["amplitude"] * env * np.sin(w)
    elif name == "CircularOrbit":
        w = m["direction"] * 2 * math.pi * t / p + ph
        dx, dy = m["amplitude"] * env * np.cos(w), m["amplitude"] * env * np.sin(w)
    elif name == "Spin":
        angle = m["angle0"] + m["direction"] * 2 * math.pi * travelled / p
    elif name == "ScalePulse":
        scale = 1.0 + m["amplitude"] * env * np.sin(w)
    elif name == "Bounce":  # free fall between bounces on a floor at dy = 0: dy'' = 8 h / P^2 (downwards)
        tau = np.mod(t / p + ph / (2 * math.pi), 1.0)
        dy = -4.0 * m["amplitude"] * env * tau * (1.0 - tau)
    elif name == "ZigZag":  # constant horizontal drift, triangle wave vertically
        s = t / p + ph / (2 * math.pi)
        dx = m["direction"] * m["speed"] * travelled
        dy = m["amplitude"] * env * (4.0 * np.abs(s - np.floor(s + 0.5)) - 1.0)
    elif name == "StraightLine":
        heading = m["heading"]
        dx, dy = m["speed"] * math.cos(heading) * travelled, m["speed"] * math.sin(heading) * travelled
    return {"dx": dx, "dy": dy, "angle": angle, "scale": scale}


# ------------------------------------------------------------------------------------- rasterising
def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test for a unit-radius sprite in its local coordinates ``u, v`` (any equal shapes)."""
    if shape == "disc":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.78
    if shape == "triangle":  # vertices on the unit circle at -90, 30, 150 degrees; inradius 1/2
        edges = [-(u * math.cos(a) + v * math.sin(a)) <= 0.5 for a in np.radians([-90, 30, 150])]
        return edges[0] & edges[1] & edges[2]
    if shape == "cross":
        au, av_ = np.abs(u), np.abs(v)
        return ((au <= 0.3) & (av_ <= 0.95)) | ((av_ <= 0.3) & (au <= 0.95))
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.55**2)
    if shape == "star":  # five points at radius 1, inner radius 0.45
        f = np.mod(np.arctan2(v, u) * 5 / (2 * math.pi), 1.0)
        return np.hypot(u, v) <= 0.45 + 0.55 * np.abs(2 * f - 1)
    raise ValueError(f"mcl_video.data.synth: unknown shape {shape!r}; use one of {SHAPES}")


def sprite_coverage(shape: str, cx, cy, angle, scale, radius: float, height: int, width: int):
    """Anti-aliased coverage of a sprite posed at each of T frames (supersampled within its box).

    ``cx, cy, angle, scale`` are (T,) arrays in frame pixels (pixel ``j`` spans ``[j, j+1)``). Returns
    ``(cover, marked, y0, x0)``: float32 ``(T, B, B)`` coverage of the whole sprite and of its shaded
    part, and the (T,) integer top-left corners of each box in the frame (boxes may leave the frame).
    """
    cx, cy, angle, scale = (np.asarray(a, dtype=np.float64) for a in (cx, cy, angle, scale))
    ss, rs = _SUPERSAMPLE, radius * scale
    box = int(math.ceil(2 * radius * float(scale.max()))) + 2
    x0 = np.floor(cx - box / 2).astype(np.int64)
    y0 = np.floor(cy - box / 2).astype(np.int64)
    sub = (np.arange(box * ss) + 0.5) / ss
    dx = (x0[:, None] + sub[None, :] - cx[:, None])[:, None, :]  # (T, 1, Bs)
    dy = (y0[:, None] + sub[None, :] - cy[:, None])[:, :, None]  # (T, Bs, 1)
    cos, sin = (np.cos(angle) / rs)[:, None, None], (np.sin(angle) / rs)[:, None, None]
    u, v = cos * dx + sin * dy, cos * dy - sin * dx
    inside = shape_mask(shape, u, v)
    marked = inside & (u >= _MARK_FROM)
    t = len(cx)

    def pool(mask: np.ndarray) -> np.ndarray:
        counts = mask.view(np.uint8).reshape(t, box, ss, box, ss).sum(axis=(2, 4), dtype=np.uint8)
        return counts.astype(np.float32) / (ss * ss)

    return pool(inside), pool(marked), y0, x0


def _paint(images: np.ndarray, sprite: dict, cx, cy, angle, scale) -> None:
    """Alpha-composite a sprite (dict: shape, radius, colour, mark_colour) into (T, H, W, 3) in place."""
    t, h, w, _ = images.shape
    cover, marked, y0, x0 = sprite_coverage(sprite["shape"], cx, cy, angle, scale, sprite["radius"], h, w)
    col = np.asarray(sprite["colour"], np.float32)
    mark = np.asarray(sprite["mark_colour"], np.float32)
    paint = (cover - marked)[..., None] * col + marked[..., None] * mark  # premultiplied colour
    box = cover.shape[1]
    for i in range(t):
        ya, xa = max(int(y0[i]), 0), max(int(x0[i]), 0)
        yb, xb = min(int(y0[i]) + box, h), min(int(x0[i]) + box, w)
        if ya >= yb or xa >= xb:
            continue
        sl = (slice(ya - y0[i], yb - y0[i]), slice(xa - x0[i], xb - x0[i]))
        region = images[i, ya:yb, xa:xb]
        region *= 1.0 - cover[i][sl][..., None]
        region += paint[i][sl]

