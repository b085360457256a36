"""Average end-point error (EPE) of each flow backend against real ground truth.

Data (../shared/data): MPI-Sintel clean (3 sequences, flow frame_0002 -> frame_0003, with occlusion and
invalid masks) and FlyingChairs (3 pairs). EPE is measured on the raw (unclipped) flow:

- Sintel ``noc``: valid and non-occluded pixels (``gt/invalid`` and ``gt/occlusions`` masks are 0);
- Sintel ``all``: every pixel; FlyingChairs: every pixel (it has no masks).

A second pass computes flow on frames resized to a short side of ``--small`` px (what a motion cache may
store), upsamples it back and scales the vectors, and scores it against the same full-size ground truth.

    python benchmarks/flow_quality.py [--quick] [--raft-weights raft_small.pth] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from mcl_video.motion.flow import FlowEstimator, endpoint_error, read_flo

SHARED = Path(os.environ.get("MCL_SHARED", Path(__file__).resolve().parents[2] / "shared"))
SINTEL = ("alley_1", "cave_2", "market_5")
CHAIRS = ("0000000", "0000001", "0000002")
CONFIGS = {  # label -> (backend, options)
    "tvl1": ("tvl1", {}),
    "dis ultrafast": ("dis", {"preset": "ultrafast"}),
    "dis fast": ("dis", {"preset": "fast"}),
    "dis medium": ("dis", {"preset": "medium"}),
    "farneback": ("farneback", {}),
}


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{path}: cannot read image (is ../shared/data present? set MCL_SHARED)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_pairs(quick: bool) -> list[dict]:
    """Each pair: name, img0, img1 (H x W x 3 uint8), gt (H x W x 2), noc mask (H x W bool or None)."""
    pairs = []
    for seq in SINTEL[:1] if quick else SINTEL:
        root = SHARED / "data" / "flow-sintel" / "clean" / seq
        invalid = cv2.imread(str(root / "gt" / "invalid" / "frame_0002.png"), cv2.IMREAD_GRAYSCALE)
        occluded = cv2.imread(str(root / "gt" / "occlusions" / "frame_0002.png"), cv2.IMREAD_GRAYSCALE)
        pairs.append({"name": f"sintel/{seq}", "img0": read_rgb(root / "frame_0002.png"),
                      "img1": read_rgb(root / "frame_0003.png"),
                      "gt": read_flo(root / "gt" / "frame_0002.flo"),
                      "noc": (invalid == 0) & (occluded == 0)})
    for pid in CHAIRS[:1] if quick else CHAIRS:
        root = SHARED / "data" / "flow-flyingchairs"
        pairs.append({"name": f"chairs/{pid}", "img0": read_rgb(root / f"{pid}-img0.ppm"),
                      "img1": read_rgb(root / f"{pid}-img1.ppm"), "gt": read_flo(root / f"{pid}-gt.flo"),
                      "noc": None})
    return pairs


def flow_at(estimator: FlowEstimator, img0: np.ndarray, img1: np.ndarray, short: int | None) -> np.ndarray:
    """H x W x 2 flow of the pair, computed at full size or at short side ``short`` and upsampled."""
    h, w = img0.shape[:2]
    if short is None or short >= min(h, w):
        return np.stack(estimator.pair(img0, img1), axis=-1)
    scale = short / min(h, w)
    size = (round(w * scale), round(h * scale))
    small = [cv2.resize(x, size, interpolation=cv2.INTER_AREA) for x in (img0, img1)]
    u, v = estimator.pair(*small)
    u = cv2.resize(u, (w, h), interpolation=cv2.INTER_LINEAR) * (w / size[0])
    v = cv2.resize(v, (w, h), interpolation=cv2.INTER_LINEAR) * (h / size[1])
    return np.stack([u, v], axis=-1)


def evaluate(configs: dict, pairs: list[dict], short: int | None, threads: int) -> dict:
    """label -> {sintel_noc, sintel_all, chairs, seconds_per_pair, per_pair}."""
    results = {}
    for label, (backend, options) in configs.items():
        estimator = FlowEstimator(backend, bound=1e9, threads=threads, **options)
        per_pair, seconds = {}, 0.0
        for pair in pairs:
            start = time.perf_counter()
            flow = flow_at(estimator, pair["img0"], pair["img1"], short)
            seconds += time.perf_counter() - start
            per_pair[pair["name"]] = {"all": endpoint_error(flow, pair["gt"])}
            if pair["noc"] is not None:
                per_pair[pair["name"]]["noc"] = endpoint_error(flow, pair["gt"], pair["noc"])
        sintel = [r for n, r in per_pair.items() if n.startswith("sintel")]
        results[label] = {
            "sintel_noc": float(np.mean([r["noc"] for r in sintel])),
            "sintel_all": float(np.mean([r["all"] for r in sintel])),
            "chairs": float(np.mean([r["all"] for n, r in per_pair.items() if n.startswith("chairs")])),
            "seconds_per_pair": seconds / len(pairs),
            "per_pair": per_pair,
        }
        print(f"  {label:14s} {short or 'full'}: sintel noc {results[label]['sintel_noc']:.2f} "
              f"chairs {results[label]['chairs']:.2f} ({results[label]['seconds_per_pair']:.2f} s/pair)",
              flush=True)
    return results


def geo_mean_ratio(result: dict, ref: dict) -> float:
    """Geometric mean over pairs of EPE / TV-L1's EPE (Sintel: noc), so no single pair dominates."""
    logs = [np.log(r.get("noc", r["all"]) / ref["per_pair"][n].get("noc", ref["per_pair"][n]["all"]))
            for n, r in result["per_pair"].items()]
    return float(np.exp(np.mean(logs)))


def table(results: dict, title: str) -> str:
    ref = results.get("tvl1")
    lines = [f"**{title}**", "",
             "| backend | Sintel noc EPE | Sintel all EPE | Chairs EPE | × TV-L1 (Sintel noc / Chairs) "
             "| × TV-L1, geo-mean over pairs | s/pair |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, r in results.items():
        ratio, geo = "–", "–"
        if ref:
            ratio = f"{r['sintel_noc'] / ref['sintel_noc']:.2f} / {r['chairs'] / ref['chairs']:.2f}"
            geo = f"{geo_mean_ratio(r, ref):.2f}"
        lines.append(f"| {label} | {r['sintel_noc']:.2f} | {r['sintel_all']:.2f} | {r['chairs']:.2f} "
                     f"| {ratio} | {geo} | {r['seconds_per_pair']:.2f} |")
    return "\n".join(lines)


def print_tables(out: dict) -> None:
    for key, results in out.items():
        title = ("EPE at full resolution (Sintel 1024×436, Chairs 512×384)" if key == "full" else
                 f"EPE with flow computed at short side {key.removeprefix('short')}, upsampled to full size")
        print()
        print(table(results, title))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one Sintel and one Chairs pair")
    parser.add_argument("--small", type=int, default=128,
                        help="short side of the reduced-size pass (0: skip)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--raft-weights", help="local torchvision RAFT state dict (adds the raft backend)")
    parser.add_argument("--json", help="write all numbers (also per pair) to this file")
    parser.add_argument("--from-json", help="print the tables of an earlier --json file; compute nothing")
    args = parser.parse_args()
    if args.from_json:
        print_tables(json.loads(Path(args.from_json).read_text()))
        return 0
    configs = dict(CONFIGS)
    if args.raft_weights:
        configs["raft"] = ("raft", {"weights": args.raft_weights})
    pairs = load_pairs(args.quick)
    print(f"pairs: {', '.join(p['name'] for p in pairs)}", flush=True)
    out = {"full": evaluate(configs, pairs, None, args.threads)}
    if args.small:
        out[f"short{args.small}"] = evaluate(configs, pairs, args.small, args.threads)
    print_tables(out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
