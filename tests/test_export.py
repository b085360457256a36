"""`mcl export`: torchvision round trip with identical features; mmaction2 key names checked against the
key list recorded from mmaction2's source (tests/fixtures/mmaction2_keys.json, provenance inside), and the
mapping checked functionally by running mmaction2's layer layout (as described in that source) on the
exported tensors. mmaction2 itself is not installed."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
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


def _bn(state, prefix, x):
    return F.batch_norm(x, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
                        state[f"{prefix}.weight"], state[f"{prefix}.bias"], training=False, eps=1e-5)


def _mm_conv_module(state, prefix, x, t_stride, s_stride, pad, relu):
    """mmaction2's ConvModule(conv, bn[, relu]); the conv is a Conv2plus1d when ``.conv.conv_s`` exists
    (spatial conv with the spatial stride, BN, ReLU, temporal conv with the temporal stride)."""
    if f"{prefix}.conv.conv_s.weight" in state:
        x = F.conv3d(x, state[f"{prefix}.conv.conv_s.weight"], stride=(1, s_stride, s_stride),
                     padding=(0, pad[1], pad[2]))
        x = F.relu(_bn(state, f"{prefix}.conv.bn_s", x))
        x = F.conv3d(x, state[f"{prefix}.conv.conv_t.weight"], stride=(t_stride, 1, 1),
                     padding=(pad[0], 0, 0))
    else:
        x = F.conv3d(x, state[f"{prefix}.conv.weight"], stride=(t_stride, s_stride, s_stride), padding=pad)
    x = _bn(state, f"{prefix}.bn", x)
    return F.relu(x) if relu else x


def _mm_forward(state, x, shortcut=None):
    """mmaction2 ResNet3d / ResNet2Plus1d depth 18 with the exported settings (conv1 (3,7,7) stride
    (1,2,2), no max-pools, stage strides (1,2,2,2) in space and time), pooled. ``shortcut(block, x)``
    stands in for shortcut projections that were not exported."""
    x = _mm_conv_module(state, "conv1", x, 1, 2, (1, 3, 3), relu=True)
    for layer in range(1, 5):
        for b in range(2):
            s = 2 if layer > 1 and b == 0 else 1
            name = f"layer{layer}.{b}"
            out = _mm_conv_module(state, f"{name}.conv1", x, s, s, (1, 1, 1), relu=True)
            out = _mm_conv_module(state, f"{name}.conv2", out, 1, 1, (1, 1, 1), relu=False)
            if f"{name}.downsample.conv.weight" in state:
                identity = _mm_conv_module(state, f"{name}.downsample", x, s, s, (0, 0, 0), relu=False)
            elif s != 1:
                identity = shortcut(name, x)
            else:
                identity = x
            x = F.relu(out + identity)
    return x.mean(dim=(2, 3, 4))


def test_mmaction2_r3d_keys_match_the_recorded_list_and_compute_the_same_features(tmp_path):
    net = _trained_looking("r3d_18", seed=2)
    state, skipped = mmaction2_state(net)
    expected = FIXTURE[MM_NAME["r3d_18"]]
    assert {k: list(v.shape) for k, v in state.items()} == expected
    assert skipped == []
    with torch.no_grad():
        torch.testing.assert_close(_mm_forward(state, CLIP), net(CLIP), rtol=0, atol=1e-5)


def test_mmaction2_r2plus1d_keys_stem_and_blocks(tmp_path):
    net = _trained_looking("r2plus1d_18", seed=3)
    ckpt = _as_checkpoint(net, "r2plus1d_18", tmp_path / "ckpt.pt")
    out = tmp_path / "mm.pth"
    assert main(["export", str(ckpt), "--format", "mmaction2", "--out", str(out)]) == 0
    saved = torch.load(out, weights_only=True)
    state, meta = saved["state_dict"], saved["meta"]
    expected = FIXTURE[MM_NAME["r2plus1d_18"]]
    # every exported tensor has mmaction2's name and shape; the only keys left out are the shortcut
    # projections (a 1x1x1 conv in torchvision, a (2+1)D conv with fewer middle channels in mmaction2)
    assert {k: list(state[k].shape) for k in state} == {k: expected[k] for k in state}
    assert sorted(set(expected) - set(state)) == sorted(k for k in expected if ".downsample." in k)
    ours_shortcut = sorted(k for k in net.state_dict() if ".downsample." in k)
    assert meta["not_exported"] == ours_shortcut and len(ours_shortcut) == 3 * 6
    backbone_cfg = meta["mmaction2_backbone"]
    assert backbone_cfg["type"] == "ResNet2Plus1d" and backbone_cfg["with_pool1"] is False
    # the padded stem (83 middle channels, 38 of them zero) computes exactly torchvision's 45-channel stem;
    # so do the padded second convs of each stage's first block (288 vs 230 middle channels, ...)
    with torch.no_grad():
        torch.testing.assert_close(_mm_conv_module(state, "conv1", CLIP, 1, 2, (1, 3, 3), relu=True),
                                   net.stem(CLIP), rtol=0, atol=1e-5)
        ours = net.state_dict()

        def shortcut(name, x):  # our projection in place of the one mmaction2 initialises itself
            y = F.conv3d(x, ours[f"{name}.downsample.0.weight"], stride=2)
            return _bn(ours, f"{name}.downsample.1", y)

        torch.testing.assert_close(_mm_forward(state, CLIP, shortcut), net(CLIP), rtol=0, atol=1e-5)


def test_export_refuses_backbones_without_a_counterpart(tmp_path):
    net = build_backbone("tiny_r2plus1d")
    ckpt = tmp_path / "tiny.pt"
    torch.save({"model": {f"encoder_q.backbone.{k}": v for k, v in net.state_dict().items()},
                "config": {"backbone": "tiny_r2plus1d"}}, ckpt)
    with pytest.raises(UsageError, match="export works for r2plus1d_18, r3d_18"):
        export_encoder(ckpt, "torchvision", tmp_path / "x.pth")
    with pytest.raises(UsageError, match="--format"):
        export_encoder(ckpt, "onnx", tmp_path / "x.pth")
    assert not (tmp_path / "x.pth").exists()
