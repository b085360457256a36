"""No silent wrong result (docs/FAILURES.md): finite state or nothing written, fingerprinted caches,
errors named right, outputs complete or absent, data discovery that reports."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch

from mcl_video.cli import main
from mcl_video.data import read_split
from mcl_video.data.discovery import (
    SymlinkLoopError,
    UnreadableFolderError,
    find_videos,
    source_changed,
    source_fingerprint,
)
from mcl_video.data.splits import AnnotationError, SplitChoiceError
from mcl_video.errors import out_of_memory_error
from mcl_video.evaluation.encoder import load_encoder
from mcl_video.models import build_backbone
from mcl_video.motion.cache import MotionCache, cache_conflicts, entry_source
from mcl_video.torchfile import CheckpointError, non_finite_tensors, safe_load
from mcl_video.training import checkpoint as ckpt
from mcl_video.training.logger import MetricLogger, NonFiniteMetricError
from test_motion_cache import write_moving_square as _write_video


def write_moving_square(path: Path, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return _write_video(path, **options)


def one_error(capsys, args, code: int, *names) -> str:
    """`mcl args` exits `code` with one `error:` line naming `names`, no traceback."""
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert rc == code, f"exit {rc}: {err}"
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for name in names:
        assert str(name) in lines[0], lines[0]
    return lines[0]


def strict_json(line: str):
    def refuse(token):
        raise ValueError(f"{token} is not JSON")

    return json.loads(line, parse_constant=refuse)


def tiny_state(nan: bool = False) -> dict:
    torch.manual_seed(0)
    state = build_backbone("tiny_r2plus1d").state_dict()
    if nan:
        name = next(k for k, v in state.items() if v.is_floating_point())
        state[name] = state[name].clone()
        state[name].view(-1)[0] = float("nan")
    return state


# ---- finite state or nothing ----------------------------------------------------------------------------


def test_no_checkpoint_from_non_finite_weights(tmp_path):
    good = {"model": {"w": torch.ones(3)}, "step": 1, "config": {}}
    ckpt.save_checkpoint(tmp_path, good, keep=1)
    before = (tmp_path / "ckpt-00000001.pt").read_bytes()
    bad = {"model": {"w": torch.tensor([1.0, float("inf"), 2.0])}, "step": 2, "config": {}}
    with pytest.raises(ckpt.NonFiniteStateError) as err:
        ckpt.save_checkpoint(tmp_path, bad, keep=1)
    assert "step 2" in str(err.value) and "w" in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-00000001.pt"]  # not pruned, no temp file
    assert (tmp_path / "ckpt-00000001.pt").read_bytes() == before
    assert non_finite_tensors({"a": [torch.zeros(2), torch.tensor([float("nan")])], "b": torch.arange(3)}) \
        == ["a.1"]


def test_metrics_log_refuses_non_finite_values_and_stays_json(tmp_path):
    config = SimpleNamespace(run=SimpleNamespace(log_every=1, tensorboard=False, progress=False))
    logger = MetricLogger(tmp_path, True, 0, 3, config, samples_per_step=2)
    logger.step(1, 0, {"loss": 1.5, "lr": 0.1}, 0.5)
    with pytest.raises(NonFiniteMetricError) as err:
        logger.step(2, 0, {"loss": 1.4, "lr": float("inf")}, 0.5)
    assert "lr=inf" in str(err.value) and "step 2" in str(err.value)
    logger.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [strict_json(line)["step"] for line in lines] == [1]


def test_evaluate_and_export_refuse_non_finite_weights(tmp_path, capsys):
    torch.save(tiny_state(nan=True), tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="NaN/inf"):
        load_encoder(tmp_path / "nan.pt", backbone="tiny_r2plus1d")
    one_error(capsys, ["export", tmp_path / "nan.pt", "--format", "torchvision", "--out", tmp_path / "e.pth",
                       "--backbone", "tiny_r2plus1d"], 1, "nan.pt", "NaN/inf")
    assert not (tmp_path / "e.pth").exists()
    one_error(capsys, ["evaluate", "--checkpoint", tmp_path / "nan.pt", "--backbone", "tiny_r2plus1d",
                       "--data", tmp_path, "--annotations", tmp_path, "--out", tmp_path / "ev"], 1,
              "nan.pt", "NaN/inf")


# ---- export: the atomic writer --------------------------------------------------------------------------


def test_export_into_a_folder_or_onto_a_full_disk_leaves_nothing(tmp_path, capsys, monkeypatch):
    import mcl_video.torchfile as torchfile

    torch.manual_seed(0)
    torch.save(build_backbone("r3d_18").state_dict(), tmp_path / "r3d.pt")
    (tmp_path / "folder").mkdir()
    base = ["export", tmp_path / "r3d.pt", "--format", "torchvision", "--backbone", "r3d_18"]
    one_error(capsys, [*base, "--out", tmp_path / "folder"], 2, "is a folder", "encoder.pth")
    assert list((tmp_path / "folder").iterdir()) == []
    real_open = open

    def full(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        if "w" in mode:
            def write(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            fh.write = write
        return fh

    monkeypatch.setattr(torchfile, "open", full, raising=False)
    one_error(capsys, [*base, "--out", tmp_path / "out" / "enc.pth"], 1, "enc.pth", "disk full")
    assert list((tmp_path / "out").iterdir()) == []  # no .tmp left behind


# ---- fingerprints ---------------------------------------------------------------------------------------

PREPARE = ["--clip-len", "4", "--stride", "1", "--frame-window", "4", "--resize-short", "none",
           "--no-progress"]


def test_prepare_redoes_an_entry_whose_video_changed(tmp_path, capsys):
    videos, out = tmp_path / "videos", tmp_path / "cache"
    videos.mkdir()
    for i in range(2):
        write_moving_square(videos / f"v{i}.mp4", frames=12, hw=(32, 40), seed=i)
    assert main(["prepare", str(videos), "--out", str(out), *PREPARE]) == 0
    first = MotionCache(out).get("v0").frame_maps.copy()
    assert entry_source(out, "v0") == source_fingerprint(videos / "v0.mp4")
    capsys.readouterr()
    os.utime(videos / "v1.mp4", ns=(1, 1))  # only the mtime: the hash says it is the same video
    write_moving_square(videos / "v0.mp4", frames=12, hw=(32, 40), seed=7, speed=(2, 1))  # replaced
    assert source_changed(entry_source(out, "v0"), videos / "v0.mp4") is not None
    assert source_changed(entry_source(out, "v1"), videos / "v1.mp4") is None
    assert main(["prepare", str(videos), "--out", str(out), *PREPARE]) == 0
    assert "1 prepared" in capsys.readouterr().out
    assert entry_source(out, "v0") == source_fingerprint(videos / "v0.mp4")
    assert not np.array_equal(MotionCache(out).get("v0").frame_maps, first)


def test_cache_fingerprint_and_conflicts(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_moving_square(videos / "v.mp4", frames=8, hw=(32, 40))
    assert main(["prepare", str(videos), "--out", str(tmp_path / "c"), *PREPARE]) == 0
    now = MotionCache(tmp_path / "c").fingerprint()
    assert {"format", "version", "flow_backend", "border", "frame_window", "clip_len", "stride"} <= set(now)
    assert (now["version"], now["frame_window"], now["clip_len"]) == (4, 4, 4)
    json.dumps(now)  # JSON-ready: goes into checkpoints
    assert cache_conflicts(json.loads(json.dumps(now)), now) == {}  # lists and tuples alike
    assert cache_conflicts(None, now) == {} and cache_conflicts({}, now) == {}
    saved = dict(now, flow_backend="tvl1", border=8)
    assert cache_conflicts(saved, now) == {"border": [8, "auto"], "flow_backend": ["tvl1", "dis"]}


def test_transcode_refuses_a_folder_of_unknown_copies(tmp_path, capsys):
    write_moving_square(tmp_path / "src" / "v.mp4", frames=8, hw=(32, 40))
    write_moving_square(tmp_path / "out" / "old.mp4", frames=8, hw=(32, 40))
    one_error(capsys, ["transcode", tmp_path / "src", tmp_path / "out", "--no-progress"], 2,
              "already holds 1 video", "transcode.json")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["old.mp4"]


# ---- errors named right ---------------------------------------------------------------------------------


def test_disk_full_during_transcode_stops_at_once_naming_the_folder(tmp_path, capsys, monkeypatch):
    import mcl_video.data.transcode as transcode_mod

    for i in range(3):
        write_moving_square(tmp_path / "src" / f"v{i}.mp4", frames=8, hw=(32, 40), seed=i)
    calls = []

    def full(src, tmp, settings, threads):
        calls.append(src)
        Path(tmp).write_bytes(b"partial")
        av.error.err_check(-errno.ENOSPC, str(tmp))  # what PyAV raises on a full disk

    monkeypatch.setattr(transcode_mod, "_encode", full)
    line = one_error(capsys, ["transcode", tmp_path / "src", tmp_path / "out", "--no-progress"], 1,
                     tmp_path / "out", "disk full")
    assert "corrupt" not in line and len(calls) == 1  # not blamed on the video; no other video tried
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["transcode.json"]  # no temp file


def test_missing_or_bad_raft_weights_is_one_usage_error_before_any_video(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_moving_square(videos / "v.mp4", frames=8, hw=(32, 40))
    base = ["prepare", videos, "--out", tmp_path / "c", "--flow", "raft", "--no-progress"]
    one_error(capsys, [*base, "--raft-weights", tmp_path / "none.pth"], 2, "none.pth", "not found")
    (tmp_path / "text.pth").write_text("not weights")
    line = one_error(capsys, [*base, "--raft-weights", tmp_path / "text.pth"], 2, "text.pth")
    assert "weights_only" not in line
    assert not (tmp_path / "c" / "failed").exists() and not (tmp_path / "c" / "videos").exists()


class Payload:  # a class a weights-only load refuses
    pass


def test_python_object_payloads_are_named_in_every_file_form(tmp_path):
    with open(tmp_path / "plain.pkl", "wb") as fh:
        pickle.dump({"model": Payload()}, fh)
    torch.save({"model": Payload()}, tmp_path / "zip.pt")
    torch.save({"model": Payload()}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    for name in ("plain.pkl", "zip.pt", "legacy.pt"):
        with pytest.raises(CheckpointError) as err:
            safe_load(tmp_path / name)
        message = str(err.value)
        assert "holds Python objects" in message and "Payload" in message, message
        assert "weights_only" not in message
    from mcl_video.errors import DataError
    from mcl_video.models.backbones import load_torchvision_weights
    from mcl_video.models.p3d_resnet import load_2d_state_dict

    for load in (load_2d_state_dict, lambda p: load_torchvision_weights(build_backbone("tiny_r2plus1d"), p)):
        with pytest.raises(DataError) as err:  # 2D inflation weights and torchvision video weights too
            load(tmp_path / "zip.pt")
        assert "holds Python objects (test_robust.Payload)" in str(err.value)
        assert "weights_only" not in str(err.value)
    with open(tmp_path / "numbers.pkl", "wb") as fh:
        pickle.dump({"a": 1}, fh)
    with pytest.raises(CheckpointError, match="a plain Python pickle"):
        safe_load(tmp_path / "numbers.pkl")


def test_out_of_memory_names_the_batch_size_and_the_device(tmp_path, capsys, monkeypatch):
    err = out_of_memory_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                              "batch_size=64")
    assert "batch_size=64" in str(err) and "cuda" in str(err)
    cpu = out_of_memory_error(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
                                           "can't allocate memory: you tried to allocate 123 bytes"))
    assert "cpu" in str(cpu) and "batch_size in the config" in str(cpu)
    assert out_of_memory_error(RuntimeError("shape mismatch")) is None
    import mcl_video.cli.evaluate as evaluate

    def oom(args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(evaluate, "_run", oom)
    one_error(capsys, ["evaluate", "--random-init", "--backbone", "tiny_r2plus1d", "--data", ".",
                       "--annotations", ".", "--batch-size", "16", "--device", "cpu", "--out",
                       tmp_path / "ev"], 1,
              "out of memory", "--batch-size 16", "cpu")


@pytest.mark.parametrize("args", [["--clip-len", "0"], ["--stride", "0"], ["--frame-window", "0"],
                                  ["--field-short", "0"], ["--field-short", "1"], ["--resize-short", "-5"],
                                  ["--flow-bound", "inf"]])
def test_prepare_options_out_of_range_are_usage_errors(tmp_path, capsys, args):
    videos = tmp_path / "v"
    videos.mkdir()
    write_moving_square(videos / "a.mp4", frames=6, hw=(32, 40))
    if args[0] == "--flow-bound":
        (tmp_path / "flow").mkdir()
        one_error(capsys, ["prepare", videos, "--out", tmp_path / "c", "--flow-from", tmp_path / "flow",
                           *args], 2, "--flow-bound")
        return
    with pytest.raises(SystemExit) as exit_:
        main(["prepare", str(videos), "--out", str(tmp_path / "c"), *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert args[0] in err and "Traceback" not in err


@pytest.mark.parametrize("args", [["--fc-lr", "inf"], ["--fc-lr", "nan"], ["--fc-lr", "-1"], ["--split", "0"],
                                  ["--seed", "-1"]])
def test_evaluate_options_out_of_range_are_usage_errors(tmp_path, capsys, args):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--random-init", "--backbone", "tiny_r2plus1d", "--data", str(tmp_path),
              "--annotations", str(tmp_path), "--out", str(tmp_path / "ev"), *args])
    assert exit_.value.code == 2 and args[0] in capsys.readouterr().err
    assert not (tmp_path / "ev").exists()


# ---- evaluate: complete or absent, and named ------------------------------------------------------------


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    base = tmp_path_factory.mktemp("bench")
    assert main(["synth", str(base), "--classes", "2", "--train-per-class", "2", "--test-per-class", "1",
                 "--frames", "16", "--workers", "1"]) == 0
    torch.save(tiny_state(), base / "tiny.pt")
    return base


def evaluate_args(bench, out):
    return ["evaluate", "--checkpoint", bench / "tiny.pt", "--backbone", "tiny_r2plus1d", "--data",
            bench / "videos", "--annotations", bench / "annotations", "--protocol", "knn", "--num-clips",
            "1", "--clip-len", "4", "--size", "32", "--knn-k", "1", "--no-progress", "--out", out]


def test_evaluate_results_name_the_checkpoint_and_data_and_are_written_last(bench, tmp_path, monkeypatch):
    out = tmp_path / "ev"
    assert main([str(a) for a in evaluate_args(bench, out)]) == 0
    results = json.loads((out / "results.json").read_text())
    source = results["source"]
    assert source["checkpoint"] == str((bench / "tiny.pt").resolve())
    assert source["sha256"] == hashlib.sha256((bench / "tiny.pt").read_bytes()).hexdigest()
    assert source["data"]["num_train_videos"] == 4 and source["data"]["num_test_videos"] == 2
    assert source["data"]["dataset"] == "ucf101" and len(source["data"]["videos_sha256"]) == 64
    assert not [p for p in out.iterdir() if ".tmp" in p.name or p.name.startswith(".mcl-lock")]
    # an evaluation interrupted after its features leaves no results.json of the earlier run beside them
    import mcl_video.evaluation.protocols as protocols

    old_features = (out / "features_test.npz").stat().st_mtime_ns

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(protocols, "run_protocols", interrupted)
    assert main([str(a) for a in evaluate_args(bench, out)]) == 130
    assert not (out / "results.json").exists()
    assert (out / "features_test.npz").stat().st_mtime_ns != old_features


# ---- discovery that reports -----------------------------------------------------------------------------


def test_a_symlink_loop_is_an_error_and_a_second_link_is_searched_once(tmp_path, capsys, caplog):
    root = tmp_path / "videos"
    write_moving_square(root / "a" / "v.mp4", frames=6, hw=(32, 40))
    (root / "b").symlink_to(root / "a")  # the same folder twice
    with caplog.at_level("WARNING"):
        assert find_videos(root) == [root / "a" / "v.mp4"]
    assert "already searched" in caplog.text
    (root / "a" / "loop").symlink_to(root)
    with pytest.raises(SymlinkLoopError, match="symlink loop"):
        find_videos(root)
    one_error(capsys, ["prepare", root, "--out", tmp_path / "c", "--no-progress"], 1, "loop", "link")


def test_an_unreadable_folder_is_reported_not_dropped(tmp_path, capsys, monkeypatch):
    root = tmp_path / "videos"
    write_moving_square(root / "a" / "v.mp4", frames=6, hw=(32, 40))
    (root / "secret").mkdir()
    real = os.scandir

    def scandir(path="."):  # as for a folder without read permission (root can read everything)
        if Path(path) == root / "secret":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(UnreadableFolderError, match="secret"):
        find_videos(root)
    one_error(capsys, ["prepare", root, "--out", tmp_path / "c", "--no-progress"], 1, "secret",
              "Permission denied")


def _mmaction(tmp_path, train: str, test: str = "", extra: dict | None = None) -> Path:
    ann = tmp_path / "ann"
    ann.mkdir(parents=True)
    (ann / "x_train_list_videos.txt").write_text(train)
    (ann / "x_val_list_videos.txt").write_text(test or train)
    for name, text in (extra or {}).items():
        (ann / name).write_text(text)
    return ann


def test_list_labels_are_checked_against_the_class_count(tmp_path):
    ann = _mmaction(tmp_path, "a/1.mp4 0\nb/2.mp4 1\nc/3.mp4 57\n")
    with pytest.raises(AnnotationError, match="label 57 where 2 is missing"):
        read_split("mmaction2_videos", ann, subset="train")
    ann = _mmaction(tmp_path / "m", "a/1.mp4 0\nb/2.mp4 2\n", extra={"label_map.txt": "a\nb\nc\n"})
    assert [r.label for r in read_split("mmaction2_videos", ann, subset="train")] == [0, 2]
    ann = _mmaction(tmp_path / "t", "a/1.mp4 0\nb/2.mp4 1\n", "a/9.mp4 0\nb/8.mp4 5\n")
    with pytest.raises(AnnotationError, match=r"line 2: label 5 is outside the 2 classes"):
        read_split("mmaction2_videos", ann, subset="test")


def test_paths_that_leave_the_video_root_are_refused(tmp_path, capsys):
    ann = _mmaction(tmp_path, "a/1.mp4 0\na/../../outside.mp4 0\n")
    with pytest.raises(AnnotationError, match="leaves the video root"):
        read_split("mmaction2_videos", ann, subset="train")
    (tmp_path / "videos").mkdir()
    one_error(capsys, ["prepare", ann, "--dataset", "mmaction2_videos", "--video-root", tmp_path / "videos",
                       "--out", tmp_path / "c", "--no-progress"], 1, "outside.mp4", "leaves the video root")
    ann2 = _mmaction(tmp_path / "abs", "/etc/passwd 0\n")
    with pytest.raises(AnnotationError, match="leaves the video root"):
        read_split("mmaction2_videos", ann2, subset="train")
    assert [r.path for r in read_split("mmaction2_videos", _mmaction(tmp_path / "ok", "a/./b/../1.mp4 0\n"),
                                       subset="train")] == ["a/./b/../1.mp4"]


def test_the_folder_dataset_splits_or_refuses_to_test(tmp_path, capsys):
    flat = tmp_path / "flat"
    for cls in ("run", "walk"):
        write_moving_square(flat / cls / "v.mp4", frames=6, hw=(32, 40))
    assert len(read_split("folder", flat, subset="train")) == 2  # pretraining: every video
    with pytest.raises(SplitChoiceError, match="no train/test split"):
        read_split("folder", flat, subset="test")
    one_error(capsys, ["evaluate", "--random-init", "--backbone", "tiny_r2plus1d", "--dataset", "folder",
                       "--data", flat, "--annotations", flat, "--out", tmp_path / "ev"], 2,
              "no train/test split", str(flat / "train"))
    assert not (tmp_path / "ev" / "results.json").exists()
    split = tmp_path / "split"
    for subset, n in (("train", 2), ("test", 1)):
        for cls in ("run", "walk"):
            for i in range(n):
                write_moving_square(split / subset / cls / f"{subset}{i}.mp4", frames=6, hw=(32, 40))
    train, test = (read_split("folder", split, subset=s, video_root=split) for s in ("train", "test"))
    assert len(train) == 4 and len(test) == 2 and not {r.path for r in train} & {r.path for r in test}
    assert {(r.class_name, r.label) for r in test} == {("run", 0), ("walk", 1)}
    assert all(r.path.startswith("test/") for r in test)


def test_an_unreadable_annotation_file_is_one_error(tmp_path, capsys, monkeypatch):
    import mcl_video.data.splits as splits

    ann = _mmaction(tmp_path, "a/1.mp4 0\n")
    real = open

    def guarded(file, *args, **kwargs):
        if str(file).endswith("x_train_list_videos.txt"):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(splits, "open", guarded, raising=False)
    with pytest.raises(AnnotationError, match="cannot read the annotation file"):
        read_split("mmaction2_videos", ann, subset="train")


def test_resume_drops_metric_lines_logged_after_the_checkpoint(tmp_path):
    lines = [json.dumps({"step": s, "loss": 1.0}) for s in (1, 2, 3, 4)] + ['{"step": 5, "lo']  # torn
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    config = SimpleNamespace(run=SimpleNamespace(log_every=1, tensorboard=False, progress=False))
    logger = MetricLogger(tmp_path, True, 2, 4, config, samples_per_step=2)  # resumed from step 2
    logger.step(3, 0, {"loss": 0.5}, 0.1)
    logger.close()
    records = [strict_json(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3] and records[-1]["loss"] == 0.5
