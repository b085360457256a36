"""The motion-focus study (BENCHMARKS.md, "Motion-focus study"): its arms and regimes, the cache of one
result per run, and the paired analysis. ``benchmarks/motion_focus.py`` runs it.

A result may lack the real-clip (Weizmann) columns (``WEIZMANN``): results written before they existed,
or runs made with ``--no-weizmann``; the summary then shows them as missing ("—").
"""

from __future__ import annotations

import datetime
import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path

from scipy import stats

from mcl_video.atomic import atomic_path
from mcl_video.errors import UsageError
from mcl_video.figures import gain_plot

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
WEIZMANN = ("wz_1nn", "wz_svm")  # leave-one-out 1-NN and linear SVM on the real Weizmann clips
METRICS = ("motion_acc", "shape_acc", "r1", *WEIZMANN)
GAINS = ("motion_acc", *WEIZMANN)  # the paired differences the table shows
MISSING = "—"


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


def has_weizmann(row: dict) -> bool:
    return all(isinstance(row.get(m), (int, float)) for m in WEIZMANN)


def add_weizmann(out: Path, row: dict, measure: Callable[[], dict | None]) -> dict:
    """A stored result with the Weizmann columns added: ``measure()`` returns them (from the run's final
    checkpoint) or None when they cannot be measured without retraining, and the result is then kept as
    it is. Nothing else of the result changes (its design key still matches); ``wz_added`` records when
    the columns were added. The file is replaced atomically."""
    if has_weizmann(row):
        return row
    columns = measure()
    if columns is None:
        return row
    added = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    row = {**row, **columns, "wz_added": added}
    with atomic_path(out, "free space and run again with --resume") as tmp:
        tmp.write_text(json.dumps(row, indent=1) + "\n")
    return row


def t_interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, sample SD, 95% half-width of the t-interval); NaN spread for one value."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return mean, float("nan"), float("nan")
    sd = statistics.stdev(values)
    return mean, sd, float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)


def by_regime_arm_seed(rows: list[dict]) -> dict:
    """Results as ``{regime: {arm: {seed: row}}}``, from each row's design key."""
    by: dict = {}
    for r in rows:
        k = r["key"]
        by.setdefault(k["regime"], {}).setdefault(k["arm"], {})[k["seed"]] = r
    return by


def summarise(rows: list[dict]) -> dict:
    """Per regime and arm: each metric's mean ± SD over the seeds that have it (``n`` of them; a metric
    no seed has is left out), and the paired difference to the baseline over the seeds both have (mean,
    SD, 95% half-width, seeds)."""
    by = by_regime_arm_seed(rows)
    out = {}
    for regime, arms in by.items():
        base = arms.get("baseline", {})
        out[regime] = {}
        for arm, seeds in arms.items():
            cell = {"seeds": sorted(seeds)}
            for m in METRICS:
                have = [s for s in sorted(seeds) if isinstance(seeds[s].get(m), (int, float))]
                if not have:
                    continue
                mean, sd, _ = t_interval([seeds[s][m] for s in have])
                cell[m] = {"mean": mean, "sd": sd, "n": len(have)}
                paired = [s for s in have if isinstance(base.get(s, {}).get(m), (int, float))]
                if arm != "baseline" and paired:
                    d = [100 * (seeds[s][m] - base[s][m]) for s in paired]
                    mean, sd, half = t_interval(d)
                    cell[f"{m}_gain"] = {"mean": mean, "sd": sd, "ci95": half, "seeds": paired}
            out[regime][arm] = cell
    return out


def _level(cell: dict, metric: str) -> str:
    """``mean ± SD`` in percent, ``(n=k)`` when fewer seeds than the cell's have the metric."""
    v = cell.get(metric)
    if v is None:
        return MISSING
    fewer = f" (n={v['n']})" if v.get("n", len(cell["seeds"])) < len(cell["seeds"]) else ""
    return f"{100 * v['mean']:.1f} ± {100 * v['sd']:.1f}{fewer}"


def _gain(cell: dict, metric: str, arm: str) -> str:
    g = cell.get(f"{metric}_gain")
    if g is None:
        return "" if arm == "baseline" else MISSING
    return f"{g['mean']:+.1f} ± {g['ci95']:.1f} (n={len(g['seeds'])})"


def format_summary(summary: dict) -> str:
    """The Markdown table of ``summarise``: levels in percent (mean ± SD over seeds), gains in points
    (paired mean ± 95% half-width); "—" for a column a cell has no result for, n/a for one seed's SD."""
    lines = ["| regime | region | arm | seeds | motion probe | shape probe | R@1 | Weizmann 1-NN "
             "| Weizmann SVM | motion gain vs baseline (95% CI) | Weizmann 1-NN gain | Weizmann SVM gain |",
             "| --- " * 12 + "|"]
    for regime, arms in summary.items():
        for arm, c in arms.items():
            cells = " | ".join(_level(c, m) for m in METRICS)
            gains = " | ".join(_gain(c, m, arm) for m in GAINS)
            region = REGIMES.get(regime, "?")
            lines.append(f"| {regime} | {region} | {arm} | {len(c['seeds'])} | {cells} | {gains} |")
    return "\n".join(lines).replace("nan", "n/a")


def format_seeds(rows: list[dict]) -> str:
    """Every cell, seed by seed: per regime, seed and non-baseline arm, the arm's and the baseline's
    motion probe (percent) and their difference (points), then the same for the Weizmann columns; "—"
    where a run or a column is missing."""
    by = by_regime_arm_seed(rows)
    lines = ["| regime | arm | seed | motion: arm | baseline | difference | Weizmann 1-NN: arm | baseline "
             "| Weizmann SVM: arm | baseline |", "| --- " * 10 + "|"]

    def pct(row: dict | None, metric: str) -> str:
        v = None if row is None else row.get(metric)
        return f"{100 * v:.1f}" if isinstance(v, (int, float)) else MISSING

    for regime in sorted(by, key=lambda r: -REGIMES.get(r, 0)):
        arms, base = by[regime], by[regime].get("baseline", {})
        for arm in sorted(a for a in arms if a != "baseline"):
            for seed in sorted(set(arms[arm]) | set(base)):
                row, ref = arms[arm].get(seed), base.get(seed)
                both = row is not None and ref is not None
                diff = f"{100 * (row['motion_acc'] - ref['motion_acc']):+.1f}" if both else MISSING
                cells = [pct(row, "motion_acc"), pct(ref, "motion_acc"), diff]
                for m in WEIZMANN:
                    cells += [pct(row, m), pct(ref, m)]
                lines.append(f"| {regime} | {arm} | {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_gain(summary: dict, path: str) -> dict:
    """PNG of each arm's paired motion-probe gain vs the moving-region fraction (log axis), with its 95%
    t-interval; regimes with fewer than two paired seeds have no interval and are left out. Returns the
    plotted points: arm -> [(fraction, mean, half-width)]."""
    plotted = {}
    arms = sorted({a for arms in summary.values() for a in arms if "motion_acc_gain" in arms[a]})
    for arm in arms:
        pts = sorted((REGIMES[r], summary[r][arm]["motion_acc_gain"]) for r in summary if arm in summary[r]
                     and "motion_acc_gain" in summary[r][arm]
                     and len(summary[r][arm]["motion_acc_gain"]["seeds"]) >= 2)  # only with an interval
        if pts:
            plotted[arm] = [(p[0], p[1]["mean"], p[1]["ci95"]) for p in pts]
    gain_plot(plotted, path)
    return plotted

