"""The demo's report: training curves, saliency-versus-motion pictures and a self-contained HTML page
(``report.html`` with the PNGs beside it, linked by relative name)."""

from __future__ import annotations

import dataclasses
import html
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate

from mcl_video.figures import saliency_grid
from mcl_video.figures import training_curves as draw_training_curves
from mcl_video.objective.alignment import alignment_terms_from_saliency
from mcl_video.sampling.augment import IMAGENET_MEAN, IMAGENET_STD
from mcl_video.sampling.photometric import augment_batch
from mcl_video.training import load_checkpoint
from mcl_video.training.builders import build_dataset, build_model
from mcl_video.training.config import config_from_dict

CURVE_PANELS = (  # (title, metrics.jsonl keys)
    ("InfoNCE inter-video loss", ("loss_inter",)),
    ("intra-video loss", ("loss_intra",)),
    ("order loss", ("loss_order",)),
    ("motion alignment loss (MAL)", ("loss_mal", "mal_flat_loss")),
    ("pos_prob (same-clip positive)", ("pos_prob",)),
    ("MAL cosines", ("mal_spatiotemporal", "mal_temporal", "mal_spatial")),
)


def read_metrics(run_dir: Path) -> list[dict]:
    """The JSON lines of ``run_dir/metrics.jsonl`` (empty when absent)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def training_curves(run_dirs: dict[str, Path], supervised_history: list[dict], out: Path) -> Path:
    """One panel per loss term / monitor of the pretraining arms, plus the supervised loss -> PNG."""
    logs = {arm: read_metrics(d) for arm, d in run_dirs.items()}
    return draw_training_curves(logs, CURVE_PANELS, supervised_history, out)


def _load_mcl(checkpoint: Path) -> torch.nn.Module:
    state = load_checkpoint(checkpoint)
    # the checkpoint holds the trained weights: do not re-read an init= file named in its config
    model = build_model(dataclasses.replace(config_from_dict(state["config"]), init=""))
    model.load_state_dict(state["model"])
    return model.eval()


def _pick(records: list, n: int) -> list:
    """Up to ``n`` test records, one per class first (in label order)."""
    first: dict[int, object] = {}
    for r in records:
        first.setdefault(int(r.label), r)
    picked = [first[k] for k in sorted(first)][:n]
    return picked + [r for r in records if r not in picked][: n - len(picked)]


def saliency_batch(config, records: list, n: int):
    """A batch of the MCL dataset (motion-focused clips and crops, augmented) over ``n`` test videos."""
    ds = build_dataset(config, records=_pick(records, n))
    return augment_batch(default_collate([ds[i] for i in range(len(ds))]))


def _frame(q: torch.Tensor) -> np.ndarray:
    """Normalised ``C x T x H x W`` -> the middle frame as ``H x W x 3`` in [0, 1]."""
    x = q[:, q.shape[1] // 2].permute(1, 2, 0).numpy()
    return np.clip(x * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN), 0, 1)


def saliency_figure(config, arms: dict, test_records: list, work: Path, n: int) -> dict:
    """Query frame, motion alignment target and each arm's saliency (time-averaged) for ``n`` test
    videos -> ``{"png": path, "cosines": {arm: [spatiotemporal cosine per video]}}``."""
    batch = saliency_batch(config, test_records, n)
    target = batch["target"]  # B x T' x H' x W'
    sal, cos = {}, {}
    for arm in ("mcl", "moco"):
        model = _load_mcl(arms[arm]["checkpoint"])
        sal[arm] = model.saliency_maps(batch)
        terms = alignment_terms_from_saliency(sal[arm], target)
        cos[arm] = [round(float(c), 4) for c in terms["spatiotemporal"]]
    rows = []
    for i in range(target.shape[0]):
        panels = [("query clip (middle frame)", None), ("motion target (cache)", target[i].mean(0).numpy()),
                  (f"MCL saliency, cos {cos['mcl'][i]:.2f}", sal["mcl"][i].mean(0).numpy()),
                  (f"MoCo saliency, cos {cos['moco'][i]:.2f}", sal["moco"][i].mean(0).numpy())]
        label = batch["video_id"][i].split("/")[0]  # the class folder
        rows.append((label, _frame(batch["q"][i]), panels))
    title = ("saliency of the query encoder at the alignment layer vs the motion target "
             "(averaged over T'; cos = spatio-temporal cosine)")
    return {"png": saliency_grid(rows, title, work / "saliency.png"), "cosines": cos}


def write_html(path: Path, results: dict, table: str, curves: Path, saliency: Path) -> Path:
    """A self-contained page: the table, what each row is, the settings, and the two PNGs."""
    claim = "" if results["claim"] else (
        "<p style='color:#a00'><b>Quick smoke run: tiny benchmark, a few steps. These numbers make no "
        "claim about the method; they only show that every stage runs.</b></p>")
    sal = ", ".join(f"{arm}: {np.mean(v):.3f}" for arm, v in results["saliency"].items())
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>mcl demo</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} pre{{background:#f4f4f4;padding:1em}}
img{{max-width:100%}}</style></head><body>
<h1>mcl demo ({html.escape(results['profile'])} profile, seed {results['seed']})</h1>{claim}
<p>Built-in motion benchmark ({html.escape(str(results['benchmark']))}): {results['num_train']} training
and {results['num_test']} test videos, {len(results['classes'])} motion classes. Frozen features are
probed with a linear SVM for the motion class and for the sprite shape (an appearance label), and test
videos retrieve training videos by cosine similarity (R@1). ± is the binomial standard error over the
test videos; chance is the most frequent test class (probes) and the R@1 of a random gallery video.</p>
<pre>{html.escape(table)}</pre>
<p>Pretraining: {results['pretrain']['steps']} steps x batch {results['pretrain']['batch_size']} per arm,
same backbone and schedule; MoCo baseline = motion sampling, motion crop and MAL off. Supervised upper
bound: {results['supervised']['steps']} labelled steps, its own classifier scores
{100 * results['supervised']['finetune_test_top1']:.1f}% on the test videos. Wall {results['wall_s']} s,
CPU {results['cpu_s']} s; stages: {html.escape(str(results['stages_s']))}.</p>
<h2>Training curves</h2><img src="{curves.name}" alt="training curves">
<h2>Saliency versus motion</h2><p>Mean spatio-temporal cosine between saliency and motion target:
{sal}.</p><img src="{saliency.name}" alt="saliency versus motion">
</body></html>
"""
    path.write_text(body)
    return path


def format_rows(results: dict) -> str:
    """The demo table (percent, ± binomial standard error) with the chance levels."""
    head = ("encoder", "motion probe", "shape probe", "R@1")
    rows = [head]
    for r in results["rows"]:
        rows.append((r["name"], f"{100 * r['motion_acc']:5.1f} ± {100 * r['motion_se']:.1f}",
                     f"{100 * r['shape_acc']:5.1f} ± {100 * r['shape_se']:.1f}",
                     f"{100 * r['r1']:5.1f} ± {100 * r['r1_se']:.1f}"))
    c = results["chance"]
    rows.append(("chance", *(f"{100 * c[k]:5.1f}" for k in ("motion", "shape", "r1"))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
