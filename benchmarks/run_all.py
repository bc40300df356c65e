"""Run the CPU benchmarks one after the other: ``python -m benchmarks.run_all`` (``make benchmarks``).

Each runs in its own process (so one's memory and threads do not disturb the next), prints its
tables, and writes its figures to ``<out-dir>/<name>.json``. ``benchmarks.gpu`` is not included: run it
on a GPU machine (``python -m benchmarks.gpu --out <file>``).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CPU_BENCHMARKS = ("loss_kernel", "train_step", "throughput", "detection_cost", "precision")
TAKES_DATA = ("train_step", "throughput", "detection_cost", "precision")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that every script runs")
    parser.add_argument("--only", nargs="+", choices=CPU_BENCHMARKS, default=list(CPU_BENCHMARKS))
    parser.add_argument("--out-dir", default="results/benchmarks", help="where the JSON figures go")
    parser.add_argument("--data-root", help="CIFAR-10 location for the trainer benchmarks")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    failed = []
    for name in args.only:
        command = [sys.executable, "-m", f"benchmarks.{name}", "--json", str(Path(args.out_dir).resolve() / f"{name}.json")]
        command += ["--quick"] if args.quick else []
        command += ["--threads", str(args.threads)] if args.threads else []
        command += ["--data-root", args.data_root] if args.data_root and name in TAKES_DATA else []
        start = time.perf_counter()
        print(f"\n#### benchmarks.{name}", flush=True)
        code = subprocess.call(command, cwd=ROOT)
        print(f"#### benchmarks.{name}: exit {code}, {time.perf_counter() - start:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"\nfigures in {args.out_dir}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
