"""The layout of a training run's directory: the one place that names its files.

::

    <run_dir>/config.json                the run's TrainConfig, written when training starts
    <run_dir>/metrics.jsonl              one record per finished epoch
    <run_dir>/checkpoints/last.pt        the state after the latest epoch (rewritten atomically each epoch)
    <run_dir>/checkpoints/epoch_NNNN.pt  a kept copy of the state after epoch NNNN (a snapshot)
    <run_dir>/final.json                 the run's last kNN accuracy, written when it ends

The trainer writes the first three and the last; the harness keeps the snapshots. Evaluations find
a checkpoint with :meth:`RunDir.checkpoint_at`.
"""
from __future__ import annotations

import os
from pathlib import Path

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoints/last.pt"
FINAL = "final.json"


class RunDir:
    """The files of the run directory ``root``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def checkpoint(self) -> Path:
        """The latest checkpoint (our trainer's ``torch.save`` dict, see :mod:`eval.checkpoints`)."""
        return self.root / CHECKPOINT

    @property
    def final(self) -> Path:
        return self.root / FINAL

    def snapshot(self, epoch: int) -> Path:
        """The kept copy of the state after ``epoch`` epochs."""
        return self.checkpoint.parent / f"epoch_{epoch:04d}.pt"

    def checkpoint_at(self, epoch: int | None = None) -> Path:
        """The snapshot of ``epoch``, or the latest checkpoint when ``epoch`` is None."""
        return self.checkpoint if epoch is None else self.snapshot(epoch)
