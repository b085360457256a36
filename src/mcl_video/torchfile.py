"""Reading and writing ``torch.save`` files safely: ``weights_only`` loads whose errors say what the file
holds, and the finite-state check every writer of weights calls first.

- :func:`safe_load`: ``torch.load(weights_only=True)``. An empty, torn, text or foreign file, a plain
  Python pickle and a file holding Python objects besides tensors and plain containers are told apart
  in a :class:`CheckpointError` naming the file (and, for objects, which classes or functions it
  references, read from the pickle's opcodes without running them). torch's advice to retry with
  ``weights_only=False`` is never passed on: that would run the file's code.
- :func:`non_finite_tensors`: names of the floating-point tensors (in nested dicts/lists) holding NaN
  or inf. Checkpoints, exports and evaluations refuse such weights.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from mcl_video.atomic import atomic_path
from mcl_video.errors import DataError, MissingInputError


class CheckpointError(DataError, RuntimeError):
    """A file that is not a loadable checkpoint; the message names it and what to do."""


# globals a torch.save file of tensors and plain containers references (what weights_only allows)
_PLAIN = re.compile(r"^(torch\.|collections\.OrderedDict$|builtins\.(set|frozenset|bytearray|complex)$|"
                    r"_codecs\.encode$)")
_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "SHORT_BINSTRING", "BINSTRING",
            "STRING"}
_OBJECT_OPS = {"INST", "OBJ"}


def _pickle_bytes(path: Path) -> bytes | None:
    """The pickle inside a ``torch.save`` zip (its ``data.pkl``), or the file itself."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = [n for n in z.namelist() if n.endswith("data.pkl")]
                return z.read(names[0]) if names else None
        except (OSError, zipfile.BadZipFile, KeyError):
            return None
    try:
        return path.read_bytes()
    except OSError:
        return None


def pickle_globals(path: str | os.PathLike) -> list[str] | None:
    """The ``module.name`` globals the pickle in ``path`` references, read from its opcodes (nothing is
    executed), in order of appearance; None when it is not a readable pickle."""
    data = _pickle_bytes(Path(path))
    if not data:
        return None
    found: list[str] = []
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in _STRINGS:
                strings = (strings + [str(arg)])[-2:]
            elif op.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) == 2:
                found.append(".".join(strings))
            elif op.name in _OBJECT_OPS and arg:
                found.append(str(arg).replace(" ", "."))
    except Exception:  # noqa: BLE001 - not a pickle (text, another format): genops raises anything
        return None if not found else list(dict.fromkeys(found))
    return list(dict.fromkeys(found))


def python_objects(path: str | os.PathLike) -> list[str]:
    """Globals of ``path``'s pickle that are not tensors or plain containers (loading them runs code)."""
    return [g for g in (pickle_globals(path) or []) if not _PLAIN.match(g)]


def objects_error(path: Path, objects: list[str], hint: str) -> CheckpointError:
    shown = ", ".join(objects[:3]) + (f" and {len(objects) - 3} more" if len(objects) > 3 else "")
    return CheckpointError(
        f"{path}: holds Python objects ({shown}) besides tensors and plain containers, which mcl does not "
        "load (unpickling them can run arbitrary code); save only its state_dict (tensors) and pass that "
        f"file{'; ' + hint if hint else ''}")


def safe_load(path: str | os.PathLike, map_location: str | torch.device = "cpu", hint: str = "") -> Any:
    """`torch.load(weights_only=True)` whose errors name the file and say what it is (CheckpointError).

    An empty, text, torn or foreign file, a plain pickle and a file holding Python objects other than
    tensors and plain containers (refused for safety: loading them could run code) are told apart;
    ``hint`` ends each message.
    """
    path = Path(path)
    hint = hint or "check the path"
    if not path.is_file():
        raise MissingInputError(f"{path}: no such file; {hint}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (an interrupted copy?); {hint}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        objects = python_objects(path) or ([found.group(1)] if found else [])
        if objects:
            raise objects_error(path, objects, "") from None
        if pickle_globals(path) is not None and not zipfile.is_zipfile(path):
            reason = "a plain Python pickle, not a file written by torch.save"
        else:
            reason = "not a PyTorch file"
    except (EOFError, RuntimeError) as e:
        torn = isinstance(e, EOFError) or "zip" in str(e).lower()
        reason = "truncated or corrupt" if torn else "unreadable"
    except Exception as e:  # noqa: BLE001 - whatever a foreign file makes the unpickler raise
        reason = f"not a PyTorch file (text or another format?): {type(e).__name__}"
    raise CheckpointError(f"{path}: not a loadable checkpoint ({reason}); {hint}")


def non_finite_tensors(obj: Any, prefix: str = "") -> list[str]:
    """Names (``a.b.0``) of the floating-point tensors in ``obj`` (nested dicts, lists, tuples, a
    module's state dict) that hold NaN or inf."""
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    bad: list[str] = []
    if torch.is_tensor(obj):
        if (obj.is_floating_point() or obj.is_complex()) and not bool(torch.isfinite(obj).all()):
            bad.append(prefix or "tensor")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            bad += non_finite_tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            bad += non_finite_tensors(v, f"{prefix}.{i}" if prefix else str(i))
    return bad


def describe_non_finite(names: list[str]) -> str:
    """``3 tensors (e.g. a, b)``."""
    return f"{len(names)} tensor(s) with NaN/inf (e.g. {', '.join(names[:3])})"


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


def save_atomic(obj: Any, path: str | os.PathLike, full_disk_hint: str) -> Path:
    """`torch.save(obj)` to ``path`` through :func:`mcl_video.atomic.atomic_path` (temp file, fsync,
    rename): complete or absent. A full disk, which torch reports as an internal "enforce fail", is a
    ``RunFailedError`` naming the file and ending with ``full_disk_hint``; no temporary file is left."""
    path = Path(path)
    with atomic_path(path, full_disk_hint) as tmp, open(tmp, "wb") as f:
        writer = _RecordingWriter(f)
        try:
            torch.save(obj, writer)
        except RuntimeError:
            if writer.error is None:
                raise
            raise writer.error from None
    return path


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a whole file (hex), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
