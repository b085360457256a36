"""Contrastive terms: analytic values and a hand-written reference implementation."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcl_video.objective import (
    info_nce_multi_positive,
    inter_logits,
    intra_video_loss,
    order_head,
    order_loss,
)


def unit(*shape, dim=-1):
    return F.normalize(torch.randn(*shape, dtype=torch.float64), dim=dim)


def reference_info_nce(q, keys, queue, t, mask=None, extra=None):
    """Row by row with Python loops: -log softmax(row)[0]."""
    losses = []
    for b in range(q.shape[0]):
        negs = [queue[:, j] for j in range(queue.shape[1]) if mask is None or not mask[b, j]]
        if extra is not None:
            negs += list(extra[b])
        for p in range(keys.shape[1]):
            row = torch.stack([q[b] @ keys[b, p]] + [q[b] @ n for n in negs]) / t
            losses.append(-(row[0] - torch.logsumexp(row, 0)))
    return torch.stack(losses).mean()


def test_uniform_logits_give_log_k_plus_1():
    d, k = 8, 50
    v = unit(d)
    q = v.expand(3, d)
    keys = v.expand(3, 3, d)
    queue = v[:, None].expand(d, k)
    assert info_nce_multi_positive(q, keys, queue, 0.1).item() == pytest.approx(math.log(k + 1), abs=1e-9)
    extra = v.expand(3, 2, d)
    loss = info_nce_multi_positive(q, keys, queue, 0.1, extra_negatives=extra)
    assert loss.item() == pytest.approx(math.log(k + 3), abs=1e-9)


def test_info_nce_matches_reference_with_mask_and_extra_negatives():
    torch.manual_seed(0)
    q, keys, queue = unit(4, 16), unit(4, 3, 16), unit(16, 20, dim=0)
    mask = torch.rand(4, 20) < 0.3
    extra = unit(4, 2, 16)
    for m, e in [(None, None), (mask, None), (mask, extra)]:
        got = info_nce_multi_positive(q, keys, queue, 0.07, m, e)
        assert got.item() == pytest.approx(reference_info_nce(q, keys, queue, 0.07, m, e).item(), abs=1e-10)


def test_masked_queue_entries_are_exactly_removed():
    torch.manual_seed(1)
    q, keys, queue = unit(2, 8), unit(2, 3, 8), unit(8, 10, dim=0)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[:, 3:6] = True
    kept = torch.cat([queue[:, :3], queue[:, 6:]], 1)
    got = info_nce_multi_positive(q, keys, queue, 0.1, mask)
    assert got.item() == pytest.approx(info_nce_multi_positive(q, keys, kept, 0.1).item(), abs=1e-12)


def test_extra_negatives_widen_logits_and_identical_copy_scores_like_positive():
    torch.manual_seed(2)
    q, keys, queue = unit(3, 8), unit(3, 3, 8), unit(8, 5, dim=0)
    assert inter_logits(q, keys, queue, 0.1).shape == (3, 3, 6)
    broken = torch.stack([q, unit(3, 8)], 1)  # copy 0 identical to the query itself
    logits = inter_logits(q, keys, queue, 0.1, extra_negatives=broken)
    assert logits.shape == (3, 3, 8)
    assert torch.allclose(logits[:, :, 1], torch.full((3, 3), 10.0, dtype=torch.float64))
    # an identical broken copy costs the query: loss grows
    base = info_nce_multi_positive(q, keys, queue, 0.1)
    assert info_nce_multi_positive(q, keys, queue, 0.1, extra_negatives=broken) > base


def test_intra_video_loss_analytic():
    e = torch.eye(4, dtype=torch.float64)
    q, k0, k1, k2 = e[[0]], e[[0]], e[[1]], e[[2]]
    # each row is [1, 0] / 0.1 -> -log softmax = log(1 + e^-10)
    got = intra_video_loss(q, k0, k1, k2, 0.1)
    assert got.item() == pytest.approx(math.log1p(math.exp(-10.0)), abs=1e-12)
    # k1 identical to k0: first row uniform, second row as before
    got = intra_video_loss(q, k0, k0, k2, 0.1)
    assert got.item() == pytest.approx((math.log(2) + math.log1p(math.exp(-10.0))) / 2, abs=1e-12)


def test_order_loss_uses_the_classifier_on_the_normalised_concatenation():
    torch.manual_seed(3)
    q, k1, k2 = unit(5, 4), unit(5, 4), unit(5, 4)
    order = torch.tensor([0, 1, 1, 0, 1])
    clf = nn.Linear(12, 2).double()
    nn.init.zeros_(clf.weight), nn.init.zeros_(clf.bias)
    assert order_loss(q, k1, k2, order, clf).item() == pytest.approx(math.log(2), abs=1e-12)
    nn.init.normal_(clf.weight)
    # the release's head: [q; k1; k2] of three unit vectors (norm sqrt 3) divided by its norm
    logits = torch.cat([q, k1, k2], 1) / math.sqrt(3) @ clf.weight.T + clf.bias
    expected = -torch.log_softmax(logits, 1)[torch.arange(5), order].mean()
    assert order_loss(q, k1, k2, order, clf).item() == pytest.approx(expected.item(), abs=1e-12)
    unnormalised = -torch.log_softmax(torch.cat([q, k1, k2], 1) @ clf.weight.T + clf.bias, 1)
    assert abs(unnormalised[torch.arange(5), order].mean().item() - expected.item()) > 1e-3
    # one vector is normalised, not each part: scaling q alone changes the loss, scaling all three not
    assert order_loss(3 * q, 3 * k1, 3 * k2, order, clf).item() == pytest.approx(expected.item(), abs=1e-12)
    assert abs(order_loss(3 * q, k1, k2, order, clf).item() - expected.item()) > 1e-3
    seen = []
    clf.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].norm(dim=1)))
    order_loss(2 * q, k1, k2, order, clf)
    assert torch.allclose(seen[0], torch.ones(5, dtype=torch.float64))


def test_argument_checks():
    q, keys, queue = unit(2, 8), unit(2, 3, 8), unit(8, 4, dim=0)
    with pytest.raises(ValueError, match="temperature"):
        info_nce_multi_positive(q, keys, queue, 0.0)
    with pytest.raises(ValueError, match="D x K"):
        info_nce_multi_positive(q, keys, queue.T, 0.1)
    with pytest.raises(ValueError, match="queue_mask"):
        info_nce_multi_positive(q, keys, queue, 0.1, torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="B x D"):
        intra_video_loss(q, q, q[:1], q)


def test_only_the_mlp_order_head_can_read_a_relation_between_clips():
    """Label o = [q.k1 > q.k2] (which key is closer to the query) is relational: negating all three
    inputs keeps o and negates a linear head's logits, so the best linear head is a constant (ln 2).
    A small MLP on the same concatenation learns it."""

    def draw(n, g, d=16):
        q, k1, k2 = (F.normalize(torch.randn(n, d, generator=g), dim=1) for _ in range(3))
        return q, k1, k2, ((q * k1).sum(1) > (q * k2).sum(1)).long()

    held_out = {}
    for kind in ("linear", "mlp"):
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(0)
        head = order_head(kind, 16)
        opt = torch.optim.Adam(head.parameters(), lr=1e-2)
        for _ in range(300):
            loss = order_loss(*draw(256, g), head)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            held_out[kind] = order_loss(*draw(2000, torch.Generator().manual_seed(9)), head).item()
    assert held_out["linear"] > math.log(2) - 0.02, held_out
    assert held_out["mlp"] < math.log(2) - 0.05, held_out
    with pytest.raises(ValueError, match="linear, mlp"):
        order_head("deep", 16)
