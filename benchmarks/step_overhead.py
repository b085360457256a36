"""Training-step overhead of the motion alignment loss: MoCo-only (use_mal=False) vs MoCo+MAL.

Everything else is equal (intra and order terms on in both arms, same backbone, batch, queue). Each
arm runs in its own subprocess (so its peak resident memory, VmHWM from /proc/self/status, is its
own); the arms are interleaved over rounds (A B, B A, ...) because the machine is shared, and the
medians of the per-step times are compared. The last printed line is ``ratio=<MCL/MoCo>``.

    python benchmarks/step_overhead.py --quick      # ~1 round, 2 timed steps per arm
    python benchmarks/step_overhead.py --rounds 3 --steps 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def peak_rss_mib() -> float:
    """Peak resident set size of this process (VmHWM) in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmHWM line (Linux only)")


def run_arm(args) -> dict:
    """Child process: time ``args.steps`` training steps of one arm after ``args.warmup`` steps."""
    import torch

    from mcl_video.models import MCL, MCLConfig

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = MCLConfig(args.backbone, queue_size=args.queue_size, use_mal=args.child == "mcl")
    model = MCL(config)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    b, t, s = args.batch, args.clip_len, args.size
    batch = {n: torch.randn(b, 3, t, s, s) for n in ("q", "k0", "k1", "k2")}
    grid = model.encoder_q.backbone.feature_grid(t, s)
    batch.update(target=torch.rand(b, *grid), order=torch.randint(2, (b,)), index=torch.arange(b))
    times, cpu = [], []
    for i in range(args.warmup + args.steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        loss, _ = model(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.momentum_update()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return {"arm": args.child, "times": times, "cpu": cpu, "peak_mib": peak_rss_mib()}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="r2plus1d_18")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--clip-len", type=int, default=16)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--queue-size", type=int, default=16384)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="timed steps per arm per round")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="1 round, 1 timed step per arm (~2-5 min here)")
    p.add_argument("--child", choices=["moco", "mcl"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.steps = 1, 1
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(run_arm(args)))
        return 0
    forwarded = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--quick"]
    forwarded += ["--steps", str(args.steps)]
    times, cpu = {"moco": [], "mcl": []}, {"moco": [], "mcl": []}
    peak = {"moco": 0.0, "mcl": 0.0}
    for r in range(args.rounds):
        for arm in ("moco", "mcl") if r % 2 == 0 else ("mcl", "moco"):
            cmd = [sys.executable, __file__, *forwarded, "--child", arm]
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip())
            times[arm] += res["times"]
            cpu[arm] += res["cpu"]
            peak[arm] = max(peak[arm], res["peak_mib"])
            steps = " ".join(f"{x:.2f}" for x in res["times"])
            print(f"round {r} {arm}: steps [{steps}] s, peak {res['peak_mib']:.0f} MiB")
    med = {arm: statistics.median(v) for arm, v in times.items()}
    med_cpu = {arm: statistics.median(v) for arm, v in cpu.items()}
    print(
        f"{args.backbone} batch {args.batch} x 3x{args.clip_len}x{args.size}x{args.size}, "
        f"queue {args.queue_size}, {args.threads} threads"
    )
    for arm, label in (("moco", "MoCo only"), ("mcl", "MoCo + MAL")):
        print(
            f"{label:11s} median {med[arm]:.2f} s/step (process CPU {med_cpu[arm]:.2f} s) over "
            f"{len(times[arm])} steps, peak {peak[arm]:.0f} MiB"
        )
    print(f"memory_ratio={peak['mcl'] / peak['moco']:.3f} cpu_ratio={med_cpu['mcl'] / med_cpu['moco']:.3f}")
    print(f"ratio={med['mcl'] / med['moco']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
