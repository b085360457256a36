"""BatchNorm groups: one process with G groups of the batch behaves as G processes (METHOD §4).

The grouped BatchNorm against separate BatchNorms, the MAL capture through it, and the whole MCL step
(loss, updated weights, BN buffers, queue) of one process with two groups against a 2-process gloo run
with the same seed, the same per-rank batches and the same permutation source.
"""

from __future__ import annotations

import copy
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from mcl_video.models import MCL, MCLConfig
from mcl_video.models.batchnorm import GroupedBatchNorm3d, convert_grouped_batchnorm

CLIP, SIZE, BATCH, STEPS = 8, 48, 4, 3  # tiny_r2plus1d grid 2 x 3 x 3; 4 clips = 2 ranks x 2
GRID = (2, 3, 3)


@pytest.mark.parametrize("batch", [5, 6])  # groups of 2, 2, 1 (a loop) and 2, 2, 2 (one wide BN)
def test_grouped_bn_is_separate_bns_per_group(batch):
    torch.manual_seed(0)
    ref = nn.BatchNorm3d(5, momentum=0.3)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5), ref.bias.normal_()
    grouped = convert_grouped_batchnorm(copy.deepcopy(ref), 2)
    assert isinstance(grouped, GroupedBatchNorm3d) and set(grouped.state_dict()) == set(ref.state_dict())
    parts = [copy.deepcopy(ref) for _ in range(3)]
    x = torch.randn(batch, 5, 2, 3, 3, dtype=torch.float32) * 2 + 1
    x.requires_grad_(True)
    out = grouped(x)
    expected = torch.cat([bn(g) for bn, g in zip(parts, x.split(2), strict=True)])
    assert torch.allclose(out, expected, atol=1e-6)
    # gradients (and second derivatives, which MAL takes) flow as through the separate layers
    w = torch.randn_like(out)
    g1 = torch.autograd.grad((out * w).sum(), x, create_graph=True)[0]
    g2 = torch.autograd.grad((expected * w).sum(), x, create_graph=True)[0]
    assert torch.allclose(g1, g2, atol=1e-5)
    h1 = torch.autograd.grad((g1 ** 2).sum(), grouped.weight)[0]
    h2 = sum(torch.autograd.grad((g2 ** 2).sum(), [bn.weight for bn in parts]))
    assert torch.allclose(h1, h2, atol=1e-4)
    # running statistics: the mean over the groups of what each separate BN holds
    for name in ("running_mean", "running_var"):
        mean = torch.stack([getattr(bn, name) for bn in parts]).mean(0)
        assert torch.allclose(getattr(grouped, name), mean, atol=1e-6), name
    assert int(grouped.num_batches_tracked) == 1
    # the NDHWC layout (channels_last=true) gives the same output
    twin = convert_grouped_batchnorm(copy.deepcopy(ref), 2)
    nd = twin(x.detach().contiguous(memory_format=torch.channels_last_3d))
    assert torch.allclose(nd, out.detach(), atol=1e-6)
    # evaluation mode uses the running statistics, as a plain BatchNorm with the same state
    plain = copy.deepcopy(ref)
    plain.load_state_dict(grouped.state_dict())
    small = torch.randn(2, 5, 2, 3, 3)
    assert torch.allclose(grouped.eval()(small), plain.eval()(small), atol=1e-6)
    # a batch no larger than one group is one BatchNorm batch
    one = convert_grouped_batchnorm(copy.deepcopy(ref), 8).train()
    assert torch.allclose(one(x.detach()), copy.deepcopy(ref)(x.detach()), atol=1e-6)


def test_whole_batch_bn_differs_from_groups():
    # the test above could not tell groups from one batch if the statistics did not differ
    torch.manual_seed(1)
    bn = nn.BatchNorm3d(3)
    x = torch.randn(4, 3, 2, 2, 2) + torch.tensor([0.0, 0.0, 3.0, 3.0])[:, None, None, None, None]
    assert not torch.allclose(convert_grouped_batchnorm(copy.deepcopy(bn), 2)(x), bn(x), atol=1e-3)


@pytest.mark.parametrize("arch", ["tiny_r2plus1d", "r2plus1d_18"])
def test_mal_saliency_through_grouped_bn_stays_within_its_group(arch):
    """The capture of X and ``d l_pos / d X`` work through grouped BNs; a clip's saliency depends on the
    clips of its own BN group (batch statistics) and on no other."""
    torch.manual_seed(0)
    opts = {"widths": (8, 16, 16, 32)} if arch == "tiny_r2plus1d" else {}
    model = MCL(MCLConfig(arch, backbone_options=opts, queue_size=16, bn_group_size=2))
    assert any(isinstance(m, GroupedBatchNorm3d) for m in model.encoder_q.modules())
    assert any(isinstance(m, GroupedBatchNorm3d) for m in model.encoder_k.modules())
    clip, size = (8, 48) if arch == "tiny_r2plus1d" else (4, 32)
    g = torch.Generator().manual_seed(2)
    batch = {v: torch.randn(4, 3, clip, size, size, generator=g) for v in ("q", "k0")}
    model.shuffle_generator = torch.Generator().manual_seed(3)  # the same key groups in both calls
    sal = model.saliency_maps(batch)
    assert sal.shape[0] == 4 and torch.isfinite(sal).all()
    assert (sal.flatten(2).std(dim=2) > 0).any()  # varies over positions
    changed = dict(batch, q=batch["q"].clone())
    changed["q"][3] += torch.randn(3, clip, size, size, generator=g)
    model.shuffle_generator = torch.Generator().manual_seed(3)
    again = model.saliency_maps(changed)
    assert torch.allclose(again[:2], sal[:2], atol=1e-6)  # group 0 does not see clip 3
    assert not torch.allclose(again[2], sal[2], atol=1e-6)  # clip 2 shares its group's statistics


# --- one process, two groups == two processes ---------------------------------------------------------

def _config(group: int) -> MCLConfig:
    return MCLConfig("tiny_r2plus1d", backbone_options={"widths": (4, 8, 8, 16)}, feat_dim=16,
                     queue_size=32, momentum=0.9, bn_group_size=group)


def _batches() -> list[dict]:
    g = torch.Generator().manual_seed(11)
    out = []
    for step in range(STEPS):
        clip = torch.randn(BATCH, 3, CLIP, SIZE, SIZE, generator=g)
        views = {v: clip + 0.5 * torch.randn(clip.shape, generator=g) for v in ("q", "k0", "k1", "k2")}
        out.append({**views, "target": torch.rand(BATCH, *GRID, generator=g),
                    "order": torch.tensor([0, 1, 1, 0]), "index": torch.arange(BATCH) + 2 * (step % 2)})
    return out


def _train(net: nn.Module, model: MCL, batches: list[dict]) -> list[dict]:
    """SGD steps as the training loop takes them; the key shuffle draws from a seeded generator."""
    model.shuffle_generator = torch.Generator().manual_seed(5)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5, momentum=0.9,
                          weight_decay=1e-4)
    metrics = []
    for batch in batches:
        loss, m = net(batch, order_weight=0.5, mal_weight=2.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.momentum_update()
        metrics.append({k: float(v) for k, v in m.items()})
    return metrics


def _single(group: int) -> tuple[list[dict], dict]:
    # float64: in float32 the rounding differences of the two runs (1e-6 after one step) grow about
    # 50-fold per step through the BN statistics of groups of 2 clips; in float64 they stay at 1e-15
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        model = MCL(_config(group))
        return _train(model, model, _batches()), model.state_dict()
    finally:
        torch.set_default_dtype(torch.float32)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from mcl_video.training.distributed import cleanup_distributed, init_distributed
    from mcl_video.training.loop import wrap_ddp

    env = init_distributed("cpu")
    torch.set_default_dtype(torch.float64)  # as _single
    torch.manual_seed(0)
    model = MCL(_config(8))  # 2 clips per rank: one BN group each
    per_rank = BATCH // world
    mine = [{k: v[rank * per_rank:(rank + 1) * per_rank] for k, v in b.items()} for b in _batches()]
    metrics = _train(wrap_ddp(model, env, find_unused=False), model, mine)
    torch.save({"metrics": metrics, "state": model.state_dict()}, os.path.join(out_dir, f"rank{rank}.pt"))
    cleanup_distributed()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("bn_groups")
    mp.start_processes(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True, start_method="fork")
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


def test_one_process_with_two_groups_equals_two_processes(two_processes):
    metrics, state = _single(group=2)
    for step in range(STEPS):  # the loss of the whole batch = the mean of the ranks' losses
        for name in ("loss", "loss_inter", "loss_intra", "loss_order", "loss_mal", "pos_prob"):
            ranks = sum(r["metrics"][step][name] for r in two_processes) / 2
            assert metrics[step][name] == pytest.approx(ranks, rel=1e-9, abs=1e-12), (step, name)
    assert (state["queue_ids"] >= 0).sum() == 32 and int(state["queue_ptr"]) == 3 * BATCH * STEPS % 32
    for name, value in state.items():
        ranks = [r["state"][name] for r in two_processes]
        if "running_" in name:  # per-rank BN statistics (no buffer broadcast): the groups' mean
            expected = (ranks[0] + ranks[1]) / 2
        else:  # weights, EMA weights, queue (keys written group by group as rank by rank), its ids and
            # pointer, num_batches_tracked: the same everywhere
            assert torch.allclose(ranks[0], ranks[1], atol=1e-10), name
            expected = ranks[0]
        assert value.dtype == expected.dtype and torch.allclose(value, expected, atol=1e-10, rtol=1e-9), name
    moved = [n for n in state if n.endswith("running_mean") and n.startswith("encoder_k")]
    assert moved and not torch.equal(state[moved[0]], torch.zeros_like(state[moved[0]]))


def test_one_bn_batch_in_one_process_is_not_two_processes(two_processes):
    # the BN leak left open (the whole batch in one BN group): another loss than the 2-process run
    metrics, _ = _single(group=0)
    ranks = [sum(r["metrics"][s]["loss"] for r in two_processes) / 2 for s in range(STEPS)]
    assert max(abs(m["loss"] - r) for m, r in zip(metrics, ranks, strict=True)) > 1e-3


def test_bn_group_size_checks():
    with pytest.raises(ValueError, match="bn_group_size must be >= 0"):
        MCLConfig("tiny_r2plus1d", bn_group_size=-1)
    with pytest.raises(ValueError, match="sync_bn"):
        MCLConfig("tiny_r2plus1d", sync_bn=True)
    model = MCL(_config(3))
    assert [model.bn_groups(b) for b in (2, 3, 4, 9)] == [1, 1, 2, 3]
    assert MCL(_config(0)).bn_groups(64) == 1
    assert not any(isinstance(m, GroupedBatchNorm3d) for m in MCL(_config(0)).modules())


def test_bn_group_size_config_key_reaches_the_model():
    from mcl_video.training.builders import model_config
    from mcl_video.training.config import ConfigError, PretrainConfig, load_config

    assert PretrainConfig().bn_group_size == 8 and model_config(PretrainConfig()).bn_group_size == 8
    assert model_config(load_config(None, ["bn_group_size=4"])).bn_group_size == 4
    assert model_config(load_config(None, ["bn_group_size=0", "sync_bn=true"])).sync_bn
    for bad in (["bn_group_size=-1"], ["sync_bn=true"]):
        with pytest.raises(ConfigError, match="bn_group_size"):
            load_config(None, bad)
