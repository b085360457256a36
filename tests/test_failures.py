"""The failure modes a user can hit (docs/FAILURES.md): one test per row.

Each row asserts the exit status, the single `error:` line on stderr naming the file or key, no
traceback, and that nothing was lost (checkpoints and cache entries intact, a resume or rerun equal to
the uninterrupted run). Rows already covered elsewhere are referenced in docs/FAILURES.md, not repeated.
Everything runs on a tiny synthetic benchmark (2 classes x 4 train videos) with the tiny backbone.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mcl_video.cli import build_parser, main
from mcl_video.data.discovery import find_videos
from mcl_video.data.video import VideoReadError, read_video_info
from mcl_video.motion.cache import MotionCache, entry_path
from mcl_video.training import checkpoint as ckpt
from mcl_video.training import list_checkpoints, load_checkpoint

REPO = Path(__file__).resolve().parents[1]


def cli(capsys, args, code: int, *names: str) -> str:
    """Run `mcl args` in-process: exit status `code`, one `error:` line naming `names`, no traceback."""
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert rc == code, f"exit {rc}, stderr: {err}"
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for name in names:
        assert str(name) in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes): "nothing lost" means this is unchanged."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def bench(tmp_path_factory, tiny_pretrain_args):
    """A tiny UCF101-format benchmark, its motion cache and one finished 2-step run (checkpoints 1, 2);
    returns the folder and the `mcl pretrain` overrides of that run (less `out=`)."""
    base = tmp_path_factory.mktemp("bench")
    assert main(["synth", str(base / "data"), "--classes", "2", "--train-per-class", "4", "--test-per-class",
                 "2", "--frames", "40", "--workers", "1"]) == 0
    assert main(["prepare", str(base / "data" / "videos"), "--out", str(base / "motion"), "--clip-len", "8",
                 "--stride", "2", "--no-progress"]) == 0
    args = [*tiny_pretrain_args, f"data={base / 'data' / 'annotations'}", f"cache={base / 'motion'}"]
    assert main(["pretrain", *args, f"out={base / 'run'}"]) == 0
    return base, args


def pretrain_args(bench, out: Path, *extra: str) -> list[str]:
    return ["pretrain", *bench[1], f"out={out}", *extra]


def copy_run(bench, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(bench[0] / "run", run)
    return run


def final_weights(run: Path) -> dict:
    return load_checkpoint(list_checkpoints(run)[-1])["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---- the error policy itself ------------------------------------------------------------------------


def test_user_error_is_one_line_and_debug_shows_the_traceback(capsys, monkeypatch):
    cli(capsys, ["pretrain", "lr=-1"], 2, "lr=-1.0", "> 0")
    assert main(["--debug", "pretrain", "lr=-1"]) == 2
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("MCL_DEBUG", "1")
    assert main(["pretrain", "lr=-1"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_programming_errors_keep_their_traceback(monkeypatch):
    import mcl_video.cli.inspect as inspect_cmd

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(inspect_cmd, "run", broken)
    with pytest.raises(ZeroDivisionError):
        main(["inspect", "anything"])


def test_keyboard_interrupt_outside_training_exits_130(capsys, monkeypatch):
    import mcl_video.cli.inspect as inspect_cmd

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(inspect_cmd, "run", interrupted)
    assert cli(capsys, ["inspect", "x"], 130) == "error: interrupted (Ctrl-C)"


def test_every_option_of_every_command_has_help():
    import argparse

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {a.option_strings or a.dest}" for name, p in sub.choices.items() for a in p._actions
               if not a.help and not isinstance(a, argparse._HelpAction)]
    assert missing == []


@pytest.mark.parametrize("args, names", [
    (["prepare", "x", "--out", "y", "--workers", "0"], ["--workers", "must be >= 1"]),
    (["evaluate", "--random-init", "--data", "d", "--annotations", "a", "--workers", "-1"],
     ["--workers", "must be >= 0"]),
    (["evaluate", "--random-init", "--data", "d", "--annotations", "a", "--num-clips", "0"],
     ["--num-clips", "must be >= 1"]),
])
def test_odd_option_values_are_refused_by_the_parser(capsys, args, names):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert all(n in err.splitlines()[-1] for n in names)


# ---- pretrain: values, paths, run folder, resume ------------------------------------------------------


@pytest.mark.parametrize("override, names", [
    ("lr=-0.1", ["lr=-0.1", "> 0"]),
    ("queue_size=-5", ["queue_size=-5", ">= 1"]),
    ("queue_size=4", ["queue_size=4", "6 keys", "queue_size >= 6"]),  # 3 keys x batch 2
    ("size=16", ["size=16", "feature grid", "2x2"]),
    ("batch_size=0", ["batch_size=0", ">= 1"]),
    ("ema=1.5", ["ema=1.5", "[0, 1)"]),
    ("backbone=resnet9000", ["backbone=resnet9000", "unknown backbone"]),
    ("learning_rate=1", ["learning_rate", "did you mean 'lr'"]),
    ("resume_override=lrr", ["resume_override", "lrr"]),
])
def test_bad_config_values_are_one_line_errors(bench, tmp_path, capsys, override, names):
    cli(capsys, pretrain_args(bench, tmp_path / "run", override), 2, *names)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_missing_data_and_cache_and_benchmark_root(bench, tmp_path, capsys):
    base, _ = bench
    cli(capsys, pretrain_args(bench, tmp_path / "r", f"data={tmp_path / 'nope'}"), 2, "data=", "nope")
    cli(capsys, pretrain_args(bench, tmp_path / "r", f"cache={tmp_path / 'nope'}"), 2, "cache=",
        "mcl prepare")
    cli(capsys, pretrain_args(bench, tmp_path / "r", f"cache={base / 'data'}"), 2, "not a motion cache")
    root = base / "data"
    line = cli(capsys, pretrain_args(bench, tmp_path / "r", f"data={root}"), 2, f"data={root}")
    assert f"{base / 'data' / 'annotations'} is right there" in line


def test_unwritable_out_is_refused(bench, tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    cli(capsys, pretrain_args(bench, blocker / "run"), 2, f"out={blocker / 'run'}", "cannot create")
    cli(capsys, ["evaluate", "--random-init", "--backbone", "tiny_r2plus1d", "--data", bench[0] / "data" /
                 "videos", "--annotations", bench[0] / "data" / "annotations", "--out", blocker / "ev"],
        2, "--out", "cannot create")


def test_fresh_run_into_a_used_folder_is_refused_and_overwrite_starts_over(bench, tmp_path, capsys):
    run = copy_run(bench, tmp_path)
    before = snapshot(run)
    cli(capsys, pretrain_args(bench, run), 2, f"out={run}", "resume=true", "overwrite=true")
    assert snapshot(run) == before
    assert main(pretrain_args(bench, run, "overwrite=true", "max_steps=1")) == 0
    assert [p.name for p in list_checkpoints(run)] == ["ckpt-00000001.pt"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # the old run's lines are gone
    # the same seed and settings: the new first step equals the old run's first step
    assert_same_weights(load_checkpoint(run / "ckpt-00000001.pt")["model"],
                        load_checkpoint(bench[0] / "run" / "ckpt-00000001.pt")["model"])


@pytest.mark.parametrize("change, code, names", [
    ("lr=0.01", 2, ["lr: 0.001 -> 0.01", "resume_override=lr"]),
    ("seed=5", 2, ["seed: 0 -> 5"]),
    ("use_mal=false", 2, ["use_mal: True -> False"]),
    ("queue_size=64", 2, ["queue_size: 32 -> 64", "cannot change"]),
    ("backbone_options={widths: [4, 8, 8, 32]}", 1, ["ckpt-00000002.pt", "do not fit"]),
])
def test_resume_refuses_a_change_of_meaning(bench, tmp_path, capsys, change, code, names):
    run = copy_run(bench, tmp_path)
    before = snapshot(run)
    extra = ["resume_override=backbone_options"] if change.startswith("backbone_options") else []
    cli(capsys, pretrain_args(bench, run, "resume=true", "max_steps=3", change, *extra), code, *names)
    assert snapshot(run) == before  # checkpoints, config.yaml, env.json and metrics untouched


def test_resume_override_is_recorded(bench, tmp_path):
    run = copy_run(bench, tmp_path)
    assert main(pretrain_args(bench, run, "resume=true", "max_steps=3", "lr=0.002",
                              "resume_override=lr")) == 0
    env = json.loads((run / "env.json").read_text())
    assert env["resume_history"] == [{"step": 2, "checkpoint": "ckpt-00000002.pt",
                                      "overrides": {"lr": [0.001, 0.002]}}]
    assert load_checkpoint(list_checkpoints(run)[-1])["config"]["lr"] == 0.002


# ---- checkpoints: bad files, full disk -----------------------------------------------------------------


class Foreign:  # a class a weights-only load refuses
    pass


@pytest.mark.parametrize("kind", ["text", "empty", "garbage", "pickled-object", "missing"])
def test_bad_checkpoint_files_for_evaluate(bench, tmp_path, capsys, kind):
    path = tmp_path / "model.pt"
    if kind == "text":
        path.write_text("hello, this is a text file\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "pickled-object":
        torch.save({"model": Foreign()}, path)
    data = bench[0] / "data"
    line = cli(capsys, ["evaluate", "--checkpoint", path, "--data", data / "videos", "--annotations",
                        data / "annotations", "--out", tmp_path / "ev"], 2 if kind == "missing" else 1, path)
    assert "weights_only" not in line  # torch's advice to load unsafely never reaches the user
    if kind == "pickled-object":
        assert "Foreign" in line and "state_dict" in line


def test_torn_latest_checkpoint_on_resume_names_it(bench, tmp_path, capsys):
    run = copy_run(bench, tmp_path)
    torn = run / "ckpt-00000002.pt"
    torn.write_bytes(torn.read_bytes()[:1000])
    cli(capsys, pretrain_args(bench, run, "resume=true", "max_steps=3"), 1, torn, "delete it")
    torn.unlink()  # as the message says: then the resume continues from step 1, exactly
    assert main(pretrain_args(bench, run, "resume=true")) == 0
    assert_same_weights(final_weights(run), final_weights(bench[0] / "run"))


def test_disk_full_during_a_checkpoint_write(bench, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    real_open = open

    def full_disk_open(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        if "ckpt-00000002" in str(file) and "w" in mode:
            def write(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            fh.write = write
        return fh

    monkeypatch.setattr(ckpt, "open", full_disk_open, raising=False)
    cli(capsys, pretrain_args(bench, run), 1, run / "ckpt-00000002.pt", "disk full", "resume=true")
    monkeypatch.undo()
    assert sorted(p.name for p in run.iterdir() if "ckpt" in p.name) == ["ckpt-00000001.pt"]  # no temp file
    assert main(pretrain_args(bench, run, "resume=true")) == 0  # space freed: the resume is exact
    assert_same_weights(final_weights(run), final_weights(bench[0] / "run"))


# ---- prepare: inputs, full disk -----------------------------------------------------------------------


def test_prepare_into_a_cache_of_other_settings(bench, tmp_path, capsys):
    shutil.copytree(bench[0] / "motion", tmp_path / "cache")
    before = snapshot(tmp_path / "cache")
    cli(capsys, ["prepare", bench[0] / "data" / "videos", "--out", tmp_path / "cache", "--clip-len", "4"], 2,
        f"--out {tmp_path / 'cache'}", "other settings")
    assert snapshot(tmp_path / "cache") == before


def test_inspect_and_show_tubelets_name_a_missing_cache_or_video(bench, tmp_path, capsys):
    cli(capsys, ["inspect", tmp_path / "nope"], 2, f"CACHE {tmp_path / 'nope'}", "mcl prepare")
    cli(capsys, ["show-tubelets", tmp_path / "other.mp4", "--cache", bench[0] / "motion", "--out", tmp_path],
        1, "other.mp4", "no id ending", "mcl prepare")


def test_empty_input_folder_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    cli(capsys, ["prepare", tmp_path / "empty", "--out", tmp_path / "cache"], 1, tmp_path / "empty",
        "no videos")


def test_video_id_collision_lists_both_files(tmp_path, capsys, write_moving_square):
    (tmp_path / "v").mkdir()
    write_moving_square(tmp_path / "v" / "clip.mp4", frames=12)
    write_moving_square(tmp_path / "v" / "clip.avi", frames=12)
    cli(capsys, ["prepare", tmp_path / "v", "--out", tmp_path / "cache"], 1, tmp_path / "v" / "clip.avi",
        tmp_path / "v" / "clip.mp4", "differ only by extension")


def test_unreadable_video_is_reported_as_a_permission_error(tmp_path, monkeypatch, write_moving_square):
    path = tmp_path / "v.avi"
    write_moving_square(path, frames=12)
    if os.geteuid() == 0:  # root reads any file: simulate what a user without read permission gets
        import mcl_video.data.video as video

        monkeypatch.setattr(video.os, "access", lambda p, mode: os.fspath(p) != os.fspath(path))
    else:
        path.chmod(0)
    with pytest.raises(VideoReadError, match="permission denied"):
        read_video_info(path)


def _full_disk_prepare(bench, out: Path, capsys) -> None:
    cli(capsys, ["prepare", bench[0] / "data" / "videos", "--out", out, "--clip-len", "8", "--stride", "2",
                 "--no-progress"], 1, "disk full", "mcl prepare")


def _assert_cache_prefix_intact(bench, out: Path) -> None:
    """No temp files; every entry that was written equals the full run's; a rerun completes it exactly."""
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    full = bench[0] / "motion"
    for vid in MotionCache(out).video_ids():
        assert entry_path(out, vid).read_bytes() == entry_path(full, vid).read_bytes()


def test_disk_full_during_prepare_patched(bench, tmp_path, capsys, monkeypatch):
    import mcl_video.motion.cache as cache_mod

    out, real_open, writes = tmp_path / "cache", open, []

    def full_after_three(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        if "w" in mode and ".tmp-" in str(file):
            writes.append(file)
            if len(writes) > 3:  # meta.json and two entries fit
                def write(data):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                fh.write = write
        return fh

    monkeypatch.setattr(cache_mod, "open", full_after_three, raising=False)
    _full_disk_prepare(bench, out, capsys)
    monkeypatch.undo()
    assert len(MotionCache(out).video_ids()) == 2
    _assert_cache_prefix_intact(bench, out)
    assert main([str(a) for a in ("prepare", bench[0] / "data" / "videos", "--out", out, "--clip-len", "8",
                                  "--stride", "2", "--no-progress")]) == 0
    assert snapshot(out / "videos") == snapshot(bench[0] / "motion" / "videos")


def test_disk_full_during_prepare_on_a_small_tmpfs(bench, tmp_path, capsys):
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        _full_disk_prepare(bench, mnt / "cache", capsys)
        _assert_cache_prefix_intact(bench, mnt / "cache")
        shutil.copytree(mnt / "cache", tmp_path / "cache")  # "free space": continue elsewhere
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert main([str(a) for a in ("prepare", bench[0] / "data" / "videos", "--out", tmp_path / "cache",
                                  "--clip-len", "8", "--stride", "2", "--no-progress")]) == 0
    assert snapshot(tmp_path / "cache" / "videos") == snapshot(bench[0] / "motion" / "videos")


# ---- evaluate ----------------------------------------------------------------------------------------


def test_evaluate_user_errors(bench, tmp_path, capsys):
    data = bench[0] / "data"
    base = ["evaluate", "--data", data / "videos", "--annotations", data / "annotations", "--out", tmp_path]
    cli(capsys, [*base, "--random-init"], 2, "--random-init needs --backbone")
    cli(capsys, [*base, "--random-init", "--backbone", "nope"], 2, "--backbone nope", "unknown backbone")
    cli(capsys, [*base, "--random-init", "--backbone", "tiny_r2plus1d", "--backbone-options", "{widths"],
        2, "--backbone-options", "not valid JSON")
    cli(capsys, ["evaluate", "--random-init", "--backbone", "tiny_r2plus1d", "--data", data / "videos",
                 "--annotations", data, "--out", tmp_path], 2, "classInd.txt",
        f"{data / 'annotations'} is right there")
    (tmp_path / "empty").mkdir()
    cli(capsys, ["evaluate", "--random-init", "--backbone", "tiny_r2plus1d", "--data", tmp_path / "empty",
                 "--annotations", data / "annotations", "--out", tmp_path], 1, "--data", "none of the train")
    cli(capsys, ["evaluate", "--checkpoint", bench[0] / "run" / "ckpt-00000002.pt", "--backbone",
                 "r3d_18", *base[1:]], 1, "ckpt-00000002.pt", "keys do not fit")


# ---- training data: only unreadable videos are skipped; the 1-wide flip --------------------------------


def _dataset(bench, **options):
    from mcl_video.data import read_split
    from mcl_video.sampling import MCLPretrainDataset

    base, _ = bench
    records = read_split("ucf101", base / "data" / "annotations", 1, "train")
    config = {"clip_len": 8, "stride": 2, "size": 16, **options}
    return MCLPretrainDataset(base / "data" / "videos", records, MotionCache(base / "motion"), config,
                              (4, 1, 1))


def test_flipped_sample_with_a_one_wide_grid(bench):
    ds = _dataset(bench, flip_p=1.0)
    plan = ds.plan(0)
    target = ds.query_target(plan)  # used to raise "negative stride" for every flipped item
    want = plan.motion.alignment_target(plan.indices[0], plan.crops[0].as_tuple(), (4, 1, 1))
    np.testing.assert_array_equal(target.numpy(), want)  # flipping a 1-wide grid changes nothing
    assert ds[0]["skipped"] == 0


def test_dataset_replaces_only_unreadable_videos(bench, tmp_path, monkeypatch):
    ds = _dataset(bench)
    shutil.copytree(ds.root, tmp_path / "videos")
    ds.root = tmp_path / "videos"
    (ds.root / ds.videos[0][0]).write_bytes(b"not a video" * 100)
    item = ds[0]
    assert int(item["skipped"]) >= 1 and item["video_id"] != ds.videos[0][1]
    assert str(ds.root / ds.videos[0][0]) in ds.failures

    def bug(*args, **kwargs):
        raise TypeError("a programming error")

    monkeypatch.setattr(ds.augment, "geometric", bug)
    with pytest.raises(TypeError, match="a programming error"):  # never swallowed as "bad data"
        ds[1]


# ---- Ctrl-C, determinism ------------------------------------------------------------------------------


def test_ctrl_c_writes_a_checkpoint_after_the_step_and_resumes_exactly(bench, tmp_path):
    run, long = tmp_path / "run", ("epochs=30", "checkpoint_every=100")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "mcl_video", *pretrain_args(bench, run, *long, "max_steps=0")]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.jsonl").is_file() or not (run / "metrics.jsonl").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "Traceback" not in out + err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "interrupted (Ctrl-C) after step" in lines[0] and "resume=true" in lines[0]
    step = int(lines[0].split("after step ")[1].split(";")[0])
    assert [p.name for p in list_checkpoints(run)] == [f"ckpt-{step:08d}.pt"]
    stop = f"max_steps={step + 1}"  # one more step: equal to the uninterrupted run
    assert main(pretrain_args(bench, run, *long, stop, "resume=true")) == 0
    assert main(pretrain_args(bench, tmp_path / "ref", *long, stop)) == 0
    assert_same_weights(final_weights(run), final_weights(tmp_path / "ref"))


def test_deterministic_runs_agree_exactly_and_are_recorded(bench, tmp_path):
    threads = torch.get_num_threads()
    for name in ("a", "b"):
        assert main(pretrain_args(bench, tmp_path / name, "deterministic=true", "num_threads=2")) == 0
    assert torch.get_num_threads() == threads and not torch.are_deterministic_algorithms_enabled()
    assert_same_weights(final_weights(tmp_path / "a"), final_weights(tmp_path / "b"))
    env = json.loads((tmp_path / "a" / "env.json").read_text())
    assert env["deterministic"] is True and env["torch_threads"] == 2


def test_find_videos_is_unchanged_for_distinct_names(tmp_path, write_moving_square):
    (tmp_path / "a").mkdir()
    write_moving_square(tmp_path / "a" / "clip.mp4", frames=8)
    write_moving_square(tmp_path / "a" / "clip2.avi", frames=8)
    assert [p.name for p in find_videos(tmp_path)] == ["clip.mp4", "clip2.avi"]


def test_resume_treats_keys_unknown_to_the_saved_run_as_their_defaults(tmp_path):
    # a checkpoint written before a key existed (e.g. order_head) resumes; a real change is still refused
    from mcl_video.training.config import ConfigError, PretrainConfig, config_to_dict
    from mcl_video.training.runfolder import resume_conflicts

    config = PretrainConfig()
    current = config_to_dict(config)
    saved = {k: v for k, v in current.items() if k not in ("order_head", "init")}
    assert resume_conflicts(config, saved, current, tmp_path / "ckpt.pt") == {}
    with pytest.raises(ConfigError, match="order_head"):
        resume_conflicts(config, saved, {**current, "order_head": "mlp"}, tmp_path / "ckpt.pt")
