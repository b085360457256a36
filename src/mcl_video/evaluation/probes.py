"""Linear probes on frozen video features (the release: a linear SVM, C=1, on raw pooled features averaged
over 20 clips; an FC layer on L2-normalised features for Kinetics) and their classification metrics.

- :func:`linear_probe_svm`: the release's UCF101/HMDB51 protocol, a linear SVM (scikit-learn
  ``LinearSVC``: L2-regularised, squared hinge, primal ``dual=False``, ``C=1``, one-vs-rest).
- :func:`linear_probe_fc`: the release's Kinetics protocol, an FC layer on L2-normalised features,
  SGD with a cosine schedule and no weight decay.

Both return :func:`classification_metrics` of the test scores.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

# `plot_confusion` moved to mcl_video.figures; the name stays importable from here for existing callers
from mcl_video.figures import plot_confusion  # noqa: F401


def classification_metrics(scores: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> dict:
    """Top-1/top-5 accuracy, per-class accuracy and the confusion matrix of class scores.

    Args:
        scores: ``N x K`` class scores (any monotone scale: logits, probabilities, SVM margins).
        labels: ``N`` integer labels in ``[0, K)``.
    Returns:
        dict with ``top1``, ``top5`` (fractions), ``mean_class_accuracy`` (mean over the classes
        present in ``labels``), ``per_class`` (list of K floats, NaN for classes with no test video),
        ``confusion`` (K x K int array, rows = true class, columns = predicted), ``predictions``
        (N) and ``scores`` (the N x K input, float64).
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if scores.ndim != 2 or len(scores) != len(labels):
        raise ValueError(f"scores must be N x K for N={len(labels)} labels, got {scores.shape}")
    k = scores.shape[1] if num_classes is None else int(num_classes)
    pred = scores.argmax(axis=1)
    top = np.argsort(-scores, axis=1, kind="stable")[:, : min(5, scores.shape[1])]
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(support > 0, np.diag(confusion) / np.maximum(support, 1), np.nan)
    return {
        "top1": float((pred == labels).mean()),
        "top5": float((top == labels[:, None]).any(axis=1).mean()),
        "mean_class_accuracy": float(np.nanmean(per_class)) if (support > 0).any() else float("nan"),
        "per_class": per_class.tolist(),
        "confusion": confusion,
        "predictions": pred,
        "scores": scores,
    }


def _num_classes(*label_sets) -> int:
    return int(max(int(np.max(y)) for y in label_sets)) + 1


def _check_features(train_x, train_y, test_x, test_y) -> None:
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        if np.asarray(x).ndim != 2 or len(x) != len(y) or len(x) == 0:
            raise ValueError(
                f"{name} features must be a non-empty N x C array with N labels, "
                f"got {np.asarray(x).shape} and {len(y)} labels"
            )
    if np.asarray(train_x).shape[1] != np.asarray(test_x).shape[1]:
        raise ValueError("train and test features differ in width; extract both with one backbone")


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation of ``N x C`` features (rows of zeros stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def linear_probe_svm(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    C: float = 1.0,
    preprocess: str = "standardize",
    max_iter: int = 5000,
    num_classes: int | None = None,
) -> dict:
    """Linear SVM probe (release protocol for UCF101/HMDB51).

    ``preprocess="standardize"`` (default) scales each feature dimension to zero mean and unit
    variance with statistics of the training set. We standardise rather than L2-normalise because
    with C fixed at 1 the balance between the margin term and the hinge term depends on the feature
    scale, which differs between backbones and checkpoints (ReLU-pooled activations); standardising
    makes C=1 mean the same thing for every encoder and keeps the primal solver well conditioned.
    ``"l2"`` (unit-norm rows) and ``"none"`` are available for comparison.

    Args:
        train_x: ``N_train x C``; train_y: ``N_train``; test_x: ``N_test x C``; test_y: ``N_test``.
    Returns:
        :func:`classification_metrics` of the SVM's decision values on the test set.
    """
    _check_features(train_x, train_y, test_x, test_y)
    train_x = np.asarray(train_x, dtype=np.float64)
    test_x = np.asarray(test_x, dtype=np.float64)
    if preprocess == "standardize":
        scaler = StandardScaler().fit(train_x)
        train_x, test_x = scaler.transform(train_x), scaler.transform(test_x)
    elif preprocess == "l2":
        train_x, test_x = l2_normalize(train_x), l2_normalize(test_x)
    elif preprocess != "none":
        raise ValueError(f"preprocess must be 'standardize', 'l2' or 'none', got {preprocess!r}")
    k = num_classes or _num_classes(train_y, test_y)
    svm = LinearSVC(C=C, loss="squared_hinge", penalty="l2", dual=False, max_iter=max_iter)
    svm.fit(train_x, np.asarray(train_y))
    margins = svm.decision_function(test_x)
    scores = np.full((len(test_x), k), -np.inf)
    if margins.ndim == 1:  # two classes: sklearn returns the margin of classes_[1]
        margins = np.stack([-margins, margins], axis=1)
    scores[:, svm.classes_] = margins
    return classification_metrics(scores, test_y, k)


def leave_one_out_svm(x: np.ndarray, y: np.ndarray, C: float = 1.0, preprocess: str = "standardize") -> float:
    """Leave-one-out accuracy of :func:`linear_probe_svm` on one small labelled set: each item is
    predicted by an SVM trained on all the others (standardisation statistics included)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    _check_features(x, y, x, y)
    k = _num_classes(y)
    correct = 0
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        result = linear_probe_svm(x[keep], y[keep], x[i : i + 1], y[i : i + 1], C=C,
                                  preprocess=preprocess, num_classes=k)
        correct += int(round(result["top1"]))
    return correct / len(y)


def linear_probe_fc(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    epochs: int = 100,
    lr: float = 16.0,
    batch_size: int = 256,
    momentum: float = 0.9,
    seed: int = 0,
    num_classes: int | None = None,
) -> dict:
    """FC-layer probe on L2-normalised frozen features (release protocol for Kinetics-400).

    SGD with momentum, no weight decay, learning rate following a per-iteration cosine from ``lr`` to
    0. The release's ``epochs=100, lr=16`` are for Kinetics scale; on small sets fewer epochs suffice.

    Returns:
        :func:`classification_metrics` of the test logits, plus ``train_loss`` (last epoch's mean).
    """
    _check_features(train_x, train_y, test_x, test_y)
    k = num_classes or _num_classes(train_y, test_y)
    gen = torch.Generator().manual_seed(seed)
    xtr = torch.from_numpy(l2_normalize(train_x)).float()
    ytr = torch.as_tensor(np.asarray(train_y), dtype=torch.long)
    fc = torch.nn.Linear(xtr.shape[1], k)
    with torch.no_grad():  # deterministic init from the seed
        fc.weight.copy_(torch.randn(fc.weight.shape, generator=gen) * 0.01)
        fc.bias.zero_()
    opt = torch.optim.SGD(fc.parameters(), lr=lr, momentum=momentum, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(xtr) / batch_size)
    total = max(1, epochs * steps_per_epoch)
    step, epoch_loss = 0, float("nan")
    for _ in range(epochs):
        perm = torch.randperm(len(xtr), generator=gen)
        losses = []
        for i in range(0, len(xtr), batch_size):
            idx = perm[i : i + batch_size]
            for group in opt.param_groups:
                group["lr"] = 0.5 * lr * (1.0 + math.cos(math.pi * step / total))
            loss = torch.nn.functional.cross_entropy(fc(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if not math.isfinite(loss.item()):
                raise FloatingPointError(
                    f"FC probe loss became {loss.item()}; lower lr (now {lr})"
                )
            opt.step()
            losses.append(loss.item())
            step += 1
        epoch_loss = float(np.mean(losses))
    with torch.no_grad():
        logits = fc(torch.from_numpy(l2_normalize(test_x)).float()).numpy()
    out = classification_metrics(logits, test_y, k)
    out["train_loss"] = epoch_loss
    return out
