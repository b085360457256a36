"""Stop cleanly on SIGTERM / SIGUSR1 (SLURM preemption or time limit, `scancel --signal=USR1`) and on
Ctrl-C (SIGINT; a second Ctrl-C interrupts at once, without a checkpoint).

The handler only records the signal; the loop asks `requested()` after every optimizer step (a tiny
collective, so every rank stops after the same step), then writes a checkpoint and returns. The job
continues exactly with `resume=true`.
"""

from __future__ import annotations

import signal
import sys
import threading

from mcl_video.training.distributed import any_rank

SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class StopOnSignal:
    """Context manager installing the handlers (main thread only) and restoring the old ones on exit."""

    def __init__(self, signals=SIGNALS):
        self.signals, self.received, self._old = signals, None, {}

    def _handler(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.received == "SIGINT":
            raise KeyboardInterrupt  # the second Ctrl-C: the user does not want to wait for the step
        self.received = signal.Signals(signum).name
        if signum == signal.SIGINT:
            print("Ctrl-C: stopping after the current step with a checkpoint (Ctrl-C again to abort)",
                  file=sys.stderr, flush=True)

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def requested(self) -> bool:
        """True on every rank when any rank received a stop signal (collective under DDP)."""
        return any_rank(self.received is not None)
