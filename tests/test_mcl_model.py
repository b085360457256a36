"""The MCL module: terms, queue, masking, gradients, saliency capture and its pitfalls."""

import math

import pytest
import torch
from torch import nn

from mcl_video.models import MCL, FeatureCapture, MCLConfig, build_backbone
from mcl_video.models.mcl import motion_broken_clips
from mcl_video.objective import alignment_terms_from_saliency, info_nce_multi_positive, loss_from_terms

CLIP, SIZE = 8, 48  # tiny_r2plus1d grid: 2 x 3 x 3


def make_batch(b=4, seed=0, index=None):
    g = torch.Generator().manual_seed(seed)
    clip = lambda: torch.randn(b, 3, CLIP, SIZE, SIZE, generator=g)  # noqa: E731
    grid = build_backbone("tiny_r2plus1d").feature_grid(CLIP, SIZE)
    return {
        "q": clip(), "k0": clip(), "k1": clip(), "k2": clip(),
        "target": torch.rand(b, *grid, generator=g),
        "order": torch.randint(2, (b,), generator=g),
        "index": torch.arange(b) if index is None else index,
    }  # fmt: skip


def make_model(backbone_options=None, **options):
    torch.manual_seed(0)
    backbone = {"widths": (8, 16, 16, 32), **(backbone_options or {})}
    return MCL(MCLConfig("tiny_r2plus1d", backbone_options=backbone, queue_size=32, **options))


def test_all_terms_forward_backward_finite_gradients_everywhere():
    model = make_model(motion_broken_negatives=("shuffle", "repeat"))
    loss, out = model(make_batch())
    for name in ("loss", "loss_inter", "loss_intra", "loss_order", "loss_mal", "mal_flat_loss"):
        assert torch.isfinite(out[name]) and out[name] > 0, name
    assert 0 < out["pos_prob"] < 1
    assert loss.requires_grad and not any(v.requires_grad for v in out.values())
    assert out["loss"].item() == loss.item()
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    bad = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not bad, f"no finite gradient for {bad[:5]}"
    assert all(p.grad is None for p in model.encoder_k.parameters())
    expected = out["loss_inter"] + out["loss_intra"] + out["loss_order"] + out["loss_mal"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_mal_flat_loss_is_the_loss_of_a_constant_map():
    # a constant saliency map on the 2 x 3 x 3 grid against targets whose MAL loss is known by hand
    # (n = 9 positions per step; loss = (1 - cos_st) + (1 - cos_t) + (1 - cos_s)):
    #   one position lit, a different one in each step: cos_st = 1/3, cos_t = 1, cos_s = sqrt(2)/3
    #   one position lit, the same in both steps:      cos_st = 1/3, cos_t = 1, cos_s = 1/3
    #   uniform everywhere:                             every cosine 1, loss 0
    #   step 0 uniform, step 1 zero: cos_st = softmax weight of step 0 = sigmoid(9), cos_t = 1/sqrt(2),
    #                                cos_s = 1
    batch = make_batch()
    target = torch.zeros(4, 2, 3, 3)
    target[0, 0, 0, 0] = target[0, 1, 2, 1] = 1.0
    target[1, :, 1, 2] = 1.0
    target[2] = 0.5
    target[3, 0] = 1.0
    batch["target"] = target
    _, out = make_model()(batch)
    expected = [(5 - math.sqrt(2)) / 3, 4 / 3, 0.0, 2 - 1 / (1 + math.exp(-9)) - 1 / math.sqrt(2)]
    assert out["mal_flat_loss"].item() == pytest.approx(sum(expected) / 4, abs=1e-6)


def test_mal_dead_counts_all_zero_saliency_maps(monkeypatch):
    # a clip whose saliency is zero everywhere gets cosine 0 in all three terms (loss 3) and is "dead"
    model = make_model()
    batch = make_batch()
    real, seen = model.alignment.saliency_map, []

    def first_dead(l_pos, create_graph=True):
        sal = real(l_pos, create_graph)
        seen.append(torch.cat([sal[:1] * 0, sal[1:]]))
        return seen[-1]

    monkeypatch.setattr(model.alignment, "saliency_map", first_dead)
    _, out = model(batch)
    assert out["mal_dead"].item() == pytest.approx(1 / batch["target"].shape[0])
    terms = alignment_terms_from_saliency(seen[0].detach(), batch["target"])
    assert [float(terms[k][0]) for k in ("spatiotemporal", "temporal", "spatial")] == [0.0, 0.0, 0.0]
    assert out["loss_mal"].item() == pytest.approx(loss_from_terms(terms).item(), rel=1e-5)


def test_disabled_terms_report_zero():
    model = make_model(use_intra=False, use_order=False, use_mal=False)
    loss, out = model(make_batch())
    for name in ("loss_intra", "loss_order", "loss_mal", "mal_spatial", "mal_flat_loss"):
        assert out[name].item() == 0.0, name
    assert loss.item() == pytest.approx(out["loss_inter"].item())
    assert set(model.encoder_q.heads) == {"inter"} and model.order_classifier is None


def test_queue_pointer_ids_and_stored_keys():
    model = make_model(use_mal=False)  # queue of 32 slots, 3 x 4 keys per step
    batch = make_batch()
    model.eval()  # deterministic BN so the keys can be recomputed
    with torch.no_grad():
        keys = model.encoder_k(torch.cat([batch["k0"], batch["k1"], batch["k2"]]))["inter"]
        model(batch)
    assert int(model.queue_ptr) == 12
    assert model.queue_ids.tolist() == [0, 1, 2, 3] * 3 + [-1] * 20
    assert torch.allclose(model.queue[:, :12].T, keys, atol=1e-6)
    with torch.no_grad():
        for _ in range(2):
            model(make_batch(index=torch.tensor([7, 8, 9, 10])))
    assert int(model.queue_ptr) == 36 % 32  # wrapped around
    assert model.queue_ids[:4].tolist() == [7, 8, 9, 10] and model.queue_ids[12:16].tolist() == [7, 8, 9, 10]


def test_same_video_masking_excludes_exactly_those_keys():
    model = make_model(use_intra=False, use_order=False, use_mal=False, shuffle_bn=False).eval()
    batch = make_batch()
    ids = torch.full((32,), -1, dtype=torch.long)
    ids[[1, 5, 9]], ids[[2, 30]] = 0, 3
    model.queue_ids.copy_(ids)
    queue = model.queue.clone()
    with torch.no_grad():
        q = model.encoder_q(batch["q"])["inter"]
        keys = model.encoder_k(torch.cat([batch["k0"], batch["k1"], batch["k2"]]))["inter"]
        _, out = model(batch)
    keys = keys.view(3, 4, -1).transpose(0, 1)
    # sample i: its own video's keys removed from the negatives, every other key kept
    per_sample = [info_nce_multi_positive(q[[i]], keys[[i]], queue[:, ids != i], 0.1) for i in range(4)]
    assert out["loss_inter"].item() == pytest.approx(sum(per_sample).item() / 4, rel=1e-5)
    unmasked = make_model(use_intra=False, use_order=False, use_mal=False, mask_same_video=False).eval()
    unmasked.load_state_dict(model.state_dict())
    unmasked.queue.copy_(queue), unmasked.queue_ids.copy_(ids), unmasked.queue_ptr.zero_()
    with torch.no_grad():
        assert unmasked(batch)[1]["loss_inter"].item() != pytest.approx(out["loss_inter"].item(), rel=1e-6)


def test_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    options = {"widths": (8, 8, 16, 16)}
    model = MCL(MCLConfig("tiny_r2plus1d", backbone_options=options, queue_size=12, use_order=False))
    g = torch.Generator().manual_seed(1)
    batch = {n: torch.randn(4, 3, 4, 32, 32, generator=g) for n in ("q", "k0", "k1", "k2")}
    batch.update(target=torch.rand(4, 1, 2, 2, generator=g), order=torch.zeros(4), index=torch.arange(4))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(20):
        loss, _ = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.momentum_update()
        losses.append(loss.item())
    # step 0 sees the random initial queue; from step 1 on the queue holds this batch's keys
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[1:4]) / 3, losses


@pytest.mark.parametrize("saliency", ["gradient", "gradcam"])
def test_saliency_varies_over_positions(saliency):
    model = make_model(saliency=saliency)
    sal = model.saliency_maps(make_batch())
    assert sal.shape == make_batch()["target"].shape
    flat = sal.flatten(1)
    assert (flat.std(dim=1) / flat.mean(dim=1).clamp_min(1e-12) > 0.05).all(), flat


@pytest.mark.parametrize("layer", ["layer4", "layer4.relu", "layer4.conv2", "layer4.conv2.1"])
def test_capture_after_bn_or_relu_is_refused(layer):
    with pytest.raises(ValueError, match="not a convolution output.*flat"):
        make_model(backbone_options={"alignment_layer": layer})


def test_gradient_of_the_pooled_block_output_is_flat():
    """Why the refusal: d l / d (block output) is constant over positions once pooled."""
    torch.manual_seed(0)
    backbone = build_backbone("tiny_r2plus1d")
    x = backbone.forward_features(torch.randn(2, 3, CLIP, SIZE, SIZE))
    logit = (x.mean(dim=(2, 3, 4)) @ torch.randn(x.shape[1])).sum()
    grad = torch.autograd.grad(logit, x)[0]
    assert torch.allclose(grad, grad[:, :, :1, :1, :1].expand_as(grad))


def test_capture_survives_in_place_ops_after_the_layer():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv3d(1, 1, 1, bias=False)

        def forward(self, x):
            y = self.conv(x)
            y.mul_(3.0)  # an in-place op after the captured conv, like `out += residual`
            return y.square().sum()

    net, x = Net(), torch.randn(1, 1, 2, 2, 2)
    cap = FeatureCapture(net, "conv")
    cap.enabled = True
    loss = net(x)
    captured = cap.pop()
    grad = torch.autograd.grad(loss, captured)[0]
    assert torch.allclose(grad, 18.0 * captured)  # d/dX (3X)^2 = 18 X, at the conv's output


def test_grid_mismatch_and_momentum_update():
    model = make_model()
    batch = make_batch()
    batch["target"] = torch.rand(4, 4, 7, 7)
    with pytest.raises(ValueError, match="feature_grid"):
        model(batch)
    model.config.momentum = 0.5
    k_before = [p.clone() for p in model.encoder_k.parameters()]
    with torch.no_grad():
        for p in model.encoder_q.parameters():
            p.add_(1.0)
    model.momentum_update()
    for p_k, before, p_q in zip(model.encoder_k.parameters(), k_before, model.encoder_q.parameters()):
        assert torch.allclose(p_k, 0.5 * before + 0.5 * p_q)


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_order_head_options_train_with_finite_gradients(head):
    model = make_model(order_head=head)
    hidden = {"linear": [(2, 3 * 128)], "mlp": [(128, 3 * 128), (2, 128)]}[head]
    weights = [p.shape for n, p in model.order_classifier.named_parameters() if n.endswith("weight")]
    assert weights == [torch.Size(s) for s in hidden]
    loss, out = model(make_batch())
    assert torch.isfinite(out["loss_order"]) and out["loss_order"] > 0
    loss.backward()
    for name, p in model.order_classifier.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert all(torch.isfinite(p.grad).all() for p in model.encoder_q.heads["order"].parameters())


def test_motion_broken_clips_break_the_motion_and_nothing_else():
    torch.manual_seed(3)
    b, t = 5, 6
    # frame f of clip i is filled with the value 100 i + f, so the frame order can be read back
    clips = (100 * torch.arange(b)[:, None] + torch.arange(t)[None, :]).float()
    clips = clips[:, None, :, None, None].expand(b, 3, t, 2, 2).contiguous()
    copies = motion_broken_clips(clips, ("shuffle", "repeat"))
    assert copies.shape == (2 * b, 3, t, 2, 2)
    order = copies[:, 0, :, 0, 0] - 100 * torch.arange(b).repeat(2)[:, None]  # 2B x T frame indices
    shuffled, repeated = order[:b], order[b:]
    assert all(sorted(row.tolist()) == list(range(t)) for row in shuffled)  # a permutation of the frames
    assert not (shuffled == torch.arange(t)).all(1).any()  # never the original order
    assert (repeated == repeated[:, :1]).all() and ((repeated >= 0) & (repeated < t)).all()  # one frame
    assert motion_broken_clips(clips, ("repeat",)).shape == (b, 3, t, 2, 2)
    with pytest.raises(ValueError, match="kinds must be from"):
        MCLConfig("tiny_r2plus1d", motion_broken_negatives=("reverse",))
