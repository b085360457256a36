"""Checkpoints: atomic under SIGKILL, last K kept, RNG round trip, weights_only loading."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from mcl_video.training.checkpoint import (
    atomic_save,
    capture_rng,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)

# a child process: writes checkpoint 1, then starts checkpoint 2 and freezes at `{where}`
CHILD = textwrap.dedent("""
    import os, sys, time, torch
    from mcl_video.training import checkpoint as ckpt
    run = sys.argv[1]
    ckpt.save_checkpoint(run, {{"model": {{"w": torch.ones(3)}}, "step": 1, "config": {{}}}}, keep=3)
    where = "{where}"
    if where == "mid-write":  # torch.save has written part of the file
        def partial_save(obj, f):
            f.write(b"PK\\x03\\x04" + b"\\0" * 4096)
            f.flush()
            print("frozen", flush=True)
            time.sleep(60)
        ckpt.torch.save = partial_save
    else:  # the temporary file is complete and synced, os.replace has not run
        def frozen_replace(src, dst):
            print("frozen", flush=True)
            time.sleep(60)
        ckpt.os.replace = frozen_replace
    ckpt.save_checkpoint(run, {{"model": {{"w": torch.zeros(3)}}, "step": 2, "config": {{}}}}, keep=3)
""")


@pytest.mark.parametrize("where", ["mid-write", "before-rename"])
def test_sigkill_during_write_keeps_previous_checkpoint(tmp_path, where):
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(where=where), str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "frozen"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert any(p.name.startswith(".ckpt-00000002.pt.tmp-") for p in tmp_path.iterdir())  # the torn file
    assert list_checkpoints(tmp_path) == [checkpoint_path(tmp_path, 1)]
    state = load_checkpoint(latest_checkpoint(tmp_path))
    assert state["step"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    save_checkpoint(tmp_path, {"model": {}, "step": 3, "config": {}}, keep=3)  # cleans the stale file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-00000001.pt", "ckpt-00000003.pt"]


def test_keep_last_k_and_order(tmp_path):
    for step in (5, 10, 15, 20, 100):
        save_checkpoint(tmp_path, {"model": {}, "step": step, "config": {}}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-00000020.pt", "ckpt-00000100.pt"]
    assert latest_checkpoint(tmp_path).name == "ckpt-00000100.pt"
    assert latest_checkpoint(tmp_path / "missing") is None


def test_torn_or_foreign_files_give_a_clear_error(tmp_path):
    bad = tmp_path / "ckpt-00000001.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="ckpt-00000001.pt: not a loadable checkpoint"):
        load_checkpoint(bad)
    atomic_save({"weights": torch.ones(1)}, bad)
    with pytest.raises(RuntimeError, match=r"lacks \['config', 'model', 'step'\]"):
        load_checkpoint(bad)


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    state = capture_rng()
    expected = (random.random(), np.random.normal(), np.random.rand(3), torch.rand(4))
    atomic_save({"model": {}, "step": 0, "config": {}, "rng": [state]}, tmp_path / "ckpt-00000000.pt")
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng(load_checkpoint(tmp_path / "ckpt-00000000.pt")["rng"][0])
    got = (random.random(), np.random.normal(), np.random.rand(3), torch.rand(4))
    assert got[0] == expected[0] and got[1] == expected[1]
    assert np.array_equal(got[2], expected[2]) and torch.equal(got[3], expected[3])
