import subprocess
import sys

from mcl_video.cli import COMMANDS, build_parser, main


def test_help_lists_every_command(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_every_command_has_help():
    parser = build_parser()
    for name in COMMANDS:
        try:
            parser.parse_args([name, "--help"])
        except SystemExit as e:
            assert e.code == 0


def test_python_dash_m_runs():
    out = subprocess.run([sys.executable, "-m", "mcl_video", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "mcl-video" in out.stdout


_NO_TORCH = """
import sys
from mcl_video.cli import main
try:
    main({args!r})
except SystemExit:
    pass
heavy = ("torch", "numpy", "cv2", "mcl_video.training", "mcl_video.models")
heavy = sorted(m for m in heavy if m in sys.modules)
print("imported:" + ",".join(heavy))
"""


def test_help_and_version_import_neither_torch_nor_any_command():
    for args in (["--help"], ["--version"], []):
        out = subprocess.run([sys.executable, "-c", _NO_TORCH.format(args=args)], capture_output=True,
                             text=True, check=True).stdout
        assert out.splitlines()[-1] == "imported:", (args, out[-300:])


def test_the_command_list_is_the_modules_own_help():
    import argparse
    import importlib

    for name, (module, help_text) in COMMANDS.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"mcl_video.cli.{module}").add_parser(sub)
        assert sub._choices_actions[0].dest == name and sub._choices_actions[0].help == help_text


def test_only_the_named_command_is_built(capsys):
    parser = build_parser(["export", "--help"])
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert "--format" in sub.choices["export"].format_help()
    assert "--config" not in sub.choices["pretrain"].format_help()  # listed by name only
