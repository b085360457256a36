"""Pretraining throughput of the real engine step, with and without the motion alignment loss (MAL).

Runs `steps` optimizer steps of the shipped config ucf101_r2plus1d18_112 (R(2+1)D-18, 16 x 112 x 112, AMP bf16
by default) on one synthetic batch kept in device memory (no decoding: this measures the model, the loss
and the optimizer), first with use_mal=true then use_mal=false, after `--warmup` untimed steps.
Prints samples/s (a sample = the query clip + 3 key clips), clips/s (4 x samples/s), ms/step and the
peak allocated GPU memory (torch.cuda.max_memory_allocated).

    python benchmarks/pretrain_gpu.py                          # on a GPU: 20 steps, batch 16
    python benchmarks/pretrain_gpu.py --device cpu --steps 2   # smoke run on a CPU (small batch/clips)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from mcl_video.training import load_config
from throughput import measure_step_rate

CONFIG = "ucf101_r2plus1d18_112"  # a shipped config (mcl_video/configs/)


def measure(overrides: list[str], steps: int, warmup: int, device: torch.device,
            config: str | Path = CONFIG) -> dict:
    cfg = load_config(config, overrides + [f"device={device.type}", "epochs=1"])
    return measure_step_rate(cfg, steps, warmup, device)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3 GPU, 1 CPU)")
    p.add_argument("--batch-size", type=int, default=None, help="per step (default 16 GPU, 2 CPU)")
    p.add_argument("--precision", default=None, choices=("fp32", "bf16", "fp16"),
                   help="default bf16 on CUDA (the config's AMP setting), fp32 on CPU")
    p.add_argument("--clip-len", type=int, default=None, help="default 16 (GPU), 8 (CPU)")
    p.add_argument("--size", type=int, default=None, help="default 112 (GPU), 32 (CPU)")
    p.add_argument("--config", default=None,
                   help="another config (a shipped name, e.g. demo_cpu, or a path); keeps its "
                        "batch/clip/size unless given")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("no CUDA device: use --device cpu for a smoke run")
    cpu = args.device == "cpu"
    given = {"batch_size": args.batch_size, "clip_len": args.clip_len, "size": args.size}
    defaults = {"batch_size": 2, "clip_len": 8, "size": 32} if cpu else {"batch_size": 16, "clip_len": 16,
                                                                         "size": 112}
    if args.config is None:  # the R(2+1)D-18 config: small inputs on a CPU
        given = {k: v or defaults[k] for k, v in given.items()}
        given["queue_size"] = 4096 if cpu else None
    overrides = [f"{k}={v}" for k, v in given.items() if v is not None]
    # bf16 autocast on a CPU without bf16 units is emulated: a 2-step smoke run took minutes
    overrides.append(f"precision={args.precision or ('fp32' if cpu else 'bf16')}")
    warmup = args.warmup if args.warmup is not None else (1 if cpu else 3)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if not cpu else "CPU"
    config = args.config or CONFIG
    rows = [measure(overrides + [f"use_mal={mal}"], args.steps, warmup, device, config)
            for mal in ("true", "false")]
    print(f"device: {name}; torch {torch.__version__}; config {Path(config).stem}; {' '.join(overrides)}")
    print("| MAL | batch | clip | precision | steps | ms/step | samples/s | clips/s | peak GPU GiB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {'on' if r['use_mal'] else 'off'} | {r['batch']} | {r['clip']} | {r['precision']} | "
              f"{r['steps']} | {r['ms_per_step']:.1f} | {r['samples_per_s']:.2f} | {r['clips_per_s']:.2f} | "
              f"{r['peak_gib']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"device": name, "rows": rows}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
