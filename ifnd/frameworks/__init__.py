"""Framework registry: a framework is one file and one entry here."""
from __future__ import annotations

from typing import Callable

from ifnd.frameworks.base import Framework
from ifnd.frameworks.simclr import SimCLR

FRAMEWORKS: dict[str, Callable[..., Framework]] = {
    "simclr": lambda cfg: SimCLR(cfg.arch, cfg.cifar_stem),
}


def build_framework(cfg) -> Framework:
    return FRAMEWORKS[cfg.framework](cfg)
