"""One writer per folder: a lock file that names its holder and is taken over when the holder is gone.

``with run_lock(folder, "evaluate"):`` creates ``folder/.mcl-lock`` (``.mcl-lock-<name>`` for a named
lock such as a ``prepare`` shard), holds an exclusive ``flock`` on it for the block and writes the holder
into it (pid, host, start time, command). A second writer is refused with a :class:`FolderLockedError`
that names the holder, on one line. The kernel drops a ``flock`` when its process ends, however it ends
(``kill -9`` included), so a lock file whose lock can be taken again is stale: it is taken over, and a
warning names the process that left it. On a file system without ``flock`` (some network mounts answer
``ENOLCK``) the lock falls back to creating the file exclusively; a file left by a process that is no
longer alive on this host is then taken over, and one from another host is refused with the command
that removes it.

``live_locks(folder, prefix)`` lists the holders of a folder's other locks (``prepare`` uses it to let
shards ``i/N`` of one split run side by side, and refuse a shard of another split).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mcl_video.errors import MCLError

log = logging.getLogger(__name__)

LOCK_PREFIX = ".mcl-lock"
_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class FolderLockedError(MCLError):
    """Another live process writes into the folder; the message names it (pid, host, start time)."""


def lock_path(folder: str | os.PathLike, name: str | None = None) -> Path:
    """The lock file of ``folder`` (``.mcl-lock``, or ``.mcl-lock-<name>``)."""
    return Path(folder) / (LOCK_PREFIX + (f"-{name}" if name else ""))


def _holder_info(what: str) -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
            "started_utc": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "what": what,
            "command": " ".join(sys.argv[:6])}


def describe_holder(info: dict) -> str:
    """``pid 123 on host h since 2026-12-08 03:00:00 UTC (mcl prepare ...)``."""
    if not info:
        return "a process that has not written its name yet"
    text = f"pid {info.get('pid', '?')} on host {info.get('host', '?')} since {info.get('started_utc', '?')}"
    return text + (f" ({info['what']})" if info.get("what") else "")


def _read_info(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 65536)
        info = json.loads(data.decode()) if data.strip() else {}
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _read_path(path: Path) -> dict:
    try:
        info = json.loads(path.read_text())
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_info(fd: int, info: dict) -> None:
    data = json.dumps(info).encode()
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)
    os.fsync(fd)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a zombie counts as gone)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:  # a zombie (killed, not yet reaped by its parent) holds nothing
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def _refuse(path: Path, info: dict, what: str, extra: str = "") -> FolderLockedError:
    return FolderLockedError(
        f"{path.parent}: {what} refused: {describe_holder(info)} is writing into this folder (lock "
        f"{path.name}); wait for it to finish or choose another folder{extra}")


class RunLock:
    """An exclusive lock on ``folder`` (see the module docstring); use :func:`run_lock`."""

    def __init__(self, folder: str | os.PathLike, what: str, name: str | None = None) -> None:
        self.folder, self.what, self.path = Path(folder), what, lock_path(folder, name)
        self.fd: int | None = None
        self.flock = True
        self.took_over: dict | None = None  # the holder of a stale lock this one replaced

    def acquire(self) -> RunLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(20):  # retried only when the file was replaced between open and lock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    info = _read_info(fd)
                    os.close(fd)
                    raise _refuse(self.path, info, self.what) from None
                os.close(fd)
                if err.errno not in _NO_FLOCK:
                    raise
                return self._acquire_exclusive()
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # its holder removed it after we opened it: lock the new file
                os.close(fd)
                continue
            old = _read_info(fd)
            if old:
                self.took_over = old
                log.warning("%s: taking over the stale lock of %s (that process is gone)", self.folder,
                            describe_holder(old))
            _write_info(fd, _holder_info(self.what))
            self.fd = fd
            return self
        raise FolderLockedError(f"{self.path}: the lock file keeps changing; is another process "
                                "starting in this folder? Retry")

    def _acquire_exclusive(self) -> RunLock:
        """The fallback without ``flock``: create the file exclusively; take over a dead holder's file."""
        self.flock = False
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                info = _read_path(self.path)
                if not info:  # being written just now, or empty: count it as held
                    raise _refuse(self.path, info, self.what,
                                  f" (if no process holds it, delete {self.path})") from None
                if info.get("host") != socket.gethostname():
                    raise _refuse(self.path, info, self.what,
                                  f" (if that process is gone, delete {self.path})") from None
                if pid_alive(info.get("pid")):
                    raise _refuse(self.path, info, self.what) from None
                # stale: move it aside under a unique name (one process wins), then create ours
                aside = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}")
                try:
                    os.rename(self.path, aside)
                except FileNotFoundError:
                    continue
                moved = _read_path(aside)
                if moved != info:  # we moved a newer holder's file: give it back and yield to it
                    try:
                        os.link(aside, self.path)
                    except OSError:
                        pass
                    aside.unlink(missing_ok=True)
                    raise _refuse(self.path, moved, self.what) from None
                aside.unlink(missing_ok=True)
                self.took_over = info
                log.warning("%s: taking over the stale lock of %s (that process is gone)", self.folder,
                            describe_holder(info))
                continue
            _write_info(fd, _holder_info(self.what))
            self.fd = fd
            return self
        raise FolderLockedError(f"{self.path}: could not take the lock; retry")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: the next writer locks a new file
        finally:
            os.close(self.fd)  # drops the flock
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire() if self.fd is None else self

    def __exit__(self, *exc) -> None:
        self.release()


@contextmanager
def run_lock(folder: str | os.PathLike, what: str, name: str | None = None) -> Iterator[RunLock]:
    """Hold the lock of ``folder`` for the block (``what`` names the command in messages)."""
    lock = RunLock(folder, what, name).acquire()
    try:
        yield lock
    finally:
        lock.release()


def live_locks(folder: str | os.PathLike, prefix: str = "") -> dict[str, dict]:
    """``{lock name: holder info}`` of the locks of ``folder`` whose name starts with ``prefix`` that a
    live process holds (stale files are left for their next taker)."""
    found = {}
    for path in sorted(Path(folder).glob(LOCK_PREFIX + "*")):
        name = path.name[len(LOCK_PREFIX):].lstrip("-")
        if ".stale-" in name or not name.startswith(prefix):
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    found[name] = _read_info(fd)
                elif err.errno in _NO_FLOCK:
                    info = _read_info(fd)
                    if info.get("host") != socket.gethostname() or pid_alive(info.get("pid")):
                        found[name] = info
                continue
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    return found
