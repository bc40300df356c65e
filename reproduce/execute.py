"""How one task runs, wherever a launcher puts it: train (resuming), then evaluate, then record.

A task is a train run and the evaluations of its checkpoints. :func:`execute_task` is the one
entry point of every launcher (inline, local processes, SLURM jobs): it takes the run's lock,
trains with ``resume=True`` unless the store already has the run (the trainer replays an
interrupted run exactly from its last epoch), writes the train record, then runs each evaluation
the store lacks. The training entry point (:class:`ifnd.train.Trainer`) knows nothing of any of this.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ifnd.config import TrainConfig, defining_fields, differing_fields
from ifnd.distributed import broadcast_object, init_from_environment, rank
from ifnd.io import read_jsonl
from ifnd.rundir import RunDir
from ifnd.train import Trainer

from reproduce.evals import run_eval
from reproduce.runs import EvalRun, TrainRun
from reproduce.store import RunBusy, Store, StoreWriteError, now

PER_EPOCH_NOISE = ("lr", "epoch_seconds", "images_per_second")  # summarised, not stored per epoch


@dataclass
class Task:
    train: TrainRun
    evals: list[EvalRun] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.train.key


@dataclass(frozen=True)
class StoreSpec:
    """What a worker process needs to open the store (picklable)."""

    profile: str
    results_root: str
    runs_root: str

    def open(self) -> Store:
        return Store(self.profile, self.results_root, self.runs_root)


class SnapshotTrainer(Trainer):
    """The trainer, keeping a copy of the checkpoint at chosen epochs (Figures 3 and 7).

    ``run()`` saves the latest checkpoint after every epoch; before epoch ``e + 1`` starts, it is
    the state after ``e`` epochs (detector refresh included), which is copied to the snapshot of ``e``
    (:meth:`ifnd.rundir.RunDir.snapshot`).
    A resumed run copies again (idempotent); the final epoch is copied after ``run()``.
    """

    def __init__(self, cfg, snapshots=()):
        super().__init__(cfg)
        self.snapshots = set(snapshots)

    def _copy(self, epoch: int) -> None:
        source, target = self.files.checkpoint, self.files.snapshot(epoch)
        if rank() == 0 and source.exists() and not target.exists():
            tmp = target.with_suffix(".tmp")
            shutil.copyfile(source, tmp)
            tmp.replace(target)

    def train_epoch(self) -> dict:
        if self.epoch in self.snapshots:
            self._copy(self.epoch)
        return super().train_epoch()

    def run(self, resume: bool = False) -> dict:
        final = super().run(resume=resume)
        if self.cfg.epochs in self.snapshots:
            self._copy(self.cfg.epochs)
        return final


def _machine_fields(run: TrainRun, progress: bool) -> dict:
    """How this machine runs ``run`` (not part of its identity; a resume may change them)."""
    return {"progress": progress, "threads": 0, "device": run.config.device,
            "data_root": run.config.data_root}


def _set_aside_if_foreign(run_dir: Path, cfg: TrainConfig, log) -> None:
    """A checkpoint written by a run with other defining fields (e.g. the library changed since) is moved aside."""
    files = RunDir(run_dir)
    if not files.checkpoint.exists() or not files.config.exists():
        return
    try:
        differing = differing_fields(json.loads(files.config.read_text()), cfg)
    except (OSError, ValueError):
        differing = ["config.json unreadable"]
    if not differing:
        return
    aside = run_dir.with_name(f"{run_dir.name}.stale-{int(time.time())}")
    log(f"warning: {run_dir} holds a checkpoint of other settings ({', '.join(differing)}; library changed since?): "
        f"moved to {aside}, training from scratch")
    run_dir.rename(aside)


def train_record(run: TrainRun, run_dir: Path, final: dict, seconds: float) -> dict:
    files = RunDir(run_dir)
    metrics = read_jsonl(files.metrics)
    images_per_second = [m["images_per_second"] for m in metrics if "images_per_second" in m]
    epoch_seconds = [m["epoch_seconds"] for m in metrics if "epoch_seconds" in m]
    return {
        "kind": "train", "label": run.label, "identity": run.identity(), "summary": run.summary(),
        "config": defining_fields(run.config),
        "result": {
            "final": final,
            "metrics": [{k: v for k, v in m.items() if k not in PER_EPOCH_NOISE} for m in metrics],
            "train_seconds": round(sum(epoch_seconds), 1),
            "images_per_second": round(sum(images_per_second) / len(images_per_second), 1) if images_per_second else None,
            "snapshots": {str(e): str(files.snapshot(e).relative_to(run_dir)) for e in run.snapshots},
        },
        "run_dir": str(run_dir), "elapsed_seconds": round(seconds, 1),
    }


def checkpoints_present(store: Store, run: TrainRun, epochs=()) -> bool:
    files = RunDir(store.train_dir(run.key))
    return files.checkpoint.exists() and all(files.snapshot(e).exists() for e in epochs)


def run_train(run: TrainRun, store: Store, progress: bool = True, log=print) -> dict:
    """Train (or resume) one run and write its record; returns the record."""
    run_dir = store.train_dir(run.key)
    cfg = run.train_config(str(run_dir), **_machine_fields(run, progress))
    _set_aside_if_foreign(run_dir, cfg, log)
    started = time.time()
    final = SnapshotTrainer(cfg, run.snapshots).run(resume=True)
    record = train_record(run, run_dir, final, time.time() - started)
    if rank() == 0:
        store.put(run.key, record)
    return record


_LIMITS: list = []


def limit_threads(threads: int) -> None:
    """At most ``threads`` CPU threads for torch, faiss and the BLAS/OpenMP pools sklearn uses.

    On a shared or small machine one thread per process is often faster than two: OpenMP pools
    spinning against other processes' threads lose more than they gain.
    """
    if threads <= 0:
        return
    import torch

    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except (ImportError, AttributeError):
        pass
    try:
        from threadpoolctl import threadpool_limits

        _LIMITS.append(threadpool_limits(threads))  # kept for the process's lifetime
    except ImportError:
        pass


def _needed_epochs(evals: list[EvalRun]) -> set[int]:
    return {e.params["epoch"] for e in evals if isinstance(e.params.get("epoch"), int)}


def execute_task(task: Task, store_spec: StoreSpec, progress: bool = True, threads: int = 0,
                 lock: bool = True) -> dict:
    """Run what the store lacks of one task; returns ``{"key", "status", "trained", "evaluated", "error"}``.

    ``lock=False`` is for the other processes of a multi-GPU job (rank > 0): they join the training
    only; rank 0 holds the lock, writes the records and runs the evaluations. Rank 0's view (busy,
    finished, what is pending) is broadcast first, so a job whose run another sweep holds or has
    finished ends on every rank instead of leaving ranks > 0 waiting in the training's collectives.
    """
    from contextlib import ExitStack

    limit_threads(threads)
    store = store_spec.open()
    status = {"key": task.key, "label": task.train.label, "trained": False, "evaluated": [], "status": "done",
              "error": None, "seconds": 0.0}
    started = time.time()
    log = (lambda message: print(message, file=sys.stderr, flush=True))
    pending = [e for e in task.evals if not store.has(e.key)]
    needs_train = not store.has(task.key) or bool(pending and not checkpoints_present(store, task.train,
                                                                                        _needed_epochs(pending)))
    init_from_environment()  # joins a multi-process job's group (a no-op otherwise)
    try:
        with ExitStack() as held:
            busy = None
            if lock and (needs_train or pending):
                try:
                    held.enter_context(store.claim(task.key))
                except RunBusy as err:
                    busy = str(err)
            busy, needs_train, any_pending = broadcast_object((busy, needs_train, bool(pending)))
            if busy:
                raise RunBusy(busy)
            if not needs_train and not any_pending:
                return status
            if needs_train:
                if store.has(task.key):
                    log(f"{task.key}: checkpoint missing for pending evaluations; re-running training "
                        f"({task.train.summary()})")
                run_train(task.train, store, progress, log)
                status["trained"] = True
            failures = []
            for run in (pending if lock else []):
                if store.has(run.key):
                    continue
                t0 = time.time()
                try:
                    result = run_eval(run, store, progress=progress)
                except Exception as err:  # the other evaluations of the checkpoint still run
                    failures.append(f"{run.kind} {run.key}: {type(err).__name__}: {err}")
                    status["traceback"] = traceback.format_exc(limit=8)
                    continue
                if rank() == 0:
                    store.put(run.key, {"kind": run.kind, "label": run.label, "identity": run.identity(),
                                        "summary": run.summary(), "result": result,
                                        "elapsed_seconds": round(time.time() - t0, 1)})
                status["evaluated"].append(run.key)
            if failures:
                status.update(status="failed", error="; ".join(failures))
    except RunBusy as err:
        status.update(status="busy", error=str(err))
    except StoreWriteError:  # every later run would fail the same way: the sweep stops
        raise
    except Exception as err:  # one failed run must not stop a sweep: report it and go on
        status.update(status="failed", error=f"{type(err).__name__}: {err}",
                      traceback=traceback.format_exc(limit=8))
    status["seconds"] = round(time.time() - started, 1)
    status["finished_at"] = now()
    return status
