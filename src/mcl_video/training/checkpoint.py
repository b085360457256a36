"""Checkpoints: atomic writes, the last K kept, exact resume, `torch.load(weights_only=True)`
(``torchfile.safe_load``); weights holding NaN/inf are never saved.

A checkpoint (`<run>/ckpt-00001234.pt`, the number is the optimizer step) is a dict holding only
tensors, plain containers and primitives:

    model      state dict of the unwrapped MCL module (query + EMA key encoder, heads, queue buffers)
    optimizer  optimizer.state_dict();  scaler: GradScaler.state_dict() ({} when unused)
    step       optimizer steps done;  epoch, batch_in_epoch: where the next step's data starts
    rng        one entry per rank: python / numpy / torch CPU / CUDA generator states
    config     the resolved PretrainConfig as a dict;  env: git commit and package versions
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mcl_video.errors import RunFailedError
from mcl_video.torchfile import (
    CheckpointError,
    describe_non_finite,
    non_finite_tensors,
    safe_load,
    save_atomic,
)

__all__ = ["CheckpointError", "NonFiniteStateError", "safe_load", "save_checkpoint", "load_checkpoint",
           "atomic_save", "prune_checkpoints", "list_checkpoints", "latest_checkpoint", "checkpoint_path",
           "capture_rng", "restore_rng"]


class NonFiniteStateError(RunFailedError, FloatingPointError):
    """The weights to be saved hold NaN/inf: nothing is written (the older checkpoints stay)."""


CKPT_PATTERN = re.compile(r"^ckpt-(\d+)\.pt$")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / f"ckpt-{step:08d}.pt"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Finished checkpoints in `run_dir`, oldest first (temporary files are ignored)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := CKPT_PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def atomic_save(obj: Any, path: Path) -> Path:
    """`torch.save` to a temporary file in the same folder, fsync, then `os.replace` onto `path`.

    A crash (even SIGKILL) at any point leaves either the old file or the new one, never a torn file.
    A full disk (``ENOSPC``, which torch would report as an internal "enforce fail") is a
    :class:`RunFailedError` naming the file; the temporary file is removed, older files are intact.
    """
    return save_atomic(obj, path, "the previous checkpoints are intact: free space, then continue with "
                       "resume=true")


def prune_checkpoints(run_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` checkpoints (and stale temporary files); returns the deleted."""
    ckpts = list_checkpoints(run_dir)
    doomed = ckpts[: max(0, len(ckpts) - keep)]
    mine = f".tmp-{os.getpid()}"
    doomed += [p for p in Path(run_dir).glob(".ckpt-*.pt.tmp-*") if not p.name.endswith(mine)]
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed


def save_checkpoint(run_dir: Path, state: dict, keep: int) -> Path:
    """Write `state` as the checkpoint of `state["step"]` atomically, then keep the newest `keep`.

    Weights (``state["model"]``) holding NaN/inf are never written: a :class:`NonFiniteStateError`
    names the step and the tensors, and the older checkpoints are kept (nothing is pruned).
    """
    bad = non_finite_tensors(state.get("model", {}))
    if bad:
        raise NonFiniteStateError(
            f"{run_dir}: the weights after step {state.get('step')} hold NaN/inf "
            f"({describe_non_finite(bad)}); no checkpoint was written from this state and the older ones "
            "are kept: resume from the last one (resume=true) with a lower lr or a longer warm-up")
    path = atomic_save(state, checkpoint_path(run_dir, int(state["step"])))
    prune_checkpoints(run_dir, keep)
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a pretraining checkpoint with `weights_only=True`; errors name the file and what to do."""
    path = Path(path)
    hint = "delete it to resume from the previous one, or pass a checkpoint written by `mcl pretrain`"
    state = safe_load(path, map_location, hint)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a checkpoint dict; {hint}")
    missing = {"model", "step", "config"} - set(state)
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {sorted(missing)}; was it written by "
                              "`mcl pretrain`?")
    return state


def capture_rng() -> dict:
    """RNG states of python, numpy, torch CPU and CUDA as tensors/lists (weights_only-safe)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss),
                  float(np_gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng(state: dict) -> None:
    """Inverse of `capture_rng` (CUDA states are restored when the device count matches)."""
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
