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
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mcl_video.atomic import atomic_path
from mcl_video.errors import DataError, MissingInputError


class CheckpointError(DataError, RuntimeError):
    """A file that is not a loadable checkpoint; the message names it and what to do."""


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


class _RecordingWriter:
    """A file wrapper for `torch.save` that keeps the OSError of a failed write (torch replaces it)."""

    def __init__(self, f) -> None:
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.f.flush()


def atomic_save(obj: Any, path: Path) -> Path:
    """`torch.save` to a temporary file in the same folder, fsync, then `os.replace` onto `path`.

    A crash (even SIGKILL) at any point leaves either the old file or the new one, never a torn file.
    A full disk (``ENOSPC``, which torch would report as an internal "enforce fail") is a
    :class:`RunFailedError` naming the file; the temporary file is removed, older files are intact.
    """
    path = Path(path)
    hint = "the previous checkpoints are intact: free space, then continue with resume=true"
    with atomic_path(path, hint) as tmp, open(tmp, "wb") as f:
        writer = _RecordingWriter(f)
        try:
            torch.save(obj, writer)
        except RuntimeError:
            if writer.error is None:
                raise
            raise writer.error from None
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


def safe_load(path: str | os.PathLike, map_location: str | torch.device = "cpu", hint: str = "") -> Any:
    """`torch.load(weights_only=True)` whose errors name the file and say what it is (CheckpointError).

    An empty, text, torn or foreign file and a file holding Python objects other than tensors and plain
    containers (refused for safety: loading them could run code) are told apart; ``hint`` ends each message.
    """
    path = Path(path)
    hint = hint or "check the path"
    if not path.is_file():
        raise MissingInputError(f"{path}: no such file; {hint}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (an interrupted copy?); {hint}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found:
            raise CheckpointError(
                f"{path}: holds Python objects ({found.group(1)}) besides tensors and plain containers, "
                "which mcl does not load (unpickling them can run arbitrary code); save only its state_dict "
                "(tensors) and pass that file") from None
        reason = "not a PyTorch file"
    except (EOFError, RuntimeError) as e:
        torn = isinstance(e, EOFError) or "zip" in str(e).lower()
        reason = "truncated or corrupt" if torn else "unreadable"
    except Exception as e:  # noqa: BLE001 - whatever a foreign file makes the unpickler raise
        reason = f"not a PyTorch file (text or another format?): {type(e).__name__}"
    raise CheckpointError(f"{path}: not a loadable checkpoint ({reason}); {hint}")


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
