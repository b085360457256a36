"""The pretraining loop on a tiny stand-in of the MCL contract (and on the real MCL when present).

`TinyMCL` / `ToyClips` below follow ARCHITECTURE.md (forward(batch, order_weight, mal_weight) -> (loss, dict),
momentum_update(), queue buffers; dataset items q/k0/k1/k2/target/order/index/video_id, set_epoch) so the
engine is tested independently of the real model; test_distributed.py imports them too.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from mcl_video.training import (
    NonFiniteLossError,
    PretrainConfig,
    list_checkpoints,
    load_checkpoint,
    pretrain,
)
from mcl_video.training.preempt import EXIT_STOPPED, RunStopped
from mcl_video.training.schedule import build_schedule

T, S = 4, 8  # frames, pixels of the toy clips (feature grid = T x S x S)


class TinyMCL(nn.Module):
    """A few-hundred-parameter model with MCL's interface: EMA key encoder, queue, MAL via autograd.grad."""

    def __init__(self, queue_size: int = 16, dim: int = 8, momentum: float = 0.9, nan_at_call: int = -1):
        super().__init__()
        self.conv, self.head = nn.Conv3d(3, 4, 3, padding=1), nn.Linear(4, dim)
        self.order_head = nn.Linear(8, 2)
        self.key_conv, self.key_head = copy.deepcopy(self.conv), copy.deepcopy(self.head)
        for p in [*self.key_conv.parameters(), *self.key_head.parameters()]:
            p.requires_grad = False
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.momentum, self.nan_at_call, self.calls, self.momentum_updates = momentum, nan_at_call, 0, 0

    def _key(self, x):
        return F.normalize(self.key_head(self.key_conv(x).relu().mean((2, 3, 4))), dim=1)

    def forward(self, batch, order_weight=1.0, mal_weight=1.0):
        x = self.conv(batch["q"])  # B x 4 x T x S x S: the alignment layer
        feat = x.relu().mean((2, 3, 4))
        feat = feat * (1 + 0.1 * torch.randn_like(feat))  # uses the global RNG, like shuffle-BN does
        q = F.normalize(self.head(feat), dim=1)
        with torch.no_grad():
            keys = [self._key(batch[k]) for k in ("k0", "k1", "k2")]
        l_pos = (q * keys[0]).sum(1)
        neg = q @ self.queue.clone().t()  # the queue is updated in place below
        loss_inter = sum(F.cross_entropy(torch.cat([(q * k).sum(1, keepdim=True), neg], 1) / 0.1,
                                         torch.zeros(len(q), dtype=torch.long)) for k in keys) / 3
        intra = torch.stack([l_pos, (q * keys[1]).sum(1)], 1) / 0.1
        loss_intra = F.cross_entropy(intra, torch.zeros(len(q), dtype=torch.long))
        loss_order = F.cross_entropy(self.order_head(torch.cat([feat, feat.detach()], 1)), batch["order"])
        grad = torch.autograd.grad(l_pos.sum(), x, create_graph=True)[0]
        sal = (grad.mean((3, 4), keepdim=True) * grad).sum(1).relu()  # B x T x S x S
        cos = F.cosine_similarity(sal.flatten(1) + 1e-8, batch["target"].flatten(1), dim=1)
        loss_mal = (1 - cos).mean()
        self.calls += 1
        if self.calls == self.nan_at_call:
            loss_mal = loss_mal * float("nan")
        loss = loss_inter + loss_intra + order_weight * loss_order + mal_weight * loss_mal
        self._enqueue(torch.cat(keys))
        zero = torch.zeros(())
        metrics = {"loss": loss, "loss_inter": loss_inter, "loss_intra": loss_intra, "loss_order": loss_order,
                   "loss_mal": loss_mal, "pos_prob": zero, "mal_spatiotemporal": cos.mean(),
                   "mal_temporal": zero, "mal_spatial": zero, "mal_flat_loss": zero, "mal_dead": zero}
        return loss, {k: v.detach() for k, v in metrics.items()}

    @torch.no_grad()
    def _enqueue(self, keys):
        if dist.is_initialized() and dist.get_world_size() > 1:
            parts = [torch.empty_like(keys) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, keys)
            keys = torch.cat(parts)
        n, ptr = len(keys), int(self.queue_ptr)
        idx = (torch.arange(n) + ptr) % len(self.queue)
        self.queue[idx] = keys.to(self.queue.dtype)  # keys are bf16 under autocast
        self.queue_ptr.fill_((ptr + n) % len(self.queue))

    @torch.no_grad()
    def momentum_update(self):
        self.momentum_updates += 1
        pairs = zip([*self.conv.parameters(), *self.head.parameters()],
                    [*self.key_conv.parameters(), *self.key_head.parameters()])
        for p, k in pairs:
            k.mul_(self.momentum).add_(p.detach(), alpha=1 - self.momentum)


class ToyClips(torch.utils.data.Dataset):
    """Items drawn from a generator keyed by (epoch, index): deterministic under any sharding."""

    def __init__(self, n: int = 12, frames: int = T, size: int = S, grid: tuple = (T, S, S)):
        self.n, self.epoch, self.shape, self.grid = n, 0, (3, frames, size, size), grid

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(1000 * self.epoch + i)
        clip = torch.randn(self.shape, generator=g)
        item = {k: clip + 0.3 * torch.randn(self.shape, generator=g) for k in ("q", "k0", "k1", "k2")}
        item["target"] = torch.rand(self.grid, generator=g)
        item.update(order=torch.tensor(i % 2), index=torch.tensor(i), video_id=f"v{i:03d}")
        return item


def tiny_config(tmp_path, **kw) -> PretrainConfig:
    base = dict(out=str(tmp_path / "run"), batch_size=4, num_workers=0, epochs=2, optimizer="sgd", lr=0.05,
                warmup_steps=2, checkpoint_every=1000, keep_checkpoints=2, log_every=1, progress=False,
                tensorboard=False, device="cpu", seed=3)
    base.update(kw)
    return PretrainConfig(**base)


def real_config(tmp_path, **kw) -> PretrainConfig:
    """The real MCL with a very small tiny_r2plus1d on 8 x 32 x 32 clips (feature grid 2 x 2 x 2)."""
    model = dict(backbone="tiny_r2plus1d", backbone_options={"widths": [4, 8, 8, 16]}, clip_len=8, size=32,
                 queue_size=32, feat_dim=16, ema=0.9)
    return tiny_config(tmp_path, **{**model, **kw})


def _run(cfg, **model_kw):
    torch.manual_seed(cfg.run.seed)
    return pretrain(cfg, model=TinyMCL(**model_kw), dataset=ToyClips())


def _final_model(run_dir):
    return load_checkpoint(list_checkpoints(run_dir)[-1])["model"]


def test_resume_mid_epoch_is_exact(tmp_path):
    # 12 clips / batch 4 = 3 steps per epoch: stopping after 2 steps resumes mid-epoch
    full = _final_model(_run(tiny_config(tmp_path / "a", max_steps=4)))
    _run(tiny_config(tmp_path / "b", max_steps=2))
    resumed_dir = _run(tiny_config(tmp_path / "b", max_steps=4, resume=True))
    resumed = _final_model(resumed_dir)
    assert [p.name for p in list_checkpoints(resumed_dir)] == ["ckpt-00000002.pt", "ckpt-00000004.pt"]
    assert set(full) == set(resumed) and {"queue", "key_conv.weight", "key_head.bias"} <= set(full)
    for k in full:
        assert torch.allclose(full[k].float(), resumed[k].float(), atol=1e-6), k
    assert not torch.equal(full["queue"], TinyMCL().queue)  # the queue did change during training


def test_run_folder_logs_and_checkpoint_contents(tmp_path):
    cfg = tiny_config(tmp_path, max_steps=3, tensorboard=True, checkpoint_every=1, keep_checkpoints=2)
    run_dir = _run(cfg)
    assert (run_dir / "config.yaml").is_file() and json.loads((run_dir / "env.json").read_text())["packages"]
    assert any((run_dir / "tb").iterdir())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    lr = build_schedule(cfg, 3).lr
    assert [r["lr"] for r in records] == pytest.approx(lr[:3].tolist())
    assert records[0]["mal_weight"] == 2.0 and records[2]["mal_weight"] == 1.0  # warm-up: 2 steps
    assert [r["order_weight"] for r in records] == pytest.approx([0, 1 / 6, 2 / 6])
    for key in ("loss", "loss_inter", "loss_intra", "loss_order", "loss_mal", "pos_prob", "mal_spatial",
                "mal_temporal", "mal_spatiotemporal", "mal_flat_loss", "mal_dead", "samples_per_s"):
        assert key in records[0]
    assert [p.name for p in list_checkpoints(run_dir)] == ["ckpt-00000002.pt", "ckpt-00000003.pt"]
    state = load_checkpoint(list_checkpoints(run_dir)[-1])  # weights_only=True
    assert state["step"] == 3 and state["epoch"] == 1 and state["batch_in_epoch"] == 0
    assert state["config"]["optim"]["lr"] == 0.05 and len(state["rng"]) == 1 and state["kind"] == "pretrain"
    assert "git_commit" in state["env"]


def test_non_finite_loss_stops_without_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, max_steps=5, checkpoint_every=1, keep_checkpoints=5)
    with pytest.raises(NonFiniteLossError, match=r"step 3: term\(s\) loss = nan, loss_mal = nan"):
        _run(cfg, nan_at_call=3)
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["ckpt-00000001.pt", "ckpt-00000002.pt"]


def test_grad_accum_steps_and_momentum_updates(tmp_path):
    cfg = tiny_config(tmp_path, max_steps=0, epochs=1, grad_accum=3, batch_size=2, optimizer="adamw")
    model = TinyMCL()
    pretrain(cfg, model=model, dataset=ToyClips())  # 6 batches per epoch -> 2 optimizer steps
    assert model.calls == 6 and model.momentum_updates == 2
    assert load_checkpoint(list_checkpoints(tmp_path / "run")[-1])["step"] == 2


class AutocastProbe(TinyMCL):
    """Records, for every forward, whether CPU autocast was on and the dtype of the alignment layer."""

    def __init__(self):
        super().__init__()
        self.seen = []
        self.conv.register_forward_hook(lambda mod, inp, out: self.seen.append(
            (torch.is_autocast_enabled("cpu"), out.dtype)))


def test_bf16_autocast_on_cpu_runs(tmp_path):
    torch.manual_seed(3)
    model = AutocastProbe()
    pretrain(tiny_config(tmp_path / "bf16", max_steps=2, precision="bf16"), model=model, dataset=ToyClips())
    assert model.seen == [(True, torch.bfloat16)] * 2
    fp32 = AutocastProbe()
    pretrain(tiny_config(tmp_path / "fp32", max_steps=1), model=fp32, dataset=ToyClips())
    assert fp32.seen == [(False, torch.float32)]
    assert load_checkpoint(list_checkpoints(tmp_path / "bf16" / "run")[-1])["step"] == 2


def test_real_mcl_trains_and_its_checkpoint_loads(tmp_path):
    from mcl_video.models import MCL
    from mcl_video.training.builders import build_model, feature_grid, model_config

    cfg = real_config(tmp_path, max_steps=2, batch_size=4)
    model = build_model(cfg)
    ptr0 = int(model.queue_ptr)
    run_dir = pretrain(cfg, model=model, dataset=ToyClips(12, 8, 32, feature_grid(cfg)))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["loss_mal"] > 0 and r["loss_order"] > 0 for r in records)
    assert int(model.queue_ptr) == (ptr0 + 2 * 3 * 4) % 32  # 3 keys per clip enqueued per step
    fresh = MCL(model_config(cfg))
    fresh.load_state_dict(load_checkpoint(list_checkpoints(run_dir)[-1])["model"])  # strict: same keys
    assert torch.equal(fresh.queue, model.queue)


def test_sigterm_stops_after_the_step_with_a_checkpoint(tmp_path):
    import os
    import signal

    class SignalledMCL(TinyMCL):
        def forward(self, batch, order_weight=1.0, mal_weight=1.0):
            if self.calls == 1:  # during step 2: as SLURM does before a time limit or preemption
                os.kill(os.getpid(), signal.SIGTERM)
            return super().forward(batch, order_weight, mal_weight)

    cfg = tiny_config(tmp_path, max_steps=5, checkpoint_every=100)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunStopped, match="stopped by SIGTERM after step 2 of 5") as stopped:
        pretrain(cfg, model=SignalledMCL(), dataset=ToyClips())
    assert stopped.value.exit_code == EXIT_STOPPED == 75  # not 0: `pretrain && evaluate` stops here
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["ckpt-00000002.pt"]
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is restored


def test_resume_is_exact_with_the_real_mcl(tmp_path):
    # shuffle-BN permutations, BN statistics, EMA encoder, queue ids and Adam moments all continue exactly
    from mcl_video.training.builders import build_model, feature_grid

    def run(sub, **kw):
        cfg = real_config(tmp_path / sub, optimizer="adamw", lr=1e-3, **kw)
        torch.manual_seed(0)
        return pretrain(cfg, model=build_model(cfg), dataset=ToyClips(12, 8, 32, feature_grid(cfg)))

    full = load_checkpoint(list_checkpoints(run("a", max_steps=4))[-1])
    run("b", max_steps=2)
    resumed = load_checkpoint(list_checkpoints(run("b", max_steps=4, resume=True))[-1])
    assert {"queue", "queue_ids", "queue_ptr", "encoder_k.backbone.stem.0.weight"} <= set(full["model"])
    for k, v in full["model"].items():
        assert torch.allclose(v.float(), resumed["model"][k].float(), atol=1e-6), k
    moments = zip(full["optimizer"]["state"].values(), resumed["optimizer"]["state"].values())
    assert all(torch.allclose(a["exp_avg"], b["exp_avg"], atol=1e-6) for a, b in moments)


def test_resume_refuses_changed_settings_unless_overridden(tmp_path, caplog):
    from mcl_video.training import ConfigError

    _run(tiny_config(tmp_path, max_steps=1))
    with pytest.raises(ConfigError, match="changed optim.lr: 0.05 -> 0.1 .*run.resume_override=optim.lr"):
        _run(tiny_config(tmp_path, max_steps=2, resume=True, lr=0.1))
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["ckpt-00000001.pt"]
    with caplog.at_level("WARNING"):
        _run(tiny_config(tmp_path, max_steps=2, resume=True, lr=0.1, resume_override="lr", num_workers=0))
    assert "overridden settings {'optim.lr': [0.05, 0.1]}" in caplog.text
    history = [{"step": 1, "checkpoint": "ckpt-00000001.pt", "overrides": {"optim.lr": [0.05, 0.1]}}]
    assert json.loads((tmp_path / "run" / "env.json").read_text())["resume_history"] == history
    assert load_checkpoint(list_checkpoints(tmp_path / "run")[-1])["env"]["resume_history"] == history


def test_logger_warns_once_about_dead_saliency_maps(tmp_path, caplog):
    import logging
    from types import SimpleNamespace

    from mcl_video.training.logger import MetricLogger

    cfg = SimpleNamespace(run=SimpleNamespace(log_every=1, tensorboard=False, progress=False))
    logger = MetricLogger(tmp_path, True, 0, 4, cfg, samples_per_step=2)
    with caplog.at_level(logging.WARNING, logger="mcl_video.training.logger"):
        logger.step(1, 0, {"loss": 1.0, "mal_dead": 0.05}, 0.1)  # below the threshold: quiet
        assert not caplog.records
        logger.step(2, 0, {"loss": 1.0, "mal_dead": 0.25}, 0.1)
        logger.step(3, 0, {"loss": 1.0, "mal_dead": 0.50}, 0.1)
    logger.close()
    assert len(caplog.records) == 1 and "25% of the clips" in caplog.records[0].getMessage()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["mal_dead"] for r in rows] == [0.05, 0.25, 0.50]
