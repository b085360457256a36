"""Peak memory and time of kNN/retrieval: the former full similarity matrix vs the chunked top-k.

Each arm runs in its own subprocess on the same random features (its peak resident memory, VmHWM, is
its own); torch and the features are loaded in both before ``base_mib`` is read. ``full`` is the computation
``mcl_video.evaluation.retrieval`` used before chunking, written out here: a float64 ``Q x G`` cosine
matrix and a stable argsort of every row. ``chunked`` is :func:`nearest_neighbours` (CPU here).

    python benchmarks/retrieval_memory.py --queries 4000 --gallery 20000 --dim 512 --k 20
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

from step_overhead import peak_rss_mib  # this script's folder is on sys.path


def _features(args) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(args.queries, args.dim)), rng.normal(size=(args.gallery, args.dim))


def _arm(args) -> dict:
    from mcl_video.evaluation.retrieval import nearest_neighbours  # imports torch in both arms

    query, gallery = _features(args)
    base = peak_rss_mib()
    t0 = time.perf_counter()
    if args.arm == "full":
        q = query / np.linalg.norm(query, axis=1, keepdims=True)
        g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
        sim = q @ g.T
        idx = np.argsort(-sim, axis=1, kind="stable")[:, : args.k]
    else:
        _, idx = nearest_neighbours(query, gallery, args.k, device="cpu")
    seconds = time.perf_counter() - t0
    return {"arm": args.arm, "seconds": round(seconds, 2), "peak_mib": round(peak_rss_mib(), 1),
            "base_mib": round(base, 1), "checksum": int(idx[:, 0].sum())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", type=int, default=4000)
    p.add_argument("--gallery", type=int, default=20000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--arm", choices=["full", "chunked"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.arm:
        print(json.dumps(_arm(args)))
        return
    rows = []
    for arm in ("full", "chunked"):
        cmd = [sys.executable, __file__, "--arm", arm, "--queries", str(args.queries), "--gallery",
               str(args.gallery), "--dim", str(args.dim), "--k", str(args.k)]
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
        print(json.dumps(rows[-1]), flush=True)
    same = rows[0]["checksum"] == rows[1]["checksum"]
    extra = [r["peak_mib"] - r["base_mib"] for r in rows]
    print(f"same nearest neighbours: {same}; memory above base: full {extra[0]:.0f} MiB, "
          f"chunked {extra[1]:.0f} MiB")


if __name__ == "__main__":
    main()
