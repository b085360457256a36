"""The ``mcl`` command line: a thin argument parser over the library, and the one error policy.

Each sub-command lives in its own module in this package and exposes

    add_parser(subparsers) -> argparse.ArgumentParser   # registers the command
    run(args) -> int                                      # exit status

The parser is built from the ``COMMANDS`` table below, so adding a command is one line here. Only the
command being run is imported (``mcl --help`` and ``--version`` import no sub-command and not torch).

Errors (``mcl_video.errors``): a user error (:class:`MCLError`) is printed as ``error: <message>`` on
one line and ends the command with its exit status (2 usage/config, 1 run failed); a full disk
(``ENOSPC``/``EDQUOT``) anywhere is one too. Ctrl-C exits 130 (``pretrain`` first writes a checkpoint
after the current step). ``--debug`` or ``MCL_DEBUG=1`` adds the traceback; any other exception is a
programming error and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from pathlib import Path

from mcl_video import __version__
from mcl_video.allocator import maybe_reexec
from mcl_video.atomic import DISK_FULL
from mcl_video.errors import MCLError, UsageError

# command name -> (module in mcl_video.cli, one-line help), in the order of the data flow. The help is
# repeated here so that `mcl --help` lists the commands without importing them (tests/test_cli.py
# checks it equals each module's own).
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("synth", "write the built-in motion benchmark (UCF101-style layout)"),
    "prepare": ("prepare", "build the motion cache (flow -> motion-boundary maps) for a folder of videos"),
    "transcode": ("transcode", "write resized, short-GOP H.264 copies of a video folder (faster random clip "
                  "reads)"),
    "inspect": ("inspect", "summarise a motion cache built by `mcl prepare`"),
    "show-tubelets": ("show_tubelets", "draw the motion-focused clips and crops of one training sample "
                      "(PNG + GIF)"),
    "pretrain": ("pretrain", "self-supervised MCL pretraining (one process, or many under torchrun)"),
    "evaluate": ("evaluate", "linear probes, kNN and retrieval on frozen features of a checkpoint"),
    "export": ("export", "write a checkpoint's encoder for torchvision, mmaction2, ONNX or as an encoder "
               "file"),
    "finetune": ("finetune", "fine-tune an encoder on UCF101/HMDB51-style labels and test it (multi-clip x "
                 "3-crop)"),
    "demo": ("demo", "end-to-end demo on the built-in benchmark: MCL vs MoCo vs random vs supervised"),
}


def chosen_command(argv: list[str]) -> str | None:
    """The sub-command named in ``argv`` (the first argument that is not an option), else None."""
    for arg in argv:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``mcl`` parser. With ``argv``, only the command it names is imported and gets its full
    sub-parser (the others are listed by name and help); without, every command is imported."""
    parser = argparse.ArgumentParser(
        prog="mcl",
        description=(
            "Motion-Focused Contrastive Learning of video representations. "
            "Data flow: synth/prepare -> show-tubelets -> pretrain -> evaluate; `mcl demo` runs it all."
        ),
    )
    parser.add_argument("--version", action="version", version=f"mcl-video {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of user errors too (same as MCL_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = set(COMMANDS) if argv is None else {chosen_command(argv)}
    for name, (module, help_text) in COMMANDS.items():
        if name not in wanted:  # listed only: a sub-command module may import torch
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        mod = importlib.import_module(f"mcl_video.cli.{module}")
        p = mod.add_parser(sub)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of user errors too (same as MCL_DEBUG=1)")
        p.set_defaults(_run=mod.run, _name=name)
    return parser


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{value} must be >= {low}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def writable_folder(path: str | os.PathLike, option: str) -> Path:
    """Create ``path`` if needed and check that files can be written in it (else a UsageError)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"{option} {path}: cannot create the folder ({err.strerror}); "
                         "choose a folder you can write to") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: the folder is not writable; choose a folder you can write to")
    return path


def open_cache(path: str | os.PathLike, option: str):
    """`MotionCache(path)` with a missing or foreign cache as a one-line DataError naming the option."""
    from mcl_video.errors import DataError, MissingInputError
    from mcl_video.motion.cache import MotionCache

    try:
        return MotionCache(path)
    except MCLError:
        raise
    except (FileNotFoundError, ValueError) as err:  # the cache's own messages, without its source path
        kind = MissingInputError if isinstance(err, FileNotFoundError) else DataError
        raise kind(f"{option} {path}: {err}") from None


def _debug(args) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("MCL_DEBUG", "") not in ("", "0")


def _user_error(message: str, status: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)  # one line
    return status


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the `mcl` command itself (not a call from Python): tcmalloc when installed
        maybe_reexec(sys.argv[1:])
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    debug = _debug(args)
    try:
        return int(args._run(args) or 0)
    except MCLError as err:
        return _user_error(str(err), err.exit_code, debug)
    except OSError as err:
        if err.errno not in DISK_FULL:
            raise
        where = f" writing {err.filename}" if err.filename else ""
        return _user_error(f"disk full{where} ({err.strerror}); free space or choose another folder, "
                           "then rerun (finished work is kept)", 1, debug)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("error: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
