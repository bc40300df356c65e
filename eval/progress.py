"""Progress of long evaluation steps: a tqdm bar on a terminal, plain lines in a log (stderr not a terminal)."""
from __future__ import annotations

import sys

from tqdm import tqdm


def bar(iterable, progress: bool, desc: str, **kwargs):
    """A bar when ``progress`` and stderr is a terminal (tqdm's ``disable=None``); else the bare iterable."""
    return tqdm(iterable, desc=desc, disable=None if progress else True, file=sys.stderr, **kwargs)


def log(progress: bool, message: str) -> None:
    """One plain line when ``progress`` and stderr is not a terminal (where no bar is drawn)."""
    if progress and not sys.stderr.isatty():
        print(message, file=sys.stderr, flush=True)
