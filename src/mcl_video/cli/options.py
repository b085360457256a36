"""The one command-line dialect of the config-driven commands (pretrain, finetune, evaluate):

    mcl COMMAND --config NAME|FILE [section.key=value ...] [--print-config]

``--help`` lists every key with its type, range and default (the table is built only when asked for, so
building the parser imports neither torch nor the configs).
"""

from __future__ import annotations

import argparse
import importlib
import sys

import yaml


class KeysHelp(argparse.Action):
    """``-h/--help``: the usage, the description, then the config's key table."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None,
                 config_class: str = ""):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)
        self.config_class = config_class

    def __call__(self, parser, namespace, values, option_string=None):
        from mcl_video.training.schema import describe

        module, name = self.config_class.split(":")
        cls = getattr(importlib.import_module(module), name)
        parser.epilog = (
            "keys (section.key=value; a key unique across sections may omit its section; values are YAML: "
            "0.5, true, [0.2, 1.0], {a: 1}):\n" + describe(cls))
        parser.print_help()
        parser.exit()


def add_config_arguments(parser: argparse.ArgumentParser, config_class: str, examples: str) -> None:
    """``--config``, ``--print-config``, ``key=value`` overrides and the key-listing ``--help``.

    ``config_class``: ``"module:Class"`` of the command's config."""
    parser.add_argument("-h", "--help", action=KeysHelp, config_class=config_class,
                        help="show this help, with every config key, and exit")
    parser.add_argument("--config", metavar="NAME|FILE",
                        help=f"a shipped config's name (e.g. {examples}) or a YAML file (omit: the built-in "
                             "defaults)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def print_config(config) -> int:
    from mcl_video.training.schema import config_to_dict

    sys.stdout.write(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    return 0
