"""The mmaction2 export built and run in mmaction2 itself: the config text `mcl export --format mmaction2`
prints (the README's snippet) builds, through mmaction2's registry, a model that loads the export through
its backbone's ``pretrained=`` and returns our features.

Runs where mmaction2's models import (``python benchmarks/mmaction2_check.py`` makes such an environment
and records the numbers in benchmarks/results/mmaction2_check.json); skipped with the reason elsewhere."""

import importlib.util
from pathlib import Path

import pytest

CHECK = Path(__file__).resolve().parents[1] / "benchmarks" / "mmaction2_check.py"


def _mmaction2_missing() -> str | None:
    try:
        import mmaction.models  # noqa: F401
        import mmengine  # noqa: F401
    except Exception as err:  # noqa: BLE001 - any import failure means "not here"
        return (f"mmaction2 is not importable here ({type(err).__name__}: {err}); "
                "`python benchmarks/mmaction2_check.py` builds an environment with it and runs this check")
    return None


pytestmark = pytest.mark.skipif(_mmaction2_missing() is not None, reason=str(_mmaction2_missing()))


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("mmaction2_check", CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("arch", ["r3d_18", "r2plus1d_18"])
def test_mmaction2_builds_the_same_network(tmp_path, check, arch):
    r = check.compare(arch, tmp_path, seed=4, clip_len=8, size=64)
    assert r["mmaction2_backbone"] == "ResNet3d"
    assert r["keys_missing_in_export"] == [] and r["keys_unused_by_mmaction2"] == []
    assert r["tensors_loaded_differently"] == []
    assert r["feature_map"] == [2, 512, 1, 4, 4]  # no stem max-pool: 64 px -> 4 x 4
    assert r["cosine_min"] > 1 - 1e-6 and r["max_abs_diff"] < 1e-4


def test_stock_conv2plus1d_is_not_the_same_network(tmp_path, check):
    # the contrast: mmaction2's own Conv2plus1d cannot hold the 1x1x1 shortcut projections
    r = check.compare("r2plus1d_18", tmp_path, seed=4, clip_len=8, size=64, stock_conv=True)
    assert len(r["keys_missing_in_export"]) == 3 * 7 and len(r["keys_unused_by_mmaction2"]) == 3
    assert r["max_abs_diff"] > 1e-2
