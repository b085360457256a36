import subprocess
import sys

import pytest

from mcl_video.cli import COMMANDS, build_parser, main


def test_help_lists_every_command(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_help(name, capsys):
    # `mcl NAME --help` must print that command's own usage and exit 0 while parsing (the parser only:
    # a broken --help must fail here, not run the command)
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args([name, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: mcl {name}"), out[:200]
    assert "--debug" in out  # the option every sub-command gets from the shared parser


def test_top_level_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith("usage: mcl")


def test_python_dash_m_runs():
    out = subprocess.run([sys.executable, "-m", "mcl_video", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "mcl-video" in out.stdout
