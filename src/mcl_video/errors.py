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


__all__ = ["MCLError", "UsageError", "DataError", "MissingInputError", "RunFailedError"]
