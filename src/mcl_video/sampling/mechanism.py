"""Mechanism checks of motion focus that need no training: what the samplers hand to the encoder.

On a benchmark whose static shortcut lives in known places (the built-in positive control,
``mcl synth --periphery-textures K --rest-mark``: a texture outside the actor's region, a mark only in
the resting frames), the training items' plans (:meth:`MCLPretrainDataset.plan`, nothing decoded) say
how often the shortcut reaches the encoder:

- ``periphery_crop_share``: the share of crops (all four views) that contain any pixel outside the
  actor's region (``motion_box``), and ``periphery_area_share``: the mean share of a crop's area there;
- ``idle_clip_share``: the share of drawn clips (c0, c1, c2) that contain a resting frame (where the
  rest mark shows), and ``idle_frame_share``: the mean share of a clip's frames that rest.

:func:`compare_samplers` measures the baseline's samplers (``UniformSampler`` +
``RandomResizedCropBox``) against MCL's (``MotionFocusedSampler`` + ``MotionFocusedCrop``) on the same
items and seeds; motion focus acts when MCL's shares are lower.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from mcl_video.data.discovery import video_id
from mcl_video.data.synth import motion_boxes
from mcl_video.sampling.dataset import MCLPretrainDataset, _as_config

SHARES = ("periphery_crop_share", "periphery_area_share", "idle_clip_share", "idle_frame_share")
ARMS = {"baseline": {"motion_sampling": False, "motion_crop": False},
        "mcl": {"motion_sampling": True, "motion_crop": True}}


def _inside(crop, box) -> float:
    """Share of the crop's area inside ``box = (top, left, height, width)``."""
    t, lft, h, w = box
    rows = max(0, min(crop.top + crop.height, t + h) - max(crop.top, t))
    cols = max(0, min(crop.left + crop.width, lft + w) - max(crop.left, lft))
    return rows * cols / (crop.height * crop.width)


def sampler_shares(video_root, records: Sequence, cache, meta, config=None, epochs: int = 1) -> dict:
    """The four shares (module docstring) over ``epochs`` epochs of the dataset's items, plus the
    counts ``crops`` and ``clips``. ``meta``: the benchmark's meta.json (dict or path); ``config``: a
    :class:`PretrainSamplingConfig` or dict (its seed picks the draws)."""
    if not isinstance(meta, dict):
        meta = json.loads(Path(meta).read_text())
    boxes = motion_boxes(meta)
    resting = {video_id(v["path"]): np.asarray(v["params"]["resting"], dtype=np.int64)
               for v in meta["videos"]}
    ds = MCLPretrainDataset(video_root, records, cache, config)
    crops_out, crops_area, clips_idle, clips_frames = [], [], [], []
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        for index in range(len(ds)):
            plan = ds.plan(index)
            box = boxes[plan.video_id]
            for crop in plan.crops:
                inside = _inside(crop, box)
                crops_out.append(inside < 1.0)
                crops_area.append(1.0 - inside)
            rest = resting[plan.video_id]
            for frames in plan.indices:
                hit = np.isin(frames, rest)
                clips_idle.append(bool(hit.any()))
                clips_frames.append(float(hit.mean()))
    return {"periphery_crop_share": float(np.mean(crops_out)),
            "periphery_area_share": float(np.mean(crops_area)),
            "idle_clip_share": float(np.mean(clips_idle)), "idle_frame_share": float(np.mean(clips_frames)),
            "crops": len(crops_out), "clips": len(clips_idle), "videos": len(ds), "epochs": int(epochs)}


def compare_samplers(video_root, records: Sequence, cache, meta, config=None, epochs: int = 1) -> dict:
    """:func:`sampler_shares` for the baseline's and MCL's samplers (``ARMS``), everything else from
    ``config``: ``{"baseline": shares, "mcl": shares}``."""
    base = _as_config(config)
    return {arm: sampler_shares(video_root, records, cache, meta, replace(base, **switches), epochs)
            for arm, switches in ARMS.items()}


def format_shares(result: dict) -> str:
    """A Markdown table of :func:`compare_samplers`' result: shares in percent, MCL minus baseline."""
    lines = ["| share | baseline | MCL | MCL - baseline |", "| --- | --- | --- | --- |"]
    for name in SHARES:
        b, m = result["baseline"][name], result["mcl"][name]
        lines.append(f"| {name} | {100 * b:.1f} | {100 * m:.1f} | {100 * (m - b):+.1f} |")
    return "\n".join(lines)

