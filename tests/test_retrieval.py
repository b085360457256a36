"""Retrieval recall and kNN accuracy on hand-built features with known answers."""

import numpy as np
import pytest
import torch

from mcl_video.evaluation.retrieval import (
    cosine_similarity,
    knn_accuracy,
    leave_one_out_knn,
    retrieval_recall,
)


def _angles(deg):
    """2-D unit vectors at the given angles (degrees): cosine similarity = cos(angle difference)."""
    rad = np.deg2rad(np.asarray(deg, dtype=np.float64))
    return np.stack([np.cos(rad), np.sin(rad)], axis=1)


# gallery on the circle; class labels chosen so the rank of the first same-class hit is known
TRAIN_DEG = [0, 10, 20, 30, 40, 90, 180]
TRAIN_Y = [0, 1, 1, 1, 2, 2, 3]


def test_cosine_similarity_is_scale_invariant():
    a = _angles([0, 60]) * np.array([[3.0], [0.5]])
    b = _angles([0, 90])
    np.testing.assert_allclose(cosine_similarity(a, b), [[1, 0], [0.5, np.cos(np.deg2rad(30))]], atol=1e-12)


def test_retrieval_recall_known_ranks():
    # query at 0 deg: neighbours by angle 0,10,20,30,40,90,180 -> labels 0,1,1,1,2,2,3
    # q0 label 0 -> hit at rank 1; q1 label 2 -> first 2 at rank 5; q2 label 3 -> rank 7 (last)
    test_x = _angles([0, 0, 0])
    test_y = [0, 2, 3]
    r = retrieval_recall(test_x, test_y, _angles(TRAIN_DEG), TRAIN_Y, ks=(1, 4, 5, 7, 20))
    assert r == {1: pytest.approx(1 / 3), 4: pytest.approx(1 / 3), 5: pytest.approx(2 / 3), 7: 1.0, 20: 1.0}


def test_retrieval_recall_perfect_and_zero():
    x = _angles([0, 90, 180])
    assert retrieval_recall(x, [0, 1, 2], x, [0, 1, 2], ks=(1,)) == {1: 1.0}
    assert retrieval_recall(x, [5, 5, 5], x, [0, 1, 2], ks=(1, 3)) == {1: 0.0, 3: 0.0}


def test_knn_weighted_vs_majority():
    # query at 0 deg, k=3: neighbours at 0 (label 0), 10 and 20 (label 1).
    # majority -> class 1 (2 votes vs 1); weighted with small temperature -> class 0 (exp(1/t) dominates)
    test_x = _angles([0])
    train_x = _angles([0, 10, 20])
    train_y = [0, 1, 1]
    assert knn_accuracy(test_x, [1], train_x, train_y, k=3, vote="majority") == 1.0
    assert knn_accuracy(test_x, [0], train_x, train_y, k=3, vote="weighted", temperature=0.01) == 1.0
    # large temperature: weights ~ equal, so weighted becomes the majority
    assert knn_accuracy(test_x, [1], train_x, train_y, k=3, vote="weighted", temperature=100.0) == 1.0


def test_knn_majority_tie_goes_to_closer_class():
    # k=2: one neighbour of each class; class 1 is nearer (5 deg) than class 0 (30 deg)
    test_x = _angles([0])
    train_x = _angles([30, 5])
    assert knn_accuracy(test_x, [1], train_x, [0, 1], k=2, vote="majority") == 1.0


def test_knn_accuracy_on_separable_clusters():
    rng = np.random.default_rng(0)
    centres = np.eye(4) * 5
    train_y = np.repeat(np.arange(4), 10)
    test_y = np.repeat(np.arange(4), 5)
    train_x = centres[train_y] + rng.normal(size=(40, 4))
    test_x = centres[test_y] + rng.normal(size=(20, 4))
    assert knn_accuracy(test_x, test_y, train_x, train_y, k=5) == 1.0
    assert retrieval_recall(test_x, test_y, train_x, train_y, ks=(1,))[1] == 1.0


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="differ in length"):
        retrieval_recall(np.zeros((2, 3)), [0], np.zeros((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="feature dims"):
        knn_accuracy(np.ones((1, 3)), [0], np.ones((2, 4)), [0, 1])
    with pytest.raises(ValueError, match="vote"):
        knn_accuracy(np.ones((1, 3)), [0], np.ones((2, 3)), [0, 1], vote="soft")


def test_leave_one_out_never_uses_the_item_itself():
    # each point's nearest *other* point carries the other label: 0 % (with itself included it would be 100 %)
    x = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    y = np.array([0, 1, 1, 0])
    assert leave_one_out_knn(x, y, k=1) == 0.0


def test_leave_one_out_knn_majority_by_hand():
    # clusters A = {0, 1, 2} (labels 0, 0, 1) and B = {3, 4} (labels 1, 1), far apart; no ties in angle
    x = np.array([[1.0, 0.00], [1.0, 0.01], [1.0, 0.03], [0.0, 1.0], [0.01, 1.0]])
    y = np.array([0, 0, 1, 1, 1])
    sim = cosine_similarity(x, x)
    np.fill_diagonal(sim, -np.inf)
    expected = []
    for i in range(5):
        nearest = np.argsort(-sim[i], kind="stable")[:3]
        votes = np.bincount(y[nearest], minlength=2)
        expected.append(int(votes.argmax()) == y[i])
    assert leave_one_out_knn(x, y, k=3) == pytest.approx(np.mean(expected))
    # k=1: only item 2 is wrong (its nearest other item is item 1, label 0)
    assert leave_one_out_knn(x, y, k=1) == pytest.approx(4 / 5)
    # k larger than N - 1 is capped: every item sees the 4 others
    assert leave_one_out_knn(x, y, k=50) == leave_one_out_knn(x, y, k=4)


def test_leave_one_out_knn_refuses_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        leave_one_out_knn(np.ones((1, 3)), np.zeros(1, dtype=int))
    with pytest.raises(ValueError, match="differ in length"):
        leave_one_out_knn(np.ones((3, 3)), np.zeros(2, dtype=int))


# ---- the chunked top-k against the full-matrix computation it replaced ----------------------------

def _full_matrix_reference(test_x, test_y, train_x, train_y, k, vote, temperature, ks, loo=False):
    """The previous implementation, written out: float64 full similarity matrix, stable argsort,
    one-hot votes."""
    def norm(a):
        a = np.asarray(a, dtype=np.float64)
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    sim = norm(test_x) @ norm(train_x).T
    if loo:
        np.fill_diagonal(sim, -np.inf)
    order = np.argsort(-sim, axis=1, kind="stable")
    recall = {}
    for kk in ks:
        hit = (train_y[order[:, :kk]] == test_y[:, None]).any(axis=1)
        recall[kk] = float(hit.mean())
    nn = order[:, :k]
    nn_sim = np.take_along_axis(sim, nn, axis=1)
    onehot = np.eye(int(max(train_y.max(), test_y.max())) + 1)[train_y[nn]]
    if vote == "weighted":
        votes = (onehot * np.exp(nn_sim / temperature)[..., None]).sum(axis=1)
    else:
        votes = onehot.sum(axis=1) + (onehot * nn_sim[..., None]).sum(axis=1) / (2.0 * (k + 1))
    return recall, float((votes.argmax(axis=1) == test_y).mean())


def _clustered(rng, n, num_classes, dim, quantise):
    y = rng.integers(0, num_classes, n)
    x = rng.normal(size=(num_classes, dim))[y] + rng.normal(scale=1.5, size=(n, dim))
    if quantise:
        # rows with four entries of +-1 (norm exactly 2): every cosine is a multiple of 1/4, computed
        # exactly by any matmul, so most similarities are exactly tied and only the tie rule ranks them
        x = np.zeros((n, dim))
        for row, label in zip(x, y):
            cols = rng.choice(dim // 2, 2, replace=False)
            cols = np.concatenate([cols, dim // 2 + rng.choice(dim // 2, 2, replace=False)])
            row[cols] = np.where(rng.random(4) < 0.2 + 0.1 * label, -1.0, 1.0)
    return x, y


@pytest.mark.parametrize("quantise", [False, True])
@pytest.mark.parametrize("chunks", [(7, 5), (1024, 16384), (1, 1)])
def test_chunked_neighbours_equal_the_full_matrix(quantise, chunks):
    from mcl_video.evaluation.retrieval import nearest_neighbours

    rng = np.random.default_rng(3)
    train_x, train_y = _clustered(rng, 83, 5, 6, quantise)
    test_x, test_y = _clustered(rng, 29, 5, 6, quantise)
    sim = cosine_similarity(test_x, train_x)
    order = np.argsort(-sim, axis=1, kind="stable")[:, :12]
    s, i = nearest_neighbours(test_x, train_x, 12, chunk_size=chunks[0], gallery_chunk=chunks[1],
                              device="cpu")
    np.testing.assert_array_equal(i, order)  # identical ranking, ties included
    np.testing.assert_allclose(s, np.take_along_axis(sim, order, axis=1), rtol=0, atol=1e-12)
    # leave-one-out: the item's own column is never chosen
    s, i = nearest_neighbours(train_x, train_x, 12, exclude_self=True, chunk_size=chunks[0],
                              gallery_chunk=chunks[1], device="cpu")
    full = cosine_similarity(train_x, train_x)
    np.fill_diagonal(full, -np.inf)
    np.testing.assert_array_equal(i, np.argsort(-full, axis=1, kind="stable")[:, :12])
    assert not (i == np.arange(len(train_x))[:, None]).any()


@pytest.mark.parametrize("quantise", [False, True])
@pytest.mark.parametrize("vote", ["weighted", "majority"])
def test_protocols_equal_the_full_matrix_reference(quantise, vote):
    rng = np.random.default_rng(11)
    train_x, train_y = _clustered(rng, 120, 6, 8, quantise)
    test_x, test_y = _clustered(rng, 40, 6, 8, quantise)
    ks = (1, 5, 10, 20)
    recall, acc = _full_matrix_reference(test_x, test_y, train_x, train_y, 7, vote, 0.07, ks)
    assert retrieval_recall(test_x, test_y, train_x, train_y, ks=ks, device="cpu") == recall
    assert knn_accuracy(test_x, test_y, train_x, train_y, k=7, vote=vote, device="cpu") == acc
    _, loo = _full_matrix_reference(train_x, train_y, train_x, train_y, 5, vote, 0.07, ks, loo=True)
    assert leave_one_out_knn(train_x, train_y, k=5, vote=vote, device="cpu") == loo


def test_nearest_neighbours_float32_and_argument_checks():
    from mcl_video.evaluation.retrieval import nearest_neighbours

    rng = np.random.default_rng(5)
    train_x, _ = _clustered(rng, 50, 4, 16, False)
    test_x, _ = _clustered(rng, 10, 4, 16, False)
    s64, i64 = nearest_neighbours(test_x, train_x, 5, device="cpu")
    s32, _ = nearest_neighbours(test_x, train_x, 5, device="cpu", dtype=torch.float32, chunk_size=3)
    np.testing.assert_allclose(s32, s64, atol=1e-5)
    with pytest.raises(ValueError, match="k must be in"):
        nearest_neighbours(test_x, train_x, 51)
    with pytest.raises(ValueError, match="exclude_self"):
        nearest_neighbours(test_x, train_x, 3, exclude_self=True)
