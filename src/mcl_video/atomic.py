"""Files that are either complete or absent: every file the package writes for later runs to trust
(motion cache entries, checkpoints, converted and transcoded videos) goes through :func:`atomic_path`.

The content is written to a temporary name beside the target, flushed to disk and renamed onto the
target, so a crash (even SIGKILL) at any point leaves the old file or the new one, never a torn file.
A full disk is a :class:`~mcl_video.errors.RunFailedError` naming the file; the temporary file is
always removed.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mcl_video.errors import RunFailedError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike, full_disk_hint: str, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; write the file there. When the block ends without an
    error the file is fsynced and renamed onto ``path``.

    ``full_disk_hint``: what the user should do when the disk is full (the message names the file).
    ``keep_suffix``: the temporary name ends with ``path``'s suffix (for writers that choose the
    format by it); otherwise it ends with ``.tmp-<pid>``, which no reader mistakes for a finished file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}" + (path.suffix if keep_suffix else ""))
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        if err.errno not in DISK_FULL:
            raise
        raise RunFailedError(f"{path}: disk full while writing it ({err.strerror}); "
                             f"{full_disk_hint}") from None
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
