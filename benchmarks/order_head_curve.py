"""The order term's learning curve by order head: ``loss_order`` and ``loss_intra`` vs step of pretraining
runs (one per head, e.g. ``order_head=mlp`` and ``order_head=linear`` with the same seed and steps), with
the chance level ln 2 of a two-way order decision.

Each argument is a run folder written by ``mcl pretrain`` (``config.yaml`` + ``metrics.jsonl``); a run is
labelled by its ``order_head``. The runs log one step's batch loss every ``log_every`` steps; a "mean
of the last ``--tail`` steps" is the mean of the values logged in them (± its standard error over those
logged values). Prints a Markdown table: ``loss_order`` at a few logged steps, its mean over the last
``--tail`` steps (and the distance to ln 2), the same mean of ``loss_intra``, and the order weight at the
last logged step; writes the figure (thin: every logged value; thick: a running mean over ``--tail``
steps).

    python benchmarks/order_head_curve.py runs/order_mlp runs/order_linear --out order_head_curve.png
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import numpy as np
import yaml

from mcl_video.figures import pyplot

LN2 = math.log(2)
KEYS = ("loss_order", "loss_intra")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="run folders of `mcl pretrain` (config.yaml, metrics.jsonl)")
    p.add_argument("--out", default="docs/figures/order_head_curve.png", help="PNG to write")
    p.add_argument("--tail", type=int, default=50, help="steps of the final mean and of the running mean")
    p.add_argument("--at", type=int, nargs="+", default=[50, 100, 200, 300, 400, 500, 600],
                   help="steps shown in the table (the nearest logged step at or before each)")
    return p.parse_args(argv)


def load_run(run: Path) -> tuple[str, list[dict]]:
    """(label, logged rows with a loss_order) of one run folder."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "loss_order" in r]
    if not rows:
        raise SystemExit(f"order_head_curve.py: {run / 'metrics.jsonl'} logs no loss_order")
    return f"{config.get('order_head', 'linear')} head ({run.name})", rows


def tail_mean(rows: list[dict], key: str, tail: int) -> tuple[float, float]:
    """(mean, standard error) of ``key`` over the values logged in the last ``tail`` steps."""
    last = rows[-1]["step"]
    values = [r[key] for r in rows if r["step"] > last - tail]
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return statistics.fmean(values), se


def at_step(rows: list[dict], step: int) -> str:
    """``loss_order`` logged at ``step`` (or the last logged step before it); "—" outside the run."""
    before = [r for r in rows if r["step"] <= step]
    return f"{before[-1]['loss_order']:.4f}" if before and step <= rows[-1]["step"] else "—"


def table(runs: list[tuple[str, list[dict]]], steps: list[int], tail: int) -> str:
    head = " | ".join(f"step {s}" for s in steps)
    lines = [f"| run | logged steps | {head} | loss_order, last {tail} steps | minus ln 2 | loss_intra, last "
             f"{tail} steps | order weight at the end |", "| --- " * (len(steps) + 6) + "|"]
    for label, rows in runs:
        order, order_se = tail_mean(rows, "loss_order", tail)
        intra, intra_se = tail_mean(rows, "loss_intra", tail) if "loss_intra" in rows[-1] else (math.nan,) * 2
        cells = " | ".join(at_step(rows, s) for s in steps)
        lines.append(f"| {label} | {rows[0]['step']}-{rows[-1]['step']} | {cells} | "
                     f"{order:.4f} ± {order_se:.4f} | {order - LN2:+.4f} | {intra:.4f} ± {intra_se:.4f} | "
                     f"{rows[-1].get('order_weight', math.nan):.3f} |")
    return "\n".join(lines)


def running_mean(steps: np.ndarray, values: np.ndarray, tail: int) -> np.ndarray:
    return np.array([values[(steps > s - tail) & (steps <= s)].mean() for s in steps])


def plot(runs: list[tuple[str, list[dict]]], out: Path, tail: int) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(KEYS), figsize=(10, 3.8), sharex=True)
    for i, (label, rows) in enumerate(runs):
        colour = f"C{i}"
        for ax, key in zip(axes, KEYS, strict=True):
            kept = [r for r in rows if key in r]
            steps = np.array([r["step"] for r in kept])
            values = np.array([r[key] for r in kept])
            ax.plot(steps, values, color=colour, lw=0.6, alpha=0.35)
            ax.plot(steps, running_mean(steps, values, tail), color=colour, lw=2, label=label)
    for ax, key in zip(axes, KEYS, strict=True):
        ax.axhline(LN2, color="0.2", lw=1, ls="--", label="ln 2 (chance)")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(key)
        ax.set_title(f"{key} (thick: running mean over {tail} steps)", fontsize=9)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    runs = [load_run(Path(r)) for r in args.runs]
    print(table(runs, args.at, args.tail))
    plot(runs, Path(args.out), args.tail)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
