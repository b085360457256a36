"""The ``mcl`` command line: a thin argument parser over the library.

Each sub-command lives in its own module in this package and exposes

    add_parser(subparsers) -> argparse.ArgumentParser   # registers the command
    run(args) -> int                                      # exit status

The parser is built from the ``COMMANDS`` table below, so adding a command is one line here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from mcl_video import __version__

# command name -> module in mcl_video.cli (in the order of the data flow)
COMMANDS: dict[str, str] = {
    "synth": "synth",
    "prepare": "prepare",
    "inspect": "inspect",
    "show-tubelets": "show_tubelets",
    "pretrain": "pretrain",
    "evaluate": "evaluate",
    "export": "export",
    "finetune": "finetune",
    "demo": "demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcl",
        description=(
            "Motion-Focused Contrastive Learning of video representations. "
            "Data flow: synth/prepare -> show-tubelets -> pretrain -> evaluate; `mcl demo` runs it all."
        ),
    )
    parser.add_argument("--version", action="version", version=f"mcl-video {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        mod = importlib.import_module(f"mcl_video.cli.{module}")
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run, _name=name)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
