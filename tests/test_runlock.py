"""One writer per folder (`mcl_video.runlock`): a second writer is refused naming the holder, a killed
holder's lock is taken over, prepare shards of one split run side by side."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mcl_video import runlock
from mcl_video.cli import main
from mcl_video.motion.cache import MotionCache
from mcl_video.runlock import FolderLockedError, RunLock, live_locks, lock_path, run_lock
from test_motion_cache import write_moving_square

SRC = str(Path(__file__).resolve().parents[1] / "src")
HOLD = """
import sys, time
from mcl_video.runlock import RunLock
lock = RunLock(sys.argv[1], "test holder", name=sys.argv[2] or None).acquire()
print("held", flush=True)
sys.stdin.readline()
lock.release()
"""


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def hold(folder: Path, name: str = "") -> subprocess.Popen:
    """Another process holding the lock of ``folder`` until its stdin gets a line."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), name], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    proc = hold(tmp_path)
    try:
        with pytest.raises(FolderLockedError) as err:
            RunLock(tmp_path, "mcl evaluate").acquire()
        message = str(err.value)
        assert "\n" not in message and f"pid {proc.pid}" in message
        assert f"host {socket.gethostname()}" in message and " since 20" in message and "UTC" in message
        assert "mcl evaluate refused" in message and str(tmp_path) in message
        assert live_locks(tmp_path)[""]["pid"] == proc.pid
    finally:
        proc.communicate("\n", timeout=30)
    assert not lock_path(tmp_path).exists()  # released: the file is gone
    with run_lock(tmp_path, "after") as lock:
        assert lock.took_over is None
        info = json.loads(lock_path(tmp_path).read_text())
        assert info["pid"] == os.getpid() and info["what"] == "after"
    assert live_locks(tmp_path) == {}


def test_two_locks_in_one_process_conflict_too(tmp_path):
    with run_lock(tmp_path, "first"):
        with pytest.raises(FolderLockedError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path, "second").acquire()


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path, caplog):
    proc = hold(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert json.loads(lock_path(tmp_path).read_text())["pid"] == proc.pid  # the file stays behind
    assert live_locks(tmp_path) == {}  # ... but nobody holds it
    with caplog.at_level("WARNING"), run_lock(tmp_path, "next") as lock:
        assert lock.took_over["pid"] == proc.pid
        assert json.loads(lock_path(tmp_path).read_text())["pid"] == os.getpid()
    assert f"pid {proc.pid}" in caplog.text and "stale" in caplog.text


def _no_flock(monkeypatch):
    def refuse(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(runlock.fcntl, "flock", refuse)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_without_flock_a_dead_pid_on_this_host_is_taken_over_and_a_live_one_refused(tmp_path, monkeypatch):
    _no_flock(monkeypatch)
    dead = _dead_pid()
    path = lock_path(tmp_path)
    path.write_text(json.dumps({"pid": dead, "host": socket.gethostname(), "started_utc": "then"}))
    with run_lock(tmp_path, "taker") as lock:
        assert not lock.flock and lock.took_over["pid"] == dead
        with pytest.raises(FolderLockedError, match=f"pid {os.getpid()}"):  # ours is alive
            RunLock(tmp_path, "second").acquire()
    assert not path.exists()
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started_utc": "then"}))
    with pytest.raises(FolderLockedError) as err:  # another host: cannot tell, so refuse with the fix
        RunLock(tmp_path, "third").acquire()
    assert "host elsewhere" in str(err.value) and f"delete {path}" in str(err.value)


def test_run_folder_lock_is_not_a_used_folder(tmp_path):
    from mcl_video.training.config import PretrainConfig
    from mcl_video.training.runfolder import check_run_folder, lock_run_folder

    config = PretrainConfig(out=str(tmp_path / "run"))
    with lock_run_folder(config):
        check_run_folder(config)  # the lock file alone does not make the folder "used"
        with pytest.raises(FolderLockedError, match="pretrain run.out="):
            lock_run_folder(config)
    lock_run_folder(config).release()


# ---- commands that take the lock ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for i in range(4):
        (root / f"c{i % 2}").mkdir(exist_ok=True)
        write_moving_square(root / f"c{i % 2}" / f"v{i}.mp4", frames=12, hw=(32, 40), seed=i)
    return root


PREPARE = ["--clip-len", "4", "--stride", "1", "--frame-window", "4", "--resize-short", "none",
           "--no-progress"]


def test_two_prepare_shards_run_side_by_side_into_one_cache(videos, tmp_path):
    out = tmp_path / "cache"
    cmd = [sys.executable, "-m", "mcl_video", "prepare", str(videos), "--out", str(out), *PREPARE]
    procs = [subprocess.Popen([*cmd, "--shard", f"{i}/2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=_env()) for i in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (stdout, stderr) in zip(procs, results):
        assert proc.returncode == 0, stderr
        assert "2 prepared" in stdout, stdout
    assert len(MotionCache(out).video_ids()) == 4
    assert not list(out.glob(".mcl-lock*"))  # every shard released its lock


def test_a_running_shard_refuses_itself_and_other_splits_but_not_its_siblings(videos, tmp_path, capsys):
    out = tmp_path / "cache"
    proc = hold(out, "prepare-0-of-2")
    try:
        for shard in ("0/2", "0/3"):
            rc = main(["prepare", str(videos), "--out", str(out), *PREPARE, "--shard", shard])
            err = capsys.readouterr().err
            assert rc == 1 and err.count("error:") == 1 and f"pid {proc.pid}" in err, err
            assert "Traceback" not in err
        assert "another split" in err
        assert main(["prepare", str(videos), "--out", str(out), *PREPARE, "--shard", "1/2"]) == 0
    finally:
        proc.communicate("\n", timeout=30)
    assert len(MotionCache(out).video_ids()) == 2  # shard 1 of 2


def test_evaluate_and_transcode_refuse_a_folder_in_use(videos, tmp_path, capsys):
    proc = hold(tmp_path / "busy")
    try:
        rc = main(["evaluate", "--random-init", "--backbone", "tiny_r2plus1d", "--data", str(videos),
                   "--annotations", str(videos), "--dataset", "folder", "--out", str(tmp_path / "busy")])
        err = capsys.readouterr().err
        assert rc == 1 and err.count("error:") == 1 and f"pid {proc.pid}" in err and "evaluate" in err, err
        rc = main(["transcode", str(videos), str(tmp_path / "busy"), "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 1 and err.count("error:") == 1 and f"pid {proc.pid}" in err and "transcode" in err, err
    finally:
        proc.communicate("\n", timeout=30)
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == []  # nothing was written
