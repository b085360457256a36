"""`mcl export`: torchvision round trip with identical features; mmaction2 key names and shapes checked
against the key list recorded from mmaction2's source (tests/fixtures/mmaction2_keys.json, provenance
inside). These tests do not run mmaction2: tests/test_mmaction2.py builds the exported network in
mmaction2 itself where it is importable (benchmarks/mmaction2_check.py makes such an environment); ONNX
and the encoder file in tests/test_onnx_hub.py."""

import json
from pathlib import Path

import pytest
import torch
from torchvision.models import video as tv_video

from mcl_video.cli import main
from mcl_video.errors import UsageError
from mcl_video.evaluation.export import export_encoder, mmaction2_state
from mcl_video.models import build_backbone

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "mmaction2_keys.json").read_text())
MM_NAME = {"r3d_18": "ResNet3d_depth18", "r2plus1d_18": "ResNet2Plus1d_depth18"}


def _trained_looking(arch, seed=0):
    """A backbone with random weights *and* random BN statistics/affines (so a BN mapped to the wrong
    place changes the output)."""
    torch.manual_seed(seed)
    net = build_backbone(arch)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
            m.num_batches_tracked.fill_(7)
    return net.eval()


def _as_checkpoint(net, arch, path):
    """Our pretraining checkpoint layout: the query encoder inside ``model``, the backbone in ``config``."""
    state = {f"encoder_q.backbone.{k}": v for k, v in net.state_dict().items()}
    state["queue"] = torch.zeros(4, 2)
    torch.save({"model": state, "config": {"backbone": arch, "backbone_options": {}}}, path)
    return path


CLIP = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("arch", ["r2plus1d_18", "r3d_18"])
def test_torchvision_export_loads_and_gives_identical_features(tmp_path, arch):
    net = _trained_looking(arch)
    ckpt = _as_checkpoint(net, arch, tmp_path / "ckpt.pt")
    out = tmp_path / "tv.pth"
    assert main(["export", str(ckpt), "--format", "torchvision", "--out", str(out)]) == 0
    model = getattr(tv_video, arch)(weights=None)
    result = model.load_state_dict(torch.load(out, weights_only=True), strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and not result.unexpected_keys
    model.fc = torch.nn.Identity()
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(CLIP), net(CLIP), rtol=0, atol=1e-6)


def test_mmaction2_r3d_keys_match_the_recorded_list(tmp_path):
    net = _trained_looking("r3d_18", seed=2)
    state, skipped = mmaction2_state(net)
    assert {k: list(v.shape) for k, v in state.items()} == FIXTURE[MM_NAME["r3d_18"]]
    assert skipped == []
    ours = net.state_dict()
    assert torch.equal(state["layer3.0.downsample.conv.weight"], ours["layer3.0.downsample.0.weight"])
    assert torch.equal(state["layer4.1.conv2.bn.running_var"], ours["layer4.1.conv2.1.running_var"])


def test_mmaction2_r2plus1d_keys_padding_and_shortcuts(tmp_path):
    net = _trained_looking("r2plus1d_18", seed=3)
    ckpt = _as_checkpoint(net, "r2plus1d_18", tmp_path / "ckpt.pt")
    out = tmp_path / "mm.pth"
    assert main(["export", str(ckpt), "--format", "mmaction2", "--out", str(out)]) == 0
    saved = torch.load(out, weights_only=True)
    state, meta = saved["state_dict"], saved["meta"]
    # every (2+1)D conv has the names and shapes of mmaction2's Conv2plus1d (recorded for its
    # ResNet2Plus1d, whose convs ResNet3d with conv_cfg Conv2plus1d builds alike); the shortcut projections
    # are 1x1x1 convs under R3D's names (MCLConv2plus1d builds a Conv3d there)
    r21d, r3d = FIXTURE[MM_NAME["r2plus1d_18"]], FIXTURE[MM_NAME["r3d_18"]]
    expected = {k: v for k, v in r21d.items() if ".downsample." not in k}
    expected.update({k: v for k, v in r3d.items() if ".downsample." in k})
    assert {k: list(v.shape) for k, v in state.items()} == expected
    assert meta["not_exported"] == [] and meta["custom_imports"] == ["mcl_video.mmaction2_conv"]
    backbone_cfg = meta["mmaction2_backbone"]
    assert backbone_cfg["type"] == "ResNet3d" and backbone_cfg["with_pool1"] is False
    assert backbone_cfg["conv_cfg"] == {"type": "MCLConv2plus1d"}
    ours = net.state_dict()
    # the stem's 45 middle channels are copied, mmaction2's 38 extra ones are zero (weights and BN)
    w = state["conv1.conv.conv_s.weight"]
    assert w.shape[0] == 83 and torch.equal(w[:45], ours["stem.0.weight"]) and not w[45:].any()
    assert not state["conv1.conv.conv_t.weight"][:, 45:].any()
    assert not state["conv1.conv.bn_s.weight"][45:].any() and not state["conv1.conv.bn_s.bias"][45:].any()
    assert torch.equal(state["layer2.0.downsample.conv.weight"], ours["layer2.0.downsample.0.weight"])


def test_mmaction2_config_text_is_python_with_the_exported_settings():
    from mcl_video.evaluation.export import MMACTION2_BACKBONES, mmaction2_config

    for arch in ("r2plus1d_18", "r3d_18"):
        scope: dict = {}
        exec(mmaction2_config(arch, "w.pth", num_classes=7), {"dict": dict}, scope)
        backbone = dict(scope["model"]["backbone"])
        assert backbone.pop("pretrained") == "w.pth"
        assert backbone == MMACTION2_BACKBONES[arch]
        assert scope["model"]["cls_head"]["num_classes"] == 7
        assert ("custom_imports" in scope) == (arch == "r2plus1d_18")


def test_export_refuses_backbones_without_a_counterpart(tmp_path):
    net = build_backbone("tiny_r2plus1d")
    ckpt = tmp_path / "tiny.pt"
    torch.save({"model": {f"encoder_q.backbone.{k}": v for k, v in net.state_dict().items()},
                "config": {"backbone": "tiny_r2plus1d"}}, ckpt)
    with pytest.raises(UsageError, match="export works for r2plus1d_18, r3d_18"):
        export_encoder(ckpt, "torchvision", tmp_path / "x.pth")
    with pytest.raises(UsageError, match="--format"):
        export_encoder(ckpt, "caffe", tmp_path / "x.pth")
    assert not (tmp_path / "x.pth").exists()
