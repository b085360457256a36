"""Optical-flow backends behind one interface (flow ``F_t`` from frame t to t+1).

    flow_u, flow_v = compute_flow(frames, backend="dis")        # whole clip in memory
    est = FlowEstimator("tvl1", threads=1)                       # streaming, for long videos
    for u, v in est.stream(iter_frames(path)): ...

Every backend returns flow in pixels, float32, clipped to ``±bound`` (20 px, as the authors' release
does before quantising to uint8). Backends (``FLOW_BACKENDS``):

- ``tvl1``: OpenCV Dual TV-L1 (the paper's choice); the release calls
  ``cv2.DualTVL1OpticalFlow_create()`` with OpenCV's defaults on grayscale frames, so do we.
- ``dis``: OpenCV DIS with a preset (``preset="ultrafast" | "fast" | "medium"``; default ``fast``,
  chosen from the speed/quality tables in BENCHMARKS.md).
- ``farneback``: OpenCV Farnebäck (polynomial expansion).
- ``raft``: torchvision RAFT (``raft_small`` / ``raft_large``) from a local weights file
  (``weights=PATH``); nothing is downloaded. Runs batched pairs on the GPU when there is one.

Backend options are passed as keyword arguments; OpenCV parameters use the setter names in snake case
(``tvl1``: ``tau``, ``lambda_``, ``theta``, ``scales_number``, ``warpings_number``, ``epsilon``,
``inner_iterations``, ``outer_iterations``, ``scale_step``, ``gamma``, ``median_filtering``;
``dis``: ``finest_scale``, ``patch_size``, ``patch_stride``, ``gradient_descent_iterations``,
``variational_refinement_iterations``, ...). ``threads=N`` sets OpenCV's (and, for RAFT on CPU,
torch's) thread count while flow is computed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from mcl_video.data.rawframes import read_flow_jpegs
from mcl_video.data.video import resized_hw

FLOW_BACKENDS: tuple[str, ...] = ("tvl1", "dis", "farneback", "raft")
FLOW_BOUND = 20.0
DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
# the CPU default (BENCHMARKS.md, flow): >100 fields/s per core at 320x240, EPE within 1.5x of TV-L1
DIS_DEFAULT_PRESET = "fast"
FARNEBACK_DEFAULTS = {
    "pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2,
    "flags": 0,
}
RAFT_HOWTO = (
    "pass weights=PATH to a local torchvision RAFT state dict. To make one, on a machine with network "
    "access run: python -c \"import torch; from torchvision.models.optical_flow import raft_small, "
    "Raft_Small_Weights as W; torch.save(raft_small(weights=W.DEFAULT).state_dict(), 'raft_small.pth')\" "
    "(or raft_large / Raft_Large_Weights) and copy the file here"
)


def _to_gray(frame: np.ndarray) -> np.ndarray:
    """``H x W x 3`` RGB or ``H x W`` uint8 -> ``H x W`` uint8 grayscale."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise TypeError(f"frames must be uint8, got {frame.dtype}; "
                        "convert with (x * 255).round().astype(np.uint8) or pass the decoded frames")
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    raise ValueError(f"a frame must be H x W x 3 (RGB) or H x W, got shape "
                     f"{frame.shape}")


def _to_rgb(frame: np.ndarray) -> np.ndarray:
    """``H x W x 3`` RGB or ``H x W`` gray uint8 -> ``H x W x 3`` uint8."""
    frame = np.asarray(frame)
    if frame.ndim == 2:
        return np.repeat(frame[:, :, None], 3, axis=2)
    _to_gray(frame[:1, :1])  # dtype / shape check only
    return frame


def _setter_name(option: str) -> str:
    """``inner_iterations`` -> ``setInnerIterations``; ``lambda_`` -> ``setLambda``."""
    return "set" + "".join(part.capitalize() for part in option.rstrip("_").split("_"))


def _configure(algo, options: dict, backend: str):
    """Apply snake-case options to an OpenCV algorithm through its setters."""
    for key, value in options.items():
        setter = getattr(algo, _setter_name(key), None)
        if setter is None:
            valid = sorted(n[3:] for n in dir(algo) if n.startswith("set") and n != "setDefaultName")
            raise ValueError(f"unknown option {key!r} for backend {backend!r}; "
                             f"valid (snake case of): {', '.join(valid)}")
        setter(value)
    return algo


class _OpenCVFlow:
    """One OpenCV method: ``(prev_gray, next_gray) -> H x W x 2`` float32 (unclipped)."""

    def __init__(self, backend: str, options: dict):
        options = dict(options)
        if backend == "tvl1":
            self._algo = _configure(cv2.optflow.DualTVL1OpticalFlow_create(), options, backend)
        elif backend == "dis":
            preset = options.pop("preset", DIS_DEFAULT_PRESET)
            if preset not in DIS_PRESETS:
                raise ValueError(f"unknown DIS preset {preset!r}; "
                                 f"valid: {', '.join(DIS_PRESETS)}")
            self._algo = _configure(cv2.DISOpticalFlow_create(DIS_PRESETS[preset]), options, backend)
        else:
            unknown = set(options) - set(FARNEBACK_DEFAULTS)
            if unknown:
                raise ValueError(f"unknown option(s) {sorted(unknown)} for "
                                 f"backend 'farneback'; valid: {', '.join(FARNEBACK_DEFAULTS)}")
            self._params = {**FARNEBACK_DEFAULTS, **options}
            self._algo = None

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        if self._algo is None:
            return cv2.calcOpticalFlowFarneback(prev, nxt, None, **self._params)
        return self._algo.calc(prev, nxt, None)


class _RaftFlow:
    """torchvision RAFT from a local state dict: lists of ``H x W x 3`` uint8 -> list of ``H x W x 2``."""

    MODELS = ("raft_small", "raft_large")
    MIN_SIDE = 128

    def __init__(self, weights: str | Path | None = None, model: str | None = None, iters: int = 12,
                 device: str | None = None):
        import torch  # lazy: only the RAFT backend needs torch/torchvision

        if weights is None:
            raise ValueError(f"the 'raft' backend needs local weights; "
                             f"{RAFT_HOWTO}")
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: RAFT weights file not found; {RAFT_HOWTO}")
        if model is not None and model not in self.MODELS:
            raise ValueError(f"unknown RAFT model {model!r}; valid: "
                             f"{', '.join(self.MODELS)}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}; "
                             f"{RAFT_HOWTO}")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        self.net = self._build(path, state, [model] if model else list(self.MODELS))
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net.eval().to(self.device)
        self.iters = int(iters)

    @staticmethod
    def _build(path: Path, state: dict, names: list[str]):
        from torchvision.models import optical_flow  # lazy: only the RAFT backend needs it

        problems = []
        for name in names:
            net = getattr(optical_flow, name)(weights=None, progress=False)
            expected = set(net.state_dict())
            missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
            if missing or unexpected:
                problems.append(f"{name}: {len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} "
                                f"unexpected (e.g. {unexpected[:2]})")
                continue
            try:
                net.load_state_dict(state)
            except RuntimeError as err:  # same names, wrong shapes
                problems.append(f"{name}: {str(err).splitlines()[-1].strip()}")
                continue
            return net
        raise ValueError(f"{path}: does not match torchvision {'/'.join(names)} ({'; '.join(problems)}); "
                         f"{RAFT_HOWTO}")

    @contextmanager
    def thread_scope(self, threads: int):
        import torch

        if self.device.type != "cpu":
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def __call__(self, prevs: list[np.ndarray], nexts: list[np.ndarray]) -> list[np.ndarray]:
        """``B`` frame pairs (``H x W x 3`` uint8) -> ``B`` flows ``H x W x 2`` float32 (unclipped)."""
        import torch
        import torch.nn.functional as F

        h, w = prevs[0].shape[:2]
        # RAFT needs sides divisible by 8 and at least 128 (its 4-level correlation pyramid at 1/8)
        pad_h, pad_w = (max(self.MIN_SIDE, -(-n // 8) * 8) - n for n in (h, w))

        def prepare(frames):  # B x 3 x H' x W' in [-1, 1], replicate-padded at the bottom/right
            x = torch.from_numpy(np.stack(frames)).to(self.device).permute(0, 3, 1, 2).float()
            return F.pad(x / 127.5 - 1.0, (0, pad_w, 0, pad_h), mode="replicate")

        with torch.inference_mode():
            flow = self.net(prepare(prevs), prepare(nexts), num_flow_updates=self.iters)[-1]
        flow = flow[:, :, :h, :w].permute(0, 2, 3, 1).float().cpu().numpy()
        return list(flow)


class FlowEstimator:
    """A configured flow backend; computes flow pair by pair or over a stream of frames.

    Args:
        backend: one of ``FLOW_BACKENDS``.
        bound: flow is clipped to ``[-bound, bound]`` pixels (the release uses 20).
        threads: OpenCV threads while computing (``cv2.setNumThreads``; restored afterwards);
            ``None`` leaves the process setting alone.
        batch_size: pairs per RAFT forward pass in ``stream`` (other backends go pair by pair).
        **options: backend options (see the module docstring); for ``raft``: ``weights`` (required),
            ``model`` (``raft_small``/``raft_large``, default: inferred from the weights),
            ``iters`` (refinement steps, default 12), ``device`` (default: cuda if available).
    """

    def __init__(self, backend: str = "dis", *, bound: float = FLOW_BOUND, threads: int | None = None,
                 batch_size: int = 8, **options):
        if backend not in FLOW_BACKENDS:
            raise ValueError(f"unknown flow backend {backend!r}; "
                             f"valid: {', '.join(FLOW_BACKENDS)}")
        if threads is not None and int(threads) < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.backend = backend
        self.bound = float(bound)
        self.threads = threads
        self.batch_size = max(1, int(batch_size))
        if backend == "raft":
            self._impl = _RaftFlow(**options)
        else:
            self._impl = _OpenCVFlow(backend, options)

    @contextmanager
    def _thread_scope(self):
        if self.threads is None:
            yield
            return
        before = cv2.getNumThreads()
        cv2.setNumThreads(int(self.threads))
        try:
            with self._impl.thread_scope(int(self.threads)) if self.backend == "raft" else _null():
                yield
        finally:
            cv2.setNumThreads(before)

    def _clip(self, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``H x W x 2`` -> ``(u, v)`` float32 ``H x W`` each, clipped to ±bound."""
        flow = np.clip(flow, -self.bound, self.bound, dtype=np.float32)
        return np.ascontiguousarray(flow[..., 0]), np.ascontiguousarray(flow[..., 1])

    def pair(self, prev: np.ndarray, nxt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flow from ``prev`` to ``nxt`` (each ``H x W`` gray or ``H x W x 3`` RGB uint8).

        Returns ``(u, v)``, float32 ``H x W`` each, in pixels: ``prev(x) ~ nxt(x + (u, v))``.
        """
        with self._thread_scope():
            if self.backend == "raft":
                return self._clip(self._impl([_to_rgb(prev)], [_to_rgb(nxt)])[0])
            return self._clip(self._impl(_to_gray(prev), _to_gray(nxt)))

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(u, v)`` (float32 ``H x W``) for each consecutive pair of ``frames``.

        ``frames`` is any iterable of ``H x W x 3`` RGB (or ``H x W`` gray) uint8 frames; only two
        frames (RAFT: ``batch_size + 1``) are held at a time, so N frames give N - 1 flow fields.
        """
        convert = _to_rgb if self.backend == "raft" else _to_gray
        prev = None
        batch: list[np.ndarray] = []
        for frame in frames:
            cur = convert(frame)
            if prev is not None and cur.shape[:2] != prev.shape[:2]:
                raise ValueError(f"frame size changed from {prev.shape[:2]} to "
                                 f"{cur.shape[:2]} inside one video; resize all frames alike")
            if self.backend != "raft":
                if prev is not None:
                    with self._thread_scope():
                        flow = self._impl(prev, cur)
                    yield self._clip(flow)
            else:
                batch.append(cur)
                if len(batch) == self.batch_size + 1:
                    yield from self._raft_batch(batch)
                    batch = batch[-1:]
            prev = cur
        if self.backend == "raft" and len(batch) > 1:
            yield from self._raft_batch(batch)

    def _raft_batch(self, frames: list[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        with self._thread_scope():
            flows = self._impl(frames[:-1], frames[1:])
        for flow in flows:
            yield self._clip(flow)


@contextmanager
def _null():
    yield


def compute_flow(frames, backend: str = "dis", **options) -> tuple[np.ndarray, np.ndarray]:
    """Optical flow between consecutive frames.

    Args:
        frames: uint8 ``N x H x W x 3`` RGB array (numpy or CPU torch tensor) or an iterable of
            ``H x W x 3`` frames.
        backend: one of ``FLOW_BACKENDS``; ``**options`` go to ``FlowEstimator``.

    Returns:
        ``(flow_u, flow_v)``: float32 ``(N-1) x H x W`` each, pixels, flow t -> t+1, clipped to ±20 px
        (``bound=``). Fewer than two frames give ``0 x H x W`` arrays.
    """
    estimator = FlowEstimator(backend, **options)
    if hasattr(frames, "shape"):
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be N x H x W x 3 (RGB), got shape "
                             f"{frames.shape}")
    sizes: list[tuple[int, int]] = []

    def remember_size(items):
        for frame in items:
            if not sizes:
                sizes.append(np.shape(frame)[:2])
            yield frame

    flows = list(estimator.stream(remember_size(frames)))
    if not flows:
        h, w = sizes[0] if sizes else (0, 0)
        return np.zeros((0, h, w), np.float32), np.zeros((0, h, w), np.float32)
    return np.stack([u for u, _ in flows]), np.stack([v for _, v in flows])


def read_flow_folder(folder: str | Path, bound: float = FLOW_BOUND,
                     resize_short: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Precomputed flow read from a folder of flow JPEGs instead of being computed.

    ``folder`` holds ``flow_x_00001.jpg``/``flow_y_00001.jpg``, ... (or ``x_``/``y_``), quantised with
    ``bound`` (see ``data.rawframes``). Yields ``(u, v)`` float32 ``H x W`` pixels per flow frame. Flow
    whose short side exceeds ``resize_short`` is area-averaged to that short side and its vectors are
    scaled by the same factor per axis, as if it had been computed at that size.
    """
    for u, v in read_flow_jpegs(folder, bound):
        h, w = u.shape
        if resize_short is not None and min(h, w) > resize_short:
            th, tw = resized_hw(h, w, resize_short)
            u = cv2.resize(u, (tw, th), interpolation=cv2.INTER_AREA) * np.float32(tw / w)
            v = cv2.resize(v, (tw, th), interpolation=cv2.INTER_AREA) * np.float32(th / h)
        yield u, v


def read_flo(path: str | Path) -> np.ndarray:
    """Read a Middlebury ``.flo`` file -> float32 ``H x W x 2`` (u, v) in pixels."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 12 or np.frombuffer(data[:4], "<f4")[0] != np.float32(202021.25):
        raise ValueError(f"{path}: not a .flo file (bad magic number; expected 202021.25)")
    width, height = (int(x) for x in np.frombuffer(data[4:12], "<i4"))
    expected = 12 + 8 * width * height
    if len(data) != expected:
        raise ValueError(f"{path}: truncated .flo ({len(data)} bytes, expected {expected} for "
                         f"{width}x{height})")
    return np.frombuffer(data[12:], "<f4").reshape(height, width, 2).copy()


def endpoint_error(flow: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean end-point error ``|flow - gt|_2`` over ``mask`` (``H x W`` bool; all pixels if None).

    ``flow`` and ``gt`` are ``H x W x 2``.
    """
    err = np.sqrt(((flow.astype(np.float64) - gt) ** 2).sum(axis=-1))
    if mask is not None:
        err = err[mask]
    return float(err.mean())
