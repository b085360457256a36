"""Persistent loader workers are exact: the epoch reaches them with every key, not through a fork.

The sampler's ``(epoch, index)`` keys (``epoch_keys``), the datasets that accept them, and
``build_epoch_loader``: the same loader object (and the same worker processes) across epochs, every batch
equal to a fresh per-epoch loader's, and a pretraining run with persistent workers equal (bit for bit) to
one in the main process, resumed mid-epoch or not.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from mcl_video.evaluation.datasets import EvalClipDataset
from mcl_video.sampling.keys import EpochKey, split_key
from mcl_video.training import list_checkpoints, load_checkpoint, pretrain
from mcl_video.training.distributed import ResumableShardSampler
from mcl_video.training.loader import build_epoch_loader, close_epoch_loader
from test_pretrain_dataset import write_video
from test_pretrain_loop import TinyMCL, ToyClips, tiny_config


class KeyedToyClips(ToyClips):
    """ToyClips that read the epoch from ``(epoch, index)`` keys, and say which process made each item."""

    accepts_epoch_keys = True

    def __getitem__(self, key):
        epoch, i = split_key(key, self.epoch)
        saved, self.epoch = self.epoch, epoch
        try:
            item = super().__getitem__(i)
        finally:
            self.epoch = saved
        item["pid"] = torch.tensor(os.getpid())
        return item


def test_sampler_keys_carry_the_epoch_and_the_resume_position():
    s = ResumableShardSampler(10, 2, seed=4, epoch_keys=True)
    s.set_epoch(3, start_batch=2)
    plain = ResumableShardSampler(10, 2, seed=4)
    plain.set_epoch(3, start_batch=2)
    keys = list(s)
    assert keys == [EpochKey(3, i) for i in plain] and len(keys) == len(plain) == 6
    assert split_key(keys[0], 0) == (3, keys[0].index) and split_key(7, 5) == (5, 7)


def _epochs(loader_of, epochs=((0, 0), (1, 0), (2, 1))):
    out = []
    for epoch, start in epochs:
        loader = loader_of(epoch, start)
        out.append((loader, [(b["q"], b["index"], b["pid"]) for b in loader]))
    return out


def test_persistent_loader_keeps_its_workers_and_equals_fresh_loaders():
    ds = KeyedToyClips(n=10)
    persistent_sampler = ResumableShardSampler(10, 2, seed=1)
    fresh_sampler = ResumableShardSampler(10, 2, seed=1)

    def persistent(epoch, start):
        return build_epoch_loader(ds, persistent_sampler, epoch, start, batch_size=2, num_workers=2, seed=7)

    def fresh(epoch, start):
        return build_epoch_loader(ds, fresh_sampler, epoch, start, batch_size=2, num_workers=2, seed=7,
                                  persistent=False)

    try:
        got, want = _epochs(persistent), _epochs(fresh)
    finally:
        close_epoch_loader(persistent_sampler)
    assert got[0][0] is got[1][0] is got[2][0]  # one loader for the run
    assert got[0][0].persistent_workers and not want[0][0].persistent_workers
    assert [len(b) for _, b in got] == [5, 5, 4]  # epoch 2 resumed after one batch
    for (_, g), (_, w) in zip(got, want, strict=True):
        for (gq, gi, _), (wq, wi, _) in zip(g, w, strict=True):
            assert torch.equal(gi, wi) and torch.equal(gq, wq)
    # the same two worker processes made every epoch's items; the fresh loader forked new ones each time
    assert len({int(p) for _, b in got for _, _, pids in b for p in pids}) == 2
    assert len({int(p) for _, b in want for _, _, pids in b for p in pids}) == 6
    assert os.getpid() not in {int(p) for _, b in got for _, _, pids in b for p in pids}
    # the epochs' items differ (a worker stuck at epoch 0 would repeat epoch 0's clips for its indices)
    assert not torch.equal(got[0][1][0][0], got[1][1][0][0])


def test_dataset_without_keys_gets_a_fresh_loader_per_epoch():
    ds, s = ToyClips(n=8), ResumableShardSampler(8, 2)
    a = build_epoch_loader(ds, s, 0, batch_size=2, num_workers=1)
    b = build_epoch_loader(ds, s, 1, batch_size=2, num_workers=1)
    assert a is not b and not a.persistent_workers and not s.epoch_keys and ds.epoch == 1


def _run(tmp_path, dataset_cls=KeyedToyClips, **kw):
    cfg = tiny_config(tmp_path, max_steps=kw.pop("max_steps", 5), **kw)
    torch.manual_seed(cfg.seed)
    run_dir = pretrain(cfg, model=TinyMCL(), dataset=dataset_cls())
    losses = (run_dir / "metrics.jsonl").read_text().splitlines()
    return load_checkpoint(list_checkpoints(run_dir)[-1])["model"], losses


def _loss_values(lines):
    import json

    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if "loss" in r]


def test_pretraining_with_persistent_workers_equals_the_main_process_and_resumes_exactly(tmp_path):
    # 12 toy clips / batch 4 = 3 steps per epoch; 5 steps cross an epoch boundary
    main, main_log = _run(tmp_path / "main", num_workers=0)
    workers, workers_log = _run(tmp_path / "workers", num_workers=2)
    _run(tmp_path / "resumed", num_workers=2, max_steps=2)  # stops mid-epoch 0
    resumed, resumed_log = _run(tmp_path / "resumed", num_workers=2, resume=True)
    assert _loss_values(main_log) == _loss_values(workers_log) and len(_loss_values(main_log)) == 5
    assert _loss_values(resumed_log) == _loss_values(main_log)
    for k, v in main.items():
        assert torch.equal(v, workers[k]) and torch.equal(v, resumed[k]), k


def test_eval_clip_dataset_keys_equal_set_epoch(tmp_path):
    write_video(tmp_path / "a.mp4", 40, seed=1)
    rec = type("Rec", (), {"path": "a.mp4", "label": 0})()
    ds = EvalClipDataset(tmp_path, [rec], clip_len=4, stride=2, size=16, crop="random", short_side=32, seed=3)
    ds.set_epoch(5)
    direct = ds[0]["clips"]
    ds.set_epoch(0)
    keyed = ds[EpochKey(5, 0)]["clips"]
    assert torch.equal(direct, keyed)
    assert any(not torch.equal(ds[EpochKey(e, 0)]["clips"], direct) for e in range(6, 10))
    assert np.isfinite(direct.numpy()).all()
