"""Deployment formats: the `mcl` encoder file (any backbone, clip settings kept), ONNX checked against
onnxruntime (skipped without the `onnx` extra), and the torch.hub entry point of hubconf.py."""

from pathlib import Path

import pytest
import torch

from mcl_video.cli import main
from mcl_video.evaluation.encoder import encoder_settings, load_encoder
from mcl_video.models import build_backbone

ROOT = Path(__file__).resolve().parents[1]


def _checkpoint(tmp_path, arch="tiny_r2plus1d", options=None, seed=0):
    torch.manual_seed(seed)
    net = build_backbone(arch, **(options or {}))
    for m in net.modules():  # random BN statistics: a BN mapped to the wrong place changes the output
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "ckpt.pt"
    config = {"backbone": arch, "backbone_options": options or {}, "clip_len": 8, "stride": 2, "size": 32}
    torch.save({"model": {f"encoder_q.backbone.{k}": v for k, v in net.state_dict().items()},
                "config": config}, path)
    return net.eval(), path


def test_mcl_encoder_file_of_a_tiny_backbone_round_trips_with_its_clip_settings(tmp_path, capsys):
    net, ckpt = _checkpoint(tmp_path, options={"widths": [8, 16, 24, 32]})
    out = tmp_path / "tiny_encoder.pth"
    assert main(["export", str(ckpt), "--format", "mcl", "--out", str(out)]) == 0
    assert "tiny_r2plus1d encoder file (126 tensors" in capsys.readouterr().out
    settings = encoder_settings(out)
    assert (settings.kind, settings.backbone) == ("encoder", "tiny_r2plus1d")
    assert settings.backbone_options == {"widths": [8, 16, 24, 32]}
    assert settings.clip == {"clip_len": 8, "stride": 2, "size": 32}
    x = torch.randn(3, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(load_encoder(out)(x), net(x), rtol=0, atol=0)


def test_onnx_export_matches_onnxruntime_with_a_dynamic_batch(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime", reason="ONNX checks need the `onnx` extra (onnx, onnxruntime)")
    pytest.importorskip("onnx", reason="ONNX export needs the `onnx` extra (onnx, onnxruntime)")
    net, ckpt = _checkpoint(tmp_path, seed=1)
    out = tmp_path / "tiny.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(out)]) == 0
    assert "input clip batch x 3 x 8 x 32 x 32" in capsys.readouterr().out  # from the checkpoint's config
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["clip"]
    assert [o.name for o in session.get_outputs()] == ["features"]
    for batch in (1, 5):  # traced with 2
        x = torch.randn(batch, 3, 8, 32, 32, generator=torch.Generator().manual_seed(batch))
        (got,) = session.run(None, {"clip": x.numpy()})
        with torch.no_grad():
            want = net(x)
        assert got.shape == (batch, net.num_features)
        torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-4, atol=1e-5)


def test_torch_hub_local_returns_the_encoder(tmp_path):
    net, ckpt = _checkpoint(tmp_path, seed=2)
    exported = tmp_path / "encoder.pth"
    assert main(["export", str(ckpt), "--format", "mcl", "--out", str(exported)]) == 0
    x = torch.randn(2, 3, 8, 32, 32)
    for path in (ckpt, exported):
        model = torch.hub.load(str(ROOT), "encoder", source="local", checkpoint=str(path))
        assert not model.training
        with torch.no_grad():
            torch.testing.assert_close(model(x), net(x), rtol=0, atol=0)
