"""``progress(...)``: a tqdm bar on a terminal, periodic plain lines elsewhere.

tqdm redraws its bar with carriage returns, which fill a log file or a cluster job's output with one
long line of overdrawn bars. When the bar's stream is not a terminal, :func:`progress` returns a
:class:`PlainProgress` instead: the same calls (``update``, ``set_postfix``, ``close``, iteration), and
one line such as ``pretrain: 120/300 step (40%), 2.1 step/s, loss=5.12`` every ``every_s`` seconds
(``MCL_PROGRESS_EVERY`` overrides the default 30) and at the end.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm import tqdm

DEFAULT_EVERY_S = 30.0


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a file
        return False


class PlainProgress:
    """tqdm's small API as plain lines: ``desc: n/total unit (p%), rate unit/s, k=v`` on ``file``, at
    most one line every ``every_s`` seconds (plus one when closed)."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str | None = None,
                 unit: str = "it", initial: int = 0, disable: bool = False, file: TextIO | None = None,
                 every_s: float | None = None, clock=time.monotonic, **_ignored: Any):
        self.iterable, self.desc, self.unit, self.disable = iterable, desc, unit, disable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n, self._start_n = total, initial, initial
        self.file = file if file is not None else sys.stderr
        env = os.environ.get("MCL_PROGRESS_EVERY")
        self.every_s = float(env) if every_s is None and env else (every_s or DEFAULT_EVERY_S)
        self._clock = clock
        self._start = self._last = clock()
        self._postfix = ""
        self._closed = False
        self._printed_n = None

    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def __len__(self) -> int:
        return self.total or 0

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self._clock()
        if now - self._last >= self.every_s:
            self._last = now
            self._emit(now)

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self._postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def line(self, now: float | None = None) -> str:
        """The line this object prints now."""
        now = self._clock() if now is None else now
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        parts = [f"{done} {self.unit}" + (f" ({100 * self.n / self.total:.0f}%)" if self.total else "")]
        elapsed = now - self._start
        if elapsed > 0 and self.n > self._start_n:
            parts.append(f"{(self.n - self._start_n) / elapsed:.3g} {self.unit}/s")
        if self._postfix:
            parts.append(self._postfix)
        return (f"{self.desc}: " if self.desc else "") + ", ".join(parts)

    def _emit(self, now: float) -> None:
        if self.disable:
            return
        print(self.line(now), file=self.file, flush=True)
        self._printed_n = self.n

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        nothing = self.n == self._start_n and not self.total  # an empty to-do list: no line
        if not nothing and self._printed_n != self.n:
            self._emit(self._clock())


def progress(iterable: Iterable | None = None, **kwargs: Any):
    """``tqdm(iterable, **kwargs)`` when its stream (``file``, default stderr) is a terminal, else a
    :class:`PlainProgress` with the same arguments."""
    stream = kwargs.get("file") or sys.stderr
    if _is_terminal(stream):
        return tqdm(iterable, **kwargs)
    return PlainProgress(iterable, **kwargs)
