"""The results store: one small JSON per finished run, and the run directories behind them.

::

    runs/<profile>/<hash>/               a train run (the trainer's run directory, laid out as
                                         ifnd.rundir says); git-ignored
    runs/<profile>/evals/<hash>/         scratch of an evaluation (CLI protocols write here)
    runs/<profile>/features/             the feature cache of eval.features
    runs/<profile>/locks/<hash>.lock     held (flock) while a process works on the run
    results/<profile>/store/<hash>.json  the record of a finished run or evaluation; committed

A record is written once, atomically (temporary file + ``os.replace``), by the process that
finished the run, so two sweeps writing the same store lose nothing: they write different files,
or the same content to the same file. The per-run lock keeps two sweeps (or a sweep and a SLURM
job) from training the same run at the same time; the second one skips it as "running elsewhere".
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import functools
import json
import os
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ifnd.io import atomic_write_json

from reproduce.paths import PROJECT_ROOT


class RunBusy(RuntimeError):
    """Another process holds the run's lock."""


class StoreWriteError(OSError):
    """The store (or the run directories) cannot be written: a sweep stops at the first one."""


@functools.cache
def git_commit() -> str:
    """The checkout's commit (``-dirty`` with uncommitted changes), or ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=20)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Store:
    def __init__(self, profile: str, results_root: str | os.PathLike | None = None,
                 runs_root: str | os.PathLike | None = None):
        self.profile = profile
        self.results_dir = Path(results_root or PROJECT_ROOT / "results") / profile
        self.runs_dir = Path(runs_root or PROJECT_ROOT / "runs") / profile
        self.store_dir = self.results_dir / "store"

    # -- records ---------------------------------------------------------------------------------
    def record_path(self, key: str) -> Path:
        return self.store_dir / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self.record_path(key)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError):
            return None  # a foreign or damaged file: the run counts as not finished and is redone

    def has(self, key: str) -> bool:
        return self.get(key) is not None

    def put(self, key: str, record: dict) -> Path:
        full = {"key": key, "profile": self.profile, "finished_at": now(), "git_commit": git_commit(),
                "host": socket.gethostname(), **record}
        try:
            atomic_write_json(self.record_path(key), full)
        except OSError as err:
            raise StoreWriteError(f"cannot write the record of run {key} to {self.store_dir} ({err}): the run's "
                                  "checkpoint is kept; make the results directory writable and run the same "
                                  "command again (it resumes)") from err
        return self.record_path(key)

    def check_writable(self, runs: bool = True) -> None:
        """Create the store's folder (and ``runs_dir``) and write a file in each, or raise :class:`StoreWriteError`."""
        for folder, flag in [(self.store_dir, "--results-dir")] + ([(self.runs_dir, "--runs-dir")] if runs else []):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
                    pass
            except OSError as err:
                raise StoreWriteError(f"cannot write to {folder} ({err.strerror or err}): choose a writable {flag} "
                                      "or fix its permissions") from None

    def keys(self) -> list[str]:
        return sorted(p.stem for p in self.store_dir.glob("*.json")) if self.store_dir.is_dir() else []

    # -- run directories -------------------------------------------------------------------------
    def train_dir(self, key: str) -> Path:
        return self.runs_dir / key

    def eval_dir(self, key: str) -> Path:
        return self.runs_dir / "evals" / key

    def feature_cache(self) -> Path:
        return self.runs_dir / "features"

    # -- locks -----------------------------------------------------------------------------------
    def _lock_path(self, key: str) -> Path:
        path = self.runs_dir / "locks" / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    @contextmanager
    def claim(self, key: str) -> Iterator[None]:
        """Hold the run's lock for the block; :class:`RunBusy` if another process holds it."""
        fd = os.open(self._lock_path(key), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunBusy(f"run {key} is being worked on by another process (lock {self._lock_path(key)})") \
                    from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{socket.gethostname()} pid {os.getpid()} since {now()}\n".encode())
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def busy(self, key: str) -> bool:
        path = self.runs_dir / "locks" / f"{key}.lock"
        if not path.exists():
            return False
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
