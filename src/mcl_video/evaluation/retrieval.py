"""Nearest-neighbour evaluation of frozen video features: retrieval recall and kNN accuracy.

Both use cosine similarity between L2-normalised features; test videos query the training videos
(test videos query the training set by cosine similarity; R@1/5/10/20 and kNN accuracy).

Neighbours come from :func:`nearest_neighbours`: chunked matmuls with a running top-k (on the GPU when
present), so a Kinetics-size val x train comparison never holds the full similarity matrix.
"""

from __future__ import annotations

import numpy as np
import torch


def _l2_normalize(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be N x C features, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def cosine_similarity(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Full cosine similarity matrix (small sets; the protocols below never build it).

    Args:
        query: ``Q x C`` features.
        gallery: ``G x C`` features.
    Returns:
        ``Q x G`` float64 array of cosines.
    """
    q = _l2_normalize(query, "query")
    g = _l2_normalize(gallery, "gallery")
    _check_dims(q, g)
    return q @ g.T


def _check_dims(q, g) -> None:
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"query has {q.shape[1]} feature dims but gallery has {g.shape[1]}; "
            "extract both with the same backbone"
        )


def default_device() -> torch.device:
    """The first CUDA device when one is present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _merge_top(best_s, best_i, cand_s, cand_i, k: int):
    """Top ``k`` of the union of two candidate sets, by similarity descending then gallery index
    ascending. ``best_*`` come from earlier gallery chunks (all indices smaller than ``cand_i``), both
    sets are ordered that way already, so a stable sort of the concatenation keeps ties in index order."""
    s = torch.cat([best_s, cand_s], dim=1)
    i = torch.cat([best_i, cand_i], dim=1)
    s, order = torch.sort(s, dim=1, descending=True, stable=True)
    return s[:, :k], torch.gather(i, 1, order[:, :k])


def _block_top(sim: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best columns of each row of ``sim`` (``R x B``), ties at the k-th value resolved to
    the lowest column index (exactly as a stable sort would), ordered by similarity then index."""
    kth = torch.topk(sim, k, dim=1).values[:, -1:]  # R x 1: the k-th largest value
    above = sim > kth
    tied = sim == kth
    room = k - above.sum(dim=1, keepdim=True)  # how many tied columns still fit
    if bool((tied.sum(dim=1, keepdim=True) > room).any()):  # more ties than room: lowest columns first
        keep = above | (tied & (torch.cumsum(tied.to(torch.int32), dim=1) <= room))
    else:
        keep = above | tied
    cols = keep.nonzero()[:, 1].view(sim.shape[0], k)  # ascending column order per row
    vals = torch.gather(sim, 1, cols)
    vals, order = torch.sort(vals, dim=1, descending=True, stable=True)
    return vals, torch.gather(cols, 1, order)


def nearest_neighbours(
    query: np.ndarray,
    gallery: np.ndarray,
    k: int,
    exclude_self: bool = False,
    chunk_size: int = 1024,
    gallery_chunk: int = 16384,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar gallery items of every query by cosine similarity, without building
    the full ``Q x G`` matrix.

    Queries go through in chunks of ``chunk_size`` and the gallery in chunks of ``gallery_chunk``;
    a running top-k is merged per gallery chunk, so beyond the inputs the memory is bounded by
    ``chunk_size x gallery_chunk`` similarities. Ties are broken by gallery order (as a stable sort of
    the full matrix would). ``exclude_self`` (query set = gallery set) ranks each item's own column
    last, so it is never its own neighbour when ``k < G``.

    Args:
        query: ``Q x C``; gallery: ``G x C`` features (any scale; rows are L2-normalised here).
        k: neighbours per query, ``1 <= k <= G``.
        device: where the matmuls run (default: CUDA when present, else CPU).
        dtype: ``torch.float64`` (default; matches a NumPy float64 computation) or ``torch.float32``.
    Returns:
        ``(similarities, indices)``: ``Q x k`` float64 cosines and int64 gallery indices, best first.
    """
    q_np = _l2_normalize(query, "query")
    g_np = _l2_normalize(gallery, "gallery")
    _check_dims(q_np, g_np)
    if not 1 <= k <= len(g_np):
        raise ValueError(f"k must be in [1, {len(g_np)}] (gallery size), got {k}")
    if exclude_self and len(q_np) != len(g_np):
        raise ValueError("exclude_self needs the query set to be the gallery set")
    device = torch.device(device) if device is not None else default_device()
    g_all = torch.from_numpy(g_np).to(device=device, dtype=dtype)
    out_s, out_i = [], []
    for q0 in range(0, len(q_np), chunk_size):
        q = torch.from_numpy(q_np[q0 : q0 + chunk_size]).to(device=device, dtype=dtype)
        best_s = torch.empty((len(q), 0), dtype=dtype, device=device)
        best_i = torch.empty((len(q), 0), dtype=torch.int64, device=device)
        for g0 in range(0, len(g_np), gallery_chunk):
            sim = q @ g_all[g0 : g0 + gallery_chunk].T  # Qc x Gc
            if exclude_self:
                rows = torch.arange(len(q), device=device)
                cols = rows + q0 - g0
                inside = (cols >= 0) & (cols < sim.shape[1])
                sim[rows[inside], cols[inside]] = -torch.inf
            s, i = _block_top(sim, min(k, sim.shape[1]))
            best_s, best_i = _merge_top(best_s, best_i, s, i + g0, k)
        out_s.append(best_s.double().cpu())
        out_i.append(best_i.cpu())
    return torch.cat(out_s).numpy(), torch.cat(out_i).numpy()


def retrieval_recall(
    test_x: np.ndarray,
    test_y: np.ndarray,
    train_x: np.ndarray,
    train_y: np.ndarray,
    ks: tuple[int, ...] = (1, 5, 10, 20),
    device: str | torch.device | None = None,
) -> dict[int, float]:
    """Video retrieval: each test video queries the training videos by cosine similarity.

    R@k is the fraction of queries with at least one video of the same class among its top ``k``
    neighbours. Ties in similarity are broken by training-set order.

    Args:
        test_x: ``N_test x C`` query features; test_y: ``N_test`` labels.
        train_x: ``N_train x C`` gallery features; train_y: ``N_train`` labels.
        ks: the cut-offs; values above ``N_train`` are clipped to ``N_train``.
        device: where the similarities are computed (see :func:`nearest_neighbours`).
    Returns:
        ``{k: recall}`` with recall in ``[0, 1]``.
    """
    test_y = np.asarray(test_y)
    train_y = np.asarray(train_y)
    _check_pair(test_x, test_y, train_x, train_y)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    _, nn = nearest_neighbours(test_x, train_x, min(max(ks), len(train_y)), device=device)
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
    device: str | torch.device | None = None,
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
        raise ValueError(f"vote must be 'weighted' or 'majority', got {vote!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    nn_sim, nn = nearest_neighbours(test_x, train_x, min(k, len(train_y)), device=device)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    pred = _vote(nn_sim, train_y[nn], vote, temperature, num_classes)
    return float((pred == test_y).mean())


def leave_one_out_knn(
    x: np.ndarray,
    y: np.ndarray,
    k: int = 1,
    vote: str = "majority",
    temperature: float = 0.07,
    device: str | torch.device | None = None,
) -> float:
    """Leave-one-out kNN accuracy on one labelled set (for sets too small to split, e.g. Weizmann).

    Each item is classified by its ``k`` nearest *other* items (cosine similarity; the item itself is
    never its own neighbour); voting as in :func:`knn_accuracy`. With ``k=1`` this is leave-one-out
    retrieval R@1.
    """
    y = np.asarray(y)
    _check_pair(x, y, x, y)
    if len(y) < 2:
        raise ValueError("leave-one-out needs at least 2 items")
    if vote not in ("weighted", "majority"):
        raise ValueError(f"vote must be 'weighted' or 'majority', got {vote!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    # the item itself ranks last; k is capped at N - 1, so it is never its own neighbour
    nn_sim, nn = nearest_neighbours(x, x, min(k, len(y) - 1), exclude_self=True, device=device)
    pred = _vote(nn_sim, y[nn], vote, temperature, int(y.max()) + 1)
    return float((pred == y).mean())


def _vote(nn_sim: np.ndarray, nn_lab: np.ndarray, vote: str, temperature: float,
          num_classes: int) -> np.ndarray:
    """Predicted class per query from its neighbours' cosines and labels (both ``N x k``, best first)."""
    n, k = nn_sim.shape
    where = (np.repeat(np.arange(n), k), nn_lab.ravel())
    votes = np.zeros((n, num_classes))
    if vote == "weighted":
        np.add.at(votes, where, np.exp(nn_sim / temperature).ravel())
    else:
        # counts dominate; the summed cosine (< k <= count step of 1 after scaling) only breaks ties
        sim_votes = np.zeros((n, num_classes))
        np.add.at(sim_votes, where, nn_sim.ravel())
        np.add.at(votes, where, 1.0)
        votes += sim_votes / (2.0 * (k + 1))
    return votes.argmax(axis=1)


def _check_pair(test_x, test_y, train_x, train_y) -> None:
    if len(test_x) != len(test_y) or len(train_x) != len(train_y):
        raise ValueError(
            "features and labels differ in length "
            f"(test {len(test_x)} vs {len(test_y)}, train {len(train_x)} vs {len(train_y)})"
        )
    if len(train_x) == 0 or len(test_x) == 0:
        raise ValueError("empty feature set; check the split files and the video root")
