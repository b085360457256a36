"""Distributed pretraining on CPU: resumable sharding tables and a 2-process gloo run of the real MCL."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from mcl_video.training.distributed import DistEnv, ResumableShardSampler, all_reduce_mean, init_distributed


def test_single_process_fallback(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    env = init_distributed("cpu")
    assert env == DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    assert env.is_main and not env.distributed
    assert torch.equal(all_reduce_mean(torch.tensor([1.0, 3.0])), torch.tensor([1.0, 3.0]))


def test_shard_table_without_shuffle():
    # 11 samples, 2 ranks x batch 2: 2 global batches (8 samples) per epoch, the 3 left over are dropped
    shards = [ResumableShardSampler(11, 2, rank=r, world_size=2, shuffle=False) for r in (0, 1)]
    assert [s.indices() for s in shards] == [[0, 2, 4, 6], [1, 3, 5, 7]]
    assert shards[0].batches_per_epoch == 2 and len(shards[0]) == 4
    shards[1].set_epoch(0, start_batch=1)
    assert shards[1].indices() == [5, 7] and len(shards[1]) == 2


def test_shuffled_shards_are_disjoint_per_epoch_and_resume_as_a_suffix():
    def shard(rank, epoch, start=0):
        s = ResumableShardSampler(20, 3, rank=rank, world_size=3, seed=5)
        s.set_epoch(epoch, start_batch=start)
        return s.indices()

    for epoch in (0, 1):
        parts = [shard(r, epoch) for r in range(3)]
        assert all(len(p) == 6 for p in parts)
        perm = torch.randperm(20, generator=torch.Generator().manual_seed(5 + epoch)).tolist()
        assert sorted(sum(parts, [])) == sorted(perm[:18])
    assert shard(0, 0) != shard(0, 1)  # reshuffled every epoch
    assert shard(2, 1, start=1) == shard(2, 1)[3:]  # resuming after one local batch of 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str, toy_clips, tiny_real_config) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from mcl_video.training import pretrain
    from mcl_video.training.builders import build_model, feature_grid

    cfg = tiny_real_config(Path(out_dir), max_steps=3, batch_size=2, checkpoint_every=2, use_mal=True)
    torch.manual_seed(100 + rank)  # different initialisations on purpose: rank 0's must win
    model = build_model(cfg)
    pretrain(cfg, model=model, dataset=toy_clips(12, 8, 32, feature_grid(cfg)))
    torch.save(model.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))


def test_two_processes_gloo_end_identical(tmp_path, toy_clips, tiny_real_config):
    # fork (as torch's own distributed tests do): the children reuse the parent's imports
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path), toy_clips, tiny_real_config), nprocs=2,
                       join=True, start_method="fork")
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for name, value in states[0].items():
        if "running_" in name or "num_batches_tracked" in name:
            continue  # BN statistics are per-rank (broadcast_buffers=False)
        assert torch.allclose(value.float(), states[1][name].float(), atol=1e-6), name
    assert int(states[0]["queue_ptr"]) == 3 * 3 * 2 * 2 % 32  # keys of both ranks were enqueued
    assert (states[0]["queue_ids"] >= 0).sum() == 32  # 36 keys written into 32 slots
    from mcl_video.training import list_checkpoints, load_checkpoint

    ckpts = list_checkpoints(tmp_path / "run")
    assert [p.name for p in ckpts] == ["ckpt-00000002.pt", "ckpt-00000003.pt"]
    state = load_checkpoint(ckpts[-1])
    assert len(state["rng"]) == 2 and not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
    assert torch.equal(state["model"]["queue"], states[0]["queue"])
