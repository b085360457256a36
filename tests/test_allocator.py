"""`mcl` re-executes itself with tcmalloc preloaded: the decision, the opt-out and the env.json record."""

from __future__ import annotations

import os
import sys

import pytest

from mcl_video import allocator, cli
from mcl_video.allocator import MARKER, OPT_OUT, allocator_status, find_tcmalloc, reexec_plan
from mcl_video.training.config import environment_info

LIB = "/opt/x/libtcmalloc_minimal.so.4"


def found():
    return LIB


def missing():
    return None


def test_reexec_plan_preloads_the_library_once():
    env = reexec_plan({"PATH": "/bin"}, "linux", found)
    assert env == {"PATH": "/bin", "LD_PRELOAD": LIB, MARKER: LIB}
    assert reexec_plan(env, "linux", found) is None  # the re-executed process does not loop
    kept = reexec_plan({"LD_PRELOAD": "/a/libother.so"}, "linux", found)
    assert kept["LD_PRELOAD"] == f"{LIB}:/a/libother.so"  # the user's preloads stay, after tcmalloc


@pytest.mark.parametrize("environ, platform, find", [
    ({OPT_OUT: "1"}, "linux", found),  # opted out
    ({OPT_OUT: "yes"}, "linux", found),
    ({"LD_PRELOAD": "/usr/lib/libtcmalloc.so.4"}, "linux", found),  # the user preloads it already
    ({}, "linux", missing),  # not installed
    ({}, "darwin", found),  # LD_PRELOAD is Linux's
])
def test_no_reexec(environ, platform, find):
    assert reexec_plan(environ, platform, find) is None


def test_opt_out_zero_or_empty_means_not_set():
    assert reexec_plan({OPT_OUT: "0"}, "linux", found)["LD_PRELOAD"] == LIB
    assert reexec_plan({OPT_OUT: ""}, "linux", found)["LD_PRELOAD"] == LIB


def test_find_tcmalloc_searches_the_directories_in_order(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    assert find_tcmalloc([str(first), str(second)]) is None
    (second / "libtcmalloc.so.4").write_bytes(b"")
    assert find_tcmalloc([str(first), str(second)]) == str(second / "libtcmalloc.so.4")
    (first / "libtcmalloc_minimal.so.4").write_bytes(b"")
    assert find_tcmalloc([str(first), str(second)]) == str(first / "libtcmalloc_minimal.so.4")


def test_status_names_who_preloaded_what():
    assert allocator_status({}) == "glibc malloc"
    assert allocator_status({OPT_OUT: "1"}) == f"glibc malloc ({OPT_OUT} set)"
    assert allocator_status({"LD_PRELOAD": LIB, MARKER: LIB}) == f"tcmalloc (preloaded by mcl: {LIB})"
    assert allocator_status({"LD_PRELOAD": LIB}) == "tcmalloc (LD_PRELOAD set by the user)"
    assert environment_info()["allocator"] == allocator_status(os.environ)  # recorded in env.json


def test_the_command_reexecs_itself_unless_opted_out(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(os, "execve", lambda *args: calls.append(args))
    monkeypatch.setattr(allocator, "find_tcmalloc", found)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(sys, "argv", ["mcl", "--version"])
    for name in (OPT_OUT, MARKER, "LD_PRELOAD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(OPT_OUT, "1")
    with pytest.raises(SystemExit):
        cli.main()  # --version exits in the parser, after the decision
    assert calls == []
    monkeypatch.delenv(OPT_OUT)
    with pytest.raises(SystemExit):
        cli.main()  # execve is patched out, so the process goes on after "re-executing"
    (executable, argv, env), = calls
    assert executable == sys.executable and argv == [sys.executable, "-m", "mcl_video", "--version"]
    assert env["LD_PRELOAD"] == LIB and env[MARKER] == LIB
    with pytest.raises(SystemExit):
        cli.main(["--version"])  # a call from Python never re-executes
    assert len(calls) == 1
