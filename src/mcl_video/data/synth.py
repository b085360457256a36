"""The built-in motion benchmark: synthetic videos whose classes differ ONLY by motion.

Each video shows one moving sprite (random shape, colour, size, speed and phase) over a random static
textured background with a few static distractor sprites, filmed by a slowly panning camera (the scene
is rendered once on a larger canvas and a moving window is cropped). The class is the sprite's motion;
every class is closed under horizontal flipping (directional classes draw both directions), so flip
augmentation never changes a label. Appearance (the ``shape`` label, colours, background) is drawn
independently of the class, so a representation that scores well must have captured motion.

Coordinates: ``x`` is the column, ``y`` the row (downwards), in pixels. Scene (canvas) coordinates are
fixed to the background; a frame shows the canvas window whose top-left corner is ``camera[t]``, so the
sprite appears at ``scene - camera``.

Regime knobs (defaults leave the benchmark unchanged): ``moving_region`` < 1 confines the actor to a
square region of that fraction of the frame *area* (sprite size and motion amplitudes scale with the
region's side, the region's place is random): a larger frame with a small moving actor.
``distractor_scale`` sizes the static distractors relative to the actor (> 1: more salient than it).
The region is fixed in the scene (the camera pans over it). ``pan_speed`` moves the camera.
``idle_fraction`` > 0 makes the sprite rest (no motion at all) for that fraction of each video's
frames, in ``idle_segments`` stretches at random places, so clips of one video differ in motion.
``damping`` > 0 gives the videos an arrow of time: the sprite loses that share of its motion
amplitude (oscillations, orbit, pulse, bounce height) or speed (spin, drift, straight line) by the last
frame, exponentially in the motion's time. Without it every class is closed under time reversal (each
reversed trajectory is another draw of its class, and the camera's heading is uniform), so no
function of the clips can tell their order.

Everything is deterministic for a seed: video ``i`` (class-major, train before test) draws all of its
parameters from ``numpy.random.default_rng([seed, i])``, so the number of workers never changes results;
the region's place and the idle stretches come from a separate stream ``default_rng([seed, i, 2])``, so
turning them on leaves every other draw unchanged.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import cv2
import numpy as np

from mcl_video.data.sprites import (
    MOTION_CLASSES,
    SHAPES,
    _paint,
    draw_motion,
    motion_offsets,
)
from mcl_video.data.writer import write_mp4
from mcl_video.progress import progress as progress_bar

_GROUP = 4         # clips per UCF101-style group (gNN); train and test never share a group


@dataclass
class SynthConfig:
    """Options of :func:`make_benchmark` (and of ``mcl synth``). Ranges are ``(min, max)``, inclusive."""

    # defaults: calibrated with benchmarks/calibrate.py (BENCHMARKS.md "Calibration")
    classes: int = 5
    train_per_class: int = 96
    test_per_class: int = 32
    frames: int = 32
    size: int = 32
    seed: int = 0
    sprite_size: tuple[float, float] = (0.25, 0.4)  # sprite diameter as a fraction of the frame side
    background_contrast: float = 0.15               # 0 = flat background, 1 = full-range texture
    distractors: tuple[int, int] = (0, 1)           # static sprites of the same kinds
    pan_speed: float = 0.3                          # maximum camera speed, px/frame
    period: tuple[float, float] = (6.0, 10.0)       # frames per cycle of periodic motions
    grayscale: bool = True                          # remove colour cues
    moving_region: float = 1.0                      # fraction of the frame area the actor moves in
    distractor_scale: float = 1.0                   # distractor size relative to the actor's
    idle_fraction: float = 0.0                      # fraction of frames in which the sprite rests
    idle_segments: int = 2                          # stretches the rest is split into
    damping: float = 0.0                            # share of motion amplitude/speed lost by the end
    fps: int = 25
    crf: int = 18
    workers: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))

    def __post_init__(self) -> None:
        self.sprite_size = tuple(float(v) for v in self.sprite_size)
        self.distractors = tuple(int(v) for v in self.distractors)
        self.period = tuple(float(v) for v in self.period)
        checks = [
            (1 <= self.classes <= len(MOTION_CLASSES), f"classes must be 1..{len(MOTION_CLASSES)}"),
            (self.train_per_class >= 0 and self.test_per_class >= 0, "per-class counts must be >= 0"),
            (self.frames >= 2, "frames must be >= 2"),
            (self.size >= 16 and self.size % 2 == 0, "size must be even and >= 16 (yuv420p)"),
            (0 < self.sprite_size[0] <= self.sprite_size[1] <= 0.8, "sprite_size needs 0 < MIN <= MAX <= .8"),
            (0 <= self.background_contrast <= 1, "background_contrast must be in [0, 1]"),
            (0 <= self.distractors[0] <= self.distractors[1], "distractors needs 0 <= MIN <= MAX"),
            (self.pan_speed >= 0, "pan_speed must be >= 0"),
            (2 <= self.period[0] <= self.period[1], "period needs 2 <= MIN <= MAX (frames)"),
            (0 < self.moving_region <= 1, "moving_region must be in (0, 1]"),
            (self.distractor_scale > 0, "distractor_scale must be > 0"),
            (0 <= self.idle_fraction <= 0.9, "idle_fraction must be in [0, 0.9]"),
            (self.idle_segments >= 1, "idle_segments must be >= 1"),
            (0 <= self.damping <= 0.9, "damping must be in [0, 0.9]"),
            (0 <= self.crf <= 51 and self.fps > 0 and self.workers >= 1, "crf 0..51, fps > 0, workers >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"mcl_video.data.synth.SynthConfig: {message} (fix the option)")

    @property
    def region_side(self) -> int:
        """Side of the square the actor moves in: ``round(sqrt(moving_region) * size)`` pixels."""
        return max(4, int(round(math.sqrt(self.moving_region) * self.size)))

    def recorded(self) -> dict:
        """The options that determine the content (everything but ``workers``), for meta.json."""
        items = asdict(self).items()
        recorded = {k: (list(v) if isinstance(v, tuple) else v) for k, v in items if k != "workers"}
        if not self.damping:  # a later knob: left out when off, so earlier benchmarks still match
            del recorded["damping"]
        return recorded


# ------------------------------------------------------------------------------------------ scenes
def _contrasting_colour(rng: np.random.Generator, background_level: float, grayscale: bool) -> dict:
    """A sprite colour whose brightness differs from the background's by 0.25-0.4, and its shade."""
    sign = rng.choice([-1.0, 1.0])
    level = background_level + sign * rng.uniform(0.25, 0.4)
    if not 0.05 <= level <= 0.95:
        level = background_level - (level - background_level)
    rgb = np.full(3, level) if grayscale else np.clip(rng.random(3) + level - 0.5, 0.0, 1.0)
    rgb = rgb + (level - rgb.mean())  # keep the drawn brightness after clipping
    rgb = np.clip(rgb, 0.0, 1.0)
    away = 0.2 * np.sign(level - background_level)  # shade away from the background where there is room
    mark = np.clip(rgb + (away if 0.02 <= level + away <= 0.98 else -away), 0.0, 1.0)
    return {"colour": [round(float(c), 4) for c in rgb], "mark_colour": [round(float(c), 4) for c in mark]}


def _sprite(rng: np.random.Generator, cfg: SynthConfig, background_level: float, scale: float = 1.0) -> dict:
    return {"shape": str(rng.choice(SHAPES)),
            "radius": float(rng.uniform(*cfg.sprite_size) * cfg.region_side / 2 * scale),
            **_contrasting_colour(rng, background_level, cfg.grayscale)}


def _fit_motion(motion: dict, frames: int, cam: np.ndarray, radius: float, size: int,
                clock: np.ndarray | None = None) -> dict:
    """Shrink amplitude/speed (never below a quarter) so the sprite's path fits the panning window."""
    off = motion_offsets(motion, frames, clock)
    room = size - 2 * radius * float(off["scale"].max())
    spans = [np.ptp(off[d]) + np.ptp(cam[:, k]) for k, d in enumerate(("dx", "dy"))]
    if motion["class"] == "ScalePulse" or max(spans) <= room:
        return motion
    factor = max(0.25, min((room - np.ptp(cam[:, k])) / max(np.ptp(off[d]), 1e-9)
                           for k, d in enumerate(("dx", "dy")) if spans[k] > room))
    return {k: (v * factor if k in ("amplitude", "speed") else v) for k, v in motion.items()}


def _place_anchor(rng, off: dict, cam: np.ndarray, radius: float, size: int) -> np.ndarray:
    """Scene anchor keeping the sprite inside the moving window at every frame (centred if impossible)."""
    r = radius * off["scale"]
    anchor = np.zeros(2)
    for k, d in enumerate((off["dx"], off["dy"])):
        lo, hi = np.max(r - d + cam[:, k]), np.min(size - r - d + cam[:, k])
        anchor[k] = rng.uniform(lo, hi) if lo <= hi else (lo + hi) / 2
    return anchor


def idle_clock(frames: int, idle: int, segments: int, rng: np.random.Generator) -> np.ndarray:
    """Motion time per frame with ``idle`` resting frames in up to ``segments`` stretches: (T,) floats.

    The clock advances by one per moving frame and stands still over a resting stretch (a frame at
    which the clock did not advance since the previous one shows the sprite exactly where it was).
    """
    segments = max(1, min(segments, idle, frames - idle))
    if idle <= 0:
        return np.arange(frames, dtype=np.float64)
    cuts = np.sort(rng.choice(np.arange(1, idle), segments - 1, replace=False)) if segments > 1 else []
    rest = np.diff(np.r_[0, cuts, idle]).astype(int)  # lengths of the resting stretches
    # moving frames before each stretch (distinct, so stretches are apart)
    spots = np.sort(rng.choice(np.arange(frames - idle + 1), segments, replace=False))
    step = np.ones(frames)
    for k, (spot, length) in enumerate(zip(spots, rest)):
        first = spot + int(rest[:k].sum())  # frame index of the stretch's first resting frame
        step[first : first + length] = 0.0
    step[0] = 0.0
    return np.cumsum(step)


def _regime(cfg: SynthConfig, index: int, cam: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """The actor's region and the motion clock, from a separate random stream.

    The region (``moving_region < 1``) is a square of the scene, placed so that the panning window shows
    all of it at every frame (centred on the camera's path if that is impossible); its top-left scene
    corner is returned (None: the actor uses the whole moving window, the default).
    """
    rng = np.random.default_rng([cfg.seed, index, 2])
    corner = None
    if cfg.region_side < cfg.size:
        lo, hi = cam.max(axis=0), cam.min(axis=0) + cfg.size - cfg.region_side
        corner = np.where(lo <= hi, rng.uniform(0.0, 1.0, 2) * (hi - lo) + lo, (lo + hi) / 2)
    idle = int(round(cfg.idle_fraction * cfg.frames))
    return corner, idle_clock(cfg.frames, idle, cfg.idle_segments, rng)


def draw_video(cfg: SynthConfig, index: int, class_index: int) -> dict:
    """All random choices of video ``index`` (JSON-able): motion, sprite, distractors, camera, pose."""
    rng = np.random.default_rng([cfg.seed, index])
    name = MOTION_CLASSES[class_index]
    motion = draw_motion(name, rng, cfg)
    base = np.full(3, rng.uniform(0.35, 0.65)) if cfg.grayscale else rng.uniform(0.35, 0.65, 3)
    level = float(base.mean())
    sprite = _sprite(rng, cfg, level)
    margin = int(math.ceil(cfg.pan_speed * (cfg.frames - 1) / 2)) + 1
    heading, speed = rng.uniform(0, 2 * math.pi), rng.uniform(0, cfg.pan_speed)
    t = np.arange(cfg.frames) - (cfg.frames - 1) / 2
    cam = margin + t[:, None] * (speed * np.array([math.cos(heading), math.sin(heading)]))[None, :]
    corner, clock = _regime(cfg, index, cam)
    side = cfg.region_side
    window = cam if corner is None else np.zeros_like(cam)  # a region is fixed in the scene
    motion = _fit_motion(motion, cfg.frames, window, sprite["radius"], side, clock)
    off = motion_offsets(motion, cfg.frames, clock)
    anchor = _place_anchor(rng, off, window, sprite["radius"], side) + (0.0 if corner is None else corner)
    distractors = []
    for _ in range(int(rng.integers(cfg.distractors[0], cfg.distractors[1] + 1))):
        d = _sprite(rng, cfg, level, cfg.distractor_scale)
        x, y = rng.uniform(margin, margin + cfg.size, 2)
        d.update(x=float(x), y=float(y), angle=float(rng.uniform(0, 2 * math.pi)))
        distractors.append(d)

    def r3(a) -> list[float]:
        return [round(float(v), 3) for v in a]

    return {
        "index": index, "motion": name, "label": class_index + 1, "shape": sprite["shape"],
        "params": {"motion": motion, "sprite": sprite, "anchor": r3(anchor),
                   "background": [round(float(b), 4) for b in base],
                   "canvas": cfg.size + 2 * margin, "pan_velocity": r3(cam[1] - cam[0]),
                   "distractors": distractors, "region": None if corner is None else [*r3(corner), side],
                   "resting": [int(i) for i in np.flatnonzero(np.diff(clock, prepend=-1.0) == 0)]},
        "trajectory": {"x": r3(anchor[0] + off["dx"]), "y": r3(anchor[1] + off["dy"]),
                       "angle": r3(off["angle"]), "scale": r3(off["scale"]),
                       "camera_x": r3(cam[:, 0]), "camera_y": r3(cam[:, 1])},
    }


def _background(rng: np.random.Generator, side: int, base, contrast: float, grayscale: bool) -> np.ndarray:
    """Smooth random texture (two noise octaves + blobs) around ``base``: float32 (side, side, 3)."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    layers = []
    for _ in range(1 if grayscale else 3):
        octaves = [(rng.random((g, g)).astype(np.float32), a) for g, a in ((4, 1.0), (9, 0.5))]
        n = sum(a * cv2.resize(g, (side, side), interpolation=cv2.INTER_CUBIC) for g, a in octaves)
        for _ in range(3):
            bx, by, sigma = rng.uniform(0, side, 2).tolist() + [rng.uniform(0.05, 0.15) * side]
            n = n + rng.choice([-1.0, 1.0]) * np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * sigma**2))
        n = n - n.mean()
        layers.append(0.5 * n / max(float(np.abs(n).max()), 1e-6))
    noise = np.stack(layers * 3 if grayscale else layers, axis=-1)
    return np.clip(np.asarray(base, np.float32) + contrast * noise, 0.0, 1.0).astype(np.float32)


def render_video(cfg: SynthConfig, video: dict) -> np.ndarray:
    """Render a video drawn by :func:`draw_video`: uint8 ``(T, H, W, 3)`` RGB frames."""
    p, tr = video["params"], video["trajectory"]
    rng = np.random.default_rng([cfg.seed, video["index"], 1])  # texture noise, separate from the draws
    canvas = _background(rng, p["canvas"], p["background"], cfg.background_contrast, cfg.grayscale)[None]
    for d in p["distractors"]:
        _paint(canvas, d, [d["x"]], [d["y"]], [d["angle"]], [1.0])
    cam_x, cam_y = np.asarray(tr["camera_x"]), np.asarray(tr["camera_y"])
    frames = np.stack([
        cv2.warpAffine(canvas[0], np.float32([[1, 0, -cx], [0, 1, -cy]]), (cfg.size, cfg.size),
                       flags=cv2.INTER_LINEAR)
        for cx, cy in zip(cam_x, cam_y)
    ])
    x, y = np.asarray(tr["x"]) - cam_x, np.asarray(tr["y"]) - cam_y
    _paint(frames, p["sprite"], x, y, tr["angle"], tr["scale"])
    return np.round(np.clip(frames, 0.0, 1.0) * 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------ writing
def _video_name(name: str, group: int, clip: int) -> str:
    return f"{name}/v_{name}_g{group:02d}_c{clip:02d}.mp4"


def _jobs(cfg: SynthConfig) -> list[tuple[int, int, str, str]]:
    """(index, class index, subset, relative path) for every video, class-major, train before test."""
    jobs, index = [], 0
    test_g0 = -(-cfg.train_per_class // _GROUP) + 1
    for k in range(cfg.classes):
        name = MOTION_CLASSES[k]
        for subset, count, g0 in (("train", cfg.train_per_class, 1), ("test", cfg.test_per_class, test_g0)):
            for i in range(count):
                jobs.append((index, k, subset, _video_name(name, g0 + i // _GROUP, i % _GROUP + 1)))
                index += 1
    return jobs


def _make_one(args: tuple[SynthConfig, Path, tuple]) -> dict:
    cfg, video_dir, (index, k, subset, rel) = args
    video = draw_video(cfg, index, k)
    write_mp4(video_dir / rel, render_video(cfg, video), cfg.fps, cfg.crf)
    return {"path": rel, "subset": subset, **video}


def _contact_sheet(cfg: SynthConfig, videos: list[dict], path: Path, columns: int = 6) -> None:
    """A PNG with a labelled row per class: evenly spaced frames of the class's first video."""
    label_w, rows = 190, []
    for k in range(cfg.classes):
        video = next((v for v in videos if v["label"] == k + 1), None)
        if video is None:
            continue
        frames = render_video(cfg, video)
        picks = np.linspace(0, cfg.frames - 1, min(columns, cfg.frames)).round().astype(int)
        strip = np.concatenate([np.pad(frames[i], ((2, 2), (2, 2), (0, 0)), constant_values=255)
                                for i in picks], axis=1)
        label = np.full((strip.shape[0], label_w, 3), 255, np.uint8)
        for line, text in enumerate((MOTION_CLASSES[k], f"shape: {video['shape']}")):
            cv2.putText(label, text, (4, 16 + 16 * line), cv2.FONT_HERSHEY_SIMPLEX, 0.42, 0, 1, cv2.LINE_AA)
        rows.append(np.concatenate([label, strip], axis=1))
    if rows:
        cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))


def make_benchmark(out_dir: str | Path, overwrite: bool = False, progress: bool = False, **options) -> Path:
    """Write the motion benchmark to ``out_dir`` and return it. Options are :class:`SynthConfig` fields.

    Layout: ``videos/<Class>/v_<Class>_gNN_cNN.mp4``; ``annotations/classInd.txt``, ``trainlist01.txt``,
    ``testlist01.txt`` (UCF101 format); ``meta.json`` (config, classes, per-video draws and trajectories);
    ``contact_sheet.png``.
    """
    known = {f.name for f in fields(SynthConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"mcl_video.data.synth.make_benchmark: unknown option(s) {unknown}; "
                        f"use {sorted(known)}")
    cfg = SynthConfig(**options)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty: choose a new folder "
                                  "or pass overwrite=True (--overwrite)")
        for sub in ("videos", "annotations"):
            shutil.rmtree(out / sub, ignore_errors=True)
    classes = list(MOTION_CLASSES[: cfg.classes])
    for name in classes:
        (out / "videos" / name).mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    tasks = [(cfg, out / "videos", job) for job in _jobs(cfg)]
    if cfg.workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(cfg.workers) as pool:
            results = pool.map(_make_one, tasks, chunksize=max(1, len(tasks) // (8 * cfg.workers)))
            videos = _collect(results, len(tasks), progress)
    else:
        videos = _collect(map(_make_one, tasks), len(tasks), progress)
    ann = out / "annotations"
    ann.joinpath("classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    ann.joinpath("trainlist01.txt").write_text(
        "".join(f"{v['path']} {v['label']}\n" for v in videos if v["subset"] == "train"))
    ann.joinpath("testlist01.txt").write_text(
        "".join(f"{v['path']}\n" for v in videos if v["subset"] == "test"))
    meta = {"format": "mcl-synth-1", "config": cfg.recorded(), "classes": classes, "shapes": list(SHAPES),
            "videos": videos}
    (out / "meta.json").write_text(json.dumps(meta, separators=(",", ":")) + "\n")
    _contact_sheet(cfg, videos, out / "contact_sheet.png")
    return out


def _collect(results, total: int, progress: bool) -> list[dict]:
    if not progress:
        return list(results)
    return list(progress_bar(results, total=total, desc="synth", unit="video"))
