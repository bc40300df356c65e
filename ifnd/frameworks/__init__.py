"""Framework registry: each ``--framework`` is one module declaring a :class:`FrameworkSpec`, and one line here."""
from __future__ import annotations

from ifnd.frameworks import moco, simclr, swav
from ifnd.frameworks.base import Framework, FrameworkSpec

FRAMEWORKS: dict[str, FrameworkSpec] = {spec.name: spec for spec in (
    simclr.SPEC,
    moco.SPEC,
    swav.SPEC,
)}


def blur_probability(cfg) -> float:
    """``cfg.blur_p`` if set; else 0.5 from 64 px up (ImageNet) for recipes that blur (MoCo v2, SwAV), 0 at
    CIFAR sizes (their CIFAR recipes drop the blur) and for SimCLR (the suite's CIFAR recipe has none)."""
    if cfg.blur_p is not None:
        return cfg.blur_p
    return 0.5 if FRAMEWORKS[cfg.framework].blur and cfg.image_size >= 64 else 0.0


def build_framework(cfg) -> Framework:
    framework = FRAMEWORKS[cfg.framework].build(cfg)
    framework.blur_p = blur_probability(cfg)
    return framework


__all__ = ["Framework", "FrameworkSpec", "FRAMEWORKS", "blur_probability", "build_framework"]
