"""The motion-focus study (mcl_video.demo.study, run by benchmarks/motion_focus.py): paired analysis,
result caching and arm definitions (the runs themselves are the benchmark)."""

import json
import math

import pytest

from mcl_video.demo import study
from mcl_video.errors import UsageError


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
