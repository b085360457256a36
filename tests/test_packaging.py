"""A self-contained package: shipped configs found by name or path, one version, and a built wheel that
runs `mcl demo --quick` and `mcl pretrain --config demo_cpu` in a fresh environment outside the
repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

import mcl_video
from mcl_video.training import ConfigError, load_config
from mcl_video.training.config import resolve_config_path, shipped_configs

REPO = Path(__file__).resolve().parents[1]
SHIPPED = {"demo_cpu", "k400_p3d50", "ucf101_p3d50", "ucf101_r2plus1d18_112"}


def test_shipped_configs_live_in_the_package_and_load_by_name_or_path(tmp_path, monkeypatch):
    configs = shipped_configs()
    assert SHIPPED <= set(configs)
    for path in configs.values():
        assert path.parent == Path(mcl_video.__file__).parent / "configs" and path.is_file()
    by_name = load_config("demo_cpu", ["seed=3"])
    assert by_name == load_config("demo_cpu.yaml", ["seed=3"]) == load_config(configs["demo_cpu"], ["seed=3"])
    assert (by_name.model.backbone, by_name.run.seed) == ("tiny_r2plus1d", 3)
    # a file of the same name in the working folder is a path, and a path wins over the shipped name
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo_cpu.yaml").write_text("backbone: r3d_18\n")
    assert resolve_config_path("demo_cpu.yaml") == Path("demo_cpu.yaml")
    assert load_config("demo_cpu.yaml").model.backbone == "r3d_18"
    assert load_config("demo_cpu").model.backbone == "tiny_r2plus1d"  # no such file: the shipped one
    # the repository's former layout keeps working where no such folder exists
    assert resolve_config_path("configs/demo_cpu.yaml") == shipped_configs()["demo_cpu"]
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "demo_cpu.yaml").write_text("backbone: r3d_18\n")
    assert resolve_config_path("configs/demo_cpu.yaml") == Path("configs/demo_cpu.yaml")


def test_unknown_config_names_the_choices():
    with pytest.raises(ConfigError, match="demo_cpu") as err:
        load_config("demo_gpu")
    assert "demo_gpu: config file not found" in str(err.value) and "/" not in str(err.value)
    with pytest.raises(ConfigError, match="not found"):
        load_config("somewhere/demo_cpu.yaml")  # a path is only ever a path


def test_version_is_defined_once():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "mcl_video.__version__"}
    assert "configs/*.yaml" in project["tool"]["setuptools"]["package-data"]["mcl_video"]


def _run(cmd: list[str], cwd: Path, env: dict, timeout: int) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.mark.slow
def test_wheel_runs_demo_and_pretrain_outside_the_repository(tmp_path):
    """Build the source archive from a copy of the sources and the wheel from it, install the wheel (no
    dependencies) into a fresh venv that sees this interpreter's site-packages (torch etc. are not
    downloaded again) but not our sources, then run the two commands in a folder outside the repository."""
    setuptools = metadata.version("setuptools")
    assert int(setuptools.split(".")[0]) >= 77, f"setuptools {setuptools}: building needs >= 77"
    start = time.perf_counter()
    src = tmp_path / "src-copy"
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"
    # the source archive first, then the wheel from the unpacked archive (as pip does from an index)
    sdist = f"from setuptools import build_meta; build_meta.build_sdist({str(tmp_path / 'sdist')!r})"
    _run([sys.executable, "-c", sdist], src, env, 300)
    with tarfile.open(next((tmp_path / "sdist").glob("mcl_video-*.tar.gz"))) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    unpacked = next((tmp_path / "unpacked").iterdir())
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
          str(tmp_path / "dist"), str(unpacked)], tmp_path, env, 300)
    wheel = next((tmp_path / "dist").glob("mcl_video-*.whl"))
    times = {"build": time.perf_counter() - start}
    assert wheel.name.startswith(f"mcl_video-{mcl_video.__version__}-")
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"mcl_video/configs/{n}.yaml" for n in SHIPPED} <= set(names)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env, 120)
    site = Path(_run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                      "['purelib'])"], tmp_path, env, 60).strip())
    # the dependencies of this environment, as a plain path entry (its .pth files, e.g. an editable
    # install of this repository, are not processed)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
          "--no-index", "-q", str(wheel)], tmp_path, env, 300)
    work = tmp_path / "outside"
    work.mkdir()
    where = _run([str(venv / "bin" / "python"), "-c", "import mcl_video; print(mcl_video.__file__)"],
                 work, env, 60)
    assert where.strip().startswith(str(site)), where
    mcl = str(venv / "bin" / "mcl")
    times["install"] = time.perf_counter() - start - sum(times.values())
    assert _run([mcl, "--version"], work, env, 60).strip() == f"mcl-video {mcl_video.__version__}"
    out = _run([mcl, "demo", "--quick", "--work-dir", "demo"], work, env, 600)
    assert "MCL" in out and (work / "demo" / "quick" / "report.html").is_file()
    times["demo --quick"] = time.perf_counter() - start - sum(times.values())
    quick = work / "demo" / "quick"
    _run([mcl, "pretrain", "--config", "demo_cpu", f"data={quick / 'data' / 'annotations'}",
          f"video_root={quick / 'data' / 'videos'}", f"cache={quick / 'motion'}", "out=run", "max_steps=2",
          "batch_size=4", "num_workers=0", "tensorboard=false", "progress=false"], work, env, 300)
    assert sorted(p.name for p in (work / "run").glob("ckpt-*.pt")) == ["ckpt-00000002.pt"]
    times["pretrain"] = time.perf_counter() - start - sum(times.values())
    stages = ", ".join(f"{k} {v:.0f}" for k, v in times.items())
    print(f"wall s: {stages}; total {sum(times.values()):.0f}")
