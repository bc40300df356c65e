"""What every benchmark shares: interleaved timing, ratios, memory accounting, the machine line.

The project's CPU machines are small and shared, so absolute times drift by tens of percent from
one minute to the next. Every benchmark therefore measures a candidate against a baseline in the
same process, alternating them repetition by repetition (baseline, candidate, baseline, ...; the
order rotates each round so neither always runs first), and reports medians and the ratio of
medians. Only ratios are meant to be compared across runs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import weakref
from pathlib import Path
from typing import Callable

import torch


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds: checks that the script runs")
    parser.add_argument("--reps", type=int, default=0,
                        help="timed repetitions of each variant (0: the script's default)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    return parser


def cifar_training_main(argv, doc: str, banner_text: str, run, steps_help: str) -> int:
    """The command line shared by the benchmarks that train on a CIFAR-10 subset at mini settings."""
    parser = base_parser(doc.splitlines()[0])
    parser.add_argument("--data-root", help="CIFAR-10 location (default: the project's shared copy)")
    parser.add_argument("--subset", type=int, default=5000, help="class-balanced training images")
    parser.add_argument("--steps", type=int, default=6, help=steps_help)
    parser.add_argument("--batch-size", type=int, default=0, help="0: the mini profile's 256")
    args = parser.parse_args(argv)
    if args.quick:
        args.subset, args.steps, args.batch_size = min(args.subset, 100), 2, args.batch_size or 32
    setup(args)
    banner(banner_text)
    write_json(args.json, {"machine": machine(), **run(args)})
    return 0


def setup(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)


def machine() -> str:
    """One line saying where the figures come from."""
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{platform.machine()} {_cpu_name()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads){gpu}, python "
            f"{platform.python_version()}, load average {load}")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.system()


def sync(device: torch.device | str | None = None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved(variants: dict[str, Callable[[], object]], reps: int, warmup: int = 1,
                device: torch.device | str | None = None) -> dict[str, list[float]]:
    """Seconds of each call of each variant, the variants alternating; the order rotates each round."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            sync(device)
            start = time.perf_counter()
            variants[name]()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def ratios(times: dict[str, list[float]], baseline: str) -> dict[str, float]:
    """Median of each variant over the baseline's median."""
    base = median(times[baseline])
    return {name: median(t) / base for name, t in times.items()}


def paired_ratio(times: dict[str, list[float]], candidate: str, baseline: str) -> float:
    """Median of the per-round ratios (each candidate call over the baseline call next to it)."""
    return statistics.median(c / b for c, b in zip(times[candidate], times[baseline]))


def spread(values: list[float]) -> str:
    """``min..max`` in milliseconds, to show how noisy the machine was."""
    return f"{min(values) * 1e3:.1f}..{max(values) * 1e3:.1f}"


def table(rows: list[list[object]], header: list[str]) -> str:
    """A GitHub-markdown table (what docs/performance.md pastes)."""
    cells = [[str(c) for c in row] for row in [header] + rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(r) for r in cells[1:]])


def write_json(path: str | None, figures: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(figures, indent=2, default=str) + "\n")


def mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:.0f} MiB"


class TensorMemory:
    """Peak bytes of live tensors allocated inside the ``with`` block (CPU or GPU).

    ``tracemalloc`` does not see torch's allocator and the CPU allocator keeps no statistics, so
    this dispatch mode watches every operator's outputs: a storage counts from the first output
    that uses it until the last tensor using it is gone. Tensors that autograd creates in C++ and
    frees without surfacing (some backward temporaries) are missed, so it is a lower bound; it
    slows ops down, so never time inside it. ``peak`` / ``total`` are bytes.
    """

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        outer = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                outer._note_inputs(args, kwargs)
                out = func(*args, **(kwargs or {}))
                outer._record(out)
                return out

        self._mode = _Mode()
        self._refs: dict[int, list[int]] = {}
        self._external: set[int] = set()  # storages that existed before the block (inputs and their views)
        self.live = self.peak = self.total = 0

    def _note_inputs(self, args, kwargs) -> None:
        from torch.utils._pytree import tree_flatten

        for t in tree_flatten((args, kwargs))[0]:
            if isinstance(t, torch.Tensor):
                key = t.untyped_storage().data_ptr()
                if key not in self._refs:
                    self._external.add(key)

    def _record(self, out) -> None:
        from torch.utils._pytree import tree_flatten

        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key == 0 or key in self._external:
                continue
            entry = self._refs.get(key)
            if entry is None:
                self._refs[key] = [1, storage.nbytes()]
                self.live += storage.nbytes()
                self.total += storage.nbytes()
                self.peak = max(self.peak, self.live)
            else:
                entry[0] += 1
            weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        entry = self._refs.get(key)
        if entry is not None:
            entry[0] -= 1
            if entry[0] == 0:
                self.live -= entry[1]
                del self._refs[key]

    def __enter__(self):
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self._mode.__exit__(*exc)


def peak_memory(fn: Callable[[], object], device: torch.device | str) -> int:
    """Peak bytes ``fn`` allocates: the CUDA allocator's statistic on a GPU, else :class:`TensorMemory`."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    with TensorMemory() as tracker:
        fn()
    return tracker.peak


def banner(title: str) -> None:
    print(f"== {title}")
    print(f"machine: {machine()}")
    print(f"command: {' '.join([Path(sys.executable).name, '-m', _module_name()] + sys.argv[1:])}")
    sys.stdout.flush()


def _module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None else Path(sys.argv[0]).stem


def mini_train_config(run_dir, data_root=None, subset: int = 5000, threads: int = 0, **overrides):
    """The ``mini`` profile's CIFAR pre-training settings (convnet4, 32x32, batch 256, bf16 on CPU)."""
    from ifnd.config import TrainConfig
    from reproduce.profiles import PROFILES

    fields = PROFILES["mini"].train_fields("cifar")
    fields.update(run_dir=str(run_dir), data_root=data_root, train_subset=subset, progress=False, threads=threads,
                  device="cpu")
    fields.update(overrides)
    return TrainConfig(**fields).validate()
