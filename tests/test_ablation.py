"""mcl_video.demo.ablation: the arm table, the summary statistics and table, the MAL diagnostics (the
runs themselves are benchmarks/ablation.py)."""

import json
import statistics

import pytest

from mcl_video.demo import ablation
from mcl_video.training import load_config


def test_summary_is_mean_and_sample_std_and_tolerates_missing_weizmann():
    per_seed = {
        0: {"mcl": {"motion_acc": 0.5, "shape_acc": 0.2, "r1": 0.4, "wz_1nn": 0.25, "wz_svm": 0.5}},
        1: {"mcl": {"motion_acc": 0.6, "shape_acc": 0.3, "r1": 0.5, "wz_1nn": 0.50, "wz_svm": 0.75}},
        2: {"mcl": {"motion_acc": 0.7, "shape_acc": 0.1, "r1": 0.6, "wz_1nn": 0.75, "wz_svm": 1.0}},
    }
    summary = ablation.summarise(per_seed, ["mcl"])
    assert summary["mcl"]["motion_acc"] == pytest.approx((0.6, 0.1))
    assert summary["mcl"]["wz_1nn"] == pytest.approx((0.5, statistics.stdev([0.25, 0.5, 0.75])))
    table = ablation.format_summary(summary, [0, 1, 2])
    assert "| mcl | 3 | 60.0 ± 10.0 | 20.0 ± 10.0 | 50.0 ± 10.0 | 50.0 ± 25.0 | 75.0 ± 25.0 |" in table
    # without the Weizmann folder the two columns say n/a instead of failing
    for row in per_seed.values():
        del row["mcl"]["wz_1nn"], row["mcl"]["wz_svm"]
    table = ablation.format_summary(ablation.summarise(per_seed, ["mcl"]), [0, 1, 2])
    assert table.splitlines()[-1].endswith("| n/a | n/a |")


def test_every_plus_arm_adds_one_component_to_the_baseline():
    base = set(ablation.ABLATION_ARMS["baseline"])
    for arm in ("tsamp", "crop", "mal_grad", "mal_gradcam"):
        overrides = ablation.ABLATION_ARMS[arm]
        switched_on = {o for o in overrides if o.endswith("=true")}
        assert len(switched_on) == 1, arm
        key = next(iter(switched_on)).split("=")[0]
        assert {o for o in base if not o.startswith(key)} <= set(overrides), arm


def test_mal_diagnostics_average_the_last_quarter(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": 5 * i, "loss_mal": 0.1 * i, "mal_flat_loss": 0.2, "loss_order": 0.7}
            for i in range(1, 9)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    d = ablation.mal_diagnostics(path)
    assert d["loss_mal"] == pytest.approx(0.75) and d["mal_vs_flat"] == pytest.approx(3.75)  # steps 7, 8
    # an arm without MAL logs zeros: no diagnostics; a missing file likewise
    path.write_text(json.dumps({"step": 5, "loss_mal": 0.0, "mal_flat_loss": 0.0}) + "\n")
    assert ablation.mal_diagnostics(path) == {} and ablation.mal_diagnostics(tmp_path / "none") == {}


def test_every_arm_is_a_valid_override_set_of_the_demo_config():
    for arm, overrides in ablation.ABLATION_ARMS.items():
        cfg = load_config("demo_cpu", overrides)
        assert bool(cfg.model.motion_broken_negatives) == arm.endswith("_broken"), arm
        s = cfg.sampling
        assert (s.motion_sampling, s.motion_crop) == (arm in ("tsamp", "mcl", "mcl_broken"),
                                                      arm in ("crop", "mcl", "mcl_broken")), arm
