"""Checkpoints: atomic writes, the last K kept, exact resume, `torch.load(weights_only=True)`.

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


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: Path) -> Path:
    """`torch.save` to a temporary file in the same folder, fsync, then `os.replace` onto `path`.

    A crash (even SIGKILL) at any point leaves either the old file or the new one, never a torn file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


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
    """Write `state` as the checkpoint of `state["step"]` atomically, then keep the newest `keep`."""
    path = atomic_save(state, checkpoint_path(run_dir, int(state["step"])))
    prune_checkpoints(run_dir, keep)
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Load with `weights_only=True`; the error names the file and what to do."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # torn/foreign file
        raise RuntimeError(
            f"{path}: not a loadable checkpoint ({type(e).__name__}: {e}); delete it to resume from the "
            "previous one") from e
    missing = {"model", "step", "config"} - set(state)
    if missing:
        raise RuntimeError(f"{path}: checkpoint lacks {sorted(missing)}; was it written by `mcl pretrain`?")
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
