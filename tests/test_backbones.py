"""Backbones: shapes via feature_grid, gradients everywhere, torchvision loading, exact inflation."""

import pytest
import torch
import torchvision

from mcl_video.errors import DataError
from mcl_video.models import build_backbone
from mcl_video.models.p3d_resnet import inflate_2d_state_dict
from mcl_video.training.builders import build_model
from mcl_video.training.config import ConfigError, PretrainConfig

SMALL = {"tiny_r2plus1d": (8, 32), "r2plus1d_18": (2, 32), "r3d_18": (2, 32), "p3d_resnet50": (4, 32)}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_forward_backward_shapes_and_gradients(name):
    torch.manual_seed(0)
    model = build_backbone(name)
    t, s = SMALL[name]
    feats = model.forward_features(torch.randn(2, 3, t, s, s))
    assert feats.shape == (2, model.num_features, *model.feature_grid(t, s))
    feats.mean(dim=(2, 3, 4)).square().sum().backward()
    bad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not bad, f"parameters without a finite gradient: {bad[:5]}"
    assert model.get_submodule(model.alignment_layer) is not None


def test_canonical_feature_grids():
    assert build_backbone("r2plus1d_18").feature_grid(16, 112) == (2, 7, 7)
    assert build_backbone("r3d_18").feature_grid(16, 112) == (2, 7, 7)
    assert build_backbone("p3d_resnet50").feature_grid(16, 224) == (4, 7, 7)
    tiny = build_backbone("tiny_r2plus1d")
    assert tiny.feature_grid(16, 112) == (4, 7, 7) and tiny.feature_grid(16, 64) == (4, 4, 4)
    with pytest.raises(ValueError, match="too small"):
        build_backbone("p3d_resnet50").feature_grid(2, 224)


@pytest.mark.parametrize("arch", ["r2plus1d_18", "r3d_18"])
def test_torchvision_state_dict_loads_unchanged(arch):
    torch.manual_seed(0)
    tv = getattr(torchvision.models.video, arch)(weights=None).eval()
    model = build_backbone(arch).eval()
    result = model.load_state_dict(tv.state_dict(), strict=False)
    assert result.missing_keys == [] and sorted(result.unexpected_keys) == ["fc.bias", "fc.weight"]
    x = torch.randn(1, 3, 2, 16, 16)
    with torch.no_grad():
        tv.fc = torch.nn.Identity()
        assert torch.allclose(model(x), tv(x), atol=1e-5)


@pytest.fixture(scope="module")
def resnet50_2d():
    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None)
    # non-trivial BN statistics so that eval-mode BN is not the identity
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.1, 0.1)
    return net.eval()


def test_inflation_is_exact(resnet50_2d, tmp_path):
    """Time step t of the inflated net sees frame 4t+1 only: identical frames give the 2D features."""
    path = tmp_path / "r50.pth"
    torch.save(resnet50_2d.state_dict(), path)
    p3d = build_backbone("p3d_resnet50", weights=str(path)).double().eval()
    net2d = resnet50_2d.double()
    frame = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    clip = torch.randn(1, 3, 8, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        pooled_2d = torch.flatten(net2d.avgpool(_features_2d(net2d, frame)), 1)
        same = p3d(frame.unsqueeze(2).expand(1, 3, 16, 32, 32))
        assert torch.allclose(same, pooled_2d, atol=1e-9)
        feats = p3d.forward_features(clip)  # 2 time steps: frames 1 and 5
        for t, f in enumerate((1, 5)):
            assert torch.allclose(feats[:, :, t], _features_2d(net2d, clip[:, :, f]), atol=1e-9)


def _features_2d(net, x):
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


def test_moco_checkpoint_and_bad_keys(resnet50_2d, tmp_path):
    weights = resnet50_2d.state_dict()
    state = {f"module.encoder_q.{k}": v for k, v in weights.items() if not k.startswith("fc")}
    state["module.encoder_q.fc.0.weight"] = torch.zeros(2048, 2048)  # MoCo v2 MLP head: ignored
    state["module.encoder_k.conv1.weight"] = torch.zeros(64, 3, 7, 7)  # key encoder: ignored
    state["module.queue"] = torch.zeros(128, 8)
    path = tmp_path / "moco_v2.pth.tar"
    torch.save({"epoch": 200, "state_dict": state}, path)
    p3d = build_backbone("p3d_resnet50", weights=str(path))
    assert torch.equal(p3d.conv1.weight[:, :, 1], resnet50_2d.conv1.weight)
    assert p3d.conv1.weight[:, :, [0, 2, 3]].abs().sum() == 0
    centre = p3d.layer2[0].conv2_t.weight[:, :, 1, 0, 0]
    assert torch.equal(centre, torch.eye(128))
    broken = {k: v for k, v in resnet50_2d.state_dict().items() if k != "layer1.0.bn1.weight"}
    broken["extra.weight"] = torch.zeros(1)
    with pytest.raises(DataError, match=r"missing keys \['layer1.0.bn1.weight'\].*unexpected keys \['extra"):
        inflate_2d_state_dict(broken, p3d.state_dict())


@pytest.mark.parametrize("fmt", ["torchvision", "moco_v2"])
def test_init_key_inflates_a_2d_resnet50_into_both_encoders(resnet50_2d, tmp_path, fmt):
    weights = resnet50_2d.state_dict()
    path = tmp_path / f"{fmt}.pth"
    if fmt == "torchvision":
        torch.save(weights, path)
    else:  # MoCo v2: query encoder under module.encoder_q., its MLP head as fc.*, plus the key encoder
        state = {f"module.encoder_q.{k}": v for k, v in weights.items() if not k.startswith("fc")}
        state.update({"module.encoder_q.fc.0.weight": torch.zeros(2048, 2048),
                      "module.encoder_q.fc.2.weight": torch.zeros(128, 2048),
                      "module.encoder_k.conv1.weight": torch.zeros(64, 3, 7, 7)})
        torch.save({"epoch": 800, "arch": "resnet50", "state_dict": state}, path)
    cfg = PretrainConfig(backbone="p3d_resnet50", init=str(path), queue_size=8, use_mal=False)
    model = build_model(cfg)
    for encoder in (model.encoder_q, model.encoder_k):
        p3d = encoder.backbone.state_dict()
        assert torch.equal(p3d["conv1.weight"][:, :, 1], weights["conv1.weight"])  # stem at index 1 of 4
        assert p3d["conv1.weight"][:, :, [0, 2, 3]].abs().sum() == 0
        for key in ("layer1.0.conv2.weight", "layer3.5.conv2.weight", "layer4.2.conv1.weight",
                    "layer2.0.downsample.0.weight"):
            assert torch.equal(p3d[key][:, :, 0], weights[key]), key  # 3x3 -> 1x3x3, 1x1 -> 1x1x1
        for key in ("bn1.running_var", "layer4.2.bn3.weight", "layer2.0.downsample.1.running_mean"):
            assert torch.equal(p3d[key], weights[key]), key
        ident = p3d["layer3.1.conv2_t.weight"]  # temporal conv starts as the identity
        assert torch.equal(ident[:, :, 1, 0, 0], torch.eye(256)) and ident[:, :, [0, 2]].abs().sum() == 0


def test_kinetics_init_loads_moco_v2_head_into_the_inter_head(resnet50_2d, tmp_path):
    """The release starts the inter-video head from MoCo v2's MLP head (fc.0, fc.2) on Kinetics only;
    a state dict without ``num_batches_tracked`` loads (the release loads non-strictly)."""
    weights = resnet50_2d.state_dict()
    state = {f"module.encoder_q.{k}": v for k, v in weights.items()
             if not k.startswith("fc") and not k.endswith("num_batches_tracked")}
    g = torch.Generator().manual_seed(4)
    fc = {"0.weight": torch.randn(2048, 2048, generator=g), "0.bias": torch.randn(2048, generator=g),
          "2.weight": torch.randn(128, 2048, generator=g), "2.bias": torch.randn(128, generator=g)}
    state.update({f"module.encoder_q.fc.{k}": v for k, v in fc.items()})
    path = tmp_path / "moco_v2.pth.tar"
    torch.save({"epoch": 800, "state_dict": state}, path)
    for dataset in ("kinetics400", "ucf101"):
        cfg = PretrainConfig(dataset=dataset, backbone="p3d_resnet50", init=str(path), queue_size=8,
                             use_mal=False, use_order=False, use_intra=False)
        model = build_model(cfg)
        for encoder in (model.encoder_q, model.encoder_k):
            head = encoder.heads["inter"].state_dict()
            loaded = all(torch.equal(head[k], v) for k, v in fc.items())
            assert loaded == (dataset == "kinetics400"), dataset
            bn = encoder.backbone.state_dict()
            assert torch.equal(bn["layer1.0.bn1.running_var"], weights["layer1.0.bn1.running_var"])
            assert int(bn["layer1.0.bn1.num_batches_tracked"]) == 0  # absent in the file: kept
    with pytest.raises(DataError, match="missing keys"):  # any other missing key is still refused
        inflate_2d_state_dict({k: v for k, v in weights.items() if k != "bn1.weight"},
                              build_backbone("p3d_resnet50").state_dict())


def test_init_refuses_wrong_files_and_backbones(tmp_path):
    torch.manual_seed(0)
    r18 = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), r18)
    with pytest.raises(DataError, match=r"resnet18.pth: cannot inflate.*missing keys \['layer1.0.bn3.bias'"):
        build_backbone("p3d_resnet50", weights=str(r18))
    text = tmp_path / "notes.txt"
    text.write_text("not weights\n")
    with pytest.raises(DataError, match=r"notes.txt: not a PyTorch weights file"):
        build_model(PretrainConfig(backbone="p3d_resnet50", init=str(text), queue_size=8))
    with pytest.raises(DataError, match=r"init=.*absent.pth: file not found"):
        build_model(PretrainConfig(backbone="p3d_resnet50", init=str(tmp_path / "absent.pth")))
    with pytest.raises(ConfigError, match="backbone=tiny_r2plus1d has none to load"):
        build_model(PretrainConfig(backbone="tiny_r2plus1d", init=str(r18)))
