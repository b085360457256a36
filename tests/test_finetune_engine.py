"""`mcl finetune` on the pretraining engine: exact resume, a 2-process gloo run, test-time averaging
over clips x 3 crops, the strict config and the shipped configs."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from mcl_video.evaluation.finetune_config import FinetuneRunConfig, load_finetune_config
from mcl_video.evaluation.finetune_engine import finetune_lr, run_finetune
from mcl_video.training import ConfigError, list_checkpoints, load_checkpoint

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["Dim", "Bright"]


def _write_video(path, num_frames, base, seed):
    import av

    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 40, 32, "yuv420p"
        for t in range(num_frames):
            img = np.clip(base + 8 * t + rng.integers(0, 40, (32, 40, 3)), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """UCF101-layout split: 2 classes x (4 train + 1 test) videos of 10 frames at 40x32."""
    root = tmp_path_factory.mktemp("ft")
    videos, ann = root / "videos", root / "annotations"
    ann.mkdir()
    train, test = [], []
    for c, name in enumerate(CLASSES):
        (videos / name).mkdir(parents=True)
        for g in range(5):
            rel = f"{name}/v_{name}_g0{g + 1}_c01.mp4"
            _write_video(videos / rel, 10, 30 + 150 * c, seed=10 * c + g)
            (train if g < 4 else test).append((rel, c))
    (ann / "classInd.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(CLASSES)))
    (ann / "trainlist01.txt").write_text("".join(f"{r} {c + 1}\n" for r, c in train))
    (ann / "testlist01.txt").write_text("".join(f"{r}\n" for r, _ in test))
    return root


def _config(split, out, **kw) -> FinetuneRunConfig:
    values = dict(data=str(split / "annotations"), video_root=str(split / "videos"), out=str(out),
                  backbone="tiny_r2plus1d", backbone_options={"widths": [4, 8, 8, 8]}, clip_len=4, stride=1,
                  size=24, short_side=32, test_clips=2, batch_size=2, test_batch_size=2, num_workers=0,
                  epochs=3, lr=0.05, dropout=0.5, device="cpu", log_every=1, progress=False,
                  tensorboard=False, checkpoint_every=100)
    values.update(kw)
    return FinetuneRunConfig(**values)


def _metrics(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def test_resume_is_exact(split, tmp_path):
    """6 steps in one go == 3 steps + resume + 3 steps (4 steps per epoch: the cut is mid-epoch, and the
    training clips, crops, flips and dropout masks must all continue where they were)."""
    full = run_finetune(_config(split, tmp_path / "a", max_steps=6))
    half = run_finetune(_config(split, tmp_path / "b", max_steps=3, test=False))
    assert half.step == 3 and half.results is None
    resumed = run_finetune(_config(split, tmp_path / "b", max_steps=6, resume=True))
    assert full.steps_per_epoch == 4 and resumed.step == 6
    a = load_checkpoint(list_checkpoints(tmp_path / "a")[-1])
    b = load_checkpoint(list_checkpoints(tmp_path / "b")[-1])
    assert a["step"] == b["step"] == 6
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for k, v in a["optimizer"]["state"].items():
        assert torch.equal(v["momentum_buffer"], b["optimizer"]["state"][k]["momentum_buffer"])
    la, lb = _metrics(tmp_path / "a"), _metrics(tmp_path / "b")
    assert [m["loss"] for m in la] == [m["loss"] for m in lb]
    assert [m["step"] for m in lb] == [1, 2, 3, 4, 5, 6]
    assert full.results == resumed.results
    assert (tmp_path / "b" / "config.yaml").is_file() and (tmp_path / "b" / "env.json").is_file()


def test_test_time_scores_are_the_softmax_averaged_over_clips_and_crops(split, tmp_path):
    run = run_finetune(_config(split, tmp_path / "r", max_steps=2))
    pred = np.load(tmp_path / "r" / "predictions.npz")
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert res["views_per_video"] == 2 * 3 and res["num_test"] == 2
    assert (tmp_path / "r" / "confusion.png").stat().st_size > 0
    assert np.loadtxt(tmp_path / "r" / "confusion.csv", delimiter=",").sum() == 2
    from mcl_video.evaluation.finetune_engine import build_datasets

    _, test_ds, names = build_datasets(run.config)
    assert names == CLASSES
    model = run.model.eval()
    for row, index in enumerate(pred["indices"]):
        item = test_ds[int(index)]
        assert item["clips"].shape[0] == 6  # 2 clips x 3 crops, clip-major
        with torch.no_grad():
            probs = model(item["clips"]).softmax(dim=1).double()  # 6 x K
        np.testing.assert_allclose(pred["scores"][row], probs.mean(dim=0).numpy(), rtol=1e-6)
    assert res["top1"] == float((pred["scores"].argmax(1) == pred["labels"]).mean())


def test_lr_schedule_warmup_then_cosine():
    cfg = FinetuneRunConfig(backbone="tiny_r2plus1d", lr=0.1, warmup_steps=4)
    assert [finetune_lr(cfg, s, 12) for s in range(4)] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert finetune_lr(cfg, 4, 12) == pytest.approx(0.1)  # cosine start
    assert finetune_lr(cfg, 8, 12) == pytest.approx(0.05)  # halfway through the 8 cosine steps
    release = FinetuneRunConfig(backbone="tiny_r2plus1d")
    assert finetune_lr(release, 0, 100) == pytest.approx(0.01)
    assert finetune_lr(release, 50, 100) == pytest.approx(0.005)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, split: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.manual_seed(100 + rank)  # run_finetune must seed the classifier identically on every rank
    run = run_finetune(_config(Path(split), Path(out) / "run", max_steps=3, checkpoint_every=2))
    torch.save(run.model.state_dict(), os.path.join(out, f"rank{rank}.pt"))
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(run.results, f)


def test_two_processes_gloo(split, tmp_path):
    mp.start_processes(_worker, args=(2, _free_port(), str(split), str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for name, value in states[0].items():  # DDP: identical parameters and (broadcast) BN buffers
        assert torch.equal(value, states[1][name]), name
    ckpts = list_checkpoints(tmp_path / "run")
    assert [p.name for p in ckpts] == ["ckpt-00000002.pt", "ckpt-00000003.pt"]
    state = load_checkpoint(ckpts[-1])
    assert len(state["rng"]) == 2 and state["kind"] == "finetune"
    for name, value in state["model"].items():
        assert torch.equal(value, states[0][name]), name
    # 8 training videos / (2 per process x 2 processes) = 2 steps per epoch; each rank scored one test video
    assert [m["step"] for m in _metrics(tmp_path / "run")] == [1, 2, 3]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert results[0] == results[1] and results[0]["num_test"] == 2


def test_config_is_strict_and_shipped_configs_load(split):
    with pytest.raises(ConfigError, match="did you mean 'dropout'"):
        load_finetune_config(None, ["backbone=r3d_18", "drop_out=0.5"])
    with pytest.raises(ConfigError, match="checkpoint=FILE"):
        load_finetune_config(None, [])
    shipped = sorted((REPO / "src" / "mcl_video" / "configs").glob("finetune_*.yaml"))
    names = {p.stem for p in shipped}
    for dataset in ("ucf101", "hmdb51"):
        for arch in ("r2plus1d18", "p3d50"):
            assert f"finetune_{dataset}_{arch}" in names
    assert "finetune_synth_tiny" in names
    for path in shipped:
        cfg = load_finetune_config(path, ["checkpoint=enc.pt", "split=3"])
        assert cfg.split == 3
        if "synth" not in path.stem and "ssv2" not in path.stem:  # the release's protocol (METHOD §6)
            protocol = (cfg.clip_len, cfg.stride, cfg.size, cfg.dropout, cfg.lr, cfg.epochs)
            assert protocol == (32, 2, 224, 0.9, 0.01, 150)
            optim = (cfg.weight_decay, cfg.grad_clip, cfg.optimizer, cfg.test_crops)
            assert optim == (1e-4, 40.0, "sgd", "three")
            assert cfg.dataset == path.stem.split("_")[1]


def test_mcl_finetune_cli(split, tmp_path, capsys):
    from mcl_video.cli import main

    argv = ["finetune", "--config", "finetune_synth_tiny",
            f"data={split / 'annotations'}", f"video_root={split / 'videos'}", f"out={tmp_path / 'cli'}",
            "max_steps=2", "batch_size=4", "clip_len=4", "size=24", "short_side=32", "test_clips=1",
            "num_workers=0", "progress=false"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "test: top-1" in printed and "2 videos x 3 views" in printed
    assert main(["finetune", "--config", "finetune_synth_tiny", "--print-config",
                 "split=2"]) == 0
    assert "split: 2" in capsys.readouterr().out


class _Unreadable(torch.utils.data.Dataset):
    """Every video unreadable (items are None), as EvalClipDataset reports a corrupt file."""

    def __init__(self, records):
        self.records = records

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return None


def test_unreadable_batches_are_skipped_with_a_warning(split, tmp_path, caplog):
    from mcl_video.evaluation.finetune_engine import build_classifier, build_datasets

    cfg = _config(split, tmp_path / "u", max_steps=2, test=False, weight_decay=0.0)
    train, _, _ = build_datasets(cfg)
    model = build_classifier(cfg, 2)
    run = run_finetune(cfg, model=model, train_dataset=_Unreadable(train.records))
    assert run.step == 2 and "whole local batch was unreadable" in caplog.text
    assert all(m["loss"] == 0.0 for m in _metrics(tmp_path / "u"))
