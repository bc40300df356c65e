"""Child processes that end with their parent: a killed sweep, worker or job leaves nothing running."""
from __future__ import annotations

import subprocess
import sys


def die_with_parent() -> None:
    """Linux: this process gets SIGTERM when its parent dies (``PR_SET_PDEATHSIG``); elsewhere nothing."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_tied(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(command, **kwargs)`` whose child is sent SIGTERM if this process dies first."""
    return subprocess.run(command, preexec_fn=die_with_parent, **kwargs)
