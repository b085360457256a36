"""Motion alignment loss: the release's golden vectors, analytic cases, both saliency options."""

import numpy as np
import pytest
import torch

from mcl_video.objective import (
    alignment_terms_from_saliency,
    motion_alignment_loss,
    motion_alignment_terms,
    saliency_map,
)


@pytest.mark.shared
def test_matches_release_golden_vectors(shared):
    golden = np.load(shared("reference", "mal_golden.npz"))
    grad, target = torch.from_numpy(golden["gradient"]), torch.from_numpy(golden["target"])
    terms = motion_alignment_terms(grad, target)
    for name in ("spatiotemporal", "spatial", "temporal"):
        np.testing.assert_allclose(terms[name].numpy(), golden[f"cos_{name}"], atol=1e-6, rtol=0)
    assert motion_alignment_loss(grad, target).item() == pytest.approx(float(golden["loss"]), abs=1e-6)


@pytest.mark.parametrize("t", [1, 3, 4])
def test_perfect_alignment_gives_zero_loss(t):
    torch.manual_seed(t)
    spatial = torch.rand(2, 1, 5, 6, dtype=torch.float64)
    target = spatial.expand(2, t, 5, 6).contiguous()
    # one channel G = S: w_t = mean S_t is the same for every t, so P = w * S, proportional to S
    grad = target.unsqueeze(1)
    assert motion_alignment_loss(grad, target).item() == pytest.approx(0.0, abs=1e-12)
    # and from any saliency equal to the target, whatever T'
    free = torch.rand(2, t, 5, 6, dtype=torch.float64)
    terms = alignment_terms_from_saliency(free, free)
    assert all(torch.allclose(v, torch.ones(2, dtype=torch.float64)) for v in terms.values())


def test_gradient_saliency_formula_and_scale_invariance():
    torch.manual_seed(0)
    grad = torch.randn(2, 5, 3, 4, 4, dtype=torch.float64)
    target = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    w = grad.mean(dim=(3, 4))  # B x C x T
    expected = torch.relu(torch.einsum("bct,bcthw->bthw", w, grad))
    assert torch.allclose(saliency_map(grad), expected)
    base = motion_alignment_loss(grad, target)
    assert motion_alignment_loss(3.0 * grad, target).item() == pytest.approx(base.item(), abs=1e-12)
    # the target's scale only enters the softmax time weights of the spatio-temporal term
    a, b = motion_alignment_terms(grad, target), motion_alignment_terms(grad, 7.0 * target)
    assert torch.allclose(a["spatial"], b["spatial"]) and torch.allclose(a["temporal"], b["temporal"])


def test_gradcam_saliency_formula():
    torch.manual_seed(1)
    grad = torch.randn(2, 5, 3, 4, 4, dtype=torch.float64)
    act = torch.randn(2, 5, 3, 4, 4, dtype=torch.float64)
    alpha = grad.mean(dim=(2, 3, 4))
    expected = torch.relu(torch.einsum("bc,bcthw->bthw", alpha, act))
    assert torch.allclose(saliency_map(grad, act, "gradcam"), expected)
    target = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    terms = motion_alignment_terms(grad, target, act, saliency="gradcam")
    assert torch.allclose(terms["spatial"], alignment_terms_from_saliency(expected, target)["spatial"])
    with pytest.raises(ValueError, match="activation"):
        saliency_map(grad, None, "gradcam")


def test_flat_saliency_analytic_spatial_cosine():
    target = torch.rand(3, 2, 4, 4, dtype=torch.float64)
    terms = alignment_terms_from_saliency(torch.ones_like(target), target)
    s = target.mean(1).flatten(1)
    assert torch.allclose(terms["spatial"], s.sum(1) / (s.norm(dim=1) * 4.0))


def test_grid_mismatch_is_refused():
    with pytest.raises(ValueError, match="feature_grid"):
        motion_alignment_loss(torch.randn(2, 4, 2, 7, 7), torch.rand(2, 4, 7, 7))
    with pytest.raises(ValueError, match="unknown saliency"):
        saliency_map(torch.randn(1, 2, 1, 2, 2), method="cam")
