"""Check `mcl export --format mmaction2` against mmaction2 itself.

Creates a separate virtual environment (``--venv``, default /tmp/mcl-mmaction2-venv), installs
mmaction2 1.2.0, mmengine and mmcv-lite into it, and then, inside it: for R3D-18 and R(2+1)D-18 with
random weights and random BN statistics, writes one of our checkpoints, exports it, builds the model of
the config text ``mcl export`` prints (the README's snippet) with mmaction2's registry, lets mmaction2
load the export through the backbone's ``pretrained=``, and compares the pooled backbone features on a
16 x 112 x 112 clip batch with ours (cosine per sample, max-abs difference). Writes JSON with the
versions (``--out``).

torch comes from the environment running this script (a ``.pth`` file puts its site-packages and this
checkout's ``src`` on the new environment's path), so no second torch is installed.

Packaging gaps of mmaction2 1.2.0 worked around here (each printed when applied):
1. it needs ``mmcv<2.2.0`` at import but does not pin it: ``mmcv-lite==2.1.0`` is installed;
2. ``importlib_metadata`` is imported (``mmaction.utils.dependency``) but not declared: installed;
3. the wheel lacks ``mmaction/models/localizers/drn/`` which ``mmaction.models`` imports: a stub
   package is written whose ``DRN`` raises when built (the DRN localizer is not used here).

    python benchmarks/mmaction2_check.py --out benchmarks/results/mmaction2_check.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["mmaction2==1.2.0", "mmengine==0.10.7", "mmcv-lite==2.1.0", "importlib_metadata"]
ARCHS = ("r3d_18", "r2plus1d_18")
GAPS = [
    "mmaction2 1.2.0 refuses mmcv>=2.2 at import without pinning it: mmcv-lite==2.1.0 installed",
    "importlib_metadata imported by mmaction.utils.dependency but not declared: installed",
    "mmaction/models/localizers/drn/ missing from the wheel but imported by mmaction.models: stub written",
]
DRN_STUB = '''"""Stub written by mcl-video's benchmarks/mmaction2_check.py: the mmaction2 1.2.0 wheel
lacks this package, which mmaction.models imports."""


class DRN:
    def __init__(self, *args, **kwargs):
        raise ImportError("mmaction2's DRN localizer is missing from the mmaction2 1.2.0 wheel")
'''


def patch_drn(site: Path) -> bool:
    """Write the missing ``mmaction/models/localizers/drn`` stub under ``site``; True when written."""
    drn = site / "mmaction" / "models" / "localizers" / "drn"
    if (drn / "drn.py").exists():
        return False
    drn.mkdir(parents=True, exist_ok=True)
    (drn / "__init__.py").write_text("")
    (drn / "drn.py").write_text(DRN_STUB)
    return True


def setup_venv(venv: Path) -> Path:
    """Create ``venv`` (once) with mmaction2 and its workarounds; return its python."""
    import torch

    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        subprocess.run([str(python), "-m", "ensurepip", "--upgrade"], check=True, capture_output=True)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([str(python), "-c", purelib], check=True, capture_output=True,
                               text=True).stdout.strip())
    torch_site = Path(torch.__file__).resolve().parents[1]
    (site / "_mcl_video_check.pth").write_text(f"{ROOT / 'src'}\n{torch_site}\n")
    print(f"torch from {torch_site}; mcl_video from {ROOT / 'src'}", flush=True)
    print("installing " + " ".join(PACKAGES) + " (gaps 1 and 2: mmcv-lite pinned below 2.2, "
          "importlib_metadata added)", flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    if patch_drn(site):
        print("gap 3: wrote the missing mmaction/models/localizers/drn stub", flush=True)
    return python


def trained_looking(arch: str, seed: int):
    """Our backbone with random weights and random BN statistics and affines."""
    import torch

    from mcl_video.models import build_backbone

    torch.manual_seed(seed)
    net = build_backbone(arch)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
    return net.eval()


def compare(arch: str, workdir: Path, seed: int = 0, clip_len: int = 16, size: int = 112,
            stock_conv: bool = False) -> dict:
    """Export ``arch`` (random weights), build the printed config's model in mmaction2, load the export
    through it and compare features; needs mmaction2 importable. ``stock_conv``: the contrast, mmaction2's
    own ``Conv2plus1d`` in place of ``MCLConv2plus1d`` (the shortcut projections then do not load)."""
    import torch
    from mmengine.config import Config

    from mcl_video.evaluation.export import export_encoder, mmaction2_config

    net = trained_looking(arch, seed)
    ckpt = workdir / f"{arch}_ckpt.pt"
    config = {"backbone": arch, "backbone_options": {}, "clip_len": clip_len, "size": size}
    torch.save({"model": {f"encoder_q.backbone.{k}": v for k, v in net.state_dict().items()},
                "config": config}, ckpt)
    weights = workdir / f"{arch}_mmaction2.pth"
    result = export_encoder(ckpt, "mmaction2", weights)
    config_file = workdir / f"{arch}_config.py"
    text = mmaction2_config(arch, weights)
    if stock_conv:
        text = text.replace("MCLConv2plus1d", "Conv2plus1d").replace(
            "custom_imports = dict(imports=['mcl_video.mmaction2_conv'], allow_failed_imports=False)\n", "")
        config_file = workdir / f"{arch}_stock_config.py"
    config_file.write_text(text)
    cfg = Config.fromfile(str(config_file))  # imports custom_imports (MCLConv2plus1d)
    from mmaction.registry import MODELS
    from mmaction.utils import register_all_modules

    register_all_modules()
    model = MODELS.build(cfg.model)
    model.init_weights()  # the backbone loads `pretrained` (strict=False: checked below)
    backbone = model.backbone
    backbone.eval()  # mmaction2's ResNet3d.train() returns None, so not chained
    theirs = backbone.state_dict()
    missing = sorted(set(theirs) - set(result.state))
    unexpected = sorted(set(result.state) - set(theirs))
    differ = sorted(k for k in set(theirs) & set(result.state) if not torch.equal(theirs[k], result.state[k]))
    x = torch.randn(2, 3, clip_len, size, size, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        ours = net(x)
        fmap = backbone(x)
        mm = fmap.mean(dim=(2, 3, 4))
    cosine = torch.nn.functional.cosine_similarity(ours.double(), mm.double(), dim=1)
    return {
        "arch": arch,
        "mmaction2_backbone": cfg.model.backbone.type,
        "conv_cfg": (cfg.model.backbone.get("conv_cfg") or {}).get("type", "Conv3d"),
        "input": [2, 3, clip_len, size, size],
        "feature_map": list(fmap.shape),
        "tensors_exported": len(result.state),
        "not_exported": result.not_exported,
        "keys_missing_in_export": missing,
        "keys_unused_by_mmaction2": unexpected,
        "tensors_loaded_differently": differ,
        "cosine_min": float(cosine.min()),
        "max_abs_diff": float((ours - mm).abs().max()),
        "feature_abs_max": float(ours.abs().max()),
    }


def versions() -> dict:
    import mmaction
    import mmcv
    import mmengine
    import torch

    import mcl_video

    return {"python": sys.version.split()[0], "torch": torch.__version__, "mmaction2": mmaction.__version__,
            "mmengine": mmengine.__version__, "mmcv-lite": mmcv.__version__,
            "mcl-video": mcl_video.__version__}


def inside(out: Path) -> int:
    import warnings

    from mmengine.logging import MMLogger

    warnings.filterwarnings("ignore")
    MMLogger.get_instance("mcl_video_check", log_level="WARNING")  # the instance mmaction2 logs to
    report = {"versions": versions(), "packaging_gaps": GAPS, "backbones": {}, "contrast": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for arch, stock in [(a, False) for a in ARCHS] + [("r2plus1d_18", True)]:
            r = compare(arch, Path(tmp), stock_conv=stock)
            name = arch + (" (contrast: stock Conv2plus1d)" if stock else "")
            (report["contrast"] if stock else report["backbones"])[arch] = r
            print(f"{name}: mmaction2 {r['mmaction2_backbone']} ({r['conv_cfg']}), feature map "
                  f"{r['feature_map']}, cosine min {r['cosine_min']:.9f}, max-abs diff "
                  f"{r['max_abs_diff']:.3g} (features up to {r['feature_abs_max']:.3g}); keys missing "
                  f"{len(r['keys_missing_in_export'])}, unused {len(r['keys_unused_by_mmaction2'])}, "
                  f"loaded differently {len(r['tensors_loaded_differently'])}", flush=True)
    report["p3d_resnet50"] = ("not exported: mmaction2 1.2.0 has no P3D ResNet (ResNet3d inflates one "
                              "block type per stage; P3D cycles its A/B/C blocks)")
    print(json.dumps(report["versions"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    exact = all(r["cosine_min"] > 1 - 1e-6 and r["max_abs_diff"] < 1e-4 and not r["keys_missing_in_export"]
                and not r["tensors_loaded_differently"] for r in report["backbones"].values())
    return 0 if exact else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "mcl-mmaction2-venv")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "mmaction2_check.json")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)  # run in the prepared venv
    args = ap.parse_args()
    if args.inside:
        return inside(args.out)
    python = setup_venv(args.venv)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([str(python), __file__, "--inside", "--out", str(args.out)], env=env).returncode


if __name__ == "__main__":
    raise SystemExit(main())
