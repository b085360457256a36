"""Static periphery textures and rest marks of the built-in benchmark's positive control.

A texture *family* is a kind of high-contrast pattern (stripes, checkers, dots, ...); a video's texture
is one instance of its family with its own period and phases, so every video carries a unique static
cue whose family a probe can read from frozen features. Every family is closed under horizontal
flipping (a flipped instance is another draw of the same family), so flip augmentation never changes
the family. :mod:`mcl_video.data.synth` paints the texture outside the actor's region
(``SynthConfig.periphery_textures``).

A *rest mark* is a small video-specific binary pattern shown only while the actor rests.
"""

from __future__ import annotations

import math

import numpy as np

TEXTURE_FAMILIES: tuple[str, ...] = ("hstripes", "vstripes", "checker", "dots", "crosshatch", "blocks")
TEXTURE_LEVELS = (0.1, 0.9)   # dark and light level of every texture (high contrast)
TEXTURE_PERIOD = (4.0, 9.0)   # pattern period in pixels, drawn per video
MARK_CELLS = 3                # a rest mark is MARK_CELLS x MARK_CELLS cells
MARK_CELL_PX = 2              # of this many pixels each


def draw_texture(rng: np.random.Generator, family: int) -> dict:
    """The parameters of one instance of texture family ``family`` (JSON-able)."""
    if not 0 <= family < len(TEXTURE_FAMILIES):
        raise ValueError(f"mcl_video.data.textures: family must be 0..{len(TEXTURE_FAMILIES) - 1}, "
                         f"got {family}")
    return {"family": int(family), "name": TEXTURE_FAMILIES[family],
            "period": round(float(rng.uniform(*TEXTURE_PERIOD)), 4),
            "phase": [round(float(p), 4) for p in rng.uniform(0, 2 * math.pi, 2)],
            "seed": int(rng.integers(2**31))}


def render_texture(texture: dict, height: int, width: int) -> np.ndarray:
    """The texture as float32 ``(height, width)`` grey levels in ``TEXTURE_LEVELS``' range.

    Patterns are evaluated at pixel centres and sharpened with ``tanh`` (edges about one pixel wide).
    """
    y, x = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    p, (px, py), name = texture["period"], texture["phase"], texture["name"]
    k = 2 * math.pi / p
    if name == "hstripes":
        s = np.sin(k * y + py)
    elif name == "vstripes":
        s = np.sin(k * x + px)
    elif name == "checker":
        s = np.sin(k * x + px) * np.sin(k * y + py) * 2.0
    elif name == "dots":  # light spots on a dark ground
        s = (np.cos(k * x + px) + np.cos(k * y + py)) - 1.0
    elif name == "crosshatch":  # both diagonals, so the family is flip-closed
        d = k / math.sqrt(2)
        s = np.maximum(np.sin(d * (x + y) + px), np.sin(d * (x - y) + py)) * 2.0 - 1.0
    elif name == "blocks":  # random binary blocks of the period's size
        cell = max(1, int(round(p / 2)))
        rng = np.random.default_rng(texture["seed"])
        grid = rng.random((height // cell + 2, width // cell + 2)) < 0.5
        oy, ox = int(py / (2 * math.pi) * cell), int(px / (2 * math.pi) * cell)
        yi, xi = ((y - 0.5).astype(int) + oy) // cell, ((x - 0.5).astype(int) + ox) // cell
        s = np.where(grid[yi, xi], 1.0, -1.0)
    else:
        raise ValueError(f"mcl_video.data.textures: unknown texture {name!r}; use one of {TEXTURE_FAMILIES}")
    lo, hi = TEXTURE_LEVELS
    return (lo + (hi - lo) * 0.5 * (1.0 + np.tanh(3.0 * s))).astype(np.float32)


def draw_mark(rng: np.random.Generator, region: tuple[int, int, int]) -> dict:
    """A rest mark inside the square ``region = (top, left, side)`` (frame pixels): a random binary
    ``MARK_CELLS``-square pattern (never all one level) at one of the region's four corners, one
    pixel in from its edge. Returns ``{"box": [top, left, h, w], "pattern": rows of 0/1}``."""
    top, left, side = region
    n = MARK_CELLS * MARK_CELL_PX
    pattern = rng.random((MARK_CELLS, MARK_CELLS)) < 0.5
    while pattern.all() or not pattern.any():
        pattern = rng.random((MARK_CELLS, MARK_CELLS)) < 0.5
    corner = int(rng.integers(4))
    t = top + 1 if corner in (0, 1) else top + side - 1 - n
    lft = left + 1 if corner in (0, 2) else left + side - 1 - n
    return {"box": [int(t), int(lft), n, n], "pattern": pattern.astype(int).tolist()}


def render_mark(mark: dict) -> np.ndarray:
    """The mark's pixels: float32 ``(h, w)`` in ``TEXTURE_LEVELS``."""
    lo, hi = TEXTURE_LEVELS
    cells = np.where(np.asarray(mark["pattern"], bool), hi, lo).astype(np.float32)
    return np.kron(cells, np.ones((MARK_CELL_PX, MARK_CELL_PX), np.float32))
