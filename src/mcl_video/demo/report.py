"""The demo's report: training curves, saliency-versus-motion pictures and a self-contained HTML page
(``report.html``: HTML tables, the pictures embedded as ``data:`` URIs; the PNGs are also written
beside it)."""

from __future__ import annotations

import base64
import dataclasses
import html
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate

from mcl_video.figures import pyplot
from mcl_video.objective.alignment import alignment_terms_from_saliency
from mcl_video.sampling.augment import IMAGENET_MEAN, IMAGENET_STD
from mcl_video.sampling.photometric import augment_batch
from mcl_video.training import load_checkpoint
from mcl_video.training.builders import build_dataset, build_model
from mcl_video.training.config import config_from_dict

plt = pyplot()

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
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    styles = {"mcl": "-", "moco": "--"}
    for ax, (title, keys) in zip(axes.flat, CURVE_PANELS):
        for arm, rows in logs.items():
            for key in keys:
                pts = [(r["step"], r[key]) for r in rows if key in r]
                if pts and not (arm != "mcl" and key.startswith("mal")) and any(v for _, v in pts):
                    x, y = zip(*pts)
                    style = ":" if key == "mal_flat_loss" else styles.get(arm, "-")
                    ax.plot(x, y, style, marker=".", label=f"{arm}: {key}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize=7)
    ax = axes.flat[len(CURVE_PANELS)]
    if supervised_history:
        ax.plot([h["step"] for h in supervised_history], [h["loss"] for h in supervised_history], lw=0.8)
    ax.set_title("supervised upper bound: cross-entropy", fontsize=10)
    ax.set_xlabel("step")
    axes.flat[-1].axis("off")
    fig.suptitle("pretraining curves (metrics.jsonl); MoCo has no MAL terms", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


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
    b = target.shape[0]
    fig, axes = plt.subplots(b, 4, figsize=(10, 2.6 * b), squeeze=False)
    for i in range(b):
        frame = _frame(batch["q"][i])
        h, w = frame.shape[:2]
        name = batch["video_id"][i].split("/")[0]  # the class folder
        panels = [("query clip (middle frame)", None), ("motion target (cache)", target[i]),
                  (f"MCL saliency, cos {cos['mcl'][i]:.2f}", sal["mcl"][i]),
                  (f"MoCo saliency, cos {cos['moco'][i]:.2f}", sal["moco"][i])]
        for ax, (title, m) in zip(axes[i], panels):
            ax.imshow(frame)
            if m is not None:
                ax.imshow(m.mean(0).numpy(), cmap="magma", alpha=0.65, extent=(0, w, h, 0),
                          interpolation="bilinear")
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i][0].set_ylabel(name, fontsize=8)
    fig.suptitle("saliency of the query encoder at the alignment layer vs the motion target "
                 "(averaged over T'; cos = spatio-temporal cosine)", fontsize=9)
    fig.tight_layout()
    out = work / "saliency.png"
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return {"png": out, "cosines": cos}


def data_uri(png: Path) -> str:
    """``png`` as a ``data:image/png;base64,...`` URI (the page carries its pictures)."""
    return "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii")


def _settings_text(values: dict) -> str:
    """``{"classes": 2, "size": 64}`` -> ``classes 2, size 64`` (escaped)."""
    return html.escape(", ".join(f"{k} {v}" for k, v in values.items()))


def _html_table(head: tuple, rows: list[tuple], cls: str) -> str:
    cells = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>'


def results_table_html(results: dict) -> str:
    """The demo table of :func:`format_rows` as an HTML table."""
    rows = [(r["name"], f"{100 * r['motion_acc']:.1f} ± {100 * r['motion_se']:.1f}",
             f"{100 * r['shape_acc']:.1f} ± {100 * r['shape_se']:.1f}",
             f"{100 * r['r1']:.1f} ± {100 * r['r1_se']:.1f}") for r in results["rows"]]
    c = results["chance"]
    rows.append(("chance", *(f"{100 * c[k]:.1f}" for k in ("motion", "shape", "r1"))))
    return _html_table(("encoder", "motion probe (%)", "shape probe (%)", "R@1 (%)"), rows, "results")


def write_html(path: Path, results: dict, curves: Path, saliency: Path) -> Path:
    """A self-contained page: the table, what each row is, the settings, and the two pictures embedded
    as ``data:`` URIs (the page alone shows everything; the PNGs beside it are copies)."""
    claim = "" if results["claim"] else (
        "<p class='claim'><b>Quick smoke run: tiny benchmark, a few steps. These numbers make no "
        "claim about the method; they only show that every stage runs.</b></p>")
    sal = ", ".join(f"{arm}: {np.mean(v):.3f}" for arm, v in results["saliency"].items())
    stages = _html_table(("stage", "seconds"), [(k, f"{v:.1f}") for k, v in results["stages_s"].items()],
                         "stages")
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>mcl demo</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} img{{max-width:100%}}
table{{border-collapse:collapse;margin:1em 0}} th,td{{border:1px solid #bbb;padding:.3em .8em}}
th{{background:#eee}} table.results td+td{{text-align:right;font-variant-numeric:tabular-nums}}
table.stages td+td{{text-align:right}} .claim{{color:#a00}}</style></head><body>
<h1>mcl demo ({html.escape(results['profile'])} profile, seed {results['seed']})</h1>{claim}
<p>Built-in motion benchmark ({_settings_text(results['benchmark'])}): {results['num_train']} training
and {results['num_test']} test videos, {len(results['classes'])} motion classes. Frozen features are
probed with a linear SVM for the motion class and for the sprite shape (an appearance label), and test
videos retrieve training videos by cosine similarity (R@1). ± is the binomial standard error over the
test videos; chance is the most frequent test class (probes) and the R@1 of a random gallery video.</p>
{results_table_html(results)}
<p>Pretraining: {results['pretrain']['steps']} steps x batch {results['pretrain']['batch_size']} per arm,
same backbone and schedule; MoCo baseline = motion sampling, motion crop and MAL off. Supervised upper
bound: {results['supervised']['steps']} labelled steps, its own classifier scores
{100 * results['supervised']['finetune_test_top1']:.1f}% on the test videos. Wall {results['wall_s']} s,
CPU {results['cpu_s']} s.</p>
<h2>Stages</h2>{stages}
<h2>Training curves</h2><img src="{data_uri(curves)}" alt="training curves">
<h2>Saliency versus motion</h2><p>Mean spatio-temporal cosine between saliency and motion target:
{sal}.</p><img src="{data_uri(saliency)}" alt="saliency versus motion">
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
