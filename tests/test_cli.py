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
