"""Cost of BatchNorm groups on the CPU: one MCL training step (forward, MAL's double backward, backward)
of the demo's model with `bn_group_size` 0 (one BN batch) and 8 (the release's), side by side.

    python benchmarks/bn_groups.py [--batch 32] [--reps 5]

The demo's model: tiny_r2plus1d, 8 x 32 x 32 clips, queue 256; both memory layouts. Prints the median
and minimum step time of each setting (the first step of each is left out).
"""

from __future__ import annotations

import argparse
import time

import torch

from mcl_video.models import MCL, MCLConfig, build_backbone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    clip, size = 8, 32
    grid = build_backbone("tiny_r2plus1d").feature_grid(clip, size)
    g = torch.Generator().manual_seed(0)
    base = {v: torch.randn(args.batch, 3, clip, size, size, generator=g) for v in ("q", "k0", "k1", "k2")}
    base.update(target=torch.rand(args.batch, *grid, generator=g),
                order=torch.randint(2, (args.batch,), generator=g), index=torch.arange(args.batch))
    for layout in (torch.contiguous_format, torch.channels_last_3d):
        batch = {k: v.contiguous(memory_format=layout) if k in ("q", "k0", "k1", "k2") else v
                 for k, v in base.items()}
        torch.manual_seed(0)
        models = {gs: MCL(MCLConfig("tiny_r2plus1d", queue_size=256, bn_group_size=gs))
                  for gs in (0, 8)}
        for model in models.values():
            model.to(memory_format=layout)
        times = {gs: [] for gs in models}
        for _ in range(args.reps + 1):
            for gs, model in models.items():  # interleaved: the machine's load hits both alike
                start = time.perf_counter()
                loss, _ = model(batch)
                loss.backward()
                times[gs].append(time.perf_counter() - start)
        name = "channels_last" if layout is torch.channels_last_3d else "contiguous"
        for gs, ts in times.items():
            ts = sorted(ts[1:])
            print(f"{name:13s} bn_group_size={gs}: median {1000 * ts[len(ts) // 2]:.0f} ms, "
                  f"min {1000 * ts[0]:.0f} ms")


if __name__ == "__main__":
    main()
