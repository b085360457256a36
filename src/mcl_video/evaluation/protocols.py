"""All frozen-feature protocols on one pair of extracted feature sets, as one call (used by
``mcl evaluate``): ``run_protocols(train, test, ...) -> results dict``; and ``probe_table``: several
encoders x several label sets (linear SVM accuracy, retrieval R@1, binomial standard errors)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from mcl_video.evaluation.probes import linear_probe_fc, linear_probe_svm
from mcl_video.evaluation.retrieval import knn_accuracy, retrieval_recall
from mcl_video.figures import plot_confusion

PROTOCOLS = ("svm", "fc", "knn", "retrieval")


def run_protocols(
    train: dict,
    test: dict,
    protocols: tuple[str, ...] = PROTOCOLS,
    class_names: list[str] | None = None,
    out_dir: str | Path | None = None,
    fc_epochs: int = 100,
    fc_lr: float = 16.0,
    knn_k: int = 20,
    ks: tuple[int, ...] = (1, 5, 10, 20),
    svm_preprocess: str = "standardize",
) -> dict:
    """Run the chosen protocols on ``extract_features`` outputs (``features``, ``labels``).
    ``svm_preprocess`` goes to :func:`linear_probe_svm` (``"none"`` in the release protocol).

    Returns:
        ``{"svm": {top1, top5, mean_class_accuracy, per_class}, "fc": {...}, "knn": {"k", "top1"},
        "retrieval": {"R@1": ...}}`` (JSON-ready). With ``out_dir``, writes ``results.json`` and
        ``confusion_<probe>.png`` for the probes.
    """
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown:
        raise ValueError(f"unknown protocol(s) {sorted(unknown)}; choose from {PROTOCOLS}")
    xtr, ytr, xte, yte = train["features"], train["labels"], test["features"], test["labels"]
    num_classes = len(class_names) if class_names else int(max(ytr.max(), yte.max())) + 1
    results: dict = {"num_train": int(len(ytr)), "num_test": int(len(yte)), "num_classes": num_classes}
    confusions = {}
    if "svm" in protocols:
        confusions["svm"] = linear_probe_svm(
            xtr, ytr, xte, yte, preprocess=svm_preprocess, num_classes=num_classes
        )
    if "fc" in protocols:
        confusions["fc"] = linear_probe_fc(
            xtr, ytr, xte, yte, epochs=fc_epochs, lr=fc_lr, num_classes=num_classes
        )
    for name, m in confusions.items():
        results[name] = {k: m[k] for k in ("top1", "top5", "mean_class_accuracy", "per_class")}
    if "svm" in results:
        results["svm"]["preprocess"] = svm_preprocess
    if "knn" in protocols:
        results["knn"] = {"k": knn_k, "vote": "weighted", "top1": knn_accuracy(xte, yte, xtr, ytr, k=knn_k)}
    if "retrieval" in protocols:
        results["retrieval"] = {f"R@{k}": v for k, v in retrieval_recall(xte, yte, xtr, ytr, ks=ks).items()}
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, m in confusions.items():
            np.savetxt(out_dir / f"confusion_{name}.csv", m["confusion"], fmt="%d", delimiter=",")
            path = plot_confusion(m["confusion"], class_names, out_dir / f"confusion_{name}.png", title=name)
            results[name]["confusion_png"] = str(path)
        (out_dir / "results.json").write_text(json.dumps(_jsonable(results), indent=2))
    return results


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return None  # NaN (a class absent from the test set) -> null
    return obj


def format_table(results: dict) -> str:
    """A plain-text table of the headline numbers (percent)."""
    rows = [("protocol", "metric", "value")]
    for name in ("svm", "fc"):
        if name in results:
            for metric in ("top1", "top5", "mean_class_accuracy"):
                rows.append((name, metric, f"{100 * results[name][metric]:.2f}"))
    if "knn" in results:
        rows.append(("knn", f"top1 (k={results['knn']['k']})", f"{100 * results['knn']['top1']:.2f}"))
    for metric, value in results.get("retrieval", {}).items():
        rows.append(("retrieval", metric, f"{100 * value:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy ``p`` measured on ``n`` independent test items."""
    return math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))


def chance_levels(train_y: np.ndarray, test_y: np.ndarray) -> dict:
    """Accuracy of the best constant guess (most frequent test class) and the R@1 of a random gallery
    item: ``sum_c p_test(c) p_train(c)``."""
    classes = np.union1d(train_y, test_y)
    p_test = np.array([(test_y == c).mean() for c in classes])
    p_train = np.array([(train_y == c).mean() for c in classes])
    return {"accuracy": float(p_test.max()), "r1": float((p_test * p_train).sum())}


def probe_table(features: dict, labels: dict, retrieval: str) -> dict:
    """A linear-SVM probe per label set and retrieval R@1 for each encoder's features.

    ``features``: ``{encoder: (train N x C, test M x C)}``; ``labels``: ``{task: (train N, test M)}``
    label arrays (e.g. the action class and an appearance label); ``retrieval``: the task whose labels
    decide a retrieval hit (test queries the training set). Returns ``{encoder: {"<task>_acc",
    "<task>_se" for each task, "r1", "r1_se"}}``; ``_se`` is the binomial standard error over M."""
    if retrieval not in labels:
        raise ValueError(f"probe_table: retrieval task {retrieval!r} is not one of {sorted(labels)}")
    rows = {}
    for name, (xtr, xte) in features.items():
        row = {}
        for task, (ytr, yte) in labels.items():
            acc = linear_probe_svm(xtr, ytr, xte, yte)["top1"]
            row[f"{task}_acc"], row[f"{task}_se"] = acc, binomial_se(acc, len(yte))
        ytr, yte = labels[retrieval]
        r1 = retrieval_recall(xte, yte, xtr, ytr, ks=(1,))[1]
        row["r1"], row["r1_se"] = r1, binomial_se(r1, len(yte))
        rows[name] = row
    return rows
