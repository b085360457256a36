"""The error policy of mcl-video, in one place.

A *user error* is something the person running ``mcl`` can fix: a bad file, a bad path, a bad value, a
full disk, an interrupted run. The library raises a subclass of :class:`MCLError` for it, with a message
that names the user's file or config key and the fix (never our source path). The command line catches
:class:`MCLError` at one place (``mcl_video.cli.main``), prints ``error: <message>`` on one line and exits
with :attr:`MCLError.exit_code`: 2 for usage and configuration errors, 1 for a run that failed, 75 for
a run stopped by SIGTERM/SIGUSR1 after writing its checkpoint (``training.preempt.EXIT_STOPPED``), 130
for Ctrl-C. Every
other exception is a programming error and keeps its traceback.

``--debug`` or ``MCL_DEBUG=1`` shows the traceback of user errors too.
"""

from __future__ import annotations


class MCLError(Exception):
    """A user error: the message names the file or key and says what to do. Exit status 1."""

    exit_code = 1


class UsageError(MCLError):
    """A bad command-line argument, config key or value. Exit status 2."""

    exit_code = 2


class DataError(MCLError):
    """An input file or folder that cannot be used (missing, unreadable, corrupt, wrong layout)."""


class MissingInputError(DataError, FileNotFoundError):
    """A file or folder the user named does not exist (also a FileNotFoundError). Exit status 2: the
    argument is what needs fixing."""

    exit_code = 2


class RunFailedError(MCLError):
    """A run that could not finish (full disk, non-finite loss, interrupted). Exit status 1."""


class OutOfMemoryRunError(RunFailedError):
    """The device (GPU or CPU memory) ran out of memory; the message names the batch size and device."""


_OOM_MARKS = ("out of memory", "can't allocate memory", "cannot allocate memory", "failed to allocate")


def out_of_memory_error(err: BaseException, batch_size: str | int | None = None,
                        device: str | None = None) -> OutOfMemoryRunError | None:
    """The user error for an out-of-memory exception (``torch.OutOfMemoryError``, a CPU allocator
    ``RuntimeError``, a ``MemoryError``), naming the batch size and the device; None for other errors.

    ``batch_size``: how the user sets it, e.g. ``"--batch-size 4"`` or ``"batch_size=32"`` (None: the
    config's ``batch_size``). ``device``: the device of the run (None: read from torch's message).
    """
    text = str(err)
    oom = isinstance(err, MemoryError) or any(c.__name__ == "OutOfMemoryError" for c in type(err).__mro__)
    if not oom and not (isinstance(err, RuntimeError) and any(m in text.lower() for m in _OOM_MARKS)):
        return None
    if device is None:
        low = text.lower()
        device = ("cuda" if "cuda" in low or "gpu" in low else "mps" if "mps" in low else "cpu")
    first = text.strip().splitlines()[0][:160] if text.strip() else type(err).__name__
    setting = f"{batch_size}" if batch_size is not None else "batch_size in the config"
    return OutOfMemoryRunError(
        f"out of memory on the {device} device with {setting} ({first}); lower the batch size (or the "
        "clip size / number of clips), use a device with more memory, or stop other jobs on it")


__all__ = ["MCLError", "UsageError", "DataError", "MissingInputError", "RunFailedError",
           "OutOfMemoryRunError", "out_of_memory_error"]
