"""Nearest-neighbour evaluation of frozen video features: retrieval recall and kNN accuracy.

Both use cosine similarity between L2-normalised features; test videos query the training videos
(METHOD §6, "also expected by users of the field").
"""

from __future__ import annotations

import numpy as np


def _l2_normalize(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"retrieval.py: {name} must be N x C features, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def cosine_similarity(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Cosine similarity matrix.

    Args:
        query: ``Q x C`` features.
        gallery: ``G x C`` features.
    Returns:
        ``Q x G`` float64 array of cosines.
    """
    q = _l2_normalize(query, "query")
    g = _l2_normalize(gallery, "gallery")
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"retrieval.py: query has {q.shape[1]} feature dims but gallery has {g.shape[1]}; "
            "extract both with the same backbone"
        )
    return q @ g.T


def _ranked_neighbours(sim: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` most similar gallery items per query, best first (stable for ties)."""
    order = np.argsort(-sim, axis=1, kind="stable")
    return order[:, :k]


def retrieval_recall(
    test_x: np.ndarray,
    test_y: np.ndarray,
    train_x: np.ndarray,
    train_y: np.ndarray,
    ks: tuple[int, ...] = (1, 5, 10, 20),
) -> dict[int, float]:
    """Video retrieval: each test video queries the training videos by cosine similarity.

    R@k is the fraction of queries with at least one video of the same class among its top ``k``
    neighbours. Ties in similarity are broken by training-set order.

    Args:
        test_x: ``N_test x C`` query features; test_y: ``N_test`` labels.
        train_x: ``N_train x C`` gallery features; train_y: ``N_train`` labels.
        ks: the cut-offs; values above ``N_train`` are clipped to ``N_train``.
    Returns:
        ``{k: recall}`` with recall in ``[0, 1]``.
    """
    test_y = np.asarray(test_y)
    train_y = np.asarray(train_y)
    _check_pair(test_x, test_y, train_x, train_y)
    if not ks or min(ks) < 1:
        raise ValueError(f"retrieval.py: ks must be positive integers, got {ks}")
    sim = cosine_similarity(test_x, train_x)
    nn = _ranked_neighbours(sim, min(max(ks), len(train_y)))
    hit = train_y[nn] == test_y[:, None]  # N_test x K
    first_hit = np.cumsum(hit, axis=1) > 0
    return {int(k): float(first_hit[:, min(k, nn.shape[1]) - 1].mean()) for k in ks}


def knn_accuracy(
    test_x: np.ndarray,
    test_y: np.ndarray,
    train_x: np.ndarray,
    train_y: np.ndarray,
    k: int = 20,
    vote: str = "weighted",
    temperature: float = 0.07,
) -> float:
    """Top-1 accuracy of a k-nearest-neighbour classifier on cosine similarity.

    ``vote="weighted"`` (default, as in Wu et al. 2018 / DINO): each of the ``k`` neighbours votes for
    its class with weight ``exp(cos / temperature)``, so close neighbours count more and ties are rare.
    ``vote="majority"``: one vote per neighbour; ties go to the tied class with the larger summed
    cosine.

    Returns:
        accuracy in ``[0, 1]``.
    """
    test_y = np.asarray(test_y)
    train_y = np.asarray(train_y)
    _check_pair(test_x, test_y, train_x, train_y)
    if vote not in ("weighted", "majority"):
        raise ValueError(f"retrieval.py: vote must be 'weighted' or 'majority', got {vote!r}")
    if k < 1:
        raise ValueError(f"retrieval.py: k must be >= 1, got {k}")
    sim = cosine_similarity(test_x, train_x)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    pred = _vote(sim, train_y, k, vote, temperature, num_classes)
    return float((pred == test_y).mean())


def leave_one_out_knn(
    x: np.ndarray, y: np.ndarray, k: int = 1, vote: str = "majority", temperature: float = 0.07
) -> float:
    """Leave-one-out kNN accuracy on one labelled set (for sets too small to split, e.g. Weizmann).

    Each item is classified by its ``k`` nearest *other* items (cosine similarity; the item itself is
    never its own neighbour); voting as in :func:`knn_accuracy`. With ``k=1`` this is leave-one-out
    retrieval R@1.
    """
    y = np.asarray(y)
    _check_pair(x, y, x, y)
    if len(y) < 2:
        raise ValueError("retrieval.py: leave-one-out needs at least 2 items")
    if vote not in ("weighted", "majority"):
        raise ValueError(f"retrieval.py: vote must be 'weighted' or 'majority', got {vote!r}")
    if k < 1:
        raise ValueError(f"retrieval.py: k must be >= 1, got {k}")
    sim = cosine_similarity(x, x)
    np.fill_diagonal(sim, -np.inf)  # ranks itself last; k is capped below at N - 1
    pred = _vote(sim, y, min(k, len(y) - 1), vote, temperature, int(y.max()) + 1)
    return float((pred == y).mean())


def _vote(sim: np.ndarray, train_y: np.ndarray, k: int, vote: str, temperature: float,
          num_classes: int) -> np.ndarray:
    """Predicted class of each query row of ``sim`` from its ``k`` most similar gallery items."""
    nn = _ranked_neighbours(sim, min(k, len(train_y)))
    nn_sim = np.take_along_axis(sim, nn, axis=1)  # N_test x k
    nn_lab = train_y[nn]
    onehot = np.eye(num_classes)[nn_lab]  # N_test x k x K
    sim_votes = (onehot * nn_sim[..., None]).sum(axis=1)
    if vote == "weighted":
        votes = (onehot * np.exp(nn_sim / temperature)[..., None]).sum(axis=1)
    else:
        # counts dominate; the summed cosine (< k <= count step of 1 after scaling) only breaks ties
        votes = onehot.sum(axis=1) + sim_votes / (2.0 * (nn.shape[1] + 1))
    return votes.argmax(axis=1)


def _check_pair(test_x, test_y, train_x, train_y) -> None:
    if len(test_x) != len(test_y) or len(train_x) != len(train_y):
        raise ValueError(
            "retrieval.py: features and labels differ in length "
            f"(test {len(test_x)} vs {len(test_y)}, train {len(train_x)} vs {len(train_y)})"
        )
    if len(train_x) == 0 or len(test_x) == 0:
        raise ValueError("retrieval.py: empty feature set; check the split files and the video root")
