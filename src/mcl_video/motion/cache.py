"""The on-disk motion cache: what training needs from the flow, computed once by ``prepare``.

Layout of a cache folder (format ``mcl-motion-cache``, version 3)::

    meta.json                 settings (flow backend + options, clip_len, stride, frame window, grid,
                              border, resize, stored representation), the border rule and package
                              versions
    videos/<video_id>.npz     one npz per video (written to a temporary name, then ``os.replace``d: a
                              killed run never leaves a partial entry)
    failed/<video_id>.json    {"path", "reason"} for each video that could not be prepared (removed
                              when a later run prepares it)

A video id is the video's path relative to the prepared root, POSIX separators, without extension
(``Basketball/v_Basketball_g01_c01``).

Border: ``border="auto"`` (default) zeroes ``round(8 * short_side / 224)`` px of the flow's own
resolution (8 px at 224, 1 px at 32); an integer is used as is. Each entry's ``info`` records the pixels
it used (``border``). Older caches are refused with the command that rebuilds them: version 1 zeroed a
fixed 8 px at any resolution, version 2 stored 8-bit fields and float32 maps uncompressed.

Entries are validated when read: a file that does not load (zip CRC, truncation) or whose arrays do not
have the shapes, dtypes and finite non-negative values below raises :class:`DataError` naming it;
``prepare`` re-prepares such entries on a rerun and ``mcl inspect`` lists them.

Per video (``N`` raw frames, ``F = N - 1`` flow frames):

- ``frame_maps`` ``N x 7 x 7``: the zeroed map ``(M_u + M_v) / 2`` of the window of ``frame_window``
  flow frames ``[t - w/2, t + w/2)`` around frame t, truncated at the video's ends; stored as float16
  (relative rounding below 1e-3: they only rank crop positions), read as float32;
- ``clip_scores`` float32 ``(num_starts,)``, ``num_starts = max(1, N - clip_len * stride + 1)``: the
  clip score of flow frames ``[s, s + clip_len * stride)`` (truncated at the end);
- the fields ``K x F x h x w`` (value = q * scale): the motion needed for the alignment target of any
  crop, at a reduced resolution ``h x w`` (short side ``field_short``, ``info["field_hw"]``), integers
  ``-31..31`` (6 bits) with one float32 ``scales`` ``K x F`` per field and flow frame; stored as
  ``fields_z`` + ``fields_offsets``, each flow frame deflated on its own (``fields.py``), so a sample
  inflates only the flow frames it uses.
  Representation ``derivatives`` (default, K=4): the Prewitt derivatives ``[Kx*u, Ky*u, Kx*v, Ky*v]``
  of the full-resolution flow, area-averaged. Sums over frames are linear, so the per-segment sums are
  exact up to the averaging; the approximations are that the magnitude is taken after averaging within
  a reduced pixel, and the 6-bit rounding. Representation ``flow`` (K=2): the area-averaged flow, whose
  derivatives are taken at read time (blurs boundaries more; kept for comparison).

BENCHMARKS.md (motion preparation) gives the bytes per frame, the correlation of cached with exact
targets and the read time that chose 6 bits, float16 maps and per-frame deflate.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import scipy

from mcl_video import __version__
from mcl_video.atomic import atomic_path
from mcl_video.data.discovery import video_id
from mcl_video.errors import DataError
from mcl_video.motion.fields import (
    FIELD_LEVELS,  # noqa: F401 (re-exported with quantise: part of the format)
    inflate_fields,
    pack_fields,
    packing_problem,
    quantise,  # noqa: F401
)
from mcl_video.motion.maps import (
    block_means,
    boundary_derivatives,
    boundary_magnitude,
    segment_sums,
)

FORMAT = "mcl-motion-cache"
VERSION = 3
MAP_MAX = float(np.finfo(np.float16).max)  # frame maps are stored as float16 (never reached: flow is clipped)
ENTRY_ARRAYS = ("frame_maps", "clip_scores", "scales", "fields_z", "fields_offsets")
REPRESENTATIONS = {"derivatives": 4, "flow": 2}
_OLD_VERSIONS = {1: "v1 zeroed a fixed 8 px border at any resolution",
                 2: "v2 stored 8-bit fields uncompressed, over twice the bytes"}
BORDER_RULE = "auto = round(8 * short_side / 224) px of the flow's resolution"


class StaleCacheError(DataError, ValueError):
    """A cache folder written by another cache format version (also a ValueError for older callers)."""


@dataclass
class CacheSettings:
    """Everything that determines a cache's content; stored in ``meta.json``."""

    flow_backend: str = "dis"
    flow_options: dict = field(default_factory=dict)
    clip_len: int = 16
    stride: int = 2
    frame_window: int = 8
    grid: tuple[int, int] = (7, 7)
    border: int | str = "auto"  # pixels, or "auto": 8 px at 224-px scale of the flow's resolution
    resize_short: int | None = 240
    representation: str = "derivatives"
    field_short: int = 24

    def __post_init__(self) -> None:
        self.grid = tuple(int(g) for g in self.grid)
        if self.representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of "
                             f"{sorted(REPRESENTATIONS)}, got {self.representation!r}")
        if self.border != "auto":
            if isinstance(self.border, bool) or not isinstance(self.border, (int, str)) or \
                    not str(self.border).isdigit():
                raise ValueError(f"border must be 'auto' or pixels >= 0, got "
                                 f"{self.border!r}")
            self.border = int(self.border)
        if self.clip_len < 1 or self.stride < 1 or self.frame_window < 1 or self.field_short < 2:
            raise ValueError(f"invalid settings {self}")

    @property
    def span(self) -> int:
        """Raw frames (and flow frames) one clip covers: ``clip_len * stride``."""
        return self.clip_len * self.stride

    def to_json(self) -> dict:
        d = asdict(self)
        d["grid"] = list(self.grid)
        return d


def num_starts(num_frames: int, span: int) -> int:
    """Possible clip starts of a video of ``num_frames`` raw frames (at least 1)."""
    return max(1, int(num_frames) - int(span) + 1)


def package_versions() -> dict:
    return {"mcl_video": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "opencv": cv2.__version__}


def init_cache(root: str | os.PathLike, settings: CacheSettings) -> dict:
    """Create ``root/meta.json`` (or check that an existing cache has the same settings)."""
    root = Path(root)
    meta_path = root / "meta.json"
    wanted = {"format": FORMAT, "version": VERSION, "settings": settings.to_json()}
    if meta_path.exists():
        meta = read_meta(meta_path)
        old = {k: meta.get(k) for k in wanted}
        if old != wanted:
            raise ValueError(f"{meta_path} was built with other settings "
                             f"({old['settings']}) than requested ({wanted['settings']}); use another "
                             "--out folder or the same options")
        return meta
    root.mkdir(parents=True, exist_ok=True)
    meta = dict(wanted, border_rule=BORDER_RULE, versions=package_versions())
    _atomic_write(meta_path, json.dumps(meta, indent=2).encode())
    return meta


def read_meta(meta_path: Path) -> dict:
    """``meta.json`` of a cache; another format or version is a :class:`StaleCacheError`."""
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"{meta_path} is unreadable ({err}); remove the folder and rebuild it with "
                        f"`mcl prepare VIDEO_ROOT --out {meta_path.parent}`") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise StaleCacheError(
            f"{meta_path.parent} is a motion cache of format {meta.get('format')} v{meta.get('version')} "
            f"({_OLD_VERSIONS.get(meta.get('version'), 'unknown')}); this version reads v{VERSION}: remove "
            f"the folder and rebuild it with `mcl prepare VIDEO_ROOT --out {meta_path.parent}`")
    return meta


def _atomic_write(path: Path, data: bytes) -> None:
    with atomic_path(path, "free space and rerun `mcl prepare` (finished videos are kept)") as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def entry_path(root: str | os.PathLike, video_id: str) -> Path:
    return Path(root) / "videos" / f"{video_id}.npz"


def failure_path(root: str | os.PathLike, video_id: str) -> Path:
    return Path(root) / "failed" / f"{video_id}.json"


def write_entry(root: str | os.PathLike, video_id: str, arrays: dict[str, np.ndarray], info: dict) -> Path:
    """Write one video's entry atomically; clears an old failure record of the video.

    ``arrays``: ``frame_maps``, ``clip_scores``, ``scales`` and the int8 ``fields`` (``K x F x h x w``),
    stored packed (module docstring).
    """
    arrays = dict(arrays, frame_maps=np.minimum(arrays["frame_maps"], MAP_MAX).astype(np.float16))
    fields = arrays.pop("fields")
    arrays["fields_z"], arrays["fields_offsets"] = pack_fields(fields)
    info = dict(info, field_hw=[int(x) for x in fields.shape[2:]])
    buf = io.BytesIO()
    np.savez(buf, info=np.array(json.dumps(info)), **arrays)
    path = entry_path(root, video_id)
    _atomic_write(path, buf.getvalue())
    failure_path(root, video_id).unlink(missing_ok=True)
    return path


def write_failure(root: str | os.PathLike, video_id: str, path: str, reason: str) -> None:
    _atomic_write(failure_path(root, video_id), json.dumps({"path": str(path), "reason": reason}).encode())


def _load_entry(path: Path) -> tuple[dict[str, np.ndarray], dict] | str:
    """Load one entry file -> (arrays, info), or the reason it does not load (zip CRC, truncation)."""
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in ENTRY_ARRAYS}
            info = json.loads(str(z["info"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        return f"does not load: {type(err).__name__}: {err}"
    return arrays, info


def entry_problem(arrays: dict[str, np.ndarray], info: dict, settings: CacheSettings) -> str | None:
    """Why an entry's content is not what ``settings`` write, or None when it is (structural check)."""
    try:
        n = int(info["num_frames"])
        representation, border = info["representation"], info["border"]
        h, w = (int(x) for x in info["frame_hw"])
        fh, fw = (int(x) for x in info["field_hw"])
    except (KeyError, TypeError, ValueError) as err:
        return f"info lacks {err}"
    k, f = REPRESENTATIONS[settings.representation], max(n - 1, 0)
    want = {"frame_maps": (np.float16, (n, *settings.grid)),
            "clip_scores": (np.float32, (num_starts(n, settings.span),)),
            "scales": (np.float32, (k, f))}
    if min(n, h, w, fh, fw) < 1 or representation != settings.representation or int(border) < 0:
        return f"info {info} does not match the cache settings"
    for name, (dtype, shape) in want.items():
        a = arrays[name]
        if a.dtype != dtype or a.shape != shape:
            return f"{name} is {a.dtype} {a.shape}, expected {np.dtype(dtype)} {shape}"
        if not np.all(np.isfinite(a)) or np.any(a < 0):
            return f"{name} holds non-finite or negative values"
    problem = packing_problem(arrays["fields_z"], arrays["fields_offsets"], f)
    if problem is not None:
        return problem
    return None


class VideoMotion:
    """One video's motion data (see the module docstring for the arrays)."""

    def __init__(self, arrays: dict[str, np.ndarray], info: dict,
                 source: str | os.PathLike = "entry") -> None:
        self.num_frames: int = int(info["num_frames"])
        self.frame_hw: tuple[int, int] = tuple(info["frame_hw"])
        self.representation: str = info["representation"]
        self.frame_maps: np.ndarray = np.asarray(arrays["frame_maps"], dtype=np.float32)
        self.clip_scores: np.ndarray = arrays["clip_scores"]
        self.scales: np.ndarray = arrays["scales"]
        self.source = str(source)
        if "fields" in arrays:  # unpacked, as computed by prepare
            self._blob, self._offsets = pack_fields(arrays["fields"])
            self.field_hw: tuple[int, int] = tuple(arrays["fields"].shape[2:])
        else:
            self._blob, self._offsets = arrays["fields_z"], arrays["fields_offsets"]
            self.field_hw = tuple(int(x) for x in info["field_hw"])

    @property
    def num_flow(self) -> int:
        return self.scales.shape[1]

    def field_frames(self, flow_indices) -> np.ndarray:
        """int8 ``K x len(flow_indices) x h x w``: the stored fields of those flow frames (inflated)."""
        shape = (self.scales.shape[0], *self.field_hw)
        return inflate_fields(self._blob, self._offsets, flow_indices, shape, self.source)

    @property
    def fields(self) -> np.ndarray:
        """int8 ``K x F x h x w``: every stored field (all flow frames inflated)."""
        return self.field_frames(np.arange(self.num_flow))

    def alignment_target(self, frame_indices, crop: tuple[float, float, float, float],
                         grid: tuple[int, int, int]) -> np.ndarray:
        """The MAL target for the flow at ``frame_indices`` inside ``crop``: float32 ``T' x H' x W'``.

        Args:
            frame_indices: raw frame indices of the clip (flow frame i is i -> i+1; indices past the
                last flow frame are clamped to it).
            crop: ``(top, left, height, width)`` in source pixels (no flip; the caller flips).
            grid: ``(T', H', W')``.
        """
        if self.num_flow == 0:
            raise ValueError("this video has a single frame and no flow; "
                             "drop it from training")
        idx = np.clip(np.asarray(frame_indices, dtype=np.int64).reshape(-1), 0, self.num_flow - 1)
        d = self.field_frames(idx).astype(np.float32) * self.scales[:, idx, None, None]
        if self.representation == "flow":
            d = boundary_derivatives(d[0], d[1])
        t, gh, gw = (int(g) for g in grid)
        mag = boundary_magnitude(segment_sums(d, t))
        h, w = self.field_hw
        sy, sx = h / self.frame_hw[0], w / self.frame_hw[1]
        top, left, ch, cw = crop
        if ch <= 0 or cw <= 0:
            raise ValueError(f"crop {crop} has no area")
        box = (top * sy, left * sx, ch * sy, cw * sx)
        return block_means(mag, (gh, gw), box).astype(np.float32)


class MotionCache:
    """Read side of a motion cache folder written by ``prepare``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path} not found; build the cache "
                                    f"with `mcl prepare VIDEO_ROOT --out {self.path}`")
        self.meta: dict = read_meta(meta_path)
        self.settings = CacheSettings(**self.meta["settings"])
        self.clip_len: int = self.settings.clip_len
        self.stride: int = self.settings.stride
        self._ids: list[str] | None = None

    def video_ids(self) -> list[str]:
        """Ids of all complete entries, sorted."""
        if self._ids is None:
            base = self.path / "videos"
            self._ids = sorted(video_id(p.with_suffix(""), base)
                               for p in base.rglob("*.npz")) if base.exists() else []
        return list(self._ids)

    def __contains__(self, video_id: str) -> bool:
        return entry_path(self.path, video_id).is_file()

    def __len__(self) -> int:
        return len(self.video_ids())

    def failures(self) -> dict[str, dict]:
        """``video_id -> {"path", "reason"}`` for videos that could not be prepared."""
        base = self.path / "failed"
        if not base.exists():
            return {}
        return {video_id(p.with_suffix(""), base): json.loads(p.read_text())
                for p in sorted(base.rglob("*.json"))}

    def get(self, video_id: str) -> VideoMotion:
        path = entry_path(self.path, video_id)
        if not path.is_file():
            raise KeyError(f"video {video_id!r} is not in the cache {self.path}; "
                           f"run `mcl prepare` on its video folder (or check the id: relative path, no "
                           "extension)")
        loaded = _load_entry(path)
        problem = loaded if isinstance(loaded, str) else entry_problem(*loaded, self.settings)
        if problem is not None:
            raise DataError(f"motion cache entry {path} is corrupt ({problem}); rerun `mcl prepare` on its "
                            f"videos with --out {self.path} to re-prepare it")
        return VideoMotion(*loaded, source=path)

    def check(self, video_id: str) -> str | None:
        """Why the entry of ``video_id`` is missing or unusable, or None when it is fine."""
        return check_entry(self.path, video_id, self.settings)

    def bad_entries(self) -> dict[str, str]:
        """``video_id -> reason`` for every entry that does not load or validate."""
        problems = {vid: self.check(vid) for vid in self.video_ids()}
        return {vid: why for vid, why in problems.items() if why is not None}


def check_entry(root: str | os.PathLike, video_id: str, settings: CacheSettings) -> str | None:
    """Why ``video_id``'s entry under ``root`` is missing or unusable, or None when it is fine."""
    path = entry_path(root, video_id)
    if not path.is_file():
        return "missing"
    loaded = _load_entry(path)
    return loaded if isinstance(loaded, str) else entry_problem(*loaded, settings)


def cache_stats(cache: MotionCache) -> dict:
    """``videos``, ``frames``, ``bytes`` (entry files), ``bytes_per_frame`` and ``borders`` (the sorted
    border pixels the entries used) of a cache; entries that do not load count their bytes only."""
    frames = size = 0
    borders = set()
    for vid in cache.video_ids():
        path = entry_path(cache.path, vid)
        size += path.stat().st_size
        try:
            with np.load(path) as z:
                info = json.loads(str(z["info"]))
            frames += int(info["num_frames"])
            borders.add(int(info["border"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            continue
    n = len(cache.video_ids())
    return {"videos": n, "frames": frames, "bytes": size, "bytes_per_frame": size / max(frames, 1),
            "borders": sorted(borders)}
