"""Everything a GPU user waits on, measured in one run on one GPU: write the numbers BENCHMARKS.md's
"On a GPU" section reports.

Parts (each time-boxed and independent: one that fails is reported and the next one runs):

1. ``peaks``: bf16 and fp32 (TF32 off) matrix-product rates, the ceilings of the rows below;
2. ``steps``: training-step rate of the real engine on one synthetic batch in device memory, bf16,
   MAL on and off, R(2+1)D-18 at 16 x 112 x 112 and P3D ResNet-50 at 16 x 224 x 224: samples/s,
   clips/s, ms/step, peak memory, FLOPs per step and the share of the bf16 peak; in the default
   (NCDHW) and the ``channels_last=true`` (NDHWC) layout;
3. ``prepare``: ``mcl prepare`` of ``--clips`` with DIS on ``--workers`` CPU processes, and with RAFT
   (small and large) on the GPU, frames/s. No RAFT weights can be fetched on a closed machine, so
   RAFT runs with randomly initialised weights saved as a local file: the same computation per frame
   (a rate, not a flow quality);
4. ``loader``: the training DataLoader (``--workers`` processes, batch 32, 112 px, pinned memory) on
   ``--clips`` as they are and as ``mcl transcode`` copies (short side 256, GOP 16), feeding the
   batched photometric augmentation on the GPU: samples/s over ``--loader-batches`` batches;
5. ``pretrain``: ``pretrain()`` end to end on a built-in benchmark (128 px) with R(2+1)D-18 at 112 px,
   bf16, batch 32, ``--workers`` loader processes: the steps/s the logger records once warm, to set
   against the synthetic-batch rate of part 2 (where it is lower, the GPU waits on the loader); the
   loader's workers persist across epochs (``training/loader.py``);
6. ``pretrain_fresh``: the same run with the workers restarted every epoch (the loader before
   persistent workers), for the before/after row;
7. ``compiled``: R(2+1)D-18 16 x 112 x 112, bf16, NDHWC, batch 32, MAL on: the eager step against
   ``compile=true`` (key encoder and the query encoder up to the alignment layer compiled), measured in
   the same run, with the compile time and the largest relative loss difference;
8. ``raft``: ``FlowEstimator("raft")`` (random weights) on 240-px frames of ``--clips``: frames/s after
   warm-up for batches of 8/16/32 pairs in fp32, bf16 and fp16, and the relative flow difference of
   bf16/fp16 against fp32 on the Sintel and FlyingChairs pairs of ``--flow-data`` (random weights, so
   this checks the arithmetic, not the quality);
9. ``decode``: random 16-frame clip reads per second, PyAV against the optional torchcodec reader on
   the CPU and (CUDA) into device memory, where torchcodec imports.

    python benchmarks/gpu_suite.py --clips ../shared/data/clips --out gpu_results \
        --parts env peaks pretrain pretrain_fresh compiled raft decode --budget 500   # throughput rows

    python benchmarks/gpu_suite.py --clips ../shared/data/clips --out gpu_results   # parts 1-5
    python benchmarks/gpu_suite.py --device cpu --quick --clips ../shared/data/clips --out smoke

Writes ``<out>/gpu_suite.json`` after every part and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from mcl_video.data import find_videos, video_id
from mcl_video.data.synth import make_benchmark
from mcl_video.data.transcode import TranscodeSettings, transcode
from mcl_video.motion.cache import CacheSettings, MotionCache
from mcl_video.motion.prepare import prepare
from mcl_video.sampling import MCLPretrainDataset
from mcl_video.sampling.photometric import augment_batch
from mcl_video.training import load_config, pretrain
from throughput import matmul_peak, measure_step_rate, step_flops

STEP_MODELS = (  # (label, shipped config, overrides on the GPU, overrides for a CPU smoke run)
    ("R(2+1)D-18 16x112", "ucf101_r2plus1d18_112", ["batch_size=32"],
     ["batch_size=2", "clip_len=8", "size=32", "queue_size=1024"]),
    ("P3D-50 16x224", "ucf101_p3d50", ["batch_size=16"],
     ["batch_size=1", "clip_len=4", "size=64", "queue_size=1024"]),
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def part_env(args, device) -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"}
    if device.type == "cuda":
        out["cuda"], out["cudnn"] = torch.version.cuda, torch.backends.cudnn.version()
        smi = shutil.which("nvidia-smi")
        if smi:
            query = ["--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"]
            out["nvidia_smi"] = subprocess.run([smi, *query], capture_output=True, text=True).stdout.strip()
    return out


def part_peaks(args, device) -> dict:
    n = 1024 if args.quick else 8192
    out = {"n": n, "fp32": matmul_peak(device, torch.float32, n)}
    if device.type == "cuda":
        out["bf16"] = matmul_peak(device, torch.bfloat16, n, repeats=10)
    rates = ", ".join(f"{k} {v / 1e12:.1f} TFLOP/s" for k, v in out.items() if k != "n")
    print(f"matmul peak ({n}^3): {rates}")
    return out


def part_steps(args, device, results) -> list[dict]:
    peak = results.get("peaks", {}).get("bf16" if device.type == "cuda" else "fp32", float("nan"))
    precision = "bf16" if device.type == "cuda" else "fp32"
    rows = []
    for label, config, gpu_over, cpu_over in STEP_MODELS:
        base = [f"device={device.type}", "epochs=1", f"precision={precision}"]
        base += gpu_over if device.type == "cuda" else cpu_over
        for layout in ("false", "true"):
            for mal in ("true", "false"):
                cfg = load_config(config, base + [f"use_mal={mal}", f"channels_last={layout}"])
                steps, warmup = (1, 1) if args.quick else (10, 3)
                row = measure_step_rate(cfg, steps, warmup, device)
                row["flops_per_step"] = step_flops(cfg, device)
                row["share_of_peak"] = row["flops_per_step"] / (row["ms_per_step"] / 1000) / peak
                row.update(model=label, channels_last=layout == "true")
                rows.append(row)
                print(f"| {label} | {'NDHWC' if row['channels_last'] else 'NCDHW'} | "
                      f"{'on' if row['use_mal'] else 'off'} | {row['batch']} | {row['ms_per_step']:.1f} | "
                      f"{row['samples_per_s']:.1f} | {row['clips_per_s']:.1f} | {row['peak_gib']:.2f} | "
                      f"{row['flops_per_step'] / 1e12:.2f} | {row['share_of_peak']:.1%} |", flush=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return rows


def random_raft_weights(folder: Path, model: str) -> Path:
    """A local state dict of a randomly initialised torchvision RAFT (same shapes, hence the same cost)."""
    from torchvision.models import optical_flow

    torch.manual_seed(0)
    path = folder / f"{model}_random.pth"
    torch.save(getattr(optical_flow, model)(weights=None, progress=False).state_dict(), path)
    return path


def _prepare_rate(root: Path, out: Path, settings: CacheSettings, workers: int) -> dict:
    start = time.perf_counter()
    summary = prepare(root, out, settings, workers=workers, progress=False)
    seconds = time.perf_counter() - start
    frames = sum(MotionCache(out).get(v).num_frames for v in MotionCache(out).video_ids())
    return {"videos": len(MotionCache(out).video_ids()), "failed": len(summary.failed), "frames": frames,
            "seconds": seconds, "frames_per_s": frames / seconds}


def part_prepare(args, device, work: Path) -> dict:
    out = {}
    # fresh folders: the loader part's cache must not make this run skip its videos
    out["dis"] = _prepare_rate(args.clips, work / "timed_dis", CacheSettings(), args.workers)
    print(f"prepare, DIS on {args.workers} CPU workers: {out['dis']['frames_per_s']:.0f} frames/s "
          f"({out['dis']['frames']} frames, {out['dis']['videos']} videos)", flush=True)
    for model in ("raft_small",) if args.quick else ("raft_small", "raft_large"):
        weights = random_raft_weights(work, model)
        settings = CacheSettings(flow_backend="raft", flow_options={"weights": str(weights), "model": model})
        r = _prepare_rate(args.clips, work / f"timed_{model}", settings, 1)
        out[model] = r
        print(f"prepare, {model} on {device.type} (random weights): {r['frames_per_s']:.0f} frames/s",
              flush=True)
    return out


def loader_rate(root: Path, cache: MotionCache, workers: int, batches: int, size: int,
                device: torch.device) -> dict:
    """Samples/s of the training DataLoader feeding the batched augmentation on ``device``."""
    records = [str(p.relative_to(root)) for p in find_videos(root)]
    records = [r for r in records if video_id(r) in cache]
    ds = MCLPretrainDataset(root, records, cache, {"size": size}, (4, size // 16, size // 16))
    batch = 32
    draws = RandomSampler(ds, replacement=True, num_samples=batch * (batches + 2),
                          generator=torch.Generator().manual_seed(0))
    loader = DataLoader(ds, batch_size=batch, sampler=draws, num_workers=workers,
                        pin_memory=device.type == "cuda", drop_last=True)
    seen, start, aug = 0, None, 0.0
    for b in loader:
        moved = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in b.items()}
        t = time.perf_counter()
        augment_batch(moved)
        sync(device)
        if start is None:  # steady state: from the first batch on (worker start-up excluded)
            start = time.perf_counter()
            continue
        aug += time.perf_counter() - t
        seen += batch
    seconds = time.perf_counter() - start
    return {"videos": len(ds), "workers": workers, "samples": seen, "samples_per_s": seen / seconds,
            "augment_ms_per_sample": 1000 * aug / max(seen, 1)}


def part_loader(args, device, work: Path) -> dict:
    cache_dir = work / "cache_dis"
    if not (cache_dir / "meta.json").exists():
        prepare(args.clips, cache_dir, CacheSettings(), workers=args.workers, progress=False)
    copies = work / "transcoded"
    start = time.perf_counter()
    transcode(args.clips, copies, TranscodeSettings(short_side=256, gop=16), workers=args.workers,
              progress=False)
    out = {"transcode_seconds": time.perf_counter() - start}
    # the copies keep the originals' relative paths and frame counts, so the same cache describes them
    for name, root in (("originals", args.clips), ("transcoded", copies)):
        r = loader_rate(root, MotionCache(cache_dir), args.workers, args.loader_batches, 112, device)
        out[name] = r
        print(f"loader on {name}: {r['samples_per_s']:.1f} samples/s with {args.workers} workers, batched "
              f"augmentation {r['augment_ms_per_sample']:.2f} ms/sample on {device.type}", flush=True)
    return out


def part_pretrain(args, device, work: Path, persistent: bool = True) -> dict:
    from functools import partial

    from mcl_video.training import loader as loader_module
    from mcl_video.training import loop

    bench = work / "bench"
    classes, per_class = (2, 4) if args.quick else (5, 32)
    if not (bench / "meta.json").exists():  # pretrain_fresh reuses pretrain's benchmark and motion cache
        make_benchmark(bench, classes=classes, train_per_class=per_class, test_per_class=1, frames=64,
                       size=128, workers=args.workers)
    steps = 4 if args.quick else args.pretrain_steps
    over = [f"data={bench / 'annotations'}", f"video_root={bench / 'videos'}", f"cache={bench / 'motion'}",
            f"out={work / 'run'}", f"device={device.type}", f"max_steps={steps}", "log_every=10",
            "progress=false", "tensorboard=false", f"num_workers={args.workers}", "checkpoint_every=100000"]
    over += (["batch_size=32", "precision=bf16", "channels_last=" + str(args.channels_last).lower()]
             if device.type == "cuda" else ["batch_size=2", "clip_len=8", "size=32", "queue_size=1024",
                                            "log_every=2", "precision=fp32"])
    run_dir = work / ("run" if persistent else "run_fresh")
    over = [o for o in over if not o.startswith("out=")] + [f"out={run_dir}"]
    cfg = load_config("ucf101_r2plus1d18_112", over)
    if not (bench / "motion" / "meta.json").exists() or len(MotionCache(bench / "motion")) == 0:
        prepare(bench / "videos", bench / "motion", CacheSettings(clip_len=cfg.clip_len, stride=cfg.stride),
                workers=args.workers, progress=False)
    start = time.perf_counter()
    if persistent:
        pretrain(cfg)
    else:  # workers restarted every epoch: what the loop did before persistent workers
        loop.build_epoch_loader = partial(loader_module.build_epoch_loader, persistent=False)
        try:
            pretrain(cfg)
        finally:
            loop.build_epoch_loader = loader_module.build_epoch_loader
    seconds = time.perf_counter() - start
    logs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    warm = [r["samples_per_s"] for r in logs[1:]] or [logs[-1]["samples_per_s"]]
    out = {"persistent_workers": persistent, "steps": steps, "batch": cfg.batch_size, "workers": args.workers,
           "wall_seconds": seconds,
           "samples_per_s_warm": float(np.median(warm)),
           "log": [(r["step"], r["samples_per_s"]) for r in logs]}
    print(f"pretrain end to end ({'persistent workers' if persistent else 'workers restarted every epoch'}): "
          f"{out['samples_per_s_warm']:.1f} samples/s once warm ({steps} steps, batch {cfg.batch_size}, "
          f"{args.workers} loader workers, {seconds:.0f} s wall)", flush=True)
    return out


def part_pretrain_fresh(args, device, work: Path) -> dict:
    return part_pretrain(args, device, work, persistent=False)


def part_compiled(args, device, work: Path) -> dict:
    """Eager vs ``compile=true`` on one synthetic batch, same run (compile time measured apart)."""
    from mcl_video.training.loop import train_step
    from throughput import bench_batches, bench_run

    if device.type == "cuda":
        config, over = "ucf101_r2plus1d18_112", ["batch_size=32", "precision=bf16", "channels_last=true"]
    else:
        config = "demo_cpu"
        over = ["batch_size=4", "size=32", "clip_len=8", "queue_size=256", "precision=fp32"]
    steps, warmup, rounds = (2, 1, 1) if args.quick else (10, 3, 3)
    arms, out = {}, {"config": config, "overrides": over}
    for name in ("eager", "compiled"):
        cfg = load_config(config, [f"device={device.type}", "epochs=1", "use_mal=true",
                                   f"compile={name == 'compiled'}", *over])
        run, batches = bench_run(cfg, device, steps * rounds + warmup + 1), bench_batches(cfg, device)
        sync(device)
        start = time.perf_counter()
        losses = [train_step(run, batches)["loss"] for _ in range(warmup)]
        sync(device)
        out[f"{name}_warmup_seconds"] = time.perf_counter() - start  # compiles here
        arms[name] = (run, batches, losses)
    times: dict[str, list[float]] = {k: [] for k in arms}
    for _ in range(rounds):
        for name, (run, batches, losses) in arms.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                losses.append(train_step(run, batches)["loss"])
            sync(device)
            times[name].append((time.perf_counter() - start) / steps)
    for name in arms:
        ms = 1000 * float(np.median(times[name]))
        out[name] = {"ms_per_step": ms, "samples_per_s": arms[name][0].config.batch_size / (ms / 1000)}
    le, lc = arms["eager"][2], arms["compiled"][2]
    out["max_relative_loss_difference"] = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(le, lc))
    out["speedup"] = out["eager"]["ms_per_step"] / out["compiled"]["ms_per_step"]
    print(f"compiled step ({config}, MAL on): eager {out['eager']['samples_per_s']:.1f} samples/s, compiled "
          f"{out['compiled']['samples_per_s']:.1f} ({out['speedup']:.2f}x; warm-up incl. compile "
          f"{out['compiled_warmup_seconds']:.0f} s; loss difference "
          f"{out['max_relative_loss_difference']:.1e})", flush=True)
    return out


def _flow_pairs(flow_data: Path, short: int = 240) -> list[tuple[str, np.ndarray, np.ndarray]]:
    import cv2

    pairs = []
    for name, a, b in (("sintel alley_1", "flow-sintel/clean/alley_1/frame_0001.png",
                        "flow-sintel/clean/alley_1/frame_0002.png"),
                       ("chairs 0000000", "flow-flyingchairs/0000000-img0.ppm",
                        "flow-flyingchairs/0000000-img1.ppm")):
        imgs = []
        for rel in (a, b):
            img = cv2.cvtColor(cv2.imread(str(flow_data / rel)), cv2.COLOR_BGR2RGB)
            h, w = img.shape[:2]
            imgs.append(cv2.resize(img, (round(w * short / h), short), interpolation=cv2.INTER_AREA))
        pairs.append((name, *imgs))
    return pairs


def part_raft(args, device, work: Path) -> dict:
    from mcl_video.data import read_frames
    from mcl_video.motion.flow import FlowEstimator

    frames = read_frames(args.clips / "v_ApplyEyeMakeup_g01_c01.avi", resize_short=240)
    frames = frames[: 17 if args.quick else 97]  # 16 / 96 pairs
    precisions = ("fp32", "bf16", "fp16") if device.type == "cuda" else ("fp32", "bf16")
    batches = (2,) if args.quick else (8, 16, 32)
    models = ("raft_small",) if args.quick else ("raft_small", "raft_large")
    out: dict = {"pairs": len(frames) - 1, "size": list(frames.shape[1:3]), "rates": [], "difference": []}
    pairs = _flow_pairs(args.flow_data) if (args.flow_data / "flow-sintel").is_dir() else []
    for model in models:
        weights = random_raft_weights(work, model)
        reference = {}
        for precision in precisions:
            for batch in batches:
                est = FlowEstimator("raft", weights=weights, model=model, batch_size=batch,
                                    precision=precision, iters=2 if args.quick else 12, device=device.type)
                list(est.stream(frames[: batch + 1]))  # warm-up (cuDNN autotuning, allocator)
                sync(device)
                start = time.perf_counter()
                n = sum(1 for _ in est.stream(frames))
                sync(device)
                rate = n / (time.perf_counter() - start)
                out["rates"].append({"model": model, "precision": precision, "batch": batch,
                                     "frames_per_s": rate})
                print(f"RAFT {model} {precision} batch {batch} on {device.type}: {rate:.1f} frames/s after "
                      "warm-up", flush=True)
            for name, a, b in pairs:
                u, v = est.pair(a, b)
                flow = np.stack([u, v], -1)
                if precision == "fp32":
                    reference[name] = flow
                    continue
                ref = reference[name]
                d = float(np.linalg.norm(flow - ref, axis=-1).mean() / np.linalg.norm(ref, axis=-1).mean())
                out["difference"].append({"model": model, "precision": precision, "pair": name,
                                          "relative_difference": d})
                print(f"RAFT {model} {precision} vs fp32 on {name} (random weights): relative difference "
                      f"{d:.4f}", flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return out


def part_decode(args, device, work: Path) -> dict:
    from mcl_video.data import read_clip, read_video_info, torchcodec_reader
    from mcl_video.data import video as video_module

    if not torchcodec_reader.available():
        print(f"decode: {torchcodec_reader.unavailable_reason()}", flush=True)
        return {"torchcodec": torchcodec_reader.unavailable_reason()}
    rng = np.random.default_rng(0)
    devices = ["cpu"] + (["cuda"] if device.type == "cuda" else [])
    rows = []
    for path in sorted(p for p in args.clips.iterdir() if p.suffix in (".mp4", ".avi", ".gif")):
        n = read_video_info(path).num_frames
        starts = rng.integers(0, max(1, n - 31), 4 if args.quick else 10)
        clips = [list(int(s) + 2 * np.arange(16)) for s in starts]
        arms = {"pyav": lambda c, p=path: (video_module._INDEX_CACHE.clear(), read_clip(p, c))}
        for dev in devices:
            arms[f"torchcodec_{dev}"] = (lambda c, p=path, d=dev:
                                         torchcodec_reader.read_clip_torchcodec(p, c, device=d))
        row = {"file": path.name}
        for name, fn in arms.items():
            try:
                fn(clips[0])  # warm-up (decoder and NVDEC start)
                sync(device)
                start = time.perf_counter()
                for c in clips:
                    fn(c)
                sync(device)
                row[name] = len(clips) / (time.perf_counter() - start)
            except Exception as exc:  # noqa: BLE001 - e.g. no NVDEC for this codec: a result to report
                row[name] = f"{type(exc).__name__}: {str(exc)[:120]}"
        rows.append(row)
        print("decode " + ", ".join(f"{k} {v:.1f} clips/s" if isinstance(v, float) else f"{k} {v}"
                                    for k, v in row.items() if k != "file") + f" ({path.name})", flush=True)
    return {"rows": rows}


PARTS = ("env", "peaks", "steps", "loader", "prepare", "pretrain", "pretrain_fresh", "compiled", "raft",
         "decode")
DEFAULT_PARTS = ("env", "peaks", "steps", "loader", "prepare", "pretrain")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clips", type=Path, required=True, help="folder of real video clips")
    p.add_argument("--out", type=Path, required=True, help="results folder (gpu_suite.json)")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--parts", nargs="+", default=list(DEFAULT_PARTS), choices=PARTS)
    p.add_argument("--flow-data", type=Path, default=None,
                   help="folder with flow-sintel/ and flow-flyingchairs/ (default: --clips/..)")
    p.add_argument("--workers", type=int, default=max(1, min(15, (os.cpu_count() or 2) - 1)))
    p.add_argument("--loader-batches", type=int, default=30)
    p.add_argument("--pretrain-steps", type=int, default=80)
    p.add_argument("--channels-last", action="store_true", help="end-to-end run in the NDHWC layout")
    p.add_argument("--budget", type=float, default=420.0, help="seconds; later parts are skipped past it")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a CPU smoke run of the script)")
    args = p.parse_args(argv)
    args.flow_data = args.flow_data or args.clips.parent
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mcl-gpu-suite-"))
    results: dict = {"date": time.strftime("%Y-%m-%d"), "args": {k: str(v) for k, v in vars(args).items()}}
    t0 = time.perf_counter()
    for name in args.parts:
        if time.perf_counter() - t0 > args.budget:
            results[name] = {"skipped": f"over the {args.budget:.0f} s budget"}
            continue
        start = time.perf_counter()
        try:
            if name == "steps":
                print("| model | layout | MAL | batch | ms/step | samples/s | clips/s | peak GiB | "
                      "TFLOP/step | share of bf16 peak |\n" + "| --- " * 10 + "|")
                results[name] = part_steps(args, device, results)
            elif name in ("env", "peaks"):
                results[name] = globals()[f"part_{name}"](args, device)
            else:
                results[name] = globals()[f"part_{name}"](args, device, work)
        except Exception as exc:  # noqa: BLE001 - one broken part must not cost the others
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        results.setdefault("seconds", {})[name] = round(time.perf_counter() - start, 1)
        (args.out / "gpu_suite.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"[{name}] {results['seconds'][name]:.0f} s", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
