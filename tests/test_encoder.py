"""load_encoder: torchvision-format R(2+1)D-18 state dicts, our pretraining checkpoints, refusals."""

import pytest
import torch
from torchvision.models.video import r2plus1d_18

import mcl_video
from mcl_video.evaluation.encoder import EncoderLoadError, load_encoder
from mcl_video.models import build_backbone


@pytest.fixture(scope="module")
def tv_model():
    torch.manual_seed(0)
    net = r2plus1d_18(weights=None).eval()
    with torch.no_grad():  # non-trivial BN statistics so a wrong load would show
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net


def _tv_pooled(net, x):
    with torch.no_grad():
        h = net.layer4(net.layer3(net.layer2(net.layer1(net.stem(x)))))
        return net.avgpool(h).flatten(1)


def test_torchvision_state_dict_gives_torchvision_features(tmp_path, tv_model):
    full = tv_model.state_dict()
    variants = {
        "with_fc": full,
        # without fc, DDP-style names under "state_dict"
        "without_fc": {"state_dict": {f"module.{k}": v for k, v in full.items() if not k.startswith("fc.")}},
    }
    x = torch.randn(1, 3, 4, 32, 32)
    for name, state in variants.items():
        torch.save(state, tmp_path / f"{name}.pth")
        enc = mcl_video.load_encoder(tmp_path / f"{name}.pth")
        assert not enc.training and enc.num_features == 512
        loaded = enc.state_dict()
        assert set(loaded) == {k for k in full if not k.startswith("fc.")}, name
        assert all(torch.equal(loaded[k], full[k]) for k in loaded), name
    with torch.no_grad():  # same pooled features as torchvision's network without its classifier
        torch.testing.assert_close(enc(x), _tv_pooled(tv_model, x), rtol=1e-4, atol=1e-5)


def _fake_mcl_checkpoint(tmp_path, widths=(4, 8, 8, 8)):
    """A checkpoint laid out as mcl_video.training writes it: query and key backbones + extras."""
    torch.manual_seed(1)
    q = build_backbone("tiny_r2plus1d", widths=widths)
    k = build_backbone("tiny_r2plus1d", widths=widths)
    model = {f"encoder_q.backbone.{n}": v for n, v in q.state_dict().items()}
    model.update({f"encoder_k.backbone.{n}": v for n, v in k.state_dict().items()})
    model["queue"] = torch.randn(16, 8)
    ckpt = {
        "model": model,
        "step": 3,
        "config": {"backbone": "tiny_r2plus1d", "backbone_options": {"widths": list(widths)}},
    }
    torch.save(ckpt, tmp_path / "ckpt.pt")
    return tmp_path / "ckpt.pt", q, k


def test_pretraining_checkpoint_gives_the_query_encoder(tmp_path):
    path, q, k = _fake_mcl_checkpoint(tmp_path)
    enc = load_encoder(path)
    x = torch.randn(2, 3, 4, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), q.eval()(x))
        assert not torch.allclose(enc(x), k.eval()(x))


def test_wrong_backbone_is_refused_naming_keys(tmp_path):
    path, _, _ = _fake_mcl_checkpoint(tmp_path)
    with pytest.raises(EncoderLoadError, match=r"missing \(e\.g\. \['layer1") as err:
        load_encoder(path, backbone="r2plus1d_18")
    assert "unexpected" in str(err.value) and str(path) in str(err.value)
    with pytest.raises(EncoderLoadError, match="other shapes"):
        load_encoder(path, widths=(4, 8, 8, 16))


def test_foreign_state_dict_is_refused(tmp_path, tv_model):
    state = {k: v for k, v in tv_model.state_dict().items() if not k.startswith("layer4.1.")}
    state["head.proj.weight"] = torch.zeros(2, 2)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(EncoderLoadError) as err:
        load_encoder(tmp_path / "bad.pth")
    msg = str(err.value)
    assert "layer4.1.conv1" in msg and "head.proj.weight" in msg and "1 unexpected" in msg
    torch.save(
        {"model": {"something.else": torch.zeros(1)}, "config": {"backbone": "r3d_18"}}, tmp_path / "c.pt"
    )
    with pytest.raises(EncoderLoadError, match="no query-encoder backbone"):
        load_encoder(tmp_path / "c.pt")
    with pytest.raises(FileNotFoundError):
        load_encoder(tmp_path / "absent.pt")


def test_real_mcl_state_dict_loads_the_query_backbone(tmp_path):
    from mcl_video.models import MCL, MCLConfig

    torch.manual_seed(2)
    cfg = MCLConfig(
        backbone="tiny_r2plus1d", backbone_options={"widths": (4, 8, 8, 8)}, feat_dim=8, queue_size=16
    )
    mcl = MCL(cfg)
    with torch.no_grad():  # make query and key differ, as after training
        for p in mcl.encoder_q.backbone.parameters():
            p.add_(0.1)
    torch.save(
        {
            "model": mcl.state_dict(),
            "config": {"backbone": cfg.backbone, "backbone_options": {"widths": [4, 8, 8, 8]}},
        },
        tmp_path / "ckpt-00000001.pt",
    )
    enc = load_encoder(tmp_path / "ckpt-00000001.pt")
    want = mcl.encoder_q.backbone.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in enc.state_dict().items())
