"""compile=true: compiled regions around the alignment layer's output give eager MCL's loss and gradients."""

from __future__ import annotations

import pytest
import torch

from mcl_video.models import build_backbone
from mcl_video.models.compiled import upstream_modules
from mcl_video.training.builders import build_model, feature_grid
from test_pretrain_loop import real_config


def test_upstream_modules_stop_at_the_alignment_layer():
    with torch.device("meta"):
        r2p1 = build_backbone("r2plus1d_18")
        tiny = build_backbone("tiny_r2plus1d")
    # layer4.1.conv2.0 is Conv2Plus1D (spatial conv, BN, ReLU, temporal conv); its output is X
    assert upstream_modules(r2p1, r2p1.alignment_layer) == [
        "stem", "layer1", "layer2", "layer3", "layer4.0", "layer4.1.conv1",
        "layer4.1.conv2.0.0", "layer4.1.conv2.0.1", "layer4.1.conv2.0.2", "layer4.1.conv2.0.3"]
    assert upstream_modules(tiny, "layer3.conv1") == ["stem", "layer1", "layer2", "layer3.conv1.0",
                                                     "layer3.conv1.1", "layer3.conv1.2"]
    with pytest.raises(ValueError, match="has no 'conv9'"):
        upstream_modules(tiny, "layer4.conv9")


@pytest.mark.slow
def test_compiled_step_equals_eager_loss_and_gradients(tmp_path, monkeypatch):
    # a private inductor cache: a cache shared with concurrent compiling processes can hand out a
    # half-written kernel ("file too short")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    cfg = real_config(tmp_path)
    torch.manual_seed(0)
    eager = build_model(cfg)
    torch.manual_seed(0)
    compiled = build_model(real_config(tmp_path, compile=True))
    assert compiled.encoder_k._compiled_call_impl is not None
    assert compiled.encoder_q.backbone.stem._compiled_call_impl is not None
    assert compiled.encoder_q.backbone._compiled_call_impl is None  # X's downstream path stays eager
    assert list(eager.state_dict()) == list(compiled.state_dict())  # checkpoints keep their names
    g = torch.Generator().manual_seed(1)
    batch = {k: torch.randn(2, 3, 8, 32, 32, generator=g) for k in ("q", "k0", "k1", "k2")}
    batch.update(target=torch.rand(2, *feature_grid(cfg), generator=g), order=torch.tensor([0, 1]),
                 index=torch.tensor([0, 1]))

    def step(model):
        torch.manual_seed(2)  # shuffle-BN's permutation
        loss, metrics = model(batch)
        loss.backward()
        return loss, metrics, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    loss_e, met_e, grad_e = step(eager)
    loss_c, met_c, grad_c = step(compiled)
    assert met_e["loss_mal"] > 0 and torch.isfinite(loss_c)
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(met_c["loss_mal"], met_e["loss_mal"], rtol=1e-4, atol=1e-5)
    assert grad_e.keys() == grad_c.keys() and len(grad_e) > 50
    for name, want in grad_e.items():
        scale = want.abs().max().item()
        torch.testing.assert_close(grad_c[name], want, rtol=1e-3, atol=1e-4 * scale, msg=name)
    buffers = dict(compiled.named_buffers())
    for name, buf in eager.named_buffers():  # BN statistics and the queue moved the same way
        if buf.is_floating_point():
            torch.testing.assert_close(buffers[name], buf, rtol=1e-4, atol=1e-5, msg=name)
