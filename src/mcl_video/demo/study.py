"""The motion-focus study (BENCHMARKS.md, "Motion-focus study"): its arms and regimes, the cache of one
result per run, and the paired analysis. ``benchmarks/motion_focus.py`` runs it."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np
from scipy import stats

from mcl_video.errors import UsageError
from mcl_video.figures import pyplot

BASE = ["motion_sampling=false", "motion_crop=false", "use_mal=false", "motion_broken_negatives=false"]
MCL = ["motion_sampling=true", "motion_crop=true", "use_mal=true", "saliency=gradient",
       "motion_broken_negatives=false"]
ARMS = {
    "baseline": BASE,
    "mcl": MCL,
    "temporal": [*BASE, "motion_sampling=true"],
    "crop": [*BASE, "motion_crop=true"],
    "mal": [*BASE, "use_mal=true", "saliency=gradient"],
    "mcl_mlp": [*MCL, "order_head=mlp"],
    "supervised": None,
    "random": None,
}
COMMON = dict(classes=5, frames=64, distractors=(1, 2), pan_speed=0.3, idle_fraction=0.4, idle_segments=2)
REGIMES = {  # name -> moving-region fraction of the frame area
    "region50": 0.5,
    "region20": 0.2,
    "region08": 0.08,
}
METRICS = ("motion_acc", "shape_acc", "r1")


def cached_result(out: Path, key: dict, resume: bool) -> dict | None:
    """The stored result of a run when it exists and matches ``key`` and ``resume`` is set; None when
    there is none. A stored result of another design, or one found without ``resume``, is an error:
    a result is never silently reused or overwritten."""
    if not out.is_file():
        return None
    cached = json.loads(out.read_text())
    if cached.get("key") == key and resume:
        return cached
    what = "another design" if cached.get("key") != key else "done"
    raise UsageError(f"{out} exists ({what}); pass --resume to reuse it, or use another --results folder")


def load_results(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(results.glob("*/*/seed-*.json"))]


def t_interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, sample SD, 95% half-width of the t-interval); NaN spread for one value."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return mean, float("nan"), float("nan")
    sd = statistics.stdev(values)
    return mean, sd, float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)


def summarise(rows: list[dict]) -> dict:
    """Per regime and arm: each metric's mean ± SD over seeds, and the paired difference to the
    baseline over the seeds both have (mean, SD, 95% half-width, seeds)."""
    by = {}
    for r in rows:
        k = r["key"]
        by.setdefault(k["regime"], {}).setdefault(k["arm"], {})[k["seed"]] = r
    out = {}
    for regime, arms in by.items():
        base = arms.get("baseline", {})
        out[regime] = {}
        for arm, seeds in arms.items():
            cell = {"seeds": sorted(seeds)}
            for m in METRICS:
                mean, sd, _ = t_interval([seeds[s][m] for s in seeds])
                cell[m] = {"mean": mean, "sd": sd}
                paired = sorted(set(seeds) & set(base))
                if arm != "baseline" and paired:
                    d = [100 * (seeds[s][m] - base[s][m]) for s in paired]
                    mean, sd, half = t_interval(d)
                    cell[f"{m}_gain"] = {"mean": mean, "sd": sd, "ci95": half, "seeds": paired}
            out[regime][arm] = cell
    return out


def format_summary(summary: dict) -> str:
    lines = ["| regime | region | arm | seeds | motion probe | shape probe | R@1 | motion gain vs baseline "
             "(95% CI) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for regime, arms in summary.items():
        for arm, c in arms.items():
            cells = " | ".join(f"{100 * c[m]['mean']:.1f} ± {100 * c[m]['sd']:.1f}" for m in METRICS)
            g = c.get("motion_acc_gain")
            gain = (f"{g['mean']:+.1f} ± {g['ci95']:.1f} (n={len(g['seeds'])})" if g else "")
            region = REGIMES.get(regime, "?")
            lines.append(f"| {regime} | {region} | {arm} | {len(c['seeds'])} | {cells} | {gain} |")
    return "\n".join(lines).replace("nan", "n/a")


def plot_gain(summary: dict, path: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    arms = sorted({a for arms in summary.values() for a in arms if "motion_acc_gain" in arms[a]})
    for i, arm in enumerate(arms):
        pts = sorted((REGIMES[r], summary[r][arm]["motion_acc_gain"]) for r in summary if arm in summary[r]
                     and "motion_acc_gain" in summary[r][arm])
        x = np.array([p[0] for p in pts]) * (1 + 0.03 * (i - len(arms) / 2))
        y = [p[1]["mean"] for p in pts]
        err = [0 if math.isnan(p[1]["ci95"]) else p[1]["ci95"] for p in pts]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=arm)
    ax.axhline(0, color="0.5", lw=1, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("moving-region fraction of the frame area")
    ax.set_ylabel("motion-probe gain over baseline (points)")
    ax.set_title("paired by seed, 95% t-interval")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

