"""Atomic file writes: a temporary file in the target's folder, fsync, then ``os.replace``.

A reader sees the old file or the new one, never a truncated one, even if the writer is killed.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch


def writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) or fail with a message that names it and the fix."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK):
            raise PermissionError(13, "permission denied")
    except OSError as err:
        raise OSError(f"cannot write to {path} ({err.strerror}): choose a writable results/run directory "
                      "or fix its permissions") from err
    return path


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path to write; it becomes ``path`` only when the block succeeds."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=writable_dir(path.parent), prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # what a plain open() would give (mkstemp makes 0600): shared stores
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """One JSON line, flushed; a line cut by a kill is dropped by :func:`read_jsonl`."""
    with open(path, "a") as fh:
        fh.write(json.dumps(record, sort_keys=True, default=_jsonable) + "\n")
        fh.flush()


def atomic_write_jsonl(path: str | os.PathLike, records: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True, default=_jsonable) + "\n" for r in records))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    records = []
    if Path(path).exists():
        for line in Path(path).read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
