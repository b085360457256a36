"""The stored motion fields of a cache entry: 6-bit quantisation and per-flow-frame deflate blocks.

A video's fields are an int8 ``K x F x h x w`` array (``K`` planes, ``F`` flow frames) with values in
``-FIELD_LEVELS..FIELD_LEVELS`` and one float32 scale per plane and flow frame (value = q * scale).
They are stored as ``fields_z`` (uint8: each flow frame's ``K x h x w`` block deflated on its own, one
after another) and ``fields_offsets`` (uint32 ``F + 1``: block f is ``fields_z[offsets[f]:offsets[f+1]]``),
so reading a training sample inflates only the flow frames it uses, whatever the video's length.
"""

from __future__ import annotations

import zlib

import numpy as np

from mcl_video.errors import DataError

FIELD_LEVELS = 31  # stored field values are the integers -31..31 (6 bits)
_DEFLATE_LEVEL = 6


def field_hw(frame_hw: tuple[int, int], field_short: int) -> tuple[int, int]:
    """Stored field size for a processed frame: short side ``field_short``, aspect kept."""
    h, w = frame_hw
    s = min(field_short, h, w)
    if h <= w:
        return s, max(1, int(round(w * s / h)))
    return max(1, int(round(h * s / w))), s


def quantise(x: np.ndarray, levels: int = FIELD_LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """``K x h x w`` float -> (int8 ``K x h x w`` in ``-levels..levels``, float32 scales ``K``) with
    ``x ~ q * scale`` (error at most half a scale)."""
    peak = np.abs(x).reshape(x.shape[0], -1).max(axis=1)
    scales = (peak / float(levels)).astype(np.float32)
    safe = np.where(scales > 0, scales, 1.0).astype(np.float64)
    q = np.rint(x / safe[:, None, None]).clip(-levels, levels).astype(np.int8)
    return q, scales


def pack_fields(fields: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 ``K x F x h x w`` -> (``fields_z`` uint8, ``fields_offsets`` uint32 ``F + 1``)."""
    blocks = [zlib.compress(np.ascontiguousarray(fields[:, f]).tobytes(), _DEFLATE_LEVEL)
              for f in range(fields.shape[1])]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blocks], dtype=np.int64)]).astype(np.int64)
    if offsets[-1] >= 2**32:
        raise ValueError(f"{offsets[-1]} bytes of fields exceed 4 GiB")
    return np.frombuffer(b"".join(blocks), np.uint8), offsets.astype(np.uint32)


def packing_problem(blob: np.ndarray, offsets: np.ndarray, num_flow: int) -> str | None:
    """Why ``(blob, offsets)`` cannot hold ``num_flow`` blocks, or None (structure only: not inflated)."""
    if blob.dtype != np.uint8 or blob.ndim != 1 or offsets.dtype != np.uint32 or \
            offsets.shape != (num_flow + 1,):
        return (f"fields_z {blob.dtype} {blob.shape} / fields_offsets {offsets.dtype} {offsets.shape} are "
                f"not uint8 bytes / uint32 ({num_flow + 1},)")
    if offsets[0] != 0 or offsets[-1] != blob.size or np.any(np.diff(offsets.astype(np.int64)) <= 0):
        return "fields_offsets do not split fields_z into one non-empty block per flow frame"
    return None


def inflate_fields(blob: np.ndarray, offsets: np.ndarray, flow_indices, block_shape: tuple[int, int, int],
                   source: str) -> np.ndarray:
    """int8 ``K x len(flow_indices) x h x w`` of the packed fields (each distinct frame inflated once)."""
    uniq, inverse = np.unique(np.asarray(flow_indices, dtype=np.int64).reshape(-1), return_inverse=True)
    size = int(np.prod(block_shape))
    out = np.empty((len(uniq), *block_shape), np.int8)
    for j, f in enumerate(uniq.tolist()):
        try:
            raw = zlib.decompress(blob[int(offsets[f]):int(offsets[f + 1])].tobytes())
        except zlib.error:
            raw = b""
        if len(raw) != size:
            raise DataError(f"motion cache entry {source} is corrupt (the fields of flow frame {f} do not "
                            "inflate to their size); rerun `mcl prepare` on its videos to re-prepare it")
        out[j] = np.frombuffer(raw, np.int8).reshape(block_shape)
    return out[inverse.reshape(-1)].transpose(1, 0, 2, 3)
