"""Start-up time of `mcl --help` and `mcl --version`: this checkout against another revision.

Runs ``python -m mcl_video ARGS`` alternately from this checkout's ``src`` and from ``git archive REV
src`` (``--before``, default ``HEAD``), ``--repeat`` times each, and prints the median wall time of
each. Run it with the interpreter that has the package's dependencies:

    python benchmarks/startup.py --before 850b648 --repeat 7
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wall(src: Path, args: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(src))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mcl_video", *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="HEAD", help="git revision to compare with")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before, "src"], check=True,
                                 capture_output=True).stdout
        tarfile.open(fileobj=io.BytesIO(archive)).extractall(tmp, filter="data")
        sources = {args.before: Path(tmp) / "src", "this checkout": ROOT / "src"}
        for command in (["--help"], ["--version"]):
            times: dict[str, list[float]] = {name: [] for name in sources}
            for _ in range(args.repeat):
                for name, src in sources.items():
                    times[name].append(wall(src, command))
            for name, values in times.items():
                print(f"mcl {command[0]:<9} {name:<14} median {statistics.median(values):.2f} s "
                      f"(min {min(values):.2f}, max {max(values):.2f}, {args.repeat} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
