"""Stop cleanly on SIGTERM / SIGUSR1 (SLURM preemption or time limit, `scancel --signal=USR1`) and on
Ctrl-C (SIGINT; a second Ctrl-C interrupts at once, without a checkpoint).

The handler only records the signal; the loop asks `requested()` after every optimizer step (a tiny
collective, so every rank stops after the same step), then writes a checkpoint and ends the run with
:class:`RunStopped` (exit status :data:`EXIT_STOPPED`) or, for Ctrl-C, exit status 130. The job continues
exactly with `resume=true`.

Under torchrun the workers run in sessions of their own, so a signal meant for the job reaches them only
through torchrun (which forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT and whatever `--signals-to-handle`
adds). A worker also asks the kernel for a SIGTERM when torchrun itself dies (`PR_SET_PDEATHSIG`), so a
torchrun killed outright does not leave its workers training on: they stop after the step, checkpoint and
exit.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading

from mcl_video.errors import RunFailedError
from mcl_video.training.distributed import any_rank

SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)

# Exit status of a run stopped by SIGTERM/SIGUSR1 after writing its checkpoint: EX_TEMPFAIL of
# sysexits.h ("try again later"), distinct from success (0), a failure (1), a usage error (2) and Ctrl-C
# (130), so `mcl pretrain ... && mcl evaluate ...` does not go on with an unfinished model.
EXIT_STOPPED = 75

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class RunStopped(RunFailedError):
    """SIGTERM/SIGUSR1 stopped the run after a step; its checkpoint is written. Exit status 75."""

    exit_code = EXIT_STOPPED


def term_when_parent_dies() -> bool:
    """Ask Linux to send this process SIGTERM when its parent (torchrun) exits; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0


def leave_stops_to_the_main_process(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: a worker ignores the stop signals. torchrun and SLURM signal a whole
    process group, and a DataLoader worker killed by one would end the run with an error instead of a
    checkpoint; the main process finishes the step, checkpoints and ends its workers itself."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


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
            if "TORCHELASTIC_RUN_ID" in os.environ and signal.SIGTERM in self.signals:
                term_when_parent_dies()  # a torchrun worker: its SIGTERM handler now does the rest
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def requested(self) -> bool:
        """True on every rank when any rank received a stop signal (collective under DDP)."""
        return any_rank(self.received is not None)
