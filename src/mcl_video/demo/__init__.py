"""mcl_video.demo: the application above the library, ``mcl demo`` and the benchmark scripts' stages.

profiles (``DemoSettings``, ``PROFILES``) -> stages (benchmark data, motion cache, one pretraining arm,
frozen features) -> ``run_demo`` (MCL vs MoCo vs random init vs a supervised bound, with a report);
``ablation``: the ablation's arms and its summary over seeds (``benchmarks/ablation.py``).
It uses only the library's public functions; nothing in the library imports it.
"""

from mcl_video.demo.ablation import ABLATION_ARMS, format_summary, mal_diagnostics, summarise
from mcl_video.demo.profiles import ARMS, DEFAULT_CONFIG, NO_CLAIM, PROFILES, DemoSettings
from mcl_video.demo.run import probe_rows, run_demo
from mcl_video.demo.stages import (
    arm_config,
    ensure_benchmark,
    ensure_motion,
    extract_all,
    extract_videos,
    load_records,
    pretrain_arm,
)
from mcl_video.demo.supervised import train_supervised

__all__ = [
    "ABLATION_ARMS",
    "ARMS",
    "DEFAULT_CONFIG",
    "NO_CLAIM",
    "PROFILES",
    "DemoSettings",
    "arm_config",
    "ensure_benchmark",
    "ensure_motion",
    "extract_all",
    "extract_videos",
    "format_summary",
    "load_records",
    "mal_diagnostics",
    "pretrain_arm",
    "probe_rows",
    "run_demo",
    "summarise",
    "train_supervised",
]
