"""The JSON record every protocol writes: one file, written atomically, that a harness can read.

Layout (all protocols)::

    {"protocol": "linear", "paper": "Table 1 (ImageNet), Appendix C",
     "checkpoint": {"path", "sha256", "source_format", "arch", "cifar_stem", "epoch"},
     "data": {...what was evaluated on...}, "settings": {...hyper-parameters...},
     "metrics": {...numbers, percentages...}, "elapsed_seconds": float,
     "finished_at": ISO-8601 UTC, "versions": {"python", "torch", "torchvision", "numpy", ...}}
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
from importlib import metadata
from typing import Any

from eval.checkpoints import CheckpointInfo
from ifnd.io import atomic_write_json

_PACKAGES = ("torch", "torchvision", "numpy", "scikit-learn", "faiss-cpu")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def result_record(protocol: str, paper: str, checkpoint: CheckpointInfo | None, data: dict, settings: dict,
                  metrics: dict, elapsed_seconds: float) -> dict[str, Any]:
    return {
        "protocol": protocol,
        "paper": paper,
        "checkpoint": checkpoint.summary() if checkpoint else None,
        "data": data,
        "settings": settings,
        "metrics": metrics,
        "elapsed_seconds": round(float(elapsed_seconds), 3),
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"python": platform.python_version(), **{name: _version(name) for name in _PACKAGES}},
    }


def write_result(path: str | os.PathLike, record: dict) -> None:
    """Temp file in the destination folder, fsync, ``os.replace`` (see :mod:`ifnd.io`)."""
    atomic_write_json(path, record)
