"""The motion-focus study (benchmarks/study.py, run by benchmarks/motion_focus.py): paired analysis,
result caching and arm definitions (the runs themselves are the benchmark)."""

import json
import math
import sys
from pathlib import Path

import pytest

from mcl_video.errors import UsageError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import study  # noqa: E402  (benchmarks/study.py: the studies' helpers live beside their runners)


@pytest.fixture(scope="module")
def mf():
    return study


def _row(regime, arm, seed, motion, shape=0.2, r1=0.3):
    return {"key": {"regime": regime, "arm": arm, "seed": seed}, "motion_acc": motion, "shape_acc": shape,
            "r1": r1}


def test_t_interval_matches_the_t_distribution(mf):
    mean, sd, half = mf.t_interval([1.0, 2.0, 3.0, 6.0])
    assert mean == 3.0 and sd == pytest.approx(math.sqrt(14 / 3))
    assert half == pytest.approx(3.182446305284263 * sd / 2)  # t_{0.975, 3}
    mean, sd, half = mf.t_interval([5.0])
    assert mean == 5.0 and math.isnan(sd) and math.isnan(half)


def test_gain_is_paired_by_seed_over_the_shared_seeds(mf):
    rows = [_row("region20", "baseline", 0, 0.50), _row("region20", "baseline", 1, 0.70),
            _row("region20", "baseline", 2, 0.40),
            _row("region20", "mcl", 0, 0.55), _row("region20", "mcl", 1, 0.71),
            _row("region20", "mcl", 3, 0.9)]
    s = mf.summarise(rows)["region20"]
    gain = s["mcl"]["motion_acc_gain"]
    assert gain["seeds"] == [0, 1]  # seed 3 has no baseline, seed 2 no MCL run
    assert gain["mean"] == pytest.approx(3.0) and gain["sd"] == pytest.approx(math.sqrt(8.0))
    assert gain["ci95"] == pytest.approx(12.706204736174707 * math.sqrt(8.0) / math.sqrt(2))
    assert "motion_acc_gain" not in s["baseline"]
    assert s["mcl"]["motion_acc"]["mean"] == pytest.approx((0.55 + 0.71 + 0.9) / 3)
    table = mf.format_summary({"region20": s})
    assert "| region20 | 0.2 | mcl | 3 |" in table and "+3.0 ± 25.4 (n=2)" in table
    seeds = mf.format_seeds(rows).splitlines()
    assert seeds[2:] == ["| region20 | mcl | 0 | 55.0 | 50.0 | +5.0 | — | — | — | — |",
                         "| region20 | mcl | 1 | 71.0 | 70.0 | +1.0 | — | — | — | — |",
                         "| region20 | mcl | 2 | — | 40.0 | — | — | — | — | — |",
                         "| region20 | mcl | 3 | 90.0 | — | — | — | — | — | — |"]


def test_a_cached_result_is_reused_only_with_resume_and_the_same_design(mf, tmp_path):
    key = {"regime": "region20", "arm": "baseline", "seed": 0, "steps": 10}
    out = tmp_path / "res" / "region20" / "baseline" / "seed-0.json"
    assert mf.cached_result(out, key, resume=True) is None  # nothing stored: run it
    out.parent.mkdir(parents=True)
    row = dict(_row("region20", "baseline", 0, 0.5), key=key)
    out.write_text(json.dumps(row))
    with pytest.raises(UsageError, match="--resume"):
        mf.cached_result(out, key, resume=False)
    assert mf.cached_result(out, key, resume=True) == row
    with pytest.raises(UsageError, match="another design"):  # other steps: never silently reused
        mf.cached_result(out, {**key, "steps": 11}, resume=True)


def test_arms_follow_the_ablation_semantics(mf):
    assert set(mf.ARMS["baseline"]) == {"motion_sampling=false", "motion_crop=false", "use_mal=false",
                                        "motion_broken_negatives=false"}
    singles = (("temporal", "motion_sampling=true"), ("crop", "motion_crop=true"), ("mal", "use_mal=true"))
    for arm, on in singles:
        assert on in mf.ARMS[arm] and sum(o.endswith("=true") for o in mf.ARMS[arm]) == 1
    assert {"motion_sampling=true", "motion_crop=true", "use_mal=true"} <= set(mf.ARMS["mcl"])
    assert "order_head=mlp" in mf.ARMS["mcl_mlp"]


def test_weizmann_columns_are_summarised_when_present_and_dashed_when_absent(mf):
    def wz(row, nn, svm):
        return dict(row, wz_1nn=nn, wz_svm=svm)

    rows = [wz(_row("region20", "baseline", 0, 0.50), 0.25, 0.50), wz(_row("region20", "baseline", 1, 0.70),
                                                                       0.50, 0.50),
            wz(_row("region20", "mcl", 0, 0.55), 0.50, 0.75), wz(_row("region20", "mcl", 1, 0.71), 0.50, 1.0),
            _row("region20", "mcl", 2, 0.9),  # a result from before the Weizmann columns
            _row("region08", "baseline", 0, 0.4), _row("region08", "mcl", 0, 0.5)]
    s = mf.summarise(rows)
    cell = s["region20"]["mcl"]
    assert cell["wz_1nn"]["mean"] == pytest.approx(0.5) and cell["wz_1nn"]["n"] == 2
    assert cell["wz_svm"]["mean"] == pytest.approx(0.875)
    assert cell["wz_svm"]["sd"] == pytest.approx(math.sqrt(2 * 0.125 ** 2))
    gain = cell["wz_1nn_gain"]  # paired by seed: +25 and +0 points
    assert gain["seeds"] == [0, 1] and gain["mean"] == pytest.approx(12.5)
    assert gain["ci95"] == pytest.approx(12.706204736174707 * math.sqrt(312.5) / math.sqrt(2))
    assert cell["wz_svm_gain"]["mean"] == pytest.approx(37.5)
    assert cell["motion_acc_gain"]["seeds"] == [0, 1]  # seed 2 has no baseline either way
    assert "wz_1nn" not in s["region08"]["mcl"] and "wz_1nn_gain" not in s["region08"]["mcl"]
    lines = mf.format_summary(s).splitlines()
    assert "Weizmann 1-NN" in lines[0] and "Weizmann SVM gain" in lines[0]
    assert all(line.count("|") == 13 for line in lines)
    mcl20 = next(line for line in lines if line.startswith("| region20 | 0.2 | mcl |"))
    assert "| 50.0 ± 0.0 (n=2) | 87.5 ± 17.7 (n=2) |" in mcl20
    assert mcl20.endswith("| +12.5 ± 158.8 (n=2) | +37.5 ± 158.8 (n=2) |")
    mcl08 = next(line for line in lines if line.startswith("| region08 | 0.08 | mcl |"))
    assert mcl08.endswith("| — | — | +10.0 ± n/a (n=1) | — | — |")  # missing, not an error
    base08 = next(line for line in lines if line.startswith("| region08 | 0.08 | baseline |"))
    assert base08.endswith("| — | — |  |  |  |")


def test_weizmann_columns_are_added_to_a_stored_result_only_when_measurable(mf, tmp_path):
    key = {"regime": "region20", "arm": "mcl", "seed": 0, "steps": 10}
    out = tmp_path / "region20" / "mcl" / "seed-0.json"
    out.parent.mkdir(parents=True)
    row = dict(_row("region20", "mcl", 0, 0.5), key=key)
    out.write_text(json.dumps(row))
    assert mf.add_weizmann(out, row, lambda: None) == row  # checkpoint gone: kept as it is
    assert json.loads(out.read_text()) == row
    added = mf.add_weizmann(out, row, lambda: {"wz_1nn": 0.25, "wz_svm": 0.5, "wz_n": 36, "wz_clips": 8})
    stored = json.loads(out.read_text())
    assert stored == added and stored["wz_1nn"] == 0.25 and stored["wz_n"] == 36 and "wz_added" in stored
    assert {k: v for k, v in stored.items() if not k.startswith("wz_")} == row  # nothing else changed
    assert mf.cached_result(out, key, resume=True) == stored  # its design key still matches

    def never():
        raise AssertionError("a result that has the columns is not measured again")

    assert mf.add_weizmann(out, stored, never) == stored
    assert [p.name for p in out.parent.iterdir()] == ["seed-0.json"]


def test_gain_plot_leaves_out_regimes_without_an_interval(mf, tmp_path):
    rows = [_row(r, arm, seed, 0.3 + 0.01 * seed + (0.05 if arm == "mcl" else 0.0))
            for r, seeds in (("region50", (0, 1, 2)), ("region20", (0, 1)), ("region08", (0,)))
            for arm in ("baseline", "mcl") for seed in seeds]
    out = tmp_path / "gain.png"
    plotted = mf.plot_gain(mf.summarise(rows), str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p[0] for p in plotted["mcl"]] == [0.2, 0.5]  # region08 has one paired seed: no interval
    assert all(p[1] == pytest.approx(5.0) and p[2] == pytest.approx(0.0) for p in plotted["mcl"])
