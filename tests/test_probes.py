"""Linear probes: exact metric tables, the SVM's primal objective, FC probe convergence, the PNG."""

import numpy as np
import pytest
from scipy.optimize import minimize

from mcl_video.evaluation.probes import (
    classification_metrics,
    leave_one_out_svm,
    linear_probe_fc,
    linear_probe_svm,
    plot_confusion,
)


def test_classification_metrics_exact_table():
    # 3 classes (+ an absent class 3), 5 samples; top-1 predictions 0,1,1,2,0
    scores = np.array(
        [
            [0.9, 0.1, 0.0, 0.0],  # y=0 pred 0
            [0.2, 0.7, 0.1, 0.0],  # y=1 pred 1
            [0.3, 0.6, 0.1, 0.0],  # y=2 pred 1 (2 is third)
            [0.1, 0.2, 0.7, 0.0],  # y=2 pred 2
            [0.5, 0.4, 0.1, 0.0],  # y=1 pred 0
        ]
    )
    labels = np.array([0, 1, 2, 2, 1])
    m = classification_metrics(scores, labels)
    assert m["top1"] == pytest.approx(3 / 5)
    assert m["top5"] == 1.0
    np.testing.assert_array_equal(m["confusion"], [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
    assert m["per_class"][:3] == [1.0, 0.5, 0.5] and np.isnan(m["per_class"][3])
    assert m["mean_class_accuracy"] == pytest.approx(2 / 3)
    np.testing.assert_array_equal(m["predictions"], [0, 1, 1, 2, 0])


def test_top5_counts_rank_five_not_six():
    scores = np.tile(np.arange(7, 0, -1, dtype=float), (2, 1))  # ranks: class 0 best ... class 6 worst
    m = classification_metrics(scores, np.array([4, 5]))
    assert m["top1"] == 0.0 and m["top5"] == 0.5


def _clusters(seed, n_per, k=4, dim=8, sep=4.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * sep
    y = np.repeat(np.arange(k), n_per)
    return centres[y] + rng.normal(size=(len(y), dim)), y


def test_svm_matches_the_primal_squared_hinge_objective():
    # binary, no preprocessing: liblinear minimises 0.5*|[w, b]|^2 + C * sum max(0, 1 - y (w.x + b))^2
    # (the bias is an extra feature of value 1, so it is regularised too); solve it with scipy.
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(size=(15, 3)) + 1.0, rng.normal(size=(15, 3)) - 1.0])
    y = np.repeat([1, 0], 15)
    s = np.where(y == 1, 1.0, -1.0)
    xa = np.hstack([x, np.ones((30, 1))])

    def objective(wb):
        slack = np.maximum(0.0, 1.0 - s * (xa @ wb))
        return 0.5 * wb @ wb + np.sum(slack**2)

    def grad(wb):
        slack = np.maximum(0.0, 1.0 - s * (xa @ wb))
        return wb - 2.0 * xa.T @ (slack * s)

    wb = minimize(objective, np.zeros(4), jac=grad, method="L-BFGS-B", options={"gtol": 1e-10}).x
    test = rng.normal(size=(6, 3)) * 2
    expected_margin = np.hstack([test, np.ones((6, 1))]) @ wb
    out = linear_probe_svm(x, y, test, (expected_margin > 0).astype(int), C=1.0, preprocess="none")
    assert out["top1"] == 1.0
    # binary: the scores are (-margin, +margin) of class 1; liblinear stops at tol 1e-4 (relative)
    np.testing.assert_allclose(out["scores"][:, 1], expected_margin, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(out["scores"][:, 0], -out["scores"][:, 1])


def test_svm_separable_clusters_and_preprocessing_options():
    xtr, ytr = _clusters(0, 20)
    xte, yte = _clusters(0, 20)  # same centres (same seed) -> same distribution
    xte = xte + np.random.default_rng(5).normal(size=xte.shape) * 0.1
    for pre in ("standardize", "l2", "none"):
        m = linear_probe_svm(xtr, ytr, xte, yte, preprocess=pre)
        assert m["top1"] == 1.0, pre
        assert m["confusion"].shape == (4, 4)
    with pytest.raises(ValueError, match="preprocess"):
        linear_probe_svm(xtr, ytr, xte, yte, preprocess="pca")


def test_svm_handles_a_class_missing_from_training():
    xtr, ytr = _clusters(0, 10, k=3)
    m = linear_probe_svm(xtr, ytr, xtr[:3], np.array([0, 1, 3]), num_classes=4)
    assert m["confusion"].shape == (4, 4)
    assert m["confusion"][3].sum() == 1 and m["confusion"][:, 3].sum() == 0  # class 3 never predicted


def test_fc_probe_learns_direction_classes():
    # classes differ only in direction (the probe L2-normalises its input)
    xtr, ytr = _clusters(2, 25, k=5, dim=16)
    xte, yte = _clusters(2, 10, k=5, dim=16)
    scale = np.random.default_rng(3).uniform(0.1, 10, size=(len(xtr), 1))
    m = linear_probe_fc(xtr * scale, ytr, xte, yte, epochs=20, lr=4.0, batch_size=32)
    assert m["top1"] >= 0.95
    assert m["train_loss"] < 0.3
    # deterministic for a seed
    a = linear_probe_fc(xtr, ytr, xte, yte, epochs=2, lr=1.0, batch_size=32, seed=7)
    b = linear_probe_fc(xtr, ytr, xte, yte, epochs=2, lr=1.0, batch_size=32, seed=7)
    assert a["train_loss"] == b["train_loss"]


def test_fc_probe_diverging_is_reported():
    xtr, ytr = _clusters(2, 5, k=3)
    with pytest.raises(FloatingPointError, match="lower lr"):
        linear_probe_fc(xtr, ytr, xtr, ytr, epochs=3, lr=float("inf"), batch_size=4)


def test_plot_confusion_writes_png(tmp_path):
    path = plot_confusion(np.array([[3, 1], [0, 4]]), ["run", "walk"], tmp_path / "sub" / "cm.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="class names"):
        plot_confusion(np.eye(3), ["a"], tmp_path / "x.png")


def test_leave_one_out_svm_by_construction():
    # two separated clusters of 5, plus a far-away singleton of class 2: when the singleton is left out
    # its class is absent from training, so it must be wrong; every other item is right.
    x, y = _clusters(1, 5, k=2)
    x = np.vstack([x, np.full((1, x.shape[1]), 30.0)])
    y = np.append(y, 2)
    assert leave_one_out_svm(x, y) == pytest.approx(10 / 11)
    with pytest.raises(ValueError, match="non-empty"):
        leave_one_out_svm(np.ones((0, 3)), np.zeros(0, dtype=int))
