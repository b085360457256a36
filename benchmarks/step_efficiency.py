"""Share of the matrix-product peak that a real training step reaches, with the layout and compile
variants, measured side by side in one run.

For one config (default: the shipped R(2+1)D-18 config ``ucf101_r2plus1d18_112``; on a CPU at
``--size``/``--clip-len``/``--batch-size`` small enough for a few-second step), the script
1. measures the peak: the median rate of an ``--n`` cubed matrix product in the step's precision (fp32
   on a CPU, TF32 off; bf16 on CUDA);
2. counts the step's floating-point operations (``torch.utils.flop_counter``: convolutions and matrix
   products of the forward, the alignment loss's double backward, the backward);
3. times the step (forward + MAL double backward + update, on one synthetic batch in device memory)
   for each variant, interleaved over ``--rounds`` so that load on a shared machine hits all alike:
   ``eager`` (contiguous NCDHW), ``channels_last`` (``channels_last=true``: NDHWC weights and clips),
   ``compile`` (``compile=true``: the key encoder and the query encoder up to the alignment layer
   compiled, MAL's double-backward path eager; ``models/compiled.py``), ``compile_cl`` (the same with
   ``channels_last=true``), ``compile_whole`` (``torch.compile`` of the whole forward: fails with MAL
   on, reported as failed);
4. prints one row per variant: median ms/step, achieved FLOP/s, and their share of the peak.

    python benchmarks/step_efficiency.py                     # CPU: 8 x 64 x 64, batch 4, fp32
    python benchmarks/step_efficiency.py --device cuda       # GPU: the config's 16 x 112, batch 32, bf16
    python benchmarks/step_efficiency.py --variants eager channels_last --rounds 3 --json out.json
    python benchmarks/step_efficiency.py --allocators glibc tcmalloc --rounds 2   # CPU: both allocators

``--allocators glibc tcmalloc`` runs the whole measurement (peak included) in one child process per
allocator and round, tcmalloc preloaded with ``LD_PRELOAD`` (Debian: ``libgoogle-perftools4``), the
allocators alternating over the rounds; the table then has one row per allocator and variant, each
share taken against the peak measured in that allocator's own processes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from mcl_video.allocator import find_tcmalloc
from mcl_video.training import load_config
from mcl_video.training.loop import train_step
from throughput import bench_batches, bench_run, matmul_peak, step_flops

VARIANTS = ("eager", "channels_last", "compile", "compile_cl", "compile_whole")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Arm:
    """One variant's training state; ``time(steps)`` -> seconds per step."""

    def __init__(self, name: str, cfg, device: torch.device, total_steps: int) -> None:
        self.name, self.device, self.error = name, device, None
        self.run = bench_run(cfg, device, total_steps)
        self.batches = bench_batches(cfg, device)
        if name == "compile_whole":
            self.run.net = torch.compile(self.run.model)

    def time(self, steps: int) -> float:
        _sync(self.device)
        start = time.perf_counter()
        for _ in range(steps):
            train_step(self.run, self.batches)
        _sync(self.device)
        return (time.perf_counter() - start) / steps


def build_config(args, variant: str):
    over = [f"device={args.device}", "epochs=1", f"use_mal={args.mal}", f"precision={args.precision}",
            f"channels_last={variant in ('channels_last', 'compile_cl')}",
            f"compile={variant in ('compile', 'compile_cl')}"]
    over += [f"{k}={v}" for k, v in (("size", args.size), ("clip_len", args.clip_len),
                                     ("batch_size", args.batch_size), ("queue_size", args.queue_size))
             if v is not None]
    return load_config(args.config, over)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--config", default="ucf101_r2plus1d18_112")
    p.add_argument("--size", type=int, default=None, help="default 64 on a CPU, the config's on CUDA")
    p.add_argument("--clip-len", type=int, default=None, help="default 8 on a CPU, the config's on CUDA")
    p.add_argument("--batch-size", type=int, default=None, help="default 4 on a CPU, 32 on CUDA")
    p.add_argument("--queue-size", type=int, default=None, help="default 4096 on a CPU")
    p.add_argument("--precision", default=None, choices=("fp32", "bf16"),
                   help="default fp32 on a CPU, bf16 on CUDA")
    p.add_argument("--mal", default="true", choices=("true", "false"))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=None, help="timed steps per arm and round (2 CPU, 10 CUDA)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per arm first (compile happens here)")
    p.add_argument("--n", type=int, default=None, help="matrix side of the peak (2048 CPU, 8192 CUDA)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--allocators", nargs="+", default=None, choices=("glibc", "tcmalloc"),
                   help="CPU: run everything once per allocator and round in child processes")
    args = p.parse_args(argv)
    cpu = args.device == "cpu"
    for key, cpu_value, gpu_value in (("size", 64, None), ("clip_len", 8, None), ("batch_size", 4, 32),
                                      ("queue_size", 4096, None), ("precision", "fp32", "bf16"),
                                      ("steps", 2, 10), ("n", 2048, 8192)):
        if getattr(args, key) is None:
            setattr(args, key, cpu_value if cpu else gpu_value)
    return args


def child_argv(argv: list[str]) -> list[str]:
    """``argv`` without ``--allocators``/``--rounds``/``--json`` and their values."""
    out, skip = [], False
    for a in argv:
        if a in ("--allocators", "--rounds", "--json"):
            skip = True
            continue
        if skip and not a.startswith("--"):
            continue
        skip = False
        out.append(a)
    return out


def by_allocator(args, argv: list[str]) -> dict:
    """One child process per allocator and round (alternating), then one table."""
    lib = find_tcmalloc()
    if "tcmalloc" in args.allocators and lib is None:
        raise SystemExit("step_efficiency.py: tcmalloc not found; install libgoogle-perftools4 or drop it "
                         "from --allocators")
    runs: dict[str, list[dict]] = {a: [] for a in args.allocators}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for alloc in args.allocators if r % 2 == 0 else args.allocators[::-1]:
                env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
                if alloc == "tcmalloc":
                    env["LD_PRELOAD"] = lib
                out = Path(tmp) / f"{alloc}-{r}.json"
                cmd = [sys.executable, __file__, *child_argv(argv), "--rounds", "1", "--json", str(out)]
                subprocess.run(cmd, env=env, check=True)
                runs[alloc].append(json.loads(out.read_text()))
    first = runs[args.allocators[0]][0]
    print(f"\n{first['device']}; {first['backbone']} {first['clip']}, batch {first['batch']}, "
          f"{first['precision']}, MAL {first['mal']}; {first['flops_per_step'] / 1e9:.1f} GFLOP per step; "
          f"{args.rounds} rounds, allocators alternating")
    print("| allocator | variant | ms/step (median of rounds) | matmul peak GFLOP/s (median) | GFLOP/s | "
          "share of matmul peak |\n" + "| --- " * 6 + "|")
    table = {}
    for alloc, rows in runs.items():
        peak = statistics.median(r["peak_flops_per_s"] for r in rows)
        for variant in args.variants:
            ms = [r["rows"][variant]["ms_per_step"] for r in rows if "ms_per_step" in r["rows"][variant]]
            if not ms:
                print(f"| {alloc} | {variant} | failed: {rows[0]['rows'][variant].get('error')} | | | |")
                continue
            s = statistics.median(ms) / 1000
            rate = first["flops_per_step"] / s
            table[f"{alloc}/{variant}"] = {"ms_per_step": 1000 * s, "peak": peak, "share": rate / peak,
                                           "ms": ms}
            print(f"| {alloc} | {variant} | {1000 * s:.0f} | {peak / 1e9:.1f} | {rate / 1e9:.1f} | "
                  f"{rate / peak:.1%} |")
    out = {"runs": runs, "table": table}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return out


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.allocators:
        return by_allocator(args, argv)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    peak = matmul_peak(device, dtype, args.n)
    flops = step_flops(build_config(args, "eager"), device)
    arms, errors = {}, {}
    total = args.warmup + args.rounds * args.steps + 1
    for name in args.variants:
        try:
            arm = Arm(name, build_config(args, name), device, total)
            arm.time(args.warmup)
            arms[name] = arm
        except Exception as exc:  # noqa: BLE001 - a variant that cannot run is a result to report
            errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            traceback.print_exc()
    times: dict[str, list[float]] = {n: [] for n in arms}
    for r in range(args.rounds):
        order = list(arms) if r % 2 == 0 else list(arms)[::-1]
        for name in order:
            times[name].append(arms[name].time(args.steps))
    cfg = build_config(args, "eager")
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    print(f"{where}; torch {torch.__version__}; {cfg.backbone} {cfg.clip_len}x{cfg.size}x{cfg.size}, batch "
          f"{cfg.batch_size}, {args.precision}, MAL {args.mal}; peak ({args.n}^3 {args.precision} matmul) "
          f"{peak / 1e12:.3f} TFLOP/s; {flops / 1e9:.1f} GFLOP per step")
    print("| variant | ms/step (median of rounds) | TFLOP/s | share of matmul peak |\n" + "| --- " * 4 + "|")
    rows = {}
    for name in args.variants:
        if name in errors:
            print(f"| {name} | failed: {errors[name]} | | |")
            rows[name] = {"error": errors[name]}
            continue
        s = statistics.median(times[name])
        rows[name] = {"ms_per_step": 1000 * s, "flops_per_s": flops / s, "share": flops / s / peak,
                      "rounds_ms": [1000 * t for t in times[name]]}
        print(f"| {name} | {1000 * s:.1f} | {flops / s / 1e12:.3f} | {flops / s / peak:.1%} |")
    out = {"device": where, "torch": torch.__version__, "threads": torch.get_num_threads(),
           "allocator": os.environ.get("LD_PRELOAD", ""), "config": args.config, "backbone": cfg.backbone,
           "clip": f"{cfg.clip_len}x{cfg.size}x{cfg.size}", "batch": cfg.batch_size,
           "precision": args.precision, "mal": args.mal, "peak_flops_per_s": peak, "flops_per_step": flops,
           "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
