"""The ablation of MCL's components on the built-in benchmark (``benchmarks/ablation.py``): its arms, the
real-clip (Weizmann) columns, the MAL diagnostics of a run and the summary over seeds.

Every arm is the demo config with the demo profile's budget plus these overrides; "baseline" is the
demo's MoCo arm and every "+" arm adds one component to it:

    baseline         motion sampling, motion crop and MAL off
    tsamp            + motion-focused temporal sampling (clip starts)
    crop             + motion-focused spatial cropping
    mal_grad         + MAL with gradient saliency (the release's)
    mal_gradcam      + MAL with Grad-CAM saliency
    mcl              full MCL (sampling + crop + MAL, gradient saliency) = the demo's MCL arm
    mcl_broken       full MCL + motion-broken same-video negatives (frame-shuffled and static copies)
    baseline_broken  baseline + motion-broken negatives
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path

import numpy as np

from mcl_video.data import read_split
from mcl_video.data.strips import convert_strips
from mcl_video.demo.stages import extract_videos
from mcl_video.evaluation.probes import leave_one_out_svm
from mcl_video.evaluation.retrieval import leave_one_out_knn

log = logging.getLogger(__name__)
_BASE = ["motion_sampling=false", "motion_crop=false", "use_mal=false", "motion_broken_negatives=false"]
_FULL = ["motion_sampling=true", "motion_crop=true", "use_mal=true", "saliency=gradient"]
ABLATION_ARMS = {  # arm -> overrides of the demo config
    "baseline": _BASE,
    "tsamp": [*_BASE, "motion_sampling=true"],
    "crop": [*_BASE, "motion_crop=true"],
    "mal_grad": [*_BASE, "use_mal=true", "saliency=gradient"],
    "mal_gradcam": [*_BASE, "use_mal=true", "saliency=gradcam"],
    "mcl": [*_FULL, "motion_broken_negatives=false"],
    "mcl_broken": [*_FULL, "motion_broken_negatives=true"],
    "baseline_broken": [*_BASE[:-1], "motion_broken_negatives=true"],
}
METRICS = ("motion_acc", "shape_acc", "r1", "wz_1nn", "wz_svm")


def mal_diagnostics(metrics_path: Path) -> dict:
    """Mean ``loss_mal``, the flat-saliency reference ``mal_flat_loss`` and ``loss_order`` over the last
    quarter of the logged steps (empty for arms without MAL). ``mal_vs_flat`` < 1 means the learned
    saliency fits the motion target better than a constant map would."""
    if not metrics_path.is_file():
        return {}
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("mal_flat_loss", 0) > 0]  # arms without MAL log 0
    if not rows:
        return {}
    tail = rows[-max(1, len(rows) // 4):]
    keys = ("loss_mal", "mal_flat_loss", "loss_order", "mal_dead")  # older runs did not log mal_dead
    out = {k: statistics.fmean(r[k] for r in tail) for k in keys if all(k in r for r in tail)}
    out["mal_vs_flat"] = out["loss_mal"] / max(out["mal_flat_loss"], 1e-12)
    return out


def prepare_weizmann(src: Path, out: Path) -> tuple[Path, list] | None:
    """Convert the Weizmann strips once (grayscale MP4s, one folder per action) -> ``(video root,
    records)``; None (with a message) when ``src`` is absent."""
    if not src.is_dir():
        log.warning("%s not found: the Weizmann columns are left out", src)
        return None
    report = convert_strips(src, out, grayscale=True)
    if report.skipped:
        log.warning("Weizmann: skipped unreadable strips %s", sorted(report.skipped))
    return out, read_split("folder", out, video_root=out)


def weizmann_rows(encoders: dict, config, root: Path, records: list, num_clips: int) -> dict:
    """Leave-one-out 1-NN (cosine) and linear-SVM accuracy of each encoder's Weizmann features ->
    ``{encoder: {"wz_1nn", "wz_svm", "wz_n"}}``."""
    features, res = extract_videos(encoders, config, root, records, num_clips)
    labels = np.asarray(res["labels"])
    return {arm: {"wz_1nn": leave_one_out_knn(x, labels, k=1), "wz_svm": leave_one_out_svm(x, labels),
                  "wz_n": len(labels)}
            for arm, x in features.items()}


def summarise(per_seed: dict, arms: list[str]) -> dict:
    """``{seed: {arm: metrics}}`` -> ``{arm: {metric: (mean, std)}}`` (sample std; 0 for one seed)."""
    out = {}
    for arm in arms:
        out[arm] = {}
        for m in METRICS:
            values = [per_seed[s][arm][m] for s in per_seed if m in per_seed[s][arm]]
            if not values:
                continue
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            out[arm][m] = (statistics.fmean(values), std)
    return out


def format_summary(summary: dict, seeds: list[int]) -> str:
    """The Markdown table of ``summarise`` (percent, mean ± std; n/a for a column not measured)."""
    lines = ["| arm | seeds | motion probe | shape probe | R@1 | Weizmann LOO 1-NN | Weizmann LOO SVM |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for arm, metrics in summary.items():
        cells = " | ".join(f"{100 * metrics[m][0]:.1f} ± {100 * metrics[m][1]:.1f}" if m in metrics else "n/a"
                           for m in METRICS)
        lines.append(f"| {arm} | {len(seeds)} | {cells} |")
    return "\n".join(lines)
