"""``prepare`` / ``mcl prepare`` / ``mcl inspect``: failures, resuming, shards, the CLI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mcl_video.cli import main
from mcl_video.motion import clip_score, window_map
from mcl_video.motion.cache import CacheSettings, MotionCache, entry_path
from mcl_video.motion.prepare import _MotionAccumulator, parse_shard, prepare, select_shard

SETTINGS = CacheSettings(clip_len=4, stride=2, border=2, field_short=12)


@pytest.fixture(scope="module")
def videos(tmp_path_factory, write_moving_square):
    root = tmp_path_factory.mktemp("videos")
    (root / "walk").mkdir()
    (root / "run").mkdir()
    write_moving_square(root / "walk" / "v1.avi", frames=24, seed=1)
    write_moving_square(root / "walk" / "v2.mp4", frames=20, seed=2, speed=(2, 1))
    write_moving_square(root / "run" / "v3.avi", frames=18, seed=3)
    return root


def _arrays(cache_dir, vid):
    with np.load(entry_path(cache_dir, vid)) as z:
        return {k: z[k] for k in z.files}


def test_prepare_folder_and_resume_equals_uninterrupted(videos, tmp_path):
    full = prepare(videos, tmp_path / "full", SETTINGS, progress=False)
    assert full.ok and (full.total, full.prepared, full.skipped, full.frames) == (3, 3, 0, 62)
    ids = MotionCache(tmp_path / "full").video_ids()
    assert ids == ["run/v3", "walk/v1", "walk/v2"]
    # a run "killed" after one video, with a half-written temporary file left behind ...
    part = tmp_path / "part"
    first = prepare(videos, part, SETTINGS, shard="0/3", progress=False)
    assert first.prepared == 1
    (part / "videos" / "walk" / ".v1.npz.tmp-999").parent.mkdir(parents=True, exist_ok=True)
    (part / "videos" / "walk" / ".v1.npz.tmp-999").write_bytes(b"\x00" * 10)
    # ... then rerun: skips the finished video, prepares the rest, same content as the full run
    again = prepare(videos, part, SETTINGS, progress=False)
    assert (again.prepared, again.skipped) == (2, 1)
    assert MotionCache(part).video_ids() == ids
    for vid in ids:
        a, b = _arrays(tmp_path / "full", vid), _arrays(part, vid)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{vid}:{k}")


def test_corrupt_video_is_named_skipped_and_fails_the_run(videos, tmp_path, capsys):
    root = tmp_path / "root"
    shutil.copytree(videos, root)
    (root / "run" / "broken.mp4").write_bytes(b"this is not a video" * 50)
    good = root / "walk" / "v1.avi"
    (root / "walk" / "truncated.avi").write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    out = tmp_path / "cache"
    status = main(["prepare", str(root), "--out", str(out), "--clip-len", "4", "--border", "2",
                   "--no-progress"])
    printed = capsys.readouterr().out
    assert status == 1
    assert "broken.mp4" in printed and "truncated.avi" in printed and "2 failed" in printed
    assert MotionCache(out).video_ids() == ["run/v3", "walk/v1", "walk/v2"]
    assert set(MotionCache(out).failures()) == {"run/broken", "walk/truncated"}
    assert main(["inspect", str(out), "--root", str(root)]) == 0
    report = capsys.readouterr().out
    assert "videos           3" in report and "failed           2" in report
    assert "run/broken" in report and "missing          2" in report and "dis" in report


def test_shards_cover_every_video_once():
    ids = [f"c{i % 3}/v{i:03d}" for i in range(23)]
    for n in (1, 2, 4, 7):
        shards = [select_shard(ids, f"{i}/{n}") for i in range(n)]
        merged = sorted(x for s in shards for x in s)
        assert merged == sorted(ids)
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert select_shard(ids, "1/4") == select_shard(list(reversed(ids)), (1, 4))
    for bad in ("4/4", "-1/2", "x", "1/0"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_workers_pool_matches_in_process(videos, tmp_path):
    two = prepare(videos, tmp_path / "pool", SETTINGS, workers=2, progress=False)
    assert two.ok and two.prepared == 3
    one = prepare(videos, tmp_path / "one", SETTINGS, shard="2/3", progress=False)
    vid = MotionCache(tmp_path / "one").video_ids()[0]
    assert one.prepared == 1
    for k, a in _arrays(tmp_path / "one", vid).items():
        np.testing.assert_array_equal(a, _arrays(tmp_path / "pool", vid)[k])


@pytest.mark.shared
def test_real_clip_via_cli(shared, tmp_path, capsys):
    root = tmp_path / "clips"
    root.mkdir()
    shutil.copy(shared("data", "clips", "mmaction2_part_0.mp4"), root)
    out = tmp_path / "cache"
    assert main(["prepare", str(root), "--out", str(out), "--resize-short", "128", "--no-progress"]) == 0
    vm = MotionCache(out).get("mmaction2_part_0")
    assert vm.num_frames == 32 and vm.frame_hw == (256, 340)
    assert vm.clip_scores.shape == (1,) and vm.fields.shape[1:] == (31, 24, 32)
    assert np.isfinite(vm.frame_maps).all() and vm.frame_maps.max() > 0


def test_cli_dataset_mode_prepares_the_train_and_test_lists(videos, tmp_path, capsys):
    # UCF101-format lists over the fixture's folders; v2 only in the test list, one listed file missing
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "classInd.txt").write_text("1 run\r\n2 walk\r\n")
    (ann / "trainlist01.txt").write_text("walk/v1.avi 2\r\nrun/v3.avi 1\r\nrun/gone.avi 1\r\n")
    (ann / "testlist01.txt").write_text("walk/v2.mp4\r\n")
    out = tmp_path / "cache"
    args = ["--clip-len", "4", "--border", "2", "--field-short", "12", "--no-progress"]
    assert main(["prepare", str(ann), "--dataset", "ucf101", "--video-root", str(videos),
                 "--out", str(out), *args]) == 0
    assert MotionCache(out).video_ids() == ["run/v3", "walk/v1", "walk/v2"]
    # the same entries as preparing the folder directly with the same settings
    assert main(["prepare", str(videos), "--out", str(tmp_path / "folder"), *args]) == 0
    for vid in ("run/v3", "walk/v1", "walk/v2"):
        a, b = _arrays(out, vid), _arrays(tmp_path / "folder", vid)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{vid}:{k}")
    # --dataset without --video-root, or over a folder without split files, is a usage error saying so
    capsys.readouterr()
    assert main(["prepare", str(ann), "--dataset", "ucf101", "--out", str(tmp_path / "x"), *args]) == 2
    assert "--video-root" in capsys.readouterr().err
    assert main(["prepare", str(videos), "--dataset", "ucf101", "--video-root", str(videos),
                 "--out", str(tmp_path / "x"), *args]) == 2
    assert str(videos) in capsys.readouterr().err


def test_streaming_window_sums_stay_exact_over_a_long_video():
    # 200 flow frames (three refreshes of the running sums): strong motion, then motion 1000x weaker,
    # where float32 add/subtract leftovers of the strong frames would show; every frame map and clip
    # score is checked against the maps computed directly from its window
    rng = np.random.default_rng(0)
    n, hw = 200, (40, 52)
    amp = np.where(np.arange(n) < 90, 20.0, 0.02)[:, None, None]
    u, v = (rng.uniform(-1, 1, size=(2, n, *hw)) * amp).astype(np.float32)
    settings = CacheSettings(clip_len=8, stride=2, frame_window=8, border=2)
    acc = _MotionAccumulator(settings, hw)
    for t in range(n):
        acc.push(u[t], v[t])
    arrays, frames = acc.finish()
    assert frames == n + 1 and arrays["frame_maps"].shape == (n + 1, 7, 7)
    peak = arrays["frame_maps"].max()
    for t in range(n + 1):
        lo, hi = max(0, t - 4), min(n, t + 4)
        exact = window_map(u[lo:hi], v[lo:hi], (7, 7), border=2)
        np.testing.assert_allclose(arrays["frame_maps"][t], exact, rtol=1e-4, atol=1e-6 * peak,
                                   err_msg=f"frame {t}")
    assert arrays["clip_scores"].shape == (n + 1 - 16 + 1,)
    for s, score in enumerate(arrays["clip_scores"]):
        assert score == pytest.approx(clip_score(u[s:s + 16], v[s:s + 16], border=2), rel=1e-4)


def _children(pid: int) -> dict[int, str]:
    """``{pid: command line}`` of the live processes whose parent is ``pid`` (Linux /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry.name)] = cmdline
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"  # a zombie has exited, only its reaping is pending


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_killed_parent(videos, tmp_path):
    # the parent stalls inside the pool after the first finished video, then gets SIGKILL: no cleanup
    # code of its own runs, yet its workers must end within seconds (the kernel kills them)
    script = f"""
import importlib, time
P = importlib.import_module("mcl_video.motion.prepare")
results = P._iter_results
def stalled(*args, **kwargs):
    for item in results(*args, **kwargs):
        yield item
        time.sleep(600)
P._iter_results = stalled
P.prepare({str(videos)!r}, {str(tmp_path / "cache")!r}, P.CacheSettings(clip_len=4, border=2), workers=2,
          progress=False)
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    parent = subprocess.Popen([sys.executable, "-c", script], env=env)
    children: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 60
        workers: dict[int, str] = {}
        while time.monotonic() < deadline and parent.poll() is None:
            workers = {p: c for p, c in _children(parent.pid).items() if "spawn_main" in c}
            if len(workers) == 2 and list((tmp_path / "cache").rglob("*.npz")):
                break
            time.sleep(0.1)
        assert parent.poll() is None and len(workers) == 2, (parent.poll(), workers)
        children = _children(parent.pid)  # the workers and multiprocessing's resource tracker
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(map(_alive, children)):
            time.sleep(0.1)
        assert not [c for p, c in children.items() if _alive(p)]
    finally:  # a failed run leaves nothing behind either
        parent.kill()
        for pid in [*_children(parent.pid), *children]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_rerun_prepares_corrupt_entries_again_and_inspect_lists_them(videos, tmp_path, capsys):
    out = tmp_path / "cache"
    assert prepare(videos, out, SETTINGS, progress=False).prepared == 3
    before = _arrays(out, "walk/v1")
    path = entry_path(out, "walk/v1")
    path.write_bytes(path.read_bytes()[:200])  # a truncated entry (e.g. a disk that filled up)
    assert main(["inspect", str(out)]) == 0
    report = capsys.readouterr().out
    assert "corrupt          1" in report and "walk/v1: does not load" in report
    assert "border 2 px" in report  # explicit; "auto" reports the pixels its entries used
    again = prepare(videos, out, SETTINGS, progress=False)
    assert (again.prepared, again.skipped) == (1, 2)  # not trusted as done
    after = _arrays(out, "walk/v1")
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])
    assert MotionCache(out).bad_entries() == {}
